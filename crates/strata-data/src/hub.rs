//! Files of Hugging Face Hub model repositories, kept in the standard Hugging Face cache.
//!
//! ```no_run
//! use strata_data::hub::{HubRepo, HubSettings};
//!
//! let repo = HubRepo::new(HubSettings::from_env(), "openai-community/gpt2", None)?;
//! let weights = repo.get("model.safetensors")?; // .../models--openai-community--gpt2/snapshots/<commit>/model.safetensors
//! # Ok::<(), strata_data::hub::HubError>(())
//! ```
//!
//! The settings follow the Hugging Face tools ([`HubSettings::from_env`]): the cache is
//! `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`, shared with Python's
//! `huggingface_hub` and the `hf-hub` crate (same `models--owner--name/{blobs,refs,snapshots}`
//! layout, through hf-hub's cache types); `HF_ENDPOINT` replaces `https://huggingface.co`;
//! `HF_HUB_OFFLINE=1` consults the cache only; `HF_TOKEN` (else `$HF_HOME/token`) opens private
//! and gated repositories. A revision is a branch, a tag or a commit (default `main`).
//!
//! A file already in the cache for the revision is used without asking the network, as
//! `hf-hub`'s `get` does. Otherwise it is fetched the way `huggingface_hub` does: a `HEAD` of
//! `{endpoint}/{repo}/resolve/{revision}/{file}` gives the commit (`X-Repo-Commit`), the blob id
//! (`X-Linked-Etag` or `ETag`) and the size (`X-Linked-Size` or `Content-Length`); the `GET`
//! (following the redirect to the CDN for large files) is written to a temporary file next to
//! the blobs, checked for size (and, for LFS files, whose blob id is their SHA-256, for digest),
//! renamed to `blobs/<etag>` and linked from `snapshots/<commit>/<file>`; `refs/<revision>`
//! records the commit. hf-hub's own sync client is not used for the HTTP part: it has no
//! timeouts (a silent server hangs it), does not check the size of what it received, and turns
//! the Hub's error answers into bare status codes, where `X-Error-Code` says whether the
//! repository, the revision or the file is missing.
//!
//! [`Source`] resolves the `PATH_OR_HUB_ID` arguments of the command line.

// `HubError` carries what its one-line messages name (repository, revision, file, cache, endpoint,
// cause): 144 bytes at most, on a path taken once per file. Boxing it would buy nothing.
#![allow(clippy::result_large_err)]

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hf_hub::{Cache, Repo, RepoType};

use crate::transfer::{self, CONNECT_TIMEOUT, CopyError};

/// The Hugging Face Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// Environment variable replacing [`DEFAULT_ENDPOINT`] (a mirror, or a test server).
pub const ENDPOINT_ENV: &str = "HF_ENDPOINT";
/// Environment variable naming the Hugging Face home (`~/.cache/huggingface` by default).
pub const HOME_ENV: &str = "HF_HOME";
/// Environment variable naming the Hub cache (`$HF_HOME/hub` by default).
pub const CACHE_ENV: &str = "HF_HUB_CACHE";
/// Environment variable that, set to `1` (or `true`, `yes`, `on`), keeps the Hub off the network.
pub const OFFLINE_ENV: &str = "HF_HUB_OFFLINE";
/// Environment variable holding an access token.
pub const TOKEN_ENV: &str = "HF_TOKEN";
/// Environment variable that, set to `1`, hides the progress bars.
pub const NO_PROGRESS_ENV: &str = "HF_HUB_DISABLE_PROGRESS_BARS";

/// Where the Hub is and how it is reached. Tests build one by hand ([`HubSettings::new`]);
/// commands take [`HubSettings::from_env`].
#[derive(Clone)]
pub struct HubSettings {
    /// Base URL of the Hub, without a trailing `/`.
    pub endpoint: String,
    /// The Hub cache folder (the one holding `models--owner--name/`).
    pub cache_dir: PathBuf,
    /// Consult the cache only, never the network.
    pub offline: bool,
    /// Access token sent to the endpoint (`Authorization: Bearer`), not to the CDN it redirects to.
    pub token: Option<String>,
    /// How long to wait for a connection (the response headers get 30 s, a stalled body 60 s).
    pub connect_timeout: Duration,
    /// Show a progress bar on stderr while downloading.
    pub progress: bool,
}

impl fmt::Debug for HubSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSettings")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("offline", &self.offline)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("progress", &self.progress)
            .finish()
    }
}

