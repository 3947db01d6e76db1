//! [`fit`]: supervised training with burn-train's `SupervisedTraining`, plus the things every
//! Strata job wants around it — an artifact dir checked before the first batch, a checkpoint per
//! epoch and `--resume` from the last one, early stopping (restoring the best epoch), an LR schedule,
//! the weights at the end, and `metrics.json` / `curves.png` kept up to date after every epoch.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::DataLoader;
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::lr_scheduler::step::StepLrSchedulerConfig;
use burn::module::Module;
use burn::optim::AdamConfig;
use burn::train::checkpoint::{
    ComposedCheckpointingStrategy, KeepLastNCheckpoints, MetricCheckpointingStrategy,
};
use burn::train::metric::store::{Aggregate, Direction, Split};
use burn::train::metric::{AccuracyMetric, LearningRateMetric, LossMetric};
use burn::train::{
    ClassificationOutput, InferenceStep, Learner, MetricEarlyStoppingStrategy, StoppingCondition,
    SupervisedTraining, TrainStep,
};

use crate::metrics::Metrics;
use crate::progress::{ProgressRenderer, RunLog};

/// How the learning rate moves over the run (it is updated after every optimizer step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrSchedule {
    /// The same rate throughout.
    Constant,
    /// Cosine annealing from `lr` to `lr / 100` over all steps (Loshchilov and Hutter, 2017).
    Cosine,
    /// Multiply by `gamma` every `every_epochs` epochs.
    Step {
        /// Epochs between two decays.
        every_epochs: usize,
        /// Decay factor.
        gamma: f64,
    },
}

impl LrSchedule {
    /// Parses `constant`, `cosine` or `step` (step: ×0.1 every `max(1, epochs/3)` epochs).
    pub fn parse(name: &str, epochs: usize) -> Option<Self> {
        match name {
            "constant" => Some(Self::Constant),
            "cosine" => Some(Self::Cosine),
            "step" => Some(Self::Step {
                every_epochs: (epochs / 3).max(1),
                gamma: 0.1,
            }),
            _ => None,
        }
    }

    fn scheduler(
        self,
        lr: f64,
        total_steps: usize,
        steps_per_epoch: usize,
    ) -> Result<ModuleLrScheduler, String> {
        match self {
            Self::Constant => Ok(lr.into()),
            Self::Cosine => CosineAnnealingLrSchedulerConfig::new(lr, total_steps.max(1))
                .with_min_lr(lr / 100.0)
                .init(),
            Self::Step {
                every_epochs,
                gamma,
            } => StepLrSchedulerConfig::new(lr, (every_epochs * steps_per_epoch).max(1))
                .with_gamma(gamma)
                .init(),
        }
    }
}

/// Settings of a training run.
#[derive(Debug, Clone, PartialEq)]
pub struct FitConfig {
    /// Epochs to train (in total, counting those a resumed run already did).
    pub epochs: usize,
    /// Items per training batch (sets the number of optimizer steps per epoch).
    pub batch_size: usize,
    /// Base learning rate of Adam.
    pub lr: f64,
    /// How the learning rate changes over the run.
    pub schedule: LrSchedule,
    /// Stop when the validation loss has not improved for this many epochs.
    pub patience: Option<usize>,
    /// Continue from the last checkpoint in the artifact dir.
    pub resume: bool,
    /// Seed of the run (recorded in `metrics.json`; the caller seeds device and data).
    pub seed: u64,
    /// Backend name (recorded in `metrics.json`).
    pub backend: String,
    /// `model_type` of the artifact dir (recorded in `metrics.json`).
    pub model_type: String,
}

/// Why a run could not be trained.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// The artifact dir is not writable.
    #[error("cannot write to artifact dir {dir}: {source}; choose another --artifact-dir")]
    ArtifactDir {
        /// The dir.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `--resume` without a checkpoint.
    #[error(
        "--resume: no checkpoint in {0}; train without --resume first (or point --artifact-dir at a run that has one)"
    )]
    NoCheckpoint(PathBuf),
    /// `--resume` of a run that already did its epochs.
    #[error(
        "--resume: the checkpoint in {dir} is from epoch {done}, which already reaches --epochs {epochs}; pass a larger --epochs to train further"
    )]
    AlreadyDone {
        /// The artifact dir.
        dir: PathBuf,
        /// Epoch of the last checkpoint.
        done: usize,
        /// Epochs asked for.
        epochs: usize,
    },
    /// The settings are invalid.
    #[error("{0}")]
    Invalid(String),
    /// burn-train reported an error.
    #[error("training failed: {0}")]
    Training(String),
}

/// A trained model and its history.
#[derive(Debug)]
pub struct Fitted<M> {
    /// The weights of the last epoch, or with early stopping of the best one (lowest validation loss).
    pub model: M,
    /// The history, as written to `metrics.json`.
    pub metrics: Metrics,
}

