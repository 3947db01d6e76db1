//! The sequence models' part of `strata selftest`: a forward and a backward pass on two
//! backends with the same weights and inputs, compared ([`strata_train::parity`]).

use burn::prelude::*;
use strata_tensor::parity::{self, Gap};

use crate::recurrent::{Cell, RecurrentConfig};

/// A two-layer bidirectional LSTM (16 inputs, 32 hidden) over 4 sequences of 12 steps: gaps
/// in the outputs, the loss and every gradient.
pub fn lstm(reference: &Device, other: &Device) -> Vec<Gap> {
    recurrent(reference, other, Cell::Lstm)
}

/// The same with GRU cells.
pub fn gru(reference: &Device, other: &Device) -> Vec<Gap> {
    recurrent(reference, other, Cell::Gru)
}

fn recurrent(reference: &Device, other: &Device, cell: Cell) -> Vec<Gap> {
    let device = reference.clone().autodiff();
    strata_tensor::seed(&device, 0);
    let model = RecurrentConfig::new(cell, 16, 32)
        .with_num_layers(2)
        .with_bidirectional(true)
        .init(&device);
    let steps = parity::fixed_data([12, 4, 16]);
    strata_train::parity::compare_backends(&model, other, |m, device| {
        m.forward(Tensor::from_data(steps.clone(), device), None, None)
            .0
    })
}
