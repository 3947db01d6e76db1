//! The sequence jobs behind `strata train-sequence`, and the character model behind
//! `strata generate-text`.
//!
//! An artifact dir written by [`train_sequence`] holds `config.json` (`model_type`
//! `strata-char-lm` or `strata-row-rnn`, the model's settings), `model.safetensors` (PyTorch's
//! names: `embedding.weight`, `rnn.weight_ih_l0`, ..., `head.weight`), `vocab.json` for a
//! language model, `metrics.json`, `curves.png`, and burn-train's `checkpoint/`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use strata_data::mnist::{MnistKind, MnistSplits};
use strata_tensor::generate::{Decoder, GenerateError};
use strata_tensor::weights::{load_pytorch_weights_mapped, save_pytorch_safetensors_mapped};
use strata_train::artifact::{self, ArtifactError, WEIGHTS_FILE};
use strata_train::data::loader;
use strata_train::eval::{Score, evaluate};
use strata_train::{FitConfig, Metrics, fit};

use crate::corpus::{
    CharVocab, CorpusError, EncodedCorpus, VOCAB_FILE, WindowBatcher, Windows, locate_corpus,
    read_corpus,
};
use crate::models::{CharLm, CharLmConfig, RowClassifierConfig};
use crate::recurrent::{Cell, RecurrentState, TORCH_KEYS};
use crate::rows::{RowBatcher, RowImages};

/// `model_type` of a character-level language model's dir.
pub const CHAR_LM: &str = "strata-char-lm";
/// `model_type` of a row-by-row image classifier's dir.
pub const ROW_RNN: &str = "strata-row-rnn";

/// The learning problem of `train-sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SequenceTask {
    /// Predict the next character of a corpus.
    CharLm,
    /// Classify MNIST digits read one row per step.
    RowMnist,
}

strata_tensor::named_enum!(SequenceTask, "task", {
    CharLm => "char-lm",
    RowMnist => "row-mnist",
});

/// Any failure of a sequence job; every variant reads as one line saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The corpus, vocabulary or prompt is unusable.
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    /// MNIST is missing or corrupt.
    #[error(transparent)]
    Dataset(#[from] strata_data::mnist::DatasetError),
    /// Training failed.
    #[error(transparent)]
    Fit(#[from] strata_train::FitError),
    /// Weights could not be saved or loaded.
    #[error(transparent)]
    Weights(#[from] strata_tensor::weights::WeightsError),
    /// The artifact dir's config is unusable.
    #[error(transparent)]
    Config(#[from] ArtifactError),
    /// Writing the artifact dir failed, or it is unusable.
    #[error("{0}")]
    Artifact(String),
    /// Options are inconsistent.
    #[error("{0}")]
    Invalid(String),
}

/// Options of `train-sequence`.
#[derive(Debug, Clone)]
pub struct TrainSequenceOptions {
    /// What to learn.
    pub task: SequenceTask,
    /// The recurrent cell.
    pub cell: Cell,
    /// Stacked recurrent layers.
    pub layers: usize,
    /// Hidden features per layer.
    pub hidden: usize,
    /// Features of a character's embedding (char-lm).
    pub embedding: usize,
    /// Read sequences in both directions (row-mnist).
    pub bidirectional: bool,
    /// Dropout between recurrent layers (and before a language model's head).
    pub dropout: f64,
    /// Characters per training window (char-lm).
    pub seq_len: usize,
    /// The corpus (char-lm; default: tiny Shakespeare under the data dir).
    pub corpus: Option<PathBuf>,
    /// Root that holds the datasets.
    pub data_dir: Option<PathBuf>,
    /// Training images held out for validation (row-mnist).
    pub valid_size: usize,
    /// Train on the first N training images only (row-mnist; quick runs).
    pub train_limit: Option<usize>,
    /// Where the results go.
    pub artifact_dir: PathBuf,
    /// The training run (`model_type` is filled in by the job).
    pub fit: FitConfig,
}

/// What `train-sequence` reports at the end.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSequenceReport {
    /// The task.
    pub task: SequenceTask,
    /// Validation loss in nats per character (char-lm).
    pub valid_loss: Option<f64>,
    /// The same in bits per character (char-lm).
    pub valid_bits_per_char: Option<f64>,
    /// Accuracy on the test set, a fraction in [0, 1] (row-mnist).
    pub test_accuracy: Option<f64>,
    /// Evaluation periods (epochs, or `--eval-every` steps) finished.
    pub epochs: usize,
    /// Optimizer steps done.
    pub steps: usize,
    /// What `epochs` counts: `epoch` or `period`.
    pub unit: &'static str,
    /// Trainable parameters.
    pub parameters: usize,
    /// Wall time of the whole job, seconds.
    pub wall_seconds: f64,
    /// The artifact dir.
    pub artifact_dir: PathBuf,
}

/// What `config.json` holds for a character-level language model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CharLmArtifact {
    /// [`CHAR_LM`].
    pub model_type: String,
    /// The model's settings.
    pub model: CharLmConfig,
    /// The vocabulary file in the dir.
    pub vocab: String,
    /// The weights file in the dir (PyTorch names).
    pub weights: String,
    /// The corpus it was trained on.
    pub corpus: String,
    /// Characters per training window.
    pub seq_len: usize,
}

/// What `config.json` holds for a row-by-row classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowArtifact {
    /// [`ROW_RNN`].
    pub model_type: String,
    /// The model's settings.
    pub model: RowClassifierConfig,
    /// The weights file in the dir (PyTorch names).
    pub weights: String,
    /// Dataset it was trained on.
    pub dataset: String,
    /// Class names, index = class.
    pub labels: Vec<String>,
}

