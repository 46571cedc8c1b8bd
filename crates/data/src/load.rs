//! Loaders for labelled sentence pairs.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::{DataError, Result};

/// One labelled sentence pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// First sentence.
    pub a: String,
    /// Second sentence.
    pub b: String,
    /// 1.0 for a genuine (duplicate) pair, 0.0 for an impostor; graded data keeps its score.
    pub label: f32,
    /// 1-based line of the row in its file, so later errors can point back at it.
    pub line: u64,
}

/// The file layouts the loaders understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairFormat {
    /// Quora BiMPM partition: `label \t question1 \t question2 \t id`, no header, no quoting.
    Qqp,
    /// A CSV with a header naming `sentence1,sentence2,label` (or `question1,question2,is_duplicate`).
    Csv,
    /// SICK's `SICK.txt`: tab separated with a header; `relatedness_score` (1–5) is the label and
    /// [`LoadOptions::subset`] keeps the rows of one `SemEval_set` (TRAIN, TRIAL).
    Sick,
    /// STS Benchmark CSV: tab separated, not quote-aware, no header; the score (0–5) and the two
    /// sentences are columns 5–7; extra trailing fields are ignored.
    Stsb,
    /// SemEval STS 2012–2016 `.tsv`: `score \t s1 \t s2`; rows without a gold score are skipped.
    Sts,
    /// MRPC: `Quality \t #1 ID \t #2 ID \t #1 String \t #2 String` with a header.
    Mrpc,
}

impl PairFormat {
    /// The range of the label column: `(0, 1)` for binary formats, SICK's relatedness `(1, 5)`,
    /// STS's `(0, 5)`. Training scales graded labels to `[0, 1]` with it.
    pub fn score_range(&self) -> (f32, f32) {
        match self {
            PairFormat::Qqp | PairFormat::Csv | PairFormat::Mrpc => (0.0, 1.0),
            PairFormat::Sick => (1.0, 5.0),
            PairFormat::Stsb | PairFormat::Sts => (0.0, 5.0),
        }
    }

    /// Whether the label is a graded score rather than 0/1.
    pub fn is_graded(&self) -> bool {
        self.score_range() != (0.0, 1.0)
    }

    /// Guesses the format from the extension: `.tsv` is QQP, anything else CSV.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("tsv") => PairFormat::Qqp,
            _ => PairFormat::Csv,
        }
    }
}

impl std::str::FromStr for PairFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "qqp" | "tsv" => Ok(PairFormat::Qqp),
            "csv" => Ok(PairFormat::Csv),
            "sick" => Ok(PairFormat::Sick),
            "stsb" | "sts-b" => Ok(PairFormat::Stsb),
            "sts" => Ok(PairFormat::Sts),
            "mrpc" => Ok(PairFormat::Mrpc),
            other => Err(format!("unknown task {other:?} (expected qqp, sick, stsb, sts, mrpc or csv)")),
        }
    }
}

impl std::fmt::Display for PairFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            PairFormat::Qqp => "qqp",
            PairFormat::Csv => "csv",
            PairFormat::Sick => "sick",
            PairFormat::Stsb => "stsb",
            PairFormat::Sts => "sts",
            PairFormat::Mrpc => "mrpc",
        };
        f.write_str(s)
    }
}

/// How strict loading is.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Skip malformed rows (they are returned in [`Loaded::skipped`]) instead of failing on the
    /// first one.
    pub skip_bad: bool,
    /// For SICK: the `SemEval_set` to keep (e.g. `TRAIN`, `TRIAL`); all rows when `None`.
    pub subset: Option<String>,
}

/// A row that was skipped, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    /// 1-based line number.
    pub line: u64,
    /// What was wrong.
    pub reason: String,
}

/// The result of loading a file.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The good rows, in file order.
    pub pairs: Vec<Pair>,
    /// Rows left out under [`LoadOptions::skip_bad`].
    pub skipped: Vec<BadRow>,
}

