//! Strata's transformer family: GPT-2 with Hugging Face weights and tokenizers, a KV cache for
//! text generation, and small GPTs trained from scratch on a corpus.
//!
//! - [`config`]: [`Gpt2Config`], read from and written to a Hugging Face `config.json`;
//! - [`model`]: [`Gpt2`] (blocks of causal self-attention and MLP), the [`KvCache`];
//! - [`load`]: model dirs and Hub ids, both key layouts of GPT-2 checkpoints;
//! - [`tokenizer`]: the `tokenizers` crate (GPT-2's byte-level BPE, or characters);
//! - [`generate`]: GPT-2 as a decoder of `strata_tensor::generate`, in f32 or bf16 weights;
//! - [`attention`]: causal self-attention, one operation each way on flex (a Burn backend
//!   extension);
//! - [`gelu`]: GELU's tanh approximation, one pass each way on flex (a Burn backend extension);
//! - [`layer_norm`]: GPT-2's LayerNorm, one pass each way on flex (a Burn backend extension);
//! - `cube` (with the `cuda` or `wgpu` feature): LayerNorm, GELU and cached attention at
//!   inference as CubeCL kernels, one launch each;
//! - [`kernels`]: the weight-only bf16 matrix-vector product (a Burn backend extension);
//! - [`selftest`]: GPT-2's part of `strata selftest` (this backend against another).

pub mod attention;
pub mod bench;
pub mod config;
#[cfg(feature = "cube")]
pub mod cube;
pub mod eval;
pub mod gelu;
pub mod generate;
pub mod kernels;
pub mod layer_norm;
pub mod load;
pub mod model;
pub mod selftest;
pub mod tokenizer;
pub mod train;

pub use config::{GPT2, Gpt2Config};
pub use generate::{Gpt2Generator, WeightDtype};
pub use model::{Gpt2, KvCache};
pub use tokenizer::TextTokenizer;
