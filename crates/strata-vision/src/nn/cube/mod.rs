//! Kernels of our own for CubeCL's GPU runtimes (`cuda`, `wgpu`), where Burn writes these
//! operations as chains of tensor operations, one kernel launch each:
//!
//! - [`columns`]: the im2col matrix of [`im2col::conv2d`](super::im2col::conv2d) and its
//!   adjoint, one launch each;
//! - [`batch_norm`](mod@batch_norm): BatchNorm, and the ReLU after it, in training and in
//!   evaluation: three launches forward and three backward where Burn takes about two dozen.
//!
//! Each is a Burn backend extension (`#[backend_extension]`) on `Cube` with an `Autodiff`
//! implementation of our own; with the `fusion` feature they run as opaque operations of Burn's
//! fusion graph.

pub mod batch_norm;
pub mod columns;

pub use columns::{ColumnOps, col2im, columns_shape, im2col, input_shape};

use burn::tensor::{DType, Shape};
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::CubeCount;
use cubecl::{CubeDim, calculate_cube_count_elemwise};

/// The cube count and cube size that give one thread to each of `n` items on `t`'s device.
fn grid(t: &CubeTensor, n: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new(&t.client, n);
    (calculate_cube_count_elemwise(&t.client, n, dim), dim)
}

/// A new contiguous tensor of `shape` and `dtype` on `t`'s device, its values unset.
fn empty(t: &CubeTensor, shape: impl Into<Shape>, dtype: DType) -> CubeTensor {
    empty_device_contiguous_dtype(t.client.clone(), t.device.clone(), shape.into(), dtype)
}

/// The CubeCL GPU devices compiled in that can be opened here.
#[cfg(test)]
fn devices() -> Vec<burn::prelude::Device> {
    strata_tensor::BackendKind::compiled()
        .into_iter()
        .filter_map(|kind| kind.device(None).ok())
        .filter(strata_tensor::is_cubecl_gpu)
        .collect()
}
