//! Max pooling: Burn's `MaxPool2d` module, run by our kernels on flex: one for windows that do
//! not overlap (kernel = stride up to 16×4, no padding or dilation, floor mode: the 2×2 pooling
//! of LeNet and the simple CNN), one for strided windows with symmetric padding (a ResNet's
//! 3×3 pooling with stride 2 and padding 1, where Burn's pooling on flex, one number at a time,
//! took a sixth of ResNet-18's inference).
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
        if let Some(windows) = strided_windows(pool, [h, w])
            && super::flex::available(&x)
        {
            return super::flex::pool_window::max_pool_windows(x, windows);
        }
    }
    pool.forward(x)
}

/// The windows of `pool` when our kernel for strided, padded windows computes it over a
/// `size` input: symmetric padding of at most half the kernel (as PyTorch requires), no
/// dilation, floor mode, at most 256 taps, and at least one output.
#[cfg(feature = "flex")]
pub(crate) fn strided_windows(
    pool: &MaxPool2d,
    size: [usize; 2],
) -> Option<super::flex::pool_window::Windows> {
    use burn::nn::PaddingConfig2d;
    let padding = match pool.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        _ => return None,
    };
    let [k, s] = [pool.kernel_size, pool.stride];
    let fits = (0..2).all(|d| {
        k[d] > 0 && s[d] > 0 && 2 * padding[d] <= k[d] && size[d] + 2 * padding[d] >= k[d]
    });
    let plain = pool.dilation == [1, 1] && !pool.ceil_mode && k[0] * k[1] <= 256;
    (fits && plain).then_some(super::flex::pool_window::Windows {
        kernel: k,
        stride: s,
        padding,
    })
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
