//! Regression tests for issue 13: bad input, concurrent writers, hostile paths and closed pipes
//! must never panic, lose data, or replace what the tool did not create.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::*;
use retrieve::Index;

fn index_of(tmp: &std::path::Path, model: &std::path::Path) -> std::path::PathBuf {
    let idx = tmp.join("s.idx");
    ok(&retrieve(&["index", s(&fixtures().join("sentences.txt")), "--index", s(&idx), "--model", s(model)]));
    idx
}

fn failed_with(out: &std::process::Output, needle: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "should fail: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn concurrent_adds_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 3, 8);
    let idx = index_of(tmp.path(), &model);
    let before = Index::load(&idx).unwrap().len();
    let writers = 4;
    let per = 300;
    let files: Vec<_> = (0..writers)
        .map(|w| {
            let p = tmp.path().join(format!("batch{w}.txt"));
            let lines: Vec<String> = (0..per).map(|i| format!("writer {w} question {i} about rice")).collect();
            std::fs::write(&p, lines.join("\n")).unwrap();
            p
        })
        .collect();
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            Command::new(env!("CARGO_BIN_EXE_retrieve"))
                .args(["add", s(f), "--index", s(&idx), "--model", s(&model), "--quiet"])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let after = Index::load(&idx).unwrap();
    assert_eq!(after.len(), before + writers * per, "every batch of every writer landed");
    for w in 0..writers {
        assert_eq!(after.live_rows().filter(|&r| after.sentence(r).starts_with(&format!("writer {w} "))).count(), per);
    }
}

#[test]
fn a_row_with_too_many_fields_keeps_its_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 4, 8);
    let input = tmp.path().join("in.csv");
    std::fs::write(&input, "sentence1,sentence2\nhow to cook rice,how do i cook rice\na,b,stray\nwhy,why not\n").unwrap();
    let out_path = tmp.path().join("out.csv");
    let out = retrieve(&["score", s(&input), "-o", s(&out_path), "--model", s(&model)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut rdr = csv::ReaderBuilder::new().flexible(false).from_path(&out_path).unwrap();
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, ["sentence1", "sentence2", "similarity", "is_duplicate", "error"]);
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3, "every row is kept");
    assert_eq!(&rows[1][0], "a");
    assert_eq!(&rows[1][1], "b");
    assert_eq!(&rows[1][2], "", "no stray value in similarity");
    assert!(rows[1][4].contains("expected 2 fields, found 3") && rows[1][4].contains("stray"), "{:?}", &rows[1]);
    assert!(rows[2][2].parse::<f64>().is_ok(), "the next good row is scored");
    assert!(stderr(&out).contains("in.csv:3: expected 2 fields, found 3"), "{}", stderr(&out));
}

#[test]
fn columns_flag_takes_the_documented_a_comma_b_form() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 5, 8);
    let input = tmp.path().join("in.csv");
    std::fs::write(&input, "id,left,right\n1,how to cook rice,how do i cook rice\n").unwrap();
    let out = ok(&retrieve(&["score", s(&input), "--columns", "left,right", "--model", s(&model)]));
    assert!(out.lines().next().unwrap().ends_with("similarity,is_duplicate,error"), "{out}");
    assert_eq!(out.lines().count(), 2);
    failed_with(&retrieve(&["score", s(&input), "--columns", "left", "--model", s(&model)]), "two column names");
}

#[cfg(unix)]
#[test]
fn outputs_are_regular_files_and_never_an_input() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 6, 8);
    let input = tmp.path().join("in.csv");
    std::fs::write(&input, "sentence1,sentence2\nhow to cook rice,how do i cook rice\n").unwrap();
    let kept = tmp.path().join("kept.txt");
    std::fs::write(&kept, "precious").unwrap();
    let link = tmp.path().join("link.csv");
    std::os::unix::fs::symlink(&kept, &link).unwrap();
    failed_with(&retrieve(&["score", s(&input), "-o", s(&link), "--model", s(&model)]), "symlink");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "precious");
    failed_with(&retrieve(&["score", s(&input), "-o", "/dev/null", "--model", s(&model)]), "device");
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&std::fs::metadata("/dev/null").unwrap().file_type()));
    failed_with(&retrieve(&["score", s(&input), "-o", s(tmp.path()), "--model", s(&model)]), "directory");
    // Output = input, for every command that writes.
    let original = std::fs::read(&input).unwrap();
    failed_with(&retrieve(&["score", s(&input), "-o", s(&input), "--model", s(&model)]), "input");
    let sentences = tmp.path().join("s.txt");
    std::fs::write(&sentences, "how to cook rice\nhow do i cook rice\n").unwrap();
    failed_with(&retrieve(&["dedup", s(&sentences), "-o", s(&sentences), "--model", s(&model)]), "input");
    failed_with(&retrieve(&["index", s(&sentences), "--index", s(&sentences), "--model", s(&model)]), "input");
    failed_with(&retrieve(&["add", s(&sentences), "--index", s(&sentences), "--model", s(&model)]), "input");
    assert_eq!(std::fs::read(&input).unwrap(), original);
    assert_eq!(std::fs::read_to_string(&sentences).unwrap(), "how to cook rice\nhow do i cook rice\n");
    // `index --index X` replaces an index, never another file.
    failed_with(&retrieve(&["index", s(&sentences), "--index", s(&kept), "--model", s(&model)]), "not an index");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "precious");
}

