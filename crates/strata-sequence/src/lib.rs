//! Strata's sequence models: recurrent networks with PyTorch's semantics and weights, and the
//! two tasks of a course's sequence chapter.
//!
//! - [`recurrent`]: [`Recurrent`](recurrent::Recurrent), `nn.RNN` / `nn.LSTM` / `nn.GRU` in one
//!   module: stacked, bidirectional, dropout between layers, initial and final states, batches
//!   of sequences of different lengths; PyTorch state dicts load as they are;
//! - [`models`]: a character-level language model and a sequence classifier built on it;
//! - [`corpus`]: text corpora, their character vocabulary and training windows;
//! - [`rows`]: MNIST images as sequences of rows;
//! - `fused` (with the `flex` backend, and on CubeCL's GPUs with `cuda` or `wgpu`): an LSTM layer
//!   over a whole sequence as one operation with its own backward pass;
//! - [`job`]: `train-sequence`, and the language model as a decoder for `generate-text`;
//! - [`bench`](mod@bench): the `lstm-train` benchmark;
//! - [`selftest`]: the LSTM and GRU part of `strata selftest` (this backend against another).

pub mod bench;
pub mod corpus;
#[cfg(any(feature = "flex", feature = "cube"))]
pub mod fused;
pub mod job;
pub mod models;
pub mod recurrent;
pub mod rows;
pub mod selftest;
