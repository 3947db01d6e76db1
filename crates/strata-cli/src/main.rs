//! `strata`: one subcommand per job, thin over the Strata crates.
//!
//! Usually run through `cargo xtask <job>`, which builds this binary with the backend's cargo
//! feature first. Every error is one line on stderr and a non-zero exit code.

mod bench;

/// mimalloc keeps freed tensor buffers for reuse instead of returning them to the OS, which
/// glibc's allocator does for large blocks (a page-fault storm on every training step).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use strata_tensor::select_device;
use strata_train::LrSchedule;
use strata_vision::job::{TrainVisionOptions, VisionPredictor, train_vision};
use strata_vision::mnist::MnistKind;

#[derive(Parser, Debug)]
#[command(
    name = "strata",
    version,
    about = "Deep learning in Rust on Burn: train and run models from the command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a CNN on MNIST or Fashion-MNIST.
    TrainVision(TrainVisionArgs),
    /// Classify one image with a model trained by train-vision.
    PredictVision(PredictVisionArgs),
    /// Measure a benchmark (cnn-train: training images/s of the simple CNN).
    Bench(bench::BenchArgs),
}

/// Options every job shares.
#[derive(Args, Debug, Clone)]
pub struct BackendArgs {
    /// Backend: flex, ndarray, tch, cuda or wgpu (must be compiled in). [env: STRATA_BACKEND]
    #[arg(long)]
    backend: Option<String>,
    /// GPU index for cuda, or LibTorch's CUDA device for tch (tch runs on the CPU without it).
    #[arg(long)]
    device_index: Option<usize>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Args, Debug)]
struct TrainVisionArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// Dataset: mnist or fashion-mnist.
    #[arg(long, default_value = "mnist")]
    dataset: String,
    /// Model: simple-cnn or lenet5.
    #[arg(long, default_value = "simple-cnn")]
    model: String,
    /// Epochs to train.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Learning-rate schedule: constant, cosine or step.
    #[arg(long, default_value = "cosine")]
    schedule: String,
    /// Stop after this many epochs without a better validation loss.
    #[arg(long)]
    patience: Option<usize>,
    /// Augment training images with random shifts (±2 px) and rotations (±10°).
    #[arg(long)]
    augment: bool,
    /// Training images held out for validation.
    #[arg(long, default_value_t = 5000)]
    valid_size: usize,
    /// Train on the first N training images only (quick runs).
    #[arg(long)]
    train_limit: Option<usize>,
    /// Seed of weights, dropout, data order and augmentation.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Root that holds the datasets (mnist/, fashion-mnist/, ...).
    #[arg(long, env = "STRATA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Where weights, metrics, curves and pictures are written.
    #[arg(long, default_value = "artifacts/vision")]
    artifact_dir: PathBuf,
    /// Continue from the last checkpoint in the artifact dir.
    #[arg(long)]
    resume: bool,
    /// Output of the final report.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args, Debug)]
struct PredictVisionArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// Artifact dir of a train-vision run.
    #[arg(long, default_value = "artifacts/vision")]
    artifact_dir: PathBuf,
    /// Image to classify (PNG, JPEG, GIF or BMP; any size, grey or colour).
    #[arg(long)]
    image: PathBuf,
    /// How many classes to print.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

fn main() -> ExitCode {
    // A bug or a backend failure surfaces as one line too (RUST_BACKTRACE=1 shows the details).
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        std::panic::set_hook(Box::new(|info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let msg = msg.lines().next().unwrap_or_default().to_string();
            let place = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            eprintln!(
                "error: internal failure{place}: {msg} (rerun with RUST_BACKTRACE=1 and report it)"
            );
        }));
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::TrainVision(args) => train(args),
        Command::PredictVision(args) => predict(args),
        Command::Bench(args) => bench::run(args),
    }
}

fn device(
    args: &BackendArgs,
) -> Result<(strata_tensor::BackendKind, burn::tensor::Device), String> {
    select_device(args.backend.as_deref(), args.device_index).map_err(|e| e.to_string())
}

fn train(args: TrainVisionArgs) -> Result<(), String> {
    let dataset = MnistKind::parse(&args.dataset).ok_or_else(|| {
        format!(
            "unknown dataset '{}': choose mnist or fashion-mnist",
            args.dataset
        )
    })?;
    let schedule = LrSchedule::parse(&args.schedule, args.epochs).ok_or_else(|| {
        format!(
            "unknown --schedule '{}': choose constant, cosine or step",
            args.schedule
        )
    })?;
    let (backend, device) = device(&args.backend)?;
    let opts = TrainVisionOptions {
        dataset,
        model: args.model,
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        schedule,
        patience: args.patience,
        augment: args.augment,
        valid_size: args.valid_size,
        train_limit: args.train_limit,
        seed: args.seed,
        data_dir: args.data_dir,
        artifact_dir: args.artifact_dir,
        resume: args.resume,
        backend: backend.name().to_string(),
    };
    let report = train_vision(&opts, &device).map_err(|e| e.to_string())?;
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string(&report).expect("report serialises")
        ),
        Format::Text => println!(
            "test accuracy: {:.2}% (loss {:.4}) after {} epochs in {:.0}s; artifacts in {}",
            report.test_accuracy * 100.0,
            report.test_loss,
            report.epochs,
            report.wall_seconds,
            report.artifact_dir.display()
        ),
    }
    Ok(())
}

fn predict(args: PredictVisionArgs) -> Result<(), String> {
    let (_, device) = device(&args.backend)?;
    let predictor =
        VisionPredictor::load(&args.artifact_dir, &device).map_err(|e| e.to_string())?;
    let top = predictor
        .predict_file(&args.image, args.top_k.max(1))
        .map_err(|e| e.to_string())?;
    match args.format {
        Format::Json => println!("{}", serde_json::json!({ "top_k": top })),
        Format::Text => {
            for p in &top {
                println!("{:>6.2}%  {} ({})", p.prob * 100.0, p.label, p.class);
            }
        }
    }
    Ok(())
}