impl HubSettings {
    /// Settings for `endpoint` and `cache_dir`: online, no token, a 10 s connect timeout, no
    /// progress bar.
    pub fn new(endpoint: &str, cache_dir: &Path) -> Self {
        Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            cache_dir: cache_dir.to_path_buf(),
            offline: false,
            token: None,
            connect_timeout: CONNECT_TIMEOUT,
            progress: false,
        }
    }

    /// The settings of the Hugging Face tools: `HF_ENDPOINT`, `HF_HUB_CACHE` / `HF_HOME`,
    /// `HF_HUB_OFFLINE`, `HF_TOKEN` (else the token file `$HF_HOME/token`), and a progress bar
    /// unless `HF_HUB_DISABLE_PROGRESS_BARS` is set.
    pub fn from_env() -> Self {
        let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let home = var(HOME_ENV).map_or_else(
            || {
                std::env::var_os("HOME")
                    .map_or_else(std::env::temp_dir, PathBuf::from)
                    .join(".cache")
                    .join("huggingface")
            },
            PathBuf::from,
        );
        let cache_dir = var(CACHE_ENV).map_or_else(|| home.join("hub"), PathBuf::from);
        let token = var(TOKEN_ENV).or_else(|| {
            let token = fs::read_to_string(home.join("token")).ok()?;
            Some(token.trim().to_string()).filter(|t| !t.is_empty())
        });
        let endpoint = var(ENDPOINT_ENV).unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        Self {
            offline: var(OFFLINE_ENV).is_some_and(|v| is_true(&v)),
            token,
            progress: !var(NO_PROGRESS_ENV).is_some_and(|v| is_true(&v)),
            ..Self::new(&endpoint, &cache_dir)
        }
    }
}

/// How `huggingface_hub` reads a boolean environment variable.
fn is_true(value: &str) -> bool {
    ["1", "ON", "YES", "TRUE"].contains(&value.trim().to_ascii_uppercase().as_str())
}

