//! The benchmark harness behind `scripts/bench.sh`: the workloads users care about, measured the
//! same way every time so that runs (and the PyTorch reference) can be compared.
//!
//! - training pairs/s: the twin LSTM (GloVe-50, h = 128), batches of 64 Quora dev pairs,
//!   contrastive loss, Adam, forward + backward + update;
//! - the LSTM's share of that step: the recurrence alone, forward + backward, on the same
//!   batches;
//! - encoding sentences/s: distinct Quora dev questions, batches of 256, no autodiff,
//!   tokenization included;
//! - exact search queries/s: top-10 over N random unit vectors of dimension 128;
//! - the peak resident memory of each workload (each one runs in its own process).
//!
//! ```no_run
//! use bench::{search_qps, Measurement};
//!
//! let m: Measurement = search_qps(100_000, 128, 1_000, 10, 7);
//! println!("{} {:.0} {}", m.name, m.value, m.unit);
//! ```

pub mod synthetic;

use std::path::Path;
use std::time::Instant;

use burn::prelude::*;
use data::{load_pairs, LoadOptions, Pair, PairFormat};
use encoder::embed::embed_texts;
use encoder::{Backend, EncoderConfig, Energy, Glove, SentenceEncoder, TwinEncoder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokenize::{VocabOptions, WordTokenizer};
use trainer::config::{LossKind, LossSpec};
use trainer::{EncodedPairs, Objective, Trainable};

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Loading the benchmark data failed.
    #[error(transparent)]
    Data(#[from] data::DataError),
    /// The encoder failed.
    #[error(transparent)]
    Encoder(#[from] encoder::EncoderError),
    /// Tokenization failed.
    #[error(transparent)]
    Tokenize(#[from] tokenize::TokenizeError),
    /// The backend cannot run here.
    #[error("{0}")]
    Backend(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, BenchError>;

/// One number from one workload, in the shape `scripts/bench_torch.py` writes too, so the two
/// can be matched by `name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Workload: `train`, `encode`, `search-100000`, ...
    pub name: String,
    /// What ran it: `ndarray`, `flex`, `wgpu`, `rust` (search), `pytorch`, `faiss`.
    pub backend: String,
    /// The throughput.
    pub value: f64,
    /// Its unit: `pairs/s`, `sentences/s`, `queries/s`.
    pub unit: String,
    /// Peak resident set size of the process that ran it, in MiB (when the OS tells).
    pub peak_rss_mib: Option<f64>,
    /// How it was measured (sizes, counts).
    pub detail: String,
}

/// Peak resident set size of this process so far, in MiB (Linux `VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    status_mib("VmHWM:")
}

/// Resident set size of this process now, in MiB (Linux `VmRSS`).
pub fn rss_mib() -> Option<f64> {
    status_mib("VmRSS:")
}

/// A size field of `/proc/self/status` (given in KiB), in MiB.
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Nearest-rank percentile of an ascending slice: the smallest value with at least `p`% of the
/// values at or below it; `None` when there are no values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let rank = (p * sorted.len() as f64 / 100.0).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// The benchmark corpus: the Quora dev pairs and GloVe vectors.
pub struct QuoraData {
    /// Labelled pairs of `dev.tsv`.
    pub pairs: Vec<Pair>,
    /// The GloVe vectors (first 100k words).
    pub glove: Glove,
    /// A vocabulary built as `configs/quora.toml` builds it.
    pub tokenizer: WordTokenizer,
}

impl QuoraData {
    /// Loads `qqp/bimpm_partition/dev.tsv` under `data_dir` and `glove.6B.50d.100k.txt` under
    /// `embeddings_dir`.
    pub fn load(data_dir: &Path, embeddings_dir: &Path) -> Result<Self> {
        let pairs = load_pairs(&data_dir.join("qqp/bimpm_partition/dev.tsv"), PairFormat::Qqp, LoadOptions::default())?.pairs;
        let glove = Glove::load(&embeddings_dir.join("glove.6B.50d.100k.txt"), None)?;
        let opts = VocabOptions { max_vocab: 40_000, seed_top: 20_000, ..Default::default() };
        let tokenizer = WordTokenizer::build(pairs.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()]), &opts, &glove.words)?;
        Ok(Self { pairs, glove, tokenizer })
    }

    /// Distinct questions, in file order.
    pub fn questions(&self) -> Vec<&str> {
        let mut seen = std::collections::HashSet::new();
        self.pairs.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()]).filter(|q| seen.insert(*q)).collect()
    }

    /// The pairs as training reads them and an epoch's length-bucketed batches of `batch` pairs,
    /// made exactly as the trainer makes them (windows of 50 batches), so a batch carries little
    /// padding (PyTorch's packed sequences skip padding altogether).
    fn training_batches(&self, batch: usize) -> Result<(EncodedPairs, Vec<Vec<usize>>)> {
        let encoded = EncodedPairs::new(&self.tokenizer, &self.pairs)?;
        let plan = trainer::bucketed_batches(&encoded.lengths(), batch, 50, &mut StdRng::seed_from_u64(42));
        Ok((encoded, plan))
    }

    fn encoder(&self, d_hidden: usize, device: &Device) -> SentenceEncoder {
        let cfg = EncoderConfig::new(self.tokenizer.vocab_size()).with_d_embed(self.glove.dim).with_d_hidden(d_hidden);
        let (table, _) = self.glove.embedding_table(&self.tokenizer, 42);
        cfg.init_with_embeddings(table, device)
    }
}

