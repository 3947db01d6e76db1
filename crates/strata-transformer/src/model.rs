//! GPT-2 ("Language Models are Unsupervised Multitask Learners", Radford et al. 2019): a stack of
//! pre-LayerNorm Transformer decoder blocks (Vaswani et al. 2017) over token + learned position
//! embeddings, with the output layer tied to the token embedding.
//!
//! ```text
//! x = wte[ids] + wpe[positions]
//! for each block:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))
//! logits = ln_f(x) · wteᵀ
//! ```
//!
//! Parameter paths are Hugging Face's (`wte.weight`, `h.0.attn.c_attn.weight`, `ln_f.bias`,
//! ...), and every linear layer is GPT-2's [`Conv1D`], whose weight is stored `[in, out]`, so a
//! checkpoint loads without renaming or transposing (see [`crate::load`]).
//!
//! ```no_run
//! # use burn::prelude::*;
//! use strata_transformer::{Gpt2Config, KvCache};
//! let device = strata_tensor::first_compiled_device();
//! let model = Gpt2Config::distilgpt2().init(&device);
//! let mut cache = KvCache::new(model.config().n_layer);
//! let ids = Tensor::<2, Int>::from_data([[464, 2068, 7586]], &device);
//! let logits = model.forward(ids, Some(&mut cache)); // [1, 3, 50257]; the cache now holds 3 positions
//! ```

use burn::module::{Module, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer};
use burn::prelude::*;
use burn::tensor::activation;
use burn::train::{InferenceStep, SequenceOutput, TrainOutput, TrainStep};

use crate::attention::{attend_merged, causal_self_attention, merge_heads, split_heads};
use crate::config::{Activation, Gpt2Config};
use crate::layer_norm::LayerNorm;

/// GPT-2's linear layer (`transformers.pytorch_utils.Conv1D`): `y = x · W + b` with `W` stored
/// `[in, out]`, the transpose of `nn.Linear`'s.
#[derive(Module, Debug)]
pub struct Conv1D {
    /// `[in, out]`.
    pub weight: Param<Tensor<2>>,
    /// `[out]`.
    pub bias: Param<Tensor<1>>,
}

impl Conv1D {
    /// Weight from N(0, std²), bias zero (GPT-2's initialisation).
    pub fn new(d_in: usize, d_out: usize, std: f64, device: &Device) -> Self {
        Self {
            weight: Initializer::Normal { mean: 0.0, std }.init([d_in, d_out], device),
            bias: Initializer::Zeros.init([d_out], device),
        }
    }

    /// `x · W + b` over the last dimension of `x` (`[..., in]` → `[..., out]`).
    ///
    /// A bf16 weight (generation's [`WeightDtype::Bf16`](crate::WeightDtype)) is held
    /// transposed, `[out, in]`, as the weight-only kernel reads it.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.product(x) + self.bias.val().unsqueeze()
    }

    /// `residual + dropout(x · W + b)`, a sublayer's output joining the residual stream. On a
    /// CubeCL GPU at inference (where dropout is the identity) the bias and the residual are
    /// added in one launch.
    pub fn forward_into<const D: usize>(
        &self,
        x: Tensor<D>,
        dropout: &Dropout,
        residual: Tensor<D>,
    ) -> Tensor<D> {
        #[cfg(feature = "cube")]
        if crate::cube::available(&x) {
            return crate::cube::bias_residual(self.product(x), self.bias.val(), residual);
        }
        residual + dropout.forward(self.forward(x))
    }

    /// `x · W`, without the bias.
    fn product<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dims = x.dims();
        let d_in = dims[D - 1];
        let rows = dims[..D - 1].iter().product::<usize>();
        let weight = self.weight.val();
        let x = x.reshape([rows, d_in]);
        let (y, d_out) = if weight.dtype() == burn::tensor::DType::BF16 {
            let d_out = weight.dims()[0];
            (crate::kernels::project_t(x, weight), d_out)
        } else {
            let d_out = weight.dims()[1];
            (crate::kernels::project(x, weight), d_out)
        };
        let mut out = dims;
        out[D - 1] = d_out;
        y.reshape(out)
    }
}

/// The keys and values of every block for the positions read so far, so that each new token
/// costs one position of work instead of the whole text again.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
}

impl KvCache {
    /// An empty cache for a model of `n_layer` blocks.
    pub fn new(n_layer: usize) -> Self {
        Self {
            layers: vec![None; n_layer],
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |l| l.len)
    }

    /// Whether no position is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every position.
    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
    }
}

