//! `ImageFolder` on generated folders (layout, ordering, skipped files, every error, batches,
//! seeded augmentation) and on the real ants-vs-bees photos.

use std::path::{Path, PathBuf};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use image::{Rgb, RgbImage};
use strata_tensor::first_compiled_device;
use strata_vision::folder::{
    FolderBatcher, FolderDataset, FolderError, IMAGENET_MEAN, IMAGENET_STD, ImageFolder,
    TrainTransform,
};
use strata_vision::preprocess::ImageNetPreset;
use tempfile::TempDir;

/// A small image that is not symmetric, so crops and flips show.
fn gradient(w: u32, h: u32, seed: u8) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 7 + seed as u32) as u8,
            (y * 5) as u8,
            (x * y + seed as u32 * 3) as u8,
        ])
    })
}

fn write(path: &Path, img: &RgbImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

fn touch(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// `root/{train,val}/{class}/{i}.png` with `n` images per class.
fn folder(classes: &[&str], n: usize) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for split in ["train", "val"] {
        for (c, class) in classes.iter().enumerate() {
            for i in 0..n {
                let img = gradient(20 + i as u32, 16, (c * 10 + i) as u8);
                write(
                    &dir.path().join(split).join(class).join(format!("{i}.png")),
                    &img,
                );
            }
        }
    }
    dir
}

fn names(samples: &[(PathBuf, usize)], root: &Path) -> Vec<(String, usize)> {
    samples
        .iter()
        .map(|(p, l)| {
            (
                p.strip_prefix(root).unwrap().to_string_lossy().into_owned(),
                *l,
            )
        })
        .collect()
}

fn small_preset(resize: u32, crop: u32) -> ImageNetPreset {
    ImageNetPreset {
        resize,
        crop,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
    }
}

fn open_err(dir: &Path) -> String {
    let err = ImageFolder::open(dir).expect_err("open should fail");
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    msg
}

#[test]
fn classes_and_files_are_sorted_as_torchvision() {
    let dir = tempfile::tempdir().unwrap();
    let img = gradient(8, 8, 0);
    for split in ["train", "val"] {
        let s = dir.path().join(split);
        // Python sorts strings by code point: upper case before lower case.
        for class in ["bees", "Wasps", "ants"] {
            write(&s.join(class).join("b.png"), &img);
        }
        // Folders by path (a folder's own files before its subfolders'), then files by name.
        write(&s.join("ants/B.png"), &img);
        write(&s.join("ants/a.png"), &img);
        write(&s.join("ants/sub/0.png"), &img);
        write(&s.join("ants/sub-x/0.png"), &img);
        write(&s.join("ants/sub/deeper/0.png"), &img);
    }
    let f = ImageFolder::open(dir.path()).unwrap();
    assert_eq!(f.classes(), ["Wasps", "ants", "bees"]);
    let expect: Vec<(String, usize)> = [
        ("train/Wasps/b.png", 0),
        ("train/ants/B.png", 1),
        ("train/ants/a.png", 1),
        ("train/ants/b.png", 1),
        ("train/ants/sub/0.png", 1),
        ("train/ants/sub-x/0.png", 1),
        ("train/ants/sub/deeper/0.png", 1),
        ("train/bees/b.png", 2),
    ]
    .iter()
    .map(|(p, l)| (p.to_string(), *l))
    .collect();
    assert_eq!(names(f.train(), dir.path()), expect);
    let val: Vec<(String, usize)> = expect
        .iter()
        .map(|(p, l)| (p.replacen("train/", "val/", 1), *l))
        .collect();
    assert_eq!(names(f.val(), dir.path()), val);
    assert!(f.skipped().is_empty());
}

#[test]
fn non_images_and_hidden_files_are_skipped_and_odd_names_work() {
    let dir = folder(&["ants", "bees"], 1);
    let ants = dir.path().join("train/ants");
    let img = gradient(12, 10, 1);
    write(&ants.join("ant photos.jpg"), &img);
    write(&ants.join("fourmi ünïcödé 蟻.PNG"), &img);
    write(&ants.join("x.JpEg"), &img);
    write(&ants.join("placeholder.gif"), &img);
    touch(&ants.join("notes.txt"), b"not an image");
    touch(&ants.join(".DS_Store"), b"\0\0");
    write(&ants.join(".ipynb_checkpoints/0-checkpoint.png"), &img);
    touch(&dir.path().join("train/README.md"), b"about");
    #[cfg(unix)]
    let latin1 = {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.png");
        write(&ants.join(name), &img);
        ants.join(name)
    };

    let f = ImageFolder::open(dir.path()).unwrap();
    let ants_files: Vec<&Path> = f
        .train()
        .iter()
        .filter(|(_, l)| *l == 0)
        .map(|(p, _)| p.as_path())
        .collect();
    let mut expect = vec![
        ants.join("0.png"),
        ants.join("ant photos.jpg"),
        #[cfg(unix)]
        latin1,
        ants.join("fourmi ünïcödé 蟻.PNG"),
        ants.join("x.JpEg"),
    ];
    expect.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    assert_eq!(ants_files, expect);

    let skipped: Vec<(PathBuf, usize, String)> = f
        .skipped()
        .iter()
        .map(|s| {
            (
                s.dir.clone(),
                s.count,
                s.example.to_string_lossy().into_owned(),
            )
        })
        .collect();
    assert_eq!(
        skipped,
        [
            (dir.path().join("train"), 1, "README.md".to_string()),
            (ants.clone(), 4, ".DS_Store".to_string()),
        ]
    );
    let line = f.skipped()[1].to_string();
    assert!(
        line.contains("skipped 4 file(s)") && line.contains(".DS_Store"),
        "{line}"
    );

    // Every odd name decodes.
    let ds = f.val_dataset(small_preset(10, 8));
    assert_eq!(ds.len(), 2);
    let train = f.train_dataset(TrainTransform::imagenet(8, 0));
    for i in 0..train.len() {
        assert_eq!(train.get(i).unwrap().pixels.len(), 3 * 8 * 8);
    }
}

#[test]
fn missing_or_wrong_paths_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let msg = open_err(&missing);
    assert!(
        msg.contains("does not exist") && msg.contains("nowhere"),
        "{msg}"
    );

    let file = dir.path().join("a-file");
    touch(&file, b"x");
    assert!(open_err(&file).contains("is not a directory"));

    let ds = dir.path().join("ds");
    write(&ds.join("train/a/0.png"), &gradient(4, 4, 0));
    write(&ds.join("train/b/0.png"), &gradient(4, 4, 0));
    let msg = open_err(&ds);
    assert!(msg.contains("has no val/ folder"), "{msg}");
    assert!(matches!(
        ImageFolder::open(&ds),
        Err(FolderError::MissingSplit { split: "val", .. })
    ));

    std::fs::rename(ds.join("train"), ds.join("val")).unwrap();
    assert!(open_err(&ds).contains("has no train/ folder"));
}

