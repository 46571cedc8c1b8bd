//! Batched inference: sentences in, unit vectors out.

use burn::module::Module;
use burn::prelude::Device;
use rayon::prelude::*;

use super::package::ModelPackage;
use crate::cpu::host::HostEncoder;
use crate::model::head::VerdictHead;
use crate::model::{BatchTensors, SentenceEncoder};
use crate::Result;

/// Sentences per forward pass when embedding many.
pub const DEFAULT_BATCH: usize = 256;

/// From this many sentences on, the host encoder first precomputes the input projections of the
/// frequent words (with the 8 MiB table, about the cost of encoding a hundred sentences).
const PRECOMPUTE_FROM: usize = 2048;

/// Encodes sentences with a loaded package, without autodiff, in length-sorted batches so that
/// little work is wasted on padding.
#[derive(Debug)]
pub struct Embedder {
    /// The package whose encoder and tokenizer are used.
    pub package: ModelPackage,
    encoder: SentenceEncoder,
    /// The weights copied to the host once, on the CPU backends.
    host: Option<HostEncoder>,
    /// The package's verdict head, on `device`.
    head: Option<VerdictHead>,
    device: Device,
    batch_size: usize,
}

impl Embedder {
    /// Prepares `package` for inference on `device`.
    pub fn new(package: ModelPackage, device: Device) -> Self {
        let device = device.without_autodiff();
        let encoder = package.encoder.valid().to_device(&device);
        let host = crate::cpu::lstm_op::supported(&device).then(|| HostEncoder::new(&encoder));
        let head = package.head.as_ref().map(|(h, _)| h.valid().to_device(&device));
        Self { package, encoder, host, head, device, batch_size: DEFAULT_BATCH }
    }

    /// Changes how many sentences go through the model at once.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The verdict head's probabilities that the two vectors of each of `n` pairs (vectors from
    /// [`Embedder::embed`], see [`VerdictHead::probabilities`]) are duplicates, with the
    /// probability from which the package calls a pair a duplicate; `None` for a package without
    /// a head, whose verdict is the distance.
    pub fn head_probabilities<'a>(&self, n: usize, pair: impl Fn(usize) -> (&'a [f32], &'a [f32])) -> Option<(Vec<f32>, f64)> {
        let (head, (_, threshold)) = (self.head.as_ref()?, self.package.head.as_ref()?);
        Some((head.probabilities(n, pair, &self.device), *threshold))
    }

    /// Size of each vector.
    pub fn dim(&self) -> usize {
        self.encoder.d_output()
    }

    /// Vectors of `texts`, `texts.len() × dim()` values row-major, in input order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<f32>> {
        self.embed_with_progress(texts, |_| {})
    }

    /// Like [`embed`](Self::embed), calling `progress(n)` after each batch of `n` sentences.
    pub fn embed_with_progress(&self, texts: &[&str], progress: impl FnMut(usize)) -> Result<Vec<f32>> {
        encode(&self.encoder, self.host.as_ref(), &self.package.tokenizer, texts, &self.device, self.batch_size, progress)
    }
}

/// Vectors of `texts` with any encoder (e.g. one still in training, put in `valid()` mode by the
/// caller): length-sorted batches of `batch_size`, results in input order, `progress(n)` after
/// each batch.
pub fn embed_texts(
    encoder: &SentenceEncoder,
    tokenizer: &tokenize::WordTokenizer,
    texts: &[&str],
    device: &Device,
    batch_size: usize,
    progress: impl FnMut(usize),
) -> Result<Vec<f32>> {
    // On the CPU backends the whole encoder runs on the host, without tensors.
    let host = crate::cpu::lstm_op::supported(device).then(|| HostEncoder::new(encoder));
    encode(encoder, host.as_ref(), tokenizer, texts, device, batch_size, progress)
}

fn encode(
    encoder: &SentenceEncoder,
    host: Option<&HostEncoder>,
    tokenizer: &tokenize::WordTokenizer,
    texts: &[&str],
    device: &Device,
    batch_size: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<f32>> {
    let rows = tokenizer.encode_batch_rows(texts)?;
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| rows[i].len());
    let dim = encoder.d_output();
    let mut out = vec![0f32; texts.len() * dim];
    let chunks: Vec<&[usize]> = order.chunks(batch_size.max(1)).collect();
    let rows_of = |chunk: &[usize]| -> Vec<&[u32]> { chunk.iter().map(|&i| rows[i].as_slice()).collect() };
    let mut place = |chunk: &[usize], data: &[f32]| {
        for (k, &i) in chunk.iter().enumerate() {
            out[i * dim..(i + 1) * dim].copy_from_slice(&data[k * dim..(k + 1) * dim]);
        }
        progress(chunk.len());
    };
    match host {
        Some(host) => {
            if texts.len() >= PRECOMPUTE_FROM {
                host.precompute_projections();
            }
            // One batch per thread at a time (neighbouring batches have about the same lengths,
            // so the threads finish together); a lone batch splits its steps over the threads.
            for group in chunks.chunks(rayon::current_num_threads().max(1)) {
                if let [chunk] = group {
                    place(chunk, &host.encode(&rows_of(chunk)));
                } else {
                    let data: Vec<Vec<f32>> = group.par_iter().map(|chunk| host.encode_on_this_thread(&rows_of(chunk))).collect();
                    for (chunk, data) in group.iter().zip(&data) {
                        place(chunk, data);
                    }
                }
            }
        }
        None => {
            for chunk in chunks {
                let batch = tokenize::Batch::from_rows(&rows_of(chunk));
                let vecs = encoder.forward(BatchTensors::new(&batch, device));
                let data = vecs.into_data().try_into_vec::<f32>().map_err(|e| crate::EncoderError::Tensor(format!("{e:?}")))?;
                place(chunk, &data);
            }
        }
    }
    Ok(out)
}
