//! `cargo xtask bench NAME`: our benchmark (`strata bench NAME`) beside its PyTorch baseline
//! (`benches/reference/NAME.py`, dashes as underscores), merged into one result.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::build;
use crate::flags::{Backend, Bench, Format};
use crate::libtorch;
use crate::workspace::root;

impl Bench {
    /// Builds `strata`, checks NAME against `strata bench --list`, runs both sides and prints
    /// our figure with the baseline's (`pytorch_*` fields and `ratio_vs_pytorch`).
    pub fn run(self) -> Result<ExitCode> {
        let backend = self.backend.get()?;
        let strata = build::strata(backend)?;
        let known = list(&strata, backend)?;
        if !known.contains(&self.name) {
            bail!(
                "unknown benchmark '{}': choose one of {}",
                self.name,
                known.join(", ")
            );
        }
        let script = baseline_script(&root(), &self.name);
        if !self.no_baseline && !script.is_file() {
            bail!(
                "benchmark '{}' has no PyTorch baseline {} (--no-baseline runs ours alone)",
                self.name,
                script.display()
            );
        }
        // Install PyTorch (once) before our side runs, not after.
        let python = if self.no_baseline {
            None
        } else {
            Some(libtorch::torch()?.python())
        };
        let mut cmd = Command::new(&strata);
        cmd.args(["bench", &self.name, "--backend", &backend.to_string()]);
        cmd.args(["--format", "json"]).args(&self.args);
        build::env(&mut cmd, backend)?;
        let mut result = last_json_of(cmd, &format!("strata bench {}", self.name))?;
        if let Some(python) = python {
            let mut py = Command::new(python);
            py.arg(&script).args(&self.args);
            let base = last_json_of(py, &format!("the PyTorch baseline {}", script.display()))?;
            merge_baseline(&mut result, &base);
        }
        match self.format {
            Format::Json => println!("{result}"),
            Format::Text => self.print_text(&result, backend),
        }
        Ok(ExitCode::SUCCESS)
    }

    /// The text output: one line for us, one for the baseline.
    fn print_text(&self, result: &Value, backend: Backend) {
        let text = |k: &str| match result.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        };
        let name = &self.name;
        println!("{name} [{backend}]: {} {}", text("value"), text("unit"));
        if !self.no_baseline {
            let ratio = result.get("ratio_vs_pytorch").and_then(Value::as_f64);
            println!(
                "{name} [pytorch]: {} {} (ours / pytorch = {:.2})",
                text("pytorch_value"),
                text("pytorch_unit"),
                ratio.unwrap_or(f64::NAN)
            );
        }
    }
}

/// The benchmarks `strata` knows: `strata bench --list`, one name a line.
fn list(strata: &Path, backend: Backend) -> Result<Vec<String>> {
    let mut cmd = Command::new(strata);
    cmd.args(["bench", "--list"]).stderr(Stdio::inherit());
    build::env(&mut cmd, backend)?;
    let out = cmd.output().context("cannot run strata bench --list")?;
    if !out.status.success() {
        bail!("`strata bench --list` failed");
    }
    let names = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    Ok(names)
}

/// `benches/reference/{name with - as _}.py`.
fn baseline_script(root: &Path, name: &str) -> PathBuf {
    root.join("benches/reference")
        .join(format!("{}.py", name.replace('-', "_")))
}

/// Runs `cmd` (stderr shown) and returns the last JSON line it printed; `what` names it in errors.
fn last_json_of(mut cmd: Command, what: &str) -> Result<Value> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!("{what} failed");
    }
    last_json_line(&out.stdout).with_context(|| format!("{what} printed no JSON result"))
}

/// Adds the baseline's fields to `ours` as `pytorch_*`, and `ratio_vs_pytorch` (ours / theirs).
fn merge_baseline(ours: &mut Value, base: &Value) {
    let (Some(obj), Some(base)) = (ours.as_object_mut(), base.as_object()) else {
        return;
    };
    for (k, v) in base {
        obj.insert(format!("pytorch_{k}"), v.clone());
    }
    let value = |o: Option<&Value>| o.and_then(Value::as_f64);
    if let (Some(a), Some(b)) = (value(obj.get("value")), value(base.get("value"))) {
        obj.insert("ratio_vs_pytorch".into(), (a / b).into());
    }
}

/// The last line of `stdout` that parses as JSON.
fn last_json_line(stdout: &[u8]) -> Option<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn last_json_line_skips_text() {
        let v = last_json_line(b"warming up\n{\"value\": 3}\ndone\n").unwrap();
        assert_eq!(v["value"], 3);
        assert!(last_json_line(b"no json\n").is_none());
    }

    #[test]
    fn baseline_fields_are_prefixed_and_the_ratio_added() {
        let mut ours = json!({"bench": "cnn-train", "value": 900.0, "unit": "img/s"});
        merge_baseline(&mut ours, &json!({"backend": "pytorch", "value": 1800.0}));
        assert_eq!(ours["pytorch_backend"], "pytorch");
        assert_eq!(ours["pytorch_value"], 1800.0);
        assert_eq!(ours["ratio_vs_pytorch"], 0.5);
        assert_eq!(ours["bench"], "cnn-train");
    }

    #[test]
    fn baseline_script_uses_underscores() {
        let script = baseline_script(Path::new("/r"), "cnn-train");
        assert_eq!(script, Path::new("/r/benches/reference/cnn_train.py"));
    }
}
