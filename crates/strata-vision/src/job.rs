//! The vision jobs behind `strata train-vision` and `strata predict-vision`.
//!
//! An artifact dir written by [`train_vision`] holds:
//! `config.json` (`model_type`, architecture, labels, normalisation), `model.safetensors`,
//! `metrics.json`, `curves.png`, `filters.png`, `feature-maps.png`, and burn-train's
//! `checkpoint/` (one per epoch, for `--resume`) and per-split metric logs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::module::Module;
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use strata_tensor::fsutil::{ensure_writable_dir, write_atomic};
use strata_tensor::weights::{load_safetensors, save_safetensors};
use strata_train::eval::evaluate;
use strata_train::{FitConfig, LrSchedule, Metrics, fit};

use crate::data::{Augment, ImageBatch, ImageBatcher, ImageDataset};
use crate::mnist::{DatasetError, MnistKind, MnistSplits};
use crate::models::{ModelError, VisionConfig, VisionNet};
use crate::viz::{feature_maps_image, filters_image, save_png};

/// File name of the weights in an artifact dir.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the configuration in an artifact dir.
pub const CONFIG_FILE: &str = "config.json";

/// Any failure of a vision job; every variant reads as one line saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Dataset missing or corrupt.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// Model misconfigured.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Training failed.
    #[error(transparent)]
    Fit(#[from] strata_train::FitError),
    /// Weights could not be saved or loaded.
    #[error(transparent)]
    Weights(#[from] strata_tensor::weights::WeightsError),
    /// The artifact dir is unusable.
    #[error("{0}")]
    Artifact(String),
    /// The image to classify is unusable.
    #[error("{0}")]
    Image(String),
    /// Options are inconsistent.
    #[error("{0}")]
    Invalid(String),
}

/// What `config.json` holds for a vision model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactConfig {
    /// `strata-simple-cnn` or `strata-lenet5`.
    pub model_type: String,
    /// Architecture and its settings.
    pub model: VisionConfig,
    /// Dataset the model was trained on.
    pub dataset: MnistKind,
    /// Class names, index = class.
    pub labels: Vec<String>,
    /// Mean and std used to normalise pixels scaled to [0, 1].
    pub normalization: Normalization,
    /// Weights file inside the artifact dir.
    pub weights: String,
}

/// Pixel normalisation constants.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Mean of the training pixels in [0, 1].
    pub mean: f32,
    /// Standard deviation of the training pixels in [0, 1].
    pub std: f32,
}

impl ArtifactConfig {
    /// Reads `config.json` from an artifact dir, checking that it holds a Strata vision model.
    pub fn load(dir: &Path) -> Result<Self, JobError> {
        let path = dir.join(CONFIG_FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            JobError::Artifact(format!(
                "cannot read {}: {e}; pass the --artifact-dir of a finished `train-vision` run",
                path.display()
            ))
        })?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            JobError::Artifact(format!("{} is not valid JSON: {e}", path.display()))
        })?;
        let model_type = value
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if !matches!(model_type, "strata-simple-cnn" | "strata-lenet5") {
            return Err(JobError::Artifact(format!(
                "{} has model_type '{model_type}', not a Strata vision model (strata-simple-cnn, strata-lenet5)",
                path.display()
            )));
        }
        serde_json::from_value(value)
            .map_err(|e| JobError::Artifact(format!("{} is malformed: {e}", path.display())))
    }

    fn save(&self, dir: &Path) -> Result<(), JobError> {
        let json = serde_json::to_vec_pretty(self).expect("config serialises");
        write_atomic(&dir.join(CONFIG_FILE), &json).map_err(|e| {
            JobError::Artifact(format!("cannot write {}/{CONFIG_FILE}: {e}", dir.display()))
        })
    }
}

/// Options of `train-vision`.
#[derive(Debug, Clone)]
pub struct TrainVisionOptions {
    /// Dataset to train on.
    pub dataset: MnistKind,
    /// Model name: `simple-cnn` or `lenet5`.
    pub model: String,
    /// Epochs (in total, for `--resume` too).
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// Early-stopping patience, in epochs without a better validation loss.
    pub patience: Option<usize>,
    /// Random shifts and rotations of training images.
    pub augment: bool,
    /// Training images held out for validation.
    pub valid_size: usize,
    /// Use only the first N training images (quick runs).
    pub train_limit: Option<usize>,
    /// Seed of weights, dropout, shuffling and augmentation.
    pub seed: u64,
    /// Root that holds the datasets.
    pub data_dir: Option<PathBuf>,
    /// Where the results go.
    pub artifact_dir: PathBuf,
    /// Continue from the last checkpoint in the artifact dir.
    pub resume: bool,
    /// Backend name, recorded in `metrics.json`.
    pub backend: String,
}

