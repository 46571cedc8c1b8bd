//! `retrieve dedup` and `retrieve score`, end to end.

mod common;

use common::*;

#[test]
fn dedup_finds_repeated_sentences_and_clusters_them() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 1, 16);
    let out = tmp.path().join("dups.csv");
    let run = retrieve(&["dedup", s(&fixtures().join("sentences.txt")), "--model", s(&model), "-o", s(&out), "--threshold", "0.9999"]);
    ok(&run);
    let mut r = csv::Reader::from_path(&out).unwrap();
    assert_eq!(r.headers().unwrap(), vec!["cluster", "row1", "row2", "sentence1", "sentence2", "similarity"]);
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    // The corpus repeats "How do I learn to cook rice?" on rows 1 and 21.
    assert!(rows.iter().any(|x| &x[1] == "1" && &x[2] == "21" && x[3] == x[4]), "{rows:?}");
    assert!(stderr(&run).contains("duplicate pairs"), "{}", stderr(&run));
}

/// Options may come before the subcommand, as users write them (`retrieve --model M dedup F`).
#[test]
fn options_before_the_subcommand_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 1, 16);
    let out = tmp.path().join("dups.csv");
    let run = retrieve(&["--model", s(&model), "dedup", s(&fixtures().join("sentences.txt")), "-o", s(&out), "--threshold", "0.9999"]);
    ok(&run);
    assert!(std::fs::read_to_string(&out).unwrap().starts_with("cluster,row1,row2"));
}

#[test]
fn score_writes_every_row_and_reports_bad_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 2, 16);
    let out = tmp.path().join("scored.csv");
    let run = retrieve(&["score", s(&fixtures().join("pairs.csv")), "-o", s(&out), "--model", s(&model), "--batch-rows", "2"]);
    ok(&run);
    let err = stderr(&run);
    assert!(err.contains("pairs.csv:7: field 3 is an empty sentence"), "{err}");
    assert!(err.contains("pairs.csv:8: expected 4 fields, found 3"), "{err}");
    assert!(err.contains("scored 5 of 7 rows (2 bad)"), "{err}");
    assert!(err.contains("accuracy"), "label column found, metrics printed: {err}");

    let mut r = csv::ReaderBuilder::new().flexible(true).from_path(&out).unwrap();
    let h = r.headers().unwrap().clone();
    assert_eq!(
        h.iter().collect::<Vec<_>>(),
        ["id", "question1", "question2", "is_duplicate", "similarity", "predicted_is_duplicate", "error"]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(rows.len(), 7, "every input row is written");
    assert_eq!(&rows[1][1], "Why is the sky blue, really?", "quoted commas survive");
    assert_eq!(&rows[3][1], "A question with a\nnewline inside", "quoted newlines survive");
    for (i, row) in rows.iter().enumerate() {
        let bad = i == 4 || i == 5;
        assert_eq!(row[6].is_empty(), !bad, "row {i}: {row:?}");
        if !bad {
            let sim: f64 = row[4].parse().unwrap();
            assert!((-1.0..=1.0).contains(&sim));
            assert!(&row[5] == "0" || &row[5] == "1");
        }
    }
    assert_eq!(&rows[5][0], "6", "the short row keeps its fields");
}

#[test]
fn score_handles_invalid_utf8_and_strict_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 3, 16);
    let out = tmp.path().join("o.csv");
    let run = retrieve(&["score", s(&fixtures().join("pairs_utf8.csv")), "-o", s(&out), "--model", s(&model)]);
    ok(&run);
    assert!(stderr(&run).contains("pairs_utf8.csv:2: field 2 is not valid UTF-8"), "{}", stderr(&run));
    let bytes = std::fs::read(&out).unwrap();
    assert!(bytes.windows(1).any(|w| w == b"\xff"), "the raw bytes of the bad row are kept");

    let strict_out = tmp.path().join("strict.csv");
    let run = retrieve(&["score", s(&fixtures().join("pairs.csv")), "-o", s(&strict_out), "--model", s(&model), "--strict"]);
    assert!(!run.status.success());
    assert!(stderr(&run).contains("line 7"), "{}", stderr(&run));
    assert!(!strict_out.exists(), "a failed run leaves no partial output");
}

#[test]
fn score_reads_the_quora_tsv_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 4, 16);
    let tsv = tmp.path().join("d.tsv");
    std::fs::write(
        &tsv,
        "1\tWhy is the \"sky\" blue ?\tWhat makes the sky look blue ?\t1\n0\tHow do I get a passport ?\tWhy do cats purr ?\t2\n",
    )
    .unwrap();
    let out = ok(&retrieve(&["score", s(&tsv), "--format", "qqp", "--model", s(&model)]));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("label,question1,question2,id,similarity,is_duplicate,error"));
    assert_eq!(lines.count(), 2);
}

#[test]
fn a_package_with_a_verdict_head_scores_and_judges_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let threshold = 0.5;
    let model = tiny_package_with(tmp.path(), 3, 16, Some(threshold));
    let out = tmp.path().join("scored.csv");
    let run = retrieve(&["score", s(&fixtures().join("pairs.csv")), "-o", s(&out), "--model", s(&model)]);
    ok(&run);
    assert!(stderr(&run).contains("threshold: head probability >="), "{}", stderr(&run));
    let mut r = csv::ReaderBuilder::new().flexible(true).from_path(&out).unwrap();
    let h = r.headers().unwrap().clone();
    assert_eq!(
        h.iter().collect::<Vec<_>>(),
        ["id", "question1", "question2", "is_duplicate", "similarity", "duplicate_probability", "predicted_is_duplicate", "error"]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(rows.len(), 7, "every input row is written");
    let mut probabilities = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if i == 4 || i == 5 {
            assert!(row[5].is_empty() && row[6].is_empty() && !row[7].is_empty(), "bad row {i}: {row:?}");
            continue;
        }
        let p: f64 = row[5].parse().unwrap();
        assert!((0.0..=1.0).contains(&p));
        assert_eq!(&row[6], if p >= threshold { "1" } else { "0" }, "row {i}: the head decides");
        probabilities.push(p);
    }
    assert!(probabilities.windows(2).any(|w| w[0] != w[1]), "the head tells pairs apart: {probabilities:?}");

    // Search ranks by the energy but judges each hit with the head.
    let corpus = tmp.path().join("sentences.txt");
    std::fs::copy(fixtures().join("sentences.txt"), &corpus).unwrap();
    let out = ok(&retrieve(&["why is the sky blue", "--corpus", s(&corpus), "--model", s(&model), "-k", "4", "--json"]));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["duplicate_if_probability_at_least"].as_f64(), Some(threshold));
    for r in json["queries"][0]["results"].as_array().unwrap() {
        let p = r["duplicate_probability"].as_f64().expect("each hit has the head's probability");
        assert_eq!(r["duplicate"].as_bool(), Some(p >= threshold), "{r}");
    }
}
