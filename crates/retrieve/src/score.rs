//! Streaming similarity scoring of CSV files of sentence pairs.
//!
//! Rows are read, embedded and written in fixed-size batches, so memory stays flat whatever
//! the file size. A malformed row (wrong number of fields, invalid UTF-8, empty sentence) is
//! reported with its line number and written out with an `error` column, and every good row is
//! still scored; in strict mode the first bad row stops the run instead.

use std::io::{Read, Write};

use data::metrics::{binary_metrics, BinaryMetrics};
use encoder::Embedder;

use crate::{Result, RetrieveError};

/// Most rows scored in one batch; a larger `batch_rows` is cut to this.
pub const MAX_BATCH_ROWS: usize = 1 << 20;

/// Layout of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// A CSV (or TSV) with a header row; columns are picked by name.
    Header {
        /// Field separator.
        delimiter: u8,
        /// Whether `"` quotes fields.
        quoting: bool,
    },
    /// The Quora BiMPM TSV: `label \t q1 \t q2 \t id`, no header, no quoting.
    Qqp,
}

/// How to score.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// The two sentence columns by name (header layouts); guessed when `None`.
    pub columns: Option<(String, String)>,
    /// Stop at the first bad row.
    pub strict: bool,
    /// Rows per batch.
    pub batch_rows: usize,
    /// Input layout.
    pub layout: Layout,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self { columns: None, strict: false, batch_rows: 2048, layout: Layout::Header { delimiter: b',', quoting: true } }
    }
}

/// What a scoring run did.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreSummary {
    /// Data rows read.
    pub rows: u64,
    /// Rows scored.
    pub scored: u64,
    /// Rows reported as bad.
    pub bad: u64,
    /// Metrics at the model's threshold, when the input has a 0/1 label column.
    pub metrics: Option<BinaryMetrics>,
}

/// Columns of the two sentences and of the label, if any.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Columns {
    a: usize,
    b: usize,
    label: Option<usize>,
}

fn pick_columns(
    headers: &[String],
    first: Option<&csv::ByteRecord>,
    wanted: &Option<(String, String)>,
) -> std::result::Result<Columns, String> {
    let lower: Vec<String> = headers.iter().map(|h| h.trim().trim_start_matches('\u{feff}').to_lowercase()).collect();
    let find = |name: &str| lower.iter().position(|h| h == &name.to_lowercase());
    let label = ["label", "is_duplicate"].iter().find_map(|n| find(n));
    if let Some((a, b)) = wanted {
        let a = find(a).ok_or_else(|| format!("no column named {a:?} in header {headers:?}"))?;
        let b = find(b).ok_or_else(|| format!("no column named {b:?} in header {headers:?}"))?;
        return Ok(Columns { a, b, label });
    }
    for (x, y) in [("sentence1", "sentence2"), ("question1", "question2"), ("text1", "text2"), ("s1", "s2")] {
        if let (Some(a), Some(b)) = (find(x), find(y)) {
            return Ok(Columns { a, b, label });
        }
    }
    // The first two columns whose first value is text rather than a number or id.
    let texty: Vec<usize> = (0..headers.len())
        .filter(|&i| Some(i) != label)
        .filter(|&i| match first.and_then(|r| r.get(i)) {
            Some(v) => std::str::from_utf8(v).map(|s| s.trim().parse::<f64>().is_err() && !s.trim().is_empty()).unwrap_or(true),
            None => true,
        })
        .collect();
    match texty.as_slice() {
        [a, b, ..] => Ok(Columns { a: *a, b: *b, label }),
        _ => Err(format!("cannot tell which two columns hold the sentences in {headers:?}; use --columns A,B")),
    }
}

struct Pending {
    record: csv::ByteRecord,
    /// The two sentences, or why the row is bad.
    parsed: std::result::Result<(String, String), String>,
    label: Option<bool>,
}

fn parse(record: &csv::ByteRecord, cols: Columns, width: usize) -> std::result::Result<(String, String), String> {
    if record.len() < width {
        return Err(format!("expected {width} fields, found {}", record.len()));
    }
    if record.len() > width {
        // The extra fields leave the row (it keeps the header's columns), so the message keeps
        // them: nothing of the input is lost.
        let extra: Vec<String> = record.iter().skip(width).map(|f| String::from_utf8_lossy(f).into_owned()).collect();
        let mut extra = serde_json::to_string(&extra).unwrap_or_default();
        if extra.len() > 512 {
            let cut = (0..=512).rev().find(|&i| extra.is_char_boundary(i)).unwrap_or(0);
            extra = format!("{}…", &extra[..cut]);
        }
        return Err(format!("expected {width} fields, found {}; extra fields: {extra}", record.len()));
    }
    let get = |i: usize| -> std::result::Result<String, String> {
        let raw = record.get(i).unwrap_or_default();
        let s = std::str::from_utf8(raw).map_err(|_| format!("field {} is not valid UTF-8", i + 1))?;
        if s.trim().is_empty() {
            return Err(format!("field {} is an empty sentence", i + 1));
        }
        Ok(s.to_string())
    };
    Ok((get(cols.a)?, get(cols.b)?))
}

