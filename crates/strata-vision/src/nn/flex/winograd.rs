//! Winograd's minimal filtering F(2×2, 3×3) (Lavin and Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2016) for 3×3 convolutions with stride 1: each 2×2 block of
//! outputs (a tile) takes 16 multiplications per input and output channel where the direct
//! convolution takes 36, so a layer's products shrink by 2.25.
//!
//! With `d` the 4×4 input under a tile and `g` a 3×3 kernel, the tile is `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`.
//! Summed over input channels, the 16 elementwise products become 16 matrix products, one per
//! position `ξ` of the 4×4 transformed tile:
//!
//! - the kernels once per call: `U[ξ] = (G g Gᵀ)[ξ]`, `[in, out]`, 16 kernels at a time in SIMD
//!   lanes;
//! - per block of an image's tile rows, the input under them padded and made channel-last, then
//!   `V[ξ] = (Bᵀ d B)[ξ]`, `[tiles, in]`; images of fewer than 256 tiles (a ResNet's deep
//!   layers, whose 16 transformed kernels are up to 16 MB) go into one block several at a
//!   time, so that each block reads the kernels once rather than each image;
//! - `M[ξ] = V[ξ] · U[ξ]`, `[tiles, out]` (16 products per block, one position per task), with the
//!   tiles as rows so that both transforms read and write each tile's channels as one
//!   contiguous run, in SIMD lanes;
//! - each tile's outputs `Aᵀ M A`, plus the bias, through the ReLU when asked, written into the
//!   image's `[out, oh, ow]` output.
//!
//! The input gradient is the same convolution of the output's gradient with the kernels turned
//! (`kernels` with `turned`). The weight gradient ([`weight_grad`]) goes through the same
//! transforms: in a tile, `Gᵀ [(A dY Aᵀ) ⊙ (Bᵀ d B)] G`, summed over the tiles of the batch as
//! 16 products `[out, tiles] · [tiles, in]`, then transformed back once per kernel.
//!
//! The transforms' coefficients are 0, ±1 and ±½, so the numbers differ from the direct
//! convolution's by rounding only (the tests hold both to Burn's within the same tolerance).

use rayon::prelude::*;
use strata_tensor::products::{Mat, MatMut, matmul_on_this_thread};

use super::{Vectorized, put_back, take, vectorized};
use crate::nn::Geometry;

/// Channels in and out below which the products are too small for the transforms to pay.
const MIN_CHANNELS: usize = 16;

/// Bytes of one block's transformed input or of its products, whichever is larger (per thread
/// for the weight gradient): small enough for both to stay in the L2 cache between the
/// transforms and the products.
const BLOCK: usize = 512 << 10;

/// Whether [`convolve`] computes the convolution `g`: a 3×3 kernel with stride and dilation 1,
/// one group, at most 2 of padding on each side, and at least 16 channels in and out.
pub(super) fn applies(g: &Geometry) -> bool {
    g.kernel == [3, 3]
        && g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.groups == 1
        && g.pad.iter().all(|&p| p <= 2)
        // At most 2 on the far sides too: `oh = h + pad + end − 2`.
        && g.oh <= g.h + g.pad[0]
        && g.ow <= g.w + g.pad[1]
        && g.c_in >= MIN_CHANNELS
        && g.c_out >= MIN_CHANNELS
        // An empty image stays with the direct convolution (its output is the bias alone).
        && g.h > 0
        && g.w > 0
}

/// The 16 transformed kernel matrices `U[ξ]`, stored `[rows, 16, cols]` (a row of every
/// `U[ξ]` together).
pub(super) struct Kernels {
    values: Vec<f32>,
    rows: usize,
    cols: usize,
}

impl Kernels {
    /// `U[ξ]`, `[rows, cols]`.
    fn at(&self, xi: usize) -> Mat<'_> {
        let (rows, cols) = (self.rows, self.cols);
        Mat::strided(&self.values[xi * cols..], rows, cols, 16 * cols)
    }
}

