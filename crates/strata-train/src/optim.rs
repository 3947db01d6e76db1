//! Optimizers, learning-rate schedules with warm-up, parameter groups and gradient clipping,
//! each defined as PyTorch defines it, so that a recipe written for PyTorch means the same here.
//!
//! - [`OptimizerConfig`]: Adam, AdamW or SGD (momentum, Nesterov), weight decay, clipping of the
//!   global gradient norm (`torch.nn.utils.clip_grad_norm_`).
//! - [`ScheduleConfig`]: a linear warm-up, then constant, cosine or step decay, stepped once per
//!   optimizer step ([`Schedule`] is a burn `LrScheduler`).
//! - [`LrGroup`]: parameters under a module path get their own learning rate (a fraction of the
//!   base rate), e.g. a pretrained backbone at a tenth of the head's rate.

use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use burn::optim::{GradientsParams, LearningRate, ModuleOptimizer, SgdConfig};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use strata_tensor::named_enum;

use crate::fused::{FusedAdam, FusedSgd};

/// Which optimizer updates the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (Kingma and Ba, 2015); weight decay is added to the gradient (L2), as in `torch.optim.Adam`.
    Adam,
    /// AdamW (Loshchilov and Hutter, 2019): decoupled weight decay, as in `torch.optim.AdamW`.
    AdamW,
    /// Stochastic gradient descent with optional momentum and Nesterov momentum, as in `torch.optim.SGD`.
    Sgd,
}

named_enum!(OptimizerKind, "--optimizer", { Adam => "adam", AdamW => "adamw", Sgd => "sgd" });

/// The optimizer of a run and its settings; defaults are PyTorch's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    /// Which optimizer.
    pub kind: OptimizerKind,
    /// Base learning rate (the schedule and the parameter groups scale it).
    pub lr: f64,
    /// Weight decay; `None` takes PyTorch's default (0.01 for AdamW, 0 otherwise).
    pub weight_decay: Option<f64>,
    /// SGD momentum (0 = plain SGD).
    pub momentum: f64,
    /// SGD with Nesterov momentum (needs `momentum > 0`).
    pub nesterov: bool,
    /// Adam's and AdamW's betas.
    pub betas: (f64, f64),
    /// Adam's and AdamW's epsilon (PyTorch's 1e-8; burn's default is 1e-5).
    pub eps: f64,
    /// Rescale all gradients together so that their global L2 norm is at most this.
    pub clip_grad_norm: Option<f64>,
}

impl OptimizerConfig {
    /// `kind` with PyTorch's defaults and learning rate `lr`.
    pub fn new(kind: OptimizerKind, lr: f64) -> Self {
        Self {
            kind,
            lr,
            weight_decay: None,
            momentum: 0.0,
            nesterov: false,
            betas: (0.9, 0.999),
            eps: 1e-8,
            clip_grad_norm: None,
        }
    }

    /// Adam with PyTorch's defaults.
    pub fn adam(lr: f64) -> Self {
        Self::new(OptimizerKind::Adam, lr)
    }

    /// The weight decay in force.
    pub fn effective_weight_decay(&self) -> f64 {
        self.weight_decay.unwrap_or(match self.kind {
            OptimizerKind::AdamW => 0.01,
            OptimizerKind::Adam | OptimizerKind::Sgd => 0.0,
        })
    }

