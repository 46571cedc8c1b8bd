//! Word-level tokenization for the twin-LSTM engine.
//!
//! An LSTM over GloVe-style word vectors wants whole, lower-cased, accent-free words, one id per
//! word, with a padding id of 0 and an `[UNK]` id for everything it never saw. This crate builds
//! such a vocabulary from training sentences (optionally seeded with a GloVe file's words), keeps
//! it in the standard `tokenizer.json` format of the [`tokenizers`] crate, and encodes batches to
//! padded id matrices plus the true lengths the encoder needs to mask padding. Printable ASCII,
//! most of what it sees, takes a direct path that gives the pipeline's ids without its
//! allocations; everything else goes through `tokenizers`.
//!
//! ```
//! use tokenize::{VocabOptions, WordTokenizer};
//!
//! let sentences = ["How do I learn Rust?", "How can I learn Rust quickly?"];
//! let tok = WordTokenizer::build(sentences.iter().copied(), &VocabOptions::default(), &[]).unwrap();
//! let batch = tok.encode_batch(&["learn rust", "how do i learn rust ?"]).unwrap();
//! assert_eq!(batch.lengths, vec![2, 6]);
//! assert_eq!(batch.seq_len, 6);
//! assert_eq!(batch.ids[2..6], [0, 0, 0, 0]); // the first row is padded with [PAD] = 0
//! ```

mod ascii;
mod batch;
mod buckets;
mod error;
mod io;
mod vocab;

pub use batch::Batch;
pub use buckets::bucket_token;
pub use error::{Result, TokenizeError};
pub use vocab::VocabOptions;

use std::collections::HashMap;

use tokenizers::models::ModelWrapper;
use tokenizers::{Model, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use ascii::ascii_words;
use error::tk_err;
use vocab::{pipeline, split_words};

/// The padding token. Its id is always 0 so that a zero-filled id matrix is all padding.
pub const PAD: &str = "[PAD]";
/// The token every out-of-vocabulary word maps to. Its id is always 1.
pub const UNK: &str = "[UNK]";
/// Id of [`PAD`].
pub const PAD_ID: u32 = 0;
/// Id of [`UNK`].
pub const UNK_ID: u32 = 1;

/// A word-level tokenizer: the `tokenizers` crate's `WordLevel` model behind an NFD + lowercase +
/// strip-accents normalizer and a whitespace + punctuation pre-tokenizer.
#[derive(Clone)]
pub struct WordTokenizer {
    inner: Tokenizer,
    max_len: usize,
    /// Whether [`ascii_words`] may stand in for `inner`: only when `inner` runs exactly
    /// [`pipeline`] into a plain `WordLevel` model, so that both paths give the same ids.
    ascii: bool,
    /// First id and number of the unknown-word buckets, when the vocabulary has them.
    buckets: Option<(u32, u32)>,
}

impl std::fmt::Debug for WordTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordTokenizer").field("vocab_size", &self.vocab_size()).field("max_len", &self.max_len).finish()
    }
}

impl WordTokenizer {
    /// Wraps a built or loaded `tokenizers` pipeline: truncation and padding for `max_len`, and
    /// what `inner` allows (the ASCII fast path, unknown-word buckets).
    fn around(inner: Tokenizer, max_len: usize) -> Result<Self> {
        let mut tok = Self { inner, max_len, ascii: false, buckets: None };
        tok.set_max_len(max_len)?;
        tok.ascii = tok.ascii_path_fits();
        tok.buckets = tok.find_buckets();
        Ok(tok)
    }

    /// Changes the truncation length; sentences longer than this keep their first `max_len`
    /// words.
    pub fn set_max_len(&mut self, max_len: usize) -> Result<()> {
        if max_len == 0 {
            return Err(TokenizeError::Options("max_len must be at least 1".into()));
        }
        self.max_len = max_len;
        self.inner.with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() })).map_err(tk_err)?;
        self.inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id: PAD_ID,
            pad_token: PAD.to_string(),
            ..Default::default()
        }));
        Ok(())
    }

    /// The truncation length.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Number of ids, special tokens included: the embedding table needs this many rows.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(false)
    }

    /// The id of a (normalised) word, if it is in the vocabulary.
    pub fn token_to_id(&self, word: &str) -> Option<u32> {
        self.inner.token_to_id(word)
    }

    /// The word behind an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The whole vocabulary as `(word, id)`; used to look words up in a GloVe file.
    pub fn vocab(&self) -> HashMap<String, u32> {
        self.inner.get_vocab(false)
    }

    /// The normalised words of `text`, as the vocabulary sees them.
    pub fn words(&self, text: &str) -> Result<Vec<String>> {
        let (norm, pre) = pipeline();
        split_words(&norm, &pre, text)
    }

    /// Encodes one sentence to ids, truncated to `max_len`, without padding (at least one id:
    /// a sentence without words becomes `[UNK]`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        // The fast path requires a plain WordLevel model with no added tokens: ask its vocabulary.
        let fast = match self.inner.get_model() {
            ModelWrapper::WordLevel(model) if self.ascii => ascii_words(text, |w| self.word_id(w, model.token_to_id(w)), self.max_len),
            _ => None,
        };
        let mut ids = match fast {
            Some(ids) => ids,
            None => self.pipeline_ids(text)?,
        };
        if ids.is_empty() {
            ids.push(UNK_ID);
        }
        Ok(ids)
    }

    /// The ids `tokenizers` gives `text` (truncated, unpadded). With unknown-word buckets the
    /// pipeline's words are looked up here instead, since `tokenizers` would make every unknown
    /// word `[UNK]`.
    fn pipeline_ids(&self, text: &str) -> Result<Vec<u32>> {
        if self.buckets.is_none() {
            return Ok(self.inner.encode(text, false).map_err(tk_err)?.get_ids().to_vec());
        }
        let mut words = self.words(text)?;
        words.truncate(self.max_len);
        Ok(words.iter().map(|w| self.word_id(w, self.inner.token_to_id(w))).collect())
    }

    /// Encodes through the `tokenizers` pipeline alone, never the ASCII fast path; tests hold
    /// the two to the same ids.
    #[cfg(test)]
    fn encode_slow(&self, text: &str) -> Vec<u32> {
        let mut ids = self.pipeline_ids(text).unwrap();
        if ids.is_empty() {
            ids.push(UNK_ID);
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The three-sentence vocabulary most tests use.
    pub(crate) fn tiny() -> WordTokenizer {
        let s = ["The cat sat.", "the CAT ran", "A dog sat!"];
        WordTokenizer::build(s.iter().copied(), &VocabOptions::default(), &[]).unwrap()
    }

    #[test]
    fn unknown_words_map_to_unk() {
        let tok = tiny();
        assert_eq!(tok.encode("the zebra").unwrap(), vec![4, UNK_ID]);
    }
}
