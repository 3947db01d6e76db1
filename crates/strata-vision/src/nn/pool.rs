//! Max pooling: Burn's `MaxPool2d` module, run by our kernel on flex when its windows do not
//! overlap (kernel = stride up to 16×4, no padding or dilation, floor mode: the 2×2 pooling of
//! LeNet and the simple CNN).
//!
//! Burn's max pooling on flex records an integer index for every maximum; ours records which of
//! the window's taps held it (one byte per output, all the backward pass keeps: not the input), and the
//! backward pass writes each gradient at that tap.

use burn::nn::pool::MaxPool2d;
use burn::prelude::*;

/// `pool.forward(x)`, through our kernel where it applies (see the module docs).
pub fn max_pool(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    {
        let [_, _, h, w] = x.dims();
        if let Some(window) = kernel_window(pool, [h, w])
            && super::flex::available(&x)
        {
            return super::flex::pool::max_pool(x, window);
        }
    }
    pool.forward(x)
}

/// The window of `pool` when our kernel computes it over a `size` input: windows that do not
/// overlap, no padding or dilation, floor mode, a width the kernel is compiled for, and at
/// least one whole window.
#[cfg(feature = "flex")]
pub(crate) fn kernel_window(pool: &MaxPool2d, size: [usize; 2]) -> Option<[usize; 2]> {
    let plain = pool.kernel_size == pool.stride
        && pool.padding == burn::nn::PaddingConfig2d::Valid
        && pool.dilation == [1, 1]
        && !pool.ceil_mode;
    let fits = size[0] >= pool.kernel_size[0] && size[1] >= pool.kernel_size[1];
    let compiled =
        (1..=4).contains(&pool.kernel_size[1]) && (1..=16).contains(&pool.kernel_size[0]);
    (plain && fits && compiled).then_some(pool.kernel_size)
}
