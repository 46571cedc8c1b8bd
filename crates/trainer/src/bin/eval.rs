//! `eval`: scores a model package on a labelled split, binary, graded or as retrieval.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use data::PairFormat;
use encoder::{Backend, ModelPackage};
use trainer::config::DataDirs;
use trainer::{EvalOptions, EvalReport};

/// Evaluate a model package on a labelled pair file.
///
/// Binary tasks (qqp, mrpc, csv with 0/1 labels) print accuracy, precision, recall, F1 and
/// average precision at the threshold stored in the package (chosen on its validation split,
/// never on the evaluated data), and with --retrieval Recall@1, Recall@10 and MRR@10 over the
/// split's sentences. Graded tasks (sick, stsb, sts, csv with --score-range) print Pearson,
/// Spearman and the MSE on the gold scale.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// The model package directory.
    #[arg(long, short, default_value = "models/quora")]
    model: PathBuf,
    /// Dataset layout: qqp, sick, stsb, sts, mrpc or csv. Guessed from the extension when absent
    /// (.tsv is qqp, anything else csv).
    #[arg(long, short)]
    task: Option<PairFormat>,
    /// The labelled pairs; a relative path is tried as given, then under --data-dir.
    #[arg(long, short, visible_alias = "data", required_unless_present = "heldout")]
    split: Option<PathBuf>,
    /// SICK: the SemEval_set to evaluate (TRAIN, TRIAL, TEST).
    #[arg(long, default_value = "TRIAL")]
    subset: String,
    /// A graded CSV's score range, e.g. 0,5.
    #[arg(long, value_parser = parse_range)]
    score_range: Option<(f32, f32)>,
    /// Also measure retrieval (corpus = the split's distinct sentences, queries = first
    /// sentences of duplicate pairs). On by default for qqp.
    #[arg(long)]
    retrieval: Option<bool>,
    /// Evaluate on the pairs the package was validated on: its training file split again with
    /// the stored seed and size. For retrieval, every sentence of the training file is in the
    /// corpus but only held-out pairs are queries.
    #[arg(long, conflicts_with = "split")]
    heldout: bool,
    /// Directory holding the datasets.
    #[arg(long, env = "TWIN_DATA_DIR", default_value = data::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Compute backend: ndarray, flex or wgpu.
    #[arg(long, default_value = "ndarray")]
    backend: Backend,
    /// Skip malformed rows with a warning instead of stopping.
    #[arg(long)]
    skip_bad_rows: bool,
    /// Print the metrics as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_range(s: &str) -> Result<(f32, f32), String> {
    let (lo, hi) = s.split_once(',').ok_or("expected LOW,HIGH, e.g. 0,5")?;
    let lo: f32 = lo.trim().parse().map_err(|_| format!("{lo:?} is not a number"))?;
    let hi: f32 = hi.trim().parse().map_err(|_| format!("{hi:?} is not a number"))?;
    if hi > lo { Ok((lo, hi)) } else { Err("LOW must be below HIGH".into()) }
}

fn main() -> std::process::ExitCode {
    fsio::exit(run())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = args.backend.try_device().map_err(anyhow::Error::msg)?;
    let package = ModelPackage::load(&args.model, &device)?;
    let dirs = DataDirs { data: args.data_dir.clone(), ..Default::default() };

    let (pairs, range, extra, what) = if args.heldout {
        let (pairs, sentences, range) = trainer::heldout_pairs(&package, &dirs)?;
        (pairs, range, Some(sentences), format!("held-out validation pairs of {}", package.dir.display()))
    } else {
        let split = args.split.clone().context("--split is required")?;
        let path = if split.exists() || split.is_absolute() { split } else { args.data_dir.join(&split) };
        let task = args.task.unwrap_or_else(|| PairFormat::from_path(&path));
        let range = match (task, args.score_range) {
            (PairFormat::Csv, Some(r)) => r,
            _ => task.score_range(),
        };
        let subset = (task == PairFormat::Sick).then_some(args.subset.as_str());
        let pairs = trainer::load_scaled(&path, task, subset, range, args.skip_bad_rows)?;
        (pairs, range, None, format!("{} ({task})", path.display()))
    };
    let graded = range != (0.0, 1.0);
    let extra_refs: Option<Vec<&str>> = extra.as_ref().map(|v| v.iter().map(String::as_str).collect());
    let options = EvalOptions {
        graded_range: graded.then_some(range),
        retrieval: args.retrieval.unwrap_or(!graded && (args.heldout || args.task == Some(PairFormat::Qqp))),
        extra_corpus: extra_refs.as_deref(),
    };
    let report = trainer::evaluate(&package, &pairs, &options, &device).context("evaluation failed")?;
    if args.json {
        fsio::say!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_report(&report, &what)?;
    }
    Ok(())
}

fn print_report(r: &EvalReport, what: &str) -> std::io::Result<()> {
    let m = &r.binary;
    fsio::say!("{} pairs: {what}", m.n)?;
    if let Some(g) = &r.graded {
        fsio::say!("pearson   {:.4}", g.pearson)?;
        fsio::say!("spearman  {:.4}", g.spearman)?;
        fsio::say!("MSE       {:.4} (gold scale)", g.mse)?;
    } else {
        match &r.energy_binary {
            Some(e) => fsio::say!(
                "threshold head probability >= {:.4} (the distance alone, at <= {:.4}: accuracy {:.4}, AP {:.4})",
                m.threshold, e.threshold, e.accuracy, e.average_precision
            )?,
            None => fsio::say!("threshold distance <= {:.4}", m.threshold)?,
        }
        fsio::say!("accuracy  {:.4}", m.accuracy)?;
        fsio::say!("precision {:.4}", m.precision)?;
        fsio::say!("recall    {:.4}", m.recall)?;
        fsio::say!("F1        {:.4}", m.f1)?;
        fsio::say!("AP        {:.4}", m.average_precision)?;
    }
    if let Some(x) = &r.retrieval {
        fsio::say!("retrieval ({} queries): R@1 {:.4}  R@10 {:.4}  MRR@10 {:.4}", x.queries, x.recall_at_1, x.recall_at_10, x.mrr_at_10)?;
    }
    Ok(())
}
