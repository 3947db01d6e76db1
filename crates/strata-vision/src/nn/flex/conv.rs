//! The convolution kernel on flex, as a Burn backend extension with its own backward pass.
//!
//! Everything works one image at a time, images spread over the threads, so that an image's
//! im2col matrix (`[in · kh · kw, oh · ow]`, 648 KiB for the second layer of the simple CNN)
//! is written and read while it is still in the core's cache; where it would not stay in the L2
//! cache and the kernels are small (a ResNet's first layers, 7 MiB an image), it is built in
//! blocks of output rows (`row_blocks`):
//!
//! - forward: `cols = im2col(x_b)`, `y_b = W · cols` per group (the `gemm` crate's product
//!   through `strata_tensor::products`, written straight into the output), then bias and ReLU
//!   in place; a 3×3 kernel with stride 1, one group and
//!   at least 16 channels in and out, without pooling, goes through Winograd's minimal
//!   filtering instead (`winograd`: F(4×4, 3×3) or F(2×2, 3×3) by the output's size), as do the input gradient of such a layer and, where no ReLU
//!   follows it inside the operation, its weight gradient;
//! - backward: the ReLU's mask applied to `dY_b` (without one, `dY_b` is read where it lies),
//!   then `dWᵀ += cols · dY_bᵀ` (one GEMM shaped `[in·kh·kw, oh·ow] × [oh·ow, out]`, accumulated
//!   in place over a fixed run of images; the runs' sums are added in order at the end, so that
//!   a seed always gives the same numbers, and transposed back once), the bias gradient as row
//!   sums of `dY_b`, and `dx_b = col2im(Wᵀ · dY_b)`. Besides Winograd's layers, two shapes go
//!   another way: below 256 output positions an image (a ResNet's deep layers), the weight
//!   gradient is one product over the batch (`weight_grad_whole_batch`); a wide stride-1 layer
//!   takes its input gradient as a convolution of `dY` with the kernels turned by 180°
//!   (`input_grad_by_conv`).
//!
//! The im2col matrix, the masked `dY_b` and `Wᵀ · dY_b` live in per-thread buffers, so no image
//! allocates them again.
//!   Only the gradients of inputs that need one are computed (not the images' of a first layer).
//!
//! The `Autodiff` implementation records one node for the whole operation.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;
use rayon::prelude::*;
use strata_tensor::products::{Mat, MatMut, matmul};

use super::pool::{Unpool, max_plane};
use super::winograd;
use super::{Vectorized, contiguous, dims4, every_other, take, tensor, values, vectorized};
use crate::nn::Geometry;

/// The convolution as one operation.
#[backend_extension(Flex, Autodiff)]
pub trait ConvOps: Backend {
    /// `conv2d(x, weight) + bias`, then `max(·, 0)` when `relu` is set, then, with `pool`, the
    /// maximum of each non-overlapping `pool[0] × pool[1]` window (only after a ReLU). `x`
    /// `[batch, in, h, w]`, `weight` `[out, in / groups, kh, kw]`, `bias` `[out]`.
    fn conv2d_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
        relu: bool,
        pool: Option<[usize; 2]>,
    ) -> FloatTensor<Self>;
}

impl ConvOps for Flex {
    fn conv2d_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
        relu: bool,
        pool: Option<[usize; 2]>,
    ) -> FloatTensor<Self> {
        forward(&x, &weight, &bias, &options, relu, pool).0
    }
}

/// [`ConvOps::conv2d_fused`] on Burn tensors; a missing bias is zeros that take no gradient.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
    relu: bool,
    pool: Option<[usize; 2]>,
) -> Tensor<4> {
    assert!(relu || pool.is_none(), "the fused pooling follows a ReLU");
    let bias = bias.unwrap_or_else(|| Tensor::zeros([weight.dims()[0]], &weight.device()));
    let out = <burn::backend::Dispatch as ConvOps>::conv2d_fused(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        options,
        relu,
        pool,
    );
    Tensor::from_dispatch(out)
}