/// Why a file could not be had from the Hub. Each message is one line that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The id is not of the form `owner/name` or `name`.
    #[error(
        "'{0}' is not a Hugging Face repository id: expected 'owner/name' or 'name' (letters, digits, '-', '_', '.')"
    )]
    InvalidId(String),
    /// The revision is empty or would escape the cache folder.
    #[error("'{0}' is not a revision: pass a branch, a tag or a commit hash")]
    InvalidRevision(String),
    /// The file name is empty, absolute or goes up a folder.
    #[error("'{0}' is not a file name inside a repository")]
    InvalidFileName(String),
    /// The argument is neither an existing path nor a Hub id.
    #[error(
        "'{0}' is neither an existing file or folder nor a Hugging Face repository id (owner/name)"
    )]
    NotPathNorId(String),
    /// A local model folder lacks a file.
    #[error("{} has no {file}: pass a folder that holds it, or a Hugging Face repository id", dir.display())]
    LocalFileMissing {
        /// The folder.
        dir: PathBuf,
        /// The file asked for.
        file: String,
    },
    /// The repository does not exist (or is private and no token opens it).
    #[error(
        "Hugging Face repository '{repo}' not found at {endpoint} (a private one needs HF_TOKEN); check the id, or pass a local file or folder"
    )]
    RepoNotFound {
        /// The repository id.
        repo: String,
        /// The endpoint asked.
        endpoint: String,
    },
    /// The branch, tag or commit does not exist in the repository.
    #[error(
        "revision '{revision}' does not exist in Hugging Face repository '{repo}': pass a branch, tag or commit that it has (--revision)"
    )]
    RevisionNotFound {
        /// The repository id.
        repo: String,
        /// The revision asked for.
        revision: String,
    },
    /// The repository has no such file at that revision.
    #[error(
        "Hugging Face repository '{repo}' has no file '{file}' at revision '{revision}'; check the file name and the revision"
    )]
    FileNotFound {
        /// The repository id.
        repo: String,
        /// The revision asked for.
        revision: String,
        /// The file asked for.
        file: String,
    },
    /// The repository is gated: its terms must be accepted on the Hub first.
    #[error(
        "Hugging Face repository '{repo}' is gated: accept its terms on the Hub, then set HF_TOKEN to a token of that account"
    )]
    Gated {
        /// The repository id.
        repo: String,
    },
    /// The endpoint refused access.
    #[error(
        "access to Hugging Face repository '{repo}' was refused (HTTP {status}): it is private, gated or missing; set HF_TOKEN to a token that may read it"
    )]
    AccessDenied {
        /// The repository id.
        repo: String,
        /// 401 or 403.
        status: u16,
    },
    /// Any other HTTP error.
    #[error("{url} answered HTTP {status}; check HF_ENDPOINT, or try again later")]
    Status {
        /// The URL asked for.
        url: String,
        /// The status code.
        status: u16,
    },
    /// `HF_HUB_OFFLINE` is set and the file is not in the cache.
    #[error(
        "'{file}' of Hugging Face repository '{repo}' (revision {revision}) is not in the Hugging Face cache at {} and HF_HUB_OFFLINE is set; pass a local file or folder instead, or fetch the files first (with HF_HUB_OFFLINE unset)",
        cache.display()
    )]
    Offline {
        /// The repository id.
        repo: String,
        /// The revision asked for.
        revision: String,
        /// The file asked for.
        file: String,
        /// The cache folder consulted.
        cache: PathBuf,
    },
    /// The file is not in the cache and the endpoint cannot be reached.
    #[error(
        "'{file}' of Hugging Face repository '{repo}' (revision {revision}) is not in the Hugging Face cache at {} and the Hub at {endpoint} cannot be reached ({why}); pass a local file or folder instead, or fetch the files first where the Hub is reachable (HF_ENDPOINT names a mirror)",
        cache.display()
    )]
    Unreachable {
        /// The repository id.
        repo: String,
        /// The revision asked for.
        revision: String,
        /// The file asked for.
        file: String,
        /// The cache folder consulted.
        cache: PathBuf,
        /// The endpoint tried.
        endpoint: String,
        /// What went wrong, in ureq's words.
        why: String,
    },
    /// The download stopped short (or ran long) of the announced size.
    #[error(
        "download of '{file}' from Hugging Face repository '{repo}' is incomplete: {got} of {expected} bytes ({why}); nothing was kept, run again to retry"
    )]
    Incomplete {
        /// The repository id.
        repo: String,
        /// The file.
        file: String,
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        expected: u64,
        /// Why it stopped.
        why: String,
    },
    /// The bytes received are not the file the Hub announced.
    #[error(
        "download of '{file}' from Hugging Face repository '{repo}' is corrupt: sha256 {got}, expected {expected}; nothing was kept, run again to retry"
    )]
    Corrupt {
        /// The repository id.
        repo: String,
        /// The file.
        file: String,
        /// Digest of what was received.
        got: String,
        /// Digest announced by the Hub.
        expected: String,
    },
    /// The endpoint answered, but not like the Hub.
    #[error("{url} did not answer like the Hugging Face Hub ({why}); check HF_ENDPOINT")]
    BadResponse {
        /// The URL asked for.
        url: String,
        /// What was wrong with the answer.
        why: String,
    },
    /// The cache could not be written.
    #[error("cannot write {} in the Hugging Face cache: {source}", path.display())]
    Io {
        /// The path written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Whether `id` has the form of a Hub repository id: `name` or `owner/name`, each part made of
/// letters, digits, `-`, `_` and `.`, not starting or ending with `-` or `.`, without `--` or `..`.
pub fn is_hub_id(id: &str) -> bool {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !p.starts_with(['-', '.'])
            && !p.ends_with(['-', '.'])
            && !p.contains("--")
            && !p.contains("..")
    };
    match id.split_once('/') {
        Some((owner, name)) => part_ok(owner) && part_ok(name),
        None => part_ok(id),
    }
}

