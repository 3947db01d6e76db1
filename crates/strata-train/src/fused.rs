//! SGD with momentum, Adam and AdamW as one pass over each parameter.
//!
//! [`FusedSgd`] and [`FusedAdam`] (with `decoupled`, AdamW) do the arithmetic of Burn's `Sgd`
//! (with momentum, dampening 0), `Adam` and `AdamW` in the same order, so they give the same
//! numbers, and keep the same state under the same names, so a checkpoint written with one
//! resumes with the other. Burn's take 5 to 15 passes over memory per parameter, each a tensor
//! operation on one thread (on a GPU, a kernel launch each). On flex, ours read the parameter,
//! its gradient and its state once, and write the new parameter and state in place, on all
//! threads; on CubeCL's GPU runtimes each step is one kernel. On other backends they run Burn's
//! tensor operations.

use burn::optim::{
    Adam, AdamConfig, AdamState, AdamW, AdamWConfig, AdamWState, LearningRate, Optimizer,
    RecordState, StateSink, StateSource,
};
use burn::tensor::{Device, Tensor};

/// SGD with momentum as `torch.optim.SGD` (dampening 0): `g ← g + λ·p`, `v ← μ·v + g` (`v ← g`
/// at the first step), `p ← p − lr·v`, or with Nesterov `p ← p − lr·(g + μ·v)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusedSgd {
    /// Momentum `μ` (above 0).
    pub momentum: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay `λ` (0: none).
    pub weight_decay: f32,
}

/// [`FusedSgd`]'s state of one parameter: its velocity. Recorded as Burn's `SgdState`
/// (`momentum.velocity`).
#[derive(Clone)]
pub struct SgdState<const D: usize> {
    /// The velocity after the last step.
    pub velocity: Tensor<D>,
}

impl<const D: usize> RecordState for SgdState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_tensor(
            prefix,
            "momentum.velocity",
            self.velocity.clone().into_data(),
        );
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let data = src.take_tensor(prefix, "momentum.velocity")?;
        Some(Self {
            velocity: Tensor::from_data(data, device),
        })
    }
}

impl Optimizer for FusedSgd {
    type State<const D: usize> = SgdState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<SgdState<D>>,
    ) -> (Tensor<D>, Option<SgdState<D>>) {
        let velocity = state.map(|s| s.velocity);
        #[cfg(any(feature = "flex", feature = "cube"))]
        if ops::extended(&tensor) {
            let (tensor, velocity) = ops::sgd(self, lr as f32, tensor, grad, velocity);
            return (tensor, Some(SgdState { velocity }));
        }
        let (tensor, velocity) = self.step_tensors(lr, tensor, grad, velocity);
        (tensor, Some(SgdState { velocity }))
    }

    fn to_device<const D: usize>(state: SgdState<D>, device: &Device) -> SgdState<D> {
        SgdState {
            velocity: state.velocity.to_device(device),
        }
    }
}

impl FusedSgd {
    /// The step with Burn's tensor operations (backends without our kernel): the new parameter
    /// and velocity.
    fn step_tensors<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        velocity: Option<Tensor<D>>,
    ) -> (Tensor<D>, Tensor<D>) {
        let grad = if self.weight_decay > 0.0 {
            tensor.clone().mul_scalar(self.weight_decay).add(grad)
        } else {
            grad
        };
        let velocity = match velocity {
            Some(v) => grad.clone().add(v.mul_scalar(self.momentum)),
            None => grad.clone(),
        };
        let step = if self.nesterov {
            velocity.clone().mul_scalar(self.momentum).add(grad)
        } else {
            velocity.clone()
        };
        (tensor - step.mul_scalar(lr), velocity)
    }
}

/// Adam as `torch.optim.Adam` (Burn's `Adam`): L2 weight decay added to the gradient, bias
/// corrections, `ε` added to `√v̂`; or with `decoupled`, AdamW as `torch.optim.AdamW` (Burn's
/// `AdamW`): the decay applied to the parameter itself, `p ← p · (1 − lr · λ) − lr · m̂ / (√v̂ + ε)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusedAdam {
    /// `β₁`.
    pub beta_1: f32,
    /// `β₂`.
    pub beta_2: f32,
    /// `ε`.
    pub epsilon: f32,
    /// Weight decay `λ` (0: none).
    pub weight_decay: f32,
    /// AdamW's decoupled weight decay instead of Adam's L2 decay.
    pub decoupled: bool,
}