fn geometry(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> Geometry {
    geometry_of(dims4(x), dims4(weight), options)
}

fn geometry_of(x: [usize; 4], weight: [usize; 4], options: &ConvOptions<2>) -> Geometry {
    Geometry::new(x, weight, options).unwrap_or_else(|e| panic!("conv2d: {e}"))
}

/// The output, and with `pool` the window each pooled output's maximum came from (tap
/// `i · pool[1] + j`, one byte per pooled output).
fn forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    options: &ConvOptions<2>,
    relu: bool,
    pool: Option<[usize; 2]>,
) -> (FlexTensor, Vec<u8>) {
    let g = geometry(x, weight, options);
    let x = contiguous(x);
    let xs = values(&x);
    let weight = contiguous(weight);
    let bias = contiguous(bias);
    let bias = values(&bias);
    // A 3×3 convolution with stride 1 and enough channels: Winograd's F(2×2, 3×3).
    if pool.is_none() && winograd::applies(&g) {
        let u = winograd::kernels(values(&weight), &g, false);
        let y = winograd::convolve(xs, &u, &g, bias, relu);
        return (tensor(y, [g.batch, g.c_out, g.oh, g.ow]), Vec::new());
    }
    let [ph, pw] = pool.unwrap_or([1, 1]);
    let (oh, ow) = (g.oh / ph, g.ow / pw);
    let (x_len, y_len) = (g.c_in * g.h * g.w, g.c_out * oh * ow);
    let mut out = vec![0f32; g.batch * y_len];
    let mut codes = vec![0u8; if pool.is_some() { g.batch * y_len } else { 0 }];
    let code_chunks: Vec<&mut [u8]> = match pool {
        Some(_) => codes.chunks_mut(y_len.max(1)).collect(),
        None => (0..g.batch).map(|_| &mut [][..]).collect(),
    };
    let w = Mat::new(values(&weight), g.c_out, g.k());
    let rows = g.c_out / g.groups;
    out.par_chunks_mut(y_len.max(1))
        .zip(xs.par_chunks(x_len.max(1)))
        .zip(code_chunks)
        .for_each(|((y, x), codes)| {
            if pool.is_none() {
                // The products block by block straight into the output, then bias and ReLU in
                // place.
                for block in row_blocks(&g) {
                    let (first, len) = (block.start * g.ow, block.len() * g.ow);
                    with_cols(x, &g, block, |cols| {
                        for group in 0..g.groups {
                            let y_g = &mut y[group * rows * g.spatial()..][..rows * g.spatial()];
                            matmul(
                                MatMut::new(y_g, rows, g.spatial()).cols(first..first + len),
                                w.row_group(group, rows),
                                cols.row_group(group, g.k()),
                                false,
                            );
                        }
                    });
                }
                // No pass for a zero bias without a ReLU (a convolution before a BatchNorm, or
                // an input gradient).
                if relu || bias.iter().any(|&b| b != 0.0) {
                    vectorized(Epilogue { bias, relu, out: y });
                }
                return;
            }
            with_cols(x, &g, 0..g.oh, |cols| {
                for group in 0..g.groups {
                    let b_g = &bias[group * rows..][..rows];
                    let block = group * rows * oh * ow..(group + 1) * rows * oh * ow;
                    let window = pool.expect("pooling");
                    // The product, bias and ReLU in a scratch buffer, then each channel's windows.
                    let mut prod = take(&PRODUCT, rows * g.spatial());
                    matmul(
                        MatMut::new(&mut prod, rows, g.spatial()),
                        w.row_group(group, rows),
                        cols.row_group(group, g.k()),
                        false,
                    );
                    vectorized(Epilogue {
                        bias: b_g,
                        relu,
                        out: &mut prod,
                    });
                    let planes = prod.chunks_exact(g.spatial().max(1));
                    let outs = y[block.clone()].chunks_exact_mut((oh * ow).max(1));
                    for ((plane, out), codes) in planes
                        .zip(outs)
                        .zip(codes[block].chunks_exact_mut((oh * ow).max(1)))
                    {
                        max_plane(plane, g.ow, window, out, codes);
                    }
                }
            })
        });
    (tensor(out, [g.batch, g.c_out, oh, ow]), codes)
}

/// Which of `[x, weight, bias]` need a gradient.
type Needed = [bool; 3];

/// What followed the convolution inside the operation, as the backward pass needs it.
#[derive(Debug, Clone)]
enum After {
    /// Nothing (bias only).
    Nothing,
    /// A ReLU, with the operation's output (its mask).
    Relu(FlexTensor),
    /// A ReLU and max pooling over `window`, with the pooled output and each maximum's tap.
    ReluPool {
        pooled: FlexTensor,
        codes: std::sync::Arc<Vec<u8>>,
        window: [usize; 2],
    },
}

