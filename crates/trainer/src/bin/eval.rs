//! `eval`: scores a model package on labelled pairs at the package's stored threshold.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use data::{load_pairs, LoadOptions, PairFormat};
use encoder::{Backend, ModelPackage};

/// Evaluate a model package on a labelled pair file.
///
/// Prints accuracy, precision, recall, F1 and average precision at the threshold stored in the
/// package (chosen on its validation split, never on the evaluated data).
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// The model package directory.
    #[arg(long, short, default_value = "models/quora")]
    model: PathBuf,
    /// Labelled pairs: a QQP .tsv (label, q1, q2, id) or a CSV with sentence1,sentence2,label.
    #[arg(long, short)]
    data: PathBuf,
    /// File layout; guessed from the extension when absent.
    #[arg(long, value_parser = parse_format)]
    format: Option<PairFormat>,
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

fn parse_format(s: &str) -> Result<PairFormat, String> {
    match s {
        "qqp" | "tsv" => Ok(PairFormat::Qqp),
        "csv" => Ok(PairFormat::Csv),
        _ => Err(format!("unknown format {s:?} (expected qqp or csv)")),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = args.backend.try_device().map_err(anyhow::Error::msg)?;
    let package = ModelPackage::load(&args.model, &device)?;
    let format = args.format.unwrap_or_else(|| PairFormat::from_path(&args.data));
    let loaded = load_pairs(&args.data, format, LoadOptions { skip_bad: args.skip_bad_rows, ..Default::default() })?;
    for bad in &loaded.skipped {
        eprintln!("warning: {}:{}: skipped: {}", args.data.display(), bad.line, bad.reason);
    }
    data::load::check_binary(&args.data, &loaded.pairs)?;
    let m = trainer::evaluate(&package, &loaded.pairs, &device).context("evaluation failed")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&m)?);
    } else {
        println!("{} pairs, threshold distance <= {:.4}", m.n, m.threshold);
        println!("accuracy  {:.4}", m.accuracy);
        println!("precision {:.4}", m.precision);
        println!("recall    {:.4}", m.recall);
        println!("F1        {:.4}", m.f1);
        println!("AP        {:.4}", m.average_precision);
    }
    Ok(())
}
