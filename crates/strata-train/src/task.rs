//! What kind of learning problem a model solves, and what is measured for it.
//!
//! A family trains through [`fit`](crate::fit::fit) by implementing burn-train's `TrainStep` and
//! `InferenceStep` with one of burn-train's output types. [`TaskOutput`] is implemented here for
//! each of them, and says which columns the run reports:
//!
//! | output | task | columns besides `loss` |
//! |---|---|---|
//! | `ClassificationOutput` | [`TaskKind::Classification`] | `accuracy` |
//! | `SequenceOutput` | [`TaskKind::LanguageModel`] | `perplexity` (`exp(loss)`), `accuracy` (next-token) |
//! | `RegressionOutput` | [`TaskKind::Regression`] | none |

use burn::train::metric::{AccuracyInput, AccuracyMetric, Adaptor, ItemLazy, LossInput, Metric};
use burn::train::{
    ClassificationOutput, InferenceStep, LearnerModel, RegressionOutput, SequenceOutput,
    SupervisedTraining, TrainStep,
};
use serde::{Deserialize, Serialize};

/// The learning problem of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// One class per item: loss and accuracy.
    Classification,
    /// The next token at every position: loss (nats per token), perplexity and token accuracy.
    LanguageModel,
    /// Real-valued targets: loss only.
    Regression,
}

/// How a column's value is obtained from burn-train's metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A metric burn-train computes, found by its registered name, times `scale`.
    Metric {
        /// The metric's name, taken from the metric object itself when it is registered.
        name: String,
        /// Factor to our unit (burn-train's accuracy is in percent; ours is a fraction).
        scale: f64,
    },
    /// `exp` of the loss column of the same split.
    ExpLoss,
}

/// One measured quantity, reported per split as `train_<key>` and `valid_<key>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Short name: `loss`, `accuracy`, `perplexity`.
    pub key: &'static str,
    /// Where the value comes from.
    pub source: Source,
}

fn metric_column<M: Metric>(key: &'static str, metric: &M, scale: f64) -> Column {
    Column {
        key,
        source: Source::Metric {
            name: metric.name().to_string(),
            scale,
        },
    }
}

impl TaskKind {
    /// The columns this task reports, `loss` first.
    pub fn columns(self) -> Vec<Column> {
        let loss = metric_column("loss", &burn::train::metric::LossMetric::new(), 1.0);
        let accuracy = metric_column("accuracy", &AccuracyMetric::new(), 0.01);
        match self {
            Self::Classification => vec![loss, accuracy],
            Self::LanguageModel => vec![
                loss,
                Column {
                    key: "perplexity",
                    source: Source::ExpLoss,
                },
                accuracy,
            ],
            Self::Regression => vec![loss],
        }
    }

    /// The name used in logs and `metrics.json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Classification => "classification",
            Self::LanguageModel => "language-model",
            Self::Regression => "regression",
        }
    }
}

/// Figures of one evaluated batch, summed by [`evaluate`](crate::eval::evaluate).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BatchStats {
    /// Mean loss of the batch.
    pub loss: f64,
    /// Weight of the loss in a mean over batches (items, or tokens for a language model).
    pub weight: usize,
    /// Correct predictions and predictions made, where the task has accuracy.
    pub correct: Option<(usize, usize)>,
}

/// A burn-train output type that [`fit`](crate::fit::fit) can train with.
pub trait TaskOutput: ItemLazy + Adaptor<LossInput> + Send + 'static {
    /// The task this output belongs to.
    const KIND: TaskKind;

    /// Registers the metrics of [`TaskKind::columns`] on both splits.
    fn register<M>(training: SupervisedTraining<M>) -> SupervisedTraining<M>
    where
        M: LearnerModel + TrainStep<Output = Self> + InferenceStep<Output = Self>;

    /// The figures of one batch, for evaluation outside training.
    fn stats(self) -> BatchStats;
}

/// Registers burn-train's accuracy metric on both splits.
fn with_accuracy<M, O>(training: SupervisedTraining<M>) -> SupervisedTraining<M>
where
    M: LearnerModel + TrainStep<Output = O> + InferenceStep<Output = O>,
    O: ItemLazy + Adaptor<AccuracyInput> + 'static,
{
    training
        .metric_train_numeric(AccuracyMetric::new())
        .metric_valid_numeric(AccuracyMetric::new())
}

fn correct(
    logits: burn::tensor::Tensor<2>,
    targets: burn::tensor::Tensor<1, burn::tensor::Int>,
) -> (usize, usize) {
    let n = targets.dims()[0];
    (strata_tensor::ops::correct_count(logits, targets), n)
}

impl TaskOutput for ClassificationOutput {
    const KIND: TaskKind = TaskKind::Classification;

    fn register<M>(training: SupervisedTraining<M>) -> SupervisedTraining<M>
    where
        M: LearnerModel + TrainStep<Output = Self> + InferenceStep<Output = Self>,
    {
        with_accuracy(training)
    }

    fn stats(self) -> BatchStats {
        let n = self.targets.dims()[0];
        BatchStats {
            loss: self.loss.into_scalar::<f64>(),
            weight: n,
            correct: Some(correct(self.output, self.targets)),
        }
    }
}

impl TaskOutput for SequenceOutput {
    const KIND: TaskKind = TaskKind::LanguageModel;

    fn register<M>(training: SupervisedTraining<M>) -> SupervisedTraining<M>
    where
        M: LearnerModel + TrainStep<Output = Self> + InferenceStep<Output = Self>,
    {
        with_accuracy(training)
    }

    fn stats(self) -> BatchStats {
        let [b, t, v] = self.logits.dims();
        BatchStats {
            loss: self.loss.into_scalar::<f64>(),
            weight: b * t,
            correct: Some(correct(
                self.logits.reshape([b * t, v]),
                self.targets.reshape([b * t]),
            )),
        }
    }
}

impl TaskOutput for RegressionOutput {
    const KIND: TaskKind = TaskKind::Regression;

    fn register<M>(training: SupervisedTraining<M>) -> SupervisedTraining<M>
    where
        M: LearnerModel + TrainStep<Output = Self> + InferenceStep<Output = Self>,
    {
        training
    }

    fn stats(self) -> BatchStats {
        BatchStats {
            loss: self.loss.into_scalar::<f64>(),
            weight: self.targets.dims()[0],
            correct: None,
        }
    }
}
