//! Winograd's minimal filtering F(2×2, 3×3) (Lavin and Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2016) for 3×3 convolutions with stride 1: each 2×2 block of
//! outputs (a tile) takes 16 multiplications per input and output channel where the direct
//! convolution takes 36, so a layer's products shrink by 2.25.
//!
//! With `d` the 4×4 input under a tile and `g` a 3×3 kernel, the tile is `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`.
//! Summed over input channels, the 16 elementwise products become 16 matrix products, one per
//! position `ξ` of the 4×4 transformed tile:
//!
//! - the kernels once per call: `U[ξ] = (G g Gᵀ)[ξ]`, `[in, out]`;
//! - per image, the input padded and made channel-last, then for each block of tile rows
//!   `V[ξ] = (Bᵀ d B)[ξ]`, `[tiles, in]`;
//! - `M[ξ] = V[ξ] · U[ξ]`, `[tiles, out]` (flex's batched product, one per image and block),
//!   with the tiles as rows so that both transforms read and write each tile's channels as
//!   one contiguous run, in SIMD lanes;
//! - each tile's outputs `Aᵀ M A`, plus the bias, through the ReLU when asked, written into the
//!   image's `[out, oh, ow]` output.
//!
//! The transforms' coefficients are 0, ±1 and ±½, so the numbers differ from the direct
//! convolution's by rounding only (the tests hold both to Burn's within the same tolerance).

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;

use rayon::prelude::*;

use super::{Vectorized, into_values, put_back, take, tensor, values, vectorized};
use crate::nn::Geometry;

/// Channels in and out below which the products are too small for the transforms to pay.
const MIN_CHANNELS: usize = 16;

/// Bytes of one block's transformed input or of its products, whichever is larger: small
/// enough for both to stay in the L2 cache between the transforms and the products.
const BLOCK: usize = 512 << 10;

/// Whether [`image`] computes the convolution `g`: a 3×3 kernel with stride and dilation 1,
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
}

/// The kernels `weight` `[out, in, 3, 3]` transformed, as `[16, in, out]`: `U[ξ][c][o] = (G g
/// Gᵀ)[ξ]` for kernel `g = weight[o][c]`, with `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]`.
/// With `turned`, the kernels of the convolution that gives the input gradient instead (each
/// turned by 180°, input and output channels swapped): `[16, out, in]`, `U[ξ][o][c]` from
/// `weight[o][c]` reversed. Each product wants its `U[ξ]` contiguous along its last dimension;
/// computed on all threads, one task per row of the `U[ξ]` (an input channel, or with `turned`
/// an output channel).
pub(super) fn kernels(weight: &[f32], g: &Geometry, turned: bool) -> FlexTensor {
    let (c_in, c_out) = (g.c_in, g.c_out);
    let mut u = vec![0f32; c_out * 16 * c_in];
    if turned {
        // `[out, 16, in]`, each output channel's kernels read and written in order, returned
        // as a `[16, out, in]` view.
        u.par_chunks_mut((16 * c_in).max(1))
            .zip(weight.par_chunks((9 * c_in).max(1)))
            .for_each(|(rows, kernels)| {
                for (c, k) in kernels.chunks_exact(9).enumerate() {
                    let k: [f32; 9] = std::array::from_fn(|i| k[8 - i]);
                    for (xi, v) in kernel(&k).into_iter().enumerate() {
                        rows[xi * c_in + c] = v;
                    }
                }
            });
        return tensor(u, [c_out, 16, c_in]).permute(&[1, 0, 2]);
    }
    // `[in, 16, out]`, one input channel per task, returned as a `[16, in, out]` view.
    u.par_chunks_mut((16 * c_out).max(1))
        .enumerate()
        .for_each(|(c, rows)| {
            for o in 0..c_out {
                let k: &[f32; 9] = weight[(o * c_in + c) * 9..][..9].try_into().expect("3×3");
                for (xi, v) in kernel(k).into_iter().enumerate() {
                    rows[xi * c_out + o] = v;
                }
            }
        });
    tensor(u, [c_in, 16, c_out]).permute(&[1, 0, 2])
}

