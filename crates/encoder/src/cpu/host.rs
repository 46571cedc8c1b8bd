//! Inference on the host for the CPU backends: token ids in, sentence vectors out, with no
//! tensor in between.
//!
//! On ndarray and flex the LSTM already runs as host code ([`super::recurrence`]); around it, the
//! tensor version of [`SentenceEncoder::forward`] gathers word vectors, builds masks, copies every
//! step's state back into a tensor, pools and normalises with a dozen allocating tensor
//! operations. That was about half of encoding time. [`HostEncoder`] copies the weights out once
//! and does the same arithmetic on plain buffers; tests hold it to the tensor path to 1e-5.

use std::sync::OnceLock;

use super::gemm::matmul;
use super::recurrence::{self, Packing};
use crate::model::config::{EncoderConfig, Pooling};
#[cfg(feature = "burn")]
use crate::model::SentenceEncoder;
use crate::runtime::weights::Weights;
use crate::Result;

/// Memory allowed for the per-word input projections of [`HostEncoder::precompute_projections`]:
/// 8 MiB is the 4k most frequent words of a one-way LSTM with h = 128, or 1k of a bidirectional
/// one with h = 256 (ids are in frequency order, so those cover most tokens). Measured on the
/// Quora questions: 4, 8 and 16 MiB encode within noise of each other; 64 MiB was 8% slower
/// (the table falls out of cache) and holds 50 MiB more; without a table, 25% slower.
const PROJECTION_BUDGET_BYTES: usize = 8 << 20;

/// One LSTM direction's weights, on the host.
#[derive(Debug, Clone)]
struct Direction {
    w_input: Vec<f32>,
    w_hidden: Vec<f32>,
    bias: Vec<f32>,
    reverse: bool,
}

/// A [`SentenceEncoder`]'s weights on the host, for encoding without autodiff or tensors.
#[derive(Debug, Clone)]
pub struct HostEncoder {
    table: Vec<f32>,
    d: usize,
    h: usize,
    directions: Vec<Direction>,
    pooling: Pooling,
    normalize: bool,
    /// Per direction, `bias + embedding · W_input` of the first words of the vocabulary,
    /// `[words, 4h]`: a token whose id is there skips its share of the input projection.
    projected: OnceLock<Vec<Vec<f32>>>,
}

#[cfg(feature = "burn")]
fn host<const D: usize>(t: burn::prelude::Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
}

impl HostEncoder {
    /// Takes the encoder's tensors from a `model.bpk` (`embedding.weight`, then per direction
    /// `forward_lstm.` / `backward_lstm.` `w_input`, `w_hidden`, `bias`), each checked against
    /// the shape `config` implies.
    pub(crate) fn from_weights(config: &EncoderConfig, weights: &mut Weights) -> Result<Self> {
        let (d, h) = (config.d_embed, config.d_hidden);
        let table = weights.take("embedding.weight", &[config.vocab_size, d])?;
        let mut directions = Vec::new();
        for (name, reverse) in [("forward_lstm", false), ("backward_lstm", true)].into_iter().take(if config.bidirectional { 2 } else { 1 })
        {
            directions.push(Direction {
                w_input: weights.take(&format!("{name}.w_input"), &[d, 4 * h])?,
                w_hidden: weights.take(&format!("{name}.w_hidden"), &[h, 4 * h])?,
                bias: weights.take(&format!("{name}.bias"), &[4 * h])?,
                reverse,
            });
        }
        Ok(Self { table, d, h, directions, pooling: config.pooling, normalize: config.normalize, projected: OnceLock::new() })
    }

    /// Copies the weights of `encoder` (any backend) to the host.
    #[cfg(feature = "burn")]
    pub fn new(encoder: &SentenceEncoder) -> Self {
        let table = host(encoder.embedding.weight.val());
        let [_, d] = encoder.embedding.weight.val().dims();
        let h = encoder.forward_lstm.d_hidden();
        let directions = std::iter::once(&encoder.forward_lstm)
            .chain(encoder.backward_lstm.as_ref())
            .map(|l| Direction {
                w_input: host(l.w_input.val()),
                w_hidden: host(l.w_hidden.val()),
                bias: host(l.bias.val()),
                reverse: l.reverse,
            })
            .collect();
        Self { table, d, h, directions, pooling: encoder.pooling, normalize: encoder.normalize, projected: OnceLock::new() }
    }

