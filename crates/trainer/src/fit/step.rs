//! One training step — forward, objective, backward, optimiser update — and what it reads: the
//! training pairs as token ids and the length-bucketed batches of an epoch. `bench` times this
//! very step.

use burn::module::Module;
use burn::nn::Linear;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use data::Pair;
use encoder::{BatchTensors, TwinEncoder, VerdictHead};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use tokenize::{Batch, WordTokenizer};

use crate::distill::{DistillObjective, TransferBatch};
use crate::fit::graded::GradedStream;
use crate::fit::objective::Objective;

/// What the optimiser updates: the twin encoder and, when a verdict loss is configured, its head;
/// with distillation through a projection, that projection (trained, then dropped).
#[derive(Module, Debug)]
pub struct Trainable {
    /// The twin encoder.
    pub twin: TwinEncoder,
    /// The verdict head, trained with the encoder.
    pub head: Option<VerdictHead>,
    /// Student size → teacher size, for the distillation term (not part of the package).
    pub projection: Option<Linear>,
}

/// The training pairs as a step reads them: token ids of both sides, encoded once up front, the
/// labels, and one hash per sentence so that in-batch negatives can leave out candidates with the
/// same text.
#[derive(Debug, Clone)]
pub struct EncodedPairs {
    a: Vec<Vec<u32>>,
    b: Vec<Vec<u32>>,
    labels: Vec<f32>,
    keys: Vec<(u64, u64)>,
}

