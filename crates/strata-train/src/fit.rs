//! [`fit`]: supervised training with burn-train's `SupervisedTraining`, for any task, plus what
//! every Strata job wants around it: an artifact dir checked before the first batch, a
//! checkpoint per period and `--resume` from the last one, early stopping (restoring the best
//! period), the optimizers, schedules, parameter groups and freezing of [`optim`](crate::optim),
//! clipping of the global gradient norm, runs measured in epochs or in steps, and
//! `metrics.json` / `curves.png` kept up to date after every period.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::DatasetError;
use burn::module::{Module, ModuleDisplay};
use burn::tensor::Device;
use burn::train::checkpoint::{
    ComposedCheckpointingStrategy, KeepLastNCheckpoints, MetricCheckpointingStrategy,
};
use burn::train::metric::store::{Aggregate, Direction, Split};
use burn::train::metric::{LearningRateMetric, LossMetric};
use burn::train::{
    InferenceStep, Learner, MetricEarlyStoppingStrategy, StoppingCondition, SupervisedTraining,
    TrainOutput, TrainStep,
};
use serde::{Deserialize, Serialize};

use crate::artifact::{ArtifactError, RunOptions, clear_previous_run};
pub use crate::artifact::{checkpoint_dir, checkpoint_epochs};
use crate::metrics::Metrics;
use crate::optim::{
    LrGroup, OptimizerConfig, ScheduleConfig, clip_grad_norm, path_group, scheduler,
};
use crate::progress::{ProgressRenderer, RunLog};
use crate::task::TaskOutput;

/// How long a run is, and how often it is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    /// Whole passes over the training data, each followed by an evaluation.
    Epochs(usize),
    /// A number of optimizer steps, evaluated every `eval_every` steps: for streams without a
    /// natural epoch (a language model's corpus). Each period draws `eval_every` batches from
    /// the training loader, starting a new pass (a new shuffle) whenever one runs out.
    Steps {
        /// Optimizer steps in all.
        max_steps: usize,
        /// Steps between two evaluations (and checkpoints).
        eval_every: usize,
    },
}

impl Budget {
    /// Optimizer steps in one period, given the batches in one pass over the training data.
    pub fn steps_per_period(self, batches_per_pass: usize) -> usize {
        match self {
            Self::Epochs(_) => batches_per_pass.max(1),
            Self::Steps { eval_every, .. } => eval_every.max(1),
        }
    }

    /// Optimizer steps in the run.
    pub fn total_steps(self, batches_per_pass: usize) -> usize {
        match self {
            Self::Epochs(n) => n * batches_per_pass.max(1),
            Self::Steps { max_steps, .. } => max_steps,
        }
    }

    /// What a period is called: `epoch`, or `period` (of `eval_every` steps).
    pub fn unit(self) -> &'static str {
        match self {
            Self::Epochs(_) => "epoch",
            Self::Steps { .. } => "period",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Self::Epochs(_) => "--epochs",
            Self::Steps { .. } => "--max-steps",
        }
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Epochs(1) => write!(f, "1 epoch"),
            Self::Epochs(n) => write!(f, "{n} epochs"),
            Self::Steps {
                max_steps,
                eval_every,
            } => write!(f, "{max_steps} steps (evaluated every {eval_every})"),
        }
    }
}

/// Settings of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitConfig {
    /// How long the run is (in total, counting what a resumed run already did).
    pub budget: Budget,
    /// Items per training batch (sets the number of optimizer steps per epoch).
    pub batch_size: usize,
    /// The optimizer, its learning rate, weight decay and gradient clipping.
    pub optimizer: OptimizerConfig,
    /// How the learning rate moves over the run.
    pub schedule: ScheduleConfig,
    /// Parameters with their own learning rate (a fraction of the base rate).
    pub lr_groups: Vec<LrGroup>,
    /// Module paths that do not train: no gradient is computed for them, and their layers stay
    /// in inference mode (BatchNorm running statistics do not move, dropout is off).
    pub frozen: Vec<String>,
    /// Stop when the validation loss has not improved for this many periods.
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

impl FitConfig {
    /// A run of `epochs` epochs with Adam at `lr`, a constant rate, and nothing else.
    pub fn new(epochs: usize, batch_size: usize, lr: f64) -> Self {
        Self {
            budget: Budget::Epochs(epochs),
            batch_size,
            optimizer: OptimizerConfig::adam(lr),
            schedule: ScheduleConfig::new(crate::optim::ScheduleKind::Constant),
            lr_groups: Vec::new(),
            frozen: Vec::new(),
            patience: None,
            resume: false,
            seed: 0,
            backend: String::new(),
            model_type: String::new(),
        }
    }