/// Scores every row of `input` and writes it to `output` with `similarity`, `is_duplicate` and
/// `error` columns appended; a package with a verdict head also gets a `duplicate_probability`
/// column (before `is_duplicate`), and then the head decides `is_duplicate`.
/// `warn(line, message)` hears about each bad row; `progress(rows)` about each finished batch.
pub fn score_csv<R: Read, W: Write>(
    input: R,
    output: W,
    embedder: &Embedder,
    options: &ScoreOptions,
    mut warn: impl FnMut(u64, &str),
    mut progress: impl FnMut(u64),
) -> Result<ScoreSummary> {
    let (delimiter, quoting, has_headers) = match options.layout {
        Layout::Header { delimiter, quoting } => (delimiter, quoting, true),
        Layout::Qqp => (b'\t', false, false),
    };
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).quoting(quoting).has_headers(false).flexible(true).from_reader(input);
    let mut writer = csv::WriterBuilder::new().flexible(true).from_writer(output);
    let csv_err = |e: csv::Error| RetrieveError::Invalid(format!("line {}: {e}", e.position().map(|p| p.line()).unwrap_or(0)));

    let mut records = reader.byte_records();
    let mut first_data: Option<csv::ByteRecord> = None;
    let (headers, cols) = if has_headers {
        let head = match records.next() {
            Some(r) => r.map_err(csv_err)?,
            None => return Err(RetrieveError::Invalid("the input is empty".into())),
        };
        let headers: Vec<String> = head.iter().map(|h| String::from_utf8_lossy(h).into_owned()).collect();
        first_data = records.next().transpose().map_err(csv_err)?;
        let cols = pick_columns(&headers, first_data.as_ref(), &options.columns).map_err(RetrieveError::Invalid)?;
        (headers, cols)
    } else {
        let headers = ["label", "question1", "question2", "id"].map(String::from).to_vec();
        (headers, Columns { a: 1, b: 2, label: Some(0) })
    };
    let width = headers.len();
    let mut out_header = headers.clone();
    // Keep the requested column names unless the input already uses them (e.g. a gold
    // `is_duplicate` label): then prefix ours so no column name appears twice.
    let has_head = embedder.package.head.is_some();
    let added: &[&str] =
        if has_head { &["similarity", "duplicate_probability", "is_duplicate", "error"] } else { &["similarity", "is_duplicate", "error"] };
    for name in added {
        let taken = headers.iter().any(|h| h.trim().eq_ignore_ascii_case(name));
        out_header.push(if taken { format!("predicted_{name}") } else { name.to_string() });
    }
    writer.write_record(&out_header).map_err(csv_err)?;

    let energy = embedder.package.config.energy;
    let threshold = embedder.package.threshold;
    let mut summary = ScoreSummary { rows: 0, scored: 0, bad: 0, metrics: None };
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    let mut labelled = cols.label.is_some();
    let batch_rows = options.batch_rows.clamp(1, MAX_BATCH_ROWS);
    let mut pending: Vec<Pending> = Vec::with_capacity(batch_rows);

    let mut flush = |pending: &mut Vec<Pending>, summary: &mut ScoreSummary| -> Result<()> {
        let texts: Vec<&str> = pending.iter().filter_map(|p| p.parsed.as_ref().ok()).flat_map(|(a, b)| [a.as_str(), b.as_str()]).collect();
        let vecs = embedder.embed(&texts)?;
        let d = embedder.dim();
        let verdicts =
            embedder.head_probabilities(texts.len() / 2, |k| (&vecs[2 * k * d..(2 * k + 1) * d], &vecs[(2 * k + 1) * d..(2 * k + 2) * d]));
        let mut k = 0;
        for p in pending.drain(..) {
            // Every output row has the header's columns, then ours: a short row is padded and a
            // long one cut (its extra fields are quoted in `error`), so no value shifts into
            // another column.
            let mut rec = p.record;
            rec.truncate(width);
            while rec.len() < width {
                rec.push_field(b"");
            }
            match &p.parsed {
                Ok(_) => {
                    let dist = energy.distance_host(&vecs[2 * k * d..(2 * k + 1) * d], &vecs[(2 * k + 1) * d..(2 * k + 2) * d]);
                    let sim = energy.similarity_from_distance(f64::from(dist));
                    rec.push_field(format!("{sim:.6}").as_bytes());
                    // The verdict and the ranking score: the head's probability, else the distance.
                    let (dup, score) = match &verdicts {
                        Some((probs, t)) => {
                            rec.push_field(format!("{:.6}", probs[k]).as_bytes());
                            (f64::from(probs[k]) >= *t, probs[k])
                        }
                        None => (f64::from(dist) <= threshold, -dist),
                    };
                    k += 1;
                    rec.push_field(if dup { b"1" } else { b"0" });
                    rec.push_field(b"");
                    summary.scored += 1;
                    if let Some(y) = p.label {
                        scores.push(score);
                        labels.push(y);
                    }
                }
                Err(reason) => {
                    for _ in 1..added.len() {
                        rec.push_field(b"");
                    }
                    rec.push_field(reason.as_bytes());
                }
            }
            writer.write_byte_record(&rec).map_err(csv_err)?;
        }
        progress(summary.rows);
        Ok(())
    };

    let rest = first_data.into_iter().map(Ok).chain(records);
    for rec in rest {
        let record = match rec {
            Ok(r) => r,
            Err(e) => return Err(csv_err(e)),
        };
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.len() == 1 && record.get(0).is_some_and(|f| f.iter().all(u8::is_ascii_whitespace)) {
            continue;
        }
        summary.rows += 1;
        let parsed = parse(&record, cols, width);
        if let Err(reason) = &parsed {
            summary.bad += 1;
            warn(line, reason);
            if options.strict {
                return Err(RetrieveError::BadRow { line, reason: reason.clone() });
            }
        }
        let label = match (cols.label, &parsed) {
            (Some(i), Ok(_)) => match record.get(i).and_then(|v| std::str::from_utf8(v).ok()).map(str::trim) {
                Some("1") => Some(true),
                Some("0") => Some(false),
                _ => {
                    labelled = false; // not a 0/1 label column after all
                    None
                }
            },
            _ => None,
        };
        pending.push(Pending { record, parsed, label });
        if pending.len() >= batch_rows {
            flush(&mut pending, &mut summary)?;
        }
    }
    flush(&mut pending, &mut summary)?;
    writer.flush().map_err(|e| RetrieveError::Invalid(e.to_string()))?;
    if labelled && !labels.is_empty() {
        summary.metrics = Some(match &embedder.package.head {
            Some((_, t)) => binary_metrics(&scores, &labels, *t),
            None => {
                let mut m = binary_metrics(&scores, &labels, -threshold);
                m.threshold = threshold;
                m
            }
        });
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(fields: &[&str]) -> csv::ByteRecord {
        csv::ByteRecord::from(fields.to_vec())
    }

    #[test]
    fn picks_named_then_text_columns() {
        let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = pick_columns(&h(&["id", "question1", "question2", "is_duplicate"]), None, &None).unwrap();
        assert_eq!(c, Columns { a: 1, b: 2, label: Some(3) });
        let first = rec(&["7", "how are you", "who are you", "0.5"]);
        let c = pick_columns(&h(&["id", "x", "y", "score"]), Some(&first), &None).unwrap();
        assert_eq!((c.a, c.b, c.label), (1, 2, None));
        let c = pick_columns(&h(&["p", "q"]), None, &Some(("q".into(), "p".into()))).unwrap();
        assert_eq!((c.a, c.b), (1, 0));
        assert!(pick_columns(&h(&["p", "q"]), None, &Some(("z".into(), "p".into()))).is_err());
    }

    #[test]
    fn bad_rows_are_described() {
        let cols = Columns { a: 0, b: 1, label: None };
        assert!(parse(&rec(&["a", "b"]), cols, 2).is_ok());
        assert!(parse(&rec(&["a"]), cols, 2).unwrap_err().contains("expected 2 fields"));
        let long = parse(&rec(&["a", "b", "stray, \"x\""]), cols, 2).unwrap_err();
        assert_eq!(long, r#"expected 2 fields, found 3; extra fields: ["stray, \"x\""]"#);
        assert!(parse(&rec(&["a", " "]), cols, 2).unwrap_err().contains("empty sentence"));
        let bad = csv::ByteRecord::from(vec![&b"\xff"[..], &b"b"[..]]);
        assert!(parse(&bad, cols, 2).unwrap_err().contains("UTF-8"));
    }
}
