//! Scoring labelled pairs with a model: distances, the head's probabilities, correlations with
//! graded labels and retrieval; shared by per-epoch validation and [`evaluate`](crate::evaluate).

use burn::prelude::*;
use data::metrics::{graded_metrics, to_gold_scale, GradedMetrics, RetrievalMetrics, RetrievalSplit};
use data::Pair;
use encoder::embed::embed_texts;
use encoder::loss::POSITIVE_FROM;
use encoder::{Energy, SentenceEncoder, VerdictHead};
use tokenize::WordTokenizer;

use crate::Result;

/// Whether a pair counts as a duplicate: labels are in `[0, 1]`, and graded ones count as
/// genuine from [`POSITIVE_FROM`].
pub(crate) fn is_duplicate(p: &Pair) -> bool {
    p.label >= POSITIVE_FROM
}

/// [`is_duplicate`] of every pair.
pub(crate) fn duplicate_labels(pairs: &[Pair]) -> Vec<bool> {
    pairs.iter().map(is_duplicate).collect()
}

/// Distances between the two sides of `pairs`, with `encoder` in inference mode.
pub fn pair_distances(
    encoder: &SentenceEncoder,
    tokenizer: &WordTokenizer,
    pairs: &[Pair],
    energy: Energy,
    device: &Device,
) -> Result<Vec<f32>> {
    Ok(pair_scores(encoder, None, tokenizer, pairs, energy, device)?.0)
}

/// The energy's distance of every pair and, with a verdict head, the head's probability that
/// the pair is a duplicate; both from one encoding of the pairs.
pub fn pair_scores(
    encoder: &SentenceEncoder,
    head: Option<&VerdictHead>,
    tokenizer: &WordTokenizer,
    pairs: &[Pair],
    energy: Energy,
    device: &Device,
) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
    let texts: Vec<&str> = pairs.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()]).collect();
    let vecs = embed_texts(encoder, tokenizer, &texts, device, 256, |_| {})?;
    let d = encoder.d_output();
    let pair = |i: usize| (&vecs[2 * i * d..(2 * i + 1) * d], &vecs[(2 * i + 1) * d..(2 * i + 2) * d]);
    let distances = (0..pairs.len())
        .map(|i| {
            let (a, b) = pair(i);
            energy.distance_host(a, b)
        })
        .collect();
    let probabilities = head.map(|h| h.probabilities(pairs.len(), pair, device));
    Ok((distances, probabilities))
}

/// Correlations of the predicted similarity with the gold scores; labels are in `[0, 1]` and
/// mapped back onto the gold `range` for the MSE.
pub fn graded_on(distances: &[f32], pairs: &[Pair], energy: Energy, range: (f32, f32)) -> GradedMetrics {
    let range = (f64::from(range.0), f64::from(range.1));
    let predicted: Vec<f64> = distances.iter().map(|&d| to_gold_scale(energy.similarity_from_distance(f64::from(d)), range)).collect();
    let gold: Vec<f64> = pairs.iter().map(|p| range.0 + f64::from(p.label) * (range.1 - range.0)).collect();
    graded_metrics(&predicted, &gold)
}

/// Retrieval quality on `pairs` as sentence-transformers measures it on Quora: every distinct
/// sentence (plus `extra_corpus`) is a corpus entry, every duplicate pair's first sentence a
/// query that must find its partner.
pub fn retrieval_on(
    encoder: &SentenceEncoder,
    tokenizer: &WordTokenizer,
    pairs: &[Pair],
    energy: Energy,
    device: &Device,
    extra_corpus: Option<&[&str]>,
) -> Result<RetrievalMetrics> {
    let mut split = RetrievalSplit::from_pairs(pairs.iter().map(|p| (p.a.as_str(), p.b.as_str(), is_duplicate(p))));
    if let Some(extra) = extra_corpus {
        split.add_to_corpus(extra.iter().copied());
    }
    let texts: Vec<&str> = split.corpus.iter().map(String::as_str).collect();
    let vecs = embed_texts(encoder, tokenizer, &texts, device, 256, |_| {})?;
    let d = encoder.d_output();
    let n = texts.len();
    Ok(split.evaluate(|q| {
        let qv = &vecs[split.queries[q] * d..(split.queries[q] + 1) * d];
        (0..n).map(|i| -energy.distance_host(qv, &vecs[i * d..(i + 1) * d])).collect()
    }))
}
