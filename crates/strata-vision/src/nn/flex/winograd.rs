//! Winograd's minimal filtering (Lavin and Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2016) for 3×3 convolutions with stride 1. F(m×m, 3×3) computes a tile of m×m
//! outputs from the (m + 2)×(m + 2) inputs under it with (m + 2)² multiplications per input and
//! output channel, where the direct convolution takes 9m². Two tile sizes ([`tile_side`]):
//!
//! - F(4×4, 3×3), 36 multiplications against 144, on output planes of at least
//!   [`LARGE_TILES_FROM`] on a side (a ResNet's first three stages);
//! - F(2×2, 3×3), 16 against 36, on smaller ones (a ResNet's 7×7 stage): there the batch has
//!   few tiles and many channels, and F(4×4)'s transformed kernels, 2.25 times the size of
//!   F(2×2)'s (36 MiB for 512 channels), cost more to write and read than the products save.
//!
//! With `T = m + 2`, `d` the T×T input under a tile and `g` a 3×3 kernel, the tile is
//! `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` ([`Transforms`]). Summed over input channels, the T²
//! elementwise products become T² matrix products, one per position `ξ` of the transformed tile:
//!
//! - the kernels once per call: `U[ξ] = (G g Gᵀ)[ξ]`, `[in, out]`, 16 kernels at a time in SIMD
//!   lanes;
//! - per block of an image's tile rows, the input under them padded and made channel-last, then
//!   `V[ξ] = (Bᵀ d B)[ξ]`, `[tiles, in]`; images of fewer than 64 tiles (a ResNet's layers
//!   from 28×28 on, whose transformed kernels outweigh an image in the deep stages) go into
//!   one block several at a time, so that each block reads the kernels once rather than each
//!   image;
//! - `M[ξ] = V[ξ] · U[ξ]`, `[tiles, out]` (T² products per block, one position per task), with
//!   the tiles as rows so that both transforms read and write each tile's channels as one
//!   contiguous run, in SIMD lanes;
//! - each tile's outputs `Aᵀ M A`, plus the bias, through the ReLU when asked, written into the
//!   image's `[out, oh, ow]` output.
//!
//! The input gradient is the same convolution of the output's gradient with the kernels turned
//! (`kernels` with `turned`). The weight gradient ([`weight_grad`]) goes through the same
//! transforms: in a tile, `Gᵀ [(A dY Aᵀ) ⊙ (Bᵀ d B)] G`, summed over the tiles of the batch as
//! T² products `[out, tiles] · [tiles, in]`, then transformed back once per kernel.
//!
//! F(2×2)'s coefficients are 0, ±1 and ±½, so its numbers differ from the direct convolution's
//! by rounding only; F(4×4)'s reach 8 and 1/24 and round a little more (the tests hold both to
//! Burn's within the same tolerance).

use rayon::prelude::*;
use strata_tensor::products::{Mat, MatMut, matmul_on_this_thread};

use super::{Taken, Vectorized, take, vectorized};
use crate::nn::Geometry;

/// Channels in and out below which the products are too small for the transforms to pay.
const MIN_CHANNELS: usize = 16;

/// The side of the output planes from which the tiles are 4×4 rather than 2×2.
const LARGE_TILES_FROM: usize = 14;

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

/// The outputs on a side of the tiles of the convolution `g`: 4 on planes of at least
/// [`LARGE_TILES_FROM`] on each side, else 2.
fn tile_side(g: &Geometry) -> usize {
    if g.oh.min(g.ow) >= LARGE_TILES_FROM {
        4
    } else {
        2
    }
}

/// F(M×M, 3×3)'s tile, `T = M + 2` inputs on a side.
struct Tile<const M: usize, const T: usize>;

/// The one-dimensional transforms of F(M×M, 3×3), applied to a tile's columns, then to its
/// rows: `Bᵀ x` of T inputs, `G g` of a kernel's 3 taps, `Aᵀ m` of T products, and for the
/// weight gradient the transposes `A y` of M output gradients and `Gᵀ s` of T sums.
trait Transforms<const M: usize, const T: usize> {
    fn input(x: [f32; T]) -> [f32; T];
    fn kernel(g: [f32; 3]) -> [f32; T];
    fn output(m: [f32; T]) -> [f32; M];
    fn grad(y: [f32; M]) -> [f32; T];
    fn kernel_grad(s: [f32; T]) -> [f32; 3];
}

/// F(2×2, 3×3): `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]`,
/// `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]`, `Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]`.
impl Transforms<2, 4> for Tile<2, 4> {
    #[inline(always)]
    fn input([x0, x1, x2, x3]: [f32; 4]) -> [f32; 4] {
        [x0 - x2, x1 + x2, x2 - x1, x1 - x3]
    }