#[test]
fn one_class_is_too_few() {
    let dir = folder(&["only"], 2);
    let msg = open_err(dir.path());
    assert!(
        msg.contains("1 class folder(s)") && msg.contains("at least two"),
        "{msg}"
    );
    // Hidden folders are not classes.
    std::fs::create_dir_all(dir.path().join("train/.ipynb_checkpoints")).unwrap();
    assert!(matches!(
        ImageFolder::open(dir.path()),
        Err(FolderError::TooFewClasses { found: 1, .. })
    ));
}

#[test]
fn a_class_without_images_is_an_error() {
    let dir = folder(&["ants", "bees"], 1);
    let empty = dir.path().join("train/wasps");
    touch(&empty.join("notes.txt"), b"x");
    let msg = open_err(dir.path());
    assert!(
        msg.contains("holds no images") && msg.contains("wasps"),
        "{msg}"
    );
    assert!(msg.contains("notes.txt"), "{msg}");

    // The same in val/.
    let dir = folder(&["ants", "bees"], 1);
    std::fs::remove_file(dir.path().join("val/bees/0.png")).unwrap();
    let msg = open_err(dir.path());
    assert!(
        msg.contains("holds no images") && msg.contains("bees"),
        "{msg}"
    );
}

#[test]
fn val_classes_must_match_train() {
    let dir = folder(&["ants", "bees"], 1);
    write(&dir.path().join("val/wasps/0.png"), &gradient(4, 4, 0));
    let msg = open_err(dir.path());
    assert!(
        msg.contains("\"wasps\"") && msg.contains("is not a class of"),
        "{msg}"
    );

    let dir = folder(&["ants", "bees"], 1);
    std::fs::remove_dir_all(dir.path().join("val/ants")).unwrap();
    let msg = open_err(dir.path());
    assert!(msg.contains("no folder for class \"ants\""), "{msg}");
}

