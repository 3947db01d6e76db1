//! The convolution as one matrix product over an im2col matrix, written with Burn's tensor
//! operations, so that it runs, and is differentiated, on every backend. [`conv2d`](super::conv2d)
//! takes it on CubeCL devices (`cuda`, `wgpu`, `cpu`).
//!
//! There, Burn 0.22 without autotuning runs a direct convolution kernel, whose weight gradient
//! is a convolution with the output gradient as its kernel: one thread per weight, each summing
//! `batch · oh · ow` products in turn (about a second per ResNet-18 training step on an H200,
//! against 13 ms for PyTorch). With autotuning, one of the weight-gradient kernels it picks gives
//! a wrong gradient for a single input channel. Here each of the three is one product on the
//! device's matrix kernels:
//!
//! - forward: `cols = im2col(x)` `[in · kh · kw, batch · oh · ow]` (each tap one strided slice of
//!   the padded input, channels first), then `y = W · cols`, one product per group;
//! - backward (Burn's autodiff of the same operations): `dW = dY · colsᵀ`, and
//!   `dx = col2im(Wᵀ · dY)`, where col2im adds each tap's slice back into the padded input.
//!
//! The price is the im2col matrix, `kh · kw` times the input (462 MB for a 3×3 layer of
//! ResNet-18's first stage at batch 64), which a GPU's memory holds easily.

use burn::prelude::*;
use burn::tensor::Slice;
use burn::tensor::ops::{ConvOptions, PadMode};

use super::Geometry;

/// `conv2d(x, weight) + bias`: `x` `[batch, in, h, w]`, `weight` `[out, in / groups, kh, kw]`,
/// `bias` `[out]`, as im2col and one matrix product per group (see the module's documentation).
/// The same numbers as Burn's `conv2d`, up to the order of the sums.
///
/// # Panics
/// With the message of [`Geometry::new`] when the shapes and options do not fit together.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: &ConvOptions<2>,
) -> Tensor<4> {
    let g =
        Geometry::new(x.dims(), weight.dims(), options).unwrap_or_else(|e| panic!("conv2d: {e}"));
    let taps = g.kernel[0] * g.kernel[1];
    let positions = g.batch * g.spatial();
    // [in, batch, h + pads, w + pads]: channels first, so that the columns come out as
    // [in · taps, batch · oh · ow] with no copy but the stack.
    let x = x.permute([1, 0, 2, 3]);
    let [(top, bottom), (left, right)] = options.padding;
    let x = if top + bottom + left + right > 0 {
        x.pad([(top, bottom), (left, right)], PadMode::Constant(0.0))
    } else {
        x
    };
    let span = |tap: usize, axis: usize, out: usize| {
        let start = tap * g.dilation[axis];
        let end = start + g.stride[axis] * (out - 1) + 1;
        Slice::new(start as isize, Some(end as isize), g.stride[axis] as isize)
    };
    let columns: Vec<Tensor<4>> = (0..taps)
        .map(|tap| {
            let (i, j) = (tap / g.kernel[1], tap % g.kernel[1]);
            x.clone().slice([
                Slice::full(),
                Slice::full(),
                span(i, 0, g.oh),
                span(j, 1, g.ow),
            ])
        })
        .collect();
    // [in, taps, batch, oh, ow] → [groups, in / groups · taps, batch · oh · ow].
    let columns: Tensor<5> = Tensor::stack(columns, 1);
    let columns: Tensor<3> = columns.reshape([g.groups, g.k(), positions]);
    let weight: Tensor<3> = weight.reshape([g.groups, g.c_out / g.groups, g.k()]);
    let y = weight
        .matmul(columns)
        .reshape([g.c_out, g.batch, g.oh, g.ow])
        .permute([1, 0, 2, 3]);
    match bias {
        Some(bias) => y + bias.reshape([1, g.c_out, 1, 1]),
        None => y,
    }
}