    /// The run in words, as jobs announce it: `5 epochs, batch 64, adam lr 0.001, backend flex`.
    pub fn describe(&self) -> String {
        format!(
            "{}, batch {}, {} lr {}, backend {}",
            self.budget, self.batch_size, self.optimizer.kind, self.optimizer.lr, self.backend
        )
    }

    /// The seed of a run that starts after `resume_from` periods (`None`: a fresh run): a resumed
    /// run draws new random numbers (data order, dropout, augmentation) rather than repeating
    /// those of its first period.
    pub fn run_seed(&self, resume_from: Option<usize>) -> u64 {
        self.seed.wrapping_add(resume_from.unwrap_or(0) as u64)
    }

    /// Checks the settings that can be checked before any data is read.
    pub fn validate(&self) -> Result<(), FitError> {
        let invalid = |m: String| Err(FitError::Invalid(m));
        match self.budget {
            Budget::Epochs(0) => return invalid("--epochs must be at least 1".into()),
            Budget::Steps { max_steps: 0, .. } => {
                return invalid("--max-steps must be at least 1".into());
            }
            Budget::Steps { eval_every: 0, .. } => {
                return invalid("--eval-every must be at least 1".into());
            }
            _ => {}
        }
        if self.batch_size == 0 {
            return invalid("--batch-size must be at least 1".into());
        }
        self.optimizer.validate().map_err(FitError::Invalid)?;
        if self.schedule.gamma <= 0.0 || !(0.0..=1.0).contains(&self.schedule.min_lr_ratio) {
            return invalid("the schedule's gamma must be above 0 and its floor in [0, 1]".into());
        }
        if self.schedule.step_every == Some(0) {
            return invalid("the step schedule's interval must be at least 1 step".into());
        }
        for g in &self.lr_groups {
            if !(g.lr_scale >= 0.0 && g.lr_scale.is_finite()) {
                return invalid(format!(
                    "the learning-rate scale of '{}' must be 0 or more, not {}",
                    g.prefix, g.lr_scale
                ));
            }
        }
        if self.patience == Some(0) {
            return invalid(
                "--patience must be at least 1 (evaluations without a better validation loss)"
                    .into(),
            );
        }
        Ok(())
    }
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
    /// `--resume` of a run that already did its periods.
    #[error(
        "--resume: the checkpoint in {dir} is from {unit} {done}, which already reaches the {total} {unit}s asked for; pass a larger {flag} to train further"
    )]
    AlreadyDone {
        /// The artifact dir.
        dir: PathBuf,
        /// Period of the last checkpoint.
        done: usize,
        /// Periods asked for.
        total: usize,
        /// `epoch` or `period`.
        unit: &'static str,
        /// The option that sets the length: `--epochs` or `--max-steps`.
        flag: &'static str,
    },
    /// The artifact dir's files could not be read or written.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
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

/// Where a resumed run continues: the period of the last complete checkpoint, and the
/// optimizer steps done by then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint {
    /// The period (epoch) of the checkpoint.
    pub period: usize,
    /// Optimizer steps done up to it (from `metrics.json`; `None` if it has no record of them).
    pub steps_done: Option<usize>,
}

/// Checks everything that can be checked before data is read, and changes nothing on disk but
/// creating the artifact dir: the settings, that the dir can be written, and for `--resume`
/// that there is a checkpoint to continue and that the run it belongs to had compatible
/// options. `job` holds the family's options that a resumed run must share. Returns where a
/// resumed run continues from. [`fit`] calls it again; a job calls it first, so that bad
/// options fail before its data is read.
pub fn prepare(
    artifact_dir: &Path,
    config: &FitConfig,
    job: serde_json::Value,
) -> Result<Option<ResumePoint>, FitError> {
    config.validate()?;
    let resume = if config.resume {
        let point = resume_point(artifact_dir, config.budget)?;
        if let Some(before) = RunOptions::load(artifact_dir) {
            run_options(config, job).check_resume(&before, artifact_dir)?;
        }
        Some(point)
    } else {
        None
    };
    strata_data::fsutil::ensure_writable_dir(artifact_dir).map_err(|source| {
        FitError::ArtifactDir {
            dir: artifact_dir.to_path_buf(),
            source,
        }
    })?;
    Ok(resume)
}