impl FusedAdam {
    /// Burn's `Adam` with the same settings: the step on backends without our kernel.
    fn adam(&self) -> Adam {
        let decay = (self.weight_decay > 0.0)
            .then(|| burn::optim::decay::WeightDecayConfig::new(self.weight_decay));
        AdamConfig::new()
            .with_beta_1(self.beta_1)
            .with_beta_2(self.beta_2)
            .with_epsilon(self.epsilon)
            .with_weight_decay(decay)
            .build()
    }

    /// Burn's `AdamW` with the same settings.
    fn adamw(&self) -> AdamW {
        AdamWConfig::new()
            .with_beta_1(self.beta_1)
            .with_beta_2(self.beta_2)
            .with_epsilon(self.epsilon)
            .with_weight_decay(self.weight_decay)
            .build()
    }
}

/// [`FusedAdam`]'s state: Burn's `AdamState` (`AdamWState` holds the same, under the same names).
impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamState<D>>,
    ) -> (Tensor<D>, Option<AdamState<D>>) {
        #[cfg(any(feature = "flex", feature = "cube"))]
        if ops::extended(&tensor) {
            let moments = state.map(|s| s.momentum);
            let time = moments.as_ref().map_or(1, |m| m.time + 1);
            let (tensor, moment_1, moment_2) = ops::adam(self, lr, time, tensor, grad, moments);
            let momentum = burn::optim::AdaptiveMomentumState::new(time, moment_1, moment_2);
            return (tensor, Some(AdamState::new(momentum)));
        }
        if !self.decoupled {
            return Optimizer::step(&self.adam(), lr, tensor, grad, state);
        }
        let state = state.map(|s| AdamWState::new(s.momentum));
        let (tensor, state) = Optimizer::step(&self.adamw(), lr, tensor, grad, state);
        (tensor, state.map(|s| AdamState::new(s.momentum)))
    }

    fn to_device<const D: usize>(state: AdamState<D>, device: &Device) -> AdamState<D> {
        <Adam as Optimizer>::to_device(state, device)
    }
}

