//! Scoring a trained classifier on a held-out set.

use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::data::dataset::DatasetError;
use burn::train::{ClassificationOutput, InferenceStep};
use strata_tensor::ops::correct_count;

/// Loss and accuracy of a classifier over a whole dataset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Sample-weighted mean loss.
    pub loss: f64,
    /// Fraction of correct top-1 predictions, in [0, 1].
    pub accuracy: f64,
    /// Number of items scored.
    pub items: usize,
}

/// Runs `model` over every batch of `data` (pass `model.valid()` for inference mode).
pub fn evaluate<M, I>(model: &M, data: &Arc<dyn DataLoader<I>>) -> Result<Score, DatasetError>
where
    M: InferenceStep<Input = I, Output = ClassificationOutput>,
{
    let (mut loss_sum, mut correct, mut items) = (0.0f64, 0usize, 0usize);
    for batch in data.iter() {
        let out = model.step(batch?);
        let n = out.targets.dims()[0];
        loss_sum += out.loss.into_scalar::<f64>() * n as f64;
        correct += correct_count(out.output, out.targets);
        items += n;
    }
    Ok(Score {
        loss: if items > 0 {
            loss_sum / items as f64
        } else {
            f64::NAN
        },
        accuracy: if items > 0 {
            correct as f64 / items as f64
        } else {
            0.0
        },
        items,
    })
}
