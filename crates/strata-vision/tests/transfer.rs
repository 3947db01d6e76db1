//! Fine-tuning a pretrained ResNet on an image folder: frozen means frozen (weights and
//! BatchNorm statistics bit for bit), the trained parts move, the run's model predicts, and
//! pretrained weights come from a local file, from the Hub (a loopback server in the Hub's
//! layout) and from a pre-filled cache offline.
//! Pretrained weights: the random-init torchvision ResNet-18 of `make_resnet_fixtures.py`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use safetensors::SafeTensors;
use strata_data::hub::HubSettings;
use strata_data::testing::{HubFixture, serve_hub};
use strata_train::{FitConfig, OptimizerConfig, OptimizerKind};
use strata_vision::models::ResNetArch;
use strata_vision::transfer::{
    ImageNetPredictor, Strategy, TransferOptions, resolve_weights, train_transfer,
};

fn device() -> Device {
    strata_tensor::first_compiled_device()
}

fn pretrained() -> PathBuf {
    let dir = std::env::var_os("STRATA_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/strata/fixtures")
        })
        .join("resnet/resnet18.safetensors");
    assert!(
        dir.is_file(),
        "{} missing: run `cargo xtask test` (or datasets/fixtures/make_resnet_fixtures.py)",
        dir.display()
    );
    dir
}

