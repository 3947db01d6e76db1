//! Max pooling over windows that may overlap, with a stride and zero-cost padding (a ResNet's
//! 3×3 pooling with stride 2 and padding 1), on flex (see [`crate::nn::pool`]).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use burn::prelude::*;
use rayon::prelude::*;

use super::{Vectorized, contiguous, dims4, every_other, tensor, values, vectorized};

/// The windows: `kernel`, `stride` and `padding` (rows, columns), padding at most half the
/// kernel so that every window holds an input, and at most 256 taps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl Windows {
    /// The output's `[h, w]` for an input of `size` (floor mode).
    pub fn output(&self, size: [usize; 2]) -> [usize; 2] {
        [0, 1].map(|d| (size[d] + 2 * self.padding[d] - self.kernel[d]) / self.stride[d] + 1)
    }

    /// The taps `0..kernel` of output `o` along dimension `d` that fall inside an input `n` long.
    fn taps(&self, d: usize, o: usize, n: usize) -> std::ops::Range<usize> {
        let start = o * self.stride[d];
        let first = self.padding[d].saturating_sub(start);
        let last = (n + self.padding[d] - start).min(self.kernel[d]);
        first..last
    }
}

/// Max pooling over strided, padded windows as one operation.
#[backend_extension(Flex, Autodiff)]
pub trait WindowPoolOps: Backend {
    /// The maximum of each window of `x` `[batch, channels, h, w]` (padding never wins).
    fn max_pool_windows(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self>;
}

impl WindowPoolOps for Flex {
    fn max_pool_windows(
        x: FlexTensor,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FlexTensor {
        let windows = Windows {
            kernel,
            stride,
            padding,
        };
        evaluate(&x, &windows)
    }
}

/// [`WindowPoolOps::max_pool_windows`] on Burn tensors.
pub fn max_pool_windows(x: Tensor<4>, windows: Windows) -> Tensor<4> {
    let Windows {
        kernel,
        stride,
        padding,
    } = windows;
    let out = <burn::backend::Dispatch as WindowPoolOps>::max_pool_windows(
        x.into_dispatch(),
        kernel,
        stride,
        padding,
    );
    Tensor::from_dispatch(out)
}

/// The pooled output and, per output, the tap `i · kernel[1] + j` its maximum came from.
fn forward(x: &FlexTensor, windows: &Windows) -> (FlexTensor, Vec<u8>) {
    let [b, c, h, w] = dims4(x);
    let [oh, ow] = windows.output([h, w]);
    let x = contiguous(x);
    let mut out = vec![0f32; b * c * oh * ow];
    let mut codes = vec![0u8; out.len()];
    out.par_chunks_mut((oh * ow).max(1))
        .zip(codes.par_chunks_mut((oh * ow).max(1)))
        .zip(values(&x).par_chunks((h * w).max(1)))
        .for_each(|((out, codes), x)| {
            vectorized(Plane {
                x,
                size: [h, w],
                windows,
                out,
                codes,
            })
        });
    (tensor(out, [b, c, oh, ow]), codes)
}

/// The pooled output alone (no autodiff, so no taps to keep).
fn evaluate(x: &FlexTensor, windows: &Windows) -> FlexTensor {
    let [b, c, h, w] = dims4(x);
    let [oh, ow] = windows.output([h, w]);
    let x = contiguous(x);
    let mut out = vec![0f32; b * c * oh * ow];
    out.par_chunks_mut((oh * ow).max(1))
        .zip(values(&x).par_chunks((h * w).max(1)))
        .for_each(|(out, x)| {
            vectorized(PlaneMaxima {
                x,
                size: [h, w],
                windows,
                out,
                rows: &mut vec![0f32; w],
            })
        });
    tensor(out, [b, c, oh, ow])
}

/// One channel's windows, their maxima only: for each output row, the column-wise maxima of
/// its window's input rows into `rows` (contiguous, so vectorised), then each window's columns
/// of that. A NaN wins, as in PyTorch.
struct PlaneMaxima<'a> {
    x: &'a [f32],
    size: [usize; 2],
    windows: &'a Windows,
    out: &'a mut [f32],
    rows: &'a mut [f32],
}

impl Vectorized for PlaneMaxima<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self {
            x,
            size: [h, w],
            windows,
            out,
            rows,
        } = self;
        let max = |a: f32, b: f32| if b > a || b.is_nan() { b } else { a };
        let ow = windows.output([h, w])[1];
        for (oy, out) in out.chunks_exact_mut(ow.max(1)).enumerate() {
            let mut ti = windows.taps(0, oy, h);
            let row = |i: usize| &x[(oy * windows.stride[0] + i - windows.padding[0]) * w..][..w];
            let Some(first) = ti.next() else { continue };
            rows.copy_from_slice(row(first));
            for i in ti {
                for (m, &v) in rows.iter_mut().zip(row(i)) {
                    *m = max(*m, v);
                }
            }
            for (ox, m) in out.iter_mut().enumerate() {
                let x0 = (ox * windows.stride[1]) as isize - windows.padding[1] as isize;
                let mut taps = windows
                    .taps(1, ox, w)
                    .map(|j| rows[(x0 + j as isize) as usize]);
                *m = taps.next().map_or(f32::NEG_INFINITY, |v| taps.fold(v, max));
            }
        }
    }
}