#[cfg(any(feature = "flex", feature = "cube"))]
mod ops {
    //! The fused steps as a Burn backend extension (no autodiff: optimizers step inner tensors),
    //! its kernels on flex (`flex`) and on CubeCL's GPU runtimes (`cube`).

    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Backend, backend_extension};
    use burn::tensor::Tensor;

    use super::{FusedAdam, FusedSgd};

    /// Whether `x` is on a backend with the kernels (flex in f32, a CubeCL GPU runtime).
    pub(super) fn extended<const D: usize>(x: &Tensor<D>) -> bool {
        #[cfg(feature = "flex")]
        if strata_tensor::flex::available(x) {
            return true;
        }
        #[cfg(feature = "cube")]
        if strata_tensor::is_cubecl_gpu(&x.device()) {
            return true;
        }
        let _ = x;
        false
    }

    /// How Adam turns its moments into a step, with the bias corrections of step `t` computed
    /// as Burn computes them.
    #[derive(Debug, Clone, Copy)]
    pub enum AdamUpdate {
        /// Adam: `g ← g + λ · p`, then `p ← p − lr · m · correction / (√v + eps)`, where
        /// `correction` is `√(1 − β₂ᵗ) / (1 − β₁ᵗ)` and `eps` is `ε · √(1 − β₂ᵗ)`.
        L2 {
            weight_decay: f32,
            correction: f32,
            eps: f32,
        },
        /// AdamW: `p ← p · decay − lr · (m / c₁) / (√(v / c₂) + ε)`, where `decay` is
        /// `1 − lr · λ` and `c₁, c₂` are `1 − β₁ᵗ, 1 − β₂ᵗ`.
        Decoupled {
            decay: f32,
            corrections: [f32; 2],
            eps: f32,
        },
    }

    #[backend_extension(
        Flex: cfg(feature = "flex"),
        Cube: cfg(feature = "cube"),
        Fusion: cfg(feature = "fusion")
    )]
    pub trait OptimizerOps: Backend {
        /// One SGD step: the new parameter and velocity. `velocity` is ignored when `first`.
        #[allow(clippy::too_many_arguments)]
        #[fusion(meta = |param, _grad, _velocity, _first, _lr, _momentum, _decay, _nesterov| {
            (param.clone(), param.clone())
        })]
        fn sgd_step(
            param: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            velocity: FloatTensor<Self>,
            first: bool,
            lr: f32,
            momentum: f32,
            weight_decay: f32,
            nesterov: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>);

        /// One Adam or AdamW step (`update`): the new parameter and moments.
        #[fusion(meta = |param, _grad, _m, _v, _lr, _betas, _update| {
            (param.clone(), param.clone(), param.clone())
        })]
        fn adam_step(
            param: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            moment_1: FloatTensor<Self>,
            moment_2: FloatTensor<Self>,
            lr: f32,
            betas: [f32; 2],
            update: AdamUpdate,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    }

    pub(super) fn sgd<const D: usize>(
        o: &FusedSgd,
        lr: f32,
        param: Tensor<D>,
        grad: Tensor<D>,
        velocity: Option<Tensor<D>>,
    ) -> (Tensor<D>, Tensor<D>) {
        let first = velocity.is_none();
        let velocity = velocity.unwrap_or_else(|| grad.clone());
        let (p, v) = <burn::backend::Dispatch as OptimizerOps>::sgd_step(
            param.into_dispatch(),
            grad.into_dispatch(),
            velocity.into_dispatch(),
            first,
            lr,
            o.momentum,
            o.weight_decay,
            o.nesterov,
        );
        (Tensor::from_dispatch(p), Tensor::from_dispatch(v))
    }

    pub(super) fn adam<const D: usize>(
        o: &FusedAdam,
        lr: f64,
        time: usize,
        param: Tensor<D>,
        grad: Tensor<D>,
        moments: Option<burn::optim::AdaptiveMomentumState<D>>,
    ) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
        // As Burn: the first step starts from zero moments.
        let (m, v) = match moments {
            Some(s) => (s.moment_1, s.moment_2),
            None => (grad.zeros_like(), grad.zeros_like()),
        };
        let t = time as i32;
        let (param, grad, m, v) = (
            param.into_dispatch(),
            grad.into_dispatch(),
            m.into_dispatch(),
            v.into_dispatch(),
        );
        let corrections = [1.0 - o.beta_1.powi(t), 1.0 - o.beta_2.powi(t)];
        let update = if o.decoupled {
            // Burn's AdamW divides the moments by their corrections.
            AdamUpdate::Decoupled {
                decay: (1.0 - lr * o.weight_decay as f64) as f32,
                corrections,
                eps: o.epsilon,
            }
        } else {
            // Burn's Adam folds them into one factor, and scales ε.
            let bias_2 = corrections[1].sqrt();
            AdamUpdate::L2 {
                weight_decay: o.weight_decay,
                correction: bias_2 / corrections[0],
                eps: o.epsilon * bias_2,
            }
        };
        let (p, m, v) = <burn::backend::Dispatch as OptimizerOps>::adam_step(
            param,
            grad,
            m,
            v,
            lr as f32,
            [o.beta_1, o.beta_2],
            update,
        );
        (
            Tensor::from_dispatch(p),
            Tensor::from_dispatch(m),
            Tensor::from_dispatch(v),
        )
    }
}

#[cfg(feature = "flex")]
mod flex {
    //! The kernels on flex: each step one pass over the parameter, on all threads.

    use burn::backend::flex::FlexTensor;
    use burn::backend::{Flex, TensorMetadata};
    use rayon::prelude::*;
    use strata_tensor::flex::{contiguous, tensor, values, values_mut};
    use strata_tensor::simd::{Vectorized, vectorized};

    use super::ops::{AdamUpdate, OptimizerOps};

    /// Numbers per task: large parameters are split over the threads.
    const CHUNK: usize = 1 << 15;