    /// Checks the settings; the message names the option to fix.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.lr > 0.0 && self.lr <= 1.0) {
            return Err(format!(
                "--lr {} is out of range: use a learning rate in (0, 1]",
                self.lr
            ));
        }
        let wd = self.effective_weight_decay();
        if !(wd >= 0.0 && wd.is_finite()) {
            return Err(format!("--weight-decay {wd} must be 0 or more"));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(format!("--momentum {} must be in [0, 1)", self.momentum));
        }
        if self.kind != OptimizerKind::Sgd && (self.momentum > 0.0 || self.nesterov) {
            return Err(format!(
                "--momentum and --nesterov are options of --optimizer sgd, not {}",
                self.kind
            ));
        }
        if self.nesterov && self.momentum == 0.0 {
            return Err("--nesterov needs --momentum above 0 (PyTorch's rule)".into());
        }
        if let Some(c) = self.clip_grad_norm
            && !(c > 0.0 && c.is_finite())
        {
            return Err(format!("--clip-grad-norm {c} must be above 0"));
        }
        Ok(())
    }

    /// The optimizer: Adam, AdamW and SGD with momentum as the one-pass steps of
    /// [`crate::fused`], plain SGD as Burn's. Clipping is not part of it: [`fit`](crate::fit::fit) clips the global
    /// norm itself ([`clip_grad_norm`]), since burn clips each parameter on its own.
    pub fn init(&self) -> ModuleOptimizer {
        let wd = self.effective_weight_decay();
        let decay = (wd > 0.0).then(|| WeightDecayConfig::new(wd as f32));
        match self.kind {
            OptimizerKind::Adam | OptimizerKind::AdamW => ModuleOptimizer::from(FusedAdam {
                beta_1: self.betas.0 as f32,
                beta_2: self.betas.1 as f32,
                epsilon: self.eps as f32,
                weight_decay: wd as f32,
                decoupled: self.kind == OptimizerKind::AdamW,
            }),
            OptimizerKind::Sgd if self.momentum > 0.0 => ModuleOptimizer::from(FusedSgd {
                momentum: self.momentum as f32,
                nesterov: self.nesterov,
                weight_decay: wd as f32,
            }),
            OptimizerKind::Sgd => SgdConfig::new().with_weight_decay(decay).init(),
        }
    }
}

/// The shape of the learning rate after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// The base rate throughout.
    Constant,
    /// Cosine annealing to `min_lr_ratio × lr` at the last step (`CosineAnnealingLR`).
    Cosine,
    /// Multiply by `gamma` every `step_every` steps (`StepLR`).
    Step,
}

named_enum!(ScheduleKind, "--schedule", { Constant => "constant", Cosine => "cosine", Step => "step" });

/// How the learning rate moves over a run of `total_steps` optimizer steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    /// The shape after the warm-up.
    pub kind: ScheduleKind,
    /// Steps of linear warm-up: step `t < warmup` uses `lr × (t + 1) / warmup`.
    pub warmup_steps: usize,
    /// Cosine: the final rate as a fraction of the base rate.
    pub min_lr_ratio: f64,
    /// Step: the decay factor.
    pub gamma: f64,
    /// Step: steps between two decays; `None` decays at each third of the steps after warm-up.
    pub step_every: Option<usize>,
}

impl ScheduleConfig {
    /// `kind` with no warm-up, cosine down to 1 % and step decays of ×0.1.
    pub fn new(kind: ScheduleKind) -> Self {
        Self {
            kind,
            warmup_steps: 0,
            min_lr_ratio: 0.01,
            gamma: 0.1,
            step_every: None,
        }
    }

    /// The schedule for a base rate `lr` over `total_steps` steps.
    pub fn build(&self, lr: f64, total_steps: usize) -> Schedule {
        Schedule {
            config: self.clone(),
            lr,
            total_steps: total_steps.max(1),
            step: 0,
        }
    }
}

/// A learning-rate schedule as a pure function of the step, for burn's learner.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    config: ScheduleConfig,
    lr: f64,
    total_steps: usize,
    step: usize,
}

