//! Exact nearest-neighbour search by dot product over unit vectors (= cosine similarity).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

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
fn dot(a: &[f32], b: &[f32]) -> f32 {
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

fn top_k_range(vectors: &[f32], dim: usize, query: &[f32], k: usize, start: usize, end: usize) -> Vec<Hit> {
    let mut heap: BinaryHeap<Worst> = BinaryHeap::with_capacity(k + 1);
    for i in start..end {
        let hit = Hit { index: i, score: dot(&vectors[i * dim..(i + 1) * dim], query) };
        if heap.len() < k {
            heap.push(Worst(hit));
        } else if let Some(top) = heap.peek() {
            if better(&hit, &top.0) == Ordering::Less {
                heap.pop();
                heap.push(Worst(hit));
            }
        }
    }
    heap.into_iter().map(|w| w.0).collect()
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
    if k == 0 || n == 0 {
        return Vec::new();
    }
    const BLOCK: usize = 16_384;
    if n <= BLOCK {
        return finish(top_k_range(vectors, dim, query, k, 0, n), k);
    }
    let blocks: Vec<usize> = (0..n).step_by(BLOCK).collect();
    let hits: Vec<Hit> =
        blocks.par_iter().flat_map_iter(|&s| top_k_range(vectors, dim, query, k, s, (s + BLOCK).min(n))).collect();
    finish(hits, k)
}

/// Vectors per block of the batched search, and queries per matrix product: a block's scores
/// for one group of queries (4096 × 256 floats, 4 MiB) stay in cache while they are ranked.
const GEMM_ROWS: usize = 4096;
const GEMM_QUERIES: usize = 256;

/// [`top_k`] for many queries (`m × dim`). From four queries on, the scores of a block of
/// vectors against a group of queries come from one matrix product (as faiss does), so each
/// vector is read from memory once per group instead of once per query; the per-query top-k
/// selection then runs in parallel. Results equal [`top_k`]'s up to float summation order.
pub fn top_k_batch(vectors: &[f32], dim: usize, queries: &[f32], k: usize) -> Vec<Vec<Hit>> {
    let n = vectors.len() / dim.max(1);
    let m = queries.len() / dim.max(1);
    if m < 4 || k == 0 || n == 0 || dim == 0 {
        return queries.par_chunks(dim.max(1)).map(|q| finish(top_k_range(vectors, dim, q, k, 0, n), k)).collect();
    }
    let mut heaps: Vec<BinaryHeap<Worst>> = (0..m).map(|_| BinaryHeap::with_capacity(k + 1)).collect();
    let mut scores = vec![0f32; GEMM_QUERIES.min(m) * GEMM_ROWS.min(n)];
    for vs in (0..n).step_by(GEMM_ROWS) {
        let b = GEMM_ROWS.min(n - vs);
        let block = &vectors[vs * dim..(vs + b) * dim];
        for qs in (0..m).step_by(GEMM_QUERIES) {
            let mq = GEMM_QUERIES.min(m - qs);
            let group = &queries[qs * dim..(qs + mq) * dim];
            let c = &mut scores[..mq * b];
            // C (mq × b) = group (mq × dim, row-major) · blockᵀ (dim × b: row stride 1, column
            // stride dim).
            // SAFETY: the strides describe exactly `group` (mq·dim), `block` (b·dim) and `c`
            // (mq·b), all in bounds; beta = 0 so `c` is only written.
            unsafe {
                matrixmultiply::sgemm(
                    mq,
                    dim,
                    b,
                    1.0,
                    group.as_ptr(),
                    dim as isize,
                    1,
                    block.as_ptr(),
                    1,
                    dim as isize,
                    0.0,
                    c.as_mut_ptr(),
                    b as isize,
                    1,
                );
            }
            heaps[qs..qs + mq].par_iter_mut().zip(c.par_chunks(b)).for_each(|(heap, row)| {
                for (j, &score) in row.iter().enumerate() {
                    let hit = Hit { index: vs + j, score };
                    if heap.len() < k {
                        heap.push(Worst(hit));
                    } else if heap.peek().is_some_and(|top| better(&hit, &top.0) == Ordering::Less) {
                        heap.pop();
                        heap.push(Worst(hit));
                    }
                }
            });
        }
    }
    heaps.into_par_iter().map(|h| finish(h.into_iter().map(|w| w.0).collect(), k)).collect()
}

/// The obvious implementation: score everything, sort, take `k`. The reference the fast path
/// is tested against.
pub fn top_k_naive(vectors: &[f32], dim: usize, query: &[f32], k: usize) -> Vec<Hit> {
    let mut all: Vec<Hit> = vectors
        .chunks(dim)
        .enumerate()
        .map(|(index, v)| Hit { index, score: v.iter().zip(query).map(|(a, b)| a * b).sum() })
        .collect();
    all.sort_by(better);
    all.truncate(k);
    all
}
