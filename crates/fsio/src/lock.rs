//! An advisory lock that serializes the writers of one file.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::{FsError, Result};

/// An exclusive advisory lock on `TARGET.lock`, held until dropped.
///
/// Writers that read a file, change it and write it back (`retrieve add`) take it around the
/// whole read–modify–write, so two of them at once cannot both start from the same old state
/// and lose one batch. The lock file stays in place (removing it would race with a waiter that
/// has it open); it is empty and belongs to the file it guards.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
    path: PathBuf,
}

impl WriterLock {
    /// The lock file that guards `target`.
    pub fn path_for(target: &Path) -> PathBuf {
        crate::sibling(target, ".lock")
    }

    /// Takes the lock of `target`, waiting for the writer that holds it; `on_wait` is told once
    /// when it has to wait.
    pub fn acquire(target: &Path, on_wait: impl FnOnce(&Path)) -> Result<Self> {
        let path = Self::path_for(target);
        if let Some(m) = crate::atomic::existing(&path)? {
            if !m.file_type().is_file() {
                return Err(FsError::refused(&path, format!("is {}, not a lock file", crate::atomic::kind(&m))));
            }
        }
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|e| FsError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                on_wait(&path);
                file.lock().map_err(|e| FsError::io(&path, e))?;
            }
            Err(TryLockError::Error(e)) => return Err(FsError::io(&path, e)),
        }
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("i.idx");
        assert_eq!(WriterLock::path_for(&target), dir.path().join("i.idx.lock"));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (target, inside, most) = (target.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let _lock = WriterLock::acquire(&target, |_| {}).unwrap();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
    }
}
