//! A persistent index: unit vectors, the sentences they came from, and the fingerprint of the
//! model that made them.
//!
//! File layout (little-endian):
//!
//! ```text
//! b"TWINIDX1"                 magic
//! u32 header length, header   JSON: format, fingerprint, dim, count, source hash
//! count × dim × f32           vectors, row-major
//! count × (u32 len, bytes)    sentences, UTF-8
//! u64                         checksum of everything above: XXH3-64 (format 2), FNV-1a (format 1)
//! ```
//!
//! Format 1 files (FNV-1a, byte by byte: 50 ms on a 40 MB index) still load; every save writes
//! format 2.
//!
//! Writes go to a temporary file in the same directory ([`fsio::AtomicFile`]), which is synced
//! and then renamed over the old index, so a crash or kill mid-write leaves the previous index
//! intact. Writers that change an existing index hold [`Index::lock`] around the whole
//! read–modify–write. Every size in a header is checked against the file's real length before
//! anything is allocated.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Result, RetrieveError};

const MAGIC: &[u8; 8] = b"TWINIDX1";

/// The layout version new files get: 2 = XXH3-64 checksum.
const FORMAT: u32 = 2;

/// Longest JSON header read; real headers are about 200 bytes.
const MAX_HEADER: usize = 1 << 20;
/// Widest vectors read; the shipped models make 256 and 512.
pub const MAX_DIM: usize = 1 << 16;

/// What the index header records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexHeader {
    /// Layout version.
    pub format: u32,
    /// Fingerprint of the model package that embedded the sentences.
    pub fingerprint: String,
    /// Vector size.
    pub dim: usize,
    /// Number of sentences.
    pub count: usize,
    /// Hash of the source file the index was built from, when built from one (the cache uses it
    /// to notice a changed corpus).
    #[serde(default)]
    pub source_hash: Option<String>,
}

/// Sentences and their vectors, searchable by [`crate::search`].
#[derive(Debug, Clone, PartialEq)]
pub struct Index {
    /// Header fields.
    pub header: IndexHeader,
    /// `count × dim` values, row-major, unit length.
    pub vectors: Vec<f32>,
    /// The sentences, in the order of the vectors.
    pub sentences: Vec<String>,
}

/// 64-bit FNV-1a: a cheap checksum that catches truncated or damaged index files.
#[derive(Clone, Copy)]
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Fnv(0xcbf29ce484222325)
    }
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
    }
    pub(crate) fn finish(self) -> u64 {
        self.0
    }
}

/// A writer that checksums what passes through it.
struct Summing<W: Write> {
    inner: W,
    sum: xxhash_rust::xxh3::Xxh3,
}

impl<W: Write> Write for Summing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sum.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Index {
    /// An empty index for vectors of `dim` made by the model with `fingerprint`.
    pub fn new(fingerprint: &str, dim: usize) -> Self {
        Self {
            header: IndexHeader { format: FORMAT, fingerprint: fingerprint.to_string(), dim, count: 0, source_hash: None },
            vectors: Vec::new(),
            sentences: Vec::new(),
        }
    }

    /// Number of sentences.
    pub fn len(&self) -> usize {
        self.sentences.len()
    }

    /// Whether the index holds no sentence.
    pub fn is_empty(&self) -> bool {
        self.sentences.is_empty()
    }

    /// Vector size.
    pub fn dim(&self) -> usize {
        self.header.dim
    }

