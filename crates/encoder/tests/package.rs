//! A saved package reloads to identical outputs; broken packages give clear errors.

// These tests write packages, which takes the burn model.
#![cfg(feature = "burn")]

use std::path::Path;

use encoder::{Backend, Embedder, EncoderConfig, Energy, ModelPackage, PackageConfig, SearchFlag, VerdictHeadConfig};
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
    // The tests damage packages; a damaged one is no longer a package that saving may replace.
    let _ = std::fs::remove_dir_all(dir);
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
    let first = ModelPackage::load(&dir).unwrap();
    assert_eq!(first.threshold, 0.8);
    let enc0 = first.encoder_module(&device).unwrap();
    let fp = first.fingerprint.clone();
    let a = Embedder::new(first).embed(&TEXTS).unwrap();
    // The host encoder read from the file gives the burn model's vectors.
    let tok = &ModelPackage::load(&dir).unwrap().tokenizer;
    let batch = tok.encode_batch(&TEXTS).unwrap();
    let want = enc0.forward(encoder::BatchTensors::new(&batch, &device)).into_data().try_into_vec::<f32>().unwrap();
    assert_eq!(a.len(), want.len());
    assert!(a.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-5), "{a:?} vs {want:?}");
    // Save what was loaded, load again: same vectors bit for bit, same fingerprint.
    let again = tmp.path().join("pkg2");
    let p = ModelPackage::load(&dir).unwrap();
    ModelPackage::save(&again, &p.config, &p.tokenizer, &enc0, None, &p.metrics).unwrap();
    let second = ModelPackage::load(&again).unwrap();
    assert_eq!(second.fingerprint, fp);
    let b = Embedder::new(second).embed(&TEXTS).unwrap();
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
    let plain = ModelPackage::load(&dir).unwrap();
    let plain_encoder = plain.encoder_module(&device).unwrap();
    assert!(plain.head.is_none());
    // An older package's config.json has no "head" key and still reads the same.
    let json = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(!json.contains("\"head\""), "{json}");

    config.head = Some(VerdictHeadConfig::new(config.encoder.d_output()).with_d_hidden(5).with_input_scale(3.0));
    let head = config.head.as_ref().unwrap().init(&device);
    let metrics = serde_json::json!({"threshold": 0.8, "head_threshold": 0.6});
    // A head without its threshold, or a config that does not describe it, is refused.
    let no_t = serde_json::json!({"threshold": 0.8});
    assert!(ModelPackage::save(&dir, &config, &tok, &plain_encoder, Some(&head), &no_t).is_err());
    assert!(ModelPackage::save(&dir, &plain.config, &tok, &plain_encoder, Some(&head), &metrics).is_err());
    ModelPackage::save(&dir, &config, &tok, &plain_encoder, Some(&head), &metrics).unwrap();

    let loaded = ModelPackage::load(&dir).unwrap();
    let (h, t) = loaded.head.as_ref().expect("head loaded");
    assert_eq!(*t, 0.6);
    let a: Vec<f32> = (0..24).map(|i| (i as f32 * 0.37).sin()).collect();
    let b: Vec<f32> = (0..24).map(|i| (i as f32 * 0.91).cos()).collect();
    let d = config.encoder.d_output();
    let n = a.len() / d;
    let pair = |i: usize| (&a[i * d..(i + 1) * d], &b[i * d..(i + 1) * d]);
    // The host head read from head.bpk gives the burn head's probabilities, and the burn module
    // rebuilt from the package is the saved one exactly.
    let want = head.probabilities(n, pair, &device);
    let got = h.probabilities(n, pair);
    assert!(got.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-6), "{got:?} vs {want:?}");
    assert_eq!(loaded.head_module(&device).unwrap().unwrap().probabilities(n, pair, &device), want);

    std::fs::remove_file(dir.join("head.bpk")).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("head.bpk"), "{e}");

    std::fs::remove_dir_all(&dir).unwrap();
    ModelPackage::save(&dir, &config, &tok, &plain_encoder, Some(&head), &metrics).unwrap();
    std::fs::remove_file(dir.join("checksums.json")).unwrap();
    config.head = Some(VerdictHeadConfig::new(config.encoder.d_output() + 1));
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("config.json") && e.contains("head reads vectors of width"), "{e}");
}

fn load_err(dir: &Path) -> String {
    ModelPackage::load(dir).unwrap_err().to_string()
}

