//! The search verdicts of a model package (see `data::verdicts`): the evaluation behind
//! `eval --verdicts`, whose curve `eval --calibrate-search` picks a search threshold from.
//!
//! The corpus is every distinct question of the pairs (plus any extra corpus, e.g. every
//! question of a training file as distractors); the queries are the first questions of the
//! duplicate pairs. Hits are ranked by the energy, as search ranks them, and flagged by the
//! package's own rule (its `search_flag`: the verdict head's probability, the similarity or the
//! margin, see `encoder::flag`). Calibration compares the curves of every score and keeps the
//! one that detects most.

use data::metrics::RetrievalSplit;
use data::verdicts::{pick_threshold, rank_split, verdict_curve, verdict_metrics, CurvePoint, Ranked, VerdictMetrics};
use data::Pair;
use encoder::flag::{margins, MARGIN_DEPTH};
use encoder::{Embedder, ModelPackage, SearchFlag};
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// The false-alarm rate a search threshold is chosen under, by default.
pub const MAX_FALSE_ALARM: f64 = 0.20;

/// What `eval --verdicts` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchVerdicts {
    /// What the flag threshold applies to: `"similarity"`, `"margin"` or `"head probability"`.
    pub flag_score: String,
    /// At the threshold search uses: the package's search threshold, or its pair threshold
    /// when it has none.
    pub at_package_threshold: VerdictMetrics,
    /// The most detection at false alarm ≤ [`MAX_FALSE_ALARM`], with the threshold chosen on
    /// these very queries: the limit the ranking allows, not a calibrated result.
    pub best_at_max_false_alarm: Option<CurvePoint>,
    /// Detection and false alarm at every threshold where either changes.
    pub curve: Vec<CurvePoint>,
    /// The curve of each flag score the package offers (the similarity, the margin, and the
    /// head's probability when it has a head): what calibration chooses among.
    #[serde(skip)]
    pub flags: Vec<FlagCurve>,
    /// The margin flag (the similarity minus the query's background, see
    /// [`encoder::flag::margins`]) on the same ranking, whatever the package flags by: to
    /// report it at a threshold chosen on other queries, beside the package's own flag.
    pub margin: MarginVerdicts,
}

/// The margin flag's search verdicts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MarginVerdicts {
    /// At a margin threshold given by the caller (chosen on other queries), if any.
    pub at_threshold: Option<VerdictMetrics>,
    /// The most detection at false alarm ≤ [`MAX_FALSE_ALARM`], with the threshold chosen on
    /// these very queries.
    pub best_at_max_false_alarm: Option<CurvePoint>,
    /// Detection and false alarm at every margin threshold where either changes.
    pub curve: Vec<CurvePoint>,
}

