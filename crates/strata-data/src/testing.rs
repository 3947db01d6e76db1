//! Test support: a minimal HTTP/1.1 server on 127.0.0.1, so download code runs for real in tests
//! without the internet.
//!
//! - [`serve`] serves plain files under `/data/` (dataset mirrors);
//! - [`serve_hub`] serves model repositories the way the Hugging Face Hub does, for the
//!   [`hub`](crate::hub) module and for hf-hub's own client: `HEAD`/`GET
//!   /{repo_id}/resolve/{revision}/{file}` with `X-Repo-Commit`, `ETag`, and for large (LFS) files
//!   a `302` to `/cdn/{sha256}` carrying `X-Linked-Etag` and `X-Linked-Size`; byte ranges
//!   (`Range: bytes=a-b`, answered `206` with `Content-Range`); `GET
//!   /api/models/{repo_id}/revision/{revision}` (the repository's commit and file list); and the
//!   Hub's errors, a `404` whose `X-Error-Code` is `RepoNotFound`, `RevisionNotFound` or
//!   `EntryNotFound`.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// The paths requested from a test server, in order.
pub type RequestLog = Arc<Mutex<Vec<String>>>;

/// Serves `files` over HTTP/1.1 on an ephemeral loopback port; returns the base URL (ending in
/// `/data/`) and the list of paths requested. A file whose name starts with `short-` is announced
/// with a longer Content-Length than sent (a cut connection).
pub fn serve(files: HashMap<String, Vec<u8>>) -> (String, RequestLog) {
    let (origin, log) = spawn(move |request| {
        let name = request.path.trim_start_matches("/data/");
        match files.get(name) {
            Some(body) => {
                let mut response = Response::new(200, body.clone());
                if name.starts_with("short-") {
                    response.announced = Some(body.len() + 100);
                }
                response
            }
            None => Response::new(404, Vec::new()),
        }
    });
    (format!("{origin}/data/"), log)
}

/// How [`serve_hub`] spoils the download of a file (metadata requests stay correct).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Announce the whole length, send half of the bytes, close the connection.
    CloseEarly,
    /// A well-formed response that holds only half of the file (its Content-Length says so).
    ShortBody,
    /// The right number of bytes, but the first one is wrong.
    Corrupt,
}

/// A model repository served by [`serve_hub`] at one commit.
#[derive(Debug, Clone)]
pub struct HubFixture {
    /// `owner/name` or `name`.
    pub id: String,
    /// The commit every revision resolves to (40 hex digits).
    pub commit: String,
    /// Branch and tag names that resolve to `commit` (the commit itself always does).
    pub refs: Vec<String>,
    /// File name (may contain `/`) to content.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Files whose downloads are spoiled, and how.
    pub cuts: BTreeMap<String, Cut>,
}

impl HubFixture {
    /// A repository with branch `main`, holding `files`, at a commit derived from its id.
    pub fn new(id: &str, files: &[(&str, &[u8])]) -> Self {
        Self {
            id: id.to_string(),
            commit: sha256_hex(id.as_bytes())[..40].to_string(),
            refs: vec!["main".to_string()],
            files: files
                .iter()
                .map(|(name, bytes)| (name.to_string(), bytes.to_vec()))
                .collect(),
            cuts: BTreeMap::new(),
        }
    }

    /// Adds a branch or tag name.
    pub fn with_ref(mut self, name: &str) -> Self {
        self.refs.push(name.to_string());
        self
    }

    /// Spoils the download of `file`.
    pub fn with_cut(mut self, file: &str, cut: Cut) -> Self {
        self.cuts.insert(file.to_string(), cut);
        self
    }
}

/// Whether the Hub stores `file` with Git LFS (and so redirects its downloads to a CDN).
fn is_lfs(file: &str) -> bool {
    [
        ".safetensors",
        ".bin",
        ".pt",
        ".pth",
        ".onnx",
        ".gguf",
        ".h5",
        ".msgpack",
    ]
    .iter()
    .any(|ext| file.ends_with(ext))
}

