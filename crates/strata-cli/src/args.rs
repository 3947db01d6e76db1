//! Argument groups every job shares, flattened into each job's arguments: [`BackendArgs`],
//! [`FitArgs`] (every training option of the harness) and [`OutputArgs`]. A family sets its own
//! defaults on them with clap's `mut_arg` (e.g. `--epochs 5` for `train-vision`).

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Result;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, ValueEnum};
use strata_tensor::{BackendKind, select_device};
use strata_train::{
    Budget, FitConfig, LrGroup, OptimizerConfig, OptimizerKind, ScheduleConfig, ScheduleKind,
};

/// A clap parser for a choice whose names come from the library's table (`NAMES` + `FromStr`),
/// so that `--help` lists exactly what the code accepts.
pub fn choice<T>(names: &'static [&'static str]) -> impl TypedValueParser<Value = T>
where
    T: FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Debug,
{
    PossibleValuesParser::new(names).map(|s| s.parse::<T>().expect("the name is in the table"))
}

/// Which backend runs the job.
#[derive(Args, Debug, Clone)]
pub struct BackendArgs {
    /// Backend: flex, ndarray, tch, cuda or wgpu (must be compiled in; default: $STRATA_BACKEND, else flex).
    #[arg(long)]
    pub backend: Option<String>,
    /// GPU index for cuda, or LibTorch's CUDA device for tch (tch runs on the CPU without it).
    #[arg(long)]
    pub device_index: Option<usize>,
}

impl BackendArgs {
    /// The backend and its device.
    pub fn device(&self) -> Result<(BackendKind, burn::tensor::Device)> {
        Ok(select_device(self.backend.as_deref(), self.device_index)?)
    }
}

/// Output format of a job's final report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object on the last line of stdout.
    Json,
}

/// Where a job writes and how it reports.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Where weights, metrics and pictures are written (default: artifacts/DATASET-MODEL).
    #[arg(long)]
    pub artifact_dir: Option<PathBuf>,
    /// Output of the final report.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Every option of a training run (the harness's [`FitConfig`]).
#[derive(Args, Debug, Clone)]
pub struct FitArgs {
    /// Epochs to train (in total, also with --resume).
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Train for this many optimizer steps instead of epochs (evaluating every --eval-every).
    #[arg(long, conflicts_with = "epochs")]
    pub max_steps: Option<usize>,
    /// With --max-steps: steps between two evaluations and checkpoints.
    #[arg(long, default_value_t = 500, requires = "max_steps")]
    pub eval_every: usize,
    /// Items per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Optimizer.
    #[arg(long, default_value = "adam", value_parser = choice::<OptimizerKind>(OptimizerKind::NAMES))]
    pub optimizer: OptimizerKind,
    /// Base learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Weight decay (L2 for adam and sgd, decoupled for adamw; default 0, or 0.01 for adamw).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.0)]
    pub momentum: f64,
    /// SGD with Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    /// Clip the global gradient norm to this value (as torch.nn.utils.clip_grad_norm_).
    #[arg(long)]
    pub clip_grad_norm: Option<f64>,
    /// Learning-rate schedule after the warm-up (step: ×0.1 at each third of the run).
    #[arg(long, default_value = "cosine", value_parser = choice::<ScheduleKind>(ScheduleKind::NAMES))]
    pub schedule: ScheduleKind,
    /// Optimizer steps of linear learning-rate warm-up.
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: usize,
    /// Stop after this many evaluations without a better validation loss (restoring the best weights).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Seed of weights, dropout, data order and augmentation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Continue from the last checkpoint in the artifact dir.
    #[arg(long)]
    pub resume: bool,
}

impl FitArgs {
    /// The harness's settings; the family adds parameter groups, frozen parts and its model type.
    pub fn config(&self, backend: BackendKind) -> FitConfig {
        let mut optimizer = OptimizerConfig::new(self.optimizer, self.lr);
        optimizer.weight_decay = self.weight_decay;
        optimizer.momentum = self.momentum;
        optimizer.nesterov = self.nesterov;
        optimizer.clip_grad_norm = self.clip_grad_norm;
        let mut schedule = ScheduleConfig::new(self.schedule);
        schedule.warmup_steps = self.warmup_steps;
        FitConfig {
            budget: match self.max_steps {
                Some(max_steps) => Budget::Steps {
                    max_steps,
                    eval_every: self.eval_every,
                },
                None => Budget::Epochs(self.epochs),
            },
            batch_size: self.batch_size,
            optimizer,
            schedule,
            lr_groups: Vec::<LrGroup>::new(),
            frozen: Vec::new(),
            patience: self.patience,
            resume: self.resume,
            seed: self.seed,
            backend: backend.name().to_string(),
            model_type: String::new(),
        }
    }
}

/// A clap error as one line (`--help` and `--version` are printed as they are).
pub fn one_line(err: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let context = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => Some(v.join(", ")),
        _ => None,
    };
    if let (Some(arg), Some(value), Some(valid)) = (
        context(ContextKind::InvalidArg),
        context(ContextKind::InvalidValue),
        context(ContextKind::ValidValue),
    ) {
        let flag = arg.split_whitespace().next().unwrap_or(&arg).to_string();
        return format!("unknown {flag} '{value}': choose {valid}");
    }
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let mut line = first.trim_start_matches("error: ").to_string();
    if let Some(tip) = rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("tip: "))
    {
        line += &format!(" ({tip})");
    }
    line
}
