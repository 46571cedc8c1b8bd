//! The teacher-neighbour lists, kept beside the teacher's vectors so that only the first run
//! of a transfer set pays for them.
//!
//! Finding every transfer sentence's nearest others is a product of the whole set with itself,
//! the longest step before the first epoch, and its answer depends only on the vectors trained
//! on and `k`: every seed of a recipe, and every recipe with the same transfer set and graded
//! slices, computes the same lists. They are stored as `TARGETS.nnK-KEY` (`TWINNBR1`):
//! `b"TWINNBR1" | u32 count | u32 k | 32-byte key | count·k u32 | SHA-256 of all before`,
//! little-endian, where the key is the SHA-256 of the vectors (`dim` and the values), so a file
//! for other vectors is never read as this one's. Runs that start together take the file's lock
//! in turn: one computes and writes, the others wait and read. A damaged or unwritable cache
//! costs a warning and the computation, never the run.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Result, TrainError};

const MAGIC: &[u8; 8] = b"TWINNBR1";
const HEADER: usize = 8 + 4 + 4 + 32;
const TRAILER: usize = 32;

/// The key of `vectors` (`n × dim`): what a cache file must record to be theirs.
fn key_of(vectors: &[f32], dim: usize) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update((dim as u64).to_le_bytes());
    for chunk in vectors.chunks(1 << 16) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        hash.update(&bytes);
    }
    hash.finalize().into()
}

/// The cache file of `k` neighbours of these vectors, beside `targets`.
fn cache_path(targets: &Path, key: &[u8; 32], k: usize) -> PathBuf {
    let short: String = key[..8].iter().map(|b| format!("{b:02x}")).collect();
    fsio::sibling(targets, &format!(".nn{k}-{short}"))
}

/// The `k` nearest rows of each row of `vectors` (as [`super::neighbours::nearest`]), read from
/// the cache beside `targets` when it holds them, else computed (`on_rows` told of each block of
/// rows done) and stored there.
pub(crate) fn cached_nearest(targets: &Path, vectors: &[f32], dim: usize, k: usize, on_rows: impl Fn(usize)) -> Result<Vec<Vec<usize>>> {
    let n = vectors.len().checked_div(dim).unwrap_or(0);
    let k = k.min(n.saturating_sub(1));
    if k == 0 {
        return Ok(vec![Vec::new(); n]);
    }
    let key = key_of(vectors, dim);
    let path = cache_path(targets, &key, k);
    // Unlockable (a read-only directory): compute without the cache.
    let lock =
        match fsio::WriterLock::acquire(&path, |p| fsio::warn!("waiting for another run finding the same neighbours ({})", p.display())) {
            Ok(lock) => Some(lock),
            Err(e) => {
                fsio::warn!("not caching teacher neighbours: {e}");
                None
            }
        };
    if path.exists() {
        match read(&path, n, k, &key) {
            Ok(lists) => return Ok(lists),
            // Not ours: leave it alone and compute.
            Err(e) if !is_ours(&path) => {
                fsio::warn!("{e}; computing the neighbours without the cache");
                return Ok(super::neighbours::nearest_with(vectors, dim, k, on_rows));
            }
            Err(e) => fsio::warn!("{e}; computing the neighbours again"),
        }
    }
    let lists = super::neighbours::nearest_with(vectors, dim, k, on_rows);
    if lock.is_some() {
        if let Err(e) = write(&path, &lists, k, &key) {
            fsio::warn!("could not cache the teacher neighbours: {e}");
        }
    }
    Ok(lists)
}

/// Whether `path` starts with this format's magic (a file this module wrote, maybe damaged).
fn is_ours(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && &magic == MAGIC
}

