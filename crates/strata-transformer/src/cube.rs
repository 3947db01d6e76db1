//! GPT-2's inference passes as CubeCL kernels for the GPU runtimes (`cuda`, `wgpu`), one launch
//! each.
//!
//! A decoding step on a GPU is bound by kernel launches, not by reading the weights: written with
//! Burn's tensor operations, a block's two LayerNorms are nine launches each (two means, a
//! subtraction, a square, a square root, four broadcast operations), GELU six, and attention
//! with GPT-2's scale Burn's unfused fallback (the scores, their scale, the mask, the softmax's
//! passes, the product with the values) and a copy to merge the heads. Here:
//!
//! - [`DecodeOps::layer_norm`]: one cube per row, its mean and variance summed in shared memory;
//! - [`DecodeOps::gelu_tanh`]: one thread per number;
//! - [`DecodeOps::bias_gelu_tanh`] and [`DecodeOps::bias_residual`]: the tail of a linear layer,
//!   its bias with the activation after it (the MLP's first layer) or with the residual
//!   connection (each sublayer's output projection), one thread per number, where Burn's
//!   operations take a launch for the bias and one for each operation after it;
//! - [`DecodeOps::attention`]: one cube per query row of each head, reading the queries, keys
//!   and values through their strides (the split heads are views, not copies), the scores and
//!   softmax in shared memory, and writing the heads' outputs side by side, already merged.
//!
//! They have no backward pass: the model routes to them on a CubeCL GPU device without autodiff
//! (generation, evaluation), and training keeps Burn's operations and their gradients.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::prelude::*;
use burn::tensor::Shape;
use burn_cubecl::CubeBackend;

/// The most keys [`DecodeOps::attention`] holds in shared memory: GPT-2's context. Longer
/// contexts go to Burn's operations.
pub const MAX_KEYS: usize = 1024;

/// Inference passes of GPT-2's blocks, one kernel each (see the module's documentation).
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub trait DecodeOps: Backend {
    /// `x` normalised over its last dimension, scaled by `gamma` and shifted by `beta`.
    #[fusion(id = "strata_layer_norm", dtype = x, shape = x)]
    fn layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self>;

    /// GELU's tanh approximation, elementwise (see [`crate::gelu`]).
    #[fusion(id = "strata_gelu_tanh", dtype = x, shape = x)]
    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// GELU's tanh approximation of `x + bias` (`bias` added over the last dimension).
    #[fusion(id = "strata_bias_gelu_tanh", dtype = x, shape = x)]
    fn bias_gelu_tanh(x: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `x + bias + residual` (`bias` added over the last dimension, `residual` of `x`'s shape).
    #[fusion(id = "strata_bias_residual", dtype = x, shape = x)]
    fn bias_residual(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// Causal attention of queries `q` `[batch, heads, tq, d]` over keys and values `k`, `v`
    /// `[batch, heads, tk, d]` (`tk ≥ tq`: the last `tq` keys are the queries' own positions,
    /// the ones before them a cache), scores scaled by `scale`: `[batch, tq, heads · d]`, the
    /// heads' outputs side by side.
    #[fusion(id = "strata_cached_attention", dtype = q, shape = merged_shape(q))]
    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self>;
}

/// `[batch, heads, t, d]` → `[batch, t, heads · d]`.
pub fn merged_shape(q: &Shape) -> Shape {
    Shape::new([q[0], q[2], q[1] * q[3]])
}

/// Whether `x` is on a CubeCL GPU device without autodiff, where these kernels run.
pub fn available<const D: usize>(x: &Tensor<D>) -> bool {
    let device = x.device();
    !device.is_autodiff() && strata_tensor::is_cubecl_gpu(&device) && x.shape().num_elements() > 0
}

/// [`DecodeOps::layer_norm`] on Burn tensors.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as DecodeOps>::layer_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon as f32,
    ))
}

/// [`DecodeOps::gelu_tanh`] on Burn tensors.
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as DecodeOps>::gelu_tanh(x.into_dispatch()))
}

