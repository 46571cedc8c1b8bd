//! Helpers shared by the retrieve integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use encoder::{Backend, EncoderConfig, Energy, ModelPackage, PackageConfig, VerdictHeadConfig};
use tokenize::{VocabOptions, WordTokenizer};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A small, untrained but real model package (random weights from `seed`), with a threshold
/// that makes identical sentences duplicates.
pub fn tiny_package(dir: &Path, seed: u64, d_hidden: usize) -> PathBuf {
    tiny_package_with(dir, seed, d_hidden, None)
}

/// [`tiny_package`] with a random verdict head calling pairs duplicates from probability
/// `head_threshold`, when one is given.
pub fn tiny_package_with(dir: &Path, seed: u64, d_hidden: usize, head_threshold: Option<f64>) -> PathBuf {
    let text = std::fs::read_to_string(fixtures().join("sentences.txt")).unwrap();
    let tok = WordTokenizer::build(text.lines(), &VocabOptions::default(), &[]).unwrap();
    let config = PackageConfig {
        format_version: encoder::package::FORMAT_VERSION,
        encoder: EncoderConfig::new(tok.vocab_size()).with_d_embed(16).with_d_hidden(d_hidden).with_seed(seed),
        energy: Energy::Euclidean,
        max_len: 48,
        training: serde_json::Value::Null,
        head: None,
    };
    let config = PackageConfig {
        head: head_threshold.map(|_| VerdictHeadConfig::new(config.encoder.d_output()).with_d_hidden(8).with_seed(seed)),
        ..config
    };
    let device = Backend::Flex.device();
    let enc = config.encoder.init(&device);
    let head = config.head.as_ref().map(|c| c.init(&device));
    let out = dir.join(format!("model-{seed}-{d_hidden}{}", if head.is_some() { "-head" } else { "" }));
    let metrics = match head_threshold {
        Some(t) => serde_json::json!({"threshold": 0.05, "head_threshold": t}),
        None => serde_json::json!({"threshold": 0.05}),
    };
    ModelPackage::save(&out, &config, &tok, &enc, head.as_ref(), &metrics).unwrap();
    out
}

pub fn retrieve(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_retrieve")).args(args).arg("--quiet").output().unwrap()
}

pub fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
