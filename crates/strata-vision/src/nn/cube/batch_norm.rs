//! BatchNorm over the channels of images, and the ReLU after it, as CubeCL kernels (see
//! [`crate::nn::batch_norm`](mod@crate::nn::batch_norm)).
//!
//! Burn's BatchNorm on these runtimes is its tensor operations: a channel-first copy and a mean
//! for the batch mean, a subtraction, a square, another copy and mean for the variance, four
//! broadcast operations to normalise, four more to update the running statistics, and a
//! backward pass through all of them (a ReLU after it is one launch more each way). Here:
//!
//! - [`ChannelNormOps::batch_moments`], two launches: each channel's numbers are cut into
//!   interleaved runs, one thread each, that sum their numbers minus the run's first one (so a
//!   mean far from zero costs no digits); then one cube of 256 threads per channel merges its
//!   runs' counts, means and squared deviations (Chan, Golub and LeVeque's pairwise update),
//!   each thread a few runs, then the threads' results pairwise in shared memory, into the mean
//!   and biased variance, and updates the running statistics with them as Burn does;
//! - [`ChannelNormOps::normalize`], one launch: `γ · (x − mean) / √(var + ε) + β`, clamped at
//!   zero with the ReLU, one thread per number; in evaluation it is all there is;
//! - its backward pass, three launches: runs again for `Σ g` and `Σ g · (x − mean)` per channel
//!   (`g` the output's gradient, zero where the ReLU cut), one cube per channel to merge them
//!   into `dβ` and `dγ`, then `dx` one thread per number.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, backend_extension};
use burn::module::RunningState;
use burn::nn::BatchNorm;
use burn::prelude::*;
use burn_cubecl::CubeBackend;

/// BatchNorm's operations on channels (see the module's documentation). `x` is
/// `[batch, channels, h, w]`; every other tensor is `[channels]`.
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"), Autodiff)]
pub trait ChannelNormOps: Backend {
    /// The mean and biased variance of each channel of `x`, and the running statistics updated
    /// with them, `running · (1 − momentum) + batch · momentum`: `(mean, var, running_mean,
    /// running_var)`. No gradient flows through them.
    #[fusion(meta = |_x, running_mean, _running_var, _momentum| {
        let s = running_mean.clone();
        (s.clone(), s.clone(), s.clone(), s)
    })]
    fn batch_moments(
        x: FloatTensor<Self>,
        running_mean: FloatTensor<Self>,
        running_var: FloatTensor<Self>,
        momentum: f32,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    );

    /// `gamma · (x − mean) / √(var + ε) + beta` per channel, then `max(·, 0)` with `norm.relu`.
    /// With `norm.batch` the statistics are `x`'s own (from
    /// [`batch_moments`](ChannelNormOps::batch_moments)), and the gradient flows through them.
    #[fusion(dtype = x, shape = x)]
    fn normalize(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        norm: Norm,
    ) -> FloatTensor<Self>;

    /// The gradients of `x`, `gamma` and `beta` through [`normalize`](ChannelNormOps::normalize)
    /// from its output's gradient `dy`; `y` is its output (read only with `norm.relu`).
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = |x, _y, _dy, gamma, _mean, _var, _norm| {
        (x.clone(), gamma.clone(), gamma.clone())
    })]
    fn normalize_backward(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        norm: Norm,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// How [`ChannelNormOps::normalize`] normalises.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Norm {
    /// Added to the variance before its square root.
    pub epsilon: f32,
    /// Clamp the output at zero (a ReLU).
    pub relu: bool,
    /// The mean and variance are the batch's own, so the gradient flows through them too.
    pub batch: bool,
}

/// `norm.forward(x)`, then `max(·, 0)` with `relu`, for `x` on a CubeCL device: with the batch's
/// statistics, updating the running ones, on an autodiff device when `norm` trains (as Burn's
/// module), with the running statistics otherwise.
pub fn batch_norm(norm: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    let device = x.device();
    let batch = device.is_autodiff() && norm.training.is_enabled();
    let running = |r: &RunningState<Tensor<1>>| {
        let value = if batch { r.value_sync() } else { r.value() };
        value.to_device(&device).into_dispatch()
    };
    let (mut mean, mut var) = (running(&norm.running_mean), running(&norm.running_var));
    if batch {
        let (running_mean, running_var);
        (mean, var, running_mean, running_var) =
            Dispatch::batch_moments(x.clone().into_dispatch(), mean, var, norm.momentum as f32);
        norm.running_mean
            .update(Tensor::from_dispatch(running_mean).detach());
        norm.running_var
            .update(Tensor::from_dispatch(running_var).detach());
    }
    let settings = Norm {
        epsilon: norm.epsilon as f32,
        relu,
        batch,
    };
    Tensor::from_dispatch(Dispatch::normalize(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.beta.val().into_dispatch(),
        mean,
        var,
        settings,
    ))
}