/// Whether `revision` is a full commit hash.
fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `path` is a `/`-separated relative path that stays inside its folder (file names in
/// a repository, revisions under `refs/`).
fn stays_inside(path: &str) -> bool {
    !path.trim().is_empty()
        && !path.contains('\\')
        && path
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
}

/// Checks that `file` is a relative path inside a repository.
fn check_file_name(file: &str) -> Result<(), HubError> {
    if stays_inside(file) {
        Ok(())
    } else {
        Err(HubError::InvalidFileName(file.to_string()))
    }
}

/// Percent-encodes `s` for a URL path, keeping unreserved characters (and `/` if `keep_slash`).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What the Hub says about a file before it is downloaded.
struct Metadata {
    /// The commit the revision resolves to.
    commit: String,
    /// The blob id, the file's name under `blobs/`.
    etag: String,
    /// The file's size in bytes.
    size: u64,
    /// The SHA-256 the file must have (LFS files, whose blob id is their digest).
    sha256: Option<String>,
}

/// A model repository on the Hub at one revision, read through the cache.
#[derive(Debug, Clone)]
pub struct HubRepo {
    settings: HubSettings,
    id: String,
    revision: String,
}

impl HubRepo {
    /// The repository `id` (`owner/name` or `name`) at `revision` (default `main`).
    pub fn new(settings: HubSettings, id: &str, revision: Option<&str>) -> Result<Self, HubError> {
        if !is_hub_id(id) {
            return Err(HubError::InvalidId(id.to_string()));
        }
        let revision = revision.unwrap_or("main");
        if !stays_inside(revision) {
            return Err(HubError::InvalidRevision(revision.to_string()));
        }
        Ok(Self {
            settings,
            id: id.to_string(),
            revision: revision.to_string(),
        })
    }

    /// The repository id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The branch, tag or commit asked for.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// The settings it was made with.
    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    /// The repository's folder in the cache, `models--owner--name`.
    pub fn cache_dir(&self) -> PathBuf {
        self.settings.cache_dir.join(self.hf_repo().folder_name())
    }

    /// The URL `file` is downloaded from.
    pub fn url(&self, file: &str) -> String {
        format!(
            "{}/{}/resolve/{}/{}",
            self.settings.endpoint,
            self.id,
            encode(&self.revision, false),
            encode(file, true)
        )
    }

    fn hf_repo(&self) -> Repo {
        Repo::with_revision(self.id.clone(), RepoType::Model, self.revision.clone())
    }

    /// The cached copy of `file` at this revision, if there is one; never touches the network.
    pub fn cached(&self, file: &str) -> Option<PathBuf> {
        check_file_name(file).ok()?;
        let cache = Cache::new(self.settings.cache_dir.clone()).repo(self.hf_repo());
        cache.get(file).or_else(|| {
            // A commit needs no ref: its snapshot is named after it.
            let path = cache.pointer_path(&self.revision).join(file);
            (is_commit(&self.revision) && path.is_file()).then_some(path)
        })
    }

    /// The local path of `file`: the cached copy, else downloaded into the cache (unless
    /// offline). The path is `<cache>/models--owner--name/snapshots/<commit>/<file>`.
    pub fn get(&self, file: &str) -> Result<PathBuf, HubError> {
        check_file_name(file)?;
        if let Some(path) = self.cached(file) {
            return Ok(path);
        }
        if self.settings.offline {
            return Err(HubError::Offline {
                repo: self.id.clone(),
                revision: self.revision.clone(),
                file: file.to_string(),
                cache: self.settings.cache_dir.clone(),
            });
        }
        self.download(file)
    }

    /// [`get`](Self::get) for each of `files`, in order.
    pub fn get_all(&self, files: &[&str]) -> Result<Vec<PathBuf>, HubError> {
        files.iter().map(|file| self.get(file)).collect()
    }

    fn download(&self, file: &str) -> Result<PathBuf, HubError> {
        let url = self.url(file);
        let meta = self.metadata(&url, file)?;
        let dir = self.cache_dir();
        let blobs = dir.join("blobs");
        let blob = blobs.join(&meta.etag);
        if !blob.is_file() {
            fs::create_dir_all(&blobs).map_err(|source| HubError::Io {
                path: blobs.clone(),
                source,
            })?;
            self.download_blob(&url, file, &meta, &blob)?;
        }
        let pointer = dir.join("snapshots").join(&meta.commit).join(file);
        link(&blob, &pointer, file.matches('/').count())?;
        Cache::new(self.settings.cache_dir.clone())
            .repo(self.hf_repo())
            .create_ref(&meta.commit)
            .map_err(|source| HubError::Io {
                path: dir.join("refs").join(&self.revision),
                source,
            })?;
        Ok(pointer)
    }

    /// A request with the headers every Hub request carries.
    fn request(
        &self,
        agent: &ureq::Agent,
        method: &str,
        url: &str,
    ) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let request = if method == "HEAD" {
            agent.head(url)
        } else {
            agent.get(url)
        };
        // Byte for byte, so Content-Length is the file's size.
        let request = request.header("Accept-Encoding", "identity");
        match &self.settings.token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    /// The `HEAD` of `url`, following relative redirects (renamed repositories) but not the
    /// redirect of large files to the CDN, whose headers describe the file.
    fn metadata(&self, url: &str, file: &str) -> Result<Metadata, HubError> {
        let agent = transfer::agent(self.settings.connect_timeout, 0, false);
        let mut url = url.to_string();
        for _ in 0..5 {
            let response = self
                .request(&agent, "HEAD", &url)
                .call()
                .map_err(|e| self.unreachable(file, &e))?;
            let status = response.status().as_u16();
            if status >= 400 {
                return Err(self.status_error(file, &url, &response));
            }
            let location = header(&response, "location");
            match location {
                Some(location) if status >= 300 && location.starts_with('/') => {
                    url = format!("{}{location}", origin(&url));
                }
                _ => return self.parse_metadata(&url, &response),
            }
        }
        Err(HubError::BadResponse {
            url,
            why: "too many redirects".into(),
        })
    }

    fn parse_metadata(
        &self,
        url: &str,
        response: &ureq::http::Response<ureq::Body>,
    ) -> Result<Metadata, HubError> {
        let bad = |why: &str| HubError::BadResponse {
            url: url.to_string(),
            why: why.to_string(),
        };
        let commit = header(response, "x-repo-commit").ok_or_else(|| bad("no X-Repo-Commit"))?;
        if !is_commit(&commit) {
            return Err(bad("X-Repo-Commit is not a commit hash"));
        }
        let linked = header(response, "x-linked-etag");
        let lfs = linked.is_some();
        let etag = linked
            .or_else(|| header(response, "etag"))
            .ok_or_else(|| bad("no ETag"))?;
        let etag = etag.trim_start_matches("W/").trim_matches('"').to_string();
        if etag.is_empty() || !etag.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad("ETag is not a blob id"));
        }
        let size = header(response, "x-linked-size")
            .or_else(|| header(response, "content-length"))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| bad("no file size"))?;
        let sha256 = (lfs && etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| etag.to_ascii_lowercase());
        Ok(Metadata {
            commit: commit.to_ascii_lowercase(),
            etag,
            size,
            sha256,
        })
    }

    /// Downloads `url` into `blob` through a temporary file in the same folder, checking its
    /// size and digest; leaves nothing behind on error.
    fn download_blob(
        &self,
        url: &str,
        file: &str,
        meta: &Metadata,
        blob: &Path,
    ) -> Result<(), HubError> {
        let agent = transfer::agent(self.settings.connect_timeout, 10, false);
        let mut response = self
            .request(&agent, "GET", url)
            .call()
            .map_err(|e| self.unreachable(file, &e))?;
        if response.status().as_u16() >= 400 {
            return Err(self.status_error(file, url, &response));
        }
        let tmp = blob.with_file_name(format!("{}.{}.incomplete", meta.etag, std::process::id()));
        let incomplete = |got, why: String| HubError::Incomplete {
            repo: self.id.clone(),
            file: file.to_string(),
            got,
            expected: meta.size,
            why,
        };
        let mut body = response.body_mut().as_reader();
        let copied = transfer::copy_to_file(
            &mut body,
            &tmp,
            Some(meta.size),
            file,
            self.settings.progress,
        );
        let result = match copied {
            Err(CopyError::Read { bytes, source }) => Err(incomplete(bytes, source.to_string())),
            Err(CopyError::Write(source)) => Err(HubError::Io {
                path: tmp.clone(),
                source,
            }),
            Ok(c) if c.bytes != meta.size => Err(incomplete(
                c.bytes,
                "the server sent another size than the Hub announced".into(),
            )),
            Ok(c) if meta.sha256.as_ref().is_some_and(|s| *s != c.sha256) => {
                Err(HubError::Corrupt {
                    repo: self.id.clone(),
                    file: file.to_string(),
                    got: c.sha256,
                    expected: meta.sha256.clone().unwrap_or_default(),
                })
            }
            Ok(_) => fs::rename(&tmp, blob).map_err(|source| HubError::Io {
                path: blob.to_path_buf(),
                source,
            }),
        };
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn unreachable(&self, file: &str, error: &ureq::Error) -> HubError {
        HubError::Unreachable {
            repo: self.id.clone(),
            revision: self.revision.clone(),
            file: file.to_string(),
            cache: self.settings.cache_dir.clone(),
            endpoint: self.settings.endpoint.clone(),
            why: error.to_string(),
        }
    }

    /// The error an HTTP error answer stands for: the Hub's `X-Error-Code` says what is missing.
    fn status_error(
        &self,
        file: &str,
        url: &str,
        response: &ureq::http::Response<ureq::Body>,
    ) -> HubError {
        let status = response.status().as_u16();
        let repo = self.id.clone();
        match header(response, "x-error-code").as_deref() {
            Some("RepoNotFound") => HubError::RepoNotFound {
                repo,
                endpoint: self.settings.endpoint.clone(),
            },
            Some("RevisionNotFound") => HubError::RevisionNotFound {
                repo,
                revision: self.revision.clone(),
            },
            Some("EntryNotFound") => HubError::FileNotFound {
                repo,
                revision: self.revision.clone(),
                file: file.to_string(),
            },
            Some("GatedRepo") => HubError::Gated { repo },
            _ if status == 401 || status == 403 => HubError::AccessDenied { repo, status },
            _ => HubError::Status {
                url: url.to_string(),
                status,
            },
        }
    }
}

