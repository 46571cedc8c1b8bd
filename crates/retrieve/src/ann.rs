//! Approximate nearest neighbours: an HNSW graph (usearch) over an index's vectors.
//!
//! Exact search reads every stored vector per query; past a few hundred thousand items that is
//! most of a query's time and memory traffic. The graph answers from a few thousand distance
//! computations instead. Its keys are the items' stable ids, so adds and removals go to it
//! directly, and its candidates are re-scored against the index's own vectors (the graph keeps
//! them quantised; the snapshot keeps them f32, or i8 with a scale per vector), so reported
//! scores are the exact search's.
//!
//! The graph is saved beside the index as `PATH.hnsw`, with `PATH.hnsw.json` saying which
//! snapshot it was built from and the graph file's checksum; a graph that does not match the
//! snapshot is not used (it is rebuilt, or search falls back to exact).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::index::Index;
use crate::search::{self, Hit};
use crate::{Result, RetrieveError};

/// From this many items on, `auto` search uses the graph.
pub const APPROX_FROM: usize = 50_000;

/// How to search an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Approximate from 50,000 items on, exact below.
    #[default]
    Auto,
    /// Every stored vector, always.
    Exact,
    /// The graph, always (built when missing).
    Approx,
}

impl SearchMode {
    /// Whether an index of `items` is searched through the graph.
    pub fn uses_graph(self, items: usize) -> bool {
        match self {
            SearchMode::Auto => items >= APPROX_FROM,
            SearchMode::Exact => false,
            SearchMode::Approx => true,
        }
    }
}

/// What the graph keeps of each vector to walk its links by: its own copy of the vector, since
/// usearch's graph always holds one beside the index's snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphCodes {
    /// One byte per value, cosine distance: the graph ranks almost as exact search does.
    #[default]
    I8,
    /// One bit per value (its sign), Hamming distance: an eighth of the i8 copy, for tens of
    /// millions of vectors where disk decides. Its ranking is coarse, so a search re-scores many
    /// more candidates against the snapshot's vectors.
    B1,
}

/// Fewest candidates a search of a b1 graph re-scores exactly.
pub const B1_RESCORED: usize = 800;

impl GraphCodes {
    /// Fewest graph candidates a search re-scores against the index's vectors.
    pub fn rescored(self) -> usize {
        match self {
            GraphCodes::I8 => RESCORED,
            GraphCodes::B1 => B1_RESCORED,
        }
    }
}

/// Graph parameters: neighbours per node, the candidate lists of insertion and search, and what
/// the graph keeps of each vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnParams {
    /// Links per node (HNSW's M).
    pub connectivity: usize,
    /// Candidates kept while inserting (efConstruction).
    pub expansion_add: usize,
    /// Candidates kept while searching (ef).
    pub expansion_search: usize,
    /// The graph's copy of each vector (graphs saved before there was a choice are i8).
    #[serde(default)]
    pub codes: GraphCodes,
}

impl Default for AnnParams {
    fn default() -> Self {
        Self { connectivity: 16, expansion_add: 128, expansion_search: 192, codes: GraphCodes::I8 }
    }
}

/// The sign bits of `vector`, eight values per byte (value `i` is bit `i % 8` of byte `i / 8`;
/// a value above zero sets its bit): what a b1 graph stores and searches with.
pub(crate) fn sign_bits(vector: &[f32]) -> Vec<u8> {
    let mut bits = vec![0u8; vector.len().div_ceil(8)];
    for (i, &x) in vector.iter().enumerate() {
        if x > 0.0 {
            bits[i / 8] |= 1 << (i % 8);
        }
    }
    bits
}

/// What `PATH.hnsw.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meta {
    uid: u64,
    journal_seq: u64,
    items: usize,
    dim: usize,
    params: AnnParams,
    checksum: u64,
}

