//! The kernels of [`crate::nn`] on flex, each a Burn backend extension (`#[backend_extension]`)
//! whose `Autodiff` implementation records one node with its own backward pass.

pub mod batch_norm;
pub mod conv;
pub mod dropout;
pub mod pool;
pub mod pool_window;
mod winograd;

use burn::backend::flex::FlexTensor;
pub use strata_tensor::flex::available;
use strata_tensor::flex::{contiguous, into_values, tensor, values};
use strata_tensor::simd::{Vectorized, vectorized};

/// The 4 dimensions of `t`.
fn dims4(t: &FlexTensor) -> [usize; 4] {
    use burn::backend::TensorMetadata;
    t.shape()
        .to_vec()
        .try_into()
        .unwrap_or_else(|_| panic!("expected a 4-D tensor, got {:?}", t.shape()))
}
