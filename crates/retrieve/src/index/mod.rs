//! A persistent index: unit vectors, the sentences they came from, a stable id (and optional
//! external key) per item, and the fingerprint of the model that made them.
//!
//! An index at `PATH` is two files:
//!
//! - the **snapshot** `PATH` ([`file`]): written whole and atomically by `retrieve index` and by
//!   compaction; format 3 lays the vectors out aligned so that they are memory-mapped, not read:
//!   opening a large index costs its checksum pass, and a search touches only the pages it reads;
//!   format 4 does the same with vectors quantised to i8 (`vectors.rs`), a quarter of the
//!   bytes, for indexes created with [`VectorKind::I8`];
//! - the **journal** `PATH.journal` ([`journal`]): adds and removals since the snapshot, appended
//!   and synced record by record, so an add costs its own bytes instead of a rewrite of the whole
//!   index, and a `kill -9` mid-append leaves a torn last record that the next open ignores (the
//!   old state).
//!
//! Ids are handed out in increasing order and never reused, so the rows of an index are sorted
//! by id and a row is found by binary search. Writers hold [`Index::lock`] from before they read
//! until after they write; a writer that opened the index earlier first takes in what other
//! writers appended ([`Index::refresh`]).

pub(crate) mod file;
pub(crate) mod journal;

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::search::{self, Hit};
use crate::vectors::Stored;
pub use crate::vectors::VectorKind;
use crate::{Result, RetrieveError};
use journal::Record;

pub use file::MAX_DIM;

/// What the snapshot's header records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexHeader {
    /// Layout version.
    pub format: u32,
    /// Fingerprint of the model package that embedded the sentences.
    pub fingerprint: String,
    /// Vector size.
    pub dim: usize,
    /// Number of items in the snapshot.
    pub count: usize,
    /// Hash of the source file the index was built from, when built from one (the cache uses it
    /// to notice a changed corpus).
    #[serde(default)]
    pub source_hash: Option<String>,
    /// Names the index across compactions; a journal that names another index is not applied.
    #[serde(default)]
    pub uid: u64,
    /// The id the next added item gets.
    #[serde(default)]
    pub next_id: u64,
    /// The last journal record the snapshot already holds.
    #[serde(default)]
    pub journal_seq: u64,
    /// How the snapshot stores the vectors (items added since, in the journal, are f32 until
    /// the next compaction).
    #[serde(default, skip_serializing_if = "VectorKind::is_f32")]
    pub vectors: VectorKind,
}

/// The items of a snapshot: read into memory (formats 1 and 2, and new indexes) or mapped.
pub(crate) enum Rows {
    Owned(Owned),
    Mapped(file::Mapped),
}

/// Items held in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Owned {
    vectors: Vec<f32>,
    sentences: Vec<String>,
    ids: Vec<u64>,
    keys: Vec<Option<String>>,
}

impl Owned {
    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// Sentences and their vectors, searchable exactly ([`Index::top_k`]) or through an
/// [`crate::ann::Ann`].
pub struct Index {
    /// Snapshot header, with `next_id` and `journal_seq` kept current as records are applied.
    pub header: IndexHeader,
    base: Rows,
    /// Items added since the snapshot.
    tail: Owned,
    /// Rows removed since the snapshot.
    removed: HashSet<usize>,
    /// Bytes of the journal taken in, and the snapshot's identity when it was read: what
    /// [`Index::refresh`] compares against.
    journal_len: u64,
    journal_inode: Option<u64>,
    snapshot_stamp: Option<file::Stamp>,
    /// The snapshot's own `journal_seq`, before the journal was applied.
    snapshot_seq: u64,
    /// Whether this handle has cleared killed writers' temporaries yet.
    swept: bool,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("header", &self.header).field("rows", &self.rows()).field("removed", &self.removed.len()).finish()
    }
}