/// An HNSW graph over the items of an [`Index`], keyed by id.
pub struct Ann {
    graph: usearch::Index,
    params: AnnParams,
    /// Fewest candidates a search re-scores (a knob of searching, as ef is).
    rescored: usize,
}

/// Fewest graph candidates re-scored exactly per search.
pub const RESCORED: usize = 32;

/// Concurrent searches and adds the graph keeps scratch space for: enough for every core's
/// worker and for a server's bounded number of unbatched searches ([`slots`]).
pub fn slots() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (4 * cores).max(64)
}

fn ann_err(what: &str, e: impl std::fmt::Display) -> RetrieveError {
    RetrieveError::Graph(format!("{what}: {e}"))
}

impl Ann {
    fn empty(dim: usize, params: AnnParams, capacity: usize) -> Result<Self> {
        let (metric, quantization) = match params.codes {
            GraphCodes::I8 => (usearch::MetricKind::Cos, usearch::ScalarKind::I8),
            GraphCodes::B1 => (usearch::MetricKind::Hamming, usearch::ScalarKind::B1),
        };
        let options = usearch::IndexOptions {
            dimensions: dim,
            metric,
            quantization,
            connectivity: params.connectivity,
            expansion_add: params.expansion_add,
            expansion_search: params.expansion_search,
            multi: false,
        };
        let graph = usearch::Index::new(&options).map_err(|e| ann_err("create", e))?;
        graph.reserve_capacity_and_threads(capacity.max(16), slots()).map_err(|e| ann_err("reserve", e))?;
        Ok(Self { graph, params, rescored: params.codes.rescored() })
    }

    /// Builds the graph of every item of `index` not removed, on every core; `progress` is told
    /// how many items went in.
    pub fn build(index: &Index, params: AnnParams, progress: impl Fn(usize) + Sync) -> Result<Self> {
        let ann = Self::empty(index.dim(), params, index.len())?;
        let rows: Vec<usize> = index.live_rows().collect();
        let done = AtomicUsize::new(0);
        rows.par_chunks(1024).try_for_each(|chunk| {
            for &r in chunk {
                ann.insert(index.id(r), &index.vector(r))?;
            }
            done.fetch_add(chunk.len(), Ordering::Relaxed);
            progress(chunk.len());
            Ok::<_, RetrieveError>(())
        })?;
        // Built (reading the vectors in order); from now on they are read in scattered places.
        index.expect_scattered_reads();
        Ok(ann)
    }

    /// The graph file of the index at `index_path`.
    pub fn path_for(index_path: &Path) -> PathBuf {
        fsio::sibling(index_path, ".hnsw")
    }

    /// Saves the graph beside the index at `index_path`, recording that it covers `index`'s
    /// snapshot. Each file is written atomically; the record names the graph file's checksum,
    /// so a crash between the two leaves a graph that is not used.
    pub fn save(&self, index_path: &Path, index: &Index) -> Result<()> {
        let path = Self::path_for(index_path);
        let tmp = fsio::AtomicFile::create(&path)?;
        let tmp_path = tmp.temp_path().to_str().ok_or_else(|| ann_err("save", "the path is not UTF-8"))?.to_string();
        self.graph.save(&tmp_path).map_err(|e| ann_err("save", e))?;
        let checksum = file_checksum(tmp.temp_path())?;
        tmp.commit()?;
        let meta = Meta {
            uid: index.header.uid,
            journal_seq: index.header.journal_seq,
            items: self.graph.size(),
            dim: index.dim(),
            params: self.params,
            checksum,
        };
        let meta_path = fsio::sibling(index_path, ".hnsw.json");
        let mut f = fsio::AtomicFile::create(&meta_path)?;
        serde_json::to_writer_pretty(&mut f, &meta).map_err(|e| ann_err("save", e))?;
        f.commit()?;
        Ok(())
    }

    /// The parameters of the graph saved beside `index_path`, whichever snapshot it covers: what
    /// a rebuild (after compaction) keeps.
    pub fn saved_params(index_path: &Path) -> Option<AnnParams> {
        read_meta(index_path).map(|m| m.params)
    }

