//! The harness on a tiny model and small data: it learns; each optimizer, schedule, parameter
//! group, clipping and freezing does what PyTorch's does (fixtures from
//! `datasets/fixtures/make_train_fixtures.py`); runs in steps; resume continues the history;
//! early stopping restores the best weights; a fresh run removes only what Strata wrote.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::InMemDataset;
use burn::module::{Module, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use safetensors::SafeTensors;
use strata_train::eval::evaluate;
use strata_train::{
    Budget, FitConfig, LrGroup, Metrics, OptimizerConfig, OptimizerKind, ScheduleConfig,
    ScheduleKind, fit,
};

#[derive(Clone, Debug)]
struct Item {
    x: [f32; 4],
    y: i64,
}

#[derive(Clone, Debug)]
struct Batch {
    x: Tensor<2>,
    y: Tensor<1, Int>,
}

#[derive(Clone)]
struct TinyBatcher;

impl Batcher<Item, Batch> for TinyBatcher {
    fn batch(&self, items: Vec<Item>, device: &Device) -> Batch {
        let n = items.len();
        let xs: Vec<f32> = items.iter().flat_map(|i| i.x).collect();
        let ys: Vec<i64> = items.iter().map(|i| i.y).collect();
        Batch {
            x: Tensor::<1>::from_floats(xs.as_slice(), device).reshape([n, 4]),
            y: Tensor::<1, Int>::from_ints(ys.as_slice(), device),
        }
    }
}

/// fc1: Linear(4, 5) → [BatchNorm] → tanh → fc2: Linear(5, 3); the PyTorch fixture's model
/// (without the BatchNorm).
#[derive(Module, Debug)]
struct Tiny {
    fc1: Linear,
    bn: Option<BatchNorm>,
    fc2: Linear,
}

impl Tiny {
    fn new(batch_norm: bool, device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(4, 5).init(device),
            bn: batch_norm.then(|| BatchNormConfig::new(5).init(device)),
            fc2: LinearConfig::new(5, 3).init(device),
        }
    }

    fn classify(&self, b: Batch) -> ClassificationOutput {
        let mut h = self.fc1.forward(b.x);
        if let Some(bn) = &self.bn {
            h = bn.forward(h);
        }
        let logits = self.fc2.forward(h.tanh());
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), b.y.clone());
        ClassificationOutput::new(loss, logits, b.y)
    }
}

impl TrainStep for Tiny {
    type Input = Batch;
    type Output = ClassificationOutput;

    fn step(&self, b: Batch) -> TrainOutput<ClassificationOutput> {
        let out = self.classify(b);
        TrainOutput::new(self, out.loss.backward(), out)
    }
}

impl InferenceStep for Tiny {
    type Input = Batch;
    type Output = ClassificationOutput;

    fn step(&self, b: Batch) -> ClassificationOutput {
        self.classify(b)
    }
}

fn device() -> Device {
    strata_tensor::first_compiled_device()
}

fn loader(items: Vec<Item>, batch: usize, shuffle: Option<u64>) -> Arc<dyn DataLoader<Batch>> {
    let b = DataLoaderBuilder::new(TinyBatcher)
        .batch_size(batch)
        .num_workers(0)
        .set_device(device());
    let b = match shuffle {
        Some(seed) => b.shuffle(seed),
        None => b,
    };
    b.build(InMemDataset::new(items))
}

/// Three well separated blobs in 4-D, `n` points each, labelled by blob.
fn blobs(n: usize, seed: u64) -> Vec<Item> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut noise = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let centres = [
        [2.0, 0.0, 0.0, 1.0],
        [-2.0, 1.0, 0.0, 0.0],
        [0.0, -2.0, 1.0, -1.0],
    ];
    (0..3 * n)
        .map(|i| {
            let c = centres[i % 3];
            Item {
                x: [
                    c[0] + noise(),
                    c[1] + noise(),
                    c[2] + noise(),
                    c[3] + noise(),
                ],
                y: (i % 3) as i64,
            }
        })
        .collect()
}

