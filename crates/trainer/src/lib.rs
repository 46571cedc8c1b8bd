//! Contrastive training of the twin LSTM, and evaluation of model packages.
//!
//! [`train`] loads labelled pairs, builds the vocabulary (optionally seeded with GloVe words),
//! trains ONE encoder on both sides of every pair with the configured losses (the contrastive
//! loss `Y·E² + (1−Y)·max(margin − E, 0)²` by default; online contrastive, in-batch negatives and
//! MaLSTM-style regression on graded scores too), validates after every epoch (binary metrics and
//! retrieval for 0/1 data, correlations for graded data), stops early when validation stops
//! improving, and writes the best epoch as a model package with its decision threshold. A config
//! may start from another package (`model.init`): pre-train on graded pairs, then fine-tune.
//! [`evaluate`] scores a package on a labelled pair file at its stored threshold. [`train_step`]
//! is one training step (forward, objective, backward, update); `bench` times that same step.
//!
//! ```no_run
//! use trainer::{config::{DataDirs, TrainConfig}, train, TrainRun};
//!
//! let cfg = TrainConfig::load("configs/quora.toml".as_ref()).unwrap();
//! let report = train(&cfg, &DataDirs::default(), &TrainRun::default()).unwrap();
//! println!("validation accuracy {:.3}", report.best.accuracy);
//! ```

pub mod config;
pub mod distill;
mod fit;
pub mod memory;
pub mod plot;
pub mod verdicts;

pub use fit::{
    adam, bucketed_batches, evaluate, graded_on, heldout_pairs, load_scaled, pair_distances, pair_scores, retrieval_on, train, train_step,
    EncodedPairs, EpochMetrics, EvalOptions, EvalReport, GradedStream, HeldoutPart, Objective, SliceMetrics, StepOutcome, TrainReport,
    TrainRun, Trainable,
};

use std::path::PathBuf;

/// Errors of training and evaluation.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The config file is invalid.
    #[error("{path}: invalid config: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Loading pairs failed.
    #[error(transparent)]
    Data(#[from] data::DataError),
    /// The model or its package failed.
    #[error(transparent)]
    Encoder(#[from] encoder::EncoderError),
    /// Tokenization failed.
    #[error(transparent)]
    Tokenize(#[from] tokenize::TokenizeError),
    /// An atomic write or a lock failed (the error names the file).
    #[error(transparent)]
    Fs(#[from] fsio::FsError),
    /// Training diverged or cannot proceed.
    #[error("training: {0}")]
    Training(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, TrainError>;
