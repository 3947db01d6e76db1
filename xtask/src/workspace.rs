//! The checkout xtask works on: its root, its target dir, and its members' manifests.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

/// The workspace root. `cargo run` sets `CARGO_MANIFEST_DIR` when it starts the xtask, which
/// names the checkout being worked on even when the binary was built from another checkout
/// sharing the same target dir; the compile-time value is the fallback.
pub fn root() -> PathBuf {
    env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The target dir: `CARGO_TARGET_DIR` (made absolute) or the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => env::current_dir().unwrap_or_default().join(dir),
        None => root().join("target"),
    }
}

/// `cargo`, run in the workspace root with our target dir.
pub fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root())
        .env("CARGO_TARGET_DIR", target_dir());
    cmd
}

/// One workspace member: its folder and its parsed `Cargo.toml`.
#[derive(Debug)]
pub struct Member {
    /// The folder that holds the member's `Cargo.toml`.
    pub dir: PathBuf,
    /// The parsed `Cargo.toml`.
    pub manifest: toml::Table,
}

impl Member {
    /// The package name (`[package] name`; the folder's name if it has none).
    pub fn name(&self) -> &str {
        let name = self.manifest.get("package").and_then(|p| p.get("name"));
        let folder = self.dir.file_name().and_then(|f| f.to_str());
        name.and_then(|n| n.as_str()).or(folder).unwrap_or("?")
    }

    /// True if the member has the cargo feature `feature`.
    pub fn has_feature(&self, feature: &str) -> bool {
        self.manifest
            .get("features")
            .and_then(|f| f.get(feature))
            .is_some()
    }
}

/// Reads a TOML file.
pub fn read_toml(path: &Path) -> Result<toml::Table> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))
}

/// The members listed in `root/Cargo.toml`'s `[workspace] members`, in that order
/// (a trailing `/*` stands for every folder below that holds a `Cargo.toml`).
pub fn members(root: &Path) -> Result<Vec<Member>> {
    let manifest = read_toml(&root.join("Cargo.toml"))?;
    let listed = manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .context("the root Cargo.toml has no [workspace] members")?;
    let mut dirs = Vec::new();
    for entry in listed.iter().filter_map(|m| m.as_str()) {
        match entry.strip_suffix("/*") {
            Some(parent) => {
                let parent = root.join(parent);
                let mut found: Vec<PathBuf> = fs::read_dir(&parent)
                    .with_context(|| format!("cannot list {}", parent.display()))?
                    .filter_map(|e| Some(e.ok()?.path()))
                    .filter(|d| d.join("Cargo.toml").is_file())
                    .collect();
                found.sort();
                dirs.extend(found);
            }
            None => dirs.push(root.join(entry)),
        }
    }
    dirs.into_iter()
        .map(|dir| {
            let manifest = read_toml(&dir.join("Cargo.toml"))?;
            Ok(Member { dir, manifest })
        })
        .collect()
}
