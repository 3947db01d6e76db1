//! Max pooling: Burn's `MaxPool2d` module, run by our kernel on flex when its windows do not
//! overlap (kernel = stride up to 16×4, no padding or dilation, floor mode: the 2×2 pooling of
//! LeNet and the simple CNN).
//!
//! Burn's max pooling on flex records the index of every maximum and scatters the gradient
//! back one number at a time; ours finds the maximum of each window again in the backward
//! pass (the input is kept anyway) and writes every input gradient once.

use burn::nn::pool::MaxPool2d;
use burn::prelude::*;

/// `pool.forward(x)`, through our kernel where it applies (see the module docs).
pub fn max_pool(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    {
        use burn::nn::PaddingConfig2d;
        let plain = pool.kernel_size == pool.stride
            && pool.padding == PaddingConfig2d::Valid
            && pool.dilation == [1, 1]
            && !pool.ceil_mode;
        let [_, _, h, w] = x.dims();
        let fits = h >= pool.kernel_size[0] && w >= pool.kernel_size[1];
        let supported = super::flex::pool::supported(pool.kernel_size);
        if plain && fits && supported && super::flex::available(&x) {
            return super::flex::pool::max_pool(x, pool.kernel_size);
        }
    }
    pool.forward(x)
}
