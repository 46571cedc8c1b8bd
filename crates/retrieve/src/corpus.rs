//! Reading sentence collections, and the cached index of the default corpus.

use std::path::{Path, PathBuf};

use encoder::Embedder;

use crate::index::file::Fnv;
use crate::index::Index;
use crate::{Result, RetrieveError};

/// Sentences of a text file, one per line; blank lines and lines starting with `#` are skipped.
/// A line that is not UTF-8 is an error naming file and line.
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).map_err(|e| RetrieveError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = std::str::from_utf8(line)
            .map_err(|_| RetrieveError::Corrupt { path: path.to_path_buf(), reason: format!("line {} is not valid UTF-8", i + 1) })?;
        let line = line.trim();
        if !line.is_empty() && !line.starts_with('#') {
            out.push(line.to_string());
        }
    }
    Ok(out)
}

/// The non-empty values of one column of a CSV file with a header. A malformed row is an
/// error naming file and line.
pub fn read_column(path: &Path, column: &str) -> Result<Vec<String>> {
    let file = std::fs::File::open(path).map_err(|e| RetrieveError::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file);
    let bad = |line: u64, reason: String| RetrieveError::Corrupt { path: path.to_path_buf(), reason: format!("line {line}: {reason}") };
    let headers = reader.byte_headers().map_err(|e| bad(1, e.to_string()))?.clone();
    let col = headers
        .iter()
        .position(|h| String::from_utf8_lossy(h).trim().eq_ignore_ascii_case(column))
        .ok_or_else(|| bad(1, format!("no column named {column:?}")))?;
    let mut out = Vec::new();
    for rec in reader.byte_records() {
        let rec = rec.map_err(|e| bad(e.position().map(|p| p.line()).unwrap_or(0), e.to_string()))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let raw = rec.get(col).ok_or_else(|| bad(line, format!("missing column {column:?}")))?;
        let s = std::str::from_utf8(raw).map_err(|_| bad(line, "not valid UTF-8".into()))?;
        if !s.trim().is_empty() {
            out.push(s.trim().to_string());
        }
    }
    Ok(out)
}

/// Sentences from `path`: a CSV column when `column` is given, else one per line.
pub fn read_sentences(path: &Path, column: Option<&str>) -> Result<Vec<String>> {
    match column {
        Some(c) => read_column(path, c),
        None => read_lines(path),
    }
}

/// A content hash of a file, to notice when a corpus changed.
pub fn file_hash(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| RetrieveError::io(path, e))?;
    let mut h = Fnv::new();
    h.update(&bytes);
    Ok(format!("{:016x}", h.finish()))
}

/// Embeds `sentences` into a new index, reporting progress per batch.
pub fn build_index(embedder: &Embedder, sentences: Vec<String>, progress: impl FnMut(usize)) -> Result<Index> {
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let vectors = embedder.embed_with_progress(&texts, progress)?;
    let mut index = Index::new(&embedder.package.fingerprint, embedder.dim());
    index.extend(sentences, &vectors)?;
    Ok(index)
}

/// Where the cached index of `corpus` lives: beside it, in a `.cache` directory.
pub fn cache_path(corpus: &Path) -> PathBuf {
    let name = corpus.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "corpus".into());
    corpus.parent().unwrap_or(Path::new(".")).join(".cache").join(format!("{name}.idx"))
}

/// The index of `corpus` for this model: loaded from the cache when it was built from the same
/// corpus bytes with the same model, otherwise built (calling `progress`) and cached.
/// Returns the index and whether it was rebuilt.
pub fn cached_index(
    corpus: &Path,
    embedder: &Embedder,
    progress: impl FnMut(usize),
    on_build: impl FnOnce(usize),
) -> Result<(Index, bool)> {
    let hash = file_hash(corpus)?;
    let cache = cache_path(corpus);
    if let Ok(h) = Index::read_header(&cache) {
        if h.fingerprint == embedder.package.fingerprint && h.source_hash.as_deref() == Some(hash.as_str()) {
            if let Ok(index) = Index::load(&cache) {
                return Ok((index, false));
            }
        }
    }
    let sentences = read_lines(corpus)?;
    if sentences.is_empty() {
        return Err(RetrieveError::Invalid(format!("{}: no sentences", corpus.display())));
    }
    on_build(sentences.len());
    let mut index = build_index(embedder, sentences, progress)?;
    index.header.source_hash = Some(hash);
    index.save(&cache)?;
    Ok((index, true))
}
