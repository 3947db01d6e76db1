//! Image classifiers: the simple CNN, LeNet-5 and the ResNets, and [`VisionNet`], the one type the trainer
//! and the CLI handle whichever of them was chosen.

pub mod layers;
pub mod lenet5;
pub mod resnet;
pub mod simple_cnn;

use crate::nn::Conv2d;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use serde::{Deserialize, Serialize};

pub use layers::{Pool2d, PoolKind};
pub use lenet5::{LeNet5, LeNet5Config};
pub use resnet::{ResNet, ResNetArch, ResNetConfig};
pub use simple_cnn::{SimpleCnn, SimpleCnnConfig};

use crate::data::ImageBatch;

/// A model cannot be built as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The configuration is inconsistent.
    #[error("{0}")]
    Config(String),
    /// The model name is unknown.
    #[error(transparent)]
    Unknown(#[from] strata_tensor::names::UnknownName),
}

/// Called after each layer of a traced forward pass: layer name, output shape, parameters.
pub type LayerTap<'a> = dyn FnMut(&str, &[usize], usize) + 'a;

/// The architectures `train-vision --model` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelName {
    /// [`SimpleCnn`].
    SimpleCnn,
    /// [`LeNet5`].
    Lenet5,
}

strata_tensor::named_enum!(ModelName, "--model", { SimpleCnn => "simple-cnn", Lenet5 => "lenet5" });

/// The model names `train-vision --model` accepts.
pub const MODEL_NAMES: &[&str] = ModelName::NAMES;

/// The lecture's convolution knobs, set from the command line over a model's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConvKnobs {
    /// Kernel size of both convolutions.
    pub kernel_size: Option<usize>,
    /// Stride of both convolutions.
    pub stride: Option<usize>,
    /// Zero padding on each side of both convolutions.
    pub padding: Option<usize>,
    /// Pooling after the convolutions.
    pub pool: Option<PoolKind>,
    /// Output channels of the two convolutions.
    pub conv_channels: Option<[usize; 2]>,
}

/// Which architecture, with its configuration (what `config.json` stores under `"model"`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "architecture", rename_all = "kebab-case")]
pub enum VisionConfig {
    /// [`SimpleCnn`].
    SimpleCnn(SimpleCnnConfig),
    /// [`LeNet5`].
    Lenet5(LeNet5Config),
    /// [`ResNet`] (ResNet-18/34/50).
    Resnet(ResNetConfig),
}

impl VisionConfig {
    /// The default configuration of a model named on the command line (`simple-cnn`, `lenet5`),
    /// for `in_channels`-channel square images of side `image_size` in `num_classes` classes.
    pub fn named(
        name: &str,
        in_channels: usize,
        image_size: usize,
        num_classes: usize,
    ) -> Result<Self, ModelError> {
        Ok(match name.parse::<ModelName>()? {
            ModelName::SimpleCnn => Self::SimpleCnn(
                SimpleCnnConfig::new()
                    .with_in_channels(in_channels)
                    .with_image_size(image_size)
                    .with_num_classes(num_classes),
            ),
            ModelName::Lenet5 => Self::Lenet5(
                LeNet5Config::new()
                    .with_in_channels(in_channels)
                    .with_image_size(image_size)
                    .with_num_classes(num_classes),
            ),
        })
    }

    /// The configuration with the knobs that are set replaced.
    pub fn with_knobs(self, k: &ConvKnobs) -> Self {
        macro_rules! apply {
            ($c:expr) => {{
                let mut c = $c;
                if let Some(v) = k.kernel_size {
                    c.kernel_size = v;
                }
                if let Some(v) = k.stride {
                    c.stride = v;
                }
                if let Some(v) = k.padding {
                    c.padding = v;
                }
                if let Some(v) = k.pool {
                    c.pool = v;
                }
                if let Some(v) = k.conv_channels {
                    c.conv_channels = v;
                }
                c
            }};
        }
        match self {
            Self::SimpleCnn(c) => Self::SimpleCnn(apply!(c)),
            Self::Lenet5(c) => Self::Lenet5(apply!(c)),
            Self::Resnet(c) => Self::Resnet(c), // torchvision's layout has no knobs
        }
    }