/// The kernels `weight` `[out, in, 3, 3]` transformed: `U[ξ]` `[in, out]`, `U[ξ][c][o] = (G g
/// Gᵀ)[ξ]` for kernel `g = weight[o][c]`, with `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]`.
/// With `turned`, the kernels of the convolution that gives the input gradient instead (each
/// turned by 180°, input and output channels swapped): `U[ξ]` `[out, in]`, `U[ξ][o][c]` from
/// `weight[o][c]` reversed. Each product wants its `U[ξ]` contiguous along its last dimension;
/// computed on all threads, one task per row of the `U[ξ]` (an input channel, or with `turned`
/// an output channel).
pub(super) fn kernels(weight: &[f32], g: &Geometry, turned: bool) -> Kernels {
    let (c_in, c_out) = (g.c_in, g.c_out);
    let mut u = vec![0f32; c_out * 16 * c_in];
    if turned {
        // `[out, 16, in]`.
        u.par_chunks_mut((16 * c_in).max(1))
            .zip(weight.par_chunks((9 * c_in).max(1)))
            .for_each(|(rows, kernels)| {
                vectorized(KernelRow {
                    rows,
                    n: c_in,
                    // The taps in reverse order: the kernel turned by 180°.
                    tap: |c: usize, i: usize| kernels[c * 9 + 8 - i],
                })
            });
        return Kernels {
            values: u,
            rows: c_out,
            cols: c_in,
        };
    }
    // `[in, 16, out]`.
    u.par_chunks_mut((16 * c_out).max(1))
        .enumerate()
        .for_each(|(c, rows)| {
            vectorized(KernelRow {
                rows,
                n: c_out,
                tap: |o: usize, i: usize| weight[(o * c_in + c) * 9 + i],
            })
        });
    Kernels {
        values: u,
        rows: c_in,
        cols: c_out,
    }
}

/// `out[ξ] = a(ξ) · b(ξ)` (`[rows, cols]` each, one after the other in `out`), or with
/// `accumulate` added to what is there, for the 16 positions `ξ`, one position per task.
fn products<'a>(
    out: &mut [f32],
    [rows, cols]: [usize; 2],
    a: impl Fn(usize) -> Mat<'a> + Sync,
    b: impl Fn(usize) -> Mat<'a> + Sync,
    accumulate: bool,
) {
    out.par_chunks_exact_mut((rows * cols).max(1))
        .take(16)
        .enumerate()
        .for_each(|(xi, out)| {
            matmul_on_this_thread(MatMut::new(out, rows, cols), a(xi), b(xi), accumulate)
        });
}

/// `M[ξ] = V[ξ] · U[ξ]` for a block of `tiles` tiles: the transformed input `v` (this thread's
/// `TILES` buffer, given back here) times the transformed kernels `u`, into this thread's
/// `PRODUCTS` buffer (for the caller to give back).
fn tile_products(v: Vec<f32>, u: &Kernels, tiles: usize, g: &Geometry) -> Vec<f32> {
    let mut m = take(&PRODUCTS, 16 * tiles * g.c_out);
    let v_planes = plane(&v, [tiles, g.c_in]);
    products(&mut m, [tiles, g.c_out], v_planes, |xi| u.at(xi), false);
    put_back(&TILES, v);
    m
}

/// Each of the 16 planes of `buf` (`[16, rows, cols]`) as a `[rows, cols]` matrix.
fn plane<'a>(buf: &'a [f32], [rows, cols]: [usize; 2]) -> impl Fn(usize) -> Mat<'a> + Sync {
    move |xi| Mat::new(&buf[xi * rows * cols..][..rows * cols], rows, cols)
}

/// One row of the transformed kernels, `rows` `[16, n]`: `rows[ξ][j] = (G k Gᵀ)[ξ]` for the
/// kernels `k` whose tap `i` is `tap(j, i)`, 16 kernels at a time in SIMD lanes, each
/// position's 16 written as one run (written one value at a time, the 16 positions' rows,
/// 2 KiB apart for 512 channels, would share a handful of the L1 cache's sets).
struct KernelRow<'a, F> {
    rows: &'a mut [f32],
    n: usize,
    tap: F,
}

impl<F: Fn(usize, usize) -> f32> Vectorized for KernelRow<'_, F> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { rows, n, tap } = self;
        let mut first = 0;
        while first + LANES <= n {
            let k: [[f32; LANES]; 9] =
                std::array::from_fn(|i| std::array::from_fn(|j| tap(first + j, i)));
            for (xi, values) in kernel(&k).iter().enumerate() {
                rows[xi * n + first..][..LANES].copy_from_slice(values);
            }
            first += LANES;
        }
        for j in first..n {
            let k: [[f32; 1]; 9] = std::array::from_fn(|i| [tap(j, i)]);
            for (xi, [v]) in kernel(&k).into_iter().enumerate() {
                rows[xi * n + j] = v;
            }
        }
    }
}

