//! `metrics.json`: the history of a run, as named columns, and its final figures.
//!
//! One [`Record`] is written per evaluation: per epoch, or every `--eval-every` steps in a run
//! measured in steps. Its columns are named `<split>_<key>` after the task's columns
//! (`train_loss`, `valid_loss`, `valid_accuracy`, `valid_perplexity`, ...) plus `learning_rate`,
//! `seconds` and `train_items_per_s`; a value that was not finite is left out. The training loss
//! of every optimizer step is kept too (`step_loss`), for the curves.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use strata_data::fsutil::write_atomic;

use crate::task::TaskKind;

/// Figures of one evaluation period (an epoch, or `--eval-every` steps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Period number, from 1 (the epoch, in a run measured in epochs).
    pub epoch: usize,
    /// Optimizer steps done at the end of the period (0 in histories written before steps
    /// were recorded).
    #[serde(default)]
    pub step: usize,
    /// The named figures of the period.
    #[serde(flatten)]
    pub values: BTreeMap<String, f64>,
}

impl Record {
    /// The value of column `name` (`valid_loss`, `train_accuracy`, ...).
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }
}

/// Everything `metrics.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// What the artifact dir holds (the `model_type` of its `config.json`).
    pub model_type: String,
    /// The task trained (`classification`, `language-model`, `regression`).
    #[serde(default)]
    pub task: Option<TaskKind>,
    /// Backend the run used.
    pub backend: String,
    /// Seed of the run.
    pub seed: u64,
    /// Optimizer steps in one period (an epoch, or `--eval-every`).
    #[serde(default)]
    pub steps_per_period: usize,
    /// One record per finished period.
    pub history: Vec<Record>,
    /// The training loss of every optimizer step, as `[step, loss]`.
    #[serde(default)]
    pub step_loss: Vec<(usize, f64)>,
    /// Period with the lowest validation loss (its weights are kept when early stopping is on).
    pub best_epoch: Option<usize>,
    /// Whether early stopping ended the run before its last period.
    pub stopped_early: bool,
    /// Final test accuracy, a fraction in [0, 1], for classifiers.
    pub test_accuracy: Option<f64>,
    /// Final test loss.
    pub test_loss: Option<f64>,
    /// Final validation loss (for tasks without a test set; nats per token for a language model).
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

    /// Keeps only what happened up to period `done` (a resumed run continues from there).
    pub fn truncate_to(&mut self, done: usize) {
        self.history.retain(|r| r.epoch <= done);
        let last_step = self.history.last().map_or(0, |r| r.step);
        self.step_loss.retain(|&(s, _)| s <= last_step);
    }

    /// The period with the lowest finite validation loss.
    pub fn best_period(&self) -> Option<usize> {
        self.history
            .iter()
            .filter_map(|r| {
                r.get("valid_loss")
                    .filter(|l| l.is_finite())
                    .map(|l| (r.epoch, l))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(e, _)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_serialise_as_flat_named_columns() {
        let r = Record {
            epoch: 2,
            step: 20,
            values: [
                ("train_loss".to_string(), 0.5),
                ("valid_accuracy".to_string(), 0.9),
            ]
            .into_iter()
            .collect(),
        };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"epoch": 2, "step": 20, "train_loss": 0.5, "valid_accuracy": 0.9})
        );
        let back: Record = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn best_period_ignores_missing_and_non_finite_losses() {
        let rec = |epoch, l: Option<f64>| Record {
            epoch,
            step: epoch * 10,
            values: l
                .map(|l| ("valid_loss".to_string(), l))
                .into_iter()
                .collect(),
        };
        let m = Metrics {
            history: vec![
                rec(1, Some(0.5)),
                rec(2, Some(f64::NAN)),
                rec(3, Some(0.4)),
                rec(4, None),
            ],
            ..Metrics::default()
        };
        assert_eq!(m.best_period(), Some(3));
    }
}
