//! Small tensor helpers every domain needs: accuracy, arg-max, top-k.
//! (Parameter counts are burn's `Module::num_params`.)

use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor};

/// Number of rows of `logits` (`[batch, classes]`) whose arg-max equals `targets` (`[batch]`).
pub fn correct_count(logits: Tensor<2>, targets: Tensor<1, Int>) -> usize {
    argmax_rows(logits)
        .equal(targets)
        .int()
        .sum()
        .into_scalar::<i64>() as usize
}

/// Fraction of correct top-1 predictions, in [0, 1] (0 for an empty batch).
pub fn accuracy(logits: Tensor<2>, targets: Tensor<1, Int>) -> f64 {
    let n = targets.dims()[0];
    if n == 0 {
        return 0.0;
    }
    correct_count(logits, targets) as f64 / n as f64
}

/// Index of the largest value of each row: `[batch, classes]` → `[batch]`.
pub fn argmax_rows(logits: Tensor<2>) -> Tensor<1, Int> {
    logits.argmax(1).squeeze_dim::<1>(1)
}

/// The `k` most probable classes of one row of logits, most probable first, as
/// `(class, probability)` pairs (softmax over the row).
pub fn top_k(logits: Tensor<1>, k: usize) -> Vec<(usize, f32)> {
    let n = logits.dims()[0];
    let probs = softmax(logits, 0);
    let (values, indices) = probs.sort_descending_with_indices(0);
    let k = k.min(n);
    let values: Vec<f32> = values
        .slice(0..k)
        .try_into_vec_as::<f32>()
        .expect("read probabilities");
    let indices: Vec<i64> = indices
        .slice(0..k)
        .try_into_vec_as::<i64>()
        .expect("read indices");
    indices
        .into_iter()
        .map(|i| i as usize)
        .zip(values)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn device() -> Device {
        crate::first_compiled_device()
    }

    #[test]
    fn accuracy_counts_argmax_matches() {
        let d = device();
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![0.1f32, 0.9, 2.0, -1.0, 0.0, 0.5], [3, 2]),
            &d,
        );
        let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 0, 0], [3]), &d);
        assert_eq!(correct_count(logits.clone(), targets.clone()), 2);
        assert!((accuracy(logits, targets) - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn top_k_is_sorted_softmax() {
        let d = device();
        let logits = Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 2.0, 1.0], [3]), &d);
        let top = top_k(logits, 2);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
        let z = 1.0 + 2f32.exp() + 1f32.exp();
        assert!((top[0].1 - 2f32.exp() / z).abs() < 1e-6);
        assert!((top[1].1 - 1f32.exp() / z).abs() < 1e-6);
    }
}
