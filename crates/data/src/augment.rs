//! Augmentation of a distillation transfer set, after Tang et al. 2019, "Distilling
//! Task-Specific Knowledge from BERT into Simple Neural Networks" (section 3.3).
//!
//! A small student learns a teacher's function from the teacher's outputs, and it learns more
//! from more inputs than the labelled set holds. Tang et al. make those inputs from the training
//! sentences themselves, with three rules applied word by word and then to the sentence:
//!
//! - **masking**: with probability `p_mask` a word becomes [`MASK`], so the student learns what
//!   each word contributes by seeing the teacher's answer without it;
//! - **same-class replacement**: with probability `p_replace` a word becomes another word of its
//!   class. Tang et al. use part-of-speech classes; this crate has no tagger, so the caller
//!   supplies the classes (the trainer uses each word's nearest GloVe neighbours, which share
//!   part of speech and topic far more often than not);
//! - **n-gram sampling**: with probability `p_ngram` the sentence is cut down to a random
//!   n-gram of it, `n` uniform in `1..=max_ngram`.
//!
//! Copies equal to the original or to each other are dropped.

use std::collections::{HashMap, HashSet};

use rand::Rng;

/// The word that stands for a masked one. The teacher (a BERT model) reads it as its own mask
/// token; the student reads it as a word of its own.
pub const MASK: &str = "[MASK]";

/// Probabilities of the three rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugmentOptions {
    /// Per word: replace with [`MASK`].
    pub p_mask: f64,
    /// Per word: replace with another word of its class (when it has one).
    pub p_replace: f64,
    /// Per sentence: keep only a random n-gram.
    pub p_ngram: f64,
    /// Longest n-gram kept.
    pub max_ngram: usize,
}

impl Default for AugmentOptions {
    /// Tang et al.'s settings.
    fn default() -> Self {
        Self { p_mask: 0.1, p_replace: 0.1, p_ngram: 0.25, max_ngram: 5 }
    }
}

impl AugmentOptions {
    /// Rejects probabilities outside `[0, 1]` (or summing past 1 per word) and `max_ngram = 0`.
    pub fn check(&self) -> Result<(), String> {
        let p = |x: f64| (0.0..=1.0).contains(&x);
        if !(p(self.p_mask) && p(self.p_replace) && p(self.p_ngram) && self.p_mask + self.p_replace <= 1.0) {
            return Err("augmentation probabilities must lie in [0, 1], and p_mask + p_replace <= 1".into());
        }
        if self.max_ngram == 0 {
            return Err("max_ngram must be at least 1".into());
        }
        Ok(())
    }
}

/// Word classes for replacement: for each (lowercase) word, the words that may stand in for it.
pub type WordClasses = HashMap<String, Vec<String>>;

/// One augmented version of the whitespace-separated words of `sentence`. A word is looked up in
/// `classes` lowercased; words without alternatives are only ever masked.
pub fn augment_once(sentence: &str, classes: &WordClasses, opts: &AugmentOptions, rng: &mut impl Rng) -> String {
    let mut words: Vec<&str> = Vec::new();
    for w in sentence.split_whitespace() {
        let x: f64 = rng.random();
        if x < opts.p_mask {
            words.push(MASK);
        } else if x < opts.p_mask + opts.p_replace {
            match classes.get(&w.to_lowercase()).filter(|alts| !alts.is_empty()) {
                Some(alts) => words.push(alts[rng.random_range(0..alts.len())].as_str()),
                None => words.push(w),
            }
        } else {
            words.push(w);
        }
    }
    if !words.is_empty() && rng.random::<f64>() < opts.p_ngram {
        let n = rng.random_range(1..=opts.max_ngram).min(words.len());
        let start = rng.random_range(0..=words.len() - n);
        words = words[start..start + n].to_vec();
    }
    words.join(" ")
}

/// Up to `tries` augmented copies of `sentence`: each try is one [`augment_once`]; copies equal
/// to the sentence (after whitespace normalisation), to one another, or empty are dropped.
pub fn augmented_copies(sentence: &str, tries: usize, classes: &WordClasses, opts: &AugmentOptions, rng: &mut impl Rng) -> Vec<String> {
    let original = sentence.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut seen: HashSet<String> = HashSet::from([original]);
    let mut out = Vec::new();
    for _ in 0..tries {
        let copy = augment_once(sentence, classes, opts, rng);
        if !copy.is_empty() && seen.insert(copy.clone()) {
            out.push(copy);
        }
    }
    out
}

/// The ids of the `k` highest scores of `(id, score)`, highest first (ties: earlier first), kept
/// in a sorted buffer of `k`, so a long stream costs no sort of the whole.
pub fn best_k(scores: impl IntoIterator<Item = (usize, f32)>, k: usize) -> Vec<usize> {
    let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    for (id, s) in scores {
        if k > 0 && (best.len() < k || s > best[best.len() - 1].0) {
            let at = best.partition_point(|&(t, _)| t >= s);
            best.insert(at, (s, id));
            best.truncate(k);
        }
    }
    best.into_iter().map(|(_, id)| id).collect()
}

