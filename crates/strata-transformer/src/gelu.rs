//! GELU's tanh approximation, GPT-2's activation (`gelu_new`).
//!
//! `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))` is computed as `x σ(u)` with
//! `u = 2 √(2/π) (x + 0.044715 x³)` (the same function: `1 + tanh(v) = 2 σ(2v)`), since a
//! sigmoid costs one `exp` where `tanh` costs more.
//!
//! Written with Burn's operations it is seven elementwise passes forward and about twice as many
//! in the backward pass, each over the MLP's widest tensor, on one thread, with libm's `expf` one
//! number at a time: in the small GPT of `train-text` that was a fifth of a training step. On flex,
//! [`GeluOps::gelu_tanh`] is one parallel, vectorised pass each way (a Burn backend extension whose
//! `Autodiff` implementation keeps the input and records one node); elsewhere the formula runs as
//! Burn's operations.

use burn::prelude::*;
use burn::tensor::activation;

/// `2 √(2/π)`.
pub(crate) const TWO_SQRT_2_OVER_PI: f32 = 2.0 * 0.797_884_6;
/// The cubic term's factor.
pub(crate) const CUBIC: f32 = 0.044715;

/// GELU's tanh approximation of `x`, elementwise (see the module).
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if strata_tensor::flex::available(&x) {
        let y = <burn::backend::Dispatch as flex::GeluOps>::gelu_tanh(x.into_dispatch());
        return Tensor::from_dispatch(y);
    }
    #[cfg(feature = "cube")]
    if crate::cube::available(&x) {
        return crate::cube::gelu_tanh(x);
    }
    gelu_tanh_ops(x)
}

/// The same function as Burn's operations (any backend, any float dtype).
pub fn gelu_tanh_ops<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let cube = x.clone() * x.clone() * x.clone();
    let inner = (x.clone() + cube * f64::from(CUBIC)) * f64::from(TWO_SQRT_2_OVER_PI);
    x * activation::sigmoid(inner)
}