    #[inline(always)]
    fn kernel([g0, g1, g2]: [f32; 3]) -> [f32; 4] {
        [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2]
    }

    #[inline(always)]
    fn output([m0, m1, m2, m3]: [f32; 4]) -> [f32; 2] {
        [m0 + m1 + m2, m1 - m2 - m3]
    }

    #[inline(always)]
    fn grad([y0, y1]: [f32; 2]) -> [f32; 4] {
        [y0, y0 + y1, y0 - y1, -y1]
    }

    #[inline(always)]
    fn kernel_grad([s0, s1, s2, s3]: [f32; 4]) -> [f32; 3] {
        [s0 + 0.5 * (s1 + s2), 0.5 * (s1 - s2), 0.5 * (s1 + s2) + s3]
    }
}

/// F(4×4, 3×3), on the points 0, ±1, ±2 and ∞: `Bᵀ = [[4, 0, −5, 0, 1, 0], [0, −4, −4, 1, 1, 0],
/// [0, 4, −4, −1, 1, 0], [0, −2, −1, 2, 1, 0], [0, 2, −1, −2, 1, 0], [0, 4, 0, −5, 0, 1]]`,
/// `G = [[¼, 0, 0], [−⅙, −⅙, −⅙], [−⅙, ⅙, −⅙], [1/24, 1/12, ⅙], [1/24, −1/12, ⅙], [0, 0, 1]]`,
/// `Aᵀ = [[1, 1, 1, 1, 1, 0], [0, 1, −1, 2, −2, 0], [0, 1, 1, 4, 4, 0], [0, 1, −1, 8, −8, 1]]`.
impl Transforms<4, 6> for Tile<4, 6> {
    #[inline(always)]
    fn input([x0, x1, x2, x3, x4, x5]: [f32; 6]) -> [f32; 6] {
        let (a, b) = (x4 - 4.0 * x2, x3 - 4.0 * x1);
        let (c, d) = (x4 - x2, 2.0 * (x3 - x1));
        [
            4.0 * x0 - 5.0 * x2 + x4,
            a + b,
            a - b,
            c + d,
            c - d,
            4.0 * x1 - 5.0 * x3 + x5,
        ]
    }

    #[inline(always)]
    fn kernel([g0, g1, g2]: [f32; 3]) -> [f32; 6] {
        let (a, b) = (g0 + g2, g1);
        let (c, d) = (g0 / 24.0 + g2 / 6.0, g1 / 12.0);
        [g0 / 4.0, -(a + b) / 6.0, -(a - b) / 6.0, c + d, c - d, g2]
    }

    #[inline(always)]
    fn output([m0, m1, m2, m3, m4, m5]: [f32; 6]) -> [f32; 4] {
        let (a, b) = (m1 + m2, m1 - m2);
        let (c, d) = (m3 + m4, m3 - m4);
        [m0 + a + c, b + 2.0 * d, a + 4.0 * c, b + 8.0 * d + m5]
    }

    #[inline(always)]
    fn grad([y0, y1, y2, y3]: [f32; 4]) -> [f32; 6] {
        let (a, b) = (y0 + y2, y1 + y3);
        let (c, d) = (y0 + 4.0 * y2, 2.0 * y1 + 8.0 * y3);
        [y0, a + b, a - b, c + d, c - d, y3]
    }

    #[inline(always)]
    fn kernel_grad([s0, s1, s2, s3, s4, s5]: [f32; 6]) -> [f32; 3] {
        let (a, b) = (s1 + s2, s1 - s2);
        let (c, d) = (s3 + s4, s3 - s4);
        [
            s0 / 4.0 - a / 6.0 + c / 24.0,
            -b / 6.0 + d / 12.0,
            (c - a) / 6.0 + s5,
        ]
    }
}

/// The T² transformed kernel matrices `U[ξ]`, stored `[rows, T², cols]` (a row of every `U[ξ]`
/// together), for tiles of `side` outputs on a side.
pub(super) struct Kernels {
    values: Taken,
    rows: usize,
    cols: usize,
    side: usize,
}

impl Kernels {
    /// `U[ξ]`, `[rows, cols]`.
    fn at(&self, xi: usize) -> Mat<'_> {
        let (rows, cols, positions) = (self.rows, self.cols, (self.side + 2).pow(2));
        Mat::strided(&self.values[xi * cols..], rows, cols, positions * cols)
    }
}

