//! The `strata` binary's errors: one line on stderr, a non-zero exit, nothing half-written.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::assert_one_line_error;

fn strata(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.args(args)
        .env_remove("STRATA_BACKEND")
        .env_remove("STRATA_DATA_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run strata")
}

#[test]
fn unknown_backend() {
    let out = strata(&["train-vision", "--backend", "tpu"], &[]);
    assert_one_line_error(
        &out,
        "unknown --backend 'tpu': choose flex, ndarray, tch, cuda, wgpu, cpu",
    );
}

#[test]
fn backend_not_compiled_names_its_feature() {
    let missing = strata_tensor::BackendKind::ALL
        .into_iter()
        .find(|b| !b.is_compiled())
        .unwrap();
    let out = strata(&["train-vision", "--backend", missing.name()], &[]);
    assert_one_line_error(
        &out,
        &format!("rebuild with the cargo feature `{}`", missing.name()),
    );
}

#[test]
fn unknown_model_and_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let out = strata(
        &[
            "train-vision",
            "--model",
            "vgg",
            "--artifact-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_one_line_error(&out, "unknown --model 'vgg': choose simple-cnn, lenet5");
    let out = strata(
        &[
            "train-vision",
            "--dataset",
            "cifar",
            "--artifact-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_one_line_error(
        &out,
        "unknown --dataset 'cifar': choose mnist, fashion-mnist",
    );
}

#[test]
fn missing_dataset_says_where_to_put_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let out = strata(
        &[
            "train-vision",
            "--dataset",
            "fashion-mnist",
            "--data-dir",
            data.to_str().unwrap(),
            "--artifact-dir",
            tmp.path().join("a").to_str().unwrap(),
        ],
        &[
            ("STRATA_CACHE_DIR", &tmp.path().join("cache")),
            ("STRATA_DATASET_MIRROR", Path::new("http://127.0.0.1:9/")),
        ],
    );
    assert_one_line_error(&out, "dataset 'fashion-mnist' not found");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&data.join("fashion-mnist").display().to_string()),
        "{stderr}"
    );
}

#[test]
fn corrupt_dataset_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mnist = tmp.path().join("data/mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/mnist");
    for f in strata_vision::mnist::FILES {
        std::fs::copy(bundled.join(f), mnist.join(f)).unwrap();
    }
    std::fs::write(
        mnist.join("train-labels-idx1-ubyte.gz"),
        b"\x00\x00\x08\x01\x00\x00\x00\x05ab",
    )
    .unwrap();
    let out = strata(
        &[
            "train-vision",
            "--data-dir",
            tmp.path().join("data").to_str().unwrap(),
            "--artifact-dir",
            tmp.path().join("a").to_str().unwrap(),
        ],
        &[],
    );
    assert_one_line_error(&out, "train-labels-idx1-ubyte.gz is corrupt");
}

#[test]
fn unwritable_artifact_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let out = strata(
        &[
            "train-vision",
            "--artifact-dir",
            file.join("x").to_str().unwrap(),
        ],
        &[],
    );
    assert_one_line_error(&out, "cannot write to artifact dir");
}

#[test]
fn resume_without_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let out = strata(
        &[
            "train-vision",
            "--resume",
            "--artifact-dir",
            tmp.path().to_str().unwrap(),
        ],
        &[],
    );
    assert_one_line_error(&out, "--resume: no checkpoint in");
    assert!(!tmp.path().join("metrics.json").exists());
    assert!(!tmp.path().join("model.safetensors").exists());
}

#[test]
fn predict_without_a_model_or_with_a_bad_image() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("x.png");
    std::fs::write(&image, b"\x89PNG broken").unwrap();
    let out = strata(
        &[
            "predict-vision",
            "--artifact-dir",
            tmp.path().to_str().unwrap(),
            "--image",
            image.to_str().unwrap(),
        ],
        &[],
    );
    assert_one_line_error(&out, "config.json");
    let out = strata(&["bench", "resnet"], &[]);
    assert_one_line_error(&out, "unknown benchmark 'resnet'");
}