/// `G k Gᵀ`, row by row, for one 3×3 kernel `k` (row by row).
#[inline(always)]
fn kernel(k: &[f32; 9]) -> [f32; 16] {
    let mut out = [0f32; 16];
    // G · k (4×3), then each of its rows `r` times Gᵀ.
    let row = |a: f32, b: f32, d: f32| [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d];
    let gk: [[f32; 3]; 4] = {
        let cols: [[f32; 4]; 3] = std::array::from_fn(|j| row(k[j], k[3 + j], k[6 + j]));
        std::array::from_fn(|i| std::array::from_fn(|j| cols[j][i]))
    };
    for (i, [a, b, d]) in gk.into_iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&row(a, b, d));
    }
    out
}

/// The convolution `g` of the images `xs` (`[batch, in, h, w]`) with the transformed kernels
/// `u` ([`kernels`]), plus `bias`, then `max(·, 0)` with `relu`: `[batch, out, oh, ow]`, the
/// images spread over the threads.
pub(super) fn convolve(
    xs: &[f32],
    u: &FlexTensor,
    g: &Geometry,
    bias: &[f32],
    relu: bool,
) -> FlexTensor {
    let (x_len, y_len) = (g.c_in * g.h * g.w, g.c_out * g.spatial());
    let mut out = vec![0f32; g.batch * y_len];
    out.par_chunks_mut(y_len.max(1))
        .zip(xs.par_chunks(x_len.max(1)))
        .for_each(|(y, x)| image(x, u, g, bias, relu, y));
    tensor(out, [g.batch, g.c_out, g.oh, g.ow])
}

/// One image's convolution: `y` `[out, oh, ow]` from `x` `[in, h, w]` and the transformed
/// kernels `u` ([`kernels`]), plus `bias`, then `max(·, 0)` with `relu`.
fn image(x: &[f32], u: &FlexTensor, g: &Geometry, bias: &[f32], relu: bool, y: &mut [f32]) {
    let (th, tw) = (g.oh.div_ceil(2), g.ow.div_ceil(2));
    let padded = Padded::new(x, g, th, tw);
    let rows_per_block =
        (BLOCK / (16 * tw * g.c_in.max(g.c_out) * size_of::<f32>()).max(1)).clamp(1, th.max(1));
    let mut first = 0;
    while first < th {
        let rows = first..(first + rows_per_block).min(th);
        let tiles = rows.len() * tw;
        let mut v = take(&TILES, 16 * tiles * g.c_in);
        vectorized(InputTiles {
            padded: &padded,
            rows: rows.clone(),
            tw,
            v: &mut v,
        });
        let v = tensor(v, [16, tiles, g.c_in]);
        let m = Flex::float_matmul(v.clone(), u.clone());
        put_back(&TILES, into_values(v));
        vectorized(OutputTiles {
            m: values(&m),
            g,
            rows: rows.clone(),
            tw,
            bias,
            relu,
            y: &mut *y,
        });
        first = rows.end;
    }
}

/// An image padded to whole tiles and made channel-last: `[2·th + 2, 2·tw + 2, in]`, zero
/// outside the image.
struct Padded {
    values: Vec<f32>,
    width: usize,
    channels: usize,
}

impl Padded {
    fn new(x: &[f32], g: &Geometry, th: usize, tw: usize) -> Self {
        let (height, width, channels) = (2 * th + 2, 2 * tw + 2, g.c_in);
        let mut values = vec![0f32; height * width * channels];
        for (r, row) in values.chunks_exact_mut(width * channels).enumerate() {
            let Some(src_r) = r.checked_sub(g.pad[0]).filter(|&r| r < g.h) else {
                continue;
            };
            let cols = g.pad[1]..(g.pad[1] + g.w).min(width);
            for (c, plane) in x.chunks_exact((g.h * g.w).max(1)).enumerate() {
                let src = &plane[src_r * g.w..][..cols.len()];
                for (col, &v) in cols.clone().zip(src) {
                    row[col * channels + c] = v;
                }
            }
        }
        Self {
            values,
            width,
            channels,
        }
    }
}

/// `V[ξ][t][c] = (Bᵀ d B)[ξ]` for the tiles of tile rows `rows`, `d` the 4×4 input under tile
/// `t` in channel `c`, with `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]`.
struct InputTiles<'a> {
    padded: &'a Padded,
    rows: std::ops::Range<usize>,
    tw: usize,
    v: &'a mut [f32],
}