/// Where a run goes when no `--artifact-dir` is given: `artifacts/<task>-<cell>`.
pub fn default_artifact_dir(task: SequenceTask, cell: Cell) -> PathBuf {
    PathBuf::from("artifacts").join(format!("{}-{}", task.name(), cell.name()))
}

impl TrainSequenceOptions {
    /// Refuses impossible settings before anything is read or written.
    pub fn validate(&self) -> Result<(), JobError> {
        let invalid = |m: &str| Err(JobError::Invalid(m.to_string()));
        if self.layers == 0 {
            return invalid("--layers must be at least 1");
        }
        if self.hidden == 0 {
            return invalid("--hidden must be at least 1");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return invalid("--dropout must be in [0, 1)");
        }
        match self.task {
            SequenceTask::CharLm => {
                if self.train_limit.is_some() {
                    return invalid(
                        "--train-limit is for --task row-mnist; shorten a corpus with --max-steps",
                    );
                }
                if self.seq_len == 0 {
                    return invalid(
                        "--seq-len must be at least 1: a window holds --seq-len characters to read and predict",
                    );
                }
                if self.embedding == 0 {
                    return invalid("--embedding must be at least 1");
                }
                if self.bidirectional {
                    return invalid(
                        "--bidirectional does not fit char-lm: a language model predicts each character from the ones before it, and the reverse pass would read the answer",
                    );
                }
            }
            SequenceTask::RowMnist => {
                if self.corpus.is_some() {
                    return invalid("--corpus is for --task char-lm; row-mnist reads MNIST");
                }
                if self.valid_size == 0 {
                    return invalid("--valid-size must be at least 1");
                }
                if self.train_limit == Some(0) {
                    return invalid("--train-limit must be at least 1");
                }
            }
        }
        Ok(())
    }
}

/// Trains a character-level language model or a row-by-row classifier and writes the artifact
/// dir.
pub fn train_sequence(
    opts: &TrainSequenceOptions,
    device: &Device,
) -> Result<TrainSequenceReport, JobError> {
    opts.validate()?;
    match opts.task {
        SequenceTask::CharLm => train_char_lm(opts, device),
        SequenceTask::RowMnist => train_row_mnist(opts, device),
    }
}

/// The options a resumed run must share with the run it continues.
fn job_options(opts: &TrainSequenceOptions) -> serde_json::Value {
    serde_json::json!({
        "task": opts.task.name(),
        "cell": opts.cell.name(),
        "layers": opts.layers,
        "hidden": opts.hidden,
        "embedding": opts.embedding,
        "bidirectional": opts.bidirectional,
        "seq-len": opts.seq_len,
        "corpus": opts.corpus,
        "valid-size": opts.valid_size,
        "train-limit": opts.train_limit,
    })
}

/// What both tasks do before reading data: the harness's settings with the task's
/// `model_type`, the options a resume must share, the checks of `strata_train::fit::prepare`,
/// and the device seeded for the run. Returns the settings, those options and the seed.
fn start_run(
    opts: &TrainSequenceOptions,
    model_type: &str,
    device: &Device,
) -> Result<(FitConfig, serde_json::Value, u64), JobError> {
    let mut fit_config = opts.fit.clone();
    fit_config.model_type = model_type.into();
    let job = job_options(opts);
    let resume_from =
        strata_train::fit::prepare(&opts.artifact_dir, &fit_config, job.clone())?.map(|r| r.period);
    let seed = fit_config.run_seed(resume_from);
    strata_tensor::seed(device, seed);
    Ok((fit_config, job, seed))
}

