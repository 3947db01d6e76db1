//! The "simple CNN" of the Keras MNIST example and countless lectures:
//! conv 3×3 ×32 → ReLU → conv 3×3 ×64 → ReLU → max-pool 2 → dropout 0.25 → fc 128 → ReLU →
//! dropout 0.5 → fc 10. About 1.2 M parameters; ≥ 99 % on MNIST after a few epochs of Adam.
//!
//! ```text
//! cargo xtask train-vision --model simple-cnn --dataset mnist
//! ```

use burn::nn::conv::Conv2dConfig;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;

use super::layers::{Pool2d, PoolKind, conv_out, pool_out, too_small};
use super::{LayerTap, ModelError};
use crate::nn::{Conv2d, dropout};

/// Configuration of [`SimpleCnn`]; the defaults are the classic network for 28×28 grey images.
#[derive(Config, Debug)]
pub struct SimpleCnnConfig {
    /// Channels of the input images (1 for grey, 3 for colour).
    #[config(default = 1)]
    pub in_channels: usize,
    /// Height and width of the (square) input images.
    #[config(default = 28)]
    pub image_size: usize,
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Output channels of the two convolutions.
    #[config(default = "[32, 64]")]
    pub conv_channels: [usize; 2],
    /// Kernel size of both convolutions.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Stride of both convolutions.
    #[config(default = 1)]
    pub stride: usize,
    /// Zero padding on each side of both convolutions.
    #[config(default = 0)]
    pub padding: usize,
    /// Pooling after the second convolution.
    #[config(default = "PoolKind::Max")]
    pub pool: PoolKind,
    /// Window (and stride) of the pooling.
    #[config(default = 2)]
    pub pool_size: usize,
    /// Width of the hidden fully connected layer.
    #[config(default = 128)]
    pub hidden: usize,
    /// Dropout after the pooling.
    #[config(default = 0.25)]
    pub dropout_conv: f64,
    /// Dropout before the last layer.
    #[config(default = 0.5)]
    pub dropout_fc: f64,
}

/// The simple CNN. See the module docs for the layer stack.
#[derive(Module, Debug)]
pub struct SimpleCnn {
    /// First convolution (the "learned filters" the lecture shows).
    pub conv1: Conv2d,
    /// Second convolution.
    pub conv2: Conv2d,
    pool: Pool2d,
    dropout_conv: Dropout,
    /// Hidden fully connected layer.
    pub fc1: Linear,
    dropout_fc: Dropout,
    /// Output layer (logits).
    pub fc2: Linear,
    act: Relu,
}

impl SimpleCnnConfig {
    /// Features entering `fc1` (channels × height × width after the pooling), or an error when
    /// the image is too small for the kernels, strides and pooling asked for.
    pub fn flat_features(&self) -> Result<usize, ModelError> {
        let side = conv_out(self.image_size, self.kernel_size, self.stride, self.padding)
            .and_then(|s| conv_out(s, self.kernel_size, self.stride, self.padding))
            .and_then(|s| pool_out(s, self.pool_size))
            .filter(|&s| s > 0)
            .ok_or_else(|| {
                too_small(
                    "simple-cnn",
                    self.image_size,
                    self.kernel_size,
                    self.stride,
                    self.padding,
                    self.pool_size,
                )
            })?;
        Ok(self.conv_channels[1] * side * side)
    }

    /// Builds the network with fresh weights on `device`.
    pub fn init(&self, device: &Device) -> Result<SimpleCnn, ModelError> {
        let flat = self.flat_features()?;
        for p in [self.dropout_conv, self.dropout_fc] {
            if !(0.0..1.0).contains(&p) {
                return Err(ModelError::Config(format!("dropout {p} must be in [0, 1)")));
            }
        }
        let conv = |c_in, c_out| {
            Conv2dConfig::new([c_in, c_out], [self.kernel_size, self.kernel_size])
                .with_stride([self.stride, self.stride])
                .with_padding(PaddingConfig2d::Explicit(
                    self.padding,
                    self.padding,
                    self.padding,
                    self.padding,
                ))
                .init(device)
                .into()
        };
        Ok(SimpleCnn {
            conv1: conv(self.in_channels, self.conv_channels[0]),
            conv2: conv(self.conv_channels[0], self.conv_channels[1]),
            pool: Pool2d::new(self.pool, self.pool_size),
            dropout_conv: DropoutConfig::new(self.dropout_conv).init(),
            fc1: LinearConfig::new(flat, self.hidden).init(device),
            dropout_fc: DropoutConfig::new(self.dropout_fc).init(),
            fc2: LinearConfig::new(self.hidden, self.num_classes).init(device),
            act: Relu::new(),
        })
    }
}

impl SimpleCnn {
    /// Class logits of `images` (`[batch, channels, size, size]`, normalised) → `[batch, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_traced(images, &mut |_, _, _| {})
    }

    /// [`forward`](Self::forward), calling `tap(layer, output shape, parameters)` after each
    /// layer (what `--summary` prints).
    pub fn forward_traced(&self, images: Tensor<4>, tap: &mut LayerTap<'_>) -> Tensor<2> {
        let x = self.conv1.forward_relu(images);
        tap("conv1 + relu", &x.dims(), self.conv1.num_params());
        // conv2, its ReLU and the pooling run as one operation where they can.
        let conv2_dims = self.conv2.output_dims(x.dims());
        let x = self.pool.conv_relu(&self.conv2, x);
        tap("conv2 + relu", &conv2_dims, self.conv2.num_params());
        let x = dropout(&self.dropout_conv, x);
        tap("pool + dropout", &x.dims(), 0);
        let x = x.flatten::<2>(1, 3);
        tap("flatten", &x.dims(), 0);
        let x = dropout(&self.dropout_fc, self.act.forward(self.fc1.forward(x)));
        tap("fc1 + relu + dropout", &x.dims(), self.fc1.num_params());
        let x = self.fc2.forward(x);
        tap("fc2", &x.dims(), self.fc2.num_params());
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_device;

    #[test]
    fn shapes_and_parameter_count_are_the_keras_examples() {
        let device = test_device();
        let net = SimpleCnnConfig::new().init(&device).unwrap();
        // conv1 320 + conv2 18,496 + fc1 1,179,776 + fc2 1,290 (the Keras example's count).
        assert_eq!(net.num_params(), 1_199_882);
        let mut shapes = Vec::new();
        let out = net.forward_traced(Tensor::zeros([3, 1, 28, 28], &device), &mut |_, d, _| {
            shapes.push(d.to_vec())
        });
        assert_eq!(out.dims(), [3, 10]);
        assert_eq!(shapes[0], [3, 32, 26, 26]);
        assert_eq!(shapes[1], [3, 64, 24, 24]);
        assert_eq!(shapes[2], [3, 64, 12, 12]);
    }

    #[test]
    fn a_kernel_larger_than_the_image_is_an_error() {
        let err = SimpleCnnConfig::new()
            .with_kernel_size(15)
            .init(&test_device())
            .unwrap_err();
        assert!(err.to_string().contains("too small"), "{err}");
    }
}
