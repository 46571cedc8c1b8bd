//! Search answers as typed values, judged once and rendered to text (for people) or JSON (for
//! programs) from the same values.

use std::io::Write;
use std::path::PathBuf;

use encoder::Embedder;
use serde::Serialize;

use crate::{Ann, Index, Result, Store, StoredHit};

/// One stored sentence found for a query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    /// 1-based rank.
    pub rank: usize,
    /// The stored item's id (stable: adds and removals do not change it).
    pub id: u64,
    /// The key the item was stored with, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The stored sentence.
    pub sentence: String,
    /// The energy's similarity to the query (cosine for unit vectors).
    pub similarity: f64,
    /// The package's verdict on a search hit ([`encoder::ModelPackage::judge_hits`]).
    pub duplicate: bool,
    /// How far the similarity stands above the query's background (the mean similarity of its
    /// hits ranked 6 to 15), for packages that flag search hits by margin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    /// The verdict head's probability, for packages with a head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_probability: Option<f32>,
}

/// The hits of one query, best first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryHits {
    /// The query as given.
    pub query: String,
    /// Its hits.
    pub results: Vec<SearchHit>,
}

/// What a search answers, with the rule its verdicts used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchReport {
    /// The model package that judged.
    pub model: PathBuf,
    /// Hits at or above this similarity are duplicates (packages that flag by similarity;
    /// `null` for the others).
    pub duplicate_if_similarity_at_least: Option<f64>,
    /// Hits whose margin is at least this are duplicates (packages that flag by margin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_if_margin_at_least: Option<f64>,
    /// Hits whose head probability is at least this are duplicates (packages with a head).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_if_probability_at_least: Option<f64>,
    /// One entry per query, in order.
    pub queries: Vec<QueryHits>,
}

impl SearchReport {
    /// Searches `index` for the `k` nearest stored sentences of each query and judges each hit.
    /// Ranking is by the energy; hits are flagged by the package's search flag (which may rank
    /// deeper than `k`, see [`encoder::ModelPackage::search_depth`]). With a graph, candidates
    /// come from it ([`Ann::top_k`]); without, search is exact.
    pub fn build(embedder: &Embedder, index: &Index, ann: Option<&Ann>, queries: &[String], k: usize) -> Result<Self> {
        let texts: Vec<&str> = queries.iter().map(String::as_str).collect();
        let qv = embedder.embed(&texts)?;
        Self::from_vectors(embedder, index, ann, queries, &qv, k)
    }

    /// [`build`](Self::build) for queries already embedded (`qv`: one row per query), e.g. a
    /// batch of several requests embedded at once.
    pub fn from_vectors(embedder: &Embedder, index: &Index, ann: Option<&Ann>, queries: &[String], qv: &[f32], k: usize) -> Result<Self> {
        let d = embedder.dim();
        let depth = embedder.package.search_depth(k);
        let all_hits = match ann {
            Some(ann) => qv.chunks(d).map(|q| ann.top_k(index, q, depth)).collect::<Result<Vec<_>>>()?,
            None => index.top_k_batch(qv, depth),
        };
        let stored = all_hits
            .iter()
            .map(|hits| {
                hits.iter()
                    .map(|h| StoredHit {
                        id: index.id(h.index),
                        key: index.key(h.index).map(str::to_string),
                        sentence: index.sentence(h.index).to_string(),
                        score: h.score,
                        vector: index.vector(h.index).to_vec(),
                    })
                    .collect()
            })
            .collect();
        Ok(Self::judge(embedder, queries, qv, stored, k))
    }

    /// Searches `store` for the `k` nearest stored items of each query (`qv`: one row per query)
    /// and judges each hit.
    pub fn from_store(embedder: &Embedder, store: &dyn Store, queries: &[String], qv: &[f32], k: usize) -> Result<Self> {
        let hits = store.search(qv, embedder.dim(), embedder.package.search_depth(k))?;
        Ok(Self::judge(embedder, queries, qv, hits, k))
    }