fn run_options(config: &FitConfig, job: serde_json::Value) -> RunOptions {
    RunOptions {
        model_type: config.model_type.clone(),
        job,
        fit: config.clone(),
    }
}

/// Where `--resume` continues from: the last complete checkpoint in `artifact_dir`, which must
/// be short of the budget.
pub fn resume_point(artifact_dir: &Path, budget: Budget) -> Result<ResumePoint, FitError> {
    let period = *checkpoint_epochs(artifact_dir)
        .last()
        .ok_or_else(|| FitError::NoCheckpoint(checkpoint_dir(artifact_dir)))?;
    let steps_done = Metrics::load(artifact_dir).ok().and_then(|m| {
        m.history
            .iter()
            .find(|r| r.epoch == period)
            .map(|r| r.step)
            .filter(|&s| s > 0)
    });
    let done = match budget {
        Budget::Epochs(epochs) => (period >= epochs).then_some((period, epochs, "epoch")),
        Budget::Steps {
            max_steps,
            eval_every,
        } => {
            let steps = steps_done.unwrap_or(period * eval_every);
            (steps >= max_steps).then_some((steps, max_steps, "step"))
        }
    };
    if let Some((done, total, unit)) = done {
        return Err(FitError::AlreadyDone {
            dir: artifact_dir.to_path_buf(),
            done,
            total,
            unit,
            flag: budget.flag(),
        });
    }
    Ok(ResumePoint { period, steps_done })
}

/// Paths of `module`'s float parameters as PyTorch names them (`fc1.weight`,
/// `backbone.layer1.0.conv1.weight`, ...: without burn's enum variant names).
pub fn parameter_paths<M: Module>(module: &M) -> Vec<String> {
    let mut paths = Vec::new();
    visit_parameters(module, |path, _| paths.push(path));
    paths
}

/// The gradient of each float parameter of `module` in `grads`, by PyTorch path, in the order
/// of [`parameter_paths`] (parameters without a gradient are left out).
pub fn parameter_grads<M: Module>(
    module: &M,
    grads: &burn::tensor::Gradients,
) -> Vec<(String, burn::tensor::TensorData)> {
    let mut out = Vec::new();
    visit_parameters(module, |path, grad| {
        if let Some(g) = grad(grads) {
            out.push((path, g));
        }
    });
    out
}

/// A parameter's gradient in a set of gradients, as data.
type GradOf<'a> = &'a dyn Fn(&burn::tensor::Gradients) -> Option<burn::tensor::TensorData>;

/// Calls `f(path, grad_of)` for every float parameter of `module`, with its PyTorch path.
fn visit_parameters<M: Module>(module: &M, f: impl FnMut(String, GradOf<'_>)) {
    struct Paths<F> {
        stack: Vec<String>,
        f: F,
    }
    impl<F: FnMut(String, GradOf<'_>)> burn::module::ModuleVisitor for Paths<F> {
        fn enter_module(&mut self, name: &str, container: &str) {
            if !container.starts_with("Enum:") {
                self.stack.push(name.to_string());
            }
        }
        fn exit_module(&mut self, _name: &str, container: &str) {
            if !container.starts_with("Enum:") {
                self.stack.pop();
            }
        }
        fn visit_float<const D: usize>(
            &mut self,
            param: &burn::module::Param<burn::tensor::Tensor<D>>,
        ) {
            let grad =
                |grads: &burn::tensor::Gradients| param.val().grad(grads).map(|g| g.into_data());
            (self.f)(self.stack.join("."), &grad);
        }
    }
    module.visit(&mut Paths {
        stack: Vec::new(),
        f,
    });
}

/// Checks that every frozen path and learning-rate group names parameters of `module`.
fn check_paths<M: Module>(module: &M, config: &FitConfig) -> Result<(), FitError> {
    let paths = parameter_paths(module);
    let named = config.frozen.iter().map(|p| ("frozen part", p)).chain(
        config
            .lr_groups
            .iter()
            .map(|g| ("learning-rate group", &g.prefix)),
    );
    for (what, prefix) in named {
        let hit = !prefix.is_empty()
            && paths.iter().any(|p| {
                p == prefix
                    || p.strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('.'))
            });
        if !hit {
            let mut modules: Vec<&str> = paths
                .iter()
                .map(|p| p.split('.').next().unwrap_or(p))
                .collect();
            modules.dedup();
            return Err(FitError::Invalid(format!(
                "{what} '{prefix}' names no parameter of the model; its top-level modules are {}",
                modules.join(", ")
            )));
        }
    }
    Ok(())
}