/// One block's keys and values, `[batch, heads, capacity, head_dim]` each, of which the first
/// `len` positions are held. A new position is written in place (Burn's `slice_assign` reuses a
/// tensor nothing else holds), and the capacity doubles when it runs out: a decoding step
/// writes one position of each, where concatenating copied the whole cache (on a GPU, two
/// launches per tensor and step).
#[derive(Debug, Clone)]
pub struct LayerCache {
    k: Tensor<4>,
    v: Tensor<4>,
    len: usize,
}

impl LayerCache {
    /// The capacity of a new cache, in positions, at least.
    const FIRST_CAPACITY: usize = 64;

    /// Adds keys and values `[batch, heads, t, head_dim]` after those `slot` holds; returns
    /// every position's, as views.
    fn append(slot: &mut Option<Self>, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let [b, h, t, d] = k.dims();
        let start = slot.as_ref().map_or(0, |c| c.len);
        let end = start + t;
        let mut cache = match slot.take() {
            Some(cache) if end <= cache.k.dims()[2] => cache,
            held => {
                let capacity = end.next_power_of_two().max(Self::FIRST_CAPACITY);
                let empty = || Tensor::<4>::empty([b, h, capacity, d], &k.device());
                let (mut bigger_k, mut bigger_v) = (empty(), empty());
                if let Some(held) = held {
                    let range = s![.., .., 0..start];
                    bigger_k = bigger_k.slice_assign(range, held.k.narrow(2, 0, start));
                    bigger_v = bigger_v.slice_assign(range, held.v.narrow(2, 0, start));
                }
                Self {
                    k: bigger_k,
                    v: bigger_v,
                    len: start,
                }
            }
        };
        cache.k = cache.k.slice_assign(s![.., .., start..end], k);
        cache.v = cache.v.slice_assign(s![.., .., start..end], v);
        cache.len = end;
        let held = (
            cache.k.clone().narrow(2, 0, end),
            cache.v.clone().narrow(2, 0, end),
        );
        *slot = Some(cache);
        held
    }
}

/// Causal multi-head self-attention with one fused query/key/value projection.
#[derive(Module, Debug)]
pub struct Attention {
    /// Queries, keys and values of every head, `[n_embd, 3 n_embd]`.
    pub c_attn: Conv1D,
    /// Mixes the heads' outputs back into the residual stream.
    pub c_proj: Conv1D,
    /// Dropout on the attention probabilities.
    pub attn_dropout: Dropout,
    /// Dropout on the output.
    pub resid_dropout: Dropout,
    /// Heads.
    #[module(skip)]
    pub n_head: usize,
    /// Factor of the scores `q·k`.
    #[module(skip)]
    pub scale: f64,
}

impl Attention {
    /// `x` `[batch, time, n_embd]`: each position attends to itself and the positions before
    /// it (those in `cache` first, which then holds `x`'s keys and values too).
    pub fn forward(&self, x: Tensor<3>, cache: Option<&mut Option<LayerCache>>) -> Tensor<3> {
        self.resid_dropout
            .forward(self.c_proj.forward(self.attend(x, cache)))
    }

    /// `residual + forward(x, cache)` (see [`Conv1D::forward_into`]).
    pub fn forward_into(
        &self,
        x: Tensor<3>,
        cache: Option<&mut Option<LayerCache>>,
        residual: Tensor<3>,
    ) -> Tensor<3> {
        self.c_proj
            .forward_into(self.attend(x, cache), &self.resid_dropout, residual)
    }

    /// The heads' outputs side by side, `[batch, time, n_embd]`, before `c_proj`.
    fn attend(&self, x: Tensor<3>, cache: Option<&mut Option<LayerCache>>) -> Tensor<3> {
        let qkv = self.c_attn.forward(x);
        let dropout = self.attn_dropout.prob > 0.0 && qkv.device().is_autodiff();
        match cache {
            None if !dropout => causal_self_attention(qkv, self.n_head, self.scale),
            cache => {
                let [q, mut k, mut v] = split_heads(qkv, self.n_head);
                if let Some(slot) = cache {
                    (k, v) = LayerCache::append(slot, k, v);
                }
                if dropout {
                    merge_heads(self.attend_with_dropout(q, k, v))
                } else {
                    attend_merged(q, k, v, self.scale)
                }
            }
        }
    }

