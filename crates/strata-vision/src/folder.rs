//! torchvision's `ImageFolder` for fine-tuning: a dataset dir that holds `train/` and `val/`,
//! each with one subfolder per class.
//!
//! ```text
//! hymenoptera/
//!   train/ants/0013035.jpg  train/ants/ant photos.jpg  ...  train/bees/...
//!   val/ants/...                                            val/bees/...
//! ```
//!
//! [`ImageFolder::open`] scans both splits the way torchvision does: the classes are the sorted
//! subfolder names of `train/` (label = position in that list), the files of a class are found
//! recursively (symbolic links followed) and sorted by folder, then by file name, and a file
//! counts as an image by its extension ([`IMG_EXTENSIONS`], any case). Two departures, both on
//! the side of fewer surprises: hidden entries (a name that starts with `.`, such as
//! `.DS_Store` or `.ipynb_checkpoints`) are skipped, and `val/` must hold exactly the class
//! folders of `train/` (torchvision would silently renumber the classes of a `val/` that lacks
//! one). Skipped files are reported with one warning line on stderr per folder.
//!
//! `open` also reads the header of every image (about 50 ms for the 397 ants-vs-bees photos),
//! so an empty, mislabelled or unsupported file (a `.webp` in a build without WebP) is a clear
//! error before training starts instead of a failure in the middle of an epoch. A file whose
//! header is fine but whose pixel data is damaged can only be found by decoding it; that
//! surfaces as the data loader's error for that item (`Dataset::get` returns it, no panic),
//! naming the file. The JPEG decoder fills a truncated scan with grey rather than failing, so
//! such a photo trains as it decodes.
//!
//! [`FolderDataset`] decodes lazily: each `get` opens the file ([`load_rgb`]), applies the
//! split's transform and keeps only the `3 × crop × crop` result, so a full-size photo lives in
//! memory only while it is being cropped. Decoding every image on every pass is the price: on
//! one core of the development machine, about 4 ms to decode an ants-vs-bees photo (around
//! 500 × 375) and 4 to 14 ms to crop and resize it, about 2 s per pass over the 244 training or
//! the 153 validation images. That is small next to a ResNet's forward and backward passes on a
//! CPU, and a data loader with workers spreads it over the cores.
//!
//! - train ([`TrainTransform`]): `RandomResizedCrop(crop, scale=(0.08, 1.0), ratio=(3/4, 4/3))`
//!   with Pillow's bilinear resize, `RandomHorizontalFlip(0.5)`, `ToTensor`, `Normalize`
//!   (ImageNet's mean and std). The random numbers of an item come from a generator seeded with
//!   (seed, how many times this item was fetched before, index), so a run is reproducible from
//!   its seed whatever the order and the threads of the data loader;
//! - val ([`ImageNetPreset`]): `Resize(256)`, `CenterCrop(224)`, `ToTensor`, `Normalize`.
//!
//! [`FolderBatcher`] stacks items into the crate's [`ImageBatch`], `[batch, 3, crop, crop]`.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::prelude::*;
use image::RgbImage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::ImageBatch;
use crate::preprocess::{ImageNetPreset, PreprocessError, load_rgb, resize_bilinear_pil};

/// The file extensions that count as images, as torchvision's `IMG_EXTENSIONS` (compared
/// without regard to case).
pub const IMG_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp",
];

