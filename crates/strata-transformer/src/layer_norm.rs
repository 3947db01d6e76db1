//! Layer normalisation (Ba et al. 2016) over the last dimension, as in GPT-2:
//!
//! ```text
//! y = (x - mean(x)) / √(var(x) + ε) · γ + β
//! ```
//!
//! The parameters are Burn's `LayerNorm`'s (`gamma`, `beta`), so checkpoints read and write
//! the same. Burn computes it as eight operations and records each for the backward pass;
//! in the small GPT of `train-text` (nine LayerNorms over `[768, 128]`) those are a few
//! hundred small passes per step, on one thread. On flex, [`LayerNormOps::layer_norm`] is one
//! parallel pass each way: the forward pass keeps each row's mean and `1/σ`, and the backward
//! pass gives the gradients of `x`, `γ` and `β` together. Elsewhere Burn's operations run.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::prelude::*;

/// Layer normalisation over the last dimension, with a learned scale and shift.
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// The scale γ, `[d_model]`.
    pub gamma: Param<Tensor<1>>,
    /// The shift β, `[d_model]`.
    pub beta: Param<Tensor<1>>,
    /// Added to the variance before the square root.
    #[module(skip)]
    pub epsilon: f64,
}

impl LayerNorm {
    /// γ = 1 and β = 0 over `d_model` features.
    pub fn new(d_model: usize, epsilon: f64, device: &Device) -> Self {
        Self {
            gamma: Initializer::Ones.init([d_model], device),
            beta: Initializer::Zeros.init([d_model], device),
            epsilon,
        }
    }

    /// `x` `[..., d_model]`, normalised over its last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let (gamma, beta) = (self.gamma.val(), self.beta.val());
        #[cfg(feature = "flex")]
        if strata_tensor::flex::available(&x) {
            let y = <burn::backend::Dispatch as flex::LayerNormOps>::layer_norm(
                x.into_dispatch(),
                gamma.into_dispatch(),
                beta.into_dispatch(),
                self.epsilon as f32,
            );
            return Tensor::from_dispatch(y);
        }
        #[cfg(feature = "cube")]
        if crate::cube::available(&x) {
            return crate::cube::layer_norm(x, gamma, beta, self.epsilon);
        }
        burn::tensor::module::layer_norm(x, gamma, Some(beta), self.epsilon)
    }
}

