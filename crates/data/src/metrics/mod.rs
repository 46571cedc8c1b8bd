//! Metrics on similarity scores: higher score means "more likely the same meaning".
//!
//! Binary metrics take a threshold: a pair is predicted positive when `score >= threshold`.
//! Thresholds are chosen on a dev split with [`best_accuracy_threshold`] and then applied
//! unchanged to other data.
//!
//! Binary metrics (accuracy, precision, recall, F1, average precision, and the threshold that
//! calls pairs, on scores or on distances), graded metrics (Pearson, Spearman, MSE) and retrieval
//! metrics (Recall@k, MRR@10 over a corpus built from pairs) live in a file each.

mod binary;
mod graded;
mod retrieval;

pub use binary::{average_precision, best_accuracy_threshold, best_distance_threshold, binary_metrics, distance_metrics, BinaryMetrics};
pub use graded::{graded_metrics, pearson, ranks, spearman, to_gold_scale, GradedMetrics};
pub use retrieval::{retrieval_metrics, RetrievalMetrics, RetrievalSplit};

#[cfg(test)]
mod tests {
    /// Equal up to rounding.
    pub(super) fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }
}
