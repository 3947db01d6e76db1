//! Strata's task runner (`cargo xtask ...`, see `.cargo/config.toml`).
//!
//! Jobs (`train-vision`, `predict-vision`, `bench`) build the `strata` binary with the cargo
//! feature of the backend asked for (`--backend B` or `STRATA_BACKEND`, default `flex`) and run
//! it with the remaining arguments. `test` runs the workspace tests with that backend compiled in.
//! `setup-libtorch` installs PyTorch into a venv under `~/.cache/strata` for the `tch` backend and
//! for the PyTorch baselines of `bench`.
//!
//! Everything is built with the `dev` profile, which the workspace `Cargo.toml` makes fully
//! optimised for dependencies: tests, jobs and benchmarks share one build of burn.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

/// Backends and the cargo feature that compiles each in.
const BACKENDS: [&str; 5] = ["flex", "ndarray", "tch", "cuda", "wgpu"];
/// Crates whose backend feature is switched together.
const CRATES: [&str; 5] = [
    "strata-tensor",
    "strata-train",
    "strata-vision",
    "strata-cli",
    "strata-benches",
];
/// PyTorch version `tch 0.22` (burn-tch 0.22) is built against.
const TORCH_VERSION: &str = "2.9.0";

const USAGE: &str = "usage: cargo xtask <task> [--backend B] [args...]

tasks:
  train-vision     train a CNN on MNIST / Fashion-MNIST (see `cargo xtask train-vision --help`)
  predict-vision   classify one image with a trained model
  bench NAME       run a benchmark (cnn-train) beside its PyTorch baseline
  test             run the test suite with backend B compiled in
  setup-libtorch   install PyTorch into ~/.cache/strata/venv (for --backend tch and baselines)

backends: flex (default), ndarray, tch, cuda, wgpu";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    let mut args: Vec<String> = env::args().skip(1).collect();
    if args.is_empty() || matches!(args[0].as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    let task = args.remove(0);
    let backend = take_backend(&mut args)?;
    match task.as_str() {
        "test" => test(&backend, &args),
        "setup-libtorch" => {
            let venv = ensure_torch_venv()?;
            println!("PyTorch {TORCH_VERSION} is installed in {}", venv.display());
            Ok(ExitCode::SUCCESS)
        }
        "bench" => bench(&backend, args),
        "train-vision" | "predict-vision" => {
            let strata = build_strata(&backend)?;
            let mut full = vec![task, "--backend".into(), backend.clone()];
            full.extend(args);
            run_strata(&strata, &backend, &full)
        }
        other => bail!("unknown task '{other}'\n{USAGE}"),
    }
}

/// Removes `--backend B` / `--backend=B` from `args`; falls back to `STRATA_BACKEND`, then flex.
fn take_backend(args: &mut Vec<String>) -> Result<String> {
    let mut backend = None;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--backend" {
            if i + 1 >= args.len() {
                bail!("--backend needs a value: one of {}", BACKENDS.join(", "));
            }
            backend = Some(args.remove(i + 1));
            args.remove(i);
        } else if let Some(v) = args[i].strip_prefix("--backend=") {
            backend = Some(v.to_string());
            args.remove(i);
        } else {
            i += 1;
        }
    }
    let backend = backend
        .or_else(|| env::var("STRATA_BACKEND").ok().filter(|b| !b.is_empty()))
        .unwrap_or_else(|| "flex".into());
    if !BACKENDS.contains(&backend.as_str()) {
        bail!(
            "unknown backend '{backend}': choose one of {}",
            BACKENDS.join(", ")
        );
    }
    Ok(backend)
}