/// The kernels `weight` `[out, in, 3, 3]` transformed for the convolution `g`: `U[ξ]` `[in,
/// out]`, `U[ξ][c][o] = (G g Gᵀ)[ξ]` for kernel `g = weight[o][c]`. With `turned`, the kernels
/// of the convolution that gives the input gradient instead (each turned by 180°, input and
/// output channels swapped): `U[ξ]` `[out, in]`, `U[ξ][o][c]` from `weight[o][c]` reversed.
/// Each product wants its `U[ξ]` contiguous along its last dimension; computed on all threads,
/// one task per row of the `U[ξ]` (an input channel, or with `turned` an output channel).
pub(super) fn kernels(weight: &[f32], g: &Geometry, turned: bool) -> Kernels {
    match tile_side(g) {
        4 => kernels_with::<4, 6>(weight, g, turned),
        _ => kernels_with::<2, 4>(weight, g, turned),
    }
}

fn kernels_with<const M: usize, const T: usize>(
    weight: &[f32],
    g: &Geometry,
    turned: bool,
) -> Kernels
where
    Tile<M, T>: Transforms<M, T>,
{
    let (c_in, c_out, positions) = (g.c_in, g.c_out, T * T);
    // Written whole, in this thread's buffer.
    let mut u = take(&KERNELS, c_out * positions * c_in);
    if turned {
        // `[out, T², in]`.
        u.par_chunks_mut((positions * c_in).max(1))
            .zip(weight.par_chunks((9 * c_in).max(1)))
            .for_each(|(rows, kernels)| {
                vectorized(KernelRow::<_, M, T> {
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
            side: M,
        };
    }
    // `[in, T², out]`.
    u.par_chunks_mut((positions * c_out).max(1))
        .enumerate()
        .for_each(|(c, rows)| {
            vectorized(KernelRow::<_, M, T> {
                rows,
                n: c_out,
                tap: |o: usize, i: usize| weight[(o * c_in + c) * 9 + i],
            })
        });
    Kernels {
        values: u,
        rows: c_in,
        cols: c_out,
        side: M,
    }
}

/// `out[ξ] = a(ξ) · b(ξ)` (`[rows, cols]` each, one after the other in `out`), or with
/// `accumulate` added to what is there, for the `positions` positions `ξ`, one position per
/// task.
fn products<'a>(
    out: &mut [f32],
    [rows, cols]: [usize; 2],
    positions: usize,
    a: impl Fn(usize) -> Mat<'a> + Sync,
    b: impl Fn(usize) -> Mat<'a> + Sync,
    accumulate: bool,
) {
    out.par_chunks_exact_mut((rows * cols).max(1))
        .take(positions)
        .enumerate()
        .for_each(|(xi, out)| {
            matmul_on_this_thread(MatMut::new(out, rows, cols), a(xi), b(xi), accumulate)
        });
}

/// `M[ξ] = V[ξ] · U[ξ]` for a block of `tiles` tiles: the transformed input `v` (this thread's
/// `TILES` buffer, given back here) times the transformed kernels `u`, into this thread's
/// `PRODUCTS` buffer.
fn tile_products(v: Taken, u: &Kernels, tiles: usize, g: &Geometry) -> Taken {
    let positions = (u.side + 2).pow(2);
    let mut m = take(&PRODUCTS, positions * tiles * g.c_out);
    let v_planes = plane(&v, [tiles, g.c_in]);
    products(
        &mut m,
        [tiles, g.c_out],
        positions,
        v_planes,
        |xi| u.at(xi),
        false,
    );
    m
}

/// Each of the planes of `buf` (`[positions, rows, cols]`) as a `[rows, cols]` matrix.
fn plane<'a>(buf: &'a [f32], [rows, cols]: [usize; 2]) -> impl Fn(usize) -> Mat<'a> + Sync {
    move |xi| Mat::new(&buf[xi * rows * cols..][..rows * cols], rows, cols)
}

/// One row of the transformed kernels, `rows` `[T², n]`: `rows[ξ][j] = (G k Gᵀ)[ξ]` for the
/// kernels `k` whose tap `i` is `tap(j, i)`, 16 kernels at a time in SIMD lanes, each
/// position's 16 written as one run (written one value at a time, the positions' rows, 2 KiB
/// apart for 512 channels, would share a handful of the L1 cache's sets).
struct KernelRow<'a, F, const M: usize, const T: usize> {
    rows: &'a mut [f32],
    n: usize,
    tap: F,
}

impl<F: Fn(usize, usize) -> f32, const M: usize, const T: usize> Vectorized
    for KernelRow<'_, F, M, T>
where
    Tile<M, T>: Transforms<M, T>,
{
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { rows, n, tap } = self;
        let mut first = 0;
        while first + LANES <= n {
            let k: [[f32; LANES]; 9] =
                std::array::from_fn(|i| std::array::from_fn(|j| tap(first + j, i)));
            for (xi, values) in kernel::<M, T, LANES>(&k).as_flattened().iter().enumerate() {
                rows[xi * n + first..][..LANES].copy_from_slice(values);
            }
            first += LANES;
        }
        for j in first..n {
            let k: [[f32; 1]; 9] = std::array::from_fn(|i| [tap(j, i)]);
            for (xi, [v]) in kernel::<M, T, 1>(&k).as_flattened().iter().enumerate() {
                rows[xi * n + j] = *v;
            }
        }
    }
}