impl Vectorized for InputTiles<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Padded {
            values: p,
            width,
            channels: c,
        } = self.padded;
        let (width, c) = (*width, *c);
        let tiles = self.rows.len() * self.tw;
        let mut planes: [&mut [f32]; 16] = {
            let mut chunks = self.v.chunks_exact_mut(tiles * c);
            std::array::from_fn(|_| chunks.next().expect("16 planes"))
        };
        for (t, (i, j)) in self
            .rows
            .flat_map(|i| (0..self.tw).map(move |j| (i, j)))
            .enumerate()
        {
            let base = (2 * i * width + 2 * j) * c;
            let d: [&[f32]; 16] =
                std::array::from_fn(|k| &p[base + ((k / 4) * width + k % 4) * c..][..c]);
            let mut out = planes.each_mut().map(|plane| &mut plane[t * c..][..c]);
            let mut lane = 0;
            while lane + LANES <= c {
                input_tile::<LANES>(&d, &mut out, lane);
                lane += LANES;
            }
            while lane < c {
                input_tile::<1>(&d, &mut out, lane);
                lane += 1;
            }
        }
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

/// Each tile's outputs `Aᵀ M A` (with `Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]`) plus the bias,
/// through the ReLU when asked, written into `y` `[out, oh, ow]` where they fall inside it.
struct OutputTiles<'a> {
    /// `[16, tiles, out]`.
    m: &'a [f32],
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
            m,
            g,
            rows,
            tw,
            bias,
            relu,
            y,
        } = self;
        let (o_n, plane) = (g.c_out, g.oh * g.ow);
        let tiles = rows.len() * tw;
        let planes: [&[f32]; 16] = std::array::from_fn(|k| &m[k * tiles * o_n..][..tiles * o_n]);
        for (t, (i, j)) in rows.flat_map(|i| (0..tw).map(move |j| (i, j))).enumerate() {
            let (r0, c0) = (2 * i, 2 * j);
            let (two_rows, two_cols) = (r0 + 1 < g.oh, c0 + 1 < g.ow);
            // The tile's outputs for channels `first..`, one slice per position, into `y`.
            let mut store = |out: [&[f32]; 4], first: usize| {
                for (l, o) in (first..first + out[0].len()).enumerate() {
                    let at = o * plane + r0 * g.ow + c0;
                    let act = |v: f32| {
                        let v = v + bias[o];
                        if relu && v < 0.0 { 0.0 } else { v }
                    };
                    y[at] = act(out[0][l]);
                    if two_cols {
                        y[at + 1] = act(out[1][l]);
                    }
                    if two_rows {
                        y[at + g.ow] = act(out[2][l]);
                        if two_cols {
                            y[at + g.ow + 1] = act(out[3][l]);
                        }
                    }
                }
            };
            let mut lane = 0;
            while lane + LANES <= o_n {
                let out = output_tile::<LANES>(&planes, t * o_n + lane);
                store(out.each_ref().map(|p| &p[..]), lane);
                lane += LANES;
            }
            while lane < o_n {
                let out = output_tile::<1>(&planes, t * o_n + lane);
                store(out.each_ref().map(|p| &p[..]), lane);
                lane += 1;
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
        let u = kernels(&weight, &g, false).to_contiguous();
        let u = values(&u);
        let at = |xi: usize| u[xi * 16 * 16];
        // G k Gᵀ by hand for k = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]: G k = [[1, 2, 3], [6, 7.5, 9],
        // [2, 2.5, 3], [7, 8, 9]], then each row r → [r0, (r0 + r1 + r2) / 2, (r0 − r1 + r2) / 2, r2].
        let expected = [
            1.0, 3.0, 1.0, 3.0, 6.0, 11.25, 3.75, 9.0, 2.0, 3.75, 1.25, 3.0, 7.0, 12.0, 4.0, 9.0,
        ];
        for (xi, e) in expected.into_iter().enumerate() {
            assert_eq!(at(xi), e, "position {xi}");
        }
        assert!(u.iter().filter(|v| **v != 0.0).count() <= 16);
    }
}
