//! HTTP plumbing shared by dataset downloads and the Hub: an agent that never waits forever, and
//! a body copy with a progress bar and a running SHA-256.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

/// How long to wait for a TCP connection, unless told otherwise.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the response headers once the request is sent.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a download may go without receiving a byte before it is given up.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A ureq agent with timeouts (`connect` to look the host up and to connect, 30 s for the
/// response headers, 60 s of silence in a body) that follows up to `max_redirects` redirects. With `status_as_error` false,
/// 4xx and 5xx responses come back as responses, so their headers can be read.
pub(crate) fn agent(connect: Duration, max_redirects: u32, status_as_error: bool) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_resolve(Some(connect))
        .timeout_connect(Some(connect))
        .timeout_recv_response(Some(RESPONSE_TIMEOUT))
        .timeout_per_read(Some(STALL_TIMEOUT))
        .max_redirects(max_redirects)
        // An access token follows a redirect within its own (https) host only, never to a CDN.
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
        .http_status_as_error(status_as_error)
        .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// A body copied into a file.
pub(crate) struct Copied {
    /// Bytes written.
    pub bytes: u64,
    /// Their SHA-256, lowercase hex.
    pub sha256: String,
}

/// Why a body copy failed.
pub(crate) enum CopyError {
    /// The connection failed (or stalled) after `bytes` bytes.
    Read { bytes: u64, source: std::io::Error },
    /// The file could not be written.
    Write(std::io::Error),
}

/// Streams `body` into a new file `tmp` and syncs it, hashing the bytes as they pass, with a
/// progress bar on stderr (`total` bytes expected, if known) when `progress` is set.
pub(crate) fn copy_to_file(
    body: &mut dyn Read,
    tmp: &Path,
    total: Option<u64>,
    label: &str,
    progress: bool,
) -> Result<Copied, CopyError> {
    let bar = if progress {
        total.map_or_else(ProgressBar::new_spinner, ProgressBar::new)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(format!("downloading {label}"));
    let result = (|| {
        let mut out = fs::File::create(tmp).map_err(CopyError::Write)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut bytes = 0u64;
        loop {
            let n = body
                .read(&mut buf)
                .map_err(|source| CopyError::Read { bytes, source })?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(CopyError::Write)?;
            hasher.update(&buf[..n]);
            bytes += n as u64;
            bar.set_position(bytes);
        }
        out.sync_all().map_err(CopyError::Write)?;
        Ok(Copied {
            bytes,
            sha256: format!("{:x}", hasher.finalize()),
        })
    })();
    bar.finish_and_clear();
    result
}