    /// softmax(q·kᵀ · scale + causal mask), dropout, · v: the same as Burn's fused attention,
    /// with dropout on the probabilities (training).
    fn attend_with_dropout(&self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
        let [b, h, tq, _] = q.dims();
        let tk = k.dims()[2];
        let scores = q.matmul(k.swap_dims(2, 3)) * self.scale;
        // `tril_mask` is true above the diagonal (shifted by the cached positions): the future.
        let future = Tensor::<2, Bool>::tril_mask([tq, tk], (tk - tq) as i64, &scores.device())
            .reshape([1, 1, tq, tk])
            .expand([b, h, tq, tk]);
        let probs = activation::softmax(scores.mask_fill(future, f32::NEG_INFINITY), 3);
        self.attn_dropout.forward(probs).matmul(v)
    }
}

/// The position-wise feed-forward network: `c_proj(act(c_fc(x)))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `[n_embd, n_inner]`.
    pub c_fc: Conv1D,
    /// `[n_inner, n_embd]`.
    pub c_proj: Conv1D,
    /// Dropout on the output.
    pub dropout: Dropout,
    /// The activation.
    #[module(skip)]
    pub activation: ActivationKind,
}

/// [`Activation`] as a module constant.
#[derive(Debug, Clone, Copy)]
pub struct ActivationKind(pub Activation);

impl Mlp {
    /// `x` `[batch, time, n_embd]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.dropout.forward(self.c_proj.forward(self.hidden(x)))
    }

    /// `residual + forward(x)` (see [`Conv1D::forward_into`]).
    pub fn forward_into(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.c_proj
            .forward_into(self.hidden(x), &self.dropout, residual)
    }

    /// `act(c_fc(x))`: on a CubeCL GPU at inference, GELU's tanh approximation and `c_fc`'s
    /// bias are one launch.
    fn hidden(&self, x: Tensor<3>) -> Tensor<3> {
        #[cfg(feature = "cube")]
        if self.activation.0 == Activation::GeluTanh && crate::cube::available(&x) {
            return crate::cube::bias_gelu_tanh(self.c_fc.product(x), self.c_fc.bias.val());
        }
        let hidden = self.c_fc.forward(x);
        match self.activation.0 {
            Activation::GeluTanh => crate::gelu::gelu_tanh(hidden),
            Activation::Gelu => activation::gelu(hidden),
            Activation::Relu => activation::relu(hidden),
            Activation::Silu => activation::silu(hidden),
        }
    }
}

/// One pre-LayerNorm Transformer block.
#[derive(Module, Debug)]
pub struct Block {
    /// Normalises the attention's input.
    pub ln_1: LayerNorm,
    /// Causal self-attention.
    pub attn: Attention,
    /// Normalises the MLP's input.
    pub ln_2: LayerNorm,
    /// Feed-forward network.
    pub mlp: Mlp,
}

impl Block {
    /// `x + attn(ln_1(x))`, then `+ mlp(ln_2(·))`.
    pub fn forward(&self, x: Tensor<3>, cache: Option<&mut Option<LayerCache>>) -> Tensor<3> {
        let x = self
            .attn
            .forward_into(self.ln_1.forward(x.clone()), cache, x);
        self.mlp.forward_into(self.ln_2.forward(x.clone()), x)
    }
}

impl Gpt2Config {
    /// Builds a GPT-2 with Hugging Face's initialisation: weights and embeddings from
    /// N(0, `initializer_range`²), each block's output projections (`c_proj`) scaled down by
    /// `√(2 n_layer)`, LayerNorms at 1 and 0, biases at 0.
    pub fn init(&self, device: &Device) -> Gpt2 {
        let std = self.initializer_range;
        let proj_std = std / (2.0 * self.n_layer as f64).sqrt();
        let e = self.n_embd;
        let norm = || LayerNorm::new(e, self.layer_norm_epsilon, device);
        let embedding = |n: usize| {
            EmbeddingConfig::new(n, e)
                .with_initializer(Initializer::Normal { mean: 0.0, std })
                .init(device)
        };
        let h = (0..self.n_layer)
            .map(|i| {
                let mut scale = if self.scale_attn_weights {
                    1.0 / (self.head_size() as f64).sqrt()
                } else {
                    1.0
                };
                if self.scale_attn_by_inverse_layer_idx {
                    scale /= (i + 1) as f64;
                }
                Block {
                    ln_1: norm(),
                    attn: Attention {
                        c_attn: Conv1D::new(e, 3 * e, std, device),
                        c_proj: Conv1D::new(e, e, proj_std, device),
                        attn_dropout: DropoutConfig::new(self.attn_pdrop).init(),
                        resid_dropout: DropoutConfig::new(self.resid_pdrop).init(),
                        n_head: self.n_head,
                        scale,
                    },
                    ln_2: norm(),
                    mlp: Mlp {
                        c_fc: Conv1D::new(e, self.inner_size(), std, device),
                        c_proj: Conv1D::new(self.inner_size(), e, proj_std, device),
                        dropout: DropoutConfig::new(self.resid_pdrop).init(),
                        activation: ActivationKind(self.activation()),
                    },
                }
            })
            .collect();
        Gpt2 {
            wte: embedding(self.vocab_size),
            wpe: embedding(self.n_positions),
            drop: DropoutConfig::new(self.embd_pdrop).init(),
            h,
            ln_f: norm(),
            config: ConfigHolder(self.clone()),
        }
    }
}

