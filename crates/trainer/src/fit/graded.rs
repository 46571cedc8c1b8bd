//! Graded pairs as a second task: a stream of length-bucketed batches of graded pairs that
//! rides along the training pairs' batches, one graded batch per step, and the regression term
//! those batches add to the step's loss.

use burn::prelude::*;
use encoder::{regression_loss, Energy, TwinEncoder};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::fit::step::{bucketed_batches, EncodedPairs};

/// An endless supply of graded batches: each pass over the pairs is a fresh seeded plan of
/// length-bucketed batches, so every pair comes once per pass whatever the number of steps.
#[derive(Debug)]
pub struct GradedStream {
    pairs: EncodedPairs,
    lengths: Vec<usize>,
    batch_size: usize,
    weight: f32,
    rng: StdRng,
    plan: Vec<Vec<usize>>,
}

/// Windows of batches sorted by length, as the training pairs' own plan uses.
const BUCKET_WINDOW: usize = 50;

impl GradedStream {
    /// A stream over `pairs`, `batch_size` pairs a batch, its term weighted by `weight`.
    pub fn new(pairs: EncodedPairs, batch_size: usize, weight: f32, seed: u64) -> Self {
        let lengths = pairs.lengths();
        Self { pairs, lengths, batch_size: batch_size.max(1), weight, rng: StdRng::seed_from_u64(seed), plan: Vec::new() }
    }

    /// Number of graded pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there is no graded pair.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The next batch's pair indices (empty only when there are no pairs).
    pub fn next_batch(&mut self) -> Vec<usize> {
        if self.plan.is_empty() {
            self.plan = bucketed_batches(&self.lengths, self.batch_size, BUCKET_WINDOW, &mut self.rng);
            // Popped from the back: reverse so that a pass runs in the plan's order.
            self.plan.reverse();
        }
        self.plan.pop().unwrap_or_default()
    }

    /// The weighted regression term of the pairs `idx`: the mean squared difference between
    /// `energy`'s similarity of the two sides and their scaled score. Also returns the batch's
    /// real tokens and cells.
    pub fn loss(&self, twin: &TwinEncoder, energy: Energy, idx: &[usize], device: &Device) -> (Tensor<1>, usize, usize) {
        let out = self.pairs.forward(twin, idx, device);
        let target = Tensor::<1>::from_data(TensorData::new(out.labels, [idx.len()]), device);
        let term = regression_loss(energy.similarity(out.a, out.b), target).mul_scalar(self.weight);
        (term, out.real_tokens, out.cells)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use data::Pair;
    use encoder::BatchTensors;
    use encoder::{Backend, EncoderConfig};
    use tokenize::{Batch, WordTokenizer};

    fn setup() -> (WordTokenizer, EncodedPairs) {
        let pair = |a: &str, b: &str, label: f32| Pair { a: a.into(), b: b.into(), label, line: 1 };
        let pairs: Vec<Pair> = (0..10).map(|i| pair(&format!("w{i} a b"), &format!("w{i} c"), i as f32 / 10.0)).collect();
        let tok = WordTokenizer::build(pairs.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()]), &Default::default(), &[]).unwrap();
        let encoded = EncodedPairs::new(&tok, &pairs).unwrap();
        (tok, encoded)
    }

    #[test]
    fn every_pair_comes_once_per_pass() {
        let (_, pairs) = setup();
        let mut stream = GradedStream::new(pairs, 4, 1.0, 7);
        for _pass in 0..3 {
            // 10 pairs in batches of 4: 4 + 4 + 2, in some order.
            let mut seen: Vec<usize> = (0..3).flat_map(|_| stream.next_batch()).collect();
            seen.sort();
            assert_eq!(seen, (0..10).collect::<Vec<_>>());
        }
        // The same seed gives the same batches.
        let (_, pairs) = setup();
        let mut again = GradedStream::new(pairs, 4, 1.0, 7);
        let (_, pairs) = setup();
        let mut first = GradedStream::new(pairs, 4, 1.0, 7);
        assert_eq!((0..5).map(|_| first.next_batch()).collect::<Vec<_>>(), (0..5).map(|_| again.next_batch()).collect::<Vec<_>>());
    }

    #[test]
    fn the_term_is_the_weighted_squared_error_of_the_similarity() {
        let device = Backend::Flex.device();
        let (tok, pairs) = setup();
        let encoder = EncoderConfig::new(tok.vocab_size()).with_d_embed(8).with_d_hidden(8).init(&device);
        let twin = TwinEncoder { encoder };
        let idx = [1, 4, 9];
        // By hand: encode each side alone, cosine, squared error against 0.1, 0.4, 0.9.
        let embed = |s: &str| -> Vec<f32> {
            let rows = tok.encode_batch_rows(&[s]).unwrap();
            let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
            let batch = Batch::from_rows(&refs);
            twin.encoder.forward(BatchTensors::new(&batch, &device)).into_data().try_into_vec::<f32>().unwrap()
        };
        let cos = |x: &[f32], y: &[f32]| {
            let dot: f32 = x.iter().zip(y).map(|(a, b)| a * b).sum();
            dot / (x.iter().map(|v| v * v).sum::<f32>().sqrt() * y.iter().map(|v| v * v).sum::<f32>().sqrt())
        };
        let want: f32 = idx
            .iter()
            .map(|&i| {
                let s = cos(&embed(&format!("w{i} a b")), &embed(&format!("w{i} c")));
                (s - i as f32 / 10.0).powi(2)
            })
            .sum::<f32>()
            / 3.0;
        for weight in [1.0, 2.5] {
            let stream = GradedStream::new(pairs.clone(), 4, weight, 1);
            let (term, real, cells) = stream.loss(&twin, Energy::Cosine, &idx, &device);
            let got = term.into_scalar::<f32>();
            assert!((got - weight * want).abs() < 1e-5, "{got} vs {}", weight * want);
            // Six sentences of 3 and 2 tokens, padded to 3.
            assert_eq!((real, cells), (3 * 3 + 3 * 2, 6 * 3));
        }
    }
}
