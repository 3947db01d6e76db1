//! The sequence job: `strata train-sequence`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use strata_sequence::job::{
    SequenceTask, TrainSequenceOptions, TrainSequenceReport, default_artifact_dir, train_sequence,
};
use strata_sequence::recurrent::Cell;

use crate::args::{BackendArgs, DataArgs, FitArgs, Format, OutputArgs, choice};

/// `strata train-sequence`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// What to learn: the next character of a corpus, or MNIST digits read one row per step.
    #[arg(long, default_value = "char-lm", value_parser = choice::<SequenceTask>(SequenceTask::NAMES))]
    task: SequenceTask,
    /// Recurrent cell (rnn: tanh, rnn-relu: ReLU).
    #[arg(long, default_value = "lstm", value_parser = choice::<Cell>(Cell::NAMES))]
    cell: Cell,
    /// Stacked recurrent layers [default: 2 for char-lm, 1 for row-mnist]
    #[arg(long)]
    layers: Option<usize>,
    /// Hidden units per layer [default: 256 for char-lm, 128 for row-mnist]
    #[arg(long)]
    hidden: Option<usize>,
    /// Features of each character's embedding (char-lm).
    #[arg(long, default_value_t = 128)]
    embedding: usize,
    /// Read each sequence in both directions too (row-mnist).
    #[arg(long)]
    bidirectional: bool,
    /// Dropout between recurrent layers (and before a language model's head).
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
    /// Characters per training window (char-lm).
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    /// A UTF-8 text file to learn (char-lm) [default: tiny Shakespeare under --data-dir]
    #[arg(long, value_name = "FILE")]
    corpus: Option<PathBuf>,
    /// Training images held out for validation (row-mnist).
    #[arg(long, default_value_t = 5000)]
    valid_size: usize,
    /// Train on the first N training images only (row-mnist; quick runs).
    #[arg(long)]
    train_limit: Option<usize>,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    fit: FitArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// Trains a character-level language model or a row-by-row classifier and prints its score.
pub fn train(args: TrainArgs) -> Result<()> {
    let (backend, device) = args.backend.device()?;
    let lm = args.task == SequenceTask::CharLm;
    let artifact_dir = args
        .output
        .artifact_dir
        .clone()
        .unwrap_or_else(|| default_artifact_dir(args.task, args.cell));
    let opts = TrainSequenceOptions {
        task: args.task,
        cell: args.cell,
        layers: args.layers.unwrap_or(if lm { 2 } else { 1 }),
        hidden: args.hidden.unwrap_or(if lm { 256 } else { 128 }),
        embedding: args.embedding,
        bidirectional: args.bidirectional,
        dropout: args.dropout,
        seq_len: args.seq_len,
        corpus: args.corpus,
        data_dir: args.data.data_dir,
        valid_size: args.valid_size,
        train_limit: args.train_limit,
        artifact_dir,
        fit: args.fit.config(backend),
    };
    let report = train_sequence(&opts, &device)
        .with_context(|| format!("train-sequence into {}", opts.artifact_dir.display()))?;
    print_report(&report, args.output.report.format)
}

/// The last line of train-sequence.
fn print_report(report: &TrainSequenceReport, format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let score = match (report.valid_loss, report.test_accuracy) {
        (Some(loss), _) => format!(
            "validation loss: {loss:.4} nats/char ({:.3} bits/char, perplexity {:.2})",
            report.valid_bits_per_char.unwrap_or_default(),
            loss.exp()
        ),
        (None, Some(acc)) => format!("test accuracy: {:.2}%", acc * 100.0),
        (None, None) => "trained".into(),
    };
    println!(
        "{score} after {} {}s ({} steps) in {:.0}s; artifacts in {}",
        report.epochs,
        report.unit,
        report.steps,
        report.wall_seconds,
        report.artifact_dir.display()
    );
    Ok(())
}
