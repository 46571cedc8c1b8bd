//! Batched inference: sentences in, unit vectors out.

#[cfg(feature = "burn")]
use burn::prelude::Device;
use rayon::prelude::*;

use super::backend::Backend;
use super::package::ModelPackage;
use crate::cpu::host::HostEncoder;
#[cfg(feature = "burn")]
use crate::model::{BatchTensors, SentenceEncoder};
use crate::Result;

/// Sentences per forward pass when embedding many.
pub const DEFAULT_BATCH: usize = 256;

/// From this many sentences on, the host encoder first precomputes the input projections of the
/// frequent words (with the 8 MiB table, about the cost of encoding a hundred sentences).
const PRECOMPUTE_FROM: usize = 2048;

/// Encodes sentences with a loaded package, without autodiff, in length-sorted batches so that
/// little work is wasted on padding. On the CPU this is the host encoder, which needs no burn;
/// with the `burn` feature it can also run the burn module on another device (wgpu).
#[derive(Debug)]
pub struct Embedder {
    /// The package whose encoder and tokenizer are used.
    pub package: ModelPackage,
    /// The burn module and its device, when encoding off the host.
    #[cfg(feature = "burn")]
    device: Option<(SentenceEncoder, Device)>,
    batch_size: usize,
}

impl Embedder {
    /// Prepares `package` for inference on the host.
    pub fn new(package: ModelPackage) -> Self {
        Self {
            package,
            #[cfg(feature = "burn")]
            device: None,
            batch_size: DEFAULT_BATCH,
        }
    }

    /// Prepares `package` for inference on `device`: on the host for the CPU backends (the same
    /// numbers, without tensors), with the burn module elsewhere.
    #[cfg(feature = "burn")]
    pub fn on_device(package: ModelPackage, device: &Device) -> Result<Self> {
        let device = device.clone().without_autodiff();
        if crate::op::on_host(&device) {
            return Ok(Self::new(package));
        }
        let encoder = package.encoder_module(&device)?;
        Ok(Self { package, device: Some((encoder, device)), batch_size: DEFAULT_BATCH })
    }

    /// Prepares `package` for `backend`, or says why this build or machine cannot run it:
    /// ndarray and flex run on the host in every build, wgpu needs the `wgpu` feature and a
    /// usable adapter.
    pub fn for_backend(package: ModelPackage, backend: Backend) -> std::result::Result<Self, String> {
        match backend {
            Backend::Ndarray | Backend::Flex => Ok(Self::new(package)),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Self::on_device(package, &backend.try_device()?).map_err(|e| e.to_string()),
            #[cfg(not(feature = "wgpu"))]
            Backend::Wgpu => Err(Backend::NOT_BUILT.to_string()),
        }
    }

    /// Changes how many sentences go through the model at once.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The verdict head's probabilities that the two vectors of each of `n` pairs (vectors from
    /// [`Embedder::embed`], see [`HostHead::probabilities`](crate::cpu::head::HostHead::probabilities))
    /// are duplicates, with the probability from which the package calls a pair a duplicate;
    /// `None` for a package without a head, whose verdict is the distance. Computed on the host
    /// whatever the backend: a few small products per pair.
    pub fn head_probabilities<'a>(&self, n: usize, pair: impl Fn(usize) -> (&'a [f32], &'a [f32])) -> Option<(Vec<f32>, f64)> {
        let (head, threshold) = self.package.head.as_ref()?;
        Some((head.probabilities(n, pair), *threshold))
    }

    /// Size of each vector.
    pub fn dim(&self) -> usize {
        self.package.encoder.d_output()
    }

    /// Vectors of `texts`, `texts.len() × dim()` values row-major, in input order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<f32>> {
        self.embed_with_progress(texts, |_| {})
    }

    /// Like [`embed`](Self::embed), calling `progress(n)` after each batch of `n` sentences.
    pub fn embed_with_progress(&self, texts: &[&str], progress: impl FnMut(usize)) -> Result<Vec<f32>> {
        #[cfg(feature = "burn")]
        if let Some((encoder, device)) = &self.device {
            return encode(Engine::Device(encoder, device), &self.package.tokenizer, texts, self.batch_size, progress);
        }
        encode(Engine::Host(&self.package.encoder), &self.package.tokenizer, texts, self.batch_size, progress)
    }
}

/// Vectors of `texts` with any encoder (e.g. one still in training, put in `valid()` mode by the
/// caller): length-sorted batches of `batch_size`, results in input order, `progress(n)` after
/// each batch.
#[cfg(feature = "burn")]
pub fn embed_texts(
    encoder: &SentenceEncoder,
    tokenizer: &tokenize::WordTokenizer,
    texts: &[&str],
    device: &Device,
    batch_size: usize,
    progress: impl FnMut(usize),
) -> Result<Vec<f32>> {
    // On the CPU backends the whole encoder runs on the host, without tensors.
    if crate::op::on_host(device) {
        let host = HostEncoder::new(encoder);
        return encode(Engine::Host(&host), tokenizer, texts, batch_size, progress);
    }
    encode(Engine::Device(encoder, device), tokenizer, texts, batch_size, progress)
}

/// What runs the batches.
enum Engine<'a> {
    Host(&'a HostEncoder),
    #[cfg(feature = "burn")]
    Device(&'a SentenceEncoder, &'a Device),
}

fn encode(
    engine: Engine<'_>,
    tokenizer: &tokenize::WordTokenizer,
    texts: &[&str],
    batch_size: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<f32>> {
    let rows = tokenizer.encode_batch_rows(texts)?;
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| rows[i].len());
    let dim = match &engine {
        Engine::Host(host) => host.d_output(),
        #[cfg(feature = "burn")]
        Engine::Device(encoder, _) => encoder.d_output(),
    };
    let mut out = vec![0f32; texts.len() * dim];
    let chunks: Vec<&[usize]> = order.chunks(batch_size.max(1)).collect();
    let rows_of = |chunk: &[usize]| -> Vec<&[u32]> { chunk.iter().map(|&i| rows[i].as_slice()).collect() };
    let mut place = |chunk: &[usize], data: &[f32]| {
        for (k, &i) in chunk.iter().enumerate() {
            out[i * dim..(i + 1) * dim].copy_from_slice(&data[k * dim..(k + 1) * dim]);
        }
        progress(chunk.len());
    };
    match engine {
        Engine::Host(host) => {
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
        #[cfg(feature = "burn")]
        Engine::Device(encoder, device) => {
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
