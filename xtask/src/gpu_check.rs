//! `cargo xtask gpu-check`: what a machine with an NVIDIA GPU but no Rust toolchain needs to
//! check Strata there: one stripped, xz-compressed `strata` per GPU configuration (cuda with
//! Burn's plain kernels, cuda with fusion and autotuning, the same with Burn's autotune checks,
//! and tch built against the GPU machine's LibTorch 2.11; each with flex too, the reference of
//! `strata selftest`), tiny Shakespeare for `lstm-train` when the data dir has it, and
//! `run.sh` (from `xtask/gpu/run.sh`), in one folder of the checkout (`gpu-check/`, ignored by
//! git). Run there from the checkout's root: `bash gpu-check/run.sh`; the figures end up in one
//! JSON file.

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

use crate::flags::{Backend, GpuCheck};
use crate::status;
use crate::workspace::root;
use crate::{build, libtorch};

/// The script the GPU machine runs.
const RUN_SH: &str = include_str!("../gpu/run.sh");
/// What the folder may weigh: what travels to the GPU machine with the checkout.
const BUDGET_BYTES: u64 = 60 << 20;

impl GpuCheck {
    /// Builds the binaries, packs them and writes the script.
    pub fn run(self) -> Result<ExitCode> {
        let out = root().join(&self.out);
        let stage = out.join("bin");
        for old in [&stage, &out.join("data")] {
            let _ = fs::remove_dir_all(old);
        }
        fs::create_dir_all(&stage).with_context(|| format!("cannot create {}", stage.display()))?;
        let plain = build::Options::default();
        let fusion = build::Options {
            fusion: true,
            ..Default::default()
        };
        let checks = build::Options {
            fusion: true,
            autotune_checks: true,
            ..Default::default()
        };
        let gpu_torch = if self.no_tch {
            None
        } else {
            Some(libtorch::torch_only(libtorch::GPU_TORCH_VERSION)?)
        };
        let mut builds = vec![
            ("cuda", Backend::Cuda, plain),
            ("cuda-fusion", Backend::Cuda, fusion),
            ("cuda-fusion-checks", Backend::Cuda, checks),
        ];
        if let Some(torch) = &gpu_torch {
            let options = build::Options {
                torch: Some(torch),
                ..Default::default()
            };
            builds.push(("tch", Backend::Tch, options));
        }
        let mut names = Vec::new();
        for (name, backend, options) in &builds {
            let built = build::strata_with(&[*backend, Backend::Flex], options)?;
            let name = format!("strata-{name}");
            strip(&built, &stage.join(&name))?;
            names.push(name);
        }
        if gpu_torch.is_some() {
            // run.sh runs the tch binary only against the LibTorch release it was built with.
            fs::write(stage.join("tch-torch-version"), libtorch::GPU_TORCH_VERSION)?;
            names.push("tch-torch-version".into());
        }
        let archive = out.join("bin.tar.xz");
        pack(&stage, &names, &archive)?;
        fs::remove_dir_all(&stage)?;
        copy_corpus(&out.join("data"))?;
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

/// Copies `binary` to `to` and strips it.
fn strip(binary: &Path, to: &Path) -> Result<()> {
    fs::copy(binary, to).with_context(|| format!("cannot copy {}", binary.display()))?;
    let mut strip = Command::new("strip");
    strip.arg(to);
    if !status(strip)? {
        bail!("strip {} failed", to.display());
    }
    Ok(())
}

/// Packs the files `names` of `dir` into the tar archive `to`, compressed with xz in one stream
/// whose dictionary spans several binaries: the two cuda builds share most of their bytes (CubeCL,
/// LLVM), so the second costs little.
fn pack(dir: &Path, names: &[String], to: &Path) -> Result<()> {
    let mut tar = Command::new("tar")
        .arg("-cf")
        .arg("-")
        .arg("-C")
        .arg(dir)
        .args(names)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot run tar")?;
    let file = fs::File::create(to).with_context(|| format!("cannot create {}", to.display()))?;
    let mut xz = Command::new("xz");
    xz.args(["-T1", "--lzma2=preset=6,dict=384MiB"])
        .stdin(tar.stdout.take().context("tar has no output")?)
        .stdout(file);
    let compressed = status(xz)?;
    if !tar.wait()?.success() || !compressed {
        bail!("packing {} failed", to.display());
    }
    Ok(())
}

/// Copies `tiny-shakespeare/input.txt` from the data dir (`STRATA_DATA_DIR`), if it is there,
/// into `to`, for `bench lstm-train` on the GPU machine (the corpus is not committed).
fn copy_corpus(to: &Path) -> Result<()> {
    let Some(dir) = std::env::var_os("STRATA_DATA_DIR") else {
        println!("STRATA_DATA_DIR is not set: lstm-train will be skipped on the GPU machine");
        return Ok(());
    };
    let from = Path::new(&dir).join("tiny-shakespeare").join("input.txt");
    if !from.is_file() {
        println!(
            "{} not found: lstm-train will be skipped on the GPU machine",
            from.display()
        );
        return Ok(());
    }
    let dest = to.join("tiny-shakespeare");
    fs::create_dir_all(&dest)?;
    fs::copy(&from, dest.join("input.txt"))
        .with_context(|| format!("cannot copy {}", from.display()))?;
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
