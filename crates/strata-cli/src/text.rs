//! `strata generate-text`: one generation command for every text model Strata has, over the
//! decode loop of `strata_tensor::generate`. The artifact dir's `model_type` says which model
//! loads.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use strata_sequence::job::{CHAR_LM, CharLmGenerator};
use strata_tensor::generate::{GenerateOptions, SamplingConfig, StopReason, generate};

use crate::args::{BackendArgs, Format, FormatArgs};

/// `strata generate-text`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// Artifact dir of a trained text model (train-sequence --task char-lm).
    #[arg(long, visible_alias = "artifact-dir", value_name = "DIR")]
    model_dir: PathBuf,
    /// Text to continue.
    #[arg(long)]
    prompt: String,
    /// Tokens (characters, for a character model) to generate at most.
    #[arg(long, default_value_t = 200)]
    max_new_tokens: usize,
    /// Argmax decoding: always the most probable token (no sampling).
    #[arg(long)]
    greedy: bool,
    /// Divide the logits by T before sampling (below 1: safer, above 1: more varied).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    temperature: f32,
    /// Sample among the K most probable tokens only.
    #[arg(long)]
    top_k: Option<usize>,
    /// Sample among the most probable tokens whose probabilities add up to P (nucleus sampling).
    #[arg(long, allow_negative_numbers = true)]
    top_p: Option<f32>,
    /// Penalise tokens already in the text (Hugging Face's rule: logits divided by R if positive, times R if negative).
    #[arg(long, allow_negative_numbers = true)]
    repetition_penalty: Option<f32>,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Stop once the new text contains this string (kept in the output). Repeatable.
    #[arg(long, value_name = "STRING")]
    stop: Vec<String>,
    #[command(flatten)]
    report: FormatArgs,
}

/// Generates text from a prompt, streaming it to stdout as it comes (text format), or printing
/// one JSON object at the end.
pub fn run(args: GenerateArgs) -> Result<()> {
    let (_, device) = args.backend.device()?;
    let sampling = SamplingConfig {
        greedy: args.greedy,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        repetition_penalty: args.repetition_penalty,
        seed: args.seed,
    };
    sampling.validate()?;
    let model_type = strata_train::artifact::read_model_type(&args.model_dir)?;
    if model_type != CHAR_LM {
        bail!(
            "{}: generate-text cannot run model_type '{model_type}'; it runs {CHAR_LM} (train-sequence --task char-lm)",
            args.model_dir.display()
        );
    }
    let mut model = CharLmGenerator::load(&args.model_dir, &device)?;
    let vocab = model.vocab().clone();
    let prompt_ids = vocab.encode(&args.prompt, "prompt")?;
    let options = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        sampling,
        eos: Vec::new(),
    };
    let stream = args.report.format == Format::Text;
    let mut out = std::io::stdout().lock();
    if stream {
        write!(out, "{}", args.prompt)?;
        out.flush()?;
    }
    let mut text = String::new();
    let mut on_token = |id: u32| {
        let piece = vocab.decode(&[id]);
        text.push_str(&piece);
        if stream {
            let _ = write!(out, "{piece}");
            let _ = out.flush();
        }
        if args
            .stop
            .iter()
            .any(|s| !s.is_empty() && text.contains(s.as_str()))
        {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let generation = generate(&mut model, &prompt_ids, &options, &mut on_token)?;
    match args.report.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "prompt_ids": generation.prompt_ids,
                "generated_ids": generation.generated_ids,
                "text": text,
                "prompt_tokens_per_s": generation.prompt_tokens_per_s(),
                "decode_tokens_per_s": generation.decode_tokens_per_s(),
                "stop": format!("{:?}", generation.stop),
            })
        ),
        Format::Text => {
            writeln!(out)?;
            let why = match generation.stop {
                StopReason::MaxNewTokens => "--max-new-tokens reached",
                StopReason::Eos => "end of text",
                StopReason::Callback => "--stop string",
                StopReason::ContextFull => "context full",
            };
            eprintln!(
                "{} tokens ({why}); prompt {:.0} tokens/s, decoding {:.1} tokens/s",
                generation.generated_ids.len(),
                generation.prompt_tokens_per_s(),
                generation.decode_tokens_per_s()
            );
        }
    }
    Ok(())
}
