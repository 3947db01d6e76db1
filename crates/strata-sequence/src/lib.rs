//! Strata's sequence models: recurrent networks with PyTorch's semantics and weights, and the
//! two tasks of a course's sequence chapter.
//!
//! - [`recurrent`]: [`Recurrent`](recurrent::Recurrent), `nn.RNN` / `nn.LSTM` / `nn.GRU` in one
//!   module: stacked, bidirectional, dropout between layers, initial and final states, batches
//!   of sequences of different lengths; PyTorch state dicts load as they are.

pub mod recurrent;
