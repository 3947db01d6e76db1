//! BatchNorm (Ioffe & Szegedy 2015) over the channels of images, and the ReLU that usually
//! follows it: Burn's `BatchNorm` module (its parameters, running statistics and training
//! flag), run by our kernel on flex when it trains.
//!
//! Burn computes the batch statistics with channel-first copies of the input, normalises in
//! another pass, and its backward pass takes about a dozen passes more; the ReLU after it is
//! two more passes (forward and backward) over the same tensor. In a ResNet, where a BatchNorm
//! follows every convolution, those passes were a tenth of a training step. Ours is one
//! operation: per channel, in parallel, the mean and variance, then the normalised, scaled,
//! shifted and (with `relu`) clamped output in one pass; backward, the sums for `dγ` and `dβ`
//! then `dx` in one pass each. The running statistics are updated as Burn does.

use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;
use burn::tensor::activation;

/// PyTorch's `BatchNorm2d` defaults (`eps`, `momentum`), with which every BatchNorm that
/// [`batch_norm`] runs must be built: Burn's `BatchNorm` does not say which it has.
pub const EPSILON: f64 = 1e-5;
/// See [`EPSILON`].
pub const MOMENTUM: f64 = 0.1;

/// A BatchNorm over `features` channels with [`EPSILON`] and [`MOMENTUM`].
pub fn batch_norm_config(features: usize) -> BatchNormConfig {
    BatchNormConfig::new(features)
        .with_epsilon(EPSILON)
        .with_momentum(MOMENTUM)
}

/// `norm.forward(x)`, then `max(·, 0)` with `relu`, for `x` `[batch, channels, h, w]` and a
/// `norm` made by [`batch_norm_config`]: through our kernel when it trains on flex (batch
/// statistics), through Burn's module otherwise (running statistics, other backends, a frozen
/// layer).
pub fn batch_norm(norm: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if super::flex::available(&x) && x.device().is_autodiff() && norm.training.is_enabled() {
        return train_flex(norm, x, relu);
    }
    let y = norm.forward(x);
    if relu { activation::relu(y) } else { y }
}

#[cfg(feature = "flex")]
fn train_flex(norm: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    use super::flex::batch_norm::BatchNormOps;
    let (y, mean, var) = <burn::backend::Dispatch as BatchNormOps>::batch_norm_relu(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.beta.val().into_dispatch(),
        EPSILON as f32,
        relu,
    );
    let (mean, var) = (
        Tensor::<1>::from_dispatch(mean),
        Tensor::<1>::from_dispatch(var),
    );
    // Burn's update: running ← (1 - momentum) · running + momentum · batch, with the biased
    // variance.
    let device = mean.device();
    let running = |r: &burn::module::RunningState<Tensor<1>>, batch: Tensor<1>| {
        let r = r.value_sync().to_device(&device);
        (r.mul_scalar(1.0 - MOMENTUM) + batch.mul_scalar(MOMENTUM)).detach()
    };
    norm.running_mean.update(running(&norm.running_mean, mean));
    norm.running_var.update(running(&norm.running_var, var));
    Tensor::from_dispatch(y)
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::tensor::{Distribution, Tolerance};

    fn close<const D: usize>(a: Tensor<D>, b: Tensor<D>) {
        a.into_data()
            .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-4));
    }

    /// Ours against Burn's BatchNorm followed by Burn's ReLU, with and without the ReLU: the
    /// output, the gradients of `x`, γ and β, and the running statistics after two steps.
    /// Planes of 7×5 (tails after the vectorised parts) and of 1×1 (a ResNet's last stage
    /// at small inputs), a mean far from zero.
    #[test]
    fn matches_burns_batch_norm_and_relu() {
        let device = Device::flex().autodiff();
        strata_tensor::seed(&device, 11);
        for relu in [false, true] {
            for dims in [[3, 4, 7, 5], [5, 6, 1, 1]] {
                let gamma = Tensor::<1>::random([dims[1]], Distribution::Normal(1.0, 0.5), &device);
                let beta = Tensor::<1>::random([dims[1]], Distribution::Normal(0.0, 0.5), &device);
                // Two layers with the same parameters and their own running statistics.
                let make = || {
                    let mut n = batch_norm_config(dims[1]).init(&device);
                    n.gamma = Param::from_tensor(gamma.clone());
                    n.beta = Param::from_tensor(beta.clone());
                    n
                };
                let (ours_norm, reference_norm) = (make(), make());
                for _ in 0..2 {
                    let x = Tensor::<4>::random(dims, Distribution::Normal(3.0, 2.0), &device)
                        .require_grad();
                    let ours = batch_norm(&ours_norm, x.clone(), relu);
                    let reference = reference_norm.forward(x.clone());
                    let reference = if relu {
                        activation::relu(reference)
                    } else {
                        reference
                    };
                    close(ours.clone(), reference.clone());
                    let w = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
                    let g_ours = (ours * w.clone()).sum().backward();
                    let g_ref = (reference * w).sum().backward();
                    close(x.grad(&g_ours).unwrap(), x.grad(&g_ref).unwrap());
                    for (a, b) in [
                        (&ours_norm.gamma, &reference_norm.gamma),
                        (&ours_norm.beta, &reference_norm.beta),
                    ] {
                        close(a.grad(&g_ours).unwrap(), b.grad(&g_ref).unwrap());
                    }
                }
                close(
                    ours_norm.running_mean.value(),
                    reference_norm.running_mean.value(),
                );
                close(
                    ours_norm.running_var.value(),
                    reference_norm.running_var.value(),
                );
            }
        }
    }

    /// Outside training (no autodiff, or a frozen layer) it is Burn's module with the running
    /// statistics.
    #[test]
    fn evaluation_uses_the_running_statistics() {
        let device = Device::flex();
        let norm = batch_norm_config(2).init(&device);
        let x = Tensor::<4>::random([2, 2, 3, 3], Distribution::Normal(5.0, 1.0), &device);
        // Running mean 0 and variance 1: the output is x / √(1 + ε), clamped.
        close(
            batch_norm(&norm, x.clone(), true),
            activation::relu(x / (1.0 + EPSILON).sqrt()),
        );
    }
}