fn open(path: &Path, format: PairFormat) -> Result<csv::Reader<std::fs::File>> {
    let file = std::fs::File::open(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let mut b = csv::ReaderBuilder::new();
    b.flexible(true);
    match format {
        PairFormat::Qqp | PairFormat::Stsb | PairFormat::Sts => b.delimiter(b'\t').quoting(false).has_headers(false),
        PairFormat::Sick | PairFormat::Mrpc => b.delimiter(b'\t').quoting(false).has_headers(true),
        PairFormat::Csv => b.has_headers(true),
    };
    Ok(b.from_reader(file))
}

/// The column indexes of the two sentences and the label.
fn csv_columns(path: &Path, headers: &csv::ByteRecord) -> Result<[usize; 3]> {
    let names: Vec<String> =
        headers.iter().map(|h| String::from_utf8_lossy(h).trim().trim_start_matches('\u{feff}').to_lowercase()).collect();
    let find = |cands: &[&str]| names.iter().position(|n| cands.contains(&n.as_str()));
    let a = find(&["sentence1", "question1", "text1", "s1"]);
    let b = find(&["sentence2", "question2", "text2", "s2"]);
    let l = find(&["label", "is_duplicate", "score"]);
    match (a, b, l) {
        (Some(a), Some(b), Some(l)) => Ok([a, b, l]),
        _ => Err(DataError::File {
            path: path.to_path_buf(),
            reason: format!("header must name sentence1,sentence2,label (or question1,question2,is_duplicate); found {:?}", names),
        }),
    }
}

fn field<'r>(rec: &'r csv::ByteRecord, i: usize, name: &str) -> std::result::Result<&'r str, String> {
    let raw = rec.get(i).ok_or_else(|| format!("missing column {} ({name}): row has {} fields", i + 1, rec.len()))?;
    std::str::from_utf8(raw).map_err(|e| format!("column {} ({name}) is not valid UTF-8: {e}", i + 1))
}

fn parse_row(rec: &csv::ByteRecord, cols: [usize; 3]) -> std::result::Result<(String, String, f32), String> {
    let a = field(rec, cols[0], "first sentence")?.trim();
    let b = field(rec, cols[1], "second sentence")?.trim();
    let label_s = field(rec, cols[2], "label")?.trim();
    let label: f32 = label_s.parse().map_err(|_| format!("label {label_s:?} is not a number"))?;
    if !label.is_finite() {
        return Err(format!("label {label_s:?} is not finite"));
    }
    if a.is_empty() || b.is_empty() {
        return Err("empty sentence".to_string());
    }
    Ok((a.to_string(), b.to_string(), label))
}

