//! The Milvus store end to end, against a real Milvus server.
//!
//! `TWIN_MILVUS=HOST:PORT` names the server (`.ci/run` starts one from PyPI's `milvus` package);
//! without it these tests say so and pass, unless `TWIN_MILVUS_REQUIRED=1` (set by CI), where a
//! missing server fails them. Each test works in collections of its own and drops them after.

mod common;

use common::{fixtures, http, json, ok, repo, retrieve, s, start, stderr, tiny_package_with, KillOnDrop};
use retrieve::store::MilvusUrl;
use retrieve::MilvusStore;

/// The server's address, or `None` (with a message) when these tests should skip.
fn server() -> Option<String> {
    match std::env::var("TWIN_MILVUS").ok().filter(|s| !s.is_empty()) {
        Some(addr) => Some(addr),
        None if std::env::var("TWIN_MILVUS_REQUIRED").is_ok_and(|v| v == "1") => {
            panic!("TWIN_MILVUS_REQUIRED=1 but TWIN_MILVUS (HOST:PORT of a Milvus server) is not set")
        }
        None => {
            eprintln!("skipped: no Milvus server (set TWIN_MILVUS=HOST:PORT; .ci/run starts one)");
            None
        }
    }
}

/// A collection name of this test alone, dropped when the value goes.
struct Collection {
    addr: String,
    name: String,
}

impl Collection {
    fn new(addr: &str, tag: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        Self { addr: addr.to_string(), name: format!("t_{tag}_{}_{nanos}", std::process::id()) }
    }
    fn url(&self) -> String {
        format!("milvus://{}/{}", self.addr, self.name)
    }
    fn parsed(&self) -> MilvusUrl {
        self.url().parse().unwrap()
    }
}

impl Drop for Collection {
    fn drop(&mut self) {
        let body = format!(r#"{{"collectionName":"{}"}}"#, self.name);
        let _ = http(&self.addr, "POST", "/v1/vector/collections/drop", &body, None);
    }
}

/// `(sentence, similarity)` of each hit of each query in a `--json` search report.
fn hits(report: &serde_json::Value) -> Vec<Vec<(String, f64)>> {
    report["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            q["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| (h["sentence"].as_str().unwrap().to_string(), h["similarity"].as_f64().unwrap()))
                .collect()
        })
        .collect()
}

#[test]
fn milvus_finds_what_local_exact_search_finds() {
    let Some(addr) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let corpus = repo().join("datasets/questions.txt");
    let idx = dir.path().join("q.idx");
    ok(&retrieve(&["index", s(&corpus), "--index", s(&idx), "--graph", "exact"]));
    // Copied from the local index: the same vectors, no second embedding.
    let c = Collection::new(&addr, "same");
    let out = retrieve(&["index", s(&idx), "--store", &c.url()]);
    ok(&out);
    let stored = retrieve::Index::load(&idx).unwrap().len();
    assert!(stderr(&out).contains(&format!("stored {stored} items")), "{}", stderr(&out));

    // Queries: some stored questions' neighbours and some new questions.
    let text = std::fs::read_to_string(&corpus).unwrap();
    let mut queries: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).step_by(97).collect();
    queries.extend(["How do I learn to code quickly?", "What is the best way to lose weight fast?", "How can I make money online?"]);
    let mut args = vec!["search", "--json", "-k", "10"];
    args.extend(queries.iter().copied());
    let local = json(&ok(&retrieve(&[&args[..], &["--index", s(&idx), "--search", "exact"]].concat())));
    let remote = json(&ok(&retrieve(&[&args[..], &["--store", &c.url()]].concat())));
    let (local, remote) = (hits(&local), hits(&remote));
    assert_eq!(local.len(), queries.len());
    let (mut found, mut total) = (0, 0);
    for (l, r) in local.iter().zip(&remote) {
        assert_eq!(l.len(), 10);
        assert_eq!(r.len(), 10);
        // Verdicts are judged from the stored vector, so a hit both found has one similarity.
        for (sentence, sim) in r {
            if let Some((_, local_sim)) = l.iter().find(|(s, _)| s == sentence) {
                assert!((sim - local_sim).abs() < 1e-5, "{sentence}: {sim} vs {local_sim}");
                found += 1;
            }
        }
        total += l.len();
    }
    let recall = f64::from(found) / total as f64;
    assert!(recall >= 0.99, "recall@10 of Milvus against local exact search: {recall}");
}

