//! Finding dataset files on disk, and downloading them when they are absent.
//!
//! A dataset lives in a folder named after it (`mnist/`, `fashion-mnist/`, ...). The folder is
//! looked for, in order, under:
//!
//! 1. the data dir given with `--data-dir` or `STRATA_DATA_DIR` (the layout of `shared/datasets`);
//! 2. the `datasets/` folder of the Strata source tree (MNIST ships there);
//! 3. the download cache, `$STRATA_CACHE_DIR/datasets` (default `~/.cache/strata/datasets`).
//!
//! When none holds all the files, they are downloaded from the dataset's mirrors into the cache,
//! each to a temporary name first and renamed once complete (and, where the dataset publishes
//! one, its SHA-256 checked), with a progress bar. When that fails too (no network), the error
//! says where the files were looked for and where to put them.
//! `STRATA_DATASET_MIRROR` replaces the built-in mirror list (a base URL the file names are
//! appended to), which is how the tests serve files from 127.0.0.1.

use std::fs;
use std::path::{Path, PathBuf};

use crate::fsutil::temp_path;
use crate::transfer::{self, CONNECT_TIMEOUT, CopyError};

/// Environment variable naming the data dir.
pub const DATA_DIR_ENV: &str = "STRATA_DATA_DIR";
/// Environment variable naming Strata's cache root.
pub const CACHE_DIR_ENV: &str = "STRATA_CACHE_DIR";
/// Environment variable naming the source tree's `datasets/` folder.
pub const BUNDLED_ENV: &str = "STRATA_BUNDLED_DATASETS";
/// Environment variable overriding the download mirrors.
pub const MIRROR_ENV: &str = "STRATA_DATASET_MIRROR";

/// A dataset as files on disk and on the web.
#[derive(Debug, Clone)]
pub struct DatasetSpec {
    /// Folder name under a data dir, e.g. `mnist`.
    pub name: &'static str,
    /// Files the folder must hold.
    pub files: Vec<&'static str>,
    /// Base URLs that serve the files (file name appended), tried in order.
    pub mirrors: Vec<String>,
    /// Published SHA-256 digests (file name, lowercase hex), checked after each download; a file
    /// not listed (or an empty list) is not checked. Files found on disk are not checked.
    pub sha256: Vec<(&'static str, &'static str)>,
}

impl DatasetSpec {
    /// The published SHA-256 of `file`, if any.
    pub fn sha256_of(&self, file: &str) -> Option<&'static str> {
        self.sha256
            .iter()
            .find(|(name, _)| *name == file)
            .map(|(_, digest)| *digest)
    }
}

/// One download that failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The request failed: no connection, a timeout, or an HTTP error status.
    #[error("{url}: {reason}")]
    Request {
        /// The URL asked for.
        url: String,
        /// What went wrong, in ureq's words.
        reason: String,
    },
    /// The body stopped short of its announced length.
    #[error("{url}: incomplete download, {got} of {expected} bytes")]
    Incomplete {
        /// The URL asked for.
        url: String,
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// The file received is not the one published.
    #[error(
        "{url}: sha256 {got} does not match the published {expected} (a damaged or different file)"
    )]
    Checksum {
        /// The URL asked for.
        url: String,
        /// Digest of what was received.
        got: String,
        /// The published digest.
        expected: String,
    },
    /// The file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The dataset could not be found nor downloaded.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// Not on disk, and every download failed.
    #[error(
        "dataset '{name}' not found (looked in {looked}) and the download failed ({why}); put {files} in {hint}, or pass --data-dir DIR with a '{name}/' folder inside"
    )]
    NotFound {
        /// Dataset name.
        name: String,
        /// Folders searched, joined.
        looked: String,
        /// Why the download failed.
        why: String,
        /// The files needed, joined.
        files: String,
        /// Where we suggest putting them.
        hint: String,
    },
    /// The data dir given does not exist.
    #[error(
        "data dir {0} does not exist: pass --data-dir (or STRATA_DATA_DIR) pointing at the folder that holds the datasets"
    )]
    NoDataDir(PathBuf),
}

/// Strata's cache root: `$STRATA_CACHE_DIR`, else `~/.cache/strata`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache").join("strata")
}

