//! How well a GPT-2 predicts a text (`strata eval-text`): the mean cross-entropy of each next
//! token and its exponential, the perplexity, over windows of the context length; and, for a
//! reduced-precision mode, how often it picks the same tokens as f32.

use std::ops::ControlFlow;

use serde::Serialize;
use strata_tensor::generate::{GenerateOptions, generate};

use crate::generate::Gpt2Generator;

/// The score of a model on a text.
#[derive(Debug, Clone, Serialize)]
pub struct TextScore {
    /// Mean cross-entropy of the next token, nats.
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// Tokens predicted.
    pub tokens: usize,
    /// The most probable next token at every predicted position.
    #[serde(skip)]
    pub argmax: Vec<u32>,
}

/// Scores `model` on `ids`, cut into consecutive windows of the context length (each position
/// sees the tokens of its window before it; the first of each window is not predicted).
pub fn score_text(model: &Gpt2Generator, ids: &[u32]) -> TextScore {
    let context = model.model().config().n_positions;
    let (mut nats, mut tokens, mut argmax) = (0.0f64, 0usize, Vec::new());
    for window in ids.chunks(context + 1).filter(|w| w.len() > 1) {
        let (inputs, targets) = (&window[..window.len() - 1], &window[1..]);
        let logits = model
            .logits(inputs)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        let vocab = logits.len() / inputs.len();
        for (row, &target) in logits.chunks_exact(vocab).zip(targets) {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            let sum: f64 = row.iter().map(|&x| ((x - max) as f64).exp()).sum();
            nats += sum.ln() + max as f64 - row[target as usize] as f64;
            argmax.push(strata_tensor::generate::argmax(row) as u32);
        }
        tokens += targets.len();
    }
    let loss = nats / tokens.max(1) as f64;
    TextScore {
        loss,
        perplexity: loss.exp(),
        tokens,
        argmax,
    }
}

/// Greedy continuations of each of `prompts` by two models: the fraction of the `new_tokens`
/// positions at which they chose the same token before they first differ, averaged.
pub fn greedy_agreement(
    a: &mut Gpt2Generator,
    b: &mut Gpt2Generator,
    prompts: &[Vec<u32>],
    new_tokens: usize,
) -> f64 {
    let options = GenerateOptions::greedy(new_tokens);
    let run = |g: &mut Gpt2Generator, p: &[u32]| {
        generate(g, p, &options, &mut |_| ControlFlow::Continue(()))
            .map(|r| r.generated_ids)
            .unwrap_or_default()
    };
    let mut total = 0.0;
    for prompt in prompts {
        let (x, y) = (run(a, prompt), run(b, prompt));
        let same = x.iter().zip(&y).take_while(|(p, q)| p == q).count();
        total += same as f64 / x.len().max(1) as f64;
    }
    total / prompts.len().max(1) as f64
}
