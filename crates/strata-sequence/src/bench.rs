//! Throughput of training the character-level LSTM language model (`cargo xtask bench
//! lstm-train`): 2 layers of 256 units over embeddings of 128, a 65-character vocabulary,
//! batches of 32 windows of 64 characters.
//!
//! It runs the same code path as `train-sequence --task char-lm`: the model's `TrainStep`
//! (forward, cross-entropy over every position, backward) and a full Adam step, without
//! burn-train's metric bookkeeping, after a warm-up.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use burn::train::TrainStep;

use crate::corpus::{CharVocab, WindowBatcher, Windows};
use crate::models::CharLmConfig;
use crate::recurrent::Cell;

/// Result of a training-throughput measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenThroughput {
    /// Tokens (characters) per second over the timed steps.
    pub tokens_per_s: f64,
    /// Timed steps.
    pub steps: usize,
    /// Seconds of the timed steps.
    pub seconds: f64,
}

/// Times `steps` training steps of the benchmark's LSTM language model on consecutive windows
/// of `text` (`batch_size` windows of `seq_len` characters per step), after `warmup` untimed
/// steps, on `device` (autodiff is added here). Adam at 2e-3, as the PyTorch baseline.
pub fn lstm_train_throughput(
    text: &str,
    device: &Device,
    batch_size: usize,
    seq_len: usize,
    warmup: usize,
    steps: usize,
) -> TokenThroughput {
    let device = device.clone().autodiff();
    strata_tensor::seed(&device, 0);
    let vocab = CharVocab::from_text(text);
    let ids = vocab
        .encode(text, "corpus")
        .expect("the vocabulary is the text's own");
    let windows = Windows::new(Arc::new(ids), seq_len);
    let config = CharLmConfig::new(vocab.len())
        .with_cell(Cell::Lstm)
        .with_embedding_dim(128)
        .with_hidden_size(256)
        .with_num_layers(2);
    let mut model = config.init(&device);
    let lr = 2e-3;
    let mut optim = strata_train::OptimizerConfig::adam(lr).init();
    let per_pass = (windows.len() / batch_size).max(1);
    let batch = |i: usize| {
        let start = (i % per_pass) * batch_size;
        let items = (start..start + batch_size)
            .filter_map(|j| windows.get(j % windows.len().max(1)).ok())
            .collect();
        WindowBatcher.batch(items, &device)
    };
    let mut step = |i: usize| {
        let out = TrainStep::step(&model, batch(i));
        model = optim.step(lr, model.clone(), out.grads);
        out.item.loss
    };
    let seconds = strata_train::bench::time_steps(warmup, steps, &mut step);
    TokenThroughput {
        tokens_per_s: (steps * batch_size * seq_len) as f64 / seconds,
        steps,
        seconds,
    }
}
