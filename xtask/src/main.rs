//! Strata's task runner (`cargo xtask ...`, see `.cargo/config.toml`), in the style of
//! matklad's cargo-xtask.
//!
//! xtask has a few tasks of its own (`test`, `bench`, `setup-libtorch`, `setup-cuda`,
//! `gpu-check`; see [`flags`]). Every
//! other task is a job of the `strata` binary: xtask takes `--backend B` out of its arguments
//! (default `STRATA_BACKEND`, then `flex`), builds `strata` with that backend's cargo feature
//! and runs `strata <job> --backend B <the other arguments>`. It knows no job names, so a new
//! job of `strata` needs no change here.
//!
//! Everything is built with the `dev` profile, which the workspace `Cargo.toml` makes fully
//! optimised for dependencies: tests, jobs and benchmarks share one build of burn.
//! `cargo test -p xtask` also runs `tidy.rs`, the architecture invariants.

mod bench;
mod build;
mod cuda;
mod fixtures;
mod flags;
mod gpu_check;
mod libtorch;
mod test;
#[cfg(test)]
mod tidy;
mod workspace;

use std::process::{Command, ExitCode};

use anyhow::{Context, Result};

use crate::flags::{Task, Xtask};

fn main() -> ExitCode {
    let flags = Xtask::from_env();
    let result = match flags.task {
        Task::Test(test) => test.run(),
        Task::GpuCheck(check) => check.run(),
        Task::Bench(bench) => bench.run(),
        Task::SetupLibtorch => libtorch::setup(),
        Task::SetupCuda => cuda::setup(),
        Task::Job(args) => job(args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

/// Runs the `strata` job `args[0]` with the rest of `args`, less `--backend B`, which picks the
/// cargo feature `strata` is built with and is passed on to it.
fn job(mut args: Vec<String>) -> Result<ExitCode> {
    let name = args.remove(0);
    let backend = flags::take_backend(&mut args)?;
    let strata = build::strata(backend)?;
    let mut cmd = Command::new(&strata);
    cmd.arg(name)
        .args(["--backend", &backend.to_string()])
        .args(args);
    build::env(&mut cmd, backend)?;
    exit_code(cmd)
}

/// Runs `cmd` with our stdin, stdout and stderr; true if it succeeded.
fn status(mut cmd: Command) -> Result<bool> {
    Ok(cmd
        .status()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?
        .success())
}

/// Runs `cmd` and returns its exit code, to be ours.
fn exit_code(mut cmd: Command) -> Result<ExitCode> {
    let code = cmd
        .status()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?
        .code()
        .unwrap_or(1);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
