//! Helpers shared by the retrieve integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use encoder::{Backend, EncoderConfig, Energy, ModelPackage, PackageConfig, VerdictHeadConfig};
use tokenize::{VocabOptions, WordTokenizer};

/// The crate's folder, as cargo names it when it runs the test (read at run time: a test binary
/// reused from another checkout that shares the target dir would carry that checkout's path).
fn crate_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    crate_dir().join("tests/fixtures")
}

/// The repository: the shipped model and corpus.
pub fn repo() -> PathBuf {
    crate_dir().join("../..")
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

/// One request; returns the status and the body.
pub fn http(addr: &str, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{auth}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) before reading a body it refuses; that is not a test failure.
    let _ = s.write_all(body.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

pub fn json(body: &str) -> serde_json::Value {
    let start = body.find(['{', '[']).unwrap_or_else(|| panic!("no JSON in {body:?}"));
    let end = body.rfind(['}', ']']).unwrap();
    serde_json::from_str(&body[start..=end]).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

/// Starts `retrieve serve` on a free loopback port; returns the child and its address.
pub fn start(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_retrieve"))
        .arg("serve")
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve exited before listening").unwrap();
        if let Some(rest) = line.strip_prefix("listening on http://") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining standard error so the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// A child process killed when the value goes, so that a failing test leaves no server behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