fn device_of(backend: Backend) -> Result<Device> {
    backend.try_device().map_err(BenchError::Backend)
}

/// A timed run of steps, before the caller waits for queued work: see [`time_steps`].
struct Timed {
    started: Instant,
    pairs: usize,
    steps: usize,
}

impl Timed {
    /// The run as pairs/s, the clock read now (after the caller's sync); `detail` is told the
    /// steps and seconds.
    fn pairs_per_sec(self, name: &str, backend: Backend, detail: impl FnOnce(usize, f64) -> String) -> Measurement {
        let secs = self.started.elapsed().as_secs_f64();
        Measurement {
            name: name.into(),
            backend: backend.to_string(),
            value: self.pairs as f64 / secs,
            unit: "pairs/s".into(),
            peak_rss_mib: peak_rss_mib(),
            detail: detail(self.steps, secs),
        }
    }
}

/// Runs `step` (which returns the pairs it did) three times as a warm-up, then at least five
/// times and until `seconds` have passed, counting pairs and steps from the first timed one.
fn time_steps(seconds: f64, mut step: impl FnMut() -> usize) -> Timed {
    for _ in 0..3 {
        step();
    }
    let started = Instant::now();
    let (mut pairs, mut steps) = (0usize, 0usize);
    while steps < 5 || started.elapsed().as_secs_f64() < seconds {
        pairs += step();
        steps += 1;
    }
    Timed { started, pairs, steps }
}

/// Training throughput: length-bucketed batches of `batch` pairs (padded to the longest sentence
/// of the batch, cut at 48 tokens), contrastive loss on the Euclidean energy, Adam. Runs for
/// about `seconds` after three warm-up steps. Each step is the trainer's own
/// ([`trainer::train_step`]).
pub fn train_pairs_per_sec(q: &QuoraData, backend: Backend, batch: usize, d_hidden: usize, seconds: f64) -> Result<Measurement> {
    let device = device_of(backend)?.autodiff();
    device.seed(42);
    let model = Trainable { twin: TwinEncoder { encoder: q.encoder(d_hidden, &device) }, head: None, projection: None };
    // The optimiser training uses on this backend (without gradient clipping).
    let mut optim = trainer::adam(backend, 0.0);
    let objective = Objective { losses: vec![LossSpec::new(LossKind::Contrastive)], energy: Energy::Euclidean, margin: 1.0 };
    let (encoded, plan) = q.training_batches(batch)?;
    let mut step =
        |model: Trainable, idx: &[usize]| trainer::train_step(model, &mut optim, 1e-3, &objective, &encoded, idx, None, None, &device).0;
    let mut batches = plan.iter().map(Vec::as_slice).cycle();
    let mut model = Some(model);
    let timed = time_steps(seconds, || {
        let idx = batches.next().unwrap_or(&[]);
        model = model.take().map(|m| step(m, idx));
        idx.len()
    });
    // wgpu queues work and returns at once: reading the updated weights waits for all of it.
    if let Some(m) = &model {
        let _ = m.twin.encoder.forward_lstm.bias.val().into_data();
    }
    Ok(timed.pairs_per_sec("train", backend, |steps, secs| {
        format!("{steps} bucketed steps of {batch} pairs, h={d_hidden}, GloVe-50, {secs:.1} s")
    }))
}

