//! The kernels of [`crate::nn`] on flex, each a Burn backend extension (`#[backend_extension]`)
//! whose `Autodiff` implementation records one node with its own backward pass.

pub mod conv;
pub mod dropout;
pub mod pool;

use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::DType;
use strata_tensor::simd::{Vectorized, vectorized};

/// Whether our kernels run for `x`: on flex, in f32.
pub fn available<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && x.device().clone().inner() == Device::flex()
}

/// `t` itself when it is contiguous, else a contiguous copy.
fn contiguous(t: &FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

/// The numbers of a contiguous f32 tensor (see [`contiguous`]).
fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("an f32 tensor, made contiguous")
}

/// A flex tensor made from `values` without copying them.
fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// The 4 dimensions of `t`.
fn dims4(t: &FlexTensor) -> [usize; 4] {
    use burn::backend::TensorMetadata;
    t.shape()
        .to_vec()
        .try_into()
        .unwrap_or_else(|_| panic!("expected a 4-D tensor, got {:?}", t.shape()))
}