/// `G k Gᵀ`, row by row, for `L` 3×3 kernels `k` (tap by tap, row by row), one per lane.
#[inline(always)]
fn kernel<const L: usize>(k: &[[f32; L]; 9]) -> [[f32; L]; 16] {
    let mut out = [[0f32; L]; 16];
    for l in 0..L {
        // G · k (4×3), then each of its rows times Gᵀ.
        let row = |a: f32, b: f32, d: f32| [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d];
        let cols: [[f32; 4]; 3] = std::array::from_fn(|j| row(k[j][l], k[3 + j][l], k[6 + j][l]));
        for i in 0..4 {
            for (j, v) in row(cols[0][i], cols[1][i], cols[2][i])
                .into_iter()
                .enumerate()
            {
                out[4 * i + j][l] = v;
            }
        }
    }
    out
}

/// The convolution `g` of the images `xs` (`[batch, in, h, w]`) with the transformed kernels
/// `u` ([`kernels`]), plus `bias`, then `max(·, 0)` with `relu`: `[batch, out, oh, ow]`, the
/// images spread over the threads.
pub(super) fn convolve(
    xs: &[f32],
    u: &Kernels,
    g: &Geometry,
    bias: &[f32],
    relu: bool,
) -> Vec<f32> {
    let (x_len, y_len) = (g.c_in * g.h * g.w, g.c_out * g.spatial());
    let mut out = vec![0f32; g.batch * y_len];
    let (th, tw) = (g.oh.div_ceil(2), g.ow.div_ceil(2));
    let per_image = th * tw;
    if per_image >= MIN_TILES {
        out.par_chunks_mut(y_len.max(1))
            .zip(xs.par_chunks(x_len.max(1)))
            .for_each(|(y, x)| image(x, u, g, bias, relu, y));
        return out;
    }
    // Small images (a ResNet's deep layers, whose kernels outweigh an image): the tiles of
    // several images in one product, so that each block reads the kernels once.
    let images = MIN_TILES.div_ceil(per_image.max(1));
    for (ys, xs) in out
        .chunks_mut((images * y_len).max(1))
        .zip(xs.chunks((images * x_len).max(1)))
    {
        let tiles = per_image * ys.len() / y_len.max(1);
        let mut v = take(&TILES, 16 * tiles * g.c_in);
        let mut rest = planes(&mut v);
        let pieces: Vec<_> = xs
            .chunks(x_len.max(1))
            .map(|x| (x, rest.each_mut().map(|p| split_off(p, per_image * g.c_in))))
            .collect();
        pieces.into_par_iter().for_each(|(x, planes)| {
            transform_tiles(x, [g.h, g.w], g.pad, 0..th, tw, Span::Input, planes)
        });
        let m = tile_products(v, u, tiles, g);
        let per_plane = tiles * g.c_out;
        ys.par_chunks_mut(y_len.max(1))
            .enumerate()
            .for_each(|(b, y)| {
                let at = b * per_image * g.c_out;
                vectorized(OutputTiles {
                    planes: std::array::from_fn(|k| {
                        &m[k * per_plane + at..][..per_image * g.c_out]
                    }),
                    g,
                    rows: 0..th,
                    tw,
                    bias,
                    relu,
                    y,
                });
            });
        put_back(&PRODUCTS, m);
    }
    out
}

/// One image's convolution: `y` `[out, oh, ow]` from `x` `[in, h, w]` and the transformed
/// kernels `u` ([`kernels`]), plus `bias`, then `max(·, 0)` with `relu`, in blocks of tile rows.
fn image(x: &[f32], u: &Kernels, g: &Geometry, bias: &[f32], relu: bool, y: &mut [f32]) {
    let (th, tw) = (g.oh.div_ceil(2), g.ow.div_ceil(2));
    let rows_per_block =
        (BLOCK / (16 * tw * g.c_in.max(g.c_out) * size_of::<f32>()).max(1)).clamp(1, th.max(1));
    for first in (0..th).step_by(rows_per_block) {
        let rows = first..(first + rows_per_block).min(th);
        let tiles = rows.len() * tw;
        let mut v = take(&TILES, 16 * tiles * g.c_in);
        transform_tiles(
            x,
            [g.h, g.w],
            g.pad,
            rows.clone(),
            tw,
            Span::Input,
            planes(&mut v),
        );
        let m = tile_products(v, u, tiles, g);
        vectorized(OutputTiles {
            planes: std::array::from_fn(|k| &m[k * tiles * g.c_out..][..tiles * g.c_out]),
            g,
            rows,
            tw,
            bias,
            relu,
            y: &mut *y,
        });
        put_back(&PRODUCTS, m);
    }
}

