//! Paraphrase mining: the pairs of stored sentences that look like duplicates, grouped into
//! clusters of sentences that are (transitively) duplicates of each other. Pairs are either
//! every pair above a similarity threshold ([`mine_pairs`]) or the pairs search would flag with
//! each sentence as the query ([`mine_search_pairs`]), for flag scores that depend on the
//! query's neighbourhood.

use rayon::prelude::*;

/// Two rows of the index that look like duplicates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DupPair {
    /// First row (the lower index).
    pub i: usize,
    /// Second row.
    pub j: usize,
    /// Their similarity (the energy's; cosine for the shipped model).
    pub score: f32,
}

/// Most pairs [`mine_pairs`] returns: a low threshold over a large collection would otherwise
/// ask for n²/2 pairs (5·10⁹ for 100k sentences) and exhaust memory.
pub const MAX_PAIRS: usize = 20_000_000;

/// All pairs `i < j` with `dot(v_i, v_j) >= min_score`, best first. Exact: every pair is scored.
/// More than `max_pairs` pairs is an error (`Err` carries the limit) instead of an allocation
/// that cannot succeed.
pub fn mine_pairs(vectors: &[f32], dim: usize, min_score: f32, max_pairs: usize) -> Result<Vec<DupPair>, usize> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let n = vectors.len() / dim.max(1);
    let row = |i: usize| &vectors[i * dim..(i + 1) * dim];
    let found = AtomicUsize::new(0);
    let rows: Vec<Vec<DupPair>> = (0..n)
        .into_par_iter()
        .map(|i| {
            if found.load(Ordering::Relaxed) > max_pairs {
                return Vec::new();
            }
            let a = row(i);
            let hits: Vec<DupPair> = (i + 1..n)
                .filter_map(|j| {
                    let score: f32 = a.iter().zip(row(j)).map(|(x, y)| x * y).sum();
                    (score >= min_score).then_some(DupPair { i, j, score })
                })
                .collect();
            found.fetch_add(hits.len(), Ordering::Relaxed);
            hits
        })
        .collect();
    if found.load(Ordering::Relaxed) > max_pairs {
        return Err(max_pairs);
    }
    let mut pairs: Vec<DupPair> = rows.into_iter().flatten().collect();
    pairs.sort_by(|a, b| b.score.total_cmp(&a.score).then((a.i, a.j).cmp(&(b.i, b.j))));
    Ok(pairs)
}

/// The pairs search flags when each row is the query. `neighbours[i]` are row `i`'s nearest
/// other rows with their distances, best first, as search ranks them (deep enough for the
/// package's flag, see [`encoder::ModelPackage::search_depth`]); `judge` turns one row's
/// distances into one verdict per hit (as [`encoder::ModelPackage::judge_hits`] does), and a
/// pair is kept when either row flags the other among its first `shown` hits. Best first by
/// `similarity` of their distance; at most `n × shown` pairs, so no limit is needed.
pub fn mine_search_pairs(
    neighbours: &[Vec<(usize, f64)>],
    shown: usize,
    similarity: impl Fn(f64) -> f64 + Sync,
    judge: impl Fn(&[f64]) -> Vec<bool> + Sync,
) -> Vec<DupPair> {
    let mut pairs: Vec<DupPair> = neighbours
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, hits)| {
            let distances: Vec<f64> = hits.iter().map(|h| h.1).collect();
            let flagged = judge(&distances);
            hits.iter()
                .zip(flagged)
                .take(shown)
                .filter(|(_, flag)| *flag)
                .map(|(&(j, d), _)| DupPair { i: i.min(j), j: i.max(j), score: similarity(d) as f32 })
                .collect::<Vec<_>>()
        })
        .collect();
    // A pair both rows flag is found twice.
    pairs.sort_by_key(|p| (p.i, p.j));
    pairs.dedup_by(|a, b| (a.i, a.j) == (b.i, b.j));
    pairs.sort_by(|a, b| b.score.total_cmp(&a.score).then((a.i, a.j).cmp(&(b.i, b.j))));
    pairs
}

