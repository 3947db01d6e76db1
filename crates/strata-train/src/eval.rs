//! Scoring a trained model on a held-out set, for any task.

use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::data::dataset::DatasetError;
use burn::train::InferenceStep;
use serde::Serialize;

use crate::task::{TaskKind, TaskOutput};

/// What a model scores over a whole dataset.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    /// The task scored.
    pub task: TaskKind,
    /// Mean loss, weighted by items (tokens for a language model).
    pub loss: f64,
    /// Fraction of correct predictions (top-1 class, or next token), where the task has one.
    pub accuracy: Option<f64>,
    /// `exp(loss)`, for a language model.
    pub perplexity: Option<f64>,
    /// Items (tokens for a language model) scored.
    pub items: usize,
}

/// Runs `model` over every batch of `data` (pass `model.valid()` for inference mode).
pub fn evaluate<M, I, O>(model: &M, data: &Arc<dyn DataLoader<I>>) -> Result<Score, DatasetError>
where
    M: InferenceStep<Input = I, Output = O>,
    O: TaskOutput,
{
    let (mut loss_sum, mut items) = (0.0f64, 0usize);
    let mut correct: Option<(usize, usize)> = None;
    for batch in data.iter() {
        let stats = model.step(batch?).stats();
        loss_sum += stats.loss * stats.weight as f64;
        items += stats.weight;
        if let Some((c, n)) = stats.correct {
            let (sc, sn) = correct.get_or_insert((0, 0));
            *sc += c;
            *sn += n;
        }
    }
    let loss = if items > 0 {
        loss_sum / items as f64
    } else {
        f64::NAN
    };
    Ok(Score {
        task: O::KIND,
        loss,
        accuracy: correct.map(|(c, n)| if n > 0 { c as f64 / n as f64 } else { 0.0 }),
        perplexity: (O::KIND == TaskKind::LanguageModel).then(|| loss.exp()),
        items,
    })
}
