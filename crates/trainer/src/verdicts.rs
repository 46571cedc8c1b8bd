//! The search verdicts of a model package (see `data::verdicts`): the evaluation behind
//! `eval --verdicts`, whose curve `eval --calibrate-search` picks a search threshold from.
//!
//! The corpus is every distinct question of the pairs (plus any extra corpus, e.g. every
//! question of a training file as distractors); the queries are the first questions of the
//! duplicate pairs. Hits are ranked by the energy, as search ranks them, and flagged by the
//! package's own rule: the verdict head's probability when it has one, else the similarity.

use data::metrics::RetrievalSplit;
use data::verdicts::{pick_threshold, rank_split, verdict_curve, verdict_metrics, CurvePoint, Ranked, VerdictMetrics};
use data::Pair;
use encoder::Embedder;
use serde::{Deserialize, Serialize};

use crate::Result;

/// The false-alarm rate a search threshold is chosen under, by default.
pub const MAX_FALSE_ALARM: f64 = 0.20;

/// What `eval --verdicts` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchVerdicts {
    /// What the flag threshold applies to: `"similarity"` or `"head probability"`.
    pub flag_score: String,
    /// At the threshold search uses: the package's search threshold, or its pair threshold
    /// when it has none.
    pub at_package_threshold: VerdictMetrics,
    /// The most detection at false alarm ≤ [`MAX_FALSE_ALARM`], with the threshold chosen on
    /// these very queries: the limit the ranking allows, not a calibrated result.
    pub best_at_max_false_alarm: Option<CurvePoint>,
    /// Detection and false alarm at every threshold where either changes.
    pub curve: Vec<CurvePoint>,
}

/// The retrieval task of `pairs`, with `extra_corpus` added as distractors.
pub fn split_of(pairs: &[Pair], extra_corpus: Option<&[&str]>) -> RetrievalSplit {
    let mut split = RetrievalSplit::from_pairs(pairs.iter().map(|p| (p.a.as_str(), p.b.as_str(), crate::fit::is_duplicate(p))));
    if let Some(extra) = extra_corpus {
        split.add_to_corpus(extra.iter().copied());
    }
    split
}

/// Every query's hits, ranked by the energy and each with the package's flag score.
pub fn ranked_with_flags(embedder: &Embedder, split: &RetrievalSplit) -> Result<Vec<Ranked>> {
    let texts: Vec<&str> = split.corpus.iter().map(String::as_str).collect();
    let vecs = embedder.embed(&texts)?;
    let d = embedder.dim();
    let energy = embedder.package.config.energy;
    let row = |i: usize| &vecs[i * d..(i + 1) * d];
    let rankings = rank_split(split, |q| {
        let qv = row(split.queries[q]);
        (0..texts.len()).map(|i| -energy.distance_host(qv, row(i))).collect()
    });
    Ok(rankings
        .into_iter()
        .zip(&split.queries)
        .map(|(ids, &q)| {
            let qv = row(q);
            let flag_scores = match embedder.head_probabilities(ids.len(), |k| (qv, row(ids[k]))) {
                Some((p, _)) => p.into_iter().map(f64::from).collect(),
                None => ids.iter().map(|&i| energy.similarity_from_distance(f64::from(energy.distance_host(qv, row(i))))).collect(),
            };
            Ranked { ids, flag_scores }
        })
        .collect())
}

/// The flag threshold search uses for this package (see [`encoder::ModelPackage::is_search_duplicate`]).
fn package_threshold(embedder: &Embedder) -> f64 {
    let p = &embedder.package;
    p.search_probability_threshold().or_else(|| p.search_similarity_threshold()).unwrap_or(f64::INFINITY)
}

/// The search verdicts of `embedder`'s package on the retrieval task of `pairs`.
pub fn search_verdicts(embedder: &Embedder, pairs: &[Pair], extra_corpus: Option<&[&str]>) -> Result<SearchVerdicts> {
    let split = split_of(pairs, extra_corpus);
    let ranked = ranked_with_flags(embedder, &split)?;
    let curve = verdict_curve(&ranked, &split.relevant);
    Ok(SearchVerdicts {
        flag_score: if embedder.package.head.is_some() { "head probability" } else { "similarity" }.to_string(),
        at_package_threshold: verdict_metrics(&ranked, &split.relevant, package_threshold(embedder)),
        best_at_max_false_alarm: pick_threshold(&curve, MAX_FALSE_ALARM),
        curve,
    })
}

/// At most `n` points of `curve`, evenly spread along it (both ends kept), for printing.
pub fn thin(curve: &[CurvePoint], n: usize) -> Vec<CurvePoint> {
    if curve.len() <= n || n < 2 {
        return curve.to_vec();
    }
    (0..n).map(|i| curve[i * (curve.len() - 1) / (n - 1)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_both_ends_and_spreads_evenly() {
        let curve: Vec<CurvePoint> =
            (0..101).map(|i| CurvePoint { threshold: 1.0 - i as f64 / 100.0, detection: i as f64 / 100.0, false_alarm: 0.0 }).collect();
        let t = thin(&curve, 5);
        assert_eq!(t.iter().map(|p| p.detection).collect::<Vec<_>>(), [0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(thin(&curve[..3], 5).len(), 3);
    }
}