/// The kernels, in CubeCL.
mod kernels {
    use burn::backend::cubecl::dtype_to_storage_type;
    use burn_cubecl::kernel::into_contiguous;
    use burn_cubecl::tensor::CubeTensor;
    use cubecl::prelude::*;

    use super::super::{empty, grid};
    use super::Norm;

    /// Where a channel's numbers lie in `[batch, channels, plane]`, and how they are cut into
    /// runs: run `(rb, rs)` of a channel takes images `rb, rb + batch_runs, …` and in each the
    /// positions `rs, rs + plane_runs, …`, so that neighbouring threads read neighbouring
    /// numbers.
    #[derive(CubeLaunch, CubeType)]
    struct Layout {
        batch: usize,
        channels: usize,
        /// `h · w`.
        plane: usize,
        batch_runs: usize,
        plane_runs: usize,
        /// `batch · plane` as a float: the count each channel's statistics are over.
        count: f32,
        epsilon: f32,
        momentum: f32,
    }

    /// The layout of `x` `[batch, channels, h, w]`: runs of about 32 numbers or more, at most
    /// 1,024 per channel, first across the plane (coalesced), then across the batch.
    struct Runs {
        batch: usize,
        channels: usize,
        plane: usize,
        batch_runs: usize,
        plane_runs: usize,
    }

    impl Runs {
        fn of(x: &CubeTensor) -> Self {
            let dims = x.meta.shape().clone();
            let [batch, channels, h, w] = [dims[0], dims[1], dims[2], dims[3]];
            let plane = h * w;
            let runs = (batch * plane / 32).clamp(1, 1024);
            let plane_runs = plane.min(runs).max(1);
            Self {
                batch,
                channels,
                plane,
                batch_runs: (runs / plane_runs).clamp(1, batch.max(1)),
                plane_runs,
            }
        }

        /// The merge kernels' launch: one cube of [`MERGE_THREADS`] per channel.
        fn merge_grid(&self) -> (CubeCount, CubeDim) {
            (
                CubeCount::Static(self.channels as u32, 1, 1),
                CubeDim::new_1d(MERGE_THREADS as u32),
            )
        }

        /// Runs per channel.
        fn per_channel(&self) -> usize {
            self.batch_runs * self.plane_runs
        }

        fn launch(&self, epsilon: f32, momentum: f32) -> LayoutLaunch {
            LayoutLaunch::new(
                self.batch,
                self.channels,
                self.plane,
                self.batch_runs,
                self.plane_runs,
                (self.batch * self.plane) as f32,
                epsilon,
                momentum,
            )
        }
    }