/// The kernels' gradient `[out, in, 3, 3]` of the convolution `g` (one that [`applies`]) with
/// inputs `xs` (`[batch, in, h, w]`) and output gradient `dy` (`[batch, out, oh, ow]`).
///
/// In one tile, the output `Aᵀ [U ⊙ V] A` has the gradient `A dY Aᵀ ⊙ V` with respect to the
/// kernel's transform `U`, and through `U = G g Gᵀ`, the kernel `g` has `Gᵀ [A dY Aᵀ ⊙ V] G`.
/// Summed over the tiles of all images, the bracket is 16 products, one per position `ξ`:
/// `S[ξ] = D[ξ]ᵀ · V[ξ]` (`[out, in]`), with `D[ξ] = (A dY Aᵀ)[ξ]` (`[tiles, out]`) and
/// `V[ξ]` as in the forward pass (`[tiles, in]`). The tiles go in blocks over the batch; each
/// block's transforms run in pieces on all threads, then its 16 products (one position per
/// task) add into the sums, block after block, so that the same inputs give the same numbers
/// on every run.
pub(super) fn weight_grad(xs: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let (th, tw) = (g.oh.div_ceil(2), g.ow.div_ceil(2));
    let (x_len, y_len) = (g.c_in * g.h * g.w, g.c_out * g.spatial());
    let threads = rayon::current_num_threads();
    // A block fills each thread's share of the cache, with at least `MIN_TILES` tiles for the
    // products' inner dimension (a ResNet's deep layers: 16 images a block).
    let row_bytes = 16 * tw * (g.c_in + g.c_out) * size_of::<f32>();
    let per_block = (threads * BLOCK / row_bytes.max(1)).max(MIN_TILES.div_ceil(tw.max(1)));
    let all_rows = g.batch * th;
    let mut sums = vec![0f32; 16 * g.c_out * g.c_in];
    for first in (0..all_rows).step_by(per_block.max(1)) {
        let block = first..(first + per_block).min(all_rows);
        let tiles = block.len() * tw;
        let mut v = take(&TILES, 16 * tiles * g.c_in);
        let mut d = take(&GRADS, 16 * tiles * g.c_out);
        let (mut v_planes, mut d_planes) = (planes(&mut v), planes(&mut d));
        // The block in pieces within one image, about one per thread, each with its tiles
        // of the 16 planes of `v` and `d`.
        let per_piece = block.len().div_ceil(threads);
        let mut pieces = Vec::new();
        let mut row = block.start;
        while row < block.end {
            let (b, i) = (row / th, row % th);
            let end = (row + per_piece).min(block.end).min((b + 1) * th);
            let n = (end - row) * tw;
            let v = v_planes.each_mut().map(|p| split_off(p, n * g.c_in));
            let d = d_planes.each_mut().map(|p| split_off(p, n * g.c_out));
            pieces.push((b, i..i + (end - row), v, d));
            row = end;
        }
        pieces.into_par_iter().for_each(|(b, rows, v, d)| {
            let x = &xs[b * x_len..][..x_len];
            transform_tiles(x, [g.h, g.w], g.pad, rows.clone(), tw, Span::Input, v);
            let dy = &dy[b * y_len..][..y_len];
            transform_tiles(dy, [g.oh, g.ow], [0, 0], rows, tw, Span::Grad, d);
        });
        let d_t = |xi| plane(&d, [tiles, g.c_out])(xi).t();
        products(
            &mut sums,
            [g.c_out, g.c_in],
            d_t,
            plane(&v, [tiles, g.c_in]),
            true,
        );
        put_back(&TILES, v);
        put_back(&GRADS, d);
    }
    let (o_n, c_n) = (g.c_out, g.c_in);
    let mut dw = vec![0f32; o_n * c_n * 9];
    // One task per output channel.
    dw.par_chunks_mut((c_n * 9).max(1))
        .enumerate()
        .for_each(|(o, kernels)| {
            vectorized(KernelGrads {
                sums: std::array::from_fn(|xi| &sums[(xi * o_n + o) * c_n..][..c_n]),
                kernels,
            })
        });
    dw
}

/// One output channel's kernel gradients, `kernels` `[in, 3, 3]`, from its row of each of the
/// 16 sums (`[in]` each, 1 MiB apart for 512 channels): `Gᵀ S G` for 16 input channels at a
/// time in SIMD lanes, each read as one run from each sum.
struct KernelGrads<'a> {
    sums: [&'a [f32]; 16],
    kernels: &'a mut [f32],
}

