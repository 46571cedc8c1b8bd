//! What every command shares: finding the repository's files, the model, the index a search
//! reads and its graph, progress bars, and where output goes.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use encoder::{Embedder, ModelPackage};
use fsio::{check_output, warn};
use indicatif::{ProgressBar, ProgressStyle};
use retrieve::{corpus, Ann, AnnParams, Index};

use crate::cli::Common;

/// A default path given relative to the repository also works from any directory inside it.
pub(crate) fn locate(path: &Path) -> PathBuf {
    if path.exists() || path.is_absolute() {
        return path.to_path_buf();
    }
    // `cargo run` and `cargo test` name the crate's folder at run time; the compile-time one
    // serves a binary run by hand. The run-time one comes first: build outputs may be shared
    // between checkouts (one CARGO_TARGET_DIR), and a reused binary keeps the folder it was
    // compiled in.
    let runtime = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    runtime
        .into_iter()
        .chain([PathBuf::from(env!("CARGO_MANIFEST_DIR"))])
        .map(|crate_dir| crate_dir.join("../..").join(path))
        .find(|candidate| candidate.exists())
        .unwrap_or_else(|| path.to_path_buf())
}

/// A progress bar (a spinner without `len`), hidden with `--quiet`.
pub(crate) fn bar(quiet: bool, len: Option<u64>, what: &str) -> ProgressBar {
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

/// The shipped model every command uses unless `--model` names another: one package ranks,
/// flags search hits (at its search threshold) and judges pairs (with its verdict head).
const DEFAULT_MODEL: &str = "models/quora";

/// `--model` (or `TWIN_MODEL`) when given, else the shipped model.
pub(crate) fn model_for(given: Option<&Path>) -> PathBuf {
    given.map_or_else(|| PathBuf::from(DEFAULT_MODEL), Path::to_path_buf)
}

/// The writers' lock of the index at `path`, saying so when another writer holds it.
pub(crate) fn lock_index(path: &Path) -> retrieve::Result<fsio::WriterLock> {
    Index::lock(path, |l| warn!("waiting for another writer of {} ({})", path.display(), l.display()))
}

/// The model of `--model` (else the shipped one), ready for `--backend`.
pub(crate) fn load_embedder(common: &Common) -> anyhow::Result<Embedder> {
    let package = ModelPackage::load(&locate(&model_for(common.model.as_deref())))?;
    Embedder::for_backend(package, common.backend).map_err(anyhow::Error::msg)
}

/// Builds the graph of `idx` (stored at `path`) with `params` and saves it beside the index.
pub(crate) fn build_graph(common: &Common, path: &Path, idx: &Index, params: AnnParams) -> anyhow::Result<Ann> {
    let pb = bar(common.quiet, Some(idx.len() as u64), "building search graph");
    let ann = Ann::build(idx, params, |n| pb.inc(n as u64))?;
    pb.finish_and_clear();
    ann.save(path, idx)?;
    Ok(ann)
}

/// The graph of the index at `path`: loaded when current, otherwise built and saved when `build`
/// (a server, or `--search approx`); else `None` (exact search), with a warning.
pub(crate) fn open_graph(common: &Common, path: &Path, idx: &Index, build: bool, ef: Option<u64>) -> anyhow::Result<Option<Ann>> {
    let mut ann = match Ann::load(path, idx, (idx.header.uid, idx.snapshot_seq()))? {
        Some(ann) => ann,
        None if !build => {
            warn!("{} has no current search graph: searching exactly (`retrieve compact --index` builds one)", path.display());
            return Ok(None);
        }
        None => {
            let pb = bar(common.quiet, Some(idx.len() as u64), "building search graph");
            let params = Ann::saved_params(path).unwrap_or_default();
            let ann = Ann::load_or_build(path, idx, params, |n| pb.inc(n as u64))?;
            pb.finish_and_clear();
            ann
        }
    };
    if let Some(ef) = ef {
        ann.set_expansion_search(ef as usize);
    }
    Ok(Some(ann))
}

/// The index a search reads: `index` when given (checked against the model), else the cached
/// index of `corpus`, built on first use.
pub(crate) fn load_index(common: &Common, embedder: &Embedder, index: Option<&Path>, corpus: &Path) -> anyhow::Result<Index> {
    Ok(match index {
        Some(p) => {
            let idx = Index::load(p)?;
            idx.check_model(p, &embedder.package.fingerprint, embedder.dim())?;
            idx
        }
        None => {
            let corpus_path = locate(corpus);
            let pb = std::cell::RefCell::new(ProgressBar::hidden());
            let (idx, _) = corpus::cached_index(
                &corpus_path,
                embedder,
                |n| pb.borrow().inc(n as u64),
                |total| {
                    if !common.quiet {
                        warn!("indexing {} (first use, or the corpus or model changed)", corpus_path.display());
                    }
                    *pb.borrow_mut() = bar(common.quiet, Some(total as u64), "embedding");
                },
            )?;
            pb.borrow().finish_and_clear();
            idx
        }
    })
}

/// Where a command writes: a file replaced atomically by [`Output::finish`], or stdout.
pub(crate) enum Output {
    File(fsio::AtomicFile),
    Stdout(BufWriter<std::io::StdoutLock<'static>>),
}

impl Output {
    /// Opens `path` (checked against the command's `inputs`), or stdout when `None`.
    pub(crate) fn open(path: Option<PathBuf>, inputs: &[&Path]) -> anyhow::Result<Self> {
        Ok(match path {
            Some(p) => {
                check_output(&p, inputs)?;
                Output::File(fsio::AtomicFile::create(&p)?)
            }
            None => Output::Stdout(BufWriter::new(std::io::stdout().lock())),
        })
    }
    pub(crate) fn finish(self) -> anyhow::Result<()> {
        match self {
            Output::File(f) => f.commit()?,
            Output::Stdout(mut w) => w.flush()?,
        }
        Ok(())
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Output::File(f) => f.write(buf),
            Output::Stdout(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::File(f) => f.flush(),
            Output::Stdout(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_gets_the_shipped_model_unless_one_is_given() {
        assert_eq!(model_for(None), PathBuf::from("models/quora"));
        assert_eq!(model_for(Some(Path::new("my/model"))), PathBuf::from("my/model"));
        // The default is a real package of this repository, with a verdict head for score and
        // a search threshold for search.
        let dir = locate(&model_for(None));
        let package = ModelPackage::load(&dir).unwrap();
        assert!(package.head.is_some() && package.search_threshold.is_some(), "{}", dir.display());
    }
}
