//! `cargo xtask test`: the workspace tests with a backend compiled in (after making the
//! generated fixtures), the cross-backend self-test, then xtask's own tests.

use std::process::{Command, ExitCode};

use anyhow::Result;

use crate::build::{self, Stamp};
use crate::flags::{Backend, Test};
use crate::workspace::cargo;
use crate::{fixtures, libtorch, status};

impl Test {
    /// Runs `cargo test` on every crate but xtask with the backend's features (and the extra
    /// arguments), then, without extra arguments, the cross-backend self-test, then `cargo test
    /// -p xtask`, which needs no backend and checks the architecture invariants.
    pub fn run(self) -> Result<ExitCode> {
        let backend = self.backend.get()?;
        let mut cmd = cargo();
        cmd.args(["test", "--workspace", "--exclude", "xtask"]);
        cmd.args([
            "--no-default-features",
            "--features",
            &build::features(backend)?,
        ]);
        cmd.args(&self.cargo_args);
        build::env(&mut cmd, backend)?;
        cmd.env(fixtures::FIXTURES_ENV, fixtures::ensure()?);
        // Tests that check files Strata writes with the Python tools themselves.
        cmd.env("STRATA_PYTHON", libtorch::torch()?.python());
        let stamp = Stamp::announce("tests", backend);
        let passed = status(cmd)?;
        stamp.touch();
        // A run narrowed by cargo arguments (`-- -p strata-vision`) is a quick loop: no cross-check.
        if !passed || (self.cargo_args.is_empty() && !cross_backend()?) {
            return Ok(ExitCode::FAILURE);
        }
        let mut own = cargo();
        own.args(["test", "-p", "xtask"]);
        Ok(if status(own)? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

/// The other CPU backends against flex: `strata selftest` (the CNN, its convolutions, ResNet-18,
/// LSTM, GRU and GPT-2: a forward and a backward pass each, on the same weights and inputs) with
/// ndarray and tch, from one binary that has all three compiled in.
fn cross_backend() -> Result<bool> {
    let compiled = [Backend::Flex, Backend::Ndarray, Backend::Tch];
    let strata = build::strata_with(&compiled, &build::Options::default())?;
    for backend in &compiled[1..] {
        let mut cmd = Command::new(&strata);
        cmd.args(["selftest", "--backend", &backend.to_string()]);
        // The binary links every compiled backend's libraries (LibTorch), whichever it runs.
        for b in compiled {
            build::env(&mut cmd, b)?;
        }
        if !status(cmd)? {
            return Ok(false);
        }
    }
    Ok(true)
}
