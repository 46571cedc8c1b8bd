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
    /// Workloads to run, comma separated: train, encode, search, and split (the LSTM's part of a
    /// training step: the recurrence alone, forward and backward, beside the whole step).
    #[arg(long, value_delimiter = ',', default_value = "train,encode,search,split")]
    only: Vec<String>,
    /// Thread counts of the training scaling table, comma separated (default: 1, 2, 4, … up to
    /// the cores, and the cores): the training workload of each CPU backend again on that many
    /// threads. `none` leaves the table out.
    #[arg(long, value_delimiter = ',')]
    threads: Vec<String>,
    /// Write all measurements here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A JSON list of measurements from scripts/bench_torch.py to compare against.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// The LSTM of the training, split and encoding workloads: the fused operation (host kernels
    /// on ndarray and flex, CubeCL kernels on wgpu), or the composed recurrence of tensor
    /// operations, to compare the two. CPU encoding runs on the host either way.
    #[arg(long, value_enum, default_value_t = Lstm::Fused)]
    lstm: Lstm,
    /// Internal: run one workload in this process and print its measurement as JSON.
    #[arg(long, hide = true)]
    child: Option<String>,
}

/// Which LSTM implementation the workloads run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Lstm {
    /// One fused operation with its own backward pass.
    Fused,
    /// A chain of tensor operations per time step.
    Composed,
}

fn run_child(args: &Args, what: &str) -> anyhow::Result<Measurement> {
    let (kind, param) = what.split_once(':').context("child workload must be KIND:PARAM")?;
    encoder::lstm::set_fused(args.lstm == Lstm::Fused);
    let mut m = match kind {
        "search" => bench::search_qps(param.parse()?, 128, args.queries, 10, 7),
        "train" | "encode" | "split" => {
            let backend: Backend = param.parse().map_err(anyhow::Error::msg)?;
            let q = QuoraData::load(&args.data_dir, &args.embeddings_dir)
                .context("the training and encoding benchmarks need the Quora dev pairs and GloVe (scripts/fetch-data.sh)")?;
            match kind {
                "train" => bench::train_pairs_per_sec(&q, backend, args.train_batch, args.hidden, args.seconds)?,
                "split" => bench::lstm_pairs_per_sec(&q, backend, args.train_batch, args.hidden, args.seconds)?,
                _ => bench::encode_sentences_per_sec(&q, backend, args.encode_batch, args.hidden, args.seconds)?,
            }
        }
        other => bail!("unknown workload {other:?}"),
    };
    if args.lstm == Lstm::Composed {
        m.detail = format!("composed LSTM; {}", m.detail);
    }
    Ok(m)
}

fn spawn(args: &Args, what: &str, threads: Option<usize>) -> anyhow::Result<Measurement> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    if let Some(n) = threads {
        // The size of rayon's global pool, which every kernel of a training step runs on.
        cmd.env("RAYON_NUM_THREADS", n.to_string());
    }
    cmd.arg("--child").arg(what);
    cmd.arg("--data-dir").arg(&args.data_dir).arg("--embeddings-dir").arg(&args.embeddings_dir);
    cmd.arg("--seconds").arg(args.seconds.to_string());
    cmd.arg("--train-batch").arg(args.train_batch.to_string());
    cmd.arg("--encode-batch").arg(args.encode_batch.to_string());
    cmd.arg("--hidden").arg(args.hidden.to_string());
    cmd.arg("--queries").arg(args.queries.to_string());
    if args.lstm == Lstm::Composed {
        cmd.arg("--lstm").arg("composed");
    }
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

/// The thread counts of the scaling table: as given, or 1, 2, 4, … below `cores`, then `cores`.
fn thread_counts(given: &[String], cores: usize) -> anyhow::Result<Vec<usize>> {
    if given.iter().any(|t| t == "none") {
        return Ok(Vec::new());
    }
    if !given.is_empty() {
        return given
            .iter()
            .map(|t| match t.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => bail!("--threads: {t:?} is not a thread count (a whole number from 1, or none)"),
            })
            .collect();
    }
    let mut counts: Vec<usize> = std::iter::successors(Some(1usize), |n| n.checked_mul(2)).take_while(|&n| n < cores).collect();
    counts.push(cores.max(1));
    Ok(counts)
}

