//! Reporting: the numbers of every epoch and of the run (the package's `metrics.json`), the
//! progress bar, and the epoch's log line.

use std::path::PathBuf;
use std::time::Instant;

use data::metrics::{BinaryMetrics, GradedMetrics, RetrievalMetrics};
use encoder::{Coverage, Energy};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::config::SelectMetric;
use crate::fit::validate::Validation;

/// Validation numbers of one epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Loss on the validation pairs: contrastive for binary data, the regression MSE (labels
    /// scaled to `[0, 1]`) for graded data.
    pub valid_loss: f64,
    /// Accuracy at this epoch's best distance threshold.
    pub accuracy: f64,
    /// Precision at that threshold.
    pub precision: f64,
    /// Recall at that threshold.
    pub recall: f64,
    /// F1 at that threshold.
    pub f1: f64,
    /// Average precision of the ranking by distance.
    pub average_precision: f64,
    /// Pairs at or below this distance are called duplicates.
    pub threshold: f64,
    /// The verdict head's binary metrics (its `threshold` is a probability), when one is
    /// trained; the epoch is then chosen by these instead of the distance's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<BinaryMetrics>,
    /// Pearson, Spearman and MSE against the gold scores (graded validation data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graded: Option<GradedMetrics>,
    /// Retrieval over the validation sentences (binary validation data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RetrievalMetrics>,
    /// Correlations on each graded selection slice (`[graded] select`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub graded_slices: Vec<SliceMetrics>,
    /// Training throughput.
    pub pairs_per_sec: f64,
    /// Share of the padded id matrices that was padding.
    pub padding_fraction: f64,
    /// Wall time of the epoch, validation included.
    pub seconds: f64,
}

/// One graded selection slice's numbers in an epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceMetrics {
    /// The slice's name: its file's stem and subset.
    pub name: String,
    /// Pearson, Spearman and MSE (on the file's score scale) against its gold scores.
    #[serde(flatten)]
    pub graded: GradedMetrics,
}

/// What a training run produced; also written as the package's `metrics.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// Decision threshold on distance, from the best epoch.
    pub threshold: f64,
    /// Decision threshold on the verdict head's probability, from the best epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_threshold: Option<f64>,
    /// The energy distances are measured with.
    pub energy: Energy,
    /// The epoch that was kept.
    pub best_epoch: usize,
    /// Its validation metrics.
    pub best: EpochMetrics,
    /// Every epoch's validation metrics.
    pub epochs: Vec<EpochMetrics>,
    /// Which number chose the best epoch.
    pub select: SelectMetric,
    /// Training pairs used.
    pub train_pairs: usize,
    /// Validation pairs used.
    pub valid_pairs: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// GloVe coverage of the vocabulary, when GloVe was used.
    pub glove_coverage: Option<Coverage>,
    /// The backend that trained the model.
    pub backend: String,
    /// Where the package was written.
    pub output: PathBuf,
}

/// The training side of one epoch, added up step by step.
pub(crate) struct EpochTally {
    started: Instant,
    loss_sum: f64,
    seen: usize,
    real: usize,
    cells: usize,
}

impl EpochTally {
    /// A tally whose clock starts now.
    pub fn start() -> Self {
        Self { started: Instant::now(), loss_sum: 0.0, seen: 0, real: 0, cells: 0 }
    }

    /// Counts a batch's real tokens and id-matrix cells.
    pub fn tokens(&mut self, real: usize, cells: usize) {
        self.real += real;
        self.cells += cells;
    }

    /// Counts a batch of `pairs` pairs that had loss `loss`.
    pub fn loss(&mut self, loss: f64, pairs: usize) {
        self.loss_sum += loss * pairs as f64;
        self.seen += pairs;
    }

    /// The progress bar's message: the running mean loss and throughput.
    pub fn message(&self) -> String {
        let rate = self.seen as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        format!("loss {:.4} {:.0} pairs/s", self.loss_sum / self.seen as f64, rate)
    }

