//! `strata generate-text` with GPT-2 (a model dir and a Hub id through the loopback Hub) and
//! `strata train-text` end to end: the model dir it writes loads in `generate-text` and in
//! `transformers` (`GPT2LMHeadModel.from_pretrained`), which chooses the same greedy tokens.
//! Bad input: one line, a non-zero exit, no panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use strata_data::testing::{HubFixture, serve_hub};

mod common;
use common::{assert_one_line_error, json};

fn strata(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.args(args).env_remove("STRATA_BACKEND");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run strata")
}

fn fixtures() -> PathBuf {
    strata_data::testing::fixtures_dir("gpt2", "expected.json")
}

fn case(layout: &str, index: u64) -> serde_json::Value {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap();
    expected["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == layout && c["index"] == index)
        .unwrap()
        .clone()
}

#[test]
fn greedy_generation_prints_what_transformers_generates() {
    let want = case("hub", 2);
    let dir = fixtures().join("hub");
    let out = strata(
        &[
            "generate-text",
            "--model-dir",
            dir.to_str().unwrap(),
            "--prompt",
            want["prompt"].as_str().unwrap(),
            "--greedy",
            "--max-new-tokens",
            "24",
            "--format",
            "json",
        ],
        &[],
    );
    let got = json(&out);
    assert_eq!(got["prompt_ids"], want["prompt_ids"]);
    assert_eq!(got["generated_ids"], want["generated_ids"]);
    assert_eq!(got["text"], want["text"]);
    assert!(got["decode_tokens_per_s"].as_f64().unwrap() > 0.0);

    // Streamed as text: the prompt, then the new text.
    let out = strata(
        &[
            "generate-text",
            "--model-dir",
            dir.to_str().unwrap(),
            "--prompt",
            want["prompt"].as_str().unwrap(),
            "--greedy",
            "--max-new-tokens",
            "24",
        ],
        &[],
    );
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let streamed = format!(
        "{}{}",
        want["prompt"].as_str().unwrap(),
        want["text"].as_str().unwrap()
    );
    assert_eq!(stdout.trim_end_matches('\n'), streamed);
}

#[test]
fn sampling_is_reproducible_with_a_seed_and_stops_on_a_string() {
    let dir = fixtures().join("new");
    let run = |seed: &str, extra: &[&str]| {
        let mut args = vec![
            "generate-text",
            "--model-dir",
            dir.to_str().unwrap(),
            "--prompt",
            "The quick brown fox",
            "--temperature",
            "0.8",
            "--top-k",
            "50",
            "--top-p",
            "0.95",
            "--repetition-penalty",
            "1.2",
            "--seed",
            seed,
            "--max-new-tokens",
            "16",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        json(&strata(&args, &[]))
    };
    let (a, b, c) = (run("7", &[]), run("7", &[]), run("8", &[]));
    assert_eq!(a["generated_ids"], b["generated_ids"]);
    assert_ne!(a["generated_ids"], c["generated_ids"]);
    // Stop at the first token whose text completes the stop string.
    let text = a["text"].as_str().unwrap();
    let stop: String = text.chars().skip(3).take(4).collect();
    let stopped = run("7", &["--stop", &stop]);
    let short = stopped["text"].as_str().unwrap();
    assert!(
        short.contains(&stop) && short.len() < text.len(),
        "{short:?} / {text:?}"
    );
    assert_eq!(stopped["stop"], "Callback");
}

#[test]
fn a_hub_id_loads_through_the_cache() {
    let new = fixtures().join("new");
    let files: Vec<(String, Vec<u8>)> = ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .map(|n| (n.to_string(), std::fs::read(new.join(n)).unwrap()))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let (endpoint, _log) = serve_hub(vec![HubFixture::new("strata-test/tiny-gpt2", &refs)]);
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let want = case("new", 3);
    let args = [
        "generate-text",
        "--model",
        "strata-test/tiny-gpt2",
        "--prompt",
        want["prompt"].as_str().unwrap(),
        "--greedy",
        "--max-new-tokens",
        "24",
        "--format",
        "json",
    ];
    let env = [
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HUB_CACHE", cache_dir),
    ];
    assert_eq!(
        json(&strata(&args, &env))["generated_ids"],
        want["generated_ids"]
    );
    // Offline, from the cache.
    let offline = [
        ("HF_ENDPOINT", "http://127.0.0.1:9"),
        ("HF_HUB_CACHE", cache_dir),
        ("HF_HUB_OFFLINE", "1"),
    ];
    assert_eq!(
        json(&strata(&args, &offline))["generated_ids"],
        want["generated_ids"]
    );
    // A model that is not cached, offline: one line that says what to do.
    let mut other = args;
    other[2] = "openai-community/gpt2";
    assert_one_line_error(&strata(&other, &offline), "--model-dir");
}

#[test]
fn bad_generation_options_are_one_line_errors() {
    let dir = fixtures().join("new");
    let d = dir.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["generate-text", "--model-dir", d, "--prompt", "Hello"];
        args.extend_from_slice(extra);
        strata(&args, &[])
    };
    assert_one_line_error(
        &strata(&["generate-text", "--model-dir", d, "--prompt", ""], &[]),
        "prompt is empty",
    );
    assert_one_line_error(&run(&["--top-p", "1.5"]), "--top-p");
    assert_one_line_error(&run(&["--top-p", "0"]), "--top-p");
    assert_one_line_error(&run(&["--temperature", "-1"]), "--temperature");
    assert_one_line_error(&run(&["--dtype", "fp8"]), "--dtype");
    let long = "word ".repeat(100);
    assert_one_line_error(
        &strata(&["generate-text", "--model-dir", d, "--prompt", &long], &[]),
        "context is 64",
    );
    assert_one_line_error(
        &strata(
            &[
                "generate-text",
                "--model-dir",
                "/nonexistent",
                "--prompt",
                "x",
            ],
            &[],
        ),
        "config.json",
    );
}

/// Runs the venv's Python on `script` (`STRATA_PYTHON`, which `cargo xtask test` sets).
fn python(script: &str, args: &[&str]) -> serde_json::Value {
    let python = std::env::var_os("STRATA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/strata/venv/bin/python")
        });
    assert!(
        python.is_file(),
        "no Python with transformers at {}: run `cargo xtask test`",
        python.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(script);
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    json(&out)
}