#[test]
fn adds_and_deletes_round_trip_and_keys_come_back() {
    let Some(addr) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_package_with(dir.path(), 3, 8, Some(0.5));
    let m = s(&model);
    let c = Collection::new(&addr, "add");
    ok(&retrieve(&["index", s(&fixtures().join("sentences.txt")), "--store", &c.url(), "--model", m]));
    let store = MilvusStore::open(&c.parsed()).unwrap();
    let before = store.count().unwrap();
    assert!(before > 10);

    let csv = dir.path().join("new.csv");
    std::fs::write(&csv, "text,ref\nHow do I repair a squeaky bicycle chain?,ticket-17\n").unwrap();
    let out = retrieve(&["add", s(&csv), "--column", "text", "--key-column", "ref", "--store", &c.url(), "--model", m]);
    ok(&out);
    assert!(stderr(&out).contains(&format!("now holds {}", before + 1)), "{}", stderr(&out));

    // Searchable as soon as `add` returns, with its key.
    let query = "How do I repair a squeaky bicycle chain?";
    let report = json(&ok(&retrieve(&["search", query, "--json", "-k", "1", "--store", &c.url(), "--model", m])));
    let hit = &report["queries"][0]["results"][0];
    assert_eq!(hit["sentence"], query);
    assert_eq!(hit["key"], "ticket-17");
    let id = hit["id"].as_u64().unwrap().to_string();

    ok(&retrieve(&["delete", &id, "--store", &c.url(), "--model", m]));
    let report = json(&ok(&retrieve(&["search", query, "--json", "-k", "3", "--store", &c.url(), "--model", m])));
    assert!(report["queries"][0]["results"].as_array().unwrap().iter().all(|h| h["id"].as_u64().unwrap().to_string() != id));
    assert_eq!(store.count().unwrap(), before);
    // Deleting it again names the id that is not there.
    let out = retrieve(&["delete", &id, "--store", &c.url(), "--model", m]);
    assert!(!out.status.success() && stderr(&out).contains(&format!("no item with id {id}")), "{}", stderr(&out));

    // dedup reads the whole collection, page by page.
    ok(&retrieve(&["add", s(&csv), "--column", "text", "--store", &c.url(), "--model", m]));
    ok(&retrieve(&["add", s(&csv), "--column", "text", "--store", &c.url(), "--model", m]));
    let pairs = ok(&retrieve(&["dedup", "--store", &c.url(), "--model", m, "--threshold", "0.999"]));
    assert!(pairs.lines().any(|l| l.contains("squeaky bicycle chain?,How do I repair")), "{pairs}");
}