/// A response header as a string.
fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    let value = response.headers().get(name)?.to_str().ok()?;
    Some(value.trim().to_string())
}

/// `scheme://host[:port]` of `url`.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// Makes `pointer` (in `snapshots/<commit>/`, `depth` folders below it) lead to `blob`: a
/// relative symbolic link as the Hugging Face tools make, or a copy where there are none.
fn link(blob: &Path, pointer: &Path, depth: usize) -> Result<(), HubError> {
    if pointer.is_file() {
        return Ok(());
    }
    let io = |source| HubError::Io {
        path: pointer.to_path_buf(),
        source,
    };
    let parent = pointer.parent().expect("a snapshot file has a folder");
    fs::create_dir_all(parent).map_err(io)?;
    // A dangling link left by a removed blob.
    let _ = fs::remove_file(pointer);
    #[cfg(unix)]
    {
        let mut target = PathBuf::new();
        for _ in 0..depth + 2 {
            target.push("..");
        }
        target.push("blobs");
        target.push(blob.file_name().expect("a blob has a name"));
        match std::os::unix::fs::symlink(target, pointer) {
            // Another process linked it first.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && pointer.is_file() => Ok(()),
            result => result.map_err(io),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = depth;
        fs::copy(blob, pointer).map(|_| ()).map_err(io)
    }
}

/// Fetches `files` of the Hub repository `repo_id` at `revision` (default `main`) into the cache
/// and returns their local paths, in order.
pub fn fetch(
    settings: &HubSettings,
    repo_id: &str,
    revision: Option<&str>,
    files: &[&str],
) -> Result<Vec<PathBuf>, HubError> {
    HubRepo::new(settings.clone(), repo_id, revision)?.get_all(files)
}

/// Where a model's files come from: a `PATH_OR_HUB_ID` argument, resolved.
#[derive(Debug, Clone)]
pub enum Source {
    /// An existing local file or folder, used as is.
    Local(PathBuf),
    /// A Hub repository, read through the cache.
    Hub(HubRepo),
}

impl Source {
    /// An existing local file or folder is used as is (`revision` does not apply to it);
    /// anything else must be a Hub id (`owner/name` or `name`), read at `revision`.
    pub fn resolve(
        arg: &str,
        revision: Option<&str>,
        settings: &HubSettings,
    ) -> Result<Self, HubError> {
        let path = Path::new(arg);
        if path.exists() {
            return Ok(Self::Local(path.to_path_buf()));
        }
        if !is_hub_id(arg) {
            return Err(HubError::NotPathNorId(arg.to_string()));
        }
        Ok(Self::Hub(HubRepo::new(settings.clone(), arg, revision)?))
    }

    /// The local path of `file`: in a local folder, `folder/file`; beside a local file, the file
    /// itself if it has that name, else its sibling of that name; in a Hub repository, the cached
    /// (or downloaded) copy.
    pub fn file(&self, file: &str) -> Result<PathBuf, HubError> {
        match self {
            Self::Hub(repo) => repo.get(file),
            Self::Local(path) => {
                check_file_name(file)?;
                if path.is_file() && path.file_name().is_some_and(|n| n == file) {
                    return Ok(path.clone());
                }
                let dir = if path.is_dir() {
                    path.as_path()
                } else {
                    path.parent()
                        .filter(|p| !p.as_os_str().is_empty())
                        .unwrap_or(Path::new("."))
                };
                let found = dir.join(file);
                if found.is_file() {
                    Ok(found)
                } else {
                    Err(HubError::LocalFileMissing {
                        dir: dir.to_path_buf(),
                        file: file.to_string(),
                    })
                }
            }
        }
    }
}