fn config(epochs: usize, batch: usize, optimizer: OptimizerConfig) -> FitConfig {
    FitConfig {
        optimizer,
        backend: "test".into(),
        model_type: "strata-tiny".into(),
        ..FitConfig::new(epochs, batch, 0.01)
    }
}

fn job() -> serde_json::Value {
    serde_json::json!({ "data": "blobs" })
}

#[test]
fn it_learns_and_reports_named_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = device().autodiff();
    strata_tensor::seed(&dev, 1);
    let model = Tiny::new(false, &dev);
    let cfg = config(3, 8, OptimizerConfig::adam(0.05));
    let fitted = fit(
        model,
        tmp.path(),
        loader(blobs(40, 1), 8, Some(1)),
        loader(blobs(20, 2), 30, None),
        &cfg,
        job(),
    )
    .unwrap();
    let m = &fitted.metrics;
    assert_eq!(m.history.len(), 3);
    let last = m.history.last().unwrap();
    assert!(last.get("valid_accuracy").unwrap() > 0.95, "{m:?}");
    assert!(last.get("valid_loss").unwrap() < m.history[0].get("train_loss").unwrap());
    // 120 items in batches of 8: 15 steps an epoch, each with its own loss.
    assert_eq!(m.steps_per_period, 15);
    assert_eq!(m.step_loss.len(), 45);
    assert_eq!(last.step, 45);
    let score = evaluate(&fitted.model, &loader(blobs(20, 3), 30, None)).unwrap();
    assert!(score.accuracy.unwrap() > 0.95, "{score:?}");
    assert_eq!(score.items, 60);
    for file in ["metrics.json", "curves.png"] {
        assert!(tmp.path().join(file).is_file(), "{file}");
    }
    assert_eq!(Metrics::load(tmp.path()).unwrap(), *m);
}

/// The fixture's tensors.
struct Fixture {
    bytes: Vec<u8>,
}

impl Fixture {
    fn load() -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../datasets/fixtures/train_optim.safetensors");
        Self {
            bytes: std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e}; run make_train_fixtures.py", path.display())),
        }
    }

    fn f32s(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("{name} not in the fixture"));
        let data = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (data, t.shape().to_vec())
    }

    fn items(&self) -> Vec<Item> {
        let (x, _) = self.f32s("x");
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let y: Vec<i64> = st
            .tensor("y")
            .unwrap()
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        x.chunks_exact(4)
            .zip(y)
            .map(|(x, y)| Item {
                x: x.try_into().unwrap(),
                y,
            })
            .collect()
    }

    /// A PyTorch `Linear` state (`weight [out, in]`, `bias`) as a burn `Linear` (`[in, out]`).
    fn linear(&self, prefix: &str, device: &Device) -> Linear {
        let (w, shape) = self.f32s(&format!("{prefix}.weight"));
        let (b, _) = self.f32s(&format!("{prefix}.bias"));
        let weight = Tensor::<1>::from_floats(w.as_slice(), device)
            .reshape([shape[0], shape[1]])
            .transpose();
        Linear {
            weight: Param::from_tensor(weight),
            bias: Some(Param::from_tensor(Tensor::from_floats(
                b.as_slice(),
                device,
            ))),
        }
    }

    fn tiny(&self, prefix: &str, device: &Device) -> Tiny {
        Tiny {
            fc1: self.linear(&format!("{prefix}.fc1"), device),
            bn: None,
            fc2: self.linear(&format!("{prefix}.fc2"), device),
        }
    }
}

fn max_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

