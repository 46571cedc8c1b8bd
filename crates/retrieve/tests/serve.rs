//! `retrieve serve` end to end: the real binary on loopback, spoken to over raw HTTP/1.1.

mod common;

use std::process::Command;

use common::{fixtures, http, json, ok, retrieve, start, tiny_package_with};
use retrieve::Index;

/// A tiny model with a head and an index of the fixture sentences: (folder, model, index, items).
fn indexed() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf, usize) {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_package_with(dir.path(), 3, 8, Some(0.5));
    let idx = dir.path().join("s.idx");
    ok(&retrieve(&[
        "index",
        fixtures().join("sentences.txt").to_str().unwrap(),
        "--index",
        idx.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ]));
    let stored = Index::load(&idx).unwrap().len();
    (dir, model, idx, stored)
}

#[test]
fn the_api_searches_scores_adds_and_says_what_is_wrong() {
    let (_dir, model, idx, stored) = indexed();
    let (model, idx_s) = (model.to_str().unwrap(), idx.to_str().unwrap());
    let (mut child, addr) = start(&["--index", idx_s, "--model", model, "--token", "s3cret", "--max-body-bytes", "4000", "--max-k", "20"]);
    let t = Some("s3cret");

    // Health and auth.
    let (status, body) = http(&addr, "GET", "/health", "", t);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["items"], stored);
    let (status, body) = http(&addr, "GET", "/health", "", None);
    assert_eq!(status, 401, "{body}");
    assert!(json(&body)["error"].as_str().unwrap().contains("bearer token"));

    // Search: k hits per query, best first.
    let (status, body) = http(&addr, "POST", "/search", r#"{"queries": ["how do I learn rust", "cats"], "k": 3}"#, t);
    assert_eq!(status, 200, "{body}");
    let report = json(&body);
    assert_eq!(report["queries"].as_array().unwrap().len(), 2);
    let hits = report["queries"][0]["results"].as_array().unwrap();
    assert_eq!(hits.len(), 3);
    assert!(hits[0]["similarity"].as_f64().unwrap() >= hits[2]["similarity"].as_f64().unwrap());

    // Score: one verdict per pair; a sentence and itself are as similar as can be.
    let (status, body) = http(&addr, "POST", "/score", r#"{"pairs": [["a red car", "a red car"], ["a red car", "the stock market"]]}"#, t);
    assert_eq!(status, 200, "{body}");
    let results = json(&body)["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 2);
    assert!((results[0]["similarity"].as_f64().unwrap() - 1.0).abs() < 1e-4, "{body}");
    assert!(results[0]["duplicate_probability"].is_number());

    // Add (a plain sentence and a keyed one), then the new sentence is found first, with its
    // id and key; delete it, and it is gone.
    let new = "zebras graze quietly near the river at dawn";
    let body = format!(r#"{{"items": ["{new}", {{"text": "{new} again", "key": "ticket-7"}}]}}"#);
    let (status, body) = http(&addr, "POST", "/items", &body, t);
    assert_eq!(status, 200, "{body}");
    let ids: Vec<u64> = json(&body)["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(ids, [stored as u64, stored as u64 + 1]);
    assert_eq!(json(&body)["total"].as_u64(), Some(stored as u64 + 2));
    let (_, body) = http(&addr, "POST", "/search", &format!(r#"{{"queries": ["{new} again"], "k": 1}}"#), t);
    let hit = &json(&body)["queries"][0]["results"][0];
    assert_eq!(
        (&hit["sentence"], &hit["id"], &hit["key"]),
        (&serde_json::json!(format!("{new} again")), &serde_json::json!(ids[1]), &serde_json::json!("ticket-7"))
    );
    let (status, body) = http(&addr, "DELETE", &format!("/items/{}", ids[1]), "", t);
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(&addr, "DELETE", &format!("/items/{}", ids[1]), "", t);
    assert_eq!(status, 404, "{body}");
    assert!(json(&body)["error"].as_str().unwrap().contains("no item with id"));
    let (_, body) = http(&addr, "POST", "/search", &format!(r#"{{"queries": ["{new} again"], "k": 1}}"#), t);
    assert_eq!(json(&body)["queries"][0]["results"][0]["sentence"], new);

    // Bad requests: 4xx with a JSON error that says what is wrong.
    let cases: [(&str, &str, &str, u16, &str); 8] = [
        ("POST", "/search", r#"{"queries": ["x"], "k": "#, 400, ""),
        ("POST", "/search", r#"{"queries": ["x"], "k": 0}"#, 400, "k must be"),
        ("POST", "/search", r#"{"queries": ["x"], "k": 21}"#, 400, "k must be"),
        ("POST", "/search", r#"{"queries": [], "k": 3}"#, 400, "at least one"),
        ("POST", "/search", r#"{"querys": ["x"]}"#, 422, "querys"),
        ("POST", "/items", r#"{"items": ["fine", "  "]}"#, 400, "items[1] is empty"),
        ("GET", "/nowhere", "", 404, "no route GET /nowhere"),
        ("DELETE", "/items/seven", "", 400, "not a non-negative integer"),
    ];
    for (method, path, body, want, says) in cases {
        let (status, text) = http(&addr, method, path, body, t);
        assert_eq!(status, want, "{method} {path} {body}: {text}");
        let err = json(&text)["error"].as_str().unwrap().to_string();
        assert!(!err.is_empty() && err.contains(says), "{method} {path} {body}: {err}");
    }
    let big = format!(r#"{{"items": ["{}"]}}"#, "a ".repeat(3000));
    let (status, text) = http(&addr, "POST", "/items", &big, t);
    assert_eq!(status, 413, "{text}");

    // Metrics count what happened.
    let (status, text) = http(&addr, "GET", "/metrics", "", t);
    assert_eq!(status, 200);
    assert!(text.contains("twin_requests_total{route=\"/search\",status=\"200\"} 3"), "{text}");
    assert!(text.contains("twin_request_seconds_count{route=\"/items\"}"), "{text}");

    // SIGTERM: a clean exit, and the acknowledged add and removal are in the index.
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let after = Index::load(&idx).unwrap();
    assert_eq!(after.len(), stored + 1);
    assert_eq!(after.sentence(after.row_of(ids[0]).unwrap()), new);
    assert_eq!(after.row_of(ids[1]), None);
}

/// Many clients adding at once through the server, with batching on and graph search forced:
/// every acknowledged item gets its own id and is in the index afterwards, and each is found.
#[test]
fn concurrent_adders_lose_nothing() {
    let (_dir, model, idx, stored) = indexed();
    let (model, idx_s) = (model.to_str().unwrap(), idx.to_str().unwrap());
    let (mut child, addr) = start(&["--index", idx_s, "--model", model, "--search", "approx"]);
    let (_, body) = http(&addr, "GET", "/health", "", None);
    assert_eq!(json(&body)["search"], "graph");
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                (0..5)
                    .map(|i| {
                        let body = format!(r#"{{"items": [{{"text": "client {t} item {i} about topic {t}{i}", "key": "{t}-{i}"}}]}}"#);
                        let (status, body) = http(&addr, "POST", "/items", &body, None);
                        assert_eq!(status, 200, "{body}");
                        json(&body)["ids"][0].as_u64().unwrap()
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut ids: Vec<u64> = threads.into_iter().flat_map(|h| h.join().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "every add got its own id");
    child.kill().unwrap();
    child.wait().unwrap();
    // Killed without a chance to clean up: everything acknowledged is there.
    let after = Index::load(&idx).unwrap();
    assert_eq!(after.len(), stored + 40);
    for id in ids {
        let row = after.row_of(id).unwrap();
        assert!(after.sentence(row).starts_with("client "), "{}", after.sentence(row));
        let (t, i) = after.key(row).unwrap().split_once('-').unwrap();
        assert_eq!(after.sentence(row), format!("client {t} item {i} about topic {t}{i}"));
    }
}

#[test]
fn other_addresses_need_a_token() {
    let out = Command::new(env!("CARGO_BIN_EXE_retrieve"))
        .args(["serve", "--addr", "0.0.0.0:0"])
        .env_remove("TWIN_SERVE_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token"), "{}", String::from_utf8_lossy(&out.stderr));
}
