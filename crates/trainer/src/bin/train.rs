//! `train`: trains a twin-LSTM model from a TOML config and writes a model package.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use encoder::Backend;
use trainer::config::{DataDirs, TrainConfig};
use trainer::TrainRun;

/// Train a twin (Siamese) LSTM on labelled sentence pairs (contrastive loss by default).
///
/// Reads pairs as the config says (paths relative to --data-dir), validates after every epoch,
/// stops early when validation stops improving, and writes the best epoch as a model package:
/// config.json, tokenizer.json, model.bpk and metrics.json (with the decision threshold).
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// The training config (TOML), e.g. configs/quora.toml.
    #[arg(long, short)]
    config: PathBuf,
    /// Directory holding the datasets the config names.
    #[arg(long, env = "TWIN_DATA_DIR", default_value = data::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Directory holding the word vectors the config names.
    #[arg(long, env = "TWIN_EMBEDDINGS_DIR", default_value = data::DEFAULT_EMBEDDINGS_DIR)]
    embeddings_dir: PathBuf,
    /// Compute backend, overriding the config: ndarray, flex or wgpu.
    #[arg(long)]
    backend: Option<Backend>,
    /// Where to write the model package, overriding the config's `output`.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Number of epochs, overriding the config.
    #[arg(long)]
    epochs: Option<usize>,
    /// Skip malformed rows with a warning instead of stopping at the first one.
    #[arg(long)]
    skip_bad_rows: bool,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> std::process::ExitCode {
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
    cfg.data.skip_bad_rows |= args.skip_bad_rows;
    let dirs = DataDirs { data: args.data_dir, embeddings: args.embeddings_dir };
    let run = TrainRun { progress: !args.quiet, output: args.output };
    let report = trainer::train(&cfg, &dirs, &run).context("training failed")?;
    let b = &report.best;
    fsio::say!("best epoch {} of {}", report.best_epoch, report.epochs.len())?;
    if let Some(g) = &b.graded {
        fsio::say!(
            "validation ({} pairs): pearson {:.4}  spearman {:.4}  MSE {:.4}",
            report.valid_pairs, g.pearson, g.spearman, g.mse
        )?;
    } else {
        if let Some(h) = &b.head {
            fsio::say!(
                "validation ({} pairs), head: accuracy {:.4}  precision {:.4}  recall {:.4}  F1 {:.4}  AP {:.4}",
                report.valid_pairs, h.accuracy, h.precision, h.recall, h.f1, h.average_precision
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
            r.queries, r.recall_at_1, r.recall_at_10, r.mrr_at_10
        )?;
    }
    if let Some(t) = report.head_threshold {
        fsio::say!("decision threshold: head probability >= {t:.4} (the head gives the verdict)")?;
    }
    fsio::say!("decision threshold: distance <= {:.4} ({})", report.threshold, serde_json::to_string(&report.energy)?)?;
    fsio::say!("model package written to {}", report.output.display())?;
    Ok(())
}
