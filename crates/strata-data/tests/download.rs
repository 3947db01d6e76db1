//! The dataset download path against a real HTTP server on 127.0.0.1.

use std::collections::HashMap;
use std::path::PathBuf;

use strata_data::datasets::{DatasetSpec, Locator};
use strata_data::testing::{serve, sha256_hex};

fn locator(cache: PathBuf, data_dir: Option<PathBuf>, mirror: &str) -> Locator {
    Locator {
        data_dir,
        bundled: None,
        cache,
        mirror: Some(mirror.to_string()),
    }
}

fn spec(files: &[&'static str]) -> DatasetSpec {
    DatasetSpec {
        name: "toy",
        files: files.to_vec(),
        mirrors: vec!["http://127.0.0.1:9/unused/".into()],
        sha256: Vec::new(),
    }
}

/// The names in `dir`.
fn names_in(dir: &std::path::Path) -> Vec<std::ffi::OsString> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    names
}

/// The error of looking up a one-file dataset that cannot be found.
fn error_for(loc: &Locator) -> String {
    loc.find_or_download(&spec(&["a.bin"]))
        .unwrap_err()
        .to_string()
}

#[test]
fn downloads_missing_files_into_the_cache_once() {
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (base, seen) = serve(HashMap::from([
        ("a.bin".to_string(), payload.clone()),
        ("b.txt".to_string(), b"hello".to_vec()),
    ]));
    let cache = tempfile::tempdir().unwrap();
    let loc = locator(cache.path().to_path_buf(), None, &base);
    let dir = loc.find_or_download(&spec(&["a.bin", "b.txt"])).unwrap();
    assert_eq!(dir, cache.path().join("datasets/toy"));
    assert_eq!(std::fs::read(dir.join("a.bin")).unwrap(), payload);
    assert_eq!(std::fs::read(dir.join("b.txt")).unwrap(), b"hello");
    // Found on disk the second time: no new request.
    let before = seen.lock().unwrap().len();
    assert_eq!(
        loc.find_or_download(&spec(&["a.bin", "b.txt"])).unwrap(),
        dir
    );
    assert_eq!(seen.lock().unwrap().len(), before);
    // Nothing half-written remains.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn data_dir_is_searched_before_downloading() {
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data.path().join("toy")).unwrap();
    std::fs::write(data.path().join("toy/a.bin"), b"local").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let loc = locator(
        cache.path().to_path_buf(),
        Some(data.path().to_path_buf()),
        "http://127.0.0.1:9/",
    );
    assert_eq!(
        loc.find_or_download(&spec(&["a.bin"])).unwrap(),
        data.path().join("toy")
    );
}

#[test]
fn missing_file_on_the_server_is_a_clear_error_and_leaves_nothing() {
    let (base, _) = serve(HashMap::from([("a.bin".to_string(), b"x".to_vec())]));
    let cache = tempfile::tempdir().unwrap();
    let loc = locator(cache.path().to_path_buf(), None, &base);
    let err = loc
        .find_or_download(&spec(&["a.bin", "gone.bin"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("dataset 'toy' not found"), "{err}");
    assert!(err.contains("404"), "{err}");
    assert!(err.contains("--data-dir"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(!cache.path().join("datasets/toy/gone.bin").exists());
    let left: Vec<_> = std::fs::read_dir(cache.path().join("datasets/toy"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("a.bin")]);
}

#[test]
fn cut_download_is_rejected() {
    let (base, _) = serve(HashMap::from([(
        "short-a.bin".to_string(),
        vec![7u8; 1000],
    )]));
    let cache = tempfile::tempdir().unwrap();
    let loc = locator(cache.path().to_path_buf(), None, &base);
    let err = loc
        .find_or_download(&spec(&["short-a.bin"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("short-a.bin"), "{err}");
    let dir = cache.path().join("datasets/toy");
    assert!(!dir.join("short-a.bin").exists());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn no_server_and_no_files_says_where_to_put_them() {
    let cache = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let loc = locator(
        cache.path().to_path_buf(),
        Some(data.path().to_path_buf()),
        "http://127.0.0.1:9/",
    );
    let err = error_for(&loc);
    assert!(
        err.contains(&data.path().join("toy").display().to_string()),
        "{err}"
    );
}

#[test]
fn nonexistent_data_dir_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let loc = locator(
        cache.path().to_path_buf(),
        Some("/nonexistent/strata-data".into()),
        "http://127.0.0.1:9/",
    );
    let err = error_for(&loc);
    assert!(
        err.contains("data dir /nonexistent/strata-data does not exist"),
        "{err}"
    );
}

#[test]
fn published_checksum_is_verified() {
    let good = b"the published bytes".to_vec();
    let (base, _) = serve(HashMap::from([
        ("a.bin".to_string(), good.clone()),
        ("b.bin".to_string(), b"tampered".to_vec()),
    ]));
    // sha256 of "the published bytes".
    let digest = "20139b7f2cbb8718eeaa22d38745d005a642545d21cc47fa49475c42d72e044e";
    assert_eq!(sha256_hex(&good), digest);
    let cache = tempfile::tempdir().unwrap();
    let loc = locator(cache.path().to_path_buf(), None, &base);
    let mut ok = spec(&["a.bin"]);
    ok.sha256 = vec![("a.bin", digest)];
    let dir = loc.find_or_download(&ok).unwrap();
    assert_eq!(std::fs::read(dir.join("a.bin")).unwrap(), good);

    // A file that does not match its published digest is refused and not kept.
    let mut bad = spec(&["b.bin"]);
    bad.sha256 = vec![("b.bin", digest)];
    let err = loc.find_or_download(&bad).unwrap_err().to_string();
    assert!(err.contains("b.bin"), "{err}");
    assert!(
        err.contains(&format!("does not match the published {digest}")),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
    assert_eq!(names_in(&dir), vec![std::ffi::OsString::from("a.bin")]);
}
