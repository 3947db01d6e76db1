//! Text corpora for the character-level language model: strata-train's [`text`](strata_train::text)
//! module (shared with the transformer family), re-exported under the name this crate has always
//! used.

pub use strata_train::text::*;