fn train_char_lm(
    opts: &TrainSequenceOptions,
    device: &Device,
) -> Result<TrainSequenceReport, JobError> {
    let started = Instant::now();
    let dir = &opts.artifact_dir;
    let (fit_config, job, seed) = start_run(opts, CHAR_LM, device)?;
    let path = locate_corpus(opts.corpus.as_deref(), opts.data_dir.as_deref())?;
    let text = read_corpus(&path)?;
    let corpus = EncodedCorpus::split(&text, &path, opts.seq_len)?;
    let model_config = CharLmConfig::new(corpus.vocab.len())
        .with_cell(opts.cell)
        .with_embedding_dim(opts.embedding)
        .with_hidden_size(opts.hidden)
        .with_num_layers(opts.layers)
        .with_dropout(opts.dropout);
    let model = model_config.init(&device.clone().autodiff());
    let parameters = model.num_params();
    eprintln!(
        "training a {}-layer {} language model ({parameters} parameters) on {} ({} train / {} valid characters, vocabulary {}), windows of {}, {}",
        opts.layers,
        opts.cell,
        path.display(),
        corpus.train.len(),
        corpus.valid.len(),
        corpus.vocab.len(),
        opts.seq_len,
        fit_config.describe(),
    );
    let train = loader(
        WindowBatcher,
        Windows::new(corpus.train.clone(), opts.seq_len),
        fit_config.batch_size,
        Some(seed),
        0,
        device,
    );
    let valid = loader(
        WindowBatcher,
        Windows::new(corpus.valid.clone(), opts.seq_len),
        fit_config.batch_size.max(64),
        None,
        0,
        device,
    );
    let before_fit = started.elapsed();
    let fitted = fit(model, dir, train, valid.clone(), &fit_config, job)?;
    let after_fit = Instant::now();
    let model = fitted.model.valid();
    let score = evaluate(&model, &valid)
        .map_err(|e| JobError::Invalid(format!("reading the validation text failed: {e}")))?;

    save_pytorch_safetensors_mapped(&model, &dir.join(WEIGHTS_FILE), &TORCH_KEYS)?;
    corpus.vocab.save(dir).map_err(|e| {
        JobError::Artifact(format!("cannot write {}/{VOCAB_FILE}: {e}", dir.display()))
    })?;
    let artifact = CharLmArtifact {
        model_type: CHAR_LM.into(),
        model: model_config,
        vocab: VOCAB_FILE.into(),
        weights: WEIGHTS_FILE.into(),
        corpus: path.display().to_string(),
        seq_len: opts.seq_len,
    };
    let mut metrics = fitted.metrics;
    metrics.valid_loss = Some(score.loss);
    finish(
        dir,
        metrics,
        (before_fit + after_fit.elapsed()).as_secs_f64(),
        &artifact,
        opts,
        &score,
        parameters,
        started,
    )
}

fn train_row_mnist(
    opts: &TrainSequenceOptions,
    device: &Device,
) -> Result<TrainSequenceReport, JobError> {
    let started = Instant::now();
    let dir = &opts.artifact_dir;
    let (fit_config, job, seed) = start_run(opts, ROW_RNN, device)?;
    let mut splits =
        MnistSplits::load(MnistKind::Mnist, opts.data_dir.as_deref(), opts.valid_size)?;
    if let Some(limit) = opts.train_limit {
        let n = limit.min(splits.train.len());
        splits.train = splits.train.slice(0..n);
    }
    let (rows, cols) = (splits.train.rows, splits.train.cols);
    let labels = splits.kind.labels();
    let model_config = RowClassifierConfig::new(cols, labels.len())
        .with_cell(opts.cell)
        .with_hidden_size(opts.hidden)
        .with_num_layers(opts.layers)
        .with_bidirectional(opts.bidirectional)
        .with_dropout(opts.dropout);
    let model = model_config.init(&device.clone().autodiff());
    let parameters = model.num_params();
    eprintln!(
        "training a {}-layer {}{} classifier ({parameters} parameters) on MNIST read row by row ({rows} steps of {cols} pixels; {} train / {} valid / {} test images), {}",
        opts.layers,
        if opts.bidirectional {
            "bidirectional "
        } else {
            ""
        },
        opts.cell,
        splits.train.len(),
        splits.valid.len(),
        splits.test.len(),
        fit_config.describe(),
    );
    let batcher = RowBatcher { rows, cols };
    let train = loader(
        batcher,
        RowImages::new(splits.train),
        fit_config.batch_size,
        Some(seed),
        0,
        device,
    );
    let eval_batch = fit_config.batch_size.max(256);
    let valid = loader(
        batcher,
        RowImages::new(splits.valid),
        eval_batch,
        None,
        0,
        device,
    );
    let test = loader(
        batcher,
        RowImages::new(splits.test),
        eval_batch,
        None,
        0,
        device,
    );
    let before_fit = started.elapsed();
    let fitted = fit(model, dir, train, valid, &fit_config, job)?;
    let after_fit = Instant::now();
    let model = fitted.model.valid();
    let score = evaluate(&model, &test)
        .map_err(|e| JobError::Invalid(format!("reading the test set failed: {e}")))?;
    save_pytorch_safetensors_mapped(&model, &dir.join(WEIGHTS_FILE), &TORCH_KEYS)?;
    let artifact = RowArtifact {
        model_type: ROW_RNN.into(),
        model: model_config,
        weights: WEIGHTS_FILE.into(),
        dataset: MnistKind::Mnist.name().into(),
        labels: labels.iter().map(|s| s.to_string()).collect(),
    };
    let mut metrics = fitted.metrics;
    metrics.test_accuracy = score.accuracy;
    metrics.test_loss = Some(score.loss);
    finish(
        dir,
        metrics,
        (before_fit + after_fit.elapsed()).as_secs_f64(),
        &artifact,
        opts,
        &score,
        parameters,
        started,
    )
}

