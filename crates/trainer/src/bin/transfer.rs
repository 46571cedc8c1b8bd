//! `transfer`: writes the distillation transfer set a training config's `[distill]` table names.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use trainer::config::{DataDirArgs, TrainConfig};

/// Write the transfer set for knowledge distillation: the sentences a teacher encodes and the
/// student learns to reproduce.
///
/// The set holds every sentence of the config's training pairs, every sentence of
/// `distill.sources`, and augmented copies of the training sentences (Tang et al. 2019: word
/// masking, replacement by a nearest GloVe neighbour, n-gram sampling), one per line, never a
/// sentence of the validation or reporting pairs or of `distill.exclude`. It is written to
/// `distill.sentences` (or --output) atomically; then `scripts/teacher-targets.sh` encodes it.
/// `scripts/distill-targets.sh CONFIG` runs both.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// The training config (TOML) with a [distill] table, e.g. configs/quora-distill.toml.
    #[arg(long, short)]
    config: PathBuf,
    #[command(flatten)]
    dirs: DataDirArgs,
    /// Where to write the sentences, overriding `distill.sentences`.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Print the sentences and targets paths (one `sentences=…` and one `targets=…` line; with
    /// `model.extra_vectors` set, also `extra_vectors=…` and the GloVe file as `glove=…`) and
    /// write nothing.
    #[arg(long)]
    print_paths: bool,
}

fn main() -> std::process::ExitCode {
    fsio::exit(run())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = TrainConfig::load(&args.config)?;
    let d = cfg.distill.as_ref().with_context(|| format!("{}: no [distill] table", args.config.display()))?;
    let output = args.output.clone().unwrap_or_else(|| d.sentences.clone());
    if args.print_paths {
        fsio::say!("sentences={}\ntargets={}", output.display(), d.targets.display())?;
        // Config validation refuses extra vectors without GloVe.
        if let (Some(extra), Some(glove)) = (&cfg.model.extra_vectors, &cfg.model.glove) {
            let glove = trainer::config::DataDirs::resolve(&args.dirs.dirs().embeddings, glove);
            fsio::say!("extra_vectors={}\nglove={}", extra.display(), glove.display())?;
        }
        return Ok(());
    }
    fsio::check_output(&output, &[])?;
    let dirs = args.dirs.dirs();
    let set = trainer::distill::transfer::build(&cfg, &dirs)?;
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create the folder", parent.display()))?;
    }
    let mut file = fsio::AtomicFile::create(&output)?;
    for s in &set.sentences {
        writeln!(file, "{s}").with_context(|| format!("{}: write failed", output.display()))?;
    }
    file.commit()?;
    fsio::warn!(
        "{}: {} sentences ({} from training pairs, {} from other sources, {} augmented copies; {} held-out sentences left out)",
        output.display(),
        set.sentences.len(),
        set.from_training,
        set.from_sources,
        set.augmented,
        set.excluded
    );
    Ok(())
}