/// ImageNet's per-channel mean, which torchvision's pretrained models expect.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel standard deviation.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// What can go wrong when an image folder is opened or read. Each message is one line that
/// names the path and what to do.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// The dataset dir does not exist.
    #[error(
        "image folder {} does not exist: pass a directory that holds train/ and val/, \
         each with one subfolder per class",
        .0.display()
    )]
    Missing(PathBuf),
    /// The dataset path is not a directory.
    #[error(
        "image folder {} is not a directory: pass a directory that holds train/ and val/",
        .0.display()
    )]
    NotADirectory(PathBuf),
    /// `train/` or `val/` is missing.
    #[error(
        "{} has no {split}/ folder: an image folder needs train/ and val/, \
         each with one subfolder per class",
        .dir.display()
    )]
    MissingSplit {
        /// The dataset dir.
        dir: PathBuf,
        /// `"train"` or `"val"`.
        split: &'static str,
    },
    /// A directory could not be listed.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `train/` has fewer than two class folders.
    #[error(
        "{} has {found} class folder(s): a classifier needs at least two, \
         so put each class's images in its own subfolder",
        .dir.display()
    )]
    TooFewClasses {
        /// The split dir.
        dir: PathBuf,
        /// How many class folders it has.
        found: usize,
    },
    /// A class folder holds no image.
    #[error(
        "class folder {} holds no images (.{}){}: add images or remove the folder",
        .dir.display(),
        IMG_EXTENSIONS.join(" ."),
        skipped_note(*.skipped, .example.as_deref())
    )]
    EmptyClass {
        /// The class folder.
        dir: PathBuf,
        /// How many files in it were skipped.
        skipped: usize,
        /// One of them.
        example: Option<String>,
    },
    /// `val/` has a class folder that `train/` lacks.
    #[error(
        "class {class:?} of {} is not a class of {}: val/ must have the same class folders as train/",
        .val.display(),
        .train.display()
    )]
    UnknownValClass {
        /// The class name.
        class: String,
        /// The val split dir.
        val: PathBuf,
        /// The train split dir.
        train: PathBuf,
    },
    /// `val/` lacks a class folder that `train/` has.
    #[error(
        "{} has no folder for class {class:?} of {}: val/ must have the same class folders as train/",
        .val.display(),
        .train.display()
    )]
    MissingValClass {
        /// The class name.
        class: String,
        /// The val split dir.
        val: PathBuf,
        /// The train split dir.
        train: PathBuf,
    },
    /// Files with an image extension whose header cannot be read.
    #[error(
        "{count} file(s) cannot be read as images, first {}: {reason}; \
         fix, convert (to JPEG or PNG) or remove them",
        .first.display()
    )]
    BadImages {
        /// How many.
        count: usize,
        /// The first one, in dataset order.
        first: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An image that passed the header check could not be decoded (the message names the
    /// file).
    #[error(transparent)]
    Decode(#[from] PreprocessError),
}

fn skipped_note(skipped: usize, example: Option<&str>) -> String {
    match (skipped, example) {
        (0, _) => String::new(),
        (n, Some(e)) => format!("; {n} other file(s) were skipped, e.g. {e:?}"),
        (n, None) => format!("; {n} other file(s) were skipped"),
    }
}

/// Files of one folder that were left out: not images by their extension, or hidden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The folder.
    pub dir: PathBuf,
    /// How many entries were left out.
    pub count: usize,
    /// The name of the first one (in sorted order).
    pub example: OsString,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "warning: {}: skipped {} file(s) that are hidden or not images by extension \
             (.{}), e.g. {:?}",
            self.dir.display(),
            self.count,
            IMG_EXTENSIONS.join(" ."),
            self.example.to_string_lossy()
        )
    }
}

/// One split: every image file and its class index, in torchvision's order.
pub type Samples = Vec<(PathBuf, usize)>;

/// A dataset dir in torchvision's `ImageFolder` layout, with `train/` and `val/` scanned and
/// every image header checked.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    train: Samples,
    val: Samples,
    skipped: Vec<Skipped>,
}