/// Union-find over the pairs: a cluster id for every row that is in at least one pair
/// (`None` for the others). Cluster ids count from 1 in order of each cluster's smallest row.
pub fn clusters(n: usize, pairs: &[DupPair]) -> Vec<Option<usize>> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    let mut in_pair = vec![false; n];
    for p in pairs {
        in_pair[p.i] = true;
        in_pair[p.j] = true;
        let (a, b) = (find(&mut parent, p.i), find(&mut parent, p.j));
        if a != b {
            parent[a.max(b)] = a.min(b);
        }
    }
    let mut ids = vec![None; n];
    let mut next = 0;
    let mut root_id: Vec<Option<usize>> = vec![None; n];
    for i in 0..n {
        if !in_pair[i] {
            continue;
        }
        let r = find(&mut parent, i);
        let id = *root_id[r].get_or_insert_with(|| {
            next += 1;
            next
        });
        ids[i] = Some(id);
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mines_exactly_the_pairs_above_threshold_and_clusters_them() {
        // Rows 0,1,3 point the same way; 2 and 4 are alone.
        let v = [1.0, 0.0, 0.99, 0.141, 0.0, 1.0, 0.98, -0.199, -1.0, 0.0];
        let pairs = mine_pairs(&v, 2, 0.9, MAX_PAIRS).unwrap();
        let ij: Vec<(usize, usize)> = pairs.iter().map(|p| (p.i, p.j)).collect();
        assert_eq!(ij, vec![(0, 1), (0, 3), (1, 3)]);
        assert!(pairs.windows(2).all(|w| w[0].score >= w[1].score));
        assert_eq!(clusters(5, &pairs), vec![Some(1), Some(1), None, Some(1), None]);
        // Two separate groups get separate ids.
        let p = [DupPair { i: 2, j: 4, score: 1.0 }, DupPair { i: 0, j: 1, score: 1.0 }];
        assert_eq!(clusters(5, &p), vec![Some(1), Some(1), Some(2), None, Some(2)]);
    }

    /// Every row's other rows, nearest first, `depth` of them: points on a line, distance
    /// |a − b|.
    fn line_neighbours(points: &[f64], depth: usize) -> Vec<Vec<(usize, f64)>> {
        (0..points.len())
            .map(|i| {
                let mut hits: Vec<(usize, f64)> =
                    (0..points.len()).filter(|&j| j != i).map(|j| (j, (points[i] - points[j]).abs())).collect();
                hits.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                hits.truncate(depth);
                hits
            })
            .collect()
    }

    #[test]
    fn search_pairs_are_what_either_row_flags_as_a_query() {
        // Points on a line. The judge flags a row's nearest hit when it is less than half as
        // far as the next: only row 2 flags its nearest, row 1; row 1 as the query (its next
        // nearest, row 0, is not twice as far) does not flag row 2 back.
        let points = [0.0, 0.1, 0.16, 5.0, 10.0];
        let neighbours = line_neighbours(&points, 15);
        let similarity = |d: f64| 1.0 - d;
        let first_stands_out = |d: &[f64]| (0..d.len()).map(|r| r == 0 && d.len() > 1 && d[0] < d[1] / 2.0).collect();
        let pairs = mine_search_pairs(&neighbours, 5, similarity, first_stands_out);
        assert_eq!(pairs.iter().map(|p| (p.i, p.j)).collect::<Vec<_>>(), [(1, 2)]);
        assert!((pairs[0].score - 0.94).abs() < 1e-6, "the pair's similarity: {}", pairs[0].score);
        // A judge that flags every hit: each row's two nearest with `shown` 2, each pair once.
        let all = |d: &[f64]| vec![true; d.len()];
        let pairs = mine_search_pairs(&neighbours, 2, similarity, all);
        let mut ij: Vec<(usize, usize)> = pairs.iter().map(|p| (p.i, p.j)).collect();
        ij.sort();
        assert_eq!(ij, [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (2, 4), (3, 4)]);
        assert!(pairs.windows(2).all(|w| w[0].score >= w[1].score));
        // The judge sees every neighbour however few are shown.
        let seen = std::sync::Mutex::new(Vec::new());
        mine_search_pairs(&line_neighbours(&points, 3), 1, similarity, |d: &[f64]| {
            seen.lock().unwrap().push(d.len());
            vec![false; d.len()]
        });
        assert_eq!(seen.into_inner().unwrap(), [3; 5]);
    }

    #[test]
    fn too_many_pairs_is_an_error_not_an_allocation() {
        // 60 identical rows: 1,770 pairs above any threshold.
        let v: Vec<f32> = (0..60).flat_map(|_| [1.0, 0.0]).collect();
        assert_eq!(mine_pairs(&v, 2, -1.0, 1_770).unwrap().len(), 1_770);
        assert_eq!(mine_pairs(&v, 2, -1.0, 1_000), Err(1_000));
    }
}
