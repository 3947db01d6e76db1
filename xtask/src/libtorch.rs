//! PyTorch in a venv under `~/.cache/strata`: LibTorch for the `tch` backend, and the Python
//! that runs the baselines of `bench` and the fixture scripts.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

use crate::status;

/// The PyTorch version `tch 0.22` (burn-tch 0.22) is built against.
pub const TORCH_VERSION: &str = "2.9.0";
/// The torchvision release made for it (fixtures and baselines of the vision models).
const TORCHVISION_VERSION: &str = "0.24.0";
/// The `transformers` release the GPT-2 fixtures and baselines are made with.
const TRANSFORMERS_VERSION: &str = "4.57.1";

/// The PyTorch release of the GPU machine (Python 3.12, torch 2.11 with CUDA 13):
/// `cargo xtask gpu-check` builds its tch binary against it. LibTorch's C++ ABI changes between
/// releases, so a tch binary runs only against the LibTorch it was built with.
pub const GPU_TORCH_VERSION: &str = "2.11.0";

/// A venv with PyTorch in it.
#[derive(Debug)]
pub struct Torch {
    /// The venv (`bin/python` inside).
    pub venv: PathBuf,
    /// torch's `lib/` folder, which holds LibTorch's shared libraries.
    pub lib: PathBuf,
    /// The PyTorch release (`2.9.0`).
    pub version: String,
}

impl Torch {
    /// The venv's Python.
    pub fn python(&self) -> PathBuf {
        self.venv.join("bin/python")
    }
}

/// `cargo xtask setup-libtorch`.
pub fn setup() -> Result<ExitCode> {
    let torch = torch()?;
    println!(
        "PyTorch {TORCH_VERSION} is installed in {}",
        torch.venv.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The venv `~/.cache/strata/venv` with `torch==2.9.0`, torchvision, transformers, numpy,
/// safetensors and pillow, installed the first time it is asked for (checked once per run).
pub fn torch() -> Result<&'static Torch> {
    static TORCH: OnceLock<Torch> = OnceLock::new();
    if let Some(torch) = TORCH.get() {
        return Ok(torch);
    }
    let venv = strata_cache().join("venv");
    let check = format!(
        "import torch, torchvision, numpy, safetensors, PIL, transformers, sys; sys.exit(0 if torch.__version__.startswith('{TORCH_VERSION}') and transformers.__version__ == '{TRANSFORMERS_VERSION}' else 1)"
    );
    ensure_venv(
        &venv,
        &[
            format!("torch=={TORCH_VERSION}"),
            format!("torchvision=={TORCHVISION_VERSION}"),
            format!("transformers=={TRANSFORMERS_VERSION}"),
            "numpy".into(),
            "safetensors".into(),
            "pillow==13.0.0".into(),
        ],
        &check,
    )?;
    let lib = torch_lib_dir(&venv)?;
    Ok(TORCH.get_or_init(|| Torch {
        venv,
        lib,
        version: TORCH_VERSION.into(),
    }))
}

/// A venv with nothing but `torch==version` (`~/.cache/strata/venv-torch-VERSION`), installed
/// the first time it is asked for: the LibTorch of another release to build a tch binary against.
pub fn torch_only(version: &str) -> Result<Torch> {
    let venv = strata_cache().join(format!("venv-torch-{version}"));
    let check = format!(
        "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '{version}' else 1)"
    );
    ensure_venv(&venv, &[format!("torch=={version}")], &check)?;
    let lib = torch_lib_dir(&venv)?;
    Ok(Torch {
        venv,
        lib,
        version: version.into(),
    })
}

/// `$STRATA_CACHE_DIR`, or `~/.cache/strata`.
pub fn strata_cache() -> PathBuf {
    env::var_os("STRATA_CACHE_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".cache/strata")
        })
}

/// Creates `venv` and pip-installs `packages` into it, unless the Python code `check` already
/// exits with 0 there.
fn ensure_venv(venv: &Path, packages: &[String], check: &str) -> Result<()> {
    let python = venv.join("bin/python");
    let ready = || {
        Command::new(&python)
            .args(["-c", check])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.is_file() && ready() {
        return Ok(());
    }
    eprintln!(
        "installing {} into {} (several GB, once)...",
        packages.join(" "),
        venv.display()
    );
    let mut mk = Command::new("python3");
    mk.args(["-m", "venv"]).arg(venv);
    if !python.is_file() && !status(mk)? {
        bail!(
            "python3 -m venv {} failed: install python3 with venv support",
            venv.display()
        );
    }
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args(["install", "--quiet"]).args(packages);
    if !status(pip)? || !ready() {
        bail!(
            "pip install {} into {} failed: check that PyPI is reachable",
            packages[0],
            venv.display()
        );
    }
    Ok(())
}

/// torch's `lib/` folder in `venv`.
fn torch_lib_dir(venv: &Path) -> Result<PathBuf> {
    let out = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .context("cannot ask the venv's python where torch is")?;
    if !out.status.success() {
        bail!(
            "torch is not importable in {}: run `cargo xtask setup-libtorch`",
            venv.display()
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}