    /// Checks that an optimizer state read back (from a checkpoint) fits its parameter.
    fn check_state(state: &[f32], param: &[f32]) {
        assert_eq!(
            state.len(),
            param.len(),
            "an optimizer state of {} numbers for a parameter of {}: the checkpoint was written for another model",
            state.len(),
            param.len()
        );
    }

    impl OptimizerOps for Flex {
        fn sgd_step(
            mut param: FlexTensor,
            grad: FlexTensor,
            mut velocity: FlexTensor,
            first: bool,
            lr: f32,
            momentum: f32,
            weight_decay: f32,
            nesterov: bool,
        ) -> (FlexTensor, FlexTensor) {
            let grad = contiguous(&grad);
            if first {
                velocity = tensor(vec![0.0; param.shape().num_elements()], param.shape());
            }
            let (p, v) = (values_mut(&mut param), values_mut(&mut velocity));
            check_state(v, p);
            p.par_chunks_mut(CHUNK)
                .zip(v.par_chunks_mut(CHUNK))
                .zip(values(&grad).par_chunks(CHUNK))
                .for_each(|((p, v), g)| {
                    vectorized(Sgd {
                        p,
                        v,
                        g,
                        first,
                        lr,
                        momentum,
                        weight_decay,
                        nesterov,
                    })
                });
            (param, velocity)
        }

        fn adam_step(
            mut param: FlexTensor,
            grad: FlexTensor,
            mut moment_1: FlexTensor,
            mut moment_2: FlexTensor,
            lr: f32,
            betas: [f32; 2],
            update: AdamUpdate,
        ) -> (FlexTensor, FlexTensor, FlexTensor) {
            let grad = contiguous(&grad);
            let (p, m, v) = (
                values_mut(&mut param),
                values_mut(&mut moment_1),
                values_mut(&mut moment_2),
            );
            check_state(m, p);
            check_state(v, p);
            p.par_chunks_mut(CHUNK)
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .zip(values(&grad).par_chunks(CHUNK))
                .for_each(|(((p, m), v), g)| {
                    vectorized(AdamKernel {
                        p,
                        m,
                        v,
                        g,
                        lr,
                        betas,
                        update,
                    })
                });
            (param, moment_1, moment_2)
        }
    }

    /// One SGD step over a run of numbers, in Burn's order of operations.
    struct Sgd<'a> {
        p: &'a mut [f32],
        v: &'a mut [f32],
        g: &'a [f32],
        first: bool,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        nesterov: bool,
    }

    impl Vectorized for Sgd<'_> {
        type Output = ();

        #[inline(always)]
        fn run(self) {
            let Self {
                p,
                v,
                g,
                first,
                lr,
                momentum,
                weight_decay,
                nesterov,
            } = self;
            let decay = weight_decay > 0.0;
            for ((p, v), &g) in p.iter_mut().zip(v.iter_mut()).zip(g) {
                let g = if decay { *p * weight_decay + g } else { g };
                *v = if first { g } else { g + *v * momentum };
                let step = if nesterov { *v * momentum + g } else { *v };
                *p -= step * lr;
            }
        }
    }

    /// One Adam or AdamW step over a run of numbers, in Burn's order of operations.
    struct AdamKernel<'a> {
        p: &'a mut [f32],
        m: &'a mut [f32],
        v: &'a mut [f32],
        g: &'a [f32],
        lr: f32,
        betas: [f32; 2],
        update: AdamUpdate,
    }

    impl Vectorized for AdamKernel<'_> {
        type Output = ();

        #[inline(always)]
        fn run(self) {
            let Self {
                p,
                m,
                v,
                g,
                lr,
                betas: [b1, b2],
                update,
            } = self;
            let (f1, f2) = (1.0 - b1, 1.0 - b2);
            for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                match update {
                    AdamUpdate::L2 {
                        weight_decay,
                        correction,
                        eps,
                    } => {
                        let g = if weight_decay > 0.0 {
                            *p * weight_decay + g
                        } else {
                            g
                        };
                        *m = *m * b1 + g * f1;
                        *v = *v * b2 + g * g * f2;
                        *p -= *m * correction / (v.sqrt() + eps) * lr;
                    }
                    AdamUpdate::Decoupled {
                        decay,
                        corrections: [c1, c2],
                        eps,
                    } => {
                        *m = *m * b1 + g * f1;
                        *v = *v * b2 + g * g * f2;
                        let step = (*m / c1) / ((*v / c2).sqrt() + eps);
                        let decayed = if decay == 1.0 { *p } else { *p * decay };
                        *p = decayed - step * lr;
                    }
                }
            }
        }
    }
}

