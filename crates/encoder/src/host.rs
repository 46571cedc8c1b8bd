//! Inference on the host for the CPU backends: token ids in, sentence vectors out, with no
//! tensor in between.
//!
//! On ndarray and flex the LSTM already runs as host code ([`crate::fused`]); around it, the
//! tensor version of [`SentenceEncoder::forward`] gathers word vectors, builds masks, copies every
//! step's state back into a tensor, pools and normalises with a dozen allocating tensor
//! operations. That was about half of encoding time. [`HostEncoder`] copies the weights out once
//! and does the same arithmetic on plain buffers; tests hold it to the tensor path to 1e-5.

use crate::fused::{self, Weights};
use crate::model::{Pooling, SentenceEncoder};

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
}

fn host<const D: usize>(t: burn::prelude::Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
}

impl HostEncoder {
    /// Copies the weights of `encoder` (any backend) to the host.
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
        Self { table, d, h, directions, pooling: encoder.pooling, normalize: encoder.normalize }
    }

    /// Size of the sentence vectors.
    pub fn d_output(&self) -> usize {
        self.h * self.directions.len()
    }

    /// Vectors of `rows` (token ids; ids beyond the vocabulary read as `[UNK]`), `[n, d_output]`
    /// row-major, as [`SentenceEncoder::forward`] computes them outside training.
    pub fn encode(&self, rows: &[&[u32]]) -> Vec<f32> {
        let (n, d, h) = (rows.len(), self.d, self.h);
        let t = rows.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
        let vocab = self.table.len() / d.max(1);
        let mut input = vec![0f32; n * t * d];
        for (r, ids) in rows.iter().enumerate() {
            for (s, &id) in ids.iter().enumerate() {
                let id = if (id as usize) < vocab { id as usize } else { tokenize::UNK_ID as usize };
                input[(r * t + s) * d..(r * t + s + 1) * d].copy_from_slice(&self.table[id * d..(id + 1) * d]);
            }
        }
        let lengths: Vec<usize> = rows.iter().map(|r| r.len()).collect();
        let dim = self.d_output();
        let mut out = vec![0f32; n * dim];
        for (k, dir) in self.directions.iter().enumerate() {
            let w = Weights { w_input: &dir.w_input, w_hidden: &dir.w_hidden, bias: &dir.bias, d, h };
            let (states, _) = fused::forward(&input, &lengths, t, w, dir.reverse, false);
            for (r, &len) in lengths.iter().enumerate() {
                let dst = &mut out[r * dim + k * h..r * dim + (k + 1) * h];
                let at = |s: usize| &states[(r * t + s) * h..(r * t + s + 1) * h];
                match self.pooling {
                    // The state after the last real token: position 0 when reading backwards.
                    Pooling::Last => dst.copy_from_slice(at(if dir.reverse { 0 } else { len.saturating_sub(1) })),
                    Pooling::Mean => {
                        for s in 0..len {
                            dst.iter_mut().zip(at(s)).for_each(|(o, x)| *o += x);
                        }
                        dst.iter_mut().for_each(|o| *o /= len as f32);
                    }
                    Pooling::Max => {
                        // As the tensor path: padding counts as -1e4, so an empty row gives -1e4.
                        dst.fill(if len == 0 { -1e4 } else { f32::NEG_INFINITY });
                        for s in 0..len {
                            dst.iter_mut().zip(at(s)).for_each(|(o, &x)| *o = o.max(x));
                        }
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BatchTensors, EncoderConfig};
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
                        let got = HostEncoder::new(&enc).encode(&refs);
                        assert_eq!(got.len(), want.len());
                        for (g, w) in got.iter().zip(&want) {
                            assert!((g - w).abs() < 1e-5, "{pooling:?} bi={bidirectional} norm={normalize}: {g} vs {w}");
                        }
                    }
                }
            }
        }
    }
}
