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

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use tokenizers::models::wordlevel::WordLevel;
use tokenizers::models::ModelWrapper;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::normalizers::{Lowercase, Sequence as NormSequence, StripAccents, NFD};
use tokenizers::pre_tokenizers::punctuation::Punctuation;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::{
    Model, NormalizedString, Normalizer, OffsetReferential, OffsetType, PaddingParams, PaddingStrategy,
    PreTokenizedString, PreTokenizer, Tokenizer, TruncationParams,
};

/// The padding token. Its id is always 0 so that a zero-filled id matrix is all padding.
pub const PAD: &str = "[PAD]";
/// The token every out-of-vocabulary word maps to. Its id is always 1.
pub const UNK: &str = "[UNK]";
/// Id of [`PAD`].
pub const PAD_ID: u32 = 0;
/// Id of [`UNK`].
pub const UNK_ID: u32 = 1;

/// Errors of this crate. Each names the file involved where there is one.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    /// Reading or writing a tokenizer file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file exists but is not a usable word-level `tokenizer.json`.
    #[error("{path}: not a valid tokenizer file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The `tokenizers` crate refused an operation.
    #[error("tokenizer: {0}")]
    Tokenizers(String),
    /// The options cannot build a usable vocabulary.
    #[error("invalid vocabulary options: {0}")]
    Options(String),
    /// A file could not be written safely.
    #[error(transparent)]
    Fs(#[from] fsio::FsError),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, TokenizeError>;

/// How the vocabulary is chosen. Training words come first (most frequent first), then GloVe
/// words not yet present, in the GloVe file's order (which is frequency order), until
/// `max_vocab` is reached.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VocabOptions {
    /// Training words seen fewer times than this are left out (they become `[UNK]`), unless
    /// they are also among the seeded GloVe words.
    pub min_count: usize,
    /// Upper bound on the vocabulary size, special tokens included.
    pub max_vocab: usize,
    /// How many of the seed words (GloVe, in file order) to add after the training words.
    pub seed_top: usize,
    /// Sentences are cut to this many tokens; longer ones are truncated.
    pub max_len: usize,
    /// Words outside the vocabulary share this many "unknown word" ids by a hash of their
    /// text, instead of all becoming `[UNK]`: two questions that differ in an unknown name
    /// ("udemydownloader" against "bloodshow") then differ to the encoder too, and the same
    /// unknown word on both sides matches. 0 keeps the single `[UNK]`. The buckets come after
    /// `max_vocab` words, as the tokens `[UNK:0]`, `[UNK:1]`, …
    pub oov_buckets: usize,
}

impl Default for VocabOptions {
    fn default() -> Self {
        Self { min_count: 1, max_vocab: 50_000, seed_top: 0, max_len: 48, oov_buckets: 0 }
    }
}

/// The name of unknown-word bucket `i` (see [`VocabOptions::oov_buckets`]). The pre-tokenizer
/// splits on brackets, so no word of any text can be one of these.
pub fn bucket_token(i: usize) -> String {
    format!("[UNK:{i}]")
}

/// FNV-1a over the word's bytes: a hash that, unlike std's, is fixed forever, since saved
/// models depend on which bucket a word falls in.
fn word_hash(word: &str) -> u64 {
    word.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// One padded batch of token ids, row-major `[batch_size, seq_len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Token ids, `batch_size * seq_len` of them; rows shorter than `seq_len` end in [`PAD_ID`].
    pub ids: Vec<u32>,
    /// The number of real (non-padding) tokens of each row; always at least 1.
    pub lengths: Vec<usize>,
    /// Number of rows.
    pub batch_size: usize,
    /// Length of every row: the longest sentence of the batch, capped at `max_len`.
    pub seq_len: usize,
}

impl Batch {
    /// Pads already-encoded rows (e.g. from [`WordTokenizer::encode`]) to the longest one. An
    /// empty row becomes a single `[UNK]`, as in [`WordTokenizer::encode_batch`].
    pub fn from_rows<R: AsRef<[u32]>>(rows: &[R]) -> Self {
        let seq_len = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0).max(1);
        let mut ids = vec![PAD_ID; rows.len() * seq_len];
        let mut lengths = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let r = r.as_ref();
            if r.is_empty() {
                ids[i * seq_len] = UNK_ID;
                lengths.push(1);
            } else {
                ids[i * seq_len..i * seq_len + r.len()].copy_from_slice(r);
                lengths.push(r.len());
            }
        }
        Self { ids, lengths, batch_size: rows.len(), seq_len }
    }

    /// Share of the id matrix that is padding; what length bucketing tries to keep small.
    pub fn padding_fraction(&self) -> f64 {
        let total = self.batch_size * self.seq_len;
        if total == 0 {
            return 0.0;
        }
        let real: usize = self.lengths.iter().sum();
        1.0 - real as f64 / total as f64
    }
}

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
        f.debug_struct("WordTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("max_len", &self.max_len)
            .finish()
    }
}

