//! The model package: one directory holding everything needed to use a trained model.
//!
//! ```text
//! models/quora/
//!   config.json     encoder shape, energy, max_len (everything to rebuild the model)
//!   tokenizer.json  the vocabulary, in the tokenizers crate's format
//!   model.bpk       the weights, in burn's burnpack format
//!   metrics.json    validation metrics per epoch, the decision threshold on distance, and
//!                   optionally a "search_threshold" for flags on search hits (and
//!                   "search_flag": the score it applies to, see `flag`)
//!   head.bpk        only with a verdict head: its weights (config.json then has "head", and
//!                   metrics.json a "head_threshold" on the head's probability)
//! ```
//!
//! Saving writes a complete package into a temporary sibling directory and then swaps it into
//! place ([`fsio::AtomicDir`]), so a crash mid-save leaves the previous package untouched. An
//! existing directory is replaced only when it is a package and holds nothing else
//! ([`check_target`]): a typo in `--output` never wipes a folder of the user's.
//!
//! `checksums.json` lists the XXH3-64 of every other file; loading checks them, so flipped bytes
//! in the weights are an error instead of a silently different model. Packages written before
//! checksums existed still load. Every size in `config.json` is checked against limits and
//! against the length of the weights file before anything is allocated.

use std::path::{Path, PathBuf};

#[cfg(feature = "burn")]
use burn::{
    module::Module,
    prelude::Device,
    store::{ModuleRecord, RecordError},
    tensor::Bytes,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokenize::WordTokenizer;

use super::flag::{self, SearchFlag};
use super::weights::Weights;
use crate::cpu::head::HostHead;
use crate::cpu::host::HostEncoder;
use crate::model::config::{EncoderConfig, VerdictHeadConfig};
use crate::model::energy::Energy;
#[cfg(feature = "burn")]
use crate::model::{head::VerdictHead, SentenceEncoder};
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
/// See [`CONFIG_FILE`].
pub const CHECKSUMS_FILE: &str = "checksums.json";
/// Plots the trainer writes beside the weights; part of the package, not covered by checksums.
pub const PLOT_FILES: &[&str] = &["training.svg"];

/// Every file a package may hold: a directory holding anything else is not replaced.
const PACKAGE_FILES: &[&str] = &[CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, METRICS_FILE, HEAD_FILE, CHECKSUMS_FILE];

/// Largest shapes a `config.json` may ask for; each is far above any model this project trains,
/// and far below what would exhaust memory before the weights file is even compared.
pub(crate) mod limits {
    pub const VOCAB: usize = 20_000_000;
    pub const D_EMBED: usize = 4096;
    pub const D_HIDDEN: usize = 8192;
    pub const HEAD_HIDDEN: usize = 16384;
    pub const MAX_LEN: usize = 8192;
}

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

/// A loaded model package, ready to encode sentences. Its weights are held on the host, which
/// is all inference on the CPU needs; with the `burn` feature,
/// [`encoder_module`](Self::encoder_module) and [`head_module`](Self::head_module) build the burn
/// modules on any device, to fine-tune or to encode on wgpu.
#[derive(Debug)]
pub struct ModelPackage {
    /// Where it was loaded from.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: PackageConfig,
    /// `tokenizer.json`.
    pub tokenizer: WordTokenizer,
    /// The encoder with its trained weights.
    pub encoder: HostEncoder,
    /// `metrics.json`, as written by the trainer.
    pub metrics: serde_json::Value,
    /// Pairs at or below this distance are duplicates (from `metrics.json`). With a head, the
    /// verdict on a pair comes from the head instead, and this threshold serves mining
    /// (`dedup`), which must compare distances over all pairs.
    pub threshold: f64,
    /// The learned pair verdict and the probability from which it calls a pair a duplicate,
    /// for packages trained with one.
    pub head: Option<(HostHead, f64)>,
    /// The flag threshold for search hits (`metrics.json`'s `search_threshold`), chosen on a
    /// validation corpus where the candidates are the nearest of many stored questions and real
    /// duplicates are rare (see `data::verdicts`), unlike the balanced pairs that set
    /// [`threshold`](Self::threshold). On the score [`search_flag`](Self::search_flag) names.
    /// `None` for older packages: search then uses the pair verdict.
    pub search_threshold: Option<f64>,
    /// What the search threshold applies to (`metrics.json`'s `search_flag`): by default the
    /// head's probability for packages with a head, else the similarity. Calibration stores
    /// whichever score (the margin too, see [`crate::flag`]) detects most at the same
    /// false-alarm rate.
    pub search_flag: SearchFlag,
    /// Hash of the config, tokenizer and weights: an index built with another model is detected.
    pub fingerprint: String,
    /// `model.bpk` and `head.bpk` as read, for the burn modules: loading burn's records keeps
    /// every detail of them (parameter ids too), so a package saved again is the same bytes.
    #[cfg(feature = "burn")]
    records: (Vec<u8>, Option<Vec<u8>>),
}

/// The verdict on one search hit ([`ModelPackage::judge_hits`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HitVerdict {
    /// The energy's similarity of the hit to the query.
    pub similarity: f64,
    /// Whether search flags it a duplicate.
    pub duplicate: bool,
    /// Its margin over the query's background, for packages that flag by margin (when the hits
    /// have a background).
    pub margin: Option<f64>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| EncoderError::io(path, e))
}