/// The module burn-train trains: the family's model, plus the clipping of the global gradient
/// norm after every backward pass (burn clips each parameter on its own; PyTorch's
/// `clip_grad_norm_` clips them together). Its parameters live under `model.`.
#[derive(Module, Debug)]
pub struct Trainee<M: Module> {
    /// The family's model.
    pub model: M,
    /// Maximum global gradient norm.
    #[module(skip)]
    pub clip_grad_norm: Option<f64>,
}

/// Field name of the model inside [`Trainee`], the first part of every parameter path.
const ROOT: &str = "model";

impl<M, I, O> TrainStep for Trainee<M>
where
    M: TrainStep<Input = I, Output = O> + Module,
    I: Send + 'static,
    O: burn::train::metric::ItemLazy + 'static,
{
    type Input = I;
    type Output = O;

    fn step(&self, item: I) -> TrainOutput<O> {
        let mut out = self.model.step(item);
        if let Some(max_norm) = self.clip_grad_norm {
            clip_grad_norm(&self.model, &mut out.grads, max_norm);
        }
        out
    }
}

impl<M, I, O> InferenceStep for Trainee<M>
where
    M: InferenceStep<Input = I, Output = O> + Module,
    I: Send + 'static,
    O: burn::train::metric::ItemLazy + 'static,
{
    type Input = I;
    type Output = O;

    fn step(&self, item: I) -> O {
        self.model.step(item)
    }
}

/// How the optimizer steps of a run measured in steps fall into periods: period `p` (from 1)
/// after the `first` ones already done runs `eval_every` steps, the last one what is left.
#[derive(Debug, Clone, Copy)]
struct StepPlan {
    first: usize,
    steps_done: usize,
    max_steps: usize,
    eval_every: usize,
}

impl StepPlan {
    fn steps_in(&self, period: usize) -> usize {
        let before = self.steps_done + period.saturating_sub(self.first + 1) * self.eval_every;
        self.eval_every.min(self.max_steps.saturating_sub(before))
    }

    fn periods(&self) -> usize {
        self.first
            + self
                .max_steps
                .saturating_sub(self.steps_done)
                .div_ceil(self.eval_every)
    }
}

/// The training loader of a run measured in steps: each pass over it (a period) yields the next
/// period's batches of one endless stream, which goes through `inner` pass after pass (a new
/// shuffle each time, if `inner` shuffles). A thread feeds the stream, one batch ahead.
struct StepLoader<I> {
    inner: Arc<dyn DataLoader<I>>,
    plan: StepPlan,
    batch_size: usize,
    /// Periods handed out so far (counting those of the run that is resumed).
    period: Arc<AtomicUsize>,
    stream: Mutex<Option<Receiver<Result<I, DatasetError>>>>,
}

impl<I: Send + Sync + 'static> StepLoader<I> {
    fn new(
        inner: Arc<dyn DataLoader<I>>,
        plan: StepPlan,
        batch_size: usize,
        period: Arc<AtomicUsize>,
    ) -> Self {
        Self {
            inner,
            plan,
            batch_size,
            period,
            stream: Mutex::new(None),
        }
    }

    /// The same plan over another loader (on another device, or a part of this one).
    fn over(&self, inner: Arc<dyn DataLoader<I>>) -> Arc<dyn DataLoader<I>> {
        Arc::new(Self::new(
            inner,
            self.plan,
            self.batch_size,
            self.period.clone(),
        ))
    }

    /// The stream's receiving end, started on first use.
    fn next_batch(&self) -> Option<Result<I, DatasetError>> {
        let mut stream = self.stream.lock().expect("stream lock");
        let rx = stream.get_or_insert_with(|| {
            let (tx, rx) = sync_channel(1);
            let inner = self.inner.clone();
            std::thread::spawn(move || {
                loop {
                    let mut any = false;
                    for item in inner.iter() {
                        any = true;
                        if tx.send(item).is_err() {
                            return; // the run is over
                        }
                    }
                    if !any {
                        return; // an empty loader ends the stream
                    }
                }
            });
            rx
        });
        rx.recv().ok()
    }
}

struct StepIter<'a, I> {
    loader: &'a StepLoader<I>,
    done: usize,
    total: usize,
}

impl<I: Send + Sync + 'static> Iterator for StepIter<'_, I> {
    type Item = Result<I, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done >= self.total {
            return None;
        }
        self.done += 1;
        self.loader.next_batch()
    }
}

