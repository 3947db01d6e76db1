//! What a person sees while a model trains: a progress bar per split with throughput and ETA,
//! one summary line per epoch; and what is kept on disk after every epoch (`metrics.json`,
//! `curves.png`), so a crashed or interrupted run still shows its history.
//!
//! [`ProgressRenderer`] implements burn-train's `MetricsRenderer`; the learner calls it from its
//! training thread. Per-period figures are read from burn-train's `Final` metric entries (means
//! over the period's batches); which metric feeds which column is decided once, when burn-train registers
//! the metrics, from the task's [`Column`]s. A "period" is an epoch, or `--eval-every` steps in a
//! run measured in steps.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::train::LearnerSummary;
use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::{LearningRateMetric, MetricDefinition, MetricId, NumericEntry};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::metrics::{Metrics, Record};
use crate::plot::draw_curves;
use crate::task::{Column, Source};

/// The run's history, shared between the renderer (which appends epochs) and the harness.
#[derive(Debug)]
pub struct RunLog {
    /// Artifact dir that receives `metrics.json` and `curves.png` after every epoch.
    pub dir: PathBuf,
    /// Title of the curves.
    pub title: String,
    /// The task's columns.
    pub columns: Vec<Column>,
    /// Label of the x axis: `epoch` or `step`.
    pub x_unit: &'static str,
    /// Everything written to `metrics.json`.
    pub metrics: Metrics,
    /// First error met while writing the files, reported when training ends.
    pub write_error: Option<String>,
}