impl ImageFolder {
    /// Scans `dir/train` and `dir/val` (see the module docs for the rules) and reads the header
    /// of every image. Skipped files are reported on stderr, one line per folder.
    pub fn open(dir: &Path) -> Result<Self, FolderError> {
        match std::fs::metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FolderError::Missing(dir.to_path_buf()));
            }
            Err(source) => {
                return Err(FolderError::Io {
                    path: dir.to_path_buf(),
                    source,
                });
            }
            Ok(m) if !m.is_dir() => return Err(FolderError::NotADirectory(dir.to_path_buf())),
            Ok(_) => {}
        }
        let train_dir = split_dir(dir, "train")?;
        let val_dir = split_dir(dir, "val")?;
        let mut skipped = Vec::new();

        let train_classes = class_dirs(&train_dir, &mut skipped)?;
        if train_classes.len() < 2 {
            return Err(FolderError::TooFewClasses {
                dir: train_dir,
                found: train_classes.len(),
            });
        }
        let mut train = Vec::new();
        for (label, (_, class_dir)) in train_classes.iter().enumerate() {
            scan_class(class_dir, label, &mut train, &mut skipped)?;
        }
        let val_classes = class_dirs(&val_dir, &mut skipped)?;
        if let Some((name, _)) = val_classes
            .iter()
            .find(|(v, _)| !train_classes.iter().any(|(t, _)| t == v))
        {
            return Err(FolderError::UnknownValClass {
                class: name.to_string_lossy().into_owned(),
                val: val_dir,
                train: train_dir,
            });
        }
        if let Some((name, _)) = train_classes
            .iter()
            .find(|(t, _)| !val_classes.iter().any(|(v, _)| v == t))
        {
            return Err(FolderError::MissingValClass {
                class: name.to_string_lossy().into_owned(),
                val: val_dir,
                train: train_dir,
            });
        }

        let mut val = Vec::new();
        for (label, (_, class_dir)) in val_classes.iter().enumerate() {
            scan_class(class_dir, label, &mut val, &mut skipped)?;
        }
        for s in &skipped {
            eprintln!("{s}");
        }
        check_headers(train.iter().chain(&val).map(|(p, _)| p.as_path()))?;

        Ok(Self {
            root: dir.to_path_buf(),
            classes: train_classes
                .iter()
                .map(|(name, _)| name.to_string_lossy().into_owned())
                .collect(),
            train,
            val,
            skipped,
        })
    }

    /// The dataset dir.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Class names (the subfolder names of `train/`, sorted); a label indexes this list.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The training images and their labels, sorted by class, then by path.
    pub fn train(&self) -> &[(PathBuf, usize)] {
        &self.train
    }

    /// The validation images and their labels, sorted by class, then by path.
    pub fn val(&self) -> &[(PathBuf, usize)] {
        &self.val
    }

    /// The folders where files were skipped (already reported on stderr by `open`).
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// The training split with its augmentation.
    pub fn train_dataset(&self, transform: TrainTransform) -> FolderDataset {
        FolderDataset::new(self.train.clone(), FolderTransform::Train(transform))
    }

    /// The validation split with its deterministic preprocessing.
    pub fn val_dataset(&self, preset: ImageNetPreset) -> FolderDataset {
        FolderDataset::new(self.val.clone(), FolderTransform::Eval(preset))
    }
}

fn split_dir(dir: &Path, split: &'static str) -> Result<PathBuf, FolderError> {
    let path = dir.join(split);
    if path.is_dir() {
        Ok(path)
    } else {
        Err(FolderError::MissingSplit {
            dir: dir.to_path_buf(),
            split,
        })
    }
}

/// An entry of a directory listing: its name, its path, and whether it is (or links to) a
/// directory.
struct Entry {
    name: OsString,
    path: PathBuf,
    is_dir: bool,
}

