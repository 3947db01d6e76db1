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
    /// Backend (must be compiled in; `cargo xtask` builds it in) [default: $STRATA_BACKEND, else flex]
    #[arg(long, value_parser = PossibleValuesParser::new(BackendKind::NAMES))]
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

/// How a job reports.
#[derive(Args, Debug, Clone)]
pub struct FormatArgs {
    /// Output of the final report.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Where a training job writes and how it reports.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Where weights, metrics and pictures are written [default: the job's, e.g. artifacts/mnist-simple-cnn]
    #[arg(long)]
    pub artifact_dir: Option<PathBuf>,
    #[command(flatten)]
    pub report: FormatArgs,
}

/// Where the datasets are.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Root that holds the datasets (mnist/, fashion-mnist/, ...; the layout of shared/datasets)
    #[arg(long, env = "STRATA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
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
    /// Do not train the module at this path (e.g. conv1): no gradient, BatchNorm statistics fixed. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub freeze: Vec<String>,
    /// Train the module at PATH at SCALE × the learning rate (e.g. conv1=0.1). Repeatable.
    #[arg(long, value_name = "PATH=SCALE", value_parser = parse_lr_group)]
    pub lr_scale: Vec<LrGroup>,
}

/// Parses `PATH=SCALE` of `--lr-scale`.
fn parse_lr_group(s: &str) -> Result<LrGroup, String> {
    let (prefix, scale) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not PATH=SCALE (e.g. conv1=0.1)"))?;
    let lr_scale = scale
        .parse::<f64>()
        .map_err(|_| format!("'{scale}' in '{s}' is not a number"))?;
    Ok(LrGroup {
        prefix: prefix.to_string(),
        lr_scale,
    })
}

impl FitArgs {
    /// The harness's settings (the job adds its model type).
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
            lr_groups: self.lr_scale.clone(),
            frozen: self.freeze.clone(),
            patience: self.patience,
            resume: self.resume,
            seed: self.seed,
            backend: backend.name().to_string(),
            model_type: String::new(),
        }
    }
}

/// A clap error as one line (`--help` and `--version` are printed as they are): an invalid
/// choice lists the choices, and a message that clap spreads over several lines (the missing
/// arguments, a tip) is joined.
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
    let mut parts: Vec<&str> = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.trim_start_matches("error: "));
        }
    }
    parts.join(" ")
}