/// What `train-vision` reports at the end.
#[derive(Debug, Clone, Serialize)]
pub struct TrainVisionReport {
    /// Accuracy on the test set, a fraction in [0, 1].
    pub test_accuracy: f64,
    /// Mean loss on the test set.
    pub test_loss: f64,
    /// Epochs finished.
    pub epochs: usize,
    /// Trainable parameters.
    pub parameters: usize,
    /// Wall time of the whole job, seconds.
    pub wall_seconds: f64,
    /// The artifact dir.
    pub artifact_dir: PathBuf,
}

/// A data loader of `set` in batches of `batch_size`.
fn loader(
    set: crate::mnist::ImageSet,
    batcher: ImageBatcher,
    batch_size: usize,
    shuffle: Option<u64>,
    device: &Device,
) -> Arc<dyn DataLoader<ImageBatch>> {
    let builder = DataLoaderBuilder::new(batcher)
        .batch_size(batch_size)
        .num_workers(0)
        .set_device(device.clone());
    let builder = match shuffle {
        Some(seed) => builder.shuffle(seed),
        None => builder,
    };
    builder.build(ImageDataset::new(set))
}

/// Trains a CNN on MNIST or Fashion-MNIST and writes the artifact dir.
pub fn train_vision(
    opts: &TrainVisionOptions,
    device: &Device,
) -> Result<TrainVisionReport, JobError> {
    let started = Instant::now();
    let dir = &opts.artifact_dir;
    ensure_writable_dir(dir).map_err(|e| {
        JobError::Artifact(format!(
            "cannot write to artifact dir {}: {e}; choose another --artifact-dir",
            dir.display()
        ))
    })?;
    let model_type = VisionConfig::named(&opts.model, 1, 28, 10)?.model_type();
    let fit_config = FitConfig {
        epochs: opts.epochs,
        batch_size: opts.batch_size,
        lr: opts.lr,
        schedule: opts.schedule,
        weight_decay: None,
        patience: opts.patience,
        resume: opts.resume,
        seed: opts.seed,
        backend: opts.backend.clone(),
        model_type: model_type.to_string(),
    };
    fit_config.validate()?;
    if opts.resume {
        strata_train::fit::resume_epoch(dir, opts.epochs)?;
    }
    let mut splits = MnistSplits::load(opts.dataset, opts.data_dir.as_deref(), opts.valid_size)?;
    if let Some(limit) = opts.train_limit {
        let n = limit.clamp(1, splits.train.len());
        splits.train = splits.train.slice(0..n);
    }
    let kind = splits.kind;
    let (rows, cols) = (splits.train.rows, splits.train.cols);
    if rows != cols {
        return Err(JobError::Invalid(format!(
            "images are {rows}×{cols}; the CNNs expect square images"
        )));
    }
    let labels = kind.labels();
    let model_config = VisionConfig::named(&opts.model, 1, rows, labels.len())?;
    if opts.resume
        && let Ok(previous) = ArtifactConfig::load(dir)
        && (previous.model_type != model_config.model_type() || previous.dataset != kind)
    {
        return Err(JobError::Invalid(format!(
            "--resume: {} holds a {} trained on {}, not a {} on {}; use the same --model and --dataset, or another --artifact-dir",
            dir.display(),
            previous.model_type,
            previous.dataset.name(),
            model_config.model_type(),
            kind.name()
        )));
    }
    let (mean, std) = kind.normalization();
    let artifact = ArtifactConfig {
        model_type: model_config.model_type().to_string(),
        model: model_config.clone(),
        dataset: kind,
        labels: labels.iter().map(|s| s.to_string()).collect(),
        normalization: Normalization { mean, std },
        weights: WEIGHTS_FILE.to_string(),
    };
    artifact.save(dir)?;

    strata_tensor::seed(device, opts.seed);
    // Parameters must start on the autodiff device to be tracked.
    let model = model_config.init(&device.clone().autodiff())?;
    let parameters = model.num_params();
    eprintln!(
        "training {} ({parameters} parameters) on {} ({} train / {} valid / {} test images), {} epochs, batch {}, lr {}, backend {}",
        opts.model,
        kind.name(),
        splits.train.len(),
        splits.valid.len(),
        splits.test.len(),
        opts.epochs,
        opts.batch_size,
        opts.lr,
        opts.backend,
    );

    let norm = (mean, std);
    let mut train_batcher = ImageBatcher::new(rows, cols, norm);
    if opts.augment {
        train_batcher = train_batcher.with_augment(Augment::default(), opts.seed ^ 0x5eed);
    }
    let sample = crate::data::ImageItem {
        pixels: splits.test.image(0).to_vec(),
        label: splits.test.labels[0],
    };
    let train = loader(
        splits.train,
        train_batcher,
        opts.batch_size,
        Some(opts.seed),
        device,
    );
    let valid = loader(
        splits.valid,
        ImageBatcher::new(rows, cols, norm),
        opts.batch_size.max(256),
        None,
        device,
    );
    let test = loader(
        splits.test,
        ImageBatcher::new(rows, cols, norm),
        opts.batch_size.max(256),
        None,
        device,
    );

    let fitted = fit(model, dir, train, valid, &fit_config)?;
    let model = fitted.model.valid();
    let score = evaluate(&model, &test)
        .map_err(|e| JobError::Invalid(format!("reading the test set failed: {e}")))?;

    save_safetensors(&model, &dir.join(WEIGHTS_FILE))?;
    let picture_err = |e: std::io::Error| {
        JobError::Artifact(format!("cannot write a picture in {}: {e}", dir.display()))
    };
    save_png(&filters_image(model.first_conv()), &dir.join("filters.png")).map_err(picture_err)?;
    let batch = burn::data::dataloader::batcher::Batcher::batch(
        &ImageBatcher::new(rows, cols, norm),
        vec![sample],
        device,
    );
    save_png(
        &feature_maps_image(model.first_conv(), batch.images),
        &dir.join("feature-maps.png"),
    )
    .map_err(picture_err)?;

    let mut metrics: Metrics = fitted.metrics;
    metrics.test_accuracy = Some(score.accuracy);
    metrics.test_loss = Some(score.loss);
    metrics.wall_seconds = started.elapsed().as_secs_f64();
    metrics.save(dir).map_err(|e| {
        JobError::Artifact(format!("cannot write {}/metrics.json: {e}", dir.display()))
    })?;
    Ok(TrainVisionReport {
        test_accuracy: score.accuracy,
        test_loss: score.loss,
        epochs: metrics.history.last().map_or(0, |r| r.epoch),
        parameters,
        wall_seconds: metrics.wall_seconds,
        artifact_dir: dir.clone(),
    })
}