impl Schedule {
    /// The rate of optimizer step `t` (from 0).
    pub fn lr_at(&self, t: usize) -> f64 {
        let c = &self.config;
        let warmup = c.warmup_steps.min(self.total_steps);
        if t < warmup {
            return self.lr * (t + 1) as f64 / warmup as f64;
        }
        let t = t - warmup;
        let span = (self.total_steps - warmup).max(1);
        match c.kind {
            ScheduleKind::Constant => self.lr,
            ScheduleKind::Cosine => {
                let min = self.lr * c.min_lr_ratio;
                let t = t.min(span);
                min + 0.5
                    * (self.lr - min)
                    * (1.0 + (std::f64::consts::PI * t as f64 / span as f64).cos())
            }
            ScheduleKind::Step => {
                let every = c.step_every.unwrap_or(span.div_ceil(3)).max(1);
                self.lr * c.gamma.powi((t / every) as i32)
            }
        }
    }
}

impl LrScheduler for Schedule {
    fn step(&mut self) -> LearningRate {
        let lr = self.lr_at(self.step);
        self.step += 1;
        lr
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new().with_scalar("step", self.step as u64)
    }

    fn load_record(&mut self, record: LrSchedulerRecord) {
        if let Some(step) = record.scalar::<u64>("step") {
            self.step = step as usize;
        }
    }
}

/// Parameters under a module path, trained at `lr_scale ×` the base learning rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrGroup {
    /// Module path (as in the weights' keys), e.g. `backbone` or `layer4`; the group holds that
    /// module's parameters, or that parameter.
    pub prefix: String,
    /// Factor on the base learning rate (0.1: a tenth).
    pub lr_scale: f64,
}

/// The parameters at or under module path `prefix` of the module trained by `fit` (whose
/// parameters live under `root`, the wrapper's field name). Paths are PyTorch's: the variant
/// names of enum modules (`SimpleCnn` in `VisionNet::SimpleCnn`), which burn puts in its paths,
/// are skipped, so `conv1` names `SimpleCnn.conv1.weight` too.
pub(crate) fn path_group(root: &str, prefix: &str) -> ParamGroup {
    // burn's enum variants are CamelCase, fields snake_case: any number of variant segments may
    // come between two parts of the path.
    const VARIANTS: &str = r"(?:[A-Z][A-Za-z0-9]*\.)*";
    let parts: Vec<String> = [root, prefix]
        .iter()
        .flat_map(|p| p.split('.'))
        .filter(|p| !p.is_empty())
        .map(escape)
        .collect();
    let pattern = format!(
        "^{VARIANTS}{}(\\.|$)",
        parts.join(&format!("\\.{VARIANTS}"))
    );
    ParamGroup::from_regex(&pattern).expect("escaped path is a valid regex")
}

/// `s` with every character but letters, digits and `_` escaped for a regex.
fn escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = !(c.is_ascii_alphanumeric() || c == '_');
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// The scheduler of a run: `schedule` for every parameter, scaled for each group.
pub(crate) fn scheduler(
    schedule: &ScheduleConfig,
    lr: f64,
    total_steps: usize,
    groups: &[LrGroup],
    root: &str,
) -> ModuleLrScheduler {
    let mut scheduler = ModuleLrScheduler::new(schedule.build(lr, total_steps));
    for g in groups {
        scheduler = scheduler.with_group(
            path_group(root, &g.prefix),
            schedule.build(lr * g.lr_scale, total_steps),
        );
    }
    scheduler
}

