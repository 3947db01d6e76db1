//! Dropout with a hashed mask on flex (see [`crate::nn::dropout`](mod@crate::nn::dropout)).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;
use rayon::prelude::*;

use super::{Vectorized, contiguous, values, vectorized};

/// Dropout as one operation.
#[backend_extension(Flex, Autodiff)]
pub trait DropoutOps: Backend {
    /// `x · mask / keep`, where element `i` is kept when a hash of `(seed, i)` is below
    /// `keep · 2³²`.
    fn dropout_hashed(x: FloatTensor<Self>, seed: u64, keep: f32) -> FloatTensor<Self>;
}

impl DropoutOps for Flex {
    fn dropout_hashed(x: FloatTensor<Self>, seed: u64, keep: f32) -> FloatTensor<Self> {
        apply_mask(&x, seed, keep)
    }
}

/// [`DropoutOps::dropout_hashed`] on Burn tensors.
pub fn dropout<const D: usize>(x: Tensor<D>, seed: u64, keep: f32) -> Tensor<D> {
    let out =
        <burn::backend::Dispatch as DropoutOps>::dropout_hashed(x.into_dispatch(), seed, keep);
    Tensor::from_dispatch(out)
}

/// A 32-bit integer hash with good avalanche (Chris Wellons' "lowbias32").
#[inline(always)]
fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// `t · mask / keep`: the forward pass, and, applied to the output's gradient, the backward.
fn apply_mask(t: &FlexTensor, seed: u64, keep: f32) -> FlexTensor {
    let t = contiguous(t);
    let (lo, hi) = (seed as u32, (seed >> 32) as u32);
    let threshold = (f64::from(keep) * 4_294_967_296.0).min(f64::from(u32::MAX)) as u32;
    let scale = 1.0 / keep;
    const CHUNK: usize = 1 << 14;
    let mut out = vec![0f32; values(&t).len()];
    out.par_chunks_mut(CHUNK)
        .zip(values(&t).par_chunks(CHUNK))
        .enumerate()
        .for_each(|(c, (y, x))| {
            vectorized(Mask {
                first: (c * CHUNK) as u32,
                key: [lo, hi],
                threshold,
                scale,
                x,
                y,
            })
        });
    FlexTensor::from_data(TensorData::new(out, t.shape()))
}

/// `y = x · scale` where the hash of `(key, first + i)` is below `threshold`, else 0.
struct Mask<'a> {
    first: u32,
    key: [u32; 2],
    threshold: u32,
    scale: f32,
    x: &'a [f32],
    y: &'a mut [f32],
}

impl Vectorized for Mask<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let [lo, hi] = self.key;
        for (i, (y, &x)) in self.y.iter_mut().zip(self.x).enumerate() {
            let h = mix(mix(mix(self.first + i as u32) ^ lo) ^ hi);
            *y = if h < self.threshold {
                x * self.scale
            } else {
                0.0
            };
        }
    }
}

#[derive(Debug)]
struct DropoutBackward;

impl Backward<Flex, 1> for DropoutBackward {
    type State = (u64, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let (seed, keep) = ops.state;
        if let [Some(node)] = ops.parents {
            grads.register::<Flex>(node.id, apply_mask(&dy, seed, keep));
        }
    }
}

impl<C: CheckpointStrategy> DropoutOps for Autodiff<Flex, C> {
    fn dropout_hashed(x: FloatTensor<Self>, seed: u64, keep: f32) -> FloatTensor<Self> {
        let nodes = [x.node()];
        let y = apply_mask(&x.into_primitive(), seed, keep);
        match DropoutBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((seed, keep), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_keeps_the_asked_share_and_is_a_function_of_the_seed() {
        let x = FlexTensor::from_data(TensorData::new(vec![1f32; 100_000], [100_000]));
        let kept = |seed| {
            let y = apply_mask(&x, seed, 0.75);
            values(&y)
                .iter()
                .map(|&v| usize::from(v != 0.0))
                .sum::<usize>()
        };
        let n = kept(7);
        assert!((74_000..76_000).contains(&n), "{n} of 100000 kept");
        assert_eq!(n, kept(7));
        // Seeds one apart give unrelated masks (not the same mask shuffled).
        let a = apply_mask(&x, 7, 0.75);
        let b = apply_mask(&x, 8, 0.75);
        let same = values(&a)
            .iter()
            .zip(values(&b))
            .filter(|(a, b)| (**a == 0.0) == (**b == 0.0))
            .count();
        assert!((60_000..65_000).contains(&same), "{same} positions agree");
        let y = apply_mask(&x, 7, 0.75);
        assert!(
            values(&y)
                .iter()
                .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6)
        );
    }
}
