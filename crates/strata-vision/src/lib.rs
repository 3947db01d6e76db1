//! Strata vision: MNIST-style and image-folder datasets, CNNs and ResNets, transfer learning,
//! and pictures of what the networks learn.
//!
//! - [`idx`]: the IDX file format (gzipped or raw), checked so corrupt files are clear errors;
//! - [`mnist`]: MNIST and Fashion-MNIST with train / valid / test splits;
//! - [`data`]: burn `Dataset` and `Batcher` (normalisation, augmentation);
//! - [`folder`]: torchvision's `ImageFolder` (`train/` and `val/`, a folder per class) for fine-tuning;
//! - [`models`]: the simple CNN, LeNet-5 and ResNet-18/34/50 in torchvision's layout;
//! - [`transfer`]: pretrained ResNets: loading, the three fine-tuning strategies, ImageNet prediction;
//! - [`preprocess`]: torchvision's ImageNet preprocessing (PIL bilinear resize, center crop, normalisation), bit for bit;
//! - [`digit`]: a digit someone hands over (a drawing, a photo) made into an MNIST digit: fitted to a 20×20 box, centred by mass;
//! - [`viz`]: `filters.png` and `feature-maps.png`;
//! - [`job`]: the `train-vision` and `predict-vision` jobs behind the CLI;
//! - [`selftest`]: the CNN's forward and backward pass on two backends, compared.

pub mod bench;
pub mod data;
pub mod digit;
pub mod folder;
pub mod idx;
pub mod job;
pub mod mnist;
pub mod models;
pub mod preprocess;
pub mod selftest;
pub mod summary;
pub mod transfer;
pub mod viz;
