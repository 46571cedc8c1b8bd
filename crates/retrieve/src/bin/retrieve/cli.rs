//! The command line: every flag and subcommand of `retrieve`, and the parsers of their values.
//! Parsing only; what each command does is in the sibling modules.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Parser, Subcommand};
use encoder::Backend;
use retrieve::store::MilvusUrl;
use retrieve::{AnnParams, GraphCodes, SearchMode, StoreUrl, VectorKind};

/// Find the stored questions nearest to a new one, with duplicate verdicts from a twin-LSTM
/// model.
///
/// With no subcommand, searches the default corpus (datasets/questions.txt, indexed on first
/// use and cached) or the index given with --index:
///
///     retrieve "How can I improve my English speaking?"
///
/// A search hit is flagged "duplicate" by the model's search threshold, chosen on a validation
/// corpus where the candidates are the nearest of many stored questions, on the score that
/// detected most there: the similarity, a verdict head's probability, or the margin (how far
/// the hit's similarity stands above the mean similarity of the query's hits ranked 6 to 15,
/// so a question close to many stored ones is not flagged for all of them). A model without
/// one uses its pair threshold. `score` judges given pairs with the pair threshold, chosen on
/// labelled pairs.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    pub(crate) search: SearchArgs,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// What to look up and where.
#[derive(clap::Args, Debug)]
pub(crate) struct SearchArgs {
    /// The question(s) to look up. A one-word query that is also a command name (index, add,
    /// search, dedup, score, help) is read as that command: write `retrieve search WORD`.
    pub(crate) query: Vec<String>,
    /// How many stored questions to show (at most as many as are stored).
    #[arg(short, long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) k: u64,
    /// Search this index (from `retrieve index`) instead of the default corpus.
    #[arg(long)]
    pub(crate) index: Option<PathBuf>,
    /// Search this store instead: milvus://HOST:PORT/COLLECTION (made by `retrieve index
    /// --store`), or an index path. --index, when given, wins.
    #[arg(long, env = "TWIN_STORE", value_parser = store_url)]
    pub(crate) store: Option<StoreUrl>,
    /// Corpus searched when no --index is given: one question per line.
    #[arg(long, default_value = "datasets/questions.txt")]
    pub(crate) corpus: PathBuf,
    /// exact reads every stored vector; approx asks the index's graph (PATH.hnsw, built by
    /// `retrieve index` for large indexes); auto uses the graph from 50,000 items on when the
    /// index has a current one.
    #[arg(long, value_enum, default_value_t = SearchMode::Auto)]
    pub(crate) search: SearchMode,
    /// Candidates a graph search keeps (HNSW's ef): more recalls more and is slower
    /// [default: the graph's own, set when it was built].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(crate) ef: Option<u64>,
}

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Common {
    /// Model package directory [default: models/quora, shipped with this repository: it ranks
    /// for search, index, add and dedup, flags search hits at its search threshold, and judges
    /// score's pairs with its verdict head].
    #[arg(long, global = true, env = "TWIN_MODEL")]
    pub(crate) model: Option<PathBuf>,
    /// Compute backend: ndarray, flex or wgpu. ndarray and flex both encode on the CPU with the
    /// same host code; wgpu needs a build with `--features wgpu`.
    #[arg(long, global = true, default_value = "flex")]
    pub(crate) backend: Backend,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Embed a text file (one sentence per line) or a CSV column into a new index.
    Index {
        /// Sentences: a text file, or a CSV file with --column.
        file: PathBuf,
        /// CSV column holding the sentences.
        #[arg(long)]
        column: Option<String>,
        /// Where to write the index (default: FILE.idx). An existing file there must be an index;
        /// it is replaced atomically.
        #[arg(long)]
        index: Option<PathBuf>,
        /// Store into a new Milvus collection instead: milvus://HOST:PORT/COLLECTION (never an
        /// existing one). FILE may then also be an index (.idx), whose vectors are copied
        /// without embedding again.
        #[arg(long, value_parser = store_url, conflicts_with = "index")]
        store: Option<StoreUrl>,
        /// Build the approximate-search graph (PATH.hnsw): auto from 50,000 sentences on.
        #[arg(long, value_enum, default_value_t = SearchMode::Auto)]
        graph: SearchMode,
        /// Links per item in the search graph (HNSW's M): fewer make a smaller graph file and a
        /// faster build, but searches can miss many true neighbours; kept when `compact`
        /// rebuilds the graph.
        #[arg(long, default_value_t = AnnParams::default().connectivity as u64, value_parser = clap::value_parser!(u64).range(2..=256))]
        graph_links: u64,
        /// Candidates kept while building the search graph (HNSW's efConstruction): fewer build
        /// faster, and searches then miss more true neighbours.
        #[arg(long, default_value_t = AnnParams::default().expansion_add as u64, value_parser = clap::value_parser!(u64).range(8..=4096))]
        graph_candidates: u64,
        /// What the search graph keeps of each vector: i8 (a byte per value; ranks almost as
        /// exact search does), or b1 (one sign bit per value: a much smaller graph for tens of
        /// millions of sentences; each search then re-scores many more candidates, and can
        /// still miss true neighbours that i8 finds); kept when `compact` rebuilds the graph.
        #[arg(long, value_enum, default_value_t = GraphCodes::I8)]
        graph_codes: GraphCodes,
        /// How the index file stores vectors: f32 (exact), or i8 (one byte per value and a
        /// scale per vector: a quarter of the size, for very large indexes; similarities move
        /// slightly, so a hit right at the duplicate threshold can flip).
        #[arg(long, value_enum, default_value_t = VectorKind::F32, conflicts_with = "store")]
        vectors: VectorKind,
    },
    /// Append sentences to an existing index without re-embedding what it holds.
    Add {
        /// Sentences: a text file, or a CSV file with --column.
        file: PathBuf,
        /// CSV column holding the sentences.
        #[arg(long)]
        column: Option<String>,
        /// The index to extend. Adds are appended to its journal (PATH.journal), not rewritten.
        #[arg(long, required_unless_present = "store")]
        index: Option<PathBuf>,
        /// Milvus instead of a local index: milvus://HOST:PORT/COLLECTION (TWIN_MILVUS_TOKEN,
        /// when set, is sent as the bearer token). --index, when given, wins.
        #[arg(long, env = "TWIN_STORE", value_parser = store_url)]
        store: Option<StoreUrl>,
        /// CSV column holding each sentence's key (your own id for it, shown with each hit).
        #[arg(long)]
        key_column: Option<String>,
    },
    /// Remove items from an index by id (the `id` of search hits in --json output).
    Delete {
        /// The ids to remove.
        #[arg(required = true)]
        ids: Vec<u64>,
        /// The index.
        #[arg(long, required_unless_present = "store")]
        index: Option<PathBuf>,
        /// Milvus instead of a local index: milvus://HOST:PORT/COLLECTION (TWIN_MILVUS_TOKEN,
        /// when set, is sent as the bearer token). --index, when given, wins.
        #[arg(long, env = "TWIN_STORE", value_parser = store_url)]
        store: Option<StoreUrl>,
    },
    /// Fold an index's journal (adds and removals) into a new snapshot, and refresh its graph.
    Compact {
        /// The index.
        #[arg(long)]
        index: PathBuf,
    },
    /// Search an index, or the default corpus (same as giving the query without a subcommand).
    Search(SearchArgs),
    /// Find the duplicate pairs among the sentences, grouped into clusters (CSV).
    Dedup {
        /// Sentences: a text file, a CSV file with --column, or an index (.idx).
        #[arg(required_unless_present = "store")]
        file: Option<PathBuf>,
        /// Every item of a Milvus collection instead: milvus://HOST:PORT/COLLECTION (rows are
        /// numbered in id order).
        #[arg(long, value_parser = store_url, conflicts_with = "file")]
        store: Option<StoreUrl>,
        /// CSV column holding the sentences.
        #[arg(long)]
        column: Option<String>,
        /// Minimum similarity of a duplicate, between -1 and 1, over every pair. Without it,
        /// pairs are judged as search judges hits: a model that flags search hits by margin
        /// keeps the pairs it flags among each sentence's 5 nearest (either way round); one that
        /// flags by similarity keeps every pair at or above its search threshold; one without
        /// a search threshold uses its pair threshold.
        #[arg(long, value_parser = similarity)]
        threshold: Option<f64>,
        /// Output CSV (default: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Score a CSV of sentence pairs: adds similarity, is_duplicate and error columns (and
    /// duplicate_probability, which then decides is_duplicate, with a model that has a verdict
    /// head, as the default model does).
    Score {
        /// The pairs: CSV/TSV with a header, or the Quora TSV with --format qqp.
        file: PathBuf,
        /// Output CSV (default: standard output). Written atomically.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The two sentence columns, by header name: --columns question1,question2.
        #[arg(long, value_parser = column_pair, value_name = "A,B")]
        columns: Option<(String, String)>,
        /// Input layout: csv, tsv, or qqp (label, q1, q2, id; no header). Default from extension.
        #[arg(long)]
        format: Option<String>,
        /// Stop at the first bad row instead of reporting it and going on.
        #[arg(long)]
        strict: bool,
        /// Rows per batch.
        #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..=retrieve::score::MAX_BATCH_ROWS as u64))]
        batch_rows: u64,
    },
    /// Serve search, pair verdicts and adds over HTTP (JSON), with the model and index loaded
    /// once: POST /search, POST /score, POST /items, GET /health, GET /metrics. Stops on SIGTERM or
    /// Ctrl-C after the requests in flight.
    #[cfg(feature = "serve")]
    Serve {
        /// The index to serve; POST /items appends to it (default: the shipped corpus's cached
        /// index, served read-only).
        #[arg(long)]
        index: Option<PathBuf>,
        /// Milvus instead of a local index: milvus://HOST:PORT/COLLECTION (TWIN_MILVUS_TOKEN,
        /// when set, is sent as the bearer token). --index, when given, wins.
        #[arg(long, env = "TWIN_STORE", value_parser = store_url)]
        store: Option<StoreUrl>,
        /// Address to listen on. Any address but loopback needs --token.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        /// Bearer token every request must carry (Authorization: Bearer TOKEN).
        #[arg(long, env = "TWIN_SERVE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Largest k of a search.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        max_k: u64,
        /// Most queries, pairs or items per request.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        max_batch: u64,
        /// Largest request body in bytes.
        #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
        max_body_bytes: u64,
        /// How to search: approx builds the graph at start when the index has none.
        #[arg(long, value_enum, default_value_t = SearchMode::Auto)]
        search: SearchMode,
        /// Candidates a graph search keeps (HNSW's ef) [default: the graph's own].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        ef: Option<u64>,
        /// How long a search waits for others to share its encoding and search batch, in
        /// microseconds (0: no batching).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=100_000))]
        batch_window_us: u64,
    },
}

/// `--columns A,B`: two column names.
fn column_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once(',') {
        Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() && !b.contains(',') => {
            Ok((a.trim().to_string(), b.trim().to_string()))
        }
        _ => Err(format!("expected two column names separated by a comma, e.g. question1,question2; got {s:?}")),
    }
}

/// `--store`: a Milvus address or an index path.
fn store_url(s: &str) -> Result<StoreUrl, String> {
    s.parse().map_err(|e: retrieve::RetrieveError| e.to_string())
}

/// The local index or the Milvus collection a command writes to: `--index` or `--store`.
pub(crate) enum Target {
    Local(PathBuf),
    Milvus(MilvusUrl),
}

pub(crate) fn target(index: Option<PathBuf>, store: Option<StoreUrl>) -> anyhow::Result<Target> {
    match (index, store) {
        (Some(p), _) | (None, Some(StoreUrl::Local(p))) => Ok(Target::Local(p)),
        (None, Some(StoreUrl::Milvus(m))) => Ok(Target::Milvus(m)),
        (None, None) => bail!("give --index PATH or --store milvus://HOST:PORT/COLLECTION"),
    }
}

/// `--threshold`: a finite similarity in [-1, 1].
fn similarity(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && (-1.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s} is not a similarity between -1 and 1"))
    }
}
