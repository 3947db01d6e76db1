//! torchvision's ImageNet preprocessing against torchvision and Pillow themselves, bit for bit:
//! PIL's bilinear resize alone, `Resize(256)` + `CenterCrop(224)` on PNG, grey, RGBA, tiny and
//! JPEG images, the normalised float32 tensor, the loader's colour conversions and EXIF
//! orientations, and the loader's errors.
//! Fixtures: datasets/fixtures/make_preprocess_fixtures.py.

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use strata_vision::preprocess::{
    ImageNetPreset, PreprocessError, center_crop, load_rgb, resize_bilinear_pil,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/fixtures/preprocess")
}

/// The tensors of one fixture file.
struct Fixture {
    bytes: Vec<u8>,
}

impl Fixture {
    fn open(name: &str) -> Self {
        let path = fixtures().join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run datasets/fixtures/make_preprocess_fixtures.py",
                path.display()
            )
        });
        Self { bytes }
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).unwrap()
    }

    /// An HWC u8 image, as `(width, height, samples)`.
    fn image(&self, key: &str) -> (u32, u32, Vec<u8>) {
        let st = self.tensors();
        let t = st.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(t.dtype(), Dtype::U8, "{key}");
        let shape = t.shape();
        assert_eq!(shape.len(), 3, "{key}");
        assert_eq!(shape[2], 3, "{key}");
        (shape[1] as u32, shape[0] as u32, t.data().to_vec())
    }

    fn f32s(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let st = self.tensors();
        let t = st.tensor(key).unwrap();
        assert_eq!(t.dtype(), Dtype::F32, "{key}");
        let data = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        (t.shape().to_vec(), data)
    }

    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .tensors()
            .names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }
}

/// How many samples differ, and the largest difference.
fn diff(ours: &[u8], expected: &[u8]) -> (usize, u8) {
    assert_eq!(ours.len(), expected.len());
    ours.iter()
        .zip(expected)
        .map(|(a, b)| a.abs_diff(*b))
        .fold((0, 0), |(n, max), d| (n + usize::from(d > 0), max.max(d)))
}

fn load(name: &str) -> image::RgbImage {
    load_rgb(&fixtures().join(name)).unwrap()
}

