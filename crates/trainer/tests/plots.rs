//! The plots of the `train` and `eval` binaries: training.svg in the package, and
//! `eval --plots DIR` writing pr.svg and scores.svg.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A config like tiny.toml that trains on the fixture pairs for two epochs.
fn config(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(fixtures().join("tiny.toml")).unwrap().replace("epochs = 6", "epochs = 2");
    let p = dir.join("c.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().unwrap()
}

/// Trains the fixture model into `model` for `epochs` epochs.
fn train(cfg: &Path, model: &Path, epochs: &str) -> Output {
    let fx = fixtures();
    let (cfg, fx, model) = (cfg.to_str().unwrap(), fx.to_str().unwrap(), model.to_str().unwrap());
    run(env!("CARGO_BIN_EXE_train"), &["--config", cfg, "--data-dir", fx, "--output", model, "--quiet", "--epochs", epochs])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A file that holds one whole SVG element.
fn assert_svg(path: &Path) {
    let svg = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{}: {svg}", path.display());
    assert_eq!(svg.matches("<svg").count(), svg.matches("</svg>").count(), "{}", path.display());
}

#[test]
fn train_writes_curves_and_eval_writes_plots() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let model = tmp.path().join("model");
    let fx = fixtures();
    let out = train(&cfg, &model, "2");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let curves = model.join("training.svg");
    assert_svg(&curves);
    let svg = std::fs::read_to_string(&curves).unwrap();
    assert!(svg.contains("training loss") && svg.contains("best epoch"), "{svg}");
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("curves written to {}", curves.display())), "{stdout}");
    let m = model.to_str().unwrap();
    let split = fx.join("pairs.csv");
    let split = split.to_str().unwrap();

    // eval loads the package with its plot, and --plots writes into a directory that does not
    // exist yet.
    let plots = tmp.path().join("plots/eval");
    let out = run(env!("CARGO_BIN_EXE_eval"), &["--model", m, "--split", split, "--plots", plots.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_svg(&plots.join("pr.svg"));
    assert_svg(&plots.join("scores.svg"));
    let pr = std::fs::read_to_string(plots.join("pr.svg")).unwrap();
    assert!(pr.contains("AP ") && pr.contains("pairs.csv"), "{pr}");
    let scores = std::fs::read_to_string(plots.join("scores.svg")).unwrap();
    assert!(scores.contains("duplicates (") && scores.contains("decision threshold"), "{scores}");
    assert!(text(&out.stdout).contains("plots written to"), "{}", text(&out.stdout));

    // Again, over the files, with --json: standard output stays one JSON document.
    let out = run(env!("CARGO_BIN_EXE_eval"), &["--model", m, "--split", split, "--plots", plots.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(v["binary"]["n"], 40);

    // Retraining into the package with its plot replaces it.
    let out = train(&cfg, &model, "1");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_svg(&curves);
}

#[test]
fn eval_plots_refuses_a_file_and_graded_data() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let model = tmp.path().join("model");
    let fx = fixtures();
    let out = train(&cfg, &model, "1");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = model.to_str().unwrap();
    let split = fx.join("pairs.csv");

    // --plots naming a file: refused, the file untouched.
    let file = tmp.path().join("notes.txt");
    std::fs::write(&file, "mine").unwrap();
    let out = run(env!("CARGO_BIN_EXE_eval"), &["--model", m, "--split", split.to_str().unwrap(), "--plots", file.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success() && stderr.contains("not a directory") && !stderr.contains("panicked"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");

    // A directory whose pr.svg is a directory: refused before anything is written.
    let dir = tmp.path().join("plots");
    std::fs::create_dir_all(dir.join("pr.svg")).unwrap();
    let out = run(env!("CARGO_BIN_EXE_eval"), &["--model", m, "--split", split.to_str().unwrap(), "--plots", dir.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success() && stderr.contains("pr.svg"), "{stderr}");
    assert!(!dir.join("scores.svg").exists());

    // Graded data: no plots, said before evaluating.
    let (graded, g) = (fx.join("graded.csv"), tmp.path().join("g"));
    let (graded, g_dir) = (graded.to_str().unwrap(), g.to_str().unwrap());
    let out =
        run(env!("CARGO_BIN_EXE_eval"), &["--model", m, "--task", "csv", "--split", graded, "--score-range", "0,5", "--plots", g_dir]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success() && stderr.contains("binary tasks only"), "{stderr}");
    assert!(!g.exists());
}
