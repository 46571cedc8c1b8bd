//! Nearest stored sentences, duplicate verdicts and batch CSV scoring with a twin-LSTM model.
//!
//! A model package (from the `trainer` crate) embeds sentences to unit vectors; an [`Index`]
//! keeps them on disk with the sentences and the model's fingerprint; [`search::top_k`] finds the
//! most similar stored sentences exactly (dot product, multithreaded); [`dedup`] mines every pair
//! above the duplicate threshold; [`score`] streams a CSV of pairs through the model.
//!
//! ```
//! use retrieve::search::{top_k, top_k_naive};
//!
//! // Three unit vectors of size 2, and a query close to the second one.
//! let vectors = [1.0, 0.0, 0.0, 1.0, 0.6, 0.8];
//! let hits = top_k(&vectors, 2, &[0.1, 0.99], 2);
//! assert_eq!(hits.iter().map(|h| h.index).collect::<Vec<_>>(), [1, 2]);
//! assert_eq!(hits, top_k_naive(&vectors, 2, &[0.1, 0.99], 2));
//! ```

pub mod ann;
pub mod corpus;
pub mod dedup;
pub mod index;
pub mod report;
pub mod score;
pub mod search;
#[cfg(feature = "serve")]
pub mod serve;
pub mod store;
mod vectors;

pub use ann::{Ann, AnnParams, GraphCodes, SearchMode};
pub use index::{Index, IndexHeader, NewItem, VectorKind};
pub use report::{QueryHits, SearchHit, SearchReport};
pub use search::{top_k, Hit};
pub use store::{LocalStore, MilvusStore, Store, StoreUrl, StoredHit};

use std::path::{Path, PathBuf};

/// Errors of retrieval, indexing and scoring; each names the file (or line) involved.
#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An index file is damaged or not an index.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An index was built by another model than the one loaded.
    #[error("{path}: {reason}")]
    ModelMismatch {
        /// The index file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// A row of the input is bad (strict mode).
    #[error("line {line}: {reason}")]
    BadRow {
        /// 1-based line.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The input cannot be used as asked.
    #[error("{0}")]
    Invalid(String),
    /// A store could not be reached or failed to answer (a Milvus server down, a timeout), or
    /// its state in this process is unusable.
    #[error("{location}: {reason}")]
    Store {
        /// The store (a path or a `milvus://` address).
        location: String,
        /// What went wrong.
        reason: String,
    },
    /// The approximate-search graph failed.
    #[error("approximate index: {0}")]
    Graph(String),
    /// The model failed.
    #[error(transparent)]
    Encoder(#[from] encoder::EncoderError),
    /// A file could not be written safely, or an output path was refused.
    #[error(transparent)]
    Fs(#[from] fsio::FsError),
}

impl RetrieveError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        RetrieveError::Io { path: path.to_path_buf(), source }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, RetrieveError>;