/// The gradients of `x`, `weight` and `bias` (those asked for) from the output's gradient
/// `dy`, through what followed the convolution (`after`).
fn backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    after: &After,
    dy: &FlexTensor,
    options: &ConvOptions<2>,
    needed: Needed,
) -> [Option<FlexTensor>; 3] {
    let g = geometry(x, weight, options);
    let x = contiguous(x);
    let xs = values(&x);
    let dy = contiguous(dy);
    let dy_len = values(&dy).len() / g.batch.max(1);
    let weight = contiguous(weight);
    let w = Mat::new(values(&weight), g.c_out, g.k());
    let (x_len, y_len) = (g.c_in * g.h * g.w, g.c_out * g.spatial());
    let rows = g.c_out / g.groups;
    let [need_dx, need_dw, need_db] = needed;
    // Where the output's gradient reaches the convolution unchanged and the input gradient is
    // itself a convolution, that convolution after the loop; else `Wᵀ · dY` and col2im per image.
    let dx_by_conv = (need_dx && matches!(after, After::Nothing))
        .then(|| input_grad_padding(&g))
        .flatten();
    let per_image_dx = need_dx && dx_by_conv.is_none();
    let mut dx = if per_image_dx {
        vec![0f32; g.batch * x_len]
    } else {
        Vec::new()
    };
    let dx_chunks: Vec<&mut [f32]> = if per_image_dx {
        dx.chunks_mut(x_len.max(1)).collect()
    } else {
        (0..g.batch).map(|_| &mut [][..]).collect()
    };
    // Where an image's weight-gradient product would be short (fewer than 256 output positions,
    // its inner dimension) and larger than its inputs (the deep layers of a ResNet: 7×7
    // outputs against 4,608 kernel rows), one product over the whole batch instead, after the
    // loop. Above 256 positions (28×28 against 1,152 rows) the images' own products are faster.
    // Where Winograd's transforms compute the convolution, they compute its weight gradient too,
    // over the whole batch after the loop.
    let after_loop_dw = need_dw && matches!(after, After::Nothing);
    let winograd_dw = after_loop_dw && winograd::applies(&g);
    let whole_batch_dw = after_loop_dw && !winograd_dw && g.spatial() < 256 && g.spatial() < g.k();
    let per_image_dw = need_dw && !whole_batch_dw && !winograd_dw;
    let (dw_len, db_len) = (
        if per_image_dw { g.c_out * g.k() } else { 0 },
        if need_db { g.c_out } else { 0 },
    );
    let zeros = || (vec![0f32; dw_len], vec![0f32; db_len]);
    let image = |(mut dw, mut db): (Vec<f32>, Vec<f32>), (b, dx_b): (usize, &mut [f32])| {
        let d = &values(&dy)[b * dy_len..][..dy_len];
        // The gradient at the convolution's output, `[out, oh · ow]`.
        let masked = match after {
            After::Nothing => None,
            // The ReLU's derivative: the gradient passes where the output is positive.
            After::Relu(y) => {
                let mut masked = take(&MASKED, y_len);
                vectorized(Mask {
                    dy: d,
                    y: &values(y)[b * y_len..][..y_len],
                    out: &mut masked,
                });
                Some(masked)
            }
            After::ReluPool {
                pooled,
                codes,
                window,
            } => {
                let mut unpooled = take(&MASKED, y_len);
                vectorized(Unpool {
                    dy: d,
                    gate: Some(&values(pooled)[b * dy_len..][..dy_len]),
                    codes: &codes[b * dy_len..][..dy_len],
                    window: *window,
                    size: [g.oh, g.ow],
                    out: &mut unpooled,
                });
                Some(unpooled)
            }
        };
        if need_db {
            vectorized(RowSums {
                rows: masked.as_deref().unwrap_or(d),
                sums: &mut db,
            });
        }
        // `[out, oh · ow]`: the masked gradient, in this thread's buffer, or `dy`'s own.
        let dy_b = Mat::new(masked.as_deref().unwrap_or(d), g.c_out, g.spatial());
        if per_image_dw {
            for block in row_blocks(&g) {
                let (first, len) = (block.start * g.ow, block.len() * g.ow);
                with_cols(&xs[b * x_len..][..x_len], &g, block, |cols| {
                    for group in 0..g.groups {
                        let dy_g = dy_b.row_group(group, rows);
                        // Accumulated in place, transposed: dWᵀ += cols · dYᵀ. The product
                        // runs these shapes 1.1 to 1.6 times faster in this order than as
                        // dY · colsᵀ (measured: 480 against 293 GFLOP/s for a ResNet's first
                        // stage), and only the small dW is transposed back at the end.
                        let acc = &mut dw[group * rows * g.k()..][..rows * g.k()];
                        matmul(
                            MatMut::new(acc, g.k(), rows),
                            cols.row_group(group, g.k()),
                            dy_g.cols(first..first + len).t(),
                            true,
                        );
                    }
                });
            }
        }
        if per_image_dx {
            let mut dcols = take(&DCOLS, g.k() * g.spatial());
            for group in 0..g.groups {
                // `Wᵀ · dY`, then scattered into the image's gradient.
                matmul(
                    MatMut::new(&mut dcols, g.k(), g.spatial()),
                    w.row_group(group, rows).t(),
                    dy_b.row_group(group, rows),
                    false,
                );
                col2im(&dcols, &g, group * (g.c_in / g.groups), dx_b);
            }
        }
        (dw, db)
    };
    // The images in a fixed number of runs of consecutive images, each summing its weight and
    // bias gradients, then the runs' sums added in order: the same numbers in the same order
    // on every run (rayon's `fold` would split the batch wherever threads steal work).
    let runs = 4 * rayon::current_num_threads();
    let per_run = g.batch.div_ceil(runs).max(1);
    let sums: Vec<(Vec<f32>, Vec<f32>)> = dx_chunks
        .into_par_iter()
        .enumerate()
        .chunks(per_run)
        .map(|images| images.into_iter().fold(zeros(), image))
        .collect();
    let (dw, db) = sums
        .into_iter()
        .reduce(|(mut dw, mut db), (dw2, db2)| {
            for (a, b) in dw.iter_mut().zip(dw2).chain(db.iter_mut().zip(db2)) {
                *a += b;
            }
            (dw, db)
        })
        .unwrap_or_else(zeros);
    let [kh, kw] = g.kernel;
    let dw_shape = [g.c_out, g.c_in / g.groups, kh, kw];
    let dw = need_dw.then(|| {
        if winograd_dw {
            tensor(winograd::weight_grad(xs, values(&dy), &g), dw_shape)
        } else if whole_batch_dw {
            tensor(weight_grad_whole_batch(xs, &dy, &g), dw_shape)
        } else {
            // Each group's gradient was summed transposed, `[k, rows]`.
            tensor(dw, [g.groups, g.k(), rows])
                .permute(&[0, 2, 1])
                .to_contiguous()
                .reshape(dw_shape.into())
        }
    });
    let dx = if let Some(padding) = dx_by_conv {
        Some(input_grad_by_conv(&dy, &weight, &g, padding))
    } else {
        need_dx.then(|| tensor(dx, [g.batch, g.c_in, g.h, g.w]))
    };
    [dx, dw, need_db.then(|| tensor(db, [g.c_out]))]
}