/// The folder of the generated test fixtures `name` (`$STRATA_FIXTURES_DIR/NAME`, which
/// `cargo xtask test` fills from the scripts of `datasets/fixtures/`; else
/// `~/.cache/strata/fixtures/NAME`). Panics, saying how to make them, if `marker` is not in it.
pub fn fixtures_dir(name: &str, marker: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("STRATA_FIXTURES_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/strata/fixtures")
        })
        .join(name);
    assert!(
        dir.join(marker).is_file(),
        "{name} fixtures missing in {}: run `cargo xtask test` (it runs datasets/fixtures/make_{name}_fixtures.py)",
        dir.display()
    );
    dir
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Serves `repos` the way the Hugging Face Hub does (see the module docs) on an ephemeral
/// loopback port; returns the endpoint (`http://127.0.0.1:PORT`, for `HF_ENDPOINT`) and the list
/// of paths requested.
pub fn serve_hub(repos: Vec<HubFixture>) -> (String, RequestLog) {
    spawn(move |request| hub_answer(&repos, request))
}

fn hub_answer(repos: &[HubFixture], request: &Request) -> Response {
    let path = request.path.split('?').next().unwrap_or("");
    // The CDN that LFS downloads are redirected to.
    if let Some(sha) = path.strip_prefix("/cdn/") {
        for repo in repos {
            for (name, bytes) in &repo.files {
                if sha256_hex(bytes) == sha {
                    let cut = repo.cuts.get(name).copied();
                    return file_response(bytes, request, cut);
                }
            }
        }
        return Response::new(404, Vec::new());
    }
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let (id, revision) = match rest.split_once("/revision/") {
            Some((id, revision)) => (id, percent_decode(revision)),
            None => (rest, "main".to_string()),
        };
        let repo = match find_repo(repos, id, &revision) {
            Ok(repo) => repo,
            Err(error) => return error,
        };
        let info = serde_json::json!({
            "id": repo.id,
            "modelId": repo.id,
            "sha": repo.commit,
            "siblings": repo.files.keys().map(|f| serde_json::json!({"rfilename": f})).collect::<Vec<_>>(),
        });
        let mut response = Response::new(200, info.to_string().into_bytes());
        response.header("Content-Type", "application/json");
        return response;
    }
    let Some((id, rest)) = path.trim_start_matches('/').split_once("/resolve/") else {
        return hub_error(404, "RepoNotFound", "Repository not found");
    };
    let (revision, file) = rest.split_once('/').unwrap_or((rest, ""));
    let repo = match find_repo(repos, id, &percent_decode(revision)) {
        Ok(repo) => repo,
        Err(error) => return error,
    };
    let file = percent_decode(file);
    let Some(bytes) = repo.files.get(&file) else {
        return hub_error(404, "EntryNotFound", "Entry not found");
    };
    let sha = sha256_hex(bytes);
    if is_lfs(&file) {
        let mut response = Response::new(302, Vec::new());
        response.header("Location", &format!("{}/cdn/{sha}", request.origin));
        response.header("X-Repo-Commit", &repo.commit);
        response.header("X-Linked-Etag", &format!("\"{sha}\""));
        response.header("X-Linked-Size", &bytes.len().to_string());
        response.header("ETag", &format!("\"{}\"", &sha[..40]));
        return response;
    }
    let mut response = file_response(bytes, request, repo.cuts.get(&file).copied());
    response.header("X-Repo-Commit", &repo.commit);
    // The Hub's ETag of a regular file is its git blob id; any stable digest serves here.
    response.header("ETag", &format!("\"{}\"", &sha[..40]));
    response
}

/// The repository `id` at `revision`, or the Hub's error response.
fn find_repo<'a>(
    repos: &'a [HubFixture],
    id: &str,
    revision: &str,
) -> Result<&'a HubFixture, Response> {
    let repo = repos
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| hub_error(404, "RepoNotFound", "Repository not found"))?;
    if repo.commit != revision && !repo.refs.iter().any(|r| r == revision) {
        return Err(hub_error(404, "RevisionNotFound", "Invalid rev id"));
    }
    Ok(repo)
}

