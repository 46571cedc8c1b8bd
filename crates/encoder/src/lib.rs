//! The twin-LSTM sentence encoder.
//!
//! Text becomes token ids (the `tokenize` crate), ids become word vectors (an embedding table,
//! optionally initialised from GloVe), and a length-masked LSTM reads them into one vector per
//! sentence. The Siamese network is ONE such encoder applied to both sentences of a pair
//! (`TwinEncoder`); an [`Energy`] compares the two vectors, and the `loss` functions
//! (contrastive, online contrastive, in-batch negatives, regression) train them.
//! A trained model lives in a [`ModelPackage`] directory; an [`Embedder`] turns a package into a
//! fast batch encoder for search and scoring.
//!
//! Inference on the CPU needs no tensor library: a package's weights are read into host buffers
//! and [`HostEncoder`] runs the LSTM as plain loops over them (with [`HostHead`] for the verdict
//! head). That is this crate without features, which is what `retrieve` builds by default, so
//! its first build is short. The `burn` feature adds the burn model and what trains it (the
//! ndarray and flex backends, where the LSTM is one fused operation with a hand-written
//! backward pass over the same host kernels, and autodiff); `wgpu` adds the GPU backend, where
//! the same operation runs as CubeCL kernels.
//!
//! The source is split by concern:
//!
//! - `model/`: the model ([`model`]: the shapes stored in a package; with `burn`, the encoder,
//!   LSTM, verdict head, energies, losses, GloVe);
//! - `cpu/`: host kernels (the matrix product, the gate arithmetic, the recurrence forward and
//!   backward, the host inference path and head);
//! - `op/` (with `burn`): the LSTM recurrence as one burn operation with its own backward pass,
//!   on the host kernels for ndarray and flex and on CubeCL kernels for wgpu;
//! - `runtime/`: using a trained model ([`runtime`]: backend choice, model package and its
//!   weights, embedder, search flags).
//!
//! The modules of `model/` and `runtime/` are also reachable at the crate root
//! (`encoder::energy`, `encoder::package`, ...), and the most used items are re-exported here.
//!
//! ```
//! use encoder::{Embedder, ModelPackage};
//!
//! // The model shipped in the repository, loaded and run without burn.
//! let package = ModelPackage::load(std::path::Path::new("../../models/quora")).unwrap();
//! let embedder = Embedder::new(package);
//! let vectors = embedder.embed(&["How do I learn Rust?", "What is the best way to learn Rust?"]).unwrap();
//! let d = embedder.dim();
//! assert_eq!(vectors.len(), 2 * d);
//! let distance = embedder.package.config.energy.distance_host(&vectors[..d], &vectors[d..]);
//! assert!((0.0..=2.0).contains(&distance)); // cosine distance
//! ```

mod cpu;
pub mod model;
#[cfg(feature = "burn")]
mod op;
pub mod runtime;

pub use model::{config, energy};
#[cfg(feature = "burn")]
pub use model::{glove, head, loss, lstm};
pub use runtime::{backend, embed, flag, package};

pub use backend::Backend;
pub use cpu::gemm::matmul;
pub use cpu::head::HostHead;
pub use cpu::host::HostEncoder;
pub use embed::Embedder;
pub use energy::Energy;
pub use flag::SearchFlag;
#[cfg(feature = "burn")]
pub use glove::{Coverage, Glove};
#[cfg(feature = "burn")]
pub use head::{verdict_loss, VerdictHead};
#[cfg(feature = "burn")]
pub use loss::{
    contrastive_loss, in_batch_negatives_loss, online_contrastive_loss, projection_distill_loss, ranking_distill_loss, regression_loss,
    similarity_distill_loss,
};
#[cfg(feature = "burn")]
pub use lstm::{MaskedLstm, MaskedLstmConfig};
#[cfg(feature = "burn")]
pub use model::{l2_normalize, BatchTensors, SentenceEncoder, TwinEncoder};
pub use model::{EncoderConfig, Pooling, VerdictHeadConfig};
pub use package::{HitVerdict, ModelPackage, PackageConfig};

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
