//! The local store: an [`Index`] (snapshot and journal) and, for large indexes, its [`Ann`]
//! graph, changed together under one lock and kept in step with other writers of the same file.

use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{Store, StoredHit};
use crate::{Ann, Hit, Index, NewItem, Result, RetrieveError};

/// The index and its graph, as one value under the store's lock.
pub(crate) struct Served {
    pub(crate) index: Index,
    pub(crate) ann: Option<Ann>,
    ef: Option<usize>,
}

impl Served {
    /// Takes in what other processes wrote to the index at `path` since it was read, and gives
    /// the graph the same changes. The caller holds the index's writers' lock.
    fn refresh(&mut self, path: &Path) -> Result<()> {
        let before = (self.index.header.uid, self.index.snapshot_seq(), self.index.rows());
        self.index.refresh(path)?;
        let Some(ann) = &self.ann else { return Ok(()) };
        if (self.index.header.uid, self.index.snapshot_seq()) != (before.0, before.1) || self.index.rows() < before.2 {
            // The index was reopened (compacted or rebuilt elsewhere): its graph, or a new one
            // with the settings (links, candidates, codes) of the graph served until now.
            let mut ann = Ann::load_or_build(path, &self.index, ann.params(), |_| {})?;
            if let Some(ef) = self.ef {
                ann.set_expansion_search(ef);
            }
            self.ann = Some(ann);
            return Ok(());
        }
        ann.catch_up(&self.index, before.2)
    }

    /// The stored item behind a search hit, with its vector.
    fn stored(&self, h: &Hit) -> StoredHit {
        let i = &self.index;
        StoredHit {
            id: i.id(h.index),
            key: i.key(h.index).map(str::to_string),
            sentence: i.sentence(h.index).to_string(),
            score: h.score,
            vector: i.vector(h.index).to_vec(),
        }
    }
}

/// An index on this machine, searched exactly or through its graph.
pub struct LocalStore {
    /// Where adds and removals go; `None` for a cached corpus index (read-only).
    path: Option<PathBuf>,
    served: RwLock<Served>,
}

impl LocalStore {
    /// A store over `index` (loaded from `path`, or a read-only cached index when `path` is
    /// `None`) searched through `ann` when given; `ef` is kept for graphs rebuilt later.
    pub fn new(index: Index, ann: Option<Ann>, path: Option<PathBuf>, ef: Option<usize>) -> Self {
        Self { path, served: RwLock::new(Served { index, ann, ef }) }
    }

    fn name(&self) -> String {
        self.path.as_ref().map_or_else(|| "the cached corpus index".to_string(), |p| p.display().to_string())
    }

    fn poisoned(&self) -> RetrieveError {
        RetrieveError::Store { location: self.name(), reason: "a writer failed midway; restart to reload the index".into() }
    }

    pub(crate) fn read(&self) -> Result<RwLockReadGuard<'_, Served>> {
        self.served.read().map_err(|_| self.poisoned())
    }

    /// The writers' lock of the file (other processes), then the in-process lock, with what other
    /// writers appended taken in.
    fn write(&self) -> Result<(fsio::WriterLock, RwLockWriteGuard<'_, Served>, &Path)> {
        let path = self.path.as_deref().ok_or_else(|| {
            RetrieveError::Invalid("this store is a cached corpus index and is read-only; give an index file to add or remove items".into())
        })?;
        // The file lock first, so that waiting for another process never holds up searches.
        let lock = Index::lock(path, |_| {})?;
        let mut served = self.served.write().map_err(|_| self.poisoned())?;
        served.refresh(path)?;
        Ok((lock, served, path))
    }
}

impl Store for LocalStore {
    fn location(&self) -> String {
        self.name()
    }

    fn item_count(&self) -> Result<Option<usize>> {
        Ok(Some(self.read()?.index.len()))
    }

    fn writable(&self) -> bool {
        self.path.is_some()
    }

    fn search_kind(&self) -> &'static str {
        match self.read() {
            Ok(s) if s.ann.is_some() => "graph",
            _ => "exact",
        }
    }

    fn search(&self, queries: &[f32], dim: usize, k: usize) -> Result<Vec<Vec<StoredHit>>> {
        let served = self.read()?;
        let hits = match &served.ann {
            Some(ann) => queries.chunks(dim).map(|q| ann.top_k(&served.index, q, k)).collect::<Result<Vec<_>>>()?,
            None => served.index.top_k_batch(queries, k),
        };
        Ok(hits.iter().map(|hs| hs.iter().map(|h| served.stored(h)).collect()).collect())
    }

    fn add(&self, items: Vec<NewItem>, vectors: &[f32]) -> Result<Vec<u64>> {
        let (_lock, served, path) = self.write()?;
        let mut served = served;
        let dim = served.index.dim();
        let ids = served.index.append(path, items, vectors)?;
        if let Some(ann) = &served.ann {
            for (id, v) in ids.iter().zip(vectors.chunks(dim)) {
                ann.add(*id, v)?;
            }
        }
        Ok(ids)
    }

    fn delete(&self, ids: &[u64]) -> Result<Vec<u64>> {
        let (_lock, served, path) = self.write()?;
        let mut served = served;
        let removed = served.index.delete(path, ids)?;
        if let Some(ann) = &served.ann {
            for id in &removed {
                ann.remove(*id)?;
            }
        }
        Ok(removed)
    }
}
