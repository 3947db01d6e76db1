//! ResNet-18/34/50 (He et al., "Deep Residual Learning for Image Recognition", 2015) in
//! torchvision's layout, so that torchvision's (and timm's `*.tv_in1k`) weights load as they
//! are: the same modules, the same parameter names (`conv1.weight`, `bn1.running_mean`,
//! `layer2.0.downsample.0.weight`, `fc.bias`, ...), the same shapes.
//!
//! The stem is a 7×7 convolution with stride 2, BatchNorm, ReLU and a 3×3 max-pool with stride
//! 2; four stages of residual blocks follow, with 64, 128, 256 and 512 channels (×4 at the
//! output of a bottleneck block), the last three halving the resolution in their first block
//! (torchvision's "ResNet v1.5": the stride sits on the 3×3 convolution of a bottleneck); then
//! global average pooling and the fully connected head. A block whose input and output differ
//! in shape adds a projection shortcut (`downsample`: 1×1 convolution with the stride, then
//! BatchNorm).
//!
//! [`ResNet::features`] runs everything but the head (the backbone used as a fixed feature
//! extractor), and [`ResNet::with_head`] swaps the head for a new task's classes.

use burn::module::Initializer;
use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{LayerTap, ModelError};
use crate::nn::{Conv2d, batch_norm, batch_norm_config, max_pool};

/// Which residual block a ResNet is built of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockKind {
    /// Two 3×3 convolutions (ResNet-18/34); output channels = the stage's width.
    Basic,
    /// 1×1 reduce, 3×3, 1×1 expand (ResNet-50 and deeper); output channels = 4 × the width.
    Bottleneck,
}

impl BlockKind {
    /// Output channels of a block over the stage's width.
    pub fn expansion(self) -> usize {
        match self {
            Self::Basic => 1,
            Self::Bottleneck => 4,
        }
    }
}

/// The ResNets torchvision names, which `--arch` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResNetArch {
    /// [`ResNetConfig::resnet18`].
    Resnet18,
    /// [`ResNetConfig::resnet34`].
    Resnet34,
    /// [`ResNetConfig::resnet50`].
    Resnet50,
}

strata_tensor::named_enum!(ResNetArch, "--arch", {
    Resnet18 => "resnet18",
    Resnet34 => "resnet34",
    Resnet50 => "resnet50",
});

impl ResNetArch {
    /// The architecture's configuration, with an ImageNet head (1000 classes).
    pub fn config(self) -> ResNetConfig {
        match self {
            Self::Resnet18 => ResNetConfig::resnet18(),
            Self::Resnet34 => ResNetConfig::resnet34(),
            Self::Resnet50 => ResNetConfig::resnet50(),
        }
    }
}

/// Configuration of a [`ResNet`].
#[derive(Config, Debug, PartialEq)]
pub struct ResNetConfig {
    /// The residual block of every stage.
    pub block: BlockKind,
    /// Blocks in each of the four stages (`[2, 2, 2, 2]` for ResNet-18).
    pub layers: [usize; 4],
    /// Classes of the head (1000 for ImageNet).
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Channels of the input images.
    #[config(default = 3)]
    pub in_channels: usize,
}

/// Channels of the stem and width of the first stage; each later stage doubles it.
const BASE_WIDTH: usize = 64;

impl ResNetConfig {
    /// ResNet-18: basic blocks, `[2, 2, 2, 2]`, 11.7 M parameters.
    pub fn resnet18() -> Self {
        Self::new(BlockKind::Basic, [2, 2, 2, 2])
    }

    /// ResNet-34: basic blocks, `[3, 4, 6, 3]`, 21.8 M parameters.
    pub fn resnet34() -> Self {
        Self::new(BlockKind::Basic, [3, 4, 6, 3])
    }

    /// ResNet-50: bottleneck blocks, `[3, 4, 6, 3]`, 25.6 M parameters.
    pub fn resnet50() -> Self {
        Self::new(BlockKind::Bottleneck, [3, 4, 6, 3])
    }

    /// Features the backbone hands to the head (512 × the block's expansion).
    pub fn feature_dim(&self) -> usize {
        BASE_WIDTH * 8 * self.block.expansion()
    }

