//! The vision jobs: `strata train-vision` and `strata predict-vision`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use strata_vision::job::{
    TrainVisionOptions, TrainVisionReport, VisionPredictor, default_artifact_dir, train_vision,
};
use strata_vision::mnist::MnistKind;
use strata_vision::models::{ConvKnobs, MODEL_NAMES, PoolKind, ResNetArch};
use strata_vision::transfer::{self, ImageNetPredictor, Strategy, TransferOptions};

use crate::args::{BackendArgs, DataArgs, FitArgs, Format, FormatArgs, OutputArgs, choice};

/// `strata train-vision`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// Dataset.
    #[arg(long, default_value = "mnist", value_parser = choice::<MnistKind>(MnistKind::NAMES))]
    dataset: MnistKind,
    /// Model.
    #[arg(long, default_value = "simple-cnn", value_parser = clap::builder::PossibleValuesParser::new(MODEL_NAMES))]
    model: String,
    /// Kernel size of both convolutions [default: the model's, 3 or 5]
    #[arg(long)]
    kernel_size: Option<usize>,
    /// Stride of both convolutions [default: 1]
    #[arg(long)]
    stride: Option<usize>,
    /// Zero padding on each side (of both convolutions; of the first only for lenet5) [default: the model's]
    #[arg(long)]
    padding: Option<usize>,
    /// Pooling after the convolutions [default: max]
    #[arg(long, value_parser = choice::<PoolKind>(PoolKind::NAMES))]
    pool: Option<PoolKind>,
    /// Output channels of the two convolutions, e.g. 16,32 [default: the model's]
    #[arg(long, value_name = "A,B", value_parser = parse_pair)]
    channels: Option<[usize; 2]>,
    /// Print each layer's output shape and parameter count, and stop.
    #[arg(long)]
    summary: bool,
    /// Train a ResNet on --image-folder instead of a CNN on MNIST (transfer learning with --pretrained).
    #[arg(long, value_parser = choice::<ResNetArch>(ResNetArch::NAMES), requires = "image_folder")]
    arch: Option<ResNetArch>,
    /// Dataset dir with train/ and val/, one subfolder per class in each (with --arch).
    #[arg(long, value_name = "DIR", requires = "arch")]
    image_folder: Option<PathBuf>,
    /// Pretrained weights for --arch: a torchvision .pth/.safetensors file, a Hub id (e.g. timm/resnet18.tv_in1k), or the artifact dir of an earlier --arch run.
    #[arg(long, value_name = "PATH_OR_HUB_ID", requires = "arch")]
    pretrained: Option<String>,
    /// Hub revision (branch, tag or commit) of --pretrained.
    #[arg(long, requires = "pretrained")]
    revision: Option<String>,
    /// What to retrain of a pretrained --arch: feature-extract (the head only), partial:N (the last N of 4 stages and the head) or full.
    #[arg(long, default_value = "full", value_parser = parse_strategy, requires = "arch")]
    strategy: Strategy,
    /// Learning rate of the retrained backbone, as a factor of --lr (the new head gets --lr).
    #[arg(long, default_value_t = 0.1, requires = "arch")]
    backbone_lr_scale: f64,
    /// Side of the square training crops for --arch (evaluation resizes to 8/7 of it and crops the centre).
    #[arg(long, default_value_t = 224, requires = "arch")]
    image_size: u32,
    /// Smallest random training crop of --arch, as a fraction of the image's area (torchvision's 0.08; raise it for small objects such as digits).
    #[arg(long, default_value_t = 0.08, requires = "arch")]
    crop_scale: f64,
    /// Augment training images with random shifts (±2 px) and rotations (±10°).
    #[arg(long)]
    augment: bool,
    /// Training images held out for validation.
    #[arg(long, default_value_t = 5000)]
    valid_size: usize,
    /// Train on the first N training images only (quick runs).
    #[arg(long)]
    train_limit: Option<usize>,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    pub(crate) fit: FitArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// `strata predict-vision`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// Artifact dir of a train-vision run [default: artifacts/mnist-simple-cnn, where the default run goes]
    #[arg(long, visible_alias = "model-dir", conflicts_with = "arch")]
    artifact_dir: Option<PathBuf>,
    /// An ImageNet ResNet to classify with (its 1000 classes), with --weights.
    #[arg(long, value_parser = choice::<ResNetArch>(ResNetArch::NAMES), requires = "weights")]
    arch: Option<ResNetArch>,
    /// Weights for --arch: a torchvision .pth/.safetensors file, or a Hub id (e.g. timm/resnet18.tv_in1k).
    #[arg(long, value_name = "PATH_OR_HUB_ID", requires = "arch")]
    weights: Option<String>,
    /// Hub revision (branch, tag or commit) of --weights.
    #[arg(long, requires = "weights")]
    revision: Option<String>,
    /// Image to classify (PNG, JPEG, GIF or BMP; any size, grey or colour).
    #[arg(long)]
    image: PathBuf,
    /// How many classes to print.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    #[command(flatten)]
    report: FormatArgs,
}

