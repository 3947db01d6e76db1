//! Transfer learning with ResNets: weights people already have (torchvision `.pth`, Hub
//! `.safetensors`), the three ways to reuse them, and prediction with ImageNet's classes.
//!
//! A network trained on a large dataset learns general features in its lower layers (edges,
//! colours, textures) and task-specific ones in its higher layers. [`Strategy`] says how much of
//! it to retrain for a new task:
//! - `feature-extract`: the whole backbone is frozen (weights and BatchNorm statistics) and used
//!   as a fixed feature extractor; only the new head learns. No gradient is computed for the
//!   backbone, so a step costs little more than a forward pass.
//! - `partial:N`: the last N of the four stages are retrained with the head; the stem and the
//!   first stages stay frozen.
//! - `full`: everything is retrained, the backbone at a smaller learning rate than the head
//!   (`backbone_lr_scale`, 0.1 by default), so that what it knows is adjusted, not erased.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use burn::prelude::*;
use strata_data::hub::{HubSettings, Source};
use strata_tensor::weights::{load_pytorch_weights, save_pytorch_safetensors};
use strata_train::artifact::{self, WEIGHTS_FILE};
use strata_train::eval::evaluate;
use strata_train::{FitConfig, LrGroup, fit};

use crate::data::Normalization;
use crate::folder::{FolderBatcher, ImageFolder, TrainTransform};
use crate::job::{
    ArtifactConfig, ClassProb, JobError, TrainVisionReport, TrainedOn, finish_run, top_classes,
};
use crate::models::resnet::STAGES;
use crate::models::{ResNet, ResNetArch, VisionConfig, VisionNet};
use crate::preprocess::{ImageNetPreset, imagenet_classes, load_rgb};
use crate::viz::{filters_image, save_png};
use strata_train::data::loader as image_loader;

/// How much of a pretrained network is retrained (`--strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Freeze the backbone; train the new head only.
    FeatureExtract,
    /// Train the last N stages (1–4) and the head; freeze the rest.
    Partial(usize),
    /// Train everything, the backbone at a reduced learning rate.
    Full,
}

impl FromStr for Strategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "unknown --strategy '{s}': choose feature-extract, partial:N (N = 1 to 4 stages retrained) or full"
            )
        };
        match s.trim() {
            "feature-extract" => Ok(Self::FeatureExtract),
            "full" => Ok(Self::Full),
            other => {
                let n = other
                    .strip_prefix("partial:")
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(bad)?;
                if (1..=STAGES.len()).contains(&n) {
                    Ok(Self::Partial(n))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FeatureExtract => f.write_str("feature-extract"),
            Self::Partial(n) => write!(f, "partial:{n}"),
            Self::Full => f.write_str("full"),
        }
    }
}

/// The stem's modules, below the four stages.
const STEM: [&str; 2] = ["conv1", "bn1"];

impl Strategy {
    /// The module paths that stay frozen (weights and BatchNorm statistics).
    pub fn frozen(self) -> Vec<String> {
        let trained_stages = match self {
            Self::FeatureExtract => 0,
            Self::Partial(n) => n,
            Self::Full => return Vec::new(),
        };
        let frozen_stages = STAGES.len() - trained_stages;
        STEM.iter()
            .chain(&STAGES[..frozen_stages])
            .map(|s| s.to_string())
            .collect()
    }

    /// The learning-rate groups: every trained part of the backbone at `backbone_lr_scale` ×
    /// the base rate (the head keeps the base rate).
    pub fn lr_groups(self, backbone_lr_scale: f64) -> Vec<LrGroup> {
        let frozen = self.frozen();
        STEM.iter()
            .chain(&STAGES)
            .filter(|m| !frozen.iter().any(|f| f == *m))
            .map(|m| LrGroup {
                prefix: m.to_string(),
                lr_scale: backbone_lr_scale,
            })
            .collect()
    }
}

