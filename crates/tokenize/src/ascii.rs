//! The ASCII fast path: the pipeline's ids for printable-ASCII text without its allocations.

use tokenizers::models::ModelWrapper;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;

use crate::vocab::pipeline;
use crate::{WordTokenizer, UNK};

/// The ids of printable-ASCII `text` (tabs and line breaks allowed), computed without the
/// `tokenizers` pipeline: for such text NFD and accent stripping change nothing, lowercasing is
/// ASCII's, and the whitespace + punctuation pre-tokenizers leave runs of letters and digits
/// as words and every other printable character as a word of its own. That pipeline was most of
/// the cost of encoding short sentences. `None` for any other text, which takes the pipeline.
pub(crate) fn ascii_words(text: &str, lookup: impl Fn(&str) -> u32, max_len: usize) -> Option<Vec<u32>> {
    if !text.bytes().all(|b| (0x20..0x7f).contains(&b) || matches!(b, b'\t' | b'\n' | b'\r')) {
        return None;
    }
    let mut ids = Vec::new();
    let mut word = String::new();
    // A space after the text ends its last word.
    for c in text.chars().chain([' ']) {
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
            continue;
        }
        if !word.is_empty() {
            ids.push(lookup(&word));
            word.clear();
        }
        if c.is_ascii_punctuation() {
            ids.push(lookup(c.encode_utf8(&mut [0u8; 1])));
        }
        if ids.len() >= max_len {
            break;
        }
    }
    ids.truncate(max_len);
    Some(ids)
}

impl WordTokenizer {
    /// Whether the ASCII fast path gives `inner`'s ids: `inner` must be this crate's pipeline
    /// and model (a `tokenizer.json` written elsewhere may configure anything).
    pub(crate) fn ascii_path_fits(&self) -> bool {
        let (norm, pre) = pipeline();
        let same_norm =
            serde_json::to_value(self.inner.get_normalizer()).ok() == serde_json::to_value(Some(NormalizerWrapper::from(norm))).ok();
        let same_pre =
            serde_json::to_value(self.inner.get_pre_tokenizer()).ok() == serde_json::to_value(Some(PreTokenizerWrapper::from(pre))).ok();
        let word_level = matches!(self.inner.get_model(), ModelWrapper::WordLevel(m) if m.unk_token == UNK);
        let plain = self.inner.get_added_tokens_decoder().is_empty() && self.inner.get_post_processor().is_none();
        same_norm && same_pre && word_level && plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::tiny;
    use crate::{VocabOptions, UNK_ID};
    use std::path::Path;

    /// The ASCII fast path gives the pipeline's ids on every kind of printable ASCII: case,
    /// digits, underscores, runs of punctuation, tabs and line breaks, unknown words,
    /// truncation; text with other bytes takes the pipeline.
    #[test]
    fn ascii_fast_path_matches_the_pipeline() {
        let train = ["What's the best way to learn C++?", "snake_case vs. camelCase!!", "Is 3.14 > 3?", "a\tb\nc"];
        let mut tok = WordTokenizer::build(train.iter().copied(), &VocabOptions::default(), &[]).unwrap();
        assert!(tok.ascii);
        let alphabet: Vec<char> = "aAbBcCsSeE3_ .,!?'\"-+()[]{}<>=$%&*/\\|^~`@#:;\t\n\rwhatisthebest".chars().collect();
        let mut state = 12345u64;
        let mut next = move |n: usize| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as usize % n
        };
        let mut texts: Vec<String> = train.iter().map(|s| s.to_string()).collect();
        texts.extend(["", "   ", "___", "a__b", "x.y.z", "C++ and C#", "\t\r\n"].map(String::from));
        for _ in 0..3000 {
            let len = next(30);
            texts.push((0..len).map(|_| alphabet[next(alphabet.len())]).collect());
        }
        for max_len in [48, 3, 1] {
            tok.set_max_len(max_len).unwrap();
            for t in &texts {
                assert!(t.is_ascii());
                assert_eq!(tok.encode(t).unwrap(), tok.encode_slow(t), "max_len {max_len}: {t:?}");
            }
        }
        tok.set_max_len(48).unwrap();
        for t in ["Café au lait?", "naïve", "tab\u{b}here", "ctl\u{1}x!"] {
            assert!(ascii_words(t, |w| tok.token_to_id(w).unwrap_or(UNK_ID), 48).is_none(), "{t:?}");
            assert_eq!(tok.encode(t).unwrap(), tok.encode_slow(t));
        }
    }

    /// A `tokenizer.json` with some other pipeline (here: no lowercasing) never takes the fast
    /// path, which would lowercase.
    #[test]
    fn foreign_pipeline_skips_the_fast_path() {
        let tok = tiny();
        let mut json: serde_json::Value = serde_json::from_str(&tok.to_json().unwrap()).unwrap();
        json["normalizer"] = serde_json::Value::Null;
        let other = WordTokenizer::from_json(&json.to_string(), Path::new("other.json")).unwrap();
        assert!(!other.ascii);
        assert!(WordTokenizer::from_json(&tok.to_json().unwrap(), Path::new("same.json")).unwrap().ascii);
        let cat = tok.token_to_id("cat").unwrap();
        assert_eq!(other.encode("THE cat").unwrap(), vec![UNK_ID, cat]);
        assert_eq!(tok.encode("THE cat").unwrap(), vec![tok.token_to_id("the").unwrap(), cat]);
    }
}
