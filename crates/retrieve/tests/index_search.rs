//! `retrieve index`, `add`, search and the default-corpus cache, end to end.

mod common;

use common::*;
use encoder::{Backend, Embedder, ModelPackage};
use retrieve::search::{top_k, top_k_batch, top_k_naive};
use retrieve::{Index, VectorKind};

#[test]
fn search_returns_the_same_top_k_as_the_naive_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 1, 24);
    let idx_path = tmp.path().join("s.idx");
    ok(&retrieve(&["index", s(&fixtures().join("sentences.txt")), "--index", s(&idx_path), "--model", s(&model)]));
    let index = Index::load(&idx_path).unwrap();
    assert_eq!(index.len(), 21);

    let query = "how to cook rice well";
    let out = ok(&retrieve(&["search", query, "--index", s(&idx_path), "--model", s(&model), "-k", "6", "--json"]));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let got: Vec<&str> = json["queries"][0]["results"].as_array().unwrap().iter().map(|r| r["sentence"].as_str().unwrap()).collect();

    let embedder = Embedder::new(ModelPackage::load(&model).unwrap());
    let q = embedder.embed(&[query]).unwrap();
    let (vectors, rows) = index.live_vectors();
    let want: Vec<&str> = top_k_naive(&vectors, index.dim(), &q, 6).iter().map(|h| index.sentence(rows[h.index])).collect();
    assert_eq!(got, want);
    // The repeated sentence in the corpus scores exactly like its twin.
    let dup = "How do I learn to cook rice?";
    let out = ok(&retrieve(&["search", dup, "--index", s(&idx_path), "--model", s(&model), "-k", "2", "--json"]));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    for r in json["queries"][0]["results"].as_array().unwrap() {
        assert_eq!(r["sentence"], dup);
        assert_eq!(r["duplicate"], true);
    }
}

/// `retrieve index --vectors i8` writes a format-4 index a fraction of the size, whose search
/// returns the sentences exact search over its stored (dequantised) vectors ranks first, with
/// similarities close to the f32 index's; `add` and `compact` keep it i8.
#[test]
fn an_i8_index_searches_like_the_f32_one() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 3, 24);
    let corpus = fixtures().join("sentences.txt");
    let (p8, p32) = (tmp.path().join("q8.idx"), tmp.path().join("q32.idx"));
    ok(&retrieve(&["index", s(&corpus), "--index", s(&p8), "--model", s(&model), "--vectors", "i8"]));
    ok(&retrieve(&["index", s(&corpus), "--index", s(&p32), "--model", s(&model)]));
    let (i8_index, f32_index) = (Index::load(&p8).unwrap(), Index::load(&p32).unwrap());
    assert_eq!((i8_index.header.format, i8_index.header.vectors), (4, VectorKind::I8));
    assert_eq!(f32_index.header.vectors, VectorKind::F32);
    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    assert!(size(&p8) < size(&p32), "{} bytes against {}", size(&p8), size(&p32));

    let query = "how to cook rice well";
    let search = |p: &std::path::Path| {
        let out = ok(&retrieve(&["search", query, "--index", s(p), "--model", s(&model), "-k", "5", "--json"]));
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        json["queries"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["sentence"].as_str().unwrap().to_string(), r["similarity"].as_f64().unwrap()))
            .collect::<Vec<_>>()
    };
    let (got8, got32) = (search(&p8), search(&p32));
    let q = Embedder::new(ModelPackage::load(&model).unwrap()).embed(&[query]).unwrap();
    let (vectors, rows) = i8_index.live_vectors();
    let want: Vec<&str> = top_k_naive(&vectors, i8_index.dim(), &q, 5).iter().map(|h| i8_index.sentence(rows[h.index])).collect();
    assert_eq!(got8.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), want);
    for ((t8, s8), (t32, s32)) in got8.iter().zip(&got32) {
        // The same sentence scores within the quantisation's reach of its f32 score.
        let other = got32.iter().find(|(t, _)| t == t8).map_or(*s32, |(_, s)| *s);
        assert!((s8 - other).abs() < 0.02, "{t8}: {s8} against {other} ({t32})");
    }

    let extra = tmp.path().join("extra.txt");
    std::fs::write(&extra, "What is the best pizza topping?\n").unwrap();
    ok(&retrieve(&["add", s(&extra), "--index", s(&p8), "--model", s(&model)]));
    ok(&retrieve(&["compact", "--index", s(&p8), "--model", s(&model)]));
    let back = Index::load(&p8).unwrap();
    assert_eq!((back.header.vectors, back.len()), (VectorKind::I8, i8_index.len() + 1));
    for r in 0..i8_index.len() {
        assert_eq!(back.vector(r), i8_index.vector(r), "row {r} changed in compaction");
    }
}