/// One class and its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassProb {
    /// Class index.
    pub class: usize,
    /// Class name.
    pub label: String,
    /// Softmax probability.
    pub prob: f32,
}

/// A trained vision model loaded from its artifact dir.
#[derive(Debug)]
pub struct VisionPredictor {
    /// Its `config.json`.
    pub config: ArtifactConfig,
    model: VisionNet,
    device: Device,
}

impl VisionPredictor {
    /// Loads `config.json` and the weights from `dir` onto `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, JobError> {
        let config = ArtifactConfig::load(dir)?;
        let model = config.model.init(device)?;
        let model = load_safetensors(model, &dir.join(&config.weights))?;
        Ok(Self {
            config,
            model,
            device: device.clone(),
        })
    }

    /// Class probabilities of the image file at `path`, most probable first (`top_k` of them).
    ///
    /// The image may have any size and colour type: it is turned grey, resized to the model's
    /// input, and — since MNIST-style data is light on dark — inverted when its border is light.
    pub fn predict_file(&self, path: &Path, top_k: usize) -> Result<Vec<ClassProb>, JobError> {
        let img = image::ImageReader::open(path)
            .map_err(|e| JobError::Image(format!("cannot open image {}: {e}", path.display())))?
            .with_guessed_format()
            .map_err(|e| JobError::Image(format!("cannot read image {}: {e}", path.display())))?
            .decode()
            .map_err(|e| {
                JobError::Image(format!(
                    "cannot decode image {}: {e}; use a PNG, JPEG, GIF or BMP file",
                    path.display()
                ))
            })?;
        let (_, side) = self.config.model.input();
        let grey = image::imageops::resize(
            &img.to_luma8(),
            side as u32,
            side as u32,
            image::imageops::FilterType::Triangle,
        );
        let mut pixels = grey.into_raw();
        if border_mean(&pixels, side) > 127.0 {
            pixels.iter_mut().for_each(|p| *p = 255 - *p);
        }
        Ok(self.predict_pixels(&pixels, top_k))
    }

    /// Class probabilities of one grey `side × side` image (0–255, light on dark).
    pub fn predict_pixels(&self, pixels: &[u8], top_k: usize) -> Vec<ClassProb> {
        let (_, side) = self.config.model.input();
        let n = &self.config.normalization;
        let batch = burn::data::dataloader::batcher::Batcher::batch(
            &ImageBatcher::new(side, side, (n.mean, n.std)),
            vec![crate::data::ImageItem {
                pixels: pixels.to_vec(),
                label: 0,
            }],
            &self.device,
        );
        let logits = self.model.forward(batch.images).reshape([-1]);
        strata_tensor::ops::top_k(logits, top_k)
            .into_iter()
            .map(|(class, prob)| ClassProb {
                class,
                label: self
                    .config
                    .labels
                    .get(class)
                    .cloned()
                    .unwrap_or_else(|| class.to_string()),
                prob,
            })
            .collect()
    }
}

/// Mean of the outermost ring of pixels of a `side × side` image.
fn border_mean(pixels: &[u8], side: usize) -> f32 {
    let mut sum = 0u64;
    let mut count = 0u64;
    for y in 0..side {
        for x in 0..side {
            if y == 0 || x == 0 || y + 1 == side || x + 1 == side {
                sum += pixels[y * side + x] as u64;
                count += 1;
            }
        }
    }
    sum as f32 / count.max(1) as f32
}
