//! `annbench`: the approximate index at a scale the corpus cannot fill, on synthetic clustered
//! vectors ([`bench::synthetic`]); `scripts/bench-10m.sh` drives it.
//!
//! `build` writes an index of N synthetic vectors (an i8 or f32 snapshot) and its search graph,
//! through the same library calls as `retrieve index`. `measure` opens them as `retrieve serve`
//! does (mapped snapshot, saved graph), times single queries one after another on one thread,
//! and measures recall@k against exact search over the same stored vectors. Each prints a
//! readable summary on stderr and one JSON object on stdout.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use bench::synthetic::{Clusters, Stream};
use bench::{peak_rss_mib, percentile, rss_mib};
use clap::{Args, Parser, Subcommand};
use rayon::prelude::*;
use retrieve::{Ann, AnnParams, GraphCodes, Index, NewItem, VectorKind};
use serde::Serialize;

/// Build or measure a synthetic index and its approximate-search graph.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write an index of synthetic vectors and its graph (PATH, PATH.hnsw).
    Build(Build),
    /// Time single graph searches and measure recall against exact search.
    Measure(Measure),
}

/// What the vectors are: every item and query is a function of these.
#[derive(Args, Debug, Clone)]
struct Generator {
    /// Vector size.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Topics.
    #[arg(long, default_value_t = 2000)]
    topics: usize,
    /// Sub-topics per topic (items gather around sub-topics).
    #[arg(long, default_value_t = 50)]
    per_topic: usize,
    /// Noise norm of a sub-topic around its topic.
    #[arg(long, default_value_t = 0.8)]
    topic_spread: f32,
    /// Noise norm of an item around its sub-topic.
    #[arg(long, default_value_t = 0.5)]
    spread: f32,
    /// Seed: the same flags give the same vectors.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl Generator {
    fn clusters(&self) -> Clusters {
        Clusters::new(self.dim, self.topics, self.per_topic, self.topic_spread, self.spread, self.seed)
    }

    /// The index's model fingerprint: names the generator, so `measure` draws its queries from
    /// the clusters the index was built from.
    fn fingerprint(&self) -> String {
        let g = self;
        format!(
            "synthetic:dim={},topics={},per_topic={},topic_spread={},spread={},seed={}",
            g.dim, g.topics, g.per_topic, g.topic_spread, g.spread, g.seed
        )
    }
}

#[derive(Args, Debug)]
struct Build {
    /// Where to write the index (must not exist).
    #[arg(long)]
    index: PathBuf,
    /// Items to store.
    #[arg(long, default_value_t = 10_000_000)]
    items: u64,
    /// How the snapshot stores vectors.
    #[arg(long, value_enum, default_value_t = VectorKind::I8)]
    vectors: VectorKind,
    /// Graph links per node (HNSW's M).
    #[arg(long, default_value_t = AnnParams::default().connectivity)]
    connectivity: usize,
    /// Candidates kept while inserting (efConstruction).
    #[arg(long, default_value_t = AnnParams::default().expansion_add)]
    expansion_add: usize,
    /// What the graph keeps of each vector.
    #[arg(long, value_enum, default_value_t = GraphCodes::I8)]
    codes: GraphCodes,
    #[command(flatten)]
    generator: Generator,
}

#[derive(Args, Debug)]
struct Measure {
    /// The index `build` wrote.
    #[arg(long)]
    index: PathBuf,
    /// Timed queries.
    #[arg(long, default_value_t = 2000)]
    queries: usize,
    /// Untimed queries first (page cache and allocator warm-up).
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Queries whose graph hits are compared with exact search.
    #[arg(long, default_value_t = 200)]
    recall_queries: usize,
    /// Hits per query.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Candidates a graph search keeps (HNSW's ef) [default: the library's].
    #[arg(long)]
    ef: Option<usize>,
    /// Fewest graph candidates re-scored per search [default: the library's for the graph's codes].
    #[arg(long)]
    rescored: Option<usize>,
    #[command(flatten)]
    generator: Generator,
}

