//! The transfer set: the sentences the teacher encodes and the student learns to reproduce.
//!
//! It holds every sentence of the training pairs, every sentence of the configured unlabelled
//! sources, and augmented copies of the training sentences (see `data::augment`), and never a
//! sentence of an evaluation part: the validation and reporting pairs, and the files of
//! `distill.exclude`. So distillation cannot leak the evaluation data into the student.

use std::collections::HashSet;
use std::path::Path;

use data::augment::{augmented_copies, neighbour_classes, AugmentOptions};
use data::{load_pairs, LoadOptions, Pair};
use encoder::Glove;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::config::{DataDirs, TrainConfig};
use crate::fit::prepare::prepare;
use crate::{Result, TrainError};

/// GloVe words searched for replacement classes (the most frequent ones: the file is in
/// frequency order), and neighbours kept per word.
const CLASS_CANDIDATES: usize = 20_000;
const CLASS_SIZE: usize = 5;

/// What [`build`] made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransferSet {
    /// Every sentence, in order: training sentences, source sentences, augmented copies.
    pub sentences: Vec<String>,
    /// How many came from the training pairs.
    pub from_training: usize,
    /// How many came from `distill.sources`.
    pub from_sources: usize,
    /// How many are augmented copies.
    pub augmented: usize,
    /// Sentences left out because an evaluation part holds them.
    pub excluded: usize,
}

/// A sentence as one line of the transfer file: line breaks and surrounding space removed.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Builds the transfer set of `cfg` (which must have a `[distill]` table).
pub fn build(cfg: &TrainConfig, dirs: &DataDirs) -> Result<TransferSet> {
    let d = cfg.distill.as_ref().ok_or_else(|| TrainError::Training("the config has no [distill] table".into()))?;
    let prepared = prepare(&cfg.data, dirs)?;
    let sentences_of = |pairs: &[Pair]| pairs.iter().flat_map(|p| [one_line(&p.a), one_line(&p.b)]).collect::<Vec<_>>();
    let mut banned: HashSet<String> = sentences_of(&prepared.valid).into_iter().chain(sentences_of(&prepared.report)).collect();
    for src in &d.exclude {
        banned.extend(sentences_of(&load_source(&DataDirs::resolve(&dirs.data, &src.path), src)?));
    }
    let mut out = TransferSet::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut keep = |s: String, out: &mut TransferSet| -> bool {
        if s.is_empty() || seen.contains(&s) {
            return false;
        }
        if banned.contains(&s) {
            out.excluded += 1;
            seen.insert(s);
            return false;
        }
        seen.insert(s.clone());
        out.sentences.push(s);
        true
    };
    let training: Vec<String> = sentences_of(&prepared.train);
    for s in &training {
        out.from_training += usize::from(keep(s.clone(), &mut out));
    }
    let trained: Vec<String> = out.sentences.clone();
    for src in &d.sources {
        for s in sentences_of(&load_source(&DataDirs::resolve(&dirs.data, &src.path), src)?) {
            out.from_sources += usize::from(keep(s, &mut out));
        }
    }
    if d.augment_tries > 0 {
        let classes = match &cfg.model.glove {
            Some(g) => {
                let glove = Glove::load(&DataDirs::resolve(&dirs.embeddings, g), cfg.model.glove_limit)?;
                let words: HashSet<String> = trained.iter().flat_map(|s| s.split(' ').map(str::to_lowercase)).collect();
                let mut words: Vec<String> = words.into_iter().collect();
                words.sort();
                neighbour_classes(&glove.words, &glove.vectors, glove.dim, CLASS_CANDIDATES, &words, CLASS_SIZE)
            }
            None => Default::default(),
        };
        let opts = AugmentOptions::default();
        let mut rng = StdRng::seed_from_u64(d.seed);
        for s in &trained {
            for copy in augmented_copies(s, d.augment_tries, &classes, &opts, &mut rng) {
                out.augmented += usize::from(keep(copy, &mut out));
            }
        }
    }
    Ok(out)
}

/// Every pair of one source file, labels ignored (unlabelled or unscored rows are skipped).
fn load_source(path: &Path, src: &crate::config::SourceConfig) -> Result<Vec<Pair>> {
    Ok(load_pairs(path, src.format, LoadOptions { skip_bad: true, subset: src.subset.clone() })?.pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_sentences_never_enter_and_copies_follow_the_originals() {
        let dir = tempfile::tempdir().unwrap();
        // 12 pairs; 2 validation and 2 reporting pairs are split off.
        let rows: String = (0..12).map(|i| format!("{}\tquestion number {i} here\tanother question {i}\t{i}\n", i % 2)).collect();
        std::fs::write(dir.path().join("d.tsv"), rows).unwrap();
        std::fs::write(dir.path().join("more.tsv"), "1\tan unlabelled sentence\tquestion number 0 here\t1\n").unwrap();
        std::fs::write(dir.path().join("eval.tsv"), "1\tanother question 3\tx y\t1\n").unwrap();
        let text = String::from(
            "[data]\nformat = \"qqp\"\ntrain = \"d.tsv\"\nvalid_size = 2\nreport_size = 2\n\
             [distill]\nsentences = \"s.txt\"\ntargets = \"t.f32\"\naugment_tries = 3\n\
             sources = [{ format = \"qqp\", path = \"more.tsv\" }]\nexclude = [{ format = \"qqp\", path = \"eval.tsv\" }]\n",
        );
        let cfg: TrainConfig = toml::from_str(&text).unwrap();
        let dirs = DataDirs { data: dir.path().to_path_buf(), embeddings: dir.path().to_path_buf() };
        let set = build(&cfg, &dirs).unwrap();
        let prepared = prepare(&cfg.data, &dirs).unwrap();
        let held: HashSet<String> = prepared.valid.iter().chain(&prepared.report).flat_map(|p| [p.a.clone(), p.b.clone()]).collect();
        assert_eq!(held.len(), 8);
        assert!(set.sentences.iter().all(|s| !held.contains(s) && s != "another question 3"), "{:?}", set.sentences);
        // 8 training pairs give 16 sentences, less "another question 3" if it trains.
        let trained_q3 = prepared.train.iter().any(|p| p.b == "another question 3");
        assert_eq!(set.from_training, 16 - usize::from(trained_q3));
        // The source's second sentence is a training sentence or a held-out one: never twice.
        assert_eq!(set.from_sources, 1);
        assert!(set.augmented > 0);
        assert_eq!(set.sentences.len(), set.from_training + set.from_sources + set.augmented);
        let distinct: HashSet<&String> = set.sentences.iter().collect();
        assert_eq!(distinct.len(), set.sentences.len());
        // Same config, same set.
        assert_eq!(build(&cfg, &dirs).unwrap(), set);
    }
}