/// The `(begin, end)` padding of the convolution that gives this convolution's input gradient
/// (see [`input_grad_by_conv`]), where that is the better way to compute it: with stride 1, one
/// group, padding of at most `dilation · (k − 1)` on each side, and either at least as many
/// output positions as kernel rows (where `Wᵀ · dY` would be a large matrix; below that, as in
/// a ResNet's deeper layers, it is the cheaper way) or a convolution that Winograd's transforms
/// compute (`winograd::applies`), at any size.
fn input_grad_padding(g: &Geometry) -> Option<[(usize, usize); 2]> {
    // Through Winograd's transforms (see `winograd`), the convolution is the cheaper way at
    // every size.
    if g.stride != [1, 1] || g.groups != 1 || (g.spatial() < g.k() && !winograd::applies(g)) {
        return None;
    }
    let side = |d: usize, size: usize, out: usize| {
        let span = g.dilation[d] * (g.kernel[d] - 1);
        // At stride 1, `out = size + begin + end − span`.
        let end = (out + span).checked_sub(size + g.pad[d])?;
        Some((span.checked_sub(g.pad[d])?, span.checked_sub(end)?))
    };
    Some([side(0, g.h, g.oh)?, side(1, g.w, g.ow)?])
}

/// The input gradient of a stride-1 convolution as a convolution: of the output's gradient
/// `grad` with each kernel turned by 180° and the input and output channels swapped, padded
/// by `padding` (`dilation · (k − 1)` less the convolution's own on each side): through
/// Winograd's transforms where they apply (the turned kernels transformed straight from
/// `weight`), else through [`forward`], one product per image written into the gradient, where
/// `Wᵀ · dY` would write a matrix `kh · kw` times larger for [`col2im`] to scatter-add.
fn input_grad_by_conv(
    grad: &FlexTensor,
    weight: &FlexTensor,
    g: &Geometry,
    padding: [(usize, usize); 2],
) -> FlexTensor {
    let [kh, kw] = g.kernel;
    let options = ConvOptions::new_with_padding([1, 1], padding, g.dilation, 1);
    let turned_g = geometry_of(dims4(grad), [g.c_in, g.c_out, kh, kw], &options);
    if winograd::applies(&turned_g) {
        // The turned kernels straight into Winograd's form.
        let u = winograd::kernels(values(weight), g, true);
        let grad = contiguous(grad);
        let dx = winograd::convolve(values(&grad), &u, &turned_g, &vec![0.0; g.c_in], false);
        return tensor(dx, [g.batch, g.c_in, g.h, g.w]);
    }
    let taps = kh * kw;
    let mut turned = vec![0f32; g.c_out * g.c_in * taps];
    for (o, kernels) in values(weight)
        .chunks_exact((g.c_in * taps).max(1))
        .enumerate()
    {
        for (c, kernel) in kernels.chunks_exact(taps.max(1)).enumerate() {
            let dst = &mut turned[(c * g.c_out + o) * taps..][..taps];
            // The taps in reverse order: the kernel flipped in both directions.
            for (d, s) in dst.iter_mut().zip(kernel.iter().rev()) {
                *d = *s;
            }
        }
    }
    let turned = tensor(turned, [g.c_in, g.c_out, kh, kw]);
    let bias = tensor(vec![0.0; g.c_in], [g.c_in]);
    forward(grad, &turned, &bias, &options, false, None).0
}

