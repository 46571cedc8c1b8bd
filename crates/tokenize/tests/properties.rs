//! Property tests: any text at all tokenizes without a panic into ids of the vocabulary, cut at
//! `max_len`, and a tokenizer file of arbitrary bytes is an error naming it, never a panic.
//! Bounded for CI (64 cases each); `PROPTEST_CASES=N` runs longer.

use proptest::prelude::*;
use tokenize::{VocabOptions, WordTokenizer};

fn config() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 64;
    }
    c.failure_persistence = None;
    c
}

fn tokenizer(buckets: usize) -> WordTokenizer {
    let options = VocabOptions { oov_buckets: buckets, ..VocabOptions::default() };
    let mut t = WordTokenizer::build(["how do i learn rust", "what is the best way to cook rice"], &options, &[]).unwrap();
    t.set_max_len(12).unwrap();
    t
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_tokenizes_into_the_vocabulary(texts in prop::collection::vec(any::<String>(), 1..8), buckets in prop::sample::select(vec![0usize, 7])) {
        let t = tokenizer(buckets);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let batch = t.encode_batch(&refs).unwrap();
        prop_assert_eq!(batch.batch_size, texts.len());
        prop_assert!(batch.seq_len <= 12);
        prop_assert!(batch.ids.iter().all(|&id| (id as usize) < t.vocab_size()));
        prop_assert!(batch.lengths.iter().all(|&l| (1..=12).contains(&l)));
    }

    #[test]
    fn arbitrary_tokenizer_files_are_errors_not_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        std::fs::write(&p, &bytes).unwrap();
        if let Err(e) = WordTokenizer::load(&p) {
            prop_assert!(e.to_string().contains("tokenizer.json"), "{}", e);
        }
    }
}
