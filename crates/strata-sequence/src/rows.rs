//! Images read as sequences: an MNIST image is 28 steps of 28 pixels, one row per step, top to
//! bottom (the "sequential MNIST by rows" task of the RNN literature).

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::prelude::*;
use strata_data::mnist::ImageSet;

use crate::models::SequenceBatch;

/// MNIST's mean and standard deviation of pixels scaled to [0, 1].
pub const MNIST_MEAN_STD: (f32, f32) = (0.1307, 0.3081);

/// One image's pixels (row-major) and its label.
pub type RowItem = (Vec<u8>, u8);

/// The images of a set, each an item of rows.
#[derive(Debug, Clone)]
pub struct RowImages {
    set: Arc<ImageSet>,
}

impl RowImages {
    /// Wraps a set of images.
    pub fn new(set: ImageSet) -> Self {
        Self { set: Arc::new(set) }
    }
}

impl Dataset<RowItem> for RowImages {
    fn get(&self, index: usize) -> Result<RowItem, DatasetError> {
        if index >= self.set.len() {
            return Err(DatasetError::new(std::io::Error::other(format!(
                "image index {index} is out of range: the dataset has {} images",
                self.set.len()
            ))));
        }
        Ok((self.set.image(index).to_vec(), self.set.labels[index]))
    }

    fn len(&self) -> usize {
        self.set.len()
    }
}

/// Stacks images into `[batch, rows, cols]` sequences, normalised with MNIST's mean and std.
#[derive(Debug, Clone, Copy)]
pub struct RowBatcher {
    /// Steps (image rows).
    pub rows: usize,
    /// Features per step (image columns).
    pub cols: usize,
}

impl Batcher<RowItem, SequenceBatch> for RowBatcher {
    fn batch(&self, items: Vec<RowItem>, device: &Device) -> SequenceBatch {
        let (mean, std) = MNIST_MEAN_STD;
        let batch = items.len();
        let mut pixels = Vec::with_capacity(batch * self.rows * self.cols);
        let mut labels = Vec::with_capacity(batch);
        for (image, label) in items {
            pixels.extend(image.iter().map(|&p| (p as f32 / 255.0 - mean) / std));
            labels.push(label as i64);
        }
        SequenceBatch {
            inputs: Tensor::from_data(
                TensorData::new(pixels, [batch, self.rows, self.cols]),
                device,
            ),
            targets: Tensor::from_data(TensorData::new(labels, [batch]), device),
        }
    }
}