/// The weights file a `PATH_OR_HUB_ID` names: a local file as it is; in a local folder or a
/// Hub repository, `model.safetensors` (what timm's and Hugging Face's repositories hold, e.g.
/// `timm/resnet18.tv_in1k`), else `pytorch_model.bin`.
pub fn resolve_weights(
    arg: &str,
    revision: Option<&str>,
    settings: &HubSettings,
) -> Result<PathBuf, JobError> {
    let source = Source::resolve(arg, revision, settings)
        .map_err(|e| JobError::Invalid(format!("weights '{arg}': {e}")))?;
    if let Source::Local(path) = &source
        && path.is_file()
    {
        return Ok(path.clone());
    }
    match source.file("model.safetensors") {
        Ok(path) => Ok(path),
        Err(first) => source
            .file("pytorch_model.bin")
            .map_err(|_| JobError::Invalid(format!("weights '{arg}': {first}"))),
    }
}

/// A ResNet of `arch` loaded from a torchvision state dict (`.pth`, `.bin` or `.safetensors`)
/// found by [`resolve_weights`], with an ImageNet head (1000 classes); or from the artifact dir
/// of a ResNet Strata trained, with that run's head.
pub fn load_pretrained(
    arch: ResNetArch,
    weights: &str,
    revision: Option<&str>,
    device: &Device,
) -> Result<ResNet, JobError> {
    let dir = Path::new(weights);
    if dir.join(artifact::CONFIG_FILE).is_file() {
        let config = ArtifactConfig::load(dir)?;
        let expected = arch.config();
        return match &config.model {
            VisionConfig::Resnet(c) if c.block == expected.block && c.layers == expected.layers => {
                Ok(load_pytorch_weights(
                    c.init(device)?,
                    &dir.join(&config.weights),
                )?)
            }
            _ => Err(JobError::Invalid(format!(
                "{} holds a {} ({}), not a {arch}",
                dir.display(),
                config.model_type,
                config.model.describe()
            ))),
        };
    }
    let path = resolve_weights(weights, revision, &HubSettings::from_env())?;
    let model = arch.config().init(device)?;
    Ok(load_pytorch_weights(model, &path)?)
}

/// An ImageNet classifier: a pretrained ResNet, torchvision's preprocessing and the 1000 class
/// names.
#[derive(Debug)]
pub struct ImageNetPredictor {
    model: ResNet,
    labels: Vec<String>,
    preset: ImageNetPreset,
    device: Device,
}

impl ImageNetPredictor {
    /// Loads `arch` with the weights `PATH_OR_HUB_ID` names.
    pub fn load(
        arch: ResNetArch,
        weights: &str,
        revision: Option<&str>,
        device: &Device,
    ) -> Result<Self, JobError> {
        Ok(Self::new(
            load_pretrained(arch, weights, revision, device)?,
            imagenet_classes(),
            device,
        ))
    }

    /// Loads a ResNet fine-tuned by [`train_transfer`] from its artifact dir.
    pub fn from_artifact(dir: &Path, device: &Device) -> Result<Self, JobError> {
        let config = ArtifactConfig::load(dir)?;
        let VisionConfig::Resnet(resnet) = &config.model else {
            return Err(JobError::Artifact(format!(
                "{} holds a {}, not a ResNet",
                dir.display(),
                config.model_type
            )));
        };
        let model = load_pytorch_weights(resnet.init(device)?, &dir.join(&config.weights))?;
        Ok(Self::new(model, config.labels, device))
    }

    /// A classifier over `model` whose classes are named by `labels`.
    pub fn new(model: ResNet, labels: Vec<String>, device: &Device) -> Self {
        Self {
            model,
            labels,
            preset: ImageNetPreset::default(),
            device: device.clone(),
        }
    }

    /// The `top_k` most probable classes of the image file at `path`, preprocessed as
    /// torchvision's ImageNet preset does.
    pub fn predict_file(&self, path: &Path, top_k: usize) -> Result<Vec<ClassProb>, JobError> {
        let image = load_rgb(path).map_err(|e| JobError::Image(e.to_string()))?;
        let crop = self.preset.crop as usize;
        let input = Tensor::<4>::from_data(
            TensorData::new(self.preset.apply(&image), [1, 3, crop, crop]),
            &self.device,
        );
        Ok(top_classes(self.model.forward(input), &self.labels, top_k))
    }
}

