//! The 2-D convolution of every CNN in Strata: [`Conv2d`], a layer with the parameters of
//! `burn::nn::conv::Conv2d` (`weight` `[out, in / groups, kh, kw]`, `bias` `[out]`, so every
//! checkpoint, safetensors file and PyTorch import reads the same), and [`conv2d`], the
//! operation under it.
//!
//! On flex (f32) the operation is our own kernel with its own backward pass
//! ([`flex::conv`](super::flex::conv)): per
//! image, im2col into a buffer that stays in cache, then one GEMM for the output, one for the
//! weight gradient (`dWᵀ = cols · dYᵀ`) and one for the input gradient (`dcols = Wᵀ · dY`, then
//! col2im, or for a wide stride-1 layer a convolution of `dY` with the kernels turned); bias and
//! an optional ReLU are applied in the pass that writes the output. Burn
//! 0.22's flex computes the weight gradient as a convolution with the output gradient as
//! kernel, GEMMs a few columns wide, which made it the slowest part of a training step. On
//! CubeCL's GPUs (`cuda`, `wgpu`) it is im2col and matrix products, in Burn's tensor operations
//! ([`im2col`](super::im2col)), for the same reason. On ndarray, tch and CubeCL's CPU runtime
//! [`conv2d`] is Burn's `conv2d` (on tch LibTorch's kernels, cuDNN's on a GPU).

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;

/// A 2-D convolution layer: Burn's `Conv2d` (same fields, same parameter names and shapes) run
/// through [`conv2d`]. Build one from a `burn::nn::conv::Conv2dConfig`:
///
/// ```
/// # use burn::nn::conv::Conv2dConfig;
/// # use strata_vision::nn::Conv2d;
/// let device = strata_tensor::first_compiled_device();
/// let conv: Conv2d = Conv2dConfig::new([1, 32], [3, 3]).init(&device).into();
/// ```
#[derive(Module, Debug)]
pub struct Conv2d {
    /// `[channels_out, channels_in / groups, kernel_h, kernel_w]`.
    pub weight: Param<Tensor<4>>,
    /// `[channels_out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// Stride of the convolution.
    pub stride: [usize; 2],
    /// Size of the kernel.
    pub kernel_size: [usize; 2],
    /// Spacing between kernel elements.
    pub dilation: [usize; 2],
    /// Groups of input and output channels convolved separately.
    pub groups: usize,
    /// Zero padding (as Burn's `Conv2dConfig` gives it).
    #[module(skip)]
    pub padding: PaddingConfig2d,
}

impl From<burn::nn::conv::Conv2d> for Conv2d {
    fn from(c: burn::nn::conv::Conv2d) -> Self {
        Self {
            weight: c.weight,
            bias: c.bias,
            stride: c.stride,
            kernel_size: c.kernel_size,
            dilation: c.dilation,
            groups: c.groups,
            padding: c.padding,
        }
    }
}

