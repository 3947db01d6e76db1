//! `strata train-text`: a small GPT of GPT-2's architecture trained from scratch on a corpus,
//! written as a Hugging Face GPT-2 model dir.
//!
//! The corpus (tiny Shakespeare by default) is tokenized by characters (the vocabulary is the
//! corpus's characters, as nanoGPT's `shakespeare_char`) or by any tokenizer of a model dir or
//! Hub repository (e.g. GPT-2's byte-level BPE), split 90/10 into training and validation
//! tokens, and cut into windows of `block_size + 1` tokens (for training, one starting at every
//! token, shuffled, so that batches read the text at random offsets as nanoGPT's do; for
//! validation, consecutive windows that cover the text once). Training runs through strata-train's
//! harness (AdamW, warm-up, cosine decay, gradient clipping, evaluation and checkpoints every
//! `--eval-every` steps, `--resume`).
//!
//! ```text
//! ARTIFACT_DIR/
//!   config.json            GPT-2's config (model_type "gpt2", architectures GPT2LMHeadModel)
//!   model.safetensors      transformer.wte.weight, transformer.h.0.attn.c_attn.weight, ...
//!   tokenizer.json         the tokenizer (characters: a BPE model without merges)
//!   tokenizer_config.json  so that transformers' AutoTokenizer reads tokenizer.json as it is
//!   metrics.json, curves.png, checkpoint/
//! ```
//!
//! `generate-text --model-dir ARTIFACT_DIR` loads it, and so do `transformers`'
//! `GPT2LMHeadModel.from_pretrained` and `AutoTokenizer.from_pretrained`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::prelude::*;
use serde::Serialize;
use strata_data::hub::{HubSettings, Source};
use strata_train::artifact::{self, ArtifactError, WEIGHTS_FILE};
use strata_train::data::loader;
use strata_train::eval::evaluate;
use strata_train::text::{
    CharVocab, CorpusError, WindowBatcher, Windows, locate_corpus, read_corpus, split_ids,
};
use strata_train::{FitConfig, fit};

use crate::config::{GPT2, Gpt2Config};
use crate::load::{LoadError, ModelFiles, save_weights};
use crate::tokenizer::{END_OF_TEXT, TextTokenizer, TokenizerError};

/// Any failure of `train-text`; every variant reads as one line saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum TrainTextError {
    /// The corpus is unusable.
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    /// The tokenizer is unusable.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The tokenizer's files could not be found (boxed: a Hub error is large).
    #[error(transparent)]
    Load(Box<LoadError>),
    /// Training failed.
    #[error(transparent)]
    Fit(#[from] strata_train::FitError),
    /// Weights could not be written.
    #[error(transparent)]
    Weights(#[from] strata_tensor::weights::WeightsError),
    /// The artifact dir could not be written.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// Options are inconsistent.
    #[error("{0}")]
    Invalid(String),
}

impl From<LoadError> for TrainTextError {
    fn from(e: LoadError) -> Self {
        Self::Load(Box::new(e))
    }
}

/// How the corpus becomes tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerChoice {
    /// One token per character of the corpus.
    Characters,
    /// The tokenizer of a model dir or Hub repository (`tokenizer.json`, or `vocab.json` +
    /// `merges.txt`).
    Pretrained(String),
}

impl TokenizerChoice {
    /// `char`, or a model dir / Hub id.
    pub fn parse(s: &str) -> Self {
        if s == "char" {
            Self::Characters
        } else {
            Self::Pretrained(s.to_string())
        }
    }

    fn name(&self) -> &str {
        match self {
            Self::Characters => "char",
            Self::Pretrained(s) => s,
        }
    }
}