/// Training throughput per thread count, and its speed-up over the first row of its backend.
fn print_scaling(rows: &[(usize, Measurement)]) -> std::io::Result<()> {
    fsio::say!()?;
    fsio::say!("{:<8} {:>8} {:>12} {:>9} {:>10}", "backend", "threads", "pairs/s", "speed-up", "per core")?;
    for (threads, m) in rows {
        // The first row of the same backend is the baseline.
        let (first_threads, first) = rows.iter().find(|(_, f)| f.backend == m.backend).map_or((*threads, m.value), |(t, f)| (*t, f.value));
        let speedup = m.value / first.max(f64::MIN_POSITIVE);
        let per_core = speedup * first_threads as f64 / *threads as f64;
        fsio::say!("{:<8} {:>8} {:>12.0} {:>8.2}x {:>9.0}%", m.backend, threads, m.value, speedup, 100.0 * per_core)?;
    }
    Ok(())
}

/// For each backend with both a training and a split measurement: the LSTM's share of a step
/// (the step's pairs/s over the LSTM's alone) and the rest's.
fn split_lines(ms: &[Measurement]) -> Vec<String> {
    let mut lines = Vec::new();
    for lstm in ms.iter().filter(|m| m.name == "train-lstm") {
        if let Some(step) = ms.iter().find(|m| m.name == "train" && m.backend == lstm.backend) {
            let share = step.value / lstm.value;
            lines.push(format!(
                "{}: the LSTM (forward + backward) is {:.0}% of a training step, everything else {:.0}%",
                lstm.backend,
                100.0 * share,
                100.0 * (1.0 - share)
            ));
        }
    }
    lines
}

fn print_split(ms: &[Measurement]) -> std::io::Result<()> {
    for line in split_lines(ms) {
        fsio::say!("{line}")?;
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
    // As `train` does, so the bench times the step that training runs.
    trainer::memory::keep_freed_buffers();
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
            "train" | "encode" | "split" => plan.extend(args.backends.iter().map(|b| format!("{w}:{b}"))),
            "search" => plan.extend(args.search_sizes.iter().map(|n| format!("search:{n}"))),
            other => bail!("unknown workload {other:?} (expected train, encode, search or split)"),
        }
    }
    let mut ms = Vec::new();
    for what in &plan {
        fsio::warn!("running {what} ...");
        ms.push(spawn(&args, what, None)?);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut scaling = Vec::new();
    if args.only.iter().any(|w| w == "train") {
        for backend in args.backends.iter().filter(|b| !matches!(b, Backend::Wgpu)) {
            for threads in thread_counts(&args.threads, cores)? {
                let what = format!("train:{backend}");
                fsio::warn!("running {what} on {threads} threads ...");
                let mut m = spawn(&args, &what, Some(threads))?;
                m.name = "train-threads".into();
                m.detail = format!("{threads} threads; {}", m.detail);
                scaling.push((threads, m));
            }
        }
    }
    print_table(&ms)?;
    print_split(&ms)?;
    if !scaling.is_empty() {
        print_scaling(&scaling)?;
        ms.extend(scaling.into_iter().map(|(_, m)| m));
    }
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

#[cfg(test)]
mod tests {
    use super::{split_lines, thread_counts};
    use bench::Measurement;

    #[test]
    fn the_split_is_the_steps_rate_over_the_lstms() {
        let m = |name: &str, backend: &str, value: f64| Measurement {
            name: name.into(),
            backend: backend.into(),
            value,
            unit: "pairs/s".into(),
            peak_rss_mib: None,
            detail: String::new(),
        };
        // On flex the whole step runs at three quarters of the LSTM's rate alone, so the LSTM
        // takes three quarters of a step. ndarray has no split measurement and wgpu no step:
        // neither gets a line.
        let ms = [m("train", "flex", 300.0), m("train-lstm", "flex", 400.0), m("train", "ndarray", 100.0), m("train-lstm", "wgpu", 9.0)];
        assert_eq!(
            split_lines(&ms),
            vec!["flex: the LSTM (forward + backward) is 75% of a training step, everything else 25%".to_string()]
        );
    }

    #[test]
    fn thread_counts_double_up_to_the_cores() {
        let none: [String; 0] = [];
        assert_eq!(thread_counts(&none, 1).unwrap(), [1]);
        assert_eq!(thread_counts(&none, 2).unwrap(), [1, 2]);
        assert_eq!(thread_counts(&none, 16).unwrap(), [1, 2, 4, 8, 16]);
        assert_eq!(thread_counts(&none, 6).unwrap(), [1, 2, 4, 6]);
        assert_eq!(thread_counts(&["3".into(), "1".into()], 16).unwrap(), [3, 1]);
        assert!(thread_counts(&["none".into()], 16).unwrap().is_empty());
        let err = thread_counts(&["0".into()], 16).unwrap_err().to_string();
        assert!(err.contains("\"0\" is not a thread count"), "{err}");
    }
}
