//! Loading GPT-2: the real GPT-2 tokenizer against its reference encodings, model dirs and Hub
//! repositories (through the loopback Hub and the cache, offline too), and clear errors for files
//! that do not fit.

use std::path::{Path, PathBuf};

use strata_data::hub::{HubSettings, Source};
use strata_data::testing::{HubFixture, serve_hub};
use strata_tensor::generate::Decoder;
use strata_transformer::load::{self, LoadError};
use strata_transformer::{Gpt2Generator, TextTokenizer, WeightDtype};

fn data_dir() -> PathBuf {
    let dir = std::env::var_os("STRATA_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets")
        });
    let tok = dir.join("gpt2-tokenizer");
    assert!(
        tok.join("tokenizer.json").is_file(),
        "GPT-2 tokenizer files missing in {}: set STRATA_DATA_DIR to the datasets root",
        tok.display()
    );
    dir
}

fn fixtures() -> PathBuf {
    strata_data::testing::fixtures_dir("gpt2", "expected.json")
}

fn expected_case(layout: &str, index: u64) -> (String, Vec<u32>) {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap();
    let case = expected["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == layout && c["index"] == index)
        .unwrap()
        .clone();
    let ids = case["generated_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    (case["prompt"].as_str().unwrap().to_string(), ids)
}

/// The first `n` greedy tokens after `prompt`.
fn greedy(source: &Source, prompt: &str, n: usize) -> Vec<u32> {
    let (model, tokenizer) = load::load(source, &strata_tensor::first_compiled_device()).unwrap();
    let mut generator = Gpt2Generator::new(model, WeightDtype::F32);
    let mut logits = generator
        .prefill(&tokenizer.encode(prompt, "prompt").unwrap())
        .unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let next = strata_tensor::generate::argmax(&logits) as u32;
        out.push(next);
        logits = generator.step(next).unwrap();
    }
    out
}

fn files(dir: &Path, names: &[&str]) -> Vec<(String, Vec<u8>)> {
    names
        .iter()
        .map(|n| (n.to_string(), std::fs::read(dir.join(n)).unwrap()))
        .collect()
}

fn fixture(id: &str, files: &[(String, Vec<u8>)]) -> HubFixture {
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    HubFixture::new(id, &refs)
}

#[test]
fn the_gpt2_tokenizer_reproduces_the_reference_encodings() {
    let dir = data_dir().join("gpt2-tokenizer");
    let vectors: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("test_vectors.json")).unwrap()).unwrap();
    let from_json = TextTokenizer::from_dir(&dir).unwrap();
    let from_files =
        TextTokenizer::gpt2_from_vocab_merges(&dir.join("vocab.json"), &dir.join("merges.txt"))
            .unwrap();
    assert_eq!(from_json.vocab_size(), 50257);
    assert_eq!(from_files.vocab_size(), 50257);
    assert_eq!(from_json.token_id("<|endoftext|>"), Some(50256));
    let samples = vectors["samples"].as_array().unwrap();
    assert!(samples.len() >= 19);
    for sample in samples {
        let text = sample["text"].as_str().unwrap();
        let ids: Vec<u32> = sample["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        for tokenizer in [&from_json, &from_files] {
            assert_eq!(tokenizer.encode(text, "sample").unwrap(), ids, "{text:?}");
            assert_eq!(tokenizer.decode(&ids), text);
            // Streaming one token at a time gives the same text, whole characters only.
            let mut stream = tokenizer.stream();
            let streamed: String = ids.iter().map(|&id| stream.push(id)).collect();
            assert_eq!(streamed, text);
        }
    }
    // The whole of tiny Shakespeare, as the tokenizer's SOURCE.md records.
    let text = std::fs::read_to_string(data_dir().join("tiny-shakespeare/input.txt")).unwrap();
    assert_eq!(from_json.encode(&text, "corpus").unwrap().len(), 338_025);
}

