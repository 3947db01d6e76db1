//! Building with a backend: the cargo features that compile it in, the environment it needs at
//! build and run time, the `strata` binary, and a notice before builds that take a while.

use std::env;
use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Result, bail};

use crate::flags::Backend;
use crate::libtorch::{self, Torch};
use crate::workspace::{self, Member, cargo, root, target_dir};
use crate::{cuda, status};

/// `STRATA_FUSION=1` builds `strata` with Burn's fusion and autotuning for cuda/wgpu.
pub const FUSION_ENV: &str = "STRATA_FUSION";

/// Picks the CUDA version cudarc binds (`13000` is 13.0), whose NVRTC (`libnvrtc.so.13`) it
/// loads at run time.
pub const CUDA_VERSION_ENV: &str = "CUDARC_CUDA_VERSION";
/// CUDA 13.0, what PyTorch's wheels ship today (driver 580 or newer); set
/// `CUDARC_CUDA_VERSION=12080` for a CUDA 12.8 set-up.
const DEFAULT_CUDA_VERSION: &str = "13000";

/// Builds `strata` (crate strata-cli, `dev` profile) with `backend` compiled in and returns the
/// binary's path.
pub fn strata(backend: Backend) -> Result<PathBuf> {
    let options = Options {
        fusion: env::var_os(FUSION_ENV).is_some_and(|v| v == "1"),
        ..Options::default()
    };
    strata_with(&[backend], &options)
}

/// What a build of `strata` has beyond its backends.
#[derive(Debug, Default)]
pub struct Options<'a> {
    /// Burn's fusion and autotuning (cuda, wgpu, cpu).
    pub fusion: bool,
    /// Burn's autotune checks, with fusion: while it tunes, CubeCL compares every candidate
    /// kernel's output with the others' and writes the results with its tuning decisions.
    pub autotune_checks: bool,
    /// The PyTorch whose LibTorch a tch build links, when not the venv's 2.9.0 (gpu-check builds
    /// against the GPU machine's). tch 0.22 is made for 2.9.0, so its version check is bypassed,
    /// and the build gets a target dir of its own: the usual one keeps its LibTorch 2.9 build.
    pub torch: Option<&'a Torch>,
}

/// Builds `strata` with every backend of `backends` compiled in (the first names the build in
/// messages) and `options`, and returns the binary's path.
pub fn strata_with(backends: &[Backend], options: &Options) -> Result<PathBuf> {
    let backend = backends[0];
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "strata-cli",
        "--no-default-features",
    ]);
    let mut features: Vec<String> = backends.iter().map(|b| format!("strata-cli/{b}")).collect();
    if options.fusion {
        features.push("strata-cli/fusion".into());
    }
    if options.autotune_checks {
        features.push("strata-cli/autotune-checks".into());
    }
    cmd.args(["--features", &features.join(",")]);
    let mut target = target_dir();
    for b in backends {
        match (b, options.torch) {
            (Backend::Tch, Some(torch)) => {
                torch_env(&mut cmd, torch);
                cmd.env("LIBTORCH_BYPASS_VERSION_CHECK", "1");
                target = target.join(format!("torch-{}", torch.version));
                cmd.env("CARGO_TARGET_DIR", &target);
            }
            _ => env(&mut cmd, *b)?,
        }
    }
    let stamp = Stamp::announce("strata", backend);
    let built = status(cmd)?;
    stamp.touch();
    if !built {
        let hint = match backend {
            Backend::Cuda | Backend::Cpu => {
                "; `cargo xtask setup-cuda` installs the LLVM it is built with (from PyPI)"
            }
            Backend::Tch => "; check that `cargo xtask setup-libtorch` succeeded",
            _ => "",
        };
        bail!(
            "building strata with --backend {backend} failed (see the compiler output above){hint}"
        );
    }
    Ok(target.join("debug").join("strata"))
}

/// `crate/B,...` for every member with backend features, so that `--no-default-features
/// --features` switches them all to `backend`. A crate has backend features when it has a
/// `flex` feature (read from the manifests, so a new crate needs no change here).
pub fn features(backend: Backend) -> Result<String> {
    let members = workspace::members(&root())?;
    let crates = members
        .iter()
        .filter(|m| m.has_feature(&Backend::Flex.to_string()))
        .map(Member::name);
    Ok(feature_list(crates, backend))
}

/// `crate/backend` for each crate, comma-separated.
fn feature_list<'a>(crates: impl IntoIterator<Item = &'a str>, backend: Backend) -> String {
    let features: Vec<String> = crates
        .into_iter()
        .map(|c| format!("{c}/{backend}"))
        .collect();
    features.join(",")
}

/// mimalloc's delay, in milliseconds, before it returns freed memory to the system (-1: never).
const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";

