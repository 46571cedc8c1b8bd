//! `retrieve`: nearest stored questions, duplicate verdicts, indexing, dedup and CSV scoring.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use encoder::{Backend, Embedder, ModelPackage};
use indicatif::{ProgressBar, ProgressStyle};
use retrieve::score::{Layout, ScoreOptions};
use retrieve::{corpus, dedup, search, Index};

/// Find the stored questions nearest to a new one, with duplicate verdicts from a twin-LSTM
/// model.
///
/// With no subcommand, searches the default corpus (datasets/questions.txt, indexed on first
/// use and cached) or the index given with --index:
///
///     retrieve "How can I improve my English speaking?"
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
    /// How many stored questions to show.
    #[arg(short, long, default_value_t = 5)]
    k: usize,
    /// Search this index (from `retrieve index`) instead of the default corpus.
    #[arg(long)]
    index: Option<PathBuf>,
    /// Corpus searched when no --index is given: one question per line.
    #[arg(long, default_value = "datasets/questions.txt")]
    corpus: PathBuf,
}

#[derive(clap::Args, Debug, Clone)]
struct Common {
    /// Model package directory [default: models/quora-retrieval for search, index, add and dedup
    /// (it ranks best and keeps unrelated questions apart); models/quora for score (its verdict
    /// head ranks duplicate pairs like Quora's best)].
    #[arg(long, global = true, env = "TWIN_MODEL")]
    model: Option<PathBuf>,
    /// Compute backend: ndarray, flex or wgpu.
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
        /// Where to write the index (default: FILE.idx).
        #[arg(long)]
        index: Option<PathBuf>,
    },
    /// Append sentences to an existing index without re-embedding what it holds.
    Add {
        /// Sentences: a text file, or a CSV file with --column.
        file: PathBuf,
        /// CSV column holding the sentences.
        #[arg(long)]
        column: Option<String>,
        /// The index to extend.
        #[arg(long)]
        index: PathBuf,
    },
    /// Search an index, or the default corpus (same as giving the query without a subcommand).
    Search(SearchArgs),
    /// Find every pair of sentences above the duplicate threshold, grouped into clusters (CSV).
    Dedup {
        /// Sentences: a text file, a CSV file with --column, or an index (.idx).
        file: PathBuf,
        /// CSV column holding the sentences.
        #[arg(long)]
        column: Option<String>,
        /// Minimum similarity of a duplicate (default: the model's calibrated threshold).
        #[arg(long)]
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
        #[arg(long, value_delimiter = ',', num_args = 2)]
        columns: Option<Vec<String>>,
        /// Input layout: csv, tsv, or qqp (label, q1, q2, id; no header). Default from extension.
        #[arg(long)]
        format: Option<String>,
        /// Stop at the first bad row instead of reporting it and going on.
        #[arg(long)]
        strict: bool,
        /// Rows per batch.
        #[arg(long, default_value_t = 2048)]
        batch_rows: usize,
    },
}

