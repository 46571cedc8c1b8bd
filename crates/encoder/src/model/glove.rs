//! Pretrained word vectors in GloVe's text format (`word v1 v2 … vd`, one word per line).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::lstm::uniform;
use crate::{EncoderError, Result};

/// The words and vectors of a GloVe file, in file order (most frequent first).
#[derive(Debug, Clone)]
pub struct Glove {
    /// Words in file order.
    pub words: Vec<String>,
    /// Vector size.
    pub dim: usize,
    /// `words.len() × dim` values, row-major.
    pub vectors: Vec<f32>,
}

/// How many vocabulary words found a pretrained vector.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Coverage {
    /// Vocabulary words (special tokens excluded).
    pub vocab: usize,
    /// Of those, words with a GloVe vector.
    pub found: usize,
}

impl Coverage {
    /// Share of the vocabulary initialised from GloVe.
    pub fn ratio(&self) -> f64 {
        if self.vocab == 0 {
            0.0
        } else {
            self.found as f64 / self.vocab as f64
        }
    }
}

impl Glove {
    /// Reads at most `limit` words (all when `None`). Every line must have the same number of
    /// values; a malformed line is an error naming the file and line.
    pub fn load(path: &Path, limit: Option<usize>) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| EncoderError::io(path, e))?;
        let mut reader = BufReader::new(file);
        let (mut words, mut vectors, mut dim) = (Vec::new(), Vec::new(), 0usize);
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        while limit.is_none_or(|l| words.len() < l) {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(|e| EncoderError::io(path, e))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let bad = |reason: String| EncoderError::Glove { path: path.to_path_buf(), line: line_no, reason };
            let line = std::str::from_utf8(&buf).map_err(|e| bad(format!("not valid UTF-8: {e}")))?;
            let line = line.trim_end_matches(['\n', '\r']);
            if line.trim().is_empty() {
                continue;
            }
            let mut parts = line.split(' ');
            let word = parts.next().unwrap_or_default();
            let start = vectors.len();
            for p in parts {
                let v: f32 = p.parse().map_err(|_| bad(format!("{p:?} is not a number")))?;
                vectors.push(v);
            }
            let got = vectors.len() - start;
            if dim == 0 {
                if got == 0 {
                    return Err(bad("no vector after the word".into()));
                }
                dim = got;
            } else if got != dim {
                return Err(bad(format!("expected {dim} values, found {got}")));
            }
            words.push(word.to_string());
        }
        if words.is_empty() {
            return Err(EncoderError::Glove { path: path.to_path_buf(), line: 0, reason: "no vectors".into() });
        }
        Ok(Self { words, dim, vectors })
    }

    /// These vectors with `other`'s appended to each word's: a word `other` lacks gets zeros
    /// there, and `other`'s words missing here are left out (this file decides the vocabulary
    /// seeds). How a second source of word vectors, such as the distillation teacher's vectors
    /// of single words, joins GloVe without changing which words the vocabulary starts from.
    pub fn append(&self, other: &Glove) -> Glove {
        let index: HashMap<&str, usize> = other.words.iter().enumerate().map(|(i, w)| (w.as_str(), i)).collect();
        let dim = self.dim + other.dim;
        let mut vectors = Vec::with_capacity(self.words.len() * dim);
        for (i, w) in self.words.iter().enumerate() {
            vectors.extend_from_slice(&self.vectors[i * self.dim..(i + 1) * self.dim]);
            match index.get(w.as_str()) {
                Some(&j) => vectors.extend_from_slice(&other.vectors[j * other.dim..(j + 1) * other.dim]),
                None => vectors.resize(vectors.len() + other.dim, 0.0),
            }
        }
        Glove { words: self.words.clone(), dim, vectors }
    }

    /// The embedding table for a tokenizer: GloVe vectors for the words it has (matched after
    /// the tokenizer's own normalisation, so "Café" finds "cafe"), small uniform noise for the
    /// others, zeros for `[PAD]`.
    pub fn embedding_table(&self, tokenizer: &tokenize::WordTokenizer, seed: u64) -> (Vec<f32>, Coverage) {
        let mut index: HashMap<String, usize> = HashMap::with_capacity(self.words.len());
        for (i, w) in self.words.iter().enumerate() {
            let key = match tokenizer.words(w) {
                Ok(ws) if ws.len() == 1 => ws.into_iter().next().unwrap_or_default(),
                _ => continue,
            };
            index.entry(key).or_insert(i);
        }
        let n = tokenizer.vocab_size();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut table = uniform(&mut rng, n * self.dim, 0.1);
        table[..self.dim].fill(0.0);
        let mut found = 0;
        for (word, id) in tokenizer.vocab() {
            if id == tokenize::PAD_ID || id == tokenize::UNK_ID {
                continue;
            }
            if let Some(&i) = index.get(&word) {
                let id = id as usize;
                table[id * self.dim..(id + 1) * self.dim].copy_from_slice(&self.vectors[i * self.dim..(i + 1) * self.dim]);
                found += 1;
            }
        }
        // Unknown-word buckets are not words: they neither count as covered nor as missed.
        (table, Coverage { vocab: n.saturating_sub(2 + tokenizer.oov_buckets()), found })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.txt");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn loads_and_builds_table_with_coverage() {
        let (_d, p) = file(b"the 1 2\ncafe 3 4\ncat 5 6\n");
        let g = Glove::load(&p, None).unwrap();
        assert_eq!((g.words.len(), g.dim), (3, 2));
        let tok = tokenize::WordTokenizer::build(["the Café dog"].iter().copied(), &Default::default(), &[]).unwrap();
        let (table, cov) = g.embedding_table(&tok, 0);
        assert_eq!(cov, Coverage { vocab: 3, found: 2 });
        let row = |w: &str| {
            let id = tok.token_to_id(w).unwrap() as usize;
            table[id * 2..id * 2 + 2].to_vec()
        };
        assert_eq!(row("the"), vec![1.0, 2.0]);
        assert_eq!(row("cafe"), vec![3.0, 4.0]);
        assert_eq!(&table[0..2], &[0.0, 0.0], "[PAD] row is zero");
        assert!(Glove::load(&p, Some(1)).unwrap().words.len() == 1);
        // Unknown-word buckets get rows but are not vocabulary words for the coverage.
        let opts = tokenize::VocabOptions { oov_buckets: 4, ..Default::default() };
        let tok = tokenize::WordTokenizer::build(["the Café dog"].iter().copied(), &opts, &[]).unwrap();
        let (table, cov) = g.embedding_table(&tok, 0);
        assert_eq!(cov, Coverage { vocab: 3, found: 2 });
        assert_eq!(table.len(), (2 + 3 + 4) * 2);
    }

    #[test]
    fn append_joins_rows_by_word_and_fills_missing_with_zeros() {
        let g = Glove { words: vec!["the".into(), "cat".into()], dim: 2, vectors: vec![1.0, 2.0, 3.0, 4.0] };
        let t = Glove { words: vec!["cat".into(), "dog".into()], dim: 1, vectors: vec![9.0, 8.0] };
        let j = g.append(&t);
        assert_eq!(j.words, g.words, "the first file decides the words");
        assert_eq!(j.dim, 3);
        assert_eq!(j.vectors, vec![1.0, 2.0, 0.0, 3.0, 4.0, 9.0]);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let (_d, p) = file(b"the 1 2\ncat 5\n");
        let e = Glove::load(&p, None).unwrap_err().to_string();
        assert!(e.contains("g.txt:2") && e.contains("expected 2 values"), "{e}");
        let (_d, p) = file(b"the 1 x\n");
        assert!(Glove::load(&p, None).unwrap_err().to_string().contains("\"x\" is not a number"));
        let e = Glove::load(Path::new("/missing/glove.txt"), None).unwrap_err().to_string();
        assert!(e.contains("/missing/glove.txt"), "{e}");
    }
}