/// `G k Gᵀ` for `L` 3×3 kernels `k` (tap by tap, row by row), one per lane.
#[inline(always)]
fn kernel<const M: usize, const T: usize, const L: usize>(k: &[[f32; L]; 9]) -> [[[f32; L]; T]; T]
where
    Tile<M, T>: Transforms<M, T>,
{
    let k: [[[f32; L]; 3]; 3] = std::array::from_fn(|i| [k[3 * i], k[3 * i + 1], k[3 * i + 2]]);
    two_sided(&k, Tile::<M, T>::kernel)
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
    match u.side {
        4 => convolve_with::<4, 6>(xs, u, g, bias, relu),
        _ => convolve_with::<2, 4>(xs, u, g, bias, relu),
    }
}

fn convolve_with<const M: usize, const T: usize>(
    xs: &[f32],
    u: &Kernels,
    g: &Geometry,
    bias: &[f32],
    relu: bool,
) -> Vec<f32>
where
    Tile<M, T>: Transforms<M, T>,
{
    let (x_len, y_len) = (g.c_in * g.h * g.w, g.c_out * g.spatial());
    let mut out = vec![0f32; g.batch * y_len];
    let (th, tw) = (g.oh.div_ceil(M), g.ow.div_ceil(M));
    let per_image = th * tw;
    if per_image >= MIN_IMAGE_TILES {
        out.par_chunks_mut(y_len.max(1))
            .zip(xs.par_chunks(x_len.max(1)))
            .for_each(|(y, x)| image::<M, T>(x, u, g, bias, relu, y));
        return out;
    }
    // Small images (a ResNet's, whose kernels outweigh an image in the deep stages): the tiles
    // of several images in one product, so that each block reads the kernels once.
    let images = MIN_TILES.div_ceil(per_image.max(1));
    for (ys, xs) in out
        .chunks_mut((images * y_len).max(1))
        .zip(xs.chunks((images * x_len).max(1)))
    {
        let tiles = per_image * ys.len() / y_len.max(1);
        let mut v = take(&TILES, T * T * tiles * g.c_in);
        let mut rest = planes::<T>(&mut v);
        let pieces: Vec<_> = xs
            .chunks(x_len.max(1))
            .map(|x| (x, split_planes(&mut rest, per_image * g.c_in)))
            .collect();
        pieces.into_par_iter().for_each(|(x, planes)| {
            transform_tiles::<M, T>(x, [g.h, g.w], g.pad, 0..th, tw, Span::Input, planes)
        });
        let m = tile_products(v, u, tiles, g);
        let per_plane = tiles * g.c_out;
        ys.par_chunks_mut(y_len.max(1))
            .enumerate()
            .for_each(|(b, y)| {
                let at = b * per_image * g.c_out;
                vectorized(OutputTiles::<M, T> {
                    planes: runs(&m, per_plane, at, per_image * g.c_out),
                    g,
                    rows: 0..th,
                    tw,
                    bias,
                    relu,
                    y,
                });
            });
    }
    out
}

/// One image's convolution: `y` `[out, oh, ow]` from `x` `[in, h, w]` and the transformed
/// kernels `u` ([`kernels`]), plus `bias`, then `max(·, 0)` with `relu`, in blocks of tile rows.
fn image<const M: usize, const T: usize>(
    x: &[f32],
    u: &Kernels,
    g: &Geometry,
    bias: &[f32],
    relu: bool,
    y: &mut [f32],
) where
    Tile<M, T>: Transforms<M, T>,
{
    let (th, tw) = (g.oh.div_ceil(M), g.ow.div_ceil(M));
    let rows_per_block =
        (BLOCK / (T * T * tw * g.c_in.max(g.c_out) * size_of::<f32>()).max(1)).clamp(1, th.max(1));
    for first in (0..th).step_by(rows_per_block) {
        let rows = first..(first + rows_per_block).min(th);
        let tiles = rows.len() * tw;
        let mut v = take(&TILES, T * T * tiles * g.c_in);
        transform_tiles::<M, T>(
            x,
            [g.h, g.w],
            g.pad,
            rows.clone(),
            tw,
            Span::Input,
            planes(&mut v),
        );
        let m = tile_products(v, u, tiles, g);
        vectorized(OutputTiles::<M, T> {
            planes: runs(&m, tiles * g.c_out, 0, tiles * g.c_out),
            g,
            rows,
            tw,
            bias,
            relu,
            y: &mut *y,
        });
    }
}