/// Rescales `grads` of `module` in place so that their global L2 norm is at most `max_norm`,
/// as `torch.nn.utils.clip_grad_norm_` does (`coef = max_norm / (norm + 1e-6)`, capped at 1).
/// Returns the norm before clipping.
pub fn clip_grad_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    struct SumSquares<'a> {
        grads: &'a GradientsParams,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.square().sum();
                self.total = Some(match self.total.take() {
                    Some(t) => t + s,
                    None => s,
                });
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        coef: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.coef));
            }
        }
    }
    let mut sum = SumSquares { grads, total: None };
    module.visit(&mut sum);
    let Some(total) = sum.total else {
        return 0.0;
    };
    let norm = total.into_scalar::<f64>().sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        module.visit(&mut Scale { grads, coef });
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lrs(config: &ScheduleConfig, lr: f64, total: usize) -> Vec<f64> {
        let mut s = config.build(lr, total);
        (0..total).map(|_| s.step()).collect()
    }

    #[test]
    fn names_parse_and_list_every_choice() {
        assert_eq!(
            "adamw".parse::<OptimizerKind>().unwrap(),
            OptimizerKind::AdamW
        );
        let err = "rmsprop".parse::<OptimizerKind>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown --optimizer 'rmsprop': choose adam, adamw, sgd"
        );
        for name in ScheduleKind::NAMES {
            assert_eq!(name.parse::<ScheduleKind>().unwrap().name(), *name);
        }
    }

    #[test]
    fn step_schedule_decays_at_each_third_of_the_run() {
        // 5 epochs of 10 steps: ×0.1 after steps 17 and 34, not every epoch.
        let got = lrs(&ScheduleConfig::new(ScheduleKind::Step), 1.0, 50);
        assert_eq!(got[16], 1.0);
        assert!((got[17] - 0.1).abs() < 1e-12);
        assert!((got[33] - 0.1).abs() < 1e-12);
        assert!((got[34] - 0.01).abs() < 1e-12);
        assert!((got[49] - 0.01).abs() < 1e-12);
    }

    #[test]
    fn warmup_rises_linearly_then_cosine_falls_to_its_floor() {
        let mut c = ScheduleConfig::new(ScheduleKind::Cosine);
        c.warmup_steps = 4;
        let got = lrs(&c, 0.1, 14);
        for (t, want) in [0.025, 0.05, 0.075, 0.1].iter().enumerate() {
            assert!((got[t] - want).abs() < 1e-12, "{t}: {}", got[t]);
        }
        // After the warm-up: cosine over the remaining 10 steps, from 0.1 towards 0.001.
        let want = 0.001 + 0.5 * 0.099 * (1.0 + (std::f64::consts::PI * 5.0 / 10.0).cos());
        assert!((got[9] - want).abs() < 1e-12);
        assert!(got.windows(2).skip(4).all(|w| w[1] < w[0]));
    }

    #[test]
    fn schedule_resumes_from_its_record() {
        let c = ScheduleConfig::new(ScheduleKind::Cosine);
        let mut a = c.build(0.5, 20);
        for _ in 0..7 {
            a.step();
        }
        let mut b = c.build(0.5, 20);
        b.load_record(a.to_record());
        assert_eq!(a.step(), b.step());
    }

    #[test]
    fn group_paths_match_whole_module_names() {
        let g = path_group("model", "layer1");
        let id = burn::module::ParamId::new();
        assert!(g.matches(&id, Some("model.layer1.weight")));
        assert!(g.matches(&id, Some("model.layer1")));
        assert!(!g.matches(&id, Some("model.layer10.weight")));
        assert!(!g.matches(&id, Some("layer1.weight")));
        // Enum variants in burn's paths are skipped, as PyTorch's names have none.
        let g = path_group("", "backbone.layer1");
        assert!(g.matches(&id, Some("ResNet.backbone.layer1.0.conv1.weight")));
        assert!(g.matches(&id, Some("backbone.Stage.layer1.weight")));
        assert!(!g.matches(&id, Some("backbone.layer2.weight")));
    }

    #[test]
    fn optimizer_settings_are_checked() {
        let mut c = OptimizerConfig::adam(1e-3);
        assert!(c.validate().is_ok());
        c.momentum = 0.9;
        assert!(c.validate().unwrap_err().contains("--optimizer sgd"));
        let mut c = OptimizerConfig::new(OptimizerKind::Sgd, 0.1);
        c.nesterov = true;
        assert!(c.validate().unwrap_err().contains("--momentum"));
        assert_eq!(
            OptimizerConfig::new(OptimizerKind::AdamW, 1e-3).effective_weight_decay(),
            0.01
        );
    }
}
