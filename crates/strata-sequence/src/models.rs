//! The two models of the sequence chapter, each a [`Recurrent`] stack with a head:
//!
//! - [`CharLm`]: a character-level language model (Karpathy's char-rnn): embedding → RNN/LSTM/GRU
//!   → linear head over the vocabulary at every step, trained to predict the next character;
//! - [`RowClassifier`]: sequence classification, e.g. an MNIST image read one row per step
//!   (28 steps of 28 pixels), classified from the last layer's final state.
//!
//! Parameter names are PyTorch's for the same modules (`embedding.weight`, `rnn.weight_ih_l0`,
//! `head.weight`; see [`TORCH_KEYS`](crate::recurrent::TORCH_KEYS)).

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::train::{ClassificationOutput, InferenceStep, SequenceOutput, TrainOutput, TrainStep};

use crate::corpus::TokenBatch;
use crate::recurrent::{Cell, Recurrent, RecurrentConfig, RecurrentState};

/// Settings of a [`CharLm`].
#[derive(Config, Debug)]
pub struct CharLmConfig {
    /// Characters in the vocabulary (the size of the embedding table and of the head).
    pub vocab_size: usize,
    /// The recurrent cell.
    #[config(default = "Cell::Lstm")]
    pub cell: Cell,
    /// Features of each character's embedding.
    #[config(default = 128)]
    pub embedding_dim: usize,
    /// Hidden features of each recurrent layer.
    #[config(default = 256)]
    pub hidden_size: usize,
    /// Stacked recurrent layers.
    #[config(default = 2)]
    pub num_layers: usize,
    /// Dropout between recurrent layers and before the head (in training).
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl CharLmConfig {
    /// Builds the model (PyTorch's initialisation for each part).
    pub fn init(&self, device: &Device) -> CharLm {
        CharLm {
            embedding: EmbeddingConfig::new(self.vocab_size, self.embedding_dim).init(device),
            rnn: RecurrentConfig::new(self.cell, self.embedding_dim, self.hidden_size)
                .with_num_layers(self.num_layers)
                .with_dropout(self.dropout)
                .with_batch_first(true)
                .init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            head: LinearConfig::new(self.hidden_size, self.vocab_size).init(device),
        }
    }
}

/// A character-level language model: embedding → recurrent stack → linear head.
#[derive(Module, Debug)]
pub struct CharLm {
    /// One vector per character.
    pub embedding: Embedding,
    /// The recurrent layers.
    pub rnn: Recurrent,
    /// Dropout before the head.
    pub dropout: Dropout,
    /// Scores of the next character, from each step's output.
    pub head: Linear,
}

impl CharLm {
    /// Logits of the next character at every position of `ids` (`[batch, time]`), `[batch, time,
    /// vocab]`, and the state after the last position (to continue from).
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        state: Option<RecurrentState>,
    ) -> (Tensor<3>, RecurrentState) {
        let (outputs, state) = self.rnn.forward(self.embedding.forward(ids), state, None);
        let hidden = self.dropout.forward(outputs);
        (self.head.forward(hidden), state)
    }

    /// Loss (mean cross-entropy over every position, in nats) and logits of a batch.
    pub fn forward_loss(&self, batch: TokenBatch) -> SequenceOutput {
        let (logits, _) = self.forward(batch.inputs, None);
        let [b, t, v] = logits.dims();
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(
                logits.clone().reshape([b * t, v]),
                batch.targets.clone().reshape([b * t]),
            );
        SequenceOutput {
            loss,
            logits,
            predictions: None,
            targets: batch.targets,
        }
    }
}

impl TrainStep for CharLm {
    type Input = TokenBatch;
    type Output = SequenceOutput;

    fn step(&self, batch: TokenBatch) -> TrainOutput<SequenceOutput> {
        let out = self.forward_loss(batch);
        TrainOutput::new(self, out.loss.backward(), out)
    }
}

impl InferenceStep for CharLm {
    type Input = TokenBatch;
    type Output = SequenceOutput;

    fn step(&self, batch: TokenBatch) -> SequenceOutput {
        self.forward_loss(batch)
    }
}

