//! The model package: one directory holding everything needed to use a trained model.
//!
//! ```text
//! models/quora/
//!   config.json     encoder shape, energy, max_len (everything to rebuild the model)
//!   tokenizer.json  the vocabulary, in the tokenizers crate's format
//!   model.bpk       the weights, in burn's burnpack format
//!   metrics.json    validation metrics per epoch and the decision threshold on distance
//!   head.bpk        only with a verdict head: its weights (config.json then has "head", and
//!                   metrics.json a "head_threshold" on the head's probability)
//! ```
//!
//! Saving writes a complete package into a temporary sibling directory and then renames it into
//! place, so a crash mid-save leaves the previous package untouched.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::Device;
use burn::store::{ModuleRecord, RecordError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokenize::WordTokenizer;

use crate::energy::Energy;
use crate::head::{VerdictHead, VerdictHeadConfig};
use crate::model::{EncoderConfig, SentenceEncoder};
use crate::{EncoderError, Result};

/// Version of the package layout; bumped when old packages can no longer be read as they are.
pub const FORMAT_VERSION: u32 = 1;
/// File names inside a package.
pub const CONFIG_FILE: &str = "config.json";
/// See [`CONFIG_FILE`].
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// See [`CONFIG_FILE`].
pub const WEIGHTS_FILE: &str = "model.bpk";
/// See [`CONFIG_FILE`].
pub const METRICS_FILE: &str = "metrics.json";
/// See [`CONFIG_FILE`].
pub const HEAD_FILE: &str = "head.bpk";

/// Contents of `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageConfig {
    /// Layout version, [`FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// Shape of the encoder.
    pub encoder: EncoderConfig,
    /// The energy the model was trained with and its threshold is expressed in.
    pub energy: Energy,
    /// Sentences are cut to this many tokens.
    pub max_len: usize,
    /// The training configuration that produced the package, kept for provenance.
    #[serde(default)]
    pub training: serde_json::Value,
    /// Shape of the verdict head, for packages trained with one. Absent from older packages
    /// and from those without a head, which therefore read and fingerprint as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<VerdictHeadConfig>,
}

/// A loaded model package, ready to encode sentences.
#[derive(Debug)]
pub struct ModelPackage {
    /// Where it was loaded from.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: PackageConfig,
    /// `tokenizer.json`.
    pub tokenizer: WordTokenizer,
    /// The encoder with its trained weights.
    pub encoder: SentenceEncoder,
    /// `metrics.json`, as written by the trainer.
    pub metrics: serde_json::Value,
    /// Pairs at or below this distance are duplicates (from `metrics.json`). With a head, the
    /// verdict on a pair comes from the head instead, and this threshold serves mining
    /// (`dedup`), which must compare distances over all pairs.
    pub threshold: f64,
    /// The learned pair verdict and the probability from which it calls a pair a duplicate,
    /// for packages trained with one.
    pub head: Option<(VerdictHead, f64)>,
    /// Hash of the config, tokenizer and weights: an index built with another model is detected.
    pub fingerprint: String,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| EncoderError::io(path, e))
}

fn corrupt(path: &Path, reason: impl std::fmt::Display) -> EncoderError {
    EncoderError::Package { path: path.to_path_buf(), reason: reason.to_string() }
}