    /// Builds the network with fresh weights on `device`, initialised as torchvision does
    /// (convolutions Kaiming-normal over fan-out, BatchNorm scale 1 and shift 0).
    pub fn init(&self, device: &Device) -> Result<ResNet, ModelError> {
        if self.num_classes == 0 || self.in_channels == 0 || self.layers.contains(&0) {
            return Err(ModelError::Config(format!(
                "a ResNet needs at least one class, one input channel and one block per stage (got {} classes, {} channels, stages {:?})",
                self.num_classes, self.in_channels, self.layers
            )));
        }
        let mut in_channels = BASE_WIDTH;
        let mut stage = |index: usize| {
            let width = BASE_WIDTH << index;
            let stride = if index == 0 { 1 } else { 2 };
            (0..self.layers[index])
                .map(|b| {
                    let block = Block::new(
                        self.block,
                        in_channels,
                        width,
                        if b == 0 { stride } else { 1 },
                        device,
                    );
                    in_channels = width * self.block.expansion();
                    block
                })
                .collect::<Vec<_>>()
        };
        let (layer1, layer2, layer3, layer4) = (stage(0), stage(1), stage(2), stage(3));
        Ok(ResNet {
            conv1: conv(self.in_channels, BASE_WIDTH, 7, 2, 3, device),
            bn1: batch_norm_config(BASE_WIDTH).init(device),
            relu: Relu::new(),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1,
            layer2,
            layer3,
            layer4,
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(self.feature_dim(), self.num_classes).init(device),
        })
    }
}

/// A `k×k` convolution without bias, padded by `padding`, Kaiming-normal over fan-out.
fn conv(
    in_channels: usize,
    out_channels: usize,
    k: usize,
    stride: usize,
    padding: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([in_channels, out_channels], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: 2f64.sqrt(),
            fan_out_only: true,
        })
        .init(device)
        .into()
}

/// ResNet: stem, four stages of residual blocks, global average pooling, linear head.
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem convolution, 7×7 stride 2.
    pub conv1: Conv2d,
    /// Stem BatchNorm.
    pub bn1: BatchNorm,
    relu: Relu,
    maxpool: MaxPool2d,
    /// Stage 1 (width 64, stride 1).
    pub layer1: Vec<Block>,
    /// Stage 2 (width 128, stride 2).
    pub layer2: Vec<Block>,
    /// Stage 3 (width 256, stride 2).
    pub layer3: Vec<Block>,
    /// Stage 4 (width 512, stride 2).
    pub layer4: Vec<Block>,
    avgpool: AdaptiveAvgPool2d,
    /// The head: pooled features → class logits.
    pub fc: Linear,
}

/// Names of the four stages, first to last, as the parameter paths have them.
pub const STAGES: [&str; 4] = ["layer1", "layer2", "layer3", "layer4"];

impl ResNet {
    /// Class logits of `images` (`[batch, channels, height, width]`, normalised) →
    /// `[batch, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.fc.forward(self.features(images))
    }

    /// The backbone alone: pooled features `[batch, feature_dim]` of `images`, what the head
    /// sees (a fixed feature extractor when the backbone is frozen).
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.feature_map(images);
        self.avgpool.forward(x).flatten(1, 3)
    }

    /// The last stage's feature map `[batch, channels, height / 32, width / 32]`.
    pub fn feature_map(&self, images: Tensor<4>) -> Tensor<4> {
        self.feature_map_traced(images, &mut |_, _, _| {})
    }

    /// [`forward`](Self::forward), calling `tap(layer, output shape, parameters)` after the
    /// stem, the max-pool, each stage, the pooling and the head (what `--summary` prints).
    pub fn forward_traced(&self, images: Tensor<4>, tap: &mut LayerTap<'_>) -> Tensor<2> {
        let x = self.feature_map_traced(images, tap);
        let x = self.avgpool.forward(x).flatten(1, 3);
        tap("avgpool + flatten", &x.dims(), 0);
        let x = self.fc.forward(x);
        tap("fc", &x.dims(), self.fc.num_params());
        x
    }

    fn feature_map_traced(&self, images: Tensor<4>, tap: &mut LayerTap<'_>) -> Tensor<4> {
        let x = batch_norm(&self.bn1, self.conv1.forward(images), true);
        tap(
            "conv1 7×7/2 + bn1 + relu",
            &x.dims(),
            self.conv1.num_params() + self.bn1.num_params(),
        );
        let mut x = max_pool(&self.maxpool, x);
        tap("maxpool 3×3/2", &x.dims(), 0);
        let stages = [&self.layer1, &self.layer2, &self.layer3, &self.layer4];
        for (name, stage) in STAGES.iter().zip(stages) {
            for block in stage {
                x = block.forward(x);
            }
            let params = stage.iter().map(Module::num_params).sum();
            tap(
                &format!("{name} ({} blocks)", stage.len()),
                &x.dims(),
                params,
            );
        }
        x
    }

    /// The same backbone with a fresh head for `num_classes` classes (PyTorch's
    /// `model.fc = nn.Linear(model.fc.in_features, num_classes)`).
    pub fn with_head(mut self, num_classes: usize, device: &Device) -> Self {
        let [features, _] = self.fc.weight.shape().dims();
        self.fc = LinearConfig::new(features, num_classes).init(device);
        self
    }

    /// Classes of the head.
    pub fn num_classes(&self) -> usize {
        self.fc.weight.shape().dims::<2>()[1]
    }
}

