//! Strata vision: MNIST-style and image-folder datasets, CNNs and ResNets, transfer learning,
//! and pictures of what the networks learn.
//!
//! - [`idx`], [`mnist`]: the IDX reader and MNIST / Fashion-MNIST with train / valid / test
//!   splits, re-exported from strata-data (which holds them because other families read MNIST too);
//! - [`data`]: burn `Dataset` and `Batcher` (normalisation, with MNIST's in
//!   [`data::Normalization::mnist`], augmentation);
//! - [`folder`]: torchvision's `ImageFolder` (`train/` and `val/`, a folder per class) for fine-tuning;
//! - [`nn`]: the convolution, max pooling and dropout under every CNN (our own kernels and backward passes on flex);
//! - [`models`]: the simple CNN, LeNet-5 and ResNet-18/34/50 in torchvision's layout;
//! - [`transfer`]: pretrained ResNets: loading, the three fine-tuning strategies, ImageNet prediction;
//! - [`preprocess`]: torchvision's ImageNet preprocessing (PIL bilinear resize, center crop, normalisation), bit for bit;
//! - [`digit`]: a digit someone hands over (a drawing, a photo) made into an MNIST digit: fitted to a 20×20 box, centred by mass;
//! - [`viz`]: `filters.png` and `feature-maps.png`;
//! - [`job`]: the `train-vision` and `predict-vision` jobs behind the CLI;
//! - [`selftest`]: the CNNs' and ResNet-18's forward and backward pass on two backends, compared.

pub mod bench;
pub mod data;
pub mod digit;
pub mod folder;
pub mod job;
pub mod models;
pub mod nn;
pub mod preprocess;
pub mod selftest;
pub mod summary;
pub mod transfer;
pub mod viz;

pub use strata_data::{idx, mnist};