    /// Thread `(c, run)` (`ABSOLUTE_POS = c · runs + run`): sums over the run's numbers `x` of
    /// channel `c`, with `d = x − shift`, into `partial[ABSOLUTE_POS · 3 ..]`: its count, then
    ///
    /// - for the moments (not `gradient`; `shift` is the run's first number, so that a mean far
    ///   from zero costs no digits) the run's mean and sum of squared deviations, from `Σ d` and
    ///   `Σ d²`;
    /// - for the gradient (`shift` is the channel's mean `mean[c]`, `g` the output's gradient
    ///   `dy`, zero where the ReLU cut) `Σ g` and `Σ g · d`.
    ///
    /// `y`, `dy` and `mean` are read for the gradient only.
    #[cube(launch, address_type = "dynamic")]
    fn run_sums_kernel<F: Float>(
        x: &Tensor<F>,
        y: &Tensor<F>,
        dy: &Tensor<F>,
        mean: &Tensor<F>,
        partial: &mut Tensor<F>,
        l: Layout,
        #[comptime] gradient: bool,
        #[comptime] relu: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        let runs = l.batch_runs * l.plane_runs;
        if ABSOLUTE_POS >= l.channels * runs {
            terminate!();
        }
        let c = ABSOLUTE_POS / runs;
        let rb = (ABSOLUTE_POS % runs) / l.plane_runs;
        let rs = ABSOLUTE_POS % l.plane_runs;
        let mut shift = x[(rb * l.channels + c) * l.plane + rs];
        if gradient {
            shift = mean[c];
        }
        let mut n = F::from_int(0);
        let mut s1 = F::from_int(0);
        let mut s2 = F::from_int(0);
        let mut b = rb;
        while b < l.batch {
            let base = (b * l.channels + c) * l.plane;
            let mut s = rs;
            while s < l.plane {
                let d = x[base + s] - shift;
                let mut u = d;
                if gradient {
                    u = gated(dy, y, base + s, relu);
                }
                n += F::from_int(1);
                s1 += u;
                s2 += u * d;
                s += l.plane_runs;
            }
            b += l.batch_runs;
        }
        let o = ABSOLUTE_POS * 3;
        partial[o] = n;
        if gradient {
            partial[o + 1] = s1;
            partial[o + 2] = s2;
        } else {
            partial[o + 1] = shift + s1 / n;
            partial[o + 2] = F::max(s2 - s1 * s1 / n, F::from_int(0));
        }
    }

    /// Threads per cube of the merge kernels, one cube per channel.
    const MERGE_THREADS: usize = 256;

    /// Merges the sums `(n, a, b)` of some runs into `s[3i .. 3i + 3]`: for the moments (`a` a
    /// mean, `b` a sum of squared deviations) by Chan, Golub and LeVeque's pairwise update, for
    /// the gradient (`a`, `b` sums) by adding.
    #[allow(clippy::collapsible_else_if)]
    #[cube]
    fn merge_into<F: Float>(
        s: &mut Shared<[F]>,
        i: usize,
        n: F,
        a: F,
        b: F,
        #[comptime] gradient: bool,
    ) {
        let o = i * 3;
        let na = s[o];
        let total = na + n;
        if gradient {
            s[o + 1] += a;
            s[o + 2] += b;
        } else {
            if total > F::from_int(0) {
                let delta = a - s[o + 1];
                s[o + 1] += delta * n / total;
                s[o + 2] += b + delta * delta * na * n / total;
            }
        }
        s[o] = total;
    }

    /// The cube of channel `c` merges the channel's `runs` from `partial`: each thread some of
    /// them, then the threads' results pairwise in shared memory, into `s[0..3]`.
    #[cube]
    fn merge_runs<F: Float>(
        partial: &Tensor<F>,
        s: &mut Shared<[F]>,
        c: usize,
        runs: usize,
        #[comptime] gradient: bool,
    ) {
        let t = UNIT_POS_X as usize;
        let threads = CUBE_DIM_X as usize;
        s[t * 3] = F::from_int(0);
        s[t * 3 + 1] = F::from_int(0);
        s[t * 3 + 2] = F::from_int(0);
        let mut r = t;
        while r < runs {
            let o = (c * runs + r) * 3;
            merge_into(s, t, partial[o], partial[o + 1], partial[o + 2], gradient);
            r += threads;
        }
        sync_cube();
        let mut width = threads / 2;
        while width > 0 {
            if t < width {
                let o = (t + width) * 3;
                let n = s[o];
                let a = s[o + 1];
                let b = s[o + 2];
                merge_into(s, t, n, a, b, gradient);
            }
            sync_cube();
            width /= 2;
        }
    }

    /// The cube of channel `c = CUBE_POS_X` merges its runs into its mean and biased variance,
    /// and the running statistics updated with them.
    #[cube(launch, address_type = "dynamic")]
    fn merge_moments_kernel<F: Float>(
        partial: &Tensor<F>,
        running_mean: &Tensor<F>,
        running_var: &Tensor<F>,
        mean: &mut Tensor<F>,
        var: &mut Tensor<F>,
        new_mean: &mut Tensor<F>,
        new_var: &mut Tensor<F>,
        l: Layout,
        #[define(F)] _dtype: ElemType,
    ) {
        let c = CUBE_POS_X as usize;
        let mut s = Shared::<[F]>::new_slice(3 * MERGE_THREADS);
        merge_runs(partial, &mut s, c, l.batch_runs * l.plane_runs, false);
        if UNIT_POS_X == 0 {
            let m = s[1];
            let v = s[2] / s[0];
            let momentum = F::cast_from(l.momentum);
            let keep = F::from_int(1) - momentum;
            mean[c] = m;
            var[c] = v;
            new_mean[c] = running_mean[c] * keep + m * momentum;
            new_var[c] = running_var[c] * keep + v * momentum;
        }
    }

