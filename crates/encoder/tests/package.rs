//! A saved package reloads to identical outputs; broken packages give clear errors.

use std::path::Path;

use encoder::{Backend, Embedder, Energy, EncoderConfig, ModelPackage, PackageConfig, VerdictHeadConfig};
use tokenize::{VocabOptions, WordTokenizer};

fn sample(dir: &Path) -> (PackageConfig, WordTokenizer) {
    let tok = WordTokenizer::build(
        ["how do i learn rust", "what is the best way to learn rust", "is coffee bad for you"],
        &VocabOptions::default(),
        &[],
    )
    .unwrap();
    let config = PackageConfig {
        format_version: encoder::package::FORMAT_VERSION,
        encoder: EncoderConfig::new(tok.vocab_size()).with_d_embed(8).with_d_hidden(12),
        energy: Energy::Euclidean,
        max_len: 48,
        training: serde_json::json!({"note": "test"}),
        head: None,
    };
    let device = Backend::Flex.device();
    let enc = config.encoder.init(&device);
    ModelPackage::save(dir, &config, &tok, &enc, None, &serde_json::json!({"threshold": 0.8})).unwrap();
    (config, tok)
}

const TEXTS: [&str; 3] = ["how do i learn rust quickly", "is tea bad for you", ""];

#[test]
fn saved_package_reloads_to_identical_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pkg");
    sample(&dir);
    let device = Backend::Flex.device();
    let first = ModelPackage::load(&dir, &device).unwrap();
    assert_eq!(first.threshold, 0.8);
    let enc0 = first.encoder.clone();
    let fp = first.fingerprint.clone();
    let a = Embedder::new(first, device.clone()).embed(&TEXTS).unwrap();
    // Save what was loaded, load again: same vectors bit for bit, same fingerprint.
    let again = tmp.path().join("pkg2");
    let p = ModelPackage::load(&dir, &device).unwrap();
    ModelPackage::save(&again, &p.config, &p.tokenizer, &enc0, None, &p.metrics).unwrap();
    let second = ModelPackage::load(&again, &device).unwrap();
    assert_eq!(second.fingerprint, fp);
    let b = Embedder::new(second, device).embed(&TEXTS).unwrap();
    assert_eq!(a, b);
    // Saving over an existing package replaces it and leaves no temporary directory behind.
    sample(&dir);
    let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_verdict_head_round_trips_and_its_absence_or_damage_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pkg");
    let (mut config, tok) = sample(&dir);
    let device = Backend::Flex.device();
    let plain = ModelPackage::load(&dir, &device).unwrap();
    assert!(plain.head.is_none());
    // An older package's config.json has no "head" key and still reads the same.
    let json = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(!json.contains("\"head\""), "{json}");

    config.head = Some(VerdictHeadConfig::new(config.encoder.d_output()).with_d_hidden(5).with_input_scale(3.0));
    let head = config.head.as_ref().unwrap().init(&device);
    let metrics = serde_json::json!({"threshold": 0.8, "head_threshold": 0.6});
    // A head without its threshold, or a config that does not describe it, is refused.
    let no_t = serde_json::json!({"threshold": 0.8});
    assert!(ModelPackage::save(&dir, &config, &tok, &plain.encoder, Some(&head), &no_t).is_err());
    assert!(ModelPackage::save(&dir, &plain.config, &tok, &plain.encoder, Some(&head), &metrics).is_err());
    ModelPackage::save(&dir, &config, &tok, &plain.encoder, Some(&head), &metrics).unwrap();

    let loaded = ModelPackage::load(&dir, &device).unwrap();
    let (h, t) = loaded.head.as_ref().expect("head loaded");
    assert_eq!(*t, 0.6);
    let a: Vec<f32> = (0..24).map(|i| (i as f32 * 0.37).sin()).collect();
    let b: Vec<f32> = (0..24).map(|i| (i as f32 * 0.91).cos()).collect();
    let d = config.encoder.d_output();
    let n = a.len() / d;
    let pair = |i: usize| (&a[i * d..(i + 1) * d], &b[i * d..(i + 1) * d]);
    assert_eq!(h.probabilities(n, pair, &device), head.probabilities(n, pair, &device));

    std::fs::remove_file(dir.join("head.bpk")).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("head.bpk"), "{e}");

    ModelPackage::save(&dir, &config, &tok, &plain.encoder, Some(&head), &metrics).unwrap();
    config.head = Some(VerdictHeadConfig::new(config.encoder.d_output() + 1));
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("config.json") && e.contains("head reads vectors of width"), "{e}");
}

fn load_err(dir: &Path) -> String {
    ModelPackage::load(dir, &Backend::Flex.device()).unwrap_err().to_string()
}

#[test]
fn missing_or_corrupt_packages_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pkg");
    assert!(load_err(&dir).contains("no model package here"));
    let (mut config, _) = sample(&dir);

    std::fs::write(dir.join("model.bpk"), b"definitely not burnpack").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("model.bpk") && e.contains("unreadable weights"), "{e}");

    sample(&dir);
    std::fs::write(dir.join("config.json"), b"{ broken").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("config.json"), "{e}");

    // Weights of another shape than config.json says.
    sample(&dir);
    config.encoder.d_hidden = 7;
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("model.bpk") && e.contains("do not fit"), "{e}");

    sample(&dir);
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("tokenizer.json"), "{e}");

    sample(&dir);
    std::fs::write(dir.join("metrics.json"), b"{}").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("metrics.json") && e.contains("threshold"), "{e}");
}

#[cfg(unix)]
#[test]
fn saved_packages_are_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pkg");
    sample(&dir);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o755);
    assert_eq!(mode(&dir.join("tokenizer.json")), 0o644);
}
