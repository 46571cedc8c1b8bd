//! Binary metrics: a pair is predicted positive when its score is at or above a threshold (or its
//! distance at or below one).

use serde::{Deserialize, Serialize};

/// Accuracy, precision, recall, F1 and average precision of one threshold on one data set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BinaryMetrics {
    /// Number of pairs.
    pub n: usize,
    /// The threshold applied to the scores.
    pub threshold: f64,
    /// Share of correct verdicts.
    pub accuracy: f64,
    /// Share of predicted positives that are positive (0 when nothing is predicted positive).
    pub precision: f64,
    /// Share of positives that are predicted positive.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Average precision of the ranking; does not depend on the threshold.
    pub average_precision: f64,
}

/// All binary metrics at `threshold`.
pub fn binary_metrics(scores: &[f32], labels: &[bool], threshold: f64) -> BinaryMetrics {
    assert_eq!(scores.len(), labels.len(), "one label per score");
    let (mut tp, mut fp, mut tn, mut fneg) = (0usize, 0usize, 0usize, 0usize);
    for (&s, &y) in scores.iter().zip(labels) {
        match (f64::from(s) >= threshold, y) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fneg += 1,
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fneg);
    let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
    BinaryMetrics {
        n: scores.len(),
        threshold,
        accuracy: ratio(tp + tn, scores.len()),
        precision,
        recall,
        f1,
        average_precision: average_precision(scores, labels),
    }
}

/// Indices of `scores` sorted by descending score (NaN last), stable.
fn descending(scores: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&i, &j| scores[j].partial_cmp(&scores[i]).unwrap_or_else(|| scores[i].is_nan().cmp(&scores[j].is_nan())));
    idx
}