impl Conv2d {
    /// `[batch, in, h, w]` → `[batch, out, h', w']`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.run(x, false)
    }

    /// `relu(conv(x))` in one operation (on flex the ReLU is applied as the output is written,
    /// and its derivative inside the convolution's backward pass).
    pub fn forward_relu(&self, x: Tensor<4>) -> Tensor<4> {
        self.run(x, true)
    }

    /// `max_pool(pool, relu(conv(x)))`: on flex one operation that pools each image's
    /// convolution while it is in cache (the unpooled output is never written out, and the
    /// backward pass routes each gradient straight to its window's maximum); elsewhere, and
    /// for poolings the kernel does not cover, the three operations.
    pub fn forward_relu_pool(&self, x: Tensor<4>, pool: &burn::nn::pool::MaxPool2d) -> Tensor<4> {
        #[cfg(feature = "flex")]
        {
            let [_, _, h, w] = self.output_dims(x.dims());
            if let Some(window) = super::pool::kernel_window(pool, [h, w])
                && super::flex::available(&x)
            {
                let (weight, bias, options) = self.operands(&x);
                return super::flex::conv::conv2d(x, weight, bias, options, true, Some(window));
            }
        }
        super::max_pool(pool, self.forward_relu(x))
    }

    /// The output shape for an input of shape `x` (`[batch, in, h, w]`).
    ///
    /// # Panics
    /// As [`conv2d`], when the input does not fit the layer.
    pub fn output_dims(&self, x: [usize; 4]) -> [usize; 4] {
        let g = Geometry::new(x, self.weight.dims(), &self.options(x[2], x[3]))
            .unwrap_or_else(|e| panic!("conv2d: {e}"));
        [g.batch, g.c_out, g.oh, g.ow]
    }

    /// The options of [`conv2d`] for an input of `height × width`.
    pub fn options(&self, height: usize, width: usize) -> ConvOptions<2> {
        let pad = |size: usize, k: usize, s: usize| same_padding(k, s, size);
        let padding = match self.padding {
            PaddingConfig2d::Valid => [(0, 0), (0, 0)],
            PaddingConfig2d::Same => [
                pad(height, self.kernel_size[0], self.stride[0]),
                pad(width, self.kernel_size[1], self.stride[1]),
            ],
            PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        };
        ConvOptions::new_with_padding(self.stride, padding, self.dilation, self.groups)
    }

    fn run(&self, x: Tensor<4>, relu: bool) -> Tensor<4> {
        let (weight, bias, options) = self.operands(&x);
        conv2d(x, weight, bias, options, relu)
    }

    /// The weight, the bias and the options of [`conv2d`] for input `x`.
    fn operands(&self, x: &Tensor<4>) -> (Tensor<4>, Option<Tensor<1>>, ConvOptions<2>) {
        let [_, _, h, w] = x.dims();
        (
            self.weight.val(),
            self.bias.as_ref().map(Param::val),
            self.options(h, w),
        )
    }
}

/// `(begin, end)` padding that keeps `ceil(size / stride)` outputs: Burn's `PaddingConfig2d::Same`.
fn same_padding(kernel: usize, stride: usize, size: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = if out > 0 {
        ((out - 1) * stride + kernel).saturating_sub(size)
    } else {
        0
    };
    (total / 2, total - total / 2)
}

/// The 2-D convolution of `x` `[batch, in, h, w]` with `weight` `[out, in / groups, kh, kw]`
/// and `bias` `[out]`, then a ReLU when `relu` is set. Our kernel on flex (f32), im2col and one
/// matrix product on CubeCL's GPUs ([`im2col`](super::im2col)), Burn's `conv2d` elsewhere.
///
/// # Panics
/// With the message of [`Geometry::new`] when the shapes and options do not fit together
/// (the same cases Burn refuses).
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
    relu: bool,
) -> Tensor<4> {
    if let Err(e) = Geometry::new(x.dims(), weight.dims(), &options) {
        panic!("conv2d: {e}");
    }
    #[cfg(feature = "flex")]
    if super::flex::available(&x) {
        return super::flex::conv::conv2d(x, weight, bias, options, relu, None);
    }
    // CubeCL's GPUs: im2col and matrix products. Other backends and dtypes: Burn's convolution
    // and autodiff.
    let y = if strata_tensor::is_cubecl_gpu(&x.device()) {
        super::im2col::conv2d(x, weight, bias, &options)
    } else {
        burn::tensor::module::conv2d(x, weight, bias, options)
    };
    if relu {
        burn::tensor::activation::relu(y)
    } else {
        y
    }
}

/// Sizes of one convolution, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Images.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Stride (rows, columns).
    pub stride: [usize; 2],
    /// Padding before the first row and column.
    pub pad: [usize; 2],
    /// Dilation (rows, columns).
    pub dilation: [usize; 2],
    /// Channel groups.
    pub groups: usize,
}