fn corrupt(path: &Path, reason: impl std::fmt::Display) -> EncoderError {
    EncoderError::Package { path: path.to_path_buf(), reason: reason.to_string() }
}

impl ModelPackage {
    /// Loads a package. A missing directory or file, unreadable JSON, or weights that do not fit
    /// the config are errors that name the file.
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(corrupt(
                dir,
                "no model package here (expected a directory with config.json, tokenizer.json, model.bpk, metrics.json)",
            ));
        }
        let config_path = dir.join(CONFIG_FILE);
        let config_bytes = read(&config_path)?;
        let checksums = Checksums::read(dir)?;
        checksums.verify(dir, CONFIG_FILE, &config_bytes)?;
        let config: PackageConfig = serde_json::from_slice(&config_bytes).map_err(|e| corrupt(&config_path, e))?;
        if config.format_version != FORMAT_VERSION {
            return Err(corrupt(
                &config_path,
                format!("package format {} but this build reads format {FORMAT_VERSION}", config.format_version),
            ));
        }
        let weights_path = dir.join(WEIGHTS_FILE);
        let weights_bytes = read(&weights_path)?;
        checksums.verify(dir, WEIGHTS_FILE, &weights_bytes)?;
        check_shapes(&config, weights_bytes.len() as u64).map_err(|reason| {
            // Sizes out of range are config.json's fault; a file too small for sane sizes is
            // more likely a damaged model.bpk.
            corrupt(if reason.contains("bytes cannot hold") { &weights_path } else { &config_path }, reason)
        })?;
        let tok_path = dir.join(TOKENIZER_FILE);
        let tok_bytes = read(&tok_path)?;
        checksums.verify(dir, TOKENIZER_FILE, &tok_bytes)?;
        let tok_json = String::from_utf8(tok_bytes.clone()).map_err(|e| corrupt(&tok_path, e))?;
        let mut tokenizer = WordTokenizer::from_json(&tok_json, &tok_path)?;
        tokenizer.set_max_len(config.max_len).map_err(|e| corrupt(&config_path, format!("max_len: {e}")))?;
        if tokenizer.vocab_size() != config.encoder.vocab_size {
            return Err(corrupt(
                &tok_path,
                format!("vocabulary of {} words, but config.json expects {}", tokenizer.vocab_size(), config.encoder.vocab_size),
            ));
        }
        // The bytes already read (and checksummed) are what is decoded: each file is read once.
        let mut weights = Weights::parse(&weights_path, weights_bytes.clone())?;
        let encoder = HostEncoder::from_weights(&config.encoder, &mut weights)?;
        weights.finish()?;
        let metrics_path = dir.join(METRICS_FILE);
        let metrics_bytes = read(&metrics_path)?;
        checksums.verify(dir, METRICS_FILE, &metrics_bytes)?;
        let metrics: serde_json::Value = serde_json::from_slice(&metrics_bytes).map_err(|e| corrupt(&metrics_path, e))?;
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
        let (head, head_record) = match &config.head {
            None => (None, None),
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
                let head_len = std::fs::metadata(&head_path).map_err(|e| EncoderError::io(&head_path, e))?.len();
                check_head_shape(head_config, head_len).map_err(|reason| corrupt(&config_path, reason))?;
                let head_bytes = read(&head_path)?;
                checksums.verify(dir, HEAD_FILE, &head_bytes)?;
                let mut weights = Weights::parse(&head_path, head_bytes.clone())?;
                let head = HostHead::from_weights(head_config, &mut weights)?;
                weights.finish()?;
                let t = metrics
                    .get("head_threshold")
                    .and_then(|t| t.as_f64())
                    .filter(|t| t.is_finite())
                    .ok_or_else(|| corrupt(&metrics_path, "the package has a head but no finite \"head_threshold\" field"))?;
                (Some((head, t)), Some(head_bytes))
            }
        };
        // The head's bytes are kept only for its burn module.
        #[cfg(not(feature = "burn"))]
        drop(head_record);
        let search_threshold = match metrics.get("search_threshold") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .filter(|t| t.is_finite())
                    .ok_or_else(|| corrupt(&metrics_path, "\"search_threshold\" must be a finite number"))?,
            ),
        };
        let search_flag = match metrics.get("search_flag") {
            None | Some(serde_json::Value::Null) => SearchFlag::default_for(head.is_some()),
            Some(v) => {
                let flag: SearchFlag = serde_json::from_value(v.clone())
                    .map_err(|_| corrupt(&metrics_path, "\"search_flag\" must be \"similarity\", \"margin\" or \"head_probability\""))?;
                if search_threshold.is_none() || (flag == SearchFlag::HeadProbability && head.is_none()) {
                    return Err(corrupt(&metrics_path, "\"search_flag\" needs a \"search_threshold\" (and \"head_probability\" a head)"));
                }
                flag
            }
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            tokenizer,
            encoder,
            metrics,
            threshold,
            head,
            search_threshold,
            search_flag,
            fingerprint,
            #[cfg(feature = "burn")]
            records: (weights_bytes, head_record),
        })
    }

    /// The verdict on one pair, the one place every command decides "duplicate": with a verdict
    /// head, its probability (`head_probability`) against the head's threshold; otherwise, or
    /// when no probability was computed, the energy's `distance` against the distance threshold.
    pub fn is_duplicate(&self, distance: f64, head_probability: Option<f32>) -> bool {
        match (&self.head, head_probability) {
            (Some((_, t)), Some(p)) => f64::from(p) >= *t,
            _ => distance <= self.threshold,
        }
    }

    /// The verdicts on one query's search hits (their `distances`, best first, and the head's
    /// `probabilities` when it computed them): with a search threshold, each hit's
    /// [`search_flag`](Self::search_flag) score against it; without one, the pair verdict
    /// [`is_duplicate`](Self::is_duplicate). The margin flag needs the hits ranked
    /// [`search_depth`](Self::search_depth) deep; with too few hits for a background (a tiny
    /// collection) it falls back to the pair verdict too.
    pub fn judge_hits(&self, distances: &[f64], probabilities: Option<&[f32]>) -> Vec<HitVerdict> {
        let energy = self.config.energy;
        let similarities: Vec<f64> = distances.iter().map(|&d| energy.similarity_from_distance(d)).collect();
        let margins = match self.search_flag {
            SearchFlag::Margin => flag::margins(&similarities),
            _ => None,
        };
        let probability = |i: usize| probabilities.map(|p| p[i]);
        (0..distances.len())
            .map(|i| {
                let margin = margins.as_ref().map(|m| m[i]);
                let duplicate = match (self.search_threshold, self.search_flag, probability(i), margin) {
                    (Some(t), SearchFlag::HeadProbability, Some(p), _) => f64::from(p) >= t,
                    (Some(t), SearchFlag::Similarity, _, _) => similarities[i] >= t,
                    (Some(t), SearchFlag::Margin, _, Some(m)) => m >= t,
                    _ => self.is_duplicate(distances[i], probability(i)),
                };
                HitVerdict { similarity: similarities[i], duplicate, margin }
            })
            .collect()
    }

    /// How many hits a search that shows `k` must rank for [`judge_hits`](Self::judge_hits).
    pub fn search_depth(&self, k: usize) -> usize {
        match self.search_threshold {
            Some(_) => self.search_flag.depth(k),
            None => k,
        }
    }

    /// The margin from which search flags a hit, for packages that judge search hits by margin.
    pub fn search_margin_threshold(&self) -> Option<f64> {
        match self.search_flag {
            SearchFlag::Margin => self.search_threshold,
            _ => None,
        }
    }

    /// The similarity from which search flags a hit, for packages that judge search hits by
    /// similarity: the search threshold, else (no head) the pair threshold as a similarity.
    pub fn search_similarity_threshold(&self) -> Option<f64> {
        match (self.search_flag, self.search_threshold) {
            (SearchFlag::HeadProbability | SearchFlag::Margin, _) => None,
            (SearchFlag::Similarity, Some(t)) => Some(t),
            (SearchFlag::Similarity, None) => Some(self.config.energy.similarity_from_distance(self.threshold)),
        }
    }

    /// The head probability from which search flags a hit, for packages that judge search hits
    /// by their head.
    pub fn search_probability_threshold(&self) -> Option<f64> {
        match self.search_flag {
            SearchFlag::HeadProbability => self.head.as_ref().map(|(_, t)| self.search_threshold.unwrap_or(*t)),
            SearchFlag::Similarity | SearchFlag::Margin => None,
        }
    }

    /// The encoder as a burn module on `device`, e.g. to fine-tune it or to encode on wgpu.
    #[cfg(feature = "burn")]
    pub fn encoder_module(&self, device: &Device) -> Result<SentenceEncoder> {
        load_record(self.config.encoder.init(device), &self.records.0, &self.dir.join(WEIGHTS_FILE))
    }

    /// The verdict head as a burn module on `device`, for packages with one.
    #[cfg(feature = "burn")]
    pub fn head_module(&self, device: &Device) -> Result<Option<VerdictHead>> {
        let (Some(config), Some(bytes)) = (&self.config.head, &self.records.1) else { return Ok(None) };
        load_record(config.init(device), bytes, &self.dir.join(HEAD_FILE)).map(Some)
    }

    /// Writes a package to `dir` atomically (a complete temporary sibling, then a rename).
    /// `metrics` must contain a finite `"threshold"`, and with a `head` (whose shape must be
    /// `config.head`) a finite `"head_threshold"` too.
    #[cfg(feature = "burn")]
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
        if metrics.get("search_flag").is_some_and(|v| !v.is_null()) && !finite("search_threshold") {
            return Err(corrupt(dir, "\"search_flag\" needs a finite \"search_threshold\""));
        }
        if metrics.get("search_threshold").is_some_and(|v| !v.is_null()) && !finite("search_threshold") {
            return Err(corrupt(dir, "\"search_threshold\", when given, must be finite"));
        }
        check_target(dir)?;
        let staged = fsio::AtomicDir::create(dir)?;
        let tmp = staged.path();
        let write_json = |name: &str, value: &dyn erased::Json| -> Result<()> {
            let p = tmp.join(name);
            std::fs::write(&p, value.to_json()?).map_err(|e| EncoderError::io(&p, e))
        };
        write_json(CONFIG_FILE, config)?;
        write_json(METRICS_FILE, metrics)?;
        tokenizer.save(&tmp.join(TOKENIZER_FILE))?;
        let wp = tmp.join(WEIGHTS_FILE);
        encoder.clone().into_record().save(&wp).map_err(|e| record_error(&wp, e))?;
        let mut files = vec![CONFIG_FILE, METRICS_FILE, TOKENIZER_FILE, WEIGHTS_FILE];
        if let Some(head) = head {
            let hp = tmp.join(HEAD_FILE);
            head.clone().into_record().save(&hp).map_err(|e| record_error(&hp, e))?;
            files.push(HEAD_FILE);
        }
        Checksums::of(tmp, &files)?.write(tmp)?;
        staged.commit(package_or_refuse)?;
        Ok(())
    }
}