#[test]
fn missing_or_corrupt_packages_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pkg");
    assert!(load_err(&dir).contains("no model package here"));
    let (mut config, _) = sample(&dir);

    std::fs::write(dir.join("model.bpk"), b"definitely not burnpack").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("model.bpk") && e.contains("checksum mismatch"), "{e}");
    std::fs::remove_file(dir.join("checksums.json")).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("model.bpk") && e.contains("cannot hold"), "{e}");
    let mut long = std::fs::read(dir.join("config.json")).unwrap();
    long.resize(1 << 16, b' ');
    std::fs::write(dir.join("model.bpk"), long).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("model.bpk") && e.contains("unreadable weights"), "{e}");

    // The checks below read what files say; each test package drops its checksums so that
    // those checks, not the checksum, are what answers (as for packages older than checksums).
    let unsealed = |dir: &Path| {
        sample(dir);
        std::fs::remove_file(dir.join("checksums.json")).unwrap();
    };
    unsealed(&dir);
    std::fs::write(dir.join("config.json"), b"{ broken").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("config.json"), "{e}");

    // Weights of another shape than config.json says.
    unsealed(&dir);
    config.encoder.d_hidden = 7;
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("model.bpk") && e.contains("do not fit"), "{e}");

    sample(&dir);
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("tokenizer.json"), "{e}");

    unsealed(&dir);
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

#[test]
fn flipped_bytes_are_caught_by_the_checksums_and_old_packages_still_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pkg");
    sample(&dir);
    let sums: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("checksums.json")).unwrap()).unwrap();
    for f in ["config.json", "tokenizer.json", "model.bpk", "metrics.json"] {
        assert!(sums["files"][f].is_string(), "{f} is covered: {sums}");
    }
    for f in ["model.bpk", "tokenizer.json", "metrics.json", "config.json"] {
        sample(&dir);
        let mut bytes = std::fs::read(dir.join(f)).unwrap();
        let at = bytes.len() * 2 / 3;
        bytes[at] ^= 0x01;
        std::fs::write(dir.join(f), &bytes).unwrap();
        let e = load_err(&dir);
        assert!(e.contains(f) && e.contains("checksum mismatch"), "{f}: {e}");
    }
    // A package written before checksums existed loads as it did.
    sample(&dir);
    let fingerprint = ModelPackage::load(&dir).unwrap().fingerprint;
    std::fs::remove_file(dir.join("checksums.json")).unwrap();
    assert_eq!(ModelPackage::load(&dir).unwrap().fingerprint, fingerprint);
}

#[test]
fn absurd_shapes_in_config_json_are_refused_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pkg");
    for (field, value, needle) in [
        ("d_hidden", 1usize << 40, "encoder.d_hidden"),
        ("d_hidden", 4096, "parameters"),
        ("vocab_size", 1 << 24, "parameters"),
        ("d_embed", 0, "encoder.d_embed"),
    ] {
        let (mut config, _) = sample(&dir);
        std::fs::remove_file(dir.join("checksums.json")).unwrap();
        match field {
            "d_hidden" => config.encoder.d_hidden = value,
            "vocab_size" => config.encoder.vocab_size = value,
            _ => config.encoder.d_embed = value,
        }
        std::fs::write(dir.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
        let e = load_err(&dir);
        assert!(e.contains("config.json") && e.contains(needle), "{field} = {value}: {e}");
    }
    let (mut config, _) = sample(&dir);
    std::fs::remove_file(dir.join("checksums.json")).unwrap();
    config.max_len = 0;
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("pkg") && e.contains("config.json") && e.contains("max_len"), "{e}");
}

#[test]
fn saving_replaces_a_package_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, tok) = sample(&tmp.path().join("first"));
    let device = Backend::Flex.device();
    let enc = config.encoder.init(&device);
    let metrics = serde_json::json!({"threshold": 0.5});
    let save = |dir: &Path| ModelPackage::save(dir, &config, &tok, &enc, None, &metrics);

    // A folder of the user's is never replaced, nor a file.
    let folder = tmp.path().join("data");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("precious.csv"), "a,b").unwrap();
    let e = save(&folder).unwrap_err().to_string();
    assert!(e.contains("data") && e.contains("not a model package"), "{e}");
    assert_eq!(std::fs::read_to_string(folder.join("precious.csv")).unwrap(), "a,b");
    let file = tmp.path().join("file.txt");
    std::fs::write(&file, "x").unwrap();
    assert!(save(&file).unwrap_err().to_string().contains("file.txt"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");

    // A package that also holds a file of the user's is not replaced either.
    let pkg = tmp.path().join("pkg");
    save(&pkg).unwrap();
    std::fs::write(pkg.join("notes.txt"), "mine").unwrap();
    let e = save(&pkg).unwrap_err().to_string();
    assert!(e.contains("notes.txt"), "{e}");
    assert_eq!(std::fs::read_to_string(pkg.join("notes.txt")).unwrap(), "mine");

    // A package is replaced, atomically, and nothing is left beside it.
    std::fs::remove_file(pkg.join("notes.txt")).unwrap();
    let metrics = serde_json::json!({"threshold": 0.25});
    ModelPackage::save(&pkg, &config, &tok, &enc, None, &metrics).unwrap();
    assert_eq!(ModelPackage::load(&pkg).unwrap().threshold, 0.25);
    let names: Vec<String> =
        std::fs::read_dir(tmp.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.starts_with(fsio::TEMP_PREFIX)), "{names:?}");
}