#[cfg(feature = "flex")]
pub use flex::LayerNormOps;

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
    use strata_tensor::simd::{Vectorized, vectorized};

    /// Layer normalisation as one operation.
    #[backend_extension(Flex, Autodiff)]
    pub trait LayerNormOps: Backend {
        /// `x` normalised over its last dimension, scaled by `gamma` and shifted by `beta`
        /// (both as long as that dimension).
        fn layer_norm(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f32,
        ) -> FloatTensor<Self>;
    }

    impl LayerNormOps for Flex {
        fn layer_norm(
            x: FlexTensor,
            gamma: FlexTensor,
            beta: FlexTensor,
            epsilon: f32,
        ) -> FlexTensor {
            forward(&x, &gamma, &beta, epsilon).0
        }
    }

    /// Rows per task: about 16K numbers, a few tasks per thread on `train-text`'s tensors.
    fn rows_per_task(n: usize) -> usize {
        ((1 << 14) / n.max(1)).max(1)
    }

    /// `y`, and each row's mean and `1/σ` side by side (`[rows, 2]`).
    fn forward(
        x: &FlexTensor,
        gamma: &FlexTensor,
        beta: &FlexTensor,
        epsilon: f32,
    ) -> (FlexTensor, FlexTensor) {
        let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
        let (gamma, beta) = (values(&gamma), values(&beta));
        let n = gamma.len();
        let shape = x.shape();
        assert_eq!(
            shape[shape.num_dims() - 1],
            n,
            "layer_norm: the last dimension of x must be as long as gamma"
        );
        let xs = values(&x);
        let rows = xs.len() / n.max(1);
        let (mut y, mut stats) = (vec![0f32; xs.len()], vec![0f32; 2 * rows]);
        let chunk = rows_per_task(n);
        y.par_chunks_mut(chunk * n)
            .zip(stats.par_chunks_mut(chunk * 2))
            .zip(xs.par_chunks(chunk * n))
            .for_each(|((y, stats), x)| {
                vectorized(Normalize {
                    x,
                    gamma,
                    beta,
                    epsilon,
                    y,
                    stats,
                })
            });
        (tensor(y, shape), tensor(stats, [rows, 2]))
    }

    /// Rows of `x` into `y`, their mean and `1/σ` into `stats`.
    struct Normalize<'a> {
        x: &'a [f32],
        gamma: &'a [f32],
        beta: &'a [f32],
        epsilon: f32,
        y: &'a mut [f32],
        stats: &'a mut [f32],
    }

    impl Vectorized for Normalize<'_> {
        type Output = ();

        #[inline(always)]
        fn run(self) {
            let n = self.gamma.len();
            let rows = self.x.chunks_exact(n).zip(self.y.chunks_exact_mut(n));
            for ((x, y), stats) in rows.zip(self.stats.chunks_exact_mut(2)) {
                let mean = x.iter().sum::<f32>() / n as f32;
                let var = x.iter().map(|&x| (x - mean) * (x - mean)).sum::<f32>() / n as f32;
                let rstd = 1.0 / (var + self.epsilon).sqrt();
                for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(self.gamma).zip(self.beta) {
                    *y = (x - mean) * rstd * g + b;
                }
                stats.copy_from_slice(&[mean, rstd]);
            }
        }
    }

    /// The gradients of `x`, `gamma` and `beta` from the output's gradient `dy`.
    fn backward(
        x: &FlexTensor,
        gamma: &FlexTensor,
        stats: &FlexTensor,
        dy: &FlexTensor,
    ) -> [FlexTensor; 3] {
        let (x, gamma, dy) = (contiguous(x), contiguous(gamma), contiguous(dy));
        let (xs, gamma, dys, stats) = (values(&x), values(&gamma), values(&dy), values(stats));
        let n = gamma.len();
        let chunk = rows_per_task(n);
        let mut dx = vec![0f32; xs.len()];
        // Each task's sums for dγ and dβ, added in task order (the same result every run).
        let partial: Vec<Vec<f32>> = dx
            .par_chunks_mut(chunk * n)
            .zip(xs.par_chunks(chunk * n))
            .zip(dys.par_chunks(chunk * n))
            .zip(stats.par_chunks(chunk * 2))
            .map(|(((dx, x), dy), stats)| {
                let mut sums = vec![0f32; 2 * n];
                vectorized(Gradient {
                    x,
                    dy,
                    gamma,
                    stats,
                    dx,
                    sums: &mut sums,
                });
                sums
            })
            .collect();
        let mut sums = vec![0f32; 2 * n];
        for part in &partial {
            sums.iter_mut().zip(part).for_each(|(s, p)| *s += p);
        }
        let dbeta = sums.split_off(n);
        [tensor(dx, x.shape()), tensor(sums, [n]), tensor(dbeta, [n])]
    }

    /// For rows of `x` with their `stats` and output gradients `dy`, with `x̂ = (x - mean) / σ`
    /// and `g = dy · γ`: `dx = (g - mean(g) - x̂ · mean(g · x̂)) / σ` into `dx`, and `Σ dy · x̂`
    /// (dγ) then `Σ dy` (dβ) added into `sums`.
    struct Gradient<'a> {
        x: &'a [f32],
        dy: &'a [f32],
        gamma: &'a [f32],
        stats: &'a [f32],
        dx: &'a mut [f32],
        sums: &'a mut [f32],
    }

    impl Vectorized for Gradient<'_> {
        type Output = ();

        #[inline(always)]
        fn run(self) {
            let n = self.gamma.len();
            let (dgamma, dbeta) = self.sums.split_at_mut(n);
            let rows = self.x.chunks_exact(n).zip(self.dy.chunks_exact(n));
            let rows = rows
                .zip(self.dx.chunks_exact_mut(n))
                .zip(self.stats.chunks_exact(2));
            for (((x, dy), dx), stats) in rows {
                let (mean, rstd) = (stats[0], stats[1]);
                let (mut g_sum, mut gx_sum) = (0.0, 0.0);
                for (((&x, &dy), &g), (dg, db)) in x
                    .iter()
                    .zip(dy)
                    .zip(self.gamma)
                    .zip(dgamma.iter_mut().zip(dbeta.iter_mut()))
                {
                    let xhat = (x - mean) * rstd;
                    *dg += dy * xhat;
                    *db += dy;
                    g_sum += dy * g;
                    gx_sum += dy * g * xhat;
                }
                let (g_mean, gx_mean) = (g_sum / n as f32, gx_sum / n as f32);
                for (((dx, &x), &dy), &g) in dx.iter_mut().zip(x).zip(dy).zip(self.gamma) {
                    let xhat = (x - mean) * rstd;
                    *dx = (dy * g - g_mean - xhat * gx_mean) * rstd;
                }
            }
        }
    }

    #[derive(Debug)]
    struct LayerNormBackward;

    impl Backward<Flex, 3> for LayerNormBackward {
        /// The input, γ and the rows' statistics.
        type State = (FlexTensor, FlexTensor, FlexTensor);

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let dy = grads.consume::<Flex>(&ops.node);
            let (x, gamma, stats) = &ops.state;
            let out = backward(x, gamma, stats, &dy);
            for (parent, grad) in ops.parents.into_iter().zip(out) {
                if let Some(node) = parent {
                    grads.register::<Flex>(node.id, grad);
                }
            }
        }
    }

    impl<C: CheckpointStrategy> LayerNormOps for Autodiff<Flex, C> {
        fn layer_norm(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f32,
        ) -> FloatTensor<Self> {
            let nodes = [x.node(), gamma.node(), beta.node()];
            let (x, gamma) = (x.into_primitive(), gamma.into_primitive());
            let (y, stats) = forward(&x, &gamma, &beta.into_primitive(), epsilon);
            match LayerNormBackward
                .prepare::<C>(nodes)
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish((x, gamma, stats), y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            }
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    /// Ours against Burn's `layer_norm`, forward and the gradients of `x`, γ and β, over rows
    /// of 5 (a tail after the vectorised part), 128 and 768 (GPT-2), several tasks' worth of
    /// rows, a 3-d input and a transposed view.
    #[test]
    fn matches_burns_layer_norm_forward_and_backward() {
        for device in [Device::flex(), Device::flex().autodiff()] {
            strata_tensor::seed(&device, 7);
            for (rows, n) in [(3, 5), (300, 128), (40, 768)] {
                let mut norm = LayerNorm::new(n, 1e-5, &device);
                norm.gamma = Param::from_tensor(Tensor::random(
                    [n],
                    Distribution::Normal(1.0, 0.5),
                    &device,
                ));
                norm.beta = Param::from_tensor(Tensor::random(
                    [n],
                    Distribution::Normal(0.0, 0.5),
                    &device,
                ));
                let x = Tensor::<2>::random([n, rows], Distribution::Normal(2.0, 3.0), &device)
                    .transpose()
                    .reshape([rows, 1, n]);
                let x = if device.is_autodiff() {
                    x.require_grad()
                } else {
                    x
                };
                let (gamma, beta) = (norm.gamma.val(), norm.beta.val());
                let ours = norm.forward(x.clone());
                let reference = burn::tensor::module::layer_norm(
                    x.clone(),
                    gamma.clone(),
                    Some(beta.clone()),
                    1e-5,
                );
                ours.clone().into_data().assert_approx_eq::<f32>(
                    &reference.clone().into_data(),
                    Tolerance::absolute(1e-4),
                );
                if device.is_autodiff() {
                    let w =
                        Tensor::<3>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &device);
                    let g_ours = (ours * w.clone()).sum().backward();
                    let g_ref = (reference * w).sum().backward();
                    let close = |a: Tensor<3>, b: Tensor<3>| {
                        a.into_data()
                            .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-4))
                    };
                    close(x.grad(&g_ours).unwrap(), x.grad(&g_ref).unwrap());
                    for p in [&gamma, &beta] {
                        close(
                            p.grad(&g_ours).unwrap().reshape([1, 1, n]),
                            p.grad(&g_ref).unwrap().reshape([1, 1, n]),
                        );
                    }
                }
            }
        }
    }
}
