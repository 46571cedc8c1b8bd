//! Retrieval metrics: how well each query finds its relevant corpus items.

use serde::{Deserialize, Serialize};

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
    use crate::metrics::tests::close;

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
