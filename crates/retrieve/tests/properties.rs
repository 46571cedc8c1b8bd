//! Property tests over the two readers of untrusted files: the index reader and the CSV scorer.
//! Arbitrary bytes never panic and never allocate beyond what the file holds; every row of a
//! scored file comes out, in order, in its own columns. Bounded for CI (64 cases each);
//! `PROPTEST_CASES=N` runs longer.

mod common;

use std::sync::OnceLock;

use common::*;
use encoder::{Embedder, ModelPackage};
use proptest::prelude::*;
use retrieve::score::{score_csv, Layout, ScoreOptions};
use retrieve::Index;

fn config() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 64;
    }
    c.failure_persistence = None;
    c
}

fn embedder() -> &'static Embedder {
    static E: OnceLock<(tempfile::TempDir, Embedder)> = OnceLock::new();
    &E.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_package(dir.path(), 11, 8);
        let e = Embedder::new(ModelPackage::load(&model).unwrap());
        (dir, e)
    })
    .1
}

/// A valid index file of `n` sentences, as bytes.
fn valid_index(n: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v.idx");
    let mut idx = Index::new("fp", 3);
    let sentences: Vec<String> = (0..n).map(|i| format!("sentence {i}")).collect();
    let vectors: Vec<f32> = (0..n * 3).map(|i| i as f32 / 10.0).collect();
    idx.extend(sentences, &vectors).unwrap();
    idx.save(&p).unwrap();
    std::fs::read(&p).unwrap()
}

/// `body` with the XXH3 checksum the reader expects, so the parser behind the checksum runs.
fn sealed(mut body: Vec<u8>) -> Vec<u8> {
    let sum = xxhash_rust::xxh3::xxh3_64(&body);
    body.extend_from_slice(&sum.to_le_bytes());
    body
}

fn load(bytes: &[u8]) -> Result<Index, String> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.idx");
    std::fs::write(&p, bytes).unwrap();
    let header = Index::read_header(&p);
    let loaded = Index::load(&p).map_err(|e| e.to_string());
    if let Err(e) = &loaded {
        assert!(e.contains("f.idx"), "errors name the file: {e}");
    }
    if let (Ok(idx), Ok(h)) = (&loaded, header) {
        assert_eq!(idx.header.count, h.count);
    }
    loaded
}

/// Field values that stress a CSV reader: separators, quotes, line breaks, bad UTF-8.
fn field() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-z ]{0,12}".prop_map(String::into_bytes),
        Just(b"how do i cook rice".to_vec()),
        Just(b"".to_vec()),
        Just(b" ".to_vec()),
        Just(b"a,b".to_vec()),
        Just(b"say \"hi\"".to_vec()),
        Just(b"two\nlines".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\xff\xfe bad".to_vec()),
        Just(b"\x1b[31m".to_vec()),
        prop::collection::vec(any::<u8>(), 0..16),
    ]
}

/// A CSV record with every field quoted (so any bytes are representable), `fields` wide.
fn record(fields: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        for &b in f {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    }
    out.push(b'\n');
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_index_bytes_are_errors_not_panics(bytes in prop::collection::vec(any::<u8>(), 0..256), seal in any::<bool>()) {
        let mut file = b"TWINIDX1".to_vec();
        file.extend_from_slice(&bytes);
        let file = if seal { sealed(file) } else { file };
        let _ = load(&file);
    }

    #[test]
    fn damaged_indexes_behind_a_valid_checksum_are_errors_not_panics(
        n in 0usize..6,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let good = valid_index(n);
        let mut body = good[..good.len() - 8].to_vec();
        for (at, value) in &edits {
            let i = at.index(body.len());
            body[i] = *value;
        }
        if truncate {
            body.truncate(cut.index(body.len() + 1));
        }
        if let Ok(idx) = load(&sealed(body)) {
            // Whatever loaded reads back without a panic, every row in bounds.
            for r in 0..idx.rows() {
                prop_assert_eq!(idx.vector(r).len(), idx.dim());
                let _ = (idx.sentence(r), idx.id(r), idx.key(r));
            }
        }
    }

    #[test]
    fn every_row_of_a_scored_csv_survives_in_its_own_columns(
        rows in prop::collection::vec((prop::collection::vec(field(), 0..5), any::<bool>()), 0..40),
        strict in any::<bool>(),
    ) {
        let mut input = record(&[b"sentence1".to_vec(), b"sentence2".to_vec(), b"label".to_vec()]);
        let mut expected = 0usize;
        for (fields, _) in &rows {
            // No field, or one blank field, is a blank line, which the scorer skips.
            if fields.is_empty() || (fields.len() == 1 && fields[0].iter().all(u8::is_ascii_whitespace)) {
                continue;
            }
            input.extend_from_slice(&record(fields));
            expected += 1;
        }
        let options = ScoreOptions { strict, batch_rows: 7, layout: Layout::Header { delimiter: b',', quoting: true }, columns: None };
        let mut out = Vec::new();
        let mut warned = 0u64;
        let result = score_csv(&input[..], &mut out, embedder(), &options, |_, _| warned += 1, |_| {});
        match result {
            Ok(summary) => {
                prop_assert_eq!(summary.rows as usize, expected);
                prop_assert_eq!(summary.bad, warned);
                let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(&out[..]);
                let width = reader.byte_headers().unwrap().len();
                prop_assert_eq!(width, 6, "3 input columns + similarity, is_duplicate, error");
                let records: Vec<csv::ByteRecord> = reader.byte_records().map(Result::unwrap).collect();
                prop_assert_eq!(records.len(), expected, "every row is written");
                for r in &records {
                    prop_assert_eq!(r.len(), width);
                    let scored = !r[3].is_empty();
                    prop_assert!(scored == r[5].is_empty(), "a row has a similarity or an error, not both");
                }
            }
            Err(e) => {
                // Only strict mode stops, at a bad row it names.
                prop_assert!(strict, "{}", e);
                prop_assert!(e.to_string().contains("line"), "{}", e);
            }
        }
    }
}
