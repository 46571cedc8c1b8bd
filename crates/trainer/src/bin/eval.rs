//! `eval`: scores a model package on a labelled split, binary, graded or as retrieval.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::prelude::Device;
use clap::Parser;
use data::{Pair, PairFormat};
use encoder::loss::POSITIVE_FROM;
use encoder::{Backend, Embedder, ModelPackage};
use trainer::config::DataDirs;
use trainer::plot::{pr_points, Histogram, PrCurve};
use trainer::{EvalOptions, EvalReport, HeldoutPart};

/// Evaluate a model package on a labelled pair file.
///
/// Binary tasks (qqp, mrpc, csv with 0/1 labels) print accuracy, precision, recall, F1 and
/// average precision at the threshold stored in the package (chosen on its validation split,
/// never on the evaluated data), and with --retrieval Recall@1, Recall@10 and MRR@10 over the
/// split's sentences. Graded tasks (sick, stsb, sts, csv with --score-range) print Pearson,
/// Spearman and the MSE on the gold scale. With --plots DIR, binary tasks also draw DIR/pr.svg
/// (the precision–recall curve) and DIR/scores.svg (the scores of duplicate and non-duplicate
/// pairs, with the stored threshold).
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
    #[arg(long, short, visible_alias = "data", required_unless_present_any = ["heldout", "report"])]
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
    #[arg(long, conflicts_with_all = ["split", "report"])]
    heldout: bool,
    /// Evaluate on the package's reporting pairs (`data.report_size` in its config): split off
    /// its training file like --heldout, but used for nothing while training, so its numbers
    /// are the ones to report. The corpus for retrieval and --verdicts is as with --heldout.
    #[arg(long, conflicts_with = "split")]
    report: bool,
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
    /// Binary tasks: also write pr.svg (precision–recall curve) and scores.svg (histograms of
    /// the scores of duplicate and non-duplicate pairs, with the stored threshold) into this
    /// directory, created if missing. Encodes the pairs a second time.
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
    /// Binary tasks: also judge search verdicts, as search flags its top 5 hits (corpus = the
    /// split's distinct sentences, plus the training file's with --heldout; queries = first
    /// sentences of duplicate pairs): detection (top hit is a labelled duplicate and flagged),
    /// false alarm (with the labelled duplicates removed, a top-5 hit is still flagged), flags
    /// per query, flag precision, and the detection / false-alarm curve over thresholds.
    #[arg(long)]
    verdicts: bool,
    /// With --heldout (the package's own validation pairs, which also chose its epoch):
    /// store in the package the search threshold with the most detection at false alarm at
    /// most this rate, e.g. 0.2, on the score that detects most (the head's probability, the
    /// similarity, or the margin: the similarity minus the mean similarity of the query's hits
    /// ranked 6 to 15). Report search verdicts on other data than this (--report).
    #[arg(long, value_name = "MAX_FALSE_ALARM", requires = "heldout", value_parser = rate)]
    calibrate_search: Option<f64>,
    /// With --verdicts: also report the margin flag (a hit's similarity minus the mean
    /// similarity of the query's hits ranked 6 to 15) at this margin threshold, chosen on other
    /// queries (e.g. the best one --heldout --verdicts prints), whatever score the package
    /// flags by.
    #[arg(long, value_name = "MARGIN", requires = "verdicts")]
    margin_threshold: Option<f64>,
}

fn rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s} is not a rate between 0 and 1"))
    }
}

fn parse_range(s: &str) -> Result<(f32, f32), String> {
    let (lo, hi) = s.split_once(',').ok_or("expected LOW,HIGH, e.g. 0,5")?;
    let lo: f32 = lo.trim().parse().map_err(|_| format!("{lo:?} is not a number"))?;
    let hi: f32 = hi.trim().parse().map_err(|_| format!("{hi:?} is not a number"))?;
    if hi > lo {
        Ok((lo, hi))
    } else {
        Err("LOW must be below HIGH".into())
    }
}

