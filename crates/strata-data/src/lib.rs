//! Where Strata's data and pretrained files come from. It knows no model and no training: the
//! formats of the files stay in the crates that read them, unless more than one family reads
//! them (MNIST's IDX files: strata-vision and strata-sequence).
//!
//! - [`datasets`]: a dataset's folder in the data dir (`--data-dir` / `STRATA_DATA_DIR`), the
//!   bundled `datasets/` or the cache, downloaded from its mirrors (progress bar, checksums) when
//!   absent;
//! - [`hub`]: files of Hugging Face Hub model repositories through the standard Hugging Face cache
//!   (`HF_HOME`, `HF_ENDPOINT`, `HF_HUB_OFFLINE`, revisions), and `PATH_OR_HUB_ID` arguments;
//! - [`idx`]: the IDX file format (gzipped or raw), checked so corrupt files are clear errors;
//! - [`mnist`]: MNIST and Fashion-MNIST (files, labels, mirrors) with train / valid / test splits;
//! - [`fsutil`]: atomic file writes;
//! - `testing` (cargo feature `testing`): a loopback HTTP server that serves files, or model
//!   repositories in the Hub's layout, to the tests of download code.

pub mod datasets;
pub mod fsutil;
pub mod hub;
pub mod idx;
pub mod mnist;
#[cfg(feature = "testing")]
pub mod testing;
mod transfer;