    /// Size of the sentence vectors.
    pub fn d_output(&self) -> usize {
        self.h * self.directions.len()
    }

    fn vocab(&self) -> usize {
        self.table.len() / self.d.max(1)
    }

    /// Computes, once, every direction's input projection of the most frequent words (as many
    /// as fit in 8 MiB), so that encoding only gathers them: the input projection is
    /// `d / (d + h)` of an LSTM's multiply-adds (28% with d = 50, h = 128). It costs about as
    /// much as encoding a hundred sentences, so bulk encoding asks for it and a single
    /// query does not.
    pub fn precompute_projections(&self) {
        let per_word = 4 * 4 * self.h * self.directions.len();
        self.precompute_words(self.vocab().min(PROJECTION_BUDGET_BYTES / per_word.max(1)));
    }

    /// Precomputes the projections of ids `0..words` (no-op once done).
    fn precompute_words(&self, words: usize) {
        self.projected.get_or_init(|| {
            let (d, g4) = (self.d, 4 * self.h);
            let words = words.min(self.vocab());
            self.directions
                .iter()
                .map(|dir| {
                    let mut p = vec![0f32; words * g4];
                    for row in p.chunks_exact_mut(g4) {
                        row.copy_from_slice(&dir.bias);
                    }
                    let input = (&self.table[..words * d], d as isize, 1);
                    matmul(words, d, g4, input, (&dir.w_input, g4 as isize, 1), true, &mut p, g4 as isize, true);
                    p
                })
                .collect()
        });
    }

    /// Vectors of `rows` (token ids; ids beyond the vocabulary read as `[UNK]`), `[n, d_output]`
    /// row-major, as [`SentenceEncoder::forward`] computes them outside training. Each time step
    /// is spread over rayon's threads.
    pub fn encode(&self, rows: &[&[u32]]) -> Vec<f32> {
        self.encode_with(rows, true)
    }

    /// [`encode`](Self::encode) on the calling thread alone, for callers that run one batch per
    /// thread: whole batches in parallel need no join at every time step.
    pub fn encode_on_this_thread(&self, rows: &[&[u32]]) -> Vec<f32> {
        self.encode_with(rows, false)
    }

    fn encode_with(&self, rows: &[&[u32]], parallel: bool) -> Vec<f32> {
        let (n, d, h, g4) = (rows.len(), self.d, self.h, 4 * self.h);
        let vocab = self.vocab();
        let lengths: Vec<usize> = rows.iter().map(|r| r.len()).collect();
        let dim = self.d_output();
        let mut out = vec![0f32; n * dim];
        let projected = self.projected.get();
        for (k, dir) in self.directions.iter().enumerate() {
            let packing = Packing::new(&lengths, dir.reverse);
            // Every real token's gate pre-activations from the input, in packed order: gathered
            // from the precomputed words, one matmul for the others.
            let cache = projected.map_or(&[][..], |p| p[k].as_slice());
            let cached = cache.len() / g4;
            let mut gates = vec![0f32; packing.total * g4];
            let mut rest: Vec<(usize, usize)> = Vec::new();
            packing.for_each(|p, row, time| {
                let id = rows[row][time] as usize;
                let id = if id < vocab { id } else { tokenize::UNK_ID as usize };
                if id < cached {
                    gates[p * g4..(p + 1) * g4].copy_from_slice(&cache[id * g4..(id + 1) * g4]);
                } else {
                    rest.push((p, id));
                }
            });
            if !rest.is_empty() {
                let m = rest.len();
                let mut inputs = vec![0f32; m * d];
                let mut proj = vec![0f32; m * g4];
                for (j, &(_, id)) in rest.iter().enumerate() {
                    inputs[j * d..(j + 1) * d].copy_from_slice(&self.table[id * d..(id + 1) * d]);
                    proj[j * g4..(j + 1) * g4].copy_from_slice(&dir.bias);
                }
                matmul(m, d, g4, (&inputs, d as isize, 1), (&dir.w_input, g4 as isize, 1), true, &mut proj, g4 as isize, parallel);
                for (j, &(p, _)) in rest.iter().enumerate() {
                    gates[p * g4..(p + 1) * g4].copy_from_slice(&proj[j * g4..(j + 1) * g4]);
                }
            }
            // Pooled as the steps go, per sorted row.
            let start = if self.pooling == Pooling::Max { f32::NEG_INFINITY } else { 0.0 };
            let mut pooled = vec![start; n * h];
            let pooling = self.pooling;
            recurrence::infer(&packing, &mut gates, &dir.w_hidden, h, parallel, |s, live, hidden| {
                for (acc, x) in pooled[..live * h].chunks_exact_mut(h).zip(hidden.chunks_exact(h)) {
                    match pooling {
                        Pooling::Last => {}
                        Pooling::Mean => acc.iter_mut().zip(x).for_each(|(a, x)| *a += x),
                        Pooling::Max => acc.iter_mut().zip(x).for_each(|(a, &x)| *a = a.max(x)),
                    }
                }
                if pooling == Pooling::Last {
                    // The state after the last real token (position 0 when reading backwards).
                    for r in packing.lens.partition_point(|&l| l > s + 1)..live {
                        pooled[r * h..(r + 1) * h].copy_from_slice(&hidden[r * h..(r + 1) * h]);
                    }
                }
            });
            for (r, (&row, &len)) in packing.order.iter().zip(&packing.lens).enumerate() {
                let (src, dst) = (&pooled[r * h..(r + 1) * h], &mut out[row * dim + k * h..row * dim + (k + 1) * h]);
                match self.pooling {
                    Pooling::Last => dst.copy_from_slice(src),
                    Pooling::Mean => dst.iter_mut().zip(src).for_each(|(o, x)| *o = x / len.max(1) as f32),
                    // As the tensor path: padding counts as -1e4, so an empty row gives -1e4.
                    Pooling::Max => dst.iter_mut().zip(src).for_each(|(o, &x)| *o = if len == 0 { -1e4 } else { x }),
                }
            }
        }
        if self.normalize {
            for v in out.chunks_exact_mut(dim.max(1)) {
                let norm = (v.iter().map(|x| x * x).sum::<f32>() + 1e-12).sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
            }
        }
        out
    }
}

