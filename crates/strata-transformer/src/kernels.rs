//! The matrix products of the model, routed by the weight's dtype.
//!
//! An f32 weight `[in, out]` goes to Burn's matmul. A weight held transposed (`[out, in]`, one
//! contiguous row per output: a bf16 weight, the reduced-precision mode of generation
//! [`crate::generate::WeightDtype::Bf16`], or the tied embedding under the f32 logits) goes, on
//! flex without autodiff and for the few rows of a decoding step, to
//! [`WeightOnlyOps::matmul_rows`]: a Burn backend extension that streams the weight's rows
//! where they lie, converting bf16 to f32 in registers, so a bf16 step reads half the bytes of
//! f32. Burn's own bf16 matmul would convert both operands to f32 first (reading the weight
//! once and writing it twice), so it saves nothing; its f32 matmul, given the embedding as a
//! transposed view, repacks all 154 MB of it every token (a quarter of the time of a decoding
//! step). Elsewhere (other backends, autodiff, the prompt's many rows) the weight is cast to
//! f32 and Burn's matmul runs.

#[cfg(feature = "flex")]
use burn::backend::tensor::FloatTensor;
#[cfg(feature = "flex")]
use burn::backend::{Backend, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;
use burn::tensor::DType;
use half::bf16;
#[cfg(feature = "flex")]
use strata_tensor::flex::{contiguous, tensor, values};
use strata_tensor::simd::{Vectorized, vectorized};

/// Rows up to which a product streams the transposed weight once per row.
#[cfg(feature = "flex")]
const STREAM_ROWS: usize = 4;

/// `x · w` for `x` `[rows, in]` (f32) and an f32 weight `w` `[in, out]`: on flex (without
/// autodiff) for a few rows, [`WeightOnlyOps::matmul_columns`]; else Burn's matmul.
pub fn project(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    #[cfg(feature = "flex")]
    if x.dims()[0] <= STREAM_ROWS
        && strata_tensor::flex::available(&x)
        && !x.device().is_autodiff()
        && w.dtype() == DType::F32
    {
        let out = <burn::backend::Dispatch as WeightOnlyOps>::matmul_columns(
            x.into_dispatch(),
            w.into_dispatch(),
        );
        return Tensor::<2>::from_dispatch(out);
    }
    x.matmul(w)
}

/// `x · w_tᵀ` for `x` `[rows, in]` (f32) and a weight `w_t` `[out, in]` in bf16 or f32: the
/// weight-streaming kernel on flex (without autodiff) for a few rows, else `w_t` cast to f32
/// and Burn's matmul.
pub fn project_t(x: Tensor<2>, w_t: Tensor<2>) -> Tensor<2> {
    #[cfg(feature = "flex")]
    if x.dims()[0] <= STREAM_ROWS
        && strata_tensor::flex::available(&x)
        && !x.device().is_autodiff()
        && matches!(w_t.dtype(), DType::BF16 | DType::F32)
    {
        let out = <burn::backend::Dispatch as WeightOnlyOps>::matmul_rows(
            x.into_dispatch(),
            w_t.into_dispatch(),
        );
        return Tensor::<2>::from_dispatch(out);
    }
    x.matmul(w_t.cast(DType::F32).transpose())
}

/// Products that stream a weight held transposed, row by row.
#[cfg(feature = "flex")]
#[backend_extension(Flex)]
pub trait WeightOnlyOps: Backend {
    /// `x · w_tᵀ` for `x` `[rows, in]` in f32 and `w_t` `[out, in]` in bf16 or f32; f32 result.
    fn matmul_rows(x: FloatTensor<Self>, w_t: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `x · w` for `x` `[rows, in]` and `w` `[in, out]`, both f32: each thread streams one
    /// contiguous range of `w`'s rows into a partial product, and the partial products are
    /// summed. A decoding step's products (GPT-2's are 0.6 to 2.4 million multiply-adds) are too
    /// small for flex's matmul to split, so one core streamed 340 MB of weights a token on its
    /// own; split by blocks of columns, each thread read a short run of every row (gemm's
    /// product of one row), and decoding ran 21 % slower than with one stream per thread.
    fn matmul_columns(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;
}

#[cfg(feature = "flex")]
impl WeightOnlyOps for Flex {
    fn matmul_rows(x: FloatTensor<Self>, w_t: FloatTensor<Self>) -> FloatTensor<Self> {
        // `to_contiguous` returns a contiguous tensor as it is (ours is for f32 alone).
        let (x, w_t) = (contiguous(&x), w_t.to_contiguous());
        let ([rows, d_in], [d_out, w_in]) = (dims2(&x), dims2(&w_t));
        assert_eq!(
            d_in, w_in,
            "matmul_rows: x is [{rows}, {d_in}] but w_t is [{d_out}, {w_in}]"
        );
        let mut out = vec![0f32; rows * d_out];
        for (x_row, y_row) in row_pairs(values(&x), &mut out, d_in, d_out) {
            match (w_t.as_slice::<bf16>(), w_t.as_slice::<f32>()) {
                (Some(ws), _) => matvec(x_row, ws, y_row),
                (_, Some(ws)) => matvec(x_row, ws, y_row),
                _ => panic!(
                    "matmul_rows takes a bf16 or f32 weight, not {:?}",
                    w_t.dtype()
                ),
            }
        }
        tensor(out, [rows, d_out])
    }

    fn matmul_columns(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        use rayon::prelude::*;
        let (x, w) = (contiguous(&x), contiguous(&w));
        let ([rows, d_in], [w_in, d_out]) = (dims2(&x), dims2(&w));
        assert_eq!(
            d_in, w_in,
            "matmul_columns: x is [{rows}, {d_in}] but w is [{w_in}, {d_out}]"
        );
        let (x, w) = (values(&x), values(&w));
        // The weight's rows in one contiguous range per thread, each thread's partial product
        // of every row of `x` with its range, then the partial products summed.
        let per_task = d_in.div_ceil(rayon::current_num_threads()).max(1);
        let partials: Vec<Vec<f32>> = w
            .par_chunks(per_task * d_out.max(1))
            .enumerate()
            .map(|(task, w)| {
                let mut y = vec![0f32; rows * d_out];
                vectorized(Axpy {
                    x,
                    d_in,
                    d_out,
                    first: task * per_task,
                    w,
                    y: &mut y,
                });
                y
            })
            .collect();
        let out = partials
            .into_iter()
            .reduce(|mut sum, part| {
                sum.iter_mut().zip(&part).for_each(|(s, p)| *s += p);
                sum
            })
            .unwrap_or_else(|| vec![0f32; rows * d_out]);
        tensor(out, [rows, d_out])
    }
}

/// `y += x[.., first ..] · w` for `x` `[rows, d_in]`, `w` the weight's rows `first ..` (of
/// `[d_in, d_out]`) and `y` `[rows, d_out]`: the weight streamed once, four rows at a time, each
/// group added into every row of `y` (which stays in the cache).
#[cfg(feature = "flex")]
struct Axpy<'a> {
    x: &'a [f32],
    d_in: usize,
    d_out: usize,
    first: usize,
    w: &'a [f32],
    y: &'a mut [f32],
}

#[cfg(feature = "flex")]
impl Vectorized for Axpy<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Axpy {
            x,
            d_in,
            d_out,
            first,
            w,
            y,
        } = self;
        let mut i = first;
        let mut w_rows = w.chunks_exact(d_out);
        while w_rows.len() >= 4 {
            let [w0, w1, w2, w3] = std::array::from_fn(|_| w_rows.next().expect("four rows"));
            for (x, y) in x.chunks_exact(d_in).zip(y.chunks_exact_mut(d_out)) {
                let [a, b, c, d] = [x[i], x[i + 1], x[i + 2], x[i + 3]];
                for ((((y, w0), w1), w2), w3) in y.iter_mut().zip(w0).zip(w1).zip(w2).zip(w3) {
                    *y += a * w0 + b * w1 + c * w2 + d * w3;
                }
            }
            i += 4;
        }
        for w in w_rows {
            for (x, y) in x.chunks_exact(d_in).zip(y.chunks_exact_mut(d_out)) {
                let a = x[i];
                for (y, w) in y.iter_mut().zip(w) {
                    *y += a * w;
                }
            }
            i += 1;
        }
    }
}

