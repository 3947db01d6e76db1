//! Strata vision: MNIST-style datasets, CNNs and pictures of what they learn.
//!
//! - [`idx`]: the IDX file format (gzipped or raw), checked so corrupt files are clear errors;
//! - [`mnist`]: MNIST and Fashion-MNIST with train / valid / test splits;
//! - [`data`]: burn `Dataset` and `Batcher` (normalisation, augmentation);
//! - [`models`]: the simple CNN and LeNet-5;
//! - [`viz`]: `filters.png` and `feature-maps.png`;
//! - [`job`]: the `train-vision` and `predict-vision` jobs behind the CLI.

pub mod bench;
pub mod data;
pub mod idx;
pub mod job;
pub mod mnist;
pub mod models;
pub mod summary;
pub mod viz;