#[cfg(feature = "flex")]
pub use flex::GeluOps;

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
    use strata_tensor::simd::{Vectorized, sigmoid, vectorized};

    use super::{CUBIC, TWO_SQRT_2_OVER_PI};

    /// GELU as one operation.
    #[backend_extension(Flex, Autodiff)]
    pub trait GeluOps: Backend {
        /// GELU's tanh approximation of `x`, elementwise.
        fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self>;
    }

    impl GeluOps for Flex {
        fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
            forward(&x)
        }
    }

    /// Elements per task: a few tasks per thread on the MLP's tensors, and a chunk that
    /// stays in the L2 cache.
    const CHUNK: usize = 1 << 14;

    fn forward(x: &FlexTensor) -> FlexTensor {
        let x = contiguous(x);
        let mut y = vec![0f32; values(&x).len()];
        y.par_chunks_mut(CHUNK)
            .zip(values(&x).par_chunks(CHUNK))
            .for_each(|(y, x)| vectorized(Value { x, y }));
        tensor(y, x.shape())
    }

    /// `dx = dy · d/dx (x σ(u))` from the input `x` and the output's gradient `dy`.
    fn backward(x: &FlexTensor, dy: &FlexTensor) -> FlexTensor {
        let (x, dy) = (contiguous(x), contiguous(dy));
        let mut dx = vec![0f32; values(&x).len()];
        dx.par_chunks_mut(CHUNK)
            .zip(values(&x).par_chunks(CHUNK))
            .zip(values(&dy).par_chunks(CHUNK))
            .for_each(|((dx, x), dy)| vectorized(Derivative { x, dy, dx }));
        tensor(dx, x.shape())
    }

    /// `u = 2 √(2/π) (x + 0.044715 x³)`.
    #[inline(always)]
    fn inner(x: f32) -> f32 {
        TWO_SQRT_2_OVER_PI * (x + CUBIC * x * x * x)
    }

    /// `y = x σ(u)`.
    struct Value<'a> {
        x: &'a [f32],
        y: &'a mut [f32],
    }

    impl Vectorized for Value<'_> {
        type Output = ();

        #[inline(always)]
        fn run(self) {
            for (y, &x) in self.y.iter_mut().zip(self.x) {
                *y = x * sigmoid(inner(x));
            }
        }
    }

    /// `d/dx (x σ(u)) = σ(u) + x σ(u) (1 - σ(u)) u'`, with `u' = 2 √(2/π) (1 + 3 · 0.044715 x²)`.
    struct Derivative<'a> {
        x: &'a [f32],
        dy: &'a [f32],
        dx: &'a mut [f32],
    }

    impl Vectorized for Derivative<'_> {
        type Output = ();

        #[inline(always)]
        fn run(self) {
            for ((dx, &x), &dy) in self.dx.iter_mut().zip(self.x).zip(self.dy) {
                let s = sigmoid(inner(x));
                let du = TWO_SQRT_2_OVER_PI * (1.0 + 3.0 * CUBIC * x * x);
                *dx = dy * (s + x * s * (1.0 - s) * du);
            }
        }
    }

    #[derive(Debug)]
    struct GeluBackward;

    impl Backward<Flex, 1> for GeluBackward {
        /// The input.
        type State = FlexTensor;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let dy = grads.consume::<Flex>(&ops.node);
            if let [Some(node)] = ops.parents {
                grads.register::<Flex>(node.id, backward(&ops.state, &dy));
            }
        }
    }

    impl<C: CheckpointStrategy> GeluOps for Autodiff<Flex, C> {
        fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
            let nodes = [x.node()];
            let x = x.into_primitive();
            let y = forward(&x);
            match GeluBackward.prepare::<C>(nodes).compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish(x, y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            }
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::Tolerance;

    #[test]
    fn the_kernel_matches_the_formula_forward_and_backward() {
        for device in [Device::flex(), Device::flex().autodiff()] {
            strata_tensor::seed(&device, 3);
            // Odd sizes (a tail after the vectorised part, several chunks), wide values (the
            // sigmoid saturates both ways), and a transposed view (not contiguous).
            for dims in [[3, 5], [70, 1000]] {
                let x = Tensor::<2>::random(
                    dims,
                    burn::tensor::Distribution::Normal(0.0, 4.0),
                    &device,
                );
                let x = if dims[0] == 3 { x } else { x.transpose() };
                let x = if device.is_autodiff() {
                    x.require_grad()
                } else {
                    x
                };
                let ours = gelu_tanh(x.clone());
                let reference = gelu_tanh_ops(x.clone());
                ours.clone().into_data().assert_approx_eq::<f32>(
                    &reference.clone().into_data(),
                    Tolerance::absolute(1e-5),
                );
                if device.is_autodiff() {
                    // A weighted sum, so that every element's gradient is scaled differently.
                    let w = Tensor::<2>::random(
                        ours.dims(),
                        burn::tensor::Distribution::Normal(0.0, 1.0),
                        &device,
                    );
                    let g_ours = (ours * w.clone()).sum().backward();
                    let g_ref = (reference * w).sum().backward();
                    x.grad(&g_ours)
                        .unwrap()
                        .into_data()
                        .assert_approx_eq::<f32>(
                            &x.grad(&g_ref).unwrap().into_data(),
                            Tolerance::absolute(1e-5),
                        );
                }
            }
        }
    }

    #[test]
    fn known_values() {
        // torch.nn.functional.gelu(x, approximate="tanh") at these points.
        let x = Tensor::<1>::from_floats([-3.0, -1.0, 0.0, 0.5, 2.0], &Device::flex());
        let expected = [-0.003_637_433, -0.158_807_99, 0.0, 0.345_714, 1.954_597_7];
        gelu_tanh(x)
            .into_data()
            .assert_approx_eq::<f32>(&TensorData::from(expected), Tolerance::absolute(1e-6));
    }
}
