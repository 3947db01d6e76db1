//! `cargo xtask setup-cuda`: the LLVM that CubeCL's CUDA backend is built with, from PyPI.
//!
//! `burn/cuda` → `cubecl-cuda` → `cubecl-llvm` → build-dependency `tracel-llvm-bundler`, whose
//! build script downloads LLVM from GitHub into `$XDG_DATA_HOME/tracel/tracel-llvm-23.1.0-4`
//! (`~/.local/share/...`) unless that folder holds `.tracel-llvm-installed`. PyPI's
//! `mlc-llvm-static` (+ `-extra-targets`, NVPTX among them) is the same LLVM 23.1 as static
//! libraries, headers and a Python `llvm-config`: installed under `~/.cache/strata/` and linked
//! into the bundler's folder, it makes `--features cuda` build with only PyPI reachable.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

use crate::libtorch::strata_cache;
use crate::status;
use crate::workspace::cargo;

/// The PyPI release of LLVM installed.
pub const LLVM_RELEASE: &str = "23.1.1.post0";
/// The folder tracel-llvm-bundler 23.1.0-4 looks in, under the data-local dir.
const BUNDLER_DIR: &str = "tracel/tracel-llvm-23.1.0-4";
/// The bundler's marker: when it exists, the build script downloads nothing.
const MARKER: &str = ".tracel-llvm-installed";
/// What the bundler's folder needs, each linked to the same folder of the PyPI install.
const PARTS: [&str; 4] = ["bin", "include", "lib", "share"];

/// `cargo xtask setup-cuda`.
pub fn setup() -> Result<ExitCode> {
    let dir = ensure_llvm()?;
    println!(
        "LLVM {LLVM_RELEASE} for the cuda backend is set up in {} (used from {})",
        dir.display(),
        bundler_dir()?.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Installs LLVM from PyPI unless it is there, and links it where tracel-llvm-bundler looks.
/// Idempotent; an install interrupted halfway is redone. Returns the PyPI install's folder.
pub fn ensure_llvm() -> Result<PathBuf> {
    let install = strata_cache().join(format!("llvm-{LLVM_RELEASE}"));
    let static_dir = install.join("mlc_llvm_static/static");
    let bundler = bundler_dir()?;
    if bundler.join(MARKER).exists() && bundler.join("bin/llvm-config").exists() {
        // Set up by us, or a real download by the bundler itself: both build.
        return Ok(install);
    }
    if !static_dir.join("bin/llvm-config").is_file() {
        install_from_pypi(&install)?;
    }
    // Link it in, the marker last: an interrupted set-up has no marker and is redone.
    let _ = fs::remove_file(bundler.join(MARKER));
    fs::create_dir_all(&bundler).with_context(|| format!("cannot create {}", bundler.display()))?;
    for part in PARTS {
        let link = bundler.join(part);
        if link.is_symlink() || link.is_file() {
            fs::remove_file(&link)?;
        } else if link.is_dir() {
            fs::remove_dir_all(&link)?;
        }
        std::os::unix::fs::symlink(static_dir.join(part), &link)
            .with_context(|| format!("cannot link {}", link.display()))?;
    }
    fs::write(bundler.join(MARKER), LLVM_RELEASE)?;
    // Neither build script watches the LLVM folder: rebuild them against this one.
    let mut clean = cargo();
    clean.args([
        "clean",
        "--quiet",
        "-p",
        "tracel-llvm-bundler",
        "-p",
        "cubecl-llvm",
    ]);
    let _ = status(clean);
    Ok(install)
}

/// `pip install --target` of both wheels into a temporary folder, renamed to `install` when
/// complete.
fn install_from_pypi(install: &Path) -> Result<()> {
    eprintln!(
        "installing LLVM {LLVM_RELEASE} (PyPI mlc-llvm-static, about 90 MB) into {}...",
        install.display()
    );
    let partial = install.with_extension("partial");
    let _ = fs::remove_dir_all(&partial);
    let pip = pip()?;
    let mut cmd = Command::new(&pip[0]);
    cmd.args(&pip[1..])
        .args(["install", "--quiet", "--no-deps", "--target"])
        .arg(&partial)
        .arg(format!("mlc-llvm-static=={LLVM_RELEASE}"))
        .arg(format!("mlc-llvm-static-extra-targets=={LLVM_RELEASE}"));
    if !status(cmd)? {
        bail!("pip install mlc-llvm-static=={LLVM_RELEASE} failed: check that PyPI is reachable");
    }
    if !partial
        .join("mlc_llvm_static/static/bin/llvm-config")
        .is_file()
    {
        bail!(
            "mlc-llvm-static=={LLVM_RELEASE} installed no bin/llvm-config in {}",
            partial.display()
        );
    }
    let _ = fs::remove_dir_all(install);
    fs::rename(&partial, install)
        .with_context(|| format!("cannot move the install to {}", install.display()))
}

/// A pip to install with: `python3 -m pip` if it works, else the pip of a small venv made for
/// it under `~/.cache/strata/`.
fn pip() -> Result<Vec<PathBuf>> {
    let system = ["python3", "-m", "pip"].map(PathBuf::from).to_vec();
    let works = |cmd: &[PathBuf]| {
        Command::new(&cmd[0])
            .args(&cmd[1..])
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works(&system) {
        return Ok(system);
    }
    let venv = strata_cache().join("pip-venv");
    let own = vec![venv.join("bin/pip")];
    if !works(&own) {
        let mut mk = Command::new("python3");
        mk.args(["-m", "venv"]).arg(&venv);
        if !status(mk)? || !works(&own) {
            bail!("no pip: install python3 with pip or venv support");
        }
    }
    Ok(own)
}

/// `dirs::data_local_dir()` on Linux (what the bundler uses): `$XDG_DATA_HOME`, else
/// `~/.local/share`, then the bundler's folder in it.
fn bundler_dir() -> Result<PathBuf> {
    let data = env::var_os("XDG_DATA_HOME")
        .filter(|d| Path::new(d).is_absolute())
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    match data {
        Some(data) => Ok(data.join(BUNDLER_DIR)),
        None => {
            bail!("neither XDG_DATA_HOME nor HOME is set: cannot place LLVM for the cuda build")
        }
    }
}