    /// Loads the graph saved beside `index_path` if it covers `index`'s snapshot, then brings it
    /// up to date with the journal (the items added and removed since). `Ok(None)`: there is no
    /// such graph, or it is stale.
    pub fn load(index_path: &Path, index: &Index, snapshot: (u64, u64)) -> Result<Option<Self>> {
        let Some(meta) = read_meta(index_path) else { return Ok(None) };
        if (meta.uid, meta.journal_seq) != snapshot || meta.dim != index.dim() {
            return Ok(None);
        }
        let path = Self::path_for(index_path);
        if !path.exists() || file_checksum(&path)? != meta.checksum {
            return Ok(None);
        }
        // The search's candidate list is a knob of searching, not of the graph: today's default.
        let params = AnnParams { expansion_search: AnnParams::default().expansion_search, ..meta.params };
        let ann = Self::empty(index.dim(), params, index.len())?;
        index.expect_scattered_reads();
        let p = path.to_str().ok_or_else(|| ann_err("load", "the path is not UTF-8"))?;
        ann.graph.load(p).map_err(|e| ann_err(&format!("load {}", path.display()), e))?;
        ann.graph.reserve_capacity_and_threads(index.len().max(ann.graph.size()) + 1024, slots()).map_err(|e| ann_err("reserve", e))?;
        if ann.graph.size() != meta.items {
            return Ok(None);
        }
        // Items the journal added or removed after the snapshot the graph was built from.
        ann.catch_up(index, index.snapshot_rows())?;
        Ok(Some(ann))
    }

    /// Gives the graph the changes `index` holds beyond it: the items of rows `from..` that are
    /// not removed go in, and removed items still in the graph go out.
    pub fn catch_up(&self, index: &Index, from: usize) -> Result<()> {
        for r in from..index.rows() {
            if !index.is_removed(r) {
                self.add(index.id(r), &index.vector(r))?;
            }
        }
        for r in index.removed_rows() {
            if self.contains(index.id(r)) {
                self.remove(index.id(r))?;
            }
        }
        Ok(())
    }

    /// Loads the saved graph, or builds (and saves) it when it is missing or stale.
    pub fn load_or_build(index_path: &Path, index: &Index, params: AnnParams, progress: impl Fn(usize) + Sync) -> Result<Self> {
        if let Some(ann) = Self::load(index_path, index, (index.header.uid, index.snapshot_seq()))? {
            return Ok(ann);
        }
        let ann = Self::build(index, params, progress)?;
        if index.snapshot_seq() == index.header.journal_seq {
            ann.save(index_path, index)?;
        }
        Ok(ann)
    }

    /// Items in the graph.
    pub fn len(&self) -> usize {
        self.graph.size()
    }

    /// Whether the graph is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds an item (grows the graph's capacity when full).
    pub fn add(&self, id: u64, vector: &[f32]) -> Result<()> {
        if self.graph.size() >= self.graph.capacity() {
            self.graph.reserve_capacity_and_threads(self.graph.capacity() * 2, slots()).map_err(|e| ann_err("reserve", e))?;
        }
        self.insert(id, vector)
    }

    /// Inserts an item into a graph with room for it, as the graph's codes say.
    fn insert(&self, id: u64, vector: &[f32]) -> Result<()> {
        match self.params.codes {
            GraphCodes::I8 => self.graph.add(id, vector),
            GraphCodes::B1 => self.graph.add(id, usearch::b1x8::from_u8s(&sign_bits(vector))),
        }
        .map_err(|e| ann_err("add", e))
    }

    /// The graph's parameters (the search's candidate list as set now).
    pub fn params(&self) -> AnnParams {
        self.params
    }

    /// Whether the item with `id` is in the graph.
    pub fn contains(&self, id: u64) -> bool {
        self.graph.contains(id)
    }