impl Vectorized for KernelGrads<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { sums, kernels } = self;
        let n = sums[0].len();
        let mut first = 0;
        while first + LANES <= n {
            let s: [[f32; LANES]; 16] =
                std::array::from_fn(|xi| sums[xi][first..first + LANES].try_into().expect("a run"));
            let k = kernel_grad(&s);
            for (j, dst) in kernels[first * 9..][..LANES * 9]
                .chunks_exact_mut(9)
                .enumerate()
            {
                for (t, v) in dst.iter_mut().enumerate() {
                    *v = k[t][j];
                }
            }
            first += LANES;
        }
        for c in first..n {
            let k = kernel_grad::<1>(&std::array::from_fn(|xi| [sums[xi][c]]));
            for (t, v) in kernels[c * 9..][..9].iter_mut().enumerate() {
                *v = k[t][0];
            }
        }
    }
}

/// Tiles of a products' inner dimension below which they run short of their rate.
const MIN_TILES: usize = 256;

/// The first `n` values of `rest`, leaving the others there.
fn split_off<'a>(rest: &mut &'a mut [f32], n: usize) -> &'a mut [f32] {
    let (head, tail) = std::mem::take(rest).split_at_mut(n);
    *rest = tail;
    head
}

/// `buf` as 16 equal planes.
fn planes(buf: &mut [f32]) -> [&mut [f32]; 16] {
    let mut chunks = buf.chunks_exact_mut((buf.len() / 16).max(1));
    std::array::from_fn(|_| chunks.next().unwrap_or_default())
}

/// `Gᵀ s G` (3×3, row by row) for `L` 4×4 sums `s` (row by row), one per lane, with
/// `Gᵀ = [[1, ½, ½, 0], [0, ½, −½, 0], [0, ½, ½, 1]]`.
#[inline(always)]
fn kernel_grad<const L: usize>(s: &[[f32; L]; 16]) -> [[f32; L]; 9] {
    let mut out = [[0f32; L]; 9];
    let g_t =
        |a: f32, b: f32, c: f32, d: f32| [a + 0.5 * (b + c), 0.5 * (b - c), 0.5 * (b + c) + d];
    for l in 0..L {
        // Gᵀ · s, column by column, then each of its rows times G.
        let cols: [[f32; 3]; 4] =
            std::array::from_fn(|j| g_t(s[j][l], s[4 + j][l], s[8 + j][l], s[12 + j][l]));
        for i in 0..3 {
            for (j, v) in g_t(cols[0][i], cols[1][i], cols[2][i], cols[3][i])
                .into_iter()
                .enumerate()
            {
                out[3 * i + j][l] = v;
            }
        }
    }
    out
}

/// The tiles of tile rows `rows` (`tw` tiles each) of one image's planes `x` (`[channels,
/// size[0], size[1]]`, shifted by `pad`) transformed into the 16 `planes` ([`TileTransform`]),
/// through a [`ChannelLast`] copy of those rows.
fn transform_tiles(
    x: &[f32],
    size: [usize; 2],
    pad: [usize; 2],
    rows: std::ops::Range<usize>,
    tw: usize,
    span: Span,
    planes: [&mut [f32]; 16],
) {
    let from = ChannelLast::new(x, size, pad, rows.clone(), tw, span);
    vectorized(TileTransform {
        from: &from,
        rows: rows.len(),
        tw,
        planes,
    });
}

/// What a tile covers in a [`ChannelLast`] copy.
#[derive(Clone, Copy, PartialEq)]
enum Span {
    /// The 4×4 inputs under the tile's 2×2 outputs.
    Input,
    /// The tile's 2×2 output gradients.
    Grad,
}

/// Tile rows `rows` (`tw` tiles each) of an image's planes `x` (`[channels, size[0],
/// size[1]]`), shifted by `pad` and made channel-last: `[2 · rows.len() + halo, 2 · tw + halo,
/// channels]`, where `halo` is 2 for the inputs under the tiles and 0 for the tiles' outputs,
/// zero outside the planes.
struct ChannelLast {
    values: Vec<f32>,
    width: usize,
    channels: usize,
    span: Span,
}

impl ChannelLast {
    fn new(
        x: &[f32],
        size: [usize; 2],
        pad: [usize; 2],
        rows: std::ops::Range<usize>,
        tw: usize,
        span: Span,
    ) -> Self {
        let halo = if span == Span::Input { 2 } else { 0 };
        let plane = (size[0] * size[1]).max(1);
        let (height, width, channels) = (2 * rows.len() + halo, 2 * tw + halo, x.len() / plane);
        let mut values = vec![0f32; height * width * channels];
        let cols = pad[1]..(pad[1] + size[1]).min(width);
        for (r, row) in values
            .chunks_exact_mut((width * channels).max(1))
            .enumerate()
        {
            let Some(src_r) = (2 * rows.start + r)
                .checked_sub(pad[0])
                .filter(|&r| r < size[0])
            else {
                continue;
            };
            vectorized(Transpose {
                x,
                plane,
                from: src_r * size[1],
                cols: cols.len(),
                row: &mut row[cols.start * channels..],
                channels,
            });
        }
        Self {
            values,
            width,
            channels,
            span,
        }
    }
}