#[test]
fn unreadable_images_are_found_at_open() {
    let dir = folder(&["ants", "bees"], 2);
    touch(&dir.path().join("train/bees/broken.jpg"), b"this is text");
    touch(&dir.path().join("val/ants/empty.png"), b"");
    let err = ImageFolder::open(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(
        msg.starts_with("2 file(s) cannot be read as images") && msg.contains("broken.jpg"),
        "{msg}"
    );
}

#[test]
fn damaged_pixel_data_is_an_item_error_naming_the_file() {
    let dir = folder(&["ants", "bees"], 1);
    // A PNG cut in the middle of its pixel data: the header check passes, decoding fails.
    let mut bytes = Vec::new();
    gradient(64, 64, 9)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes.truncate(bytes.len() / 2);
    let cut = dir.path().join("train/bees/cut.png");
    touch(&cut, &bytes);
    let f = ImageFolder::open(dir.path()).unwrap();
    let ds = f.train_dataset(TrainTransform::imagenet(8, 0));
    let index = f.train().iter().position(|(p, _)| *p == cut).unwrap();
    let err = ds.get(index).unwrap_err().to_string();
    assert!(err.contains("cut.png") && !err.contains('\n'), "{err}");
}

#[test]
fn batches_are_normalised_and_shaped() {
    let dir = tempfile::tempdir().unwrap();
    let colours = [[255u8, 0, 128], [10, 200, 30]];
    for split in ["train", "val"] {
        for (c, colour) in colours.iter().enumerate() {
            for i in 0..2 {
                let img = RgbImage::from_pixel(30 + 7 * i, 20, Rgb(*colour));
                write(
                    &dir.path().join(split).join(format!("class{c}/{i}.png")),
                    &img,
                );
            }
        }
    }
    let f = ImageFolder::open(dir.path()).unwrap();
    let device = first_compiled_device();
    let expect = |colour: [u8; 3]| -> Vec<f32> {
        (0..3)
            .map(|c| (colour[c] as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c])
            .collect()
    };
    for ds in [
        f.train_dataset(TrainTransform::imagenet(12, 5)),
        f.val_dataset(small_preset(14, 12)),
    ] {
        let items: Vec<_> = (0..ds.len()).map(|i| ds.get(i).unwrap()).collect();
        let batch = FolderBatcher.batch(items, &device);
        assert_eq!(batch.images.dims(), [4, 3, 12, 12]);
        let labels: Vec<i64> = batch.targets.try_into_vec_as().unwrap();
        assert_eq!(labels, [0, 0, 1, 1]);
        let v: Vec<f32> = batch.images.try_into_vec_as().unwrap();
        for (n, colour) in [colours[0], colours[0], colours[1], colours[1]]
            .into_iter()
            .enumerate()
        {
            let want = expect(colour);
            for c in 0..3 {
                let plane = &v[(n * 3 + c) * 144..(n * 3 + c + 1) * 144];
                for &x in plane {
                    assert!(
                        (x - want[c]).abs() < 1e-5,
                        "item {n} channel {c}: {x} vs {}",
                        want[c]
                    );
                }
            }
        }
    }
}

fn open_gradients() -> (TempDir, ImageFolder) {
    let dir = folder(&["ants", "bees"], 4);
    let f = ImageFolder::open(dir.path()).unwrap();
    (dir, f)
}

#[test]
fn augmentation_is_reproducible_from_the_seed() {
    let (_dir, f) = open_gradients();
    let a = f.train_dataset(TrainTransform::imagenet(10, 42));
    let b = f.train_dataset(TrainTransform::imagenet(10, 42));
    let n = a.len();
    assert_eq!(n, 8);
    // The same seed gives the same items whatever order they are fetched in.
    let first_a: Vec<Vec<f32>> = (0..n).map(|i| a.get(i).unwrap().pixels).collect();
    let mut first_b = vec![Vec::new(); n];
    for i in (0..n).rev() {
        first_b[i] = b.get(i).unwrap().pixels;
    }
    assert_eq!(first_a, first_b);

    // A second pass draws new crops; a dataset told to start there repeats them.
    let second_a: Vec<Vec<f32>> = (0..n).map(|i| a.get(i).unwrap().pixels).collect();
    assert_ne!(first_a, second_a);
    let resumed = f.train_dataset(TrainTransform::imagenet(10, 42));
    resumed.start_at_pass(1);
    let second_r: Vec<Vec<f32>> = (0..n).map(|i| resumed.get(i).unwrap().pixels).collect();
    assert_eq!(second_a, second_r);
    // Clones share the pass counts, as a data loader's workers do.
    let clone = a.clone();
    assert_eq!(clone.get(0).unwrap().pixels, a.item(0, 2).unwrap().pixels);

    // Another seed, other crops.
    let c = f.train_dataset(TrainTransform::imagenet(10, 43));
    let first_c: Vec<Vec<f32>> = (0..n).map(|i| c.get(i).unwrap().pixels).collect();
    assert_ne!(first_a, first_c);

    // Validation is deterministic and ignores passes.
    let v = f.val_dataset(small_preset(12, 10));
    assert_eq!(v.get(3).unwrap().pixels, v.get(3).unwrap().pixels);
}

#[test]
fn augmentation_flips_about_half_the_time() {
    let t = TrainTransform::imagenet(10, 7);
    let img = gradient(40, 30, 0);
    let (mut flips, mut total) = (0, 0);
    for pass in 0..200 {
        let mut rng = t.rng(0, pass);
        let crop = t.crop.params(40, 30, &mut rng);
        let unflipped = t.crop.apply(&img, crop);
        let out = t.augment(&img, 0, pass);
        if out != unflipped {
            assert_eq!(out, image::imageops::flip_horizontal(&unflipped));
            flips += 1;
        }
        total += 1;
    }
    assert!((60..=140).contains(&flips), "{flips} flips in {total}");
}

/// `STRATA_DATA_DIR`, else `/work/shared/datasets`.
fn shared_datasets() -> PathBuf {
    std::env::var_os("STRATA_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/datasets"))
}

