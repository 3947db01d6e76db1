//! Data loaders as every family builds them.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::Dataset;
use burn::tensor::Device;

/// A loader of `dataset` in batches of `batch_size` on `device`, shuffled with `shuffle`'s seed
/// (else in order), with `workers` threads building batches (0: on the caller's thread).
pub fn loader<I, O, B, D>(
    batcher: B,
    dataset: D,
    batch_size: usize,
    shuffle: Option<u64>,
    workers: usize,
    device: &Device,
) -> Arc<dyn DataLoader<O>>
where
    I: Send + Sync + Clone + std::fmt::Debug + 'static,
    O: Send + Sync + Clone + std::fmt::Debug + 'static,
    B: Batcher<I, O> + 'static,
    D: Dataset<I> + 'static,
{
    let builder = DataLoaderBuilder::new(batcher)
        .batch_size(batch_size)
        .num_workers(workers)
        .set_device(device.clone());
    match shuffle {
        Some(seed) => builder.shuffle(seed).build(dataset),
        None => builder.build(dataset),
    }
}