/// The detection / false-alarm curve of one flag score.
#[derive(Debug, Clone)]
pub struct FlagCurve {
    /// The score.
    pub flag: SearchFlag,
    /// Its curve.
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

/// The corpus vectors and every query's hits, ranked by the energy, as search ranks them.
pub struct Ranking {
    vecs: Vec<f32>,
    rankings: Vec<Vec<usize>>,
}

/// Ranks the corpus of `split` for each of its queries, deep enough for every flag score.
pub fn rank(embedder: &Embedder, split: &RetrievalSplit) -> Result<Ranking> {
    let texts: Vec<&str> = split.corpus.iter().map(String::as_str).collect();
    let vecs = embedder.embed(&texts)?;
    let d = embedder.dim();
    let energy = embedder.package.config.energy;
    let row = |i: usize| &vecs[i * d..(i + 1) * d];
    let rankings = rank_split(split, MARGIN_DEPTH, |q| {
        let qv = row(split.queries[q]);
        (0..texts.len()).map(|i| -energy.distance_host(qv, row(i))).collect()
    });
    Ok(Ranking { vecs, rankings })
}

/// Every query's hits with their `flag` scores (the head's probability, the similarity or the
/// margin). `None` when `flag` is the head's and the package has none.
pub fn with_flags(embedder: &Embedder, split: &RetrievalSplit, ranking: &Ranking, flag: SearchFlag) -> Option<Vec<Ranked>> {
    let d = embedder.dim();
    let energy = embedder.package.config.energy;
    let row = |i: usize| &ranking.vecs[i * d..(i + 1) * d];
    ranking
        .rankings
        .iter()
        .zip(&split.queries)
        .map(|(ids, &q)| {
            let qv = row(q);
            let flag_scores = match flag {
                SearchFlag::HeadProbability => {
                    embedder.head_probabilities(ids.len(), |k| (qv, row(ids[k])))?.0.into_iter().map(f64::from).collect()
                }
                SearchFlag::Similarity | SearchFlag::Margin => {
                    ids.iter().map(|&i| energy.similarity_from_distance(f64::from(energy.distance_host(qv, row(i))))).collect()
                }
            };
            Some(Ranked { ids: ids.clone(), flag_scores, alarm_scores: None })
        })
        .collect::<Option<Vec<_>>>()
        .map(|ranked| if flag == SearchFlag::Margin { with_margins(&ranked, &split.relevant) } else { ranked })
}

/// Every query's hits with margin flag scores ([`encoder::flag::margins`]), from the same hits
/// flagged by similarity (`similarities`, from [`with_flags`]): as search shows them, and, for
/// false alarms, as they are when the query's partners are not stored (the background then
/// moves up by as many hits as there were partners in the ranking). Hits too few for a
/// background score NaN (never flagged); the corpora measured here are far larger.
pub fn with_margins(similarities: &[Ranked], partners: &[Vec<usize>]) -> Vec<Ranked> {
    similarities
        .iter()
        .zip(partners)
        .map(|(r, partners)| {
            let others: Vec<f64> = r.ids.iter().zip(&r.flag_scores).filter(|(id, _)| !partners.contains(id)).map(|(_, &s)| s).collect();
            let or_nan = |s: &[f64]| margins(s).unwrap_or_else(|| vec![f64::NAN; s.len()]);
            let mut without_partners = or_nan(&others).into_iter();
            let alarm_scores =
                r.ids.iter().map(|id| if partners.contains(id) { f64::NAN } else { without_partners.next().unwrap_or(f64::NAN) }).collect();
            Ranked { flag_scores: or_nan(&r.flag_scores), alarm_scores: Some(alarm_scores), ids: r.ids.clone() }
        })
        .collect()
}

/// The flag threshold search uses for this package (see [`encoder::ModelPackage::judge_hits`]).
fn package_threshold(embedder: &Embedder) -> f64 {
    let p = &embedder.package;
    p.search_probability_threshold()
        .or_else(|| p.search_similarity_threshold())
        .or_else(|| p.search_margin_threshold())
        .unwrap_or(f64::INFINITY)
}

/// The search verdicts of `embedder`'s package on the retrieval task of `pairs`, flagged as the
/// package flags search hits, plus the curve of every flag score the package offers (for
/// calibration) and the margin flag's verdicts (at `margin_threshold`, when given).
pub fn search_verdicts(
    embedder: &Embedder,
    pairs: &[Pair],
    extra_corpus: Option<&[&str]>,
    margin_threshold: Option<f64>,
) -> Result<SearchVerdicts> {
    let split = split_of(pairs, extra_corpus);
    let ranking = rank(embedder, &split)?;
    let flag = embedder.package.search_flag;
    let mut flags = Vec::new();
    let mut own = None;
    let mut by_similarity = Vec::new();
    let mut margin = MarginVerdicts { at_threshold: None, best_at_max_false_alarm: None, curve: Vec::new() };
    for f in SearchFlag::ALL {
        // The margins start from the similarities just computed.
        let ranked = match f {
            SearchFlag::Margin => with_margins(&by_similarity, &split.relevant),
            _ => match with_flags(embedder, &split, &ranking, f) {
                Some(ranked) => ranked,
                None => continue,
            },
        };
        let curve = verdict_curve(&ranked, &split.relevant);
        if f == flag {
            own = Some((verdict_metrics(&ranked, &split.relevant, package_threshold(embedder)), curve.clone()));
        }
        if f == SearchFlag::Margin {
            margin = MarginVerdicts {
                at_threshold: margin_threshold.map(|t| verdict_metrics(&ranked, &split.relevant, t)),
                best_at_max_false_alarm: pick_threshold(&curve, MAX_FALSE_ALARM),
                curve: curve.clone(),
            };
        }
        flags.push(FlagCurve { flag: f, curve });
        if f == SearchFlag::Similarity {
            by_similarity = ranked;
        }
    }
    let (at_package_threshold, curve) = own.expect("a package always offers its own search flag");
    Ok(SearchVerdicts {
        flag_score: flag.describe().to_string(),
        at_package_threshold,
        best_at_max_false_alarm: pick_threshold(&curve, MAX_FALSE_ALARM),
        curve,
        flags,
        margin,
    })
}

/// Stores in `package` (its `metrics.json`) the search flag and threshold with the most
/// detection at false alarm at most `max_false_alarm` on `verdicts`' curves (one per flag score
/// the package offers), and returns them. The curves must come from pairs that choose things
/// (the validation pairs), never from reporting pairs.
pub fn store_search_threshold(package: &ModelPackage, verdicts: &SearchVerdicts, max_false_alarm: f64) -> Result<(SearchFlag, CurvePoint)> {
    let Some((flag, point)) = choose_flag(&verdicts.flags, max_false_alarm) else {
        return Err(TrainError::Training(format!(
            "{}: no search threshold keeps false alarm at or below {max_false_alarm} on these queries; the package is unchanged",
            package.dir.display()
        )));
    };
    let mut metrics = package.metrics.clone();
    metrics["search_threshold"] = serde_json::json!(point.threshold);
    metrics["search_flag"] = serde_json::to_value(flag).map_err(|e| TrainError::Training(e.to_string()))?;
    metrics["search_threshold_chosen_at"] =
        serde_json::json!({"max_false_alarm": max_false_alarm, "detection": point.detection, "false_alarm": point.false_alarm});
    package.update_metrics(&metrics)?;
    Ok((flag, point))
}

/// The flag score and threshold with the most detection at false alarm at most
/// `max_false_alarm`, over the curves of `flags`; on a tie, the earlier flag.
fn choose_flag(flags: &[FlagCurve], max_false_alarm: f64) -> Option<(SearchFlag, CurvePoint)> {
    let mut best: Option<(SearchFlag, CurvePoint)> = None;
    for c in flags {
        if let Some(p) = pick_threshold(&c.curve, max_false_alarm) {
            if best.is_none_or(|(_, b)| p.detection > b.detection) {
                best = Some((c.flag, p));
            }
        }
    }
    best
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
    fn calibration_keeps_the_flag_that_detects_most_within_the_false_alarm_rate() {
        let point = |threshold, detection, false_alarm| CurvePoint { threshold, detection, false_alarm };
        let flags = [
            FlagCurve { flag: SearchFlag::HeadProbability, curve: vec![point(0.9, 0.2, 0.1), point(0.5, 0.5, 0.4)] },
            FlagCurve { flag: SearchFlag::Similarity, curve: vec![point(0.95, 0.25, 0.15), point(0.9, 0.3, 0.3)] },
            FlagCurve { flag: SearchFlag::Margin, curve: vec![point(0.3, 0.3, 0.1), point(0.2, 0.4, 0.2), point(0.1, 0.6, 0.5)] },
        ];
        assert_eq!(choose_flag(&flags, 0.2), Some((SearchFlag::Margin, point(0.2, 0.4, 0.2))));
        // A stricter rate: the margin's first point still detects most.
        assert_eq!(choose_flag(&flags, 0.15), Some((SearchFlag::Margin, point(0.3, 0.3, 0.1))));
        assert_eq!(choose_flag(&flags[..2], 0.15), Some((SearchFlag::Similarity, point(0.95, 0.25, 0.15))));
        // Ties keep the earlier flag; nothing within the rate, nothing chosen.
        assert_eq!(choose_flag(&flags, 0.1).map(|(f, _)| f), Some(SearchFlag::Margin));
        let tied = [FlagCurve { flag: SearchFlag::Similarity, curve: vec![point(0.9, 0.3, 0.1)] }, flags[2].clone()];
        assert_eq!(choose_flag(&tied, 0.1).map(|(f, _)| f), Some(SearchFlag::Similarity));
        assert_eq!(choose_flag(&flags, 0.05), None);
    }

    #[test]
    fn thinning_keeps_both_ends_and_spreads_evenly() {
        let curve: Vec<CurvePoint> =
            (0..101).map(|i| CurvePoint { threshold: 1.0 - i as f64 / 100.0, detection: i as f64 / 100.0, false_alarm: 0.0 }).collect();
        let t = thin(&curve, 5);
        assert_eq!(t.iter().map(|p| p.detection).collect::<Vec<_>>(), [0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(thin(&curve[..3], 5).len(), 3);
    }
}
