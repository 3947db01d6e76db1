//! MNIST and Fashion-MNIST: 28×28 grey images in ten classes, stored as IDX files.
//!
//! [`MnistKind`] names the dataset (its folder, file names, class labels and public download
//! mirrors); [`MnistSplits::load`] reads the four IDX files and cuts the 60,000 training images
//! into train and validation parts (the last `valid_size` images are validation, as Keras'
//! `validation_split` does), keeping the 10,000 test images for the final figure.
//!
//! It lives here, below the families, because more than one reads it: strata-vision as images,
//! strata-sequence as sequences of rows. What a family makes of the pixels (the normalisation of
//! a CNN's input, ...) stays in the family's crate.

use std::path::{Path, PathBuf};

use crate::datasets::{DatasetSpec, LocateError, Locator};
use crate::idx::{IdxError, read_idx};

/// Which MNIST-style dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MnistKind {
    /// Handwritten digits (LeCun, Cortes and Burges, 1998).
    Mnist,
    /// Zalando's article images (Xiao, Rasul and Vollgraf, 2017).
    FashionMnist,
}

/// The four files every MNIST-style dataset has.
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// A name that is not one of [`MnistKind::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown --dataset '{given}': choose {}", MnistKind::NAMES.join(", "))]
pub struct UnknownDataset {
    /// The name given.
    pub given: String,
}

// By hand rather than with strata-tensor's `named_enum!`, which would bring Burn into this crate;
// the same API: `NAMES`, `name`, `FromStr` and `Display` from one table.
impl MnistKind {
    /// Every value, in the order of [`MnistKind::NAMES`].
    pub const ALL: [MnistKind; 2] = [Self::Mnist, Self::FashionMnist];
    /// Every accepted name (`--dataset`), in the order of the variants.
    pub const NAMES: &'static [&'static str] = &["mnist", "fashion-mnist"];

    /// The name of this value, which is also the dataset's folder.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl std::str::FromStr for MnistKind {
    type Err = UnknownDataset;

    fn from_str(s: &str) -> Result<Self, UnknownDataset> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownDataset {
                given: s.to_string(),
            })
    }
}

impl std::fmt::Display for MnistKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl MnistKind {
    /// Class names, index = label.
    pub fn labels(self) -> [&'static str; 10] {
        match self {
            Self::Mnist => ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            Self::FashionMnist => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
        }
    }

    /// Where to find and fetch the files.
    pub fn spec(self) -> DatasetSpec {
        let mirrors: &[&str] = match self {
            // torchvision's mirror list for MNIST.
            Self::Mnist => &[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ],
            Self::FashionMnist => &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        };
        DatasetSpec {
            name: self.name(),
            files: FILES.to_vec(),
            mirrors: mirrors.iter().map(|s| s.to_string()).collect(),
            // No checksums: the mirrors publish md5s of their .gz files only, and equally valid
            // re-compressed copies (the bundled MNIST, Debian's Fashion-MNIST) differ byte-wise;
            // the IDX reader checks every file's gzip stream, header and size instead.
            sha256: Vec::new(),
        }
    }
}

