//! `bench`: runs every workload in its own process and prints one table (see `scripts/bench.sh`).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};
use bench::{Measurement, QuoraData};
use clap::Parser;
use encoder::Backend;

/// Measure training and encoding throughput, peak memory and exact search speed.
///
/// Each workload runs in a child process of its own, so its peak memory is its own. Training and
/// encoding use the Quora dev pairs and GloVe-50 from --data-dir / --embeddings-dir; search uses
/// random unit vectors. With --compare, the numbers of scripts/bench_torch.py are matched by
/// workload and the ratio ours / theirs is printed.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Directory holding qqp/bimpm_partition/dev.tsv.
    #[arg(long, env = "TWIN_DATA_DIR", default_value = data::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Directory holding glove.6B.50d.100k.txt.
    #[arg(long, env = "TWIN_EMBEDDINGS_DIR", default_value = data::DEFAULT_EMBEDDINGS_DIR)]
    embeddings_dir: PathBuf,
    /// Backends for training and encoding, comma separated (wgpu only where a GPU is present).
    #[arg(long, value_delimiter = ',', default_value = "ndarray,flex")]
    backends: Vec<Backend>,
    /// Seconds of timed work per training and encoding measurement.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Pairs per training step.
    #[arg(long, default_value_t = 64)]
    train_batch: usize,
    /// Sentences per encoding batch.
    #[arg(long, default_value_t = 256)]
    encode_batch: usize,
    /// LSTM state size.
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Index sizes for the search benchmark, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    search_sizes: Vec<usize>,
    /// Queries per search measurement.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Workloads to run, comma separated: train, encode, search.
    #[arg(long, value_delimiter = ',', default_value = "train,encode,search")]
    only: Vec<String>,
    /// Write all measurements here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A JSON list of measurements from scripts/bench_torch.py to compare against.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Internal: run one workload in this process and print its measurement as JSON.
    #[arg(long, hide = true)]
    child: Option<String>,
}

fn run_child(args: &Args, what: &str) -> anyhow::Result<Measurement> {
    let (kind, param) = what.split_once(':').context("child workload must be KIND:PARAM")?;
    Ok(match kind {
        "search" => bench::search_qps(param.parse()?, 128, args.queries, 10, 7),
        "train" | "encode" => {
            let backend: Backend = param.parse().map_err(anyhow::Error::msg)?;
            let q = QuoraData::load(&args.data_dir, &args.embeddings_dir)
                .context("the training and encoding benchmarks need the Quora dev pairs and GloVe (scripts/fetch-data.sh)")?;
            if kind == "train" {
                bench::train_pairs_per_sec(&q, backend, args.train_batch, args.hidden, args.seconds)?
            } else {
                bench::encode_sentences_per_sec(&q, backend, args.encode_batch, args.hidden, args.seconds)?
            }
        }
        other => bail!("unknown workload {other:?}"),
    })
}

fn spawn(args: &Args, what: &str) -> anyhow::Result<Measurement> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("--child").arg(what);
    cmd.arg("--data-dir").arg(&args.data_dir).arg("--embeddings-dir").arg(&args.embeddings_dir);
    cmd.arg("--seconds").arg(args.seconds.to_string());
    cmd.arg("--train-batch").arg(args.train_batch.to_string());
    cmd.arg("--encode-batch").arg(args.encode_batch.to_string());
    cmd.arg("--hidden").arg(args.hidden.to_string());
    cmd.arg("--queries").arg(args.queries.to_string());
    let out = cmd.output().with_context(|| format!("running workload {what}"))?;
    if !out.status.success() {
        bail!("workload {what} failed:\n{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("workload {what} printed no measurement"))
}

fn print_table(ms: &[Measurement]) -> std::io::Result<()> {
    fsio::say!("{:<16} {:<8} {:>12} {:<12} {:>10}  detail", "workload", "backend", "value", "unit", "peak RSS")?;
    for m in ms {
        let rss = m.peak_rss_mib.map_or("-".to_string(), |r| format!("{r:.0} MiB"));
        fsio::say!("{:<16} {:<8} {:>12.0} {:<12} {:>10}  {}", m.name, m.backend, m.value, m.unit, rss, m.detail)?;
    }
    Ok(())
}

fn print_ratios(ours: &[Measurement], theirs: &[Measurement]) -> std::io::Result<()> {
    fsio::say!()?;
    fsio::say!("{:<16} {:<8} {:>12} {:<8} {:>12} {:>8}", "workload", "ours", "value", "theirs", "value", "ratio")?;
    for t in theirs {
        for o in ours.iter().filter(|o| o.name == t.name) {
            fsio::say!(
                "{:<16} {:<8} {:>12.0} {:<8} {:>12.0} {:>7.2}x",
                o.name,
                o.backend,
                o.value,
                t.backend,
                t.value,
                o.value / t.value.max(f64::MIN_POSITIVE)
            )?;
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    fsio::exit(run())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(what) = &args.child {
        let m = run_child(&args, what)?;
        fsio::say!("{}", serde_json::to_string(&m)?)?;
        return Ok(());
    }
    let mut plan: Vec<String> = Vec::new();
    for w in &args.only {
        match w.as_str() {
            "train" | "encode" => plan.extend(args.backends.iter().map(|b| format!("{w}:{b}"))),
            "search" => plan.extend(args.search_sizes.iter().map(|n| format!("search:{n}"))),
            other => bail!("unknown workload {other:?} (expected train, encode or search)"),
        }
    }
    let mut ms = Vec::new();
    for what in &plan {
        fsio::warn!("running {what} ...");
        ms.push(spawn(&args, what)?);
    }
    print_table(&ms)?;
    if let Some(path) = &args.json {
        let mut file = fsio::AtomicFile::create(path)?;
        std::io::Write::write_all(&mut file, serde_json::to_string_pretty(&ms)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        file.commit()?;
    }
    if let Some(path) = &args.compare {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let theirs: Vec<Measurement> =
            serde_json::from_str(&text).with_context(|| format!("{}: not a measurement list", path.display()))?;
        print_ratios(&ms, &theirs)?;
    }
    Ok(())
}
