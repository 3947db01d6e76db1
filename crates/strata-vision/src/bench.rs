//! Throughput of training the simple CNN and LeNet-5 (`cargo xtask bench cnn-train`,
//! `lenet5-train`) and of ResNet-18 inference and training (`resnet18-infer`, `resnet18-train`).
//!
//! It runs the same code path as `train-vision` — the model's `TrainStep` (forward, cross-entropy,
//! backward) followed by an Adam step, on normalised MNIST batches — without burn-train's
//! metric bookkeeping, after a warm-up.

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use burn::train::TrainStep;

use crate::data::{ImageBatcher, ImageItem, Normalization};
use crate::mnist::{ImageSet, MnistKind};
use crate::models::{ResNetConfig, VisionConfig};

/// Result of a training-throughput measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Images per second over the timed steps.
    pub images_per_s: f64,
    /// Timed steps.
    pub steps: usize,
    /// Seconds of the timed steps.
    pub seconds: f64,
}

/// Times `steps` training steps of `model` (`simple-cnn` or `lenet5`, as `--model` names them)
/// on batches of `batch_size` images from `set`, after `warmup` untimed steps, on `device`
/// (autodiff is added here).
pub fn cnn_train_throughput(
    model: &str,
    set: &ImageSet,
    device: &Device,
    batch_size: usize,
    warmup: usize,
    steps: usize,
) -> Throughput {
    let device = device.clone().autodiff();
    strata_tensor::seed(&device, 0);
    let config = VisionConfig::named(model, 1, set.rows, 10).expect("a CNN for MNIST");
    let mut model = config.init(&device).expect("valid default config");
    let mut optim = strata_train::OptimizerConfig::adam(1e-3).init();
    let batcher = ImageBatcher::new(set.rows, set.cols, &Normalization::mnist(MnistKind::Mnist));
    let batches_in_set = (set.len() / batch_size).max(1);
    let batch = |i: usize| {
        let start = (i % batches_in_set) * batch_size;
        let items = (start..(start + batch_size).min(set.len()))
            .map(|j| ImageItem {
                pixels: set.image(j).to_vec(),
                label: set.labels[j],
            })
            .collect();
        batcher.batch(items, &device)
    };
    let mut step = |i: usize| {
        let out = TrainStep::step(&model, batch(i));
        model = optim.step(1e-3, model.clone(), out.grads);
        out.item.loss
    };
    let seconds = strata_train::bench::time_steps(warmup, steps, &mut step);
    Throughput {
        images_per_s: (steps * batch_size) as f64 / seconds,
        steps,
        seconds,
    }
}

/// Times ResNet-18 (1000 classes) on batches of `batch_size` fixed 224×224 images after `warmup`
/// untimed steps, on `device`: inference (eval mode, no autodiff) when `train` is false, else
/// full training steps (forward, cross-entropy, backward, SGD with momentum 0.9 and weight
/// decay 1e-4, as torchvision's recipe).
pub fn resnet18_throughput(
    device: &Device,
    batch_size: usize,
    warmup: usize,
    steps: usize,
    train: bool,
) -> Throughput {
    let data = strata_tensor::parity::fixed_data([batch_size, 3, 224, 224]);
    let labels: Vec<i64> = (0..batch_size as i64).map(|i| i * 37 % 1000).collect();
    let time = |mut step: Box<dyn FnMut() -> Tensor<1> + '_>| {
        let seconds = strata_train::bench::time_steps(warmup, steps, |_| step());
        Throughput {
            images_per_s: (steps * batch_size) as f64 / seconds,
            steps,
            seconds,
        }
    };
    strata_tensor::seed(device, 0);
    if !train {
        let model = ResNetConfig::resnet18()
            .init(device)
            .expect("ResNet-18 is valid");
        // The input is uploaded once, as the baseline keeps its batch on the device.
        let x = Tensor::<4>::from_data(data, device);
        return time(Box::new(move || model.forward(x.clone()).sum()));
    }
    let device = device.clone().autodiff();
    let mut model = ResNetConfig::resnet18()
        .init(&device)
        .expect("ResNet-18 is valid");
    let mut sgd = strata_train::OptimizerConfig::new(strata_train::OptimizerKind::Sgd, 0.01);
    sgd.momentum = 0.9;
    sgd.weight_decay = Some(1e-4);
    let mut optim = sgd.init();
    let loss_fn = burn::nn::loss::CrossEntropyLossConfig::new().init(&device);
    let x = Tensor::<4>::from_data(data, &device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch_size]), &device);
    time(Box::new(move || {
        let loss = loss_fn.forward(model.forward(x.clone()), y.clone());
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.01, model.clone(), grads);
        loss
    }))
}