/// The weight gradient as one product per group over the whole batch:
/// `dW = dY[out, batch · oh · ow] · cols[batch · oh · ow, in · kh · kw]`, with the im2col
/// matrices of all images side by side (`[in · kh · kw, batch, oh · ow]`) and `dy` (`[batch, out,
/// oh · ow]`) made `[out, batch, oh · ow]`.
fn weight_grad_whole_batch(xs: &[f32], dy: &FlexTensor, g: &Geometry) -> Vec<f32> {
    let (sp, x_len) = (g.spatial(), g.c_in * g.h * g.w);
    let rows = g.c_in * g.kernel[0] * g.kernel[1];
    let mut cols = vec![0f32; rows * g.batch * sp];
    cols.par_chunks_mut((g.batch * sp).max(1))
        .enumerate()
        .for_each(|(r, row)| {
            for (b, dst) in row.chunks_exact_mut(sp.max(1)).enumerate() {
                vectorized(Im2colRow {
                    x: &xs[b * x_len..][..x_len],
                    g,
                    row: r,
                    dst,
                });
            }
        });
    let cols = Mat::new(&cols, rows, g.batch * sp);
    let dy = dy
        .reshape([g.batch, g.c_out, sp].into())
        .permute(&[1, 0, 2])
        .to_contiguous();
    let dy = Mat::new(values(&dy), g.c_out, g.batch * sp);
    let per_group = g.c_out / g.groups;
    let mut dw = vec![0f32; g.c_out * g.k()];
    for (group, dw_g) in dw.chunks_exact_mut((per_group * g.k()).max(1)).enumerate() {
        matmul(
            MatMut::new(dw_g, per_group, g.k()),
            dy.row_group(group, per_group),
            cols.row_group(group, g.k()).t(),
            false,
        );
    }
    dw
}

/// Row `row` (kernel tap `(c, i, j)`) of one image's im2col matrix into `dst` (`oh · ow`).
struct Im2colRow<'a> {
    x: &'a [f32],
    g: &'a Geometry,
    row: usize,
    dst: &'a mut [f32],
}

impl Vectorized for Im2colRow<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { x, g, row, dst } = self;
        let [kh, kw] = g.kernel;
        let (c, i, j) = (row / (kh * kw), row / kw % kh, row % kw);
        im2col_row(&x[c * g.h * g.w..][..g.h * g.w], g, i, j, 0..g.oh, dst);
    }
}