    /// One thread per number: `gamma · (x − mean) / √(var + ε) + beta`, at least 0 with `relu`.
    #[cube(launch, address_type = "dynamic")]
    fn normalize_kernel<F: Float>(
        x: &Tensor<F>,
        gamma: &Tensor<F>,
        beta: &Tensor<F>,
        mean: &Tensor<F>,
        var: &Tensor<F>,
        y: &mut Tensor<F>,
        l: Layout,
        #[comptime] relu: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        let i = ABSOLUTE_POS;
        if i >= y.len() {
            terminate!();
        }
        let c = channel(i, &l);
        let mut v = (x[i] - mean[c]) * rstd(var, c, &l) * gamma[c] + beta[c];
        if relu {
            v = F::max(v, F::from_int(0));
        }
        y[i] = v;
    }

    /// The channel of number `i` of a contiguous `[batch, channels, h, w]` tensor.
    #[cube]
    fn channel(i: usize, l: &Layout) -> usize {
        (i / l.plane) % l.channels
    }

    /// `1 / √(var[c] + ε)`.
    #[cube]
    fn rstd<F: Float>(var: &Tensor<F>, c: usize, l: &Layout) -> F {
        F::from_int(1) / F::sqrt(var[c] + F::cast_from(l.epsilon))
    }

    /// The output's gradient `dy`, zero where the ReLU (with `relu`) cut (`y ≤ 0`).
    #[cube]
    fn gated<F: Float>(dy: &Tensor<F>, y: &Tensor<F>, i: usize, #[comptime] relu: bool) -> F {
        let mut g = dy[i];
        if relu {
            g = select(y[i] > F::from_int(0), g, F::from_int(0));
        }
        g
    }

    /// The cube of channel `c = CUBE_POS_X`: `dβ = Σ g` and `dγ = Σ g · (x − mean) / √(var + ε)`
    /// from its runs.
    #[cube(launch, address_type = "dynamic")]
    fn merge_gradient_sums_kernel<F: Float>(
        partial: &Tensor<F>,
        var: &Tensor<F>,
        dgamma: &mut Tensor<F>,
        dbeta: &mut Tensor<F>,
        l: Layout,
        #[define(F)] _dtype: ElemType,
    ) {
        let c = CUBE_POS_X as usize;
        let mut s = Shared::<[F]>::new_slice(3 * MERGE_THREADS);
        merge_runs(partial, &mut s, c, l.batch_runs * l.plane_runs, true);
        if UNIT_POS_X == 0 {
            dbeta[c] = s[1];
            dgamma[c] = s[2] * rstd(var, c, &l);
        }
    }

    /// One thread per number: `dx = γ · rstd · (g − dβ / n − x̂ · dγ / n)` with the batch's
    /// statistics (`batch`), `γ · rstd · g` with constant ones; `x̂ = (x − mean) · rstd`.
    #[cube(launch, address_type = "dynamic")]
    fn input_gradient_kernel<F: Float>(
        x: &Tensor<F>,
        y: &Tensor<F>,
        dy: &Tensor<F>,
        gamma: &Tensor<F>,
        mean: &Tensor<F>,
        var: &Tensor<F>,
        dgamma: &Tensor<F>,
        dbeta: &Tensor<F>,
        dx: &mut Tensor<F>,
        l: Layout,
        #[comptime] relu: bool,
        #[comptime] batch: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        let i = ABSOLUTE_POS;
        if i >= dx.len() {
            terminate!();
        }
        let c = channel(i, &l);
        let r = rstd(var, c, &l);
        let mut g = gated(dy, y, i, relu);
        if batch {
            let n = F::cast_from(l.count);
            g = g - dbeta[c] / n - (x[i] - mean[c]) * r * dgamma[c] / n;
        }
        dx[i] = gamma[c] * r * g;
    }