/// One residual block of either kind.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // a ResNet's blocks are all of one kind
pub enum Block {
    /// ResNet-18/34's block.
    Basic(BasicBlock),
    /// ResNet-50's block.
    Bottleneck(Bottleneck),
}

impl Block {
    fn new(
        kind: BlockKind,
        in_channels: usize,
        width: usize,
        stride: usize,
        device: &Device,
    ) -> Self {
        let out = width * kind.expansion();
        let downsample = if stride != 1 || in_channels != out {
            vec![
                ShortcutPart::Conv(conv(in_channels, out, 1, stride, 0, device)),
                ShortcutPart::Norm(batch_norm_config(out).init(device)),
            ]
        } else {
            Vec::new()
        };
        match kind {
            BlockKind::Basic => Self::Basic(BasicBlock {
                conv1: conv(in_channels, width, 3, stride, 1, device),
                bn1: batch_norm_config(width).init(device),
                conv2: conv(width, width, 3, 1, 1, device),
                bn2: batch_norm_config(width).init(device),
                downsample,
                relu: Relu::new(),
            }),
            BlockKind::Bottleneck => Self::Bottleneck(Bottleneck {
                conv1: conv(in_channels, width, 1, 1, 0, device),
                bn1: batch_norm_config(width).init(device),
                conv2: conv(width, width, 3, stride, 1, device),
                bn2: batch_norm_config(width).init(device),
                conv3: conv(width, out, 1, 1, 0, device),
                bn3: batch_norm_config(out).init(device),
                downsample,
                relu: Relu::new(),
            }),
        }
    }

    /// `relu(residual(x) + shortcut(x))`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Basic(b) => b.forward(x),
            Self::Bottleneck(b) => b.forward(x),
        }
    }
}

/// A part of a projection shortcut, which torchvision writes as
/// `nn.Sequential(conv1x1, BatchNorm2d)` (hence `downsample.0.weight`, `downsample.1.weight`).
#[derive(Module, Debug)]
pub enum ShortcutPart {
    /// The 1×1 convolution with the block's stride.
    Conv(Conv2d),
    /// Its BatchNorm.
    Norm(BatchNorm),
}

/// The shortcut: `x` itself, or its projection when `downsample` is not empty.
fn shortcut(downsample: &[ShortcutPart], x: Tensor<4>) -> Tensor<4> {
    downsample.iter().fold(x, |x, part| match part {
        ShortcutPart::Conv(c) => c.forward(x),
        ShortcutPart::Norm(n) => batch_norm(n, x, false),
    })
}

/// Two 3×3 convolutions with BatchNorm, and the shortcut.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// 3×3, carries the block's stride.
    pub conv1: Conv2d,
    /// BatchNorm after `conv1`.
    pub bn1: BatchNorm,
    /// 3×3.
    pub conv2: Conv2d,
    /// BatchNorm after `conv2`.
    pub bn2: BatchNorm,
    /// Projection shortcut (empty: identity).
    pub downsample: Vec<ShortcutPart>,
    relu: Relu,
}