#[test]
fn hymenoptera_has_the_published_split_sizes() {
    let dir = shared_datasets().join("hymenoptera");
    if !dir.is_dir() {
        assert!(
            std::env::var_os("STRATA_REQUIRE_SHARED_DATA").is_none(),
            "STRATA_REQUIRE_SHARED_DATA is set but {} is missing",
            dir.display()
        );
        println!(
            "hymenoptera not checked: {} is missing (set STRATA_DATA_DIR)",
            dir.display()
        );
        return;
    }
    let f = ImageFolder::open(&dir).unwrap();
    assert_eq!(f.classes(), ["ants", "bees"]);
    assert_eq!((f.train().len(), f.val().len()), (244, 153));
    let count = |s: &[(PathBuf, usize)], l| s.iter().filter(|(_, x)| *x == l).count();
    assert_eq!((count(f.train(), 0), count(f.train(), 1)), (123, 121));
    assert_eq!((count(f.val(), 0), count(f.val(), 1)), (70, 83));
    // The placeholder GIF is skipped, the odd names are kept.
    assert_eq!(f.skipped().len(), 1);
    assert_eq!(f.skipped()[0].example, "imageNotFound.gif");
    for name in ["ant photos.jpg", "formica.jpeg"] {
        assert!(f.train().iter().any(|(p, _)| p.ends_with(name)), "{name}");
    }

    let device = first_compiled_device();
    let train: FolderDataset = f.train_dataset(TrainTransform::imagenet(224, 0));
    let val = f.val_dataset(ImageNetPreset::default());
    for ds in [train, val] {
        let picks = [0, 1, ds.len() - 1];
        let items: Vec<_> = picks.iter().map(|&i| ds.get(i).unwrap()).collect();
        let batch = FolderBatcher.batch(items, &device);
        assert_eq!(batch.images.dims(), [3, 3, 224, 224]);
        let labels: Vec<i64> = batch.targets.try_into_vec_as().unwrap();
        assert_eq!(labels, [0, 0, 1]);
        let v: Vec<f32> = batch.images.try_into_vec_as().unwrap();
        assert!(v.iter().all(|x| x.is_finite() && (-2.2..=2.7).contains(x)));
    }
}

#[test]
fn a_threaded_data_loader_sees_every_item_once_per_epoch() {
    use burn::data::dataloader::DataLoaderBuilder;

    let (_dir, f) = open_gradients();
    let ds = f.train_dataset(TrainTransform::imagenet(10, 1));
    let loader = DataLoaderBuilder::new(FolderBatcher)
        .batch_size(3)
        .shuffle(5)
        .num_workers(2)
        .set_device(first_compiled_device())
        .build(ds.clone());
    for epoch in 0..2 {
        let mut labels = Vec::new();
        for batch in loader.iter() {
            let batch = batch.unwrap();
            assert_eq!(&batch.images.dims()[1..], [3, 10, 10]);
            let l: Vec<i64> = batch.targets.try_into_vec_as().unwrap();
            labels.extend(l);
        }
        labels.sort();
        assert_eq!(labels, [0, 0, 0, 0, 1, 1, 1, 1], "epoch {epoch}");
    }
    // The loader's workers counted two passes of every item on the shared counters.
    let next = ds.get(0).unwrap().pixels;
    assert_eq!(next, ds.item(0, 2).unwrap().pixels);
}