/// Parses `A,B` (two positive integers).
fn parse_pair(s: &str) -> Result<[usize; 2], String> {
    let parsed: Vec<usize> = s
        .split(',')
        .map(|p| p.trim().parse::<usize>().ok().filter(|&n| n > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("'{s}' is not two positive integers A,B (e.g. 16,32)"))?;
    <[usize; 2]>::try_from(parsed)
        .map_err(|_| format!("'{s}' is not two positive integers A,B (e.g. 16,32)"))
}

/// Parses `--strategy`.
fn parse_strategy(s: &str) -> Result<Strategy, String> {
    s.parse()
}

/// Trains a CNN on MNIST, or a ResNet on an image folder, and prints the held-out accuracy.
pub fn train(args: TrainArgs) -> Result<()> {
    let (backend, device) = args.backend.device()?;
    if let Some(arch) = args.arch {
        let knobs = [
            ("--kernel-size", args.kernel_size.is_some()),
            ("--stride", args.stride.is_some()),
            ("--padding", args.padding.is_some()),
            ("--pool", args.pool.is_some()),
            ("--channels", args.channels.is_some()),
            ("--augment", args.augment),
            ("--train-limit", args.train_limit.is_some()),
        ];
        if let Some((knob, _)) = knobs.iter().find(|(_, set)| *set) {
            bail!(
                "{knob} is an option of the MNIST CNNs, not of --arch {arch} (a ResNet has torchvision's layout; its images are augmented with random resized crops and flips)"
            );
        }
        let folder = args.image_folder.clone().unwrap_or_default();
        let artifact_dir = args.output.artifact_dir.clone().unwrap_or_else(|| {
            let name = folder
                .file_name()
                .map_or_else(|| "images".into(), |n| n.to_string_lossy().to_string());
            PathBuf::from("artifacts").join(format!("{name}-{arch}"))
        });
        let opts = TransferOptions {
            arch,
            pretrained: args.pretrained,
            revision: args.revision,
            strategy: args.strategy,
            backbone_lr_scale: args.backbone_lr_scale,
            image_folder: folder,
            image_size: args.image_size,
            crop_scale: args.crop_scale,
            artifact_dir,
            fit: args.fit.config(backend),
        };
        let report = transfer::train_transfer(&opts, &device)
            .with_context(|| format!("train-vision into {}", opts.artifact_dir.display()))?;
        return print_report(&report, args.output.report.format, "val");
    }
    let knobs = ConvKnobs {
        kernel_size: args.kernel_size,
        stride: args.stride,
        padding: args.padding,
        pool: args.pool,
        conv_channels: args.channels,
    };
    if args.summary {
        let config =
            strata_vision::models::VisionConfig::named(&args.model, 1, 28, 10)?.with_knobs(&knobs);
        print!("{}", strata_vision::summary::summary(&config, &device)?);
        return Ok(());
    }
    let artifact_dir = args
        .output
        .artifact_dir
        .clone()
        .unwrap_or_else(|| default_artifact_dir(args.dataset, &args.model));
    let opts = TrainVisionOptions {
        dataset: args.dataset,
        model: args.model,
        knobs,
        augment: args.augment,
        valid_size: args.valid_size,
        train_limit: args.train_limit,
        data_dir: args.data.data_dir,
        artifact_dir,
        fit: args.fit.config(backend),
    };
    let report = train_vision(&opts, &device)
        .with_context(|| format!("train-vision into {}", opts.artifact_dir.display()))?;
    print_report(&report, args.output.report.format, "test")
}

/// The last line of train-vision: accuracy on the held-out `split`.
fn print_report(report: &TrainVisionReport, format: Format, split: &str) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string(&report)?),
        Format::Text => println!(
            "{split} accuracy: {:.2}% (loss {:.4}) after {} {}s ({} steps) in {:.0}s; artifacts in {}",
            report.test_accuracy * 100.0,
            report.test_loss,
            report.epochs,
            report.unit,
            report.steps,
            report.wall_seconds,
            report.artifact_dir.display()
        ),
    }
    Ok(())
}

/// Classifies one image with a trained model, or with a pretrained ImageNet ResNet.
pub fn predict(args: PredictArgs) -> Result<()> {
    let (_, device) = args.backend.device()?;
    let top_k = args.top_k.max(1);
    let top = match (args.arch, args.weights) {
        (Some(arch), Some(weights)) => {
            ImageNetPredictor::load(arch, &weights, args.revision.as_deref(), &device)?
                .predict_file(&args.image, top_k)?
        }
        _ => {
            let dir = args
                .artifact_dir
                .unwrap_or_else(|| default_artifact_dir(MnistKind::Mnist, "simple-cnn"));
            if strata_train::artifact::read_model_type(&dir)? == transfer::MODEL_TYPE {
                ImageNetPredictor::from_artifact(&dir, &device)?.predict_file(&args.image, top_k)?
            } else {
                VisionPredictor::load(&dir, &device)?.predict_file(&args.image, top_k)?
            }
        }
    };
    match args.report.format {
        Format::Json => println!("{}", serde_json::json!({ "top_k": top })),
        Format::Text => {
            for p in &top {
                println!("{:>6.2}%  {} ({})", p.prob * 100.0, p.label, p.class);
            }
        }
    }
    Ok(())
}