#[cfg(feature = "cube")]
mod cube {
    //! The kernels on CubeCL's GPU runtimes: each step one launch, one thread per number, where
    //! Burn's optimizers launch a kernel per tensor operation (about a dozen per parameter for
    //! Adam).

    use burn::backend::cubecl::dtype_to_storage_type;
    use burn_cubecl::CubeBackend;
    use burn_cubecl::kernel::into_contiguous;
    use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
    use burn_cubecl::tensor::CubeTensor;
    use cubecl::prelude::*;
    use cubecl::{CubeDim, calculate_cube_count_elemwise};

    use super::ops::{AdamUpdate, OptimizerOps};

    /// SGD's scalars.
    #[derive(CubeLaunch, CubeType)]
    struct SgdArgs {
        lr: f32,
        momentum: f32,
        weight_decay: f32,
    }

    /// One SGD step per number, in Burn's order of operations (as on flex).
    #[cube(launch, address_type = "dynamic")]
    fn sgd_kernel<F: Float>(
        p: &Tensor<F>,
        g: &Tensor<F>,
        v: &Tensor<F>,
        p_out: &mut Tensor<F>,
        v_out: &mut Tensor<F>,
        args: SgdArgs,
        #[comptime] first: bool,
        #[comptime] decay: bool,
        #[comptime] nesterov: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        let i = ABSOLUTE_POS;
        if i >= p_out.len() {
            terminate!();
        }
        let mut grad = g[i];
        if decay {
            grad = p[i] * F::cast_from(args.weight_decay) + grad;
        }
        let mut velocity = grad;
        if !first {
            velocity = grad + v[i] * F::cast_from(args.momentum);
        }
        let mut step = velocity;
        if nesterov {
            step = velocity * F::cast_from(args.momentum) + grad;
        }
        p_out[i] = p[i] - step * F::cast_from(args.lr);
        v_out[i] = velocity;
    }

    /// Adam's scalars (see [`AdamUpdate`]; `f1`, `f2` are `1 − β₁`, `1 − β₂`).
    #[derive(CubeLaunch, CubeType)]
    struct AdamArgs {
        lr: f32,
        b1: f32,
        b2: f32,
        f1: f32,
        f2: f32,
        weight_decay: f32,
        correction: f32,
        eps: f32,
        decay: f32,
        c1: f32,
        c2: f32,
    }

    /// One Adam (or, `decoupled`, AdamW) step per number, in Burn's order of operations.
    #[cube(launch, address_type = "dynamic")]
    fn adam_kernel<F: Float>(
        p: &Tensor<F>,
        g: &Tensor<F>,
        m: &Tensor<F>,
        v: &Tensor<F>,
        p_out: &mut Tensor<F>,
        m_out: &mut Tensor<F>,
        v_out: &mut Tensor<F>,
        args: AdamArgs,
        #[comptime] decoupled: bool,
        #[comptime] decay: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        let i = ABSOLUTE_POS;
        if i >= p_out.len() {
            terminate!();
        }
        let mut grad = g[i];
        if !decoupled && decay {
            grad = p[i] * F::cast_from(args.weight_decay) + grad;
        }
        let m1 = m[i] * F::cast_from(args.b1) + grad * F::cast_from(args.f1);
        let m2 = v[i] * F::cast_from(args.b2) + grad * grad * F::cast_from(args.f2);
        let eps = F::cast_from(args.eps);
        let lr = F::cast_from(args.lr);
        if decoupled {
            let step = (m1 / F::cast_from(args.c1)) / (F::sqrt(m2 / F::cast_from(args.c2)) + eps);
            let mut decayed = p[i];
            if decay {
                decayed = p[i] * F::cast_from(args.decay);
            }
            p_out[i] = decayed - step * lr;
        } else {
            p_out[i] = p[i] - m1 * F::cast_from(args.correction) / (F::sqrt(m2) + eps) * lr;
        }
        m_out[i] = m1;
        v_out[i] = m2;
    }

