//! The artifact dir: what every family's training run leaves behind, and how a later command
//! (`predict-vision`, `generate-text`, `--resume`) finds out what it holds.
//!
//! ```text
//! ARTIFACT_DIR/
//!   config.json        "model_type" (strata-simple-cnn, gpt2, ...) + the family's config; written last
//!   model.safetensors  the weights
//!   metrics.json       the history (see `metrics`)
//!   curves.png         the curves (see `plot`)
//!   checkpoint/        model-N.bpk, optim-N.bpk, scheduler-N.bpk per period, and run.json:
//!                      the options of the run, checked by --resume
//!   train/ valid/      burn-train's per-period metric logs
//! ```
//!
//! A family provides its model type and its config (any `Serialize` type); loading dispatches
//! on `model_type` with [`read_model_type`], and a dir that holds something else is refused with
//! the list of what the command can load.

use std::fs;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use strata_data::fsutil::write_atomic;

use crate::fit::FitConfig;

/// File name of the configuration in an artifact dir.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the weights in an artifact dir.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the history in an artifact dir.
pub const METRICS_FILE: &str = "metrics.json";
/// File name, in the checkpoint folder, of the options a run was started with.
pub const RUN_FILE: &str = "run.json";

/// An artifact dir that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// `config.json` is missing or unreadable.
    #[error(
        "cannot read {path}: {source}; pass the --artifact-dir (or --model-dir) of a finished training run"
    )]
    Missing {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `config.json` is not what it should be.
    #[error("{path} is malformed: {why}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The dir holds a model the command cannot load.
    #[error(
        "{path} holds model_type '{found}', which this command cannot load; it loads {expected}"
    )]
    WrongModelType {
        /// The file.
        path: PathBuf,
        /// Its `model_type`.
        found: String,
        /// What the command loads, joined.
        expected: String,
    },
    /// `--resume` with options that do not match the checkpointed run.
    #[error(
        "--resume: {dir} holds a run with {what} {before}, not {now}; use the options of that run, or another --artifact-dir"
    )]
    Incompatible {
        /// The artifact dir.
        dir: PathBuf,
        /// Which setting differs.
        what: String,
        /// Its value in the checkpointed run.
        before: String,
        /// Its value now.
        now: String,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Folder of the per-period checkpoints inside an artifact dir.
pub fn checkpoint_dir(artifact_dir: &Path) -> PathBuf {
    artifact_dir.join("checkpoint")
}

/// The `model_type` of the artifact dir (or model dir) `dir`.
pub fn read_model_type(dir: &Path) -> Result<String, ArtifactError> {
    let (path, value) = read_json(&dir.join(CONFIG_FILE))?;
    match value.get("model_type").and_then(|v| v.as_str()) {
        Some(t) => Ok(t.to_string()),
        None => Err(ArtifactError::Malformed {
            path,
            why: "it has no \"model_type\" string".into(),
        }),
    }
}

fn read_json(path: &Path) -> Result<(PathBuf, serde_json::Value), ArtifactError> {
    let bytes = fs::read(path).map_err(|source| ArtifactError::Missing {
        path: path.to_path_buf(),
        source,
    })?;
    let value = serde_json::from_slice(&bytes).map_err(|e| ArtifactError::Malformed {
        path: path.to_path_buf(),
        why: format!("not valid JSON ({e})"),
    })?;
    Ok((path.to_path_buf(), value))
}

/// Reads `config.json` of `dir` as a `C`, after checking that its `model_type` is one of
/// `expected`.
pub fn load_config<C: DeserializeOwned>(dir: &Path, expected: &[&str]) -> Result<C, ArtifactError> {
    let (path, value) = read_json(&dir.join(CONFIG_FILE))?;
    let found = value
        .get("model_type")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    if !expected.contains(&found.as_str()) {
        return Err(ArtifactError::WrongModelType {
            path,
            found,
            expected: expected.join(", "),
        });
    }
    serde_json::from_value(value).map_err(|e| ArtifactError::Malformed {
        path,
        why: e.to_string(),
    })
}

/// Writes `config` as `dir/config.json`, atomically. Call it last, once the weights it
/// describes are written: a dir with a `config.json` is a finished one. `config` must
/// serialise to an object with a `model_type` field.
pub fn save_config<C: Serialize>(dir: &Path, config: &C) -> Result<(), ArtifactError> {
    let path = dir.join(CONFIG_FILE);
    let value = serde_json::to_value(config).map_err(|e| ArtifactError::Malformed {
        path: path.clone(),
        why: e.to_string(),
    })?;
    if value.get("model_type").and_then(|v| v.as_str()).is_none() {
        return Err(ArtifactError::Malformed {
            path,
            why: "the config to write has no \"model_type\"".into(),
        });
    }
    let json = serde_json::to_vec_pretty(&value).expect("a JSON value serialises");
    write_atomic(&path, &json).map_err(|source| ArtifactError::Write { path, source })
}

/// What every training job ends with, once its weights are written: `metrics.json` with
/// `seconds_outside_fit` (data loading, the final evaluation, saving) added to its wall time,
/// then `config.json` (last: a dir with one is complete).
pub fn finish_run<C: Serialize>(
    dir: &Path,
    metrics: &mut crate::Metrics,
    seconds_outside_fit: f64,
    config: &C,
) -> Result<(), ArtifactError> {
    metrics.wall_seconds += seconds_outside_fit;
    metrics.save(dir).map_err(|source| ArtifactError::Write {
        path: dir.join(METRICS_FILE),
        source,
    })?;
    save_config(dir, config)
}

/// The options of a run, kept in `checkpoint/run.json` so that `--resume` can check them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    /// What is trained.
    pub model_type: String,
    /// The family's options that a resumed run must share (dataset, architecture, ...).
    pub job: serde_json::Value,
    /// The harness's options.
    pub fit: FitConfig,
}