impl RunLog {
    /// Writes `metrics.json` and `curves.png` (both atomically).
    pub fn save(&mut self) -> Result<(), String> {
        self.metrics
            .save(&self.dir)
            .map_err(|e| format!("cannot write {}/metrics.json: {e}", self.dir.display()))?;
        let path = self.dir.join("curves.png");
        strata_data::fsutil::write_atomic_with(&path, |tmp| {
            draw_curves(&self.metrics, &self.columns, self.x_unit, &self.title, tmp)
                .map_err(std::io::Error::other)
        })
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// Running figures of the split in progress.
#[derive(Debug, Default)]
struct Split {
    name: String,
    total: usize,
    done: usize,
    started: Option<Instant>,
    loss: (f64, usize),
}

/// What a registered burn-train metric feeds.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// A column of the task, with the factor to our unit.
    Column(&'static str, f64),
    /// The learning rate.
    LearningRate,
}

/// Progress bars and per-period bookkeeping, plugged into burn-train with `.renderer(..)`.
#[derive(Debug)]
pub struct ProgressRenderer {
    by_name: HashMap<String, Target>,
    targets: HashMap<MetricId, Target>,
    columns: Vec<Column>,
    log: Arc<Mutex<RunLog>>,
    bar: Option<ProgressBar>,
    split: Split,
    epoch: usize,
    total_epochs: usize,
    step: usize,
    unit: &'static str,
    epoch_started: Option<Instant>,
    train_seconds: f64,
    train_items: usize,
    train: HashMap<&'static str, f64>,
    valid: HashMap<&'static str, f64>,
    last_lr: Option<f64>,
    interactive: bool,
}

impl ProgressRenderer {
    /// A renderer that appends finished periods to `log`, counting optimizer steps from
    /// `steps_done` (those of the run that is resumed); a period is called `unit` (`epoch` or
    /// `period`) in the progress lines.
    pub fn new(log: Arc<Mutex<RunLog>>, steps_done: usize, unit: &'static str) -> Self {
        let columns = log.lock().expect("run log lock").columns.clone();
        let mut by_name: HashMap<String, Target> = columns
            .iter()
            .filter_map(|c| match &c.source {
                Source::Metric { name, scale } => {
                    Some((name.clone(), Target::Column(c.key, *scale)))
                }
                Source::ExpLoss => None,
            })
            .collect();
        by_name.insert(
            burn::train::metric::Metric::name(&LearningRateMetric::new()).to_string(),
            Target::LearningRate,
        );
        Self {
            by_name,
            targets: HashMap::new(),
            columns,
            log,
            bar: None,
            split: Split::default(),
            epoch: 1,
            total_epochs: 0,
            step: steps_done,
            unit,
            epoch_started: None,
            train_seconds: 0.0,
            train_items: 0,
            train: HashMap::new(),
            valid: HashMap::new(),
            last_lr: None,
            interactive: std::io::stderr().is_terminal(),
        }
    }

    fn record(&mut self, state: MetricState, train: bool) {
        let MetricState::Numeric(entry, Some(value)) = state else {
            return;
        };
        let Some(&target) = self.targets.get(&entry.metric_id) else {
            return;
        };
        let (v, running) = match value {
            NumericEntry::Final(v) => (v, false),
            NumericEntry::Aggregated {
                aggregated_value: v,
                ..
            }
            | NumericEntry::Value(v) => (v, true),
        };
        match target {
            // The rate of the last step (the final entry is the period's mean).
            Target::LearningRate if running => self.last_lr = Some(v),
            Target::LearningRate => {}
            Target::Column(key, scale) if !running => {
                let split = if train {
                    &mut self.train
                } else {
                    &mut self.valid
                };
                split.insert(key, v * scale);
            }
            Target::Column(key, _) => {
                if key == "loss" {
                    self.split.loss.0 += v;
                    self.split.loss.1 += 1;
                    if train {
                        self.step += 1;
                        if v.is_finite() {
                            let mut log = self.log.lock().expect("run log lock");
                            log.metrics.step_loss.push((self.step, v));
                        }
                    }
                }
            }
        }
    }

    fn finish_period(&mut self, epoch: usize) {
        let seconds = self
            .epoch_started
            .take()
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        let mut values = std::collections::BTreeMap::new();
        for (prefix, split) in [("train", &self.train), ("valid", &self.valid)] {
            for c in &self.columns {
                let v = match c.source {
                    Source::Metric { .. } => split.get(c.key).copied(),
                    Source::ExpLoss => split.get("loss").map(|l| l.exp()),
                };
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    values.insert(format!("{prefix}_{}", c.key), v);
                }
            }
        }
        if let Some(lr) = self.last_lr {
            values.insert("learning_rate".into(), lr);
        }
        values.insert("seconds".into(), seconds);
        if self.train_seconds > 0.0 {
            values.insert(
                "train_items_per_s".into(),
                self.train_items as f64 / self.train_seconds,
            );
        }
        let record = Record {
            epoch,
            step: self.step,
            values,
        };
        eprintln!(
            "{}",
            period_line(&record, self.unit, self.total_epochs, &self.columns)
        );
        let mut log = self.log.lock().expect("run log lock");
        log.metrics.history.retain(|r| r.epoch < epoch);
        log.metrics.history.push(record);
        if let Err(e) = log.save() {
            eprintln!("warning: {e}");
            log.write_error.get_or_insert(e);
        }
        self.train.clear();
        self.valid.clear();
    }
}

/// The one line printed after each period, e.g.
/// `epoch 2/5: train loss 0.0412 accuracy 98.71% | valid loss 0.0390 accuracy 98.90% | 980 items/s, 61.2s`.
pub fn period_line(r: &Record, unit: &str, total: usize, columns: &[Column]) -> String {
    let fmt = |key: &str, v: f64| match key {
        "accuracy" => format!("{key} {:.2}%", v * 100.0),
        "perplexity" => format!("{key} {v:.2}"),
        _ => format!("{key} {v:.4}"),
    };
    let mut line = format!("{unit} {}/{total}", r.epoch);
    if unit != "epoch" {
        line += &format!(" (step {})", r.step);
    }
    for (i, split) in ["train", "valid"].into_iter().enumerate() {
        line += if i == 0 { ": " } else { " | " };
        line += split;
        for c in columns {
            match r.get(&format!("{split}_{}", c.key)) {
                Some(v) => line += &format!(" {}", fmt(c.key, v)),
                None if c.key == "loss" => line += " loss not finite",
                None => {}
            }
        }
    }
    line += &format!(
        " | {:.0} items/s, {:.1}s",
        r.get("train_items_per_s").unwrap_or(0.0),
        r.get("seconds").unwrap_or(0.0)
    );
    line
}

impl MetricsRendererTraining for ProgressRenderer {
    fn update_train(&mut self, state: MetricState) {
        self.record(state, true);
    }