/// Reads and checks a cache file: magic, sizes against the expected ones and the file's length
/// before allocating, key, checksum, and every index a row other than its own.
fn read(path: &Path, n: usize, k: usize, key: &[u8; 32]) -> Result<Vec<Vec<usize>>> {
    let bad = |reason: String| TrainError::Data(data::DataError::File { path: path.to_path_buf(), reason });
    let io = |source| TrainError::Io { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let expected = (n as u64).checked_mul(k as u64).and_then(|c| c.checked_mul(4)).and_then(|c| c.checked_add((HEADER + TRAILER) as u64));
    if expected != Some(len) {
        return Err(bad(format!("{len} bytes is not the size of {n} lists of {k} neighbours")));
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact(&mut bytes).map_err(io)?;
    let (body, trailer) = bytes.split_at(bytes.len() - TRAILER);
    if &body[..8] != MAGIC {
        return Err(bad("not a teacher-neighbour file (no TWINNBR1 magic)".into()));
    }
    let count = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")) as usize;
    let stored_k = u32::from_le_bytes(body[12..16].try_into().expect("4 bytes")) as usize;
    if (count, stored_k) != (n, k) || &body[16..HEADER] != key {
        return Err(bad(format!("holds {count} lists of {stored_k} for other vectors")));
    }
    if Sha256::digest(body).as_slice() != trailer {
        return Err(bad("checksum mismatch: the file is damaged or incomplete".into()));
    }
    let ids: Vec<usize> = body[HEADER..].chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize).collect();
    let lists: Vec<Vec<usize>> = ids.chunks(k).map(<[usize]>::to_vec).collect();
    if let Some(row) = lists.iter().enumerate().position(|(i, l)| l.iter().any(|&j| j >= n || j == i)) {
        return Err(bad(format!("list {row} names a row that is not another of the {n}")));
    }
    Ok(lists)
}

/// Writes `lists` (each exactly `k` long) atomically.
fn write(path: &Path, lists: &[Vec<usize>], k: usize, key: &[u8; 32]) -> Result<()> {
    let io = |source| TrainError::Io { path: path.to_path_buf(), source };
    let (Ok(count), Ok(k32)) = (u32::try_from(lists.len()), u32::try_from(k)) else {
        return Err(TrainError::Training(format!("{} lists of {k} are too many for {}", lists.len(), path.display())));
    };
    let mut body = Vec::with_capacity(HEADER + lists.len() * k * 4);
    body.extend_from_slice(MAGIC);
    body.extend_from_slice(&count.to_le_bytes());
    body.extend_from_slice(&k32.to_le_bytes());
    body.extend_from_slice(key);
    for list in lists {
        if list.len() != k {
            return Err(TrainError::Training(format!("a neighbour list holds {} rows, not {k}", list.len())));
        }
        for &j in list {
            body.extend_from_slice(&(j as u32).to_le_bytes());
        }
    }
    let digest = Sha256::digest(&body);
    let mut out = fsio::AtomicFile::create(path)?;
    out.write_all(&body).map_err(io)?;
    out.write_all(&digest).map_err(io)?;
    out.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Points on the unit circle at 0°, 10°, 90°, 100° and 180°.
    fn circle() -> Vec<f32> {
        [0f32, 10.0, 90.0, 100.0, 180.0].iter().flat_map(|d| [d.to_radians().cos(), d.to_radians().sin()]).collect()
    }

    fn cache_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".nn") && !p.to_string_lossy().ends_with(".lock"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn the_second_run_reads_what_the_first_computed() {
        let dir = tempfile::tempdir().unwrap();
        let targets = dir.path().join("t.f32");
        let v = circle();
        let rows = AtomicUsize::new(0);
        let count = |r: usize| {
            rows.fetch_add(r, Ordering::Relaxed);
        };
        let first = cached_nearest(&targets, &v, 2, 2, count).unwrap();
        assert_eq!(first, super::super::neighbours::nearest(&v, 2, 2));
        assert_eq!(rows.load(Ordering::Relaxed), 5);
        let files = cache_files(dir.path());
        assert_eq!(files.len(), 1);
        assert!(files[0].file_name().unwrap().to_string_lossy().starts_with("t.f32.nn2-"), "{files:?}");
        // Read back, not computed: no rows reported.
        let again = cached_nearest(&targets, &v, 2, 2, count).unwrap();
        assert_eq!((again, rows.load(Ordering::Relaxed)), (first.clone(), 5));
        // Other vectors or another k get files of their own.
        let mut moved = v.clone();
        moved.swap(0, 1);
        assert_eq!(cached_nearest(&targets, &moved, 2, 2, count).unwrap(), super::super::neighbours::nearest(&moved, 2, 2));
        assert_eq!(cached_nearest(&targets, &v, 2, 1, count).unwrap(), super::super::neighbours::nearest(&v, 2, 1));
        assert_eq!(cache_files(dir.path()).len(), 3);
    }

    #[test]
    fn damaged_or_foreign_files_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let targets = dir.path().join("t.f32");
        let v = circle();
        let truth = super::super::neighbours::nearest(&v, 2, 2);
        cached_nearest(&targets, &v, 2, 2, |_| {}).unwrap();
        let file = cache_files(dir.path()).remove(0);
        let good = std::fs::read(&file).unwrap();
        let key = key_of(&v, 2);
        // A flipped index: the checksum refuses it, the lists are computed and the file
        // rewritten.
        let mut bytes = good.clone();
        bytes[HEADER] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert!(read(&file, 5, 2, &key).unwrap_err().to_string().contains("checksum"));
        assert_eq!(cached_nearest(&targets, &v, 2, 2, |_| {}).unwrap(), truth);
        assert_eq!(std::fs::read(&file).unwrap(), good);
        // Truncated: refused by its length before anything is read.
        std::fs::write(&file, &good[..good.len() - 1]).unwrap();
        assert!(read(&file, 5, 2, &key).unwrap_err().to_string().contains("bytes is not the size"));
        // A valid file for other vectors under this name (a key collision of the short name).
        std::fs::write(&file, &good).unwrap();
        let mut other = key;
        other[31] ^= 1;
        assert!(read(&file, 5, 2, &other).unwrap_err().to_string().contains("other vectors"));
        // An index out of range, with a checksum to match.
        let mut bytes = good[..good.len() - TRAILER].to_vec();
        bytes[HEADER..HEADER + 4].copy_from_slice(&9u32.to_le_bytes());
        let digest = Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        std::fs::write(&file, &bytes).unwrap();
        assert!(read(&file, 5, 2, &key).unwrap_err().to_string().contains("list 0 names a row"));
        // Someone else's file of that name is used for nothing and left as it was.
        let foreign = vec![b'x'; good.len()];
        std::fs::write(&file, &foreign).unwrap();
        assert_eq!(cached_nearest(&targets, &v, 2, 2, |_| {}).unwrap(), truth);
        assert_eq!(std::fs::read(&file).unwrap(), foreign);
    }
}