/// Folder of the per-epoch checkpoints inside an artifact dir.
pub fn checkpoint_dir(artifact_dir: &Path) -> PathBuf {
    artifact_dir.join("checkpoint")
}

/// Adam as PyTorch defines it (`betas = (0.9, 0.999)`, `eps = 1e-8`; burn's default epsilon
/// is 1e-5), the optimizer of every Strata training run.
pub fn adam() -> AdamConfig {
    AdamConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
}

/// Checks everything that can be checked before data is read — the settings, `--resume`, and
/// that the artifact dir can be written — and returns the epoch a resumed run continues from.
pub fn prepare(artifact_dir: &Path, config: &FitConfig) -> Result<Option<usize>, FitError> {
    config.validate()?;
    let resume_from = if config.resume {
        Some(resume_epoch(artifact_dir, config.epochs)?)
    } else {
        None
    };
    strata_tensor::fsutil::ensure_writable_dir(artifact_dir).map_err(|source| {
        FitError::ArtifactDir {
            dir: artifact_dir.to_path_buf(),
            source,
        }
    })?;
    Ok(resume_from)
}

/// Removes what an earlier run left in `artifact_dir`: checkpoints (`checkpoint/*-N.bpk`) and
/// burn-train's metric logs (`train/epoch-N`, `valid/epoch-N`). Nothing else is touched.
fn clear_previous_run(artifact_dir: &Path) {
    let entries = |dir: &Path| -> Vec<(PathBuf, String)> {
        fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| (e.path(), e.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let numbered = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let checkpoints = checkpoint_dir(artifact_dir);
    for (path, name) in entries(&checkpoints) {
        let ours = ["model-", "optim-", "scheduler-"].iter().any(|p| {
            name.strip_prefix(p)
                .and_then(|r| r.strip_suffix(".bpk"))
                .is_some_and(numbered)
        });
        if ours {
            let _ = fs::remove_file(path);
        }
    }
    let _ = fs::remove_dir(&checkpoints); // only if now empty
    for split in ["train", "valid"] {
        let dir = artifact_dir.join(split);
        for (path, name) in entries(&dir) {
            if name.strip_prefix("epoch-").is_some_and(numbered) && path.is_dir() {
                let _ = fs::remove_dir_all(path);
            }
        }
        let _ = fs::remove_dir(&dir);
    }
}

/// Epochs with a complete checkpoint (model, optimizer and scheduler), ascending.
pub fn checkpoint_epochs(artifact_dir: &Path) -> Vec<usize> {
    let dir = checkpoint_dir(artifact_dir);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut epochs: Vec<usize> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("model-")?
                .strip_suffix(".bpk")?
                .parse()
                .ok()
        })
        .filter(|epoch| {
            ["optim", "scheduler"]
                .iter()
                .all(|p| dir.join(format!("{p}-{epoch}.bpk")).is_file())
        })
        .collect();
    epochs.sort_unstable();
    epochs
}

