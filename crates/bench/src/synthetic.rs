//! Synthetic sentence-like vectors for search benchmarks past what the corpus can supply.
//!
//! Sentence vectors are not uniform on the sphere: questions gather by topic, and within a
//! topic by what they ask. Uniform random vectors would make every neighbour nearly as far as any
//! other (the worst case for a graph index, and unlike real queries); these come in two levels
//! of clusters instead: topics, sub-topics around each topic, and items around each sub-topic,
//! each level a unit vector plus Gaussian noise of a set norm, normalised. Every item is a pure
//! function of the seed and its number, so a benchmark can make queries that match a stored
//! index without storing them, and any item again on demand.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A generator of clustered unit vectors.
#[derive(Debug, Clone)]
pub struct Clusters {
    dim: usize,
    /// Sub-topic centres, row-major (`subtopics × dim`).
    centres: Vec<f32>,
    /// Norm of the noise added to a sub-topic centre to make an item.
    spread: f32,
    seed: u64,
}

/// Streams of items: what is stored, and queries drawn from the same clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The items an index stores.
    Stored,
    /// Queries: other items of the same clusters.
    Queries,
}

impl Clusters {
    /// `topics × per_topic` sub-topic centres of size `dim`; sub-topics lie at noise norm
    /// `topic_spread` around their topic, items at `spread` around their sub-topic.
    pub fn new(dim: usize, topics: usize, per_topic: usize, topic_spread: f32, spread: f32, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut topic = vec![0f32; dim];
        let mut centres = Vec::with_capacity(topics * per_topic * dim);
        for _ in 0..topics {
            gaussian(&mut rng, &mut topic);
            normalise(&mut topic);
            for _ in 0..per_topic {
                let start = centres.len();
                centres.extend_from_slice(&topic);
                add_noise(&mut rng, &mut centres[start..], topic_spread);
            }
        }
        Clusters { dim, centres, spread, seed }
    }

    /// Vector size.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Item `i` of `stream`, written into `out` (`dim` values).
    pub fn item(&self, stream: Stream, i: u64, out: &mut [f32]) {
        let salt = match stream {
            Stream::Stored => 0x5354_4f52_4544,
            Stream::Queries => 0x5155_4552_5953,
        };
        let mut rng = StdRng::seed_from_u64(self.seed ^ salt ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let subtopics = self.centres.len() / self.dim.max(1);
        let c = rng.random_range(0..subtopics);
        out.copy_from_slice(&self.centres[c * self.dim..(c + 1) * self.dim]);
        add_noise(&mut rng, out, self.spread);
    }

    /// Items `range` of `stream`, row-major.
    pub fn items(&self, stream: Stream, range: std::ops::Range<u64>) -> Vec<f32> {
        let mut v = vec![0f32; (range.end - range.start) as usize * self.dim];
        for (row, i) in v.chunks_mut(self.dim.max(1)).zip(range) {
            self.item(stream, i, row);
        }
        v
    }
}

/// Standard normal values (Box–Muller).
fn gaussian(rng: &mut StdRng, out: &mut [f32]) {
    for pair in out.chunks_mut(2) {
        let u1: f32 = 1.0 - rng.random::<f32>(); // (0, 1]: the logarithm stays finite
        let u2: f32 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f32::consts::TAU * u2).sin_cos();
        pair[0] = r * c;
        if let Some(second) = pair.get_mut(1) {
            *second = r * s;
        }
    }
}

/// Adds Gaussian noise of expected norm about `norm` to the unit vector `v`, then normalises.
fn add_noise(rng: &mut StdRng, v: &mut [f32], norm: f32) {
    let mut noise = vec![0f32; v.len()];
    gaussian(rng, &mut noise);
    let scale = norm / (v.len() as f32).sqrt();
    for (x, n) in v.iter_mut().zip(&noise) {
        *x += scale * n;
    }
    normalise(v);
}

fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// Items are unit vectors, the same for the same number and seed, different across streams,
    /// and nearer their own sub-topic's items than other topics' items.
    #[test]
    fn items_are_unit_deterministic_and_clustered() {
        let g = Clusters::new(32, 4, 3, 0.8, 0.5, 7);
        let a = g.items(Stream::Stored, 0..200);
        assert_eq!(a, Clusters::new(32, 4, 3, 0.8, 0.5, 7).items(Stream::Stored, 0..200));
        assert_ne!(a[..32], g.items(Stream::Queries, 0..1)[..]);
        assert_eq!(&g.items(Stream::Stored, 5..6)[..], &a[5 * 32..6 * 32]);
        for row in a.chunks(32) {
            assert!((dot(row, row) - 1.0).abs() < 1e-5);
        }
        // Each item's nearest other item is much closer than the mean similarity of all pairs.
        let rows: Vec<&[f32]> = a.chunks(32).collect();
        let (mut nearest, mut all, mut pairs) = (0f32, 0f32, 0usize);
        for (i, x) in rows.iter().enumerate() {
            let best = rows.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, y)| dot(x, y)).fold(f32::MIN, f32::max);
            nearest += best;
            for y in &rows[i + 1..] {
                all += dot(x, y);
                pairs += 1;
            }
        }
        let (nearest, all) = (nearest / rows.len() as f32, all / pairs as f32);
        assert!(nearest > all + 0.3, "nearest {nearest}, mean {all}");
    }
}