/// The search verdict on a query's only hit, at `distance`.
fn flags(p: &ModelPackage, distance: f64, probability: Option<f32>) -> bool {
    let probabilities = probability.map(|p| vec![p]);
    let verdicts = p.judge_hits(&[distance], probabilities.as_deref());
    assert_eq!(verdicts[0].margin, None, "one hit has no background");
    verdicts[0].duplicate
}

#[test]
fn a_search_threshold_round_trips_and_older_packages_fall_back_to_the_pair_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, tok) = sample(&tmp.path().join("plain"));
    let device = Backend::Flex.device();
    let plain = ModelPackage::load(&tmp.path().join("plain")).unwrap();
    let plain_encoder = plain.encoder_module(&device).unwrap();
    // No search threshold: search judges exactly as the pair verdict.
    assert_eq!(plain.search_threshold, None);
    for d in [0.1, 0.7, 0.9, 1.3] {
        assert_eq!(flags(&plain, d, None), plain.is_duplicate(d, None), "distance {d}");
    }
    assert_eq!(plain.search_similarity_threshold(), Some(Energy::Euclidean.similarity_from_distance(0.8)));

    let dir = tmp.path().join("calibrated");
    let metrics = serde_json::json!({"threshold": 0.8, "search_threshold": 0.9});
    ModelPackage::save(&dir, &config, &tok, &plain_encoder, None, &metrics).unwrap();
    let p = ModelPackage::load(&dir).unwrap();
    assert_eq!(p.search_threshold, Some(0.9));
    assert_eq!(p.search_similarity_threshold(), Some(0.9));
    // Euclidean on unit vectors: similarity = 1 − d²/2, so the nearer distance clears the
    // search threshold and the farther one does not, though the pair threshold calls both
    // duplicates.
    assert!(flags(&p, 0.4, None) && p.is_duplicate(0.4, None));
    assert!(!flags(&p, 0.5, None) && p.is_duplicate(0.5, None));

    // A search threshold that is not a number is refused on save and named on load.
    let bad = serde_json::json!({"threshold": 0.8, "search_threshold": "high"});
    assert!(ModelPackage::save(&tmp.path().join("bad"), &config, &tok, &plain_encoder, None, &bad).is_err());
    std::fs::remove_file(dir.join("checksums.json")).unwrap();
    std::fs::write(dir.join("metrics.json"), serde_json::to_vec(&bad).unwrap()).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("metrics.json") && e.contains("search_threshold"), "{e}");
}

#[test]
fn updating_metrics_keeps_every_other_byte_and_the_fingerprint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pkg");
    sample(&dir);
    std::fs::write(dir.join("training.svg"), "<svg/>").unwrap();
    let before = ModelPackage::load(&dir).unwrap();
    let weights = std::fs::read(dir.join("model.bpk")).unwrap();
    let mut metrics = before.metrics.clone();
    metrics["search_threshold"] = serde_json::json!(0.93);
    before.update_metrics(&metrics).unwrap();
    let after = ModelPackage::load(&dir).unwrap();
    assert_eq!(after.search_threshold, Some(0.93));
    assert_eq!(after.fingerprint, before.fingerprint);
    assert_eq!(std::fs::read(dir.join("model.bpk")).unwrap(), weights);
    assert_eq!(std::fs::read_to_string(dir.join("training.svg")).unwrap(), "<svg/>");
    // Metrics without a threshold are refused, and the package is unchanged.
    assert!(after.update_metrics(&serde_json::json!({"search_threshold": 0.5})).is_err());
    assert_eq!(ModelPackage::load(&dir).unwrap().search_threshold, Some(0.93));
}