/// Settings of a [`RowClassifier`].
#[derive(Config, Debug)]
pub struct RowClassifierConfig {
    /// Features of each step (an MNIST row: 28 pixels).
    pub input_size: usize,
    /// Classes.
    pub num_classes: usize,
    /// The recurrent cell.
    #[config(default = "Cell::Lstm")]
    pub cell: Cell,
    /// Hidden features of each recurrent layer.
    #[config(default = 128)]
    pub hidden_size: usize,
    /// Stacked recurrent layers.
    #[config(default = 1)]
    pub num_layers: usize,
    /// Read each sequence in both directions.
    #[config(default = false)]
    pub bidirectional: bool,
    /// Dropout between recurrent layers (in training).
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl RowClassifierConfig {
    /// Builds the model.
    pub fn init(&self, device: &Device) -> RowClassifier {
        let rnn = RecurrentConfig::new(self.cell, self.input_size, self.hidden_size)
            .with_num_layers(self.num_layers)
            .with_bidirectional(self.bidirectional)
            .with_dropout(self.dropout)
            .with_batch_first(true)
            .init(device);
        RowClassifier {
            head: LinearConfig::new(rnn.output_size(), self.num_classes).init(device),
            rnn,
        }
    }
}

/// A sequence classifier: recurrent stack → linear head on the last layer's final state (both
/// directions' if bidirectional).
#[derive(Module, Debug)]
pub struct RowClassifier {
    /// The recurrent layers.
    pub rnn: Recurrent,
    /// Class scores.
    pub head: Linear,
}

/// Sequences and their classes: `[batch, time, features]` and `[batch]`.
#[derive(Debug, Clone)]
pub struct SequenceBatch {
    /// The sequences.
    pub inputs: Tensor<3>,
    /// The class of each.
    pub targets: Tensor<1, Int>,
}

impl RowClassifier {
    /// Class logits of each sequence of `inputs` (`[batch, time, features]`), `[batch, classes]`.
    pub fn forward(&self, inputs: Tensor<3>) -> Tensor<2> {
        let (_, state) = self.rnn.forward(inputs, None, None);
        let directions = self.rnn.directions();
        let [rows, _, _] = state.h.dims();
        // The last layer's rows of h_n, forward direction first.
        let last: Vec<Tensor<2>> = (rows - directions..rows)
            .map(|i| state.h.clone().narrow(0, i, 1).squeeze_dim(0))
            .collect();
        self.head.forward(Tensor::cat(last, 1))
    }

    /// Loss and logits of a batch.
    pub fn forward_classification(&self, batch: SequenceBatch) -> ClassificationOutput {
        let logits = self.forward(batch.inputs);
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), batch.targets.clone());
        ClassificationOutput::new(loss, logits, batch.targets)
    }
}

impl TrainStep for RowClassifier {
    type Input = SequenceBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: SequenceBatch) -> TrainOutput<ClassificationOutput> {
        let out = self.forward_classification(batch);
        TrainOutput::new(self, out.loss.backward(), out)
    }
}

impl InferenceStep for RowClassifier {
    type Input = SequenceBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: SequenceBatch) -> ClassificationOutput {
        self.forward_classification(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_char_lm_scores_every_position() {
        let device = strata_tensor::first_compiled_device();
        let model = CharLmConfig::new(11)
            .with_hidden_size(16)
            .with_embedding_dim(8)
            .init(&device);
        let ids = Tensor::<2, Int>::from_data([[1, 2, 3], [4, 5, 6]], &device);
        let (logits, state) = model.forward(ids.clone(), None);
        assert_eq!(logits.dims(), [2, 3, 11]);
        assert_eq!(state.h.dims(), [2, 2, 16]);
        // Running the steps one by one from the carried state gives the same logits.
        let (first, s) = model.forward(ids.clone().narrow(1, 0, 2), None);
        let (last, _) = model.forward(ids.narrow(1, 2, 1), Some(s));
        let joined = Tensor::cat(vec![first, last], 1);
        joined
            .into_data()
            .assert_approx_eq::<f32>(&logits.into_data(), burn::tensor::Tolerance::absolute(1e-6));
    }

    #[test]
    fn a_bidirectional_classifier_reads_both_final_states() {
        let device = strata_tensor::first_compiled_device();
        let model = RowClassifierConfig::new(4, 3)
            .with_cell(Cell::Gru)
            .with_hidden_size(5)
            .with_num_layers(2)
            .with_bidirectional(true)
            .init(&device);
        assert_eq!(model.head.weight.dims(), [10, 3]);
        let logits = model.forward(Tensor::ones([2, 6, 4], &device));
        assert_eq!(logits.dims(), [2, 3]);
    }
}