/// The rows of `x` (`d_in` numbers each) beside those of `out` (`d_out` each).
#[cfg(feature = "flex")]
fn row_pairs<'a>(
    x: &'a [f32],
    out: &'a mut [f32],
    d_in: usize,
    d_out: usize,
) -> impl Iterator<Item = (&'a [f32], &'a mut [f32])> {
    x.chunks_exact(d_in.max(1))
        .zip(out.chunks_exact_mut(d_out.max(1)))
}

/// Outputs per task of a product split over the threads: a few tasks per thread, each at
/// least 64 outputs.
fn per_task(outputs: usize) -> usize {
    outputs.div_ceil(4 * rayon::current_num_threads()).max(64)
}

/// The two dimensions of a 2-D tensor.
#[cfg(feature = "flex")]
fn dims2(t: &burn::backend::flex::FlexTensor) -> [usize; 2] {
    let shape = t.shape();
    [shape[0], shape[1]]
}

/// A weight's number, widened to f32 in registers (bf16 → f32 is a 16-bit shift).
pub trait Widen: Copy + Send + Sync {
    fn widen(self) -> f32;
}

impl Widen for bf16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        f32::from_bits(u32::from(self.to_bits()) << 16)
    }
}

impl Widen for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
}

/// `y = W · x` for `W` `[y.len(), x.len()]` (bf16 or f32), row-major: each output is the dot
/// product of one contiguous row of `W` with `x`, so the threads each stream one contiguous
/// range of the weight (what the memory prefetchers serve best), widening it in registers.
pub fn matvec<W: Widen>(x: &[f32], w: &[W], y: &mut [f32]) {
    use rayon::prelude::*;
    let d_in = x.len();
    debug_assert_eq!(w.len(), d_in * y.len());
    let rows_per_task = per_task(y.len());
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

/// The dot products of a block of rows with `x`, one per output (see [`matvec`]).
struct Rows<'a, W> {
    x: &'a [f32],
    w: &'a [W],
    y: &'a mut [f32],
}

