//! Graded metrics: agreement of predicted similarities with gold scores.

use serde::{Deserialize, Serialize};

/// Pearson correlation; 0 when either side is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len());
    let n = x.len() as f64;
    if x.is_empty() {
        return 0.0;
    }
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// Ranks starting at 1, ties sharing their average rank.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&i, &j| x[i].total_cmp(&x[j]));
    let mut r = vec![0.0; x.len()];
    let mut k = 0;
    while k < idx.len() {
        let mut e = k;
        while e + 1 < idx.len() && x[idx[e + 1]] == x[idx[k]] {
            e += 1;
        }
        let avg = (k + e) as f64 / 2.0 + 1.0;
        for &i in &idx[k..=e] {
            r[i] = avg;
        }
        k = e + 1;
    }
    r
}

/// Spearman correlation: Pearson on tie-averaged ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

/// Agreement between predicted similarities and gold scores on graded data (SICK, STS).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GradedMetrics {
    /// Number of pairs.
    pub n: usize,
    /// Pearson correlation of prediction and gold score.
    pub pearson: f64,
    /// Spearman correlation (tie-averaged ranks).
    pub spearman: f64,
    /// Mean squared error on the gold scale, after mapping the prediction onto it.
    pub mse: f64,
}

/// Graded metrics of `predicted` against `gold`. Correlations do not care about scale; the MSE
/// does, so `predicted` must already be on the gold scale (see [`to_gold_scale`]).
pub fn graded_metrics(predicted: &[f64], gold: &[f64]) -> GradedMetrics {
    assert_eq!(predicted.len(), gold.len(), "one gold score per prediction");
    let n = predicted.len();
    let mse = if n == 0 { 0.0 } else { predicted.iter().zip(gold).map(|(p, g)| (p - g) * (p - g)).sum::<f64>() / n as f64 };
    GradedMetrics { n, pearson: pearson(predicted, gold), spearman: spearman(predicted, gold), mse }
}

/// Maps a similarity in `[0, 1]` onto the gold range `[lo, hi]` (similarities outside `[0, 1]`,
/// e.g. negative cosines, are clamped first), so that an MSE on the gold scale means something.
pub fn to_gold_scale(similarity: f64, (lo, hi): (f64, f64)) -> f64 {
    lo + similarity.clamp(0.0, 1.0) * (hi - lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::close;

    #[test]
    fn correlations_by_hand_with_ties() {
        assert!(close(pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]), 1.0));
        assert!(close(pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0));
        assert_eq!(pearson(&[1.0, 1.0], &[1.0, 2.0]), 0.0);
        assert_eq!(ranks(&[10.0, 20.0, 20.0, 5.0]), vec![2.0, 3.5, 3.5, 1.0]);
        // Pearson of x ranks [1, 2.5, 2.5, 4] against y ranks [1, 2, 3, 4].
        let rho = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 5.0, 6.0, 9.0]);
        let expected = 4.5 / (4.5f64 * 5.0).sqrt();
        assert!(close(rho, expected), "{rho} vs {expected}");
    }

    #[test]
    fn graded_metrics_by_hand() {
        let m = graded_metrics(&[1.0, 2.0, 4.0], &[1.0, 3.0, 4.0]);
        assert_eq!(m.n, 3);
        assert!(close(m.mse, 1.0 / 3.0));
        assert!(close(m.spearman, 1.0));
        // Pearson of (1,2,4) and (1,3,4): means 7/3 and 8/3.
        let (dx, dy) = ([-4.0 / 3.0, -1.0 / 3.0, 5.0 / 3.0], [-5.0 / 3.0, 1.0 / 3.0, 4.0 / 3.0]);
        let sxy: f64 = dx.iter().zip(&dy).map(|(a, b)| a * b).sum();
        let sxx: f64 = dx.iter().map(|a| a * a).sum();
        let syy: f64 = dy.iter().map(|a| a * a).sum();
        assert!(close(m.pearson, sxy / (sxx * syy).sqrt()));
        // Ties in the gold scores share ranks.
        let t = graded_metrics(&[0.1, 0.2, 0.3], &[2.0, 2.0, 5.0]);
        assert!(close(t.spearman, spearman(&[0.1, 0.2, 0.3], &[2.0, 2.0, 5.0])));
        assert!(close(t.spearman, 1.5 / (2.0f64 * 1.5).sqrt()));
        assert!(close(to_gold_scale(0.5, (1.0, 5.0)), 3.0));
        assert!(close(to_gold_scale(-0.3, (0.0, 5.0)), 0.0));
        assert!(close(to_gold_scale(1.7, (0.0, 5.0)), 5.0));
    }
}
