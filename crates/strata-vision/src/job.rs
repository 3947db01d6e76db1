//! The vision jobs behind `strata train-vision` and `strata predict-vision`.
//!
//! An artifact dir written by [`train_vision`] holds:
//! `config.json` (`model_type`, architecture, labels, normalisation), `model.safetensors`,
//! `metrics.json`, `curves.png`, `filters.png`, `feature-maps.png`, and burn-train's
//! `checkpoint/` (one per epoch, for `--resume`) and per-split metric logs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataloader::DataLoader;
use burn::module::Module;
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use strata_tensor::weights::{
    load_pytorch_safetensors, load_safetensors, save_pytorch_safetensors,
};
use strata_train::artifact::{self, ArtifactError, WEIGHTS_FILE};
use strata_train::eval::{Score, evaluate};
use strata_train::{FitConfig, Metrics, fit};

use crate::data::{Augment, ImageBatch, ImageBatcher, ImageDataset, Normalization};
use crate::digit::{self, DigitError};
use crate::mnist::{DatasetError, MnistKind, MnistSplits};
use crate::models::{ModelError, VisionConfig, VisionNet};
use crate::viz::{feature_maps_image, filters_image, save_png};
use strata_train::data::loader as image_loader;

/// The `model_type`s a vision artifact dir may hold.
pub const MODEL_TYPES: &[&str] = &["strata-simple-cnn", "strata-lenet5", "strata-resnet"];

