//! The errors of this crate.

use std::path::PathBuf;

/// Errors of this crate. Each names the file involved where there is one.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    /// Reading or writing a tokenizer file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file exists but is not a usable word-level `tokenizer.json`.
    #[error("{path}: not a valid tokenizer file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The `tokenizers` crate refused an operation.
    #[error("tokenizer: {0}")]
    Tokenizers(String),
    /// The options cannot build a usable vocabulary.
    #[error("invalid vocabulary options: {0}")]
    Options(String),
    /// A file could not be written safely.
    #[error(transparent)]
    Fs(#[from] fsio::FsError),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, TokenizeError>;

pub(crate) fn tk_err(e: impl std::fmt::Display) -> TokenizeError {
    TokenizeError::Tokenizers(e.to_string())
}