impl ModelPackage {
    /// Replaces the package's `metrics.json` with `metrics`, keeping every other file byte for
    /// byte (so the fingerprint, and every index built with the package, stay valid): a copy
    /// with the new metrics and checksums is built beside it and swapped in atomically.
    pub fn update_metrics(&self, metrics: &serde_json::Value) -> Result<()> {
        let dir = &self.dir;
        let finite = |key: &str| metrics.get(key).and_then(|t| t.as_f64()).is_some_and(f64::is_finite);
        if !finite("threshold") || (self.head.is_some() && !finite("head_threshold")) {
            return Err(corrupt(dir, "new metrics must keep a finite threshold (and head_threshold with a head)"));
        }
        check_target(dir)?;
        let staged = fsio::AtomicDir::create(dir)?;
        let tmp = staged.path();
        let mut files = vec![CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE];
        if self.head.is_some() {
            files.push(HEAD_FILE);
        }
        for name in files.iter().chain(PLOT_FILES) {
            let (from, to) = (dir.join(name), tmp.join(name));
            if from.exists() || files.contains(name) {
                std::fs::copy(&from, &to).map_err(|e| EncoderError::io(&from, e))?;
            }
        }
        let mp = tmp.join(METRICS_FILE);
        std::fs::write(&mp, erased::Json::to_json(metrics)?).map_err(|e| EncoderError::io(&mp, e))?;
        files.push(METRICS_FILE);
        Checksums::of(tmp, &files)?.write(tmp)?;
        staged.commit(package_or_refuse)?;
        Ok(())
    }
}

