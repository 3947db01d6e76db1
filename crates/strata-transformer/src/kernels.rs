//! The matrix products of the model, routed by the weight's dtype.
//!
//! An f32 weight goes to Burn's matmul. A bf16 weight (the reduced-precision mode of
//! generation, [`crate::generate::WeightDtype::Bf16`]) goes, on flex and for the few rows of a
//! decoding step, to [`WeightOnlyOps::matmul_bf16_weight`]: a Burn backend extension that reads
//! the weight as `&[bf16]` where it lies and converts each number to f32 as it streams past, so
//! a step reads half the bytes of f32. Burn's own bf16 matmul would convert both operands to f32
//! first (reading the weight once and writing it twice), so it saves nothing; elsewhere (other
//! backends, the prompt's many rows) the weight is cast to f32 and Burn's matmul runs.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;
use burn::tensor::DType;
use half::bf16;

/// Rows up to which a bf16 product streams the weight once per row rather than converting it.
const STREAM_ROWS: usize = 4;

/// `x · w` for `x` `[rows, in]` (f32) and a weight `w` `[in, out]`, f32 (possibly a transposed
/// view) or bf16 (contiguous).
pub fn project(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    if w.dtype() != DType::BF16 {
        return x.matmul(w);
    }
    if x.dims()[0] <= STREAM_ROWS && x.device().clone().inner() == Device::flex() {
        let out = <burn::backend::Dispatch as WeightOnlyOps>::matmul_bf16_weight(
            x.into_dispatch(),
            w.into_dispatch(),
        );
        return Tensor::<2>::from_dispatch(out);
    }
    x.matmul(w.cast(DType::F32))
}

/// Products with a weight kept in reduced precision.
#[backend_extension(Flex)]
pub trait WeightOnlyOps: Backend {
    /// `x · w` for `x` `[rows, in]` in f32 and `w` `[in, out]` in bf16, contiguous; f32 result.
    fn matmul_bf16_weight(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl WeightOnlyOps for Flex {
    fn matmul_bf16_weight(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        let x = x.to_contiguous();
        let [rows, d_in] = dims2(&x.shape());
        let [w_in, d_out] = dims2(&w.shape());
        assert_eq!(
            d_in, w_in,
            "matmul_bf16_weight: x is [{rows}, {d_in}] but w is [{w_in}, {d_out}]"
        );
        let xs = x.as_slice::<f32>().expect("an f32 input");
        let w = if w.as_slice::<bf16>().is_some() {
            w
        } else {
            w.to_contiguous()
        };
        let ws = w.as_slice::<bf16>().expect("a bf16 weight");
        let mut out = vec![0f32; rows * d_out];
        for (x_row, y_row) in xs.chunks_exact(d_in).zip(out.chunks_exact_mut(d_out)) {
            matvec_bf16(x_row, ws, y_row);
        }
        burn::backend::flex::FlexTensor::from_data(TensorData::new(out, [rows, d_out]))
    }
}

fn dims2(shape: &burn::tensor::Shape) -> [usize; 2] {
    [shape[0], shape[1]]
}

/// Columns each task of [`matvec_bf16`] handles (its slice of `y` stays in L1).
const COLUMNS_PER_TASK: usize = 1024;

/// `y = x · W` for `W` `[x.len(), y.len()]` in bf16, row-major: every row of `W` is read once,
/// in column blocks spread over the threads, each converted to f32 in registers.
pub fn matvec_bf16(x: &[f32], w: &[bf16], y: &mut [f32]) {
    use rayon::prelude::*;
    let n = y.len();
    debug_assert_eq!(w.len(), x.len() * n);
    y.par_chunks_mut(COLUMNS_PER_TASK)
        .enumerate()
        .for_each(|(block, y_block)| {
            let start = block * COLUMNS_PER_TASK;
            pulp::Arch::new().dispatch(|| axpy_rows(x, w, n, start, y_block));
        });
}

/// `y_block += Σ_i x[i] · W[i, start .. start + y_block.len()]`, in plain loops that the
/// compiler vectorises for the instruction set `pulp` dispatched to (inlined into it).
#[inline(always)]
fn axpy_rows(x: &[f32], w: &[bf16], n: usize, start: usize, y_block: &mut [f32]) {
    let width = y_block.len();
    y_block.fill(0.0);
    for (i, &xi) in x.iter().enumerate() {
        let row = &w[i * n + start..i * n + start + width];
        for (y, &b) in y_block.iter_mut().zip(row) {
            *y += xi * f32::from_bits((b.to_bits() as u32) << 16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bf16_product_is_the_f32_product_of_the_rounded_weight() {
        let device = Device::flex();
        strata_tensor::seed(&device, 9);
        let dist = burn::tensor::Distribution::Normal(0.0, 1.0);
        for (rows, d_in, d_out) in [(1, 7, 3000), (3, 64, 50), (2, 300, 1025)] {
            let x = Tensor::<2>::random([rows, d_in], dist, &device);
            let w = Tensor::<2>::random([d_in, d_out], dist, &device).cast(DType::BF16);
            let reference = x.clone().matmul(w.clone().cast(DType::F32));
            let ours = project(x, w);
            ours.into_data().assert_approx_eq::<f32>(
                &reference.into_data(),
                burn::tensor::Tolerance::absolute(1e-4),
            );
        }
    }
}
