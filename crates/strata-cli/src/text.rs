//! `strata generate-text`: one generation command for every text model Strata has, over the
//! decode loop of `strata_tensor::generate`. The dir's `model_type` says which model loads
//! (`--model` is always a GPT-2). `strata eval-text`: a GPT-2's perplexity on a corpus.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use strata_data::hub::{HubSettings, Source};
use strata_sequence::job::{CHAR_LM, CharLmGenerator};
use strata_tensor::generate::{Decoder, GenerateOptions, SamplingConfig, StopReason, generate};
use strata_transformer::{GPT2, Gpt2, Gpt2Generator, TextTokenizer, WeightDtype};

use strata_train::text::{locate_corpus, read_corpus, split_ids};
use strata_transformer::eval::{greedy_agreement, score_text};

use crate::args::{BackendArgs, DataArgs, Format, FormatArgs, choice};

/// The text model of `generate-text` and `eval-text`.
#[derive(Args, Debug)]
pub struct ModelArgs {
    /// Dir of a text model: a Hugging Face GPT-2 dir (config.json, model.safetensors,
    /// tokenizer.json or vocab.json + merges.txt; what train-text writes), or (generate-text) the
    /// artifact dir of train-sequence --task char-lm.
    #[arg(
        long,
        visible_alias = "artifact-dir",
        value_name = "DIR",
        required_unless_present = "model",
        conflicts_with = "model"
    )]
    model_dir: Option<PathBuf>,
    /// A GPT-2 model: a Hugging Face Hub id (gpt2, openai-community/gpt2-medium, distilgpt2, ...),
    /// fetched into the Hugging Face cache, or a local dir.
    #[arg(long, value_name = "HUB_ID_OR_DIR")]
    model: Option<String>,
    /// Branch, tag or commit of the Hub repository (with --model).
    #[arg(long, requires = "model")]
    revision: Option<String>,
    /// Precision of a GPT-2's weights: bf16 halves the bytes each token reads (eval-text compares
    /// it with f32).
    #[arg(long, default_value = "f32", value_parser = choice::<WeightDtype>(WeightDtype::NAMES))]
    dtype: WeightDtype,
}

impl ModelArgs {
    /// Where the GPT-2's files are: `--model` (a Hub id or a dir), else `--model-dir`.
    fn gpt2_source(&self) -> Result<Source> {
        Ok(match (&self.model, &self.model_dir) {
            (Some(model), _) => {
                Source::resolve(model, self.revision.as_deref(), &HubSettings::from_env())?
            }
            (None, Some(dir)) => Source::Local(dir.clone()),
            (None, None) => bail!("pass --model-dir DIR or --model HUB_ID"),
        })
    }

    /// The GPT-2 and its tokenizer; a Hub file that cannot be had says to pass a dir.
    fn load_gpt2(&self, device: &burn::tensor::Device) -> Result<(Gpt2, TextTokenizer)> {
        self.dtype.check(device)?;
        strata_transformer::load::load(&self.gpt2_source()?, device).map_err(|e| {
            let hint = match e {
                strata_transformer::load::LoadError::Hub(_) => {
                    " (with the files on disk, pass --model-dir DIR)"
                }
                _ => "",
            };
            anyhow::anyhow!("{e}{hint}")
        })
    }
}

/// `strata generate-text`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    backend: BackendArgs,
    #[command(flatten)]
    source: ModelArgs,
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
    /// GPT-2: go on past the context, predicting each token from the last n_positions tokens
    /// (as nanoGPT's sample.py); without it generation stops when the context is full.
    #[arg(long)]
    slide_context: bool,
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
    let mut model = TextModel::load(&args, &device)?;
    let prompt_ids = model.encode(&args.prompt)?;
    let options = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        sampling,
        eos: model.eos(),
    };
    let stream = args.report.format == Format::Text;
    let mut out = std::io::stdout().lock();
    if stream {
        write!(out, "{}", args.prompt)?;
        out.flush()?;
    }
    let mut text = String::new();
    let (decoder, mut pieces) = model.parts();
    let mut on_token = |id: u32| {
        let piece = pieces.push(id);
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
    let generation = generate(decoder, &prompt_ids, &options, &mut on_token)?;
    // A byte-level token can end inside a character: what was held back comes out now.
    let rest = pieces.rest(&text);
    if stream && !rest.is_empty() {
        write!(out, "{rest}")?;
    }
    text.push_str(&rest);
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

/// `strata eval-text`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    backend: BackendArgs,
    #[command(flatten)]
    source: ModelArgs,
    /// The text: its last 10 % (train-text's validation split) is scored [default: tiny Shakespeare under --data-dir]
    #[arg(long, value_name = "FILE")]
    corpus: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Score at most this many tokens of the validation text.
    #[arg(long)]
    max_tokens: Option<usize>,
    #[command(flatten)]
    report: FormatArgs,
}