    /// `tensors` contiguous, each as many numbers as the first (a state read from a checkpoint
    /// for another model is refused), and `outputs` new tensors of the first one's shape.
    fn prepare<const N: usize, const O: usize>(
        tensors: [CubeTensor; N],
    ) -> ([CubeTensor; N], [CubeTensor; O]) {
        let tensors = tensors.map(into_contiguous);
        let (shape, n) = (
            tensors[0].meta.shape().clone(),
            tensors[0].meta.num_elements(),
        );
        for t in &tensors[1..] {
            assert_eq!(
                t.meta.num_elements(),
                n,
                "an optimizer state of {} numbers for a parameter of {n}: the checkpoint was \
                 written for another model",
                t.meta.num_elements()
            );
        }
        let first = &tensors[0];
        let outputs = std::array::from_fn(|_| {
            empty_device_contiguous_dtype(
                first.client.clone(),
                first.device.clone(),
                shape.clone(),
                first.dtype,
            )
        });
        (tensors, outputs)
    }

    /// The launch settings for one thread per number of `t`: cube count, cube size, address
    /// type.
    fn grid(t: &CubeTensor) -> (CubeCount, CubeDim, AddressType) {
        let n = t.meta.num_elements();
        let dim = CubeDim::new(&t.client, n);
        let count = calculate_cube_count_elemwise(&t.client, n, dim);
        (count, dim, t.required_address_type())
    }

    impl OptimizerOps for CubeBackend {
        fn sgd_step(
            param: CubeTensor,
            grad: CubeTensor,
            velocity: CubeTensor,
            first: bool,
            lr: f32,
            momentum: f32,
            weight_decay: f32,
            nesterov: bool,
        ) -> (CubeTensor, CubeTensor) {
            let ([p, g, v], [p_out, v_out]) = prepare([param, grad, velocity]);
            let (count, dim, address) = grid(&p);
            let (client, storage) = (p.client.clone(), dtype_to_storage_type(p.dtype));
            sgd_kernel::launch(
                &client,
                count,
                dim,
                address,
                p.into_tensor_arg(),
                g.into_tensor_arg(),
                v.into_tensor_arg(),
                p_out.clone().into_tensor_arg(),
                v_out.clone().into_tensor_arg(),
                SgdArgsLaunch::new(lr, momentum, weight_decay),
                first,
                weight_decay > 0.0,
                nesterov,
                storage,
            );
            (p_out, v_out)
        }

