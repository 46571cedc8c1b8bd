//! Exact nearest-neighbour search by dot product over unit vectors (= cosine similarity).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use crate::vectors::Stored;

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Row of the index.
    pub index: usize,
    /// Cosine similarity to the query.
    pub score: f32,
}

/// Ordering used everywhere: higher score first, then lower index first, so results are
/// deterministic when scores tie.
fn better(a: &Hit, b: &Hit) -> Ordering {
    b.score.total_cmp(&a.score).then(a.index.cmp(&b.index))
}

/// Heap entry whose maximum is the *worst* kept hit, so it can be evicted.
#[derive(PartialEq)]
struct Worst(Hit);
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        better(&self.0, &other.0)
    }
}

#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent accumulators let the compiler vectorise the loop.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Which rows a search may return: all, or those a predicate keeps (e.g. not removed).
type Keep<'a> = Option<&'a (dyn Fn(usize) -> bool + Sync)>;

fn top_k_range(vectors: Stored<'_>, dim: usize, query: &[f32], k: usize, start: usize, end: usize, keep: Keep) -> Vec<Hit> {
    let mut heap: BinaryHeap<Worst> = BinaryHeap::with_capacity(k + 1);
    let mut scores = [0f32; 256];
    for first in (start..end).step_by(scores.len()) {
        let rows = scores.len().min(end - first);
        for (j, score) in scores[..rows].iter_mut().enumerate() {
            *score = vectors.dot(dim, first + j, query);
        }
        select_into(&mut heap, &scores[..rows], first, k, keep);
    }
    heap.into_iter().map(|w| w.0).collect()
}

/// Orders hits as every search does: best first, lower row first on ties.
pub fn sort_hits(hits: &mut [Hit]) {
    hits.sort_by(better);
}

fn finish(mut hits: Vec<Hit>, k: usize) -> Vec<Hit> {
    hits.sort_by(better);
    hits.truncate(k);
    hits
}

/// The `k` rows of `vectors` (`n × dim`) with the highest dot product with `query`, best first.
/// Large collections are scanned in parallel blocks.
pub fn top_k(vectors: &[f32], dim: usize, query: &[f32], k: usize) -> Vec<Hit> {
    assert_eq!(query.len(), dim, "query of the wrong size");
    let n = vectors.len() / dim.max(1);
    // No more hits than rows: a huge k from a flag allocates nothing more.
    let k = k.min(n);
    if k == 0 || n == 0 {
        return Vec::new();
    }
    const BLOCK: usize = 16_384;
    let vectors = Stored::F32(vectors);
    if n <= BLOCK {
        return finish(top_k_range(vectors, dim, query, k, 0, n, None), k);
    }
    let blocks: Vec<usize> = (0..n).step_by(BLOCK).collect();
    let hits: Vec<Hit> = blocks.par_iter().flat_map_iter(|&s| top_k_range(vectors, dim, query, k, s, (s + BLOCK).min(n), None)).collect();
    finish(hits, k)
}

/// Vectors per block of the batched search, and queries per matrix product. Large query groups
/// read the vectors fewer times; 2048 × 1024 scores (8 MiB) was the fastest of the shapes tried
/// on 100k and 1M vectors (2026-11-29: 4096 × 256, 1024², 2048 × 512, 4096 × 512, 8192 × 128,
/// and with gemm 4096 × 1024).
const GEMM_ROWS: usize = 2048;
const GEMM_QUERIES: usize = 1024;

/// [`top_k`] for many queries (`m × dim`). From four queries on, the scores of a block of
/// vectors against a group of queries come from one matrix product (as faiss does), so each
/// vector is read from memory once per group instead of once per query; the per-query top-k
/// selection then runs in parallel. Results equal [`top_k`]'s up to float summation order.
pub fn top_k_batch(vectors: &[f32], dim: usize, queries: &[f32], k: usize) -> Vec<Vec<Hit>> {
    top_k_batch_keeping(Stored::F32(vectors), dim, queries, k, None)
}