/// Scores a GPT-2 on the validation part of a corpus (perplexity), and for `--dtype bf16`
/// compares it with f32.
pub fn eval(args: EvalArgs) -> Result<()> {
    let (_, device) = args.backend.device()?;
    let dtype = args.source.dtype;
    let (model, tokenizer) = args.source.load_gpt2(&device)?;
    let path = locate_corpus(args.corpus.as_deref(), args.data.data_dir.as_deref())?;
    let text = read_corpus(&path)?;
    let ids = tokenizer.encode(&text, "corpus")?;
    let context = model.config().n_positions;
    let (_, valid) = split_ids(&ids, &path, 1, "tokens", "the context")?;
    let valid = &valid[..args.max_tokens.unwrap_or(usize::MAX).min(valid.len())];
    let low_model = (dtype != WeightDtype::F32).then(|| model.clone());
    let f32_model = Gpt2Generator::new(model, WeightDtype::F32);
    let reference = score_text(&f32_model, valid);
    let mut json = serde_json::json!({
        "corpus": path.display().to_string(),
        "tokens": reference.tokens,
        "f32": {"loss": reference.loss, "perplexity": reference.perplexity},
    });
    let mut line = format!(
        "{} validation tokens of {}: f32 loss {:.4} nats/token, perplexity {:.3}",
        reference.tokens,
        path.display(),
        reference.loss,
        reference.perplexity
    );
    if let Some(model) = low_model {
        let mut low = Gpt2Generator::new(model, dtype);
        let score = score_text(&low, valid);
        let same = score
            .argmax
            .iter()
            .zip(&reference.argmax)
            .filter(|(a, b)| a == b)
            .count() as f64
            / reference.argmax.len().max(1) as f64;
        // Five prompts of 32 tokens spread over the validation text, each continued greedily.
        let prompt_len = 32.min(context / 2);
        let new_tokens = 64.min(context - prompt_len);
        let prompts: Vec<Vec<u32>> = (0..5)
            .map(|i| {
                let start = i * valid.len().saturating_sub(prompt_len) / 5;
                valid[start..(start + prompt_len).min(valid.len())].to_vec()
            })
            .collect();
        let mut f32_model = f32_model;
        let greedy = greedy_agreement(&mut f32_model, &mut low, &prompts, new_tokens);
        json[dtype.name()] =
            serde_json::json!({"loss": score.loss, "perplexity": score.perplexity});
        json["top1_agreement"] = same.into();
        json["greedy_agreement"] = greedy.into();
        line.push_str(&format!(
            "; {}: loss {:.4}, perplexity {:.3}; the same most probable token at {:.2}% of positions; greedy continuations of 5 prompts agree for {:.1}% of {new_tokens} tokens before they first differ",
            dtype,
            score.loss,
            score.perplexity,
            same * 100.0,
            greedy * 100.0
        ));
    }
    match args.report.format {
        Format::Json => println!("{json}"),
        Format::Text => println!("{line}"),
    }
    Ok(())
}

/// A loaded text model: its decoder and how its tokens become text.
enum TextModel {
    /// A character-level RNN (train-sequence --task char-lm).
    Char(Box<CharLmGenerator>),
    /// A GPT-2 and its tokenizer.
    Gpt2(Box<Gpt2Generator>, Box<TextTokenizer>),
}

/// Turns tokens into text as they come.
enum Pieces<'a> {
    Char(strata_sequence::corpus::CharVocab),
    Gpt2(strata_transformer::tokenizer::TextStream<'a>),
}

impl Pieces<'_> {
    fn push(&mut self, id: u32) -> String {
        match self {
            Self::Char(vocab) => vocab.decode(&[id]),
            Self::Gpt2(stream) => stream.push(id),
        }
    }

    /// The text decoded but not yet returned, given what was.
    fn rest(&self, returned: &str) -> String {
        match self {
            Self::Char(_) => String::new(),
            Self::Gpt2(stream) => stream
                .text()
                .get(returned.len()..)
                .unwrap_or_default()
                .to_string(),
        }
    }
}

impl TextModel {
    fn load(args: &GenerateArgs, device: &burn::tensor::Device) -> Result<Self> {
        let source = &args.source;
        if let (None, Some(dir)) = (&source.model, &source.model_dir) {
            let model_type = strata_train::artifact::read_model_type(dir)?;
            if model_type == CHAR_LM {
                if source.dtype != WeightDtype::F32 {
                    bail!(
                        "--dtype {} is for GPT-2 models; a {CHAR_LM} runs in f32",
                        source.dtype
                    );
                }
                return Ok(Self::Char(Box::new(CharLmGenerator::load(dir, device)?)));
            }
            if model_type != GPT2 {
                bail!(
                    "{}: generate-text cannot run model_type '{model_type}'; it runs {GPT2} (Hugging Face GPT-2 dirs, train-text) and {CHAR_LM} (train-sequence --task char-lm)",
                    dir.display()
                );
            }
        }
        let (model, tokenizer) = source.load_gpt2(device)?;
        Ok(Self::Gpt2(
            Box::new(
                Gpt2Generator::new(model, source.dtype).with_sliding_context(args.slide_context),
            ),
            Box::new(tokenizer),
        ))
    }

    fn encode(&self, prompt: &str) -> Result<Vec<u32>> {
        Ok(match self {
            Self::Char(model) => model.vocab().encode(prompt, "prompt")?,
            Self::Gpt2(_, tokenizer) => tokenizer.encode(prompt, "prompt").context("prompt")?,
        })
    }

    fn eos(&self) -> Vec<u32> {
        match self {
            Self::Char(_) => Vec::new(),
            Self::Gpt2(model, _) => model.model().config().eos_token_id.into_iter().collect(),
        }
    }

    fn parts(&mut self) -> (&mut dyn Decoder, Pieces<'_>) {
        match self {
            Self::Char(model) => {
                let vocab = model.vocab().clone();
                (model.as_mut(), Pieces::Char(vocab))
            }
            Self::Gpt2(model, tokenizer) => (model.as_mut(), Pieces::Gpt2(tokenizer.stream())),
        }
    }
}