impl RunOptions {
    /// Writes `checkpoint/run.json` in `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), ArtifactError> {
        let folder = checkpoint_dir(dir);
        let path = folder.join(RUN_FILE);
        let json = serde_json::to_vec_pretty(self).expect("run options serialise");
        fs::create_dir_all(&folder)
            .and_then(|()| write_atomic(&path, &json))
            .map_err(|source| ArtifactError::Write { path, source })
    }

    /// Reads `checkpoint/run.json` of `dir`, if there is one.
    pub fn load(dir: &Path) -> Option<Self> {
        let bytes = fs::read(checkpoint_dir(dir).join(RUN_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Checks that a run with options `self` may continue the checkpointed run `before`:
    /// the same model type and family options, and the same batch size, optimizer, schedule,
    /// learning-rate groups, frozen parts and way of counting (epochs, or steps evaluated every
    /// K). The length of the run, the learning rate, the patience and the seed may change.
    pub fn check_resume(&self, before: &RunOptions, dir: &Path) -> Result<(), ArtifactError> {
        fn json<T: Serialize>(v: T) -> serde_json::Value {
            serde_json::to_value(v).unwrap_or_default()
        }
        let (now, then) = (&self.fit, &before.fit);
        // (setting, its value now, its value in the checkpointed run)
        let mut settings = vec![(
            "model".to_string(),
            json(&self.model_type),
            json(&before.model_type),
        )];
        // The family's options that both runs recorded.
        if let (Some(n), Some(b)) = (self.job.as_object(), before.job.as_object()) {
            settings.extend(n.iter().filter_map(|(key, value)| {
                b.get(key)
                    .map(|old| (format!("--{key}"), value.clone(), old.clone()))
            }));
        }
        settings.extend([
            (
                "--batch-size".into(),
                json(now.batch_size),
                json(then.batch_size),
            ),
            (
                "--optimizer".into(),
                json(now.optimizer.kind),
                json(then.optimizer.kind),
            ),
            (
                "--schedule".into(),
                json(now.schedule.kind),
                json(then.schedule.kind),
            ),
            (
                "--warmup-steps".into(),
                json(now.schedule.warmup_steps),
                json(then.schedule.warmup_steps),
            ),
            (
                "learning-rate groups".into(),
                json(&now.lr_groups),
                json(&then.lr_groups),
            ),
            ("frozen parts".into(), json(&now.frozen), json(&then.frozen)),
            (
                "counting".into(),
                json(counting(now.budget)),
                json(counting(then.budget)),
            ),
        ]);
        let show = |v: serde_json::Value| match v {
            serde_json::Value::String(s) => s,
            v => v.to_string(),
        };
        match settings.into_iter().find(|(_, n, b)| n != b) {
            Some((what, n, b)) => Err(ArtifactError::Incompatible {
                dir: dir.to_path_buf(),
                what,
                before: show(b),
                now: show(n),
            }),
            None => Ok(()),
        }
    }
}

/// How a budget counts: `epochs`, or `steps, evaluated every K` (the length itself may change
/// on `--resume`).
fn counting(budget: crate::fit::Budget) -> String {
    match budget {
        crate::fit::Budget::Epochs(_) => "epochs".into(),
        crate::fit::Budget::Steps { eval_every, .. } => {
            format!("steps (--max-steps), evaluated every {eval_every}")
        }
    }
}

/// Removes `config.json` from `dir` (a run that starts makes the dir unfinished until its
/// job writes a new one). A missing file is no error.
pub fn remove_config(dir: &Path) -> Result<(), ArtifactError> {
    let path = dir.join(CONFIG_FILE);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ArtifactError::Write { path, source }),
    }
}