#[test]
fn another_model_an_existing_collection_and_foreign_collections_are_refused() {
    let Some(addr) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (tiny_package_with(dir.path(), 3, 8, None), tiny_package_with(dir.path(), 4, 8, None));
    let c = Collection::new(&addr, "model");
    let file = fixtures().join("sentences.txt");
    ok(&retrieve(&["index", s(&file), "--store", &c.url(), "--model", s(&a)]));
    let n = MilvusStore::open(&c.parsed()).unwrap().count().unwrap();

    let out = retrieve(&["search", "Why is the sky blue?", "--store", &c.url(), "--model", s(&b)]);
    assert!(!out.status.success() && stderr(&out).contains(&c.url()) && stderr(&out).contains("model"), "{}", stderr(&out));
    let out = retrieve(&["add", s(&file), "--store", &c.url(), "--model", s(&b)]);
    assert!(!out.status.success() && stderr(&out).contains("model"), "{}", stderr(&out));

    // An existing collection is never replaced, and is left as it was.
    let out = retrieve(&["index", s(&file), "--store", &c.url(), "--model", s(&a)]);
    assert!(!out.status.success() && stderr(&out).contains("never replaces"), "{}", stderr(&out));
    assert_eq!(MilvusStore::open(&c.parsed()).unwrap().count().unwrap(), n);

    // A collection this tool did not make is not used.
    let other = Collection::new(&addr, "foreign");
    let body = format!(r#"{{"collectionName":"{}","dimension":16,"metricType":"IP"}}"#, other.name);
    let (status, answer) = http(&addr, "POST", "/v1/vector/collections/create", &body, None);
    assert_eq!(status, 200, "{answer}");
    let out = retrieve(&["search", "Why is the sky blue?", "--store", &other.url(), "--model", s(&a)]);
    assert!(!out.status.success() && stderr(&out).contains("not made by"), "{}", stderr(&out));
    let out =
        retrieve(&["search", "Why is the sky blue?", "--store", &format!("milvus://{addr}/no_such_collection_here"), "--model", s(&a)]);
    assert!(!out.status.success() && stderr(&out).contains("retrieve index FILE --store"), "{}", stderr(&out));
}

#[test]
fn an_unreachable_server_is_a_clear_error_not_a_panic() {
    // Needs no server: nothing listens on this port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_package_with(dir.path(), 3, 8, None);
    let url = format!("milvus://127.0.0.1:{port}/questions");
    for args in [
        vec!["search", "Why is the sky blue?", "--store", &url],
        vec!["index", s(&fixtures().join("sentences.txt")), "--store", &url],
        vec!["delete", "7", "--store", &url],
    ] {
        let out = retrieve(&[&args[..], &["--model", s(&model)]].concat());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&url) && err.contains("cannot reach the Milvus server") && !err.contains("panicked"), "{err}");
    }
    let out = retrieve(&["search", "x", "--store", "milvus://127.0.0.1/questions", "--model", s(&model)]);
    assert!(!out.status.success() && stderr(&out).contains("no port"), "{}", stderr(&out));
}

#[test]
fn serve_backed_by_milvus_answers_the_same_api() {
    let Some(addr) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_package_with(dir.path(), 3, 8, Some(0.5));
    let c = Collection::new(&addr, "serve");
    ok(&retrieve(&["index", s(&fixtures().join("sentences.txt")), "--store", &c.url(), "--model", s(&model)]));
    let (child, api) = start(&["--store", &c.url(), "--model", s(&model)]);
    let _server = KillOnDrop(child);

    let (status, body) = http(&api, "GET", "/health", "", None);
    assert_eq!(status, 200, "{body}");
    let health = json(&body);
    assert_eq!(health["search"], "milvus");
    let n = health["items"].as_u64().unwrap();

    let (status, body) =
        http(&api, "POST", "/items", r#"{"items":[{"text":"Where can I rent a canoe near the lake?","key":"k-1"}]}"#, None);
    assert_eq!(status, 200, "{body}");
    let added = json(&body);
    let id = added["ids"][0].as_u64().unwrap();
    assert_eq!(added["total"].as_u64().unwrap(), n + 1);

    let (status, body) = http(&api, "POST", "/search", r#"{"queries":["Where can I rent a canoe near the lake?"],"k":2}"#, None);
    assert_eq!(status, 200, "{body}");
    let hit = &json(&body)["queries"][0]["results"][0];
    assert_eq!((hit["id"].as_u64().unwrap(), hit["key"].as_str().unwrap()), (id, "k-1"));

    let (status, body) = http(&api, "DELETE", &format!("/items/{id}"), "", None);
    assert_eq!(status, 200, "{body}");
    let (status, _) = http(&api, "DELETE", &format!("/items/{id}"), "", None);
    assert_eq!(status, 404);
    let (status, body) = http(&api, "POST", "/search", r#"{"queries":["Where can I rent a canoe near the lake?"],"k":2}"#, None);
    assert_eq!(status, 200, "{body}");
    assert!(json(&body)["queries"][0]["results"].as_array().unwrap().iter().all(|h| h["id"].as_u64() != Some(id)));
    let (status, body) = http(&api, "POST", "/score", r#"{"pairs":[["a cat","a cat"]]}"#, None);
    assert_eq!(status, 200, "{body}");
}
