//! From bytes on disk to normalised batches: a burn `Dataset` over an [`ImageSet`], and a
//! `Batcher` that scales pixels to [0, 1], normalises them with the dataset's mean and std
//! (torchvision's `ToTensor` + `Normalize`), and optionally applies light augmentation
//! (a random shift of up to ±2 pixels and a rotation of up to ±10°).

use std::sync::{Arc, Mutex};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::mnist::{ImageSet, MnistKind};

/// One image and its label.
#[derive(Debug, Clone)]
pub struct ImageItem {
    /// Grey pixels, row-major, 0–255.
    pub pixels: Vec<u8>,
    /// Class index.
    pub label: u8,
}

/// A batch ready for the model.
#[derive(Debug, Clone)]
pub struct ImageBatch {
    /// Normalised images, `[batch, 1, rows, cols]`.
    pub images: Tensor<4>,
    /// Class indices, `[batch]`.
    pub targets: Tensor<1, Int>,
}

/// A burn dataset over an [`ImageSet`] (shared, not copied).
#[derive(Debug, Clone)]
pub struct ImageDataset {
    set: Arc<ImageSet>,
}

impl ImageDataset {
    /// Wraps `set`.
    pub fn new(set: ImageSet) -> Self {
        Self { set: Arc::new(set) }
    }
}

impl Dataset<ImageItem> for ImageDataset {
    fn get(&self, index: usize) -> Result<ImageItem, DatasetError> {
        if index >= self.set.len() {
            return Err(DatasetError::new(std::io::Error::other(format!(
                "image index {index} is out of range: the dataset has {} images",
                self.set.len()
            ))));
        }
        Ok(ImageItem {
            pixels: self.set.image(index).to_vec(),
            label: self.set.labels[index],
        })
    }

    fn len(&self) -> usize {
        self.set.len()
    }
}

/// Light geometric augmentation of grey images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Largest shift, in pixels, along each axis.
    pub max_shift: f32,
    /// Largest rotation, in degrees, either way.
    pub max_degrees: f32,
}

impl Default for Augment {
    fn default() -> Self {
        Self {
            max_shift: 2.0,
            max_degrees: 10.0,
        }
    }
}

/// Turns [`ImageItem`]s into an [`ImageBatch`].
/// Per-channel normalisation of pixels scaled to [0, 1]: `(x - mean[c]) / std[c]`, as
/// torchvision's `Normalize`. One value per channel: one for grey images, three for RGB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Mean of each channel.
    #[serde(deserialize_with = "one_or_many")]
    pub mean: Vec<f32>,
    /// Standard deviation of each channel.
    #[serde(deserialize_with = "one_or_many")]
    pub std: Vec<f32>,
}

impl Normalization {
    /// ImageNet's statistics, which torchvision's pretrained models expect.
    pub fn imagenet() -> Self {
        Self {
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        }
    }

    /// One grey channel.
    pub fn grey(mean: f32, std: f32) -> Self {
        Self {
            mean: vec![mean],
            std: vec![std],
        }
    }

    /// Mean and standard deviation of an MNIST-style dataset's training pixels scaled to [0, 1]
    /// (the constants torchvision tutorials use).
    pub fn mnist(kind: MnistKind) -> Self {
        match kind {
            MnistKind::Mnist => Self::grey(0.1307, 0.3081),
            MnistKind::FashionMnist => Self::grey(0.2860, 0.3530),
        }
    }

    /// Channels described.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }
}

/// A list of numbers, or one number (the grey `config.json`s written before channels had
/// their own values).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(f32),
        Many(Vec<f32>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(v) => vec![v],
        OneOrMany::Many(v) => v,
    })
}

#[derive(Debug)]
pub struct ImageBatcher {
    rows: usize,
    cols: usize,
    mean: f32,
    std: f32,
    augment: Option<(Augment, Mutex<StdRng>)>,
}

impl ImageBatcher {
    /// A batcher for grey `rows × cols` images normalised with `norm` (one channel).
    pub fn new(rows: usize, cols: usize, norm: &Normalization) -> Self {
        assert_eq!(norm.channels(), 1, "ImageBatcher batches grey images");
        Self {
            rows,
            cols,
            mean: norm.mean[0],
            std: norm.std[0],
            augment: None,
        }
    }

    /// Adds random augmentation drawn from a generator seeded with `seed`.
    pub fn with_augment(mut self, augment: Augment, seed: u64) -> Self {
        self.augment = Some((augment, Mutex::new(StdRng::seed_from_u64(seed))));
        self
    }

    /// Normalised floats of one image (after augmentation, if any).
    pub fn normalise(&self, pixels: &[u8]) -> Vec<f32> {
        let scale = 1.0 / (255.0 * self.std);
        let shift = self.mean / self.std;
        pixels.iter().map(|&p| p as f32 * scale - shift).collect()
    }
}