/// The kernels' gradient `[out, in, 3, 3]` of the convolution `g` (one that [`applies`]) with
/// inputs `xs` (`[batch, in, h, w]`) and output gradient `dy` (`[batch, out, oh, ow]`).
///
/// In one tile, the output `Aᵀ [U ⊙ V] A` has the gradient `A dY Aᵀ ⊙ V` with respect to the
/// kernel's transform `U`, and through `U = G g Gᵀ`, the kernel `g` has `Gᵀ [A dY Aᵀ ⊙ V] G`.
/// Summed over the tiles of all images, the bracket is T² products, one per position `ξ`:
/// `S[ξ] = D[ξ]ᵀ · V[ξ]` (`[out, in]`), with `D[ξ] = (A dY Aᵀ)[ξ]` (`[tiles, out]`) and
/// `V[ξ]` as in the forward pass (`[tiles, in]`). The tiles go in blocks over the batch; each
/// block's transforms run in pieces on all threads, then its products (one position per task)
/// add into the sums, block after block, so that the same inputs give the same numbers on
/// every run.
pub(super) fn weight_grad(xs: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    match tile_side(g) {
        4 => weight_grad_with::<4, 6>(xs, dy, g),
        _ => weight_grad_with::<2, 4>(xs, dy, g),
    }
}

fn weight_grad_with<const M: usize, const T: usize>(
    xs: &[f32],
    dy: &[f32],
    g: &Geometry,
) -> Vec<f32>
where
    Tile<M, T>: Transforms<M, T>,
{
    let positions = T * T;
    let (th, tw) = (g.oh.div_ceil(M), g.ow.div_ceil(M));
    let (x_len, y_len) = (g.c_in * g.h * g.w, g.c_out * g.spatial());
    let threads = rayon::current_num_threads();
    // A block fills each thread's share of the cache, with at least `MIN_TILES` tiles for the
    // products' inner dimension (a ResNet's deep layers: 16 images a block).
    let row_bytes = positions * tw * (g.c_in + g.c_out) * size_of::<f32>();
    let per_block = (threads * BLOCK / row_bytes.max(1)).max(MIN_TILES.div_ceil(tw.max(1)));
    let all_rows = g.batch * th;
    // Overwritten by the first block's products, in this thread's buffer.
    let mut sums = take(&SUMS, positions * g.c_out * g.c_in);
    for first in (0..all_rows).step_by(per_block.max(1)) {
        let block = first..(first + per_block).min(all_rows);
        let tiles = block.len() * tw;
        let mut v = take(&TILES, positions * tiles * g.c_in);
        let mut d = take(&GRADS, positions * tiles * g.c_out);
        let (mut v_planes, mut d_planes) = (planes::<T>(&mut v), planes::<T>(&mut d));
        // The block in pieces within one image, about one per thread, each with its tiles
        // of the planes of `v` and `d`.
        let per_piece = block.len().div_ceil(threads);
        let mut pieces = Vec::new();
        let mut row = block.start;
        while row < block.end {
            let (b, i) = (row / th, row % th);
            let end = (row + per_piece).min(block.end).min((b + 1) * th);
            let n = (end - row) * tw;
            let v = split_planes(&mut v_planes, n * g.c_in);
            let d = split_planes(&mut d_planes, n * g.c_out);
            pieces.push((b, i..i + (end - row), v, d));
            row = end;
        }
        pieces.into_par_iter().for_each(|(b, rows, v, d)| {
            let x = &xs[b * x_len..][..x_len];
            transform_tiles::<M, T>(x, [g.h, g.w], g.pad, rows.clone(), tw, Span::Input, v);
            let dy = &dy[b * y_len..][..y_len];
            transform_tiles::<M, T>(dy, [g.oh, g.ow], [0, 0], rows, tw, Span::Grad, d);
        });
        let d_t = |xi| plane(&d, [tiles, g.c_out])(xi).t();
        products(
            &mut sums,
            [g.c_out, g.c_in],
            positions,
            d_t,
            plane(&v, [tiles, g.c_in]),
            first > 0,
        );
    }
    let (o_n, c_n) = (g.c_out, g.c_in);
    let mut dw = vec![0f32; o_n * c_n * 9];
    // One task per output channel.
    dw.par_chunks_mut((c_n * 9).max(1))
        .enumerate()
        .for_each(|(o, kernels)| {
            vectorized(KernelGrads::<M, T> {
                sums: runs(&sums, o_n * c_n, o * c_n, c_n),
                kernels,
            })
        });
    dw
}

