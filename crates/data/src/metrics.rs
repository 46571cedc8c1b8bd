//! Metrics on similarity scores: higher score means "more likely the same meaning".
//!
//! Binary metrics take a threshold: a pair is predicted positive when `score >= threshold`.
//! Thresholds are chosen on a dev split with [`best_accuracy_threshold`] and then applied
//! unchanged to other data.

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
            if labels[idx[k]] { tp += 1 } else { fp += 1 }
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
    if sxx == 0.0 || syy == 0.0 { 0.0 } else { sxy / (sxx * syy).sqrt() }
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

/// Retrieval quality over a set of queries, as sentence-transformers' InformationRetrievalEvaluator
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetrievalMetrics {
    /// Number of queries.
    pub queries: usize,
    /// Mean share of each query's relevant items found at rank 1.
    pub recall_at_1: f64,
    /// Mean share of each query's relevant items found in the top 10.
    pub recall_at_10: f64,
    /// Mean reciprocal rank of the first relevant item within the top 10 (0 when none is).
    pub mrr_at_10: f64,
}

/// Scores `rankings[q]` (corpus ids, best first, the query itself already left out) against
/// `relevant[q]` (the ids that should be found). Queries without relevant items are skipped.
pub fn retrieval_metrics(rankings: &[Vec<usize>], relevant: &[Vec<usize>]) -> RetrievalMetrics {
    assert_eq!(rankings.len(), relevant.len(), "one relevant set per query");
    let (mut n, mut r1, mut r10, mut mrr) = (0usize, 0.0, 0.0, 0.0);
    for (ranked, rel) in rankings.iter().zip(relevant) {
        if rel.is_empty() {
            continue;
        }
        n += 1;
        let found_in = |k: usize| ranked.iter().take(k).filter(|id| rel.contains(id)).count() as f64 / rel.len() as f64;
        r1 += found_in(1);
        r10 += found_in(10);
        if let Some(pos) = ranked.iter().take(10).position(|id| rel.contains(id)) {
            mrr += 1.0 / (pos + 1) as f64;
        }
    }
    let mean = |x: f64| if n == 0 { 0.0 } else { x / n as f64 };
    RetrievalMetrics { queries: n, recall_at_1: mean(r1), recall_at_10: mean(r10), mrr_at_10: mean(mrr) }
}

/// A retrieval task built from labelled pairs the way sentence-transformers builds its Quora
/// retrieval benchmark: the corpus is every distinct sentence of the split, each distinct first
/// sentence of a duplicate pair is a query, and its relevant items are all its duplicate partners.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrievalSplit {
    /// Distinct sentences, in order of first appearance.
    pub corpus: Vec<String>,
    /// Corpus id of each query.
    pub queries: Vec<usize>,
    /// Corpus ids that should be found for each query (never the query itself).
    pub relevant: Vec<Vec<usize>>,
}