/// `--graph-links`, `--graph-candidates` and `--graph-codes` shape the graph `retrieve index`
/// builds, and `compact` rebuilds it with the same settings.
#[test]
fn graph_settings_are_kept_when_compact_rebuilds_the_graph() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 4, 16);
    let p = tmp.path().join("g.idx");
    let args = ["--graph", "approx", "--graph-links", "6", "--graph-candidates", "40", "--graph-codes", "b1"];
    ok(&retrieve(&[&["index", s(&fixtures().join("sentences.txt")), "--index", s(&p), "--model", s(&model)][..], &args[..]].concat()));
    let params = || retrieve::Ann::saved_params(&p).unwrap();
    assert_eq!((params().connectivity, params().expansion_add, params().codes), (6, 40, retrieve::GraphCodes::B1));
    // Searched through the b1 graph (which, this small, re-scores every item), a stored
    // sentence finds itself first.
    let out = ok(&retrieve(&[
        "search",
        "Why is the sky blue?",
        "--index",
        s(&p),
        "--model",
        s(&model),
        "--search",
        "approx",
        "-k",
        "1",
        "--json",
    ]));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["queries"][0]["results"][0]["sentence"], "Why is the sky blue?", "{out}");
    let extra = tmp.path().join("extra.txt");
    std::fs::write(&extra, "What is the best pizza topping?\n").unwrap();
    ok(&retrieve(&["add", s(&extra), "--index", s(&p), "--model", s(&model)]));
    ok(&retrieve(&["compact", "--index", s(&p)]));
    assert_eq!((params().connectivity, params().expansion_add, params().codes), (6, 40, retrieve::GraphCodes::B1));
    let bad = retrieve(&["index", s(&fixtures().join("sentences.txt")), "--index", s(&p), "--model", s(&model), "--graph-links", "0"]);
    assert!(!bad.status.success() && stderr(&bad).contains("--graph-links"), "{}", stderr(&bad));
}

#[test]
fn parallel_search_matches_naive_on_many_random_vectors() {
    // 40,000 vectors: more than one block, so the multithreaded path is exercised.
    let (n, dim) = (40_000, 32);
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let vectors: Vec<f32> = (0..n * dim).map(|_| next()).collect();
    // 1,100 queries: more than one group of the batched (matrix product) path.
    let queries: Vec<f32> = (0..1_100 * dim).map(|_| next()).collect();
    let batch = top_k_batch(&vectors, dim, &queries, 10);
    assert_eq!(batch.len(), 1_100);
    // Every 7th query, so both query groups (0..1024, 1024..1100) are checked.
    for (qi, q) in queries.chunks(dim).enumerate().step_by(7) {
        let fast = top_k(&vectors, dim, q, 10);
        let naive = top_k_naive(&vectors, dim, q, 10);
        assert_eq!(fast.len(), 10);
        for (a, b) in fast.iter().zip(&naive) {
            // Same rows; scores equal up to summation order.
            assert_eq!(a.index, b.index, "query {qi}");
            assert!((a.score - b.score).abs() < 1e-5);
        }
        for (a, b) in batch[qi].iter().zip(&naive) {
            assert_eq!(a.index, b.index, "batched query {qi}");
            assert!((a.score - b.score).abs() < 1e-5);
        }
        assert_eq!(batch[qi].len(), 10);
    }
    // Three queries take the one-query-at-a-time path, with identical results.
    assert_eq!(top_k_batch(&vectors, dim, &queries[..3 * dim], 10)[2], top_k(&vectors, dim, &queries[2 * dim..3 * dim], 10));
    assert!(top_k(&vectors, dim, &queries[..dim], 0).is_empty());
}

