//! Padded batches of token ids, and encoding sentences into them.

use crate::{Result, WordTokenizer, PAD_ID, UNK_ID};

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

impl WordTokenizer {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::tiny;

    #[test]
    fn empty_sentence_becomes_single_unk() {
        let tok = tiny();
        let b = tok.encode_batch(&["", "   ", "the cat"]).unwrap();
        assert_eq!(b.lengths, vec![1, 1, 2]);
        assert_eq!(b.ids, vec![UNK_ID, PAD_ID, UNK_ID, PAD_ID, 4, 2]);
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
}