/// A [`Gpt2Config`] kept in the model (not a parameter).
#[derive(Debug, Clone)]
pub struct ConfigHolder(pub Gpt2Config);

/// GPT-2 with its language-model head (`transformers.GPT2LMHeadModel`).
#[derive(Module, Debug)]
pub struct Gpt2 {
    /// Token embedding, `[vocab_size, n_embd]`; also the output layer.
    pub wte: Embedding,
    /// Position embedding, `[n_positions, n_embd]`.
    pub wpe: Embedding,
    /// Dropout on the embeddings.
    pub drop: Dropout,
    /// The blocks.
    pub h: Vec<Block>,
    /// Final LayerNorm.
    pub ln_f: LayerNorm,
    /// The settings it was built from.
    #[module(skip)]
    pub config: ConfigHolder,
}

impl Gpt2 {
    /// The settings it was built from.
    pub fn config(&self) -> &Gpt2Config {
        &self.config.0
    }

    /// The residual stream after `ln_f` for `ids` (`[batch, time]`), `[batch, time, n_embd]`.
    /// With a cache, `ids` continue the positions it holds, and their keys and values are added
    /// to it. Positions past the context (`n_positions`) panic: callers check first.
    pub fn hidden(&self, ids: Tensor<2, Int>, mut cache: Option<&mut KvCache>) -> Tensor<3> {
        let [b, t] = ids.dims();
        let start = cache.as_ref().map_or(0, |c| c.len());
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(start as i64..(start + t) as i64, &device)
            .reshape([1, t])
            .expand([b, t]);
        let mut x = self
            .drop
            .forward(self.wte.forward(ids) + self.wpe.forward(positions));
        for (i, block) in self.h.iter().enumerate() {
            let slot = cache.as_mut().map(|c| &mut c.layers[i]);
            x = block.forward(x, slot);
        }
        self.ln_f.forward(x)
    }

    /// Next-token logits from [`hidden`](Self::hidden)'s output: `hidden · wteᵀ`,
    /// `[batch, time, vocab_size]`.
    pub fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        let [b, t, e] = hidden.dims();
        let wte = self.wte.weight.val();
        let v = wte.dims()[0];
        crate::kernels::project_t(hidden.reshape([b * t, e]), wte).reshape([b, t, v])
    }

    /// Next-token logits at every position of `ids`, `[batch, time, vocab_size]`.
    pub fn forward(&self, ids: Tensor<2, Int>, cache: Option<&mut KvCache>) -> Tensor<3> {
        self.head(self.hidden(ids, cache))
    }

    /// Mean cross-entropy (nats per token) of predicting `targets` from `inputs`, and the logits.
    pub fn forward_loss(&self, inputs: Tensor<2, Int>, targets: Tensor<2, Int>) -> SequenceOutput {
        let logits = self.forward(inputs, None);
        let [b, t, v] = logits.dims();
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(
                logits.clone().reshape([b * t, v]),
                targets.clone().reshape([b * t]),
            );
        SequenceOutput {
            loss,
            logits,
            predictions: None,
            targets,
        }
    }
}

/// A batch of token windows: what the model reads and the next token at each position.
pub type TokenBatch = strata_train::text::TokenBatch;

impl TrainStep for Gpt2 {
    type Input = TokenBatch;
    type Output = SequenceOutput;

    fn step(&self, batch: TokenBatch) -> TrainOutput<SequenceOutput> {
        let out = self.forward_loss(batch.inputs, batch.targets);
        TrainOutput::new(self, out.loss.backward(), out)
    }
}

impl InferenceStep for Gpt2 {
    type Input = TokenBatch;
    type Output = SequenceOutput;