/// One output channel's kernel gradients, `kernels` `[in, 3, 3]`, from its row of each of the
/// T² sums (`[in]` each, 1 MiB apart for 512 channels): `Gᵀ S G` for 16 input channels at a
/// time in SIMD lanes, each read as one run from each sum.
struct KernelGrads<'a, const M: usize, const T: usize> {
    sums: [[&'a [f32]; T]; T],
    kernels: &'a mut [f32],
}

impl<const M: usize, const T: usize> Vectorized for KernelGrads<'_, M, T>
where
    Tile<M, T>: Transforms<M, T>,
{
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { sums, kernels } = self;
        let n = sums[0][0].len();
        let mut first = 0;
        while first + LANES <= n {
            let k = kernel_grad::<M, T, LANES>(&load(&sums, first));
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
            let k = kernel_grad::<M, T, 1>(&load(&sums, c));
            for (t, v) in kernels[c * 9..][..9].iter_mut().enumerate() {
                *v = k[t][0];
            }
        }
    }
}

/// Tiles of a products' inner dimension below which they run short of their rate.
const MIN_TILES: usize = 256;

/// Tiles of an image from which it goes through the products alone, in blocks of tile rows
/// whose transforms and products stay in the L2 cache (a ResNet's 56×56 outputs: 196 tiles of
/// 4×4); smaller images go several to a block, of at least [`MIN_TILES`] tiles.
const MIN_IMAGE_TILES: usize = 64;

/// The first `n` values of `rest`, leaving the others there.
fn split_off<'a>(rest: &mut &'a mut [f32], n: usize) -> &'a mut [f32] {
    let (head, tail) = std::mem::take(rest).split_at_mut(n);
    *rest = tail;
    head
}