/// Grey images with labels, as bytes.
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// Pixels, `len × rows × cols`, row-major, 0–255.
    pub pixels: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set has no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.rows * self.cols;
        &self.pixels[i * size..(i + 1) * size]
    }

    /// Images `range` as a new set.
    pub fn slice(&self, range: std::ops::Range<usize>) -> ImageSet {
        let size = self.rows * self.cols;
        ImageSet {
            pixels: self.pixels[range.start * size..range.end * size].to_vec(),
            labels: self.labels[range].to_vec(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// Reads an images file and a labels file and checks that they agree.
    pub fn read(images: &Path, labels: &Path, classes: usize) -> Result<Self, IdxError> {
        let img = read_idx(images)?;
        let lab = read_idx(labels)?;
        if img.dims.len() != 3 {
            return Err(IdxError::UnexpectedShape {
                path: images.to_path_buf(),
                found: img.dims,
                expected: "[count, rows, cols]".into(),
            });
        }
        if lab.dims != [img.dims[0]] {
            return Err(IdxError::UnexpectedShape {
                path: labels.to_path_buf(),
                found: lab.dims,
                expected: format!("[{}] (one label per image)", img.dims[0]),
            });
        }
        if let Some(bad) = lab.data.iter().find(|&&l| l as usize >= classes) {
            return Err(IdxError::BadLabel {
                path: labels.to_path_buf(),
                label: *bad,
                classes,
            });
        }
        Ok(ImageSet {
            rows: img.dims[1],
            cols: img.dims[2],
            pixels: img.data,
            labels: lab.data,
        })
    }
}

/// Train, validation and test parts of an MNIST-style dataset.
#[derive(Debug, Clone)]
pub struct MnistSplits {
    /// Which dataset.
    pub kind: MnistKind,
    /// The folder the files were read from.
    pub dir: PathBuf,
    /// Training images (the first `60000 - valid_size`).
    pub train: ImageSet,
    /// Validation images (the last `valid_size` of the training file).
    pub valid: ImageSet,
    /// The 10,000 test images.
    pub test: ImageSet,
}

/// Errors while finding or reading a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The files could not be found nor downloaded.
    #[error(transparent)]
    Locate(#[from] LocateError),
    /// A file is corrupt.
    #[error(transparent)]
    Idx(#[from] IdxError),
    /// The files do not belong together.
    #[error("{0}")]
    Mismatch(String),
    /// The validation part would leave no training images.
    #[error("--valid-size {valid} leaves no training images: the training file has only {total}")]
    ValidTooLarge {
        /// Requested validation size.
        valid: usize,
        /// Images in the training file.
        total: usize,
    },
}

impl MnistSplits {
    /// Finds the dataset (data dir, bundled `datasets/`, cache, else download) and reads it.
    pub fn load(
        kind: MnistKind,
        data_dir: Option<&Path>,
        valid_size: usize,
    ) -> Result<Self, DatasetError> {
        let dir = Locator::from_env(data_dir).find_or_download(&kind.spec())?;
        Self::read_dir(kind, &dir, valid_size)
    }

    /// Reads the four files from `dir`.
    pub fn read_dir(kind: MnistKind, dir: &Path, valid_size: usize) -> Result<Self, DatasetError> {
        let classes = kind.labels().len();
        let full = ImageSet::read(&dir.join(FILES[0]), &dir.join(FILES[1]), classes)?;
        let test = ImageSet::read(&dir.join(FILES[2]), &dir.join(FILES[3]), classes)?;
        if test.is_empty() || (test.rows, test.cols) != (full.rows, full.cols) {
            return Err(DatasetError::Mismatch(format!(
                "{}: the test set has {} images of {}×{}, the training set images of {}×{}; re-download the dataset",
                dir.display(),
                test.len(),
                test.rows,
                test.cols,
                full.rows,
                full.cols
            )));
        }
        if valid_size >= full.len() {
            return Err(DatasetError::ValidTooLarge {
                valid: valid_size,
                total: full.len(),
            });
        }
        let cut = full.len() - valid_size;
        Ok(Self {
            kind,
            dir: dir.to_path_buf(),
            train: full.slice(0..cut),
            valid: full.slice(cut..full.len()),
            test,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_print_and_serialize_alike() {
        for kind in MnistKind::ALL {
            assert_eq!(kind.name().parse::<MnistKind>().unwrap(), kind);
            assert_eq!(kind.to_string(), kind.name());
            assert_eq!(kind.spec().name, kind.name());
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
        }
        assert_eq!(MnistKind::NAMES.len(), MnistKind::ALL.len());
    }

    #[test]
    fn unknown_name_lists_the_choices() {
        let err = "cifar".parse::<MnistKind>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown --dataset 'cifar': choose mnist, fashion-mnist"
        );
    }
}