#[test]
fn bad_numbers_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let out = strata(
        &[
            "train-vision",
            "--lr",
            "5",
            "--train-limit",
            "64",
            "--artifact-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_one_line_error(&out, "--lr 5 is out of range");
    let out = strata(
        &[
            "train-vision",
            "--schedule",
            "warm",
            "--artifact-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_one_line_error(
        &out,
        "unknown --schedule 'warm': choose constant, cosine, step",
    );
    let out = strata(
        &[
            "train-vision",
            "--optimizer",
            "sgd",
            "--nesterov",
            "--artifact-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_one_line_error(&out, "--nesterov needs --momentum");
    assert!(!dir.exists(), "nothing is written for refused options");
}

#[test]
fn help_lists_the_choices_and_the_defaults_of_the_job() {
    let out = strata(&["train-vision", "--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "[possible values: adam, adamw, sgd]",
        "[possible values: constant, cosine, step]",
        "[possible values: mnist, fashion-mnist]",
        "[possible values: simple-cnn, lenet5]",
        "[possible values: max, avg]",
        "[default: 3]",
    ] {
        assert!(help.contains(needle), "'{needle}' not in --help:\n{help}");
    }
}

#[test]
fn summary_prints_the_layer_table() {
    let out = strata(
        &[
            "train-vision",
            "--summary",
            "--stride",
            "2",
            "--padding",
            "1",
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Stride 2 with padding 1 halves the side: 28 → 14 → 7, pooled to 3.
    assert!(stdout.contains("[1, 32, 14, 14]"), "{stdout}");
    assert!(stdout.contains("[1, 64, 7, 7]"), "{stdout}");
    assert!(stdout.contains("[1, 64, 3, 3]"), "{stdout}");
}

#[test]
fn bench_list_names_the_benchmarks() {
    let out = strata(&["bench", "--list"], &[]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "cnn-train\nlenet5-train\nresnet18-infer\nresnet18-train\nlstm-train\ngpt2-decode"
    );
}

#[test]
fn bad_knobs_and_paths_are_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let dir = dir.to_str().unwrap();
    let out = strata(
        &["train-vision", "--channels", "8", "--artifact-dir", dir],
        &[],
    );
    assert_one_line_error(&out, "'8' is not two positive integers A,B");
    let out = strata(
        &["train-vision", "--kernel-size", "30", "--artifact-dir", dir],
        &[],
    );
    assert_one_line_error(&out, "too small");
    let out = strata(
        &["train-vision", "--lr-scale", "conv1", "--artifact-dir", dir],
        &[],
    );
    assert_one_line_error(&out, "'conv1' is not PATH=SCALE");
    // A missing required argument is named on the same line.
    let out = strata(&["predict-vision"], &[]);
    assert_one_line_error(&out, "--image");
}

#[test]
fn transfer_options_are_checked_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let dir = dir.to_str().unwrap();
    let folder = tmp.path().to_str().unwrap();
    let out = strata(&["train-vision", "--arch", "resnet18"], &[]);
    assert_one_line_error(&out, "--image-folder");
    let args = [
        "train-vision",
        "--arch",
        "resnet18",
        "--image-folder",
        folder,
    ];
    let out = strata(&[&args[..], &["--strategy", "partial:7"]].concat(), &[]);
    assert_one_line_error(&out, "partial:N");
    let out = strata(
        &[
            "train-vision",
            "--arch",
            "resnet19",
            "--image-folder",
            folder,
        ],
        &[],
    );
    assert_one_line_error(&out, "resnet18, resnet34, resnet50");
    let out = strata(
        &[&args[..], &["--kernel-size", "5", "--artifact-dir", dir]].concat(),
        &[],
    );
    assert_one_line_error(&out, "--kernel-size is an option of the MNIST CNNs");
    let out = strata(
        &[
            &args[..],
            &["--strategy", "feature-extract", "--artifact-dir", dir],
        ]
        .concat(),
        &[],
    );
    assert_one_line_error(&out, "--pretrained");
    let out = strata(&[&args[..], &["--artifact-dir", dir]].concat(), &[]);
    assert_one_line_error(&out, "has no train/ folder");
    assert!(!Path::new(dir).join("config.json").exists());
}

#[test]
fn imagenet_prediction_prints_the_top_classes_and_refuses_bad_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("photo.png");
    image::RgbImage::from_pixel(64, 48, image::Rgb([200, 120, 40]))
        .save(&image)
        .unwrap();
    let image = image.to_str().unwrap();
    let bad = tmp.path().join("weights.pth");
    std::fs::write(&bad, b"not a state dict").unwrap();
    let bad = bad.to_str().unwrap();
    let args = ["predict-vision", "--arch", "resnet18", "--image", image];
    let out = strata(&[&args[..], &["--weights", bad]].concat(), &[]);
    assert_one_line_error(&out, "weights.pth");
    let out = strata(
        &[&args[..], &["--weights", "no/such-repo"]].concat(),
        &[("HF_HUB_OFFLINE", Path::new("1")), ("HF_HOME", tmp.path())],
    );
    assert_one_line_error(&out, "no/such-repo");

    let fixtures = std::env::var_os("STRATA_FIXTURES_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var_os("HOME").unwrap()).join(".cache/strata/fixtures")
        });
    let weights = fixtures.join("resnet/resnet18.pth");
    assert!(
        weights.is_file(),
        "{} missing: run `cargo xtask test`",
        weights.display()
    );
    let weights = weights.to_str().unwrap();
    let out = strata(
        &[
            &args[..],
            &["--weights", weights, "--top-k", "3", "--format", "json"],
        ]
        .concat(),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let top = json["top_k"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    for entry in top {
        assert!(entry["class"].as_u64().unwrap() < 1000);
        assert!(entry["label"].as_str().is_some_and(|l| !l.is_empty()));
        assert!(
            entry["prob"]
                .as_f64()
                .is_some_and(|p| (0.0..=1.0).contains(&p))
        );
    }
}
