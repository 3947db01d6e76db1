//! GPT-2's settings, read from and written to a Hugging Face `config.json`.
//!
//! Field names, meanings and defaults are those of `transformers.GPT2Config`, so the
//! `config.json` of `openai-community/gpt2` (and -medium, -large, -xl, `distilgpt2`) reads as it
//! is, and what a [`Gpt2Config`] serialises to is read by `GPT2LMHeadModel.from_pretrained`.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The `model_type` of a GPT-2 model dir.
pub const GPT2: &str = "gpt2";

/// Errors of a `config.json`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error(
        "cannot read {path}: {why}; pass a GPT-2 model dir (config.json, model.safetensors, tokenizer.json)"
    )]
    Read {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// The file is not a GPT-2 configuration.
    #[error("{path} is not a usable GPT-2 config.json: {why}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
}

/// The activation of GPT-2's MLP (`activation_function`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu_new` (GPT-2's own), `gelu_pytorch_tanh`, `gelu_fast`: GELU's tanh approximation.
    GeluTanh,
    /// `gelu`: the exact GELU (with `erf`).
    Gelu,
    /// `relu`.
    Relu,
    /// `silu` / `swish`.
    Silu,
}

impl Activation {
    /// The activation a `config.json` names, if Strata has it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Self::GeluTanh),
            "gelu" => Some(Self::Gelu),
            "relu" => Some(Self::Relu),
            "silu" | "swish" => Some(Self::Silu),
            _ => None,
        }
    }
}

/// A GPT-2 model's settings (`transformers.GPT2Config`; fields absent from a file take its
/// defaults, which are GPT-2 small's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Gpt2Config {
    /// Tokens in the vocabulary: rows of the embedding table and of the (tied) output layer.
    pub vocab_size: usize,
    /// Longest sequence the model reads: rows of the position table (the context).
    pub n_positions: usize,
    /// Width of the residual stream (embedding size).
    pub n_embd: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block (`n_embd` must be a multiple).
    pub n_head: usize,
    /// Width of the MLP's hidden layer; `None` means `4 * n_embd`.
    pub n_inner: Option<usize>,
    /// The MLP's activation (`gelu_new` is GPT-2's tanh approximation of GELU).
    pub activation_function: String,
    /// Dropout on the output of each attention and MLP sub-block (training only).
    pub resid_pdrop: f64,
    /// Dropout on the sum of token and position embeddings (training only).
    pub embd_pdrop: f64,
    /// Dropout on the attention probabilities (training only).
    pub attn_pdrop: f64,
    /// Epsilon of every LayerNorm.
    pub layer_norm_epsilon: f64,
    /// Standard deviation of the normal initialisation of weights and embeddings.
    pub initializer_range: f64,
    /// Divide attention scores by `sqrt(head size)`.
    pub scale_attn_weights: bool,
    /// Also divide block `i`'s attention scores by `i + 1`.
    pub scale_attn_by_inverse_layer_idx: bool,
    /// The output layer is the token embedding, transposed (GPT-2 ties them).
    pub tie_word_embeddings: bool,
    /// Id of the beginning-of-text token.
    pub bos_token_id: Option<u32>,
    /// Id of the end-of-text token (generation stops there).
    pub eos_token_id: Option<u32>,
    /// `gpt2`.
    pub model_type: String,
    /// `["GPT2LMHeadModel"]` in files Strata writes.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub architectures: Vec<String>,
}

/// `null` (which `transformers` writes for a config made without architectures) as no entry.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

impl Default for Gpt2Config {
    fn default() -> Self {
        Self::gpt2()
    }
}

impl Gpt2Config {
    /// GPT-2 small, 124M parameters (`openai-community/gpt2`).
    pub fn gpt2() -> Self {
        Self {
            vocab_size: 50257,
            n_positions: 1024,
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            n_inner: None,
            activation_function: "gelu_new".into(),
            resid_pdrop: 0.1,
            embd_pdrop: 0.1,
            attn_pdrop: 0.1,
            layer_norm_epsilon: 1e-5,
            initializer_range: 0.02,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            tie_word_embeddings: true,
            bos_token_id: Some(50256),
            eos_token_id: Some(50256),
            model_type: GPT2.into(),
            architectures: vec!["GPT2LMHeadModel".into()],
        }
    }

    /// GPT-2 medium, 355M parameters.
    pub fn gpt2_medium() -> Self {
        Self::sized(1024, 24, 16)
    }

    /// GPT-2 large, 774M parameters.
    pub fn gpt2_large() -> Self {
        Self::sized(1280, 36, 20)
    }

    /// GPT-2 XL, 1.5B parameters.
    pub fn gpt2_xl() -> Self {
        Self::sized(1600, 48, 25)
    }