/// One item to add: the sentence and, optionally, the caller's own key for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewItem {
    /// The sentence.
    pub text: String,
    /// The caller's key (e.g. a row id of their own), returned with every hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Index {
    /// An empty index for vectors of `dim` made by the model with `fingerprint`.
    pub fn new(fingerprint: &str, dim: usize) -> Self {
        let header = IndexHeader {
            format: file::FORMAT,
            fingerprint: fingerprint.to_string(),
            dim,
            count: 0,
            source_hash: None,
            uid: fresh_uid(),
            next_id: 0,
            journal_seq: 0,
            vectors: VectorKind::F32,
        };
        Self::from_parts(header, Rows::Owned(Owned::default()))
    }

    fn from_parts(header: IndexHeader, base: Rows) -> Self {
        let snapshot_seq = header.journal_seq;
        Self {
            header,
            base,
            tail: Owned::default(),
            removed: HashSet::new(),
            journal_len: 0,
            journal_inode: None,
            snapshot_stamp: None,
            snapshot_seq,
            swept: false,
        }
    }

    fn base_len(&self) -> usize {
        match &self.base {
            Rows::Owned(o) => o.len(),
            Rows::Mapped(m) => m.len(),
        }
    }

    /// Rows of the snapshot (the journal's rows follow them).
    pub(crate) fn snapshot_rows(&self) -> usize {
        self.base_len()
    }

    /// Rows, removed ones included; row numbers run `0..rows()`.
    pub fn rows(&self) -> usize {
        self.base_len() + self.tail.len()
    }

    /// Number of items (removed ones not counted).
    pub fn len(&self) -> usize {
        self.rows() - self.removed.len()
    }

    /// Whether the index holds no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Vector size.
    pub fn dim(&self) -> usize {
        self.header.dim
    }

    /// Whether the snapshot's vectors are memory-mapped rather than read into memory.
    pub fn is_mapped(&self) -> bool {
        matches!(self.base, Rows::Mapped(_))
    }

    /// Declares that this index will be read in scattered places (searched through a graph), so
    /// that a mapped snapshot is not read ahead around each vector.
    pub fn expect_scattered_reads(&self) {
        if let Rows::Mapped(m) = &self.base {
            m.expect_scattered_reads();
        }
    }

    /// The vector of row `row` (dequantised when the snapshot stores i8).
    pub fn vector(&self, row: usize) -> Cow<'_, [f32]> {
        let (d, b) = (self.header.dim, self.base_len());
        if row < b {
            self.base_vectors().row(d, row)
        } else {
            Cow::Borrowed(&self.tail.vectors[(row - b) * d..(row - b + 1) * d])
        }
    }

    /// The dot product of row `row`'s vector with `query` (its cosine similarity, both being
    /// unit vectors), read in place.
    pub fn score(&self, row: usize, query: &[f32]) -> f32 {
        if row < self.base_len() {
            self.base_vectors().dot(self.header.dim, row, query)
        } else {
            // A journal row: borrowed, not copied.
            search::dot(&self.vector(row), query)
        }
    }

    /// Row `row`'s i8 codes and scale, when the snapshot stores it quantised.
    pub(crate) fn quantised(&self, row: usize) -> Option<(&[i8], f32)> {
        (row < self.base_len()).then(|| self.base_vectors().quantised(self.header.dim, row)).flatten()
    }

    fn base_vectors(&self) -> Stored<'_> {
        match &self.base {
            Rows::Owned(o) => Stored::F32(&o.vectors),
            Rows::Mapped(m) => m.stored(),
        }
    }

    /// The sentence of row `row`.
    pub fn sentence(&self, row: usize) -> &str {
        let b = self.base_len();
        match &self.base {
            _ if row >= b => &self.tail.sentences[row - b],
            Rows::Owned(o) => &o.sentences[row],
            Rows::Mapped(m) => m.sentence(row),
        }
    }

    /// The stable id of row `row`.
    pub fn id(&self, row: usize) -> u64 {
        let b = self.base_len();
        match &self.base {
            _ if row >= b => self.tail.ids[row - b],
            Rows::Owned(o) => o.ids[row],
            Rows::Mapped(m) => m.id(row),
        }
    }

    /// The caller's key of row `row`, if it was given one.
    pub fn key(&self, row: usize) -> Option<&str> {
        let b = self.base_len();
        match &self.base {
            _ if row >= b => self.tail.keys[row - b].as_deref(),
            Rows::Owned(o) => o.keys[row].as_deref(),
            Rows::Mapped(m) => m.key(row),
        }
    }

    /// Whether row `row` was removed.
    pub fn is_removed(&self, row: usize) -> bool {
        self.removed.contains(&row)
    }

    /// The row of the item with `id`, if it is stored and not removed. Rows are sorted by id.
    pub fn row_of(&self, id: u64) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.rows());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.id(mid) < id {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo < self.rows() && self.id(lo) == id && !self.removed.contains(&lo)).then_some(lo)
    }

    /// The rows removed since the snapshot, in no order.
    pub fn removed_rows(&self) -> impl Iterator<Item = usize> + '_ {
        self.removed.iter().copied()
    }

    /// The rows not removed, in order.
    pub fn live_rows(&self) -> impl Iterator<Item = usize> + Clone + '_ {
        (0..self.rows()).filter(|r| !self.removed.contains(r))
    }

    /// The vectors of the rows not removed, contiguous (for paraphrase mining), with their rows.
    pub fn live_vectors(&self) -> (Cow<'_, [f32]>, Vec<usize>) {
        if let (true, 0, Stored::F32(all)) = (self.removed.is_empty(), self.tail.len(), self.base_vectors()) {
            return (Cow::Borrowed(all), (0..self.rows()).collect());
        }
        let rows: Vec<usize> = self.live_rows().collect();
        let mut v = Vec::with_capacity(rows.len() * self.header.dim);
        for &r in &rows {
            v.extend_from_slice(&self.vector(r));
        }
        (Cow::Owned(v), rows)
    }

    /// Appends sentences with their vectors (`sentences.len() × dim` values), without keys.
    pub fn extend(&mut self, sentences: Vec<String>, vectors: &[f32]) -> Result<()> {
        self.push(sentences.into_iter().map(|text| NewItem { text, key: None }).collect(), vectors).map(|_| ())
    }

    /// Appends items with their vectors in memory; returns their new ids.
    pub fn push(&mut self, items: Vec<NewItem>, vectors: &[f32]) -> Result<Vec<u64>> {
        self.check_vectors(items.len(), vectors)?;
        let first = self.header.next_id;
        let n = items.len() as u64;
        if first.checked_add(n).is_none_or(|end| end == u64::MAX) {
            return Err(RetrieveError::Invalid(format!("no ids left for {n} more items (next id {first})")));
        }
        for (i, item) in items.into_iter().enumerate() {
            self.tail.ids.push(first + i as u64);
            self.tail.sentences.push(item.text);
            self.tail.keys.push(item.key);
        }
        self.tail.vectors.extend_from_slice(vectors);
        self.header.next_id = first + n;
        Ok((first..first + n).collect())
    }

    fn check_vectors(&self, n: usize, vectors: &[f32]) -> Result<()> {
        if vectors.len() != n * self.header.dim {
            return Err(RetrieveError::Invalid(format!("{n} vectors of size {} expected, got {} values", self.header.dim, vectors.len())));
        }
        Ok(())
    }

    /// Marks the item with `id` removed in memory; false if there is no such item.
    pub fn remove(&mut self, id: u64) -> bool {
        match self.row_of(id) {
            Some(row) => self.removed.insert(row),
            None => false,
        }
    }

    /// Errors unless this index was built by the model with `fingerprint` and `dim`.
    pub fn check_model(&self, path: &Path, fingerprint: &str, dim: usize) -> Result<()> {
        check_model(&self.header, path, fingerprint, dim)
    }

    /// Takes the writer lock of the index at `path` (`PATH.lock`), waiting for another writer;
    /// `on_wait` is told when it must. Hold it from before [`load`](Self::load) (or
    /// [`refresh`](Self::refresh)) until after the write, so that concurrent writers each see
    /// the other's changes.
    pub fn lock(path: &Path, on_wait: impl FnOnce(&Path)) -> Result<fsio::WriterLock> {
        Ok(fsio::WriterLock::acquire(path, on_wait)?)
    }

    /// Reads only the snapshot's header, e.g. to decide whether a cached index is still current.
    pub fn read_header(path: &Path) -> Result<IndexHeader> {
        file::read_header(path)
    }

    /// Opens the index at `path`: the snapshot (mapped when it is format 3), then the journal's
    /// records after it. A torn last record (a writer killed mid-append) is ignored.
    pub fn load(path: &Path) -> Result<Self> {
        let (header, base, stamp) = file::open(path)?;
        let mut index = Self::from_parts(header, base);
        index.snapshot_stamp = Some(stamp);
        index.take_in_journal(path)?;
        Ok(index)
    }

    /// Takes in what other writers did since this index was opened: the journal records
    /// appended since, or the whole index again if the snapshot was replaced (compacted or
    /// rebuilt). Call it under [`lock`](Self::lock) before appending.
    pub fn refresh(&mut self, path: &Path) -> Result<()> {
        let snapshot_replaced = self.snapshot_stamp.is_some() && file::stamp(path).ok() != self.snapshot_stamp;
        // A journal emptied or replaced since we read it (a compaction) is read afresh.
        let journal_replaced = self.journal_len > 0
            && match journal::identity(&journal::path_for(path)) {
                Some((inode, len)) => Some(inode) != self.journal_inode || len < self.journal_len,
                None => true,
            };
        if snapshot_replaced || journal_replaced {
            *self = Self::load(path)?;
            return Ok(());
        }
        self.take_in_journal(path)
    }

    fn take_in_journal(&mut self, path: &Path) -> Result<()> {
        let jpath = journal::path_for(path);
        let read = journal::read(&jpath, self.header.uid, self.header.dim, self.journal_len)?;
        for record in read.records {
            self.apply(&jpath, record)?;
        }
        self.journal_len = read.valid_len;
        self.journal_inode = read.inode;
        Ok(())
    }

    fn apply(&mut self, jpath: &Path, record: Record) -> Result<()> {
        if record.seq() <= self.header.journal_seq {
            return Ok(());
        }
        match record {
            Record::Add { seq, id, key, text, vector } => {
                if id < self.header.next_id || id == u64::MAX {
                    return Err(RetrieveError::Corrupt {
                        path: jpath.to_path_buf(),
                        reason: format!("record {seq} adds id {id}, which is not above the ids stored before it (or is the largest id)"),
                    });
                }
                self.header.next_id = id;
                self.push(vec![NewItem { text, key }], &vector)?;
                self.header.journal_seq = seq;
            }
            Record::Remove { seq, id } => {
                self.remove(id);
                self.header.journal_seq = seq;
            }
        }
        Ok(())
    }

    /// Adds `items` durably: appends them to the journal, syncs it, and only then applies them in
    /// memory. Returns their ids. Hold [`lock`](Self::lock) and [`refresh`](Self::refresh) first.
    pub fn append(&mut self, path: &Path, items: Vec<NewItem>, vectors: &[f32]) -> Result<Vec<u64>> {
        self.check_vectors(items.len(), vectors)?;
        self.check_room(items.len())?;
        self.ensure_snapshot(path)?;
        let d = self.header.dim;
        let (mut seq, mut id) = (self.header.journal_seq, self.header.next_id);
        let records: Vec<Record> = items
            .iter()
            .zip(vectors.chunks(d.max(1)))
            .map(|(item, v)| {
                seq += 1;
                id += 1;
                Record::Add { seq, id: id - 1, key: item.key.clone(), text: item.text.clone(), vector: v.to_vec() }
            })
            .collect();
        self.write_journal(path, &records)?;
        let ids = self.push(items, vectors)?;
        self.header.journal_seq = seq;
        Ok(ids)
    }

    /// Removes the items with `ids` durably (journal first, as [`append`](Self::append));
    /// returns the ids that were stored.
    pub fn delete(&mut self, path: &Path, ids: &[u64]) -> Result<Vec<u64>> {
        let mut found: Vec<u64> = ids.iter().copied().filter(|&id| self.row_of(id).is_some()).collect();
        found.sort_unstable();
        found.dedup();
        if found.is_empty() {
            return Ok(found);
        }
        self.check_room(found.len())?;
        self.ensure_snapshot(path)?;
        let mut seq = self.header.journal_seq;
        let records: Vec<Record> = found
            .iter()
            .map(|&id| {
                seq += 1;
                Record::Remove { seq, id }
            })
            .collect();
        self.write_journal(path, &records)?;
        for &id in &found {
            self.remove(id);
        }
        self.header.journal_seq = seq;
        Ok(found)
    }

    /// Appends `records` to the journal of the index at `path` and notes where it now ends.
    /// The first write of a handle also clears the temporaries killed writers left in the
    /// directory, as every write of ours does (once, not on every add of a server).
    fn write_journal(&mut self, path: &Path, records: &[Record]) -> Result<()> {
        if !self.swept {
            fsio::sweep_stale(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")));
            self.swept = true;
        }
        let jpath = journal::path_for(path);
        self.journal_len = journal::append(&jpath, self.header.uid, self.header.dim, self.journal_len, records)?;
        self.journal_inode = journal::identity(&jpath).map(|(i, _)| i);
        Ok(())
    }

    /// Sequence numbers for `n` more records (a crafted header could leave none).
    fn check_room(&self, n: usize) -> Result<()> {
        match self.header.journal_seq.checked_add(n as u64) {
            Some(_) => Ok(()),
            None => Err(RetrieveError::Invalid(format!("journal sequence numbers exhausted (at {})", self.header.journal_seq))),
        }
    }

    /// A journal extends a snapshot; an index that has none on disk yet gets one first.
    fn ensure_snapshot(&mut self, path: &Path) -> Result<()> {
        if self.snapshot_stamp.is_none() {
            self.compact(path)?;
        }
        Ok(())
    }

    /// The last journal record the snapshot itself holds (a graph built from the snapshot
    /// covers up to it).
    pub fn snapshot_seq(&self) -> u64 {
        self.snapshot_seq
    }

    /// Bytes of journal taken in since the snapshot.
    pub fn journal_bytes(&self) -> u64 {
        self.journal_len
    }

    /// Writes every item not removed to a new snapshot at `path` (atomically), then empties the
    /// journal. A crash between the two leaves a journal whose records the snapshot already
    /// holds, which the next open skips. Hold [`lock`](Self::lock).
    pub fn compact(&mut self, path: &Path) -> Result<()> {
        self.compact_with(path, |_| Ok(()))
    }

    /// [`compact`](Self::compact) with a hook before the snapshot's rename (tests: a crash there).
    pub fn compact_with(&mut self, path: &Path, before_rename: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<()> {
        self.save_with(path, before_rename)?;
        // From here this handle's view of the journal is stale, whatever happens next: make the
        // next refresh reopen the index rather than trust it.
        self.journal_len = u64::MAX;
        journal::reset(&journal::path_for(path), self.header.uid)?;
        *self = Self::load(path)?;
        Ok(())
    }

    /// Writes the items not removed as a new snapshot at `path`, atomically, leaving any journal
    /// as it is (its records up to `journal_seq` are skipped on open).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_with(path, |_| Ok(()))
    }

    /// [`save`](Self::save) with a hook that runs after the temporary file is complete and
    /// before it replaces `path`; tests use it to simulate a crash at the worst moment.
    pub fn save_with(&self, path: &Path, before_rename: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<()> {
        file::write(self, path, before_rename)
    }

    /// Starts `path` afresh with this index: a new snapshot and no journal records. What
    /// `retrieve index` does when it (re)builds an index.
    pub fn create(&mut self, path: &Path) -> Result<()> {
        // A new index: a journal left at PATH by the one it replaces names another uid.
        self.header.uid = fresh_uid();
        self.header.journal_seq = 0;
        self.save(path)?;
        journal::reset(&journal::path_for(path), self.header.uid)?;
        *self = Self::load(path)?;
        Ok(())
    }

    /// The `k` items most similar to `query` (exact, over the rows not removed), best first.
    pub fn top_k(&self, query: &[f32], k: usize) -> Vec<Hit> {
        self.top_k_batch(query, k).pop().unwrap_or_default()
    }

    /// [`top_k`](Self::top_k) for many queries (`m × dim`), one matrix search per part (the
    /// snapshot's rows, then the journal's); removed rows are passed over inside the selection.
    pub fn top_k_batch(&self, queries: &[f32], k: usize) -> Vec<Vec<Hit>> {
        let d = self.header.dim.max(1);
        let m = queries.len() / d;
        let b = self.base_len();
        let removed = &self.removed;
        let keep_base = |row: usize| !removed.contains(&row);
        let keep_tail = |row: usize| !removed.contains(&(row + b));
        let mut parts = search::top_k_batch_keeping(self.base_vectors(), d, queries, k, (!removed.is_empty()).then_some(&keep_base as _));
        if self.tail.len() > 0 {
            let tail = search::top_k_batch_keeping(
                Stored::F32(&self.tail.vectors),
                d,
                queries,
                k,
                (!removed.is_empty()).then_some(&keep_tail as _),
            );
            for (p, t) in parts.iter_mut().zip(tail) {
                p.extend(t.into_iter().map(|h| Hit { index: h.index + b, ..h }));
            }
        }
        parts.resize(m, Vec::new());
        for hits in &mut parts {
            search::sort_hits(hits);
            hits.truncate(k);
        }
        parts
    }

    /// The sentence, id and key of the items not removed, in order, as the snapshot writer lays
    /// them out (it reads the vectors by row, so an i8 snapshot's are not dequantised per pass).
    pub(crate) fn items(&self) -> impl Iterator<Item = (&str, u64, Option<&str>)> + Clone {
        self.live_rows().map(|r| (self.sentence(r), self.id(r), self.key(r)))
    }
}

/// Errors unless `header` describes an index built by the model with `fingerprint` and `dim`.
pub fn check_model(header: &IndexHeader, path: &Path, fingerprint: &str, dim: usize) -> Result<()> {
    if header.dim != dim {
        return Err(RetrieveError::ModelMismatch {
            path: path.to_path_buf(),
            reason: format!("index vectors have {} dimensions but the model makes {dim}", header.dim),
        });
    }
    if header.fingerprint != fingerprint {
        return Err(RetrieveError::ModelMismatch {
            path: path.to_path_buf(),
            reason: format!(
                "index was built with model {} but the loaded model is {fingerprint}; rebuild it with `retrieve index`",
                header.fingerprint
            ),
        });
    }
    Ok(())
}

/// A uid for a new index: time and process, mixed.
fn fresh_uid() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut bytes = nanos.to_le_bytes().to_vec();
    bytes.extend_from_slice(&std::process::id().to_le_bytes());
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    bytes.extend_from_slice(&COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes).max(1)
}

pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> RetrieveError {
    RetrieveError::Corrupt { path: PathBuf::from(path), reason: reason.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        let mut idx = Index::new("abc", 2);
        idx.extend(vec!["héllo".into(), "world, \"quoted\"\nline".into()], &[1.0, 0.0, 0.6, 0.8]).unwrap();
        idx
    }

    /// Every item as (id, key, sentence, vector), removed ones left out.
    fn items(idx: &Index) -> Vec<(u64, Option<String>, String, Vec<f32>)> {
        idx.live_rows().map(|r| (idx.id(r), idx.key(r).map(str::to_string), idx.sentence(r).to_string(), idx.vector(r).to_vec())).collect()
    }

    /// [`sample`] created as an index file in a fresh folder: (folder, path, index).
    fn created() -> (tempfile::TempDir, PathBuf, Index) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.idx");
        let mut idx = sample();
        idx.create(&p).unwrap();
        (dir, p, idx)
    }

    fn keyed(text: &str, key: Option<&str>) -> NewItem {
        NewItem { text: text.into(), key: key.map(str::to_string) }
    }

    #[test]
    fn round_trip_is_mapped_and_keeps_ids_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.idx");
        let mut idx = sample();
        idx.push(vec![keyed("third", Some("row-3")), keyed("", Some(""))], &[0.0, 1.0, -1.0, 0.0]).unwrap();
        idx.save(&p).unwrap();
        let back = Index::load(&p).unwrap();
        assert!(back.is_mapped());
        assert_eq!(items(&back), items(&idx));
        assert_eq!(back.key(3), Some(""), "an empty key is a key");
        assert_eq!(back.header.next_id, 4);
        assert_eq!(Index::read_header(&p).unwrap().count, 4);
        assert_eq!(back.row_of(2), Some(2));
        assert_eq!(back.row_of(9), None);
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

    /// A well-checksummed file whose header claims more items than it holds, or whose ids are
    /// out of order, is refused (nothing is allocated from the claim).
    #[test]
    fn crafted_sizes_and_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.idx");
        let rewrite = |from: &str, to: &str| {
            sample().save(&p).unwrap();
            let bytes = std::fs::read(&p).unwrap();
            let at = bytes.windows(from.len()).position(|w| w == from.as_bytes()).unwrap();
            let mut body = bytes[..bytes.len() - 8].to_vec();
            body.splice(at..at + from.len(), to.bytes());
            let sum = xxhash_rust::xxh3::xxh3_64(&body);
            body.extend_from_slice(&sum.to_le_bytes());
            std::fs::write(&p, &body).unwrap();
        };
        rewrite("\"count\":2", "\"count\":9");
        assert!(Index::load(&p).unwrap_err().to_string().contains("holds at most"));
        rewrite("\"next_id\":2", "\"next_id\":1");
        assert!(Index::load(&p).unwrap_err().to_string().contains("id 1"));
    }

    /// A format-1 (FNV-1a) or format-2 (XXH3) file, as older versions wrote them.
    fn legacy(format: u32, sentences: &[&str], vectors: &[f32]) -> Vec<u8> {
        let header = format!(r#"{{"format":{format},"fingerprint":"abc","dim":2,"count":{},"source_hash":null}}"#, sentences.len());
        let mut b = b"TWINIDX1".to_vec();
        b.extend_from_slice(&(header.len() as u32).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        for v in vectors {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for s in sentences {
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        }
        let sum = if format == 1 {
            let mut f = file::Fnv::new();
            f.update(&b);
            f.finish()
        } else {
            xxhash_rust::xxh3::xxh3_64(&b)
        };
        b.extend_from_slice(&sum.to_le_bytes());
        b
    }

    /// Indexes written before format 3 still load (ids are their rows), take adds, and compact
    /// to format 3.
    #[test]
    fn format_1_and_2_files_still_load_and_grow() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.idx");
        for format in [1, 2] {
            std::fs::write(&p, legacy(format, &["héllo", "world, \"quoted\"\nline"], &[1.0, 0.0, 0.6, 0.8])).unwrap();
            let mut idx = Index::load(&p).unwrap();
            assert_eq!((idx.header.format, idx.is_mapped()), (format, false));
            assert_eq!(items(&idx), items(&sample()));
            assert_eq!(idx.append(&p, vec![keyed("new", Some("k"))], &[0.0, 1.0]).unwrap(), [2]);
            assert_eq!(items(&Index::load(&p).unwrap()), items(&idx), "format {format}: the journal extends a legacy file");
            idx.compact(&p).unwrap();
            let back = Index::load(&p).unwrap();
            assert!(back.is_mapped());
            assert_eq!(items(&back), items(&idx));
        }
        // A format-1 header under an XXH3 checksum is not a file this program wrote.
        let mut mixed = legacy(1, &["a"], &[1.0, 0.0]);
        let n = mixed.len() - 8;
        let sum = xxhash_rust::xxh3::xxh3_64(&mixed[..n]);
        mixed[n..].copy_from_slice(&sum.to_le_bytes());
        std::fs::write(&p, &mixed).unwrap();
        assert!(Index::load(&p).unwrap_err().to_string().contains("checksum"));
    }

    /// A deterministic unit vector of `dim` values for item `i`.
    fn unit(i: usize, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim).map(|j| ((i * 31 + j * 17) as f32 * 0.37).sin()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    /// An index that stores i8 vectors writes format 4 (smaller than format 3), maps it, keeps
    /// every value within half a step, searches exactly over what it stores (one query and a
    /// batch alike), and compacts with a journal add without changing the stored values.
    #[test]
    fn i8_vectors_round_trip_search_and_compact() {
        let dir = tempfile::tempdir().unwrap();
        let (p, p32) = (dir.path().join("i8.idx"), dir.path().join("f32.idx"));
        let (n, dim) = (60, 16);
        let vectors: Vec<f32> = (0..n).flat_map(|i| unit(i, dim)).collect();
        let sentences = || (0..n).map(|i| format!("s{i}")).collect::<Vec<_>>();
        let mut idx = Index::new("abc", dim);
        idx.header.vectors = VectorKind::I8;
        idx.extend(sentences(), &vectors).unwrap();
        idx.create(&p).unwrap();
        let mut f32_idx = Index::new("abc", dim);
        f32_idx.extend(sentences(), &vectors).unwrap();
        f32_idx.create(&p32).unwrap();
        let size = |p: &Path| std::fs::metadata(p).unwrap().len();
        // Each vector takes `dim` bytes and a 4-byte scale instead of `4 × dim` bytes (the
        // headers differ by at most their padding).
        let saved = size(&p32) as i64 - size(&p) as i64;
        assert!((saved - (n * (3 * dim - 4)) as i64).abs() <= 64, "{} bytes against {}", size(&p), size(&p32));

        let back = Index::load(&p).unwrap();
        assert!(back.is_mapped());
        assert_eq!((back.header.format, back.header.vectors, back.len()), (4, VectorKind::I8, n));
        for r in 0..n {
            let original = &vectors[r * dim..(r + 1) * dim];
            let step = original.iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0;
            for (a, b) in back.vector(r).iter().zip(original) {
                assert!((a - b).abs() <= step / 2.0 + 1e-6, "row {r}: {a} for {b}");
            }
            assert_eq!(back.sentence(r), format!("s{r}"));
        }
        let queries: Vec<f32> = (100..106).flat_map(|i| unit(i, dim)).collect();
        let stored: Vec<f32> = (0..n).flat_map(|r| back.vector(r).to_vec()).collect();
        let batch = back.top_k_batch(&queries, 7);
        for (qi, q) in queries.chunks(dim).enumerate() {
            let naive = search::top_k_naive(&stored, dim, q, 7);
            let one = back.top_k(q, 7);
            assert_eq!(one.iter().map(|h| h.index).collect::<Vec<_>>(), naive.iter().map(|h| h.index).collect::<Vec<_>>());
            for ((a, b), c) in one.iter().zip(&naive).zip(&batch[qi]) {
                assert!((a.score - b.score).abs() < 1e-5 && (c.score - b.score).abs() < 1e-5);
                assert!((back.score(a.index, q) - a.score).abs() < 1e-6);
            }
        }

        let mut grown = Index::load(&p).unwrap();
        grown.append(&p, vec![keyed("added", Some("k"))], &unit(999, dim)).unwrap();
        assert_eq!(&*grown.vector(n), &unit(999, dim)[..], "the journal keeps f32 until compaction");
        grown.compact(&p).unwrap();
        assert_eq!(grown.header.vectors, VectorKind::I8);
        for r in 0..n {
            assert_eq!(grown.vector(r), back.vector(r), "row {r} changed in compaction");
        }
        assert_eq!((grown.len(), grown.sentence(n), grown.key(n)), (n + 1, "added", Some("k")));
    }

    /// A format number that does not match the vectors the header names is refused.
    #[test]
    fn format_and_vector_kind_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.idx");
        let mut idx = sample();
        idx.header.vectors = VectorKind::I8;
        idx.save(&p).unwrap();
        assert_eq!(Index::load(&p).unwrap().len(), 2);
        let bytes = std::fs::read(&p).unwrap();
        let (from, to) = (b"\"format\":4", b"\"format\":3");
        let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
        let mut body = bytes[..bytes.len() - 8].to_vec();
        body.splice(at..at + from.len(), to.iter().copied());
        let sum = xxhash_rust::xxh3::xxh3_64(&body);
        body.extend_from_slice(&sum.to_le_bytes());
        std::fs::write(&p, &body).unwrap();
        assert!(Index::load(&p).unwrap_err().to_string().contains("cannot hold"));
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

    /// Adds and removals go to the journal; a reopened index sees them, a second handle takes
    /// them in with `refresh`, and compaction folds them into the snapshot without changing ids.
    #[test]
    fn journal_adds_removes_refreshes_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.idx");
        let mut a = sample();
        a.create(&p).unwrap();
        let snapshot = std::fs::read(&p).unwrap();
        let mut b = Index::load(&p).unwrap();
        assert_eq!(a.append(&p, vec![keyed("x", Some("kx")), keyed("y", None)], &[0.0, 1.0, 0.6, -0.8]).unwrap(), [2, 3]);
        assert_eq!(a.delete(&p, &[0, 42]).unwrap(), [0]);
        assert_eq!(std::fs::read(&p).unwrap(), snapshot, "adds do not rewrite the snapshot");
        // The other handle catches up before its own add, so ids never collide.
        b.refresh(&p).unwrap();
        assert_eq!(b.append(&p, vec![keyed("z", None)], &[1.0, 0.0]).unwrap(), [4]);
        a.refresh(&p).unwrap();
        assert_eq!(items(&a), items(&b));
        let reopened = Index::load(&p).unwrap();
        assert_eq!(items(&reopened), items(&a));
        assert_eq!(reopened.len(), 4);
        assert_eq!(reopened.row_of(0), None);
        assert_eq!(reopened.key(reopened.row_of(2).unwrap()), Some("kx"));
        // Exact search covers the journal's items and skips removed ones.
        let hits = reopened.top_k(&[1.0, 0.0], 10);
        assert_eq!(hits.iter().map(|h| reopened.id(h.index)).collect::<Vec<_>>(), [4, 1, 3, 2]);

        let before = items(&reopened);
        let mut c = reopened;
        c.compact(&p).unwrap();
        assert_eq!(items(&c), before);
        assert_eq!(c.journal_bytes(), 16, "an empty journal is its header");
        assert_eq!(c.append(&p, vec![keyed("w", None)], &[0.0, 1.0]).unwrap(), [5], "ids are never reused");
        // b's snapshot was replaced: refresh reopens.
        b.refresh(&p).unwrap();
        assert_eq!(items(&b), items(&c));
    }

    /// A crash in compaction, before or after the new snapshot is in place, loses nothing and
    /// applies nothing twice.
    #[test]
    fn a_crash_during_compaction_keeps_one_state() {
        let (_dir, p, mut idx) = created();
        idx.append(&p, vec![keyed("x", None)], &[0.0, 1.0]).unwrap();
        idx.delete(&p, &[1]).unwrap();
        let want = items(&idx);
        // Killed before the rename: the old snapshot and the journal.
        let crash = idx.compact_with(&p, |_| Err(std::io::Error::other("killed")));
        assert!(crash.is_err());
        assert_eq!(items(&Index::load(&p).unwrap()), want);
        // Killed after the rename, before the journal was emptied: the new snapshot skips the
        // records it already holds.
        let idx = Index::load(&p).unwrap();
        let journal = std::fs::read(journal::path_for(&p)).unwrap();
        idx.save(&p).unwrap();
        std::fs::write(journal::path_for(&p), &journal).unwrap();
        let back = Index::load(&p).unwrap();
        assert_eq!(items(&back), want);
        assert_eq!(back.rows(), 2);
    }

    /// A handle opened between compaction's rename and its emptying of the journal, whose
    /// journal then shrinks under it (emptied, and another writer's add), reopens on refresh
    /// instead of reading past the end, and its own adds land where readers find them.
    #[test]
    fn a_handle_opened_mid_compaction_catches_up() {
        let (_dir, p, mut idx) = created();
        let many: Vec<NewItem> = (0..5).map(|i| keyed(&format!("item {i}"), None)).collect();
        idx.append(&p, many, &[0.0, 1.0].repeat(5)).unwrap();
        // Compaction's first half: the new snapshot, the old journal still in place.
        Index::load(&p).unwrap().save(&p).unwrap();
        let mut a = Index::load(&p).unwrap();
        // The second half, then another writer's add: the journal is shorter than `a` read.
        journal::reset(&journal::path_for(&p), a.header.uid).unwrap();
        let mut c = Index::load(&p).unwrap();
        c.append(&p, vec![keyed("after", None)], &[1.0, 0.0]).unwrap();
        a.refresh(&p).unwrap();
        assert_eq!(items(&a), items(&c));
        assert_eq!(a.append(&p, vec![keyed("more", None)], &[0.0, 1.0]).unwrap(), [8]);
        c.refresh(&p).unwrap();
        assert_eq!(items(&c), items(&a));
        assert_eq!(items(&Index::load(&p).unwrap()), items(&a));
    }

    /// An id at the top of the range, behind a valid checksum, is refused rather than wrapping.
    #[test]
    fn the_largest_id_is_refused() {
        let (_dir, p, idx) = created();
        let add = Record::Add { seq: 1, id: u64::MAX, key: None, text: "x".into(), vector: vec![1.0, 0.0] };
        journal::append(&journal::path_for(&p), idx.header.uid, 2, 16, &[add]).unwrap();
        assert!(Index::load(&p).unwrap_err().to_string().contains("largest id"));
    }

    /// Rebuilding an index at the same path starts a new journal: the old one's records are
    /// not applied to the new snapshot.
    #[test]
    fn a_rebuilt_index_ignores_the_old_journal() {
        let (_dir, p, mut idx) = created();
        idx.append(&p, vec![keyed("x", None)], &[0.0, 1.0]).unwrap();
        let journal = std::fs::read(journal::path_for(&p)).unwrap();
        let mut fresh = sample();
        fresh.create(&p).unwrap();
        // Even if the old journal came back (a crash before it was reset), it names another index.
        std::fs::write(journal::path_for(&p), &journal).unwrap();
        assert_eq!(items(&Index::load(&p).unwrap()), items(&sample()));
    }
}
