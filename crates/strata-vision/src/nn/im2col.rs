//! The convolution as matrix products over an im2col matrix, written with Burn's tensor
//! operations, so that it runs, and is differentiated, on every backend. [`conv2d`](super::conv2d)
//! takes it on CubeCL's GPU runtimes (`cuda`, `wgpu`); CubeCL's CPU runtime keeps Burn's
//! convolution, since its matrix product is far slower than its direct convolution kernel (one
//! weight-gradient product of the simple CNN took over a minute there).
//!
//! On those GPUs, Burn 0.22 without autotuning runs a direct convolution kernel, whose weight gradient
//! is a convolution with the output gradient as its kernel: one thread per weight, each summing
//! `batch · oh · ow` products in turn (about a second per ResNet-18 training step on an H200,
//! against 13 ms for PyTorch). With autotuning, one of the weight-gradient kernels it picks gives
//! a wrong gradient for a single input channel. Here the output and both gradients are each one
//! batched product on the device's matrix kernels:
//!
//! - forward: the batch cut into `pieces` runs of images (see [`pieces`]), and for each
//!   `cols = im2col(x)` `[in · kh · kw, images · oh · ow]` ([`columns`]: one kernel of ours on
//!   CubeCL's GPU runtimes, elsewhere each tap one strided slice of the padded input, channels
//!   first), then `y = W · cols`: one batched product, per group;
//! - backward (Burn's autodiff of the same operations): `dW = Σ dY · colsᵀ`, the pieces' products
//!   summed (the weight is broadcast over them), and `dx = col2im(Wᵀ · dY)`, where col2im adds
//!   each tap's columns back into the input (our kernel's adjoint, one more kernel; or Burn's
//!   adjoints of the slices).
//!
//! The weight gradient contracts over every position of the batch, and its output is only
//! `out × in · kh · kw`: as one product it would leave most of a GPU idle (a few tiles of
//! output, each a long loop). Cut into pieces, it is as many independent products, and one
//! small sum (the split-K of Burn's own `wgrad_im2col`).
//!
//! The price is the im2col matrix, `kh · kw` times the input (462 MB for a 3×3 layer of
//! ResNet-18's first stage at batch 64). It is built for at most [`MAX_COLUMNS_BYTES`] at a
//! time: a larger batch is cut into runs of images convolved one after the other (the largest
//! buffer some wgpu devices can bind, llvmpipe's among them, is 128 MiB), and an image whose
//! matrix alone is larger goes to Burn's convolution.

use burn::prelude::*;
use burn::tensor::Slice;
use burn::tensor::ops::{ConvOptions, PadMode};

use super::Geometry;

/// The largest im2col matrix [`conv2d`] builds at once, in bytes: 128 MiB, WebGPU's default
/// `maxStorageBufferBindingSize`, and the largest buffer llvmpipe's Vulkan (and so wgpu on it)
/// can bind.
pub const MAX_COLUMNS_BYTES: usize = 128 << 20;

/// `conv2d(x, weight) + bias`: `x` `[batch, in, h, w]`, `weight` `[out, in / groups, kh, kw]`,
/// `bias` `[out]`, as im2col and one matrix product per group (see the module's documentation),
/// with im2col matrices of at most [`MAX_COLUMNS_BYTES`]. The same numbers as Burn's `conv2d`,
/// up to the order of the sums.
///
/// # Panics
/// With the message of [`Geometry::new`] when the shapes and options do not fit together.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: &ConvOptions<2>,
) -> Tensor<4> {
    conv2d_within(x, weight, bias, options, MAX_COLUMNS_BYTES)
}

/// [`conv2d`] with im2col matrices of at most `max_bytes`: the batch is cut into as few equal
/// runs of images as that allows (the last one shorter where the batch does not divide), each
/// convolved apart, and the outputs joined; where a single image's matrix is larger, Burn's
/// `conv2d` does the whole batch.
///
/// # Panics
/// With the message of [`Geometry::new`] when the shapes and options do not fit together.
pub fn conv2d_within(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: &ConvOptions<2>,
    max_bytes: usize,
) -> Tensor<4> {
    let g =
        Geometry::new(x.dims(), weight.dims(), options).unwrap_or_else(|e| panic!("conv2d: {e}"));
    let per_image = image_columns_bytes(&g, x.dtype().size());
    if per_image > max_bytes {
        return burn::tensor::module::conv2d(x, weight, bias, options.clone());
    }
    let fit = max_bytes / per_image.max(1);
    if fit >= g.batch {
        return columns_conv(x, weight, bias, options, &g);
    }
    let runs = g.batch.div_ceil(fit);
    let images = g.batch.div_ceil(runs);
    let outputs = (0..g.batch)
        .step_by(images)
        .map(|start| {
            let end = (start + images).min(g.batch);
            let run = Geometry {
                batch: end - start,
                ..g
            };
            columns_conv(
                x.clone().slice(start..end),
                weight.clone(),
                bias.clone(),
                options,
                &run,
            )
        })
        .collect();
    Tensor::cat(outputs, 0)
}

