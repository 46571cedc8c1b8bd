//! The snapshot file of an index.
//!
//! Layout (little-endian):
//!
//! ```text
//! b"TWINIDX1"                  magic
//! u32 header length, header    JSON (see IndexHeader); formats 3 and 4 pad it with spaces so
//!                              that what follows starts at a multiple of 64 bytes
//! count × dim × f32            vectors, row-major                      (formats 1 to 3)
//! count × f32, count × dim × i8  scales, then codes (crate::vectors)   (format 4)
//! count × u64                  ids, increasing                          (format 3)
//! count × u64, bytes           sentence ends in the blob, sentence blob (format 3)
//! count × u64, bytes           key ends, key blob: an empty entry is "no key", a present key
//!                              is a 0x01 byte and the key              (format 3)
//! count × (u32 len, bytes)     sentences, UTF-8                         (formats 1 and 2)
//! u64                          checksum of everything above: XXH3-64 (formats 2 to 4),
//!                              FNV-1a (format 1)
//! ```
//!
//! Format 4 is format 3 with i8 vectors (header `"vectors": "i8"`): a program that reads only
//! format 3 refuses it by its number instead of misreading it. Formats 3 and 4 are
//! memory-mapped: opening one streams it once through the checksum (with `read`, so the pages do
//! not count against the process) and checks every size and offset table; the vectors and
//! sentences are then read in place. Formats 1 and 2 (no ids: an item's
//! id is its row) are read into memory and still load; every write is format 3, or 4 for an
//! index that stores i8 vectors.
//!
//! Writes go to a temporary file in the same directory ([`fsio::AtomicFile`]), which is synced
//! and then renamed over the old snapshot, so a crash or kill mid-write leaves the previous one
//! intact. Every size in a header is checked against the file's real length before anything is
//! allocated.

use std::io::{Read, Write};
use std::path::Path;

use super::{corrupt, Index, IndexHeader, Owned, Rows};
use crate::vectors::{quantise, Stored, VectorKind};
use crate::{Result, RetrieveError};

const MAGIC: &[u8; 8] = b"TWINIDX1";

/// The layout version new files with f32 vectors get.
pub(crate) const FORMAT: u32 = 3;
/// The layout version of files with i8 vectors, and the newest this program reads.
pub(crate) const FORMAT_I8: u32 = 4;

/// The layout version a snapshot of vectors of `kind` is written in.
fn format_for(kind: VectorKind) -> u32 {
    match kind {
        VectorKind::F32 => FORMAT,
        VectorKind::I8 => FORMAT_I8,
    }
}

/// Longest JSON header read; real headers are a few hundred bytes.
const MAX_HEADER: usize = 1 << 20;
/// Widest vectors read; the shipped models make 256 and 512.
pub const MAX_DIM: usize = 1 << 16;
/// Where format 3 puts the vectors: a multiple of this many bytes.
const ALIGN: usize = 64;

/// What tells a snapshot file from the one that replaced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

/// The identity of the file at `path` now.
pub(crate) fn stamp(path: &Path) -> std::io::Result<Stamp> {
    Ok(stamp_of(&std::fs::metadata(path)?))
}

fn stamp_of(m: &std::fs::Metadata) -> Stamp {
    Stamp { len: m.len(), modified: m.modified().ok(), inode: inode_of(m) }
}

/// The file's inode (0 where there is none): what tells a file from one renamed over it.
pub(crate) fn inode_of(m: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(m);
    #[cfg(not(unix))]
    let inode = 0;
    inode
}

/// A format-3 or format-4 snapshot, mapped.
pub(crate) struct Mapped {
    map: memmap2::Mmap,
    count: usize,
    dim: usize,
    kind: VectorKind,
    /// Format 4: where the per-vector scales start (the codes follow them at `vectors`).
    scales: usize,
    vectors: usize,
    ids: usize,
    sentence_ends: usize,
    sentence_blob: usize,
    key_ends: usize,
    key_blob: usize,
}