/// Removes every checkpoint of `artifact_dir` but those of the periods in `keep`.
pub fn prune_checkpoints(artifact_dir: &Path, keep: &[usize]) {
    let dir = checkpoint_dir(artifact_dir);
    for epoch in checkpoint_epochs(artifact_dir) {
        if !keep.contains(&epoch) {
            for part in ["model", "optim", "scheduler"] {
                let _ = fs::remove_file(dir.join(format!("{part}-{epoch}.bpk")));
            }
        }
    }
}

/// Periods with a complete checkpoint (model, optimizer and scheduler), ascending.
pub fn checkpoint_epochs(artifact_dir: &Path) -> Vec<usize> {
    let dir = checkpoint_dir(artifact_dir);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut epochs: Vec<usize> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("model-")?
                .strip_suffix(".bpk")?
                .parse()
                .ok()
        })
        .filter(|epoch| {
            ["optim", "scheduler"]
                .iter()
                .all(|p| dir.join(format!("{p}-{epoch}.bpk")).is_file())
        })
        .collect();
    epochs.sort_unstable();
    epochs
}

/// Removes what an earlier run left in `artifact_dir`: checkpoints (`checkpoint/*-N.bpk`,
/// `checkpoint/run.json`) and burn-train's metric logs (`train/epoch-N`, `valid/epoch-N`).
/// Nothing else is touched: files of the user's in the same dir stay.
pub fn clear_previous_run(artifact_dir: &Path) {
    let entries = |dir: &Path| -> Vec<(PathBuf, String)> {
        fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| (e.path(), e.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let numbered = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let checkpoints = checkpoint_dir(artifact_dir);
    for (path, name) in entries(&checkpoints) {
        let ours = name == RUN_FILE
            || ["model-", "optim-", "scheduler-"].iter().any(|p| {
                name.strip_prefix(p)
                    .and_then(|r| r.strip_suffix(".bpk"))
                    .is_some_and(numbered)
            });
        if ours {
            let _ = fs::remove_file(path);
        }
    }
    let _ = fs::remove_dir(&checkpoints); // only if now empty
    for split in ["train", "valid"] {
        let dir = artifact_dir.join(split);
        for (path, name) in entries(&dir) {
            if name.strip_prefix("epoch-").is_some_and(numbered) && path.is_dir() {
                let _ = fs::remove_dir_all(path);
            }
        }
        let _ = fs::remove_dir(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_model_type_dispatches() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct C {
            model_type: String,
            width: usize,
        }
        let dir = tempfile::tempdir().unwrap();
        let c = C {
            model_type: "strata-toy".into(),
            width: 3,
        };
        save_config(dir.path(), &c).unwrap();
        assert_eq!(read_model_type(dir.path()).unwrap(), "strata-toy");
        assert_eq!(load_config::<C>(dir.path(), &["strata-toy"]).unwrap(), c);
        let err = load_config::<C>(dir.path(), &["gpt2", "strata-char-lstm"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model_type 'strata-toy'") && err.contains("gpt2, strata-char-lstm"),
            "{err}"
        );
        let err = read_model_type(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot read") && err.contains("--artifact-dir"),
            "{err}"
        );
    }

    #[test]
    fn a_config_without_model_type_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = save_config(dir.path(), &serde_json::json!({"width": 1})).unwrap_err();
        assert!(err.to_string().contains("model_type"));
        assert!(!dir.path().join(CONFIG_FILE).exists());
    }
}
