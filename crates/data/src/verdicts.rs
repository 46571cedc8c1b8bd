//! Search verdicts: how far a user can trust the "duplicate" flag on the top hits of a search.
//!
//! Pair metrics judge a verdict on balanced, same-topic pairs; a search asks something harder:
//! among the nearest of thousands of stored questions, is one of them really the same question,
//! and does the flag stay off when none is? For each query (the first question of a labelled
//! duplicate pair) and its hits (best first, the query's own string left out):
//!
//! * **detection**: the top hit is a labelled partner of the query, and it is flagged;
//! * **false alarm**: with the query's labelled partners removed from the hits (the common case
//!   of a new question that has no stored duplicate), at least one of the top [`TOP`] is still
//!   flagged;
//! * **flags per query** and **flag precision** (the share of flags on labelled partners), over
//!   the top [`TOP`] hits as a user sees them.
//!
//! A hit is flagged when its flag score (a similarity, or a verdict head's probability) is at
//! least the threshold. [`verdict_curve`] gives detection and false alarm at every threshold at
//! which either changes, so a threshold can be chosen on one part of the data
//! ([`pick_threshold`]) and reported on another. QQP's labels are incomplete, so some false
//! alarms are real duplicates: read the numbers as relative ones.
//!
//! ```
//! use data::verdicts::{verdict_metrics, Ranked};
//!
//! // One query whose partner (id 7) is the top hit, flagged at 0.9; the next hit is not a
//! // partner and scores 0.4.
//! let ranked = [Ranked { ids: vec![7, 3], flag_scores: vec![0.9, 0.4], alarm_scores: None }];
//! let m = verdict_metrics(&ranked, &[vec![7]], 0.5);
//! assert_eq!((m.detection, m.false_alarm, m.flags_per_query, m.flag_precision), (1.0, 0.0, 1.0, 1.0));
//! let m = verdict_metrics(&ranked, &[vec![7]], 0.3);
//! assert_eq!(m.false_alarm, 1.0);
//! ```

use serde::{Deserialize, Serialize};

/// Hits a user sees for one query.
pub const TOP: usize = 5;

/// One query's hits, best first, the query's own string already left out. To measure false
/// alarms with the partners removed, it should reach [`TOP`] hits past the query's partners.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// Corpus ids, best first.
    pub ids: Vec<usize>,
    /// The flag score of each hit (same order): flagged when at least the threshold.
    pub flag_scores: Vec<f64>,
    /// The flag scores of the same hits (same order) as they are when the query's partners are
    /// not stored, where that changes them (a margin's background moves when the partners
    /// leave the ranking); `None`: the same as `flag_scores`. Only the non-partner hits' values
    /// are read, for false alarms.
    pub alarm_scores: Option<Vec<f64>>,
}

/// The search-verdict numbers at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VerdictMetrics {
    /// Queries counted (those with at least one labelled partner).
    pub queries: usize,
    /// The flag threshold.
    pub threshold: f64,
    /// Share of queries whose top hit is a partner and is flagged.
    pub detection: f64,
    /// Share of queries with a flag among the top hits once their partners are removed.
    pub false_alarm: f64,
    /// Mean number of flagged hits among the top hits.
    pub flags_per_query: f64,
    /// Share of those flags that are on labelled partners (0 when nothing is flagged).
    pub flag_precision: f64,
}

/// One point of the detection / false-alarm curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Flag threshold.
    pub threshold: f64,
    /// Detection at it.
    pub detection: f64,
    /// False alarm at it.
    pub false_alarm: f64,
}