/// Row `row` `[cols, channels]` from `cols` values at `from` in each of the planes of `x`
/// (`plane` apart), 16 channels by 16 columns at a time.
struct Transpose<'a> {
    x: &'a [f32],
    plane: usize,
    from: usize,
    cols: usize,
    row: &'a mut [f32],
    channels: usize,
}

impl Vectorized for Transpose<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        const RUN: usize = 16;
        let Self {
            x,
            plane,
            from,
            cols,
            row,
            channels,
        } = self;
        let src = |c: usize| &x[c * plane + from..][..cols];
        let mut c0 = 0;
        while c0 + RUN <= channels {
            let srcs: [&[f32]; RUN] = std::array::from_fn(|i| src(c0 + i));
            let mut j0 = 0;
            while j0 + RUN <= cols {
                let block: [[f32; RUN]; RUN] =
                    std::array::from_fn(|i| srcs[i][j0..j0 + RUN].try_into().expect("a run"));
                for j in 0..RUN {
                    let dst: &mut [f32; RUN] = (&mut row[(j0 + j) * channels + c0..][..RUN])
                        .try_into()
                        .expect("a run");
                    *dst = std::array::from_fn(|i| block[i][j]);
                }
                j0 += RUN;
            }
            for j in j0..cols {
                for (i, s) in srcs.iter().enumerate() {
                    row[j * channels + c0 + i] = s[j];
                }
            }
            c0 += RUN;
        }
        for c in c0..channels {
            for (j, &v) in src(c).iter().enumerate() {
                row[j * channels + c] = v;
            }
        }
    }
}

/// The transform of each of `rows · tw` tiles of a [`ChannelLast`] copy into the 16 `planes`
/// (`[tiles, channels]` each): for inputs, `V[ξ] = (Bᵀ d B)[ξ]` with `d` the 4×4 input under
/// the tile and `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]`; for output
/// gradients, `D[ξ] = (A dY Aᵀ)[ξ]` with `dY` the tile's 2×2 and `A = [[1, 0], [1, 1],
/// [1, −1], [0, −1]]`.
struct TileTransform<'a> {
    from: &'a ChannelLast,
    rows: usize,
    tw: usize,
    planes: [&'a mut [f32]; 16],
}

impl Vectorized for TileTransform<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let ChannelLast {
            values: p,
            width,
            channels: c,
            span,
        } = self.from;
        let (width, c) = (*width, *c);
        let mut planes = self.planes;
        // A tile's inputs are `side × side` runs of channels (the rest of `d` unused).
        let side = if *span == Span::Input { 4 } else { 2 };
        for (t, (i, j)) in (0..self.rows)
            .flat_map(|i| (0..self.tw).map(move |j| (i, j)))
            .enumerate()
        {
            let base = (2 * i * width + 2 * j) * c;
            let mut out = planes.each_mut().map(|plane| &mut plane[t * c..][..c]);
            let d: [&[f32]; 16] = std::array::from_fn(|k| {
                let (r, s) = (k / side, k % side);
                if r < side {
                    &p[base + (r * width + s) * c..][..c]
                } else {
                    &[]
                }
            });
            let mut lane = 0;
            while lane + LANES <= c {
                tile::<LANES>(*span, &d, &mut out, lane);
                lane += LANES;
            }
            while lane < c {
                tile::<1>(*span, &d, &mut out, lane);
                lane += 1;
            }
        }
    }
}

/// One tile's transform, of its inputs or of its output gradients (`span`), for channels
/// `lane..lane + L` of the runs `d`.
#[inline(always)]
fn tile<const L: usize>(span: Span, d: &[&[f32]; 16], out: &mut [&mut [f32]; 16], lane: usize) {
    match span {
        Span::Input => input_tile::<L>(d, out, lane),
        Span::Grad => grad_tile::<L>(&[d[0], d[1], d[2], d[3]], out, lane),
    }
}

/// Lanes of one pass of the transforms (a 512-bit register of f32).
const LANES: usize = 16;