/// One channel's windows: the maxima into `out`, their taps into `codes` (the first maximum;
/// a NaN wins, as in PyTorch). With stride 2 along the rows (a ResNet's pooling), the windows
/// that lie whole inside a row go [`RUN`] at a time, one tap after the other in SIMD lanes;
/// the others one by one.
struct Plane<'a> {
    x: &'a [f32],
    size: [usize; 2],
    windows: &'a Windows,
    out: &'a mut [f32],
    codes: &'a mut [u8],
}

/// Windows searched at once (what [`every_other`] gives).
const RUN: usize = 16;

impl Vectorized for Plane<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self {
            x,
            size: [h, w],
            windows,
            out,
            codes,
        } = self;
        let [ow, kw] = [windows.output([h, w])[1], windows.kernel[1]];
        // The output columns whose windows lie whole inside a row.
        let whole = if windows.stride[1] == 2 {
            let first = windows.padding[1].div_ceil(2);
            let end = (w + windows.padding[1])
                .checked_sub(kw)
                .map_or(0, |last| (last / 2 + 1).min(ow));
            first..end.max(first)
        } else {
            0..0
        };
        let rows = out
            .chunks_exact_mut(ow.max(1))
            .zip(codes.chunks_exact_mut(ow.max(1)));
        for (oy, (out, codes)) in rows.enumerate() {
            let ti = windows.taps(0, oy, h);
            let y0 = oy * windows.stride[0];
            let row = |i: usize| &x[(y0 + i - windows.padding[0]) * w..][..w];
            let mut ox = whole.start;
            while ox + RUN <= whole.end {
                // Input column of window `ox`'s tap 0.
                let x0 = 2 * ox - windows.padding[1];
                let mut taps = ti.clone().flat_map(|i| (0..kw).map(move |j| (i, j)));
                let Some((i, j)) = taps.next() else { break };
                let mut best = every_other(&row(i)[x0 + j..]);
                let mut code = [(i * kw + j) as u8; RUN];
                for (i, j) in taps {
                    let v = every_other(&row(i)[x0 + j..]);
                    let tap = (i * kw + j) as u8;
                    for l in 0..RUN {
                        let wins = v[l] > best[l] || (v[l].is_nan() && !best[l].is_nan());
                        best[l] = if wins { v[l] } else { best[l] };
                        code[l] = if wins { tap } else { code[l] };
                    }
                }
                out[ox..ox + RUN].copy_from_slice(&best);
                codes[ox..ox + RUN].copy_from_slice(&code);
                ox += RUN;
            }
            let rest = (0..whole.start.min(ow)).chain(ox.max(whole.start)..ow);
            for ox in rest {
                let tj = windows.taps(1, ox, w);
                let x0 = ox * windows.stride[1];
                let (mut best, mut tap) = (f32::NEG_INFINITY, None);
                for i in ti.clone() {
                    let row = row(i);
                    for j in tj.clone() {
                        let v = row[x0 + j - windows.padding[1]];
                        if tap.is_none() || v > best || (v.is_nan() && !best.is_nan()) {
                            (best, tap) = (v, Some(i * kw + j));
                        }
                    }
                }
                out[ox] = best;
                codes[ox] = tap.unwrap_or(0) as u8;
            }
        }
    }
}

/// What the backward pass keeps: each maximum's tap, the windows, the input's shape.
type State = (std::sync::Arc<Vec<u8>>, Windows, [usize; 4]);

