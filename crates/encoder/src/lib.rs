//! The twin-LSTM sentence encoder.
//!
//! Text becomes token ids (the `tokenize` crate), ids become word vectors (an embedding table,
//! optionally initialised from GloVe), and a length-masked LSTM reads them into one vector per
//! sentence. The Siamese network is ONE such encoder applied to both sentences of a pair
//! ([`TwinEncoder`]); an [`Energy`] compares the two vectors, and the [`loss`] functions
//! (contrastive, online contrastive, in-batch negatives, regression) train them.
//! A trained model lives in a [`ModelPackage`] directory; an [`Embedder`] turns a package into a
//! fast batch encoder for search and scoring. On the CPU backends the LSTM runs as one fused burn
//! operation with a hand-written backward pass over host kernels, and inference skips tensors
//! altogether ([`HostEncoder`]); on wgpu it runs as composed tensor ops.
//!
//! The source is split by concern:
//!
//! - `model/`: the burn model and what trains it ([`model`]: encoder, LSTM, verdict head,
//!   energies, losses, GloVe);
//! - `cpu/`: host kernels for the CPU backends (the matrix product, the gate arithmetic, the
//!   recurrence forward and backward, the fused burn operation, the host inference path);
//! - `runtime/`: using a trained model ([`runtime`]: backend choice, model package, embedder).
//!
//! The modules of `model/` and `runtime/` are also reachable at the crate root
//! (`encoder::loss`, `encoder::package`, ...), and the most used items are re-exported here.
//!
//! ```
//! use encoder::{Backend, BatchTensors, Energy, EncoderConfig};
//! use tokenize::{VocabOptions, WordTokenizer};
//!
//! let tok = WordTokenizer::build(["how do i learn rust", "how to learn rust"], &VocabOptions::default(), &[]).unwrap();
//! let device = Backend::Flex.device();
//! let encoder = EncoderConfig::new(tok.vocab_size()).with_d_hidden(16).init(&device);
//! let batch = tok.encode_batch(&["how do i learn rust", "how to learn rust"]).unwrap();
//! let vectors = encoder.forward(BatchTensors::new(&batch, &device));
//! assert_eq!(vectors.dims(), [2, 16]);
//! let d = Energy::Euclidean.distance(vectors.clone().slice([0..1, 0..16]), vectors.slice([1..2, 0..16]));
//! assert!(d.into_scalar::<f32>() < 2.0); // unit vectors are at most 2 apart
//! ```

mod cpu;
pub mod model;
pub mod runtime;

pub use model::{energy, glove, head, loss, lstm};
pub use runtime::{backend, embed, package};

pub use backend::Backend;
pub use cpu::gemm::matmul;
pub use cpu::host::HostEncoder;
pub use embed::Embedder;
pub use energy::Energy;
pub use glove::{Coverage, Glove};
pub use head::{verdict_loss, VerdictHead, VerdictHeadConfig};
pub use loss::{
    contrastive_loss, in_batch_negatives_loss, online_contrastive_loss, projection_distill_loss, regression_loss, similarity_distill_loss,
};
pub use lstm::{MaskedLstm, MaskedLstmConfig};
pub use model::{l2_normalize, BatchTensors, EncoderConfig, Pooling, SentenceEncoder, TwinEncoder};
pub use package::{ModelPackage, PackageConfig, SearchFlag};

use std::path::{Path, PathBuf};

/// Errors of the encoder crate; each names the file involved where there is one.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A GloVe file has a malformed line.
    #[error("{path}:{line}: {reason}")]
    Glove {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// A model package is missing, incomplete, corrupt or inconsistent.
    #[error("{path}: {reason}")]
    Package {
        /// The offending file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Tokenization failed.
    #[error(transparent)]
    Tokenize(#[from] tokenize::TokenizeError),
    /// A file could not be written safely.
    #[error(transparent)]
    Fs(#[from] fsio::FsError),
    /// JSON could not be written.
    #[error("json: {0}")]
    Json(String),
    /// A tensor could not be read back from the device.
    #[error("tensor: {0}")]
    Tensor(String),
}

impl EncoderError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        EncoderError::Io { path: path.to_path_buf(), source }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, EncoderError>;