/// A default path given relative to the repository also works from any directory inside it.
fn locate(path: &Path) -> PathBuf {
    if path.exists() || path.is_absolute() {
        return path.to_path_buf();
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidate = repo.join(path);
    if candidate.exists() { candidate } else { path.to_path_buf() }
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

/// What a command needs most from its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    /// Sentences compared with a whole collection (search, index, add, dedup): the ranking
    /// model, whose similarities also separate unrelated questions. On the shipped corpus the
    /// verdict model's distance threshold calls 8.7k of its 1.2M pairs duplicates, the ranking
    /// model 1.3k.
    Rank,
    /// Verdicts on given pairs (score), which in Quora-like data are already on one topic.
    Judge,
}

/// The shipped model for ranking: in-batch negatives, MRR@10 0.638 on the Quora dev questions.
const RANKING_MODEL: &str = "models/quora-retrieval";
/// The shipped model for pair verdicts: contrastive loss plus a verdict head, AP 0.831 and
/// accuracy 0.783 on held-out Quora pairs.
const VERDICT_MODEL: &str = "models/quora";

/// `--model` (or `TWIN_MODEL`) when given, else the shipped model that does `job` best.
fn model_for(given: Option<&Path>, job: Job) -> PathBuf {
    match (given, job) {
        (Some(p), _) => p.to_path_buf(),
        (None, Job::Rank) => PathBuf::from(RANKING_MODEL),
        (None, Job::Judge) => PathBuf::from(VERDICT_MODEL),
    }
}

fn load_embedder(common: &Common, job: Job) -> anyhow::Result<Embedder> {
    let device = common.backend.try_device().map_err(anyhow::Error::msg)?;
    let package = ModelPackage::load(&locate(&model_for(common.model.as_deref(), job)), &device)?;
    Ok(Embedder::new(package, device))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let common = cli.common.clone();
    match cli.command {
        None => run_search(&common, &cli.search),
        Some(Command::Search(args)) => run_search(&common, &args),
        Some(Command::Index { file, column, index }) => {
            let embedder = load_embedder(&common, Job::Rank)?;
            let sentences = corpus::read_sentences(&file, column.as_deref())?;
            let pb = bar(common.quiet, Some(sentences.len() as u64), "embedding");
            let mut idx = corpus::build_index(&embedder, sentences, |n| pb.inc(n as u64))?;
            pb.finish_and_clear();
            idx.header.source_hash = Some(corpus::file_hash(&file)?);
            let out = index.unwrap_or_else(|| file.with_extension("idx"));
            idx.save(&out)?;
            eprintln!("indexed {} sentences into {}", idx.len(), out.display());
            Ok(())
        }
        Some(Command::Add { file, column, index }) => {
            let embedder = load_embedder(&common, Job::Rank)?;
            let mut idx = Index::load(&index)?;
            idx.check_model(&index, &embedder.package.fingerprint, embedder.dim())?;
            let sentences = corpus::read_sentences(&file, column.as_deref())?;
            let pb = bar(common.quiet, Some(sentences.len() as u64), "embedding");
            let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
            let vectors = embedder.embed_with_progress(&texts, |n| pb.inc(n as u64))?;
            pb.finish_and_clear();
            let added = sentences.len();
            idx.extend(sentences, &vectors)?;
            idx.header.source_hash = None;
            idx.save(&index)?;
            eprintln!("added {added} sentences; {} now holds {}", index.display(), idx.len());
            Ok(())
        }
        Some(Command::Dedup { file, column, threshold, output }) => run_dedup(&common, &file, column.as_deref(), threshold, output),
        Some(Command::Score { file, output, columns, format, strict, batch_rows }) => {
            run_score(&common, &file, output, columns, format, strict, batch_rows)
        }
    }
}

fn run_search(common: &Common, args: &SearchArgs) -> anyhow::Result<()> {
    let (queries, k, index, corpus_path) = (&args.query, args.k, args.index.as_deref(), args.corpus.as_path());
    if queries.is_empty() {
        bail!("give a question to look up, e.g. retrieve \"How do I learn Rust?\" (see --help)");
    }
    if let Some(i) = queries.iter().position(|q| q.trim().is_empty()) {
        bail!("query {} is empty", i + 1);
    }
    let embedder = load_embedder(common, Job::Rank)?;
    let idx = match index {
        Some(p) => {
            let idx = Index::load(p)?;
            idx.check_model(p, &embedder.package.fingerprint, embedder.dim())?;
            idx
        }
        None => {
            let corpus_path = locate(corpus_path);
            let pb = std::cell::RefCell::new(ProgressBar::hidden());
            let (idx, _) = corpus::cached_index(
                &corpus_path,
                &embedder,
                |n| pb.borrow().inc(n as u64),
                |total| {
                    if !common.quiet {
                        eprintln!("indexing {} (first use, or the corpus or model changed)", corpus_path.display());
                    }
                    *pb.borrow_mut() = bar(common.quiet, Some(total as u64), "embedding");
                },
            )?;
            pb.borrow().finish_and_clear();
            idx
        }
    };
    let energy = embedder.package.config.energy;
    let threshold = embedder.package.threshold;
    let texts: Vec<&str> = queries.iter().map(String::as_str).collect();
    let qv = embedder.embed(&texts)?;
    let d = embedder.dim();
    let mut all = Vec::new();
    for (qi, q) in queries.iter().enumerate() {
        let qvec = &qv[qi * d..(qi + 1) * d];
        let hits = search::top_k(&idx.vectors, d, qvec, k);
        // A package with a verdict head judges each hit with it; search itself ranks by the energy.
        let verdicts = embedder.head_probabilities(hits.len(), |i| (qvec, idx.vector(hits[i].index)));
        let results: Vec<serde_json::Value> = hits
            .iter()
            .enumerate()
            .map(|(rank, h)| {
                let dist = f64::from(energy.distance_host(qvec, idx.vector(h.index)));
                let mut r = serde_json::json!({
                    "rank": rank + 1,
                    "sentence": idx.sentences[h.index],
                    "similarity": energy.similarity_from_distance(dist),
                    "duplicate": dist <= threshold,
                });
                if let Some((p, t)) = &verdicts {
                    r["duplicate_probability"] = serde_json::json!(p[rank]);
                    r["duplicate"] = serde_json::json!(f64::from(p[rank]) >= *t);
                }
                r
            })
            .collect();
        if !common.json {
            println!("{q}");
            for r in &results {
                println!(
                    "{:>3}. {:.3}  {:<13}  {}",
                    r["rank"].as_u64().unwrap_or(0),
                    r["similarity"].as_f64().unwrap_or(0.0),
                    if r["duplicate"].as_bool() == Some(true) { "duplicate" } else { "not duplicate" },
                    r["sentence"].as_str().unwrap_or("")
                );
            }
        }
        all.push(serde_json::json!({"query": q, "results": results}));
    }
    if common.json {
        let mut out = serde_json::json!({
            "model": embedder.package.dir,
            "duplicate_if_similarity_at_least": energy.similarity_from_distance(threshold),
            "queries": all,
        });
        if let Some((_, t)) = &embedder.package.head {
            out["duplicate_if_similarity_at_least"] = serde_json::Value::Null;
            out["duplicate_if_probability_at_least"] = serde_json::json!(t);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

/// Opens the output: a temporary file beside `path` (renamed into place by `finish`), or stdout.
enum Output {
    File(tempfile::NamedTempFile, PathBuf),
    Stdout,
}

impl Output {
    fn open(path: Option<PathBuf>) -> anyhow::Result<Self> {
        Ok(match path {
            Some(p) => {
                let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                let tmp = tokenize::shareable_temp(".retrieve-", false)
                    .tempfile_in(dir)
                    .with_context(|| format!("{}", p.display()))?;
                Output::File(tmp, p)
            }
            None => Output::Stdout,
        })
    }
    fn writer(&self) -> anyhow::Result<Box<dyn Write + '_>> {
        Ok(match self {
            Output::File(t, _) => Box::new(BufWriter::new(t.as_file())),
            Output::Stdout => Box::new(BufWriter::new(std::io::stdout().lock())),
        })
    }
    fn finish(self) -> anyhow::Result<()> {
        if let Output::File(t, p) = self {
            t.as_file().sync_all()?;
            t.persist(&p).with_context(|| format!("{}", p.display()))?;
        }
        Ok(())
    }
}

fn run_dedup(common: &Common, file: &Path, column: Option<&str>, threshold: Option<f64>, output: Option<PathBuf>) -> anyhow::Result<()> {
    let embedder = load_embedder(common, Job::Rank)?;
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
    let energy = embedder.package.config.energy;
    let min_sim = threshold.unwrap_or_else(|| energy.similarity_from_distance(embedder.package.threshold));
    let pairs = dedup::mine_pairs(&idx.vectors, idx.dim(), min_sim as f32);
    let cluster = dedup::clusters(idx.len(), &pairs);
    let mut rows: Vec<(usize, &dedup::DupPair)> = pairs.iter().filter_map(|p| cluster[p.i].map(|c| (c, p))).collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.score.total_cmp(&a.1.score)));
    let out = Output::open(output)?;
    {
        let mut w = csv::Writer::from_writer(out.writer()?);
        w.write_record(["cluster", "row1", "row2", "sentence1", "sentence2", "similarity"])?;
        for (c, p) in &rows {
            w.write_record([
                c.to_string(),
                (p.i + 1).to_string(),
                (p.j + 1).to_string(),
                idx.sentences[p.i].clone(),
                idx.sentences[p.j].clone(),
                format!("{:.4}", p.score),
            ])?;
        }
        w.flush()?;
    }
    out.finish()?;
    let n_clusters = cluster.iter().flatten().max().copied().unwrap_or(0);
    eprintln!("{} duplicate pairs in {} clusters among {} sentences (similarity >= {:.3})", pairs.len(), n_clusters, idx.len(), min_sim);
    Ok(())
}

fn run_score(
    common: &Common,
    file: &Path,
    output: Option<PathBuf>,
    columns: Option<Vec<String>>,
    format: Option<String>,
    strict: bool,
    batch_rows: usize,
) -> anyhow::Result<()> {
    let embedder = load_embedder(common, Job::Judge)?;
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let layout = match format.as_deref().unwrap_or(if ext == "tsv" { "tsv" } else { "csv" }) {
        "csv" => Layout::Header { delimiter: b',', quoting: true },
        "tsv" => Layout::Header { delimiter: b'\t', quoting: false },
        "qqp" => Layout::Qqp,
        other => bail!("unknown format {other:?} (expected csv, tsv or qqp)"),
    };
    let options = ScoreOptions {
        columns: columns.map(|c| (c[0].clone(), c[1].clone())),
        strict,
        batch_rows: batch_rows.max(1),
        layout,
    };
    let input = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
    let out = Output::open(output)?;
    let pb = bar(common.quiet, None, "scoring");
    let started = Instant::now();
    let name = file.display().to_string();
    let summary = retrieve::score::score_csv(
        std::io::BufReader::new(input),
        out.writer()?,
        &embedder,
        &options,
        |line, reason| pb.suspend(|| eprintln!("{name}:{line}: {reason}")),
        |rows| pb.set_position(rows),
    )
    .with_context(|| name.clone())?;
    pb.finish_and_clear();
    out.finish()?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "scored {} of {} rows ({} bad) in {:.1}s: {:.0} pairs/s",
        summary.scored,
        summary.rows,
        summary.bad,
        secs,
        summary.scored as f64 / secs.max(1e-9)
    );
    if let Some(m) = summary.metrics {
        let rule = if embedder.package.head.is_some() { "head probability >=" } else { "distance <=" };
        eprintln!(
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
    fn each_job_gets_its_shipped_model_unless_one_is_given() {
        assert_eq!(model_for(None, Job::Rank), PathBuf::from("models/quora-retrieval"));
        assert_eq!(model_for(None, Job::Judge), PathBuf::from("models/quora"));
        for job in [Job::Rank, Job::Judge] {
            assert_eq!(model_for(Some(Path::new("my/model")), job), PathBuf::from("my/model"));
        }
        // The defaults are real packages of this repository.
        for job in [Job::Rank, Job::Judge] {
            assert!(locate(&model_for(None, job)).join("model.bpk").is_file(), "{job:?}");
        }
    }
}
