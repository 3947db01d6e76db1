//! The transformer training job: `strata train-text`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use strata_train::Budget;
use strata_transformer::train::{
    TokenizerChoice, TrainTextOptions, default_artifact_dir, train_text,
};

use crate::args::{BackendArgs, DataArgs, FitArgs, Format, OutputArgs};

/// Steps of a run when neither --max-steps nor --epochs is given (nanoGPT's CPU run).
const DEFAULT_STEPS: usize = 2000;

/// `strata train-text`.
#[derive(Args, Debug)]
pub struct TrainTextArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// A UTF-8 text file to learn [default: tiny Shakespeare under --data-dir]
    #[arg(long, value_name = "FILE")]
    corpus: Option<PathBuf>,
    /// How text becomes tokens: char (one token per character of the corpus), or the tokenizer
    /// of a model dir or Hub id (e.g. DATA_DIR/gpt2-tokenizer: GPT-2's byte-level BPE).
    #[arg(long, default_value = "char", value_name = "char|DIR|HUB_ID")]
    tokenizer: String,
    /// Transformer blocks.
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Attention heads per block.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Width of the residual stream (embedding size).
    #[arg(long, default_value_t = 128)]
    embd: usize,
    /// Tokens of context (each training window).
    #[arg(long, default_value_t = 64)]
    block_size: usize,
    /// Dropout on embeddings, attention probabilities and residual branches.
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
    /// Second moment decay of Adam/AdamW (nanoGPT uses 0.99 for its small models).
    #[arg(long, default_value_t = 0.99)]
    beta2: f64,
    /// Lowest learning rate of the cosine schedule, as a fraction of --lr.
    #[arg(long, default_value_t = 0.1)]
    min_lr_ratio: f64,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    fit: FitArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// Trains a small GPT and prints its validation loss.
pub fn train(args: TrainTextArgs) -> Result<()> {
    let (backend, device) = args.backend.device()?;
    let mut fit = args.fit.config(backend);
    if args.fit.max_steps.is_none() && args.fit.epochs == 0 {
        fit.budget = Budget::Steps {
            max_steps: DEFAULT_STEPS,
            eval_every: args.fit.eval_every,
        };
    }
    fit.optimizer.betas.1 = args.beta2;
    fit.schedule.min_lr_ratio = args.min_lr_ratio;
    let opts = TrainTextOptions {
        corpus: args.corpus,
        data_dir: args.data.data_dir,
        tokenizer: TokenizerChoice::parse(&args.tokenizer),
        layers: args.layers,
        heads: args.heads,
        embd: args.embd,
        block_size: args.block_size,
        dropout: args.dropout,
        artifact_dir: args
            .output
            .artifact_dir
            .clone()
            .unwrap_or_else(default_artifact_dir),
        fit,
    };
    let report = train_text(&opts, &device)
        .with_context(|| format!("train-text into {}", opts.artifact_dir.display()))?;
    if args.output.report.format == Format::Json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "validation loss: {:.4} nats/token (perplexity {:.2}) after {} {}s ({} steps) in {:.0}s; model dir {} (generate-text --model-dir)",
        report.valid_loss,
        report.valid_loss.exp(),
        report.epochs,
        report.unit,
        report.steps,
        report.wall_seconds,
        report.artifact_dir.display()
    );
    Ok(())
}
