//! The matrix products of the model, routed by the weight's dtype.
//!
//! An f32 weight goes to Burn's matmul. A bf16 weight (the reduced-precision mode of
//! generation, [`crate::generate::WeightDtype::Bf16`]), held transposed (`[out, in]`, one
//! contiguous row per output), goes, on flex and for the few rows of a decoding step, to
//! [`WeightOnlyOps::matmul_bf16_weight`]: a Burn backend extension that reads
//! the weight as `&[bf16]` where it lies and converts each number to f32 as it streams past, so
//! a step reads half the bytes of f32. Burn's own bf16 matmul would convert both operands to f32
//! first (reading the weight once and writing it twice), so it saves nothing; elsewhere (other
//! backends, the prompt's many rows) the weight is cast to f32 and Burn's matmul runs.

#[cfg(feature = "flex")]
use burn::backend::tensor::FloatTensor;
#[cfg(feature = "flex")]
use burn::backend::{Backend, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;
use burn::tensor::DType;
use half::bf16;
use strata_tensor::simd::{Vectorized, vectorized};

/// Rows up to which a bf16 product streams the weight once per row rather than converting it.
#[cfg(feature = "flex")]
const STREAM_ROWS: usize = 4;

/// `x · w` for `x` `[rows, in]` (f32) and an f32 weight `w` `[in, out]` (possibly a transposed
/// view): Burn's matmul.
pub fn project(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    x.matmul(w)
}

/// `x · wᵀ` for `x` `[rows, in]` (f32) and a bf16 weight `w_t` `[out, in]` (contiguous): the
/// weight-only kernel on flex for a few rows, else `w_t` cast to f32 and Burn's matmul.
pub fn project_bf16(x: Tensor<2>, w_t: Tensor<2>) -> Tensor<2> {
    #[cfg(feature = "flex")]
    if x.dims()[0] <= STREAM_ROWS && strata_tensor::flex::available(&x) {
        let out = <burn::backend::Dispatch as WeightOnlyOps>::matmul_bf16_weight(
            x.into_dispatch(),
            w_t.into_dispatch(),
        );
        return Tensor::<2>::from_dispatch(out);
    }
    x.matmul(w_t.cast(DType::F32).transpose())
}

/// Products with a weight kept in reduced precision.
#[cfg(feature = "flex")]
#[backend_extension(Flex)]
pub trait WeightOnlyOps: Backend {
    /// `x · w_tᵀ` for `x` `[rows, in]` in f32 and `w_t` `[out, in]` in bf16; f32 result.
    fn matmul_bf16_weight(x: FloatTensor<Self>, w_t: FloatTensor<Self>) -> FloatTensor<Self>;
}

#[cfg(feature = "flex")]
impl WeightOnlyOps for Flex {
    fn matmul_bf16_weight(x: FloatTensor<Self>, w_t: FloatTensor<Self>) -> FloatTensor<Self> {
        let x = x.to_contiguous();
        let shape = x.shape();
        let (rows, d_in) = (shape[0], shape[1]);
        let w_shape = w_t.shape();
        let (d_out, w_in) = (w_shape[0], w_shape[1]);
        assert_eq!(
            d_in, w_in,
            "matmul_bf16_weight: x is [{rows}, {d_in}] but w_t is [{d_out}, {w_in}]"
        );
        let xs = x.as_slice::<f32>().expect("an f32 input");
        let w_t = if w_t.as_slice::<bf16>().is_some() {
            w_t
        } else {
            w_t.to_contiguous()
        };
        let ws = w_t.as_slice::<bf16>().expect("a bf16 weight");
        let mut out = vec![0f32; rows * d_out];
        for (x_row, y_row) in xs.chunks_exact(d_in).zip(out.chunks_exact_mut(d_out)) {
            matvec_bf16(x_row, ws, y_row);
        }
        burn::backend::flex::FlexTensor::from_data(TensorData::new(out, [rows, d_out]))
    }
}

/// `y = W · x` for `W` `[y.len(), x.len()]` in bf16, row-major: each output is the dot product
/// of one contiguous row of `W` with `x`, so the threads each stream one contiguous range of the
/// weight (what the memory prefetchers serve best), converting it to f32 in registers.
pub fn matvec_bf16(x: &[f32], w: &[bf16], y: &mut [f32]) {
    use rayon::prelude::*;
    let d_in = x.len();
    debug_assert_eq!(w.len(), d_in * y.len());
    // A few tasks per thread, each at least 64 rows.
    let tasks = 4 * rayon::current_num_threads();
    let rows_per_task = y.len().div_ceil(tasks).max(64);
    y.par_chunks_mut(rows_per_task)
        .zip(w.par_chunks(rows_per_task * d_in))
        .for_each(|(y_block, w_block)| {
            vectorized(Rows {
                x,
                w: w_block,
                y: y_block,
            });
        });
}

/// The dot products of a block of rows with `x`, one per output (see [`matvec_bf16`]).
struct Rows<'a> {
    x: &'a [f32],
    w: &'a [bf16],
    y: &'a mut [f32],
}

impl Vectorized for Rows<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        for (y, row) in self.y.iter_mut().zip(self.w.chunks_exact(self.x.len())) {
            *y = dot_bf16(self.x, row);
        }
    }
}

/// Lanes of the running sums: four AVX2 registers (two AVX-512 ones) of independent sums, so
/// the additions do not wait on each other. (Not `mul_add`: outside a dispatched instruction
/// set it becomes a call to the C library's `fmaf`.)
const LANES: usize = 32;

/// `x · w` with `w` in bf16, in plain loops that the compiler vectorises for the instruction
/// set [`vectorized`] runs (inlined into it). bf16 → f32 is a 16-bit shift.
#[inline(always)]
fn dot_bf16(x: &[f32], w: &[bf16]) -> f32 {
    let widen = |b: bf16| f32::from_bits((b.to_bits() as u32) << 16);
    let mut acc = [0f32; LANES];
    let (xs, ws) = (x.chunks_exact(LANES), w.chunks_exact(LANES));
    let tail: f32 = xs
        .remainder()
        .iter()
        .zip(ws.remainder())
        .map(|(&a, &b)| a * widen(b))
        .sum();
    for (xc, wc) in xs.zip(ws) {
        for j in 0..LANES {
            acc[j] += xc[j] * widen(wc[j]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;

    #[test]
    fn the_bf16_product_is_the_f32_product_of_the_rounded_weight() {
        let device = Device::flex();
        strata_tensor::seed(&device, 9);
        let dist = burn::tensor::Distribution::Normal(0.0, 1.0);
        for (rows, d_in, d_out) in [(1, 7, 3000), (3, 64, 50), (2, 300, 1025)] {
            let x = Tensor::<2>::random([rows, d_in], dist, &device);
            let w_t = Tensor::<2>::random([d_out, d_in], dist, &device).cast(DType::BF16);
            let reference = x.clone().matmul(w_t.clone().cast(DType::F32).transpose());
            let ours = project_bf16(x, w_t);
            ours.into_data().assert_approx_eq::<f32>(
                &reference.into_data(),
                burn::tensor::Tolerance::absolute(1e-4),
            );
        }
    }
}