#[cfg(all(test, feature = "burn"))]
mod tests {
    use super::*;
    use crate::model::BatchTensors;
    use burn::prelude::*;
    use tokenize::Batch;

    /// Every pooling, one or two directions, raw or unit vectors: the host path gives the tensor
    /// path's numbers, on rows of different lengths (one of a single token).
    #[test]
    #[allow(deprecated)] // ndarray is deprecated upstream; the product keeps it on purpose
    fn host_encoding_equals_the_tensor_path() {
        let rows: Vec<Vec<u32>> = vec![vec![5, 3, 8, 2, 9, 4], vec![7], vec![11, 2, 6], vec![3, 3, 3, 3, 10]];
        let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        for device in [Device::flex(), Device::ndarray()] {
            for pooling in [Pooling::Last, Pooling::Mean, Pooling::Max] {
                for bidirectional in [false, true] {
                    for normalize in [true, false] {
                        let enc = EncoderConfig::new(12)
                            .with_d_embed(6)
                            .with_d_hidden(9)
                            .with_pooling(pooling)
                            .with_bidirectional(bidirectional)
                            .with_normalize(normalize)
                            .init(&device);
                        let want = enc.forward(BatchTensors::new(&Batch::from_rows(&refs), &device));
                        let want = want.into_data().try_into_vec::<f32>().unwrap();
                        // Per step split over threads, on one thread, and with the input
                        // projections of none, some (ids 0..7) or all words precomputed.
                        let host = HostEncoder::new(&enc);
                        let mut runs = vec![("parallel", host.encode(&refs)), ("one thread", host.encode_on_this_thread(&refs))];
                        host.precompute_words(7);
                        assert_eq!(host.projected.get().unwrap()[0].len(), 7 * 4 * 9);
                        runs.push(("ids 0..7 precomputed", host.encode(&refs)));
                        let all = HostEncoder::new(&enc);
                        all.precompute_projections();
                        runs.push(("all precomputed", all.encode_on_this_thread(&refs)));
                        for (how, got) in runs {
                            assert_eq!(got.len(), want.len());
                            for (g, w) in got.iter().zip(&want) {
                                assert!((g - w).abs() < 1e-5, "{how}, {pooling:?} bi={bidirectional} norm={normalize}: {g} vs {w}");
                            }
                        }
                    }
                }
            }
        }
    }
}