/// What decides each query at any threshold: the top hit's flag score when it is a partner,
/// and the highest flag score among the top hits once the partners are removed.
fn deciders(ranked: &[Ranked], partners: &[Vec<usize>]) -> Vec<(Option<f64>, f64)> {
    assert_eq!(ranked.len(), partners.len(), "one partner list per query");
    ranked
        .iter()
        .zip(partners)
        .filter(|(_, p)| !p.is_empty())
        .map(|(r, p)| {
            let top_partner = match (r.ids.first(), r.flag_scores.first()) {
                (Some(id), Some(&s)) if p.contains(id) && s.is_finite() => Some(s),
                _ => None,
            };
            let worst_alarm = r
                .ids
                .iter()
                .zip(r.alarm_scores.as_ref().unwrap_or(&r.flag_scores))
                .filter(|(id, _)| !p.contains(id))
                .take(TOP)
                .map(|(_, &s)| s)
                .filter(|s| s.is_finite())
                .fold(f64::NEG_INFINITY, f64::max);
            (top_partner, worst_alarm)
        })
        .collect()
}

/// The hits of every query of `split`, best first by `scores(q)` (query `q`'s score for every
/// corpus sentence), its own sentence left out, `depth` hits past its partners (at least
/// [`TOP`]; deeper for a flag score that reads hits the user does not see). Queries are ranked
/// in parallel; ties go to the earlier corpus sentence.
pub fn rank_split(split: &crate::metrics::RetrievalSplit, depth: usize, scores: impl Fn(usize) -> Vec<f32> + Sync) -> Vec<Vec<usize>> {
    use rayon::prelude::*;
    split
        .queries
        .par_iter()
        .enumerate()
        .map(|(q, &own)| {
            let s = scores(q);
            assert_eq!(s.len(), split.corpus.len(), "one score per corpus sentence");
            // As deep with the partners as without them.
            let depth = depth.max(TOP) + split.relevant[q].len();
            let mut top: Vec<usize> = (0..s.len()).filter(|&i| i != own).collect();
            let by_score = |i: &usize, j: &usize| s[*j].total_cmp(&s[*i]).then(i.cmp(j));
            if top.len() > depth {
                top.select_nth_unstable_by(depth, by_score);
                top.truncate(depth);
            }
            top.sort_by(by_score);
            top
        })
        .collect()
}

/// Detection, false alarm, flags per query and flag precision at `threshold`. Queries without
/// partners are left out.
pub fn verdict_metrics(ranked: &[Ranked], partners: &[Vec<usize>], threshold: f64) -> VerdictMetrics {
    let decided = deciders(ranked, partners);
    let n = decided.len();
    let detected = decided.iter().filter(|(t, _)| t.is_some_and(|s| s >= threshold)).count();
    let alarmed = decided.iter().filter(|(_, m)| *m >= threshold).count();
    let (mut flags, mut right) = (0usize, 0usize);
    for (r, p) in ranked.iter().zip(partners).filter(|(_, p)| !p.is_empty()) {
        for (id, &s) in r.ids.iter().zip(&r.flag_scores).take(TOP) {
            if s >= threshold {
                flags += 1;
                right += usize::from(p.contains(id));
            }
        }
    }
    let share = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    VerdictMetrics {
        queries: n,
        threshold,
        detection: share(detected, n),
        false_alarm: share(alarmed, n),
        flags_per_query: share(flags, n),
        flag_precision: share(right, flags),
    }
}

/// Detection and false alarm at every threshold where either changes, from the highest
/// threshold (nothing flagged) down; both only grow along the curve.
pub fn verdict_curve(ranked: &[Ranked], partners: &[Vec<usize>]) -> Vec<CurvePoint> {
    let decided = deciders(ranked, partners);
    let n = decided.len();
    if n == 0 {
        return Vec::new();
    }
    // (score, adds a detection, adds a false alarm), highest score first.
    let mut events: Vec<(f64, bool)> = Vec::with_capacity(2 * n);
    for (top, alarm) in &decided {
        if let Some(s) = top {
            events.push((*s, true));
        }
        if alarm.is_finite() {
            events.push((*alarm, false));
        }
    }
    events.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut curve = Vec::new();
    let (mut det, mut fa) = (0usize, 0usize);
    let mut i = 0;
    while i < events.len() {
        let t = events[i].0;
        while i < events.len() && events[i].0 == t {
            if events[i].1 {
                det += 1;
            } else {
                fa += 1;
            }
            i += 1;
        }
        curve.push(CurvePoint { threshold: t, detection: det as f64 / n as f64, false_alarm: fa as f64 / n as f64 });
    }
    curve
}