fn tk_err(e: impl std::fmt::Display) -> TokenizeError {
    TokenizeError::Tokenizers(e.to_string())
}

/// The normalizer + pre-tokenizer pipeline, shared by vocabulary building and encoding so that
/// both see exactly the same words.
fn pipeline() -> (NormSequence, PreSequence) {
    let norm = NormSequence::new(vec![NFD.into(), Lowercase.into(), StripAccents.into()]);
    let pre = PreSequence::new(vec![Whitespace.into(), Punctuation::default().into()]);
    (norm, pre)
}

/// The ids of printable-ASCII `text` (tabs and line breaks allowed), computed without the
/// `tokenizers` pipeline: for such text NFD and accent stripping change nothing, lowercasing is
/// ASCII's, and the whitespace + punctuation pre-tokenizers leave runs of letters and digits
/// as words and every other printable character as a word of its own. That pipeline was most of
/// the cost of encoding short sentences. `None` for any other text, which takes the pipeline.
fn ascii_words(text: &str, lookup: impl Fn(&str) -> u32, max_len: usize) -> Option<Vec<u32>> {
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

/// Splits `text` into the normalised words the vocabulary is made of.
fn split_words(norm: &NormSequence, pre: &PreSequence, text: &str) -> Result<Vec<String>> {
    let mut normalized = NormalizedString::from(text);
    norm.normalize(&mut normalized).map_err(tk_err)?;
    let mut pretok = PreTokenizedString::from(normalized);
    pre.pre_tokenize(&mut pretok).map_err(tk_err)?;
    Ok(pretok
        .get_splits(OffsetReferential::Original, OffsetType::Byte)
        .into_iter()
        .map(|(s, _, _)| s.to_string())
        .collect())
}

impl WordTokenizer {
    /// Builds the vocabulary from training sentences, then from `seed_words` (typically the
    /// words of a GloVe file, most frequent first), so that words the training data never saw
    /// can still get pretrained vectors.
    pub fn build<'a>(
        sentences: impl IntoIterator<Item = &'a str>,
        options: &VocabOptions,
        seed_words: &[String],
    ) -> Result<Self> {
        if options.max_vocab < 3 {
            return Err(TokenizeError::Options("max_vocab must be at least 3".into()));
        }
        if options.max_len == 0 {
            return Err(TokenizeError::Options("max_len must be at least 1".into()));
        }
        let (norm, pre) = pipeline();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for s in sentences {
            for w in split_words(&norm, &pre, s)? {
                *counts.entry(w).or_default() += 1;
            }
        }
        let mut train_words: Vec<(String, usize)> =
            counts.into_iter().filter(|(_, c)| *c >= options.min_count.max(1)).collect();
        // Most frequent first; ties alphabetically so the vocabulary is deterministic.
        train_words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));

        let mut vocab: ahash::AHashMap<String, u32> = ahash::AHashMap::new();
        vocab.insert(PAD.to_string(), PAD_ID);
        vocab.insert(UNK.to_string(), UNK_ID);
        let seeds = seed_words.iter().take(options.seed_top);
        for w in train_words.into_iter().map(|(w, _)| w).chain(seeds.cloned()) {
            if vocab.len() >= options.max_vocab {
                break;
            }
            // Seed words go through the same normalisation, so "Café" and "cafe" meet.
            let words = split_words(&norm, &pre, &w)?;
            if words.len() != 1 {
                continue;
            }
            let next = vocab.len() as u32;
            vocab.entry(words.into_iter().next().unwrap_or_default()).or_insert(next);
        }
        for i in 0..options.oov_buckets {
            let next = vocab.len() as u32;
            vocab.insert(bucket_token(i), next);
        }
        Self::from_vocab(vocab, options.max_len)
    }

    fn from_vocab(vocab: ahash::AHashMap<String, u32>, max_len: usize) -> Result<Self> {
        let model = WordLevel::builder().vocab(vocab).unk_token(UNK.to_string()).build().map_err(tk_err)?;
        let (norm, pre) = pipeline();
        let mut inner = Tokenizer::new(model);
        inner.with_normalizer(Some(norm)).map_err(tk_err)?;
        inner.with_pre_tokenizer(Some(pre));
        Self::around(inner, max_len)
    }

    /// Wraps a built or loaded `tokenizers` pipeline: truncation and padding for `max_len`, and
    /// what `inner` allows (the ASCII fast path, unknown-word buckets).
    fn around(inner: Tokenizer, max_len: usize) -> Result<Self> {
        let mut tok = Self { inner, max_len, ascii: false, buckets: None };
        tok.set_max_len(max_len)?;
        tok.ascii = tok.ascii_path_fits();
        tok.buckets = tok.find_buckets();
        Ok(tok)
    }

    /// The unknown-word buckets of the vocabulary: `[UNK:0]` and the tokens numbered after it
    /// on consecutive ids.
    fn find_buckets(&self) -> Option<(u32, u32)> {
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
    fn word_id(&self, word: &str, known: Option<u32>) -> u32 {
        match (known, self.buckets) {
            (Some(id), _) => id,
            (None, Some((first, n))) => first + (word_hash(word) % u64::from(n)) as u32,
            (None, None) => UNK_ID,
        }
    }

    /// Whether the ASCII fast path gives `inner`'s ids: `inner` must be this crate's pipeline
    /// and model (a `tokenizer.json` written elsewhere may configure anything).
    fn ascii_path_fits(&self) -> bool {
        let (norm, pre) = pipeline();
        let same_norm = serde_json::to_value(self.inner.get_normalizer()).ok()
            == serde_json::to_value(Some(NormalizerWrapper::from(norm))).ok();
        let same_pre = serde_json::to_value(self.inner.get_pre_tokenizer()).ok()
            == serde_json::to_value(Some(PreTokenizerWrapper::from(pre))).ok();
        let word_level = matches!(self.inner.get_model(), ModelWrapper::WordLevel(m) if m.unk_token == UNK);
        let plain = self.inner.get_added_tokens_decoder().is_empty() && self.inner.get_post_processor().is_none();
        same_norm && same_pre && word_level && plain
    }

    /// Changes the truncation length; sentences longer than this keep their first `max_len`
    /// words.
    pub fn set_max_len(&mut self, max_len: usize) -> Result<()> {
        if max_len == 0 {
            return Err(TokenizeError::Options("max_len must be at least 1".into()));
        }
        self.max_len = max_len;
        self.inner
            .with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(tk_err)?;
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
            ModelWrapper::WordLevel(model) if self.ascii => {
                ascii_words(text, |w| self.word_id(w, model.token_to_id(w)), self.max_len)
            }
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

    /// Encodes sentences in parallel, each to its own unpadded row of ids (at least one id).
    pub fn encode_batch_rows(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        use rayon::prelude::*;
        texts.par_iter().map(|t| self.encode(t)).collect()
    }

    /// Encodes sentences in parallel to one id matrix padded to the batch's longest sentence.
    ///
    /// A sentence with no words at all (empty, or only spaces) becomes a single `[UNK]`, so that
    /// every row has length at least 1 and the encoder always has a state to return; callers that
    /// must reject empty input check for it before encoding.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Batch> {
        Ok(Batch::from_rows(&self.encode_batch_rows(texts)?))
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

    /// The tokenizer as `tokenizer.json` text.
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(true).map_err(tk_err)
    }

    /// Reads a tokenizer from `tokenizer.json` text; `origin` names the source in errors.
    pub fn from_json(json: &str, origin: &Path) -> Result<Self> {
        let corrupt = |reason: String| TokenizeError::Corrupt { path: origin.to_path_buf(), reason };
        let inner: Tokenizer = json.parse().map_err(|e| corrupt(format!("{e}")))?;
        if inner.token_to_id(PAD) != Some(PAD_ID) || inner.token_to_id(UNK) != Some(UNK_ID) {
            return Err(corrupt(format!("expected {PAD} = {PAD_ID} and {UNK} = {UNK_ID}")));
        }
        let max_len = inner.get_truncation().map(|t| t.max_length).unwrap_or(48);
        Self::around(inner, max_len)
    }

    /// Writes `tokenizer.json` atomically: a crash mid-write leaves any previous file intact.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.to_json()?;
        let io = |source| TokenizeError::Io { path: path.to_path_buf(), source };
        let mut file = fsio::AtomicFile::create(path)?;
        file.write_all(json.as_bytes()).map_err(io)?;
        file.commit()?;
        Ok(())
    }

    /// Reads `tokenizer.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| TokenizeError::Io { path: path.to_path_buf(), source })?;
        let json = String::from_utf8(bytes).map_err(|e| TokenizeError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("not UTF-8: {e}"),
        })?;
        Self::from_json(&json, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> WordTokenizer {
        let s = ["The cat sat.", "the CAT ran", "A dog sat!"];
        WordTokenizer::build(s.iter().copied(), &VocabOptions::default(), &[]).unwrap()
    }

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

    #[test]
    fn special_ids_are_fixed_and_frequent_words_first() {
        let tok = tiny();
        assert_eq!(tok.token_to_id(PAD), Some(0));
        assert_eq!(tok.token_to_id(UNK), Some(1));
        // "cat", "sat" and "the" occur twice; ties sort alphabetically after the specials.
        assert_eq!(tok.token_to_id("cat"), Some(2));
        assert_eq!(tok.token_to_id("sat"), Some(3));
        assert_eq!(tok.token_to_id("the"), Some(4));
        assert_eq!(tok.vocab_size(), 10); // 2 specials + the cat sat ran a dog . !
    }

    #[test]
    fn normalises_case_accents_and_punctuation() {
        let tok = tiny();
        assert_eq!(tok.words("Café, NAÏVE?!").unwrap(), vec!["cafe", ",", "naive", "?", "!"]);
        assert_eq!(tok.encode("THE Cat").unwrap(), tok.encode("the cat").unwrap());
    }

    #[test]
    fn unknown_words_map_to_unk() {
        let tok = tiny();
        assert_eq!(tok.encode("the zebra").unwrap(), vec![4, UNK_ID]);
    }

    #[test]
    fn empty_sentence_becomes_single_unk() {
        let tok = tiny();
        let b = tok.encode_batch(&["", "   ", "the cat"]).unwrap();
        assert_eq!(b.lengths, vec![1, 1, 2]);
        assert_eq!(b.ids, vec![UNK_ID, PAD_ID, UNK_ID, PAD_ID, 4, 2]);
    }

    #[test]
    fn min_count_and_max_vocab_limit_vocabulary() {
        let s = ["a a b", "a b c"];
        let opts = VocabOptions { min_count: 2, ..Default::default() };
        let tok = WordTokenizer::build(s.iter().copied(), &opts, &[]).unwrap();
        assert_eq!(tok.token_to_id("c"), None);
        assert_eq!(tok.token_to_id("a"), Some(2));
        let opts = VocabOptions { max_vocab: 3, ..Default::default() };
        let tok = WordTokenizer::build(s.iter().copied(), &opts, &[]).unwrap();
        assert_eq!(tok.vocab_size(), 3);
    }

    #[test]
    fn seed_words_extend_vocabulary_after_training_words() {
        let seeds: Vec<String> = ["the", "Zebra", "giraffe", "lion"].iter().map(|s| s.to_string()).collect();
        let opts = VocabOptions { seed_top: 3, ..Default::default() };
        let tok = WordTokenizer::build(["the cat"].iter().copied(), &opts, &seeds).unwrap();
        assert_eq!(tok.token_to_id("zebra"), Some(4));
        assert_eq!(tok.token_to_id("giraffe"), Some(5));
        assert_eq!(tok.token_to_id("lion"), None, "only seed_top seed words are taken");
    }

    #[test]
    fn from_rows_pads_like_encode_batch() {
        let tok = tiny();
        let texts = ["the cat sat .", "a", ""];
        let rows: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t).unwrap()).collect();
        assert_eq!(Batch::from_rows(&rows), tok.encode_batch(&texts).unwrap());
    }

    #[test]
    fn truncates_to_max_len() {
        let mut tok = tiny();
        tok.set_max_len(2).unwrap();
        let b = tok.encode_batch(&["the cat sat ran", "a"]).unwrap();
        assert_eq!(b.seq_len, 2);
        assert_eq!(b.lengths, vec![2, 1]);
        assert!((b.padding_fraction() - 0.25).abs() < 1e-12);
    }

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        let mut tok = tiny();
        tok.set_max_len(7).unwrap();
        tok.save(&path).unwrap();
        let back = WordTokenizer::load(&path).unwrap();
        assert_eq!(back.max_len(), 7);
        assert_eq!(back.vocab(), tok.vocab());
        let texts = ["the dog sat", "zebra!"];
        assert_eq!(back.encode_batch(&texts).unwrap(), tok.encode_batch(&texts).unwrap());
    }

    #[test]
    fn corrupt_or_missing_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let err = WordTokenizer::load(&missing).unwrap_err().to_string();
        assert!(err.contains("nope.json"), "{err}");
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, b"{ not json").unwrap();
        let err = WordTokenizer::load(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.json") && err.contains("not a valid tokenizer"), "{err}");
        std::fs::write(&bad, [0xff, 0xfe, 0x00]).unwrap();
        assert!(WordTokenizer::load(&bad).unwrap_err().to_string().contains("UTF-8"));
    }
}
