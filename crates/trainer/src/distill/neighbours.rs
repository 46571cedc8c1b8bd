//! Nearest neighbours by the teacher, and the batches made of groups of them.
//!
//! A batch of random sentences mostly holds unrelated pairs, which the student already tells
//! apart; the pairs search gets wrong are *close* sentences that mean different things. Batches
//! built from groups of teacher neighbours put those pairs together: transfer batches into the
//! similarity-matrix and ranking terms, so the student learns how far apart the teacher keeps
//! them; pair batches (`train.neighbours`) into the in-batch negatives, so each duplicate pair's
//! negatives are the questions nearest to it rather than random ones.

use data::augment::best_k;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

/// Query rows per block of the product: bounds the block's scores to `BLOCK × n` floats.
const BLOCK: usize = 256;

/// The `k` nearest rows of every row of `vectors` (`n × dim`, unit length), by dot product,
/// itself excluded, nearest first.
pub fn nearest(vectors: &[f32], dim: usize, k: usize) -> Vec<Vec<usize>> {
    nearest_with(vectors, dim, k, |_| {})
}

/// [`nearest`], telling `on_rows` how many rows each block finished (for a progress bar).
pub fn nearest_with(vectors: &[f32], dim: usize, k: usize, on_rows: impl Fn(usize)) -> Vec<Vec<usize>> {
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
        on_rows(rows);
    }
    out
}

/// Whether an item already drawn in the pass comes again when a later anchor names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redraw {
    /// Every anchor brings all its neighbours, drawn or not (transfer batches: each sentence's
    /// batch holds its neighbours; a pass may repeat some sentences).
    Always,
    /// Every item comes exactly once per pass (pair batches: an epoch stays one pass over the
    /// pairs; later anchors bring only the neighbours left).
    Never,
}

/// One pass of batches of at most `batch_size` items: each item not yet drawn in the pass, in
/// random order, is an anchor and brings its `neighbours` into the batch with it. A group may
/// be split across two batches when the first fills up.
pub fn neighbour_batches(neighbours: &[Vec<usize>], batch_size: usize, redraw: Redraw, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    let mut order: Vec<usize> = (0..neighbours.len()).collect();
    order.shuffle(rng);
    let mut drawn = vec![false; order.len()];
    let mut batches = Vec::new();
    let mut batch: Vec<usize> = Vec::with_capacity(batch_size);
    for anchor in order {
        if drawn[anchor] {
            continue;
        }
        for &i in std::iter::once(&anchor).chain(&neighbours[anchor]) {
            if redraw == Redraw::Never && drawn[i] {
                continue;
            }
            if batch.len() == batch_size {
                batches.push(std::mem::take(&mut batch));
            }
            if !batch.contains(&i) {
                batch.push(i);
                drawn[i] = true;
            }
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn neighbour_batches_draw_each_item_once_or_bring_every_group_whole() {
        // Items 2i and 2i+1 are each other's neighbour; 10's neighbours are 0 and 1.
        let mut neighbours: Vec<Vec<usize>> = (0..10).map(|i| vec![i ^ 1]).collect();
        neighbours.push(vec![0, 1]);
        let rng = || StdRng::seed_from_u64(3);
        let once = neighbour_batches(&neighbours, 4, Redraw::Never, &mut rng());
        let mut seen: Vec<usize> = once.concat();
        seen.sort();
        assert_eq!(seen, (0..11).collect::<Vec<_>>(), "{once:?}");
        assert!(once.iter().all(|b| !b.is_empty() && b.len() <= 4));
        // With redraws every item is still drawn, some twice, and in each batch no item twice.
        let again = neighbour_batches(&neighbours, 4, Redraw::Always, &mut rng());
        let mut seen: Vec<usize> = again.concat();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, (0..11).collect::<Vec<_>>(), "{again:?}");
        assert!(again.iter().all(|b| (1..b.len()).all(|j| !b[..j].contains(&b[j]))));
        // Everyone's neighbour is 0: with redraws 0 comes with every anchor (at least the
        // four that are not 0 or 1), without it comes once.
        let hub: Vec<Vec<usize>> = (0..6).map(|i| vec![usize::from(i == 0)]).collect();
        let count0 = |r| neighbour_batches(&hub, 2, r, &mut rng()).iter().filter(|b| b.contains(&0)).count();
        assert!(count0(Redraw::Always) >= 4);
        assert_eq!(count0(Redraw::Never), 1);
        assert!(neighbour_batches(&[], 4, Redraw::Never, &mut rng()).is_empty());
    }

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
