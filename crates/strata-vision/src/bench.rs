//! Throughput of training the simple CNN: the figure `cargo xtask bench cnn-train` reports.
//!
//! It runs the same code path as `train-vision` — the model's `TrainStep` (forward, cross-entropy,
//! backward) followed by an Adam step, on normalised MNIST batches — without burn-train's
//! metric bookkeeping, after a warm-up.

use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use burn::train::TrainStep;

use crate::data::{ImageBatcher, ImageItem};
use crate::mnist::{ImageSet, MnistKind};
use crate::models::VisionConfig;

/// Result of a training-throughput measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Images per second over the timed steps.
    pub images_per_s: f64,
    /// Timed steps.
    pub steps: usize,
    /// Seconds of the timed steps.
    pub seconds: f64,
}

/// Times `steps` training steps of the simple CNN on batches of `batch_size` images from `set`,
/// after `warmup` untimed steps, on `device` (autodiff is added here).
pub fn cnn_train_throughput(
    set: &ImageSet,
    device: &Device,
    batch_size: usize,
    warmup: usize,
    steps: usize,
) -> Throughput {
    let device = device.clone().autodiff();
    strata_tensor::seed(&device, 0);
    let config = VisionConfig::named("simple-cnn", 1, set.rows, 10).expect("valid default config");
    let mut model = config.init(&device).expect("valid default config");
    let mut optim = strata_train::OptimizerConfig::adam(1e-3).init();
    let batcher = ImageBatcher::new(set.rows, set.cols, &MnistKind::Mnist.normalization());
    let batches_in_set = (set.len() / batch_size).max(1);
    let batch = |i: usize| {
        let start = (i % batches_in_set) * batch_size;
        let items = (start..(start + batch_size).min(set.len()))
            .map(|j| ImageItem {
                pixels: set.image(j).to_vec(),
                label: set.labels[j],
            })
            .collect();
        batcher.batch(items, &device)
    };
    let mut step = |i: usize| {
        let out = TrainStep::step(&model, batch(i));
        model = optim.step(1e-3, model.clone(), out.grads);
        out.item.loss
    };
    for i in 0..warmup {
        let _ = step(i).into_scalar::<f32>();
    }
    let started = Instant::now();
    let mut last = None;
    for i in 0..steps {
        last = Some(step(warmup + i));
    }
    if let Some(loss) = last {
        let _ = loss.into_scalar::<f32>(); // wait for the device
    }
    let seconds = started.elapsed().as_secs_f64();
    Throughput {
        images_per_s: (steps * batch_size) as f64 / seconds,
        steps,
        seconds,
    }
}
