//! Causal multi-head self-attention, from the fused query/key/value projection to the heads'
//! outputs side by side:
//!
//! ```text
//! qkv [batch, time, 3 n_embd] → q, k, v per head [time, head_dim]
//! y_head = softmax(q·kᵀ · scale + causal mask) · v
//! y [batch, time, n_embd] = the heads' y side by side
//! ```
//!
//! Written with Burn's operations this is the heads split off (`reshape`, `swap_dims`, a copy
//! each), the scores, a mask, the softmax's five passes, the product with the values and the
//! heads merged back (another copy), and twice as many operations in the backward pass: in the
//! small GPT of `train-text` these small passes left the matrix products' threads waiting. On
//! flex, [`AttentionOps::causal_self_attention`] is one operation each way: a task per batch
//! element and head reads its queries, keys and values straight out of `qkv`, computes each
//! query's row of scores, softmax and weighted sum of values at once, and writes its part of
//! `y`. Its `Autodiff` implementation keeps only `qkv` and recomputes the probabilities in the
//! backward pass, one query row at a time (as FlashAttention does), so no `[time, time]` matrix
//! per head is kept between the passes. Elsewhere, and for inference over long contexts on flex
//! (which has a fused attention kernel of its own), the same function runs as Burn's
//! operations ([`causal_self_attention_ops`]), except on a CubeCL GPU at inference, where one
//! kernel of ours runs (`crate::cube`, with the `cuda` or `wgpu` feature).

use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

/// Causal self-attention of `n_head` heads over `qkv` `[batch, time, 3 n_embd]` (queries, keys
/// and values side by side, each `n_head` heads wide), scores scaled by `scale`:
/// `[batch, time, n_embd]`, the heads' outputs side by side.
///
/// On flex our operation runs when training (Burn has no attention with its own backward
/// pass), and for inference up to [`INFERENCE_UP_TO`] positions; on longer contexts flex's
/// own fused attention is faster and runs, through [`causal_self_attention_ops`].
pub fn causal_self_attention(qkv: Tensor<3>, n_head: usize, scale: f64) -> Tensor<3> {
    #[cfg(feature = "flex")]
    if strata_tensor::flex::available(&qkv)
        && (qkv.device().is_autodiff() || qkv.dims()[1] <= INFERENCE_UP_TO)
    {
        let y = <burn::backend::Dispatch as flex::AttentionOps>::causal_self_attention(
            qkv.into_dispatch(),
            n_head,
            scale as f32,
        );
        return Tensor::from_dispatch(y);
    }
    #[cfg(feature = "cube")]
    if crate::cube::available(&qkv) && qkv.dims()[1] <= crate::cube::MAX_KEYS {
        let [q, k, v] = split_heads(qkv, n_head);
        return crate::cube::attention(q, k, v, scale);
    }
    causal_self_attention_ops(qkv, n_head, scale)
}

/// The longest context for which inference on flex uses our operation. Measured without
/// autodiff against flex's attention (GPT-2's heads of 64): 13 against 20 ms at 4 × 256
/// positions, 22 against 22 ms at 2 × 512, 47 against 39 ms at 1 × 1024; at `train-text`'s 64
/// positions ours takes half the time.
pub const INFERENCE_UP_TO: usize = 256;

/// The same as Burn's operations (any backend, any float dtype).
pub fn causal_self_attention_ops(qkv: Tensor<3>, n_head: usize, scale: f64) -> Tensor<3> {
    let [q, k, v] = split_heads(qkv, n_head);
    merge_heads(attend(q, k, v, scale))
}

/// Queries, keys and values of `qkv` `[batch, time, 3 n_embd]`, each `[batch, n_head, time,
/// head_dim]`.
pub fn split_heads(qkv: Tensor<3>, n_head: usize) -> [Tensor<4>; 3] {
    let [b, t, e3] = qkv.dims();
    let e = e3 / 3;
    let heads = |m: Tensor<3>| m.reshape([b, t, n_head, e / n_head]).swap_dims(1, 2);
    [
        heads(qkv.clone().narrow(2, 0, e)),
        heads(qkv.clone().narrow(2, e, e)),
        heads(qkv.narrow(2, 2 * e, e)),
    ]
}

/// `[batch, n_head, time, head_dim]` → `[batch, time, n_head · head_dim]`.
pub fn merge_heads(y: Tensor<4>) -> Tensor<3> {
    let [b, h, t, d] = y.dims();
    y.swap_dims(1, 2).reshape([b, t, h * d])
}