/// The bytes of one image's im2col matrix (`[in · kh · kw, oh · ow]`) for the convolution `g`,
/// in a float type of `float_bytes` bytes.
pub fn image_columns_bytes(g: &Geometry, float_bytes: usize) -> usize {
    g.groups * g.k() * g.spatial() * float_bytes
}

/// [`conv2d`] of the whole batch `x`, of geometry `g`, with one im2col matrix.
fn columns_conv(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: &ConvOptions<2>,
    g: &Geometry,
) -> Tensor<4> {
    let pieces = pieces(g.batch, g.spatial());
    let images = g.batch / pieces;
    // [pieces, in · taps, images · oh · ow] → [pieces, groups, in / groups · taps, images · oh · ow].
    let columns =
        columns(x, g, options, pieces).reshape([pieces, g.groups, g.k(), images * g.spatial()]);
    let weight: Tensor<4> = weight.reshape([1, g.groups, g.c_out / g.groups, g.k()]);
    // [pieces, groups, out / groups, images · oh · ow] → [batch, out, oh, ow].
    let y = weight
        .matmul(columns)
        .reshape([pieces, g.c_out, images, g.oh, g.ow])
        .permute([0, 2, 1, 3, 4])
        .reshape([g.batch, g.c_out, g.oh, g.ow]);
    match bias {
        Some(bias) => y + bias.reshape([1, g.c_out, 1, 1]),
        None => y,
    }
}

/// The im2col matrix of `x` for the convolution `g`, cut into `pieces` runs of images:
/// `[pieces, in · kh · kw, images · oh · ow]`, rows channel-major then tap, columns image-major
/// (on CubeCL's GPU runtimes one kernel of `nn::cube`, which needs the `cube` feature; elsewhere
/// [`sliced_columns`]).
pub fn columns(x: Tensor<4>, g: &Geometry, options: &ConvOptions<2>, pieces: usize) -> Tensor<3> {
    #[cfg(feature = "cube")]
    if strata_tensor::is_cubecl_gpu(&x.device()) {
        return super::cube::im2col(x, g, pieces);
    }
    sliced_columns(x, g, options, pieces)
}

/// [`columns`] in Burn's tensor operations: the input padded, one strided slice of it per tap,
/// and the slices stacked (and in the backward pass, Burn's adjoints of those: a slice
/// assignment and an addition per tap).
pub fn sliced_columns(
    x: Tensor<4>,
    g: &Geometry,
    options: &ConvOptions<2>,
    pieces: usize,
) -> Tensor<3> {
    let taps = g.kernel[0] * g.kernel[1];
    let images = g.batch / pieces;
    // [pieces, in, images, h + pads, w + pads]: channels before images, so that each piece's
    // columns come out as [in · taps, images · oh · ow] with no copy but the stack.
    let x = x
        .reshape([pieces, images, g.c_in, g.h, g.w])
        .permute([0, 2, 1, 3, 4]);
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
    let columns: Vec<Tensor<5>> = (0..taps)
        .map(|tap| {
            let (i, j) = (tap / g.kernel[1], tap % g.kernel[1]);
            x.clone().slice([
                Slice::full(),
                Slice::full(),
                Slice::full(),
                span(i, 0, g.oh),
                span(j, 1, g.ow),
            ])
        })
        .collect();
    // [pieces, in, taps, images, oh, ow] → [pieces, in · taps, images · oh · ow].
    let columns: Tensor<6> = Tensor::stack(columns, 2);
    columns.reshape([pieces, g.c_in * taps, images * g.spatial()])
}

/// Positions per piece below which [`pieces`] stops cutting the batch: shorter products would
/// not pay for their launch (Burn's `wgrad_im2col` cuts at the same length).
pub const MIN_PIECE_POSITIONS: usize = 2048;

/// The most pieces, so that summing the weight gradient's pieces stays small next to the
/// products that made them.
pub const MAX_PIECES: usize = 64;

/// How many equal runs of images to cut a batch of `batch` images of `spatial` output positions
/// into: the most, up to [`MAX_PIECES`], that divides the batch and leaves each run at least
/// [`MIN_PIECE_POSITIONS`] positions (1 when none does).
pub fn pieces(batch: usize, spatial: usize) -> usize {
    (1..=batch.min(MAX_PIECES))
        .rev()
        .find(|&p| batch.is_multiple_of(p) && batch / p * spatial >= MIN_PIECE_POSITIONS)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_cut_into_runs_of_at_least_2048_positions() {
        // ResNet-18 at batch 64: layer1 (56×56), layer2 (28×28), layer3 (14×14), layer4 (7×7).
        assert_eq!(pieces(64, 56 * 56), 64);
        assert_eq!(pieces(64, 28 * 28), 16);
        assert_eq!(pieces(64, 14 * 14), 4);
        assert_eq!(pieces(64, 7 * 7), 1);
        // The simple CNN at batch 64 (26×26, then 11×11 after pooling).
        assert_eq!(pieces(64, 26 * 26), 16);
        // A prime batch is one piece; a small one stays whole.
        assert_eq!(pieces(7, 4096), 7);
        assert_eq!(pieces(7, 1000), 1);
        assert_eq!(pieces(2, 100), 1);
        assert_eq!(pieces(0, 100), 1);
    }
}