/// Trains the fixture's model as the fixture's `case` did and compares the weights.
fn check_case(case: &str, mut cfg: FitConfig) {
    let fx = Fixture::load();
    let tmp = tempfile::tempdir().unwrap();
    let dev = device().autodiff();
    cfg.budget = Budget::Epochs(2);
    cfg.batch_size = 4;
    let fitted = fit(
        fx.tiny("init", &dev),
        tmp.path(),
        loader(fx.items(), 4, None),
        loader(fx.items(), 16, None),
        &cfg,
        job(),
    )
    .unwrap();
    let want = fx.tiny(case, &device());
    let got = fitted.model;
    for (name, a, b) in [
        ("fc1.weight", got.fc1.weight.val(), want.fc1.weight.val()),
        ("fc2.weight", got.fc2.weight.val(), want.fc2.weight.val()),
    ] {
        let d = max_diff(a, b);
        assert!(d < 2e-5, "{case}: {name} differs from PyTorch's by {d}");
    }
    let bias = |l: &Linear| l.bias.as_ref().unwrap().val().unsqueeze::<2>();
    let d = max_diff(bias(&got.fc2), bias(&want.fc2));
    assert!(d < 2e-5, "{case}: fc2.bias differs from PyTorch's by {d}");
    assert_eq!(fitted.metrics.step_loss.len(), 8);
}

#[test]
fn adam_matches_pytorch() {
    check_case("adam", config(2, 4, OptimizerConfig::adam(0.01)));
}

#[test]
fn adamw_with_warmup_and_cosine_matches_pytorch() {
    let mut opt = OptimizerConfig::new(OptimizerKind::AdamW, 0.01);
    opt.weight_decay = Some(0.1);
    let mut cfg = config(2, 4, opt);
    cfg.schedule = ScheduleConfig {
        warmup_steps: 3,
        ..ScheduleConfig::new(ScheduleKind::Cosine)
    };
    check_case("adamw_warmup_cosine", cfg);
}

#[test]
fn sgd_nesterov_with_weight_decay_and_step_schedule_matches_pytorch() {
    let mut opt = OptimizerConfig::new(OptimizerKind::Sgd, 0.1);
    opt.momentum = 0.9;
    opt.nesterov = true;
    opt.weight_decay = Some(1e-3);
    let mut cfg = config(2, 4, opt);
    cfg.schedule = ScheduleConfig::new(ScheduleKind::Step);
    check_case("sgd_nesterov_step", cfg);
}

#[test]
fn global_gradient_clipping_matches_pytorch() {
    let mut opt = OptimizerConfig::new(OptimizerKind::Sgd, 0.5);
    opt.clip_grad_norm = Some(0.1);
    check_case("sgd_clip", config(2, 4, opt));
}

#[test]
fn parameter_groups_match_pytorch() {
    let mut opt = OptimizerConfig::new(OptimizerKind::Sgd, 0.1);
    opt.momentum = 0.5;
    let mut cfg = config(2, 4, opt);
    cfg.lr_groups = vec![LrGroup {
        prefix: "fc1".into(),
        lr_scale: 0.1,
    }];
    check_case("sgd_groups", cfg);
}

#[test]
fn frozen_parameters_match_pytorch() {
    let mut cfg = config(2, 4, OptimizerConfig::new(OptimizerKind::Sgd, 0.1));
    cfg.frozen = vec!["fc1".into()];
    check_case("sgd_frozen", cfg);
}

#[test]
fn frozen_means_frozen_batch_norm_statistics_included() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = device().autodiff();
    strata_tensor::seed(&dev, 5);
    let model = Tiny::new(true, &dev);
    let before = model.clone().valid();
    let mut cfg = config(2, 8, OptimizerConfig::adam(0.05));
    cfg.frozen = vec!["fc1".into(), "bn".into()];
    let fitted = fit(
        model,
        tmp.path(),
        loader(blobs(16, 1), 8, Some(1)),
        loader(blobs(8, 2), 24, None),
        &cfg,
        job(),
    )
    .unwrap();
    let after = fitted.model;
    let same = |a: Tensor<1>, b: Tensor<1>| a.equal(b).all().into_scalar::<bool>();
    let flat = |t: Tensor<2>| t.flatten::<1>(0, 1);
    assert!(same(
        flat(after.fc1.weight.val()),
        flat(before.fc1.weight.val())
    ));
    let (bn_a, bn_b) = (after.bn.unwrap(), before.bn.unwrap());
    assert!(same(bn_a.gamma.val(), bn_b.gamma.val()));
    assert!(same(bn_a.running_mean.value(), bn_b.running_mean.value()));
    assert!(same(bn_a.running_var.value(), bn_b.running_var.value()));
    // The head did train.
    assert!(!same(
        flat(after.fc2.weight.val()),
        flat(before.fc2.weight.val())
    ));
}

