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
        forward(&x, window).0
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

/// The maxima of the windows of one channel `plane` (`w` wide) into `out`, and the tap each
/// one came from into `codes` (see [`max_row`]).
pub(super) fn max_plane(
    plane: &[f32],
    w: usize,
    window: [usize; 2],
    out: &mut [f32],
    codes: &mut [u8],
) {
    vectorized(MaxPlane {
        x: plane,
        w,
        window,
        out,
        codes,
    });
}

struct MaxPlane<'a> {
    x: &'a [f32],
    w: usize,
    window: [usize; 2],
    out: &'a mut [f32],
    codes: &'a mut [u8],
}

impl Vectorized for MaxPlane<'_> {
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

impl MaxPlane<'_> {
    #[inline(always)]
    fn rows<const KW: usize>(self) {
        let Self {
            x,
            w,
            window: [kh, _],
            out,
            codes,
        } = self;
        let ow = (w / KW).max(1);
        let rows = out.chunks_exact_mut(ow).zip(codes.chunks_exact_mut(ow));
        for (oy, (out, codes)) in rows.enumerate() {
            max_row::<KW>(&x[oy * kh * w..][..kh * w], w, kh, out, codes);
        }
    }
}

/// The gradient before a pooling, for the channels of one image: each gradient of `dy` at its
/// window's maximum (tap `codes`), zero elsewhere. With `gate` (the pooled output of a ReLU),
/// only where the gate is positive: elsewhere the ReLU stopped it. `size` is `[h, w]` before
/// the pooling.
pub(super) struct Unpool<'a> {
    pub dy: &'a [f32],
    pub gate: Option<&'a [f32]>,
    pub codes: &'a [u8],
    pub window: [usize; 2],
    pub size: [usize; 2],
    pub out: &'a mut [f32],
}

impl Vectorized for Unpool<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let [kh, kw] = self.window;
        let [h, w] = self.size;
        let pw = w / kw;
        let per_plane = ((h / kh) * pw).max(1);
        self.out.fill(0.0);
        for (p, plane) in self.out.chunks_exact_mut((h * w).max(1)).enumerate() {
            let outputs = p * per_plane..(p + 1) * per_plane;
            let (dy, codes) = (&self.dy[outputs.clone()], &self.codes[outputs.clone()]);
            let gate = self.gate.map(|g| &g[outputs]);
            for (o, (&d, &c)) in dy.iter().zip(codes).enumerate() {
                if gate.is_none_or(|g| g[o] > 0.0) {
                    let (py, px) = (o / pw, o % pw);
                    let (i, j) = (usize::from(c) / kw, usize::from(c) % kw);
                    plane[(py * kh + i) * w + px * kw + j] = d;
                }
            }
        }
    }
}

/// The pooled output and the tap of each maximum.
fn forward(x: &FlexTensor, window: [usize; 2]) -> (FlexTensor, Vec<u8>) {
    let [b, c, h, w] = dims4(x);
    let (oh, ow) = (h / window[0], w / window[1]);
    let x = contiguous(x);
    let mut out = vec![0f32; b * c * oh * ow];
    let mut codes = vec![0u8; out.len()];
    out.par_chunks_mut((oh * ow).max(1))
        .zip(codes.par_chunks_mut((oh * ow).max(1)))
        .zip(values(&x).par_chunks((h * w).max(1)))
        .for_each(|((out, codes), x)| max_plane(x, w, window, out, codes));
    (tensor(out, [b, c, oh, ow]), codes)
}

/// What the backward pass keeps: each maximum's tap, the window, the input's shape.
type State = (std::sync::Arc<Vec<u8>>, [usize; 2], [usize; 4]);

fn backward(dy: &FlexTensor, (codes, window, [b, c, h, w]): &State) -> FlexTensor {
    let per_image = (c * (h / window[0]) * (w / window[1])).max(1);
    let dy = contiguous(dy);
    let mut dx = vec![0f32; b * c * h * w];
    dx.par_chunks_mut((c * h * w).max(1))
        .zip(values(&dy).par_chunks(per_image))
        .zip(codes.par_chunks(per_image))
        .for_each(|((out, dy), codes)| {
            vectorized(Unpool {
                dy,
                gate: None,
                codes,
                window: *window,
                size: [*h, *w],
                out,
            })
        });
    tensor(dx, [*b, *c, *h, *w])
}

#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    type State = State;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        if let [Some(node)] = ops.parents {
            grads.register::<Flex>(node.id, backward(&dy, &ops.state));
        }
    }
}

impl<C: CheckpointStrategy> PoolOps for Autodiff<Flex, C> {
    fn max_pool_blocks(x: FloatTensor<Self>, window: [usize; 2]) -> FloatTensor<Self> {
        let nodes = [x.node()];
        let x = x.into_primitive();
        let (y, codes) = forward(&x, window);
        match PoolBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                prep.finish((std::sync::Arc::new(codes), window, dims4(&x)), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}
