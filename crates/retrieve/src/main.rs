//! `retrieve`: nearest stored questions, duplicate verdicts, indexing, dedup and CSV scoring.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use encoder::{Backend, Embedder, ModelPackage};
use fsio::{check_output, escape_terminal, warn};
use indicatif::{ProgressBar, ProgressStyle};
use retrieve::score::{Layout, ScoreOptions};
use retrieve::store::MilvusUrl;
use retrieve::{corpus, dedup, Ann, AnnParams, Index, LocalStore, MilvusStore, NewItem, SearchMode, SearchReport, Store, StoreUrl};

/// Find the stored questions nearest to a new one, with duplicate verdicts from a twin-LSTM
/// model.
///
/// With no subcommand, searches the default corpus (datasets/questions.txt, indexed on first
/// use and cached) or the index given with --index:
///
///     retrieve "How can I improve my English speaking?"
///
/// A search hit is flagged "duplicate" by the model's search threshold, chosen on a validation
/// corpus where the candidates are the nearest of many stored questions; a model without one
/// uses its pair threshold. `score` judges given pairs with the pair threshold, chosen on
/// labelled pairs.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    search: SearchArgs,
    #[command(flatten)]
    common: Common,
}

/// What to look up and where.
#[derive(clap::Args, Debug)]
struct SearchArgs {
    /// The question(s) to look up. A one-word query that is also a command name (index, add,
    /// search, dedup, score, help) is read as that command: write `retrieve search WORD`.
    query: Vec<String>,
    /// How many stored questions to show (at most as many as are stored).
    #[arg(short, long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    k: u64,
    /// Search this index (from `retrieve index`) instead of the default corpus.
    #[arg(long)]
    index: Option<PathBuf>,
    /// Search this store instead: milvus://HOST:PORT/COLLECTION (made by `retrieve index
    /// --store`), or an index path. --index, when given, wins.
    #[arg(long, env = "TWIN_STORE", value_parser = store_url)]
    store: Option<StoreUrl>,
    /// Corpus searched when no --index is given: one question per line.
    #[arg(long, default_value = "datasets/questions.txt")]
    corpus: PathBuf,
    /// exact reads every stored vector; approx asks the index's graph (PATH.hnsw, built by
    /// `retrieve index` for large indexes); auto uses the graph from 50,000 items on when the
    /// index has a current one.
    #[arg(long, value_enum, default_value_t = SearchMode::Auto)]
    search: SearchMode,
    /// Candidates a graph search keeps (HNSW's ef): more recalls more and is slower
    /// [default: the graph's own, set when it was built].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    ef: Option<u64>,
}

