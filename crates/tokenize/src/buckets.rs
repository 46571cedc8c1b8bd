//! Unknown-word buckets: words outside the vocabulary share a fixed number of ids by a hash of
//! their text (see [`VocabOptions::oov_buckets`](crate::VocabOptions::oov_buckets)).

use crate::{WordTokenizer, UNK_ID};

/// The name of unknown-word bucket `i` (see
/// [`VocabOptions::oov_buckets`](crate::VocabOptions::oov_buckets)). The pre-tokenizer
/// splits on brackets, so no word of any text can be one of these.
pub fn bucket_token(i: usize) -> String {
    format!("[UNK:{i}]")
}

/// FNV-1a over the word's bytes: a hash that, unlike std's, is fixed forever, since saved
/// models depend on which bucket a word falls in.
fn word_hash(word: &str) -> u64 {
    word.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl WordTokenizer {
    /// The unknown-word buckets of the vocabulary: `[UNK:0]` and the tokens numbered after it
    /// on consecutive ids.
    pub(crate) fn find_buckets(&self) -> Option<(u32, u32)> {
        // Bucketing looks words up with this crate's pipeline, so it needs that pipeline.
        if !self.ascii {
            return None;
        }
        let first = self.inner.token_to_id(&bucket_token(0))?;
        let count = (1..).take_while(|&i| self.inner.token_to_id(&bucket_token(i)) == Some(first + i as u32)).count() + 1;
        Some((first, count as u32))
    }

    /// Number of unknown-word buckets (0 when unknown words are all `[UNK]`).
    pub fn oov_buckets(&self) -> usize {
        self.buckets.map_or(0, |(_, n)| n as usize)
    }

    /// The id of a normalised word: its own, else its bucket, else `[UNK]`.
    pub(crate) fn word_id(&self, word: &str, known: Option<u32>) -> u32 {
        match (known, self.buckets) {
            (Some(id), _) => id,
            (None, Some((first, n))) => first + (word_hash(word) % u64::from(n)) as u32,
            (None, None) => UNK_ID,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::tiny;
    use crate::VocabOptions;
    use std::path::Path;

    #[test]
    fn unknown_words_fall_into_fixed_buckets() {
        let opts = VocabOptions { oov_buckets: 16, ..Default::default() };
        let tok = WordTokenizer::build(["the cat sat"], &opts, &[]).unwrap();
        assert_eq!(tok.oov_buckets(), 16);
        assert_eq!(tok.vocab_size(), 2 + 3 + 16, "the buckets are embedding rows too");
        let first = tok.token_to_id("[UNK:0]").unwrap();
        let text = "The zebra sat on the okapi";
        let ids = tok.encode(text).unwrap();
        assert_eq!(ids[0], tok.token_to_id("the").unwrap());
        assert_eq!(ids[2], tok.token_to_id("sat").unwrap());
        for i in [1, 3, 5] {
            assert!((first..first + 16).contains(&ids[i]), "{ids:?}");
        }
        // One word, one bucket: on both paths, alone or in a sentence, and after a reload.
        assert_eq!(tok.encode("zebra").unwrap(), vec![ids[1]]);
        assert_eq!(tok.encode_slow(text), ids);
        let again = WordTokenizer::from_json(&tok.to_json().unwrap(), Path::new("t.json")).unwrap();
        assert_eq!(again.oov_buckets(), 16);
        assert_eq!(again.encode(text).unwrap(), ids);
        // Non-ASCII text takes the pipeline and normalises before hashing.
        assert_eq!(tok.encode("Zébra").unwrap(), vec![ids[1]]);
        // The hash is FNV-1a, fixed for every saved model.
        assert_eq!(word_hash("a"), 0xaf63_dc4c_8601_ec8c);
        let spread: std::collections::HashSet<u32> = (0..400).map(|i| tok.encode(&format!("w{i}x")).unwrap()[0]).collect();
        assert_eq!(spread.len(), 16, "unknown words use every bucket");
        // Truncation counts bucketed words like any other.
        let mut short = tok.clone();
        short.set_max_len(2).unwrap();
        assert_eq!(short.encode(text).unwrap(), ids[..2]);
        assert_eq!(short.encode_slow("Zébra okapi zébra"), short.encode("Zebra okapi zebra").unwrap());
        // Without buckets, every unknown word is [UNK].
        assert_eq!(tiny().oov_buckets(), 0);
        assert_eq!(tiny().encode("zebra okapi").unwrap(), vec![UNK_ID, UNK_ID]);
    }
}