/// What every run ends with, once its weights are written: `metrics.json` with the wall time
/// spent outside `fit`, then `config.json` (last, so that a dir with one is complete), and the
/// report.
#[allow(clippy::too_many_arguments)]
fn finish<C: Serialize>(
    dir: &Path,
    mut metrics: Metrics,
    seconds_outside_fit: f64,
    artifact: &C,
    opts: &TrainSequenceOptions,
    score: &Score,
    parameters: usize,
    started: Instant,
) -> Result<TrainSequenceReport, JobError> {
    artifact::finish_run(dir, &mut metrics, seconds_outside_fit, artifact)?;
    let lm = opts.task == SequenceTask::CharLm;
    Ok(TrainSequenceReport {
        task: opts.task,
        valid_loss: lm.then_some(score.loss),
        valid_bits_per_char: lm.then_some(score.loss / std::f64::consts::LN_2),
        test_accuracy: (!lm).then_some(score.accuracy).flatten(),
        epochs: metrics.history.last().map_or(0, |r| r.epoch),
        steps: metrics.history.last().map_or(0, |r| r.step),
        unit: opts.fit.budget.unit(),
        parameters,
        wall_seconds: started.elapsed().as_secs_f64(),
        artifact_dir: dir.to_path_buf(),
    })
}

/// A trained character-level language model, ready to generate text (the [`Decoder`] of
/// `generate-text`): it carries the recurrent state from one character to the next, so each
/// new character costs one step.
#[derive(Debug)]
pub struct CharLmGenerator {
    model: CharLm,
    vocab: CharVocab,
    state: Option<RecurrentState>,
    device: Device,
}

impl CharLmGenerator {
    /// Loads the model of an artifact dir written by `train-sequence --task char-lm`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, JobError> {
        let config: CharLmArtifact = artifact::load_config(dir, &[CHAR_LM])?;
        let vocab = CharVocab::load(dir)?;
        if vocab.len() != config.model.vocab_size {
            return Err(JobError::Artifact(format!(
                "{}: {} characters in {VOCAB_FILE} but the model has {}; the dir mixes two runs, train again",
                dir.display(),
                vocab.len(),
                config.model.vocab_size
            )));
        }
        let model = load_pytorch_weights_mapped(
            config.model.init(device),
            &dir.join(&config.weights),
            &TORCH_KEYS,
        )?;
        Ok(Self {
            model,
            vocab,
            state: None,
            device: device.clone(),
        })
    }

    /// The model's vocabulary.
    pub fn vocab(&self) -> &CharVocab {
        &self.vocab
    }

    fn logits_after(&mut self, ids: &[u32]) -> Vec<f32> {
        let n = ids.len();
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &self.device);
        let (logits, state) = self.model.forward(ids, self.state.take());
        self.state = Some(state);
        let [_, _, v] = logits.dims();
        logits
            .narrow(1, n - 1, 1)
            .reshape([v])
            .into_data()
            .try_into_vec::<f32>()
            .unwrap_or_default()
    }
}

impl Decoder for CharLmGenerator {
    fn prefill(&mut self, prompt: &[u32]) -> Result<Vec<f32>, GenerateError> {
        self.state = None;
        Ok(self.logits_after(prompt))
    }

    fn step(&mut self, token: u32) -> Result<Vec<f32>, GenerateError> {
        Ok(self.logits_after(&[token]))
    }
}