/// Options of `train-text`.
#[derive(Debug, Clone)]
pub struct TrainTextOptions {
    /// The corpus (default: tiny Shakespeare under the data dir).
    pub corpus: Option<PathBuf>,
    /// Root that holds the datasets.
    pub data_dir: Option<PathBuf>,
    /// How the corpus becomes tokens.
    pub tokenizer: TokenizerChoice,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads per block.
    pub heads: usize,
    /// Width of the residual stream.
    pub embd: usize,
    /// Tokens of context (and of each training window).
    pub block_size: usize,
    /// Dropout on embeddings, attention and residual branches.
    pub dropout: f64,
    /// Where the model dir goes.
    pub artifact_dir: PathBuf,
    /// The training run (`model_type` is filled in by the job).
    pub fit: FitConfig,
}

/// What `train-text` reports at the end.
#[derive(Debug, Clone, Serialize)]
pub struct TrainTextReport {
    /// Mean cross-entropy on the validation tokens, nats per token.
    pub valid_loss: f64,
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Evaluation periods finished.
    pub epochs: usize,
    /// Optimizer steps done.
    pub steps: usize,
    /// What `epochs` counts: `epoch` or `period`.
    pub unit: &'static str,
    /// Trainable parameters.
    pub parameters: usize,
    /// Wall time of the whole job, seconds.
    pub wall_seconds: f64,
    /// The model dir.
    pub artifact_dir: PathBuf,
}

/// Where a run goes when no `--artifact-dir` is given.
pub fn default_artifact_dir() -> PathBuf {
    PathBuf::from("artifacts").join("small-gpt")
}