impl Mapped {
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn stored(&self) -> Stored<'_> {
        let values = self.count * self.dim;
        match self.kind {
            VectorKind::F32 => {
                let bytes = &self.map[self.vectors..self.vectors + values * 4];
                // SAFETY: `open` checked that the region lies in the map, starts 4-aligned (the
                // map is page-aligned and the offset a multiple of 64) and that the target is
                // little-endian; every bit pattern is a valid f32.
                Stored::F32(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), values) })
            }
            VectorKind::I8 => {
                let scales = &self.map[self.scales..self.scales + self.count * 4];
                let codes = &self.map[self.vectors..self.vectors + values];
                // SAFETY: as above for the scales (they start at the aligned offset); the codes
                // are bytes, and every byte is a valid i8.
                unsafe {
                    Stored::I8 {
                        codes: std::slice::from_raw_parts(codes.as_ptr().cast::<i8>(), values),
                        scales: std::slice::from_raw_parts(scales.as_ptr().cast::<f32>(), self.count),
                    }
                }
            }
        }
    }

    fn u64_at(&self, at: usize) -> u64 {
        let b = &self.map[at..at + 8];
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// Entry `row` of an ends table and blob (checked monotone and in bounds by `open`).
    fn entry(&self, ends: usize, blob: usize, row: usize) -> &[u8] {
        let start = if row == 0 { 0 } else { self.u64_at(ends + 8 * (row - 1)) as usize };
        let end = self.u64_at(ends + 8 * row) as usize;
        &self.map[blob + start..blob + end]
    }

    pub(crate) fn id(&self, row: usize) -> u64 {
        self.u64_at(self.ids + 8 * row)
    }

    /// Tells the system that reads will be scattered (graph search re-scores a few vectors):
    /// no read-ahead around them, so the process holds only the pages it reads. Exact search
    /// scans in order and keeps the default. Advice only: errors are ignored.
    pub(crate) fn expect_scattered_reads(&self) {
        #[cfg(unix)]
        let _ = self.map.advise(memmap2::Advice::Random);
    }

    pub(crate) fn sentence(&self, row: usize) -> &str {
        // The writer stores UTF-8 and the checksum held; a crafted file shows a replacement.
        std::str::from_utf8(self.entry(self.sentence_ends, self.sentence_blob, row)).unwrap_or("\u{fffd}")
    }

    pub(crate) fn key(&self, row: usize) -> Option<&str> {
        match self.entry(self.key_ends, self.key_blob, row) {
            [] => None,
            [_, key @ ..] => Some(std::str::from_utf8(key).unwrap_or("\u{fffd}")),
        }
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

/// Writes the items of `index` that are not removed as a format-3 snapshot at `path` (format 4
/// when the index stores i8 vectors).
pub(crate) fn write(index: &Index, path: &Path, before_rename: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<()> {
    let io = |e| RetrieveError::io(path, e);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut w = Summing { inner: fsio::AtomicFile::create(path)?, sum: xxhash_rust::xxh3::Xxh3::new() };
    let kind = index.header.vectors;
    let header = IndexHeader { format: format_for(kind), count: index.len(), ..index.header.clone() };
    let mut header = serde_json::to_vec(&header).map_err(|e| RetrieveError::Invalid(e.to_string()))?;
    while !(12 + header.len()).is_multiple_of(ALIGN) {
        header.push(b' ');
    }
    w.write_all(MAGIC).map_err(io)?;
    w.write_all(&(header.len() as u32).to_le_bytes()).map_err(io)?;
    w.write_all(&header).map_err(io)?;
    let items = index.items();
    match kind {
        VectorKind::F32 => {
            let mut bytes = Vec::with_capacity(index.dim() * 4);
            for row in index.live_rows() {
                bytes.clear();
                bytes.extend(index.vector(row).iter().flat_map(|x| x.to_le_bytes()));
                w.write_all(&bytes).map_err(io)?;
            }
        }
        VectorKind::I8 => {
            // Rows the snapshot already holds as i8 are copied as they are (compaction never
            // quantises twice); the others are quantised. Scales first (they need the aligned
            // start), then the codes: each row is read twice, which costs less than holding
            // every code.
            let code = |row: usize, codes: &mut Vec<i8>| -> f32 {
                codes.clear();
                match index.quantised(row) {
                    Some((stored, scale)) => {
                        codes.extend_from_slice(stored);
                        scale
                    }
                    None => quantise(&index.vector(row), codes),
                }
            };
            let (mut codes, mut bytes) = (Vec::with_capacity(index.dim()), Vec::with_capacity(index.dim()));
            for row in index.live_rows() {
                w.write_all(&code(row, &mut codes).to_le_bytes()).map_err(io)?;
            }
            for row in index.live_rows() {
                code(row, &mut codes);
                bytes.clear();
                bytes.extend(codes.iter().map(|&c| c as u8));
                w.write_all(&bytes).map_err(io)?;
            }
        }
    }
    for (_, id, _) in items.clone() {
        w.write_all(&id.to_le_bytes()).map_err(io)?;
    }
    let mut end = 0u64;
    for (s, ..) in items.clone() {
        end += s.len() as u64;
        w.write_all(&end.to_le_bytes()).map_err(io)?;
    }
    for (s, ..) in items.clone() {
        w.write_all(s.as_bytes()).map_err(io)?;
    }
    let mut end = 0u64;
    for (.., key) in items.clone() {
        end += key.map_or(0, |k| 1 + k.len() as u64);
        w.write_all(&end.to_le_bytes()).map_err(io)?;
    }
    for (.., key) in items {
        if let Some(k) = key {
            w.write_all(&[1]).map_err(io)?;
            w.write_all(k.as_bytes()).map_err(io)?;
        }
    }
    let sum = w.sum.digest();
    w.inner.write_all(&sum.to_le_bytes()).map_err(io)?;
    w.inner.commit_with(before_rename)?;
    Ok(())
}

/// Reads only the header.
pub(crate) fn read_header(path: &Path) -> Result<IndexHeader> {
    let mut f = std::fs::File::open(path).map_err(|e| RetrieveError::io(path, e))?;
    let len = f.metadata().map_err(|e| RetrieveError::io(path, e))?.len();
    let mut head = [0u8; 12];
    f.read_exact(&mut head).map_err(|_| corrupt(path, "too short to be an index"))?;
    let n = header_len(path, &head, len)?;
    let mut header = vec![0u8; n];
    f.read_exact(&mut header).map_err(|_| corrupt(path, "truncated header"))?;
    parse_header(path, &header)
}

fn header_len(path: &Path, head: &[u8], file_len: u64) -> Result<usize> {
    if head.len() < 12 || &head[..8] != MAGIC {
        return Err(corrupt(path, "not an index file (bad magic)"));
    }
    let n = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
    if n > MAX_HEADER || n as u64 + 20 > file_len {
        return Err(corrupt(path, format!("header length {n} does not fit the file")));
    }
    Ok(n)
}

fn parse_header(path: &Path, bytes: &[u8]) -> Result<IndexHeader> {
    let header: IndexHeader = serde_json::from_slice(bytes).map_err(|e| corrupt(path, format!("bad header: {e}")))?;
    if header.format > FORMAT_I8 || header.format == 0 {
        return Err(corrupt(path, format!("index format {} is not one this program reads (1 to {FORMAT_I8})", header.format)));
    }
    let holds = if header.format == FORMAT_I8 { VectorKind::I8 } else { VectorKind::F32 };
    if header.vectors != holds {
        return Err(corrupt(path, format!("index format {} cannot hold {:?} vectors", header.format, header.vectors)));
    }
    if header.dim == 0 || header.dim > MAX_DIM {
        return Err(corrupt(path, format!("vector size {} is outside 1..={MAX_DIM}", header.dim)));
    }
    Ok(header)
}

/// Opens a snapshot: formats 3 and 4 mapped, older formats read.
pub(crate) fn open(path: &Path) -> Result<(IndexHeader, Rows, Stamp)> {
    let mut f = std::fs::File::open(path).map_err(|e| RetrieveError::io(path, e))?;
    // The identity of the file opened, not of whatever the path names a moment later.
    let stamp = stamp_of(&f.metadata().map_err(|e| RetrieveError::io(path, e))?);
    let len = stamp.len;
    let mut head = [0u8; 12];
    f.read_exact(&mut head).map_err(|_| corrupt(path, "too short to be an index"))?;
    let n = header_len(path, &head, len)?;
    let mut hbytes = vec![0u8; n];
    f.read_exact(&mut hbytes).map_err(|_| corrupt(path, "truncated header"))?;
    let parsed = parse_header(path, &hbytes);
    if parsed.as_ref().is_ok_and(|h| h.format < 3) {
        drop(f);
        let (header, owned) = read_legacy(path)?;
        return Ok((header, Rows::Owned(owned), stamp));
    }
    // Damage shows as a checksum mismatch, wherever it is (the header included).
    verify_checksum(path, &mut f, len)?;
    let header = parsed?;
    // SAFETY: the map is only read. Writers never modify a snapshot in place (they write a new
    // file and rename it), so the mapped bytes do not change under us.
    let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| RetrieveError::io(path, e))?;
    let mapped = layout(path, map, &header, 12 + n)?;
    if cfg!(target_endian = "big") || mapped.map.as_ptr().align_offset(4) != 0 {
        let le_f32 = |at: usize| {
            let b = &mapped.map[at..at + 4];
            f32::from_le_bytes([b[0], b[1], b[2], b[3]])
        };
        let vectors = match mapped.kind {
            VectorKind::F32 => (0..mapped.count * mapped.dim).map(|i| le_f32(mapped.vectors + 4 * i)).collect(),
            VectorKind::I8 => (0..mapped.count * mapped.dim)
                .map(|i| f32::from(mapped.map[mapped.vectors + i] as i8) * le_f32(mapped.scales + 4 * (i / mapped.dim)))
                .collect(),
        };
        let owned = Owned {
            vectors,
            sentences: (0..mapped.count).map(|r| mapped.sentence(r).to_string()).collect(),
            ids: (0..mapped.count).map(|r| mapped.id(r)).collect(),
            keys: (0..mapped.count).map(|r| mapped.key(r).map(str::to_string)).collect(),
        };
        return Ok((header, Rows::Owned(owned), stamp));
    }
    Ok((header, Rows::Mapped(mapped), stamp))
}

/// Streams the file (all but its last 8 bytes) through XXH3 and compares.
fn verify_checksum(path: &Path, f: &mut std::fs::File, len: u64) -> Result<()> {
    let sum = stream_xxh3(path, f, len - 8)?;
    let mut tail = [0u8; 8];
    f.read_exact(&mut tail).map_err(|e| RetrieveError::io(path, e))?;
    if sum.to_le_bytes() != tail {
        return Err(corrupt(path, "checksum mismatch: the file is damaged or truncated"));
    }
    Ok(())
}

/// XXH3-64 of the first `n` bytes of `f`, read from its start in 1 MiB pieces (with `read`, so a
/// large file passes through without being held).
pub(crate) fn stream_xxh3(path: &Path, f: &mut std::fs::File, n: u64) -> Result<u64> {
    use std::io::Seek;
    f.seek(std::io::SeekFrom::Start(0)).map_err(|e| RetrieveError::io(path, e))?;
    let mut sum = xxhash_rust::xxh3::Xxh3::new();
    let mut left = n;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let want = buf.len().min(left as usize);
        f.read_exact(&mut buf[..want]).map_err(|e| RetrieveError::io(path, e))?;
        sum.update(&buf[..want]);
        left -= want as u64;
    }
    Ok(sum.digest())
}

/// Finds the sections of a format-3 or format-4 file and checks that they, and every offset
/// table, fit.
fn layout(path: &Path, map: memmap2::Mmap, header: &IndexHeader, start: usize) -> Result<Mapped> {
    let body = map.len() - 8;
    let (count, dim, kind) = (header.count, header.dim, header.vectors);
    if !start.is_multiple_of(ALIGN) {
        return Err(corrupt(path, "vectors are not aligned"));
    }
    // Each item takes its vector (and scale) and three 8-byte entries: a count the file cannot
    // hold is refused before any size is computed from it.
    let vector_bytes = match kind {
        VectorKind::F32 => dim * 4,
        VectorKind::I8 => dim + 4,
    };
    let room = (body - start) / (vector_bytes + 24);
    if count > room {
        return Err(corrupt(path, format!("header says {count} items, but the file holds at most {room}")));
    }
    let (scales, vectors) = match kind {
        VectorKind::F32 => (start, start),
        VectorKind::I8 => (start, start + count * 4),
    };
    let ids = start + count * vector_bytes;
    let sentence_ends = ids + count * 8;
    let sentence_blob = sentence_ends + count * 8;
    let mut m = Mapped { map, count, dim, kind, scales, vectors, ids, sentence_ends, sentence_blob, key_ends: 0, key_blob: 0 };
    let sentence_len = ends_ok(path, &m, sentence_ends, sentence_blob, body, "sentence")?;
    m.key_ends = sentence_blob + sentence_len;
    m.key_blob = m.key_ends + count * 8;
    if m.key_blob > body {
        return Err(corrupt(path, "truncated key table"));
    }
    let key_len = ends_ok(path, &m, m.key_ends, m.key_blob, body, "key")?;
    if m.key_blob + key_len != body {
        return Err(corrupt(path, "trailing bytes after the keys"));
    }
    let mut previous = None;
    for row in 0..count {
        let id = m.id(row);
        if previous.is_some_and(|p| id <= p) || id >= header.next_id {
            return Err(corrupt(path, format!("item {row} has id {id}, out of order or not below next_id {}", header.next_id)));
        }
        previous = Some(id);
    }
    Ok(m)
}

/// Checks an ends table (non-decreasing, within the file); returns the blob's length.
fn ends_ok(path: &Path, m: &Mapped, ends: usize, blob: usize, body: usize, what: &str) -> Result<usize> {
    let mut last = 0u64;
    for row in 0..m.count {
        let end = m.u64_at(ends + 8 * row);
        if end < last {
            return Err(corrupt(path, format!("{what} {row} ends before it starts")));
        }
        last = end;
    }
    if last > (body - blob) as u64 {
        return Err(corrupt(path, format!("{what}s run past the end of the file")));
    }
    Ok(last as usize)
}

/// Formats 1 and 2: read whole; ids are rows.
fn read_legacy(path: &Path) -> Result<(IndexHeader, Owned)> {
    let bytes = std::fs::read(path).map_err(|e| RetrieveError::io(path, e))?;
    if bytes.len() < 20 || &bytes[..8] != MAGIC {
        return Err(corrupt(path, "not an index file (bad magic)"));
    }
    let (body, tail) = bytes.split_at(bytes.len() - 8);
    let xxh = xxhash_rust::xxh3::xxh3_64(body);
    let (legacy, sum) = if xxh.to_le_bytes() == tail {
        (false, xxh)
    } else {
        let mut sum = Fnv::new();
        sum.update(body);
        if sum.finish().to_le_bytes() != tail {
            return Err(corrupt(path, "checksum mismatch: the file is damaged or truncated"));
        }
        (true, sum.finish())
    };
    let mut r = Cursor { buf: body, pos: 8, path };
    let n = r.u32()? as usize;
    let mut header = parse_header(path, r.take(n)?)?;
    if legacy != (header.format < 2) {
        return Err(corrupt(path, "checksum mismatch: the file is damaged or truncated"));
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
    // No ids were stored: an item's id is its row, and the file's checksum names the index.
    header.next_id = header.count as u64;
    header.uid = sum.max(1);
    header.journal_seq = 0;
    let owned = Owned { vectors, ids: (0..header.count as u64).collect(), keys: vec![None; header.count], sentences };
    Ok((header, owned))
}

/// 64-bit FNV-1a: the checksum of format-1 files.
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
