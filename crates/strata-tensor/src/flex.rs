//! The slices behind flex tensors, for CPU kernels written as Burn backend extensions.

use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Device, Shape, Tensor, TensorData};

/// Whether a flex kernel of ours runs for `x`: an f32 tensor on flex (autodiff or not).
pub fn available<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && x.device().clone().inner() == Device::flex()
}

/// `t` itself when it is contiguous, else a contiguous copy.
pub fn contiguous(t: &FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

/// The numbers of a contiguous f32 tensor (see [`contiguous`]).
///
/// # Panics
/// When `t` is not contiguous or not f32.
pub fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("an f32 tensor, made contiguous")
}

/// The numbers of `t` to change in place: its own buffer when nothing else holds it and it is
/// contiguous and whole (an optimizer's parameter and state, step after step), else `t` is
/// first replaced by a copy of its numbers.
pub fn values_mut(t: &mut FlexTensor) -> &mut [f32] {
    let whole = t.as_slice::<f32>().map(<[f32]>::len) == Some(t.storage::<f32>().len());
    if !whole {
        *t = tensor(values(&contiguous(t)).to_vec(), t.shape());
    }
    t.storage_mut::<f32>()
}

/// A flex tensor made from `values` without copying them.
pub fn tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::TensorMetadata;

    #[test]
    fn a_transposed_view_is_copied_in_its_own_order() {
        let t = tensor(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]);
        assert_eq!(values(&contiguous(&t)), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let t = t.transpose(0, 1);
        assert!(t.as_slice::<f32>().is_none());
        let c = contiguous(&t);
        assert_eq!(c.shape().to_vec(), [3, 2]);
        assert_eq!(values(&c), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn numbers_change_in_place_unless_shared_or_a_view() {
        let mut t = tensor(vec![1.0, 2.0, 3.0, 4.0], [2, 2]);
        let at = values(&t).as_ptr();
        values_mut(&mut t)[0] = 5.0;
        assert_eq!(values(&t).as_ptr(), at, "its own buffer, changed in place");
        let shared = t.clone();
        values_mut(&mut t)[1] = 6.0;
        assert_eq!(
            values(&shared),
            [5.0, 2.0, 3.0, 4.0],
            "the other holder keeps its numbers"
        );
        assert_eq!(values(&t), [5.0, 6.0, 3.0, 4.0]);
        let mut view = t.transpose(0, 1);
        values_mut(&mut view)[1] = 7.0;
        assert_eq!(view.shape().to_vec(), [2, 2]);
        assert_eq!(values(&view), [5.0, 7.0, 6.0, 4.0]);
        assert_eq!(values(&t), [5.0, 6.0, 3.0, 4.0]);
    }

    #[test]
    fn kernels_are_available_for_f32_on_flex_with_or_without_autodiff() {
        let x = Tensor::<1>::from_floats([1.0, 2.0], &Device::flex());
        assert!(available(&x));
        assert!(available(&x.clone().autodiff()));
        assert!(!available(&x.cast(DType::F64)));
    }
}