    /// `tensors` contiguous.
    fn contiguous<const N: usize>(tensors: [CubeTensor; N]) -> [CubeTensor; N] {
        tensors.map(into_contiguous)
    }

    /// `run_sums_kernel` over `[x, y, dy, mean]`: `partial` `[channels · runs, 3]`.
    fn run_sums(
        [x, y, dy, mean]: [CubeTensor; 4],
        runs: &Runs,
        layout: LayoutLaunch,
        gradient: bool,
        relu: bool,
    ) -> CubeTensor {
        let threads = runs.channels * runs.per_channel();
        let partial = empty(&x, [threads, 3], x.dtype);
        let (count, dim) = grid(&x, threads);
        run_sums_kernel::launch(
            &x.client,
            count,
            dim,
            x.required_address_type(),
            x.clone().into_tensor_arg(),
            y.into_tensor_arg(),
            dy.into_tensor_arg(),
            mean.into_tensor_arg(),
            partial.clone().into_tensor_arg(),
            layout,
            gradient,
            relu,
            dtype_to_storage_type(x.dtype),
        );
        partial
    }

    pub(super) fn batch_moments(
        x: CubeTensor,
        running_mean: CubeTensor,
        running_var: CubeTensor,
        momentum: f32,
    ) -> [CubeTensor; 4] {
        let [x, running_mean, running_var] = contiguous([x, running_mean, running_var]);
        let (runs, dtype) = (Runs::of(&x), x.dtype);
        let layout = || runs.launch(0.0, momentum);
        // Only x is read: it stands in for the gradient's tensors.
        let sums = [x.clone(), x.clone(), x.clone(), x.clone()];
        let partial = run_sums(sums, &runs, layout(), false, false);
        let out: [CubeTensor; 4] = std::array::from_fn(|_| empty(&x, [runs.channels], dtype));
        let (count, dim) = runs.merge_grid();
        merge_moments_kernel::launch(
            &x.client,
            count,
            dim,
            x.required_address_type(),
            partial.into_tensor_arg(),
            running_mean.into_tensor_arg(),
            running_var.into_tensor_arg(),
            out[0].clone().into_tensor_arg(),
            out[1].clone().into_tensor_arg(),
            out[2].clone().into_tensor_arg(),
            out[3].clone().into_tensor_arg(),
            layout(),
            dtype_to_storage_type(dtype),
        );
        out
    }

    pub(super) fn normalize(
        x: CubeTensor,
        gamma: CubeTensor,
        beta: CubeTensor,
        mean: CubeTensor,
        var: CubeTensor,
        norm: Norm,
    ) -> CubeTensor {
        let [x, gamma, beta, mean, var] = contiguous([x, gamma, beta, mean, var]);
        let runs = Runs::of(&x);
        let y = empty(&x, x.meta.shape().clone(), x.dtype);
        let (count, dim) = grid(&x, y.meta.num_elements());
        normalize_kernel::launch(
            &x.client,
            count,
            dim,
            x.required_address_type(),
            x.clone().into_tensor_arg(),
            gamma.into_tensor_arg(),
            beta.into_tensor_arg(),
            mean.into_tensor_arg(),
            var.into_tensor_arg(),
            y.clone().into_tensor_arg(),
            runs.launch(norm.epsilon, 0.0),
            norm.relu,
            dtype_to_storage_type(x.dtype),
        );
        y
    }