/// Each output's gradient added at the input its maximum came from (windows that overlap can
/// share one).
fn backward(dy: &FlexTensor, (codes, windows, [b, c, h, w]): &State) -> FlexTensor {
    let [oh, ow] = windows.output([*h, *w]);
    let dy = contiguous(dy);
    let mut dx = vec![0f32; b * c * h * w];
    let [kw, sy, sx, py, px] = [
        windows.kernel[1],
        windows.stride[0],
        windows.stride[1],
        windows.padding[0],
        windows.padding[1],
    ];
    dx.par_chunks_mut((h * w).max(1))
        .zip(values(&dy).par_chunks((oh * ow).max(1)))
        .zip(codes.par_chunks((oh * ow).max(1)))
        .for_each(|((dx, dy), codes)| {
            for (o, (&g, &code)) in dy.iter().zip(codes.iter()).enumerate() {
                let (oy, ox) = (o / ow, o % ow);
                let (i, j) = (code as usize / kw, code as usize % kw);
                dx[(oy * sy + i - py) * w + ox * sx + j - px] += g;
            }
        });
    tensor(dx, [*b, *c, *h, *w])
}

#[derive(Debug)]
struct WindowPoolBackward;

impl Backward<Flex, 1> for WindowPoolBackward {
    type State = State;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        if let [Some(node)] = ops.parents {
            grads.register::<Flex>(node.id, backward(&dy, &ops.state));
        }
    }
}

impl<C: CheckpointStrategy> WindowPoolOps for Autodiff<Flex, C> {
    fn max_pool_windows(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        let windows = Windows {
            kernel,
            stride,
            padding,
        };
        let nodes = [x.node()];
        let x = x.into_primitive();
        let (y, codes) = forward(&x, &windows);
        match WindowPoolBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                prep.finish((std::sync::Arc::new(codes), windows, dims4(&x)), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NaN in a window is that window's maximum, with and without the taps, as in PyTorch.
    #[test]
    fn a_nan_wins_its_windows() {
        let windows = Windows {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
        };
        // Row r, column c holds 5r + c; the centre is NaN, inside the middle window only
        // (rows and columns 1..=3).
        let mut x: Vec<f32> = (0..25).map(|v| v as f32).collect();
        x[12] = f32::NAN;
        let x = tensor(x, [1, 1, 5, 5]);
        let expected = [6.0, 8.0, 9.0, 16.0, f32::NAN, 19.0, 21.0, 23.0, 24.0];
        for out in [evaluate(&x, &windows), forward(&x, &windows).0] {
            let got = values(&out);
            assert_eq!(got.len(), 9);
            for (i, (&g, &e)) in got.iter().zip(&expected).enumerate() {
                assert!(
                    g == e || (g.is_nan() && e.is_nan()),
                    "output {i}: {g}, not {e}"
                );
            }
        }
    }

    #[test]
    fn windows_searched_in_runs_keep_the_first_maximum_and_the_first_nan() {
        // 5 rows of 75 columns: 38 outputs a row, of which 32 go in two runs of 16. Few
        // distinct values, so that most windows hold ties, and NaNs in some.
        let windows = Windows {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
        };
        let [h, w] = [5, 75];
        let mut x: Vec<f32> = (0..h * w).map(|v| ((v * 7) % 5) as f32).collect();
        for at in [80, 81, 152, 230, 299] {
            x[at] = f32::NAN;
        }
        let (out, codes) = forward(&tensor(x.clone(), [1, 1, h, w]), &windows);
        let [oh, ow] = windows.output([h, w]);
        assert_eq!(ow, 38);
        for (o, (&got, &code)) in values(&out).iter().zip(&codes).enumerate() {
            let (oy, ox) = (o / ow, o % ow);
            // The first tap, in window order, holding the maximum or the first NaN.
            let mut best: Option<(f32, usize)> = None;
            for i in windows.taps(0, oy, h) {
                for j in windows.taps(1, ox, w) {
                    let v = x[(2 * oy + i - 1) * w + 2 * ox + j - 1];
                    let wins = match best {
                        None => true,
                        Some((b, _)) => v > b || (v.is_nan() && !b.is_nan()),
                    };
                    if wins {
                        best = Some((v, i * 3 + j));
                    }
                }
            }
            let (value, tap) = best.expect("a window holds an input");
            assert_eq!(usize::from(code), tap, "output ({oy}, {ox})");
            assert!(
                got == value || (got.is_nan() && value.is_nan()),
                "output ({oy}, {ox}): {got}, not {value}"
            );
        }
        assert_eq!(codes.len(), oh * ow);
    }
}
