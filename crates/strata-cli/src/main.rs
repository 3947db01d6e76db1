//! `strata`: one subcommand per job, thin over the Strata crates.
//!
//! Usually run through `cargo xtask <job>`, which builds this binary with the backend's cargo
//! feature first. Each model family has its module ([`vision`], ...) over the argument groups
//! every job shares ([`args`]). Every error is one line on stderr and a non-zero exit code.

mod args;
mod bench;
mod selftest;
mod sequence;
mod text;
mod train_text;
mod vision;

/// mimalloc keeps freed tensor buffers for reuse instead of returning them to the OS, which
/// glibc's allocator does for large blocks (a page-fault storm on every training step).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use anyhow::Result;
use clap::builder::ArgPredicate::IsPresent;
use clap::{Parser, Subcommand};

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
    ///
    /// The defaults are the fastest recipe measured to reach 99 % on MNIST with the simple CNN
    /// (docs/perf.md); a ResNet (`--arch`) gets 5 epochs of batch 64 at 1e-3 without warm-up.
    #[command(
        mut_arg("epochs", |a| a.default_value("3").default_value_if("arch", IsPresent, "5")
            .help("Epochs to train (in total, also with --resume); 5 with --arch")),
        mut_arg("batch_size", |a| a.default_value("128").default_value_if("arch", IsPresent, "64")
            .help("Items per batch; 64 with --arch")),
        mut_arg("lr", |a| a.default_value("0.003").default_value_if("arch", IsPresent, "0.001")
            .help("Base learning rate; 0.001 with --arch")),
        mut_arg("warmup_steps", |a| a.default_value("100").default_value_if("arch", IsPresent, "0")
            .help("Optimizer steps of linear learning-rate warm-up; 0 with --arch")),
    )]
    TrainVision(Box<vision::TrainArgs>),
    /// Classify one image with a model trained by train-vision.
    PredictVision(vision::PredictArgs),
    /// Train an RNN, LSTM or GRU: a character-level language model, or MNIST read row by row.
    #[command(
        mut_arg("epochs", |a| a.default_value("5")),
        mut_arg("lr", |a| a.default_value("0.002")),
    )]
    TrainSequence(Box<sequence::TrainArgs>),
    /// Train a small GPT (GPT-2's architecture) on a corpus; writes a Hugging Face GPT-2 dir.
    #[command(
        mut_arg("epochs", |a| a.default_value("0").help("Epochs to train (in total, also with --resume); 0: --max-steps 2000")),
        mut_arg("batch_size", |a| a.default_value("12")),
        mut_arg("lr", |a| a.default_value("0.003")),
        mut_arg("optimizer", |a| a.default_value("adamw")),
        mut_arg("weight_decay", |a| a.default_value("0.1")),
        mut_arg("warmup_steps", |a| a.default_value("100")),
        mut_arg("clip_grad_norm", |a| a.default_value("1.0")),
        mut_arg("eval_every", |a| a.default_value("250")),
    )]
    TrainText(Box<train_text::TrainTextArgs>),
    /// Continue a prompt with a trained text model, streaming the new text.
    GenerateText(text::GenerateArgs),
    /// Score a GPT-2 on the validation part of a corpus (perplexity); --dtype bf16 compares with f32.
    EvalText(text::EvalArgs),
    /// Measure a benchmark (`strata bench --list` names them).
    Bench(bench::BenchArgs),
    /// Check a backend against flex: the same forward and backward pass, gap by gap.
    Selftest(selftest::SelftestArgs),
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {}", args::one_line(&e));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole cause chain, on one line.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::TrainVision(args) => vision::train(*args),
        Command::PredictVision(args) => vision::predict(args),
        Command::TrainSequence(args) => sequence::train(*args),
        Command::TrainText(args) => train_text::train(*args),
        Command::GenerateText(args) => text::run(args),
        Command::EvalText(args) => text::eval(args),
        Command::Bench(args) => bench::run(args),
        Command::Selftest(args) => selftest::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train_vision(args: &[&str]) -> args::FitArgs {
        let argv = ["strata", "train-vision"].iter().chain(args);
        match Cli::try_parse_from(argv).expect("valid arguments").command {
            Command::TrainVision(args) => args.fit,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn train_vision_defaults_to_the_mnist_recipe_and_to_torchvision_style_for_a_resnet() {
        let cnn = train_vision(&[]);
        assert_eq!(
            (cnn.epochs, cnn.batch_size, cnn.lr, cnn.warmup_steps),
            (3, 128, 3e-3, 100)
        );
        let resnet = train_vision(&["--arch", "resnet18", "--image-folder", "photos"]);
        assert_eq!(
            (
                resnet.epochs,
                resnet.batch_size,
                resnet.lr,
                resnet.warmup_steps
            ),
            (5, 64, 1e-3, 0)
        );
        // What is given wins either way.
        let given = train_vision(&["--arch", "resnet18", "--image-folder", "d", "--epochs", "2"]);
        assert_eq!(given.epochs, 2);
    }
}