impl<W: Widen> Vectorized for Rows<'_, W> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        for (y, row) in self.y.iter_mut().zip(self.w.chunks_exact(self.x.len())) {
            *y = dot(self.x, row);
        }
    }
}

/// Lanes of the running sums: four AVX2 registers (two AVX-512 ones) of independent sums, so
/// the additions do not wait on each other. (Not `mul_add`: outside a dispatched instruction
/// set it becomes a call to the C library's `fmaf`.)
const LANES: usize = 32;

/// `x · w`, in plain loops that the compiler vectorises for the instruction set [`vectorized`]
/// runs (inlined into it).
#[inline(always)]
fn dot<W: Widen>(x: &[f32], w: &[W]) -> f32 {
    let widen = |b: W| b.widen();
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
    fn the_streamed_product_is_the_f32_product_of_the_weight_as_held() {
        let device = Device::flex();
        strata_tensor::seed(&device, 9);
        let dist = burn::tensor::Distribution::Normal(0.0, 1.0);
        for dtype in [DType::BF16, DType::F32] {
            for (rows, d_in, d_out) in [(1, 7, 3000), (3, 64, 50), (2, 300, 1025), (5, 9, 8)] {
                let x = Tensor::<2>::random([rows, d_in], dist, &device);
                let w_t = Tensor::<2>::random([d_out, d_in], dist, &device).cast(dtype);
                let reference = x.clone().matmul(w_t.clone().cast(DType::F32).transpose());
                let ours = project_t(x, w_t);
                ours.into_data().assert_approx_eq::<f32>(
                    &reference.into_data(),
                    burn::tensor::Tolerance::absolute(1e-4),
                );
            }
        }
    }

    #[test]
    fn the_product_by_ranges_of_rows_is_burns() {
        let device = Device::flex();
        strata_tensor::seed(&device, 10);
        let dist = burn::tensor::Distribution::Normal(0.0, 1.0);
        // Ranges of weight rows not a multiple of 4 (7 and 9 over the threads), long rows; and 5
        // rows of x, which go to Burn's matmul.
        let cases = [
            (1, 7, 30),
            (3, 64, 700),
            (2, 300, 3072),
            (4, 9, 80),
            (5, 9, 80),
        ];
        for (rows, d_in, d_out) in cases {
            let x = Tensor::<2>::random([rows, d_in], dist, &device);
            let w = Tensor::<2>::random([d_in, d_out], dist, &device);
            let reference = x.clone().matmul(w.clone());
            project(x, w).into_data().assert_approx_eq::<f32>(
                &reference.into_data(),
                burn::tensor::Tolerance::absolute(1e-4),
            );
        }
    }
}
