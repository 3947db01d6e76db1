//! A short real training run on MNIST, checkpoint/resume, and prediction from the artifact dir.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use strata_train::{FitConfig, Metrics};
use strata_vision::job::{
    ArtifactConfig, JobError, TrainVisionOptions, VisionPredictor, train_vision,
};
use strata_vision::mnist::{MnistKind, MnistSplits};

fn device() -> Device {
    strata_tensor::first_compiled_device()
}

fn options(dir: &Path, epochs: usize) -> TrainVisionOptions {
    TrainVisionOptions {
        dataset: MnistKind::Mnist,
        model: "simple-cnn".into(),
        knobs: Default::default(),
        augment: false,
        valid_size: 500,
        train_limit: Some(1500),
        data_dir: None,
        artifact_dir: dir.to_path_buf(),
        fit: FitConfig {
            seed: 7,
            backend: "test".into(),
            ..FitConfig::new(epochs, 32, 1e-3)
        },
    }
}

#[test]
fn short_run_learns_resumes_and_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let report = train_vision(&options(&dir, 1), &device()).unwrap();
    // 1,500 images, one epoch: far above the 10 % of chance on the full 10,000-image test set.
    assert!(
        report.test_accuracy > 0.80,
        "test accuracy {}",
        report.test_accuracy
    );
    for file in [
        "config.json",
        "model.safetensors",
        "metrics.json",
        "curves.png",
        "filters.png",
        "feature-maps.png",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    // The weights are a PyTorch state_dict: PyTorch's names and layouts.
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut keys: Vec<&str> = st.names().into_iter().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "conv1.bias",
            "conv1.weight",
            "conv2.bias",
            "conv2.weight",
            "fc1.bias",
            "fc1.weight",
            "fc2.bias",
            "fc2.weight"
        ]
    );
    assert_eq!(st.tensor("fc1.weight").unwrap().shape(), [128, 9216]);
    let config = ArtifactConfig::load(&dir).unwrap();
    assert_eq!(config.model_type, "strata-simple-cnn");
    let m = Metrics::load(&dir).unwrap();
    assert_eq!(m.history.len(), 1);
    assert_eq!(m.test_accuracy, Some(report.test_accuracy));
    let first = m.history[0].clone();
    let valid_accuracy = first.get("valid_accuracy").unwrap();
    assert!(valid_accuracy > 0.5 && valid_accuracy <= 1.0);
    assert!(first.get("train_loss").is_some_and(f64::is_finite));
    assert!(first.get("train_items_per_s").unwrap() > 0.0);
    // The loss of every step is kept for the curves: 1,500 images in batches of 32.
    assert_eq!(m.step_loss.len(), 47);
    assert_eq!(first.step, 47);

    // Resume: one more epoch on top of the checkpoint of epoch 1; epoch 1's record is kept.
    let mut again = options(&dir, 2);
    again.fit.resume = true;
    let resumed = train_vision(&again, &device()).unwrap();
    assert_eq!(resumed.epochs, 2);
    let m = Metrics::load(&dir).unwrap();
    assert_eq!(
        m.history.iter().map(|r| r.epoch).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(m.history[0], first);
    assert!(
        m.history[1].get("train_loss") < first.get("train_loss"),
        "{:?}",
        m.history
    );
    assert_eq!(m.step_loss.len(), 94);
    assert_eq!(m.step_loss.last().unwrap().0, 94);

    // Resuming a run that has done its epochs says how to go on.
    let err = train_vision(&again, &device()).unwrap_err().to_string();
    assert!(err.contains("already reaches the 2 epochs"), "{err}");

    // Resuming with another dataset or model is refused, and names the difference.
    let mut other = options(&dir, 3);
    other.fit.resume = true;
    other.model = "lenet5".into();
    let err = train_vision(&other, &device()).unwrap_err().to_string();
    assert!(
        err.contains("strata-simple-cnn") && err.contains("strata-lenet5"),
        "{err}"
    );

    // Predict a real test digit, saved as a large, inverted (dark on light) colour PNG.
    let splits = MnistSplits::read_dir(MnistKind::Mnist, &bundled().join("mnist"), 0).unwrap();
    let (pixels, label) = (splits.test.image(0), splits.test.labels[0]);
    let grey =
        image::GrayImage::from_raw(28, 28, pixels.iter().map(|p| 255 - p).collect()).unwrap();
    let big = image::imageops::resize(&grey, 112, 112, image::imageops::FilterType::Nearest);
    let png = tmp.path().join("digit.png");
    image::DynamicImage::ImageLuma8(big)
        .to_rgb8()
        .save(&png)
        .unwrap();
    let predictor = VisionPredictor::load(&dir, &device()).unwrap();
    let top = predictor.predict_file(&png, 10).unwrap();
    assert_eq!(top.len(), 10);
    assert_eq!(top[0].class, label as usize, "{top:?}");
    assert!(top.windows(2).all(|w| w[0].prob >= w[1].prob));
    let total: f32 = top.iter().map(|p| p.prob).sum();
    assert!((total - 1.0).abs() < 1e-4, "{total}");
    // The same digit as raw pixels gives the same answer as the file.
    assert_eq!(predictor.predict_pixels(pixels, 1)[0].class, top[0].class);

    // An unreadable image is a clear error.
    std::fs::write(tmp.path().join("bad.png"), b"not a png").unwrap();
    let err = predictor
        .predict_file(&tmp.path().join("bad.png"), 3)
        .unwrap_err();
    assert!(matches!(err, JobError::Image(_)), "{err}");
}

#[test]
fn resume_without_checkpoint_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options(tmp.path(), 2);
    opts.fit.resume = true;
    let err = train_vision(&opts, &device()).unwrap_err().to_string();
    assert!(err.contains("--resume: no checkpoint in"), "{err}");
    assert!(!tmp.path().join("metrics.json").exists());
}

#[test]
fn unwritable_artifact_dir_fails_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let err = train_vision(&options(&file.join("run"), 1), &device())
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot write to artifact dir"), "{err}");
}

#[test]
fn missing_artifact_dir_is_a_clear_error() {
    let err = VisionPredictor::load(Path::new("/nonexistent/run"), &device())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config.json") && err.contains("of a finished training run"),
        "{err}"
    );
}

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets")
}