/// Errors unless `dir` may receive a package: it does not exist, or it is a directory holding
/// a model package and nothing else. The trainer calls this before training, so a bad
/// `--output` fails at once instead of after the last epoch.
pub fn check_target(dir: &Path) -> Result<()> {
    fsio::check_dir_target(dir, package_or_refuse)?;
    Ok(())
}

/// Accepts a directory that holds `config.json` of a package and only package files.
fn package_or_refuse(dir: &Path) -> std::result::Result<(), String> {
    const REFUSE: &str = "refusing to replace it; choose a new directory";
    let config: Option<serde_json::Value> = std::fs::read(dir.join(CONFIG_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if !config.is_some_and(|c| c.get("format_version").is_some() && c.get("encoder").is_some()) {
        return Err(format!("exists and is not a model package (no package config.json); {REFUSE}"));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
    let mut foreign = Vec::new();
    for entry in entries {
        let name = entry.map_err(|e| e.to_string())?.file_name();
        let name = name.to_string_lossy();
        if !PACKAGE_FILES.contains(&name.as_ref()) && !PLOT_FILES.contains(&name.as_ref()) {
            foreign.push(name.into_owned());
        }
    }
    if !foreign.is_empty() {
        foreign.sort();
        return Err(format!("is a model package but also holds {}; {REFUSE}", foreign.join(", ")));
    }
    Ok(())
}

/// Shapes `config.json` asks for, checked before the encoder is built: each within
/// [`limits`], and the parameters must fit the weights file (at two bytes each at the least).
fn check_shapes(config: &PackageConfig, weights_len: u64) -> std::result::Result<(), String> {
    let e = &config.encoder;
    for (name, value, most) in [
        ("encoder.vocab_size", e.vocab_size, limits::VOCAB),
        ("encoder.d_embed", e.d_embed, limits::D_EMBED),
        ("encoder.d_hidden", e.d_hidden, limits::D_HIDDEN),
        ("max_len", config.max_len, limits::MAX_LEN),
    ] {
        if value == 0 || value > most {
            return Err(format!("{name} = {value} is outside 1..={most}"));
        }
    }
    let directions = if e.bidirectional { 2 } else { 1 };
    let lstm = 4 * e.d_hidden * (e.d_embed + e.d_hidden + 1) * directions;
    let params = (e.vocab_size * e.d_embed + lstm) as u64;
    if params * 2 > weights_len {
        return Err(format!("{weights_len} bytes cannot hold the {params} parameters that config.json describes"));
    }
    Ok(())
}

fn check_head_shape(head: &VerdictHeadConfig, head_len: u64) -> std::result::Result<(), String> {
    if head.d_hidden == 0 || head.d_hidden > limits::HEAD_HIDDEN {
        return Err(format!("head.d_hidden = {} is outside 1..={}", head.d_hidden, limits::HEAD_HIDDEN));
    }
    let params = (2 * head.d_input * head.d_hidden + 2 * head.d_hidden + 1) as u64;
    if params * 2 > head_len {
        return Err(format!("{head_len} bytes of head.bpk cannot hold the {params} parameters of the head config.json describes"));
    }
    Ok(())
}

/// `checksums.json`: the XXH3-64 of each file of the package, in hex.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Checksums {
    algorithm: String,
    files: std::collections::BTreeMap<String, String>,
}

impl Checksums {
    const ALGORITHM: &'static str = "xxh3-64";

    fn hash(bytes: &[u8]) -> String {
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
    }

    fn of(dir: &Path, files: &[&str]) -> Result<Self> {
        let mut sums = Self { algorithm: Self::ALGORITHM.into(), files: Default::default() };
        for name in files {
            sums.files.insert(name.to_string(), Self::hash(&read(&dir.join(name))?));
        }
        Ok(sums)
    }

    fn write(&self, dir: &Path) -> Result<()> {
        let p = dir.join(CHECKSUMS_FILE);
        std::fs::write(&p, serde_json::to_string_pretty(self).map_err(|e| EncoderError::Json(e.to_string()))?)
            .map_err(|e| EncoderError::io(&p, e))
    }

    /// The package's checksums; none (nothing to check) for a package older than them.
    fn read(dir: &Path) -> Result<Self> {
        let p = dir.join(CHECKSUMS_FILE);
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(EncoderError::io(&p, e)),
        };
        let sums: Self = serde_json::from_slice(&bytes).map_err(|e| corrupt(&p, e))?;
        if sums.algorithm != Self::ALGORITHM {
            return Err(corrupt(&p, format!("unknown checksum algorithm {:?}", sums.algorithm)));
        }
        Ok(sums)
    }

    fn verify(&self, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
        match self.files.get(name) {
            Some(want) if *want != Self::hash(bytes) => Err(corrupt(
                &dir.join(name),
                "checksum mismatch (checksums.json): the file is damaged or was changed (after an edit on purpose, delete checksums.json)",
            )),
            _ => Ok(()),
        }
    }
}

/// `module` with the weights of the burnpack `bytes` read from `path`.
#[cfg(feature = "burn")]
fn load_record<M: Module>(module: M, bytes: &[u8], path: &Path) -> Result<M> {
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).map_err(|e| record_error(path, e))?;
    module.try_load_record(record).map_err(|e| record_error(path, e))
}

#[cfg(feature = "burn")]
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