    fn step(&self, batch: TokenBatch) -> SequenceOutput {
        self.forward_loss(batch.inputs, batch.targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Gpt2Config {
        let mut c = Gpt2Config::small(50, 16, 16, 2, 4);
        c.initializer_range = 0.3;
        c
    }

    #[test]
    fn the_cache_gives_the_logits_of_the_whole_text() {
        let device = strata_tensor::first_compiled_device();
        strata_tensor::seed(&device, 3);
        let model = tiny().init(&device);
        let ids = Tensor::<2, Int>::from_data([[1, 7, 3, 9, 4, 2]], &device);
        let whole = model.forward(ids.clone(), None);
        let mut cache = KvCache::new(2);
        let first = model.forward(ids.clone().narrow(1, 0, 4), Some(&mut cache));
        assert_eq!(cache.len(), 4);
        let fifth = model.forward(ids.clone().narrow(1, 4, 1), Some(&mut cache));
        let sixth = model.forward(ids.narrow(1, 5, 1), Some(&mut cache));
        assert_eq!(cache.len(), 6);
        let stepped = Tensor::cat(vec![first, fifth, sixth], 1);
        whole.into_data().assert_approx_eq::<f32>(
            &stepped.into_data(),
            burn::tensor::Tolerance::absolute(1e-5),
        );
    }

    #[test]
    fn the_cache_keeps_its_positions_when_it_grows() {
        // A prompt of 60 positions, then one at a time past the first capacity (64), and a
        // cloned cache that goes its own way: the logits of each step are the whole text's.
        let device = strata_tensor::first_compiled_device();
        strata_tensor::seed(&device, 5);
        let mut config = tiny();
        config.n_positions = 80;
        let model = config.init(&device);
        let ids: Vec<i64> = (0..70).map(|i| (i * 7 + 3) % 50).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, 70]), &device);
        let whole = model.forward(ids.clone(), None);
        let mut cache = KvCache::new(2);
        let mut steps = vec![model.forward(ids.clone().narrow(1, 0, 60), Some(&mut cache))];
        let mut fork = None;
        for i in 60..70 {
            if i == 66 {
                fork = Some(cache.clone());
            }
            steps.push(model.forward(ids.clone().narrow(1, i, 1), Some(&mut cache)));
        }
        assert_eq!(cache.len(), 70);
        let close = burn::tensor::Tolerance::absolute(1e-4);
        let stepped = Tensor::cat(steps, 1);
        whole
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&stepped.into_data(), close);
        // The fork still holds 66 positions: a different 67th token gives its own logits.
        let mut fork = fork.unwrap();
        let other = Tensor::<2, Int>::from_data([[11]], &device);
        let forked = model.forward(other.clone(), Some(&mut fork));
        let text = Tensor::cat(vec![ids.narrow(1, 0, 66), other], 1);
        let expected = model.forward(text, None).narrow(1, 66, 1);
        expected
            .into_data()
            .assert_approx_eq::<f32>(&forked.into_data(), close);
    }

    #[test]
    fn a_position_never_sees_the_future() {
        let device = strata_tensor::first_compiled_device();
        strata_tensor::seed(&device, 4);
        let model = tiny().init(&device);
        let a = model.forward(Tensor::<2, Int>::from_data([[5, 6, 7, 8]], &device), None);
        let b = model.forward(Tensor::<2, Int>::from_data([[5, 6, 30, 31]], &device), None);
        a.narrow(1, 0, 2).into_data().assert_approx_eq::<f32>(
            &b.narrow(1, 0, 2).into_data(),
            burn::tensor::Tolerance::absolute(1e-6),
        );
    }

    #[test]
    fn the_dropout_path_matches_the_fused_attention_without_dropout() {
        let device = strata_tensor::first_compiled_device().autodiff();
        strata_tensor::seed(&device, 5);
        let mut config = tiny();
        config.attn_pdrop = 0.5;
        let model = config.init(&device);
        let attn = &model.h[0].attn;
        let x = Tensor::<3>::random(
            [2, 5, 16],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let [q, k, v] = split_heads(attn.c_attn.forward(x), 4);
        let manual = Attention {
            attn_dropout: DropoutConfig::new(0.0).init(),
            ..attn.clone()
        }
        .attend_with_dropout(q.clone(), k.clone(), v.clone());
        let fused = crate::attention::attend(q, k, v, attn.scale);
        manual
            .into_data()
            .assert_approx_eq::<f32>(&fused.into_data(), burn::tensor::Tolerance::absolute(1e-5));
    }
}