#[test]
fn a_run_in_steps_evaluates_every_k_steps_and_stops_at_max_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = device().autodiff();
    let mut cfg = config(1, 4, OptimizerConfig::adam(0.01));
    // 16 items in batches of 4: 4 batches a pass; 10 steps draw 2.5 passes.
    cfg.budget = Budget::Steps {
        max_steps: 10,
        eval_every: 4,
    };
    let fitted = fit(
        Tiny::new(false, &dev),
        tmp.path(),
        loader(blobs(6, 1)[..16].to_vec(), 4, Some(3)),
        loader(blobs(4, 2), 12, None),
        &cfg,
        job(),
    )
    .unwrap();
    let m = &fitted.metrics;
    let steps: Vec<usize> = m.history.iter().map(|r| r.step).collect();
    assert_eq!(steps, vec![4, 8, 10]);
    assert_eq!(m.step_loss.len(), 10);
    assert!(m.history.iter().all(|r| r.get("valid_loss").is_some()));
}

#[test]
fn a_run_in_steps_resumes_from_the_steps_done() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = device().autodiff();
    let run = |max_steps: usize, resume: bool| {
        let mut cfg = config(1, 4, OptimizerConfig::adam(0.01));
        cfg.budget = Budget::Steps {
            max_steps,
            eval_every: 4,
        };
        cfg.resume = resume;
        fit(
            Tiny::new(false, &dev),
            tmp.path(),
            loader(blobs(6, 1)[..12].to_vec(), 4, Some(3)),
            loader(blobs(4, 2), 12, None),
            &cfg,
            job(),
        )
    };
    run(10, false).unwrap();
    let m = run(20, true).unwrap().metrics;
    let steps: Vec<usize> = m.history.iter().map(|r| r.step).collect();
    assert_eq!(steps, vec![4, 8, 10, 14, 18, 20]);
    let logged: Vec<usize> = m.step_loss.iter().map(|s| s.0).collect();
    assert_eq!(logged, (1..=20).collect::<Vec<_>>());
    let err = run(20, true).unwrap_err().to_string();
    assert!(
        err.contains("step 20") || err.contains("from step 20"),
        "{err}"
    );
    // Another evaluation interval would renumber the periods: refused.
    let mut cfg = config(1, 4, OptimizerConfig::adam(0.01));
    cfg.budget = Budget::Steps {
        max_steps: 30,
        eval_every: 5,
    };
    cfg.resume = true;
    let err = fit(
        Tiny::new(false, &dev),
        tmp.path(),
        loader(blobs(6, 1)[..12].to_vec(), 4, None),
        loader(blobs(4, 2), 12, None),
        &cfg,
        job(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("evaluated every 4"), "{err}");
}

#[test]
fn frozen_and_grouped_paths_must_name_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = device().autodiff();
    let mut cfg = config(1, 4, OptimizerConfig::adam(0.01));
    cfg.frozen = vec!["backbone".into()];
    let err = fit(
        Tiny::new(false, &dev),
        tmp.path(),
        loader(blobs(4, 1), 4, None),
        loader(blobs(4, 2), 12, None),
        &cfg,
        job(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("'backbone' names no parameter") && err.contains("fc1, fc2"),
        "{err}"
    );
}