        fn adam_step(
            param: CubeTensor,
            grad: CubeTensor,
            moment_1: CubeTensor,
            moment_2: CubeTensor,
            lr: f32,
            [b1, b2]: [f32; 2],
            update: AdamUpdate,
        ) -> (CubeTensor, CubeTensor, CubeTensor) {
            let ([p, g, m, v], [p_out, m_out, v_out]) = prepare([param, grad, moment_1, moment_2]);
            let (count, dim, address) = grid(&p);
            let (client, storage) = (p.client.clone(), dtype_to_storage_type(p.dtype));
            let (decoupled, decay, args) = match update {
                AdamUpdate::L2 {
                    weight_decay,
                    correction,
                    eps,
                } => (
                    false,
                    weight_decay > 0.0,
                    [weight_decay, correction, eps, 1.0, 1.0, 1.0],
                ),
                AdamUpdate::Decoupled {
                    decay,
                    corrections: [c1, c2],
                    eps,
                } => (true, decay != 1.0, [0.0, 1.0, eps, decay, c1, c2]),
            };
            let [weight_decay, correction, eps, decay_factor, c1, c2] = args;
            adam_kernel::launch(
                &client,
                count,
                dim,
                address,
                p.into_tensor_arg(),
                g.into_tensor_arg(),
                m.into_tensor_arg(),
                v.into_tensor_arg(),
                p_out.clone().into_tensor_arg(),
                m_out.clone().into_tensor_arg(),
                v_out.clone().into_tensor_arg(),
                AdamArgsLaunch::new(
                    lr,
                    b1,
                    b2,
                    1.0 - b1,
                    1.0 - b2,
                    weight_decay,
                    correction,
                    eps,
                    decay_factor,
                    c1,
                    c2,
                ),
                decoupled,
                decay,
                storage,
            );
            (p_out, m_out, v_out)
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::optim::decay::WeightDecayConfig;
    use burn::optim::momentum::MomentumConfig;
    use burn::optim::{SgdConfig, StateSink};
    use burn::tensor::Distribution;

    /// Parameters and gradients for `steps` steps: one large enough to be split over the
    /// threads, one small.
    fn data(steps: usize) -> Vec<(Tensor<1>, Vec<Tensor<1>>)> {
        let device = Device::flex();
        strata_tensor::seed(&device, 5);
        [70_000, 37]
            .into_iter()
            .map(|n| {
                let p = Tensor::random([n], Distribution::Normal(0.0, 1.0), &device);
                let grads = (0..steps)
                    .map(|_| Tensor::random([n], Distribution::Normal(0.0, 0.1), &device))
                    .collect();
                (p, grads)
            })
            .collect()
    }

    /// The same numbers, bit for bit: the same operations in the same order.
    fn same(ours: &Tensor<1>, burns: &Tensor<1>, what: &str) {
        let bits = |t: &Tensor<1>| -> Vec<u32> {
            let values = t.clone().into_data().try_to_vec::<f32>().unwrap();
            values.into_iter().map(f32::to_bits).collect()
        };
        assert!(bits(ours) == bits(burns), "{what}: not Burn's numbers");
    }

    /// Runs `a` and `b` side by side for every step and checks that the parameters agree.
    fn agree<A: Optimizer, B: Optimizer>(a: &A, b: &B, lr: f64) {
        for (p, grads) in data(4) {
            let (mut pa, mut pb) = (p.clone(), p);
            let (mut sa, mut sb) = (None, None);
            for (t, g) in grads.into_iter().enumerate() {
                (pa, sa) = a.step(lr, pa, g.clone(), sa);
                (pb, sb) = b.step(lr, pb, g, sb);
                same(&pa, &pb, &format!("step {t}"));
            }
        }
    }

    #[test]
    fn sgd_gives_burns_numbers() {
        for (nesterov, weight_decay) in [(false, 1e-4), (true, 0.0), (true, 0.05)] {
            let ours = FusedSgd {
                momentum: 0.9,
                nesterov,
                weight_decay,
            };
            let burns = SgdConfig::new()
                .with_weight_decay(
                    (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay)),
                )
                .with_momentum(Some(
                    MomentumConfig::new()
                        .with_momentum(0.9)
                        .with_dampening(0.0)
                        .with_nesterov(nesterov),
                ))
                .build();
            agree(&ours, &burns, 0.05);
        }
    }

    #[test]
    fn adam_gives_burns_numbers() {
        for weight_decay in [0.0, 0.01] {
            let ours = FusedAdam {
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-8,
                weight_decay,
                decoupled: false,
            };
            agree(&ours, &ours.adam(), 1e-3);
        }
    }

    #[test]
    fn adamw_gives_burns_numbers() {
        for weight_decay in [0.0, 0.1] {
            let ours = FusedAdam {
                beta_1: 0.9,
                beta_2: 0.99,
                epsilon: 1e-8,
                weight_decay,
                decoupled: true,
            };
            agree(&ours, &ours.adamw(), 1e-3);
        }
    }

    #[test]
    fn sgd_on_other_backends_gives_the_same_numbers() {
        let o = FusedSgd {
            momentum: 0.8,
            nesterov: true,
            weight_decay: 0.01,
        };
        for (p, grads) in data(3) {
            let (mut pa, mut pb) = (p.clone(), p);
            let (mut va, mut vb) = (None, None);
            for g in grads {
                let (p, v) = o.step_tensors(0.1, pa, g.clone(), va);
                (pa, va) = (p, Some(v));
                let (p, s) = o.step(0.1, pb, g, vb.map(|velocity| SgdState { velocity }));
                (pb, vb) = (p, s.map(|s| s.velocity));
                same(&pa, &pb, "parameter");
            }
        }
    }

