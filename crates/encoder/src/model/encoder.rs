//! The sentence encoder and the twin built from it.

use super::config::{EncoderConfig, Pooling};
use super::lstm::{uniform, MaskedLstm, MaskedLstmConfig};
use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, Embedding};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

impl EncoderConfig {
    /// A freshly initialised encoder: embeddings `N(0, 0.1²)`-like uniform, `[PAD]` row zero.
    pub fn init(&self, device: &Device) -> SentenceEncoder {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut table = uniform(&mut rng, self.vocab_size * self.d_embed, 0.1);
        table[..self.d_embed].fill(0.0);
        self.init_with_embeddings(table, device)
    }

    /// An encoder whose embedding table is `table` (`vocab_size × d_embed`, row-major), e.g.
    /// built from GloVe vectors.
    pub fn init_with_embeddings(&self, table: Vec<f32>, device: &Device) -> SentenceEncoder {
        assert_eq!(table.len(), self.vocab_size * self.d_embed, "embedding table size");
        let weight = Tensor::<2>::from_data(TensorData::new(table, [self.vocab_size, self.d_embed]), device);
        let lstm = |reverse: bool, seed: u64| {
            MaskedLstmConfig::new(self.d_embed, self.d_hidden).with_reverse(reverse).with_seed(seed).init(device)
        };
        SentenceEncoder {
            embedding: Embedding { weight: Param::from_tensor(weight) },
            forward_lstm: lstm(false, self.seed.wrapping_add(1)),
            backward_lstm: self.bidirectional.then(|| lstm(true, self.seed.wrapping_add(2))),
            dropout: DropoutConfig::new(self.dropout).init(),
            pooling: self.pooling,
            normalize: self.normalize,
        }
    }
}

/// Embedding + (Bi)LSTM + pooling: maps a padded batch of token ids to one vector per sentence.
#[derive(Module, Debug)]
pub struct SentenceEncoder {
    /// Word vectors; row 0 is `[PAD]`.
    pub embedding: Embedding,
    /// Left-to-right LSTM.
    pub forward_lstm: MaskedLstm,
    /// Right-to-left LSTM of a BiLSTM.
    pub backward_lstm: Option<MaskedLstm>,
    /// Dropout on word vectors (inactive outside training).
    pub dropout: Dropout,
    /// How states become a sentence vector.
    #[module(skip)]
    pub pooling: Pooling,
    /// Whether output vectors are unit length.
    pub normalize: bool,
}

/// Token ids and mask of a batch, as tensors.
#[derive(Debug, Clone)]
pub struct BatchTensors {
    /// `[B, T]` ids.
    pub ids: Tensor<2, Int>,
    /// `[B, T]`, 1.0 on real tokens and 0.0 on padding.
    pub mask: Tensor<2>,
}

impl BatchTensors {
    /// Moves a tokenized batch to `device`.
    pub fn new(batch: &tokenize::Batch, device: &Device) -> Self {
        let (b, t) = (batch.batch_size, batch.seq_len);
        let ids: Vec<i64> = batch.ids.iter().map(|&i| i64::from(i)).collect();
        let mut mask = vec![0f32; b * t];
        for (r, &len) in batch.lengths.iter().enumerate() {
            mask[r * t..r * t + len.min(t)].fill(1.0);
        }
        Self {
            ids: Tensor::from_data(TensorData::new(ids, [b, t]), device),
            mask: Tensor::from_data(TensorData::new(mask, [b, t]), device),
        }
    }
}

/// Unit-length rows (a tiny epsilon keeps the gradient finite at zero).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).add_scalar(1e-12).sqrt();
    x / norm
}

impl SentenceEncoder {
    /// Size of the sentence vectors.
    pub fn d_output(&self) -> usize {
        self.forward_lstm.d_hidden() * if self.backward_lstm.is_some() { 2 } else { 1 }
    }

    /// One vector per row of the batch, `[B, d_output]`. Padding never changes a row's vector.
    pub fn forward(&self, batch: BatchTensors) -> Tensor<2> {
        let mask = batch.mask;
        let words = self.dropout.forward(self.embedding.forward(batch.ids));
        let keep_all = self.pooling != Pooling::Last;
        let mut parts = vec![self.pool(self.forward_lstm.forward(words.clone(), mask.clone(), keep_all), &mask)];
        if let Some(bwd) = &self.backward_lstm {
            parts.push(self.pool(bwd.forward(words, mask.clone(), keep_all), &mask));
        }
        let out = if parts.len() == 1 { parts.remove(0) } else { Tensor::cat(parts, 1) };
        if self.normalize {
            l2_normalize(out)
        } else {
            out
        }
    }