/// [`DecodeOps::bias_gelu_tanh`] on Burn tensors.
pub fn bias_gelu_tanh<const D: usize>(x: Tensor<D>, bias: Tensor<1>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as DecodeOps>::bias_gelu_tanh(
        x.into_dispatch(),
        bias.into_dispatch(),
    ))
}

/// [`DecodeOps::bias_residual`] on Burn tensors.
pub fn bias_residual<const D: usize>(
    x: Tensor<D>,
    bias: Tensor<1>,
    residual: Tensor<D>,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as DecodeOps>::bias_residual(
        x.into_dispatch(),
        bias.into_dispatch(),
        residual.into_dispatch(),
    ))
}

/// [`DecodeOps::attention`] on Burn tensors.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, scale: f64) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as DecodeOps>::attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        scale as f32,
    ))
}

/// The kernels, in CubeCL.
mod kernels {
    use burn::backend::cubecl::dtype_to_storage_type;
    use burn::tensor::{DType, Shape};
    use burn_cubecl::kernel::{into_contiguous, untile};
    use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
    use burn_cubecl::tensor::CubeTensor;
    use cubecl::prelude::*;
    use cubecl::{CubeDim, calculate_cube_count_elemwise};

    use super::MAX_KEYS;
    use crate::gelu::{CUBIC, TWO_SQRT_2_OVER_PI};

    /// Threads of the cubes that reduce a row (a power of two).
    const ROW_THREADS: usize = 128;

    /// Sums `s[0 .. threads]` pairwise into `s[0]`, every thread of the cube (a power of two)
    /// taking part.
    #[cube]
    fn sum_shared<F: Float>(s: &mut Shared<[F]>, t: usize) {
        let mut width = CUBE_DIM_X as usize / 2;
        while width > 0 {
            if t < width {
                let other = s[t + width];
                s[t] += other;
            }
            sync_cube();
            width /= 2;
        }
    }

    /// The same with the maximum.
    #[cube]
    fn max_shared<F: Float>(s: &mut Shared<[F]>, t: usize) {
        let mut width = CUBE_DIM_X as usize / 2;
        while width > 0 {
            if t < width {
                let other = s[t + width];
                s[t] = F::max(s[t], other);
            }
            sync_cube();
            width /= 2;
        }
    }

    /// The cube of row `CUBE_POS` of a contiguous `[rows, width]`: its mean and variance, each
    /// summed by the threads and merged in shared memory, then `γ (x − mean) / √(var + ε) + β`.
    #[cube(launch, address_type = "dynamic")]
    fn layer_norm_kernel<F: Float>(
        x: &Tensor<F>,
        gamma: &Tensor<F>,
        beta: &Tensor<F>,
        y: &mut Tensor<F>,
        rows: usize,
        width: usize,
        epsilon: f32,
        #[define(F)] _dtype: ElemType,
    ) {
        let row = CUBE_POS;
        if row >= rows {
            terminate!();
        }
        let t = UNIT_POS_X as usize;
        let base = row * width;
        let n = F::cast_from(width);
        let mut s = Shared::<[F]>::new_slice(ROW_THREADS);

        let mut sum = F::from_int(0);
        let mut i = t;
        while i < width {
            sum += x[base + i];
            i += ROW_THREADS;
        }
        s[t] = sum;
        sync_cube();
        sum_shared(&mut s, t);
        let mean = s[0] / n;
        sync_cube();

        let mut squares = F::from_int(0);
        let mut i2 = t;
        while i2 < width {
            let d = x[base + i2] - mean;
            squares += d * d;
            i2 += ROW_THREADS;
        }
        s[t] = squares;
        sync_cube();
        sum_shared(&mut s, t);
        let rstd = F::from_int(1) / F::sqrt(s[0] / n + F::cast_from(epsilon));

        let mut i3 = t;
        while i3 < width {
            y[base + i3] = (x[base + i3] - mean) * rstd * gamma[i3] + beta[i3];
            i3 += ROW_THREADS;
        }
    }

