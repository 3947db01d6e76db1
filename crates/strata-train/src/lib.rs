//! The one training harness of Strata.
//!
//! [`fit`](fit::fit) runs burn-train's `SupervisedTraining` with what every job needs around it:
//! a progress bar with throughput and ETA ([`progress`]), `metrics.json` and `curves.png` after
//! every epoch ([`metrics`], [`plot`]), a checkpoint per epoch and `--resume`, early stopping, an
//! LR schedule, and the best epoch's weights at the end. [`datasets`] finds dataset files on disk
//! or downloads them. [`eval`] scores a classifier on a held-out set.

pub mod datasets;
pub mod eval;
pub mod fit;
pub mod metrics;
pub mod plot;
pub mod progress;
#[cfg(feature = "testing")]
pub mod testing;

pub use fit::{FitConfig, FitError, Fitted, LrSchedule, fit};
pub use metrics::{EpochRecord, Metrics};