#[test]
fn add_appends_without_changing_existing_vectors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 2, 16);
    let idx_path = tmp.path().join("a.idx");
    ok(&retrieve(&["index", s(&fixtures().join("sentences.txt")), "--index", s(&idx_path), "--model", s(&model)]));
    let before = Index::load(&idx_path).unwrap();
    ok(&retrieve(&["add", s(&fixtures().join("more.txt")), "--index", s(&idx_path), "--model", s(&model)]));
    let after = Index::load(&idx_path).unwrap();
    assert_eq!(after.len(), before.len() + 4);
    for r in 0..before.rows() {
        assert_eq!((after.vector(r), after.sentence(r), after.id(r)), (before.vector(r), before.sentence(r), before.id(r)));
    }
    assert_eq!(after.sentence(before.len()), "What is the best pizza topping?");
    assert_eq!(after.id(before.len()), before.len() as u64, "new items get the next ids");
    // The appended vector of a sentence already present equals its first embedding.
    let first = (0..before.rows()).position(|r| before.sentence(r) == "Why is the sky blue?").unwrap();
    let added = after.len() - 1;
    for (a, b) in after.vector(first).iter().zip(after.vector(added).iter()) {
        assert!((a - b).abs() < 1e-6);
    }
}

#[test]
fn an_index_from_another_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model_a = tiny_package(tmp.path(), 3, 16);
    let model_b = tiny_package(tmp.path(), 4, 16);
    let model_c = tiny_package(tmp.path(), 3, 20);
    let idx_path = tmp.path().join("m.idx");
    ok(&retrieve(&["index", s(&fixtures().join("sentences.txt")), "--index", s(&idx_path), "--model", s(&model_a)]));
    let out = retrieve(&["search", "rice", "--index", s(&idx_path), "--model", s(&model_b)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("m.idx") && stderr(&out).contains("rebuild"), "{}", stderr(&out));
    let out = retrieve(&["add", s(&fixtures().join("more.txt")), "--index", s(&idx_path), "--model", s(&model_c)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("dimensions"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));
}

#[test]
fn default_corpus_is_indexed_once_and_rebuilt_when_it_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 5, 16);
    let corpus = tmp.path().join("questions.txt");
    std::fs::copy(fixtures().join("sentences.txt"), &corpus).unwrap();
    let cache = retrieve::corpus::cache_path(&corpus);
    ok(&retrieve(&["why is the sky blue", "--corpus", s(&corpus), "--model", s(&model)]));
    let first = std::fs::metadata(&cache).unwrap().modified().unwrap();
    let out = ok(&retrieve(&["why is the sky blue", "--corpus", s(&corpus), "--model", s(&model), "-k", "3"]));
    assert_eq!(std::fs::metadata(&cache).unwrap().modified().unwrap(), first, "cache was rebuilt needlessly");
    assert_eq!(out.lines().count(), 4, "{out}");
    // The query line, then ranks right-aligned as in the README's quickstart output.
    assert!(out.lines().nth(1).unwrap().starts_with("  1. "), "{out}");
    // Change the corpus: the cache is rebuilt and the new question can be found.
    std::fs::write(&corpus, "Why is the sky blue?\nWhat is the tallest tree on earth?\n").unwrap();
    let out = ok(&retrieve(&["tallest tree on earth", "--corpus", s(&corpus), "--model", s(&model), "--json"]));
    assert_eq!(Index::read_header(&cache).unwrap().count, 2);
    assert!(out.contains("tallest tree"));
    // Another model: rebuilt again.
    let other = tiny_package(tmp.path(), 6, 16);
    ok(&retrieve(&["tallest tree", "--corpus", s(&corpus), "--model", s(&other)]));
    let fp = ModelPackage::load(&other).unwrap().fingerprint;
    assert_eq!(Index::read_header(&cache).unwrap().fingerprint, fp);
}

