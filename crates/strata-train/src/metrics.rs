//! `metrics.json`: the per-epoch history of a run and its final figures.

use std::path::Path;

use serde::{Deserialize, Serialize};
use strata_tensor::fsutil::write_atomic;

/// Figures of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch (`None` if it was not finite).
    pub train_loss: Option<f64>,
    /// Training accuracy (fraction in [0, 1]), for classifiers.
    pub train_accuracy: Option<f64>,
    /// Mean validation loss.
    pub valid_loss: Option<f64>,
    /// Validation accuracy (fraction in [0, 1]), for classifiers.
    pub valid_accuracy: Option<f64>,
    /// Learning rate at the end of the epoch.
    pub learning_rate: Option<f64>,
    /// Wall time of the epoch (training and validation), in seconds.
    pub seconds: f64,
    /// Training throughput, items per second.
    pub train_items_per_s: f64,
}

/// Everything `metrics.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// What the artifact dir holds (the `model_type` of its `config.json`).
    pub model_type: String,
    /// Backend the run used.
    pub backend: String,
    /// Seed of the run.
    pub seed: u64,
    /// One record per finished epoch.
    pub history: Vec<EpochRecord>,
    /// Epoch with the lowest validation loss (its weights are kept when early stopping is on).
    pub best_epoch: Option<usize>,
    /// Whether early stopping ended the run before the last epoch.
    pub stopped_early: bool,
    /// Final test accuracy, a fraction in [0, 1], for classifiers.
    pub test_accuracy: Option<f64>,
    /// Final test loss.
    pub test_loss: Option<f64>,
    /// Final validation loss (for tasks without a test set).
    pub valid_loss: Option<f64>,
    /// Total wall time of the run, in seconds.
    pub wall_seconds: f64,
}

impl Metrics {
    /// Writes `metrics.json` into `dir` atomically.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_atomic(&dir.join("metrics.json"), &json)
    }

    /// Reads `metrics.json` from `dir`.
    pub fn load(dir: &Path) -> std::io::Result<Self> {
        let bytes = std::fs::read(dir.join("metrics.json"))?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}
