//! Dropout: Burn's `Dropout` module (its probability and training flag), run by our kernel on
//! flex.
//!
//! Burn draws a Bernoulli tensor per call from its ChaCha generator, one number at a time,
//! then multiplies twice. Ours draws one 64-bit seed from Burn's generator (so
//! `strata_tensor::seed` still makes a run reproducible) and keeps element `i` when a hash of
//! `(seed, i)` falls below `keep · 2³²`: one pass that vectorises, and the backward pass
//! recomputes the same mask instead of storing it.

use burn::nn::Dropout;
use burn::prelude::*;

/// `dropout.forward(x)`, through our kernel on flex (see the module docs).
pub fn dropout<const D: usize>(dropout: &Dropout, x: Tensor<D>) -> Tensor<D> {
    if !dropout.training.is_enabled() || !x.device().is_autodiff() || dropout.prob == 0.0 {
        return x;
    }
    #[cfg(feature = "flex")]
    if super::flex::available(&x) && x.shape().num_elements() <= u32::MAX as usize {
        // Four 16-bit draws (Burn's integers are 32-bit and signed).
        let seed = Tensor::<1, Int>::random(
            [4],
            burn::tensor::Distribution::Uniform(0.0, 65_536.0),
            &x.device(),
        )
        .into_data()
        .iter::<i64>()
        .fold(0u64, |s, v| (s << 16) | (v as u64 & 0xffff));
        return super::flex::dropout::dropout(x, seed, 1.0 - dropout.prob as f32);
    }
    dropout.forward(x)
}
