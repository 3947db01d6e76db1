//! torchvision's ImageNet preprocessing, bit for bit: load, `Resize(256)`, `CenterCrop(224)`,
//! `ToTensor()`, `Normalize(mean, std)`.
//!
//! Every ImageNet classifier published with torchvision (ResNet-18/34/50 among them) was trained
//! and evaluated on images prepared this way:
//!
//! ```text
//! img = Image.open(path).convert("RGB")          # load_rgb
//! transforms.Resize(256)                          # resize_shorter_side: PIL's bilinear resize
//! transforms.CenterCrop(224)                      # center_crop
//! transforms.ToTensor()                           # ImageNetPreset::apply: u8 / 255 in float32,
//! transforms.Normalize(mean, std)                 #   then (x - mean) / std, CHW
//! ```
//!
//! On a PIL image, `Resize` calls Pillow's `Image.resize(size, BILINEAR)`, whose result is not
//! the textbook bilinear interpolation: Pillow resamples in two separable passes through an
//! 8-bit image, with a triangle filter whose support is widened by the scale factor when it
//! shrinks (so a downscale averages every source pixel under the output pixel, an antialiased
//! resize), and it sums 8-bit pixels with fixed-point weights. The horizontal pass runs first,
//! except that since Pillow 13 the vertical one does when the height shrinks by more than twice
//! as many pixels as the width ([`PassOrder`]; for `Resize(256)` that is only photos about twice as
//! tall as wide or taller). [`resize_bilinear_pil`] is a port of that algorithm that reproduces
//! each of its roundings, and so gives the very bytes Pillow gives (checked against Pillow 13
//! and torchvision 0.24 by `tests/preprocess.rs`, fixtures from
//! `datasets/fixtures/make_preprocess_fixtures.py`). The crop and size rules, and the float32
//! operations of `ToTensor` and `Normalize`, are torchvision's too, so [`ImageNetPreset::apply`]
//! returns the tensor torchvision returns, bit for bit, for any image both have decoded to the
//! same pixels.
//!
//! Decoding is the image crate's. PNG decodes to the same pixels as Pillow's (8- and 16-bit,
//! grey, grey + alpha, palette, RGBA, EXIF orientations: all checked); a JPEG differs from
//! Pillow's libjpeg-turbo by a few levels on some pixels (the IDCT and chroma upsampling are
//! each decoder's own), and the preprocessing carries that difference on, smoothed by the
//! resize (at most 3 levels after `Resize` + `CenterCrop` on the test JPEG).
//! Unlike torchvision's default image-folder loader, [`load_rgb`] applies the EXIF orientation
//! (as `ImageOps.exif_transpose` does), so that a photo taken on its side is seen upright.
//!
//! [`imagenet_classes`] gives the 1000 ImageNet class names in class-index order.
//!
//! ```no_run
//! use strata_vision::preprocess::{load_rgb, ImageNetPreset};
//!
//! let img = load_rgb(std::path::Path::new("photo.jpg"))?;
//! let chw: Vec<f32> = ImageNetPreset::default().apply(&img); // [3, 224, 224], row-major
//! # Ok::<(), strata_vision::preprocess::PreprocessError>(())
//! ```

use std::io::Cursor;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

/// Bits of fraction of Pillow's fixed-point weights: 32 bits, less 8 for the pixel value and 2
/// for the overshoot of filters with negative lobes.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The support of the triangle (bilinear) filter, in source pixels, before it is widened.
const BILINEAR_SUPPORT: f64 = 1.0;