#[test]
fn a_closed_stdout_or_stderr_ends_quietly_and_files_still_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 7, 8);
    let idx = index_of(tmp.path(), &model);
    // The reader of stdout is gone before the first write (`| head -c1` at its worst).
    let mut child = Command::new(env!("CARGO_BIN_EXE_retrieve"))
        .args(["search", "how to cook rice", "-k", "2000", "--index", s(&idx), "--model", s(&model), "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "status {:?}: {}", out.status, stderr(&out));
    assert!(stderr(&out).is_empty(), "quiet: {}", stderr(&out));

    // `score … 2>&1 | head -n 2`: warnings cannot be written, the output file still is.
    let input = tmp.path().join("in.csv");
    let mut text = String::from("sentence1,sentence2\n");
    for i in 0..200 {
        text.push_str(&format!("question {i} about rice,\n"));
    }
    std::fs::write(&input, text).unwrap();
    let out_path = tmp.path().join("out.csv");
    let mut child = Command::new(env!("CARGO_BIN_EXE_retrieve"))
        .args(["score", s(&input), "-o", s(&out_path), "--model", s(&model)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let written = std::fs::read_to_string(&out_path).unwrap();
    assert_eq!(written.lines().count(), 201, "header and every row");
}

#[test]
fn sizes_from_flags_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 8, 8);
    let idx = index_of(tmp.path(), &model);
    for k in ["1000000000000", "9223372036854775807", "18446744073709551615"] {
        let out = ok(&retrieve(&["search", "rice", "-k", k, "--index", s(&idx), "--model", s(&model), "--json"]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["queries"][0]["results"].as_array().unwrap().len(), 21, "k = {k}: every stored sentence, no more");
    }
    failed_with(&retrieve(&["search", "rice", "-k", "0", "--index", s(&idx), "--model", s(&model)]), "-k");
    let input = tmp.path().join("in.csv");
    std::fs::write(&input, "sentence1,sentence2\na,b\n").unwrap();
    failed_with(&retrieve(&["score", s(&input), "--batch-rows", "99999999999999", "--model", s(&model)]), "batch-rows");
    for t in ["NaN", "inf", "1.5", "-2"] {
        failed_with(&retrieve(&["dedup", s(&idx), &format!("--threshold={t}"), "--model", s(&model)]), "threshold");
    }
}

#[test]
fn stored_text_cannot_forge_lines_or_drive_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 9, 8);
    let csv_path = tmp.path().join("q.csv");
    std::fs::write(&csv_path, "text\n\"rice\n  2. 0.999  duplicate      forged\"\n\"\u{1b}[31mred rice\u{1b}[0m\"\nplain rice\n").unwrap();
    let idx = tmp.path().join("q.idx");
    ok(&retrieve(&["index", s(&csv_path), "--column", "text", "--index", s(&idx), "--model", s(&model)]));
    let out = ok(&retrieve(&["search", "rice\u{1b}]0;title\u{7}", "-k", "3", "--index", s(&idx), "--model", s(&model)]));
    assert_eq!(out.lines().count(), 4, "the query and three hits, one line each: {out}");
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("rice\\n  2. 0.999"), "{out}");
    // JSON keeps the text as stored.
    let out = ok(&retrieve(&["search", "rice", "-k", "3", "--index", s(&idx), "--model", s(&model), "--json"]));
    assert!(out.contains("\\u001b[31mred rice"), "{out}");
}

#[test]
fn killed_runs_leave_no_temporaries_after_the_next_write() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_package(tmp.path(), 10, 8);
    let idx = index_of(tmp.path(), &model);
    // What a SIGKILLed run leaves: a temporary named for a process that no longer runs.
    let stale = tmp.path().join(format!("{}999999999-x1y2z3", fsio::TEMP_PREFIX));
    std::fs::write(&stale, "half an index").unwrap();
    let more = tmp.path().join("more.txt");
    std::fs::write(&more, "one more question about trees\n").unwrap();
    ok(&retrieve(&["add", s(&more), "--index", s(&idx), "--model", s(&model)]));
    assert!(!stale.exists(), "the next write into the directory removed it");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(fsio::TEMP_PREFIX))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_huge_count_in_a_checksummed_index_header_is_refused_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("evil.idx");
    for header in [
        r#"{"format":2,"fingerprint":"x","dim":0,"count":1000000000000,"source_hash":null}"#,
        r#"{"format":2,"fingerprint":"x","dim":1,"count":1000000000000,"source_hash":null}"#,
        r#"{"format":2,"fingerprint":"x","dim":4000000000,"count":4000000000,"source_hash":null}"#,
        r#"{"format":3,"fingerprint":"x","dim":1,"count":1000000000000,"source_hash":null,"next_id":1}"#,
        r#"{"format":3,"fingerprint":"x","dim":65536,"count":4000000000,"source_hash":null,"next_id":1}   "#,
    ] {
        let mut bytes = b"TWINIDX1".to_vec();
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes);
        bytes.extend_from_slice(&sum.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let err = Index::load(&p).unwrap_err().to_string();
        assert!(err.contains("evil.idx"), "{err}");
    }
    // A header length beyond the file.
    let mut bytes = b"TWINIDX1".to_vec();
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    assert!(Index::read_header(&p).unwrap_err().to_string().contains("does not fit"));
}
