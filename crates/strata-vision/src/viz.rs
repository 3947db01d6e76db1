//! Pictures of what a CNN learned: the first layer's kernels as a grid (`filters.png`) and the
//! first layer's feature maps for one input (`feature-maps.png`), as lectures show them.
//!
//! Each tile is scaled to its own min–max range (like torchvision's `make_grid(normalize=True,
//! scale_each=True)`) and enlarged with nearest-neighbour sampling so single weights stay visible.

use std::path::Path;

use crate::nn::Conv2d;
use burn::prelude::*;
use image::{ImageBuffer, Rgb, RgbImage};

/// Gap between tiles, in pixels.
const GAP: u32 = 2;
/// Background colour between tiles.
const BACKGROUND: Rgb<u8> = Rgb([40, 40, 48]);

/// Tiles of equal size, each `channels` planes (1 = grey, 3 = colour) of `h × w` floats.
#[derive(Debug, Clone)]
pub struct Tiles {
    /// Values, `count × channels × h × w`.
    pub values: Vec<f32>,
    /// Number of tiles.
    pub count: usize,
    /// Planes per tile: 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Tile height.
    pub h: usize,
    /// Tile width.
    pub w: usize,
}

impl Tiles {
    /// Reads a `[count, channels, h, w]` tensor. Kernels with other than 1 or 3 input channels
    /// are shown as the mean over their channels.
    pub fn from_tensor(t: Tensor<4>) -> Self {
        let [count, channels, h, w] = t.dims();
        let (t, channels) = if channels == 1 || channels == 3 {
            (t, channels)
        } else {
            (t.mean_dim(1), 1)
        };
        Self {
            values: t.try_into_vec_as::<f32>().expect("read tensor"),
            count,
            channels,
            h,
            w,
        }
    }

    /// Lays the tiles out in a grid of `columns`, each pixel enlarged `scale` times.
    pub fn grid(&self, columns: usize, scale: u32) -> RgbImage {
        let columns = columns.clamp(1, self.count.max(1));
        let rows = self.count.div_ceil(columns).max(1);
        let (tw, th) = (self.w as u32 * scale, self.h as u32 * scale);
        let width = columns as u32 * (tw + GAP) + GAP;
        let height = rows as u32 * (th + GAP) + GAP;
        let mut img: RgbImage = ImageBuffer::from_pixel(width, height, BACKGROUND);
        let plane = self.h * self.w;
        for tile in 0..self.count {
            let values =
                &self.values[tile * self.channels * plane..(tile + 1) * self.channels * plane];
            let (lo, hi) = values
                .iter()
                .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let range = if hi > lo { hi - lo } else { 1.0 };
            let level = |v: f32| (((v - lo) / range) * 255.0).round().clamp(0.0, 255.0) as u8;
            let (x0, y0) = (
                GAP + (tile % columns) as u32 * (tw + GAP),
                GAP + (tile / columns) as u32 * (th + GAP),
            );
            for y in 0..self.h {
                for x in 0..self.w {
                    let at = |c: usize| level(values[c * plane + y * self.w + x]);
                    let px = if self.channels == 3 {
                        Rgb([at(0), at(1), at(2)])
                    } else {
                        let g = at(0);
                        Rgb([g, g, g])
                    };
                    for dy in 0..scale {
                        for dx in 0..scale {
                            img.put_pixel(
                                x0 + x as u32 * scale + dx,
                                y0 + y as u32 * scale + dy,
                                px,
                            );
                        }
                    }
                }
            }
        }
        img
    }
}

/// Grid of the first convolution's kernels (`[out, in, k, k]`), 8 per row.
pub fn filters_image(conv: &Conv2d) -> RgbImage {
    let tiles = Tiles::from_tensor(conv.weight.val());
    let scale = (96 / tiles.h.max(1)).clamp(4, 24) as u32;
    tiles.grid(8, scale)
}

/// The input image (resampled to the maps' size) followed by the first convolution's feature
/// maps (after ReLU) for it, 8 per row. `image` is one normalised input, `[1, channels, h, w]`.
pub fn feature_maps_image(conv: &Conv2d, image: Tensor<4>) -> RgbImage {
    let maps = burn::tensor::activation::relu(conv.forward(image.clone()));
    let [_, c, h, w] = maps.dims();
    let maps = maps.reshape([c, 1, h, w]);
    let [_, ic, ih, iw] = image.dims();
    let input = if ic == 1 { image } else { image.mean_dim(1) };
    let input = Tiles::from_tensor(input.reshape([1, 1, ih, iw]));
    // The input goes first, resampled (nearest) to the maps' size so the grid stays regular.
    let resampled: Vec<f32> = (0..h * w)
        .map(|i| input.values[(i / w) * ih / h * iw + (i % w) * iw / w])
        .collect();
    let mut tiles = Tiles::from_tensor(maps);
    tiles.values.splice(0..0, resampled);
    tiles.count += 1;
    tiles.grid(8, 4)
}

/// Writes `img` as PNG to `path` atomically.
pub fn save_png(img: &RgbImage, path: &Path) -> std::io::Result<()> {
    strata_data::fsutil::write_atomic_with(path, |tmp| {
        img.save_with_format(tmp, image::ImageFormat::Png)
            .map_err(std::io::Error::other)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_has_the_expected_size_and_contrast() {
        let tiles = Tiles {
            values: vec![
                0.0, 1.0, 2.0, 3.0, -1.0, -1.0, -1.0, 5.0, 0.0, 0.0, 0.0, 0.0,
            ],
            count: 3,
            channels: 1,
            h: 2,
            w: 2,
        };
        let img = tiles.grid(2, 3);
        assert_eq!(
            (img.width(), img.height()),
            (2 * (6 + GAP) + GAP, 2 * (6 + GAP) + GAP)
        );
        // Each tile spans the full range: its smallest value is black, its largest white.
        assert_eq!(img.get_pixel(GAP, GAP), &Rgb([0, 0, 0]));
        assert_eq!(img.get_pixel(GAP + 5, GAP + 5), &Rgb([255, 255, 255]));
        // A constant tile is drawn, not divided by zero.
        assert_eq!(img.get_pixel(GAP, 2 * GAP + 6), &Rgb([0, 0, 0]));
    }
}
