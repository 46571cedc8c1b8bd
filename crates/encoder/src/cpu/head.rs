//! The verdict head on the host: the MLP over `[|a−b|, a⊙b]` of `model::head`, on plain
//! buffers, so that every duplicate verdict of `retrieve` comes from the same code whatever the
//! backend, and a build without burn can give it. Tests hold it to the burn module.

use super::gemm::matmul;
use crate::model::config::VerdictHeadConfig;
use crate::runtime::weights::Weights;
use crate::Result;

/// A verdict head's weights on the host.
#[derive(Debug, Clone)]
pub struct HostHead {
    d: usize,
    hidden: usize,
    input_scale: f32,
    /// `[2d, hidden]`, row-major.
    w_hidden: Vec<f32>,
    /// `[hidden]`.
    b_hidden: Vec<f32>,
    /// `[hidden]` (the `[hidden, 1]` output layer).
    w_out: Vec<f32>,
    b_out: f32,
}

/// Pairs per matrix product: a few MiB of features at the widths this project trains.
const CHUNK: usize = 1024;

impl HostHead {
    /// Takes the head's tensors (`w_hidden`, `b_hidden`, `w_out`, `b_out`) from a `head.bpk`,
    /// each checked against the shape `config` implies.
    pub(crate) fn from_weights(config: &VerdictHeadConfig, weights: &mut Weights) -> Result<Self> {
        let (d, hidden) = (config.d_input, config.d_hidden);
        Ok(Self {
            d,
            hidden,
            input_scale: config.input_scale as f32,
            w_hidden: weights.take("w_hidden", &[2 * d, hidden])?,
            b_hidden: weights.take("b_hidden", &[hidden])?,
            w_out: weights.take("w_out", &[hidden, 1])?,
            b_out: weights.take("b_out", &[1])?[0],
        })
    }

    /// Width of the sentence vectors this head reads.
    pub fn d_input(&self) -> usize {
        self.d
    }

    /// Probabilities of "duplicate" for `n` pairs, `pair(i)` giving the two vectors of pair `i`
    /// wherever they live (interleaved encoder output, a query against index rows), so that no
    /// caller copies them into two side arrays first.
    ///
    /// # Panics
    /// When a vector is not [`d_input`](Self::d_input) wide: a caller's bug, not bad input.
    pub fn probabilities<'a>(&self, n: usize, pair: impl Fn(usize) -> (&'a [f32], &'a [f32])) -> Vec<f32> {
        let (d, h, s) = (self.d, self.hidden, self.input_scale);
        let mut out = Vec::with_capacity(n);
        let mut features = Vec::new();
        let mut hidden = Vec::new();
        for start in (0..n).step_by(CHUNK) {
            let rows = CHUNK.min(n - start);
            features.clear();
            for i in start..start + rows {
                let (a, b) = pair(i);
                assert!(a.len() == d && b.len() == d, "pair {i}: vectors of width {d} expected");
                features.extend(a.iter().zip(b).map(|(x, y)| (x * s - y * s).abs()));
                features.extend(a.iter().zip(b).map(|(x, y)| (x * s) * (y * s)));
            }
            hidden.clear();
            for _ in 0..rows {
                hidden.extend_from_slice(&self.b_hidden);
            }
            let rows_ = (features.as_slice(), 2 * d as isize, 1);
            matmul(rows, 2 * d, h, rows_, (&self.w_hidden, h as isize, 1), true, &mut hidden, h as isize, rows >= 64);
            out.extend(hidden.chunks_exact(h.max(1)).take(rows).map(|row| {
                let logit = self.b_out + row.iter().zip(&self.w_out).map(|(x, w)| x.max(0.0) * w).sum::<f32>();
                1.0 / (1.0 + (-logit).exp())
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One pair by hand: d = 1, two hidden units.
    #[test]
    fn probability_of_one_pair_by_hand() {
        let head = HostHead {
            d: 1,
            hidden: 2,
            input_scale: 2.0,
            // Rows: |a−b| then a⊙b; columns: the two hidden units.
            w_hidden: vec![1.0, -1.0, 0.5, 2.0],
            b_hidden: vec![0.0, 0.1],
            w_out: vec![1.5, -0.5],
            b_out: -0.25,
        };
        let (a, b) = ([0.5f32], [0.25f32]);
        let p = head.probabilities(1, |_| (&a[..], &b[..]));
        // The same MLP written out: scaled inputs, the two features, two ReLU units, the output.
        let (x, y) = (2.0 * a[0], 2.0 * b[0]);
        let (diff, prod) = ((x - y).abs(), x * y);
        let hidden = [(diff + prod * 0.5).max(0.0), (-diff + prod * 2.0 + 0.1).max(0.0)];
        let logit = 1.5 * hidden[0] - 0.5 * hidden[1] - 0.25;
        let want = 1.0 / (1.0 + (-logit).exp());
        assert!((p[0] - want).abs() < 1e-6, "{} vs {want}", p[0]);
        // Symmetric in the two sentences.
        assert_eq!(head.probabilities(1, |_| (&b[..], &a[..])), p);
    }

    #[test]
    fn many_pairs_cross_chunks_in_order() {
        let head = HostHead {
            d: 2,
            hidden: 3,
            input_scale: 1.0,
            w_hidden: (0..12).map(|i| i as f32 * 0.1 - 0.5).collect(),
            b_hidden: vec![0.1, -0.2, 0.3],
            w_out: vec![1.0, -1.0, 0.5],
            b_out: 0.0,
        };
        let vecs: Vec<f32> = (0..2 * 2 * 2500).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        let pair = |i: usize| (&vecs[4 * i..4 * i + 2], &vecs[4 * i + 2..4 * i + 4]);
        let all = head.probabilities(2500, pair);
        assert_eq!(all.len(), 2500);
        for i in [0, 1023, 1024, 2047, 2048, 2499] {
            let one = head.probabilities(1, |_| pair(i));
            assert!((one[0] - all[i]).abs() < 1e-6, "pair {i}");
        }
    }
}