/// Loads labelled pairs. Every malformed row (missing column, empty sentence, non-numeric label,
/// invalid UTF-8) is an error naming file and line, or is skipped and reported under
/// [`LoadOptions::skip_bad`]. A file with no usable row is always an error.
pub fn load_pairs(path: &Path, format: PairFormat, options: LoadOptions) -> Result<Loaded> {
    let mut reader = open(path, format)?;
    let mut filter: Option<usize> = None;
    let cols = match format {
        PairFormat::Qqp => [1, 2, 0],
        PairFormat::Stsb => [5, 6, 4],
        PairFormat::Sts => [1, 2, 0],
        PairFormat::Mrpc => [3, 4, 0],
        PairFormat::Csv | PairFormat::Sick => {
            let headers = reader.byte_headers().map_err(|e| csv_error(path, e))?.clone();
            if format == PairFormat::Sick {
                let names: Vec<String> = headers.iter().map(|h| String::from_utf8_lossy(h).trim().to_lowercase()).collect();
                let find = |n: &str| names.iter().position(|h| h == n);
                filter = find("semeval_set");
                match (find("sentence_a"), find("sentence_b"), find("relatedness_score")) {
                    (Some(a), Some(b), Some(l)) => [a, b, l],
                    _ => {
                        return Err(DataError::File {
                            path: path.to_path_buf(),
                            reason: "not a SICK file: needs sentence_A, sentence_B, relatedness_score".into(),
                        })
                    }
                }
            } else {
                csv_columns(path, &headers)?
            }
        }
    };
    if options.subset.is_some() && filter.is_none() {
        return Err(DataError::File {
            path: path.to_path_buf(),
            reason: "a subset was asked for, but the file has no SemEval_set column".into(),
        });
    }
    let mut out = Loaded::default();
    let mut rec = csv::ByteRecord::new();
    loop {
        let more = reader.read_byte_record(&mut rec).map_err(|e| csv_error(path, e))?;
        if !more {
            break;
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.len() == 1 && rec.get(0).is_some_and(|f| f.iter().all(u8::is_ascii_whitespace)) {
            continue; // blank line
        }
        if let (Some(i), Some(want)) = (filter, &options.subset) {
            if !rec.get(i).is_some_and(|v| v.eq_ignore_ascii_case(want.as_bytes())) {
                continue;
            }
        }
        if format == PairFormat::Sts && rec.get(0).is_some_and(|v| v.iter().all(u8::is_ascii_whitespace)) {
            out.skipped.push(BadRow { line, reason: "no gold score".into() });
            continue;
        }
        match parse_row(&rec, cols) {
            Ok((a, b, label)) => out.pairs.push(Pair { a, b, label, line }),
            Err(reason) if options.skip_bad => out.skipped.push(BadRow { line, reason }),
            Err(reason) => return Err(DataError::Row { path: path.to_path_buf(), line, reason }),
        }
    }
    if out.pairs.is_empty() {
        return Err(DataError::File { path: path.to_path_buf(), reason: "no usable rows".into() });
    }
    Ok(out)
}

fn csv_error(path: &Path, e: csv::Error) -> DataError {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    match e.into_kind() {
        csv::ErrorKind::Io(source) => DataError::Io { path: path.to_path_buf(), source },
        kind => DataError::Row { path: path.to_path_buf(), line, reason: format!("{kind:?}") },
    }
}

/// Requires every label to be 0 or 1, as binary training and evaluation need.
pub fn check_binary(path: &Path, pairs: &[Pair]) -> Result<()> {
    match pairs.iter().find(|p| p.label != 0.0 && p.label != 1.0) {
        Some(p) => Err(DataError::Row { path: PathBuf::from(path), line: p.line, reason: format!("label {} is not 0 or 1", p.label) }),
        None => Ok(()),
    }
}

/// Shuffles with `seed` and splits off `n_valid` pairs for validation; the same seed always gives
/// the same split.
pub fn split_train_valid(mut pairs: Vec<Pair>, n_valid: usize, seed: u64) -> (Vec<Pair>, Vec<Pair>) {
    let mut rng = StdRng::seed_from_u64(seed);
    pairs.shuffle(&mut rng);
    let n_valid = n_valid.min(pairs.len());
    let valid = pairs.split_off(pairs.len() - n_valid);
    (pairs, valid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        p
    }

    #[test]
    fn reads_qqp_tsv_with_quotes_inside() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "d.tsv", b"1\tWhat is \"x\" ?\tWhat's x ?\t7\n0\ta b\tc d\t8\n");
        let l = load_pairs(&p, PairFormat::Qqp, LoadOptions::default()).unwrap();
        assert_eq!(l.pairs.len(), 2);
        assert_eq!(l.pairs[0].a, "What is \"x\" ?");
        assert_eq!(l.pairs[0].label, 1.0);
        assert_eq!(l.pairs[1].line, 2);
    }

    #[test]
    fn reads_csv_with_quoted_commas_and_newlines_and_alternate_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "d.csv", b"id,question1,question2,is_duplicate\n1,\"a, b\",\"c\nd\",1\n2,e,f,0\n");
        let l = load_pairs(&p, PairFormat::Csv, LoadOptions::default()).unwrap();
        assert_eq!(l.pairs[0].a, "a, b");
        assert_eq!(l.pairs[0].b, "c\nd");
        assert_eq!(l.pairs[1].line, 4, "the second row starts on line 4 after a quoted newline");
    }

    fn err_of(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "bad.csv", bytes);
        load_pairs(&p, PairFormat::Csv, LoadOptions::default()).unwrap_err().to_string()
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let e = err_of(b"sentence1,sentence2,label\na,b,1\nc,d\n");
        assert!(e.contains("bad.csv:3:") && e.contains("missing column"), "{e}");
        let e = err_of(b"sentence1,sentence2,label\na,,1\n");
        assert!(e.contains("bad.csv:2:") && e.contains("empty sentence"), "{e}");
        let e = err_of(b"sentence1,sentence2,label\na,b,yes\n");
        assert!(e.contains("bad.csv:2:") && e.contains("not a number"), "{e}");
        let e = err_of(b"sentence1,sentence2,label\na,b,1\n\xff\xfe,b,0\n");
        assert!(e.contains("bad.csv:3:") && e.contains("UTF-8"), "{e}");
        let e = err_of(b"foo,bar\n1,2\n");
        assert!(e.contains("bad.csv") && e.contains("header"), "{e}");
        let e = err_of(b"sentence1,sentence2,label\n");
        assert!(e.contains("no usable rows"), "{e}");
    }

    #[test]
    fn skip_bad_keeps_good_rows_and_reports_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "m.csv", b"sentence1,sentence2,label\na,b,1\nc,d\n,e,0\nf,g,0\n");
        let l = load_pairs(&p, PairFormat::Csv, LoadOptions { skip_bad: true, ..Default::default() }).unwrap();
        assert_eq!(l.pairs.iter().map(|p| p.a.as_str()).collect::<Vec<_>>(), ["a", "f"]);
        assert_eq!(l.skipped.iter().map(|r| r.line).collect::<Vec<_>>(), [3, 4]);
    }

    #[test]
    fn missing_file_names_path() {
        let e = load_pairs(Path::new("/no/such/file.tsv"), PairFormat::Qqp, LoadOptions::default()).unwrap_err();
        assert!(e.to_string().contains("/no/such/file.tsv"));
    }

    #[test]
    fn check_binary_points_at_graded_label() {
        let pairs = vec![Pair { a: "a".into(), b: "b".into(), label: 0.5, line: 9 }];
        let e = check_binary(Path::new("x.csv"), &pairs).unwrap_err().to_string();
        assert!(e.starts_with("x.csv:9:"), "{e}");
    }

    #[test]
    fn split_is_seeded_and_disjoint() {
        let pairs: Vec<Pair> = (0..100).map(|i| Pair { a: format!("a{i}"), b: "b".into(), label: 0.0, line: i + 1 }).collect();
        let (t1, v1) = split_train_valid(pairs.clone(), 10, 7);
        let (t2, v2) = split_train_valid(pairs.clone(), 10, 7);
        let (_, v3) = split_train_valid(pairs, 10, 8);
        assert_eq!((t1.len(), v1.len()), (90, 10));
        assert_eq!(v1, v2);
        assert_eq!(t1, t2);
        assert_ne!(v1, v3);
        assert!(v1.iter().all(|v| !t1.contains(v)));
    }

    #[test]
    fn reads_sick_stsb_sts_and_mrpc_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let sick = write(&dir, "SICK.txt", b"pair_ID\tsentence_A\tsentence_B\trelatedness_score\tSemEval_set\n1\tA dog runs\tA dog is running\t4.5\tTRAIN\n2\tA cat\tA car\t1.2\tTRIAL\n");
        let opts = LoadOptions { subset: Some("trial".into()), ..Default::default() };
        let l = load_pairs(&sick, PairFormat::Sick, opts).unwrap();
        assert_eq!((l.pairs.len(), l.pairs[0].a.as_str(), l.pairs[0].label), (1, "A cat", 1.2));
        assert_eq!(load_pairs(&sick, PairFormat::Sick, LoadOptions::default()).unwrap().pairs.len(), 2);

        // Not quote-aware, extra trailing fields ignored.
        let stsb = write(&dir, "sts.csv", b"g\tf\t2012\t1\t3.5\tA \"quoted\" one\tAnother\textra\tmore\n");
        let l = load_pairs(&stsb, PairFormat::Stsb, LoadOptions::default()).unwrap();
        assert_eq!((l.pairs[0].a.as_str(), l.pairs[0].b.as_str(), l.pairs[0].label), ("A \"quoted\" one", "Another", 3.5));

        let sts = write(&dir, "s.tsv", b"4.2\tOne\tTwo\n\tNo score\tHere\n");
        let l = load_pairs(&sts, PairFormat::Sts, LoadOptions::default()).unwrap();
        assert_eq!((l.pairs.len(), l.skipped.len(), l.pairs[0].label), (1, 1, 4.2));

        let mrpc =
            write(&dir, "m.txt", "\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t7\t8\tHe said \"yes\".\tHe agreed.\n".as_bytes());
        let l = load_pairs(&mrpc, PairFormat::Mrpc, LoadOptions::default()).unwrap();
        assert_eq!((l.pairs[0].a.as_str(), l.pairs[0].label, l.pairs[0].line), ("He said \"yes\".", 1.0, 2));
    }
}