/// Options of `train-vision --arch`.
#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// The ResNet.
    pub arch: ResNetArch,
    /// Pretrained weights (`PATH_OR_HUB_ID`); `None` trains from scratch.
    pub pretrained: Option<String>,
    /// Hub revision of `pretrained`.
    pub revision: Option<String>,
    /// How much of the pretrained network is retrained.
    pub strategy: Strategy,
    /// Learning-rate factor of the retrained backbone parts (the head has the base rate).
    pub backbone_lr_scale: f64,
    /// The dataset: `train/` and `val/`, one subfolder per class.
    pub image_folder: PathBuf,
    /// Side of the square training crops (224 as ImageNet; evaluation resizes to 8/7 of it,
    /// then crops the centre).
    pub image_size: u32,
    /// Smallest area of a random training crop, as a fraction of the image (torchvision's
    /// `RandomResizedCrop` default: 0.08).
    pub crop_scale: f64,
    /// Where the results go.
    pub artifact_dir: PathBuf,
    /// The training run (`model_type`, frozen parts and groups are filled in by the job).
    pub fit: FitConfig,
}

/// The `model_type` of a fine-tuned ResNet's artifact dir.
pub const MODEL_TYPE: &str = "strata-resnet";

/// Fine-tunes (or trains from scratch) a ResNet on an image folder and writes the artifact
/// dir: `config.json`, `model.safetensors` (a torchvision state dict), `metrics.json`,
/// `curves.png`, `filters.png`. The reported accuracy is on `val/`.
pub fn train_transfer(
    opts: &TransferOptions,
    device: &Device,
) -> Result<TrainVisionReport, JobError> {
    let started = Instant::now();
    let dir = &opts.artifact_dir;
    if opts.pretrained.is_none() && opts.strategy != Strategy::Full {
        return Err(JobError::Invalid(format!(
            "--strategy {} keeps pretrained layers: pass --pretrained PATH_OR_HUB_ID, or train from scratch with --strategy full",
            opts.strategy
        )));
    }
    if !(opts.backbone_lr_scale > 0.0 && opts.backbone_lr_scale.is_finite()) {
        return Err(JobError::Invalid(format!(
            "--backbone-lr-scale {} must be above 0 (0.1: the backbone learns at a tenth of --lr)",
            opts.backbone_lr_scale
        )));
    }
    if !(opts.crop_scale > 0.0 && opts.crop_scale <= 1.0) {
        return Err(JobError::Invalid(format!(
            "--crop-scale {} must be in (0, 1]: the smallest random crop, as a fraction of the image's area",
            opts.crop_scale
        )));
    }
    if opts.image_size < 32 {
        return Err(JobError::Invalid(format!(
            "--image-size {} is too small: a ResNet divides it by 32",
            opts.image_size
        )));
    }
    let folder = ImageFolder::open(&opts.image_folder)?;
    let classes = folder.classes().to_vec();
    let config = opts.arch.config().with_num_classes(classes.len());
    let mut fit_config = opts.fit.clone();
    fit_config.model_type = MODEL_TYPE.to_string();
    let mut frozen = opts.strategy.frozen();
    frozen.extend(fit_config.frozen.iter().cloned());
    fit_config.frozen = frozen;
    let mut groups = opts.strategy.lr_groups(opts.backbone_lr_scale);
    groups.extend(fit_config.lr_groups.iter().cloned());
    fit_config.lr_groups = groups;
    let job = serde_json::json!({
        "image-folder": opts.image_folder,
        "arch": opts.arch.name(),
        "pretrained": opts.pretrained,
        "revision": opts.revision,
        "strategy": opts.strategy.to_string(),
        "backbone-lr-scale": opts.backbone_lr_scale,
        "image-size": opts.image_size,
        "crop-scale": opts.crop_scale,
        "classes": classes,
    });
    let resume_from = strata_train::fit::prepare(dir, &fit_config, job.clone())?.map(|r| r.period);

    let seed = fit_config.seed;
    strata_tensor::seed(device, seed);
    let train_device = device.clone().autodiff();
    let model = match &opts.pretrained {
        Some(weights) => {
            load_pretrained(opts.arch, weights, opts.revision.as_deref(), &train_device)?
                .with_head(classes.len(), &train_device)
        }
        None => config.init(&train_device)?,
    };
    let net = VisionNet::Resnet(model);
    let parameters = net.num_params();
    eprintln!(
        "training {} ({}, {parameters} parameters, strategy {}) on {} ({} classes, {} train / {} val images), {}",
        opts.arch,
        opts.pretrained.as_deref().unwrap_or("from scratch"),
        opts.strategy,
        opts.image_folder.display(),
        classes.len(),
        folder.train().len(),
        folder.val().len(),
        fit_config.describe(),
    );
    let mut transform = TrainTransform::imagenet(opts.image_size, seed);
    transform.crop.scale = (opts.crop_scale, 1.0);
    let train_set = folder.train_dataset(transform);
    // A resumed run goes on with new crops, as if it had not stopped.
    train_set.start_at_pass(resume_from.unwrap_or(0) as u64);
    let preset = eval_preset(opts.image_size);
    // JPEG decoding and resizing run on two worker threads.
    let batch = fit_config.batch_size;
    let train = image_loader(FolderBatcher, train_set, batch, Some(seed), 2, device);
    let valid = image_loader(
        FolderBatcher,
        folder.val_dataset(preset),
        batch,
        None,
        2,
        device,
    );
    let before_fit = started.elapsed();
    let fitted = fit(net, dir, train, valid.clone(), &fit_config, job)?;
    let after_fit = Instant::now();
    let net = fitted.model.valid();
    let score = evaluate(&net, &valid)
        .map_err(|e| JobError::Invalid(format!("reading the val/ images failed: {e}")))?;
    save_pytorch_safetensors(&net, &dir.join(WEIGHTS_FILE))?;
    save_png(&filters_image(net.first_conv()), &dir.join("filters.png")).map_err(|e| {
        JobError::Artifact(format!("cannot write a picture in {}: {e}", dir.display()))
    })?;
    let outside_fit = (before_fit + after_fit.elapsed()).as_secs_f64();
    let name = opts
        .image_folder
        .file_name()
        .map_or_else(|| "images".into(), |n| n.to_string_lossy().to_string());
    let artifact = ArtifactConfig {
        model_type: MODEL_TYPE.to_string(),
        model: VisionConfig::Resnet(config),
        dataset: TrainedOn::Other(format!("image-folder:{name}")),
        labels: classes,
        normalization: Normalization::imagenet(),
        weights: WEIGHTS_FILE.to_string(),
        weights_layout: "pytorch".into(),
    };
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

/// The evaluation preprocessing for training crops of side `size`: torchvision's ratio of
/// resize to crop (256 / 224), so 224 gives the ImageNet preset.
fn eval_preset(size: u32) -> ImageNetPreset {
    ImageNetPreset {
        resize: (size as f64 * 256.0 / 224.0).round() as u32,
        crop: size,
        ..ImageNetPreset::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_parse_and_freeze_what_they_say() {
        let s: Strategy = "feature-extract".parse().unwrap();
        assert_eq!(
            s.frozen(),
            ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"]
        );
        assert!(s.lr_groups(0.1).is_empty());
        let s: Strategy = "partial:2".parse().unwrap();
        assert_eq!(s, Strategy::Partial(2));
        assert_eq!(s.frozen(), ["conv1", "bn1", "layer1", "layer2"]);
        let groups: Vec<_> = s.lr_groups(0.1).into_iter().map(|g| g.prefix).collect();
        assert_eq!(groups, ["layer3", "layer4"]);
        let s: Strategy = "full".parse().unwrap();
        assert!(s.frozen().is_empty());
        assert_eq!(s.lr_groups(0.5).len(), 6);
        assert_eq!(s.to_string(), "full");
        for bad in ["partial:0", "partial:5", "partial:x", "frozen", ""] {
            let err = bad.parse::<Strategy>().unwrap_err();
            assert!(err.contains("feature-extract"), "{err}");
        }
    }
}