/// Average precision as scikit-learn defines it: `Σ (R_k − R_{k−1}) · P_k` over the distinct
/// score thresholds, so tied scores count as one step. 0 when there is no positive.
pub fn average_precision(scores: &[f32], labels: &[bool]) -> f64 {
    let total_pos = labels.iter().filter(|&&y| y).count();
    if total_pos == 0 {
        return 0.0;
    }
    let idx = descending(scores);
    let (mut tp, mut seen, mut ap, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut k = 0;
    while k < idx.len() {
        // Take the whole group of tied scores at once.
        let s = scores[idx[k]];
        while k < idx.len() && (scores[idx[k]] == s || (s.is_nan() && scores[idx[k]].is_nan())) {
            tp += usize::from(labels[idx[k]]);
            seen += 1;
            k += 1;
        }
        let recall = tp as f64 / total_pos as f64;
        ap += (recall - last_recall) * (tp as f64 / seen as f64);
        last_recall = recall;
    }
    ap
}

/// The threshold with the best accuracy on these scores: halfway between the lowest score
/// predicted positive and the next lower score, so that it generalises to unseen scores.
/// Ties between thresholds go to the higher one.
pub fn best_accuracy_threshold(scores: &[f32], labels: &[bool]) -> f64 {
    let idx = descending(scores);
    let neg_total = labels.iter().filter(|&&y| !y).count();
    // Start with "everything negative": correct = number of negatives.
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut best = (neg_total, f64::INFINITY);
    let mut k = 0;
    while k < idx.len() {
        let s = scores[idx[k]];
        while k < idx.len() && scores[idx[k]] == s {
            if labels[idx[k]] {
                tp += 1
            } else {
                fp += 1
            }
            k += 1;
        }
        let correct = tp + (neg_total - fp);
        if correct > best.0 {
            let next = if k < idx.len() { f64::from(scores[idx[k]]) } else { f64::from(s) - 1.0 };
            best = (correct, (f64::from(s) + next) / 2.0);
        }
    }
    if best.1.is_infinite() {
        // All-negative is best: put the threshold just above the top score.
        return scores.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64 + 1.0;
    }
    best.1
}

/// Binary metrics of distances, where a pair is called positive when its distance is at or
/// below `threshold`: [`binary_metrics`] of the negated distances, with the threshold reported
/// as the distance it is.
pub fn distance_metrics(distances: &[f32], labels: &[bool], threshold: f64) -> BinaryMetrics {
    let mut m = binary_metrics(&negated(distances), labels, -threshold);
    m.threshold = threshold;
    m
}

/// The distance threshold with the best accuracy on these distances (pairs at or below it are
/// called positive): [`best_accuracy_threshold`] of the negated distances, negated back.
pub fn best_distance_threshold(distances: &[f32], labels: &[bool]) -> f64 {
    -best_accuracy_threshold(&negated(distances), labels)
}

/// Distances as scores: the smaller the distance, the higher the score.
fn negated(distances: &[f32]) -> Vec<f32> {
    distances.iter().map(|d| -d).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::close;

    #[test]
    fn binary_metrics_by_hand() {
        // scores ≥ 0.5 predicted positive: tp=2 (0.9, 0.6), fp=1 (0.7), fn=1 (0.2), tn=1 (0.1)
        let s = [0.9, 0.7, 0.6, 0.2, 0.1];
        let y = [true, false, true, true, false];
        let m = binary_metrics(&s, &y, 0.5);
        assert!(close(m.accuracy, 3.0 / 5.0));
        assert!(close(m.precision, 2.0 / 3.0));
        assert!(close(m.recall, 2.0 / 3.0));
        assert!(close(m.f1, 2.0 / 3.0));
        // AP: ranks 1 (P=1, R=1/3), 2 (neg), 3 (P=2/3, R=2/3), 4 (P=3/4, R=1)
        assert!(close(m.average_precision, (1.0 + 2.0 / 3.0 + 3.0 / 4.0) / 3.0));
    }

    #[test]
    fn nothing_predicted_positive_gives_zero_precision_not_nan() {
        let m = binary_metrics(&[0.1, 0.2], &[true, false], 0.9);
        assert_eq!((m.precision, m.recall, m.f1, m.accuracy), (0.0, 0.0, 0.0, 0.5));
    }

    #[test]
    fn average_precision_with_ties_counts_group_once() {
        // One tied group of all four: P = 2/4 at R = 1.
        assert!(close(average_precision(&[0.5; 4], &[true, false, true, false]), 0.5));
        // [0.9 pos], [0.5 pos, 0.5 neg], [0.1 neg]: 1·(1/2) + (2/3)·(1/2)
        let ap = average_precision(&[0.9, 0.5, 0.5, 0.1], &[true, true, false, false]);
        assert!(close(ap, 0.5 + (2.0 / 3.0) * 0.5));
        assert_eq!(average_precision(&[0.3], &[false]), 0.0);
    }

    #[test]
    fn best_threshold_separates_and_sits_between_scores() {
        let s = [0.9, 0.8, 0.4, 0.3];
        let y = [true, true, false, false];
        let t = best_accuracy_threshold(&s, &y);
        assert!((t - 0.6).abs() < 1e-6, "{t}");
        assert_eq!(binary_metrics(&s, &y, t).accuracy, 1.0);
        // Ties in score move together.
        let s = [0.5, 0.5, 0.2];
        let y = [true, false, false];
        let t = best_accuracy_threshold(&s, &y);
        // Either all-negative (2/3) or >=0.5 positive (2/3): ties keep the higher threshold.
        assert!(t > 0.5, "{t}");
        assert!(close(binary_metrics(&s, &y, t).accuracy, 2.0 / 3.0));
    }

    #[test]
    fn distance_metrics_call_small_distances_positive() {
        let d = [0.1, 0.3, 0.6, 0.9];
        let y = [true, true, false, false];
        let t = best_distance_threshold(&d, &y);
        assert!((t - 0.45).abs() < 1e-6, "{t}");
        let m = distance_metrics(&d, &y, t);
        assert_eq!((m.threshold, m.accuracy), (t, 1.0));
        // The same numbers as the negated distances scored as similarities.
        let s: Vec<f32> = d.iter().map(|x| -x).collect();
        let by_score = binary_metrics(&s, &y, -t);
        assert_eq!(
            (m.accuracy, m.precision, m.recall, m.f1, m.average_precision),
            (by_score.accuracy, by_score.precision, by_score.recall, by_score.f1, by_score.average_precision)
        );
        assert_eq!(-t, best_accuracy_threshold(&s, &y));
        // At or below the threshold is positive: a distance equal to it counts.
        let m = distance_metrics(&[0.5, 0.7], &[true, false], 0.5);
        assert_eq!((m.precision, m.recall, m.accuracy), (1.0, 1.0, 1.0));
    }
}