    /// The vector of sentence `i`.
    pub fn vector(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.header.dim..(i + 1) * self.header.dim]
    }

    /// Appends sentences with their vectors (`sentences.len() × dim` values).
    pub fn extend(&mut self, sentences: Vec<String>, vectors: &[f32]) -> Result<()> {
        if vectors.len() != sentences.len() * self.header.dim {
            return Err(RetrieveError::Invalid(format!(
                "{} vectors of size {} expected, got {} values",
                sentences.len(),
                self.header.dim,
                vectors.len()
            )));
        }
        self.vectors.extend_from_slice(vectors);
        self.sentences.extend(sentences);
        self.header.count = self.sentences.len();
        Ok(())
    }

    /// Errors unless this index was built by the model with `fingerprint` and `dim`.
    pub fn check_model(&self, path: &Path, fingerprint: &str, dim: usize) -> Result<()> {
        if self.header.dim != dim {
            return Err(RetrieveError::ModelMismatch {
                path: path.to_path_buf(),
                reason: format!("index vectors have {} dimensions but the model makes {dim}", self.header.dim),
            });
        }
        if self.header.fingerprint != fingerprint {
            return Err(RetrieveError::ModelMismatch {
                path: path.to_path_buf(),
                reason: format!(
                    "index was built with model {} but the loaded model is {fingerprint}; rebuild it with `retrieve index`",
                    self.header.fingerprint
                ),
            });
        }
        Ok(())
    }

    /// Writes the index atomically to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_with(path, |_| Ok(()))
    }

    /// [`save`](Self::save) with a hook that runs after the temporary file is complete and
    /// before it replaces `path`; tests use it to simulate a crash at the worst moment.
    pub fn save_with(&self, path: &Path, before_rename: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<()> {
        let io = |e| RetrieveError::io(path, e);
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut w = Summing { inner: fsio::AtomicFile::create(path)?, sum: xxhash_rust::xxh3::Xxh3::new() };
        let header = IndexHeader { format: FORMAT, ..self.header.clone() };
        let header = serde_json::to_vec(&header).map_err(|e| RetrieveError::Invalid(e.to_string()))?;
        w.write_all(MAGIC).map_err(io)?;
        w.write_all(&(header.len() as u32).to_le_bytes()).map_err(io)?;
        w.write_all(&header).map_err(io)?;
        for v in &self.vectors {
            w.write_all(&v.to_le_bytes()).map_err(io)?;
        }
        for s in &self.sentences {
            let len = u32::try_from(s.len())
                .map_err(|_| RetrieveError::Invalid(format!("a sentence of {} bytes is too long to store", s.len())))?;
            w.write_all(&len.to_le_bytes()).map_err(io)?;
            w.write_all(s.as_bytes()).map_err(io)?;
        }
        let sum = w.sum.digest();
        w.inner.write_all(&sum.to_le_bytes()).map_err(io)?;
        w.inner.commit_with(before_rename)?;
        Ok(())
    }

    /// Takes the writer lock of the index at `path` (`PATH.lock`), waiting for another writer;
    /// `on_wait` is told when it must. Hold it from before [`load`](Self::load) until after
    /// [`save`](Self::save), so that concurrent writers each see the other's changes.
    pub fn lock(path: &Path, on_wait: impl FnOnce(&Path)) -> Result<fsio::WriterLock> {
        Ok(fsio::WriterLock::acquire(path, on_wait)?)
    }

    /// Reads only the header, e.g. to decide whether a cached index is still current.
    pub fn read_header(path: &Path) -> Result<IndexHeader> {
        let mut f = std::fs::File::open(path).map_err(|e| RetrieveError::io(path, e))?;
        let mut head = [0u8; 12];
        f.read_exact(&mut head).map_err(|_| corrupt(path, "too short to be an index"))?;
        if &head[..8] != MAGIC {
            return Err(corrupt(path, "not an index file (bad magic)"));
        }
        let n = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
        let len = f.metadata().map_err(|e| RetrieveError::io(path, e))?.len();
        if n > MAX_HEADER || n as u64 + 12 > len {
            return Err(corrupt(path, format!("header length {n} does not fit the file")));
        }
        let mut header = vec![0u8; n];
        f.read_exact(&mut header).map_err(|_| corrupt(path, "truncated header"))?;
        serde_json::from_slice(&header).map_err(|e| corrupt(path, format!("bad header: {e}")))
    }

    /// Reads an index, checking its checksum.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| RetrieveError::io(path, e))?;
        if bytes.len() < 20 || &bytes[..8] != MAGIC {
            return Err(corrupt(path, "not an index file (bad magic)"));
        }
        let (body, tail) = bytes.split_at(bytes.len() - 8);
        let legacy = if xxhash_rust::xxh3::xxh3_64(body).to_le_bytes() == tail {
            false
        } else {
            let mut sum = Fnv::new();
            sum.update(body);
            if sum.finish().to_le_bytes() != tail {
                return Err(corrupt(path, "checksum mismatch: the file is damaged or truncated"));
            }
            true
        };
        let mut r = Cursor { buf: body, pos: 8, path };
        let n = r.u32()? as usize;
        let header: IndexHeader = serde_json::from_slice(r.take(n)?).map_err(|e| corrupt(path, format!("bad header: {e}")))?;
        if header.format > FORMAT {
            return Err(corrupt(path, format!("index format {} is newer than this program reads ({FORMAT})", header.format)));
        }
        if legacy != (header.format < 2) {
            return Err(corrupt(path, "checksum mismatch: the file is damaged or truncated"));
        }
        if header.dim == 0 || header.dim > MAX_DIM {
            return Err(corrupt(path, format!("vector size {} is outside 1..={MAX_DIM}", header.dim)));
        }
        // Each stored sentence takes its vector and at least a 4-byte length: a count the
        // file cannot hold is refused before anything of that size is allocated.
        let room = (body.len() - r.pos) / (header.dim * 4 + 4);
        if header.count > room {
            return Err(corrupt(path, format!("header says {} sentences, but the file holds at most {room}", header.count)));
        }
        let values = header.count.checked_mul(header.dim).ok_or_else(|| corrupt(path, "absurd size"))?;
        let raw = r.take(values.checked_mul(4).ok_or_else(|| corrupt(path, "absurd size"))?)?;
        let vectors = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let mut sentences = Vec::with_capacity(header.count);
        for i in 0..header.count {
            let len = r.u32()? as usize;
            let s = std::str::from_utf8(r.take(len)?).map_err(|_| corrupt(path, format!("sentence {i} is not UTF-8")))?;
            sentences.push(s.to_string());
        }
        if r.pos != body.len() {
            return Err(corrupt(path, "trailing bytes after the sentences"));
        }
        Ok(Self { header, vectors, sentences })
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> RetrieveError {
    RetrieveError::Corrupt { path: PathBuf::from(path), reason: reason.into() }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| corrupt(self.path, "truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        let mut idx = Index::new("abc", 2);
        idx.extend(vec!["héllo".into(), "world, \"quoted\"\nline".into()], &[1.0, 0.0, 0.6, 0.8]).unwrap();
        idx
    }

    #[test]
    fn round_trip_and_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.idx");
        sample().save(&p).unwrap();
        assert_eq!(Index::load(&p).unwrap(), sample());
        assert_eq!(Index::read_header(&p).unwrap().count, 2);
    }

    #[test]
    fn damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.idx");
        sample().save(&p).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&p, &bytes).unwrap();
        assert!(Index::load(&p).unwrap_err().to_string().contains("checksum"));
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        assert!(Index::load(&p).is_err());
        std::fs::write(&p, b"garbage file").unwrap();
        assert!(Index::load(&p).unwrap_err().to_string().contains("i.idx"));
    }

    /// Indexes written before format 2 (FNV-1a checksum) still load.
    #[test]
    fn format_1_files_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.idx");
        sample().save(&p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let text = String::from_utf8_lossy(&bytes[..60]).to_string();
        assert!(text.contains("\"format\":2"), "{text}");
        // Rewrite as format 1: same header with format 1, FNV-1a checksum.
        let at = bytes.windows(10).position(|w| w == b"\"format\":2").unwrap() + 9;
        let mut old = bytes[..bytes.len() - 8].to_vec();
        old[at] = b'1';
        let mut sum = Fnv::new();
        sum.update(&old);
        old.extend_from_slice(&sum.finish().to_le_bytes());
        std::fs::write(&p, &old).unwrap();
        let loaded = Index::load(&p).unwrap();
        assert_eq!(loaded.header.format, 1);
        assert_eq!((loaded.vectors, loaded.sentences), (sample().vectors, sample().sentences));
        // A format-1 header under an XXH3 checksum is not a file this program wrote.
        let mut mixed = old[..old.len() - 8].to_vec();
        let sum = xxhash_rust::xxh3::xxh3_64(&mixed);
        mixed.extend_from_slice(&sum.to_le_bytes());
        std::fs::write(&p, &mixed).unwrap();
        assert!(Index::load(&p).unwrap_err().to_string().contains("checksum"));
    }

    #[test]
    fn mismatched_model_is_refused() {
        let idx = sample();
        let p = Path::new("x.idx");
        assert!(idx.check_model(p, "abc", 2).is_ok());
        assert!(idx.check_model(p, "abc", 3).unwrap_err().to_string().contains("dimensions"));
        assert!(idx.check_model(p, "zzz", 2).unwrap_err().to_string().contains("rebuild"));
    }

    #[test]
    fn wrong_vector_count_is_refused() {
        let mut idx = Index::new("abc", 2);
        assert!(idx.extend(vec!["a".into()], &[1.0]).is_err());
    }
}
