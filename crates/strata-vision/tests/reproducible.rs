//! Same seed, same backend: the same run. (Its own test binary, so no other test draws from the
//! backend's process-wide random generator meanwhile.)

use strata_train::{FitConfig, Metrics, ScheduleConfig, ScheduleKind};
use strata_vision::job::{TrainVisionOptions, train_vision};
use strata_vision::mnist::MnistKind;

fn run(dir: &std::path::Path, seed: u64) -> Metrics {
    let opts = TrainVisionOptions {
        dataset: MnistKind::Mnist,
        model: "lenet5".into(),
        knobs: Default::default(),
        augment: true,
        valid_size: 300,
        train_limit: Some(600),
        data_dir: None,
        artifact_dir: dir.to_path_buf(),
        fit: FitConfig {
            schedule: ScheduleConfig::new(ScheduleKind::Cosine),
            seed,
            backend: "test".into(),
            ..FitConfig::new(1, 32, 1e-3)
        },
    };
    let device = strata_tensor::first_compiled_device();
    train_vision(&opts, &device).unwrap();
    Metrics::load(dir).unwrap()
}

#[test]
fn same_seed_same_history() {
    let tmp = tempfile::tempdir().unwrap();
    let a = run(&tmp.path().join("a"), 3);
    let b = run(&tmp.path().join("b"), 3);
    let c = run(&tmp.path().join("c"), 4);
    let figures = |m: &Metrics| {
        m.history
            .iter()
            .map(|r| {
                (
                    r.get("train_loss"),
                    r.get("valid_loss"),
                    r.get("valid_accuracy"),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(figures(&a), figures(&b));
    assert_eq!(a.test_accuracy, b.test_accuracy);
    assert_ne!(figures(&a), figures(&c));
}