impl Batcher<ImageItem, ImageBatch> for ImageBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &Device) -> ImageBatch {
        let n = items.len();
        let mut floats = Vec::with_capacity(n * self.rows * self.cols);
        let mut labels = Vec::with_capacity(n);
        for item in &items {
            match &self.augment {
                Some((aug, rng)) => {
                    let (dx, dy, angle) = {
                        let mut rng = rng.lock().expect("augment rng");
                        (
                            rng.random_range(-aug.max_shift..=aug.max_shift),
                            rng.random_range(-aug.max_shift..=aug.max_shift),
                            rng.random_range(-aug.max_degrees..=aug.max_degrees)
                                .to_radians(),
                        )
                    };
                    let warped = affine(&item.pixels, self.rows, self.cols, angle, dx, dy);
                    floats.extend(self.normalise(&warped));
                }
                None => floats.extend(self.normalise(&item.pixels)),
            }
            labels.push(item.label as i64);
        }
        ImageBatch {
            images: Tensor::from_data(
                TensorData::new(floats, [n, 1, self.rows, self.cols]),
                device,
            ),
            targets: Tensor::from_data(TensorData::new(labels, [n]), device),
        }
    }
}

/// Rotates a grey image by `angle` radians about its centre and shifts it by `(dx, dy)` pixels,
/// with bilinear sampling and black outside the source.
pub fn affine(pixels: &[u8], rows: usize, cols: usize, angle: f32, dx: f32, dy: f32) -> Vec<u8> {
    let (sin, cos) = angle.sin_cos();
    let (cy, cx) = ((rows as f32 - 1.0) / 2.0, (cols as f32 - 1.0) / 2.0);
    let at = |y: isize, x: isize| -> f32 {
        if y < 0 || x < 0 || y >= rows as isize || x >= cols as isize {
            0.0
        } else {
            pixels[y as usize * cols + x as usize] as f32
        }
    };
    let mut out = vec![0u8; rows * cols];
    for y in 0..rows {
        for x in 0..cols {
            // Inverse map: output pixel → source position.
            let (u, v) = (x as f32 - cx - dx, y as f32 - cy - dy);
            let sx = cos * u + sin * v + cx;
            let sy = -sin * u + cos * v + cy;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            let value = at(y0, x0) * (1.0 - fx) * (1.0 - fy)
                + at(y0, x0 + 1) * fx * (1.0 - fy)
                + at(y0 + 1, x0) * (1.0 - fx) * fy
                + at(y0 + 1, x0 + 1) * fx * fy;
            out[y * cols + x] = value.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_warp_keeps_the_image() {
        let img: Vec<u8> = (0..25).map(|i| (i * 10) as u8).collect();
        assert_eq!(affine(&img, 5, 5, 0.0, 0.0, 0.0), img);
    }

    #[test]
    fn shift_moves_pixels() {
        let mut img = vec![0u8; 25];
        img[2 * 5 + 2] = 200;
        let out = affine(&img, 5, 5, 0.0, 1.0, 0.0);
        assert_eq!(out[2 * 5 + 3], 200);
        assert_eq!(out.iter().filter(|&&p| p > 0).count(), 1);
    }

    #[test]
    fn quarter_turn_rotates() {
        let mut img = vec![0u8; 9];
        img[1] = 255; // top middle
        let out = affine(&img, 3, 3, std::f32::consts::FRAC_PI_2, 0.0, 0.0);
        // A counter-clockwise quarter turn in image coordinates moves top-middle to a side.
        assert_eq!(out[4], 0);
        assert_eq!(out.iter().filter(|&&p| p == 255).count(), 1);
        assert!(out[3] == 255 || out[5] == 255, "{out:?}");
    }

    #[test]
    fn normalisation_matches_torchvision() {
        let b = ImageBatcher::new(1, 2, &Normalization::grey(0.1307, 0.3081));
        let v = b.normalise(&[0, 255]);
        assert!((v[0] - (-0.1307 / 0.3081)).abs() < 1e-6);
        assert!((v[1] - ((1.0 - 0.1307) / 0.3081)).abs() < 1e-5);
    }

    #[test]
    fn normalization_reads_one_number_or_one_per_channel() {
        let old: Normalization = serde_json::from_str(r#"{"mean": 0.5, "std": 0.25}"#).unwrap();
        assert_eq!(old, Normalization::grey(0.5, 0.25));
        let json = serde_json::to_string(&Normalization::imagenet()).unwrap();
        let rgb: Normalization = serde_json::from_str(&json).unwrap();
        assert_eq!(rgb, Normalization::imagenet());
        assert_eq!(rgb.channels(), 3);
    }

    #[test]
    fn out_of_range_item_is_an_error() {
        let set = ImageSet {
            pixels: vec![0; 4],
            labels: vec![1],
            rows: 2,
            cols: 2,
        };
        let ds = ImageDataset::new(set);
        assert_eq!(ds.get(0).unwrap().label, 1);
        assert!(ds.get(1).is_err());
    }
}