#[test]
fn resume_continues_the_same_history() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = device().autodiff();
    let run = |epochs: usize, resume: bool| {
        let mut cfg = config(epochs, 8, OptimizerConfig::adam(0.01));
        cfg.resume = resume;
        fit(
            Tiny::new(false, &dev),
            tmp.path(),
            loader(blobs(8, 1), 8, Some(1)),
            loader(blobs(4, 2), 12, None),
            &cfg,
            job(),
        )
    };
    let first = run(1, false).unwrap().metrics;
    let resumed = run(3, true).unwrap().metrics;
    assert_eq!(resumed.history.len(), 3);
    assert_eq!(resumed.history[0], first.history[0]);
    assert_eq!(&resumed.step_loss[..3], &first.step_loss[..]);
    let steps: Vec<usize> = resumed.step_loss.iter().map(|s| s.0).collect();
    assert_eq!(steps, (1..=9).collect::<Vec<_>>());
    // Nothing left to do: the error says how to go on.
    let err = run(3, true).unwrap_err().to_string();
    assert!(err.contains("pass a larger --epochs"), "{err}");
    // Another batch size is another run.
    let mut cfg = config(5, 4, OptimizerConfig::adam(0.01));
    cfg.resume = true;
    let err = fit(
        Tiny::new(false, &dev),
        tmp.path(),
        loader(blobs(8, 1), 4, None),
        loader(blobs(4, 2), 12, None),
        &cfg,
        job(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--batch-size 8, not 4"), "{err}");
}

#[test]
fn early_stopping_restores_the_best_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = device().autodiff();
    strata_tensor::seed(&dev, 2);
    // Validation labels are those of another blob: the better the model learns the training
    // labels, the worse its validation loss, so the best period is the first.
    let valid: Vec<Item> = blobs(10, 2)
        .into_iter()
        .map(|i| Item {
            y: (i.y + 1) % 3,
            ..i
        })
        .collect();
    let mut cfg = config(6, 8, OptimizerConfig::adam(0.05));
    cfg.patience = Some(1);
    let fitted = fit(
        Tiny::new(false, &dev),
        tmp.path(),
        loader(blobs(20, 1), 8, Some(1)),
        loader(valid.clone(), 30, None),
        &cfg,
        job(),
    )
    .unwrap();
    let m = &fitted.metrics;
    assert!(m.stopped_early, "{m:?}");
    let best = m.best_epoch.unwrap();
    assert!(best < m.history.len(), "{m:?}");
    let score = evaluate(&fitted.model, &loader(valid, 30, None)).unwrap();
    let best_loss = m.history[best - 1].get("valid_loss").unwrap();
    assert!(
        (score.loss - best_loss).abs() < 1e-5,
        "kept weights score {}, best period {best} scored {best_loss}",
        score.loss
    );
}

#[test]
fn a_fresh_run_removes_only_what_strata_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().to_path_buf();
    let dev = device().autodiff();
    let run = |epochs| {
        fit(
            Tiny::new(false, &dev),
            &dir,
            loader(blobs(8, 1), 8, Some(1)),
            loader(blobs(4, 2), 12, None),
            &config(epochs, 8, OptimizerConfig::adam(0.01)),
            job(),
        )
        .unwrap()
    };
    run(3);
    // The user's own files, in the dir and among the checkpoints.
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    std::fs::write(dir.join("checkpoint/model-final.bpk"), "mine").unwrap();
    std::fs::create_dir_all(dir.join("train/plots")).unwrap();
    let m = run(1).metrics;
    assert_eq!(m.history.len(), 1);
    let ckpts = strata_train::fit::checkpoint_epochs(&dir);
    assert_eq!(
        ckpts,
        vec![1],
        "checkpoints of the earlier run were removed"
    );
    assert!(!dir.join("train/epoch-3").exists());
    assert!(dir.join("notes.txt").is_file());
    assert!(dir.join("checkpoint/model-final.bpk").is_file());
    assert!(dir.join("train/plots").is_dir());
}