    /// The `model_type` written to `config.json`.
    pub fn model_type(&self) -> &'static str {
        match self {
            Self::SimpleCnn(_) => "strata-simple-cnn",
            Self::Lenet5(_) => "strata-lenet5",
            Self::Resnet(_) => "strata-resnet",
        }
    }

    /// The knobs in one line: kernel, stride, padding, pooling, channels.
    pub fn describe(&self) -> String {
        let (k, s, p, pool, c) = match self {
            Self::SimpleCnn(c) => (c.kernel_size, c.stride, c.padding, c.pool, c.conv_channels),
            Self::Lenet5(c) => (c.kernel_size, c.stride, c.padding, c.pool, c.conv_channels),
            Self::Resnet(c) => {
                return format!(
                    "{:?} blocks {:?}, {} classes",
                    c.block, c.layers, c.num_classes
                );
            }
        };
        format!(
            "kernel {k}×{k}, stride {s}, padding {p}, {pool} pooling, channels {}/{}",
            c[0], c[1]
        )
    }

    /// Input channels and image side the model expects.
    pub fn input(&self) -> (usize, usize) {
        match self {
            Self::SimpleCnn(c) => (c.in_channels, c.image_size),
            Self::Lenet5(c) => (c.in_channels, c.image_size),
            Self::Resnet(c) => (c.in_channels, 224),
        }
    }

    /// Builds the model with fresh weights.
    pub fn init(&self, device: &Device) -> Result<VisionNet, ModelError> {
        Ok(match self {
            Self::SimpleCnn(c) => VisionNet::SimpleCnn(c.init(device)?),
            Self::Lenet5(c) => VisionNet::Lenet5(c.init(device)?),
            Self::Resnet(c) => VisionNet::Resnet(c.init(device)?),
        })
    }
}

/// One of the image classifiers.
#[derive(Module, Debug)]
pub enum VisionNet {
    /// The simple CNN.
    SimpleCnn(SimpleCnn),
    /// LeNet-5.
    Lenet5(LeNet5),
    /// A ResNet.
    Resnet(ResNet),
}

impl VisionNet {
    /// Class logits, `[batch, channels, h, w]` → `[batch, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Self::SimpleCnn(m) => m.forward(images),
            Self::Lenet5(m) => m.forward(images),
            Self::Resnet(m) => m.forward(images),
        }
    }

    /// [`forward`](Self::forward), reporting each layer to `tap`.
    pub fn forward_traced(&self, images: Tensor<4>, tap: &mut LayerTap<'_>) -> Tensor<2> {
        match self {
            Self::SimpleCnn(m) => m.forward_traced(images, tap),
            Self::Lenet5(m) => m.forward_traced(images, tap),
            Self::Resnet(m) => m.forward_traced(images, tap),
        }
    }

    /// The first convolution, whose kernels and feature maps are shown as pictures.
    pub fn first_conv(&self) -> &Conv2d {
        match self {
            Self::SimpleCnn(m) => &m.conv1,
            Self::Lenet5(m) => &m.conv1,
            Self::Resnet(m) => &m.conv1,
        }
    }

    /// Logits, cross-entropy loss and targets of a batch.
    pub fn forward_classification(&self, batch: ImageBatch) -> ClassificationOutput {
        let logits = self.forward(batch.images);
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), batch.targets.clone());
        ClassificationOutput::new(loss, logits, batch.targets)
    }
}

impl TrainStep for VisionNet {
    type Input = ImageBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ImageBatch) -> TrainOutput<ClassificationOutput> {
        let out = self.forward_classification(batch);
        TrainOutput::new(self, out.loss.backward(), out)
    }
}

impl InferenceStep for VisionNet {
    type Input = ImageBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ImageBatch) -> ClassificationOutput {
        self.forward_classification(batch)
    }
}

/// The device of this crate's unit tests: the first compiled backend.
#[cfg(test)]
pub(crate) fn test_device() -> Device {
    strata_tensor::first_compiled_device()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        test_device()
    }

    #[test]
    fn stride_padding_and_pooling_are_configurable() {
        let cfg = SimpleCnnConfig::new()
            .with_stride(2)
            .with_padding(1)
            .with_pool(PoolKind::Avg)
            .with_conv_channels([8, 16]);
        // 28 → 14 → 7 → pool 3: 16·3·3 features.
        assert_eq!(cfg.flat_features().unwrap(), 144);
        let net = cfg.init(&device()).unwrap();
        assert_eq!(
            net.forward(Tensor::zeros([1, 1, 28, 28], &device())).dims(),
            [1, 10]
        );
        let colour = LeNet5Config::new()
            .with_in_channels(3)
            .with_image_size(32)
            .with_padding(0);
        assert_eq!(colour.flat_features().unwrap(), 16 * 5 * 5);
    }

    #[test]
    fn parameter_paths_are_pytorchs_names() {
        let net = VisionConfig::named("simple-cnn", 1, 28, 10)
            .unwrap()
            .init(&device())
            .unwrap();
        let mut paths = strata_train::fit::parameter_paths(&net);
        paths.sort();
        assert_eq!(
            paths,
            [
                "conv1.bias",
                "conv1.weight",
                "conv2.bias",
                "conv2.weight",
                "fc1.bias",
                "fc1.weight",
                "fc2.bias",
                "fc2.weight"
            ]
        );
    }

    #[test]
    fn impossible_configs_are_errors() {
        let err = SimpleCnnConfig::new()
            .with_image_size(4)
            .init(&device())
            .unwrap_err();
        assert!(err.to_string().contains("too small"), "{err}");
        assert!(matches!(
            VisionConfig::named("resnet", 1, 28, 10),
            Err(ModelError::Unknown(_))
        ));
        assert!(
            SimpleCnnConfig::new()
                .with_dropout_fc(1.0)
                .init(&device())
                .is_err()
        );
    }
}