    /// Seconds since the epoch started.
    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

impl EpochMetrics {
    /// The number `select` reads from this epoch, as training reads it to keep the best epoch:
    /// with a head, the package's verdict comes from the head, so accuracy and AP are the
    /// head's. `None` when the epoch did not measure it (retrieval or graded metrics).
    pub fn selection_score(&self, select: SelectMetric) -> Option<f64> {
        let verdict = self.head.as_ref();
        match select {
            SelectMetric::Accuracy => Some(verdict.map_or(self.accuracy, |h| h.accuracy)),
            SelectMetric::Ap => Some(verdict.map_or(self.average_precision, |h| h.average_precision)),
            SelectMetric::Mrr => self.retrieval.map(|r| r.mrr_at_10),
            SelectMetric::Pearson => self.graded.map(|g| g.pearson),
            SelectMetric::Spearman => self.graded.map(|g| g.spearman),
        }
    }

    /// The metrics of epoch `epoch`: its training tally (`train_secs` of training) and
    /// validation `v`.
    pub(crate) fn new(epoch: usize, tally: &EpochTally, train_secs: f64, v: Validation) -> Self {
        let m = v.distance;
        Self {
            epoch,
            train_loss: tally.loss_sum / tally.seen.max(1) as f64,
            valid_loss: v.loss,
            accuracy: m.accuracy,
            precision: m.precision,
            recall: m.recall,
            f1: m.f1,
            average_precision: m.average_precision,
            threshold: m.threshold,
            head: v.head,
            graded: v.graded,
            retrieval: v.retrieval,
            graded_slices: v.slices,
            pairs_per_sec: tally.seen as f64 / train_secs.max(1e-9),
            padding_fraction: if tally.cells == 0 { 0.0 } else { 1.0 - tally.real as f64 / tally.cells as f64 },
            seconds: tally.seconds(),
        }
    }

    /// Prints the epoch's line; `improved` marks an epoch that is kept.
    pub(crate) fn log(&self, improved: bool) {
        let head_line = self.head.as_ref().map_or(String::new(), |h| {
            format!("head acc {:.4}  F1 {:.4}  AP {:.4}  p >= {:.3} | ", h.accuracy, h.f1, h.average_precision, h.threshold)
        });
        let quality = match (&self.graded, &self.retrieval) {
            (Some(g), _) => format!("pearson {:.4}  spearman {:.4}  MSE {:.3}", g.pearson, g.spearman, g.mse),
            (None, Some(r)) => format!(
                "acc {:.4}  F1 {:.4}  AP {:.4}  MRR@10 {:.4}  thr {:.3}",
                self.accuracy, self.f1, self.average_precision, r.mrr_at_10, self.threshold
            ),
            (None, None) => {
                format!("acc {:.4}  F1 {:.4}  AP {:.4}  thr {:.3}", self.accuracy, self.f1, self.average_precision, self.threshold)
            }
        };
        let slices: String =
            self.graded_slices.iter().map(|s| format!(" | {} r {:.4} rho {:.4}", s.name, s.graded.pearson, s.graded.spearman)).collect();
        fsio::warn!(
            "epoch {:>2}: train loss {:.4}  valid loss {:.4}  {head_line}{quality}{slices}  {:.0} pairs/s  pad {:.0}%{}",
            self.epoch,
            self.train_loss,
            self.valid_loss,
            self.pairs_per_sec,
            100.0 * self.padding_fraction,
            if improved { "  *" } else { "" }
        );
    }
}

/// A progress bar over `len` of `unit` (an epoch's batches), hidden unless `show`.
pub(crate) fn progress_bar(show: bool, len: u64, prefix: String, unit: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!("{{prefix}} [{{bar:30.cyan/blue}}] {{pos}}/{{len}} {unit} {{msg}} ({{elapsed}}<{{eta}})"))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix);
    bar
}