/// The workspace root. `cargo run` sets `CARGO_MANIFEST_DIR` when it starts the xtask, which
/// names the checkout being worked on even when the binary was built from another checkout
/// sharing the same target dir; the compile-time value is the fallback.
fn root() -> PathBuf {
    env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn features(backend: &str) -> String {
    CRATES
        .iter()
        .map(|c| format!("{c}/{backend}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Sets the environment a backend needs at build and run time.
fn backend_env(cmd: &mut Command, backend: &str) -> Result<()> {
    // The checkout's datasets/ (MNIST), whatever checkout built the binaries.
    cmd.env("STRATA_BUNDLED_DATASETS", root().join("datasets"));
    match backend {
        "tch" => {
            let venv = ensure_torch_venv()?;
            let torch_lib = torch_lib_dir(&venv)?;
            cmd.env("LIBTORCH_USE_PYTORCH", "1");
            prepend_path(cmd, "PATH", &venv.join("bin"));
            prepend_path(cmd, "LD_LIBRARY_PATH", &torch_lib);
        }
        // cudarc loads the driver and NVRTC at run time, so no CUDA toolkit is needed to build.
        "cuda" if env::var_os("CUDARC_CUDA_VERSION").is_none() => {
            cmd.env("CUDARC_CUDA_VERSION", "12080");
        }
        _ => {}
    }
    Ok(())
}

fn prepend_path(cmd: &mut Command, var: &str, dir: &Path) {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(old) = env::var_os(var) {
        paths.extend(env::split_paths(&old));
    }
    cmd.env(
        var,
        env::join_paths(paths).unwrap_or_else(|_| OsString::from(dir)),
    );
}

fn status(mut cmd: Command) -> Result<bool> {
    Ok(cmd
        .status()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?
        .success())
}

/// Builds `strata` with `backend` compiled in and returns the binary's path.
fn build_strata(backend: &str) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "strata-cli",
        "--no-default-features",
    ]);
    cmd.args(["--features", &format!("strata-cli/{backend}")]);
    backend_env(&mut cmd, backend)?;
    if !status(cmd)? {
        let hint = match backend {
            "cuda" => {
                "; its first build downloads a prebuilt LLVM from GitHub (cubecl-cuda's tracel-llvm-bundler), so it needs network access once"
            }
            "tch" => "; check that `cargo xtask setup-libtorch` succeeded",
            _ => "",
        };
        bail!(
            "building strata with --backend {backend} failed (see the compiler output above){hint}"
        );
    }
    Ok(target_dir().join("debug").join("strata"))
}

fn run_strata(strata: &Path, backend: &str, args: &[String]) -> Result<ExitCode> {
    let mut cmd = Command::new(strata);
    cmd.args(args);
    backend_env(&mut cmd, backend)?;
    let code = cmd
        .status()
        .with_context(|| format!("cannot run {}", strata.display()))?
        .code()
        .unwrap_or(1);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

fn test(backend: &str, extra: &[String]) -> Result<ExitCode> {
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--workspace",
        "--exclude",
        "xtask",
        "--no-default-features",
    ]);
    cmd.args(["--features", &features(backend)]);
    cmd.args(extra);
    backend_env(&mut cmd, backend)?;
    if !status(cmd)? {
        return Ok(ExitCode::FAILURE);
    }
    // The xtask's own tests need no backend.
    let mut own = cargo();
    own.args(["test", "-p", "xtask"]);
    Ok(if status(own)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `bench NAME`: runs our benchmark, then the PyTorch baseline of the same name (unless
/// `--no-baseline`), and prints one JSON line holding both.
fn bench(backend: &str, mut args: Vec<String>) -> Result<ExitCode> {
    if args.is_empty() || args[0].starts_with('-') {
        bail!("bench needs a NAME: cnn-train");
    }
    let name = args.remove(0);
    let script = root()
        .join("benches/reference")
        .join(format!("{}.py", name.replace('-', "_")));
    if !script.is_file() {
        bail!("unknown benchmark '{name}': benches available: cnn-train");
    }
    let json = take_format(&mut args)?;
    let no_baseline = take_flag(&mut args, "--no-baseline");
    let strata = build_strata(backend)?;
    let mut cmd = Command::new(&strata);
    cmd.args(["bench", &name, "--backend", backend, "--format", "json"]);
    cmd.args(&args);
    backend_env(&mut cmd, backend)?;
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run strata bench")?;
    if !out.status.success() {
        bail!("strata bench {name} failed");
    }
    let mut result = last_json_line(&out.stdout).context("strata bench printed no JSON result")?;
    if !no_baseline {
        let venv = ensure_torch_venv()?;
        let mut py = Command::new(venv.join("bin/python"));
        py.arg(&script).args(&args);
        py.stderr(std::process::Stdio::inherit());
        let out = py.output().context("cannot run the PyTorch baseline")?;
        if !out.status.success() {
            bail!("the PyTorch baseline {} failed", script.display());
        }
        let base = last_json_line(&out.stdout).context("the PyTorch baseline printed no JSON")?;
        if let (Some(obj), Some(base)) = (result.as_object_mut(), base.as_object()) {
            for (k, v) in base {
                obj.insert(format!("pytorch_{k}"), v.clone());
            }
            if let (Some(ours), Some(theirs)) = (
                obj.get("value").and_then(|v| v.as_f64()),
                base.get("value").and_then(|v| v.as_f64()),
            ) {
                obj.insert("ratio_vs_pytorch".into(), (ours / theirs).into());
            }
        }
    }
    if json {
        println!("{result}");
    } else {
        let get = |k: &str| result.get(k).cloned().unwrap_or_default();
        let text = |k: &str| match result.get(k) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        };
        println!("{name} [{backend}]: {} {}", text("value"), text("unit"));
        if !no_baseline {
            println!(
                "{name} [pytorch]: {} {} (ours / pytorch = {:.2})",
                text("pytorch_value"),
                text("pytorch_unit"),
                get("ratio_vs_pytorch").as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes `flag` from `args`; true if it was there.
fn take_flag(args: &mut Vec<String>, flag: &str) -> bool {
    let before = args.len();
    args.retain(|a| a != flag);
    args.len() != before
}

/// Removes `--format F` / `--format=F` from `args`; true for `json`, false for `text`.
fn take_format(args: &mut Vec<String>) -> Result<bool> {
    let mut json = false;
    while let Some(i) = args
        .iter()
        .position(|a| a == "--format" || a.starts_with("--format="))
    {
        let value = match args[i].strip_prefix("--format=") {
            Some(v) => {
                let v = v.to_string();
                args.remove(i);
                v
            }
            None if i + 1 < args.len() => args.drain(i..i + 2).nth(1).unwrap_or_default(),
            None => bail!("--format needs a value: text or json"),
        };
        json = match value.as_str() {
            "json" => true,
            "text" => false,
            other => bail!("unknown --format '{other}': choose text or json"),
        };
    }
    Ok(json)
}

fn last_json_line(stdout: &[u8]) -> Option<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
}

fn strata_cache() -> PathBuf {
    env::var_os("STRATA_CACHE_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".cache/strata")
        })
}

/// Creates `~/.cache/strata/venv` with `torch==2.9.0`, numpy and safetensors unless they are there.
fn ensure_torch_venv() -> Result<PathBuf> {
    let venv = strata_cache().join("venv");
    let python = venv.join("bin/python");
    let has_torch = |python: &Path| {
        Command::new(python)
            .args(["-c", &format!("import torch, numpy, safetensors, sys; sys.exit(0 if torch.__version__.startswith('{TORCH_VERSION}') else 1)")])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.is_file() && has_torch(&python) {
        return Ok(venv);
    }
    eprintln!(
        "installing PyTorch {TORCH_VERSION} into {} (several GB, once)...",
        venv.display()
    );
    let mut mk = Command::new("python3");
    mk.args(["-m", "venv"]).arg(&venv);
    if !python.is_file() && !status(mk)? {
        bail!(
            "python3 -m venv {} failed: install python3 with venv support",
            venv.display()
        );
    }
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args([
        "install",
        "--quiet",
        &format!("torch=={TORCH_VERSION}"),
        "numpy",
        "safetensors",
    ]);
    if !status(pip)? || !has_torch(&python) {
        bail!("pip install torch=={TORCH_VERSION} failed: check that PyPI is reachable");
    }
    Ok(venv)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn backend_flag_is_taken_out_of_the_arguments() {
        let mut a = args(&["--epochs", "1", "--backend", "ndarray", "--seed", "3"]);
        assert_eq!(take_backend(&mut a).unwrap(), "ndarray");
        assert_eq!(a, args(&["--epochs", "1", "--seed", "3"]));
        let mut a = args(&["--backend=flex"]);
        assert_eq!(take_backend(&mut a).unwrap(), "flex");
        assert!(a.is_empty());
    }

    #[test]
    fn unknown_backend_is_refused_with_the_list() {
        let err = take_backend(&mut args(&["--backend", "metal2"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown backend 'metal2'") && err.contains("flex, ndarray"),
            "{err}"
        );
        assert!(take_backend(&mut args(&["--backend"])).is_err());
    }

    #[test]
    fn format_and_flags_are_taken_out() {
        let mut a = args(&["--format", "json", "--steps", "5", "--no-baseline"]);
        assert!(take_format(&mut a).unwrap());
        assert!(take_flag(&mut a, "--no-baseline"));
        assert_eq!(a, args(&["--steps", "5"]));
        let mut a = args(&["--format=text"]);
        assert!(!take_format(&mut a).unwrap());
        assert!(a.is_empty());
        assert!(take_format(&mut args(&["--format", "yaml"])).is_err());
        assert!(take_format(&mut args(&["--format"])).is_err());
    }

    #[test]
    fn features_switch_every_crate() {
        assert_eq!(
            features("tch"),
            "strata-tensor/tch,strata-train/tch,strata-vision/tch,strata-cli/tch,strata-benches/tch"
        );
    }

    #[test]
    fn last_json_line_skips_text() {
        let v = last_json_line(b"warming up\n{\"value\": 3}\ndone\n").unwrap();
        assert_eq!(v["value"], 3);
    }
}