/// `merge_heads(attend(q, k, v, scale))`: on a CubeCL GPU without autodiff, for up to
/// `cube::MAX_KEYS` keys, one kernel of ours (`crate::cube`), which also
/// writes the heads merged.
pub fn attend_merged(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, scale: f64) -> Tensor<3> {
    #[cfg(feature = "cube")]
    if crate::cube::available(&q) && k.dims()[2] <= crate::cube::MAX_KEYS {
        return crate::cube::attention(q, k, v, scale);
    }
    merge_heads(attend(q, k, v, scale))
}

/// `softmax(q·kᵀ · scale + causal mask) · v` with Burn's attention (the mask is shifted when
/// `k` holds more positions than `q`: those before `q`'s, from a cache).
pub fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, scale: f64) -> Tensor<4> {
    let options = AttentionModuleOptions {
        scale: Some(scale),
        softcap: None,
        is_causal: true,
    };
    attention(q, k, v, None, None, options)
}

#[cfg(feature = "flex")]
pub use flex::AttentionOps;

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::flex::FlexTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
    use rayon::prelude::*;
    use strata_tensor::flex::{contiguous, tensor, values};
    use strata_tensor::simd::{Vectorized, exp, vectorized};

    /// Causal self-attention as one operation.
    #[backend_extension(Flex, Autodiff)]
    pub trait AttentionOps: Backend {
        /// See [`super::causal_self_attention`].
        fn causal_self_attention(
            qkv: FloatTensor<Self>,
            n_head: usize,
            scale: f32,
        ) -> FloatTensor<Self>;
    }

    impl AttentionOps for Flex {
        fn causal_self_attention(qkv: FloatTensor<Self>, n_head: usize, scale: f32) -> FlexTensor {
            forward(&qkv, n_head, scale)
        }
    }

    /// The sizes of one attention: `[batch, time, n_embd]`, heads and the scores' factor.
    #[derive(Clone, Copy, Debug)]
    struct Dims {
        b: usize,
        t: usize,
        e: usize,
        n_head: usize,
        scale: f32,
    }

    impl Dims {
        fn of(qkv: &FlexTensor, n_head: usize, scale: f32) -> Self {
            let shape = qkv.shape();
            let [b, t, e3] = [shape[0], shape[1], shape[2]];
            assert!(
                e3 % 3 == 0 && (e3 / 3) % n_head == 0,
                "causal_self_attention: qkv's last dimension ({e3}) must be 3 × n_head ({n_head}) × head_dim"
            );
            Self {
                b,
                t,
                e: e3 / 3,
                n_head,
                scale,
            }
        }

        fn head_dim(&self) -> usize {
            self.e / self.n_head
        }
    }

    /// One task per batch element and head, each producing `width` columns per position; then
    /// each batch element's rows gathered into `out` (`per_row` wide), the task's columns at
    /// `place(head)`.
    fn per_head(
        dims: Dims,
        width: usize,
        per_row: usize,
        task: impl Fn(usize, usize, &mut [f32]) + Sync,
        place: impl Fn(usize, usize) -> usize + Sync,
    ) -> Vec<f32> {
        let Dims { b, t, n_head, .. } = dims;
        let parts: Vec<Vec<f32>> = (0..b * n_head)
            .into_par_iter()
            .map(|i| {
                let mut part = vec![0f32; t * width];
                task(i / n_head, i % n_head, &mut part);
                part
            })
            .collect();
        let d = dims.head_dim();
        let mut out = vec![0f32; b * t * per_row];
        out.par_chunks_mut((t * per_row).max(1))
            .zip(parts.par_chunks(n_head))
            .for_each(|(out, heads)| {
                for (h, part) in heads.iter().enumerate() {
                    for (row, src) in out.chunks_exact_mut(per_row).zip(part.chunks_exact(width)) {
                        for (g, src) in src.chunks_exact(d).enumerate() {
                            row[place(h, g)..][..d].copy_from_slice(src);
                        }
                    }
                }
            });
        out
    }

    fn forward(qkv: &FlexTensor, n_head: usize, scale: f32) -> FlexTensor {
        let dims = Dims::of(qkv, n_head, scale);
        let qkv = contiguous(qkv);
        let all = values(&qkv);
        let Dims { b, t, e, .. } = dims;
        let d = dims.head_dim();
        let y = per_head(
            dims,
            d,
            e,
            |bi, h, y| {
                vectorized(Head {
                    qkv: &all[bi * t * 3 * e..][..t * 3 * e],
                    dims,
                    head: h,
                    dy: None,
                    out: y,
                })
            },
            |h, _| h * d,
        );
        tensor(y, [b, t, e])
    }

    /// The gradient of `qkv` from `qkv` and the output's gradient `dy`.
    fn backward(qkv: &FlexTensor, dy: &FlexTensor, n_head: usize, scale: f32) -> FlexTensor {
        let dims = Dims::of(qkv, n_head, scale);
        let (qkv, dy) = (contiguous(qkv), contiguous(dy));
        let (all, dy) = (values(&qkv), values(&dy));
        let Dims { b, t, e, .. } = dims;
        let d = dims.head_dim();
        // Each task's columns: dq, dk and dv of its head, each `d` wide.
        let dqkv = per_head(
            dims,
            3 * d,
            3 * e,
            |bi, h, out| {
                vectorized(Head {
                    qkv: &all[bi * t * 3 * e..][..t * 3 * e],
                    dims,
                    head: h,
                    dy: Some(&dy[bi * t * e..][..t * e]),
                    out,
                })
            },
            |h, g| g * e + h * d,
        );
        tensor(dqkv, [b, t, 3 * e])
    }

    /// One head of one batch element. Forward (`dy` none): its output, `[time, head_dim]`, into
    /// `out`. Backward: the gradients of its queries, keys and values, `[time, 3 head_dim]`.
    struct Head<'a> {
        /// This batch element's `[time, 3 n_embd]`.
        qkv: &'a [f32],
        dims: Dims,
        head: usize,
        /// This batch element's output gradient, `[time, n_embd]`.
        dy: Option<&'a [f32]>,
        out: &'a mut [f32],
    }

    impl Vectorized for Head<'_> {
        type Output = ();

        #[inline(always)]
        fn run(self) {
            // GPT-2's head widths as constants, so that the loops over a head are unrolled.
            match self.dims.head_dim() {
                32 => self.head::<32>(),
                64 => self.head::<64>(),
                _ => self.head::<0>(),
            }
        }
    }

    impl Head<'_> {
        /// The work of [`Head`], with the head's width `D` known to the compiler (0: not).
        #[inline(always)]
        fn head<const D: usize>(self) {
            let Dims { t, e, scale, .. } = self.dims;
            let d = if D > 0 { D } else { self.dims.head_dim() };
            let at = |i: usize, part: usize| &self.qkv[i * 3 * e + part * e + self.head * d..][..d];
            // Keys (and for the backward pass values) transposed, `[head_dim, time]`: a row of
            // scores is then a sum of `head_dim` rows scaled by the query's numbers, each
            // product vectorised along the row.
            let transposed = |part: usize| {
                let mut m = vec![0f32; d * t];
                for j in 0..t {
                    for (c, &x) in at(j, part).iter().enumerate() {
                        m[c * t + j] = x;
                    }
                }
                m
            };
            let k_t = transposed(1);
            let v_t = self.dy.map(|_| transposed(2));
            let mut p = vec![0f32; t];
            let mut dp = vec![0f32; t];
            let (mut dk, mut dv) = (vec![0f32; t * d], vec![0f32; t * d]);
            for i in 0..t {
                let q = at(i, 0);
                let p = &mut p[..=i];
                row_times(q, &k_t, t, p);
                softmax(p, scale);
                match (self.dy, &v_t) {
                    (Some(dy), Some(v_t)) => {
                        let dy = &dy[i * e + self.head * d..][..d];
                        let dp = &mut dp[..=i];
                        row_times(dy, v_t, t, dp);
                        // dS = P ⊙ (dP - Σ P ⊙ dP), times the scale of the scores.
                        let dot: f32 = p.iter().zip(dp.iter()).map(|(p, dp)| p * dp).sum();
                        let row = &mut self.out[i * 3 * d..][..3 * d];
                        let dq = &mut row[..d];
                        for (j, (&p, ds)) in p.iter().zip(dp.iter_mut()).enumerate() {
                            *ds = p * (*ds - dot) * scale;
                            axpy(*ds, at(j, 1), dq);
                            axpy(*ds, q, &mut dk[j * d..][..d]);
                            axpy(p, dy, &mut dv[j * d..][..d]);
                        }
                    }
                    _ => {
                        let y = &mut self.out[i * d..][..d];
                        for (j, &p) in p.iter().enumerate() {
                            axpy(p, at(j, 2), y);
                        }
                    }
                }
            }
            if self.dy.is_some() {
                for ((row, dk), dv) in self
                    .out
                    .chunks_exact_mut(3 * d)
                    .zip(dk.chunks_exact(d))
                    .zip(dv.chunks_exact(d))
                {
                    row[d..2 * d].copy_from_slice(dk);
                    row[2 * d..].copy_from_slice(dv);
                }
            }
        }
    }

    /// `out[j] = Σ_c x[c] · m[c, j]` for the first `out.len()` columns of `m` (`x.len()` rows,
    /// `width` wide).
    #[inline(always)]
    fn row_times(x: &[f32], m: &[f32], width: usize, out: &mut [f32]) {
        out.fill(0.0);
        let n = out.len();
        for (c, &x) in x.iter().enumerate() {
            axpy(x, &m[c * width..][..n], out);
        }
    }

    /// `y += a · x`.
    #[inline(always)]
    fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y += a * x;
        }
    }

    /// `s ← softmax(s · scale)`, in place.
    #[inline(always)]
    fn softmax(s: &mut [f32], scale: f32) {
        let max = s.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mut sum = 0.0;
        for x in s.iter_mut() {
            *x = exp((*x - max) * scale);
            sum += *x;
        }
        let inv = 1.0 / sum;
        s.iter_mut().for_each(|x| *x *= inv);
    }

    #[derive(Debug)]
    struct AttentionBackward;

    impl Backward<Flex, 1> for AttentionBackward {
        /// `qkv`, the heads and the scale.
        type State = (FlexTensor, usize, f32);

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let dy = grads.consume::<Flex>(&ops.node);
            let (qkv, n_head, scale) = &ops.state;
            if let [Some(node)] = ops.parents {
                grads.register::<Flex>(node.id, backward(qkv, &dy, *n_head, *scale));
            }
        }
    }

    impl<C: CheckpointStrategy> AttentionOps for Autodiff<Flex, C> {
        fn causal_self_attention(
            qkv: FloatTensor<Self>,
            n_head: usize,
            scale: f32,
        ) -> FloatTensor<Self> {
            let nodes = [qkv.node()];
            let qkv = qkv.into_primitive();
            let y = forward(&qkv, n_head, scale);
            match AttentionBackward
                .prepare::<C>(nodes)
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish((qkv, n_head, scale), y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            }
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    /// Ours against Burn's operations, forward and every gradient of `qkv`, for sizes with
    /// tails after the vectorised parts (a head of 5), one position, and GPT-2's head width.
    #[test]
    fn matches_burns_attention_forward_and_backward() {
        for device in [Device::flex(), Device::flex().autodiff()] {
            strata_tensor::seed(&device, 5);
            for (b, t, n_head, d, scale) in
                [(2, 7, 3, 5, 0.4), (1, 1, 2, 4, 0.5), (3, 33, 2, 64, 0.125)]
            {
                let e = n_head * d;
                let qkv =
                    Tensor::<3>::random([b, t, 3 * e], Distribution::Normal(0.0, 1.5), &device);
                let qkv = if device.is_autodiff() {
                    qkv.require_grad()
                } else {
                    qkv
                };
                let ours = Tensor::from_dispatch(
                    <burn::backend::Dispatch as AttentionOps>::causal_self_attention(
                        qkv.clone().into_dispatch(),
                        n_head,
                        scale as f32,
                    ),
                );
                let reference = causal_self_attention_ops(qkv.clone(), n_head, scale);
                assert_eq!(ours.dims(), [b, t, e]);
                ours.clone().into_data().assert_approx_eq::<f32>(
                    &reference.clone().into_data(),
                    Tolerance::absolute(1e-5),
                );
                if device.is_autodiff() {
                    let w =
                        Tensor::<3>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &device);
                    let g_ours = (ours * w.clone()).sum().backward();
                    let g_ref = (reference * w).sum().backward();
                    qkv.grad(&g_ours)
                        .unwrap()
                        .into_data()
                        .assert_approx_eq::<f32>(
                            &qkv.grad(&g_ref).unwrap().into_data(),
                            Tolerance::absolute(1e-5),
                        );
                }
            }
        }
    }

    /// A query sees only itself and the positions before it: changing the last position's
    /// keys and values leaves every earlier output as it was.
    #[test]
    fn the_future_is_masked() {
        let device = Device::flex().autodiff();
        strata_tensor::seed(&device, 9);
        let qkv = Tensor::<3>::random([1, 6, 12], Distribution::Normal(0.0, 1.0), &device);
        let changed = qkv
            .clone()
            .slice_assign([0..1, 5..6, 0..12], Tensor::ones([1, 1, 12], &device) * 3.0);
        let a = causal_self_attention(qkv, 2, 0.5).narrow(1, 0, 5);
        let b = causal_self_attention(changed, 2, 0.5).narrow(1, 0, 5);
        a.into_data()
            .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(0.0));
    }
}