/// Sets the environment `backend` needs at build and run time, the bundled datasets dir and
/// the allocator's purge delay (unless set already).
pub fn env(cmd: &mut Command, backend: Backend) -> Result<()> {
    // The checkout's datasets/ (MNIST), whatever checkout built the binaries.
    cmd.env("STRATA_BUNDLED_DATASETS", root().join("datasets"));
    // mimalloc hands memory that has been free for 1 s back to the system, so a training step
    // longer than that (a ResNet's) gets every large buffer as fresh pages the kernel zeroes
    // first: 12 % of a ResNet-18 step. Any delay does the same to a job that runs longer than
    // it, so never: a job keeps its peak until it exits (docs/perf.md).
    if env::var_os(PURGE_DELAY).is_none() {
        cmd.env(PURGE_DELAY, "-1");
    }
    match backend {
        Backend::Tch => torch_env(cmd, libtorch::torch()?),
        // cudarc loads the driver and NVRTC at run time, so no CUDA toolkit is needed to build;
        // CubeCL is built with an LLVM from PyPI.
        // CubeCL's CPU runtime is built with the same LLVM.
        Backend::Cpu => {
            cuda::ensure_llvm()?;
        }
        Backend::Cuda => {
            cuda::ensure_llvm()?;
            if env::var_os(CUDA_VERSION_ENV).is_none() {
                cmd.env(CUDA_VERSION_ENV, DEFAULT_CUDA_VERSION);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Builds and runs a tch binary with the LibTorch of `torch`: torch-sys asks the venv's Python
/// where it is, and the binary is told which release that is.
fn torch_env(cmd: &mut Command, torch: &Torch) {
    // torch-sys only checks that this is set, and reruns its build script when the value changes
    // (not when the venv behind `python` moves): the venv's path as the value relinks a build
    // whose venv moved, which `1` would not.
    cmd.env("LIBTORCH_USE_PYTORCH", &torch.venv);
    // strata checks at run time that it loaded this release (strata-tensor's backend.rs).
    cmd.env("STRATA_LIBTORCH_VERSION", &torch.version);
    prepend_path(cmd, "PATH", &torch.venv.join("bin"));
    prepend_path(cmd, "LD_LIBRARY_PATH", &torch.lib);
}

/// Puts `dir` first in the path list `var` of `cmd`.
fn prepend_path(cmd: &mut Command, var: &str, dir: &Path) {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(old) = env::var_os(var) {
        paths.extend(env::split_paths(&old));
    }
    let joined = env::join_paths(paths).unwrap_or_else(|_| OsString::from(dir));
    cmd.env(var, joined);
}

/// A file in the target dir whose time is that of the last build of something with a backend;
/// it tells beforehand whether cargo will have work to do.
pub struct Stamp(PathBuf);

impl Stamp {
    /// Prints one line to stderr when building `what` with `backend` will take a while: the
    /// first build with this backend (which compiles Burn), or the first since a source changed.
    pub fn announce(what: &str, backend: Backend) -> Self {
        let path = target_dir()
            .join("xtask")
            .join(format!("{what}-{backend}.stamp"));
        let built = fs::metadata(&path).and_then(|m| m.modified()).ok();
        match built {
            None => {
                // CubeCL and its kernels (cuda, cpu, wgpu) take several times as long as Burn's CPU backends.
                let minutes = match backend {
                    Backend::Flex | Backend::Ndarray | Backend::Tch => 5,
                    Backend::Cuda | Backend::Cpu | Backend::Wgpu => 25,
                };
                eprintln!(
                    "building {what} with --backend {backend} (the first build compiles Burn: about {minutes} minutes on 2 cores)..."
                )
            }
            Some(built) if newest_source() > Some(built) => {
                eprintln!("building {what} with --backend {backend}...")
            }
            Some(_) => {}
        }
        Stamp(path)
    }

    /// Records that the build has run, well or not (best effort: the stamp only decides a
    /// notice).
    pub fn touch(self) {
        if let Some(dir) = self.0.parent() {
            let _ = fs::create_dir_all(dir);
        }
        let _ = File::create(&self.0).and_then(|f| f.set_modified(SystemTime::now()));
    }
}

/// The time of the newest file of the workspace's crates, benches and root manifests.
fn newest_source() -> Option<SystemTime> {
    let root = root();
    ["crates", "benches", "Cargo.toml", "Cargo.lock"]
        .iter()
        .filter_map(|p| newest(&root.join(p)))
        .max()
}

/// The newest modification time of `path` and everything below it.
fn newest(path: &Path) -> Option<SystemTime> {
    let meta = fs::metadata(path).ok()?;
    let own = meta.modified().ok();
    if !meta.is_dir() {
        return own;
    }
    let entries = fs::read_dir(path).ok()?;
    entries
        .filter_map(|e| newest(&e.ok()?.path()))
        .chain(own)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_list_names_each_crate() {
        assert_eq!(
            feature_list(["strata-tensor", "strata-cli"], Backend::Tch),
            "strata-tensor/tch,strata-cli/tch"
        );
    }

    #[test]
    fn features_switch_every_crate_with_backends() {
        let features = features(Backend::Ndarray).unwrap();
        let list: Vec<&str> = features.split(',').collect();
        for krate in [
            "strata-tensor",
            "strata-train",
            "strata-vision",
            "strata-cli",
            "strata-benches",
        ] {
            assert!(list.contains(&&*format!("{krate}/ndarray")), "{features}");
        }
        assert!(!features.contains("xtask"), "{features}");
    }
}
