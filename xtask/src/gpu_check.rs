//! `cargo xtask gpu-check`: what a machine with an NVIDIA GPU but no Rust toolchain needs to
//! check Strata there: one stripped, xz-compressed `strata` per GPU backend (each with flex
//! too, the reference of `strata selftest`) and `run.sh` (from `xtask/gpu/run.sh`), in one
//! folder of the checkout (`gpu-check/`, ignored by git). Run there from the checkout's root:
//! `bash gpu-check/run.sh`; the figures end up in one JSON file.

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

use crate::build;
use crate::flags::{Backend, GpuCheck};
use crate::status;
use crate::workspace::root;

/// The script the GPU machine runs.
const RUN_SH: &str = include_str!("../gpu/run.sh");
/// What the folder may weigh: what travels to the GPU machine with the checkout.
const BUDGET_BYTES: u64 = 60 << 20;

impl GpuCheck {
    /// Builds the binaries, packs them and writes the script.
    pub fn run(self) -> Result<ExitCode> {
        let out = root().join(&self.out);
        let bin = out.join("bin");
        let _ = fs::remove_dir_all(&bin);
        fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
        let mut backends = vec![Backend::Cuda];
        if !self.no_tch {
            backends.push(Backend::Tch);
        }
        for backend in backends {
            let built = build::strata_with(&[backend, Backend::Flex])?;
            pack(&built, &bin.join(format!("strata-{backend}")))?;
        }
        let script = out.join("run.sh");
        fs::write(&script, RUN_SH)?;
        let size = folder_size(&out)?;
        println!(
            "{}: {:.1} MiB; on the GPU machine, from the checkout's root: bash {}/run.sh",
            out.display(),
            size as f64 / (1 << 20) as f64,
            self.out.display()
        );
        if size > BUDGET_BYTES {
            bail!(
                "{} weighs {} MiB, more than the {} MiB that travel to the GPU machine",
                out.display(),
                size >> 20,
                BUDGET_BYTES >> 20
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Copies `binary` to `to`, strips it and compresses it to `to.xz`.
fn pack(binary: &Path, to: &Path) -> Result<()> {
    fs::copy(binary, to).with_context(|| format!("cannot copy {}", binary.display()))?;
    let mut strip = Command::new("strip");
    strip.arg(to);
    if !status(strip)? {
        bail!("strip {} failed", to.display());
    }
    let mut xz = Command::new("xz");
    xz.args(["-f", "-T0", "-6"]).arg(to);
    if !status(xz)? {
        bail!("xz {} failed", to.display());
    }
    Ok(())
}

/// Bytes of the files in `dir`, recursively.
fn folder_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            folder_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