/// An error answered the Hub's way: status, `X-Error-Code`, `X-Error-Message`, a JSON body.
fn hub_error(status: u16, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(status, body.into_bytes());
    response.header("X-Error-Code", code);
    response.header("X-Error-Message", message);
    response.header("Content-Type", "application/json");
    response
}

/// `bytes` as a whole (200) or the range asked for (206). `cut` spoils a `GET` that reaches the
/// end of the file; `HEAD` and probes such as hf-hub's `bytes=0-0` are answered correctly.
fn file_response(bytes: &[u8], request: &Request, cut: Option<Cut>) -> Response {
    let len = bytes.len();
    let (mut response, end) = match request.range {
        Some((start, end)) if start < len.max(1) => {
            let end = end.map_or(len, |e| (e + 1).min(len));
            let start = start.min(end);
            let mut response = Response::new(206, bytes[start..end].to_vec());
            let last = end.max(1) - 1;
            response.header("Content-Range", &format!("bytes {start}-{last}/{len}"));
            (response, end)
        }
        Some(_) => {
            let mut response = Response::new(416, Vec::new());
            response.header("Content-Range", &format!("bytes */{len}"));
            return response;
        }
        None => (Response::new(200, bytes.to_vec()), len),
    };
    response.header("Accept-Ranges", "bytes");
    if end == len && request.method == "GET" {
        match cut {
            Some(Cut::CloseEarly) => {
                response.announced = Some(response.body.len());
                response.body.truncate(response.body.len() / 2);
            }
            Some(Cut::ShortBody) => {
                let half = response.body.len() / 2;
                response.body.truncate(half);
            }
            Some(Cut::Corrupt) => {
                if let Some(first) = response.body.first_mut() {
                    *first = !*first;
                }
            }
            None => {}
        }
    }
    response
}

/// Decodes `%XX` escapes (revisions such as `refs%2Fpr%2F1`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request as the handlers see it.
struct Request {
    /// `GET`, `HEAD`, ...
    method: String,
    /// The path and query.
    path: String,
    /// `Range: bytes=START-[END]`, END inclusive.
    range: Option<(usize, Option<usize>)>,
    /// `http://127.0.0.1:PORT`.
    origin: String,
}

/// A response to write.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The Content-Length to announce when it differs from the body's (a cut connection).
    announced: Option<usize>,
}

impl Response {
    fn new(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
            announced: None,
        }
    }

    fn header(&mut self, name: &str, value: &str) {
        self.headers.push((name.to_string(), value.to_string()));
    }
}

/// Listens on an ephemeral loopback port and answers each connection (one request, then close)
/// with `handler`, in a background thread; returns the origin and the request log.
fn spawn(handler: impl Fn(&Request) -> Response + Send + 'static) -> (String, RequestLog) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let origin = format!(
        "http://{}",
        listener.local_addr().expect("loopback address")
    );
    let log = RequestLog::default();
    let seen = log.clone();
    let server_origin = origin.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if let Some(request) = read_request(&stream, &server_origin) {
                seen.lock().expect("request log").push(request.path.clone());
                let response = handler(&request);
                write_response(stream, &request, &response);
            }
        }
    });
    (origin, log)
}

fn read_request(stream: &TcpStream, origin: &str) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    let mut words = first.split_whitespace();
    let method = words.next()?.to_string();
    let path = words.next().unwrap_or("/").to_string();
    let mut range = None;
    let mut line = String::new();
    while matches!(reader.read_line(&mut line), Ok(n) if n > 2) {
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("range")
            && let Some((start, end)) = value.trim().trim_start_matches("bytes=").split_once('-')
            && let Ok(start) = start.parse()
        {
            range = Some((start, end.trim().parse().ok()));
        }
        line.clear();
    }
    Some(Request {
        method,
        path,
        range,
        origin: origin.to_string(),
    })
}

fn write_response(mut stream: TcpStream, request: &Request, response: &Response) {
    let reason = match response.status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", response.status);
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let length = response.announced.unwrap_or(response.body.len());
    head.push_str(&format!(
        "Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ));
    let _ = stream.write_all(head.as_bytes());
    if request.method != "HEAD" {
        let _ = stream.write_all(&response.body);
    }
    let _ = stream.flush();
}