fn main() -> std::process::ExitCode {
    fsio::exit(run())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = args.backend.try_device().map_err(anyhow::Error::msg)?;
    // One load serves evaluation and search verdicts alike.
    let embedder = Embedder::on_device(ModelPackage::load(&args.model)?, &device)?;
    let package = &embedder.package;
    let dirs = DataDirs { data: args.data_dir.clone(), ..Default::default() };

    let mut input = None;
    let (pairs, range, extra, what) = if args.heldout || args.report {
        let (part, name) = if args.report { (HeldoutPart::Report, "reporting") } else { (HeldoutPart::Selection, "held-out validation") };
        let (pairs, sentences, range) = trainer::heldout_pairs(package, &dirs, part)?;
        (pairs, range, Some(sentences), format!("{name} pairs of {}", package.dir.display()))
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
        let what = format!("{} ({task})", path.display());
        input = Some(path);
        (pairs, range, None, what)
    };
    let graded = range != (0.0, 1.0);
    let plots = match &args.plots {
        Some(_) if graded => anyhow::bail!("--plots draws binary tasks only; {what} is graded"),
        Some(dir) => Some(plot_targets(dir, input.as_deref())?),
        None => None,
    };
    let extra_refs: Option<Vec<&str>> = extra.as_ref().map(|v| v.iter().map(String::as_str).collect());
    let options = EvalOptions {
        graded_range: graded.then_some(range),
        retrieval: args.retrieval.unwrap_or(!graded && (args.heldout || args.report || args.task == Some(PairFormat::Qqp))),
        extra_corpus: extra_refs.as_deref(),
    };
    let report = trainer::evaluate(package, &pairs, &options, &device).context("evaluation failed")?;
    if (args.verdicts || args.calibrate_search.is_some()) && graded {
        anyhow::bail!("--verdicts and --calibrate-search judge binary tasks only; {what} is graded");
    }
    // One ranking of the corpus serves both the report and the calibration.
    let verdicts = match args.verdicts || args.calibrate_search.is_some() {
        true => Some(trainer::verdicts::search_verdicts(&embedder, &pairs, extra_refs.as_deref(), args.margin_threshold)?),
        false => None,
    };
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(sv) = verdicts.as_ref().filter(|_| args.verdicts) {
            v["search_verdicts"] = serde_json::to_value(sv)?;
        }
        fsio::say!("{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        print_report(&report, &what)?;
        if let Some(sv) = verdicts.as_ref().filter(|_| args.verdicts) {
            print_verdicts(sv)?;
        }
    }
    if let (Some(max_false_alarm), Some(sv)) = (args.calibrate_search, &verdicts) {
        calibrate(package, sv, max_false_alarm)?;
    }
    if let Some((dir, [pr, scores])) = plots {
        let name = match &input {
            Some(path) => path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned()),
            None => "held-out pairs".to_string(),
        };
        let (pr_svg, scores_svg) = draw(package, &pairs, &report, &name, &device)?;
        std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create the plots directory", dir.display()))?;
        write_file(&pr, &pr_svg)?;
        write_file(&scores, &scores_svg)?;
        // Standard output stays pure JSON under --json.
        if args.json {
            fsio::warn!("plots written to {} and {}", pr.display(), scores.display());
        } else {
            fsio::say!("plots written to {} and {}", pr.display(), scores.display())?;
        }
    }
    Ok(())
}

/// Search verdicts as text: the package's own threshold, the limit of the ranking, the curve.
fn print_verdicts(v: &trainer::verdicts::SearchVerdicts) -> std::io::Result<()> {
    let m = &v.at_package_threshold;
    fsio::say!(
        "search verdicts ({} queries, top 5 hits, flag: {} >= {:.4}): detection {:.4}  false alarm {:.4}  flags/query {:.2}  flag precision {:.4}",
        m.queries, v.flag_score, m.threshold, m.detection, m.false_alarm, m.flags_per_query, m.flag_precision
    )?;
    if let Some(p) = &v.best_at_max_false_alarm {
        fsio::say!(
            "best detection at false alarm <= {:.2} (threshold chosen on these queries): {:.4} at {} >= {:.4}",
            trainer::verdicts::MAX_FALSE_ALARM,
            p.detection,
            v.flag_score,
            p.threshold
        )?;
    }
    fsio::say!("curve: threshold  detection  false_alarm")?;
    for p in trainer::verdicts::thin(&v.curve, 15) {
        fsio::say!("       {:>9.4}  {:>9.4}  {:>11.4}", p.threshold, p.detection, p.false_alarm)?;
    }
    let margin = &v.margin;
    if let Some(m) = &margin.at_threshold {
        fsio::say!(
            "margin flag (similarity minus the mean of hits 6-15) >= {:.4}: detection {:.4}  false alarm {:.4}  flags/query {:.2}  flag precision {:.4}",
            m.threshold, m.detection, m.false_alarm, m.flags_per_query, m.flag_precision
        )?;
    }
    if let Some(p) = &margin.best_at_max_false_alarm {
        fsio::say!(
            "margin flag: best detection at false alarm <= {:.2} (threshold chosen on these queries): {:.4} at margin >= {:.4}",
            trainer::verdicts::MAX_FALSE_ALARM,
            p.detection,
            p.threshold
        )?;
    }
    Ok(())
}