#[test]
fn a_failure_between_write_and_rename_leaves_the_old_index_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x.idx");
    let mut old = Index::new("fp", 2);
    old.extend(vec!["old".into()], &[1.0, 0.0]).unwrap();
    old.save(&path).unwrap();
    let mut new = Index::new("fp", 2);
    new.extend(vec!["old".into(), "new".into()], &[1.0, 0.0, 0.0, 1.0]).unwrap();
    let err = new.save_with(&path, |tmp_file| {
        assert!(tmp_file.exists(), "the complete temporary file exists before the rename");
        Err(std::io::Error::other("simulated crash before rename"))
    });
    assert!(err.is_err());
    let back = Index::load(&path).unwrap();
    assert_eq!((back.len(), back.sentence(0), &*back.vector(0)), (1, "old", &[1.0f32, 0.0][..]));
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temporary file left behind: {leftovers:?}");
}

#[test]
fn killing_the_process_at_any_moment_leaves_a_loadable_index() {
    // A real SIGKILL (no destructors run), at several moments of a `retrieve add`, the last ones
    // close to the end where the new index is being written: the index on disk must always
    // load, and hold either the old sentences or all of the new ones, never a torn file.
    // (A killed run may leave its temporary file behind; it never replaces the index.)
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 2, 8);
    let idx_path = tmp.path().join("k.idx");
    ok(&retrieve(&["index", s(&fixtures().join("sentences.txt")), "--index", s(&idx_path), "--model", s(&model)]));
    let old_len = Index::load(&idx_path).unwrap().len();
    let big = tmp.path().join("big.txt");
    let lines: Vec<String> = (0..20_000).map(|i| format!("question number {i} about rice and trees")).collect();
    std::fs::write(&big, lines.join("\n")).unwrap();
    let add = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_retrieve"))
            .args(["add", s(&big), "--index", s(&idx_path), "--model", s(&model), "--quiet"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // How long a whole `add` takes here, on a copy, so the kills can be placed near its end.
    let started = std::time::Instant::now();
    let copy = tmp.path().join("copy.idx");
    std::fs::copy(&idx_path, &copy).unwrap();
    ok(&retrieve(&["add", s(&big), "--index", s(&copy), "--model", s(&model)]));
    let full = started.elapsed();
    assert_eq!(Index::load(&copy).unwrap().len(), old_len + 20_000);
    for fraction in [0.3, 0.8, 0.9, 0.95, 0.98, 1.0] {
        let mut child = add();
        std::thread::sleep(full.mul_f64(fraction));
        let _ = child.kill(); // SIGKILL on Unix; fine if it already finished
        let _ = child.wait();
        let idx = Index::load(&idx_path).unwrap_or_else(|e| panic!("torn index after a kill at {fraction}: {e}"));
        // Every completed add appends all 20,000; a killed one appends nothing.
        assert_eq!((idx.len() - old_len) % 20_000, 0, "kill at {fraction}: a partial add of {} sentences", idx.len() - old_len);
    }
}

#[test]
fn bad_queries_and_missing_models_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = retrieve(&["rice", "--model", s(&tmp.path().join("none"))]);
    assert!(!out.status.success() && stderr(&out).contains("no model package"), "{}", stderr(&out));
    let model = tiny_package(tmp.path(), 7, 16);
    let out = retrieve(&["  ", "--model", s(&model), "--corpus", s(&fixtures().join("sentences.txt"))]);
    assert!(!out.status.success() && stderr(&out).contains("empty"), "{}", stderr(&out));
    let out = retrieve(&["search", "x", "--index", s(&tmp.path().join("nope.idx")), "--model", s(&model)]);
    assert!(!out.status.success() && stderr(&out).contains("nope.idx"), "{}", stderr(&out));
}

