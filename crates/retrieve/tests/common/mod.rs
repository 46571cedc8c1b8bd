//! Helpers shared by the retrieve integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use encoder::{Backend, EncoderConfig, Energy, ModelPackage, PackageConfig};
use tokenize::{VocabOptions, WordTokenizer};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A small, untrained but real model package (random weights from `seed`), with a threshold
/// that makes identical sentences duplicates.
pub fn tiny_package(dir: &Path, seed: u64, d_hidden: usize) -> PathBuf {
    let text = std::fs::read_to_string(fixtures().join("sentences.txt")).unwrap();
    let tok = WordTokenizer::build(text.lines(), &VocabOptions::default(), &[]).unwrap();
    let config = PackageConfig {
        format_version: encoder::package::FORMAT_VERSION,
        encoder: EncoderConfig::new(tok.vocab_size()).with_d_embed(16).with_d_hidden(d_hidden).with_seed(seed),
        energy: Energy::Euclidean,
        max_len: 48,
        training: serde_json::Value::Null,
    };
    let enc = config.encoder.init(&Backend::Flex.device());
    let out = dir.join(format!("model-{seed}-{d_hidden}"));
    ModelPackage::save(&out, &config, &tok, &enc, &serde_json::json!({"threshold": 0.05})).unwrap();
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