#[test]
fn a_character_tokenizer_round_trips_and_names_unknown_characters() {
    let chars: Vec<char> = "\n !,.:?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        .chars()
        .collect();
    let tokenizer = TextTokenizer::characters(&chars).unwrap();
    let ids = tokenizer.encode("ROMEO:\nBut, soft!", "prompt").unwrap();
    assert_eq!(ids[0], chars.iter().position(|&c| c == 'R').unwrap() as u32);
    assert_eq!(tokenizer.decode(&ids), "ROMEO:\nBut, soft!");
    let dir = tempfile::tempdir().unwrap();
    tokenizer.save(dir.path()).unwrap();
    let again = TextTokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(again.encode("ROMEO:\nBut, soft!", "prompt").unwrap(), ids);
    let err = tokenizer
        .encode("Ça va?", "prompt")
        .unwrap_err()
        .to_string();
    assert!(err.contains("'Ç'") && err.contains("prompt"), "{err}");
}

#[test]
fn a_hub_repository_loads_through_the_cache_and_then_offline() {
    let new = fixtures().join("new");
    let hub = fixtures().join("hub");
    let (endpoint, log) = serve_hub(vec![
        fixture(
            "strata-test/tiny-gpt2",
            &files(
                &new,
                &["config.json", "model.safetensors", "tokenizer.json"],
            ),
        )
        .with_ref("v1"),
        // The Hub's original layout, with the tokenizer as vocab.json + merges.txt only.
        fixture(
            "tiny-gpt2-original",
            &files(
                &hub,
                &[
                    "config.json",
                    "model.safetensors",
                    "vocab.json",
                    "merges.txt",
                ],
            ),
        ),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let settings = HubSettings::new(&endpoint, cache.path());
    let (prompt, want) = expected_case("new", 0);
    let source = Source::resolve("strata-test/tiny-gpt2", Some("v1"), &settings).unwrap();
    assert_eq!(greedy(&source, &prompt, want.len()), want);
    assert!(!log.lock().unwrap().is_empty(), "fetched over HTTP");
    let (prompt, want) = expected_case("hub", 1);
    let source = Source::resolve("tiny-gpt2-original", None, &settings).unwrap();
    assert_eq!(greedy(&source, &prompt, want.len()), want);

    // Offline: the cached copy, without the network; an uncached model is a one-line error.
    let mut offline = HubSettings::new("http://127.0.0.1:9", cache.path());
    offline.offline = true;
    let (prompt, want) = expected_case("new", 0);
    let source = Source::resolve("strata-test/tiny-gpt2", Some("v1"), &offline).unwrap();
    assert_eq!(greedy(&source, &prompt, want.len()), want);
    let source = Source::resolve("openai-community/gpt2", None, &offline).unwrap();
    let err = load::load(&source, &strata_tensor::first_compiled_device())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("openai-community/gpt2") && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
    // Unreachable (no server, not offline): a clear error at once, not a hang.
    let gone = HubSettings::new("http://127.0.0.1:9", tempfile::tempdir().unwrap().path());
    let source = Source::resolve("openai-community/gpt2", None, &gone).unwrap();
    let err = load::load(&source, &strata_tensor::first_compiled_device())
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be reached"), "{err}");
    // A revision the repository does not have.
    let source = Source::resolve("strata-test/tiny-gpt2", Some("v9"), &settings).unwrap();
    let err = load::load(&source, &strata_tensor::first_compiled_device())
        .unwrap_err()
        .to_string();
    assert!(err.contains("v9"), "{err}");
}

/// A copy of the `new` fixture dir in which `edit` changed something.
fn spoiled(edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixtures().join("new").join(name), dir.path().join(name)).unwrap();
    }
    edit(dir.path());
    dir
}

fn load_error(dir: &Path) -> String {
    let source = Source::Local(dir.to_path_buf());
    let err: LoadError = load::load(&source, &strata_tensor::first_compiled_device()).unwrap_err();
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    msg
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, serde_json::to_vec(&value).unwrap()).unwrap();
}

