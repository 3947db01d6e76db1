//! The one training harness of Strata, for every model family and task.
//!
//! [`fit`](fit::fit) runs burn-train's `SupervisedTraining` for any task ([`task`]:
//! classification, language model, regression) with what every job needs around it: the
//! optimizers, schedules with warm-up, parameter groups and gradient clipping of [`optim`] (Adam,
//! AdamW and SGD with momentum as the one-pass steps of [`fused`]); frozen
//! parts; runs measured in epochs or steps; a progress bar with throughput and ETA
//! ([`progress`]); `metrics.json` and `curves.png` after every period ([`metrics`], [`plot`]);
//! a checkpoint per period and `--resume`; early stopping; and the artifact-dir rules every
//! family shares ([`artifact`]); [`data`] builds data loaders, [`text`] reads corpora into token windows, and [`bench`](mod@bench) times training steps. [`eval`] scores a model on a held-out set, and [`parity`]
//! compares a forward and backward pass on two backends.

pub mod artifact;
pub mod bench;
pub mod data;
pub mod eval;
pub mod fit;
pub mod fused;
pub mod metrics;
pub mod optim;
pub mod parity;
pub mod plot;
pub mod progress;
pub mod task;
pub mod text;

pub use fit::{Budget, FitConfig, FitError, Fitted, fit, parameter_grads, parameter_paths};
pub use metrics::{Metrics, Record};
pub use optim::{LrGroup, OptimizerConfig, OptimizerKind, ScheduleConfig, ScheduleKind};
pub use task::{TaskKind, TaskOutput};
