//! `strata bench NAME`: our side of `cargo xtask bench NAME` (the xtask adds the PyTorch
//! baseline). The last stdout line is `{"bench", "backend", "value", "unit", ...}`.
//! `strata bench --list` prints the benchmark names, one per line.

use anyhow::{Context, Result, bail};
use clap::Args;
use strata_vision::bench::cnn_train_throughput;
use strata_vision::mnist::{MnistKind, MnistSplits};

use crate::args::{BackendArgs, DataArgs, Format, FormatArgs};

/// Every benchmark, with what it measures.
const BENCHES: &[(&str, &str)] = &[(
    "cnn-train",
    "training images/s of the simple CNN on MNIST (Adam, full step)",
)];

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Benchmark to run (see --list).
    #[arg(required_unless_present = "list")]
    name: Option<String>,
    /// Print the benchmark names, one per line, and stop.
    #[arg(long)]
    list: bool,
    #[command(flatten)]
    backend: BackendArgs,
    /// Items per batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    report: FormatArgs,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if args.list {
        for (name, _) in BENCHES {
            println!("{name}");
        }
        return Ok(());
    }
    let name = args.name.unwrap_or_default();
    if !BENCHES.iter().any(|(n, _)| *n == name) {
        let names: Vec<&str> = BENCHES.iter().map(|(n, _)| *n).collect();
        bail!("unknown benchmark '{name}': choose {}", names.join(", "));
    }
    if args.batch_size == 0 || args.steps == 0 {
        bail!("--batch-size and --steps must be at least 1");
    }
    let (backend, device) = args.backend.device()?;
    let splits = MnistSplits::load(MnistKind::Mnist, args.data.data_dir.as_deref(), 0)
        .context("cnn-train trains on MNIST")?;
    eprintln!(
        "cnn-train: simple CNN, batch {}, Adam, {} warm-up + {} timed steps, backend {backend}, {} threads",
        args.batch_size,
        args.warmup,
        args.steps,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let t = cnn_train_throughput(
        &splits.train,
        &device,
        args.batch_size,
        args.warmup,
        args.steps,
    );
    let json = serde_json::json!({
        "bench": "cnn-train",
        "backend": backend.name(),
        "value": (t.images_per_s * 10.0).round() / 10.0,
        "unit": "img/s",
        "batch_size": args.batch_size,
        "steps": t.steps,
        "seconds": t.seconds,
    });
    match args.report.format {
        Format::Json => println!("{json}"),
        Format::Text => println!("cnn-train [{backend}]: {:.1} img/s", t.images_per_s),
    }
    Ok(())
}
