//! Test fixtures too large for git: made by a script in `datasets/fixtures/` with the PyTorch
//! venv, once, into `~/.cache/strata/fixtures/NAME`, and made again when the script changes.
//! `cargo xtask test` makes them first and tells the tests where they are
//! (`STRATA_FIXTURES_DIR`).

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::libtorch::{self, strata_cache};
use crate::status;
use crate::workspace::root;

/// The variable that tells the tests where the generated fixtures are.
pub const FIXTURES_ENV: &str = "STRATA_FIXTURES_DIR";

/// Generated fixtures: folder name under the fixtures dir, and the script that writes them
/// (given the folder as its argument).
const GENERATED: &[(&str, &str)] = &[
    ("resnet", "datasets/fixtures/make_resnet_fixtures.py"),
    ("gpt2", "datasets/fixtures/make_gpt2_fixtures.py"),
];

/// The folder that holds every generated fixture set.
pub fn dir() -> PathBuf {
    strata_cache().join("fixtures")
}

/// Runs each fixture script whose output is missing or older than the script's contents.
pub fn ensure() -> Result<PathBuf> {
    let base = dir();
    for (name, script) in GENERATED {
        let script = root().join(script);
        let source =
            fs::read(&script).with_context(|| format!("cannot read {}", script.display()))?;
        let mut hasher = DefaultHasher::new();
        source.hash(&mut hasher);
        let stamp_value = format!("{:016x}", hasher.finish());
        let out = base.join(name);
        let stamp = out.join(".script-hash");
        if fs::read_to_string(&stamp).is_ok_and(|s| s == stamp_value) {
            continue;
        }
        eprintln!(
            "making the {name} fixtures with {} (once)...",
            script.display()
        );
        let python = libtorch::torch()?.python();
        let _ = fs::remove_dir_all(&out);
        let mut cmd = Command::new(python);
        cmd.arg(&script).arg(&out);
        if !status(cmd)? {
            bail!("{} failed", script.display());
        }
        fs::write(&stamp, stamp_value)?;
    }
    Ok(base)
}
