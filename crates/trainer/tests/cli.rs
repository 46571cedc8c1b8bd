//! The `train` and `eval` binaries on bad input: clear errors naming file and line, no panics.

use std::path::PathBuf;
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A config like tiny.toml that trains on `file` for one epoch.
fn config_for(dir: &std::path::Path, file: &str) -> PathBuf {
    let text = std::fs::read_to_string(fixtures().join("tiny.toml"))
        .unwrap()
        .replace("train = \"pairs.csv\"", &format!("train = \"{file}\""))
        .replace("valid_size = 10", "valid_size = 1")
        .replace("epochs = 6", "epochs = 1");
    let p = dir.join("c.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn train(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_train")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_rows_are_errors_naming_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = fixtures();
    let data_dir = data_dir.to_str().unwrap();
    for (file, needle) in [
        ("bad_missing_column.csv", "bad_missing_column.csv:3: missing column"),
        ("bad_label.csv", "bad_label.csv:3: label \"yes\" is not a number"),
        ("bad_empty.csv", "bad_empty.csv:3: empty sentence"),
        ("bad_utf8.csv", "bad_utf8.csv:3: column 1 (first sentence) is not valid UTF-8"),
    ] {
        let cfg = config_for(tmp.path(), file);
        let (ok, stderr) = train(&["--config", cfg.to_str().unwrap(), "--data-dir", data_dir, "--quiet"]);
        assert!(!ok, "{file} should fail");
        assert!(stderr.contains(needle), "{file}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn skip_bad_rows_warns_and_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config_for(tmp.path(), "pairs.csv");
    // A copy of the fixture with a broken row appended.
    let mut text = std::fs::read_to_string(fixtures().join("pairs.csv")).unwrap();
    text.push_str("only one column\n");
    let data = tmp.path().join("pairs.csv");
    std::fs::write(&data, text).unwrap();
    let out = tmp.path().join("model");
    let (ok, stderr) = train(&[
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        tmp.path().to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--skip-bad-rows",
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("pairs.csv:42: skipped: missing column"), "{stderr}");
    assert!(out.join("model.bpk").is_file());
}

#[test]
fn missing_config_data_and_model_are_clear_errors() {
    let (ok, stderr) = train(&["--config", "/no/such/config.toml"]);
    assert!(!ok && stderr.contains("/no/such/config.toml"), "{stderr}");

    let tmp = tempfile::tempdir().unwrap();
    let cfg = config_for(tmp.path(), "absent.csv");
    let (ok, stderr) = train(&["--config", cfg.to_str().unwrap(), "--data-dir", tmp.path().to_str().unwrap()]);
    assert!(!ok && stderr.contains("absent.csv"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_eval")).args(["--model", "/no/such/model", "--data", "x.csv"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("/no/such/model") && stderr.contains("no model package"), "{stderr}");
}

fn eval(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eval")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn eval_prints_binary_graded_retrieval_and_heldout_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config_for(tmp.path(), "pairs.csv");
    let model = tmp.path().join("model");
    let fx = fixtures();
    let (ok, stderr) =
        train(&["--config", cfg.to_str().unwrap(), "--data-dir", fx.to_str().unwrap(), "--output", model.to_str().unwrap(), "--quiet"]);
    assert!(ok, "{stderr}");
    let m = model.to_str().unwrap();

    // Binary CSV with retrieval, as JSON.
    let split = fx.join("pairs.csv");
    let (ok, out, err) = eval(&["--model", m, "--task", "csv", "--split", split.to_str().unwrap(), "--retrieval", "true", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["binary"]["n"], 40);
    assert_eq!(v["retrieval"]["queries"], 20);
    assert!(v.get("graded").is_none());

    // Graded CSV: correlations and MSE on the 0-5 scale, found under --data-dir.
    let (ok, out, err) =
        eval(&["--model", m, "--task", "csv", "--split", "graded.csv", "--score-range", "0,5", "--data-dir", fx.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("30 pairs") && out.contains("pearson") && out.contains("spearman") && out.contains("MSE"), "{out}");
    // Scores outside the stated range are an error naming file and line.
    let (ok, _, err) = eval(&["--model", m, "--task", "csv", "--split", fx.join("graded.csv").to_str().unwrap(), "--score-range", "0,4"]);
    assert!(!ok && err.contains("graded.csv:2: score 5 outside the range [0, 4]"), "{err}");

    // --heldout re-derives the validation split the package was trained against: 1 pair here.
    let (ok, out, err) = eval(&["--model", m, "--heldout", "--data-dir", fx.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["binary"]["n"], 1);
    assert!(v.get("retrieval").is_some(), "{out}");
}

#[test]
fn output_that_is_not_a_package_is_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config_for(tmp.path(), "pairs.csv");
    let fx = fixtures();
    // A folder of the user's (`--output ../shared` by mistake): refused, contents intact.
    let folder = tmp.path().join("data");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("precious.tsv"), "1\ta\tb\n").unwrap();
    // A file.
    let file = tmp.path().join("model.txt");
    std::fs::write(&file, "x").unwrap();
    for (out, needle) in [(&folder, "not a model package"), (&file, "regular file")] {
        // With no data at all, the refusal still comes first: it precedes loading and training.
        let (ok, stderr) =
            train(&["--config", cfg.to_str().unwrap(), "--data-dir", "/no/such/dir", "--output", out.to_str().unwrap(), "--quiet"]);
        assert!(!ok && stderr.contains(out.to_str().unwrap()) && stderr.contains(needle), "{stderr}");
        assert!(!stderr.contains("/no/such/dir"), "refused before reading data: {stderr}");
    }
    assert_eq!(std::fs::read_to_string(folder.join("precious.tsv")).unwrap(), "1\ta\tb\n");
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 1);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    // A package is retrained in place.
    let pkg = tmp.path().join("pkg");
    for _ in 0..2 {
        let (ok, stderr) =
            train(&["--config", cfg.to_str().unwrap(), "--data-dir", fx.to_str().unwrap(), "--output", pkg.to_str().unwrap(), "--quiet"]);
        assert!(ok, "{stderr}");
    }
    assert!(pkg.join("checksums.json").is_file());
}