/// Where kernel tap `(i, j)` reads: the output columns `lo..hi` that fall inside the input,
/// the input column under output column `lo`, and for each output row its input row (`None`
/// in the padding, or when no column falls inside).
#[inline(always)]
fn tap(
    g: &Geometry,
    i: usize,
    j: usize,
) -> (
    std::ops::Range<usize>,
    usize,
    impl Iterator<Item = Option<usize>> + '_,
) {
    let off_x = (j * g.dilation[1]) as isize - g.pad[1] as isize;
    let (lo, hi) = valid_range(g.ow, g.w, g.stride[1], off_x);
    let start = (lo as isize * g.stride[1] as isize + off_x).max(0) as usize;
    let rows = (0..g.oh).map(move |oy| {
        let iy = (oy * g.stride[0] + i * g.dilation[0]) as isize - g.pad[0] as isize;
        (iy >= 0 && iy < g.h as isize && lo < hi).then_some(iy as usize)
    });
    (lo..hi, start, rows)
}

/// Kernel tap `(i, j)` of one channel `plane` (`h × w`) for the output positions in rows
/// `out_rows`, into `dst` (`out_rows.len() · ow`; zero in the padding).
#[inline(always)]
fn im2col_row(
    plane: &[f32],
    g: &Geometry,
    i: usize,
    j: usize,
    out_rows: std::ops::Range<usize>,
    dst: &mut [f32],
) {
    let (cols, start, rows) = tap(g, i, j);
    let rows = rows.skip(out_rows.start).take(out_rows.len());
    for (dst, iy) in dst.chunks_exact_mut(g.ow.max(1)).zip(rows) {
        let Some(iy) = iy else {
            dst.fill(0.0);
            continue;
        };
        let src = &plane[iy * g.w..][..g.w];
        dst[..cols.start].fill(0.0);
        dst[cols.end..].fill(0.0);
        match g.stride[1] {
            1 => copy(&mut dst[cols.clone()], &src[start..start + cols.len()]),
            2 => copy_every_other(&mut dst[cols.clone()], &src[start..]),
            stride => {
                let src = src[start..].iter().step_by(stride);
                for (d, s) in dst[cols.clone()].iter_mut().zip(src) {
                    *d = *s;
                }
            }
        }
    }
}

/// For output column `o` of a row with kernel offset `offset` (= `k · dilation − pad`), the
/// range of `o` whose input index `o · stride + offset` lies in `[0, size)`.
fn valid_range(out: usize, size: usize, stride: usize, offset: isize) -> (usize, usize) {
    let lo = if offset >= 0 {
        0
    } else {
        ((-offset) as usize).div_ceil(stride)
    };
    let last = size as isize - 1 - offset;
    let hi = if last < 0 {
        0
    } else {
        (last as usize / stride + 1).min(out)
    };
    (lo.min(hi), hi)
}

/// The im2col matrix of one image `x` `[in, h, w]` for output rows `out_rows` into `cols`
/// (`[in · kh · kw, out_rows.len() · ow]`): row `(c, i, j)` holds, for each of those output
/// positions, the input under kernel tap `(i, j)` of channel `c` (zero in the padding). Every
/// number is written once.
struct Im2col<'a> {
    x: &'a [f32],
    g: &'a Geometry,
    out_rows: std::ops::Range<usize>,
    cols: &'a mut [f32],
}

impl Vectorized for Im2col<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self {
            x,
            g,
            out_rows,
            cols,
        } = self;
        let [kh, kw] = g.kernel;
        let mut rows = cols.chunks_exact_mut((out_rows.len() * g.ow).max(1));
        for plane in x.chunks_exact((g.h * g.w).max(1)) {
            for i in 0..kh {
                for j in 0..kw {
                    let Some(row) = rows.next() else { return };
                    im2col_row(plane, g, i, j, out_rows.clone(), row);
                }
            }
        }
    }
}

