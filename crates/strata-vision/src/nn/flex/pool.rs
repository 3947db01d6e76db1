//! Max pooling over non-overlapping `kh × kw` windows on flex (see [`crate::nn::pool`]).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use burn::prelude::*;
use rayon::prelude::*;

use super::{Vectorized, contiguous, dims4, tensor, values, vectorized};

/// Max pooling as one operation.
#[backend_extension(Flex, Autodiff)]
pub trait PoolOps: Backend {
    /// The maximum of each `window[0] × window[1]` block of `x` `[batch, channels, h, w]`
    /// (stride = window; rows and columns past the last whole window are left out).
    fn max_pool_blocks(x: FloatTensor<Self>, window: [usize; 2]) -> FloatTensor<Self>;
}

impl PoolOps for Flex {
    fn max_pool_blocks(x: FloatTensor<Self>, window: [usize; 2]) -> FloatTensor<Self> {
        forward(&x, window)
    }
}

/// [`PoolOps::max_pool_blocks`] on Burn tensors.
pub fn max_pool(x: Tensor<4>, window: [usize; 2]) -> Tensor<4> {
    let out = <burn::backend::Dispatch as PoolOps>::max_pool_blocks(x.into_dispatch(), window);
    Tensor::from_dispatch(out)
}

/// For one row of outputs (`out`, `out.len()` wide) over the `kh` input rows `rows` (`kh × w`)
/// and windows `KW` wide: the window maxima into `out`, and into `arg` the tap `i · KW + j`
/// each comes from (the first one; a NaN wins, as in PyTorch). The window width is a constant
/// so that the loops over a row vectorise.
#[inline(always)]
fn max_row<const KW: usize>(rows: &[f32], w: usize, kh: usize, out: &mut [f32], arg: &mut [u8]) {
    for i in 0..kh {
        let row = &rows[i * w..][..out.len() * KW];
        for ((m, a), win) in out.iter_mut().zip(arg.iter_mut()).zip(row.chunks_exact(KW)) {
            for (j, &v) in win.iter().enumerate() {
                let tap = (i * KW + j) as u8;
                let wins = tap == 0 || v > *m || (v.is_nan() && !m.is_nan());
                *m = if wins { v } else { *m };
                *a = if wins { tap } else { *a };
            }
        }
    }
}

/// The maxima of the windows of one channel `plane` (`w` wide) into `out`, and each one's tap
/// into `codes` (see [`max_row`]).
pub(super) fn max_plane(
    plane: &[f32],
    w: usize,
    window: [usize; 2],
    out: &mut [f32],
    codes: &mut [u8],
) {
    vectorized(Plane {
        x: plane,
        w,
        window,
        dy: None,
        out,
        codes: Some(codes),
    });
}

fn forward(x: &FlexTensor, window: [usize; 2]) -> FlexTensor {
    let [b, c, h, w] = dims4(x);
    let (oh, ow) = (h / window[0], w / window[1]);
    let x = contiguous(x);
    let mut out = vec![0f32; b * c * oh * ow];
    out.par_chunks_mut((oh * ow).max(1))
        .zip(values(&x).par_chunks((h * w).max(1)))
        .for_each(|(out, x)| {
            vectorized(Plane {
                x,
                w,
                window,
                dy: None,
                out,
                codes: None,
            })
        });
    tensor(out, [b, c, oh, ow])
}

fn backward(x: &FlexTensor, dy: &FlexTensor, window: [usize; 2]) -> FlexTensor {
    let [b, c, h, w] = dims4(x);
    let (oh, ow) = (h / window[0], w / window[1]);
    let (x, dy) = (contiguous(x), contiguous(dy));
    let mut dx = vec![0f32; b * c * h * w];
    dx.par_chunks_mut((h * w).max(1))
        .zip(values(&x).par_chunks((h * w).max(1)))
        .zip(values(&dy).par_chunks((oh * ow).max(1)))
        .for_each(|((out, x), dy)| {
            vectorized(Plane {
                x,
                w,
                window,
                dy: Some(dy),
                out,
                codes: None,
            })
        });
    tensor(dx, [b, c, h, w])
}

/// One channel `x` (`w` wide): without `dy`, the window maxima into `out` (and their taps into
/// `codes` when given); with the output's gradient `dy`, each gradient to its window's maximum
/// in `out` (the input's gradient; every number under a window written once).
struct Plane<'a> {
    x: &'a [f32],
    w: usize,
    window: [usize; 2],
    dy: Option<&'a [f32]>,
    out: &'a mut [f32],
    codes: Option<&'a mut [u8]>,
}

impl Vectorized for Plane<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        match self.window[1] {
            1 => self.rows::<1>(),
            2 => self.rows::<2>(),
            3 => self.rows::<3>(),
            _ => self.rows::<4>(),
        }
    }
}

impl Plane<'_> {
    #[inline(always)]
    fn rows<const KW: usize>(self) {
        let Self {
            x,
            w,
            window: [kh, _],
            dy,
            out,
            mut codes,
        } = self;
        let ow = w / KW;
        let oh = x.len() / w.max(1) / kh.max(1);
        let (mut m, mut arg) = (vec![0f32; ow], vec![0u8; ow]);
        for oy in 0..oh {
            let rows = &x[oy * kh * w..][..kh * w];
            let Some(dy) = dy else {
                let arg = match codes.as_deref_mut() {
                    Some(codes) => &mut codes[oy * ow..][..ow],
                    None => &mut arg[..],
                };
                max_row::<KW>(rows, w, kh, &mut out[oy * ow..][..ow], arg);
                continue;
            };
            max_row::<KW>(rows, w, kh, &mut m, &mut arg);
            let dy = &dy[oy * ow..][..ow];
            for i in 0..kh {
                let row = &mut out[(oy * kh + i) * w..][..ow * KW];
                for ((win, &g), &a) in row.chunks_exact_mut(KW).zip(dy).zip(&arg) {
                    for (j, d) in win.iter_mut().enumerate() {
                        *d = if usize::from(a) == i * KW + j { g } else { 0.0 };
                    }
                }
            }
        }
    }
}

#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    type State = (FlexTensor, [usize; 2]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, window) = ops.state;
        if let [Some(node)] = ops.parents {
            grads.register::<Flex>(node.id, backward(&x, &dy, window));
        }
    }
}

impl<C: CheckpointStrategy> PoolOps for Autodiff<Flex, C> {
    fn max_pool_blocks(x: FloatTensor<Self>, window: [usize; 2]) -> FloatTensor<Self> {
        let nodes = [x.node()];
        let x = x.into_primitive();
        let y = forward(&x, window);
        match PoolBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x, window), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}
