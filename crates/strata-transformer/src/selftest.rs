//! The transformer's part of `strata selftest`: a forward and a backward pass on two backends
//! with the same weights and inputs, compared ([`strata_train::parity`]).

use burn::prelude::*;
use strata_tensor::parity::Gap;

use crate::config::Gpt2Config;

/// A two-block GPT-2 (64-wide, 4 heads, 512 tokens, dropout off) on 2 sequences of 16 tokens:
/// gaps in the logits, the loss and every gradient (embeddings, attention, MLP, LayerNorms).
pub fn gpt2(reference: &Device, other: &Device) -> Vec<Gap> {
    let device = reference.clone().autodiff();
    strata_tensor::seed(&device, 0);
    let config = Gpt2Config {
        vocab_size: 512,
        n_positions: 64,
        n_embd: 64,
        n_layer: 2,
        n_head: 4,
        resid_pdrop: 0.0,
        embd_pdrop: 0.0,
        attn_pdrop: 0.0,
        ..Gpt2Config::gpt2()
    };
    let model = config.init(&device);
    let ids: Vec<i64> = (0..32).map(|i| (i * 37 + 5) % 512).collect();
    let ids = TensorData::new(ids, [2, 16]);
    strata_train::parity::compare_backends(&model, other, |m, device| {
        m.forward(Tensor::from_data(ids.clone(), device), None)
    })
}
