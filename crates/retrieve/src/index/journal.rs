//! The journal of an index: adds and removals since its snapshot, appended in place.
//!
//! Layout (little-endian):
//!
//! ```text
//! b"TWINJRN1", u64 uid        the index (snapshot uid) the records extend
//! records, each:
//!   u32 n, n bytes of body, u64 XXH3-64 of the body
//!   body: u8 kind (1 add, 2 remove, 3 commit), u64 seq, u64 id (a commit: the batch's
//!         size), and for an add: u8 has key, [u32 len, key], u32 len, sentence, dim × f32
//! ```
//!
//! Each append is a batch of records closed by a commit record, written and synced before the
//! batch is acknowledged. A writer killed mid-append leaves a torn batch: reading stops at the
//! first record that is short or fails its checksum and keeps only whole batches (a `retrieve
//! add` of many sentences lands whole or not at all), and the next append truncates the rest. Records carry increasing sequence numbers;
//! a snapshot records the last one it holds, so a compaction that crashed before emptying the
//! journal does not apply anything twice.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::corrupt;
use crate::{Result, RetrieveError};

const MAGIC: &[u8; 8] = b"TWINJRN1";
const HEAD: u64 = 16;
/// Largest record body read; a sentence or key longer than this is refused when written.
const MAX_BODY: usize = 64 << 20;
const COMMIT: u8 = 3;

/// One change.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An item stored.
    Add {
        /// Sequence number.
        seq: u64,
        /// The item's id.
        id: u64,
        /// The caller's key.
        key: Option<String>,
        /// The sentence.
        text: String,
        /// Its vector.
        vector: Vec<f32>,
    },
    /// An item removed.
    Remove {
        /// Sequence number.
        seq: u64,
        /// The item's id.
        id: u64,
    },
}

impl Record {
    /// The record's sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            Record::Add { seq, .. } | Record::Remove { seq, .. } => *seq,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        match self {
            Record::Add { seq, id, key, text, vector } => {
                out.push(1);
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&id.to_le_bytes());
                match key {
                    Some(k) => {
                        out.push(1);
                        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
                        out.extend_from_slice(k.as_bytes());
                    }
                    None => out.push(0),
                }
                out.extend_from_slice(&(text.len() as u32).to_le_bytes());
                out.extend_from_slice(text.as_bytes());
                for x in vector {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
            Record::Remove { seq, id } => {
                out.push(2);
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
        let n = out.len() - start - 4;
        if n > MAX_BODY {
            return Err(RetrieveError::Invalid(format!("an item of {n} bytes is too large to store")));
        }
        out[start..start + 4].copy_from_slice(&(n as u32).to_le_bytes());
        let sum = xxhash_rust::xxh3::xxh3_64(&out[start + 4..]);
        out.extend_from_slice(&sum.to_le_bytes());
        Ok(())
    }

    /// Decodes a body whose checksum held; `None` if it is not a record of vectors of `dim`.
    fn decode(body: &[u8], dim: usize) -> Option<Record> {
        let mut r = body;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (a, b) = r.split_at_checked(n)?;
            r = b;
            Some(a)
        };
        let kind = take(1)?[0];
        let seq = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let id = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let record = match kind {
            1 => {
                let key = match take(1)?[0] {
                    0 => None,
                    _ => {
                        let n = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
                        Some(std::str::from_utf8(take(n)?).ok()?.to_string())
                    }
                };
                let n = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
                let text = std::str::from_utf8(take(n)?).ok()?.to_string();
                let raw = take(dim * 4)?;
                let vector = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                Record::Add { seq, id, key, text, vector }
            }
            2 => Record::Remove { seq, id },
            _ => return None,
        };
        r.is_empty().then_some(record)
    }
}

/// The journal of the index at `index_path`.
pub fn path_for(index_path: &Path) -> PathBuf {
    fsio::sibling(index_path, ".journal")
}

/// What [`read`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The whole records after the starting offset.
    pub records: Vec<Record>,
    /// Bytes up to the end of the last whole batch; 0 when there is no journal of this index.
    pub valid_len: u64,
    /// The journal file's identity (inode), to notice it was replaced.
    pub inode: Option<u64>,
}

/// The identity and length of the journal at `path`, if there is one.
pub(crate) fn identity(path: &Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((super::file::inode_of(&m), m.len()))
}