#[test]
fn search_flags_hits_with_the_package_search_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 12, 16);
    let device = Backend::Flex.device();
    let pkg = ModelPackage::load(&model).unwrap();
    // The same weights, with a search threshold that flags every hit.
    let lenient = tmp.path().join("lenient");
    let metrics = serde_json::json!({"threshold": pkg.threshold, "search_threshold": -1.0});
    ModelPackage::save(&lenient, &pkg.config, &pkg.tokenizer, &pkg.encoder_module(&device).unwrap(), None, &metrics).unwrap();
    let idx = tmp.path().join("s.idx");
    ok(&retrieve(&["index", s(&fixtures().join("sentences.txt")), "--index", s(&idx), "--model", s(&model)]));
    let flags = |model: &std::path::Path| -> (Vec<bool>, serde_json::Value) {
        let out = ok(&retrieve(&["search", "how to cook rice well", "--index", s(&idx), "--model", s(model), "-k", "6", "--json"]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let f = v["queries"][0]["results"].as_array().unwrap().iter().map(|r| r["duplicate"].as_bool().unwrap()).collect();
        (f, v["duplicate_if_similarity_at_least"].clone())
    };
    // Without a search threshold, the pair threshold (distance 0.05) flags none of these
    // non-identical hits; with it, every hit is flagged, and the JSON says which rule applied.
    let (strict, rule) = flags(&model);
    assert_eq!(strict, vec![false; 6]);
    assert!((rule.as_f64().unwrap() - (1.0 - 0.05f64.powi(2) / 2.0)).abs() < 1e-12, "{rule}");
    let (all, rule) = flags(&lenient);
    assert_eq!(all, vec![true; 6]);
    assert_eq!(rule, -1.0);
}

#[test]
fn a_margin_package_judges_the_shown_hits_against_the_query_background() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 12, 16);
    let pkg = ModelPackage::load(&model).unwrap();
    let encoder = pkg.encoder_module(&Backend::Flex.device()).unwrap();
    let idx = tmp.path().join("s.idx");
    ok(&retrieve(&["index", s(&fixtures().join("sentences.txt")), "--index", s(&idx), "--model", s(&model)]));
    let search = |model: &std::path::Path, k: &str| -> serde_json::Value {
        let out = ok(&retrieve(&["search", "how to cook rice well", "--index", s(&idx), "--model", s(model), "-k", k, "--json"]));
        serde_json::from_str(&out).unwrap()
    };
    // The background by hand, from the 15 nearest as the plain package ranks them.
    let sims: Vec<f64> =
        search(&model, "15")["queries"][0]["results"].as_array().unwrap().iter().map(|r| r["similarity"].as_f64().unwrap()).collect();
    assert_eq!(sims.len(), 15);
    let background = sims[5..].iter().sum::<f64>() / 10.0;
    // A threshold between the first two hits' margins flags only the first.
    assert!(sims[0] > sims[1], "{sims:?}");
    let threshold = (sims[0] + sims[1]) / 2.0 - background;
    let dir = tmp.path().join("margin");
    let metrics = serde_json::json!({"threshold": pkg.threshold, "search_threshold": threshold, "search_flag": "margin"});
    ModelPackage::save(&dir, &pkg.config, &pkg.tokenizer, &encoder, None, &metrics).unwrap();
    // Two hits shown, fifteen ranked: each shown hit carries its margin over that background.
    let v = search(&dir, "2");
    let hits = v["queries"][0]["results"].as_array().unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits.iter().map(|h| h["duplicate"].as_bool().unwrap()).collect::<Vec<_>>(), [true, false]);
    for (h, sim) in hits.iter().zip(&sims) {
        assert!((h["margin"].as_f64().unwrap() - (sim - background)).abs() < 1e-5, "{h}");
    }
    assert_eq!(
        (v["duplicate_if_margin_at_least"].as_f64(), &v["duplicate_if_similarity_at_least"]),
        (Some(threshold), &serde_json::Value::Null)
    );
    // The plain package's JSON says nothing of margins.
    assert!(search(&model, "2")["queries"][0]["results"][0].get("margin").is_none());
    // dedup judges each sentence's nearest as search does, and says so.
    let out = tmp.path().join("pairs.csv");
    let run = retrieve(&["dedup", s(&fixtures().join("sentences.txt")), "--model", s(&dir), "-o", s(&out)]);
    assert!(run.status.success() && stderr(&run).contains("margin >="), "{}", stderr(&run));
    assert!(std::fs::read_to_string(&out).unwrap().starts_with("cluster,row1,row2,sentence1,sentence2,similarity\n"));
}
