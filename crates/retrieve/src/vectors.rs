//! How a snapshot stores its vectors: f32, or quantised to i8 with one scale per vector.
//!
//! Sentence vectors are unit vectors, and search only needs their dot products with a query.
//! Storing each value as a signed byte times a per-vector scale (the vector's largest magnitude
//! over 127) keeps a quarter of the bytes; a dot product then moves by at most half a step per
//! value, weighted by the query, which is far below the gaps that decide a ranking or a verdict
//! on real sentences. Large indexes choose it (`retrieve index --vectors i8`) to keep their
//! snapshot, and the pages a search touches, small; the exact f32 layout stays the default.
//!
//! Compaction copies the codes a snapshot already holds instead of quantising them again, so an
//! i8 index never drifts (and a dequantised vector would quantise back to the same codes).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// The element type of a snapshot's stored vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorKind {
    /// Four bytes per value, exact.
    #[default]
    F32,
    /// One byte per value and a scale per vector.
    I8,
}

impl VectorKind {
    /// Whether this is the default (what headers leave out).
    pub fn is_f32(&self) -> bool {
        *self == VectorKind::F32
    }
}

/// Rows of vectors as a search reads them: f32, or i8 codes with one scale per row (value `i`
/// of row `r` is `codes[r * dim + i] as f32 * scales[r]`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stored<'a> {
    F32(&'a [f32]),
    I8 { codes: &'a [i8], scales: &'a [f32] },
}

impl<'a> Stored<'a> {
    /// Number of rows of `dim` values.
    pub(crate) fn rows(&self, dim: usize) -> usize {
        match self {
            Stored::F32(v) => v.len() / dim.max(1),
            Stored::I8 { scales, .. } => scales.len(),
        }
    }

    /// Row `row` as f32 values: borrowed, or dequantised.
    pub(crate) fn row(&self, dim: usize, row: usize) -> Cow<'a, [f32]> {
        match *self {
            Stored::F32(v) => Cow::Borrowed(&v[row * dim..(row + 1) * dim]),
            Stored::I8 { codes, scales } => Cow::Owned(dequantise(&codes[row * dim..(row + 1) * dim], scales[row])),
        }
    }

    /// Rows `start..end` as f32 values, contiguous: borrowed, or dequantised into `buf`.
    pub(crate) fn block<'b>(&'b self, dim: usize, start: usize, end: usize, buf: &'b mut Vec<f32>) -> &'b [f32] {
        match *self {
            Stored::F32(v) => &v[start * dim..end * dim],
            Stored::I8 { codes, scales } => {
                buf.clear();
                for (row, &scale) in codes[start * dim..end * dim].chunks_exact(dim.max(1)).zip(&scales[start..end]) {
                    buf.extend(row.iter().map(|&c| f32::from(c) * scale));
                }
                buf
            }
        }
    }

    /// Row `row`'s i8 codes and scale, when these rows are quantised.
    pub(crate) fn quantised(&self, dim: usize, row: usize) -> Option<(&'a [i8], f32)> {
        match *self {
            Stored::F32(_) => None,
            Stored::I8 { codes, scales } => Some((&codes[row * dim..(row + 1) * dim], scales[row])),
        }
    }

    /// Dot product of row `row` with `query`, without copying the row.
    pub(crate) fn dot(&self, dim: usize, row: usize, query: &[f32]) -> f32 {
        match *self {
            Stored::F32(v) => crate::search::dot(&v[row * dim..(row + 1) * dim], query),
            Stored::I8 { codes, scales } => dot_i8(&codes[row * dim..(row + 1) * dim], query) * scales[row],
        }
    }
}

/// `vector` as i8 codes and the scale that maps them back: the largest magnitude becomes ±127.
/// A zero vector, or one holding a non-finite value, gets scale 0 (all zeros): nothing the
/// models make, and nothing a search should rank.
pub(crate) fn quantise(vector: &[f32], codes: &mut Vec<i8>) -> f32 {
    let max = vector.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || vector.iter().any(|x| !x.is_finite()) {
        codes.extend(std::iter::repeat_n(0, vector.len()));
        return 0.0;
    }
    let scale = max / 127.0;
    codes.extend(vector.iter().map(|&x| (x / scale).round().clamp(-127.0, 127.0) as i8));
    scale
}

/// The f32 values that `codes` under `scale` stand for.
pub(crate) fn dequantise(codes: &[i8], scale: f32) -> Vec<f32> {
    codes.iter().map(|&c| f32::from(c) * scale).collect()
}

