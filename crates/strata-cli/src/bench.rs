//! `strata bench NAME`: our side of `cargo xtask bench NAME` (the xtask adds the PyTorch
//! baseline). The last stdout line is `{"bench", "backend", "value", "unit", ...}`.
//! `strata bench --list` prints the benchmark names, one per line.

use anyhow::{Context, Result, bail};
use clap::Args;
use strata_sequence::bench::lstm_train_throughput;
use strata_sequence::corpus::{locate_corpus, read_corpus};
use strata_vision::bench::{Throughput, cnn_train_throughput, resnet18_throughput};
use strata_vision::mnist::{MnistKind, MnistSplits};

use strata_transformer::WeightDtype;
use strata_transformer::bench::gpt2_decode_throughput;

use crate::args::{BackendArgs, DataArgs, Format, FormatArgs, choice};

/// Every benchmark: name, what it measures, default batch size, warm-up and timed steps.
const BENCHES: &[(&str, &str, [usize; 3])] = &[
    (
        "cnn-train",
        "training images/s of the simple CNN on MNIST (Adam, full step)",
        [64, 10, 50],
    ),
    (
        "lenet5-train",
        "training images/s of LeNet-5 on MNIST (Adam, full step)",
        [64, 10, 50],
    ),
    (
        "resnet18-infer",
        "inference images/s of ResNet-18 at 224x224 (eval mode)",
        [8, 3, 10],
    ),
    (
        "resnet18-train",
        "training images/s of ResNet-18 at 224x224 (SGD momentum, full step)",
        [8, 3, 10],
    ),
    (
        "lstm-train",
        "training tokens/s of the 2x256 LSTM character model on tiny Shakespeare (Adam, full step)",
        [32, 5, 30],
    ),
    (
        "gpt2-decode",
        "greedy decoding tokens/s of GPT-2 small (124M, random weights, full 50257-token head): 16-token prompt, then 64 new tokens, batch 1",
        [1, 1, 3],
    ),
];

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
    /// Items per batch [default: 64 for cnn-train and lenet5-train, 8 for the ResNets, 32 for lstm-train]
    #[arg(long)]
    batch_size: Option<usize>,
    /// Untimed steps first [default: 10 for cnn-train and lenet5-train, 3 for the ResNets, 5 for lstm-train, 1 generation for gpt2-decode]
    #[arg(long)]
    warmup: Option<usize>,
    /// Timed steps [default: 50 for cnn-train and lenet5-train, 10 for the ResNets, 30 for lstm-train, 3 generations for gpt2-decode]
    #[arg(long)]
    steps: Option<usize>,
    /// Characters per window (lstm-train).
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    /// Precision of the weights (gpt2-decode).
    #[arg(long, default_value = "f32", value_parser = choice::<WeightDtype>(WeightDtype::NAMES))]
    dtype: WeightDtype,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    report: FormatArgs,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if args.list {
        for (name, _, _) in BENCHES {
            println!("{name}");
        }
        return Ok(());
    }
    let name = args.name.unwrap_or_default();
    let Some((name, what, [batch, warmup, steps])) =
        BENCHES.iter().copied().find(|(n, _, _)| *n == name)
    else {
        let names: Vec<&str> = BENCHES.iter().map(|(n, _, _)| *n).collect();
        bail!("unknown benchmark '{name}': choose {}", names.join(", "));
    };
    let batch_size = args.batch_size.unwrap_or(batch);
    let warmup = args.warmup.unwrap_or(warmup);
    let steps = args.steps.unwrap_or(steps);
    if batch_size == 0 || steps == 0 || args.seq_len == 0 {
        bail!("--batch-size, --steps and --seq-len must be at least 1");
    }
    let (backend, device) = args.backend.device()?;
    eprintln!(
        "{name}: {what}; batch {batch_size}, {warmup} warm-up + {steps} timed steps, backend {backend}, {} threads",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if name == "gpt2-decode" {
        if batch_size != 1 {
            bail!("gpt2-decode decodes one sequence: --batch-size must be 1");
        }
        args.dtype.check(&device)?;
        let t = gpt2_decode_throughput(&device, args.dtype, 16, 64, warmup, steps);
        let bandwidth = strata_train::bench::read_bandwidth_gb_s();
        let limit = bandwidth * 1e9 / t.weight_bytes_per_token;
        let json = serde_json::json!({
            "bench": name,
            "backend": backend.name(),
            "value": (t.decode_tokens_per_s * 10.0).round() / 10.0,
            "unit": "tokens/s",
            "dtype": args.dtype.name(),
            "prompt_tokens_per_s": (t.prompt_tokens_per_s * 10.0).round() / 10.0,
            "prompt_tokens": 16,
            "new_tokens": 64,
            "runs": t.runs,
            "read_gb_s": (bandwidth * 10.0).round() / 10.0,
            "weight_mb_per_token": (t.weight_bytes_per_token / 1e5).round() / 10.0,
            "bandwidth_limit_tokens_per_s": (limit * 10.0).round() / 10.0,
        });
        match args.report.format {
            Format::Json => println!("{json}"),
            Format::Text => println!(
                "{name} [{backend}, {}]: {:.1} tokens/s decoding, {:.1} tokens/s prompt; memory reads {bandwidth:.1} GB/s, so {:.1} MB of weights per token allow {limit:.1} tokens/s",
                args.dtype,
                t.decode_tokens_per_s,
                t.prompt_tokens_per_s,
                t.weight_bytes_per_token / 1e6
            ),
        }
        return Ok(());
    }
    let (value, unit, t) = match name {
        "lstm-train" => {
            let path = locate_corpus(None, args.data.data_dir.as_deref())
                .context("lstm-train trains on tiny Shakespeare")?;
            let text = read_corpus(&path)?;
            let t = lstm_train_throughput(&text, &device, batch_size, args.seq_len, warmup, steps);
            (t.tokens_per_s, "tokens/s", (t.steps, t.seconds))
        }
        _ => {
            let t: Throughput = match name {
                "cnn-train" | "lenet5-train" => {
                    let splits =
                        MnistSplits::load(MnistKind::Mnist, args.data.data_dir.as_deref(), 0)
                            .with_context(|| format!("{name} trains on MNIST"))?;
                    let model = if name == "cnn-train" {
                        "simple-cnn"
                    } else {
                        "lenet5"
                    };
                    cnn_train_throughput(model, &splits.train, &device, batch_size, warmup, steps)
                }
                "resnet18-infer" => resnet18_throughput(&device, batch_size, warmup, steps, false),
                _ => resnet18_throughput(&device, batch_size, warmup, steps, true),
            };
            (t.images_per_s, "img/s", (t.steps, t.seconds))
        }
    };
    let json = serde_json::json!({
        "bench": name,
        "backend": backend.name(),
        "value": (value * 10.0).round() / 10.0,
        "unit": unit,
        "batch_size": batch_size,
        "steps": t.0,
        "seconds": t.1,
    });
    match args.report.format {
        Format::Json => println!("{json}"),
        Format::Text => println!("{name} [{backend}]: {value:.1} {unit}"),
    }
    Ok(())
}