/// An image folder of two classes (reddish and bluish squares with noise), `n` images per
/// class and split.
fn image_folder(root: &Path, n: usize) -> PathBuf {
    let dir = root.join("colours");
    for split in ["train", "val"] {
        for (class, base) in [("blue", [40u8, 60, 200]), ("red", [200u8, 50, 40])] {
            let folder = dir.join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..n {
                let img = image::RgbImage::from_fn(48, 40, |x, y| {
                    let noise = ((x * 31 + y * 17 + i as u32 * 7) % 50) as u8;
                    image::Rgb(base.map(|c| c.saturating_add(noise)))
                });
                img.save(folder.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    dir
}

fn options(folder: &Path, out: &Path, strategy: Strategy) -> TransferOptions {
    let mut optimizer = OptimizerConfig::new(OptimizerKind::Sgd, 0.01);
    optimizer.momentum = 0.9;
    optimizer.weight_decay = Some(1e-4);
    TransferOptions {
        arch: ResNetArch::Resnet18,
        pretrained: Some(pretrained().display().to_string()),
        revision: None,
        strategy,
        backbone_lr_scale: 0.1,
        image_folder: folder.to_path_buf(),
        image_size: 32,
        crop_scale: 0.5,
        artifact_dir: out.to_path_buf(),
        fit: FitConfig {
            optimizer,
            seed: 3,
            backend: "test".into(),
            ..FitConfig::new(2, 4, 0.01)
        },
    }
}

/// Every tensor of a safetensors file, as raw bytes, by key.
fn tensors(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| (k, v.data().to_vec()))
        .collect()
}

/// Keys of the trained model whose bytes are not those of the pretrained file, for keys of
/// the backbone (the head is new, so it always differs).
fn changed_backbone_keys(trained: &Path) -> Vec<String> {
    let before = tensors(&pretrained());
    let after = tensors(&trained.join("model.safetensors"));
    assert!(
        after.contains_key("layer4.1.bn2.running_var"),
        "{:?}",
        after.keys()
    );
    after
        .iter()
        .filter(|(k, _)| !k.starts_with("fc."))
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect()
}

#[test]
fn frozen_parts_do_not_change_and_trained_parts_do() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = image_folder(tmp.path(), 6);

    // Feature extraction: the whole backbone, BatchNorm statistics included, stays as loaded.
    let out = tmp.path().join("feature-extract");
    let report =
        train_transfer(&options(&folder, &out, Strategy::FeatureExtract), &device()).unwrap();
    assert_eq!(report.steps, 6, "12 images, batch 4, 2 epochs");
    assert_eq!(changed_backbone_keys(&out), Vec::<String>::new());
    let after = tensors(&out.join("model.safetensors"));
    assert_eq!(
        SafeTensors::deserialize(&std::fs::read(out.join("model.safetensors")).unwrap())
            .unwrap()
            .tensor("fc.weight")
            .unwrap()
            .shape(),
        [2, 512],
        "a new head for the folder's two classes"
    );
    assert!(after.contains_key("fc.bias"));

    // partial:1: layer4 learns (weights and statistics); the stem and layers 1–3 do not.
    let out = tmp.path().join("partial");
    train_transfer(&options(&folder, &out, Strategy::Partial(1)), &device()).unwrap();
    let changed = changed_backbone_keys(&out);
    assert!(!changed.is_empty());
    assert!(
        changed.iter().all(|k| k.starts_with("layer4.")),
        "{changed:?}"
    );
    assert!(changed.iter().any(|k| k.ends_with("running_mean")));
    assert!(changed.iter().any(|k| k.ends_with("conv1.weight")));

    // full: the stem moves too.
    let out = tmp.path().join("full");
    train_transfer(&options(&folder, &out, Strategy::Full), &device()).unwrap();
    let changed = changed_backbone_keys(&out);
    assert!(changed.iter().any(|k| k == "conv1.weight"), "{changed:?}");
    assert!(
        changed.iter().any(|k| k == "bn1.running_var"),
        "{changed:?}"
    );

    // The fine-tuned model predicts from its artifact dir, with the folder's class names.
    let predictor = ImageNetPredictor::from_artifact(&out, &device()).unwrap();
    let top = predictor
        .predict_file(&folder.join("val/red/0.png"), 2)
        .unwrap();
    assert_eq!(top.len(), 2);
    let mut labels: Vec<&str> = top.iter().map(|c| c.label.as_str()).collect();
    labels.sort();
    assert_eq!(labels, ["blue", "red"]);
    assert!((top.iter().map(|c| c.prob).sum::<f32>() - 1.0).abs() < 1e-4);
}

#[test]
fn bad_options_and_folders_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = image_folder(tmp.path(), 2);
    let out = tmp.path().join("run");
    let mut opts = options(&folder, &out, Strategy::FeatureExtract);
    opts.pretrained = None;
    let err = train_transfer(&opts, &device()).unwrap_err().to_string();
    assert!(err.contains("--pretrained"), "{err}");
    let mut opts = options(&folder, &out, Strategy::Full);
    opts.image_folder = tmp.path().join("nowhere");
    let err = train_transfer(&opts, &device()).unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    let mut opts = options(&folder, &out, Strategy::Full);
    opts.pretrained = Some(tmp.path().join("missing.pth").display().to_string());
    let err = train_transfer(&opts, &device()).unwrap_err().to_string();
    assert!(err.contains("missing.pth"), "{err}");
    assert!(
        !out.join("config.json").exists(),
        "nothing written for a failed start"
    );
}

#[test]
fn pretrained_weights_come_from_the_hub_and_then_from_the_cache_offline() {
    let weights = std::fs::read(pretrained()).unwrap();
    let (endpoint, log) = serve_hub(vec![HubFixture::new(
        "timm/resnet18.tv_in1k",
        &[("model.safetensors", &weights)],
    )]);
    let cache = tempfile::tempdir().unwrap();
    let settings = HubSettings::new(&endpoint, cache.path());
    let path = resolve_weights("timm/resnet18.tv_in1k", None, &settings).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), weights);
    assert!(!log.lock().unwrap().is_empty(), "fetched over HTTP");

    // Offline, the cached copy is used; a repository that is not cached is a clear error.
    let mut offline = HubSettings::new("http://127.0.0.1:9", cache.path());
    offline.offline = true;
    let again = resolve_weights("timm/resnet18.tv_in1k", None, &offline).unwrap();
    assert_eq!(std::fs::read(again).unwrap(), weights);
    let err = resolve_weights("timm/resnet50.tv_in1k", None, &offline)
        .unwrap_err()
        .to_string();
    assert!(err.contains("resnet50"), "{err}");
    assert!(!err.contains('\n'), "{err}");

    // The weights load into ResNet-18 and classify into ImageNet's classes.
    let image = cache.path().join("photo.png");
    image::RgbImage::from_pixel(300, 200, image::Rgb([120, 90, 60]))
        .save(&image)
        .unwrap();
    let predictor = ImageNetPredictor::load(
        ResNetArch::Resnet18,
        &path.display().to_string(),
        None,
        &device(),
    )
    .unwrap();
    let top = predictor.predict_file(&image, 5).unwrap();
    assert_eq!(top.len(), 5);
    assert!(top.windows(2).all(|w| w[0].prob >= w[1].prob));
    let classes = strata_vision::preprocess::imagenet_classes();
    assert_eq!(top[0].label, classes[top[0].class]);
}