#[derive(clap::Args, Debug, Clone)]
struct Common {
    /// Model package directory [default: models/quora, shipped with this repository: it ranks
    /// for search, index, add and dedup, flags search hits at its search threshold, and judges
    /// score's pairs with its verdict head].
    #[arg(long, global = true, env = "TWIN_MODEL")]
    model: Option<PathBuf>,
    /// Compute backend: ndarray, flex or wgpu. ndarray and flex both encode on the CPU with the
    /// same host code; wgpu needs a build with `--features wgpu`.
    #[arg(long, global = true, default_value = "flex")]
    backend: Backend,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    /// Find every pair of sentences above the duplicate threshold, grouped into clusters (CSV).
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
        /// Minimum similarity of a duplicate, between -1 and 1 (default: the model's search
        /// threshold when it judges by similarity, else its pair threshold).
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

/// A default path given relative to the repository also works from any directory inside it.
fn locate(path: &Path) -> PathBuf {
    if path.exists() || path.is_absolute() {
        return path.to_path_buf();
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidate = repo.join(path);
    if candidate.exists() {
        candidate
    } else {
        path.to_path_buf()
    }
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
enum Target {
    Local(PathBuf),
    Milvus(MilvusUrl),
}

fn target(index: Option<PathBuf>, store: Option<StoreUrl>) -> anyhow::Result<Target> {
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

fn bar(quiet: bool, len: Option<u64>, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let (bar, template) = match len {
        Some(n) => (ProgressBar::new(n), "{msg} [{bar:30.cyan/blue}] {pos}/{len} ({per_sec}, {eta})"),
        None => (ProgressBar::new_spinner(), "{msg} {spinner} {pos} rows ({per_sec})"),
    };
    bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_message(what.to_string());
    bar
}

/// The shipped model every command uses unless `--model` names another: one package ranks,
/// flags search hits (at its search threshold) and judges pairs (with its verdict head).
const DEFAULT_MODEL: &str = "models/quora";

/// `--model` (or `TWIN_MODEL`) when given, else the shipped model.
fn model_for(given: Option<&Path>) -> PathBuf {
    given.map_or_else(|| PathBuf::from(DEFAULT_MODEL), Path::to_path_buf)
}

/// The writers' lock of the index at `path`, saying so when another writer holds it.
fn lock_index(path: &Path) -> retrieve::Result<fsio::WriterLock> {
    Index::lock(path, |l| warn!("waiting for another writer of {} ({})", path.display(), l.display()))
}

fn load_embedder(common: &Common) -> anyhow::Result<Embedder> {
    let package = ModelPackage::load(&locate(&model_for(common.model.as_deref())))?;
    Embedder::for_backend(package, common.backend).map_err(anyhow::Error::msg)
}

fn main() -> ExitCode {
    fsio::exit(run())
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let common = cli.common.clone();
    match cli.command {
        None => run_search(&common, &cli.search),
        Some(Command::Search(args)) => run_search(&common, &args),
        Some(Command::Index { file, column, index, store, graph }) => {
            let index = match store {
                Some(StoreUrl::Milvus(url)) => return run_index_milvus(&common, &file, column.as_deref(), &url),
                Some(StoreUrl::Local(p)) => Some(p),
                None => index,
            };
            let out = index.unwrap_or_else(|| file.with_extension("idx"));
            check_output(&out, &[&file])?;
            if out.exists() && Index::read_header(&out).is_err() {
                bail!("{}: exists and is not an index; refusing to replace it (choose another --index)", out.display());
            }
            let embedder = load_embedder(&common)?;
            let sentences = corpus::read_sentences(&file, column.as_deref())?;
            let pb = bar(common.quiet, Some(sentences.len() as u64), "embedding");
            let mut idx = corpus::build_index(&embedder, sentences, |n| pb.inc(n as u64))?;
            pb.finish_and_clear();
            idx.header.source_hash = Some(corpus::file_hash(&file)?);
            let _lock = lock_index(&out)?;
            idx.create(&out)?;
            if graph.uses_graph(idx.len()) {
                build_graph(&common, &out, &idx)?;
            }
            warn!("indexed {} sentences into {}", idx.len(), escape_terminal(&out.display().to_string()));
            Ok(())
        }
        Some(Command::Add { file, column, index, store, key_column }) => {
            let target = target(index, store)?;
            let embedder = load_embedder(&common)?;
            // Fail fast on the wrong model (or an unreachable store), before embedding anything.
            let milvus = match &target {
                Target::Local(index) => {
                    check_output(index, &[&file])?;
                    let header = Index::read_header(index)?;
                    retrieve::index::check_model(&header, index, &embedder.package.fingerprint, embedder.dim())?;
                    None
                }
                Target::Milvus(url) => {
                    let store = MilvusStore::open(url)?;
                    store.check_model(&embedder.package.fingerprint, embedder.dim())?;
                    Some(store)
                }
            };
            let sentences = corpus::read_sentences(&file, column.as_deref())?;
            let keys = match &key_column {
                Some(k) => corpus::read_sentences(&file, Some(k))?.into_iter().map(Some).collect(),
                None => vec![None; sentences.len()],
            };
            if keys.len() != sentences.len() {
                bail!("{}: {} sentences but {} keys", file.display(), sentences.len(), keys.len());
            }
            let pb = bar(common.quiet, Some(sentences.len() as u64), "embedding");
            let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
            let vectors = embedder.embed_with_progress(&texts, |n| pb.inc(n as u64))?;
            pb.finish_and_clear();
            let items: Vec<NewItem> = sentences.into_iter().zip(keys).map(|(text, key)| NewItem { text, key }).collect();
            let index = match (target, milvus) {
                (Target::Milvus(url), Some(store)) => {
                    let pb = bar(common.quiet, Some(items.len() as u64), "storing");
                    let ids = store.insert(&items, &vectors, |n| pb.inc(n as u64))?;
                    pb.finish_and_clear();
                    warn!("added {} sentences{}; {url} now holds {}", ids.len(), id_range(&ids), store.count()?);
                    return Ok(());
                }
                (Target::Local(index), _) => index,
                (Target::Milvus(_), None) => unreachable!("opened above"),
            };
            // Appended to the journal under the index's lock, after taking in what other
            // writers appended, so concurrent adds each get their own ids and none is lost.
            let _lock = lock_index(&index)?;
            let mut idx = Index::load(&index)?;
            idx.check_model(&index, &embedder.package.fingerprint, embedder.dim())?;
            let ids = idx.append(&index, items, &vectors)?;
            warn!(
                "added {} sentences{}; {} now holds {}",
                ids.len(),
                id_range(&ids),
                escape_terminal(&index.display().to_string()),
                idx.len()
            );
            Ok(())
        }
        Some(Command::Delete { ids, index, store }) => {
            let index = match target(index, store)? {
                Target::Local(index) => index,
                Target::Milvus(url) => {
                    let store = MilvusStore::open(&url)?;
                    let removed = store.delete(&ids)?;
                    let missing: Vec<String> = ids.iter().filter(|i| !removed.contains(i)).map(u64::to_string).collect();
                    warn!("removed {} items; {url} now holds {}", removed.len(), store.count()?);
                    if !missing.is_empty() {
                        bail!("no item with id {} in {url}", missing.join(", "));
                    }
                    return Ok(());
                }
            };
            let _lock = lock_index(&index)?;
            let mut idx = Index::load(&index)?;
            let removed = idx.delete(&index, &ids)?;
            let missing: Vec<String> = ids.iter().filter(|i| !removed.contains(i)).map(u64::to_string).collect();
            warn!("removed {} items; {} now holds {}", removed.len(), escape_terminal(&index.display().to_string()), idx.len());
            if !missing.is_empty() {
                bail!("no item with id {} in {}", missing.join(", "), index.display());
            }
            Ok(())
        }
        Some(Command::Compact { index }) => {
            let _lock = lock_index(&index)?;
            let mut idx = Index::load(&index)?;
            idx.compact(&index)?;
            if SearchMode::Auto.uses_graph(idx.len()) || Ann::path_for(&index).exists() {
                build_graph(&common, &index, &idx)?;
            }
            warn!("compacted {}: {} items", escape_terminal(&index.display().to_string()), idx.len());
            Ok(())
        }
        Some(Command::Dedup { file, column, store, threshold, output }) => {
            let source = match (file, store) {
                (_, Some(StoreUrl::Milvus(url))) => DedupSource::Milvus(url),
                (Some(file), _) | (None, Some(StoreUrl::Local(file))) => DedupSource::File(file),
                (None, None) => bail!("give a FILE or --store milvus://HOST:PORT/COLLECTION"),
            };
            run_dedup(&common, &source, column.as_deref(), threshold, output)
        }
        Some(Command::Score { file, output, columns, format, strict, batch_rows }) => {
            run_score(&common, &file, output, columns, format, strict, batch_rows as usize)
        }
        #[cfg(feature = "serve")]
        Some(Command::Serve { index, store, addr, token, max_k, max_batch, max_body_bytes, search, ef, batch_window_us }) => {
            let options = retrieve::serve::ServeOptions {
                max_body_bytes: max_body_bytes as usize,
                max_k: max_k as usize,
                max_batch: max_batch as usize,
                token,
                batch_window: std::time::Duration::from_micros(batch_window_us),
            };
            let target = match (index, store) {
                (None, None) => None,
                (index, store) => Some(target(index, store)?),
            };
            run_serve(&common, target, &cli.search.corpus, addr, options, search, ef)
        }
    }
}

#[cfg(feature = "serve")]
fn run_serve(
    common: &Common,
    target: Option<Target>,
    corpus: &Path,
    addr: std::net::SocketAddr,
    options: retrieve::serve::ServeOptions,
    search: SearchMode,
    ef: Option<u64>,
) -> anyhow::Result<()> {
    if retrieve::serve::needs_token(&addr) && options.token.is_none() {
        bail!("{addr} is not a loopback address: give --token (or TWIN_SERVE_TOKEN) so that only your clients get in");
    }
    let embedder = load_embedder(common)?;
    let store: Box<dyn Store> = match target {
        Some(Target::Milvus(url)) => {
            let store = MilvusStore::open(&url)?;
            store.check_model(&embedder.package.fingerprint, embedder.dim())?;
            Box::new(store)
        }
        Some(Target::Local(path)) => {
            // Opened under the writers' lock, so that a compaction elsewhere is seen whole or
            // not at all.
            let lock = lock_index(&path)?;
            let idx = load_index(common, &embedder, Some(&path), corpus)?;
            let ann = if search.uses_graph(idx.len()) { open_graph(common, &path, &idx, true, ef)? } else { None };
            drop(lock);
            Box::new(LocalStore::new(idx, ann, Some(path), ef.map(|e| e as usize)))
        }
        None => Box::new(LocalStore::new(load_index(common, &embedder, None, corpus)?, None, None, None)),
    };
    let state = retrieve::serve::AppState::new(embedder, store, options);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        warn!("listening on http://{} (POST /search, /score, /items; GET /health, /metrics)", listener.local_addr()?);
        retrieve::serve::serve(listener, state, retrieve::serve::shutdown_signal()).await?;
        warn!("stopped");
        anyhow::Ok(())
    })
}

/// `(ids a..=b)` for a message about added items.
fn id_range(ids: &[u64]) -> String {
    match (ids.first(), ids.last()) {
        (Some(a), Some(b)) => format!(" (ids {a}..={b})"),
        _ => String::new(),
    }
}

/// `retrieve index FILE --store milvus://…`: a new collection filled from a sentence file
/// (embedded here) or from a local index (its vectors copied).
fn run_index_milvus(common: &Common, file: &Path, column: Option<&str>, url: &MilvusUrl) -> anyhow::Result<()> {
    // Before embedding anything: the server answers and the collection is new.
    MilvusStore::check_absent(url)?;
    let (fingerprint, dim, items, vectors) = if file.extension().is_some_and(|e| e == "idx") {
        let idx = Index::load(file)?;
        let (vectors, live) = idx.live_vectors();
        let items: Vec<NewItem> =
            live.iter().map(|&r| NewItem { text: idx.sentence(r).to_string(), key: idx.key(r).map(str::to_string) }).collect();
        (idx.header.fingerprint.clone(), idx.dim(), items, vectors.into_owned())
    } else {
        let embedder = load_embedder(common)?;
        let sentences = corpus::read_sentences(file, column)?;
        let pb = bar(common.quiet, Some(sentences.len() as u64), "embedding");
        let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
        let vectors = embedder.embed_with_progress(&texts, |n| pb.inc(n as u64))?;
        pb.finish_and_clear();
        let items = sentences.into_iter().map(|text| NewItem { text, key: None }).collect();
        (embedder.package.fingerprint.clone(), embedder.dim(), items, vectors)
    };
    let store = MilvusStore::create(url, &fingerprint, dim)?;
    let pb = bar(common.quiet, Some(items.len() as u64), "storing");
    let started = Instant::now();
    let ids = store.insert(&items, &vectors, |n| pb.inc(n as u64))?;
    pb.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    warn!("stored {} items in {url} in {secs:.1} s ({:.0} vectors/s, until searchable)", ids.len(), ids.len() as f64 / secs.max(1e-9));
    Ok(())
}

/// Builds the graph of `idx` (stored at `path`) and saves it beside the index.
fn build_graph(common: &Common, path: &Path, idx: &Index) -> anyhow::Result<Ann> {
    let pb = bar(common.quiet, Some(idx.len() as u64), "building search graph");
    let ann = Ann::build(idx, AnnParams::default(), |n| pb.inc(n as u64))?;
    pb.finish_and_clear();
    ann.save(path, idx)?;
    Ok(ann)
}

/// The graph of the index at `path`: loaded when current, otherwise built and saved when `build`
/// (a server, or `--search approx`); else `None` (exact search), with a warning.
fn open_graph(common: &Common, path: &Path, idx: &Index, build: bool, ef: Option<u64>) -> anyhow::Result<Option<Ann>> {
    let mut ann = match Ann::load(path, idx, (idx.header.uid, idx.snapshot_seq()))? {
        Some(ann) => ann,
        None if !build => {
            warn!("{} has no current search graph: searching exactly (`retrieve compact --index` builds one)", path.display());
            return Ok(None);
        }
        None => {
            let pb = bar(common.quiet, Some(idx.len() as u64), "building search graph");
            let ann = Ann::load_or_build(path, idx, AnnParams::default(), |n| pb.inc(n as u64))?;
            pb.finish_and_clear();
            ann
        }
    };
    if let Some(ef) = ef {
        ann.set_expansion_search(ef as usize);
    }
    Ok(Some(ann))
}

/// The index a search reads: `index` when given (checked against the model), else the cached
/// index of `corpus`, built on first use.
fn load_index(common: &Common, embedder: &Embedder, index: Option<&Path>, corpus: &Path) -> anyhow::Result<Index> {
    Ok(match index {
        Some(p) => {
            let idx = Index::load(p)?;
            idx.check_model(p, &embedder.package.fingerprint, embedder.dim())?;
            idx
        }
        None => {
            let corpus_path = locate(corpus);
            let pb = std::cell::RefCell::new(ProgressBar::hidden());
            let (idx, _) = corpus::cached_index(
                &corpus_path,
                embedder,
                |n| pb.borrow().inc(n as u64),
                |total| {
                    if !common.quiet {
                        warn!("indexing {} (first use, or the corpus or model changed)", corpus_path.display());
                    }
                    *pb.borrow_mut() = bar(common.quiet, Some(total as u64), "embedding");
                },
            )?;
            pb.borrow().finish_and_clear();
            idx
        }
    })
}

fn run_search(common: &Common, args: &SearchArgs) -> anyhow::Result<()> {
    let (queries, k, index, corpus_path) = (&args.query, args.k, args.index.as_deref(), args.corpus.as_path());
    if queries.is_empty() {
        bail!("give a question to look up, e.g. retrieve \"How do I learn Rust?\" (see --help)");
    }
    if let Some(i) = queries.iter().position(|q| q.trim().is_empty()) {
        bail!("query {} is empty", i + 1);
    }
    let embedder = load_embedder(common)?;
    let store: Box<dyn Store> = match (index, &args.store) {
        (None, Some(StoreUrl::Milvus(url))) => {
            let store = MilvusStore::open(url)?;
            store.check_model(&embedder.package.fingerprint, embedder.dim())?;
            Box::new(store)
        }
        (_, local) => {
            let index = index.or(match local {
                Some(StoreUrl::Local(p)) => Some(p.as_path()),
                _ => None,
            });
            let idx = load_index(common, &embedder, index, corpus_path)?;
            let ann = match index {
                Some(p) if args.search.uses_graph(idx.len()) => open_graph(common, p, &idx, args.search == SearchMode::Approx, args.ef)?,
                _ => None,
            };
            Box::new(LocalStore::new(idx, ann, index.map(Path::to_path_buf), None))
        }
    };
    let texts: Vec<&str> = queries.iter().map(String::as_str).collect();
    let qv = embedder.embed(&texts)?;
    let report = SearchReport::from_store(&embedder, &*store, queries, &qv, usize::try_from(k).unwrap_or(usize::MAX))?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    if common.json {
        report.write_json(&mut out)?;
    } else {
        report.write_text(&mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// Where a command writes: a file replaced atomically by [`Output::finish`], or stdout.
enum Output {
    File(fsio::AtomicFile),
    Stdout(BufWriter<std::io::StdoutLock<'static>>),
}

impl Output {
    /// Opens `path` (checked against the command's `inputs`), or stdout when `None`.
    fn open(path: Option<PathBuf>, inputs: &[&Path]) -> anyhow::Result<Self> {
        Ok(match path {
            Some(p) => {
                check_output(&p, inputs)?;
                Output::File(fsio::AtomicFile::create(&p)?)
            }
            None => Output::Stdout(BufWriter::new(std::io::stdout().lock())),
        })
    }
    fn finish(self) -> anyhow::Result<()> {
        match self {
            Output::File(f) => f.commit()?,
            Output::Stdout(mut w) => w.flush()?,
        }
        Ok(())
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Output::File(f) => f.write(buf),
            Output::Stdout(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::File(f) => f.flush(),
            Output::Stdout(w) => w.flush(),
        }
    }
}

/// What `dedup` reads: a file, or every item of a Milvus collection.
enum DedupSource {
    File(PathBuf),
    Milvus(MilvusUrl),
}

fn run_dedup(
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

/// Mines the duplicate pairs of `idx`, clusters them and writes the CSV.
fn write_dedup(embedder: &Embedder, idx: &Index, inputs: &[&Path], threshold: Option<f64>, output: Option<PathBuf>) -> anyhow::Result<()> {
    let energy = embedder.package.config.energy;
    // Pairs are mined by similarity: the package's search threshold when it judges by
    // similarity, else its pair threshold as a similarity.
    let package = &embedder.package;
    let min_sim =
        threshold.or_else(|| package.search_similarity_threshold()).unwrap_or_else(|| energy.similarity_from_distance(package.threshold));
    let (vectors, live) = idx.live_vectors();
    let pairs = dedup::mine_pairs(&vectors, idx.dim(), min_sim as f32, dedup::MAX_PAIRS)
        .map_err(|most| anyhow::anyhow!("more than {most} pairs have similarity >= {min_sim:.3}; raise --threshold"))?;
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
    warn!("{} duplicate pairs in {} clusters among {} sentences (similarity >= {:.3})", pairs.len(), n_clusters, idx.len(), min_sim);
    Ok(())
}

fn run_score(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_gets_the_shipped_model_unless_one_is_given() {
        assert_eq!(model_for(None), PathBuf::from("models/quora"));
        assert_eq!(model_for(Some(Path::new("my/model"))), PathBuf::from("my/model"));
        // The default is a real package of this repository, with a verdict head for score and
        // a search threshold for search.
        let dir = locate(&model_for(None));
        let package = ModelPackage::load(&dir).unwrap();
        assert!(package.head.is_some() && package.search_threshold.is_some(), "{}", dir.display());
    }
}