/// The entries of `dir`, sorted by name (bytes, which is code-point order for UTF-8 names, as
/// Python sorts them).
fn list_dir(dir: &Path) -> Result<Vec<Entry>, FolderError> {
    let io = |source| FolderError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        // Follows symbolic links, as torchvision's os.walk(followlinks=True); a broken link
        // counts as a file, so the header check names it.
        let is_dir = std::fs::metadata(&path).is_ok_and(|m| m.is_dir());
        entries.push(Entry {
            name: entry.file_name(),
            path,
            is_dir,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// Whether `name` ends with `.` and one of [`IMG_EXTENSIONS`], in any case.
pub fn has_image_extension(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    IMG_EXTENSIONS.iter().any(|ext| {
        let n = ext.len() + 1;
        bytes.len() >= n
            && bytes[bytes.len() - n] == b'.'
            && bytes[bytes.len() - ext.len()..].eq_ignore_ascii_case(ext.as_bytes())
    })
}

/// The class folders of a split dir: its non-hidden subdirectories, sorted by name. Plain files
/// and hidden entries there are reported as skipped.
fn class_dirs(
    split: &Path,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<(OsString, PathBuf)>, FolderError> {
    let mut classes = Vec::new();
    let mut left_out = Vec::new();
    for e in list_dir(split)? {
        if e.is_dir && !is_hidden(&e.name) {
            classes.push((e.name, e.path));
        } else {
            left_out.push(e.name);
        }
    }
    if let Some(example) = left_out.first() {
        skipped.push(Skipped {
            dir: split.to_path_buf(),
            count: left_out.len(),
            example: example.clone(),
        });
    }
    Ok(classes)
}

/// Appends the images under `class_dir` (recursively) with `label`, in torchvision's order:
/// folders sorted by path, then files sorted by name within each folder.
fn scan_class(
    class_dir: &Path,
    label: usize,
    out: &mut Samples,
    skipped: &mut Vec<Skipped>,
) -> Result<(), FolderError> {
    let mut folders: Vec<(PathBuf, Vec<PathBuf>, Vec<OsString>)> = Vec::new();
    let mut stack = vec![class_dir.to_path_buf()];
    let mut seen = HashSet::new();
    while let Some(dir) = stack.pop() {
        // A symbolic link back up the tree would loop forever.
        if !seen.insert(std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone())) {
            continue;
        }
        let mut files = Vec::new();
        let mut left_out = Vec::new();
        for e in list_dir(&dir)? {
            if is_hidden(&e.name) {
                left_out.push(e.name);
            } else if e.is_dir {
                stack.push(e.path);
            } else if has_image_extension(&e.name) {
                files.push(e.path);
            } else {
                left_out.push(e.name);
            }
        }
        folders.push((dir, files, left_out));
    }
    folders.sort_by(|a, b| a.0.as_os_str().cmp(b.0.as_os_str()));
    let before = out.len();
    let mut skipped_here = 0;
    let mut example = None;
    for (dir, files, left_out) in folders {
        out.extend(files.into_iter().map(|p| (p, label)));
        if let Some(first) = left_out.first() {
            skipped_here += left_out.len();
            example.get_or_insert_with(|| first.to_string_lossy().into_owned());
            skipped.push(Skipped {
                dir,
                count: left_out.len(),
                example: first.clone(),
            });
        }
    }
    if out.len() == before {
        return Err(FolderError::EmptyClass {
            dir: class_dir.to_path_buf(),
            skipped: skipped_here,
            example,
        });
    }
    Ok(())
}

/// Reads the header of every file (format from the content, dimensions), so that files which
/// are not images, or not of a format this build decodes, are found before training.
fn check_headers<'a>(paths: impl Iterator<Item = &'a Path>) -> Result<(), FolderError> {
    let mut bad: Vec<(PathBuf, String)> = Vec::new();
    for path in paths {
        let dims = image::ImageReader::open(path)
            .and_then(|r| r.with_guessed_format())
            .map_err(|e| e.to_string())
            .and_then(|r| r.into_dimensions().map_err(|e| e.to_string()));
        match dims {
            Ok((w, h)) if w > 0 && h > 0 => {}
            Ok((w, h)) => bad.push((path.to_path_buf(), format!("it is {w}×{h} pixels"))),
            Err(reason) => bad.push((path.to_path_buf(), reason)),
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    for (path, reason) in bad.iter().take(10) {
        eprintln!("error: {}: {reason}", path.display());
    }
    let count = bad.len();
    let (first, reason) = bad.swap_remove(0);
    Err(FolderError::BadImages {
        count,
        first,
        reason,
    })
}

/// A crop box in pixels: `top`, `left`, `height`, `width`, as torchvision's `get_params`
/// returns `(i, j, h, w)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// First row.
    pub top: u32,
    /// First column.
    pub left: u32,
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
}

/// torchvision's `RandomResizedCrop`: a crop of random area and aspect ratio, resized to
/// `size × size` with Pillow's bilinear filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomResizedCrop {
    /// Side of the output, in pixels.
    pub size: u32,
    /// Range of the crop's area, as a fraction of the image's.
    pub scale: (f64, f64),
    /// Range of the crop's aspect ratio (width / height), sampled uniformly in log space.
    pub ratio: (f64, f64),
}

impl RandomResizedCrop {
    /// torchvision's defaults: `scale=(0.08, 1.0)`, `ratio=(3/4, 4/3)`.
    pub fn new(size: u32) -> Self {
        Self {
            size,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        }
    }

    /// The crop of a `width × height` image, by torchvision's algorithm: ten tries of a random
    /// area and log-uniform aspect ratio that must fit the image, then the central crop with
    /// the ratio clamped to the allowed range. Python's rounding (half to even) is kept.
    pub fn params(&self, width: u32, height: u32, rng: &mut impl Rng) -> CropBox {
        let (wf, hf) = (width as f64, height as f64);
        let area = wf * hf;
        let (log_lo, log_hi) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target_area = area * uniform(rng, self.scale.0, self.scale.1);
            let aspect = uniform(rng, log_lo, log_hi).exp();
            let w = (target_area * aspect).sqrt().round_ties_even();
            let h = (target_area / aspect).sqrt().round_ties_even();
            if 0.0 < w && w <= wf && 0.0 < h && h <= hf {
                let (w, h) = (w as u32, h as u32);
                let top = rng.random_range(0..=height - h);
                let left = rng.random_range(0..=width - w);
                return CropBox {
                    top,
                    left,
                    height: h,
                    width: w,
                };
            }
        }
        let in_ratio = wf / hf;
        let lo = self.ratio.0.min(self.ratio.1);
        let hi = self.ratio.0.max(self.ratio.1);
        let (w, h) = if in_ratio < lo {
            (width, ((wf / lo).round_ties_even() as u32).clamp(1, height))
        } else if in_ratio > hi {
            (((hf * hi).round_ties_even() as u32).clamp(1, width), height)
        } else {
            (width, height)
        };
        CropBox {
            top: (height - h) / 2,
            left: (width - w) / 2,
            height: h,
            width: w,
        }
    }

    /// Crops `img` at `crop` and resizes the crop to `size × size`.
    pub fn apply(&self, img: &RgbImage, crop: CropBox) -> RgbImage {
        let region =
            image::imageops::crop_imm(img, crop.left, crop.top, crop.width, crop.height).to_image();
        resize_bilinear_pil(&region, self.size, self.size)
    }
}

/// A number drawn uniformly from `[lo, hi)` (`lo` when the range is empty), as torch's
/// `uniform_`.
fn uniform(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// The training transform: [`RandomResizedCrop`], a horizontal flip with probability
/// `flip`, then `ToTensor` + `Normalize`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainTransform {
    /// The random crop.
    pub crop: RandomResizedCrop,
    /// Probability of a horizontal flip.
    pub flip: f64,
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f32; 3],
    /// The run's seed; each item's randomness is derived from it.
    pub seed: u64,
}

