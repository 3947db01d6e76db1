//! Building blocks shared by the CNNs: a configurable 2-D pooling layer and output-size arithmetic.

use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::nn::Conv2d;

/// Which pooling a CNN uses after its convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolKind {
    /// Maximum over each window.
    Max,
    /// Mean over each window (LeNet's original "subsampling").
    Avg,
}

strata_tensor::named_enum!(PoolKind, "--pool", { Max => "max", Avg => "avg" });

/// A square 2-D pooling layer, max or average.
#[derive(Module, Debug)]
pub enum Pool2d {
    /// Max pooling.
    Max(MaxPool2d),
    /// Average pooling.
    Avg(AvgPool2d),
}

impl Pool2d {
    /// A `size × size` pooling with stride `size` (non-overlapping windows).
    pub fn new(kind: PoolKind, size: usize) -> Self {
        match kind {
            PoolKind::Max => Self::Max(
                MaxPool2dConfig::new([size, size])
                    .with_strides([size, size])
                    .init(),
            ),
            PoolKind::Avg => Self::Avg(
                AvgPool2dConfig::new([size, size])
                    .with_strides([size, size])
                    .init(),
            ),
        }
    }

    /// `self.forward(relu(conv(x)))`, with max pooling fused into the convolution where
    /// [`Conv2d::forward_relu_pool`] can.
    pub fn conv_relu(&self, conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Max(p) => conv.forward_relu_pool(x, p),
            Self::Avg(p) => p.forward(conv.forward_relu(x)),
        }
    }

    /// Pools `[batch, channels, h, w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Max(p) => crate::nn::max_pool(p, x),
            Self::Avg(p) => p.forward(x),
        }
    }
}

/// Side length after a convolution: `(size + 2·padding − kernel) / stride + 1`, or `None` when
/// the kernel does not fit.
pub fn conv_out(size: usize, kernel: usize, stride: usize, padding: usize) -> Option<usize> {
    let padded = size + 2 * padding;
    (stride > 0 && padded >= kernel).then(|| (padded - kernel) / stride + 1)
}

/// The error of a configuration whose image is too small for its kernels, strides and pooling.
pub fn too_small(
    model: &str,
    image: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    pool: usize,
) -> super::ModelError {
    super::ModelError::Config(format!(
        "{model}: a {image}×{image} image is too small for kernel {kernel}, stride {stride}, padding {padding} and pooling {pool}"
    ))
}

/// Side length after a `window × window` pooling with stride `window` (floor, as PyTorch).
pub fn pool_out(size: usize, window: usize) -> Option<usize> {
    (window > 0 && size >= window).then(|| size / window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sizes_follow_pytorch() {
        assert_eq!(conv_out(28, 3, 1, 0), Some(26));
        assert_eq!(conv_out(28, 5, 1, 2), Some(28));
        assert_eq!(conv_out(28, 3, 2, 1), Some(14));
        assert_eq!(conv_out(2, 5, 1, 0), None);
        assert_eq!(pool_out(25, 2), Some(12));
        assert_eq!(pool_out(1, 2), None);
    }
}