#[derive(Serialize, Debug)]
struct BuildReport {
    items: usize,
    dim: usize,
    vectors: VectorKind,
    codes: GraphCodes,
    connectivity: usize,
    expansion_add: usize,
    generate_s: f64,
    snapshot_s: f64,
    graph_s: f64,
    snapshot_bytes: u64,
    graph_bytes: u64,
    peak_rss_mib: Option<f64>,
}

#[derive(Serialize, Debug)]
struct MeasureReport {
    items: usize,
    dim: usize,
    vectors: VectorKind,
    codes: GraphCodes,
    k: usize,
    ef: usize,
    rescored: usize,
    open_s: f64,
    rss_after_open_mib: Option<f64>,
    queries: usize,
    p50_ms: Option<f64>,
    p90_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    mean_ms: f64,
    recall_queries: usize,
    recall: f64,
    rss_after_mib: Option<f64>,
    peak_rss_mib: Option<f64>,
    disk_bytes: u64,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Build(b) => build(b),
        Command::Measure(m) => measure(m),
    }
}

fn file_len(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path).with_context(|| format!("{}", path.display()))?.len())
}

fn build(args: Build) -> anyhow::Result<()> {
    ensure!(!args.index.exists(), "{}: exists; choose a new path (this tool writes only files it creates)", args.index.display());
    ensure!(
        args.generator.dim > 0 && args.generator.topics > 0 && args.generator.per_topic > 0,
        "dim, topics and per-topic must be positive"
    );
    let clusters = args.generator.clusters();
    let dim = clusters.dim();
    let n = args.items;

    let t = Instant::now();
    let mut idx = Index::new(&args.generator.fingerprint(), dim);
    idx.header.vectors = args.vectors;
    const CHUNK: u64 = 1 << 16;
    let starts: Vec<u64> = (0..n).step_by(CHUNK as usize).collect();
    // Generated a few chunks at a time on every core, pushed in order.
    for group in starts.chunks(rayon::current_num_threads() * 4) {
        let parts: Vec<Vec<f32>> = group.par_iter().map(|&s| clusters.items(Stream::Stored, s..(s + CHUNK).min(n))).collect();
        for part in parts {
            let items = vec![NewItem { text: String::new(), key: None }; part.len() / dim];
            idx.push(items, &part)?;
        }
    }
    let generate_s = t.elapsed().as_secs_f64();
    eprintln!("generated {n} vectors of {dim} in {generate_s:.1} s");

    let t = Instant::now();
    idx.create(&args.index)?;
    let snapshot_s = t.elapsed().as_secs_f64();
    eprintln!("wrote the {:?} snapshot in {snapshot_s:.1} s", args.vectors);

    let t = Instant::now();
    let params =
        AnnParams { connectivity: args.connectivity, expansion_add: args.expansion_add, codes: args.codes, ..AnnParams::default() };
    let done = AtomicUsize::new(0);
    let step = (idx.len() / 100).max(1);
    let ann = Ann::build(&idx, params, |added| {
        let before = done.fetch_add(added, Ordering::Relaxed);
        if (before + added) / step > before / step {
            eprintln!("graph: {} of {} items, {:.0} s", before + added, idx.len(), t.elapsed().as_secs_f64());
        }
    })?;
    ann.save(&args.index, &idx)?;
    let graph_s = t.elapsed().as_secs_f64();

    let report = BuildReport {
        items: idx.len(),
        dim,
        vectors: args.vectors,
        codes: args.codes,
        connectivity: args.connectivity,
        expansion_add: args.expansion_add,
        generate_s,
        snapshot_s,
        graph_s,
        snapshot_bytes: file_len(&args.index)?,
        graph_bytes: file_len(&Ann::path_for(&args.index))?,
        peak_rss_mib: peak_rss_mib(),
    };
    eprintln!(
        "built: {} items; snapshot {:.2} GB, graph {:.2} GB; graph {graph_s:.0} s; peak RSS {:.0} MiB",
        report.items,
        report.snapshot_bytes as f64 / 1e9,
        report.graph_bytes as f64 / 1e9,
        report.peak_rss_mib.unwrap_or(f64::NAN)
    );
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn measure(args: Measure) -> anyhow::Result<()> {
    ensure!(args.k > 0 && args.queries > 0, "k and queries must be positive");
    let t = Instant::now();
    let idx = Index::load(&args.index)?;
    let want = args.generator.fingerprint();
    if idx.header.fingerprint != want {
        bail!("{}: built from {}, not {want}; give the generator flags `build` had", args.index.display(), idx.header.fingerprint);
    }
    let Some(mut ann) = Ann::load(&args.index, &idx, (idx.header.uid, idx.snapshot_seq()))? else {
        bail!("{}: no current graph beside the index; run `annbench build` again", args.index.display());
    };
    if let Some(ef) = args.ef {
        ann.set_expansion_search(ef);
    }
    if let Some(n) = args.rescored {
        ann.set_rescored(n);
    }
    let open_s = t.elapsed().as_secs_f64();
    let rss_after_open_mib = rss_mib();
    let dim = idx.dim();
    let clusters = args.generator.clusters();
    let total = (args.warmup + args.queries) as u64;
    let queries = clusters.items(Stream::Queries, 0..total);

    // One query at a time on this thread, as a single client sees it (without HTTP and encoding).
    let mut ms = Vec::with_capacity(args.queries);
    let mut approx = Vec::with_capacity(args.queries);
    for (i, q) in queries.chunks(dim).enumerate() {
        let t = Instant::now();
        let hits = ann.top_k(&idx, q, args.k)?;
        let elapsed = t.elapsed().as_secs_f64() * 1e3;
        if i >= args.warmup {
            ms.push(elapsed);
            approx.push(hits);
        }
    }
    let mean_ms = ms.iter().sum::<f64>() / ms.len() as f64;
    ms.sort_by(f64::total_cmp);
    let [p50_ms, p90_ms, p99_ms, max_ms] = [50.0, 90.0, 99.0, 100.0].map(|p| percentile(&ms, p));

    // Recall: the graph's hits against exact search over the same stored vectors.
    let r = args.recall_queries.min(args.queries);
    let timed = &queries[args.warmup * dim..];
    let exact = idx.top_k_batch(&timed[..r * dim], args.k);
    let found: usize = exact
        .iter()
        .zip(&approx)
        .map(|(e, a)| {
            let ids: std::collections::HashSet<u64> = e.iter().map(|h| idx.id(h.index)).collect();
            a.iter().filter(|h| ids.contains(&idx.id(h.index))).count()
        })
        .sum();
    let expected: usize = exact.iter().map(Vec::len).sum();
    let recall = if expected == 0 { 0.0 } else { found as f64 / expected as f64 };

    let disk_bytes =
        [args.index.clone(), Ann::path_for(&args.index), fsio::sibling(&args.index, ".hnsw.json"), fsio::sibling(&args.index, ".journal")]
            .iter()
            .filter(|p| p.exists())
            .map(|p| file_len(p))
            .sum::<anyhow::Result<u64>>()?;
    let report = MeasureReport {
        items: idx.len(),
        dim,
        vectors: idx.header.vectors,
        codes: ann.params().codes,
        k: args.k,
        ef: ann.params().expansion_search,
        rescored: ann.candidates(args.k),
        open_s,
        rss_after_open_mib,
        queries: ms.len(),
        p50_ms,
        p90_ms,
        p99_ms,
        max_ms,
        mean_ms,
        recall_queries: r,
        recall,
        rss_after_mib: rss_mib(),
        peak_rss_mib: peak_rss_mib(),
        disk_bytes,
    };
    let f = |x: Option<f64>| x.unwrap_or(f64::NAN);
    eprintln!(
        "{} items ({:?}, {dim} dims), {:?} graph, ef {}, {} re-scored: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} queries; recall@{} {:.3} over {r}; \
         disk {:.2} GB; RSS {:.0} MiB after open, {:.0} MiB after",
        report.items,
        report.vectors,
        report.codes,
        report.ef,
        report.rescored,
        f(p50_ms),
        f(p99_ms),
        f(max_ms),
        report.queries,
        args.k,
        recall,
        disk_bytes as f64 / 1e9,
        f(rss_after_open_mib),
        f(report.rss_after_mib)
    );
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
