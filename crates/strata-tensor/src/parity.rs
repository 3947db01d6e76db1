//! How far two backends' results are apart: the measure behind `strata selftest` and the
//! cross-backend tests.
//!
//! A [`Gap`] compares the same quantity (logits, a loss, one parameter's gradient) computed on
//! a reference backend and on another, and passes when
//! `max |a - b| <= atol + rtol * max |a|`, with `rtol` [`RTOL`] between float32 CPU backends
//! and [`RTOL_TF32`] for GPU backends, whose matrix units round float32 operands to TF32.

use burn::tensor::TensorData;
use serde::Serialize;

/// Absolute tolerance of [`Gap::passes`]: what float32 rounding leaves near zero.
pub const ATOL: f32 = 1e-6;
/// Tolerance relative to the largest reference value, of [`Gap::passes`], between float32
/// backends: sums of a few thousand terms done in another order (other GEMM blockings,
/// threads) differ by about 1e-6 relatively; 1e-3 leaves room for that and still catches a
/// wrong kernel.
pub const RTOL: f32 = 1e-3;

/// The relative tolerance for GPU backends. Their matrix units round float32 operands to TF32
/// (10-bit mantissa): CubeCL does so in every product on cuda, PyTorch in cuDNN convolutions by
/// default. Where a gradient is a sum of thousands of terms that mostly cancel, that rounding
/// moves it by far more than 2⁻¹¹ of its size: on an H200, CubeCL's cuda results differ from
/// flex by up to 1.3e-3 of scale on `strata selftest`'s models, and PyTorch's own CUDA results
/// with TF32 products differ from its CPU results by up to 1.6e-2 (the simple CNN's conv2
/// weight gradient) and 8e-2 (fc1, a product with 9,216 terms). 2e-2 passes that rounding in
/// the convolutions and still fails a wrong kernel (a wrong weight-gradient kernel was off by
/// two thirds of scale there).
pub const RTOL_TF32: f32 = 2e-2;

/// One quantity on two backends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    /// What was compared (`logits`, `grad conv1.weight`, ...).
    pub what: String,
    /// Largest absolute difference.
    pub max_abs: f32,
    /// Largest absolute value on the reference backend.
    pub scale: f32,
    /// Whether the shapes agree (a gap between different shapes never passes).
    pub same_shape: bool,
}

impl Gap {
    /// Compares `other` with `reference`, element by element, as `f32`.
    pub fn between(what: impl Into<String>, reference: &TensorData, other: &TensorData) -> Self {
        let what = what.into();
        let a = reference.try_to_vec::<f32>().unwrap_or_default();
        let b = other.try_to_vec::<f32>().unwrap_or_default();
        let same_shape = reference.shape() == other.shape() && a.len() == b.len();
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let max_abs = if same_shape {
            a.iter().zip(&b).fold(0f32, |m, (x, y)| {
                if (x - y).abs() > m || (x - y).is_nan() {
                    (x - y).abs()
                } else {
                    m
                }
            })
        } else {
            f32::INFINITY
        };
        Self {
            what,
            max_abs,
            scale,
            same_shape,
        }
    }

    /// Whether the gap is within [`ATOL`] + [`RTOL`] × the reference's scale.
    pub fn passes(&self) -> bool {
        self.passes_within(RTOL)
    }

    /// Whether the gap is within [`ATOL`] + `rtol` × the reference's scale.
    pub fn passes_within(&self, rtol: f32) -> bool {
        self.same_shape && self.max_abs <= ATOL + rtol * self.scale
    }
}

/// Deterministic values in [-1, 1) of the given shape, the same on every backend: inputs for
/// comparing backends.
pub fn fixed_data<const D: usize>(shape: [usize; D]) -> TensorData {
    let n = shape.iter().product::<usize>();
    let values = (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    TensorData::new(values, shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_measure_the_largest_difference() {
        let a = TensorData::new(vec![1.0f32, -20.0, 3.0], [3]);
        let b = TensorData::new(vec![1.0f32, -20.01, 3.0], [3]);
        let gap = Gap::between("x", &a, &b);
        assert!((gap.max_abs - 0.01).abs() < 1e-4, "{gap:?}");
        assert_eq!(gap.scale, 20.0);
        assert!(gap.passes(), "0.01 <= 1e-6 + 1e-3 * 20");
        let c = TensorData::new(vec![1.0f32, -20.1, 3.0], [3]);
        assert!(!Gap::between("x", &a, &c).passes());
        assert!(Gap::between("x", &a, &c).passes_within(RTOL_TF32));
    }

    #[test]
    fn nan_and_shape_mismatch_fail() {
        let a = TensorData::new(vec![1.0f32, 2.0], [2]);
        let nan = TensorData::new(vec![1.0f32, f32::NAN], [2]);
        assert!(!Gap::between("x", &a, &nan).passes());
        let other = TensorData::new(vec![1.0f32, 2.0], [1, 2]);
        assert!(!Gap::between("x", &a, &other).passes());
    }
}