    fn update_valid(&mut self, state: MetricState) {
        self.record(state, false);
    }

    fn on_train_end(
        &mut self,
        _summary: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        Ok(())
    }
}

impl MetricsRendererEvaluation for ProgressRenderer {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}

    fn on_test_end(
        &mut self,
        _summary: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        Ok(())
    }
}

impl TrainingProgressLogger for ProgressRenderer {
    fn start(
        &mut self,
        total_epochs: usize,
        starting_epoch: usize,
        _items: Option<usize>,
        _label: Option<&str>,
    ) {
        self.total_epochs = total_epochs;
        self.epoch = starting_epoch.max(1);
    }

    fn update_epoch(&mut self, epoch: usize) {
        self.finish_period(epoch);
        self.epoch = epoch + 1;
    }

    fn start_split(&mut self, split: &str, total_items: usize) {
        if split == "train" {
            self.epoch_started = Some(Instant::now());
            self.last_lr = None;
        }
        self.split = Split {
            name: split.to_string(),
            total: total_items,
            done: 0,
            started: Some(Instant::now()),
            loss: (0.0, 0),
        };
        let bar = ProgressBar::with_draw_target(
            Some(total_items as u64),
            if self.interactive {
                ProgressDrawTarget::stderr_with_hz(4)
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!(
            "{} {}/{} {split}",
            self.unit, self.epoch, self.total_epochs
        ));
        self.bar = Some(bar);
    }

    fn update_split(&mut self, items_processed: usize) {
        let before = self.split.done;
        self.split.done = items_processed;
        if !self.interactive && self.split.name == "train" && self.split.total > 0 {
            // Logs get a line at every quarter of the epoch instead of a bar.
            let quarter = |n: usize| n * 4 / self.split.total;
            if quarter(items_processed) > quarter(before) && items_processed < self.split.total {
                let secs = self
                    .split
                    .started
                    .map_or(0.0, |t| t.elapsed().as_secs_f64());
                let rate = items_processed as f64 / secs.max(1e-9);
                let (sum, n) = self.split.loss;
                eprintln!(
                    "{} {}/{} train: {}/{} items, {rate:.0} items/s, eta {:.0}s, loss {:.4}",
                    self.unit,
                    self.epoch,
                    self.total_epochs,
                    items_processed,
                    self.split.total,
                    (self.split.total - items_processed) as f64 / rate.max(1e-9),
                    sum / n.max(1) as f64
                );
            }
        }
        if let Some(bar) = &self.bar {
            bar.set_position(items_processed as u64);
            let (sum, n) = self.split.loss;
            if n > 0 {
                bar.set_message(format!("loss {:.4}", sum / n as f64));
            }
        }
    }

    fn end_split(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let elapsed = self
            .split
            .started
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        if self.split.name == "train" {
            self.train_seconds = elapsed;
            self.train_items = self.split.done;
        }
    }

    fn end(&mut self) {}

    fn log_event_training(&mut self, _event: String) {}
}

impl EvaluationProgressLogger for ProgressRenderer {
    fn start_global_progress(&mut self, _total_tests: usize) {}
    fn start_test(&mut self, _name: &str, _total_items: usize) {}
    fn update_test_progress(&mut self, _items_processed: usize) {}
    fn end_test(&mut self) {}
    fn end_global_progress(&mut self) {}
    fn log_event_evaluation(&mut self, _event: String) {}
}

impl MetricsRenderer for ProgressRenderer {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        if let Some(&target) = self.by_name.get(definition.name.as_str()) {
            self.targets.insert(definition.metric_id, target);
        }
    }
}