/// The curve point with the most detection among those with false alarm at most
/// `max_false_alarm` (the highest threshold among ties); `None` when even the strictest
/// threshold alarms too often.
pub fn pick_threshold(curve: &[CurvePoint], max_false_alarm: f64) -> Option<CurvePoint> {
    let mut best: Option<CurvePoint> = None;
    for p in curve.iter().filter(|p| p.false_alarm <= max_false_alarm) {
        if best.is_none_or(|b| p.detection > b.detection) {
            best = Some(*p);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three queries worked by hand:
    /// q0: partners {10}; hits 10 (0.9), 11 (0.6), 12 (0.2).
    /// q1: partners {20, 21}; hits 22 (0.8), 20 (0.7), 23 (0.1).
    /// q2: partners {30}; hits 31 (0.5), 32 (0.4); its partner is not among the hits.
    fn sample() -> (Vec<Ranked>, Vec<Vec<usize>>) {
        let r = |ids: &[usize], s: &[f64]| Ranked { ids: ids.to_vec(), flag_scores: s.to_vec(), alarm_scores: None };
        (
            vec![r(&[10, 11, 12], &[0.9, 0.6, 0.2]), r(&[22, 20, 23], &[0.8, 0.7, 0.1]), r(&[31, 32], &[0.5, 0.4])],
            vec![vec![10], vec![20, 21], vec![30]],
        )
    }

    #[test]
    fn metrics_at_a_threshold_match_hand_counts() {
        let (ranked, partners) = sample();
        // At 0.65: flags are q0:{10}, q1:{22, 20}; detection only q0 (q1's top hit 22 is not a
        // partner); false alarms: q0 without 10 has 0.6 < 0.65 → no; q1 without 20 has 22 (0.8)
        // → yes; q2 max 0.5 → no.
        let m = verdict_metrics(&ranked, &partners, 0.65);
        assert_eq!(m.queries, 3);
        assert_eq!(m.detection, 1.0 / 3.0);
        assert_eq!(m.false_alarm, 1.0 / 3.0);
        assert_eq!(m.flags_per_query, 1.0);
        assert_eq!(m.flag_precision, 2.0 / 3.0);
        // At 0.45: q0 alarms too (0.6), q2 alarms (0.5); flags 10, 11, 22, 20, 31.
        let m = verdict_metrics(&ranked, &partners, 0.45);
        assert_eq!((m.detection, m.false_alarm), (1.0 / 3.0, 1.0));
        assert_eq!(m.flags_per_query, 5.0 / 3.0);
        assert_eq!(m.flag_precision, 2.0 / 5.0);
        // Nothing flagged: precision is 0, not NaN.
        let m = verdict_metrics(&ranked, &partners, 2.0);
        assert_eq!((m.detection, m.false_alarm, m.flags_per_query, m.flag_precision), (0.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn false_alarms_look_past_the_partners_to_the_top_five_others() {
        // Partner first, then six others of which only the sixth scores high: it is outside
        // the top five non-partner hits, so it raises no alarm.
        let ranked = [Ranked { ids: vec![1, 2, 3, 4, 5, 6, 7], flag_scores: vec![0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.95], alarm_scores: None }];
        assert_eq!(verdict_metrics(&ranked, &[vec![1]], 0.5).false_alarm, 0.0);
        // With the partner removed the window moves by one: ids 2..=6 only.
        let ranked = [Ranked { ids: vec![1, 2, 3, 4, 5, 6], flag_scores: vec![0.9, 0.1, 0.1, 0.1, 0.1, 0.95], alarm_scores: None }];
        assert_eq!(verdict_metrics(&ranked, &[vec![1]], 0.5).false_alarm, 1.0);
    }

    #[test]
    fn the_curve_steps_at_each_deciding_score_and_agrees_with_the_metrics() {
        let (ranked, partners) = sample();
        let curve = verdict_curve(&ranked, &partners);
        // Deciding scores: q0 detect 0.9, alarm 0.6; q1 alarm 0.8 (no detection); q2 alarm 0.5.
        let want = [(0.9, 1.0, 0.0), (0.8, 1.0, 1.0), (0.6, 1.0, 2.0), (0.5, 1.0, 3.0)];
        assert_eq!(curve.len(), want.len());
        for (p, (t, d, f)) in curve.iter().zip(want) {
            assert_eq!((p.threshold, p.detection, p.false_alarm), (t, d / 3.0, f / 3.0));
            let m = verdict_metrics(&ranked, &partners, p.threshold);
            assert_eq!((m.detection, m.false_alarm), (p.detection, p.false_alarm));
        }
        assert_eq!(pick_threshold(&curve, 0.0).unwrap().threshold, 0.9);
        assert_eq!(pick_threshold(&curve, 0.5).unwrap().threshold, 0.9, "ties keep the highest threshold");
        let none = [CurvePoint { threshold: 1.0, detection: 0.5, false_alarm: 0.4 }];
        assert!(pick_threshold(&none, 0.2).is_none());
    }

    #[test]
    fn ranking_a_split_leaves_the_query_out_and_reaches_past_the_partners() {
        use crate::metrics::RetrievalSplit;
        // "a" has one partner ("b"); the corpus has eight sentences.
        let pairs = [("a", "b", true), ("c", "d", false), ("e", "f", false), ("g", "h", false)];
        let split = RetrievalSplit::from_pairs(pairs);
        assert_eq!(split.queries.len(), 1);
        let n = split.corpus.len();
        // Score = corpus position, so higher ids rank first; the query (id 0) scores highest.
        let scores = |_| (0..n).map(|i| if i == 0 { 100.0 } else { i as f32 }).collect();
        let ranked = rank_split(&split, 20, scores);
        assert_eq!(ranked, vec![vec![7, 6, 5, 4, 3, 2, 1]], "every other sentence, the query left out");
        // Depth 5 past one partner: six hits.
        assert_eq!(rank_split(&split, 5, scores), vec![vec![7, 6, 5, 4, 3, 2]]);
        assert_eq!(rank_split(&split, 1, scores), vec![vec![7, 6, 5, 4, 3, 2]], "never fewer than TOP past the partners");
    }

    #[test]
    fn false_alarms_read_the_alarm_scores_where_given() {
        // Partner 1 first. Shown to the user, the others score low; with the partner not
        // stored, one of them scores above the threshold (as a margin would once its
        // background moves).
        let ranked = [Ranked { ids: vec![1, 2, 3], flag_scores: vec![0.9, 0.1, 0.1], alarm_scores: Some(vec![f64::NAN, 0.7, 0.1]) }];
        let m = verdict_metrics(&ranked, &[vec![1]], 0.5);
        assert_eq!((m.detection, m.false_alarm), (1.0, 1.0));
        // Flags and their precision are what the user sees: only the partner.
        assert_eq!((m.flags_per_query, m.flag_precision), (1.0, 1.0));
        let curve = verdict_curve(&ranked, &[vec![1]]);
        assert_eq!(curve.iter().map(|p| (p.threshold, p.false_alarm)).collect::<Vec<_>>(), [(0.9, 0.0), (0.7, 1.0)]);
    }

    #[test]
    fn queries_without_partners_and_non_finite_scores_are_ignored() {
        let ranked = [
            Ranked { ids: vec![1], flag_scores: vec![f64::NAN], alarm_scores: None },
            Ranked { ids: vec![2], flag_scores: vec![0.9], alarm_scores: None },
        ];
        let m = verdict_metrics(&ranked, &[vec![1], vec![]], 0.5);
        assert_eq!((m.queries, m.detection, m.false_alarm), (1, 0.0, 0.0));
        assert!(verdict_curve(&ranked, &[vec![1], vec![]]).is_empty());
    }
}
