//! The vision models' part of `strata selftest`: a forward and a backward pass on two backends
//! with the same weights and inputs, compared ([`strata_train::parity`]).

use burn::prelude::*;
use strata_tensor::parity::{self, Gap};

use crate::models::SimpleCnnConfig;

/// The simple CNN (dropout off) on a batch of 8 fixed pseudo-random 28×28 images: gaps between
/// `reference` and `other` in the logits, the loss and every gradient.
pub fn simple_cnn(reference: &Device, other: &Device) -> Vec<Gap> {
    let device = reference.clone().autodiff();
    strata_tensor::seed(&device, 0);
    let model = SimpleCnnConfig::new()
        .with_dropout_conv(0.0)
        .with_dropout_fc(0.0)
        .init(&device)
        .expect("the default simple CNN is valid");
    let images = parity::fixed_data([8, 1, 28, 28]);
    strata_train::parity::compare_backends(&model, other, |m, device| {
        m.forward(Tensor::from_data(images.clone(), device))
    })
}