/// [`top_k_batch`] over stored vectors (f32, or i8 dequantised a block at a time) and the rows
/// `keep` accepts (all when `None`); rejected rows cost nothing unless they score into the
/// current top `k`.
pub(crate) fn top_k_batch_keeping(vectors: Stored<'_>, dim: usize, queries: &[f32], k: usize, keep: Keep) -> Vec<Vec<Hit>> {
    let n = vectors.rows(dim);
    let m = queries.len() / dim.max(1);
    let k = k.min(n);
    if m < 4 || k == 0 || n == 0 || dim == 0 {
        return queries.par_chunks(dim.max(1)).map(|q| finish(top_k_range(vectors, dim, q, k, 0, n, keep), k)).collect();
    }
    let mut heaps: Vec<BinaryHeap<Worst>> = (0..m).map(|_| BinaryHeap::with_capacity(k + 1)).collect();
    let mut scores = vec![0f32; GEMM_QUERIES.min(m) * GEMM_ROWS.min(n)];
    let mut dequantised = Vec::new();
    for vs in (0..n).step_by(GEMM_ROWS) {
        let b = GEMM_ROWS.min(n - vs);
        let block = vectors.block(dim, vs, vs + b, &mut dequantised);
        for qs in (0..m).step_by(GEMM_QUERIES) {
            let mq = GEMM_QUERIES.min(m - qs);
            let group = &queries[qs * dim..(qs + mq) * dim];
            let c = &mut scores[..mq * b];
            // C (mq × b, row stride b) = group (mq × dim, row stride dim) · blockᵀ (dim × b:
            // row stride 1, column stride dim), on every core.
            encoder::matmul(mq, dim, b, (group, dim as isize, 1), (block, 1, dim as isize), false, c, b as isize, true);
            heaps[qs..qs + mq].par_iter_mut().zip(c.par_chunks(b)).for_each(|(heap, row)| select_into(heap, row, vs, k, keep));
        }
    }
    heaps.into_par_iter().map(|h| finish(h.into_iter().map(|w| w.0).collect(), k)).collect()
}

/// Offers `scores` (of rows `first..`) to a top-`k` heap. Rows arrive in increasing order, so a
/// score that only ties the worst kept hit loses (its row is later): a single comparison with
/// that score rejects almost every row once the heap is full.
fn select_into(heap: &mut BinaryHeap<Worst>, scores: &[f32], first: usize, k: usize, keep: Keep) {
    let mut floor = if heap.len() < k { f32::NEG_INFINITY } else { heap.peek().map_or(f32::NEG_INFINITY, |w| w.0.score) };
    for (j, &score) in scores.iter().enumerate() {
        if score <= floor && heap.len() >= k {
            continue;
        }
        if keep.is_some_and(|keep| !keep(first + j)) {
            continue;
        }
        let hit = Hit { index: first + j, score };
        if heap.len() < k {
            heap.push(Worst(hit));
        } else if heap.peek().is_some_and(|top| better(&hit, &top.0) == Ordering::Less) {
            heap.pop();
            heap.push(Worst(hit));
        }
        if heap.len() >= k {
            floor = heap.peek().map_or(f32::NEG_INFINITY, |w| w.0.score);
        }
    }
}

/// The obvious implementation: score everything, sort, take `k`. The reference the fast path
/// is tested against.
pub fn top_k_naive(vectors: &[f32], dim: usize, query: &[f32], k: usize) -> Vec<Hit> {
    let mut all: Vec<Hit> =
        vectors.chunks(dim).enumerate().map(|(index, v)| Hit { index, score: v.iter().zip(query).map(|(a, b)| a * b).sum() }).collect();
    all.sort_by(better);
    all.truncate(k);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many rows share a score, so the k-th place is a tie: the lower rows must win, in both
    /// search paths, exactly as in the naive sort (the early rejection of tying rows relies on
    /// rows arriving in increasing order).
    #[test]
    fn ties_at_the_cut_go_to_the_lower_rows() {
        let dim = 4;
        // 40,000 rows (several blocks of both paths) cycling through three distinct vectors.
        let pattern = [[1.0f32, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.6, 0.8, 0.0, 0.0]];
        let vectors: Vec<f32> = (0..40_000).flat_map(|i| pattern[(i * 7) % 3]).collect();
        let queries: Vec<f32> =
            [[1.0f32, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.6, 0.8, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.5, 0.5]]
                .into_iter()
                .flatten()
                .collect();
        for k in [1, 10, 20_000, 50_000, usize::MAX] {
            let batch = top_k_batch(&vectors, dim, &queries, k);
            for (qi, q) in queries.chunks(dim).enumerate() {
                let naive = top_k_naive(&vectors, dim, q, k);
                assert_eq!(top_k(&vectors, dim, q, k), naive, "top_k, query {qi}, k {k}");
                assert_eq!(batch[qi], naive, "top_k_batch, query {qi}, k {k}");
            }
        }
    }
}