impl FitConfig {
    /// Checks the settings that can be checked before any data is read.
    pub fn validate(&self) -> Result<(), FitError> {
        if self.epochs == 0 {
            return Err(FitError::Invalid("--epochs must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err(FitError::Invalid("--batch-size must be at least 1".into()));
        }
        if !(self.lr > 0.0 && self.lr <= 1.0) {
            return Err(FitError::Invalid(format!(
                "--lr {} is out of range: use a learning rate in (0, 1]",
                self.lr
            )));
        }
        if self.patience == Some(0) {
            return Err(FitError::Invalid(
                "--patience must be at least 1 (epochs without a better validation loss)".into(),
            ));
        }
        Ok(())
    }
}

/// The epoch `--resume` continues from: the last complete checkpoint in `artifact_dir`, which
/// must be below `epochs`.
pub fn resume_epoch(artifact_dir: &Path, epochs: usize) -> Result<usize, FitError> {
    let last = *checkpoint_epochs(artifact_dir)
        .last()
        .ok_or_else(|| FitError::NoCheckpoint(checkpoint_dir(artifact_dir)))?;
    if last >= epochs {
        return Err(FitError::AlreadyDone {
            dir: artifact_dir.to_path_buf(),
            done: last,
            epochs,
        });
    }
    Ok(last)
}

/// Trains a classifier: Adam, cross-entropy loss and accuracy on both splits, a checkpoint per
/// epoch under `artifact_dir/checkpoint` (the last and the best validation epoch are kept).
///
/// `model` must have been initialised on the autodiff training device (seeded by the caller); the
/// dataloaders are moved to the right devices by burn-train.
pub fn fit<M, I>(
    model: M,
    artifact_dir: &Path,
    train: Arc<dyn DataLoader<I>>,
    valid: Arc<dyn DataLoader<I>>,
    config: &FitConfig,
) -> Result<Fitted<M>, FitError>
where
    M: TrainStep<Input = I, Output = ClassificationOutput>
        + InferenceStep<Input = I, Output = ClassificationOutput>
        + Module
        + std::fmt::Display
        + 'static,
    I: Send + Clone + std::fmt::Debug + 'static,
{
    let resume_from = prepare(artifact_dir, config)?;
    if resume_from.is_none() {
        // A fresh run: stale checkpoints and metric logs of an earlier run would mix in.
        clear_previous_run(artifact_dir);
    }

    let mut metrics = Metrics {
        model_type: config.model_type.clone(),
        backend: config.backend.clone(),
        seed: config.seed,
        ..Metrics::default()
    };
    if let Some(done) = resume_from {
        match Metrics::load(artifact_dir) {
            Ok(previous) => {
                metrics.history = previous
                    .history
                    .into_iter()
                    .filter(|r| r.epoch <= done)
                    .collect();
                metrics.wall_seconds = previous.wall_seconds;
            }
            Err(e) => eprintln!(
                "warning: the history of epochs 1-{done} is lost: cannot read {}/metrics.json ({e})",
                artifact_dir.display()
            ),
        }
    }
    let log = Arc::new(Mutex::new(RunLog {
        dir: artifact_dir.to_path_buf(),
        title: format!("{} ({})", config.model_type, config.backend),
        metrics,
        write_error: None,
    }));

    let steps_per_epoch = train.num_items().div_ceil(config.batch_size).max(1);
    let scheduler = config
        .schedule
        .scheduler(config.lr, steps_per_epoch * config.epochs, steps_per_epoch)
        .map_err(FitError::Invalid)?;
    if let Some(epoch) = resume_from {
        // burn-train panics on a checkpoint that does not fit; check it first.
        let path = checkpoint_dir(artifact_dir).join(format!("model-{epoch}.bpk"));
        model.clone().try_load_file(&path).map_err(|e| {
            FitError::Invalid(format!(
                "--resume: the checkpoint {} does not fit this model ({e}); use the --model and --dataset of that run, or another --artifact-dir",
                path.display()
            ))
        })?;
    }
    let learner = Learner::new(model, adam().init(), scheduler);

    let mut training = SupervisedTraining::new(artifact_dir, train, valid)
        .metrics((LossMetric::new(), AccuracyMetric::new()))
        .metric_train_numeric(LearningRateMetric::new())
        .num_epochs(config.epochs)
        .with_default_checkpointers()
        .with_checkpointing_strategy(
            ComposedCheckpointingStrategy::builder()
                .add(KeepLastNCheckpoints::new(1))
                .add(MetricCheckpointingStrategy::new(
                    &LossMetric::new(),
                    Aggregate::Mean,
                    Direction::Lowest,
                    Split::Valid,
                ))
                .build(),
        )
        .renderer(Box::new(ProgressRenderer::new(log.clone())))
        .with_application_logger(None);
    if let Some(patience) = config.patience {
        training = training.early_stopping(MetricEarlyStoppingStrategy::new(
            &LossMetric::new(),
            Aggregate::Mean,
            Direction::Lowest,
            Split::Valid,
            StoppingCondition::NoImprovementSince {
                n_epochs: patience.max(1),
            },
        ));
    }
    if let Some(epoch) = resume_from {
        eprintln!("resuming from the checkpoint of epoch {epoch}");
        training = training.checkpoint(epoch);
    }

    let started = Instant::now();
    let result = training.launch(learner);
    if let Some(err) = &result.error {
        return Err(FitError::Training(err.to_string()));
    }
    let mut log = log.lock().expect("run log lock");
    if let Some(e) = log.write_error.take() {
        return Err(FitError::Training(e));
    }
    let metrics = &mut log.metrics;
    metrics.wall_seconds += started.elapsed().as_secs_f64();
    let last = metrics.history.last().map_or(0, |r| r.epoch);
    metrics.stopped_early = last < config.epochs;
    metrics.best_epoch = metrics
        .history
        .iter()
        .filter(|r| r.valid_loss.is_some_and(f64::is_finite))
        .min_by(|a, b| a.valid_loss.partial_cmp(&b.valid_loss).expect("finite"))
        .map(|r| r.epoch);
    let mut model = result.model;
    // With early stopping, the weights kept are those of the best epoch (Keras'
    // `restore_best_weights`); otherwise the last epoch's, as a plain PyTorch loop returns.
    if config.patience.is_some()
        && let Some(best) = metrics.best_epoch.filter(|&b| b != last)
    {
        let path = checkpoint_dir(artifact_dir).join(format!("model-{best}.bpk"));
        model = model.try_load_file(&path).map_err(|e| {
            FitError::Training(format!(
                "cannot load the best checkpoint {}: {e}",
                path.display()
            ))
        })?;
    }
    let metrics = metrics.clone();
    Ok(Fitted { model, metrics })
}