/// Reads the records of the journal at `path` from byte `from` (0: from the start). A missing
/// journal, or one of another index (a snapshot rebuilt since), holds nothing for this index.
pub fn read(path: &Path, uid: u64, dim: usize, from: u64) -> Result<Loaded> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(e) => return Err(RetrieveError::io(path, e)),
    };
    let io = |e| RetrieveError::io(path, e);
    let len = f.metadata().map_err(io)?.len();
    if !ours(path, &mut f, uid)? {
        return Ok(Loaded::default());
    }
    let mut pos = from.max(HEAD);
    if pos > len {
        return Err(corrupt(path, format!("is shorter ({len} bytes) than what was already read from it ({pos}); reopen the index")));
    }
    f.seek(SeekFrom::Start(pos)).map_err(io)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, f);
    let (mut records, mut batch) = (Vec::new(), Vec::new());
    let mut committed = pos;
    loop {
        let mut n = [0u8; 4];
        if len - pos < 4 || reader.read_exact(&mut n).is_err() {
            break;
        }
        let n = u32::from_le_bytes(n) as usize;
        // A torn or damaged record ends the journal: sizes are checked before allocating.
        if n > MAX_BODY || (n as u64 + 12) > len - pos {
            break;
        }
        let mut body = vec![0u8; n + 8];
        if reader.read_exact(&mut body).is_err() {
            break;
        }
        let (body, sum) = body.split_at(n);
        if xxhash_rust::xxh3::xxh3_64(body).to_le_bytes() != sum {
            break;
        }
        pos += n as u64 + 12;
        if body.first() == Some(&COMMIT) {
            if body.len() != 17 || u64::from_le_bytes(body[9..17].try_into().unwrap_or_default()) != batch.len() as u64 {
                return Err(corrupt(path, format!("commit at byte {} does not close the batch before it", pos - n as u64 - 12)));
            }
            records.append(&mut batch);
            committed = pos;
            continue;
        }
        let Some(record) = Record::decode(body, dim) else {
            return Err(corrupt(path, format!("record at byte {} is not a record of vectors of size {dim}", pos - n as u64 - 12)));
        };
        batch.push(record);
    }
    Ok(Loaded { records, valid_len: committed, inode: identity(path).map(|(i, _)| i) })
}

/// Whether the file is a journal of index `uid`; errors if it is not a journal at all (it is
/// left alone: this program did not write it).
fn ours(path: &Path, f: &mut std::fs::File, uid: u64) -> Result<bool> {
    let mut head = Vec::with_capacity(HEAD as usize);
    Read::take(&mut *f, HEAD).read_to_end(&mut head).map_err(|e| RetrieveError::io(path, e))?;
    if head.len() < HEAD as usize {
        // A journal whose creation was cut short holds nothing.
        return if MAGIC.starts_with(&head[..head.len().min(8)]) { Ok(false) } else { not_journal(path) };
    }
    if &head[..8] != MAGIC {
        return not_journal(path);
    }
    Ok(head[8..16] == uid.to_le_bytes())
}

fn not_journal(path: &Path) -> Result<bool> {
    Err(corrupt(path, "is not an index journal; move it away (it is where this index keeps its adds)"))
}

/// Appends `records` to the journal at `path`, which holds `known_len` valid bytes of index
/// `uid` (0: none yet), and syncs it; returns the new length. Bytes past `known_len` (a torn
/// record) are cut first. The caller holds the index's writer lock.
pub fn append(path: &Path, uid: u64, dim: usize, known_len: u64, records: &[Record]) -> Result<u64> {
    let io = |e| RetrieveError::io(path, e);
    let mut bytes = Vec::new();
    for r in records {
        r.encode(&mut bytes)?;
        if let Record::Add { vector, .. } = r {
            if vector.len() != dim {
                return Err(RetrieveError::Invalid(format!("vector of size {} in an index of {dim}", vector.len())));
            }
        }
    }
    // The commit: the batch's last sequence number and its size.
    let mut commit = vec![COMMIT];
    commit.extend_from_slice(&records.last().map_or(0, Record::seq).to_le_bytes());
    commit.extend_from_slice(&(records.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&(commit.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&commit);
    bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&commit).to_le_bytes());
    if known_len < HEAD {
        if let Ok(mut f) = std::fs::File::open(path) {
            // Refuses a file that is not a journal; one of another index is replaced.
            ours(path, &mut f, uid)?;
        }
        reset(path, uid)?;
    }
    let mut f = OpenOptions::new().read(true).write(true).open(path).map_err(io)?;
    let start = known_len.max(HEAD);
    f.set_len(start).map_err(io)?;
    f.seek(SeekFrom::Start(start)).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_data().map_err(io)?;
    Ok(start + bytes.len() as u64)
}