#[test]
fn files_that_do_not_fit_are_named() {
    let dir = spoiled(|d| std::fs::remove_file(d.join("config.json")).unwrap());
    let err = load_error(dir.path());
    assert!(err.contains("config.json"), "{err}");

    let dir = spoiled(|d| std::fs::write(d.join("config.json"), "{\"n_embd\": ").unwrap());
    let err = load_error(dir.path());
    assert!(
        err.contains("config.json") && err.contains("not a usable"),
        "{err}"
    );

    let dir = spoiled(|d| edit_config(d, |c| c["n_head"] = 5.into()));
    let err = load_error(dir.path());
    assert!(err.contains("multiple of n_head"), "{err}");

    // Wider than the file: a shape error naming the tensor.
    let dir = spoiled(|d| edit_config(d, |c| c["n_inner"] = 64.into()));
    let err = load_error(dir.path());
    assert!(err.contains("mlp.c_fc"), "{err}");

    // One more block than the file has: the missing tensors are named.
    let dir = spoiled(|d| edit_config(d, |c| c["n_layer"] = 3.into()));
    let err = load_error(dir.path());
    assert!(err.contains("'h.2."), "{err}");
    assert!(!err.contains("gamma") && !err.contains("beta"), "{err}");

    // A tokenizer larger than the model's vocabulary.
    let dir = spoiled(|d| edit_config(d, |c| c["vocab_size"] = 1000.into()));
    let err = load_error(dir.path());
    assert!(
        err.contains("50257 tokens") && err.contains("vocab_size is 1000"),
        "{err}"
    );

    // No tokenizer at all.
    let dir = spoiled(|d| std::fs::remove_file(d.join("tokenizer.json")).unwrap());
    let err = load_error(dir.path());
    assert!(err.contains("vocab.json"), "{err}");
}

#[test]
fn a_sliding_context_goes_on_where_the_context_ends() {
    let source = Source::Local(fixtures().join("new"));
    let run = |slide: bool| {
        let (model, tokenizer) =
            load::load(&source, &strata_tensor::first_compiled_device()).unwrap();
        let mut generator = Gpt2Generator::new(model, WeightDtype::F32).with_sliding_context(slide);
        let options = strata_tensor::generate::GenerateOptions {
            max_new_tokens: 100,
            sampling: strata_tensor::generate::SamplingConfig {
                greedy: true,
                ..Default::default()
            },
            eos: vec![],
        };
        let prompt = tokenizer.encode("The quick brown fox", "prompt").unwrap();
        strata_tensor::generate::generate(&mut generator, &prompt, &options, &mut |_| {
            std::ops::ControlFlow::Continue(())
        })
        .unwrap()
    };
    let (fixed, sliding) = (run(false), run(true));
    // 4 prompt tokens + 60 fill the context of 64; sliding goes on to 100.
    assert_eq!(fixed.generated_ids.len(), 60);
    assert_eq!(fixed.stop, strata_tensor::generate::StopReason::ContextFull);
    assert_eq!(sliding.generated_ids.len(), 100);
    assert_eq!(sliding.generated_ids[..60], fixed.generated_ids[..]);
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let source = Source::Local(fixtures().join("new"));
    let (model, _) = load::load(&source, &strata_tensor::first_compiled_device()).unwrap();
    let context = model.config().n_positions;
    let mut generator = Gpt2Generator::new(model, WeightDtype::F32);
    let options = strata_tensor::generate::GenerateOptions {
        max_new_tokens: 5,
        sampling: Default::default(),
        eos: vec![],
    };
    let err = strata_tensor::generate::generate(
        &mut generator,
        &vec![11; context + 1],
        &options,
        &mut |_| std::ops::ControlFlow::Continue(()),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains(&format!("context is {context}")), "{err}");
}