    /// Judges found items (each query's, best first): the energy's similarity and the
    /// package's search verdict from each query's vector and the stored vector, so that every
    /// store gives the same verdicts for the same hits; then keeps each query's first `k`.
    pub fn judge(embedder: &Embedder, queries: &[String], qv: &[f32], all_hits: Vec<Vec<StoredHit>>, k: usize) -> Self {
        let package = &embedder.package;
        let energy = package.config.energy;
        let d = embedder.dim();
        let mut out = Vec::with_capacity(queries.len());
        for ((qi, query), hits) in queries.iter().enumerate().zip(all_hits) {
            let qvec = &qv[qi * d..(qi + 1) * d];
            let probabilities = embedder.head_probabilities(hits.len(), |i| (qvec, hits[i].vector.as_slice()));
            let probabilities = probabilities.as_ref().map(|(p, _)| p.as_slice());
            let distances: Vec<f64> = hits.iter().map(|h| f64::from(energy.distance_host(qvec, &h.vector))).collect();
            let verdicts = package.judge_hits(&distances, probabilities);
            let results = hits
                .into_iter()
                .zip(verdicts)
                .take(k)
                .enumerate()
                .map(|(rank, (h, verdict))| SearchHit {
                    rank: rank + 1,
                    id: h.id,
                    key: h.key,
                    sentence: h.sentence,
                    similarity: verdict.similarity,
                    duplicate: verdict.duplicate,
                    margin: verdict.margin,
                    duplicate_probability: probabilities.map(|p| p[rank]),
                })
                .collect();
            out.push(QueryHits { query: query.clone(), results });
        }
        Self {
            model: package.dir.clone(),
            duplicate_if_similarity_at_least: package.search_similarity_threshold(),
            duplicate_if_margin_at_least: package.search_margin_threshold(),
            duplicate_if_probability_at_least: package.search_probability_threshold(),
            queries: out,
        }
    }

    /// The human form: each query, then one line per hit. Queries and sentences are shown with
    /// control characters escaped, so a stored sentence can neither break its line nor drive
    /// the terminal.
    pub fn write_text(&self, w: &mut impl Write) -> std::io::Result<()> {
        for q in &self.queries {
            writeln!(w, "{}", fsio::escape_terminal(&q.query))?;
            for h in &q.results {
                writeln!(
                    w,
                    "{:>3}. {:.3}  {:<13}  {}",
                    h.rank,
                    h.similarity,
                    if h.duplicate { "duplicate" } else { "not duplicate" },
                    fsio::escape_terminal(&h.sentence)
                )?;
            }
        }
        Ok(())
    }

    /// The machine form: pretty JSON and a newline.
    pub fn write_json(&self, w: &mut impl Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut *w, self)?;
        writeln!(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> SearchReport {
        SearchReport {
            model: PathBuf::from("m"),
            duplicate_if_similarity_at_least: Some(0.8),
            duplicate_if_margin_at_least: None,
            duplicate_if_probability_at_least: None,
            queries: vec![QueryHits {
                query: "q\u{1b}[2J".into(),
                results: vec![
                    SearchHit {
                        rank: 1,
                        id: 4,
                        key: Some("row-4".into()),
                        sentence: "a\n  2. 0.999  duplicate      forged".into(),
                        similarity: 0.91234,
                        duplicate: true,
                        margin: None,
                        duplicate_probability: None,
                    },
                    SearchHit {
                        rank: 10,
                        id: 9,
                        key: None,
                        sentence: "b".into(),
                        similarity: 0.5,
                        duplicate: false,
                        margin: None,
                        duplicate_probability: None,
                    },
                ],
            }],
        }
    }

    #[test]
    fn text_is_one_line_per_hit_with_controls_escaped() {
        let mut out = Vec::new();
        report().write_text(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "q\\u{1b}[2J\n  1. 0.912  duplicate      a\\n  2. 0.999  duplicate      forged\n 10. 0.500  not duplicate  b\n");
    }

    #[test]
    fn json_keeps_the_fields_and_the_raw_text() {
        let mut out = Vec::new();
        report().write_json(&mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["queries"][0]["results"][0]["sentence"], "a\n  2. 0.999  duplicate      forged");
        assert_eq!(v["queries"][0]["results"][1]["rank"], 10);
        assert_eq!(
            (&v["queries"][0]["results"][0]["id"], &v["queries"][0]["results"][0]["key"]),
            (&serde_json::json!(4), &serde_json::json!("row-4"))
        );
        assert!(v["queries"][0]["results"][1].get("key").is_none());
        assert_eq!(v["duplicate_if_similarity_at_least"], 0.8);
        assert!(v.get("duplicate_if_probability_at_least").is_none());
        assert!(v["queries"][0]["results"][0].get("duplicate_probability").is_none());
    }
}