    fn pool(&self, out: super::lstm::LstmOutput, mask: &Tensor<2>) -> Tensor<2> {
        let Some(all) = out.all else { return out.last };
        let m: Tensor<3> = mask.clone().unsqueeze_dim(2); // [B, T, 1]
        match self.pooling {
            Pooling::Last => out.last,
            Pooling::Mean => {
                let len = mask.clone().sum_dim(1); // [B, 1]
                let summed: Tensor<2> = all.sum_dim(1).squeeze_dim(1);
                summed / len
            }
            Pooling::Max => {
                // Padded steps get a large negative value so they never win the maximum.
                let shifted = all + m.sub_scalar(1.0).mul_scalar(1e4);
                shifted.max_dim(1).squeeze_dim(1)
            }
        }
    }
}

/// The Siamese ("twin") network: ONE encoder, applied to both sentences of every pair. Both
/// sides go through the very same module in one stacked batch, so they cannot drift apart.
#[derive(Module, Debug)]
pub struct TwinEncoder {
    /// The single, shared encoder.
    pub encoder: SentenceEncoder,
}

impl TwinEncoder {
    /// Vectors of both sides. `batch` holds the first sentences in rows `0..n` and the second
    /// sentences in rows `n..2n`.
    pub fn forward(&self, batch: BatchTensors) -> (Tensor<2>, Tensor<2>) {
        let [rows, _] = batch.mask.dims();
        let n = rows / 2;
        let all = self.encoder.forward(batch);
        let d = all.dims()[1];
        (all.clone().slice([0..n, 0..d]), all.slice([n..2 * n, 0..d]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::GradientsParams;
    use tokenize::Batch;

    fn dev() -> Device {
        Device::flex()
    }

    fn vecs(enc: &SentenceEncoder, batch: &Batch, device: &Device) -> Vec<f32> {
        enc.forward(BatchTensors::new(batch, device)).into_data().try_into_vec::<f32>().unwrap()
    }

    /// `ids` padded with `pad` extra [PAD] tokens.
    fn padded(ids: &[u32], pad: usize) -> Batch {
        let mut row = ids.to_vec();
        row.extend(std::iter::repeat_n(tokenize::PAD_ID, pad));
        Batch { seq_len: row.len(), ids: row, lengths: vec![ids.len()], batch_size: 1 }
    }

    #[test]
    fn padding_does_not_change_an_embedding() {
        let ids = [5u32, 3, 8, 2];
        for pooling in [Pooling::Last, Pooling::Mean, Pooling::Max] {
            for bidirectional in [false, true] {
                let cfg = EncoderConfig::new(10).with_d_embed(6).with_d_hidden(8).with_pooling(pooling).with_bidirectional(bidirectional);
                let enc = cfg.init(&dev());
                let base = vecs(&enc, &padded(&ids, 0), &dev());
                assert_eq!(base.len(), cfg.d_output());
                for pad in [20] {
                    let got = vecs(&enc, &padded(&ids, pad), &dev());
                    for (a, b) in base.iter().zip(&got) {
                        assert!((a - b).abs() < 1e-5, "{pooling:?} bi={bidirectional} pad={pad}: {a} vs {b}");
                    }
                }
                // ...and inside a batch whose other row is longer.
                let batch = Batch::from_rows(&[ids.to_vec(), vec![1; 17]]);
                let got = vecs(&enc, &batch, &dev());
                for (a, b) in base.iter().zip(&got[..base.len()]) {
                    assert!((a - b).abs() < 1e-5, "{pooling:?} bi={bidirectional} in batch: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn outputs_are_unit_vectors_when_normalized() {
        let enc = EncoderConfig::new(10).with_d_hidden(8).init(&dev());
        let v = vecs(&enc, &Batch::from_rows(&[vec![2u32, 3], vec![4]]), &dev());
        for row in v.chunks(8) {
            let n: f32 = row.iter().map(|x| x * x).sum();
            assert!((n - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn twin_branches_share_one_set_of_parameters() {
        let device = dev().autodiff();
        let cfg = EncoderConfig::new(12).with_d_embed(4).with_d_hidden(5);
        let twin = TwinEncoder { encoder: cfg.init(&device) };
        // Exactly one encoder's worth of parameters: nothing was copied.
        assert_eq!(twin.num_params(), cfg.init(&device).num_params());

        // Side A uses words 2..=4, side B words 7..=9 only. One backward pass through the
        // distance must put gradient on the rows of BOTH sides in the one embedding tensor.
        let batch = Batch::from_rows(&[vec![2u32, 3, 4], vec![7u32, 8, 9]]);
        let (a, b) = twin.forward(BatchTensors::new(&batch, &device));
        let loss = crate::model::energy::Energy::Euclidean.distance(a, b).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &twin);
        let g = grads.get::<2>(twin.encoder.embedding.weight.id).expect("embedding has a gradient");
        let g = g.into_data().try_into_vec::<f32>().unwrap();
        let row_norm = |r: usize| g[r * 4..(r + 1) * 4].iter().map(|x| x.abs()).sum::<f32>();
        for r in [2, 3, 4, 7, 8, 9] {
            assert!(row_norm(r) > 0.0, "word {r} got no gradient");
        }
        for r in [0, 1, 5, 6, 10, 11] {
            assert_eq!(row_norm(r), 0.0, "unused word {r} got gradient");
        }
        // Both sides also read the same LSTM weights.
        assert!(grads.get::<2>(twin.encoder.forward_lstm.w_hidden.id).is_some());
    }

    /// The whole encoder on wgpu (the LSTM as CubeCL kernels) against flex, for every pooling
    /// and both directions: the vectors and the gradients of every parameter agree to 1e-4.
    /// Runs where wgpu must be tested (CI installs lavapipe).
    #[cfg(feature = "wgpu")]
    #[test]
    fn wgpu_encoder_matches_flex_for_every_pooling() {
        use crate::Backend as Choice;
        if !Choice::Wgpu.required_in_tests() {
            eprintln!("no wgpu adapter on this machine (and not under CI): wgpu left out");
            return;
        }
        let gpu = Choice::Wgpu.try_device().expect("wgpu is required here").autodiff();
        let cpu = dev().autodiff();
        let batch = Batch::from_rows(&[vec![2u32, 3, 4, 5, 6, 7], vec![8u32], vec![9u32, 2, 3], vec![4u32, 4, 4, 4, 4, 4, 4, 4]]);
        for pooling in [Pooling::Last, Pooling::Mean, Pooling::Max] {
            for bidirectional in [false, true] {
                let cfg = EncoderConfig::new(10)
                    .with_d_embed(6)
                    .with_d_hidden(8)
                    .with_pooling(pooling)
                    .with_bidirectional(bidirectional)
                    .with_dropout(0.0);
                let run = |device: &Device| {
                    let enc = cfg.init(device);
                    let vectors = enc.forward(BatchTensors::new(&batch, device));
                    let [b, d] = vectors.dims();
                    let probe = Tensor::<1, Int>::arange(0..(b * d) as i64, device).float().reshape([b, d]).sin();
                    let grads = GradientsParams::from_grads((vectors.clone() * probe).sum().backward(), &enc);
                    let grad = |id| grads.get::<2>(id).map(|g| g.into_data().try_into_vec::<f32>().unwrap()).unwrap_or_default();
                    let mut lstms = vec![&enc.forward_lstm];
                    lstms.extend(&enc.backward_lstm);
                    let mut all = vec![vectors.into_data().try_into_vec::<f32>().unwrap(), grad(enc.embedding.weight.id)];
                    for lstm in lstms {
                        all.push(grad(lstm.w_input.id));
                        all.push(grad(lstm.w_hidden.id));
                        all.push(grads.get::<1>(lstm.bias.id).unwrap().into_data().try_into_vec::<f32>().unwrap());
                    }
                    all
                };
                let (g, c) = (run(&gpu), run(&cpu));
                assert_eq!(g.len(), c.len());
                for (k, (g, c)) in g.iter().zip(&c).enumerate() {
                    assert!(!c.is_empty(), "{pooling:?} bi={bidirectional}: part {k} has no gradient");
                    assert_eq!(g.len(), c.len());
                    for (x, y) in g.iter().zip(c) {
                        assert!((x - y).abs() <= 1e-4, "{pooling:?} bi={bidirectional} part {k}: {x} (wgpu) vs {y} (flex)");
                    }
                }
            }
        }
    }
}