    /// DistilGPT2, 82M parameters (GPT-2 small with 6 blocks).
    pub fn distilgpt2() -> Self {
        Self::sized(768, 6, 12)
    }

    fn sized(n_embd: usize, n_layer: usize, n_head: usize) -> Self {
        Self {
            n_embd,
            n_layer,
            n_head,
            ..Self::gpt2()
        }
    }

    /// A small GPT of GPT-2's architecture for training from scratch, without dropout.
    pub fn small(
        vocab_size: usize,
        n_positions: usize,
        n_embd: usize,
        n_layer: usize,
        n_head: usize,
    ) -> Self {
        Self {
            vocab_size,
            n_positions,
            n_embd,
            n_layer,
            n_head,
            resid_pdrop: 0.0,
            embd_pdrop: 0.0,
            attn_pdrop: 0.0,
            bos_token_id: None,
            eos_token_id: None,
            ..Self::gpt2()
        }
    }

    /// Width of the MLP's hidden layer.
    pub fn inner_size(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// Features per attention head.
    pub fn head_size(&self) -> usize {
        self.n_embd / self.n_head.max(1)
    }

    /// The MLP's activation.
    pub fn activation(&self) -> Activation {
        Activation::from_name(&self.activation_function).unwrap_or(Activation::GeluTanh)
    }

    /// Checks that a model can be built from these settings; says what is wrong otherwise.
    pub fn check(&self) -> Result<(), String> {
        if !self.model_type.is_empty() && self.model_type != GPT2 {
            return Err(format!(
                "model_type is '{}', not '{GPT2}'; Strata's transformer loads GPT-2 models",
                self.model_type
            ));
        }
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_embd", self.n_embd),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_inner", self.inner_size()),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(format!(
                "n_embd ({}) is not a multiple of n_head ({})",
                self.n_embd, self.n_head
            ));
        }
        if Activation::from_name(&self.activation_function).is_none() {
            return Err(format!(
                "activation_function '{}' is not one of gelu_new, gelu_pytorch_tanh, gelu_fast, gelu, relu, silu",
                self.activation_function
            ));
        }
        if !self.tie_word_embeddings {
            return Err(
                "tie_word_embeddings is false: GPT-2's output layer is its token embedding, and untied heads are not supported".into(),
            );
        }
        for (name, p) in [
            ("resid_pdrop", self.resid_pdrop),
            ("embd_pdrop", self.embd_pdrop),
            ("attn_pdrop", self.attn_pdrop),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{name} must be in [0, 1), not {p}"));
            }
        }
        if self.layer_norm_epsilon.is_nan() || self.layer_norm_epsilon <= 0.0 {
            return Err("layer_norm_epsilon must be positive".into());
        }
        Ok(())
    }

    /// Reads and checks a Hugging Face `config.json`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        let invalid = |why: String| ConfigError::Invalid {
            path: path.display().to_string(),
            why,
        };
        let config: Self = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        config.check().map_err(invalid)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_configs_read_with_defaults() {
        // openai-community/gpt2's config.json as the Hub serves it (older field names included).
        let text = r#"{"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
            "attn_pdrop": 0.1, "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256,
            "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gpt2",
            "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024,
            "resid_pdrop": 0.1, "summary_activation": null, "summary_first_dropout": 0.1,
            "summary_proj_to_labels": true, "summary_type": "cls_index", "summary_use_proj": true,
            "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}},
            "vocab_size": 50257}"#;
        let config: Gpt2Config = serde_json::from_str(text).unwrap();
        assert_eq!(config, Gpt2Config::gpt2());
        let distil: Gpt2Config =
            serde_json::from_str(r#"{"n_layer": 6, "model_type": "gpt2"}"#).unwrap();
        assert_eq!(distil, Gpt2Config::distilgpt2());
        for c in [
            Gpt2Config::gpt2_medium(),
            Gpt2Config::gpt2_large(),
            Gpt2Config::gpt2_xl(),
        ] {
            c.check().unwrap();
            assert_eq!(c.head_size(), 64);
        }
    }

    #[test]
    fn impossible_settings_are_refused() {
        let mut c = Gpt2Config::gpt2();
        c.n_head = 7;
        assert!(c.check().unwrap_err().contains("multiple of n_head"));
        let mut c = Gpt2Config::gpt2();
        c.activation_function = "mish".into();
        assert!(c.check().unwrap_err().contains("mish"));
        let mut c = Gpt2Config::gpt2();
        c.model_type = "llama".into();
        assert!(c.check().unwrap_err().contains("llama"));
        let c: Gpt2Config =
            serde_json::from_str(&serde_json::to_string(&Gpt2Config::gpt2_xl()).unwrap()).unwrap();
        assert_eq!(c, Gpt2Config::gpt2_xl());
    }
}
