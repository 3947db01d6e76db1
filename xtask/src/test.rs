//! `cargo xtask test`: the workspace tests with a backend compiled in (after making the
//! generated fixtures), then xtask's own.

use std::process::ExitCode;

use anyhow::Result;

use crate::build::{self, Stamp};
use crate::flags::Test;
use crate::workspace::cargo;
use crate::{fixtures, libtorch, status};

impl Test {
    /// Runs `cargo test` on every crate but xtask with the backend's features (and the extra
    /// arguments), then `cargo test -p xtask`, which needs no backend and checks the
    /// architecture invariants.
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
        if !passed {
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
