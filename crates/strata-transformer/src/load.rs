//! A GPT-2 model dir, local or on the Hugging Face Hub: `config.json`, `model.safetensors`, and
//! the tokenizer (`tokenizer.json`, or `vocab.json` + `merges.txt`).
//!
//! Both key layouts of GPT-2 checkpoints load: the Hub's original one (`h.0.attn.c_attn.weight`,
//! no prefix, with the buffers `h.N.attn.bias` and `h.N.attn.masked_bias`, which hold the causal
//! mask and are skipped) and what `save_pretrained` writes today (`transformer.` prefix, no
//! buffers; a `lm_head.weight` tied to `wte` is skipped). GPT-2's linear layers are
//! [`Conv1D`](crate::model::Conv1D)s whose weights are stored `[in, out]`, as the model keeps them,
//! so nothing is transposed. Loading is strict: a missing tensor, a tensor of another shape or a
//! key the model does not have is an error naming it.

// `LoadError` carries strata-data's `HubError` (144 bytes at most: what its one-line messages
// name), on a path taken once per model. Boxing it would buy nothing.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};

use burn::prelude::*;
use strata_data::hub::{HubError, Source};
use strata_tensor::weights::{
    KeyMap, WeightsError, load_pytorch_weights_mapped, save_pytorch_safetensors_mapped,
};

use crate::config::{ConfigError, Gpt2Config};
use crate::model::Gpt2;
use crate::tokenizer::{MERGES_FILE, TOKENIZER_FILE, TextTokenizer, TokenizerError, VOCAB_FILE};

/// The config file of a model dir.
pub const CONFIG_FILE: &str = "config.json";
/// The weights file of a model dir.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// File keys ↔ module paths of GPT-2: the `transformer.` prefix goes; the attention buffers and
/// a tied `lm_head.weight` are skipped.
pub const GPT2_KEYS: KeyMap = KeyMap {
    to_module: &[(r"^transformer\.", "")],
    // Errors name keys as the file does: Burn's LayerNorm calls its parameters gamma and beta.
    to_file: &[
        (r"(ln_\d+|ln_f)\.gamma$", "${1}.weight"),
        (r"(ln_\d+|ln_f)\.beta$", "${1}.bias"),
    ],
    ignored: &[r"^h\.\d+\.attn\.(bias|masked_bias)$", r"^lm_head\.weight$"],
};

/// Why a GPT-2 model cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be found or fetched.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// `config.json` is missing or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The weights do not fit the config.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The tokenizer cannot be read.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The tokenizer does not belong to the model.
    #[error("{0}")]
    Mismatch(String),
}

/// Where a model's files are on disk (downloaded into the Hugging Face cache if needed).
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// `config.json`.
    pub config: PathBuf,
    /// `model.safetensors`.
    pub weights: PathBuf,
    /// `tokenizer.json`, or `vocab.json` and `merges.txt`.
    pub tokenizer: Vec<PathBuf>,
}

impl ModelFiles {
    /// The files of `source` (a local dir, or a Hub repository through the cache). The
    /// tokenizer is `tokenizer.json` where there is one, else `vocab.json` + `merges.txt`.
    pub fn resolve(source: &Source) -> Result<Self, LoadError> {
        let config = source.file(CONFIG_FILE)?;
        let weights = source.file(WEIGHTS_FILE)?;
        let tokenizer = tokenizer_files(source)?;
        Ok(Self {
            config,
            weights,
            tokenizer,
        })
    }

    /// The tokenizer these files hold.
    pub fn tokenizer(&self) -> Result<TextTokenizer, TokenizerError> {
        read_tokenizer(&self.tokenizer)
    }

    /// The tokenizer of `source` alone (a model dir or Hub repository).
    pub fn tokenizer_of(source: &Source) -> Result<TextTokenizer, LoadError> {
        Ok(read_tokenizer(&tokenizer_files(source)?)?)
    }
}

/// `tokenizer.json` where there is one, else `vocab.json` + `merges.txt`.
fn tokenizer_files(source: &Source) -> Result<Vec<PathBuf>, HubError> {
    match source.file(TOKENIZER_FILE) {
        Ok(path) => Ok(vec![path]),
        Err(HubError::FileNotFound { .. } | HubError::LocalFileMissing { .. }) => {
            Ok(vec![source.file(VOCAB_FILE)?, source.file(MERGES_FILE)?])
        }
        Err(e) => Err(e),
    }
}

fn read_tokenizer(files: &[PathBuf]) -> Result<TextTokenizer, TokenizerError> {
    match files {
        [json] => TextTokenizer::from_file(json),
        [vocab, merges] => TextTokenizer::gpt2_from_vocab_merges(vocab, merges),
        _ => unreachable!("a tokenizer is one or two files"),
    }
}

/// Loads `weights` (either key layout) into a model built from `config`. Tensors stored in
/// f16 or bf16 (as some checkpoints on the Hub are) are widened to f32, the precision the
/// model computes in.
pub fn load_weights(
    config: &Gpt2Config,
    weights: &Path,
    device: &Device,
) -> Result<Gpt2, WeightsError> {
    let model = load_pytorch_weights_mapped(config.init(device), weights, &GPT2_KEYS)?;
    Ok(model.map(&mut ToF32))
}

/// Casts every float parameter that is not f32 to f32, on the host: a GPU without f16 in its
/// shaders (wgpu on many adapters) holds the loaded numbers but compiles no kernel to cast them.
struct ToF32;

impl burn::module::ModuleMapper for ToF32 {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        param.map(|t| {
            if t.dtype() == burn::tensor::DType::F32 {
                return t;
            }
            let (device, grad) = (t.device(), t.is_require_grad());
            Tensor::from_data(t.into_data().convert::<f32>(), &device).set_require_grad(grad)
        })
    }
}

/// Saves `model`'s parameters as `model.safetensors` in the layout `save_pretrained` writes
/// (`transformer.` prefix; the tied output layer is not stored).
pub fn save_weights(model: &Gpt2, path: &Path) -> Result<(), WeightsError> {
    const TO_FILE: KeyMap = KeyMap {
        to_module: &[],
        to_file: &[(r"^", "transformer.")],
        ignored: &[],
    };
    save_pytorch_safetensors_mapped(model, path, &TO_FILE)
}

/// A GPT-2 and its tokenizer, from a model dir or a Hub id.
pub fn load(source: &Source, device: &Device) -> Result<(Gpt2, TextTokenizer), LoadError> {
    let files = ModelFiles::resolve(source)?;
    let config = Gpt2Config::load(&files.config)?;
    let tokenizer = files.tokenizer()?;
    if tokenizer.vocab_size() > config.vocab_size {
        return Err(LoadError::Mismatch(format!(
            "the tokenizer ({}) has {} tokens but the model's vocab_size is {} ({}): they belong to different models; use the tokenizer the model was trained with",
            files.tokenizer[0].display(),
            tokenizer.vocab_size(),
            config.vocab_size,
            files.config.display()
        )));
    }
    let model = load_weights(&config, &files.weights, device)?;
    Ok((model, tokenizer))
}