    pub(super) fn normalize_backward(
        [x, y, dy, gamma, mean, var]: [CubeTensor; 6],
        norm: Norm,
    ) -> [CubeTensor; 3] {
        let [x, y, dy, gamma, mean, var] = contiguous([x, y, dy, gamma, mean, var]);
        let (runs, dtype) = (Runs::of(&x), x.dtype);
        let (storage, address) = (dtype_to_storage_type(dtype), x.required_address_type());
        let layout = || runs.launch(norm.epsilon, 0.0);
        let sums = [x.clone(), y.clone(), dy.clone(), mean.clone()];
        let partial = run_sums(sums, &runs, layout(), true, norm.relu);
        let [dgamma, dbeta] = [(); 2].map(|_| empty(&x, [runs.channels], dtype));
        let (count, dim) = runs.merge_grid();
        merge_gradient_sums_kernel::launch(
            &x.client,
            count,
            dim,
            address,
            partial.into_tensor_arg(),
            var.clone().into_tensor_arg(),
            dgamma.clone().into_tensor_arg(),
            dbeta.clone().into_tensor_arg(),
            layout(),
            storage,
        );
        let dx = empty(&x, x.meta.shape().clone(), dtype);
        let (count, dim) = grid(&x, dx.meta.num_elements());
        input_gradient_kernel::launch(
            &x.client,
            count,
            dim,
            address,
            x.clone().into_tensor_arg(),
            y.into_tensor_arg(),
            dy.into_tensor_arg(),
            gamma.into_tensor_arg(),
            mean.into_tensor_arg(),
            var.into_tensor_arg(),
            dgamma.clone().into_tensor_arg(),
            dbeta.clone().into_tensor_arg(),
            dx.clone().into_tensor_arg(),
            layout(),
            norm.relu,
            norm.batch,
            storage,
        );
        [dx, dgamma, dbeta]
    }
}

impl ChannelNormOps for CubeBackend {
    fn batch_moments(
        x: FloatTensor<Self>,
        running_mean: FloatTensor<Self>,
        running_var: FloatTensor<Self>,
        momentum: f32,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let [mean, var, running_mean, running_var] =
            kernels::batch_moments(x, running_mean, running_var, momentum);
        (mean, var, running_mean, running_var)
    }

    fn normalize(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        norm: Norm,
    ) -> FloatTensor<Self> {
        kernels::normalize(x, gamma, beta, mean, var, norm)
    }

    fn normalize_backward(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        norm: Norm,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [dx, dgamma, dbeta] = kernels::normalize_backward([x, y, dy, gamma, mean, var], norm);
        (dx, dgamma, dbeta)
    }
}

/// The backward pass of [`ChannelNormOps::normalize`]: its state is `[x, gamma, mean, var]`,
/// the output when a ReLU followed, and the settings.
#[derive(Debug)]
struct NormalizeBackward;

type State<B> = ([FloatTensor<B>; 4], Option<FloatTensor<B>>, Norm);

impl<B: ChannelNormOps> Backward<B, 3> for NormalizeBackward {
    type State = State<B>;

    fn backward(self, ops: Ops<State<B>, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<B>(&ops.node);
        let ([x, gamma, mean, var], y, norm) = ops.state;
        // Without a ReLU the output is not read; the input stands in for it.
        let y = y.unwrap_or_else(|| x.clone());
        let (dx, dgamma, dbeta) = B::normalize_backward(x, y, dy, gamma, mean, var, norm);
        for (parent, grad) in ops.parents.into_iter().zip([dx, dgamma, dbeta]) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: ChannelNormOps, C: CheckpointStrategy> ChannelNormOps for Autodiff<B, C> {
    fn batch_moments(
        x: FloatTensor<Self>,
        running_mean: FloatTensor<Self>,
        running_var: FloatTensor<Self>,
        momentum: f32,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let (mean, var, running_mean, running_var) = B::batch_moments(
            x.into_primitive(),
            running_mean.into_primitive(),
            running_var.into_primitive(),
            momentum,
        );
        (
            Self::from_inner(mean),
            Self::from_inner(var),
            Self::from_inner(running_mean),
            Self::from_inner(running_var),
        )
    }

    fn normalize(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        norm: Norm,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), gamma.node(), beta.node()];
        let (x, gamma) = (x.into_primitive(), gamma.into_primitive());
        let (mean, var) = (mean.into_primitive(), var.into_primitive());
        let y = B::normalize(
            x.clone(),
            gamma.clone(),
            beta.into_primitive(),
            mean.clone(),
            var.clone(),
            norm,
        );
        match NormalizeBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let output = norm.relu.then(|| y.clone());
                prep.finish(([x, gamma, mean, var], output, norm), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    /// Not differentiated itself (no second derivatives).
    fn normalize_backward(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        norm: Norm,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dgamma, dbeta) = B::normalize_backward(
            x.into_primitive(),
            y.into_primitive(),
            dy.into_primitive(),
            gamma.into_primitive(),
            mean.into_primitive(),
            var.into_primitive(),
            norm,
        );
        (
            Self::from_inner(dx),
            Self::from_inner(dgamma),
            Self::from_inner(dbeta),
        )
    }
}