/// `dst` from `src` (of the same length), in blocks of 8 that compile to register moves (the rows
/// are short: a `memcpy` call per row cost more than the copy).
#[inline(always)]
fn copy(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let s: &[f32; 8] = s.try_into().expect("chunks of 8");
        d.copy_from_slice(s);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

/// `dst[k] = src[2k]`, 16 at a time ([`every_other`]), then one by one.
#[inline(always)]
fn copy_every_other(dst: &mut [f32], src: &[f32]) {
    let mut done = 0;
    while done + 16 <= dst.len() && 2 * done + 31 <= src.len() {
        dst[done..done + 16].copy_from_slice(&every_other(&src[2 * done..]));
        done += 16;
    }
    for (k, d) in dst[done..].iter_mut().enumerate() {
        *d = src[2 * (done + k)];
    }
}

thread_local! {
    /// Each thread's im2col buffer, reused from image to image and call to call.
    static COLS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each thread's buffer for an image's output gradient through the ReLU's mask.
    static MASKED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each thread's buffer for an image's product before pooling.
    static PRODUCT: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each thread's buffer for an image's `Wᵀ · dY` before col2im.
    static DCOLS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on the im2col matrix of image `x` for output rows `out_rows` (`[in · kh · kw,
/// out_rows.len() · ow]`), built in this thread's buffer (kept for the next call).
fn with_cols<R>(
    x: &[f32],
    g: &Geometry,
    out_rows: std::ops::Range<usize>,
    f: impl FnOnce(Mat) -> R,
) -> R {
    let rows = g.c_in * g.kernel[0] * g.kernel[1];
    let positions = out_rows.len() * g.ow;
    let mut buf = take(&COLS, rows * positions);
    vectorized(Im2col {
        x,
        g,
        out_rows,
        cols: &mut buf,
    });
    f(Mat::new(&buf, rows, positions))
}

/// Bytes of an im2col block that stays in a core's L2 cache (1 MiB or more on the CPUs we
/// measure) between being written and being read by the product.
const COLS_BLOCK: usize = 512 << 10;

/// The output rows of one image in blocks for im2col: all at once, unless the image's im2col
/// matrix is larger than [`COLS_BLOCK`] and the kernels are small (a ResNet's first layers,
/// whose matrix is 7 MiB an image): then blocks of rows whose matrix stays in the cache until
/// the product reads it. Each block's product packs the kernels again, which is cheap only for
/// small kernels.
fn row_blocks(g: &Geometry) -> impl Iterator<Item = std::ops::Range<usize>> + use<> {
    let row_bytes = g.c_in * g.kernel[0] * g.kernel[1] * g.ow * size_of::<f32>();
    let kernel_bytes = g.c_out * g.k() * size_of::<f32>();
    let per_block = if row_bytes * g.oh <= COLS_BLOCK || kernel_bytes > COLS_BLOCK / 2 {
        g.oh
    } else {
        COLS_BLOCK / row_bytes.max(1)
    };
    let (oh, per_block) = (g.oh, per_block.clamp(1, g.oh.max(1)));
    (0..oh)
        .step_by(per_block)
        .map(move |r| r..(r + per_block).min(oh))
}

/// `out += bias` per row, then `max(·, 0)` with `relu`.
struct Epilogue<'a> {
    bias: &'a [f32],
    relu: bool,
    out: &'a mut [f32],
}

impl Vectorized for Epilogue<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let len = (self.out.len() / self.bias.len().max(1)).max(1);
        for (dst, &b) in self.out.chunks_exact_mut(len).zip(self.bias) {
            for d in dst {
                let v = *d + b;
                *d = if self.relu && v < 0.0 { 0.0 } else { v };
            }
        }
    }
}

/// `dy` where `y > 0`, else 0: the ReLU's derivative.
struct Mask<'a> {
    dy: &'a [f32],
    y: &'a [f32],
    out: &'a mut [f32],
}

impl Vectorized for Mask<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        for ((o, &d), &y) in self.out.iter_mut().zip(self.dy).zip(self.y) {
            *o = if y > 0.0 { d } else { 0.0 };
        }
    }
}

/// Adds the sum of each of the `sums.len()` rows of `rows` to `sums`.
struct RowSums<'a> {
    rows: &'a [f32],
    sums: &'a mut [f32],
}

impl Vectorized for RowSums<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let len = self.rows.len() / self.sums.len().max(1);
        for (acc, row) in self.sums.iter_mut().zip(self.rows.chunks_exact(len.max(1))) {
            *acc += strata_tensor::simd::sum(row);
        }
    }
}

/// The adjoint of [`Im2col`] for the rows of one group: adds `dcols` (`[in / groups · kh · kw,
/// oh · ow]`) into `dx` (`[in, h, w]`) at channels `first_channel..`.
fn col2im(dcols: &[f32], g: &Geometry, first_channel: usize, dx: &mut [f32]) {
    vectorized(Col2im {
        dcols,
        g,
        first_channel,
        dx,
    });
}

struct Col2im<'a> {
    dcols: &'a [f32],
    g: &'a Geometry,
    first_channel: usize,
    dx: &'a mut [f32],
}