/// Any failure of a vision job; every variant reads as one line saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Dataset missing or corrupt.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// An image folder unusable.
    #[error(transparent)]
    Folder(#[from] crate::folder::FolderError),
    /// Model misconfigured.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Training failed.
    #[error(transparent)]
    Fit(#[from] strata_train::FitError),
    /// Weights could not be saved or loaded.
    #[error(transparent)]
    Weights(#[from] strata_tensor::weights::WeightsError),
    /// The artifact dir's config is unusable.
    #[error(transparent)]
    Config(#[from] ArtifactError),
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
    pub dataset: TrainedOn,
    /// Class names, index = class.
    pub labels: Vec<String>,
    /// Mean and std used to normalise pixels scaled to [0, 1].
    pub normalization: Normalization,
    /// Weights file inside the artifact dir.
    pub weights: String,
    /// Layout of the weights: `pytorch` (a PyTorch `state_dict`, what Strata writes) or `burn`
    /// (burn's, with `Linear` weights transposed; dirs written before the PyTorch layout).
    #[serde(default = "burn_layout")]
    pub weights_layout: String,
}

/// The dataset a model was trained on, as `config.json` names it: `"mnist"`,
/// `"fashion-mnist"`, or an image folder's name (`"image-folder:hymenoptera"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TrainedOn {
    /// MNIST or Fashion-MNIST: 28×28 grey images.
    Mnist(MnistKind),
    /// Anything else: the dataset's name.
    Other(String),
}

impl TrainedOn {
    /// The MNIST-style dataset, if it was one.
    pub fn mnist_kind(&self) -> Option<MnistKind> {
        match self {
            Self::Mnist(kind) => Some(*kind),
            Self::Other(_) => None,
        }
    }
}

fn burn_layout() -> String {
    "burn".into()
}

impl ArtifactConfig {
    /// Reads `config.json` from an artifact dir, checking that it holds a Strata vision model.
    pub fn load(dir: &Path) -> Result<Self, JobError> {
        let config: Self = artifact::load_config(dir, MODEL_TYPES)?;
        let (channels, _) = config.model.input();
        if config.normalization.channels() != channels {
            return Err(JobError::Artifact(format!(
                "{}: the normalisation has {} channel(s) but the model takes {channels}",
                dir.join(artifact::CONFIG_FILE).display(),
                config.normalization.channels()
            )));
        }
        Ok(config)
    }
}

/// Options of `train-vision`.
#[derive(Debug, Clone)]
pub struct TrainVisionOptions {
    /// Dataset to train on.
    pub dataset: MnistKind,
    /// Model name: `simple-cnn` or `lenet5`.
    pub model: String,
    /// Kernel size, stride, padding, pooling and widths set over the model's defaults.
    pub knobs: crate::models::ConvKnobs,
    /// Random shifts and rotations of training images.
    pub augment: bool,
    /// Training images held out for validation.
    pub valid_size: usize,
    /// Use only the first N training images (quick runs).
    pub train_limit: Option<usize>,
    /// Root that holds the datasets.
    pub data_dir: Option<PathBuf>,
    /// Where the results go.
    pub artifact_dir: PathBuf,
    /// The training run: length, batch size, optimizer, schedule, seed, `--resume`, backend
    /// (`model_type` is filled in by the job).
    pub fit: FitConfig,
}

/// What `train-vision` reports at the end.
#[derive(Debug, Clone, Serialize)]
pub struct TrainVisionReport {
    /// Accuracy on the test set, a fraction in [0, 1].
    pub test_accuracy: f64,
    /// Mean loss on the test set.
    pub test_loss: f64,
    /// Epochs (evaluation periods, in a run measured in steps) finished.
    pub epochs: usize,
    /// Optimizer steps done.
    pub steps: usize,
    /// What `epochs` counts: `epoch`, or `period` of `--eval-every` steps.
    pub unit: &'static str,
    /// Trainable parameters.
    pub parameters: usize,
    /// Wall time of the whole job, seconds.
    pub wall_seconds: f64,
    /// The artifact dir.
    pub artifact_dir: PathBuf,
}

/// Where a run of `model` on `dataset` goes when no `--artifact-dir` is given:
/// `artifacts/<dataset>-<model>`, so that runs on other data do not overwrite each other.
pub fn default_artifact_dir(dataset: MnistKind, model: &str) -> PathBuf {
    PathBuf::from("artifacts").join(format!("{}-{model}", dataset.name()))
}

/// A data loader of `set` in batches of `batch_size`.
fn loader(
    set: crate::mnist::ImageSet,
    batcher: ImageBatcher,
    batch_size: usize,
    shuffle: Option<u64>,
    device: &Device,
) -> Arc<dyn DataLoader<ImageBatch>> {
    image_loader(
        batcher,
        ImageDataset::new(set),
        batch_size,
        shuffle,
        0,
        device,
    )
}

/// Trains a CNN on MNIST or Fashion-MNIST and writes the artifact dir.
pub fn train_vision(
    opts: &TrainVisionOptions,
    device: &Device,
) -> Result<TrainVisionReport, JobError> {
    let started = Instant::now();
    let dir = &opts.artifact_dir;
    // Everything that can be refused is refused before a file is written or data is read:
    // MNIST-style images are 28×28 in 10 classes.
    let planned = VisionConfig::named(&opts.model, 1, 28, 10)?.with_knobs(&opts.knobs);
    planned.init(device)?; // a configuration the knobs make impossible
    let model_type = planned.model_type();
    if opts.valid_size == 0 {
        return Err(JobError::Invalid(
            "--valid-size must be at least 1: validation drives checkpoints and early stopping"
                .into(),
        ));
    }
    if opts.train_limit == Some(0) {
        return Err(JobError::Invalid("--train-limit must be at least 1".into()));
    }
    let mut fit_config = opts.fit.clone();
    fit_config.model_type = model_type.to_string();
    // What a resumed run must share with the run it continues: the data and the network.
    let job = serde_json::json!({
        "dataset": opts.dataset.name(),
        "model": serde_json::to_value(&planned).unwrap_or_default(),
        "valid-size": opts.valid_size,
        "train-limit": opts.train_limit,
        "augment": opts.augment,
    });
    let resume_from = strata_train::fit::prepare(dir, &fit_config, job.clone())?.map(|r| r.period);
    let mut splits = MnistSplits::load(opts.dataset, opts.data_dir.as_deref(), opts.valid_size)?;
    if let Some(limit) = opts.train_limit {
        let n = limit.min(splits.train.len());
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
    let model_config =
        VisionConfig::named(&opts.model, 1, rows, labels.len())?.with_knobs(&opts.knobs);
    let norm = Normalization::mnist(kind);
    let artifact = ArtifactConfig {
        model_type: model_config.model_type().to_string(),
        model: model_config.clone(),
        dataset: TrainedOn::Mnist(kind),
        labels: labels.iter().map(|s| s.to_string()).collect(),
        normalization: norm.clone(),
        weights: WEIGHTS_FILE.to_string(),
        weights_layout: "pytorch".into(),
    };
    // A resumed run draws new random numbers (data order, dropout, augmentation) rather than
    // repeating those of epoch 1.
    let seed = fit_config.run_seed(resume_from);
    strata_tensor::seed(device, seed);
    // Parameters must start on the autodiff device to be tracked.
    let model = model_config.init(&device.clone().autodiff())?;
    let parameters = model.num_params();
    eprintln!(
        "training {} ({parameters} parameters) on {} ({} train / {} valid / {} test images), {}",
        opts.model,
        kind.name(),
        splits.train.len(),
        splits.valid.len(),
        splits.test.len(),
        fit_config.describe(),
    );

    let mut train_batcher = ImageBatcher::new(rows, cols, &norm);
    if opts.augment {
        train_batcher = train_batcher.with_augment(Augment::default(), seed ^ 0x5eed);
    }
    let sample = crate::data::ImageItem {
        pixels: splits.test.image(0).to_vec(),
        label: splits.test.labels[0],
    };
    let train = loader(
        splits.train,
        train_batcher,
        fit_config.batch_size,
        Some(seed),
        device,
    );
    // Evaluation needs no gradients, so it takes larger batches, in file order.
    let eval_loader = |set| {
        loader(
            set,
            ImageBatcher::new(rows, cols, &norm),
            fit_config.batch_size.max(256),
            None,
            device,
        )
    };
    let valid = eval_loader(splits.valid);
    let test = eval_loader(splits.test);

    let before_fit = started.elapsed();
    let fitted = fit(model, dir, train, valid, &fit_config, job)?;
    let after_fit = Instant::now();
    let model = fitted.model.valid();
    let score = evaluate(&model, &test)
        .map_err(|e| JobError::Invalid(format!("reading the test set failed: {e}")))?;

    // PyTorch's layout: `SimpleCnn().load_state_dict(load_file(...))` works as it is.
    save_pytorch_safetensors(&model, &dir.join(WEIGHTS_FILE))?;
    let picture_err = |e: std::io::Error| {
        JobError::Artifact(format!("cannot write a picture in {}: {e}", dir.display()))
    };
    save_png(&filters_image(model.first_conv()), &dir.join("filters.png")).map_err(picture_err)?;
    let batch = burn::data::dataloader::batcher::Batcher::batch(
        &ImageBatcher::new(rows, cols, &norm),
        vec![sample],
        device,
    );
    save_png(
        &feature_maps_image(model.first_conv(), batch.images),
        &dir.join("feature-maps.png"),
    )
    .map_err(picture_err)?;

    let outside_fit = (before_fit + after_fit.elapsed()).as_secs_f64();
    finish_run(
        dir,
        fitted.metrics,
        &score,
        outside_fit,
        &artifact,
        &fit_config,
        parameters,
        started,
    )
}

/// What every vision run ends with, once its weights and pictures are written: `metrics.json`
/// with the held-out score and the wall time spent outside `fit`, then `config.json` (last, so
/// that a dir with one is complete), and the report.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_run(
    dir: &Path,
    mut metrics: Metrics,
    score: &Score,
    seconds_outside_fit: f64,
    artifact: &ArtifactConfig,
    fit_config: &FitConfig,
    parameters: usize,
    started: Instant,
) -> Result<TrainVisionReport, JobError> {
    let accuracy = score.accuracy.unwrap_or(0.0);
    metrics.test_accuracy = Some(accuracy);
    metrics.test_loss = Some(score.loss);
    artifact::finish_run(dir, &mut metrics, seconds_outside_fit, artifact)?;
    Ok(TrainVisionReport {
        test_accuracy: accuracy,
        test_loss: score.loss,
        epochs: metrics.history.last().map_or(0, |r| r.epoch),
        steps: metrics.history.last().map_or(0, |r| r.step),
        unit: fit_config.budget.unit(),
        parameters,
        wall_seconds: started.elapsed().as_secs_f64(),
        artifact_dir: dir.to_path_buf(),
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
        let path = dir.join(&config.weights);
        let model = match config.weights_layout.as_str() {
            "burn" => load_safetensors(model, &path)?,
            _ => load_pytorch_safetensors(model, &path)?,
        };
        Ok(Self {
            config,
            model,
            device: device.clone(),
        })
    }

    /// Class probabilities of the image file at `path`, most probable first (`top_k` of them).
    ///
    /// The image may have any size and colour type; a photo's EXIF orientation is applied, and
    /// [`prepare_image`](Self::prepare_image) makes it what the model was trained on. An
    /// image without ink (blank, or all paper) is a one-line [`JobError::Image`].
    pub fn predict_file(&self, path: &Path, top_k: usize) -> Result<Vec<ClassProb>, JobError> {
        let decoder = image::ImageReader::open(path)
            .map_err(|e| JobError::Image(format!("cannot open image {}: {e}", path.display())))?
            .with_guessed_format()
            .map_err(|e| JobError::Image(format!("cannot read image {}: {e}", path.display())))?
            .into_decoder()
            .map_err(|e| unreadable(path, e))?;
        let mut decoder = decoder;
        let orientation = image::ImageDecoder::orientation(&mut decoder).ok();
        let mut img =
            image::DynamicImage::from_decoder(decoder).map_err(|e| unreadable(path, e))?;
        if let Some(o) = orientation {
            img.apply_orientation(o); // photos taken sideways
        }
        let pixels = self
            .prepare_image(&img)
            .map_err(|e| JobError::Image(format!("image {}: {e}", path.display())))?;
        Ok(self.predict_pixels(&pixels, top_k))
    }

    /// The grey `side × side` pixels (0–255, light on dark) the model reads for a picture
    /// someone hands over: a drawing, a scan, a photo of paper.
    ///
    /// - A model trained on MNIST gets the digit made as MNIST's digits were
    ///   ([`digit::mnist_style`]): the ink found against the paper whatever the colours, specks
    ///   and border artefacts dropped, fitted into a 20×20 box keeping its aspect ratio, strokes
    ///   brought to MNIST's width, placed in the 28×28 field by its centre of mass. Resizing the
    ///   whole picture instead gives a small, thin, off-centre digit, and most are misread.
    /// - A model trained on Fashion-MNIST gets the object trimmed to its bounding box, its longer
    ///   side resized to 28 px and centred ([`digit::fashion_style`]), as Fashion-MNIST's
    ///   product photos were.
    /// - Any other model gets the whole picture resized to its input, inverted when its border
    ///   is light ([`digit::plain_resize`]).
    pub fn prepare_image(&self, img: &image::DynamicImage) -> Result<Vec<u8>, DigitError> {
        let (channels, side) = self.config.model.input();
        match (channels, side, self.config.dataset.mnist_kind()) {
            (1, digit::SIDE, Some(MnistKind::Mnist)) => digit::mnist_style(img),
            (1, digit::SIDE, Some(MnistKind::FashionMnist)) => digit::fashion_style(img),
            _ => Ok(digit::plain_resize(img, side as u32)),
        }
    }

    /// Class probabilities of one grey `side × side` image (0–255, light on dark).
    pub fn predict_pixels(&self, pixels: &[u8], top_k: usize) -> Vec<ClassProb> {
        let (_, side) = self.config.model.input();

        let batch = burn::data::dataloader::batcher::Batcher::batch(
            &ImageBatcher::new(side, side, &self.config.normalization),
            vec![crate::data::ImageItem {
                pixels: pixels.to_vec(),
                label: 0,
            }],
            &self.device,
        );
        top_classes(self.model.forward(batch.images), &self.config.labels, top_k)
    }
}

/// The `top_k` classes of one row of logits, with softmax probabilities and names.
pub fn top_classes(logits: Tensor<2>, labels: &[String], top_k: usize) -> Vec<ClassProb> {
    strata_tensor::ops::top_k(logits.reshape([-1]), top_k)
        .into_iter()
        .map(|(class, prob)| ClassProb {
            class,
            label: labels
                .get(class)
                .cloned()
                .unwrap_or_else(|| class.to_string()),
            prob,
        })
        .collect()
}

fn unreadable(path: &Path, e: image::ImageError) -> JobError {
    JobError::Image(format!(
        "cannot decode image {}: {e}; use a PNG, JPEG, GIF or BMP file",
        path.display()
    ))
}