impl RetrievalSplit {
    /// Builds the task from `(first, second, is_duplicate)` triples.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str, bool)>) -> Self {
        use std::collections::HashMap;
        let mut ids: HashMap<&'a str, usize> = HashMap::new();
        let mut corpus: Vec<String> = Vec::new();
        let mut id_of = |s: &'a str, corpus: &mut Vec<String>| {
            *ids.entry(s).or_insert_with(|| {
                corpus.push(s.to_string());
                corpus.len() - 1
            })
        };
        let mut query_slot: HashMap<usize, usize> = HashMap::new();
        let (mut queries, mut relevant): (Vec<usize>, Vec<Vec<usize>>) = (Vec::new(), Vec::new());
        for (a, b, dup) in pairs {
            let (ia, ib) = (id_of(a, &mut corpus), id_of(b, &mut corpus));
            if !dup || ia == ib {
                continue;
            }
            let slot = *query_slot.entry(ia).or_insert_with(|| {
                queries.push(ia);
                relevant.push(Vec::new());
                queries.len() - 1
            });
            if !relevant[slot].contains(&ib) {
                relevant[slot].push(ib);
            }
        }
        Self { corpus, queries, relevant }
    }

    /// Adds more sentences to the corpus as distractors (those already in it are skipped), e.g.
    /// every question of a file when the queries come from its held-out part only.
    pub fn add_to_corpus<'a>(&mut self, sentences: impl IntoIterator<Item = &'a str>) {
        let mut seen: std::collections::HashSet<String> = self.corpus.iter().cloned().collect();
        for s in sentences {
            if !seen.contains(s) {
                seen.insert(s.to_string());
                self.corpus.push(s.to_string());
            }
        }
    }

    /// Scores rankings of the corpus by similarity: `scores(q)` gives query `q`'s similarity to
    /// every corpus sentence. The query's own sentence is left out of its ranking. Queries are
    /// ranked in parallel.
    pub fn evaluate(&self, scores: impl Fn(usize) -> Vec<f32> + Sync) -> RetrievalMetrics {
        use rayon::prelude::*;
        let rankings: Vec<Vec<usize>> = self
            .queries
            .par_iter()
            .enumerate()
            .map(|(q, &own)| {
                let s = scores(q);
                assert_eq!(s.len(), self.corpus.len(), "one score per corpus sentence");
                let mut top: Vec<usize> = (0..s.len()).filter(|&i| i != own).collect();
                // Best first; ties broken by corpus order so results are reproducible.
                top.sort_by(|&i, &j| s[j].total_cmp(&s[i]).then(i.cmp(&j)));
                top.truncate(10);
                top
            })
            .collect();
        retrieval_metrics(&rankings, &self.relevant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

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
        assert_eq!((m.accuracy, m.precision, m.recall, m.f1, m.average_precision), (by_score.accuracy, by_score.precision, by_score.recall, by_score.f1, by_score.average_precision));
        assert_eq!(-t, best_accuracy_threshold(&s, &y));
        // At or below the threshold is positive: a distance equal to it counts.
        let m = distance_metrics(&[0.5, 0.7], &[true, false], 0.5);
        assert_eq!((m.precision, m.recall, m.accuracy), (1.0, 1.0, 1.0));
    }

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
    fn retrieval_metrics_by_hand() {
        // q0: relevant {7} at rank 2 -> R@1 0, R@10 1, RR 1/2.
        // q1: relevant {3, 4}: 3 at rank 1, 4 beyond 10 -> R@1 1/2, R@10 1/2, RR 1.
        // q2: relevant {9} not retrieved -> all 0. q3: no relevant items -> skipped.
        let mut long: Vec<usize> = (3..14).collect(); // 3 first, 4 second...
        long.swap(1, 10); // ...4 moved to rank 11
        let rankings = vec![vec![5, 7, 1], long, vec![1, 2], vec![0]];
        let relevant = vec![vec![7], vec![3, 4], vec![9], vec![]];
        let m = retrieval_metrics(&rankings, &relevant);
        assert_eq!(m.queries, 3);
        assert!(close(m.recall_at_1, (0.0 + 0.5 + 0.0) / 3.0));
        assert!(close(m.recall_at_10, (1.0 + 0.5 + 0.0) / 3.0));
        assert!(close(m.mrr_at_10, (0.5 + 1.0 + 0.0) / 3.0));
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

    #[test]
    fn retrieval_split_from_pairs_by_hand() {
        let pairs = [
            ("q a", "q b", true),
            ("q a", "q c", true),  // a second partner of the same query
            ("q b", "q d", false), // impostor: no query
            ("q e", "q e", true),  // a sentence paired with itself is not a query
            ("q d", "q a", true),
        ];
        let mut split = RetrievalSplit::from_pairs(pairs);
        assert_eq!(split.corpus, ["q a", "q b", "q c", "q d", "q e"]);
        let mut bigger = split.clone();
        bigger.add_to_corpus(["q c", "q f"]);
        assert_eq!(bigger.corpus.len(), 6);
        assert_eq!(bigger.queries, split.queries);
        split.add_to_corpus(["q a"]);
        assert_eq!(split.queries, [0, 3]);
        assert_eq!(split.relevant, [vec![1, 2], vec![0]]);
        // Query 0 ("q a") ranks itself first, then d, b, e, c; the query is left out, so b is at
        // rank 2 and c at rank 4. Query 1 ("q d") ranks a first.
        let m = split.evaluate(|q| if q == 0 { vec![1.0, 0.8, 0.2, 0.9, 0.5] } else { vec![0.9, 0.1, 0.1, 1.0, 0.0] });
        assert_eq!(m.queries, 2);
        assert!(close(m.recall_at_1, (0.0 + 1.0) / 2.0));
        assert!(close(m.recall_at_10, 1.0));
        assert!(close(m.mrr_at_10, (0.5 + 1.0) / 2.0));
    }
}
