//! The Hub client against a loopback server that answers like the Hugging Face Hub.

use std::path::{Path, PathBuf};

use strata_data::hub::{HubError, HubRepo, HubSettings, Source, fetch};
use strata_data::testing::{Cut, HubFixture, serve_hub, sha256_hex};

const REPO: &str = "strata-test/tiny";
const CONFIG: &[u8] = br#"{"model_type": "gpt2", "n_layer": 2}"#;
const TOKENIZER: &[u8] = br#"{"version": "1.0", "model": {"type": "BPE"}}"#;
const FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// A few bytes are enough: the client does not read them.
fn weights() -> Vec<u8> {
    (0..5000u32).map(|i| (i * 7 % 256) as u8).collect()
}

fn tiny() -> HubFixture {
    let weights = weights();
    HubFixture::new(
        REPO,
        &[
            ("config.json", CONFIG),
            ("model.safetensors", &weights),
            ("tokenizer.json", TOKENIZER),
        ],
    )
    .with_ref("v1.0")
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn assert_one_line(err: &HubError) -> String {
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    msg
}

#[test]
fn files_land_in_the_hf_cache_layout_and_are_then_read_offline() {
    let fixture = tiny();
    let commit = fixture.commit.clone();
    let (endpoint, seen) = serve_hub(vec![fixture]);
    let cache = tempfile::tempdir().unwrap();
    let settings = HubSettings::new(&endpoint, cache.path());

    let paths = fetch(&settings, REPO, None, &FILES).unwrap();
    let repo_dir = cache.path().join("models--strata-test--tiny");
    let snapshot = repo_dir.join("snapshots").join(&commit);
    assert_eq!(
        paths,
        FILES.iter().map(|f| snapshot.join(f)).collect::<Vec<_>>()
    );
    assert_eq!(std::fs::read(&paths[0]).unwrap(), CONFIG);
    assert_eq!(std::fs::read(&paths[1]).unwrap(), weights());
    assert_eq!(std::fs::read(&paths[2]).unwrap(), TOKENIZER);
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        commit
    );
    // The weights' blob is named by its SHA-256, as on the Hub; the snapshot links to blobs.
    assert!(
        repo_dir
            .join("blobs")
            .join(sha256_hex(&weights()))
            .is_file()
    );
    assert_eq!(names_in(&repo_dir.join("blobs")).len(), 3);
    #[cfg(unix)]
    assert!(
        std::fs::symlink_metadata(&paths[1])
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // hf-hub finds them in the same cache.
    let hf = hf_hub::Cache::new(cache.path().to_path_buf()).model(REPO.to_string());
    assert_eq!(hf.get("tokenizer.json"), Some(paths[2].clone()));

    // Offline, from the cache alone: no request at all.
    let before = seen.lock().unwrap().len();
    let offline = HubSettings {
        offline: true,
        ..settings.clone()
    };
    assert_eq!(fetch(&offline, REPO, None, &FILES).unwrap(), paths);
    // The same holds online: a cached file is not fetched again.
    assert_eq!(fetch(&settings, REPO, None, &FILES).unwrap(), paths);
    assert_eq!(seen.lock().unwrap().len(), before);
}

#[test]
fn tags_and_commits_are_revisions() {
    let fixture = tiny();
    let commit = fixture.commit.clone();
    let (endpoint, _) = serve_hub(vec![fixture]);
    let cache = tempfile::tempdir().unwrap();
    let settings = HubSettings::new(&endpoint, cache.path());
    let snapshot = cache
        .path()
        .join("models--strata-test--tiny/snapshots")
        .join(&commit);

    let tagged = HubRepo::new(settings.clone(), REPO, Some("v1.0")).unwrap();
    assert_eq!(
        tagged.get("config.json").unwrap(),
        snapshot.join("config.json")
    );
    let by_commit = HubRepo::new(settings.clone(), REPO, Some(&commit)).unwrap();
    assert_eq!(
        by_commit.get("model.safetensors").unwrap(),
        snapshot.join("model.safetensors")
    );
    // A commit is found offline without a ref of its own.
    let offline = HubSettings {
        offline: true,
        ..settings
    };
    let by_commit = HubRepo::new(offline, REPO, Some(&commit)).unwrap();
    assert_eq!(
        by_commit.get("config.json").unwrap(),
        snapshot.join("config.json")
    );
}

#[test]
fn offline_with_an_empty_cache_says_what_to_do() {
    let (endpoint, seen) = serve_hub(vec![tiny()]);
    let cache = tempfile::tempdir().unwrap();
    let settings = HubSettings {
        offline: true,
        ..HubSettings::new(&endpoint, cache.path())
    };
    let err = fetch(&settings, REPO, None, &["config.json"]).unwrap_err();
    assert!(matches!(err, HubError::Offline { .. }), "{err}");
    let msg = assert_one_line(&err);
    assert!(
        msg.contains(&format!(
            "not in the Hugging Face cache at {}",
            cache.path().display()
        )),
        "{msg}"
    );
    assert!(msg.contains("HF_HUB_OFFLINE is set"), "{msg}");
    assert!(msg.contains("pass a local file or folder"), "{msg}");
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn unreachable_hub_says_what_to_do() {
    // Nothing listens on the discard port of the loopback interface.
    let cache = tempfile::tempdir().unwrap();
    let settings = HubSettings::new("http://127.0.0.1:9", cache.path());
    let err = fetch(&settings, REPO, None, &["config.json"]).unwrap_err();
    assert!(matches!(err, HubError::Unreachable { .. }), "{err}");
    let msg = assert_one_line(&err);
    assert!(
        msg.contains("the Hub at http://127.0.0.1:9 cannot be reached"),
        "{msg}"
    );
    assert!(msg.contains("pass a local file or folder"), "{msg}");
}

#[test]
fn missing_repository_file_and_revision_are_told_apart() {
    let (endpoint, _) = serve_hub(vec![tiny()]);
    let cache = tempfile::tempdir().unwrap();
    let settings = HubSettings::new(&endpoint, cache.path());

    let err = fetch(&settings, "strata-test/absent", None, &["config.json"]).unwrap_err();
    assert!(matches!(err, HubError::RepoNotFound { .. }), "{err}");
    let msg = assert_one_line(&err);
    assert!(
        msg.contains("repository 'strata-test/absent' not found"),
        "{msg}"
    );

    let err = fetch(&settings, REPO, None, &["vocab.txt"]).unwrap_err();
    assert!(matches!(err, HubError::FileNotFound { .. }), "{err}");
    let msg = assert_one_line(&err);
    assert!(msg.contains("has no file 'vocab.txt'"), "{msg}");

    let err = fetch(&settings, REPO, Some("v9"), &["config.json"]).unwrap_err();
    assert!(matches!(err, HubError::RevisionNotFound { .. }), "{err}");
    let msg = assert_one_line(&err);
    assert!(msg.contains("revision 'v9' does not exist"), "{msg}");

    // Nothing was cached for any of them.
    assert!(!cache.path().join("models--strata-test--absent").exists());
    assert!(
        names_in(&cache.path().join("models--strata-test--tiny/snapshots")).is_empty(),
        "no snapshot"
    );
}

#[test]
fn truncated_downloads_leave_nothing_in_the_cache() {
    for (file, cut) in [
        ("model.safetensors", Cut::CloseEarly),
        ("model.safetensors", Cut::ShortBody),
        ("tokenizer.json", Cut::CloseEarly),
        ("tokenizer.json", Cut::ShortBody),
    ] {
        let (endpoint, _) = serve_hub(vec![tiny().with_cut(file, cut)]);
        let cache = tempfile::tempdir().unwrap();
        let settings = HubSettings::new(&endpoint, cache.path());
        let err = fetch(&settings, REPO, None, &[file]).unwrap_err();
        assert!(
            matches!(err, HubError::Incomplete { .. }),
            "{file} {cut:?}: {err}"
        );
        let msg = assert_one_line(&err);
        assert!(msg.contains(&format!("download of '{file}'")), "{msg}");
        let repo_dir = cache.path().join("models--strata-test--tiny");
        assert!(names_in(&repo_dir.join("snapshots")).is_empty(), "{cut:?}");
        assert!(names_in(&repo_dir.join("blobs")).is_empty(), "{cut:?}");
        // The next try starts afresh and succeeds once the server behaves.
        let (endpoint, _) = serve_hub(vec![tiny()]);
        let settings = HubSettings::new(&endpoint, cache.path());
        let path = fetch(&settings, REPO, None, &[file]).unwrap().remove(0);
        assert!(std::fs::read(path).unwrap().len() > 10);
    }
}

#[test]
fn corrupt_large_file_is_caught_by_its_sha256() {
    let (endpoint, _) = serve_hub(vec![tiny().with_cut("model.safetensors", Cut::Corrupt)]);
    let cache = tempfile::tempdir().unwrap();
    let settings = HubSettings::new(&endpoint, cache.path());
    let err = fetch(&settings, REPO, None, &["model.safetensors"]).unwrap_err();
    assert!(matches!(err, HubError::Corrupt { .. }), "{err}");
    let msg = assert_one_line(&err);
    assert!(
        msg.contains(&format!("expected {}", sha256_hex(&weights()))),
        "{msg}"
    );
    let repo_dir = cache.path().join("models--strata-test--tiny");
    assert!(names_in(&repo_dir.join("snapshots")).is_empty());
    assert!(names_in(&repo_dir.join("blobs")).is_empty());
}

#[test]
fn hf_hub_reads_the_test_server_and_shares_the_cache() {
    let fixture = tiny();
    let commit = fixture.commit.clone();
    let (endpoint, _) = serve_hub(vec![fixture]);
    let cache = tempfile::tempdir().unwrap();
    let api =
        hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(cache.path().to_path_buf()))
            .with_endpoint(endpoint.clone())
            .with_progress(false)
            .build()
            .unwrap();
    let repo = api.model(REPO.to_string());
    let info = repo.info().unwrap();
    assert_eq!(info.sha, commit);
    assert_eq!(info.siblings.len(), 3);
    let config = repo.get("config.json").unwrap();
    let weights_path = repo.get("model.safetensors").unwrap();
    assert_eq!(std::fs::read(&weights_path).unwrap(), weights());

    // What hf-hub fetched is read offline by strata-data.
    let offline = HubSettings {
        offline: true,
        ..HubSettings::new(&endpoint, cache.path())
    };
    let ours = fetch(&offline, REPO, None, &["config.json", "model.safetensors"]).unwrap();
    assert_eq!(ours, vec![config, weights_path]);
}

#[test]
fn path_or_hub_id() {
    let (endpoint, _) = serve_hub(vec![tiny()]);
    let cache = tempfile::tempdir().unwrap();
    let settings = HubSettings::new(&endpoint, cache.path());

    // An existing folder is used as is.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), CONFIG).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), weights()).unwrap();
    let arg = dir.path().to_str().unwrap();
    let local = Source::resolve(arg, None, &settings).unwrap();
    assert!(matches!(local, Source::Local(_)));
    assert_eq!(
        local.file("config.json").unwrap(),
        dir.path().join("config.json")
    );
    let err = local.file("tokenizer.json").unwrap_err();
    assert!(matches!(err, HubError::LocalFileMissing { .. }), "{err}");
    // A file stands for itself and its folder.
    let weights_path = dir.path().join("model.safetensors");
    let file = Source::resolve(weights_path.to_str().unwrap(), None, &settings).unwrap();
    assert_eq!(file.file("model.safetensors").unwrap(), weights_path);
    assert_eq!(
        file.file("config.json").unwrap(),
        dir.path().join("config.json")
    );

    // Anything else is a Hub id.
    let hub = Source::resolve(REPO, None, &settings).unwrap();
    let Source::Hub(repo) = &hub else {
        panic!("{hub:?} should be a Hub repository")
    };
    assert_eq!((repo.id(), repo.revision()), (REPO, "main"));
    let config: PathBuf = hub.file("config.json").unwrap();
    assert!(config.starts_with(cache.path()));

    let err = Source::resolve("./no/such/folder", None, &settings).unwrap_err();
    assert!(matches!(err, HubError::NotPathNorId(_)), "{err}");
    assert_one_line(&err);
}

#[test]
fn bad_ids_revisions_and_file_names_are_refused() {
    let cache = tempfile::tempdir().unwrap();
    let settings = HubSettings::new("http://127.0.0.1:9", cache.path());
    for id in ["", "a/b/c", "-x", "a--b/c", "owner/../x", "with space"] {
        let err = HubRepo::new(settings.clone(), id, None).unwrap_err();
        assert!(matches!(err, HubError::InvalidId(_)), "{id}: {err}");
    }
    for revision in ["", "../main", "/main"] {
        let err = HubRepo::new(settings.clone(), REPO, Some(revision)).unwrap_err();
        assert!(
            matches!(err, HubError::InvalidRevision(_)),
            "{revision}: {err}"
        );
    }
    let repo = HubRepo::new(settings, REPO, None).unwrap();
    for file in ["", "../escape", "/etc/passwd", "a//b"] {
        let err = repo.get(file).unwrap_err();
        assert!(matches!(err, HubError::InvalidFileName(_)), "{file}: {err}");
    }
}
