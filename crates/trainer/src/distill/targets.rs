//! The teacher's vectors, as `scripts/teacher.py` writes them (`TWINTCH1`):
//! `b"TWINTCH1" | u32 count | u32 dim | count·dim f32 | SHA-256 of all before`, little-endian.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{Result, TrainError};

const MAGIC: &[u8; 8] = b"TWINTCH1";
const HEADER: usize = 16;
const TRAILER: usize = 32;
/// Largest vector size accepted (the teacher's is 384); bounds what a corrupt header can ask for.
const MAX_DIM: usize = 8192;

/// One teacher vector per transfer sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherTargets {
    /// Vector size.
    pub dim: usize,
    /// `count × dim` values, row-major.
    pub rows: Vec<f32>,
}

impl TeacherTargets {
    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.rows.len() / self.dim.max(1)
    }

    /// Whether there is no vector.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.rows[i * self.dim..(i + 1) * self.dim]
    }

    /// Reads and checks a `TWINTCH1` file: the header's sizes against the file's length before
    /// anything is allocated, the SHA-256 trailer, and that every value is finite.
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |reason: String| TrainError::Data(data::DataError::File { path: path.to_path_buf(), reason });
        let io = |source| TrainError::Io { path: path.to_path_buf(), source };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut header = [0u8; HEADER];
        if len < (HEADER + TRAILER) as u64 {
            return Err(bad(format!("{len} bytes is too short for a teacher-vector file (TWINTCH1)")));
        }
        file.read_exact(&mut header).map_err(io)?;
        if &header[..8] != MAGIC {
            return Err(bad("not a teacher-vector file (no TWINTCH1 magic); write it with scripts/teacher-targets.sh".into()));
        }
        let count = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) as u64;
        let dim = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes")) as u64;
        if dim == 0 || dim as usize > MAX_DIM {
            return Err(bad(format!("vector size {dim} is outside 1..={MAX_DIM}")));
        }
        let expected = count.checked_mul(dim).and_then(|v| v.checked_mul(4)).and_then(|v| v.checked_add((HEADER + TRAILER) as u64));
        if expected != Some(len) {
            return Err(bad(format!("the header says {count} vectors of {dim} values, which does not fit the file's {len} bytes")));
        }
        let mut body = vec![0u8; (len as usize) - HEADER];
        file.read_exact(&mut body).map_err(io)?;
        let (values, trailer) = body.split_at(body.len() - TRAILER);
        let mut hash = Sha256::new();
        hash.update(header);
        hash.update(values);
        if hash.finalize().as_slice() != trailer {
            return Err(bad("checksum mismatch: the file is damaged or incomplete; rebuild it with scripts/distill-targets.sh".into()));
        }
        let rows: Vec<f32> = values.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
        if let Some(i) = rows.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("vector {} holds a non-finite value", i / dim as usize)));
        }
        Ok(Self { dim: dim as usize, rows })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `TWINTCH1` file of `rows` (each `dim` long), as teacher.py writes it.
    pub(crate) fn write_targets(path: &Path, dim: usize, rows: &[f32]) {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(((rows.len() / dim) as u32).to_le_bytes());
        bytes.extend((dim as u32).to_le_bytes());
        for v in rows {
            bytes.extend(v.to_le_bytes());
        }
        let digest = Sha256::digest(&bytes);
        bytes.extend(digest);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn reads_what_the_teacher_writes_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.f32");
        write_targets(&p, 3, &[1.0, 0.0, 0.0, 0.0, 0.6, 0.8]);
        let t = TeacherTargets::load(&p).unwrap();
        assert_eq!((t.len(), t.dim, t.row(1)), (2, 3, &[0.0, 0.6, 0.8][..]));
        // One flipped value byte: the checksum catches it.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert!(TeacherTargets::load(&p).unwrap_err().to_string().contains("checksum"));
        // A header promising more than the file holds is refused before allocating.
        bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let e = TeacherTargets::load(&p).unwrap_err().to_string();
        assert!(e.contains("t.f32") && e.contains("does not fit"), "{e}");
        std::fs::write(&p, b"TWINTCH0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
        assert!(TeacherTargets::load(&p).unwrap_err().to_string().contains("magic"));
        std::fs::write(&p, b"short").unwrap();
        assert!(TeacherTargets::load(&p).unwrap_err().to_string().contains("too short"));
    }
}
