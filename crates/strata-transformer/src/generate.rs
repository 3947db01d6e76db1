//! GPT-2 as a [`Decoder`] of `strata_tensor::generate`: the prompt runs once (prefill) and fills
//! the [`KvCache`]; each new token then costs one position of work.
//!
//! [`WeightDtype::Bf16`] keeps the weights of the linear layers and of the output layer in
//! bfloat16 (half the bytes of f32): decoding one token reads every weight once, so it is
//! limited by memory bandwidth, and halving the bytes nearly doubles the speed (see
//! `docs/perf.md`). Activations, LayerNorms, attention and the embeddings stay in f32.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::DType;
use strata_tensor::generate::{Decoder, GenerateError};

use crate::model::{Gpt2, KvCache};

/// The precision the weights of a generating model are kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightDtype {
    /// As loaded (float32).
    #[default]
    F32,
    /// bfloat16 weights of the linear layers and the output layer, read by a weight-only
    /// kernel that converts them as it streams them.
    Bf16,
}

strata_tensor::named_enum!(WeightDtype, "dtype", {
    F32 => "f32",
    Bf16 => "bf16",
});

impl WeightDtype {
    /// Whether `device` computes in this precision: wgpu's WGSL shaders have no bf16, and there
    /// a bf16 model would give wrong logits (Burn's kernels fail to compile on their own thread).
    ///
    /// # Errors
    /// [`GenerateError::Invalid`], one line that names `--dtype f32`, where it does not.
    pub fn check(self, device: &Device) -> Result<(), GenerateError> {
        match self {
            Self::Bf16 if !device.supports_dtype(DType::BF16) => Err(GenerateError::Invalid(
                "this device cannot compute in bf16 (wgpu's WGSL shaders have no bf16 type): use --dtype f32".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// Casts every 2-d parameter (the linear layers' weights) to bf16, transposed to `[out, in]`
/// and contiguous, as [`Conv1D::forward`](crate::model::Conv1D::forward) expects them.
struct ToBf16;

impl ModuleMapper for ToBf16 {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D == 2 {
            param.map(|t| contiguous(t.transpose().cast(DType::BF16)))
        } else {
            param
        }
    }
}

/// `t` with a fresh contiguous buffer (the weight-only kernel reads it in place).
fn contiguous<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    let (device, dtype) = (t.device(), t.dtype());
    Tensor::from_data(t.into_data(), (&device, dtype))
}

/// A GPT-2 ready to generate: the model, its cache, and the output layer in the decode dtype.
#[derive(Debug)]
pub struct Gpt2Generator {
    model: Gpt2,
    cache: KvCache,
    /// `wte` in bf16 (`[vocab, n_embd]`, contiguous) in [`WeightDtype::Bf16`].
    head_bf16: Option<Tensor<2>>,
    device: Device,
    /// Past the context, read only its last `n_positions` tokens (else stop there).
    slide: bool,
    /// The prompt and the tokens fed since (for the sliding context).
    history: Vec<u32>,
}

impl Gpt2Generator {
    /// Wraps `model` (on a device without autodiff), with its weights in `dtype`.
    ///
    /// # Panics
    /// With the message of [`WeightDtype::check`] where the model's device cannot compute in
    /// `dtype`.
    pub fn new(model: Gpt2, dtype: WeightDtype) -> Self {
        let device = model.wte.weight.val().device();
        if let Err(e) = dtype.check(&device) {
            panic!("{e}");
        }
        let (model, head_bf16) = match dtype {
            WeightDtype::F32 => (model, None),
            WeightDtype::Bf16 => {
                let head = contiguous(model.wte.weight.val().cast(DType::BF16));
                // The embeddings (2-d too) stay f32: they are looked up, not multiplied.
                let (wte, wpe) = (model.wte.clone(), model.wpe.clone());
                let mut model = model.map(&mut ToBf16);
                model.wte = wte;
                model.wpe = wpe;
                (model, Some(head))
            }
        };
        let cache = KvCache::new(model.config().n_layer);
        Self {
            model,
            cache,
            head_bf16,
            device,
            slide: false,
            history: Vec::new(),
        }
    }

    /// Lets generation go on past the context: once the text fills it, each new token is
    /// predicted from the last `n_positions` tokens only, recomputed at every step (as nanoGPT's
    /// `sample.py` crops its input). Without it, generation stops when the context is full, as
    /// `transformers` does.
    pub fn with_sliding_context(mut self, slide: bool) -> Self {
        self.slide = slide;
        self
    }

    /// The model.
    pub fn model(&self) -> &Gpt2 {
        &self.model
    }

    /// Logits after feeding `ids` (continuing the cache), at the last position only.
    fn logits_after(&mut self, ids: &[u32]) -> Result<Vec<f32>, GenerateError> {
        let n = ids.len();
        let context = self.model.config().n_positions;
        if self.cache.len() + n > context {
            return Err(GenerateError::Invalid(format!(
                "the text has {} tokens but the model's context is {context}",
                self.cache.len() + n
            )));
        }
        let hidden = self
            .model
            .hidden(self.id_tensor(ids), Some(&mut self.cache));
        let e = hidden.dims()[2];
        let last = hidden.narrow(1, n - 1, 1).reshape([1, e]);
        self.head(last)
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| GenerateError::Model(format!("{e:?}")))
    }

    fn id_tensor(&self, ids: &[u32]) -> Tensor<2, Int> {
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let n = ids.len();
        Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &self.device)
    }

    /// The output layer over `hidden` (`[rows, n_embd]`), in the decode dtype.
    fn head(&self, hidden: Tensor<2>) -> Tensor<2> {
        match &self.head_bf16 {
            Some(head) => crate::kernels::project_t(hidden, head.clone()),
            None => {
                let [rows, e] = hidden.dims();
                self.model
                    .head(hidden.reshape([1, rows, e]))
                    .reshape([rows, self.model.config().vocab_size])
            }
        }
    }

    /// Next-token logits at every position of `ids` (at most the context), `[len, vocab]`, in the
    /// decode dtype, without touching the cache.
    pub fn logits(&self, ids: &[u32]) -> Tensor<2> {
        let hidden = self.model.hidden(self.id_tensor(ids), None);
        let [_, t, e] = hidden.dims();
        self.head(hidden.reshape([t, e]))
    }
}

impl Decoder for Gpt2Generator {
    fn prefill(&mut self, prompt: &[u32]) -> Result<Vec<f32>, GenerateError> {
        self.cache.clear();
        let vocab = self.model.config().vocab_size;
        if let Some(bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(GenerateError::Invalid(format!(
                "token id {bad} is outside the model's vocabulary of {vocab}"
            )));
        }
        let context = self.model.config().n_positions;
        if prompt.len() > context {
            return Err(GenerateError::Invalid(format!(
                "the prompt has {} tokens but the model's context is {context}; shorten it",
                prompt.len()
            )));
        }
        self.history = prompt.to_vec();
        self.logits_after(prompt)
    }

    fn step(&mut self, token: u32) -> Result<Vec<f32>, GenerateError> {
        self.history.push(token);
        let context = self.model.config().n_positions;
        if self.slide && self.cache.len() + 1 > context {
            self.cache.clear();
            let start = self.history.len() - context;
            let window = self.history[start..].to_vec();
            return self.logits_after(&window);
        }
        self.logits_after(&[token])
    }

    fn max_len(&self) -> Option<usize> {
        (!self.slide).then_some(self.model.config().n_positions)
    }
}
