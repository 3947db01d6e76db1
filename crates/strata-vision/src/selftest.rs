//! The vision models' part of `strata selftest`: a forward and a backward pass on two backends
//! with the same weights and inputs, compared ([`strata_train::parity`]).

use burn::nn::conv::Conv2dConfig;
use burn::prelude::*;
use strata_tensor::parity::{self, Gap};

use crate::models::{ResNetConfig, SimpleCnnConfig};
use crate::nn::Conv2d;

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

/// The simple CNN's first convolution alone (1 → 32 channels, 3×3) on 8 images of 28×28: where
/// a wrong convolution kernel shows without the rest of the network around it.
pub fn conv_1_to_32(reference: &Device, other: &Device) -> Vec<Gap> {
    convolution(reference, other, [8, 1, 28, 28], 32)
}

/// The simple CNN's second convolution alone (32 → 64 channels, 3×3) on 8 maps of 26×26.
pub fn conv_32_to_64(reference: &Device, other: &Device) -> Vec<Gap> {
    convolution(reference, other, [8, 32, 26, 26], 64)
}

fn convolution(reference: &Device, other: &Device, input: [usize; 4], out: usize) -> Vec<Gap> {
    let device = reference.clone().autodiff();
    strata_tensor::seed(&device, 0);
    let conv: Conv2d = Conv2dConfig::new([input[1], out], [3, 3])
        .init(&device)
        .into();
    let data = parity::fixed_data(input);
    strata_train::parity::compare_backends(&conv, other, |m, device| {
        m.forward(Tensor::from_data(data.clone(), device))
    })
}

/// ResNet-18 (10 classes, batch statistics in BatchNorm, as in training) on 2 fixed 64×64
/// colour images: every convolution, BatchNorm and the residual additions.
pub fn resnet18(reference: &Device, other: &Device) -> Vec<Gap> {
    let device = reference.clone().autodiff();
    strata_tensor::seed(&device, 0);
    let model = ResNetConfig::resnet18()
        .with_num_classes(10)
        .init(&device)
        .expect("ResNet-18 is valid");
    let images = parity::fixed_data([2, 3, 64, 64]);
    strata_train::parity::compare_backends(&model, other, |m, device| {
        m.forward(Tensor::from_data(images.clone(), device))
    })
}
