//! BatchNorm (Ioffe & Szegedy 2015) over the channels of images, and the ReLU that usually
//! follows it: Burn's `BatchNorm` module (its parameters, running statistics, `epsilon`,
//! `momentum` and training flag), run by our kernels on flex and on CubeCL's GPU runtimes
//! (`nn::cube::batch_norm`, with the `cube` feature).
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
/// statistics, no autodiff); on CubeCL's GPU runtimes through our kernels always; through
/// Burn's module otherwise (other backends, a frozen layer on flex's autodiff device).
pub fn batch_norm(norm: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    let ([_, channels, _, _], [features]) = (x.dims(), norm.gamma.shape().dims());
    assert_eq!(
        channels, features,
        "BatchNorm over {features} channels given an input of {channels} channels"
    );
    // An empty batch has no statistics to compute: Burn's module says what that gives.
    #[cfg(feature = "cube")]
    if strata_tensor::is_cubecl_gpu(&x.device()) && x.shape().num_elements() > 0 {
        return super::cube::batch_norm::batch_norm(norm, x, relu);
    }
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
