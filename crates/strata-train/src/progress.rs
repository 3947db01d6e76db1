//! What a person sees while a model trains: a progress bar per split with throughput and ETA,
//! one summary line per epoch; and what is kept on disk after every epoch (`metrics.json`,
//! `curves.png`), so a crashed or interrupted run still shows its history.
//!
//! [`ProgressRenderer`] implements burn-train's `MetricsRenderer`; the learner calls it from its
//! training thread. Per-epoch figures are read from burn-train's `Final` metric entries (sample-
//! weighted epoch means).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::train::LearnerSummary;
use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::metrics::{EpochRecord, Metrics};
use crate::plot::draw_curves;

/// Name burn-train gives the loss metric.
pub const LOSS: &str = "Loss";
/// Name burn-train gives the accuracy metric (in percent).
pub const ACCURACY: &str = "Accuracy";
/// Name burn-train gives the learning-rate metric.
pub const LEARNING_RATE: &str = "Learning Rate";

/// The run's history, shared between the renderer (which appends epochs) and the harness.
#[derive(Debug)]
pub struct RunLog {
    /// Artifact dir that receives `metrics.json` and `curves.png` after every epoch.
    pub dir: PathBuf,
    /// Title of the curves.
    pub title: String,
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
        strata_tensor::fsutil::write_atomic_with(&path, |tmp| {
            draw_curves(&self.metrics.history, &self.title, tmp).map_err(std::io::Error::other)
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

/// Progress bars and per-epoch bookkeeping, plugged into burn-train with `.renderer(..)`.
#[derive(Debug)]
pub struct ProgressRenderer {
    names: HashMap<MetricId, String>,
    log: Arc<Mutex<RunLog>>,
    bar: Option<ProgressBar>,
    split: Split,
    epoch: usize,
    total_epochs: usize,
    epoch_started: Option<Instant>,
    train_seconds: f64,
    train_items: usize,
    train: HashMap<String, f64>,
    valid: HashMap<String, f64>,
    last_lr: Option<f64>,
    interactive: bool,
}

impl ProgressRenderer {
    /// A renderer that appends finished epochs to `log`.
    pub fn new(log: Arc<Mutex<RunLog>>) -> Self {
        Self {
            names: HashMap::new(),
            log,
            bar: None,
            split: Split::default(),
            epoch: 1,
            total_epochs: 0,
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
        let Some(name) = self.names.get(&entry.metric_id).cloned() else {
            return;
        };
        match value {
            NumericEntry::Final(v) => {
                if train {
                    self.train.insert(name, v);
                } else {
                    self.valid.insert(name, v);
                }
            }
            NumericEntry::Aggregated {
                aggregated_value: v,
                count,
            } => self.running(&name, v, count),
            NumericEntry::Value(v) => self.running(&name, v, 1),
        }
    }

    fn running(&mut self, name: &str, v: f64, count: usize) {
        if name == LOSS {
            self.split.loss.0 += v * count as f64;
            self.split.loss.1 += count;
        } else if name == LEARNING_RATE {
            self.last_lr = Some(v);
        }
    }

    fn finish_epoch(&mut self, epoch: usize) {
        let seconds = self
            .epoch_started
            .take()
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        let pct = |m: &HashMap<String, f64>| m.get(ACCURACY).map(|a| a / 100.0);
        let record = EpochRecord {
            epoch,
            train_loss: self.train.get(LOSS).copied().filter(|l| l.is_finite()),
            train_accuracy: pct(&self.train),
            valid_loss: self.valid.get(LOSS).copied(),
            valid_accuracy: pct(&self.valid),
            learning_rate: self.last_lr,
            seconds,
            train_items_per_s: if self.train_seconds > 0.0 {
                self.train_items as f64 / self.train_seconds
            } else {
                0.0
            },
        };
        eprintln!("{}", epoch_line(&record, self.total_epochs));
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

/// The one line printed after each epoch.
pub fn epoch_line(r: &EpochRecord, total: usize) -> String {
    let loss = r
        .train_loss
        .map_or_else(|| "not finite".to_string(), |l| format!("{l:.4}"));
    let mut line = format!("epoch {}/{}: train loss {loss}", r.epoch, total);
    if let Some(a) = r.train_accuracy {
        line += &format!(" acc {:.2}%", a * 100.0);
    }
    if let Some(l) = r.valid_loss {
        line += &format!(" | valid loss {l:.4}");
    }
    if let Some(a) = r.valid_accuracy {
        line += &format!(" acc {:.2}%", a * 100.0);
    }
    line += &format!(" | {:.0} items/s, {:.1}s", r.train_items_per_s, r.seconds);
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
        self.finish_epoch(epoch);
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
            "epoch {}/{} {split}",
            self.epoch, self.total_epochs
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
                    "epoch {}/{} train: {}/{} items, {rate:.0} items/s, eta {:.0}s, loss {:.4}",
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
        self.names
            .insert(definition.metric_id, definition.name.to_string());
    }
}