impl Vectorized for Col2im<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self {
            dcols,
            g,
            first_channel,
            dx,
        } = self;
        let [kh, kw] = g.kernel;
        let plane_len = g.h * g.w;
        for (r, row) in dcols.chunks_exact(g.spatial().max(1)).enumerate() {
            let (c, i, j) = (first_channel + r / (kh * kw), r / kw % kh, r % kw);
            let plane = &mut dx[c * plane_len..][..plane_len];
            let (cols, start, rows) = tap(g, i, j);
            for (src, iy) in row.chunks_exact(g.ow.max(1)).zip(rows) {
                let Some(iy) = iy else { continue };
                let dst = &mut plane[iy * g.w..][..g.w];
                if g.stride[1] == 1 {
                    for (d, &s) in dst[start..start + cols.len()]
                        .iter_mut()
                        .zip(&src[cols.clone()])
                    {
                        *d += s;
                    }
                } else {
                    let dst = dst[start..].iter_mut().step_by(g.stride[1]);
                    for (d, &s) in dst.zip(&src[cols.clone()]) {
                        *d += s;
                    }
                }
            }
        }
    }
}

/// What the backward pass keeps: the input, the weight, what followed the convolution, the
/// options.
#[derive(Debug, Clone)]
struct State {
    x: FlexTensor,
    weight: FlexTensor,
    after: After,
    options: ConvOptions<2>,
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    type State = State;

    fn backward(self, ops: Ops<State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let needed = ops.parents.each_ref().map(Option::is_some);
        let s = ops.state;
        let out = backward(&s.x, &s.weight, &s.after, &dy, &s.options, needed);
        for (parent, grad) in ops.parents.into_iter().zip(out) {
            if let (Some(node), Some(grad)) = (parent, grad) {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

impl<C: CheckpointStrategy> ConvOps for Autodiff<Flex, C> {
    fn conv2d_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
        relu: bool,
        pool: Option<[usize; 2]>,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node(), bias.node()];
        let (x, weight, bias) = (
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
        );
        let (y, codes) = forward(&x, &weight, &bias, &options, relu, pool);
        match ConvBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let after = match (relu, pool) {
                    (_, Some(window)) => After::ReluPool {
                        pooled: y.clone(),
                        codes: std::sync::Arc::new(codes),
                        window,
                    },
                    (true, None) => After::Relu(y.clone()),
                    (false, None) => After::Nothing,
                };
                let state = State {
                    x,
                    weight,
                    after,
                    options,
                };
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_input_gradient_is_a_convolution_only_where_that_holds() {
        let geometry = |x, w, padding, stride, groups| {
            let options = ConvOptions::new_with_padding([stride; 2], padding, [1, 1], groups);
            Geometry::new(x, w, &options).unwrap()
        };
        // A 3×3 kernel padded by 1: the turned kernel is padded by 1 too.
        let same = geometry([1, 4, 8, 8], [6, 4, 3, 3], [(1, 1); 2], 1, 1);
        assert_eq!(input_grad_padding(&same), Some([(1, 1); 2]));
        // An even kernel's "same" padding (1, 2): (2, 1).
        let even = geometry([1, 2, 9, 9], [3, 2, 4, 4], [(1, 2); 2], 1, 1);
        assert_eq!(input_grad_padding(&even), Some([(2, 1); 2]));
        // Not at stride 2, with groups, with more padding than the kernel spans, or with
        // more kernel rows than output positions.
        let strided = geometry([1, 4, 8, 8], [6, 4, 3, 3], [(1, 1); 2], 2, 1);
        let grouped = geometry([1, 4, 8, 8], [6, 2, 3, 3], [(1, 1); 2], 1, 2);
        let wide = geometry([1, 4, 8, 8], [6, 4, 3, 3], [(3, 3); 2], 1, 1);
        let deep = geometry([1, 64, 7, 7], [6, 64, 3, 3], [(1, 1); 2], 1, 1);
        for g in [strided, grouped, wide, deep] {
            assert_eq!(input_grad_padding(&g), None, "{g:?}");
        }
    }

    #[test]
    fn valid_range_clips_to_the_input() {
        // 5 outputs, input of 5, stride 1, offset -1 (padding 1, tap 0): o = 0 reads -1.
        assert_eq!(valid_range(5, 5, 1, -1), (1, 5));
        // offset +1 (tap 2, padding 1): o = 4 reads 5.
        assert_eq!(valid_range(5, 5, 1, 1), (0, 4));
        // stride 2, offset -3: o·2 − 3 ≥ 0 from o = 2.
        assert_eq!(valid_range(4, 8, 2, -3), (2, 4));
        // Entirely outside.
        assert_eq!(valid_range(3, 2, 1, 5), (0, 0));
    }
}