#[test]
fn a_package_with_a_head_may_flag_search_hits_by_similarity() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut config, tok) = sample(&tmp.path().join("plain"));
    let device = Backend::Flex.device();
    let plain = ModelPackage::load(&tmp.path().join("plain")).unwrap();
    let plain_encoder = plain.encoder_module(&device).unwrap();
    config.head = Some(VerdictHeadConfig::new(config.encoder.d_output()).with_d_hidden(5));
    let head = config.head.as_ref().unwrap().init(&device);
    let save = |name: &str, metrics: serde_json::Value| {
        let dir = tmp.path().join(name);
        ModelPackage::save(&dir, &config, &tok, &plain_encoder, Some(&head), &metrics).map(|_| dir)
    };
    // Without a flag, a head package flags search hits by the head's probability.
    let dir = save("by-head", serde_json::json!({"threshold": 0.8, "head_threshold": 0.6, "search_threshold": 0.95})).unwrap();
    let p = ModelPackage::load(&dir).unwrap();
    assert_eq!(
        (p.search_flag, p.search_probability_threshold(), p.search_similarity_threshold()),
        (SearchFlag::HeadProbability, Some(0.95), None)
    );
    assert!(flags(&p, 1.9, Some(0.96)) && !flags(&p, 0.1, Some(0.94)));
    // With "similarity", the same threshold applies to the similarity and the head is ignored
    // in search (Euclidean on unit vectors: similarity = 1 − d²/2), but still judges pairs.
    let metrics = serde_json::json!({"threshold": 0.8, "head_threshold": 0.6, "search_threshold": 0.95, "search_flag": "similarity"});
    let p = ModelPackage::load(&save("by-similarity", metrics).unwrap()).unwrap();
    assert_eq!(
        (p.search_flag, p.search_probability_threshold(), p.search_similarity_threshold()),
        (SearchFlag::Similarity, None, Some(0.95))
    );
    assert!(flags(&p, 0.3, Some(0.0)) && !flags(&p, 0.4, Some(1.0)));
    assert!(p.is_duplicate(0.4, Some(1.0)));
    // A flag needs a threshold; an unknown flag is named.
    assert!(save("no-threshold", serde_json::json!({"threshold": 0.8, "head_threshold": 0.6, "search_flag": "similarity"})).is_err());
    let dir = save("odd", serde_json::json!({"threshold": 0.8, "head_threshold": 0.6, "search_threshold": 0.9})).unwrap();
    std::fs::remove_file(dir.join("checksums.json")).unwrap();
    let odd = serde_json::json!({"threshold": 0.8, "head_threshold": 0.6, "search_threshold": 0.9, "search_flag": "vibes"});
    std::fs::write(dir.join("metrics.json"), serde_json::to_vec(&odd).unwrap()).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("metrics.json") && e.contains("search_flag"), "{e}");
}

#[test]
fn a_margin_package_flags_hits_that_stand_out_from_the_query_background() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, tok) = sample(&tmp.path().join("plain"));
    let plain = ModelPackage::load(&tmp.path().join("plain")).unwrap();
    let plain_encoder = plain.encoder_module(&Backend::Flex.device()).unwrap();
    assert_eq!((plain.search_depth(5), plain.search_margin_threshold()), (5, None), "only a margin package looks deeper");
    let dir = tmp.path().join("margin");
    let metrics = serde_json::json!({"threshold": 0.8, "search_threshold": 0.2, "search_flag": "margin"});
    ModelPackage::save(&dir, &config, &tok, &plain_encoder, None, &metrics).unwrap();
    let p = ModelPackage::load(&dir).unwrap();
    assert_eq!(p.search_flag, SearchFlag::Margin);
    assert_eq!((p.search_margin_threshold(), p.search_similarity_threshold(), p.search_probability_threshold()), (Some(0.2), None, None));
    assert_eq!((p.search_depth(5), p.search_depth(40)), (15, 40));
    // Euclidean on unit vectors: similarity = 1 − d²/2. Three near hits, then twelve equal
    // ones that make the whole background, so each margin is the hit's similarity minus
    // theirs. Only the nearest stands out by the threshold, though the pair threshold calls
    // every hit a duplicate.
    let mut distances = vec![0.2, 0.6, 0.7];
    distances.extend([0.8; 12]);
    let verdicts = p.judge_hits(&distances, None);
    assert_eq!(verdicts.iter().map(|v| v.duplicate).collect::<Vec<_>>(), [[true].as_slice(), &[false; 14]].concat());
    let margins: Vec<f64> = verdicts.iter().map(|v| v.margin.unwrap()).collect();
    for (m, want) in margins.iter().zip([0.30, 0.14, 0.075, 0.0]) {
        assert!((m - want).abs() < 1e-9, "{margins:?}");
    }
    assert!(distances.iter().all(|&d| p.is_duplicate(d, None)));
    // Too few hits for a background (a tiny collection): the pair verdict, and no margin.
    let few = p.judge_hits(&[0.2, 0.6, 0.9], None);
    assert_eq!(few.iter().map(|v| (v.duplicate, v.margin)).collect::<Vec<_>>(), [(true, None), (true, None), (false, None)]);
    // A margin flag needs a threshold.
    let bad = serde_json::json!({"threshold": 0.8, "search_flag": "margin"});
    assert!(ModelPackage::save(&tmp.path().join("bad"), &config, &tok, &plain_encoder, None, &bad).is_err());
}