/// Stores in the package the search threshold chosen on the curve of its own validation pairs.
fn calibrate(package: &ModelPackage, verdicts: &trainer::verdicts::SearchVerdicts, max_false_alarm: f64) -> anyhow::Result<()> {
    let (flag, point) = trainer::verdicts::store_search_threshold(package, verdicts, max_false_alarm)?;
    fsio::say!(
        "search threshold {:.4} on the {} stored in {} (on these queries: detection {:.4}, false alarm {:.4})",
        point.threshold,
        flag.describe(),
        package.dir.display(),
        point.detection,
        point.false_alarm
    )?;
    Ok(())
}

/// The plot files under `dir`, refused before any work when `dir` is not a directory or a file
/// in it may not be written (not a regular file, or the evaluated `input` itself).
fn plot_targets(dir: &Path, input: Option<&Path>) -> anyhow::Result<(PathBuf, [PathBuf; 2])> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => anyhow::bail!("{}: exists and is not a directory; --plots takes a directory", dir.display()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::Error::new(e).context(dir.display().to_string())),
    }
    let files = [dir.join("pr.svg"), dir.join("scores.svg")];
    let inputs: Vec<&Path> = input.into_iter().collect();
    for f in &files {
        fsio::check_output(f, &inputs)?;
    }
    Ok((dir.to_path_buf(), files))
}

/// Writes `text` to `path` atomically.
fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = fsio::AtomicFile::create(path)?;
    f.write_all(text.as_bytes()).with_context(|| path.display().to_string())?;
    f.commit()?;
    Ok(())
}

/// pr.svg and scores.svg of a binary evaluation: the package's verdict score of every pair
/// (the head's probability when it has a head, the distance otherwise), ranked for the
/// precision–recall curve and binned by label for the histograms.
fn draw(package: &ModelPackage, pairs: &[Pair], report: &EvalReport, name: &str, device: &Device) -> anyhow::Result<(String, String)> {
    let energy = package.config.energy;
    let (encoder, head) = (package.encoder_module(device)?, package.head_module(device)?);
    let (distances, probabilities) = trainer::pair_scores(&encoder, head.as_ref(), &package.tokenizer, pairs, energy, device)?;
    let labels: Vec<bool> = pairs.iter().map(|p| p.label >= POSITIVE_FROM).collect();
    let m = &report.binary;
    // What is drawn, and the ranking score (higher = more likely a duplicate).
    let (values, ranking, x_label, what): (Vec<f64>, Vec<f64>, String, &str) = match probabilities {
        Some(p) => {
            let p: Vec<f64> = p.into_iter().map(f64::from).collect();
            let label = format!("verdict head probability (a duplicate at ≥ {:.4})", m.threshold);
            (p.clone(), p, label, "verdict head")
        }
        None => {
            let d: Vec<f64> = distances.into_iter().map(f64::from).collect();
            let energy_name = serde_json::to_value(energy).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            let label = format!("{energy_name} distance (a duplicate at ≤ {:.4})", m.threshold);
            (d.clone(), d.iter().map(|x| -x).collect(), label, "distance")
        }
    };
    let points = pr_points(&ranking, &labels);
    let title = format!("Precision–recall, {what}: {name} (AP {:.4})", m.average_precision);
    let pr = PrCurve { title: &title, points: &points, ap: m.average_precision, operating: Some((m.recall, m.precision)) }.render();
    let split = |positive: bool| values.iter().zip(&labels).filter(|(_, &y)| y == positive).map(|(&v, _)| v).collect::<Vec<f64>>();
    let (pos, neg) = (split(true), split(false));
    let bins = ((values.len() as f64).sqrt().ceil() as usize).clamp(10, 50);
    let title = format!("Scores, {what}: {name}");
    let threshold = Some(m.threshold);
    let hist = Histogram { title: &title, x_label: &x_label, positives: &pos, negatives: &neg, bins, threshold }.render();
    Ok((pr, hist))
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
                m.threshold,
                e.threshold,
                e.accuracy,
                e.average_precision
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
