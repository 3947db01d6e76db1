//! The vision jobs: `strata train-vision` and `strata predict-vision`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use strata_vision::job::{TrainVisionOptions, VisionPredictor, default_artifact_dir, train_vision};
use strata_vision::mnist::MnistKind;
use strata_vision::models::{ConvKnobs, MODEL_NAMES, PoolKind};

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
    fit: FitArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// `strata predict-vision`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// Artifact dir of a train-vision run [default: artifacts/mnist-simple-cnn, where the default run goes]
    #[arg(long)]
    artifact_dir: Option<PathBuf>,
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

/// Trains a CNN and prints the test accuracy.
pub fn train(args: TrainArgs) -> Result<()> {
    let (backend, device) = args.backend.device()?;
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
    match args.output.report.format {
        Format::Json => println!("{}", serde_json::to_string(&report)?),
        Format::Text => println!(
            "test accuracy: {:.2}% (loss {:.4}) after {} {}s ({} steps) in {:.0}s; artifacts in {}",
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

/// Classifies one image with a trained model.
pub fn predict(args: PredictArgs) -> Result<()> {
    let (_, device) = args.backend.device()?;
    let dir = args
        .artifact_dir
        .unwrap_or_else(|| default_artifact_dir(MnistKind::Mnist, "simple-cnn"));
    let predictor = VisionPredictor::load(&dir, &device)?;
    let top = predictor.predict_file(&args.image, args.top_k.max(1))?;
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