/// Dot product of i8 codes with f32 values (the caller multiplies by the row's scale). Eight
/// independent accumulators let the compiler vectorise the loop, as in [`crate::search::dot`].
#[inline]
fn dot_i8(codes: &[i8], query: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (cc, cq) = (codes.chunks_exact(8), query.chunks_exact(8));
    let (rc, rq) = (cc.remainder(), cq.remainder());
    for (x, y) in cc.zip(cq) {
        for i in 0..8 {
            acc[i] += f32::from(x[i]) * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in rc.iter().zip(rq) {
        s += f32::from(*x) * y;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        // A small deterministic generator: values spread over [-1, 1), then normalised.
        let mut s = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
        let v: Vec<f32> = (0..dim)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    /// Every value comes back within half a step; the largest magnitude maps to ±127.
    #[test]
    fn quantising_keeps_each_value_within_half_a_step() {
        for seed in 1..20 {
            let v = unit(seed, 37);
            let mut codes = Vec::new();
            let scale = quantise(&v, &mut codes);
            let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert_eq!(scale, max / 127.0);
            assert_eq!(codes.iter().map(|c| c.unsigned_abs()).max(), Some(127));
            for (x, y) in v.iter().zip(dequantise(&codes, scale)) {
                assert!((x - y).abs() <= scale / 2.0 + 1e-7, "{x} came back as {y} (step {scale})");
            }
        }
    }

    /// Hand-worked: in [0.5, -0.2, 0.1] the largest magnitude 0.5 becomes 127, so -0.2 is
    /// -50.8 steps and 0.1 is 25.4.
    #[test]
    fn quantising_a_small_vector() {
        let mut codes = Vec::new();
        let scale = quantise(&[0.5, -0.2, 0.1], &mut codes);
        assert_eq!(codes, [127, -51, 25]);
        assert_eq!(scale, 0.5 / 127.0);
    }

    /// Quantising what dequantising gave returns the same codes and scale: compaction does not
    /// drift.
    #[test]
    fn quantising_is_idempotent() {
        for seed in 1..50 {
            let mut codes = Vec::new();
            let scale = quantise(&unit(seed, 256), &mut codes);
            let mut again = Vec::new();
            let scale2 = quantise(&dequantise(&codes, scale), &mut again);
            assert_eq!(again, codes, "seed {seed}");
            assert!((scale2 - scale).abs() <= scale * 1e-6);
        }
    }

    #[test]
    fn zero_and_non_finite_vectors_quantise_to_zero() {
        for v in [vec![0.0f32; 4], vec![1.0, f32::NAN, 0.0, 0.0], vec![f32::INFINITY, 0.0, 0.0, 0.0]] {
            let mut codes = Vec::new();
            assert_eq!(quantise(&v, &mut codes), 0.0);
            assert_eq!(codes, [0; 4]);
        }
    }

    /// The i8 dot product equals the dot product of the dequantised row; rows and blocks read
    /// the same values.
    #[test]
    fn stored_i8_reads_what_was_quantised() {
        let dim = 19;
        let rows: Vec<Vec<f32>> = (0..5).map(|s| unit(s + 100, dim)).collect();
        let (mut codes, mut scales) = (Vec::new(), Vec::new());
        for r in &rows {
            scales.push(quantise(r, &mut codes));
        }
        let stored = Stored::I8 { codes: &codes, scales: &scales };
        assert_eq!(stored.rows(dim), 5);
        let q = unit(7, dim);
        let mut buf = Vec::new();
        let block = stored.block(dim, 1, 4, &mut buf).to_vec();
        for r in 0..5 {
            let row = stored.row(dim, r);
            let want: f32 = row.iter().zip(&q).map(|(a, b)| a * b).sum();
            assert!((stored.dot(dim, r, &q) - want).abs() < 1e-5);
            // And close to the original's: half a step per value, weighted by the query.
            let exact: f32 = rows[r].iter().zip(&q).map(|(a, b)| a * b).sum();
            let bound = scales[r] / 2.0 * q.iter().map(|x| x.abs()).sum::<f32>();
            assert!((want - exact).abs() <= bound + 1e-6);
            if (1..4).contains(&r) {
                assert_eq!(&block[(r - 1) * dim..r * dim], &row[..]);
            }
        }
        let f32_rows: Vec<f32> = rows.concat();
        let plain = Stored::F32(&f32_rows);
        assert_eq!(plain.rows(dim), 5);
        assert_eq!(plain.block(dim, 2, 3, &mut buf), &rows[2][..]);
        assert_eq!(plain.dot(dim, 3, &q), crate::search::dot(&rows[3], &q));
    }
}
