//! MNIST and Fashion-MNIST read from the real files: the figures published with the datasets.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use strata_data::datasets::Locator;
use strata_data::testing::serve;
use strata_vision::mnist::{DatasetError, FILES, MnistKind, MnistSplits};

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets")
}

/// `STRATA_DATA_DIR` (CI points it at shared/datasets), else the sibling `shared/datasets` of a
/// checkout if there is one, else none (and Fashion-MNIST is downloaded into the cache).
fn shared_data_dir() -> Option<PathBuf> {
    std::env::var_os("STRATA_DATA_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let sibling = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets");
            sibling.is_dir().then_some(sibling)
        })
}

fn histogram(labels: &[u8]) -> Vec<usize> {
    let mut h = vec![0; 10];
    for &l in labels {
        h[l as usize] += 1;
    }
    h
}

#[test]
fn bundled_mnist_has_the_published_counts() {
    let s = MnistSplits::read_dir(MnistKind::Mnist, &bundled().join("mnist"), 5000).unwrap();
    assert_eq!(
        (s.train.len(), s.valid.len(), s.test.len()),
        (55_000, 5_000, 10_000)
    );
    assert_eq!((s.train.rows, s.train.cols), (28, 28));
    let mut train_labels = s.train.labels.clone();
    train_labels.extend(&s.valid.labels);
    assert_eq!(
        histogram(&train_labels),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        histogram(&s.test.labels),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    let mean = s.test.pixels.iter().map(|&p| p as f64).sum::<f64>() / s.test.pixels.len() as f64;
    assert!((mean - 33.79).abs() < 0.01, "test pixel mean {mean}");
}

#[test]
fn fashion_mnist_from_the_data_dir() {
    let s = MnistSplits::load(
        MnistKind::FashionMnist,
        shared_data_dir().as_deref(),
        10_000,
    )
    .unwrap();
    assert_eq!(
        (s.train.len(), s.valid.len(), s.test.len()),
        (50_000, 10_000, 10_000)
    );
    // Fashion-MNIST is balanced: 1,000 test images per class.
    assert_eq!(histogram(&s.test.labels), vec![1000; 10]);
    assert_eq!(MnistKind::FashionMnist.labels()[9], "Ankle boot");
}

#[test]
fn too_large_validation_split_is_refused() {
    let err =
        MnistSplits::read_dir(MnistKind::Mnist, &bundled().join("mnist"), 60_000).unwrap_err();
    assert!(matches!(err, DatasetError::ValidTooLarge { .. }), "{err}");
}

#[test]
fn mnist_downloads_from_a_mirror_with_the_real_file_names() {
    let files: HashMap<String, Vec<u8>> = FILES
        .iter()
        .map(|f| {
            (
                f.to_string(),
                std::fs::read(bundled().join("mnist").join(f)).unwrap(),
            )
        })
        .collect();
    let (base, seen) = serve(files);
    let cache = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let loc = Locator {
        data_dir: Some(empty.path().to_path_buf()),
        bundled: None,
        cache: cache.path().to_path_buf(),
        mirror: Some(base),
    };
    let dir = loc.find_or_download(&MnistKind::Mnist.spec()).unwrap();
    let requested = seen.lock().unwrap().clone();
    assert_eq!(requested.len(), 4, "{requested:?}");
    assert!(
        requested
            .iter()
            .all(|p| p.starts_with("/data/") && p.ends_with("-ubyte.gz"))
    );
    let s = MnistSplits::read_dir(MnistKind::Mnist, &dir, 0).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (60_000, 10_000));
}

#[test]
fn corrupt_dataset_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    for f in FILES {
        std::fs::copy(bundled().join("mnist").join(f), dir.path().join(f)).unwrap();
    }
    // Cut the test images short.
    let path = dir.path().join(FILES[2]);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = MnistSplits::read_dir(MnistKind::Mnist, dir.path(), 5000)
        .unwrap_err()
        .to_string();
    assert!(err.contains("t10k-images-idx3-ubyte.gz"), "{err}");
    assert!(err.contains("re-download") || err.contains("gzip"), "{err}");
    // Labels that do not match the images in number.
    std::fs::copy(bundled().join("mnist").join(FILES[2]), &path).unwrap();
    std::fs::copy(
        bundled().join("mnist").join(FILES[1]),
        dir.path().join(FILES[3]),
    )
    .unwrap();
    let err = MnistSplits::read_dir(MnistKind::Mnist, dir.path(), 5000)
        .unwrap_err()
        .to_string();
    assert!(err.contains("one label per image"), "{err}");
}