impl<I: Send + Sync + 'static> DataLoaderIterator<I> for StepIter<'_, I> {
    fn progress(&self) -> Progress {
        let bs = self.loader.batch_size;
        Progress::new(self.done * bs, self.total * bs, None)
    }
}

impl<I: Send + Sync + 'static> DataLoader<I> for StepLoader<I> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<I> + 'a> {
        let period = self.period.fetch_add(1, Ordering::SeqCst) + 1;
        Box::new(StepIter {
            loader: self,
            done: 0,
            total: self.plan.steps_in(period),
        })
    }

    fn num_items(&self) -> usize {
        self.plan.eval_every * self.batch_size
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<I>> {
        self.over(self.inner.to_device(device))
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<I>> {
        self.over(self.inner.slice(start, end))
    }
}

/// Trains `model` on `train`, evaluating on `valid` after every period, for any task whose
/// output implements [`TaskOutput`] (classification, language model, regression). A checkpoint
/// is written per period under `artifact_dir/checkpoint` (the last and the best validation
/// period are kept).
///
/// `model` must have been initialised on the autodiff training device (seeded by the caller);
/// the dataloaders are moved to the right devices by burn-train. In a run measured in
/// [`Budget::Steps`], `train` is drawn from period after period, reshuffled at each pass.
/// `job` holds the family's options that `--resume` checks (see [`prepare`]).
pub fn fit<M, I, O>(
    model: M,
    artifact_dir: &Path,
    train: Arc<dyn DataLoader<I>>,
    valid: Arc<dyn DataLoader<I>>,
    config: &FitConfig,
    job: serde_json::Value,
) -> Result<Fitted<M>, FitError>
where
    M: TrainStep<Input = I, Output = O>
        + InferenceStep<Input = I, Output = O>
        + Module
        + ModuleDisplay
        + 'static,
    I: Send + Sync + Clone + std::fmt::Debug + 'static,
    O: TaskOutput,
{
    let resume = prepare(artifact_dir, config, job.clone())?;
    check_paths(&model, config)?;
    let batches_per_pass = train.num_items().div_ceil(config.batch_size).max(1);
    let steps_per_period = config.budget.steps_per_period(batches_per_pass);
    let total_steps = config.budget.total_steps(batches_per_pass);
    if config.schedule.warmup_steps >= total_steps {
        return Err(FitError::Invalid(format!(
            "--warmup-steps {} leaves nothing of the run's {total_steps} steps: use fewer",
            config.schedule.warmup_steps
        )));
    }
    let done_periods = resume.map_or(0, |r| r.period);
    let steps_done = resume.map_or(0, |r| r.steps_done.unwrap_or(r.period * steps_per_period));

    // Nothing was changed on disk before this point.
    if resume.is_none() {
        // A fresh run: stale checkpoints and metric logs of an earlier run would mix in.
        clear_previous_run(artifact_dir);
    }
    // The dir is unfinished until the job writes its config.json again.
    crate::artifact::remove_config(artifact_dir)?;
    run_options(config, job).save(artifact_dir)?;

    let mut metrics = Metrics {
        model_type: config.model_type.clone(),
        task: Some(O::KIND),
        backend: config.backend.clone(),
        seed: config.seed,
        steps_per_period,
        ..Metrics::default()
    };
    if let Some(point) = resume {
        match Metrics::load(artifact_dir) {
            Ok(mut previous) => {
                previous.truncate_to(point.period);
                metrics.history = previous.history;
                metrics.step_loss = previous.step_loss;
                metrics.wall_seconds = previous.wall_seconds;
            }
            Err(e) => eprintln!(
                "warning: the history before period {} is lost: cannot read {}/metrics.json ({e})",
                point.period,
                artifact_dir.display()
            ),
        }
    }
    let unit = config.budget.unit();
    let log = Arc::new(Mutex::new(RunLog {
        dir: artifact_dir.to_path_buf(),
        title: format!("{} ({})", config.model_type, config.backend),
        columns: O::KIND.columns(),
        x_unit: if unit == "epoch" { "epoch" } else { "step" },
        metrics,
        write_error: None,
    }));

    let (train, periods): (Arc<dyn DataLoader<I>>, usize) = match config.budget {
        Budget::Epochs(epochs) => (train, epochs),
        Budget::Steps {
            max_steps,
            eval_every,
        } => {
            let plan = StepPlan {
                first: done_periods,
                steps_done,
                max_steps,
                eval_every,
            };
            let period = Arc::new(AtomicUsize::new(done_periods));
            let loader = StepLoader::new(train, plan, config.batch_size, period);
            (Arc::new(loader), plan.periods())
        }
    };

    let mut model = model;
    for path in &config.frozen {
        model = model.freeze_group(path_group("", path));
    }
    let model = Trainee {
        model,
        clip_grad_norm: config.optimizer.clip_grad_norm,
    };
    let scheduler = scheduler(
        &config.schedule,
        config.optimizer.lr,
        total_steps,
        &config.lr_groups,
        ROOT,
    );
    if let Some(ResumePoint { period, .. }) = resume {
        // burn-train panics on a checkpoint that does not fit; check it first.
        let path = checkpoint_dir(artifact_dir).join(format!("model-{period}.bpk"));
        model.clone().try_load_file(&path).map_err(|e| {
            FitError::Invalid(format!(
                "--resume: the checkpoint {} does not fit this model ({e}); use the options of that run, or another --artifact-dir",
                path.display()
            ))
        })?;
    }
    let learner = Learner::new(model, config.optimizer.init(), scheduler);

    let mut training = SupervisedTraining::new(artifact_dir, train, valid)
        .metric_train_numeric(LossMetric::new())
        .metric_valid_numeric(LossMetric::new())
        .metric_train_numeric(LearningRateMetric::new())
        .num_epochs(periods)
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
        .renderer(Box::new(ProgressRenderer::new(
            log.clone(),
            steps_done,
            unit,
        )))
        .with_application_logger(None);
    training = O::register(training);
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
    if let Some(ResumePoint { period, .. }) = resume {
        eprintln!("resuming from the checkpoint of {unit} {period} (step {steps_done})");
        training = training.checkpoint(period);
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
    metrics.stopped_early = last < periods;
    metrics.best_epoch = metrics.best_period();
    let mut model = result.model;
    // With early stopping, the weights kept are those of the best period (Keras'
    // `restore_best_weights`); otherwise the last period's, as a plain PyTorch loop returns.
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
    // Only the last period's checkpoint and the best one are worth keeping (earlier runs of a
    // resumed one included).
    crate::artifact::prune_checkpoints(artifact_dir, &[last, metrics.best_epoch.unwrap_or(last)]);
    let metrics = metrics.clone();
    metrics.save(artifact_dir).map_err(|e| {
        FitError::Training(format!(
            "cannot write {}/metrics.json: {e}",
            artifact_dir.display()
        ))
    })?;
    Ok(Fitted {
        model: model.model,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataloader::DataLoaderBuilder;
    use burn::data::dataloader::batcher::Batcher;
    use burn::data::dataset::InMemDataset;

    #[derive(Clone)]
    struct Ids;

    impl Batcher<usize, Vec<usize>> for Ids {
        fn batch(&self, items: Vec<usize>, _device: &Device) -> Vec<usize> {
            items
        }
    }

    fn periods(loader: &StepLoader<Vec<usize>>, n: usize) -> Vec<Vec<usize>> {
        (0..n)
            .map(|_| loader.iter().map(|b| b.unwrap()[0]).collect())
            .collect()
    }

    #[test]
    fn a_run_in_steps_goes_through_the_data_pass_after_pass() {
        let inner = DataLoaderBuilder::new(Ids)
            .batch_size(1)
            .num_workers(0)
            .build(InMemDataset::new((0..5).collect::<Vec<usize>>()));
        let plan = StepPlan {
            first: 0,
            steps_done: 0,
            max_steps: 11,
            eval_every: 3,
        };
        assert_eq!(plan.periods(), 4);
        let loader = StepLoader::new(inner, plan, 1, Arc::new(AtomicUsize::new(0)));
        // Periods of 3 steps do not divide the 5 items: each pass still sees every item once,
        // and the last period has the 2 steps left.
        assert_eq!(
            periods(&loader, 4),
            vec![vec![0, 1, 2], vec![3, 4, 0], vec![1, 2, 3], vec![4, 0]]
        );
    }

    #[test]
    fn a_resumed_run_in_steps_counts_from_the_steps_done() {
        // 10 steps were done in periods of 4 (4, 8, 10); now up to 20.
        let plan = StepPlan {
            first: 3,
            steps_done: 10,
            max_steps: 20,
            eval_every: 4,
        };
        assert_eq!(plan.periods(), 6);
        let steps: Vec<usize> = (4..=6).map(|p| plan.steps_in(p)).collect();
        assert_eq!(steps, vec![4, 4, 2]);
    }
}