/// Replaces the journal at `path` with an empty one of index `uid`, atomically.
pub fn reset(path: &Path, uid: u64) -> Result<()> {
    let mut f = fsio::AtomicFile::create(path)?;
    f.write_all(MAGIC).and_then(|_| f.write_all(&uid.to_le_bytes())).map_err(|e| RetrieveError::io(path, e))?;
    f.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(seq: u64, text: &str) -> Record {
        Record::Add {
            seq,
            id: seq + 10,
            key: seq.is_multiple_of(2).then(|| format!("k{seq}")),
            text: text.into(),
            vector: vec![seq as f32, -1.5],
        }
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_ignored_then_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.idx.journal");
        let len = append(&p, 7, 2, 0, &[add(1, "héllo"), Record::Remove { seq: 2, id: 11 }]).unwrap();
        let len = append(&p, 7, 2, len, &[add(3, "third")]).unwrap();
        let got = read(&p, 7, 2, 0).unwrap();
        assert_eq!(got.records, [add(1, "héllo"), Record::Remove { seq: 2, id: 11 }, add(3, "third")]);
        assert_eq!(got.valid_len, len);
        // Reading from an offset returns only what follows it.
        assert_eq!(read(&p, 7, 2, got.valid_len).unwrap().records, []);
        // Another index's journal holds nothing for this one.
        assert_eq!(read(&p, 8, 2, 0).unwrap().valid_len, 0);

        // A writer killed mid-append: every cut of the last record reads as the old state.
        let full = std::fs::read(&p).unwrap();
        let before = append(&p, 7, 2, len, &[add(4, "fourth")]).unwrap();
        let with_fourth = std::fs::read(&p).unwrap();
        for cut in len as usize..before as usize {
            std::fs::write(&p, &with_fourth[..cut]).unwrap();
            let r = read(&p, 7, 2, 0).unwrap();
            assert_eq!((r.records.len(), r.valid_len), (3, len), "cut at {cut}");
        }
        // A damaged last record too; the next append cuts it away and follows the good ones.
        let mut damaged = with_fourth.clone();
        let last = damaged.len() - 3;
        damaged[last] ^= 0x40;
        std::fs::write(&p, &damaged).unwrap();
        assert_eq!(read(&p, 7, 2, 0).unwrap().records.len(), 3);
        append(&p, 7, 2, len, &[add(4, "fourth again")]).unwrap();
        let r = read(&p, 7, 2, 0).unwrap();
        assert_eq!(r.records.len(), 4);
        assert_eq!(r.records[3], add(4, "fourth again"));
        assert!(full.len() < std::fs::read(&p).unwrap().len());
    }

    /// A batch lands whole or not at all: a cut anywhere in a two-record batch keeps none of it.
    #[test]
    fn a_torn_batch_is_dropped_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.idx.journal");
        let len = append(&p, 7, 2, 0, &[add(1, "a")]).unwrap();
        let end = append(&p, 7, 2, len, &[add(2, "b"), add(3, "c")]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        for cut in len as usize..end as usize {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            assert_eq!(read(&p, 7, 2, 0).unwrap().records, [add(1, "a")], "cut at {cut}");
        }
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(read(&p, 7, 2, 0).unwrap().records.len(), 3);
    }

    #[test]
    fn a_file_that_is_not_a_journal_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.idx.journal");
        std::fs::write(&p, b"my notes, not a journal").unwrap();
        assert!(read(&p, 7, 2, 0).unwrap_err().to_string().contains("not an index journal"));
        assert!(append(&p, 7, 2, 0, &[add(1, "x")]).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"my notes, not a journal");
    }

    #[test]
    fn a_record_of_the_wrong_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.idx.journal");
        assert!(append(&p, 7, 3, 0, &[add(1, "x")]).is_err());
        append(&p, 7, 2, 0, &[add(1, "x")]).unwrap();
        assert!(read(&p, 7, 3, 0).unwrap_err().to_string().contains("size 3"));
    }
}