    /// Removes an item.
    pub fn remove(&self, id: u64) -> Result<()> {
        self.graph.remove(id).map(|_| ()).map_err(|e| ann_err("remove", e))
    }

    /// Fewest candidates a search re-scores against the index's vectors (at least 1): more is
    /// slower and can recall more, up to what the graph's candidates hold.
    pub fn set_rescored(&mut self, n: usize) {
        self.rescored = n.max(1);
    }

    /// How many graph candidates a search for `k` hits re-scores: twice `k`, at least the
    /// minimum [`Ann::set_rescored`] sets, at most every item.
    pub fn candidates(&self, k: usize) -> usize {
        k.saturating_mul(2).max(self.rescored).min(self.graph.size())
    }

    /// Candidates kept while searching (ef): more is slower and recalls more.
    pub fn set_expansion_search(&mut self, ef: usize) {
        self.params.expansion_search = ef;
        self.graph.change_expansion_search(ef);
    }

    /// The `k` items of `index` nearest to `query`: the graph's best [`Ann::candidates`],
    /// re-scored exactly against the index's vectors (undoing the graph codes' ranking errors
    /// among near-equal neighbours) and ordered as exact search orders them. Few candidates keep
    /// the vector pages a search touches, and so the memory a server holds, small.
    pub fn top_k(&self, index: &Index, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        if k == 0 || self.graph.size() == 0 {
            return Ok(Vec::new());
        }
        let wanted = self.candidates(k);
        let found = match self.params.codes {
            GraphCodes::I8 => self.graph.search(query, wanted),
            GraphCodes::B1 => self.graph.search(usearch::b1x8::from_u8s(&sign_bits(query)), wanted),
        }
        .map_err(|e| ann_err("search", e))?;
        let mut hits: Vec<Hit> =
            found.keys.iter().filter_map(|&id| index.row_of(id)).map(|row| Hit { index: row, score: index.score(row, query) }).collect();
        search::sort_hits(&mut hits);
        hits.truncate(k);
        Ok(hits)
    }
}

/// The record `PATH.hnsw.json` beside the index at `index_path`, if there is a readable one.
fn read_meta(index_path: &Path) -> Option<Meta> {
    let text = std::fs::read_to_string(fsio::sibling(index_path, ".hnsw.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn file_checksum(path: &Path) -> Result<u64> {
    let mut f = std::fs::File::open(path).map_err(|e| RetrieveError::io(path, e))?;
    let len = f.metadata().map_err(|e| RetrieveError::io(path, e))?.len();
    crate::index::file::stream_xxh3(path, &mut f, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-worked: values above zero set their bit, eight to a byte, lowest bit first; zero and
    /// negative values leave it clear; a ninth value starts a second byte.
    #[test]
    fn sign_bits_by_hand() {
        let v = [0.5, -0.1, 0.0, 2.0, -3.0, 0.1, 0.2, -0.2, 1.0];
        // Byte 0: values 0, 3, 5 and 6 are positive: 1 + 8 + 32 + 64.
        assert_eq!(sign_bits(&v), [105, 1]);
        assert_eq!(sign_bits(&[]), Vec::<u8>::new());
    }

    /// A graph record written before graphs had a choice of codes reads as i8.
    #[test]
    fn records_without_codes_are_i8_graphs() {
        let old: AnnParams = serde_json::from_str(r#"{"connectivity": 12, "expansion_add": 64, "expansion_search": 192}"#).unwrap();
        assert_eq!(old, AnnParams { connectivity: 12, expansion_add: 64, codes: GraphCodes::I8, ..AnnParams::default() });
        let b1 = AnnParams { codes: GraphCodes::B1, ..AnnParams::default() };
        let json = serde_json::to_string(&b1).unwrap();
        assert!(json.contains(r#""codes":"b1""#), "{json}");
        assert_eq!(serde_json::from_str::<AnnParams>(&json).unwrap(), b1);
    }
}