/// One tile's input transform for channels `lane..lane + L`.
#[inline(always)]
fn input_tile<const L: usize>(d: &[&[f32]; 16], out: &mut [&mut [f32]; 16], lane: usize) {
    let d: [[f32; L]; 16] =
        std::array::from_fn(|k| d[k][lane..lane + L].try_into().expect("L lanes"));
    let (mut t, mut v) = ([[0f32; L]; 16], [[0f32; L]; 16]);
    // Bᵀ · d, column by column.
    for b in 0..4 {
        for l in 0..L {
            let (d0, d1, d2, d3) = (d[b][l], d[4 + b][l], d[8 + b][l], d[12 + b][l]);
            t[b][l] = d0 - d2;
            t[4 + b][l] = d1 + d2;
            t[8 + b][l] = d2 - d1;
            t[12 + b][l] = d1 - d3;
        }
    }
    // (Bᵀ · d) · B, row by row.
    for a in 0..4 {
        for l in 0..L {
            let (t0, t1, t2, t3) = (
                t[4 * a][l],
                t[4 * a + 1][l],
                t[4 * a + 2][l],
                t[4 * a + 3][l],
            );
            v[4 * a][l] = t0 - t2;
            v[4 * a + 1][l] = t1 + t2;
            v[4 * a + 2][l] = t2 - t1;
            v[4 * a + 3][l] = t1 - t3;
        }
    }
    for (dst, src) in out.iter_mut().zip(&v) {
        dst[lane..lane + L].copy_from_slice(src);
    }
}

/// One tile's output gradient transform `A dY Aᵀ` for channels `lane..lane + L`, `d` the
/// tile's 2×2 row by row.
#[inline(always)]
fn grad_tile<const L: usize>(d: &[&[f32]; 4], out: &mut [&mut [f32]; 16], lane: usize) {
    let d: [[f32; L]; 4] =
        std::array::from_fn(|k| d[k][lane..lane + L].try_into().expect("L lanes"));
    let mut v = [[0f32; L]; 16];
    for l in 0..L {
        // A · dY: four rows of two; then each row `[x, y]` times Aᵀ: `[x, x + y, x − y, −y]`.
        let (p, q, r, s) = (d[0][l], d[1][l], d[2][l], d[3][l]);
        let rows = [[p, q], [p + r, q + s], [p - r, q - s], [-r, -s]];
        for (a, [x, y]) in rows.into_iter().enumerate() {
            v[4 * a][l] = x;
            v[4 * a + 1][l] = x + y;
            v[4 * a + 2][l] = x - y;
            v[4 * a + 3][l] = -y;
        }
    }
    for (dst, src) in out.iter_mut().zip(&v) {
        dst[lane..lane + L].copy_from_slice(src);
    }
}

/// Each tile's outputs `Aᵀ M A` (with `Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]`) plus the bias,
/// through the ReLU when asked, written into `y` `[out, oh, ow]` where they fall inside it.
struct OutputTiles<'a> {
    /// The 16 products, `[tiles, out]` each.
    planes: [&'a [f32]; 16],
    g: &'a Geometry,
    rows: std::ops::Range<usize>,
    tw: usize,
    bias: &'a [f32],
    relu: bool,
    y: &'a mut [f32],
}

impl Vectorized for OutputTiles<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self {
            planes,
            g,
            rows,
            tw,
            bias,
            relu,
            y,
        } = self;
        let (o_n, plane) = (g.c_out, g.oh * g.ow);
        for (t, (i, j)) in rows.flat_map(|i| (0..tw).map(move |j| (i, j))).enumerate() {
            let (r0, c0) = (2 * i, 2 * j);
            let (two_rows, two_cols) = (r0 + 1 < g.oh, c0 + 1 < g.ow);
            let at = TileAt {
                first: r0 * g.ow + c0,
                ow: g.ow,
                plane,
                two_rows,
                two_cols,
            };
            let mut lane = 0;
            while lane + LANES <= o_n {
                let out = output_tile::<LANES>(&planes, t * o_n + lane);
                store(y, &out, lane, &at, bias, relu);
                lane += LANES;
            }
            while lane < o_n {
                let out = output_tile::<1>(&planes, t * o_n + lane);
                store(y, &out, lane, &at, bias, relu);
                lane += 1;
            }
        }
    }
}

/// Where a tile's outputs go in an image's `[out, oh, ow]`: its first output's offset in a
/// channel's plane, and which of its other three fall inside the plane.
struct TileAt {
    first: usize,
    ow: usize,
    plane: usize,
    two_rows: bool,
    two_cols: bool,
}