impl TrainTransform {
    /// torchvision's fine-tuning recipe at side `crop` (224 for ImageNet models):
    /// `RandomResizedCrop(crop)`, `RandomHorizontalFlip(0.5)`, ImageNet's mean and std.
    pub fn imagenet(crop: u32, seed: u64) -> Self {
        Self {
            crop: RandomResizedCrop::new(crop),
            flip: 0.5,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            seed,
        }
    }

    /// The random generator of item `index` on its `pass`-th fetch (0 for the first).
    pub fn rng(&self, index: usize, pass: u64) -> StdRng {
        let mut h = splitmix64(self.seed);
        h = splitmix64(h ^ pass);
        h = splitmix64(h ^ index as u64);
        StdRng::seed_from_u64(h)
    }

    /// The augmented image (`crop × crop`, before normalisation) of item `index` on its
    /// `pass`-th fetch.
    pub fn augment(&self, img: &RgbImage, index: usize, pass: u64) -> RgbImage {
        let mut rng = self.rng(index, pass);
        let crop = self.crop.params(img.width(), img.height(), &mut rng);
        let mut out = self.crop.apply(img, crop);
        if rng.random::<f64>() < self.flip {
            image::imageops::flip_horizontal_in_place(&mut out);
        }
        out
    }

    /// The normalised `[3, crop, crop]` floats of item `index` on its `pass`-th fetch.
    pub fn apply(&self, img: &RgbImage, index: usize, pass: u64) -> Vec<f32> {
        to_chw_normalised(&self.augment(img, index, pass), self.mean, self.std)
    }
}

