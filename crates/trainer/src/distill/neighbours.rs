//! Each transfer sentence's nearest neighbours by the teacher: what neighbour batches are made
//! of.
//!
//! A batch of random sentences mostly holds unrelated pairs, which the student already tells
//! apart; the pairs search gets wrong are *close* sentences that mean different things. Batches
//! built from groups of teacher neighbours put those pairs into the similarity-matrix term, so the
//! student learns how far apart the teacher keeps them.

use data::augment::best_k;
use rayon::prelude::*;

/// Query rows per block of the product: bounds the block's scores to `BLOCK × n` floats.
const BLOCK: usize = 256;

/// The `k` nearest rows of every row of `vectors` (`n × dim`, unit length), by dot product,
/// itself excluded, nearest first.
pub fn nearest(vectors: &[f32], dim: usize, k: usize) -> Vec<Vec<usize>> {
    let n = vectors.len().checked_div(dim).unwrap_or(0);
    let k = k.min(n.saturating_sub(1));
    if k == 0 {
        return vec![Vec::new(); n];
    }
    let mut out = Vec::with_capacity(n);
    let mut scores = vec![0f32; BLOCK.min(n) * n];
    for start in (0..n).step_by(BLOCK) {
        let rows = BLOCK.min(n - start);
        let block = &vectors[start * dim..(start + rows) * dim];
        // scores[rows, n] = block[rows, dim] · vectorsᵀ[dim, n]
        encoder::matmul(rows, dim, n, (block, dim as isize, 1), (vectors, 1, dim as isize), false, &mut scores, n as isize, true);
        let found: Vec<Vec<usize>> = scores[..rows * n]
            .par_chunks(n)
            .enumerate()
            .map(|(r, row)| best_k(row.iter().copied().enumerate().filter(|&(j, _)| j != start + r), k))
            .collect();
        out.extend(found);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_are_the_nearest_others() {
        // Points on the unit circle at 0°, 10°, 90°, 100° and 180°.
        let deg = [0f32, 10.0, 90.0, 100.0, 180.0];
        let v: Vec<f32> = deg.iter().flat_map(|d| [d.to_radians().cos(), d.to_radians().sin()]).collect();
        let nn = nearest(&v, 2, 2);
        assert_eq!(nn, vec![vec![1, 2], vec![0, 2], vec![3, 1], vec![2, 4], vec![3, 2]]);
        assert_eq!(nearest(&v[..2], 2, 3), vec![Vec::<usize>::new()]);
    }
}