/// One tile's outputs `out` (row by row) for channels `channel..channel + L`, plus the bias and
/// through the ReLU when asked, into `y` where they fall inside it.
#[inline(always)]
fn store<const L: usize>(
    y: &mut [f32],
    out: &[[f32; L]; 4],
    channel: usize,
    at: &TileAt,
    bias: &[f32],
    relu: bool,
) {
    for (l, &b) in bias[channel..channel + L].iter().enumerate() {
        let first = (channel + l) * at.plane + at.first;
        let act = |v: f32| {
            let v = v + b;
            if relu && v < 0.0 { 0.0 } else { v }
        };
        y[first] = act(out[0][l]);
        if at.two_cols {
            y[first + 1] = act(out[1][l]);
        }
        if at.two_rows {
            y[first + at.ow] = act(out[2][l]);
            if at.two_cols {
                y[first + at.ow + 1] = act(out[3][l]);
            }
        }
    }
}

/// One tile's 2×2 outputs, row by row, for lanes `at..at + L` of the 16 planes.
#[inline(always)]
fn output_tile<const L: usize>(planes: &[&[f32]; 16], at: usize) -> [[f32; L]; 4] {
    let mut out = [[0f32; L]; 4];
    let m: [[f32; L]; 16] =
        std::array::from_fn(|k| planes[k][at..at + L].try_into().expect("L lanes"));
    for l in 0..L {
        // Aᵀ · M: two rows of four.
        let mut r = [[0f32; 4]; 2];
        for b in 0..4 {
            let (m0, m1, m2, m3) = (m[b][l], m[4 + b][l], m[8 + b][l], m[12 + b][l]);
            r[0][b] = m0 + m1 + m2;
            r[1][b] = m1 - m2 - m3;
        }
        // (Aᵀ · M) · A.
        for (a, row) in r.iter().enumerate() {
            out[2 * a][l] = row[0] + row[1] + row[2];
            out[2 * a + 1][l] = row[1] - row[2] - row[3];
        }
    }
    out
}

thread_local! {
    /// Each thread's buffer for a block's transformed input.
    static TILES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each thread's buffer for a block's transformed output gradient.
    static GRADS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each thread's buffer for a block's 16 products.
    static PRODUCTS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::ops::ConvOptions;

    fn geometry(
        channels: [usize; 2],
        kernel: usize,
        stride: usize,
        pad: usize,
        dilation: usize,
    ) -> Geometry {
        let [c_in, c_out] = channels;
        let options = ConvOptions::new([stride; 2], [pad; 2], [dilation; 2], 1);
        Geometry::new([2, c_in, 12, 12], [c_out, c_in, kernel, kernel], &options).expect("valid")
    }

    #[test]
    fn it_takes_3x3_convolutions_of_stride_1_with_enough_channels() {
        assert!(applies(&geometry([16, 16], 3, 1, 1, 1)));
        assert!(applies(&geometry([64, 512], 3, 1, 0, 1)));
        assert!(
            !applies(&geometry([8, 64], 3, 1, 1, 1)),
            "too few channels in"
        );
        assert!(
            !applies(&geometry([64, 8], 3, 1, 1, 1)),
            "too few channels out"
        );
        assert!(!applies(&geometry([64, 64], 3, 2, 1, 1)), "stride 2");
        assert!(!applies(&geometry([64, 64], 3, 1, 2, 2)), "dilation 2");
        assert!(!applies(&geometry([64, 64], 5, 1, 2, 1)), "5×5");
        assert!(
            !applies(&geometry([64, 64], 3, 1, 3, 1)),
            "padding beyond the kernel"
        );
    }

    #[test]
    fn a_kernel_s_transform_is_g_k_g_transposed() {
        let g = geometry([16, 16], 3, 1, 1, 1);
        // One kernel 1..9 at (out 0, in 0); every other kernel zero.
        let mut weight = vec![0f32; 16 * 16 * 9];
        for (i, w) in weight[..9].iter_mut().enumerate() {
            *w = (i + 1) as f32;
        }
        let u = kernels(&weight, &g, false);
        // `[in, 16, out]`: `U[ξ][0][0]` is the first of position ξ's run of 16.
        let at = |xi: usize| u.values[xi * u.cols];
        // G k Gᵀ by hand for k = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]: G k = [[1, 2, 3], [6, 7.5, 9],
        // [2, 2.5, 3], [7, 8, 9]], then each row r → [r0, (r0 + r1 + r2) / 2, (r0 − r1 + r2) / 2, r2].
        let expected = [
            1.0, 3.0, 1.0, 3.0, 6.0, 11.25, 3.75, 9.0, 2.0, 3.75, 1.25, 3.0, 7.0, 12.0, 4.0, 9.0,
        ];
        for (xi, e) in expected.into_iter().enumerate() {
            assert_eq!(at(xi), e, "position {xi}");
        }
        assert!(u.values.iter().filter(|v| **v != 0.0).count() <= 16);
    }
}
