//! The recall gate of approximate search: on real sentence vectors (the shipped model over the
//! shipped questions and paraphrases made from them), the default (i8) graph's top 10 must hold
//! at least 95% of exact search's top 10, and every graph hit must be scored exactly. The b1
//! graph, chosen only where disk decides, is held to a lower floor (its measured recall is in
//! docs/performance.md).

mod common;

use common::repo;
use encoder::{Embedder, ModelPackage};
use retrieve::{Ann, AnnParams, GraphCodes, Index};

/// Deterministic rewrites of a question: a word dropped, two words swapped, a word repeated,
/// lower case without the question mark, and a few common prefixes.
fn paraphrases(q: &str) -> Vec<String> {
    let words: Vec<&str> = q.split_whitespace().collect();
    let n = words.len();
    let mut out = Vec::new();
    if n < 3 {
        return out;
    }
    for i in [0, n / 2, n - 1] {
        let mut w = words.clone();
        w.remove(i);
        out.push(w.join(" "));
    }
    for i in [0, n / 2] {
        let mut w = words.clone();
        w.swap(i, (i + 1).min(n - 1));
        out.push(w.join(" "));
        let mut w = words.clone();
        w.insert(i, words[i]);
        out.push(w.join(" "));
    }
    out.push(q.to_lowercase().trim_end_matches('?').to_string());
    for prefix in ["Can you tell me", "I wonder:", "Quick question:"] {
        out.push(format!("{prefix} {q}"));
    }
    out
}

#[test]
fn graph_search_recalls_exact_search() {
    let questions: Vec<String> = std::fs::read_to_string(repo().join("datasets/questions.txt"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    // Every 10th question is a query, held out of the stored set with its paraphrases.
    let (queries, stored): (Vec<_>, Vec<_>) = questions.iter().enumerate().partition(|(i, _)| i.is_multiple_of(10));
    let mut sentences: Vec<String> = Vec::new();
    for (_, q) in &stored {
        sentences.push(q.to_string());
        sentences.extend(paraphrases(q));
    }
    let queries: Vec<&str> = queries.iter().map(|(_, q)| q.as_str()).collect();
    assert!(sentences.len() > 15_000, "{}", sentences.len());

    let embedder = Embedder::new(ModelPackage::load(&repo().join("models/quora")).unwrap());
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let vectors = embedder.embed(&texts).unwrap();
    let mut index = Index::new(&embedder.package.fingerprint, embedder.dim());
    index.extend(sentences.clone(), &vectors).unwrap();
    let qv = embedder.embed(&queries).unwrap();
    let k = 10;
    let exact = index.top_k_batch(&qv, k);
    for (codes, floor) in [(GraphCodes::I8, 0.95), (GraphCodes::B1, 0.90)] {
        let ann = Ann::build(&index, AnnParams { codes, ..AnnParams::default() }, |_| {}).unwrap();
        assert_eq!(ann.len(), sentences.len());
        let recall = recall_at(&ann, &index, &qv, &exact, embedder.dim(), k);
        eprintln!("{codes:?} graph: recall@{k} = {recall:.4} over {} queries, {} stored", queries.len(), sentences.len());
        assert!(recall >= floor, "{codes:?} graph: recall@{k} {recall:.4} < {floor}");
    }
}

/// The share of exact search's top `k` that the graph's top `k` holds, over the queries `qv`.
fn recall_at(ann: &Ann, index: &Index, qv: &[f32], exact: &[Vec<retrieve::Hit>], dim: usize, k: usize) -> f64 {
    let (mut found, mut total) = (0, 0);
    for (q, want) in qv.chunks(dim).zip(exact) {
        let got = ann.top_k(index, q, k).unwrap();
        assert_eq!(got.len(), k);
        for h in &got {
            // Scores are exact, whichever path found the hit.
            let exact_score: f32 = index.vector(h.index).iter().zip(q).map(|(a, b)| a * b).sum();
            assert!((h.score - exact_score).abs() < 1e-5);
        }
        found += want.iter().filter(|w| got.iter().any(|g| g.index == w.index)).count();
        total += want.len();
    }
    found as f64 / total as f64
}