/// SplitMix64's finaliser: spreads a 64-bit value over all bits.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `ToTensor` + `Normalize`: channel-first floats `(v / 255 - mean[c]) / std[c]`.
pub fn to_chw_normalised(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let plane = img.width() as usize * img.height() as usize;
    let mut out = vec![0.0f32; 3 * plane];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (p.0[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    out
}

/// What a [`FolderDataset`] does to each decoded image.
#[derive(Debug, Clone)]
pub enum FolderTransform {
    /// Random crop and flip, for training.
    Train(TrainTransform),
    /// Resize, centre crop, for evaluation.
    Eval(ImageNetPreset),
}

impl FolderTransform {
    /// Side of the square images it produces.
    pub fn side(&self) -> u32 {
        match self {
            Self::Train(t) => t.crop.size,
            Self::Eval(p) => p.crop,
        }
    }
}

/// One preprocessed image and its label.
#[derive(Debug, Clone)]
pub struct FolderItem {
    /// Normalised floats, channel first: `[3, side, side]`.
    pub pixels: Vec<f32>,
    /// Side of the image, in pixels.
    pub side: u32,
    /// Class index.
    pub label: usize,
    /// The file it came from.
    pub path: PathBuf,
}

/// A burn dataset over one split of an [`ImageFolder`] that decodes and transforms each image
/// when it is fetched. Clones share the fetch counters, so a data loader's workers together
/// count each item's passes.
#[derive(Debug, Clone)]
pub struct FolderDataset {
    samples: Arc<[(PathBuf, usize)]>,
    transform: FolderTransform,
    passes: Arc<[AtomicU64]>,
}

impl FolderDataset {
    /// A dataset over `samples` (paths and labels) with `transform`.
    pub fn new(samples: Samples, transform: FolderTransform) -> Self {
        let passes = (0..samples.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            samples: samples.into(),
            transform,
            passes,
        }
    }

    /// Starts every item's pass count at `pass` (e.g. the number of epochs already done when a
    /// run is resumed, so the augmentation goes on as if it had not stopped).
    pub fn start_at_pass(&self, pass: u64) {
        for p in self.passes.iter() {
            p.store(pass, Ordering::Relaxed);
        }
    }

    /// The paths and labels.
    pub fn samples(&self) -> &[(PathBuf, usize)] {
        &self.samples
    }

    /// The transform.
    pub fn transform(&self) -> &FolderTransform {
        &self.transform
    }

    /// Item `index` as it is on its `pass`-th fetch, without counting a fetch (the pass does not
    /// matter for evaluation).
    pub fn item(&self, index: usize, pass: u64) -> Result<FolderItem, FolderError> {
        let (path, label) = &self.samples[index];
        let img = load_rgb(path)?;
        let pixels = match &self.transform {
            FolderTransform::Train(t) => t.apply(&img, index, pass),
            FolderTransform::Eval(p) => p.apply(&img),
        };
        Ok(FolderItem {
            pixels,
            side: self.transform.side(),
            label: *label,
            path: path.clone(),
        })
    }
}

impl Dataset<FolderItem> for FolderDataset {
    fn get(&self, index: usize) -> Result<FolderItem, DatasetError> {
        if index >= self.samples.len() {
            return Err(DatasetError::new(std::io::Error::other(format!(
                "image index {index} is out of range: the split has {} images",
                self.samples.len()
            ))));
        }
        let pass = self.passes[index].fetch_add(1, Ordering::Relaxed);
        self.item(index, pass).map_err(DatasetError::new)
    }

    fn len(&self) -> usize {
        self.samples.len()
    }
}

/// Stacks [`FolderItem`]s into an [`ImageBatch`] of `[batch, 3, side, side]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FolderBatcher;

impl Batcher<FolderItem, ImageBatch> for FolderBatcher {
    fn batch(&self, items: Vec<FolderItem>, device: &Device) -> ImageBatch {
        let n = items.len();
        let side = items.first().map_or(0, |i| i.side as usize);
        let mut floats = Vec::with_capacity(n * 3 * side * side);
        let mut labels = Vec::with_capacity(n);
        for item in items {
            assert_eq!(
                item.pixels.len(),
                3 * side * side,
                "every image of a batch must be 3×{side}×{side}; {} is not",
                item.path.display()
            );
            floats.extend_from_slice(&item.pixels);
            labels.push(item.label as i64);
        }
        ImageBatch {
            images: Tensor::from_data(TensorData::new(floats, [n, 3, side, side]), device),
            targets: Tensor::from_data(TensorData::new(labels, [n]), device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_match_any_case() {
        for name in ["a.jpg", "b.JPEG", "c d.Png", "é.tiff", "x.WebP", "y.pgm"] {
            assert!(has_image_extension(OsStr::new(name)), "{name}");
        }
        for name in ["a.gif", "jpg", "notes.txt", "a.jpg.bak", "ajpg"] {
            assert!(!has_image_extension(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn crop_params_fit_the_image() {
        let rrc = RandomResizedCrop::new(224);
        let mut rng = StdRng::seed_from_u64(1);
        for (w, h) in [(500, 375), (10, 1000), (224, 224), (1, 1), (3000, 2)] {
            for _ in 0..200 {
                let c = rrc.params(w, h, &mut rng);
                assert!(c.width >= 1 && c.height >= 1, "{c:?}");
                assert!(
                    c.left + c.width <= w && c.top + c.height <= h,
                    "{w}×{h}: {c:?}"
                );
            }
        }
    }

    #[test]
    fn crop_params_keep_area_and_ratio_in_range() {
        let rrc = RandomResizedCrop::new(224);
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..500 {
            let c = rrc.params(640, 480, &mut rng);
            let area = (c.width * c.height) as f64 / (640.0 * 480.0);
            let ratio = c.width as f64 / c.height as f64;
            // Rounding to whole pixels moves both a little.
            assert!((0.07..=1.0).contains(&area), "{c:?}");
            assert!((0.74..=1.35).contains(&ratio), "{c:?}");
        }
    }

    #[test]
    fn crop_falls_back_to_the_centre_as_torchvision() {
        let rrc = RandomResizedCrop::new(224);
        let mut rng = StdRng::seed_from_u64(0);
        // Far too wide for any sampled crop: h = height, w = round(h * 4/3).
        assert_eq!(
            rrc.params(1000, 10, &mut rng),
            CropBox {
                top: 0,
                left: 493,
                height: 10,
                width: 13
            }
        );
        // Far too tall: w = width, h = round(w / (3/4)).
        assert_eq!(
            rrc.params(9, 2000, &mut rng),
            CropBox {
                top: 994,
                left: 0,
                height: 12,
                width: 9
            }
        );
        // Nothing fits and the ratio is allowed: the whole image.
        let narrow = RandomResizedCrop {
            scale: (2.0, 3.0),
            ..rrc
        };
        assert_eq!(
            narrow.params(40, 30, &mut rng),
            CropBox {
                top: 0,
                left: 0,
                height: 30,
                width: 40
            }
        );
    }

    #[test]
    fn item_seeds_differ_by_seed_pass_and_index() {
        let t = TrainTransform::imagenet(8, 3);
        let draw = |t: &TrainTransform, i, p| t.rng(i, p).random::<u64>();
        let base = draw(&t, 0, 0);
        assert_eq!(base, draw(&t, 0, 0));
        assert_ne!(base, draw(&t, 1, 0));
        assert_ne!(base, draw(&t, 0, 1));
        assert_ne!(base, draw(&TrainTransform::imagenet(8, 4), 0, 0));
    }

    #[test]
    fn normalisation_is_to_tensor_then_normalize() {
        let img = RgbImage::from_pixel(2, 1, image::Rgb([255, 0, 128]));
        let v = to_chw_normalised(&img, IMAGENET_MEAN, IMAGENET_STD);
        assert_eq!(v.len(), 6);
        let expect = [
            (1.0 - 0.485) / 0.229,
            (0.0 - 0.456) / 0.224,
            (128.0 / 255.0 - 0.406) / 0.225,
        ];
        for c in 0..3 {
            for x in 0..2 {
                assert!((v[c * 2 + x] - expect[c]).abs() < 1e-6, "{v:?}");
            }
        }
    }
}
