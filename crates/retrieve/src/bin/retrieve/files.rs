//! Commands over whole files: `dedup` (every duplicate pair among many sentences) and `score`
//! (a CSV of pairs).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use encoder::Embedder;
use fsio::{check_output, escape_terminal, warn};
use retrieve::score::{Layout, ScoreOptions};
use retrieve::store::MilvusUrl;
use retrieve::{corpus, dedup, Index, MilvusStore, NewItem};

use crate::cli::Common;
use crate::context::{bar, load_embedder, Output};

/// What `dedup` reads: a file, or every item of a Milvus collection.
pub(crate) enum DedupSource {
    File(PathBuf),
    Milvus(MilvusUrl),
}

/// `retrieve dedup`: mines, clusters and writes the duplicate pairs of `source`.
pub(crate) fn run_dedup(
    common: &Common,
    source: &DedupSource,
    column: Option<&str>,
    threshold: Option<f64>,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let inputs: Vec<&Path> = match source {
        DedupSource::File(f) => vec![f.as_path()],
        DedupSource::Milvus(_) => Vec::new(),
    };
    if let Some(out) = &output {
        check_output(out, &inputs)?;
    }
    let embedder = load_embedder(common)?;
    let file = match source {
        DedupSource::File(f) => f.as_path(),
        DedupSource::Milvus(url) => {
            let store = MilvusStore::open(url)?;
            store.check_model(&embedder.package.fingerprint, embedder.dim())?;
            let mut idx = Index::new(&embedder.package.fingerprint, embedder.dim());
            let pb = bar(common.quiet, None, "reading");
            store.for_each_page(|page| {
                pb.inc(page.len() as u64);
                let mut vectors = Vec::with_capacity(page.len() * embedder.dim());
                let items: Vec<NewItem> = page
                    .into_iter()
                    .map(|(_, text, key, v)| {
                        vectors.extend_from_slice(&v);
                        NewItem { text, key }
                    })
                    .collect();
                idx.push(items, &vectors).map(|_| ())
            })?;
            pb.finish_and_clear();
            return write_dedup(&embedder, &idx, &inputs, threshold, output);
        }
    };
    let idx = if file.extension().is_some_and(|e| e == "idx") {
        let idx = Index::load(file)?;
        idx.check_model(file, &embedder.package.fingerprint, embedder.dim())?;
        idx
    } else {
        let sentences = corpus::read_sentences(file, column)?;
        let pb = bar(common.quiet, Some(sentences.len() as u64), "embedding");
        let idx = corpus::build_index(&embedder, sentences, |n| pb.inc(n as u64))?;
        pb.finish_and_clear();
        idx
    };
    write_dedup(&embedder, &idx, &inputs, threshold, output)
}

/// Each live row's `depth` nearest other live rows (as positions in `live`) with their
/// distances under `energy`, best first: the exact search `retrieve search` runs, with every
/// live row as a query and the row itself left out.
fn nearest_others(idx: &Index, vectors: &[f32], live: &[usize], energy: encoder::Energy, depth: usize) -> Vec<Vec<(usize, f64)>> {
    let d = idx.dim();
    idx.top_k_batch(vectors, depth + 1)
        .into_iter()
        .enumerate()
        .map(|(i, hits)| {
            let query = &vectors[i * d..(i + 1) * d];
            hits.into_iter()
                .filter(|h| h.index != live[i])
                .take(depth)
                .filter_map(|h| {
                    let j = live.binary_search(&h.index).ok()?;
                    Some((j, f64::from(energy.distance_host(query, &vectors[j * d..(j + 1) * d]))))
                })
                .collect()
        })
        .collect()
}