/// The `k` nearest neighbours by cosine of each word of `queries`, among the first `candidates`
/// words of `words` (row `i` of `vectors`, `dim` values each, is the vector of `words[i]`):
/// word classes for [`augment_once`]. Words without a vector get no class; a word is never its
/// own neighbour.
pub fn neighbour_classes(words: &[String], vectors: &[f32], dim: usize, candidates: usize, queries: &[String], k: usize) -> WordClasses {
    use rayon::prelude::*;
    assert_eq!(vectors.len(), words.len() * dim, "one vector of `dim` values per word");
    let candidates = candidates.min(words.len());
    let unit: Vec<f32> = vectors
        .chunks(dim.max(1))
        .flat_map(|v| {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter().map(move |x| x / norm)
        })
        .collect();
    let row = |i: usize| &unit[i * dim..(i + 1) * dim];
    let index: HashMap<&str, usize> = words.iter().enumerate().rev().map(|(i, w)| (w.as_str(), i)).collect();
    queries
        .par_iter()
        .filter_map(|q| {
            let &qi = index.get(q.as_str())?;
            let qv = row(qi);
            let scores = (0..candidates).filter(|&c| c != qi).map(|c| (c, qv.iter().zip(row(c)).map(|(a, b)| a * b).sum()));
            let best = best_k(scores, k);
            (!best.is_empty()).then(|| (q.clone(), best.into_iter().map(|c| words[c].clone()).collect()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn classes() -> WordClasses {
        HashMap::from([("cat".to_string(), vec!["dog".to_string()]), ("sat".to_string(), vec!["stood".to_string()])])
    }

    fn opts(p_mask: f64, p_replace: f64, p_ngram: f64) -> AugmentOptions {
        AugmentOptions { p_mask, p_replace, p_ngram, max_ngram: 2 }
    }

    #[test]
    fn each_rule_does_what_it_says_when_certain() {
        let mut rng = StdRng::seed_from_u64(1);
        let s = "The cat sat  down";
        assert_eq!(augment_once(s, &classes(), &opts(0.0, 0.0, 0.0), &mut rng), "The cat sat down");
        assert_eq!(augment_once(s, &classes(), &opts(1.0, 0.0, 0.0), &mut rng), "[MASK] [MASK] [MASK] [MASK]");
        // Replacement reaches the class of the lowercased word; words without a class stay.
        assert_eq!(augment_once("The CAT sat down", &classes(), &opts(0.0, 1.0, 0.0), &mut rng), "The dog stood down");
        // N-gram sampling keeps one to two consecutive words of the sentence.
        for _ in 0..50 {
            let g = augment_once(s, &classes(), &opts(0.0, 0.0, 1.0), &mut rng);
            let n = g.split(' ').count();
            assert!((1..=2).contains(&n) && "The cat sat down".contains(&g), "{g}");
        }
        assert_eq!(augment_once("", &classes(), &opts(1.0, 0.0, 1.0), &mut rng), "");
    }

    #[test]
    fn rates_match_the_probabilities() {
        // Per-word rule probabilities 0.1 / 0.1: over 20,000 words the shares land within 1 %.
        let mut rng = StdRng::seed_from_u64(7);
        let (mut masked, mut replaced, mut total) = (0, 0, 0);
        for _ in 0..10_000 {
            for w in augment_once("cat sat", &classes(), &opts(0.1, 0.1, 0.0), &mut rng).split(' ') {
                total += 1;
                masked += usize::from(w == MASK);
                replaced += usize::from(w == "dog" || w == "stood");
            }
        }
        let share = |n: usize| n as f64 / total as f64;
        assert!((share(masked) - 0.1).abs() < 0.01 && (share(replaced) - 0.1).abs() < 0.01, "{masked} {replaced} of {total}");
    }

    #[test]
    fn copies_are_new_and_distinct() {
        let mut rng = StdRng::seed_from_u64(3);
        // Nothing can change: every try equals the original, so no copy survives.
        assert!(augmented_copies("the cat  sat", 5, &classes(), &opts(0.0, 0.0, 0.0), &mut rng).is_empty());
        // Always masked: one distinct copy however many tries.
        assert_eq!(augmented_copies("cat", 5, &classes(), &opts(1.0, 0.0, 0.0), &mut rng), vec![MASK.to_string()]);
        let copies = augmented_copies("the cat sat on the mat today", 30, &classes(), &AugmentOptions::default(), &mut rng);
        let distinct: HashSet<&String> = copies.iter().collect();
        assert!(copies.len() > 5 && distinct.len() == copies.len() && !copies.contains(&"the cat sat on the mat today".to_string()));
    }

    #[test]
    fn neighbours_are_the_nearest_by_cosine() {
        let words: Vec<String> = ["king", "queen", "apple", "pear", "rare"].iter().map(|s| s.to_string()).collect();
        // king/queen point one way, apple/pear another; "rare" is outside the candidate range.
        let vectors = [1.0, 0.1, 0.9, 0.2, 0.1, 1.0, 0.2, 0.9, 1.0, 0.1];
        let queries: Vec<String> = ["king", "pear", "rare", "unknown"].iter().map(|s| s.to_string()).collect();
        let c = neighbour_classes(&words, &vectors, 2, 4, &queries, 2);
        assert_eq!(c["king"], vec!["queen".to_string(), "pear".to_string()]);
        assert_eq!(c["pear"], vec!["apple".to_string(), "queen".to_string()]);
        // A query beyond the candidates still finds neighbours among them; an unknown word has none.
        assert_eq!(c["rare"], vec!["king".to_string(), "queen".to_string()]);
        assert!(!c.contains_key("unknown"));
    }

    #[test]
    fn best_k_keeps_the_highest_scores_in_order() {
        let scores = [(0, 0.5), (1, 0.9), (2, 0.1), (3, 0.9), (4, 0.7)];
        assert_eq!(best_k(scores, 3), vec![1, 3, 4]);
        assert_eq!(best_k(scores, 9), vec![1, 3, 4, 0, 2]);
        assert!(best_k(scores, 0).is_empty());
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(AugmentOptions::default().check().is_ok());
        assert!(opts(0.6, 0.6, 0.0).check().is_err());
        assert!(opts(-0.1, 0.0, 0.0).check().is_err());
        assert!(AugmentOptions { max_ngram: 0, ..AugmentOptions::default() }.check().is_err());
    }
}