/// The LSTM's part of a training step: the training workload's batches, encoder and shapes, but
/// only the recurrence, forward and backward (gradients to its input and weights), from the
/// embedded words of each batch prepared up front. Embedding lookup, pooling, loss, the rest of
/// autodiff and the optimiser are left out, so `train_pairs_per_sec / lstm_pairs_per_sec` is
/// the LSTM's share of a step and the remainder is everything else: on a GPU, that shows which
/// of the two to make faster next.
pub fn lstm_pairs_per_sec(q: &QuoraData, backend: Backend, batch: usize, d_hidden: usize, seconds: f64) -> Result<Measurement> {
    let device = device_of(backend)?.autodiff();
    device.seed(42);
    let encoder = q.encoder(d_hidden, &device);
    let (encoded, plan) = q.training_batches(batch)?;
    let keep_all = encoder.pooling != encoder::Pooling::Last;
    // What the LSTM receives in a step: both sides' embedded words (a leaf that wants its
    // gradient, as the embedding does in training) and the mask.
    let inputs: Vec<(Tensor<3>, Tensor<2>, usize)> = plan
        .iter()
        .map(|idx| {
            let (rows, _) = encoded.rows(idx);
            let tensors = encoder::BatchTensors::new(&tokenize::Batch::from_rows(&rows), &device);
            (encoder.embedding.forward(tensors.ids).detach(), tensors.mask, idx.len())
        })
        .collect();
    let step = |(words, mask, _): &(Tensor<3>, Tensor<2>, usize)| {
        let words = words.clone().require_grad();
        let sum = |out: encoder::lstm::LstmOutput| out.all.map_or_else(|| out.last.sum(), |all| all.sum());
        let mut loss = sum(encoder.forward_lstm.forward(words.clone(), mask.clone(), keep_all));
        if let Some(bwd) = &encoder.backward_lstm {
            loss = loss + sum(bwd.forward(words.clone(), mask.clone(), keep_all));
        }
        let grads = loss.backward();
        words.grad(&grads)
    };
    let mut batches = inputs.iter().cycle();
    let mut last = None;
    let timed = time_steps(seconds, || {
        let input = batches.next().expect("the benchmark has pairs");
        last = step(input);
        input.2
    });
    // wgpu queues work and returns at once: reading the last input gradient waits for all of it.
    if let Some(g) = last {
        let _ = g.into_data();
    }
    Ok(timed.pairs_per_sec("train-lstm", backend, |steps, secs| {
        format!("the LSTM alone, forward + backward: {steps} bucketed steps of {batch} pairs, h={d_hidden}, {secs:.1} s")
    }))
}

/// Encoding throughput over the distinct questions: batches of `batch`, sorted by length, no
/// autodiff, tokenization included. Repeats the corpus until about `seconds` have passed.
pub fn encode_sentences_per_sec(q: &QuoraData, backend: Backend, batch: usize, d_hidden: usize, seconds: f64) -> Result<Measurement> {
    let device = device_of(backend)?;
    let encoder = q.encoder(d_hidden, &device);
    let questions = q.questions();
    embed_texts(&encoder, &q.tokenizer, &questions[..questions.len().min(2 * batch)], &device, batch, |_| {})?;
    let started = Instant::now();
    let (mut sentences, mut rounds) = (0usize, 0usize);
    while rounds == 0 || started.elapsed().as_secs_f64() < seconds {
        let v = embed_texts(&encoder, &q.tokenizer, &questions, &device, batch, |_| {})?;
        assert_eq!(v.len(), questions.len() * d_hidden);
        sentences += questions.len();
        rounds += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(Measurement {
        name: "encode".into(),
        backend: backend.to_string(),
        value: sentences as f64 / secs,
        unit: "sentences/s".into(),
        peak_rss_mib: peak_rss_mib(),
        detail: format!("{rounds} x {} questions, batch {batch}, h={d_hidden}, {secs:.1} s", questions.len()),
    })
}

/// `n` random unit vectors of size `dim`, row-major, from `seed`.
pub fn random_unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut v: Vec<f32> = (0..n * dim).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    for row in v.chunks_mut(dim) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Exact top-`k` search throughput: `queries` random unit queries against `n` random unit
/// vectors, all queries answered in one batch call, repeated for about two seconds.
pub fn search_qps(n: usize, dim: usize, queries: usize, k: usize, seed: u64) -> Measurement {
    let vectors = random_unit_vectors(n, dim, seed);
    let qs = random_unit_vectors(queries, dim, seed + 1);
    // Warm the pages and the thread pool.
    let _ = retrieve::search::top_k_batch(&vectors, dim, &qs[..dim * queries.min(8)], k);
    // One batch of 100k vectors takes a fifth of a second: repeat it (at least 3 times, at
    // least 2 s in all) so that one slow moment does not decide the figure.
    let started = Instant::now();
    let mut rounds = 0;
    while rounds < 3 || started.elapsed().as_secs_f64() < 2.0 {
        let hits = retrieve::search::top_k_batch(&vectors, dim, &qs, k);
        assert_eq!(hits.len(), queries);
        rounds += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    Measurement {
        name: format!("search-{n}"),
        backend: "rust".into(),
        value: (rounds * queries) as f64 / secs,
        unit: "queries/s".into(),
        peak_rss_mib: peak_rss_mib(),
        detail: format!("{rounds} x {queries} queries, top-{k}, {n} x {dim} vectors, {secs:.2} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!([50.0, 90.0, 99.0, 100.0].map(|p| percentile(&v, p)), [Some(50.0), Some(90.0), Some(99.0), Some(100.0)]);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn random_vectors_are_unit_length_and_seeded() {
        let v = random_unit_vectors(5, 16, 3);
        for row in v.chunks(16) {
            assert!((row.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
        }
        assert_eq!(v, random_unit_vectors(5, 16, 3));
        assert_ne!(v, random_unit_vectors(5, 16, 4));
    }

    #[test]
    fn search_measurement_reports_a_rate_and_memory() {
        let m = search_qps(2_000, 8, 50, 10, 1);
        assert_eq!(m.name, "search-2000");
        assert!(m.value > 0.0 && m.value.is_finite());
        if cfg!(target_os = "linux") {
            assert!(m.peak_rss_mib.unwrap() > 0.0);
        }
    }
}