impl BasicBlock {
    /// `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = shortcut(&self.downsample, x.clone());
        let out = batch_norm(&self.bn1, self.conv1.forward(x), true);
        let out = batch_norm(&self.bn2, self.conv2.forward(out), false);
        self.relu.forward(out + identity)
    }
}

/// 1×1 reduce, 3×3 (with the stride), 1×1 expand ×4, each with BatchNorm, and the shortcut.
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// 1×1 to the stage's width.
    pub conv1: Conv2d,
    /// BatchNorm after `conv1`.
    pub bn1: BatchNorm,
    /// 3×3, carries the block's stride.
    pub conv2: Conv2d,
    /// BatchNorm after `conv2`.
    pub bn2: BatchNorm,
    /// 1×1 to 4 × the width.
    pub conv3: Conv2d,
    /// BatchNorm after `conv3`.
    pub bn3: BatchNorm,
    /// Projection shortcut (empty: identity).
    pub downsample: Vec<ShortcutPart>,
    relu: Relu,
}

impl Bottleneck {
    /// `relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = shortcut(&self.downsample, x.clone());
        let out = batch_norm(&self.bn1, self.conv1.forward(x), true);
        let out = batch_norm(&self.bn2, self.conv2.forward(out), true);
        let out = batch_norm(&self.bn3, self.conv3.forward(out), false);
        self.relu.forward(out + identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        strata_tensor::first_compiled_device()
    }

    #[test]
    fn parameter_counts_match_torchvision() {
        // torchvision: sum(p.numel() for p in resnetXX().parameters()), and the BatchNorm running
        // statistics (buffers there, counted by burn's `num_params`).
        for (config, parameters, running_stats) in [
            (ResNetConfig::resnet18(), 11_689_512, 9_600),
            (ResNetConfig::resnet34(), 21_797_672, 17_024),
            (ResNetConfig::resnet50(), 25_557_032, 53_120),
        ] {
            let model = config.init(&device()).unwrap();
            assert_eq!(model.num_params(), parameters + running_stats, "{config:?}");
        }
    }

    #[test]
    fn parameter_names_are_torchvision_names() {
        let model = ResNetConfig::resnet50().init(&device()).unwrap();
        let paths = strata_train::parameter_paths(&model);
        for name in [
            "conv1.weight",
            "bn1.gamma",
            "layer1.0.conv3.weight",
            "layer1.0.downsample.0.weight",
            "layer1.0.downsample.1.beta",
            "layer4.2.bn3.gamma",
            "fc.weight",
        ] {
            assert!(paths.iter().any(|p| p == name), "{name} not in {paths:?}");
        }
        assert!(!paths.iter().any(|p| p.starts_with("layer1.1.downsample")));
    }

    #[test]
    fn shapes_through_the_network() {
        let device = device();
        let model = ResNetConfig::resnet18()
            .with_num_classes(7)
            .init(&device)
            .unwrap();
        let x = Tensor::<4>::zeros([2, 3, 64, 64], &device);
        assert_eq!(model.feature_map(x.clone()).dims(), [2, 512, 2, 2]);
        assert_eq!(model.features(x.clone()).dims(), [2, 512]);
        assert_eq!(model.forward(x.clone()).dims(), [2, 7]);
        let model = model.with_head(3, &device);
        assert_eq!(model.num_classes(), 3);
        assert_eq!(model.forward(x).dims(), [2, 3]);
    }

    #[test]
    fn arch_names_and_bad_configs() {
        let arch: ResNetArch = "resnet50".parse().unwrap();
        assert_eq!(arch.config().block, BlockKind::Bottleneck);
        assert_eq!(arch.config().feature_dim(), 2048);
        let err = "resnet19".parse::<ResNetArch>().unwrap_err().to_string();
        assert!(err.contains("resnet18, resnet34, resnet50"), "{err}");
        let bad = ResNetConfig::new(BlockKind::Basic, [2, 0, 2, 2]).init(&device());
        assert!(bad.is_err());
    }
}