    /// The elementwise tail of a linear layer, one thread per number of a contiguous
    /// `[rows, width]`: `v = x`, `+ b` (over the rows) if `bias`, then GELU's tanh approximation
    /// `v σ(u)`, `u = 2 √(2/π) (v + 0.044715 v³)`, if `gelu`, then `+ r` if `residual`. The
    /// tensors a flag leaves out are not read.
    #[cube(launch, address_type = "dynamic")]
    #[allow(clippy::too_many_arguments)]
    fn tail_kernel<F: Float>(
        x: &Tensor<F>,
        b: &Tensor<F>,
        r: &Tensor<F>,
        y: &mut Tensor<F>,
        width: usize,
        #[comptime] bias: bool,
        #[comptime] gelu: bool,
        #[comptime] residual: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        let i = ABSOLUTE_POS;
        if i >= y.len() {
            terminate!();
        }
        let mut v = x[i];
        if bias {
            v += b[i % width];
        }
        if gelu {
            let u = (v + v * v * v * F::cast_from(CUBIC)) * F::cast_from(TWO_SQRT_2_OVER_PI);
            v /= F::from_int(1) + F::exp(-u);
        }
        if residual {
            v += r[i];
        }
        y[i] = v;
    }

    /// The cube of query row `CUBE_POS` (batch element, head, query position `i`): the scores
    /// of the `tk − tq + i + 1` keys it may see into shared memory, their softmax, and the
    /// weighted sum of the values, written to `y[b, i, head · d ..]` of a contiguous
    /// `[batch, tq, heads · d]`. `q`, `k`, `v` are read through their strides.
    #[cube(launch, address_type = "dynamic")]
    fn attention_kernel<F: Float>(
        q: &Tensor<F>,
        k: &Tensor<F>,
        v: &Tensor<F>,
        y: &mut Tensor<F>,
        scale: f32,
        #[define(F)] _dtype: ElemType,
    ) {
        let heads = q.shape(1);
        let tq = q.shape(2);
        let d = q.shape(3);
        let tk = k.shape(2);
        let row = CUBE_POS;
        if row >= q.shape(0) * heads * tq {
            terminate!();
        }
        let b = row / (heads * tq);
        let h = (row / tq) % heads;
        let i = row % tq;
        let visible = tk - tq + i + 1;
        let t = UNIT_POS_X as usize;
        let mut scores = Shared::<[F]>::new_slice(MAX_KEYS);
        let mut s = Shared::<[F]>::new_slice(ROW_THREADS);

        let q_base = b * q.stride(0) + h * q.stride(1) + i * q.stride(2);
        let k_base = b * k.stride(0) + h * k.stride(1);
        let v_base = b * v.stride(0) + h * v.stride(1);
        let mut high = F::min_value();
        let mut j = t;
        while j < visible {
            let mut dot = F::from_int(0);
            for c in 0..d {
                dot += q[q_base + c * q.stride(3)] * k[k_base + j * k.stride(2) + c * k.stride(3)];
            }
            let score = dot * F::cast_from(scale);
            scores[j] = score;
            high = F::max(high, score);
            j += ROW_THREADS;
        }
        s[t] = high;
        sync_cube();
        max_shared(&mut s, t);
        let top = s[0];
        sync_cube();

        let mut total = F::from_int(0);
        let mut j2 = t;
        while j2 < visible {
            let p = F::exp(scores[j2] - top);
            scores[j2] = p;
            total += p;
            j2 += ROW_THREADS;
        }
        s[t] = total;
        sync_cube();
        sum_shared(&mut s, t);
        let norm = s[0];

        let y_base = (b * tq + i) * heads * d + h * d;
        let mut u = t;
        while u < d {
            let mut acc = F::from_int(0);
            for key in 0..visible {
                acc += scores[key] * v[v_base + key * v.stride(2) + u * v.stride(3)];
            }
            y[y_base + u] = acc / norm;
            u += ROW_THREADS;
        }
    }

