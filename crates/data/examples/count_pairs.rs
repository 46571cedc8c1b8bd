//! Counts the pairs a loader reads from a file, to check a loader against a dataset's documented
//! size: `cargo run -p data --example count_pairs -- FORMAT FILE [SUBSET]`
//! (FORMAT: qqp, csv, sick, stsb, sts, mrpc; SUBSET: a SICK SemEval_set such as TRAIN).
use data::{load_pairs, LoadOptions, PairFormat};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(format), Some(file)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: count_pairs FORMAT FILE [SUBSET]");
        return std::process::ExitCode::FAILURE;
    };
    let Ok(format) = serde_json::from_str::<PairFormat>(&format!("\"{format}\"")) else {
        eprintln!("unknown format {format:?} (qqp, csv, sick, stsb, sts, mrpc)");
        return std::process::ExitCode::FAILURE;
    };
    let opts = LoadOptions { skip_bad: true, subset: args.get(3).cloned() };
    match load_pairs(file.as_ref(), format, opts) {
        Ok(l) => {
            println!("{} pairs, {} skipped", l.pairs.len(), l.skipped.len());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
