//! `strata train-sequence` and `strata generate-text` end to end on real data (tiny Shakespeare
//! and MNIST under `STRATA_DATA_DIR`), and their errors: one line, a non-zero exit, no panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{assert_one_line_error, json};

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .env_remove("STRATA_BACKEND")
        .output()
        .expect("run strata")
}

fn data_dir() -> PathBuf {
    let dir = std::env::var_os("STRATA_DATA_DIR")
        .map(PathBuf::from)
        .expect("STRATA_DATA_DIR must name the datasets (cargo xtask test sets it)");
    assert!(
        dir.join("tiny-shakespeare/input.txt").is_file(),
        "no tiny-shakespeare/input.txt in {}",
        dir.display()
    );
    dir
}

/// The first `n` characters of tiny Shakespeare, as a corpus file in `dir`.
fn shakespeare_excerpt(dir: &Path, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(data_dir().join("tiny-shakespeare/input.txt")).unwrap();
    let path = dir.join("excerpt.txt");
    std::fs::write(&path, &text[..n]).unwrap();
    path
}

/// Trains a small character model on an excerpt; returns its artifact dir.
fn train_small(tmp: &Path) -> PathBuf {
    let corpus = shakespeare_excerpt(tmp, 40_000);
    let dir = tmp.join("char-lm");
    let out = strata(&[
        "train-sequence",
        "--corpus",
        corpus.to_str().unwrap(),
        "--layers",
        "1",
        "--hidden",
        "48",
        "--embedding",
        "16",
        "--seq-len",
        "32",
        "--batch-size",
        "16",
        "--max-steps",
        "60",
        "--eval-every",
        "30",
        "--lr",
        "0.01",
        "--artifact-dir",
        dir.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let report = json(&out);
    let loss = report["valid_loss"].as_f64().expect("valid_loss");
    // A uniform guess over the excerpt's characters costs ln(vocabulary) ≈ 4.1 nats.
    assert!(
        loss < 3.3,
        "60 steps should learn letter frequencies at least: {loss}"
    );
    for file in [
        "config.json",
        "model.safetensors",
        "vocab.json",
        "metrics.json",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    assert!((metrics["valid_loss"].as_f64().unwrap() - loss).abs() < 1e-9);
    dir
}

#[test]
fn a_char_model_trains_then_generates_reproducibly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = train_small(tmp.path());
    let model_dir = dir.to_str().unwrap();
    let generate = |extra: &[&str]| {
        let mut args = vec![
            "generate-text",
            "--model-dir",
            model_dir,
            "--prompt",
            "ROMEO:",
            "--max-new-tokens",
            "40",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        json(&strata(&args))
    };
    let greedy = generate(&["--greedy"]);
    assert_eq!(
        greedy,
        generate(&["--greedy"])
            .as_object()
            .map(|o| {
                // Timings differ between runs; everything else is the same.
                let mut o = o.clone();
                o.insert(
                    "prompt_tokens_per_s".into(),
                    greedy["prompt_tokens_per_s"].clone(),
                );
                o.insert(
                    "decode_tokens_per_s".into(),
                    greedy["decode_tokens_per_s"].clone(),
                );
                serde_json::Value::Object(o)
            })
            .unwrap()
    );
    let ids = greedy["generated_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 40);
    assert_eq!(greedy["prompt_ids"].as_array().unwrap().len(), 6);
    assert_eq!(greedy["text"].as_str().unwrap().chars().count(), 40);
    assert!(greedy["decode_tokens_per_s"].as_f64().unwrap() > 0.0);

    let sampled = |seed: &str| {
        generate(&["--temperature", "0.8", "--top-k", "10", "--seed", seed])["generated_ids"]
            .clone()
    };
    assert_eq!(
        sampled("7"),
        sampled("7"),
        "the same seed gives the same text"
    );
    assert_ne!(
        sampled("7"),
        sampled("8"),
        "another seed gives another text"
    );

    // Text format streams the prompt and its continuation to stdout.
    let out = strata(&[
        "generate-text",
        "--model-dir",
        model_dir,
        "--prompt",
        "ROMEO:",
        "--max-new-tokens",
        "10",
        "--greedy",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("ROMEO:"));
    let line = text.strip_suffix('\n').expect("a final newline");
    assert_eq!(line.chars().count(), 16, "{text:?}");

    // Bad prompts and sampling settings.
    let out = strata(&[
        "generate-text",
        "--model-dir",
        model_dir,
        "--prompt",
        "ROMEO: ½ ✓",
    ]);
    assert_one_line_error(
        &out,
        "the prompt has characters the model never saw in training: '½', '✓'",
    );
    let out = strata(&["generate-text", "--model-dir", model_dir, "--prompt", ""]);
    assert_one_line_error(&out, "the prompt is empty");
    let out = strata(&[
        "generate-text",
        "--model-dir",
        model_dir,
        "--prompt",
        "A",
        "--top-p",
        "1.5",
    ]);
    assert_one_line_error(&out, "--top-p");
    let out = strata(&[
        "generate-text",
        "--model-dir",
        model_dir,
        "--prompt",
        "A",
        "--temperature",
        "-1",
    ]);
    assert_one_line_error(&out, "--temperature must be above 0");
}

#[test]
fn a_row_by_row_lstm_learns_mnist_digits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("row");
    let out = strata(&[
        "train-sequence",
        "--task",
        "row-mnist",
        "--train-limit",
        "5000",
        "--valid-size",
        "1000",
        "--hidden",
        "64",
        "--batch-size",
        "32",
        "--epochs",
        "3",
        "--artifact-dir",
        dir.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let report = json(&out);
    let accuracy = report["test_accuracy"].as_f64().expect("test_accuracy");
    // 5,000 images read row by row, three times: far above the 10 % of chance.
    assert!(accuracy > 0.6, "test accuracy {accuracy}");
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(config.contains("\"strata-row-rnn\""), "{config}");
}

#[test]
fn bad_corpora_and_options_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let dir = tmp.path().join("never");
        let mut args = vec!["train-sequence", "--artifact-dir", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = strata(&args);
        assert!(
            !dir.join("config.json").exists(),
            "nothing may be left behind"
        );
        out
    };
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    assert_one_line_error(&run(&["--corpus", empty.to_str().unwrap()]), "is empty");
    let latin1 = tmp.path().join("latin1.txt");
    std::fs::write(&latin1, b"Caf\xe9 au lait, s'il vous pla\xeet").unwrap();
    assert_one_line_error(
        &run(&["--corpus", latin1.to_str().unwrap()]),
        "is not valid UTF-8 (first bad byte at offset 3)",
    );
    let missing = tmp.path().join("nowhere.txt");
    assert_one_line_error(
        &run(&["--corpus", missing.to_str().unwrap()]),
        "cannot read the corpus",
    );
    assert_one_line_error(&run(&["--seq-len", "0"]), "--seq-len must be at least 1");
    assert_one_line_error(
        &run(&["--bidirectional"]),
        "--bidirectional does not fit char-lm",
    );
    assert_one_line_error(
        &run(&["--cell", "transformer"]),
        "unknown --cell 'transformer': choose rnn, rnn-relu, lstm, gru",
    );
    let short = tmp.path().join("short.txt");
    std::fs::write(&short, "To be, or not to be").unwrap();
    assert_one_line_error(&run(&["--corpus", short.to_str().unwrap()]), "is too short");
}

#[test]
fn generate_text_refuses_a_dir_without_a_text_model() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "strata-simple-cnn"}"#,
    )
    .unwrap();
    let out = strata(&[
        "generate-text",
        "--model-dir",
        dir.to_str().unwrap(),
        "--prompt",
        "Hi",
    ]);
    assert_one_line_error(
        &out,
        "generate-text cannot run model_type 'strata-simple-cnn'",
    );
    let out = strata(&[
        "generate-text",
        "--model-dir",
        dir.join("none").to_str().unwrap(),
        "--prompt",
        "Hi",
    ]);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}
