//! LeNet-5 (LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied to document
//! recognition", 1998), in its common modern form: conv 5×5 ×6 (padding 2 on 28×28 input, as
//! the paper's 32×32 frame) → ReLU → pool 2 → conv 5×5 ×16 → ReLU → pool 2 → fc 120 → ReLU →
//! fc 84 → ReLU → fc 10. About 61 k parameters.
//!
//! ```text
//! cargo xtask train-vision --model lenet5
//! ```

use burn::nn::conv::Conv2dConfig;
use burn::nn::{Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;

use super::layers::{Pool2d, PoolKind, conv_out, pool_out, too_small};
use super::{LayerTap, ModelError};
use crate::nn::Conv2d;

/// Configuration of [`LeNet5`].
#[derive(Config, Debug)]
pub struct LeNet5Config {
    /// Channels of the input images.
    #[config(default = 1)]
    pub in_channels: usize,
    /// Height and width of the (square) input images.
    #[config(default = 28)]
    pub image_size: usize,
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Output channels of the two convolutions.
    #[config(default = "[6, 16]")]
    pub conv_channels: [usize; 2],
    /// Kernel size of both convolutions.
    #[config(default = 5)]
    pub kernel_size: usize,
    /// Stride of both convolutions.
    #[config(default = 1)]
    pub stride: usize,
    /// Zero padding of the first convolution (2 turns 28×28 into the paper's 32×32 frame).
    #[config(default = 2)]
    pub padding: usize,
    /// Pooling after each convolution (`Avg` is the paper's subsampling).
    #[config(default = "PoolKind::Max")]
    pub pool: PoolKind,
    /// Window (and stride) of both poolings.
    #[config(default = 2)]
    pub pool_size: usize,
    /// Widths of the two hidden fully connected layers.
    #[config(default = "[120, 84]")]
    pub hidden: [usize; 2],
}

/// LeNet-5. See the module docs for the layer stack.
#[derive(Module, Debug)]
pub struct LeNet5 {
    /// First convolution (the learned filters).
    pub conv1: Conv2d,
    /// Second convolution.
    pub conv2: Conv2d,
    pool: Pool2d,
    /// First hidden layer.
    pub fc1: Linear,
    /// Second hidden layer.
    pub fc2: Linear,
    /// Output layer (logits).
    pub fc3: Linear,
    act: Relu,
}

impl LeNet5Config {
    /// Features entering `fc1`, or an error when the image is too small.
    pub fn flat_features(&self) -> Result<usize, ModelError> {
        let side = conv_out(self.image_size, self.kernel_size, self.stride, self.padding)
            .and_then(|s| pool_out(s, self.pool_size))
            .and_then(|s| conv_out(s, self.kernel_size, self.stride, 0))
            .and_then(|s| pool_out(s, self.pool_size))
            .filter(|&s| s > 0)
            .ok_or_else(|| {
                too_small(
                    "lenet5",
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
    pub fn init(&self, device: &Device) -> Result<LeNet5, ModelError> {
        let flat = self.flat_features()?;
        let k = [self.kernel_size, self.kernel_size];
        let s = [self.stride, self.stride];
        let p = self.padding;
        Ok(LeNet5 {
            conv1: Conv2dConfig::new([self.in_channels, self.conv_channels[0]], k)
                .with_stride(s)
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .init(device)
                .into(),
            conv2: Conv2dConfig::new([self.conv_channels[0], self.conv_channels[1]], k)
                .with_stride(s)
                .init(device)
                .into(),
            pool: Pool2d::new(self.pool, self.pool_size),
            fc1: LinearConfig::new(flat, self.hidden[0]).init(device),
            fc2: LinearConfig::new(self.hidden[0], self.hidden[1]).init(device),
            fc3: LinearConfig::new(self.hidden[1], self.num_classes).init(device),
            act: Relu::new(),
        })
    }
}

impl LeNet5 {
    /// Class logits of `images` (`[batch, channels, size, size]`) → `[batch, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_traced(images, &mut |_, _, _| {})
    }

    /// [`forward`](Self::forward), calling `tap(layer, output shape, parameters)` after each
    /// layer (what `--summary` prints).
    pub fn forward_traced(&self, images: Tensor<4>, tap: &mut LayerTap<'_>) -> Tensor<2> {
        // Each convolution, its ReLU and the pooling run as one operation where they can.
        let conv1_dims = self.conv1.output_dims(images.dims());
        let x = self.pool.conv_relu(&self.conv1, images);
        tap("conv1 + relu", &conv1_dims, self.conv1.num_params());
        tap("pool1", &x.dims(), 0);
        let conv2_dims = self.conv2.output_dims(x.dims());
        let x = self.pool.conv_relu(&self.conv2, x);
        tap("conv2 + relu", &conv2_dims, self.conv2.num_params());
        tap("pool2", &x.dims(), 0);
        let x = x.flatten::<2>(1, 3);
        tap("flatten", &x.dims(), 0);
        let x = self.act.forward(self.fc1.forward(x));
        tap("fc1 + relu", &x.dims(), self.fc1.num_params());
        let x = self.act.forward(self.fc2.forward(x));
        tap("fc2 + relu", &x.dims(), self.fc2.num_params());
        let x = self.fc3.forward(x);
        tap("fc3", &x.dims(), self.fc3.num_params());
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_device;

    #[test]
    fn shapes_and_parameter_count_are_the_papers() {
        let device = test_device();
        let net = LeNet5Config::new().init(&device).unwrap();
        // conv 156 + conv 2,416 + fc 48,120 + fc 10,164 + fc 850.
        assert_eq!(net.num_params(), 61_706);
        let mut shapes = Vec::new();
        let out = net.forward_traced(Tensor::zeros([2, 1, 28, 28], &device), &mut |_, d, _| {
            shapes.push(d.to_vec())
        });
        assert_eq!(out.dims(), [2, 10]);
        // 5×5 kernels: 28 (padded by 2) → 28 → pool 14 → 10 → pool 5.
        assert_eq!(shapes[0], [2, 6, 28, 28]);
        assert_eq!(shapes[1], [2, 6, 14, 14]);
        assert_eq!(shapes[2], [2, 16, 10, 10]);
        assert_eq!(shapes[3], [2, 16, 5, 5]);
    }
}
