//! `train`: trains a twin-LSTM model from a TOML config and writes a model package.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use encoder::Backend;
use trainer::config::{DataDirArgs, LossKind, SelectMetric, TrainConfig};
use trainer::plot::{LineChart, Marker, Series};
use trainer::{EpochMetrics, TrainReport, TrainRun};

/// Train a twin (Siamese) LSTM on labelled sentence pairs (contrastive loss by default).
///
/// Reads pairs as the config says (paths relative to --data-dir), validates after every epoch,
/// stops early when validation stops improving, and writes the best epoch as a model package:
/// config.json, tokenizer.json, model.bpk and metrics.json (with the decision threshold), and
/// beside them training.svg: the loss and the selection metric per epoch.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// The training config (TOML), e.g. configs/quora.toml.
    #[arg(long, short)]
    config: PathBuf,
    #[command(flatten)]
    dirs: DataDirArgs,
    /// Compute backend, overriding the config: ndarray, flex or wgpu.
    #[arg(long)]
    backend: Option<Backend>,
    /// Where to write the model package, overriding the config's `output`.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Number of epochs, overriding the config.
    #[arg(long)]
    epochs: Option<usize>,
    /// Seed of the weights, shuffling and dropout, overriding the config's `model.seed` and
    /// `train.seed` (the data split keeps `data.split_seed`): for repeated runs of one recipe.
    #[arg(long)]
    seed: Option<u64>,
    /// Skip malformed rows with a warning instead of stopping at the first one.
    #[arg(long)]
    skip_bad_rows: bool,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> std::process::ExitCode {
    trainer::memory::keep_freed_buffers();
    fsio::exit(run())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut cfg = TrainConfig::load(&args.config)?;
    if let Some(b) = args.backend {
        cfg.train.backend = b;
    }
    if let Some(e) = args.epochs {
        cfg.train.epochs = e;
    }
    if let Some(seed) = args.seed {
        cfg.model.seed = seed;
        cfg.train.seed = seed;
    }
    cfg.data.skip_bad_rows |= args.skip_bad_rows;
    let dirs = args.dirs.dirs();
    let run = TrainRun { progress: !args.quiet, output: args.output };
    let report = trainer::train(&cfg, &dirs, &run).context("training failed")?;
    let b = &report.best;
    fsio::say!("best epoch {} of {}", report.best_epoch, report.epochs.len())?;
    if let Some(g) = &b.graded {
        fsio::say!("validation ({} pairs): pearson {:.4}  spearman {:.4}  MSE {:.4}", report.valid_pairs, g.pearson, g.spearman, g.mse)?;
    } else {
        if let Some(h) = &b.head {
            fsio::say!(
                "validation ({} pairs), head: accuracy {:.4}  precision {:.4}  recall {:.4}  F1 {:.4}  AP {:.4}",
                report.valid_pairs,
                h.accuracy,
                h.precision,
                h.recall,
                h.f1,
                h.average_precision
            )?;
        }
        fsio::say!(
            "validation ({} pairs){}: accuracy {:.4}  precision {:.4}  recall {:.4}  F1 {:.4}  AP {:.4}",
            report.valid_pairs,
            if b.head.is_some() { ", distance" } else { "" },
            b.accuracy,
            b.precision,
            b.recall,
            b.f1,
            b.average_precision
        )?;
    }
    if let Some(r) = &b.retrieval {
        fsio::say!(
            "validation retrieval ({} queries): R@1 {:.4}  R@10 {:.4}  MRR@10 {:.4}",
            r.queries,
            r.recall_at_1,
            r.recall_at_10,
            r.mrr_at_10
        )?;
    }
    if let Some(t) = report.head_threshold {
        fsio::say!("decision threshold: head probability >= {t:.4} (the head gives the verdict)")?;
    }
    fsio::say!("decision threshold: distance <= {:.4} ({})", report.threshold, serde_json::to_string(&report.energy)?)?;
    fsio::say!("model package written to {}", report.output.display())?;
    // The package is complete without its plot: a plot that cannot be written is a warning.
    // (The package loader allows this name: `encoder::package::PLOT_FILES`.)
    let path = report.output.join("training.svg");
    match write_file(&path, &curves(&cfg, &report)) {
        Ok(()) => fsio::say!("curves written to {}", path.display())?,
        Err(e) => fsio::warn!("warning: training curves not written: {e:#}"),
    }
    Ok(())
}

/// Writes `text` to `path` atomically.
fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = fsio::AtomicFile::create(path)?;
    f.write_all(text.as_bytes()).with_context(|| path.display().to_string())?;
    f.commit()?;
    Ok(())
}

/// training.svg: the loss per epoch above, the selection metric per epoch below, the kept
/// epoch marked on both.
fn curves(cfg: &TrainConfig, report: &TrainReport) -> String {
    let per_epoch = |f: &dyn Fn(&EpochMetrics) -> f64| report.epochs.iter().map(|e| (e.epoch as f64, f(e))).collect::<Vec<_>>();
    let mut loss = vec![Series::new("training loss", per_epoch(&|e| e.train_loss))];
    // The validation loss is the contrastive loss (binary data) or the regression MSE (graded
    // data): drawn only when it is also the whole training objective, so the two lines share
    // a scale.
    let graded = report.best.graded.is_some();
    let measured = if graded { LossKind::Regression } else { LossKind::Contrastive };
    if matches!(cfg.train.loss.as_slice(), [only] if only.kind == measured && only.weight == 1.0) {
        loss.push(Series::new("validation loss", per_epoch(&|e| e.valid_loss)));
    }
    let head = report.best.head.is_some() && matches!(report.select, SelectMetric::Accuracy | SelectMetric::Ap);
    let (metric, bounds) = match report.select {
        SelectMetric::Accuracy => ("accuracy", (0.0, 1.0)),
        SelectMetric::Ap => ("AP", (0.0, 1.0)),
        SelectMetric::Mrr => ("MRR@10", (0.0, 1.0)),
        SelectMetric::Pearson => ("Pearson", (-1.0, 1.0)),
        SelectMetric::Spearman => ("Spearman", (-1.0, 1.0)),
    };
    let select = [Series::new(
        format!("validation {metric}{}", if head { " (verdict head)" } else { "" }),
        per_epoch(&|e| e.selection_score(report.select).unwrap_or(f64::NAN)),
    )];
    let best = Marker { x: report.best_epoch as f64, label: format!("best epoch {}", report.best_epoch) };
    let title = format!("Selection metric per epoch: {metric}{}", if head { " of the verdict head" } else { "" });
    let loss_chart = LineChart {
        title: "Loss per epoch",
        x_label: "epoch",
        y_label: "loss",
        series: &loss,
        marker: Some(best.clone()),
        y_bounds: Some((0.0, f64::INFINITY)),
    };
    let select_chart =
        LineChart { title: &title, x_label: "epoch", y_label: metric, series: &select, marker: Some(best), y_bounds: Some(bounds) };
    trainer::plot::stack(&[loss_chart.render(), select_chart.render()])
}
