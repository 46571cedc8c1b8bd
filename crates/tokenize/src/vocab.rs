//! Building the vocabulary: which words get ids, through which normalisation.

use std::collections::HashMap;

use tokenizers::models::wordlevel::WordLevel;
use tokenizers::normalizers::{Lowercase, Sequence as NormSequence, StripAccents, NFD};
use tokenizers::pre_tokenizers::punctuation::Punctuation;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::{NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, Tokenizer};

use crate::buckets::bucket_token;
use crate::error::tk_err;
use crate::{Result, TokenizeError, WordTokenizer, PAD, PAD_ID, UNK, UNK_ID};

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

/// The normalizer + pre-tokenizer pipeline, shared by vocabulary building and encoding so that
/// both see exactly the same words.
pub(crate) fn pipeline() -> (NormSequence, PreSequence) {
    let norm = NormSequence::new(vec![NFD.into(), Lowercase.into(), StripAccents.into()]);
    let pre = PreSequence::new(vec![Whitespace.into(), Punctuation::default().into()]);
    (norm, pre)
}

/// Splits `text` into the normalised words the vocabulary is made of.
pub(crate) fn split_words(norm: &NormSequence, pre: &PreSequence, text: &str) -> Result<Vec<String>> {
    let mut normalized = NormalizedString::from(text);
    norm.normalize(&mut normalized).map_err(tk_err)?;
    let mut pretok = PreTokenizedString::from(normalized);
    pre.pre_tokenize(&mut pretok).map_err(tk_err)?;
    Ok(pretok.get_splits(OffsetReferential::Original, OffsetType::Byte).into_iter().map(|(s, _, _)| s.to_string()).collect())
}

impl WordTokenizer {
    /// Builds the vocabulary from training sentences, then from `seed_words` (typically the
    /// words of a GloVe file, most frequent first), so that words the training data never saw
    /// can still get pretrained vectors.
    pub fn build<'a>(sentences: impl IntoIterator<Item = &'a str>, options: &VocabOptions, seed_words: &[String]) -> Result<Self> {
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
        let mut train_words: Vec<(String, usize)> = counts.into_iter().filter(|(_, c)| *c >= options.min_count.max(1)).collect();
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::tiny;

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
}