    /// A new contiguous tensor of `shape` on `t`'s device, its values unset.
    fn empty(t: &CubeTensor, shape: Shape, dtype: DType) -> CubeTensor {
        empty_device_contiguous_dtype(t.client.clone(), t.device.clone(), shape, dtype)
    }

    /// `n` cubes of [`ROW_THREADS`], laid out in two dimensions past the 65,535 one may hold.
    fn row_cubes(n: usize) -> (CubeCount, CubeDim) {
        let x = n.clamp(1, 65_535);
        let count = CubeCount::Static(x as u32, n.div_ceil(x) as u32, 1);
        (count, CubeDim::new_1d(ROW_THREADS as u32))
    }

    pub(super) fn layer_norm(
        x: CubeTensor,
        gamma: CubeTensor,
        beta: CubeTensor,
        epsilon: f32,
    ) -> CubeTensor {
        let [x, gamma, beta] = [x, gamma, beta].map(into_contiguous);
        let shape = x.meta.shape().clone();
        let width = shape[shape.num_dims() - 1];
        assert!(
            gamma.meta.num_elements() == width && beta.meta.num_elements() == width,
            "layer_norm: gamma and beta must hold {width} numbers, the last dimension of x"
        );
        let rows = shape.num_elements() / width;
        let y = empty(&x, shape, x.dtype);
        let (count, dim) = row_cubes(rows);
        layer_norm_kernel::launch(
            &x.client,
            count,
            dim,
            x.required_address_type(),
            x.clone().into_tensor_arg(),
            gamma.into_tensor_arg(),
            beta.into_tensor_arg(),
            y.clone().into_tensor_arg(),
            rows,
            width,
            epsilon,
            dtype_to_storage_type(x.dtype),
        );
        y
    }

    /// [`tail_kernel`]: `x`, plus `bias` over its last dimension, through GELU if `gelu`,
    /// plus `residual`.
    pub(super) fn tail(
        x: CubeTensor,
        bias: Option<CubeTensor>,
        gelu: bool,
        residual: Option<CubeTensor>,
    ) -> CubeTensor {
        let x = into_contiguous(x);
        let shape = x.meta.shape().clone();
        let width = shape[shape.num_dims() - 1];
        let bias = bias.map(into_contiguous);
        let residual = residual.map(into_contiguous);
        if let Some(b) = &bias {
            assert!(
                b.meta.num_elements() == width,
                "bias: {} numbers for a last dimension of {width}",
                b.meta.num_elements()
            );
        }
        if let Some(r) = &residual {
            assert!(
                *r.meta.shape() == shape,
                "residual: shape {:?} where x is {shape:?}",
                r.meta.shape()
            );
        }
        let y = empty(&x, shape, x.dtype);
        let n = y.meta.num_elements();
        let dim = CubeDim::new(&x.client, n);
        let count = calculate_cube_count_elemwise(&x.client, n, dim);
        let (has_bias, has_residual) = (bias.is_some(), residual.is_some());
        tail_kernel::launch(
            &x.client,
            count,
            dim,
            x.required_address_type(),
            x.clone().into_tensor_arg(),
            bias.unwrap_or_else(|| x.clone()).into_tensor_arg(),
            residual.unwrap_or_else(|| x.clone()).into_tensor_arg(),
            y.clone().into_tensor_arg(),
            width,
            has_bias,
            gelu,
            has_residual,
            dtype_to_storage_type(x.dtype),
        );
        y
    }

