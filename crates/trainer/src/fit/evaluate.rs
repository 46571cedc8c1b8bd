//! Evaluation of a model package on labelled pairs, at the thresholds stored in it.

use burn::prelude::*;
use data::metrics::{binary_metrics, distance_metrics, BinaryMetrics, GradedMetrics, RetrievalMetrics};
use data::Pair;
use encoder::ModelPackage;
use serde::{Deserialize, Serialize};

use crate::config::{DataDirs, TrainConfig};
use crate::fit::prepare::{load_train_file, split_parts};
use crate::fit::score::{duplicate_labels, graded_on, pair_scores, retrieval_on};
use crate::{Result, TrainError};

/// What [`evaluate`] measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// Binary metrics of the package's verdict at its stored threshold (graded labels count as
    /// genuine from the middle of their range): the head's probability when the package has a
    /// head, the distance otherwise.
    pub binary: BinaryMetrics,
    /// With a head: the same metrics for the energy's distance at its own stored threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_binary: Option<BinaryMetrics>,
    /// Correlations and MSE, for graded data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graded: Option<GradedMetrics>,
    /// Retrieval metrics, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RetrievalMetrics>,
}

/// How [`evaluate`] reads its pairs.
#[derive(Debug, Clone, Default)]
pub struct EvalOptions<'a> {
    /// The labels' original range when they are graded (labels are already scaled to `[0, 1]`).
    pub graded_range: Option<(f32, f32)>,
    /// Also measure retrieval over the pairs' sentences.
    pub retrieval: bool,
    /// More corpus sentences for retrieval (distractors).
    pub extra_corpus: Option<&'a [&'a str]>,
}

/// Scores a package on labelled pairs (labels in `[0, 1]`) at the package's stored threshold,
/// never one chosen on the evaluated data.
pub fn evaluate(package: &ModelPackage, pairs: &[Pair], options: &EvalOptions<'_>, device: &Device) -> Result<EvalReport> {
    let energy = package.config.energy;
    let encoder = package.encoder_module(device)?;
    let head = package.head_module(device)?;
    let (distances, probabilities) = pair_scores(&encoder, head.as_ref(), &package.tokenizer, pairs, energy, device)?;
    let labels = duplicate_labels(pairs);
    let by_distance = distance_metrics(&distances, &labels, package.threshold);
    let (binary, energy_binary) = match (&package.head, probabilities) {
        (Some((_, t)), Some(p)) => (binary_metrics(&p, &labels, *t), Some(by_distance)),
        _ => (by_distance, None),
    };
    let graded = options.graded_range.map(|r| graded_on(&distances, pairs, energy, r));
    let retrieval = if options.retrieval {
        Some(retrieval_on(&encoder, &package.tokenizer, pairs, energy, device, options.extra_corpus)?)
    } else {
        None
    };
    Ok(EvalReport { binary, energy_binary, graded, retrieval })
}

/// What [`heldout_pairs`] returns: the held-out pairs, every sentence of the training file, and
/// the label range the pairs were scaled from.
pub type Heldout = (Vec<Pair>, Vec<String>, (f32, f32));

/// Which held-out part of a package's training file to rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldoutPart {
    /// The validation pairs that chose the package's epoch (and its thresholds).
    Selection,
    /// The reporting pairs (`data.report_size`), which chose nothing.
    Report,
}

/// The held-out pairs of a package, rebuilt from the training config stored in it (same file,
/// same split seed and sizes), so that `eval --heldout` / `--report` measure exactly pairs
/// training never saw. Returns the pairs, every sentence of the file, and the label range the
/// pairs were scaled from.
pub fn heldout_pairs(package: &ModelPackage, dirs: &DataDirs, part: HeldoutPart) -> Result<Heldout> {
    let cfg: TrainConfig = serde_json::from_value(package.config.training.clone())
        .map_err(|e| TrainError::Training(format!("{}: the package does not record its training config: {e}", package.dir.display())))?;
    if cfg.data.valid.is_some() {
        return Err(TrainError::Training(format!(
            "{}: trained with a separate validation file ({}); evaluate on that file instead of --heldout",
            package.dir.display(),
            cfg.data.valid.as_ref().map(|v| v.display().to_string()).unwrap_or_default()
        )));
    }
    let d = &cfg.data;
    let (_, all) = load_train_file(d, dirs)?;
    let sentences: Vec<String> = all.iter().flat_map(|p| [p.a.clone(), p.b.clone()]).collect();
    let (_, valid, report) = split_parts(all, d);
    let pairs = match part {
        HeldoutPart::Selection => valid,
        HeldoutPart::Report if report.is_empty() => {
            return Err(TrainError::Training(format!(
                "{}: trained without a reporting part (data.report_size = 0); use --heldout",
                package.dir.display()
            )))
        }
        HeldoutPart::Report => report,
    };
    Ok((pairs, sentences, d.range_of(d.format)))
}