/// The triangle filter.
fn bilinear_filter(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// The weights of one resampling pass along one axis: for each output index, the first source
/// index it reads, how many it reads, and their fixed-point weights.
struct Coefficients {
    /// Stride of `weights`: the largest number of source pixels an output pixel can read.
    ksize: usize,
    /// `(first source index, count)` for each output index.
    bounds: Vec<(usize, usize)>,
    /// `ksize` fixed-point weights for each output index (unused ones are 0).
    weights: Vec<i32>,
}

impl Coefficients {
    /// The weights that resample `in_size` source pixels into `out_size` output pixels, computed
    /// with Pillow's double-precision operations in Pillow's order, then normalised to sum to 1
    /// and turned into fixed point with `PRECISION_BITS` bits of fraction.
    fn new(in_size: u32, out_size: u32) -> Self {
        // Pillow's box is (0, 0, width, height) in single precision; the difference is then
        // divided in double precision.
        let (in0, in1) = (0.0f32, in_size as f32);
        let scale = f64::from(in1 - in0) / f64::from(out_size);
        // A downscale widens the filter (antialiasing); an upscale keeps it at one pixel.
        let filterscale = if scale < 1.0 { 1.0 } else { scale };
        let support = BILINEAR_SUPPORT * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let out = out_size as usize;

        let mut bounds = Vec::with_capacity(out);
        let mut weights = vec![0i32; out * ksize];
        let mut k = vec![0f64; ksize];
        for (xx, row) in weights.chunks_exact_mut(ksize).enumerate() {
            let center = f64::from(in0) + (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C's `(int)` truncates toward zero, as `as` does; negative starts clamp to 0.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size));
            let count = (xmax - xmin).max(0) as usize;
            let mut ww = 0.0f64;
            for (x, w) in k.iter_mut().enumerate().take(count) {
                *w = bilinear_filter(((x as i64 + xmin) as f64 - center + 0.5) * ss);
                ww += *w;
            }
            for (w, fixed) in k.iter().zip(row.iter_mut()).take(count) {
                let w = if ww != 0.0 { w / ww } else { *w };
                *fixed = to_fixed(w);
            }
            bounds.push((xmin as usize, count));
        }
        Self {
            ksize,
            bounds,
            weights,
        }
    }

    /// The `(first source index, weights)` of output index `i`.
    fn of(&self, i: usize) -> (usize, &[i32]) {
        let (first, count) = self.bounds[i];
        (first, &self.weights[i * self.ksize..i * self.ksize + count])
    }
}

/// A normalised weight in fixed point, rounded half away from zero as Pillow does.
fn to_fixed(w: f64) -> i32 {
    let one = f64::from(1u32 << PRECISION_BITS);
    if w < 0.0 {
        (-0.5 + w * one) as i32
    } else {
        (0.5 + w * one) as i32
    }
}

/// The fixed-point sum (which started at one half) back to a byte: the integer part, clipped.
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One half in fixed point: where every sum starts, so that the shift in [`clip8`] rounds.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Which of its two passes Pillow runs first; the order changes the rounding of the 8-bit
/// image between the passes, so it decides the last bit of some pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PassOrder {
    /// Pillow 13 and later: the vertical pass first when the height shrinks by more than twice
    /// as many pixels as the width does (`in_h - height > 2 * (in_w - width)`), the horizontal
    /// pass first otherwise.
    #[default]
    Pillow13,
    /// Pillow 12 and earlier: always the horizontal pass first.
    Pillow12,
}

impl PassOrder {
    /// Whether this order resizes `in_w` × `in_h` to `width` × `height` vertically first.
    pub fn vertical_first(self, (in_w, in_h): (u32, u32), (width, height): (u32, u32)) -> bool {
        match self {
            Self::Pillow12 => false,
            Self::Pillow13 => {
                height < in_h
                    && i64::from(in_h) - i64::from(height)
                        > 2 * (i64::from(in_w) - i64::from(width))
            }
        }
    }
}

/// Resizes an 8-bit RGB image to `width` × `height` exactly as Pillow's
/// `Image.resize((width, height), Image.BILINEAR)` does, which is what torchvision's
/// `transforms.Resize` runs on a PIL image. The passes run in the order of Pillow 13 and later
/// ([`PassOrder::Pillow13`]); [`resize_bilinear_pil_with`] can follow older releases.
///
/// The resize is separable: a horizontal pass and a vertical pass, each through an 8-bit
/// image; a pass whose size does not change is skipped, and an image whose size does not
/// change is returned as is. Along each axis the triangle filter is widened by the scale
/// factor when shrinking, so every source pixel contributes (antialiasing). Weights are
/// computed in double precision, normalised per output pixel, and applied in fixed point
/// (22 bits of fraction) with Pillow's rounding and clipping, so the result equals Pillow's
/// byte for byte. A zero `width` or `height` gives an empty image; an empty source gives black.
pub fn resize_bilinear_pil(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    resize_bilinear_pil_with(img, width, height, PassOrder::default())
}

/// [`resize_bilinear_pil`] with the passes in the `order` of a given Pillow release.
pub fn resize_bilinear_pil_with(
    img: &RgbImage,
    width: u32,
    height: u32,
    order: PassOrder,
) -> RgbImage {
    let (in_w, in_h) = img.dimensions();
    if (in_w, in_h) == (width, height) {
        return img.clone();
    }
    if width == 0 || height == 0 || in_w == 0 || in_h == 0 {
        return RgbImage::new(width, height);
    }
    let need_horizontal = width != in_w;
    let need_vertical = height != in_h;
    let vertical = Coefficients::new(in_h, height);
    let (pixels, cols) = (img.as_raw(), in_w as usize);

    let out = if !need_horizontal {
        vertical_pass(pixels, cols, &vertical, 0)
    } else if !need_vertical {
        horizontal_pass(
            pixels,
            cols,
            &Coefficients::new(in_w, width),
            0..in_h as usize,
        )
    } else if order.vertical_first((in_w, in_h), (width, height)) {
        let tall = vertical_pass(pixels, cols, &vertical, 0);
        let horizontal = Coefficients::new(in_w, width);
        horizontal_pass(&tall, cols, &horizontal, 0..height as usize)
    } else {
        // Only the source rows the vertical pass reads go through the horizontal pass.
        let first = vertical.bounds[0].0;
        let (last_first, last_count) = vertical.bounds[height as usize - 1];
        let horizontal = Coefficients::new(in_w, width);
        let wide = horizontal_pass(pixels, cols, &horizontal, first..last_first + last_count);
        vertical_pass(&wide, width as usize, &vertical, first)
    };
    RgbImage::from_raw(width, height, out).expect("the passes produce width x height pixels")
}

/// Pillow's horizontal pass over `rows` of an image `cols` pixels wide: one output row of
/// `coefficients.bounds.len()` pixels per source row.
fn horizontal_pass(
    pixels: &[u8],
    cols: usize,
    coefficients: &Coefficients,
    rows: std::ops::Range<usize>,
) -> Vec<u8> {
    let out_w = coefficients.bounds.len();
    let mut out = vec![0u8; rows.len() * out_w * 3];
    for (out_row, y) in out.chunks_exact_mut(out_w * 3).zip(rows) {
        let src_row = &pixels[y * cols * 3..(y + 1) * cols * 3];
        for (xx, px) in out_row.chunks_exact_mut(3).enumerate() {
            let (first, k) = coefficients.of(xx);
            let (mut s0, mut s1, mut s2) = (HALF, HALF, HALF);
            for (src, &w) in src_row[first * 3..].chunks_exact(3).zip(k) {
                s0 += i32::from(src[0]) * w;
                s1 += i32::from(src[1]) * w;
                s2 += i32::from(src[2]) * w;
            }
            px.copy_from_slice(&[clip8(s0), clip8(s1), clip8(s2)]);
        }
    }
    out
}

/// Pillow's vertical pass over an image `cols` pixels wide whose first row is source row
/// `row_offset`: one output row per entry of `coefficients`.
fn vertical_pass(
    pixels: &[u8],
    cols: usize,
    coefficients: &Coefficients,
    row_offset: usize,
) -> Vec<u8> {
    let stride = cols * 3;
    let mut out = vec![0u8; coefficients.bounds.len() * stride];
    for (yy, out_row) in out.chunks_exact_mut(stride).enumerate() {
        let (first, k) = coefficients.of(yy);
        let first = first - row_offset;
        for (i, value) in out_row.iter_mut().enumerate() {
            let mut sum = HALF;
            for (y, &w) in k.iter().enumerate() {
                sum += i32::from(pixels[(first + y) * stride + i]) * w;
            }
            *value = clip8(sum);
        }
    }
    out
}

/// The `(width, height)` torchvision's `transforms.Resize(size)` gives an image of `width` ×
/// `height` when `size` is an int: the shorter side becomes `size` and the longer side
/// `int(size * long / short)` (truncated; a square stays square).
pub fn shorter_side_size(width: u32, height: u32, size: u32) -> (u32, u32) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    if short == 0 {
        return (width, height);
    }
    // Python's `size * long / short`: an exact integer product, one correctly rounded division.
    let new_long = (u64::from(size) * u64::from(long)) as f64 / f64::from(short);
    let new_long = new_long as u32;
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// torchvision's `transforms.Resize(size)` (an int) on a PIL image: the shorter side becomes
/// `size` (see [`shorter_side_size`]), with [`resize_bilinear_pil`]. An image already of that
/// size, or with a side of zero, is returned unchanged.
pub fn resize_shorter_side(img: &RgbImage, size: u32) -> RgbImage {
    let (width, height) = shorter_side_size(img.width(), img.height(), size);
    resize_bilinear_pil(img, width, height)
}

/// The `(left, top)` of torchvision's `CenterCrop(size)` in the coordinates of an image of
/// `width` × `height`, before padding: `int(round((side - size) / 2.0))` (Python's rounding,
/// half to even) where the image is larger than the crop; where it is smaller, torchvision
/// first pads `(size - side) // 2` zeros before (and the rest after), so the crop starts that
/// far before the image and the offset is negative.
pub fn center_crop_offset(width: u32, height: u32, size: u32) -> (i64, i64) {
    let offset = |side: u32| -> i64 {
        if size > side {
            -i64::from((size - side) / 2)
        } else {
            (f64::from(side - size) / 2.0).round_ties_even() as i64
        }
    };
    (offset(width), offset(height))
}

/// torchvision's `transforms.CenterCrop(size)` on a PIL image: the central `size` × `size`
/// square (offsets as [`center_crop_offset`]); where the image is smaller than the crop, the
/// missing pixels are black, as torchvision's zero padding makes them.
pub fn center_crop(img: &RgbImage, size: u32) -> RgbImage {
    let (left, top) = center_crop_offset(img.width(), img.height(), size);
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    RgbImage::from_fn(size, size, |x, y| {
        let (sx, sy) = (i64::from(x) + left, i64::from(y) + top);
        if (0..w).contains(&sx) && (0..h).contains(&sy) {
            *img.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

/// The ImageNet evaluation preset of torchvision's classification models: `Resize(resize)`,
/// `CenterCrop(crop)`, `ToTensor()`, `Normalize(mean, std)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageNetPreset {
    /// The shorter side after the resize (default 256).
    pub resize: u32,
    /// The side of the square center crop (default 224).
    pub crop: u32,
    /// Per-channel mean subtracted after scaling to [0, 1] (default ImageNet's 0.485, 0.456, 0.406).
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by last (default ImageNet's 0.229, 0.224, 0.225).
    pub std: [f32; 3],
}

impl Default for ImageNetPreset {
    fn default() -> Self {
        Self {
            resize: 256,
            crop: 224,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

impl ImageNetPreset {
    /// The resized and cropped image, still 8-bit RGB: `crop` × `crop` pixels.
    pub fn crop_image(&self, img: &RgbImage) -> RgbImage {
        center_crop(&resize_shorter_side(img, self.resize), self.crop)
    }

    /// The preprocessed image as `[3, crop, crop]` floats, row-major (CHW), equal bit for bit to
    /// torchvision's: each byte is divided by 255 in float32 (`ToTensor`), then the channel's
    /// mean is subtracted and the result divided by its std, in float32 (`Normalize`).
    pub fn apply(&self, img: &RgbImage) -> Vec<f32> {
        let cropped = self.crop_image(img);
        let plane = cropped.width() as usize * cropped.height() as usize;
        let mut out = vec![0f32; 3 * plane];
        for (c, channel) in out.chunks_exact_mut(plane).enumerate() {
            let (mean, std) = (self.mean[c], self.std[c]);
            for (value, px) in channel.iter_mut().zip(cropped.pixels()) {
                *value = (f32::from(px.0[c]) / 255.0 - mean) / std;
            }
        }
        out
    }

    /// [`apply`](Self::apply) as a `[3, crop, crop]` tensor on `device`, ready to be stacked
    /// into a batch.
    pub fn to_tensor(&self, img: &RgbImage, device: &Device) -> Tensor<3> {
        let side = self.crop as usize;
        Tensor::from_data(TensorData::new(self.apply(img), [3, side, side]), device)
    }
}

/// What can go wrong while loading an image file. Each message is one line that names the file.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The file could not be opened or read.
    #[error("cannot read image {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("{path} is empty (0 bytes), not an image")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The content is not one of the image formats compiled in.
    #[error(
        "{path} is not an image in a supported format (PNG, JPEG, GIF or BMP, recognised from its content)"
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The format was recognised but the data could not be decoded (truncated or corrupt).
    #[error("cannot decode {format} image {path}: {message}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The format recognised from the content.
        format: String,
        /// The decoder's error, on one line.
        message: String,
    },
}

/// Opens an image file as 8-bit RGB, the way `Image.open(path).convert("RGB")` does, after
/// applying its EXIF orientation (as `ImageOps.exif_transpose`).
///
/// The format is recognised from the content, not the name. Colour modes convert as Pillow
/// converts them: grey is repeated in the three channels, alpha is dropped (not composited),
/// 16-bit colour keeps the high byte of each sample, and 16-bit grey is clipped to 255 (PIL's
/// `I;16` to `RGB`). Unreadable, empty, unrecognised and undecodable files are one-line
/// [`PreprocessError`]s that name the file.
pub fn load_rgb(path: &Path) -> Result<RgbImage, PreprocessError> {
    let bytes = std::fs::read(path).map_err(|source| PreprocessError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.is_empty() {
        return Err(PreprocessError::Empty {
            path: path.to_path_buf(),
        });
    }
    let format = image::guess_format(&bytes).map_err(|_| PreprocessError::UnknownFormat {
        path: path.to_path_buf(),
    })?;
    let decode_error = |e: image::ImageError| PreprocessError::Decode {
        path: path.to_path_buf(),
        format: format_name(format),
        message: one_line(&e.to_string()),
    };
    let mut decoder = ImageReader::with_format(Cursor::new(&bytes[..]), format)
        .into_decoder()
        .map_err(decode_error)?;
    let orientation = decoder.orientation().map_err(decode_error)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    img.apply_orientation(orientation);
    Ok(to_rgb_like_pil(img))
}

/// The name of a format in messages ("PNG", "JPEG", ...).
fn format_name(format: ImageFormat) -> String {
    format
        .extensions_str()
        .first()
        .map_or_else(|| format!("{format:?}"), |e| e.to_uppercase())
}

/// `text` with its line breaks turned into spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A decoded image to 8-bit RGB with the rules of PIL's `convert("RGB")` (see [`load_rgb`]).
fn to_rgb_like_pil(img: DynamicImage) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let from = |samples: Vec<u8>| RgbImage::from_raw(w, h, samples).expect("3 samples a pixel");
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageRgba8(rgba) => from(
            rgba.pixels()
                .flat_map(|p| [p.0[0], p.0[1], p.0[2]])
                .collect(),
        ),
        DynamicImage::ImageLuma8(grey) => from(grey.pixels().flat_map(|p| [p.0[0]; 3]).collect()),
        DynamicImage::ImageLumaA8(grey) => from(grey.pixels().flat_map(|p| [p.0[0]; 3]).collect()),
        // PIL opens 16-bit grey as `I;16`, whose conversion clips to 255.
        DynamicImage::ImageLuma16(grey) => from(
            grey.pixels()
                .flat_map(|p| [p.0[0].min(255) as u8; 3])
                .collect(),
        ),
        // PIL unpacks 16-bit grey + alpha and 16-bit colour to their high bytes.
        DynamicImage::ImageLumaA16(grey) => from(
            grey.pixels()
                .flat_map(|p| [(p.0[0] >> 8) as u8; 3])
                .collect(),
        ),
        DynamicImage::ImageRgb16(rgb) => from(
            rgb.pixels()
                .flat_map(|p| p.0.map(|v| (v >> 8) as u8))
                .collect(),
        ),
        DynamicImage::ImageRgba16(rgba) => from(
            rgba.pixels()
                .flat_map(|p| [p.0[0], p.0[1], p.0[2]].map(|v| (v >> 8) as u8))
                .collect(),
        ),
        other => other.to_rgb8(),
    }
}

/// The 1000 ImageNet class names in class-index order ("tench", "goldfish", ...), as
/// torchvision's ImageNet weights list them (`weights.meta["categories"]`).
pub fn imagenet_classes() -> Vec<String> {
    include_str!("../assets/imagenet_classes.txt")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorter_side_rule_matches_torchvision() {
        // int(256 * long / short), the shorter side first in either orientation.
        assert_eq!(shorter_side_size(300, 200, 256), (384, 256));
        assert_eq!(shorter_side_size(180, 240, 256), (256, 341));
        assert_eq!(shorter_side_size(230, 310, 256), (256, 345));
        assert_eq!(shorter_side_size(7, 5, 256), (358, 256));
        assert_eq!(shorter_side_size(500, 375, 256), (341, 256));
        assert_eq!(shorter_side_size(256, 256, 256), (256, 256));
        assert_eq!(shorter_side_size(640, 480, 224), (298, 224));
        // 3 * 256 / 3 is exactly 256 in floating point, so no truncation to 255.
        assert_eq!(shorter_side_size(3, 3, 256), (256, 256));
        assert_eq!(shorter_side_size(0, 10, 256), (0, 10));
    }

    #[test]
    fn center_crop_offsets_round_half_to_even() {
        // (side - size) / 2: 0.5 rounds to 0, 1.5 to 2, 2.5 to 2.
        assert_eq!(center_crop_offset(225, 225, 224), (0, 0));
        assert_eq!(center_crop_offset(227, 229, 224), (2, 2));
        assert_eq!(center_crop_offset(384, 256, 224), (80, 16));
        assert_eq!(center_crop_offset(256, 341, 224), (16, 58));
        // Smaller than the crop: (size - side) // 2 zeros of padding before.
        assert_eq!(center_crop_offset(7, 5, 9), (-1, -2));
        assert_eq!(center_crop_offset(7, 5, 8), (0, -1));
        assert_eq!(center_crop_offset(7, 5, 6), (0, 0));
    }

    #[test]
    fn center_crop_pads_with_black() {
        let img = RgbImage::from_fn(3, 2, |x, y| image::Rgb([10 + x as u8, 20 + y as u8, 1]));
        let out = center_crop(&img, 4);
        // Padding: left (4-3)//2 = 0, top (4-2)//2 = 1.
        assert_eq!(out.dimensions(), (4, 4));
        assert_eq!(out.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(0, 1).0, [10, 20, 1]);
        assert_eq!(out.get_pixel(2, 2).0, [12, 21, 1]);
        assert_eq!(out.get_pixel(3, 1).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(1, 3).0, [0, 0, 0]);
        let inner = center_crop(&img, 1);
        assert_eq!(inner.get_pixel(0, 0).0, [11, 20, 1]);
    }

    #[test]
    fn resize_keeps_constant_images_and_sizes() {
        let img = RgbImage::from_pixel(13, 7, image::Rgb([200, 3, 255]));
        for (w, h) in [(5, 3), (40, 21), (13, 2), (1, 1), (100, 7)] {
            let out = resize_bilinear_pil(&img, w, h);
            assert_eq!(out.dimensions(), (w, h));
            assert!(out.pixels().all(|p| p.0 == [200, 3, 255]), "{w}x{h}");
        }
        assert_eq!(resize_bilinear_pil(&img, 13, 7), img);
        assert_eq!(resize_bilinear_pil(&img, 0, 4).dimensions(), (0, 4));
    }

    /// A deterministic, busy test picture.
    fn noise(width: u32, height: u32) -> RgbImage {
        let mut state = 0x9e37_79b9_u32;
        RgbImage::from_fn(width, height, |_, _| {
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 24) as u8
            };
            image::Rgb([next(), next(), next()])
        })
    }

    #[test]
    fn passes_run_in_pillows_order() {
        // Two-pass resizes are the two one-pass resizes in a row, in the release's order.
        let img = noise(40, 30);
        for (w, h) in [
            (35, 5),
            (45, 20),
            (20, 29),
            (39, 27),
            (39, 28),
            (90, 60),
            (13, 7),
        ] {
            let horizontal_first = resize_bilinear_pil(&resize_bilinear_pil(&img, w, 30), w, h);
            let vertical_first = resize_bilinear_pil(&resize_bilinear_pil(&img, 40, h), w, h);
            let v_first = PassOrder::Pillow13.vertical_first((40, 30), (w, h));
            let expected = if v_first {
                &vertical_first
            } else {
                &horizontal_first
            };
            assert_eq!(&resize_bilinear_pil(&img, w, h), expected, "{w}x{h}");
            let old = resize_bilinear_pil_with(&img, w, h, PassOrder::Pillow12);
            assert_eq!(old, horizontal_first, "{w}x{h}");
        }
        // 2 rows fewer for 1 column fewer is not more than twice: horizontal first.
        assert!(!PassOrder::Pillow13.vertical_first((40, 30), (39, 28)));
        assert!(PassOrder::Pillow13.vertical_first((40, 30), (39, 27)));
        // An upscale of the width with any downscale of the height: vertical first.
        assert!(PassOrder::Pillow13.vertical_first((40, 30), (45, 29)));
        assert!(!PassOrder::Pillow13.vertical_first((40, 30), (20, 31)));
        // Resize(256) of a photo keeps the aspect ratio: horizontal first unless very tall.
        assert!(!PassOrder::Pillow13.vertical_first((375, 500), (256, 341)));
        assert!(PassOrder::Pillow13.vertical_first((300, 1000), (256, 853)));
    }

    #[test]
    fn fixed_point_weights_round_like_pillow() {
        // A 2x downscale of 4 pixels: each output pixel averages a triangle over 4 inputs.
        let c = Coefficients::new(4, 2);
        assert_eq!(c.ksize, 5);
        assert_eq!(c.bounds, vec![(0, 3), (1, 3)]);
        let one = 1 << PRECISION_BITS;
        // Centre 1.0: the triangle over pixels 0, 1, 2 (3 falls outside after rounding) weighs
        // 0.75, 0.75, 0.25, normalised to 3/7, 3/7, 1/7, then rounded to 22 bits of fraction.
        assert_eq!(c.of(0), (0, &[1_797_559, 1_797_559, 599_186][..]));
        assert_eq!(c.of(1), (1, &[599_186, 1_797_559, 1_797_559][..]));
        assert_eq!(to_fixed(-0.25), -(one / 4));
        assert_eq!(clip8(HALF + 300 * one), 255);
        assert_eq!(clip8(HALF - one), 0);
    }

    #[test]
    fn default_preset_is_imagenet() {
        let p = ImageNetPreset::default();
        assert_eq!((p.resize, p.crop), (256, 224));
        // torchvision turns the Python floats (doubles) into float32.
        assert_eq!(p.mean, [0.485f64 as f32, 0.456f64 as f32, 0.406f64 as f32]);
        assert_eq!(p.std, [0.229f64 as f32, 0.224f64 as f32, 0.225f64 as f32]);
    }

    #[test]
    fn imagenet_has_1000_classes() {
        let classes = imagenet_classes();
        assert_eq!(classes.len(), 1000);
        assert_eq!(classes[0], "tench");
        assert_eq!(classes[999], "toilet tissue");
        assert!(classes.iter().all(|c| !c.is_empty() && c.trim() == c));
    }
}