impl ModelPackage {
    /// Loads a package on `device`. A missing directory or file, unreadable JSON, or weights that
    /// do not fit the config are errors that name the file.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        if !dir.is_dir() {
            return Err(corrupt(dir, "no model package here (expected a directory with config.json, tokenizer.json, model.bpk, metrics.json)"));
        }
        let config_path = dir.join(CONFIG_FILE);
        let config_bytes = read(&config_path)?;
        let config: PackageConfig = serde_json::from_slice(&config_bytes).map_err(|e| corrupt(&config_path, e))?;
        if config.format_version != FORMAT_VERSION {
            return Err(corrupt(
                &config_path,
                format!("package format {} but this build reads format {FORMAT_VERSION}", config.format_version),
            ));
        }
        let tok_path = dir.join(TOKENIZER_FILE);
        let tok_bytes = read(&tok_path)?;
        let tok_json = String::from_utf8(tok_bytes.clone()).map_err(|e| corrupt(&tok_path, e))?;
        let mut tokenizer = WordTokenizer::from_json(&tok_json, &tok_path)?;
        tokenizer.set_max_len(config.max_len)?;
        if tokenizer.vocab_size() != config.encoder.vocab_size {
            return Err(corrupt(
                &tok_path,
                format!("vocabulary of {} words, but config.json expects {}", tokenizer.vocab_size(), config.encoder.vocab_size),
            ));
        }
        let weights_path = dir.join(WEIGHTS_FILE);
        let weights_bytes = read(&weights_path)?;
        let record = ModuleRecord::load(&weights_path).map_err(|e| record_error(&weights_path, e))?;
        let encoder = config.encoder.init(device).try_load_record(record).map_err(|e| record_error(&weights_path, e))?;
        let metrics_path = dir.join(METRICS_FILE);
        let metrics: serde_json::Value =
            serde_json::from_slice(&read(&metrics_path)?).map_err(|e| corrupt(&metrics_path, e))?;
        let threshold = metrics
            .get("threshold")
            .and_then(|t| t.as_f64())
            .filter(|t| t.is_finite())
            .ok_or_else(|| corrupt(&metrics_path, "no finite \"threshold\" field"))?;
        let mut h = Sha256::new();
        for part in [&config_bytes, &tok_bytes, &weights_bytes] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        let fingerprint = h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect();
        let head = match &config.head {
            None => None,
            Some(head_config) => {
                if head_config.d_input != config.encoder.d_output() {
                    return Err(corrupt(
                        &config_path,
                        format!(
                            "the head reads vectors of width {} but the encoder gives {}",
                            head_config.d_input,
                            config.encoder.d_output()
                        ),
                    ));
                }
                let head_path = dir.join(HEAD_FILE);
                let record = ModuleRecord::load(&head_path).map_err(|e| record_error(&head_path, e))?;
                let head = head_config.init(device).try_load_record(record).map_err(|e| record_error(&head_path, e))?;
                let t = metrics
                    .get("head_threshold")
                    .and_then(|t| t.as_f64())
                    .filter(|t| t.is_finite())
                    .ok_or_else(|| corrupt(&metrics_path, "the package has a head but no finite \"head_threshold\" field"))?;
                Some((head, t))
            }
        };
        Ok(Self { dir: dir.to_path_buf(), config, tokenizer, encoder, metrics, threshold, head, fingerprint })
    }

    /// Writes a package to `dir` atomically (a complete temporary sibling, then a rename).
    /// `metrics` must contain a finite `"threshold"`, and with a `head` (whose shape must be
    /// `config.head`) a finite `"head_threshold"` too.
    pub fn save(
        dir: &Path,
        config: &PackageConfig,
        tokenizer: &WordTokenizer,
        encoder: &SentenceEncoder,
        head: Option<&VerdictHead>,
        metrics: &serde_json::Value,
    ) -> Result<()> {
        let finite = |key: &str| metrics.get(key).and_then(|t| t.as_f64()).is_some_and(f64::is_finite);
        if !finite("threshold") {
            return Err(corrupt(dir, "metrics must carry a finite \"threshold\""));
        }
        if head.is_some() != config.head.is_some() {
            return Err(corrupt(dir, "a head is saved exactly when config.json describes one"));
        }
        if head.is_some() && !finite("head_threshold") {
            return Err(corrupt(dir, "a package with a head must carry a finite \"head_threshold\""));
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| EncoderError::io(&parent, e))?;
        let tmp = tokenize::shareable_temp(".package-", true).tempdir_in(&parent).map_err(|e| EncoderError::io(&parent, e))?;
        let write_json = |name: &str, value: &dyn erased::Json| -> Result<()> {
            let p = tmp.path().join(name);
            std::fs::write(&p, value.to_json()?).map_err(|e| EncoderError::io(&p, e))
        };
        write_json(CONFIG_FILE, config)?;
        write_json(METRICS_FILE, metrics)?;
        tokenizer.save(&tmp.path().join(TOKENIZER_FILE))?;
        let wp = tmp.path().join(WEIGHTS_FILE);
        encoder.clone().into_record().save(&wp).map_err(|e| record_error(&wp, e))?;
        if let Some(head) = head {
            let hp = tmp.path().join(HEAD_FILE);
            head.clone().into_record().save(&hp).map_err(|e| record_error(&hp, e))?;
        }
        replace_dir(tmp, dir)
    }
}

/// Moves the finished temporary directory over `dir`: the old package, if any, is first moved
/// aside, so at every instant one complete package exists at either name.
fn replace_dir(tmp: tempfile::TempDir, dir: &Path) -> Result<()> {
    let staged = tmp.keep();
    if dir.exists() {
        let aside = dir.with_extension(format!("old-{}", std::process::id()));
        std::fs::rename(dir, &aside).map_err(|e| EncoderError::io(dir, e))?;
        if let Err(e) = std::fs::rename(&staged, dir) {
            let _ = std::fs::rename(&aside, dir);
            return Err(EncoderError::io(dir, e));
        }
        std::fs::remove_dir_all(&aside).map_err(|e| EncoderError::io(&aside, e))?;
    } else {
        std::fs::rename(&staged, dir).map_err(|e| EncoderError::io(dir, e))?;
    }
    Ok(())
}

fn record_error(path: &Path, e: RecordError) -> EncoderError {
    match e {
        RecordError::Io(msg) => corrupt(path, format!("unreadable weights: {msg}")),
        RecordError::Validation(msg) => corrupt(path, format!("weights do not fit config.json: {msg}")),
    }
}

/// Pretty JSON for both typed configs and free-form metrics without generic closures.
mod erased {
    pub trait Json {
        fn to_json(&self) -> crate::Result<String>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> crate::Result<String> {
            serde_json::to_string_pretty(self).map_err(|e| crate::EncoderError::Json(e.to_string()))
        }
    }
}