#[test]
fn train_text_writes_a_model_dir_that_transformers_loads() {
    let data = std::env::var_os("STRATA_DATA_DIR")
        .map(PathBuf::from)
        .expect("STRATA_DATA_DIR must name the datasets (cargo xtask test sets it)");
    let text = std::fs::read_to_string(data.join("tiny-shakespeare/input.txt")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("excerpt.txt");
    std::fs::write(&corpus, &text[..30_000]).unwrap();
    let dir = tmp.path().join("gpt");
    let out = strata(
        &[
            "train-text",
            "--corpus",
            corpus.to_str().unwrap(),
            "--layers",
            "2",
            "--heads",
            "2",
            "--embd",
            "32",
            "--block-size",
            "32",
            "--max-steps",
            "60",
            "--eval-every",
            "30",
            "--warmup-steps",
            "10",
            "--artifact-dir",
            dir.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[],
    );
    let report = json(&out);
    let loss = report["valid_loss"].as_f64().unwrap();
    // A uniform guess over the corpus's characters scores ln(vocab) ≈ 4.1; 60 steps learn which
    // letters are frequent.
    let uniform = (report["vocab_size"].as_f64().unwrap()).ln();
    assert!(loss < uniform - 0.5, "valid loss {loss}, uniform {uniform}");
    assert_eq!(report["steps"], 60);
    let model_type: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(model_type["model_type"], "gpt2");

    let ours = json(&strata(
        &[
            "generate-text",
            "--model-dir",
            dir.to_str().unwrap(),
            "--prompt",
            "ROMEO:",
            "--greedy",
            "--max-new-tokens",
            "20",
            "--format",
            "json",
        ],
        &[],
    ));
    let theirs = python(
        "datasets/fixtures/check_gpt2_dir.py",
        &[dir.to_str().unwrap(), "ROMEO:", "20"],
    );
    assert_eq!(ours["prompt_ids"], theirs["prompt_ids"]);
    assert_eq!(ours["generated_ids"], theirs["generated_ids"]);
    assert_eq!(ours["text"], theirs["text"]);

    // Bad options fail before anything is read or written.
    let bad = tmp.path().join("bad");
    assert_one_line_error(
        &strata(
            &[
                "train-text",
                "--embd",
                "30",
                "--heads",
                "4",
                "--artifact-dir",
                bad.to_str().unwrap(),
            ],
            &[],
        ),
        "multiple of --heads",
    );
    assert!(!bad.join("config.json").exists());
}