/// The first `n` values of each of the planes `rest`, leaving the others there.
fn split_planes<'a, const T: usize>(
    rest: &mut [[&'a mut [f32]; T]; T],
    n: usize,
) -> [[&'a mut [f32]; T]; T] {
    rest.each_mut()
        .map(|row| row.each_mut().map(|p| split_off(p, n)))
}

/// `buf` as T² equal planes, position by position.
fn planes<const T: usize>(buf: &mut [f32]) -> [[&mut [f32]; T]; T] {
    let mut chunks = buf.chunks_exact_mut((buf.len() / (T * T)).max(1));
    std::array::from_fn(|_| std::array::from_fn(|_| chunks.next().unwrap_or_default()))
}

/// The runs of `len` values at `at` in each of the T² planes of `buf`, `plane` values apart.
fn runs<const T: usize>(buf: &[f32], plane: usize, at: usize, len: usize) -> [[&[f32]; T]; T] {
    std::array::from_fn(|r| std::array::from_fn(|s| &buf[(r * T + s) * plane + at..][..len]))
}

/// Lanes `at..at + L` of each of the runs `runs`.
#[inline(always)]
fn load<const T: usize, const L: usize>(runs: &[[&[f32]; T]; T], at: usize) -> [[[f32; L]; T]; T] {
    let mut out = [[[0f32; L]; T]; T];
    for (dst, src) in out.iter_mut().zip(runs) {
        for (dst, src) in dst.iter_mut().zip(src) {
            *dst = src[at..at + L].try_into().expect("L lanes");
        }
    }
    out
}

/// `Gᵀ s G` (3×3, row by row) for `L` T×T sums `s`, one per lane.
#[inline(always)]
fn kernel_grad<const M: usize, const T: usize, const L: usize>(
    s: &[[[f32; L]; T]; T],
) -> [[f32; L]; 9]
where
    Tile<M, T>: Transforms<M, T>,
{
    let k = two_sided(s, Tile::<M, T>::kernel_grad);
    std::array::from_fn(|t| k[t / 3][t % 3])
}

/// `f` applied to each column of the R×R `x`, then to each row of that, lane by lane: for a
/// one-dimensional transform `x ↦ F x` (`F` S×R), the two-dimensional `F x Fᵀ` (S×S). Each of
/// the transforms of a tile is one.
#[inline(always)]
fn two_sided<const R: usize, const S: usize, const L: usize>(
    x: &[[[f32; L]; R]; R],
    f: impl Fn([f32; R]) -> [f32; S],
) -> [[[f32; L]; S]; S] {
    let (mut t, mut out) = ([[[0f32; L]; R]; S], [[[0f32; L]; S]; S]);
    for l in 0..L {
        // F · x (S×R), column by column.
        for c in 0..R {
            let mut col = [0f32; R];
            for r in 0..R {
                col[r] = x[r][c][l];
            }
            for (i, v) in f(col).into_iter().enumerate() {
                t[i][c][l] = v;
            }
        }
        // (F · x) · Fᵀ, row by row.
        for i in 0..S {
            let mut row = [0f32; R];
            for c in 0..R {
                row[c] = t[i][c][l];
            }
            for (j, v) in f(row).into_iter().enumerate() {
                out[i][j][l] = v;
            }
        }
    }
    out
}

/// The tiles of tile rows `rows` (`tw` tiles each) of one image's planes `x` (`[channels,
/// size[0], size[1]]`, shifted by `pad`) transformed into the T² `planes` ([`TileTransform`]),
/// through a [`ChannelLast`] copy of those rows.
fn transform_tiles<const M: usize, const T: usize>(
    x: &[f32],
    size: [usize; 2],
    pad: [usize; 2],
    rows: std::ops::Range<usize>,
    tw: usize,
    span: Span,
    planes: [[&mut [f32]; T]; T],
) where
    Tile<M, T>: Transforms<M, T>,
{
    let from = ChannelLast::new(x, size, pad, M, rows.clone(), tw, span);
    vectorized(TileTransform::<M, T> {
        from: &from,
        rows: rows.len(),
        tw,
        planes,
    });
}

/// What a tile covers in a [`ChannelLast`] copy.
#[derive(Clone, Copy, PartialEq)]
enum Span {
    /// The inputs under the tile's outputs.
    Input,
    /// The tile's output gradients.
    Grad,
}

/// Tile rows `rows` (`tw` tiles of `side × side` outputs each) of an image's planes `x`
/// (`[channels, size[0], size[1]]`), shifted by `pad` and made channel-last: `[side ·
/// rows.len() + halo, side · tw + halo, channels]`, where `halo` is 2 for the inputs under the
/// tiles and 0 for the tiles' outputs, zero outside the planes.
struct ChannelLast {
    values: Taken,
    width: usize,
    channels: usize,
    span: Span,
}

impl ChannelLast {
    fn new(
        x: &[f32],
        size: [usize; 2],
        pad: [usize; 2],
        side: usize,
        rows: std::ops::Range<usize>,
        tw: usize,
        span: Span,
    ) -> Self {
        let halo = if span == Span::Input { 2 } else { 0 };
        let plane = (size[0] * size[1]).max(1);
        let (height, width, channels) =
            (side * rows.len() + halo, side * tw + halo, x.len() / plane);
        // In this thread's buffer: what the planes do not cover is zeroed here.
        let mut values = take(&CHANNEL_LAST, height * width * channels);
        let cols = pad[1]..(pad[1] + size[1]).min(width);
        for (r, row) in values
            .chunks_exact_mut((width * channels).max(1))
            .enumerate()
        {
            let Some(src_r) = (side * rows.start + r)
                .checked_sub(pad[0])
                .filter(|&r| r < size[0])
            else {
                row.fill(0.0);
                continue;
            };
            row[..cols.start * channels].fill(0.0);
            row[cols.end * channels..].fill(0.0);
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

/// The transform of each of `rows · tw` tiles of a [`ChannelLast`] copy into the T² `planes`
/// (`[tiles, channels]` each): for inputs, `V[ξ] = (Bᵀ d B)[ξ]` with `d` the T×T input under
/// the tile; for output gradients, `D[ξ] = (A dY Aᵀ)[ξ]` with `dY` the tile's M×M.
struct TileTransform<'a, const M: usize, const T: usize> {
    from: &'a ChannelLast,
    rows: usize,
    tw: usize,
    planes: [[&'a mut [f32]; T]; T],
}

impl<const M: usize, const T: usize> Vectorized for TileTransform<'_, M, T>
where
    Tile<M, T>: Transforms<M, T>,
{
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
        for (t, (i, j)) in (0..self.rows)
            .flat_map(|i| (0..self.tw).map(move |j| (i, j)))
            .enumerate()
        {
            let base = (M * i * width + M * j) * c;
            let mut out = planes
                .each_mut()
                .map(|row| row.each_mut().map(|plane| &mut plane[t * c..][..c]));
            // The run of channels at row `r`, column `s` of the tile.
            let at = |r: usize, s: usize| &p[base + (r * width + s) * c..][..c];
            match span {
                Span::Input => {
                    let d: [[&[f32]; T]; T] =
                        std::array::from_fn(|r| std::array::from_fn(|s| at(r, s)));
                    transform_tile(&d, &mut out, c, Tile::<M, T>::input);
                }
                Span::Grad => {
                    let d: [[&[f32]; M]; M] =
                        std::array::from_fn(|r| std::array::from_fn(|s| at(r, s)));
                    transform_tile(&d, &mut out, c, Tile::<M, T>::grad);
                }
            }
        }
    }
}

/// One tile's transform `F d Fᵀ` ([`two_sided`], `f` the one-dimensional `x ↦ F x`) of the
/// R×R runs of channels `d` into the T² runs `out`, 16 channels at a time in SIMD lanes.
#[inline(always)]
fn transform_tile<const R: usize, const T: usize>(
    d: &[[&[f32]; R]; R],
    out: &mut [[&mut [f32]; T]; T],
    channels: usize,
    f: impl Fn([f32; R]) -> [f32; T] + Copy,
) {
    let mut lane = 0;
    while lane + LANES <= channels {
        let x: [[[f32; LANES]; R]; R] = load(d, lane);
        store_planes(&two_sided(&x, f), out, lane);
        lane += LANES;
    }
    while lane < channels {
        let x: [[[f32; 1]; R]; R] = load(d, lane);
        store_planes(&two_sided(&x, f), out, lane);
        lane += 1;
    }
}

/// Lanes of one pass of the transforms (a 512-bit register of f32).
const LANES: usize = 16;

/// `v` into lanes `lane..lane + L` of the T² runs `out`.
#[inline(always)]
fn store_planes<const T: usize, const L: usize>(
    v: &[[[f32; L]; T]; T],
    out: &mut [[&mut [f32]; T]; T],
    lane: usize,
) {
    for (dst, src) in out.iter_mut().zip(v) {
        for (dst, src) in dst.iter_mut().zip(src) {
            dst[lane..lane + L].copy_from_slice(src);
        }
    }
}

/// Each tile's outputs `Aᵀ M A` plus the bias, through the ReLU when asked, written into `y`
/// `[out, oh, ow]` where they fall inside it.
struct OutputTiles<'a, const M: usize, const T: usize> {
    /// The T² products, `[tiles, out]` each.
    planes: [[&'a [f32]; T]; T],
    g: &'a Geometry,
    rows: std::ops::Range<usize>,
    tw: usize,
    bias: &'a [f32],
    relu: bool,
    y: &'a mut [f32],
}

impl<const M: usize, const T: usize> Vectorized for OutputTiles<'_, M, T>
where
    Tile<M, T>: Transforms<M, T>,
{
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
            let (r0, c0) = (M * i, M * j);
            let at = TileAt {
                first: r0 * g.ow + c0,
                ow: g.ow,
                plane,
                rows: (g.oh - r0).min(M),
                cols: (g.ow - c0).min(M),
            };
            let mut lane = 0;
            while lane + LANES <= o_n {
                let out = output_tile::<M, T, LANES>(&planes, t * o_n + lane);
                store(y, &out, lane, &at, bias, relu);
                lane += LANES;
            }
            while lane < o_n {
                let out = output_tile::<M, T, 1>(&planes, t * o_n + lane);
                store(y, &out, lane, &at, bias, relu);
                lane += 1;
            }
        }
    }
}

/// Where a tile's outputs go in an image's `[out, oh, ow]`: its first output's offset in a
/// channel's plane, and how many of its rows and columns fall inside the plane.
struct TileAt {
    first: usize,
    ow: usize,
    plane: usize,
    rows: usize,
    cols: usize,
}

/// One tile's outputs `out` (M×M) for channels `channel..channel + L`, plus the bias and
/// through the ReLU when asked, into `y` where they fall inside it.
#[inline(always)]
fn store<const M: usize, const L: usize>(
    y: &mut [f32],
    out: &[[[f32; L]; M]; M],
    channel: usize,
    at: &TileAt,
    bias: &[f32],
    relu: bool,
) {
    for (l, &b) in bias[channel..channel + L].iter().enumerate() {
        let first = (channel + l) * at.plane + at.first;
        for (i, row) in out.iter().take(at.rows).enumerate() {
            let dst = &mut y[first + i * at.ow..][..at.cols];
            for (d, v) in dst.iter_mut().zip(row) {
                let v = v[l] + b;
                *d = if relu && v < 0.0 { 0.0 } else { v };
            }
        }
    }
}

/// One tile's M×M outputs for lanes `at..at + L` of the T² planes.
#[inline(always)]
fn output_tile<const M: usize, const T: usize, const L: usize>(
    planes: &[[&[f32]; T]; T],
    at: usize,
) -> [[[f32; L]; M]; M]
where
    Tile<M, T>: Transforms<M, T>,
{
    let m: [[[f32; L]; T]; T] = load(planes, at);
    two_sided(&m, Tile::<M, T>::output)
}

thread_local! {
    /// Each thread's buffer for a block's transformed input.
    static TILES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each thread's buffer for a block's transformed output gradient.
    static GRADS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each thread's buffer for a block's products.
    static PRODUCTS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each thread's buffer for the transformed kernels of a call.
    static KERNELS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each thread's buffer for the weight gradient's sums.
    static SUMS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each thread's buffer for a [`ChannelLast`] copy.
    static CHANNEL_LAST: std::cell::RefCell<Vec<f32>> =
        const { std::cell::RefCell::new(Vec::new()) };
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
