//! BatchNorm (Ioffe & Szegedy 2015) over the channels of images, and the ReLU that usually
//! follows it: Burn's `BatchNorm` module (its parameters, running statistics, `epsilon`,
//! `momentum` and training flag), run by our kernels on flex.
//!
//! Burn computes the batch statistics with channel-first copies of the input, normalises in
//! another pass, and its backward pass takes about a dozen passes more; the ReLU after it is
//! two more passes (forward and backward) over the same tensor. In a ResNet, where a BatchNorm
//! follows every convolution, those passes were a tenth of a training step. Ours is one
//! operation: per channel, in parallel, the mean and variance, then the normalised, scaled,
//! shifted and (with `relu`) clamped output in one pass; backward, the sums for `dγ` and `dβ`
//! then `dx` in one pass each. The running statistics are updated as Burn does.
//!
//! In evaluation (no autodiff) Burn normalises with the running statistics in four passes
//! (subtract, divide, scale, shift), and the ReLU is a fifth. Ours folds them into one scale
//! and one shift per channel and applies both, and the ReLU, in one pass.

use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;
use burn::tensor::activation;

/// PyTorch's `BatchNorm2d` defaults (`eps`, `momentum`), which torchvision's models use.
pub const EPSILON: f64 = 1e-5;
/// See [`EPSILON`].
pub const MOMENTUM: f64 = 0.1;

/// A BatchNorm over `features` channels with [`EPSILON`] and [`MOMENTUM`].
pub fn batch_norm_config(features: usize) -> BatchNormConfig {
    BatchNormConfig::new(features)
        .with_epsilon(EPSILON)
        .with_momentum(MOMENTUM)
}

/// `norm.forward(x)`, then `max(·, 0)` with `relu`, for `x` `[batch, channels, h, w]`: on flex
/// through our kernels when it trains (batch statistics) and in evaluation (running
/// statistics, no autodiff), through Burn's module otherwise (other backends, a frozen layer
/// on an autodiff device).
pub fn batch_norm(norm: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if super::flex::available(&x) {
        match (x.device().is_autodiff(), norm.training.is_enabled()) {
            (true, true) => return train_flex(norm, x, relu),
            (false, _) => return evaluate_flex(norm, x, relu),
            (true, false) => {}
        }
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
        norm.epsilon as f32,
        relu,
    );
    let (mean, var) = (
        Tensor::<1>::from_dispatch(mean),
        Tensor::<1>::from_dispatch(var),
    );
    // Burn's update: running ← (1 - momentum) · running + momentum · batch, with the biased
    // variance.
    let device = mean.device();
    let momentum = norm.momentum;
    let running = |r: &burn::module::RunningState<Tensor<1>>, batch: Tensor<1>| {
        let r = r.value_sync().to_device(&device);
        (r.mul_scalar(1.0 - momentum) + batch.mul_scalar(momentum)).detach()
    };
    norm.running_mean.update(running(&norm.running_mean, mean));
    norm.running_var.update(running(&norm.running_var, var));
    Tensor::from_dispatch(y)
}

/// `γ · (x - mean) / √(var + ε) + β` with the running statistics, as `x · scale + shift`.
#[cfg(feature = "flex")]
fn evaluate_flex(norm: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    use super::flex::batch_norm::ScaleShiftOps;
    let device = x.device();
    let mean = norm.running_mean.value().to_device(&device);
    let var = norm.running_var.value().to_device(&device);
    let scale = norm.gamma.val() / var.add_scalar(norm.epsilon).sqrt();
    let shift = norm.beta.val() - mean * scale.clone();
    Tensor::from_dispatch(
        <burn::backend::Dispatch as ScaleShiftOps>::scale_shift_relu(
            x.into_dispatch(),
            scale.into_dispatch(),
            shift.into_dispatch(),
            relu,
        ),
    )
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::module::{Param, RunningState};
    use burn::tensor::{Distribution, Tolerance};

    fn close<const D: usize>(a: Tensor<D>, b: Tensor<D>) {
        a.into_data()
            .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-4));
    }

    /// Ours against Burn's BatchNorm followed by Burn's ReLU, with and without the ReLU: the
    /// output, the gradients of `x`, γ and β, and the running statistics after two steps.
    /// Planes of 7×5 (tails after the vectorised parts) and of 1×1 (a ResNet's last stage
    /// at small inputs, here with another `epsilon` and `momentum`), a mean far from zero.
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
                    let config = match dims[2] {
                        1 => BatchNormConfig::new(dims[1])
                            .with_epsilon(1e-2)
                            .with_momentum(0.3),
                        _ => batch_norm_config(dims[1]),
                    };
                    let mut n = config.init(&device);
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

    /// Without autodiff (evaluation) it is Burn's module with the running statistics, with
    /// and without the ReLU; planes of 7×5, a non-default `epsilon`.
    #[test]
    fn evaluation_equals_burns_module_with_the_running_statistics() {
        let device = Device::flex();
        strata_tensor::seed(&device, 12);
        let normal = |mean, std| Tensor::<1>::random([3], Distribution::Normal(mean, std), &device);
        let mut norm = BatchNormConfig::new(3).with_epsilon(1e-2).init(&device);
        norm.gamma = Param::from_tensor(normal(1.0, 0.5));
        norm.beta = Param::from_tensor(normal(0.0, 0.5));
        norm.running_mean = RunningState::new(normal(2.0, 1.0));
        norm.running_var = RunningState::new(normal(0.0, 1.0).abs() + 0.1);
        let x = Tensor::<4>::random([2, 3, 7, 5], Distribution::Normal(2.0, 2.0), &device);
        for relu in [false, true] {
            let reference = norm.forward(x.clone());
            let reference = if relu {
                activation::relu(reference)
            } else {
                reference
            };
            close(batch_norm(&norm, x.clone(), relu), reference);
        }
    }
}