    pub(super) fn attention(q: CubeTensor, k: CubeTensor, v: CubeTensor, scale: f32) -> CubeTensor {
        let [q, k, v] = [q, k, v].map(untile);
        let (qs, ks, vs) = (q.meta.shape(), k.meta.shape(), v.meta.shape());
        assert!(
            qs.num_dims() == 4
                && ks == vs
                && qs[0] == ks[0]
                && qs[1] == ks[1]
                && qs[3] == ks[3]
                && qs[2] <= ks[2]
                && ks[2] <= MAX_KEYS,
            "attention: q {qs:?} and k, v {ks:?} must be [batch, heads, t, d] with tq ≤ tk ≤ {MAX_KEYS}"
        );
        let y = empty(&q, super::merged_shape(qs), q.dtype);
        let (count, dim) = row_cubes(qs[0] * qs[1] * qs[2]);
        let address = [&q, &k, &v, &y]
            .into_iter()
            .map(|t| t.required_address_type())
            .max()
            .expect("four tensors");
        attention_kernel::launch(
            &q.client,
            count,
            dim,
            address,
            q.clone().into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            y.clone().into_tensor_arg(),
            scale,
            dtype_to_storage_type(q.dtype),
        );
        y
    }
}

impl DecodeOps for CubeBackend {
    fn layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self> {
        kernels::layer_norm(x, gamma, beta, epsilon)
    }

    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        kernels::tail(x, None, true, None)
    }

    fn bias_gelu_tanh(x: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        kernels::tail(x, Some(bias), true, None)
    }

    fn bias_residual(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        kernels::tail(x, Some(bias), false, Some(residual))
    }

    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        kernels::attention(q, k, v, scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::{attend, merge_heads, split_heads};
    use burn::tensor::{Distribution, Tolerance};

    /// The CubeCL GPU devices compiled in that can be opened here.
    fn devices() -> Vec<Device> {
        strata_tensor::BackendKind::compiled()
            .into_iter()
            .filter_map(|kind| kind.device(None).ok())
            .filter(strata_tensor::is_cubecl_gpu)
            .collect()
    }

    fn close<const D: usize>(ours: Tensor<D>, burns: Tensor<D>) {
        ours.into_data()
            .assert_approx_eq::<f32>(&burns.into_data(), Tolerance::absolute(2e-5));
    }

    #[test]
    fn the_kernels_equal_burns_operations() {
        let devices = devices();
        assert!(!devices.is_empty(), "no CubeCL GPU device could be opened");
        for device in devices {
            let normal = Distribution::Normal(0.5, 2.0);
            // Rows wider and narrower than a cube, the width not a multiple of its threads.
            for width in [5, 200, 768] {
                let x = Tensor::<3>::random([2, 3, width], normal, &device);
                let gamma = Tensor::<1>::random([width], normal, &device);
                let beta = Tensor::<1>::random([width], normal, &device);
                let burns = burn::tensor::module::layer_norm(
                    x.clone(),
                    gamma.clone(),
                    Some(beta.clone()),
                    1e-5,
                );
                close(layer_norm(x, gamma, beta, 1e-5), burns);
            }
            let x = Tensor::<3>::random([2, 3, 1000], normal, &device);
            close(gelu_tanh(x.clone()), crate::gelu::gelu_tanh_ops(x.clone()));
            let bias = Tensor::<1>::random([1000], normal, &device);
            let residual = Tensor::<3>::random([2, 3, 1000], normal, &device);
            let biased = x.clone() + bias.clone().unsqueeze();
            close(
                bias_gelu_tanh(x.clone(), bias.clone()),
                crate::gelu::gelu_tanh_ops(biased.clone()),
            );
            close(bias_residual(x, bias, residual.clone()), biased + residual);
            // A prompt (tq = tk), a decoding step over a cache (tq = 1), and 3 new positions
            // after 130 cached ones, over more keys than a cube has threads; the queries are
            // the split heads' strided views.
            for (tq, tk) in [(6, 6), (1, 9), (3, 133)] {
                let (heads, d) = (4, 16);
                let qkv = Tensor::<3>::random([2, tq, 3 * heads * d], normal, &device);
                let [q, _, _] = split_heads(qkv, heads);
                let k = Tensor::<4>::random([2, heads, tk, d], normal, &device);
                let v = Tensor::<4>::random([2, heads, tk, d], normal, &device);
                let scale = 0.25;
                let burns = merge_heads(attend(q.clone(), k.clone(), v.clone(), scale));
                close(attention(q, k, v, scale), burns);
            }
        }
    }
}
