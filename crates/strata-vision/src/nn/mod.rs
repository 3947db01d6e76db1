//! The operations under Strata's CNNs, with our own kernels and backward passes on flex:
//!
//! - [`batch_norm`](mod@batch_norm): Burn's `BatchNorm` module trained with our kernel, and the ReLU
//!   after it fused in when asked;
//! - [`conv`]: [`Conv2d`], the convolution layer of every CNN and ResNet (Burn's parameters,
//!   our GEMM-shaped kernel), with the ReLU that follows it fused in when asked;
//! - [`pool`]: max pooling over windows that do not overlap (LeNet's and the simple CNN's
//!   2×2), which Burn's `MaxPool2d` module keeps describing;
//! - [`dropout`](mod@dropout): dropout whose mask is a hash of the element's index and one seed drawn from
//!   Burn's generator, so it costs no random tensor and the backward pass stores no mask.
//!
//! On the other backends, and for configurations the kernels do not cover, each falls back to
//! Burn's own operation (the functions say where), except the convolution on CubeCL's GPUs,
//! which is [`im2col`] and a matrix product there. [`flex`] holds the kernels on flex; `cube` (with
//! the `cube` feature) the im2col matrix, its adjoint and BatchNorm on CubeCL's GPU runtimes.

pub mod batch_norm;
pub mod conv;
#[cfg(feature = "cube")]
pub mod cube;
pub mod dropout;
#[cfg(feature = "flex")]
pub mod flex;
pub mod im2col;
pub mod pool;

pub use batch_norm::{batch_norm, batch_norm_config};
pub use conv::{Conv2d, Geometry, conv2d};
pub use dropout::dropout;
pub use pool::max_pool;