impl Geometry {
    /// Checks an input shape, a weight shape and options against each other.
    ///
    /// # Errors
    /// A one-line message when a stride, dilation or group count is zero, the channels do not
    /// match the weight or divide into the groups, the kernel does not fit in the padded
    /// input, or a size overflows.
    pub fn new(x: [usize; 4], weight: [usize; 4], o: &ConvOptions<2>) -> Result<Self, String> {
        let [batch, c_in, h, w] = x;
        let [c_out, cin_g, kh, kw] = weight;
        if o.stride.contains(&0) || o.dilation.contains(&0) || o.groups == 0 {
            return Err(format!(
                "stride {:?}, dilation {:?} and groups {} must be positive",
                o.stride, o.dilation, o.groups
            ));
        }
        if kh == 0 || kw == 0 {
            return Err(format!("the kernel is {kh}×{kw}: it must not be empty"));
        }
        if cin_g.checked_mul(o.groups) != Some(c_in) || c_out % o.groups != 0 {
            return Err(format!(
                "input with {c_in} channels, weight {weight:?} and {} groups do not fit: the \
                 weight must be [out, in / groups, kh, kw] with out divisible by groups",
                o.groups
            ));
        }
        let side = |size: usize, (a, b): (usize, usize), k: usize, s: usize, d: usize| {
            let padded = size.checked_add(a)?.checked_add(b)?;
            let span = d.checked_mul(k - 1)?.checked_add(1)?;
            padded.checked_sub(span).map(|r| r / s + 1)
        };
        let sizes = (
            side(h, o.padding[0], kh, o.stride[0], o.dilation[0]),
            side(w, o.padding[1], kw, o.stride[1], o.dilation[1]),
        );
        let (Some(oh), Some(ow)) = sizes else {
            return Err(format!(
                "a {kh}×{kw} kernel with dilation {:?} does not fit in the {h}×{w} input \
                 padded by {:?}: use a smaller kernel or more padding",
                o.dilation, o.padding
            ));
        };
        let g = Self {
            batch,
            c_in,
            h,
            w,
            c_out,
            kernel: [kh, kw],
            oh,
            ow,
            stride: o.stride,
            pad: [o.padding[0].0, o.padding[1].0],
            dilation: o.dilation,
            groups: o.groups,
        };
        let sizes = [
            [batch, c_out, oh, ow],
            [batch, c_in, h, w],
            [c_in, kh, kw, oh * ow],
        ];
        if sizes.iter().any(|s| {
            s.iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .is_none()
        }) {
            return Err(format!(
                "the convolution of {x:?} by {weight:?} is too large to address"
            ));
        }
        Ok(g)
    }

    /// Output positions per image (`oh · ow`).
    pub fn spatial(&self) -> usize {
        self.oh * self.ow
    }

    /// Rows of the im2col matrix per group (`in / groups · kh · kw`).
    pub fn k(&self) -> usize {
        self.c_in / self.groups * self.kernel[0] * self.kernel[1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(stride: usize, pad: usize, dilation: usize, groups: usize) -> ConvOptions<2> {
        ConvOptions::new([stride; 2], [pad; 2], [dilation; 2], groups)
    }

    #[test]
    fn geometry_is_pytorchs_output_size() {
        let g = Geometry::new([2, 4, 28, 28], [8, 2, 3, 3], &options(2, 1, 2, 2)).unwrap();
        // (28 + 2 - 2·2 - 1) / 2 + 1 = 13
        assert_eq!((g.oh, g.ow, g.k()), (13, 13, 18));
    }

    #[test]
    fn bad_configurations_are_one_line_errors() {
        let fit = Geometry::new([1, 1, 4, 4], [1, 1, 7, 7], &options(1, 1, 1, 1)).unwrap_err();
        assert!(fit.contains("does not fit"), "{fit}");
        let groups = Geometry::new([1, 3, 8, 8], [4, 1, 3, 3], &options(1, 0, 1, 2)).unwrap_err();
        assert!(groups.contains("groups"), "{groups}");
        let zero = Geometry::new(
            [1, 1, 8, 8],
            [1, 1, 3, 3],
            &ConvOptions {
                stride: [0, 1],
                padding: [(0, 0); 2],
                dilation: [1, 1],
                groups: 1,
            },
        );
        assert!(zero.unwrap_err().contains("positive"));
        let huge = Geometry::new(
            [usize::MAX / 2, 4, 8, 8],
            [4, 4, 1, 1],
            &options(1, 0, 1, 1),
        );
        assert!(huge.unwrap_err().contains("too large"));
    }
}