#[test]
fn resize_alone_equals_pillow_bilinear() {
    let fixture = Fixture::open("resize.safetensors");
    let keys = fixture.keys();
    let mut checked = 0;
    for key in keys.iter().filter(|k| k.contains("_to_")) {
        let (stem, size) = key.split_once("_to_").unwrap();
        let (w, h) = size.split_once('x').unwrap();
        let (w, h): (u32, u32) = (w.parse().unwrap(), h.parse().unwrap());
        let src = load(&format!("{stem}.png"));
        let ours = resize_bilinear_pil(&src, w, h);
        let (ew, eh, expected) = fixture.image(key);
        assert_eq!((ours.width(), ours.height()), (ew, eh), "{key}");
        assert_eq!(diff(ours.as_raw(), &expected), (0, 0), "{key}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} resizes in the fixture");
}

#[test]
fn center_crop_equals_torchvision_with_padding() {
    let fixture = Fixture::open("resize.safetensors");
    let keys = fixture.keys();
    let mut checked = 0;
    for key in keys.iter().filter(|k| k.contains("_center_crop_")) {
        let (stem, size) = key.split_once("_center_crop_").unwrap();
        let src = load(&format!("{stem}.png"));
        let ours = center_crop(&src, size.parse().unwrap());
        let (ew, eh, expected) = fixture.image(key);
        assert_eq!((ours.width(), ours.height()), (ew, eh), "{key}");
        assert_eq!(ours.as_raw(), &expected, "{key}");
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} crops in the fixture");
}

/// `Resize(256)` + `CenterCrop(224)` of one image file, against torchvision: how many samples
/// differ, and by how much at most.
fn check_crop(file: &str) -> (usize, u8) {
    let stem = file.rsplit_once('.').unwrap().0;
    let fixture = Fixture::open(&format!("{stem}.safetensors"));
    let ours = ImageNetPreset::default().crop_image(&load(file));
    let (w, h, expected) = fixture.image("crop");
    assert_eq!((ours.width(), ours.height()), (w, h), "{file}");
    assert_eq!((w, h), (224, 224));
    diff(ours.as_raw(), &expected)
}

#[test]
fn resize_and_crop_equal_torchvision() {
    for file in [
        "rgb_256x256.png",
        "rgb_300x200.png",
        "grey_230x310.png",
        "rgba_270x210.png",
        "tiny_7x5.png",
    ] {
        assert_eq!(check_crop(file), (0, 0), "{file}");
    }
}

/// The largest difference allowed between our JPEG pipeline and torchvision's: the image
/// crate's JPEG decoder (zune-jpeg) and Pillow's libjpeg-turbo differ by a few levels on some
/// pixels (IDCT and chroma upsampling), and the resize averages those differences.
const JPEG_TOLERANCE: u8 = 4;

#[test]
fn jpeg_resize_and_crop_match_torchvision_within_the_decoder_difference() {
    let (differing, max) = check_crop("rgb_180x240.jpg");
    eprintln!("JPEG: {differing} of 150528 samples differ from torchvision, by at most {max}");
    assert!(max <= JPEG_TOLERANCE, "JPEG crop differs by {max}");
}

#[test]
fn normalised_tensor_equals_torchvision_bit_for_bit() {
    let fixture = Fixture::open("rgb_256x256.safetensors");
    let (shape, expected) = fixture.f32s("normalized");
    assert_eq!(shape, [3, 224, 224]);
    let ours = ImageNetPreset::default().apply(&load("rgb_256x256.png"));
    assert_eq!(ours.len(), expected.len());
    let mismatches = ours
        .iter()
        .zip(&expected)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(mismatches, 0, "{mismatches} floats differ from torchvision");
}

#[test]
fn tensor_has_the_preset_shape() {
    let device = strata_tensor::first_compiled_device();
    let preset = ImageNetPreset::default();
    let img = load("tiny_7x5.png");
    let t = preset.to_tensor(&img, &device);
    assert_eq!(t.dims(), [3, 224, 224]);
    let values = t.into_data().try_into_vec::<f32>().unwrap();
    assert_eq!(values, preset.apply(&img));
}

#[test]
fn loader_converts_like_pil_and_applies_exif_orientation() {
    let fixture = Fixture::open("load.safetensors");
    let keys = fixture.keys();
    for key in &keys {
        let ours = load(key);
        let (w, h, expected) = fixture.image(key);
        assert_eq!((ours.width(), ours.height()), (w, h), "{key}");
        assert_eq!(ours.as_raw(), &expected, "{key}");
    }
    for needed in [
        "exif_o6.png",
        "exif_o5.png",
        "grey16_5x4.png",
        "rgb16_5x4.png",
        "grey_alpha_5x4.png",
        "palette_5x4.png",
    ] {
        assert!(
            keys.iter().any(|k| k == needed),
            "{needed} not in the fixture"
        );
    }
}

/// The error of loading a file holding `content` under `name`, checked to be one line that
/// names the file.
fn load_error(name: &str, content: &[u8]) -> (PreprocessError, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    let err = load_rgb(&path).unwrap_err();
    let message = err.to_string();
    eprintln!("{name}: {message}");
    assert!(!message.contains('\n'), "not one line: {message}");
    assert!(
        message.contains(&path.display().to_string()),
        "does not name the file: {message}"
    );
    (err, message)
}

#[test]
fn empty_file_is_a_clear_error() {
    let (err, message) = load_error("empty.png", b"");
    assert!(matches!(err, PreprocessError::Empty { .. }), "{message}");
    assert!(message.contains("empty"), "{message}");
}

#[test]
fn truncated_png_is_a_clear_error() {
    let png = std::fs::read(fixtures().join("rgb_300x200.png")).unwrap();
    let (err, message) = load_error("cut.png", &png[..png.len() / 2]);
    assert!(matches!(err, PreprocessError::Decode { .. }), "{message}");
    assert!(message.contains("PNG"), "{message}");
}

#[test]
fn text_named_jpg_is_a_clear_error() {
    let (err, message) = load_error("notes.jpg", b"this is not a picture\nat all\n");
    assert!(
        matches!(err, PreprocessError::UnknownFormat { .. }),
        "{message}"
    );
    assert!(message.contains("not an image"), "{message}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let path = fixtures().join("no-such-image.png");
    let err = load_rgb(&path).unwrap_err();
    assert!(matches!(err, PreprocessError::Io { .. }));
    let message = err.to_string();
    assert!(message.contains("no-such-image.png") && !message.contains('\n'));
}
