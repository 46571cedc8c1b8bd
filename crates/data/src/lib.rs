//! Sentence-pair datasets and the metrics that judge a model on them.
//!
//! Everything here is plain Rust with no model inside: loaders turn the files users have (the
//! Quora BiMPM TSV, a `sentence1,sentence2,label` CSV) into [`Pair`]s, with an error naming the
//! file and line for every malformed row, and [`metrics`] turns similarity scores into accuracy,
//! F1, average precision and correlations. Training, evaluation and batch scoring all share them,
//! so a number means the same thing wherever it is printed.
//!
//! ```
//! use data::metrics::{average_precision, binary_metrics};
//!
//! let scores = [0.9, 0.8, 0.3, 0.1];
//! let labels = [true, false, true, false];
//! let m = binary_metrics(&scores, &labels, 0.5);
//! assert_eq!(m.accuracy, 0.5);
//! assert!((average_precision(&scores, &labels) - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
//! ```

pub mod augment;
pub mod load;
pub mod metrics;
pub mod verdicts;

pub use load::{load_pairs, split_train_valid, BadRow, LoadOptions, Loaded, Pair, PairFormat};

use std::path::PathBuf;

/// Where the datasets are looked for when neither `--data-dir` nor `TWIN_DATA_DIR` names a
/// directory: the layout `scripts/fetch-data.sh` writes by default.
pub const DEFAULT_DATA_DIR: &str = "../shared/datasets";
/// Where word vectors are looked for when neither `--embeddings-dir` nor `TWIN_EMBEDDINGS_DIR`
/// names a directory.
pub const DEFAULT_EMBEDDINGS_DIR: &str = "../shared/embeddings";

/// Errors of this crate. Each names the file, and the line where one is known.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A row is malformed.
    #[error("{path}:{line}: {reason}")]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based line number where the row starts.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The file as a whole cannot be used (no header, no rows, unknown columns).
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, DataError>;