impl TrainTextOptions {
    /// Refuses impossible settings before anything is read or written.
    pub fn validate(&self) -> Result<(), TrainTextError> {
        let invalid = |m: String| Err(TrainTextError::Invalid(m));
        for (flag, v) in [
            ("--layers", self.layers),
            ("--heads", self.heads),
            ("--embd", self.embd),
            ("--block-size", self.block_size),
        ] {
            if v == 0 {
                return invalid(format!("{flag} must be at least 1"));
            }
        }
        if !self.embd.is_multiple_of(self.heads) {
            return invalid(format!(
                "--embd {} is not a multiple of --heads {}: each head gets embd / heads features",
                self.embd, self.heads
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return invalid("--dropout must be in [0, 1)".into());
        }
        Ok(())
    }
}

/// The options a resumed run must share with the run it continues.
fn job_options(opts: &TrainTextOptions) -> serde_json::Value {
    serde_json::json!({
        "corpus": opts.corpus,
        "tokenizer": opts.tokenizer.name(),
        "layers": opts.layers,
        "heads": opts.heads,
        "embd": opts.embd,
        "block-size": opts.block_size,
        "dropout": opts.dropout,
    })
}

/// The tokenizer and the corpus's ids.
fn tokenize(
    text: &str,
    choice: &TokenizerChoice,
) -> Result<(TextTokenizer, Vec<u32>, Option<u32>), TrainTextError> {
    match choice {
        TokenizerChoice::Characters => {
            let vocab = CharVocab::from_text(text);
            let ids = vocab.encode(text, "corpus")?;
            Ok((TextTokenizer::characters(&vocab.chars)?, ids, None))
        }
        TokenizerChoice::Pretrained(source) => {
            let source =
                Source::resolve(source, None, &HubSettings::from_env()).map_err(LoadError::from)?;
            let tokenizer = ModelFiles::tokenizer_of(&source)?;
            let ids = tokenizer.encode(text, "corpus")?;
            let eos = tokenizer.token_id(END_OF_TEXT);
            Ok((tokenizer, ids, eos))
        }
    }
}

/// Trains a small GPT on the corpus and writes a Hugging Face GPT-2 model dir.
pub fn train_text(
    opts: &TrainTextOptions,
    device: &Device,
) -> Result<TrainTextReport, TrainTextError> {
    opts.validate()?;
    let started = Instant::now();
    let dir = &opts.artifact_dir;
    let mut fit_config = opts.fit.clone();
    fit_config.model_type = GPT2.into();
    let job = job_options(opts);
    let resume_from = strata_train::fit::prepare(dir, &fit_config, job.clone())?.map(|r| r.period);
    let seed = fit_config.run_seed(resume_from);
    strata_tensor::seed(device, seed);

    let path = locate_corpus(opts.corpus.as_deref(), opts.data_dir.as_deref())?;
    let text = read_corpus(&path)?;
    let (tokenizer, ids, eos) = tokenize(&text, &opts.tokenizer)?;
    let unit = match opts.tokenizer {
        TokenizerChoice::Characters => "characters",
        TokenizerChoice::Pretrained(_) => "tokens",
    };
    let (train, valid) = split_ids(&ids, &path, opts.block_size, unit, "--block-size")?;
    let mut config = Gpt2Config::small(
        tokenizer.vocab_size(),
        opts.block_size,
        opts.embd,
        opts.layers,
        opts.heads,
    );
    config.resid_pdrop = opts.dropout;
    config.embd_pdrop = opts.dropout;
    config.attn_pdrop = opts.dropout;
    config.bos_token_id = eos;
    config.eos_token_id = eos;
    let model = config.init(&device.clone().autodiff());
    let parameters = model.num_params();
    eprintln!(
        "training a {}-layer GPT ({} heads, width {}, context {}; {parameters} parameters) on {} ({} train / {} valid {unit}, vocabulary {}), {}",
        opts.layers,
        opts.heads,
        opts.embd,
        opts.block_size,
        path.display(),
        train.len(),
        valid.len(),
        config.vocab_size,
        fit_config.describe(),
    );
    // Windows at every token, shuffled: each batch reads the text at random offsets.
    let train_loader = loader(
        WindowBatcher,
        Windows::overlapping(train, opts.block_size, 1),
        fit_config.batch_size,
        Some(seed),
        0,
        device,
    );
    let valid_loader = loader(
        WindowBatcher,
        Windows::new(valid, opts.block_size),
        fit_config.batch_size.max(64),
        None,
        0,
        device,
    );
    let before_fit = started.elapsed();
    let fitted = fit(
        model,
        dir,
        train_loader,
        valid_loader.clone(),
        &fit_config,
        job,
    )?;
    let after_fit = Instant::now();
    let model = fitted.model.valid();
    let score = evaluate(&model, &valid_loader)
        .map_err(|e| TrainTextError::Invalid(format!("reading the validation text failed: {e}")))?;

    save_weights(&model, &dir.join(WEIGHTS_FILE))?;
    tokenizer.save(dir)?;
    write_tokenizer_config(dir, &config, eos.map(|_| END_OF_TEXT))?;
    let mut metrics = fitted.metrics;
    metrics.valid_loss = Some(score.loss);
    let outside_fit = (before_fit + after_fit.elapsed()).as_secs_f64();
    artifact::finish_run(dir, &mut metrics, outside_fit, &config)?;
    Ok(TrainTextReport {
        valid_loss: score.loss,
        vocab_size: config.vocab_size,
        epochs: metrics.history.last().map_or(0, |r| r.epoch),
        steps: metrics.history.last().map_or(0, |r| r.step),
        unit: opts.fit.budget.unit(),
        parameters,
        wall_seconds: started.elapsed().as_secs_f64(),
        artifact_dir: dir.to_path_buf(),
    })
}

/// `tokenizer_config.json`: `transformers`' `AutoTokenizer` then reads `tokenizer.json` as a
/// `PreTrainedTokenizerFast`, with the context length and the end-of-text token.
fn write_tokenizer_config(
    dir: &Path,
    config: &Gpt2Config,
    eos: Option<&str>,
) -> Result<(), TrainTextError> {
    let mut value = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": config.n_positions,
        "clean_up_tokenization_spaces": false,
    });
    if let Some(eos) = eos {
        value["eos_token"] = eos.into();
        value["bos_token"] = eos.into();
    }
    let path = dir.join("tokenizer_config.json");
    let json = serde_json::to_vec_pretty(&value).expect("a JSON value serialises");
    strata_data::fsutil::write_atomic(&path, &json)
        .map_err(|source| ArtifactError::Write { path, source }.into())
}