impl EncodedPairs {
    /// Encodes both sides of every pair with `tokenizer`.
    pub fn new(tokenizer: &WordTokenizer, pairs: &[Pair]) -> tokenize::Result<Self> {
        let a = tokenizer.encode_batch_rows(&pairs.iter().map(|p| p.a.as_str()).collect::<Vec<_>>())?;
        let b = tokenizer.encode_batch_rows(&pairs.iter().map(|p| p.b.as_str()).collect::<Vec<_>>())?;
        let hash = |ids: &[u32]| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            ids.hash(&mut h);
            h.finish()
        };
        let keys = a.iter().zip(&b).map(|(a, b)| (hash(a), hash(b))).collect();
        Ok(Self { a, b, labels: pairs.iter().map(|p| p.label).collect(), keys })
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no pair.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The token rows of the pairs `idx` (first sides, then second sides, as
    /// [`TwinEncoder::forward`] reads them) and their labels.
    pub fn rows(&self, idx: &[usize]) -> (Vec<&[u32]>, Vec<f32>) {
        let rows: Vec<&[u32]> = idx.iter().map(|&i| self.a[i].as_slice()).chain(idx.iter().map(|&i| self.b[i].as_slice())).collect();
        (rows, idx.iter().map(|&i| self.labels[i]).collect())
    }

    /// Both sides of the pairs `idx` through `twin` in one padded batch.
    pub(crate) fn forward(&self, twin: &TwinEncoder, idx: &[usize], device: &Device) -> PairVectors {
        let (rows, labels) = self.rows(idx);
        let batch = Batch::from_rows(&rows);
        let (a, b) = twin.forward(BatchTensors::new(&batch, device));
        PairVectors { a, b, labels, real_tokens: batch.lengths.iter().sum(), cells: batch.batch_size * batch.seq_len }
    }

    /// The token count of each pair's longer side: what [`bucketed_batches`] sorts by.
    pub fn lengths(&self) -> Vec<usize> {
        self.a.iter().zip(&self.b).map(|(a, b)| a.len().max(b.len())).collect()
    }
}

/// A batch of pairs after the twin: both sides' vectors, the labels, and what the batch's id
/// matrix held (real tokens, and cells with padding).
pub(crate) struct PairVectors {
    pub a: Tensor<2>,
    pub b: Tensor<2>,
    pub labels: Vec<f32>,
    pub real_tokens: usize,
    pub cells: usize,
}

/// Length-bucketed batches: shuffle, then sort by length within windows of `window` batches,
/// then shuffle the batches, so each batch holds sentences of similar length.
pub fn bucketed_batches(lengths: &[usize], batch_size: usize, window: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(rng);
    let mut out: Vec<Vec<usize>> = Vec::new();
    for w in order.chunks(batch_size * window.max(1)) {
        let mut w = w.to_vec();
        if window > 1 {
            w.sort_by_key(|&i| lengths[i]);
        }
        out.extend(w.chunks(batch_size).map(|c| c.to_vec()));
    }
    out.shuffle(rng);
    out
}

/// What one step did.
#[derive(Debug)]
pub struct StepOutcome {
    /// The batch's loss (as computed before the update), or `None` when no loss term applied and
    /// the model was left as it was.
    pub loss: Option<Tensor<1>>,
    /// Real tokens in the batch's id matrix.
    pub real_tokens: usize,
    /// Cells of the batch's id matrix, padding included.
    pub cells: usize,
}

/// One training step on the pairs `idx` of `pairs` (possibly none), with distillation one batch
/// of transfer sentences, and with graded pairs one batch of them: both sides of the pairs
/// through the twin in one padded batch, `objective`'s loss plus the distillation and graded
/// terms, backward, and an optimiser update at learning rate `lr`. Returns the updated model.
/// Reading the loss (a device sync) is left to the caller.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    model: Trainable,
    optim: &mut ModuleOptimizer,
    lr: f64,
    objective: &Objective,
    pairs: &EncodedPairs,
    idx: &[usize],
    distill: Option<(&DistillObjective, TransferBatch)>,
    graded: Option<(&GradedStream, &[usize])>,
    device: &Device,
) -> (Trainable, StepOutcome) {
    let (mut real_tokens, mut cells) = (0, 0);
    let mut loss: Option<Tensor<1>> = None;
    let add = |loss: Option<Tensor<1>>, term: Tensor<1>| {
        Some(match loss {
            Some(l) => l + term,
            None => term,
        })
    };
    if !idx.is_empty() {
        let out = pairs.forward(&model.twin, idx, device);
        real_tokens += out.real_tokens;
        cells += out.cells;
        let keys_a: Vec<u64> = idx.iter().map(|&i| pairs.keys[i].0).collect();
        let keys_b: Vec<u64> = idx.iter().map(|&i| pairs.keys[i].1).collect();
        loss = objective.loss(out.a, out.b, &out.labels, (&keys_a, &keys_b), model.head.as_ref(), device);
    }
    if let Some((d, batch)) = distill {
        real_tokens += batch.tokens.lengths.iter().sum::<usize>();
        cells += batch.tokens.batch_size * batch.tokens.seq_len;
        let term = d.loss(&model.twin.encoder, model.projection.as_ref(), batch, device);
        loss = add(loss, term);
    }
    if let Some((stream, graded_idx)) = graded.filter(|(_, i)| !i.is_empty()) {
        let (term, real, all) = stream.loss(&model.twin, objective.energy, graded_idx, device);
        real_tokens += real;
        cells += all;
        loss = add(loss, term);
    }
    let model = match &loss {
        Some(loss) => {
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            optim.step(lr, model, grads)
        }
        None => model,
    };
    (model, StepOutcome { loss, real_tokens, cells })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LossKind, LossSpec};
    use encoder::{Backend, EncoderConfig, Energy};
    use rand::SeedableRng;

    #[test]
    fn a_step_updates_the_model_only_when_a_loss_applies() {
        let device = Backend::Flex.device().autodiff();
        let pair = |a: &str, b: &str, label: f32| Pair { a: a.into(), b: b.into(), label, line: 1 };
        let pairs = [pair("the cat sat", "a cat sat", 1.0), pair("dogs bark", "the sun", 0.0)];
        let tok = WordTokenizer::build(pairs.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()]), &Default::default(), &[]).unwrap();
        let encoded = EncodedPairs::new(&tok, &pairs).unwrap();
        assert_eq!((encoded.len(), encoded.lengths()), (2, vec![3, 2]));
        let encoder = EncoderConfig::new(tok.vocab_size()).with_d_embed(8).with_d_hidden(8).init(&device);
        let mut model = Trainable { twin: TwinEncoder { encoder }, head: None, projection: None };
        let mut optim = crate::fit::adam(Backend::Flex, 0.0);
        let bias = |m: &Trainable| m.twin.encoder.forward_lstm.bias.val().into_data().try_into_vec::<f32>().unwrap();
        let before = bias(&model);
        // In-batch negatives need a genuine pair: on the impostor alone no term applies, and
        // the model is left as it was.
        let negatives = Objective { losses: vec![LossSpec::new(LossKind::InBatchNegatives)], energy: Energy::Euclidean, margin: 1.0 };
        let out;
        (model, out) = train_step(model, &mut optim, 0.1, &negatives, &encoded, &[1], None, None, &device);
        assert!(out.loss.is_none());
        assert_eq!((out.real_tokens, out.cells), (4, 4));
        assert_eq!(bias(&model), before);
        // Both pairs, both sides in one batch padded to 3 tokens; the contrastive loss moves it.
        let contrastive = Objective { losses: vec![LossSpec::new(LossKind::Contrastive)], ..negatives };
        let (model, out) = train_step(model, &mut optim, 0.1, &contrastive, &encoded, &[0, 1], None, None, &device);
        let loss = out.loss.unwrap().into_scalar::<f32>();
        assert!(loss.is_finite() && loss > 0.0, "{loss}");
        assert_eq!((out.real_tokens, out.cells), (3 + 2 + 3 + 2, 4 * 3));
        assert_ne!(bias(&model), before);
    }

    #[test]
    fn bucketed_batches_cover_every_pair_once_and_group_lengths() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 37) % 50 + 1).collect();
        let mut rng = StdRng::seed_from_u64(1);
        let plan = bucketed_batches(&lengths, 64, 8, &mut rng);
        let mut all: Vec<usize> = plan.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        let waste = |plan: &[Vec<usize>]| -> f64 {
            let (mut real, mut cells) = (0, 0);
            for b in plan {
                let max = b.iter().map(|&i| lengths[i]).max().unwrap();
                real += b.iter().map(|&i| lengths[i]).sum::<usize>();
                cells += max * b.len();
            }
            1.0 - real as f64 / cells as f64
        };
        let plain = bucketed_batches(&lengths, 64, 1, &mut StdRng::seed_from_u64(1));
        assert!(waste(&plan) < waste(&plain) / 3.0, "{} vs {}", waste(&plan), waste(&plain));
    }
}
