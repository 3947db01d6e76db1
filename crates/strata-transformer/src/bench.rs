//! Speed of GPT-2 text generation (`cargo xtask bench gpt2-decode`): GPT-2 small's
//! configuration (124M parameters, the full 50,257-token output layer) with random weights, which
//! cost the same compute as the real ones; batch 1, a prompt of 16 tokens, then 64 new tokens by
//! greedy decoding through the same [`Gpt2Generator`] and decode loop as `generate-text`.

use std::ops::ControlFlow;

use burn::module::Module;
use burn::prelude::*;
use strata_tensor::generate::{GenerateOptions, generate};

use crate::config::Gpt2Config;
use crate::generate::{Gpt2Generator, WeightDtype};

/// Result of a decoding-speed measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeThroughput {
    /// New tokens per second after the prompt (the decode steps).
    pub decode_tokens_per_s: f64,
    /// Prompt tokens per second (the prefill, with the first new token).
    pub prompt_tokens_per_s: f64,
    /// Bytes of weights one decode step reads (every weight once; one row of each embedding).
    pub weight_bytes_per_token: f64,
    /// Timed generations.
    pub runs: usize,
}

/// Times `runs` greedy generations of `new_tokens` tokens after a `prompt_len`-token prompt with
/// GPT-2 small's configuration (random weights, seeded) in `dtype`, after `warmup` untimed ones.
pub fn gpt2_decode_throughput(
    device: &Device,
    dtype: WeightDtype,
    prompt_len: usize,
    new_tokens: usize,
    warmup: usize,
    runs: usize,
) -> DecodeThroughput {
    strata_tensor::seed(device, 0);
    let config = Gpt2Config::gpt2();
    let model = config.init(device);
    let params = model.num_params() as f64;
    let embedding_rows = ((config.vocab_size + config.n_positions) * config.n_embd) as f64;
    // The output layer reads wte in full; the embeddings are only looked up (one row each).
    let weight_bytes_per_token = match dtype {
        WeightDtype::F32 => (params - config.n_positions as f64 * config.n_embd as f64) * 4.0,
        WeightDtype::Bf16 => {
            let linear_and_head =
                params - embedding_rows + (config.vocab_size * config.n_embd) as f64;
            linear_and_head * 2.0
        }
    };
    let mut generator = Gpt2Generator::new(model, dtype);
    let prompt: Vec<u32> = (0..prompt_len)
        .map(|i| ((i * 7919 + 13) % config.vocab_size) as u32)
        .collect();
    let options = GenerateOptions::greedy(new_tokens);
    let (mut prompt_s, mut decode_s, mut decoded) = (0.0, 0.0, 0);
    for run in 0..warmup + runs {
        let g = generate(&mut generator, &prompt, &options, &mut |_| {
            ControlFlow::Continue(())
        })
        .expect("the benchmark's prompt fits the context");
        if run >= warmup {
            prompt_s += g.prompt_seconds;
            decode_s += g.decode_seconds;
            decoded += g.generated_ids.len().saturating_sub(1);
        }
    }
    DecodeThroughput {
        decode_tokens_per_s: decoded as f64 / decode_s,
        prompt_tokens_per_s: (runs * prompt_len) as f64 / prompt_s,
        weight_bytes_per_token,
        runs,
    }
}