/// Mines the duplicate pairs of `idx`, clusters them and writes the CSV.
fn write_dedup(embedder: &Embedder, idx: &Index, inputs: &[&Path], threshold: Option<f64>, output: Option<PathBuf>) -> anyhow::Result<()> {
    let package = &embedder.package;
    let energy = package.config.energy;
    let (vectors, live) = idx.live_vectors();
    // A package that flags search hits by margin mines the pairs search would flag with each
    // sentence as the query (a margin depends on the query's neighbourhood); otherwise, and
    // whenever --threshold is given, every pair at or above a similarity: the package's search
    // threshold when it judges by similarity, else its pair threshold as a similarity.
    let (pairs, rule) = match (threshold, package.search_margin_threshold()) {
        (None, Some(margin)) => {
            let neighbours = nearest_others(idx, &vectors, &live, energy, package.search_depth(1));
            // Without the head's probabilities: a margin package flags by similarity alone, and
            // falls back to the distance threshold when a collection is too small for a margin.
            let judge = |distances: &[f64]| package.judge_hits(distances, None).into_iter().map(|v| v.duplicate).collect();
            let similarity = |d: f64| energy.similarity_from_distance(d);
            let pairs = dedup::mine_search_pairs(&neighbours, encoder::flag::MARGIN_SKIP, similarity, judge);
            (pairs, format!("margin >= {margin:.3} among each sentence's {} nearest", encoder::flag::MARGIN_SKIP))
        }
        _ => {
            let min_sim = threshold
                .or_else(|| package.search_similarity_threshold())
                .unwrap_or_else(|| energy.similarity_from_distance(package.threshold));
            let pairs = dedup::mine_pairs(&vectors, idx.dim(), min_sim as f32, dedup::MAX_PAIRS)
                .map_err(|most| anyhow::anyhow!("more than {most} pairs have similarity >= {min_sim:.3}; raise --threshold"))?;
            (pairs, format!("similarity >= {min_sim:.3}"))
        }
    };
    let cluster = dedup::clusters(live.len(), &pairs);
    let mut rows: Vec<(usize, &dedup::DupPair)> = pairs.iter().filter_map(|p| cluster[p.i].map(|c| (c, p))).collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.score.total_cmp(&a.1.score)));
    let mut out = Output::open(output, inputs)?;
    {
        let mut w = csv::Writer::from_writer(&mut out);
        w.write_record(["cluster", "row1", "row2", "sentence1", "sentence2", "similarity"])?;
        for (c, p) in &rows {
            w.write_record([
                c.to_string(),
                (p.i + 1).to_string(),
                (p.j + 1).to_string(),
                idx.sentence(live[p.i]).to_string(),
                idx.sentence(live[p.j]).to_string(),
                format!("{:.4}", p.score),
            ])?;
        }
        w.flush()?;
    }
    out.finish()?;
    let n_clusters = cluster.iter().flatten().max().copied().unwrap_or(0);
    warn!("{} duplicate pairs in {} clusters among {} sentences ({rule})", pairs.len(), n_clusters, idx.len());
    Ok(())
}

/// `retrieve score`: scores a CSV of pairs into a new CSV, reporting metrics when labelled.
pub(crate) fn run_score(
    common: &Common,
    file: &Path,
    output: Option<PathBuf>,
    columns: Option<(String, String)>,
    format: Option<String>,
    strict: bool,
    batch_rows: usize,
) -> anyhow::Result<()> {
    if let Some(out) = &output {
        check_output(out, &[file])?;
    }
    let embedder = load_embedder(common)?;
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let layout = match format.as_deref().unwrap_or(if ext == "tsv" { "tsv" } else { "csv" }) {
        "csv" => Layout::Header { delimiter: b',', quoting: true },
        "tsv" => Layout::Header { delimiter: b'\t', quoting: false },
        "qqp" => Layout::Qqp,
        other => bail!("unknown format {other:?} (expected csv, tsv or qqp)"),
    };
    let options = ScoreOptions { columns, strict, batch_rows: batch_rows.max(1), layout };
    let input = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
    let mut out = Output::open(output, &[file])?;
    let pb = bar(common.quiet, None, "scoring");
    let started = Instant::now();
    let name = file.display().to_string();
    let summary = retrieve::score::score_csv(
        std::io::BufReader::new(input),
        &mut out,
        &embedder,
        &options,
        |line, reason| pb.suspend(|| warn!("{}", escape_terminal(&format!("{name}:{line}: {reason}")))),
        |rows| pb.set_position(rows),
    )
    .with_context(|| name.clone())?;
    pb.finish_and_clear();
    out.finish()?;
    let secs = started.elapsed().as_secs_f64();
    warn!(
        "scored {} of {} rows ({} bad) in {:.1}s: {:.0} pairs/s",
        summary.scored,
        summary.rows,
        summary.bad,
        secs,
        summary.scored as f64 / secs.max(1e-9)
    );
    if let Some(m) = summary.metrics {
        let rule = if embedder.package.head.is_some() { "head probability >=" } else { "distance <=" };
        warn!(
            "labels found: accuracy {:.4}  precision {:.4}  recall {:.4}  F1 {:.4}  AP {:.4}  (threshold: {rule} {:.4})",
            m.accuracy, m.precision, m.recall, m.f1, m.average_precision, m.threshold
        );
    }
    Ok(())
}