/// The `datasets/` folder of the Strata source tree: `$STRATA_BUNDLED_DATASETS` (set by
/// `cargo xtask`), else that of the tree this crate was built from, if it still exists.
pub fn bundled_dir() -> Option<PathBuf> {
    let dir = std::env::var_os(BUNDLED_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets"));
    dir.is_dir().then_some(dir)
}

/// Where datasets are looked for and downloaded to.
#[derive(Debug, Clone)]
pub struct Locator {
    /// The data dir (`--data-dir` / `STRATA_DATA_DIR`), searched first.
    pub data_dir: Option<PathBuf>,
    /// The source tree's `datasets/`, searched second.
    pub bundled: Option<PathBuf>,
    /// The cache root; datasets are searched in, and downloaded to, `cache/datasets/NAME`.
    pub cache: PathBuf,
    /// A base URL that replaces every dataset's mirror list (`STRATA_DATASET_MIRROR`).
    pub mirror: Option<String>,
}

impl Locator {
    /// The locator a command uses: `data_dir` argument, else `STRATA_DATA_DIR`, then the
    /// bundled folder and the cache.
    pub fn from_env(data_dir: Option<&Path>) -> Self {
        let env = |name| std::env::var_os(name).filter(|v: &std::ffi::OsString| !v.is_empty());
        Self {
            data_dir: data_dir
                .map(Path::to_path_buf)
                .or_else(|| env(DATA_DIR_ENV).map(PathBuf::from)),
            bundled: bundled_dir(),
            cache: cache_root(),
            mirror: env(MIRROR_ENV).map(|m| m.to_string_lossy().into_owned()),
        }
    }

    /// Folders searched for `spec`, in order.
    pub fn search_path(&self, spec: &DatasetSpec) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        dirs.extend(self.data_dir.iter().map(|d| d.join(spec.name)));
        dirs.extend(self.bundled.iter().map(|d| d.join(spec.name)));
        dirs.push(self.cache.join("datasets").join(spec.name));
        dirs
    }

    /// Returns the folder holding every file of `spec`, downloading into the cache if needed.
    pub fn find_or_download(&self, spec: &DatasetSpec) -> Result<PathBuf, LocateError> {
        if let Some(d) = &self.data_dir
            && !d.is_dir()
        {
            return Err(LocateError::NoDataDir(d.clone()));
        }
        let looked = self.search_path(spec);
        if let Some(found) = looked
            .iter()
            .find(|dir| spec.files.iter().all(|f| dir.join(f).is_file()))
        {
            return Ok(found.clone());
        }
        let target = self.cache.join("datasets").join(spec.name);
        let mirrors = self
            .mirror
            .clone()
            .map_or_else(|| spec.mirrors.clone(), |m| vec![m]);
        download_all(spec, &mirrors, &target).map_err(|why| LocateError::NotFound {
            name: spec.name.to_string(),
            looked: looked
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            why,
            files: spec.files.join(", "),
            hint: looked[0].display().to_string(),
        })?;
        Ok(target)
    }
}

/// Downloads every missing file of `spec` into `target`, trying `mirrors` in order.
pub fn download_all(spec: &DatasetSpec, mirrors: &[String], target: &Path) -> Result<(), String> {
    fs::create_dir_all(target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    for file in &spec.files {
        let dest = target.join(file);
        if dest.is_file() {
            continue;
        }
        let mut errors = Vec::new();
        let ok = mirrors.iter().any(|base| {
            let url = format!("{}/{}", base.trim_end_matches('/'), file);
            match download(&url, &dest, spec.sha256_of(file)) {
                Ok(()) => true,
                Err(e) => {
                    errors.push(e.to_string());
                    false
                }
            }
        });
        if !ok {
            return Err(errors.join("; "));
        }
    }
    Ok(())
}

/// Downloads `url` to `dest` through a temporary file, with a progress bar on stderr. The file
/// is renamed into place only once complete and, when `sha256` is given, once its digest matches;
/// on any error nothing is left behind.
pub fn download(url: &str, dest: &Path, sha256: Option<&str>) -> Result<(), DownloadError> {
    let request_error = |reason: String| DownloadError::Request {
        url: url.to_string(),
        reason,
    };
    let agent = transfer::agent(CONNECT_TIMEOUT, 10, true);
    // The files are gzipped already: ask for them byte for byte, so Content-Length holds.
    let mut response = agent
        .get(url)
        .header("Accept-Encoding", "identity")
        .call()
        .map_err(|e| request_error(e.to_string()))?;
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let name = dest
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = temp_path(dest);
    let incomplete = |got| DownloadError::Incomplete {
        url: url.to_string(),
        got,
        expected: total.unwrap_or(0),
    };
    let mut body = response.body_mut().as_reader();
    let result = match transfer::copy_to_file(&mut body, &tmp, total, &name, true) {
        Err(CopyError::Read { bytes, source }) => Err(request_error(format!(
            "connection lost after {bytes} bytes: {source}"
        ))),
        Err(CopyError::Write(source)) => Err(DownloadError::Write {
            path: tmp.clone(),
            source,
        }),
        Ok(copied) if total.is_some_and(|t| t != copied.bytes) => Err(incomplete(copied.bytes)),
        Ok(copied) => match sha256 {
            Some(expected) if !copied.sha256.eq_ignore_ascii_case(expected) => {
                Err(DownloadError::Checksum {
                    url: url.to_string(),
                    got: copied.sha256,
                    expected: expected.to_string(),
                })
            }
            _ => fs::rename(&tmp, dest).map_err(|source| DownloadError::Write {
                path: dest.to_path_buf(),
                source,
            }),
        },
    };
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
