//! Validation after every epoch, and the choice of the epoch to keep.

use burn::prelude::*;
use data::metrics::{
    best_accuracy_threshold, best_distance_threshold, binary_metrics, distance_metrics, BinaryMetrics, GradedMetrics, RetrievalMetrics,
};
use data::Pair;
use encoder::{Energy, SentenceEncoder, VerdictHead};
use tokenize::WordTokenizer;

use crate::config::{SelectMetric, TrainConfig};
use crate::fit::prepare::{HeldSlice, Prepared};
use crate::fit::report::{EpochMetrics, SliceMetrics};
use crate::fit::score::{duplicate_labels, graded_on, pair_distances, pair_scores, retrieval_on};
use crate::Result;

/// What one validation measured.
pub(crate) struct Validation {
    /// Binary metrics of the distance at its accuracy-maximising threshold (graded labels count
    /// as genuine from `POSITIVE_FROM`).
    pub distance: BinaryMetrics,
    /// The validation loss: the regression MSE on `[0, 1]` for graded data, the contrastive loss
    /// otherwise.
    pub loss: f64,
    /// The verdict head's binary metrics at its accuracy-maximising probability, with a head.
    pub head: Option<BinaryMetrics>,
    /// Correlations with the gold scores, for graded data.
    pub graded: Option<GradedMetrics>,
    /// Retrieval over the validation sentences, for binary data.
    pub retrieval: Option<RetrievalMetrics>,
    /// Correlations on each graded selection slice.
    pub slices: Vec<SliceMetrics>,
}

/// Scores the validation pairs of `data` with `encoder` (and `head`) in inference mode.
pub(crate) fn validate(
    encoder: &SentenceEncoder,
    head: Option<&VerdictHead>,
    tokenizer: &WordTokenizer,
    data: &Prepared,
    slices: &[HeldSlice],
    cfg: &TrainConfig,
    device: &Device,
) -> Result<Validation> {
    let (pairs, energy) = (&data.valid, cfg.model.energy);
    let (distances, probabilities) = pair_scores(encoder, head, tokenizer, pairs, energy, device)?;
    let labels = duplicate_labels(pairs);
    let head = probabilities.map(|p| binary_metrics(&p, &labels, best_accuracy_threshold(&p, &labels)));
    let distance = distance_metrics(&distances, &labels, best_distance_threshold(&distances, &labels));
    let loss = validation_loss(&distances, pairs, cfg.train.margin, data.graded.then_some(energy));
    let graded = data.graded.then(|| graded_on(&distances, pairs, energy, data.range));
    let retrieval = if data.graded { None } else { Some(retrieval_on(encoder, tokenizer, pairs, energy, device, None)?) };
    let slices = slices
        .iter()
        .map(|s| {
            let distances = pair_distances(encoder, tokenizer, &s.pairs, energy, device)?;
            Ok(SliceMetrics { name: s.name.clone(), graded: graded_on(&distances, &s.pairs, energy, s.range) })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Validation { distance, loss, head, graded, retrieval, slices })
}

/// The mean validation loss: with `graded`'s energy the regression MSE on `[0, 1]`, otherwise
/// the contrastive loss at `margin`.
fn validation_loss(distances: &[f32], pairs: &[Pair], margin: f32, graded: Option<Energy>) -> f64 {
    distances
        .iter()
        .zip(pairs)
        .map(|(&d, p)| {
            let d = f64::from(d);
            let y = f64::from(p.label);
            match graded {
                Some(energy) => (energy.similarity_from_distance(d) - y).powi(2),
                None => y * d * d + (1.0 - y) * (f64::from(margin) - d).max(0.0).powi(2),
            }
        })
        .sum::<f64>()
        / pairs.len().max(1) as f64
}

/// The epoch kept so far, in inference mode.
pub(crate) struct Best {
    /// Its selection score.
    pub score: f64,
    /// The 1-based epoch.
    pub epoch: usize,
    /// Its encoder.
    pub encoder: SentenceEncoder,
    /// Its verdict head, when one is trained.
    pub head: Option<VerdictHead>,
}

/// Chooses the epoch to keep by `train.select`, and says when patience has run out.
#[derive(Default)]
pub(crate) struct Selection {
    best: Option<Best>,
}

impl Selection {
    /// The number `select` reads from `em` ([`EpochMetrics::selection_score`]), 0 when missing.
    pub fn score(em: &EpochMetrics, select: SelectMetric) -> f64 {
        em.selection_score(select).unwrap_or(0.0)
    }

    pub fn improves(&self, score: f64) -> bool {
        self.best.as_ref().is_none_or(|b| score > b.score)
    }

    /// Keeps this epoch.
    pub fn keep(&mut self, best: Best) {
        self.best = Some(best);
    }

    /// Whether `patience` epochs (at least one) up to `epoch` brought no improvement.
    pub fn patience_spent(&self, epoch: usize, patience: usize) -> bool {
        self.best.as_ref().is_some_and(|b| epoch - b.epoch >= patience.max(1))
    }

    /// The kept epoch, if any epoch ran.
    pub fn into_best(self) -> Option<Best> {
        self.best
    }
}
