//! Property tests over the package loader: whatever `config.json` or `metrics.json` says, and
//! whatever bytes the weights hold, loading is an error naming the file or a working model —
//! never a panic, and never an allocation the files cannot back. Bounded for CI (64 cases);
//! `PROPTEST_CASES=N` runs longer.

// These tests write packages, which takes the burn model.
#![cfg(feature = "burn")]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use encoder::{Backend, EncoderConfig, Energy, ModelPackage, PackageConfig};
use proptest::prelude::*;
use tokenize::{VocabOptions, WordTokenizer};

fn config() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 64;
    }
    c.failure_persistence = None;
    c
}

/// One real package, copied for each case.
fn original() -> &'static (tempfile::TempDir, PathBuf, PackageConfig) {
    static P: OnceLock<(tempfile::TempDir, PathBuf, PackageConfig)> = OnceLock::new();
    P.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let tok = WordTokenizer::build(["how do i learn rust", "is coffee bad for you"], &VocabOptions::default(), &[]).unwrap();
        let config = PackageConfig {
            format_version: encoder::package::FORMAT_VERSION,
            encoder: EncoderConfig::new(tok.vocab_size()).with_d_embed(4).with_d_hidden(6),
            energy: Energy::Euclidean,
            max_len: 16,
            training: serde_json::Value::Null,
            head: None,
        };
        let dir = tmp.path().join("pkg");
        let enc = config.encoder.init(&Backend::Flex.device());
        ModelPackage::save(&dir, &config, &tok, &enc, None, &serde_json::json!({"threshold": 0.5})).unwrap();
        (tmp, dir, config)
    })
}

fn copy(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(&original().1).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    // Without checksums, every other check is reached.
    std::fs::remove_file(to.join("checksums.json")).unwrap();
}

fn check(dir: &Path) {
    if let Err(e) = ModelPackage::load(dir) {
        let e = e.to_string();
        assert!(e.contains("pkg"), "the error names the package or its file: {e}");
    }
}

/// Sizes that probe every limit: zero, small, the largest plausible, and absurd.
fn size() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 1u64..64, Just(8192), Just(1 << 31), Just(u64::MAX), any::<u64>()]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_shape_in_config_json_loads_or_is_refused(
        vocab in size(), d_embed in size(), d_hidden in size(), max_len in size(),
        bidirectional in any::<bool>(),
        head in prop::option::of((size(), size())),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pkg");
        copy(&dir);
        let mut c = serde_json::to_value(&original().2).unwrap();
        c["encoder"]["vocab_size"] = vocab.into();
        c["encoder"]["d_embed"] = d_embed.into();
        c["encoder"]["d_hidden"] = d_hidden.into();
        c["encoder"]["bidirectional"] = bidirectional.into();
        c["max_len"] = max_len.into();
        if let Some((d_input, hidden)) = head {
            c["head"] = serde_json::json!({"d_input": d_input, "d_hidden": hidden, "seed": 1, "input_scale": 1.0});
            std::fs::write(dir.join("head.bpk"), b"not weights").unwrap();
        }
        std::fs::write(dir.join("config.json"), serde_json::to_vec(&c).unwrap()).unwrap();
        check(&dir);
    }

    #[test]
    fn arbitrary_package_files_are_errors_not_panics(
        which in prop::sample::select(vec!["config.json", "metrics.json", "tokenizer.json", "model.bpk"]),
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        splice in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pkg");
        copy(&dir);
        let target = dir.join(which);
        let new = if splice {
            // The real file with a stretch overwritten: mostly well-formed, subtly wrong.
            let mut real = std::fs::read(&target).unwrap();
            let at = real.len() / 3;
            for (i, b) in bytes.iter().enumerate() {
                if let Some(slot) = real.get_mut(at + i) {
                    *slot = *b;
                }
            }
            real
        } else {
            bytes
        };
        std::fs::write(&target, new).unwrap();
        check(&dir);
    }
}