    #[test]
    fn sgd_state_is_recorded_as_burns() {
        let device = Device::flex();
        let velocity = Tensor::<2>::from_floats([[1.0, -2.0], [3.0, 0.5]], &device);
        let ours = SgdState {
            velocity: velocity.clone(),
        };
        let burns =
            burn::optim::SgdState::new(Some(burn::optim::momentum::MomentumState::new(velocity)));
        let (mut a, mut b) = (StateSink::default(), StateSink::default());
        ours.state_flatten("layer.weight", &mut a);
        burns.state_flatten("layer.weight", &mut b);
        let names = |s: &StateSink| s.tensors.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&a), names(&b));
        let mut src = StateSource::default();
        for (name, data) in a.tensors {
            src.insert_tensor(name, data);
        }
        let back = SgdState::<2>::state_unflatten("layer.weight", &mut src, &device).unwrap();
        same(
            &back.velocity.reshape([4]),
            &ours.velocity.reshape([4]),
            "velocity",
        );
    }
}

#[cfg(all(test, feature = "cube"))]
mod cube_tests {
    use super::*;
    use burn::optim::SgdConfig;
    use burn::optim::decay::WeightDecayConfig;
    use burn::optim::momentum::MomentumConfig;
    use burn::tensor::Distribution;
    use strata_tensor::BackendKind;

    /// The first CubeCL device compiled in that opens here.
    fn cube_device() -> Device {
        BackendKind::compiled()
            .into_iter()
            .filter_map(|kind| kind.device(None).ok())
            .find(strata_tensor::is_cubecl_gpu)
            .expect("no CubeCL GPU device could be opened")
    }

    /// Runs `ours` (our kernel) and `burns` side by side for 4 steps, on a parameter large
    /// enough for many cubes and on a small one, and checks that the parameters agree to
    /// within rounding (the device's division and square root need not be correctly rounded,
    /// and its compiler may fuse a multiply and an add).
    fn agree<A: Optimizer, B: Optimizer>(ours: &A, burns: &B, lr: f64) {
        let device = cube_device();
        strata_tensor::seed(&device, 5);
        for n in [70_000, 37] {
            let p = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &device);
            assert!(ops::extended(&p), "the kernel is not used on {device:?}");
            let (mut pa, mut pb) = (p.clone(), p);
            let (mut sa, mut sb) = (None, None);
            for step in 0..4 {
                let g = Tensor::random([n], Distribution::Normal(0.0, 0.1), &device);
                (pa, sa) = ours.step(lr, pa, g.clone(), sa);
                (pb, sb) = burns.step(lr, pb, g, sb);
                let numbers = |t: &Tensor<1>| t.clone().into_data().try_to_vec::<f32>().unwrap();
                let (a, b) = (numbers(&pa), numbers(&pb));
                let diff = a
                    .iter()
                    .zip(&b)
                    .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(
                    diff <= 1e-6 * 8.0,
                    "step {step} of {n} numbers: differs by {diff}"
                );
            }
        }
    }

    #[test]
    fn the_sgd_kernel_gives_burns_numbers() {
        for (nesterov, weight_decay, first_momentum) in [(false, 1e-4, 0.9), (true, 0.0, 0.8)] {
            let ours = FusedSgd {
                momentum: first_momentum,
                nesterov,
                weight_decay,
            };
            let burns = SgdConfig::new()
                .with_weight_decay(
                    (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay)),
                )
                .with_momentum(Some(
                    MomentumConfig::new()
                        .with_momentum(first_momentum as f64)
                        .with_dampening(0.0)
                        .with_nesterov(nesterov),
                ))
                .build();
            agree(&ours, &burns, 0.05);
        }
    }

    #[test]
    fn the_adam_kernel_gives_burns_numbers() {
        for (decoupled, weight_decay) in [(false, 0.0), (false, 0.01), (true, 0.0), (true, 0.1)] {
            let ours = FusedAdam {
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-8,
                weight_decay,
                decoupled,
            };
            if decoupled {
                agree(&ours, &ours.adamw(), 1e-3);
            } else {
                agree(&ours, &ours.adam(), 1e-3);
            }
        }
    }
}
