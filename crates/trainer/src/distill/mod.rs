//! Knowledge distillation from a sentence-embedding teacher (all-MiniLM-L6-v2).
//!
//! Nine thousand labelled pairs and GloVe-50 bound what the twin LSTM learns from labels alone.
//! A teacher trained on far more data knows which sentences mean the same; the student learns
//! that by reproducing the teacher's vectors of a *transfer set* of unlabelled sentences
//! ([`transfer`]: training sentences, other datasets' sentences, and augmented copies after Tang
//! et al. 2019), besides the pair losses. The teacher runs offline and only once
//! (`scripts/distill-targets.sh`, in Python: sentence-transformers is the reference
//! implementation of the teacher, its vectors are data, and the product never needs it); its
//! vectors are read here from a `TWINTCH1` file ([`targets`]).
//!
//! Two terms, each with a weight in `[distill]` (see `encoder::loss`):
//! - through a learned projection `W` (student size → teacher size, trained and then dropped):
//!   `1 − cos(W·s, t)`, which asks the student to carry everything the teacher's vector holds;
//! - between the batch's cosine similarity matrices of student and teacher: the student's own
//!   space, which search ranks in, takes the teacher's geometry.

mod neighbour_cache;
pub mod neighbours;
pub mod targets;
pub mod transfer;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use data::Pair;
use encoder::{projection_distill_loss, ranking_distill_loss, similarity_distill_loss, BatchTensors, SentenceEncoder};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokenize::{Batch, WordTokenizer};

use crate::config::DistillConfig;
use crate::fit::bucketed_batches;
use crate::{Result, TrainError};
pub use targets::TeacherTargets;

/// The transfer set as training reads it: token ids of every sentence and the teacher's vectors.
#[derive(Debug, Clone)]
pub struct TransferData {
    /// The teacher-vector file, beside which neighbour lists are cached.
    targets_path: PathBuf,
    sentences: Vec<String>,
    ids: Vec<Vec<u32>>,
    targets: TeacherTargets,
}

impl TransferData {
    /// Reads the sentences and the teacher's vectors `d` names and checks that they belong
    /// together (one vector per line; when the teacher's `.json` side file records the input's
    /// SHA-256, it must be this file's).
    /// Sentences in `held_out` (graded selection slices) are left out with their vectors.
    pub fn load(d: &DistillConfig, tokenizer: &WordTokenizer, held_out: &HashSet<&str>) -> Result<Self> {
        let text = std::fs::read(&d.sentences).map_err(|source| TrainError::Io { path: d.sentences.clone(), source })?;
        check_side_file(&d.targets, &d.sentences, &text)?;
        let text = String::from_utf8(text)
            .map_err(|e| TrainError::Data(data::DataError::File { path: d.sentences.clone(), reason: format!("not UTF-8: {e}") }))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let lines: Vec<&str> = text.lines().collect();
        let targets = TeacherTargets::load(&d.targets)?;
        if targets.len() != lines.len() {
            return Err(TrainError::Training(format!(
                "{} holds {} vectors but {} has {} lines; rebuild them together with scripts/distill-targets.sh",
                d.targets.display(),
                targets.len(),
                d.sentences.display(),
                lines.len()
            )));
        }
        let (lines, targets) = if held_out.is_empty() {
            (lines, targets)
        } else {
            let keep: Vec<usize> = (0..lines.len()).filter(|&i| !held_out.contains(lines[i])).collect();
            if keep.len() < lines.len() {
                fsio::warn!("{}: {} sentences of the graded selection slices left out", d.sentences.display(), lines.len() - keep.len());
            }
            let rows = keep.iter().flat_map(|&i| targets.row(i).iter().copied()).collect();
            (keep.iter().map(|&i| lines[i]).collect(), TeacherTargets { dim: targets.dim, rows })
        };
        let ids = tokenizer.encode_batch_rows(&lines)?;
        Ok(Self { targets_path: d.targets.clone(), sentences: lines.into_iter().map(str::to_owned).collect(), ids, targets })
    }

    /// Number of sentences.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there is no sentence.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The teacher's vector size.
    pub fn dim(&self) -> usize {
        self.targets.dim
    }

    /// Each sentence's `k` nearest neighbours by the teacher's vectors (none when `k = 0`),
    /// from the cache beside the teacher's file when an earlier run stored them there
    /// ([`neighbour_cache`]); `progress` shows a bar while they are computed.
    pub fn neighbours(&self, k: usize, progress: bool) -> Result<Vec<Vec<usize>>> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let bar = crate::fit::progress_bar(progress, self.len() as u64, "teacher neighbours".into(), "sentences");
        let lists = neighbour_cache::cached_nearest(&self.targets_path, &self.targets.rows, self.dim(), k, |rows| bar.inc(rows as u64));
        bar.finish_and_clear();
        lists
    }

    /// Each pair's `k` nearest other pairs by the teacher (`train.neighbours`), a pair's vector
    /// being the normalised sum of its sentences' teacher vectors (the transfer set holds every
    /// training sentence). A pair neither of whose sentences is in the set has no neighbours and
    /// is no one's neighbour.
    pub fn pair_neighbours(&self, pairs: &[Pair], k: usize) -> Vec<Vec<usize>> {
        let row_of: HashMap<&str, usize> = self.sentences.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
        let dim = self.dim();
        let mut found: Vec<usize> = Vec::new();
        let mut vectors: Vec<f32> = Vec::new();
        for (p, pair) in pairs.iter().enumerate() {
            let mut sum = vec![0f32; dim];
            let mut any = false;
            for s in [&pair.a, &pair.b] {
                if let Some(&row) = row_of.get(transfer::one_line(s).as_str()) {
                    sum.iter_mut().zip(self.targets.row(row)).for_each(|(a, b)| *a += b);
                    any = true;
                }
            }
            let norm = sum.iter().map(|v| v * v).sum::<f32>().sqrt();
            if any && norm > 0.0 {
                found.push(p);
                vectors.extend(sum.iter().map(|v| v / norm));
            }
        }
        let mut out = vec![Vec::new(); pairs.len()];
        for (j, near) in neighbours::nearest(&vectors, dim, k).into_iter().enumerate() {
            out[found[j]] = near.into_iter().map(|n| found[n]).collect();
        }
        out
    }

    /// The token count of each sentence (what batches are bucketed by).
    pub fn lengths(&self) -> Vec<usize> {
        self.ids.iter().map(Vec::len).collect()
    }

    /// The sentences `idx` as one padded batch, with their teacher vectors.
    pub fn batch(&self, idx: &[usize], device: &Device) -> TransferBatch {
        let rows: Vec<&[u32]> = idx.iter().map(|&i| self.ids[i].as_slice()).collect();
        let batch = Batch::from_rows(&rows);
        let values: Vec<f32> = idx.iter().flat_map(|&i| self.targets.row(i).iter().copied()).collect();
        let teacher = Tensor::<2>::from_data(TensorData::new(values, [idx.len(), self.dim()]), device);
        TransferBatch { tokens: batch, teacher }
    }
}

/// Compares the input digest recorded by teacher.py beside `targets` with the sentences' own.
fn check_side_file(targets: &Path, sentences: &Path, text: &[u8]) -> Result<()> {
    use sha2::{Digest, Sha256};
    let side = std::path::PathBuf::from(format!("{}.json", targets.display()));
    let Ok(meta) = std::fs::read(&side) else { return Ok(()) };
    let meta: serde_json::Value = serde_json::from_slice(&meta)
        .map_err(|e| TrainError::Data(data::DataError::File { path: side.clone(), reason: format!("not JSON: {e}") }))?;
    let Some(recorded) = meta.get("input_sha256").and_then(|v| v.as_str()) else { return Ok(()) };
    let actual: String = Sha256::digest(text).iter().map(|b| format!("{b:02x}")).collect();
    if recorded != actual {
        return Err(TrainError::Training(format!(
            "{} was computed from another version of {}; rebuild them together with scripts/distill-targets.sh",
            targets.display(),
            sentences.display()
        )));
    }
    Ok(())
}

/// A batch of transfer sentences and their teacher vectors.
#[derive(Debug)]
pub struct TransferBatch {
    /// The sentences' ids.
    pub tokens: Batch,
    /// `[B, teacher dim]`.
    pub teacher: Tensor<2>,
}

/// The distillation terms and their weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistillObjective {
    /// Weight of the projection term.
    pub projection_weight: f32,
    /// Weight of the similarity-matrix term.
    pub similarity_weight: f32,
    /// Weight of the ranking term (each sentence's softmax over the others, KL to the teacher's).
    pub ranking_weight: f32,
    /// Temperature of the ranking term.
    pub ranking_temperature: f32,
}

impl DistillObjective {
    /// The weights `d` configures.
    pub fn of(d: &DistillConfig) -> Self {
        Self {
            projection_weight: d.projection_weight,
            similarity_weight: d.similarity_weight,
            ranking_weight: d.ranking_weight,
            ranking_temperature: d.ranking_temperature,
        }
    }

    /// The projection a run trains with the student (student size → teacher size); `None`
    /// when the projection term is off.
    pub fn projection(&self, d_student: usize, d_teacher: usize, device: &Device) -> Option<Linear> {
        (self.projection_weight > 0.0).then(|| LinearConfig::new(d_student, d_teacher).init(device))
    }

    /// The weighted distillation loss of one batch.
    pub fn loss(&self, encoder: &SentenceEncoder, projection: Option<&Linear>, batch: TransferBatch, device: &Device) -> Tensor<1> {
        let student = encoder.forward(BatchTensors::new(&batch.tokens, device));
        // A term with weight 0 is not computed at all.
        let similarity = (self.similarity_weight > 0.0)
            .then(|| similarity_distill_loss(student.clone(), batch.teacher.clone()).mul_scalar(self.similarity_weight));
        let ranking = (self.ranking_weight > 0.0).then(|| {
            ranking_distill_loss(student.clone(), batch.teacher.clone(), self.ranking_temperature).mul_scalar(self.ranking_weight)
        });
        let projected = projection.map(|w| projection_distill_loss(w.forward(student), batch.teacher).mul_scalar(self.projection_weight));
        [similarity, ranking, projected].into_iter().flatten().reduce(|a, b| a + b).unwrap_or_else(|| Tensor::zeros([1], device))
    }
}

/// The order transfer batches are drawn in: every sentence once per pass, reshuffled each pass
/// and sorted by length within windows of [`BUCKET_BATCHES`] batches (as the pair batches are),
/// so that batches carry little padding; pair epochs and transfer passes need not line up.
#[derive(Debug)]
pub struct TransferCursor {
    lengths: Vec<usize>,
    neighbours: Vec<Vec<usize>>,
    batches: Vec<Vec<usize>>,
    at: usize,
    batch_size: usize,
    rng: StdRng,
}

/// Batches per length-sorting window.
pub const BUCKET_BATCHES: usize = 50;

impl TransferCursor {
    /// A cursor over sentences of these token `lengths`.
    pub fn new(lengths: Vec<usize>, batch_size: usize, seed: u64) -> Self {
        Self::with_neighbours(lengths, Vec::new(), batch_size, seed)
    }

    /// A cursor whose batches are groups of teacher neighbours (see [`neighbours`]): each
    /// sentence not yet drawn in the pass, in random order, brings its `neighbours` into the
    /// batch with it. With no neighbours, batches are length-bucketed as in [`new`](Self::new).
    pub fn with_neighbours(lengths: Vec<usize>, neighbours: Vec<Vec<usize>>, batch_size: usize, seed: u64) -> Self {
        let mut c =
            Self { lengths, neighbours, batches: Vec::new(), at: 0, batch_size: batch_size.max(1), rng: StdRng::seed_from_u64(seed) };
        c.plan();
        c
    }

    /// A new pass: the batches of [`bucketed_batches`], or neighbour groups.
    fn plan(&mut self) {
        self.at = 0;
        if self.neighbours.is_empty() {
            self.batches = bucketed_batches(&self.lengths, self.batch_size, BUCKET_BATCHES, &mut self.rng);
            return;
        }
        self.batches = neighbours::neighbour_batches(&self.neighbours, self.batch_size, neighbours::Redraw::Always, &mut self.rng);
    }

    /// The next batch of sentence indices (empty only when there is no sentence).
    pub fn next_batch(&mut self) -> Vec<usize> {
        if self.batches.is_empty() {
            return Vec::new();
        }
        if self.at >= self.batches.len() {
            self.plan();
        }
        self.at += 1;
        self.batches[self.at - 1].clone()
    }

    /// Batches in one pass over the set.
    pub fn batches_per_pass(&self) -> usize {
        self.batches.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_objective_adds_its_weighted_terms() {
        use encoder::{Backend, EncoderConfig};
        let device = Backend::Flex.device();
        let encoder = EncoderConfig::new(10).with_d_embed(4).with_d_hidden(4).init(&device);
        let tokens = Batch::from_rows(&[vec![1u32, 2, 3], vec![4, 5], vec![6, 7, 8]]);
        let teacher = || Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0], [3, 2]), &device);
        let batch = || TransferBatch { tokens: tokens.clone(), teacher: teacher() };
        let student = encoder.forward(BatchTensors::new(&tokens, &device));
        let value = |t: Tensor<1>| t.into_scalar::<f32>();
        let similarity = value(similarity_distill_loss(student.clone(), teacher()));
        let ranking = value(ranking_distill_loss(student, teacher(), 0.1));
        assert!(similarity > 0.0 && ranking > 0.0, "{similarity} {ranking}");
        let objective = |similarity_weight, ranking_weight| DistillObjective {
            projection_weight: 0.0,
            similarity_weight,
            ranking_weight,
            ranking_temperature: 0.1,
        };
        let total = value(objective(2.0, 3.0).loss(&encoder, None, batch(), &device));
        assert!((total - (2.0 * similarity + 3.0 * ranking)).abs() < 1e-5, "{total}");
        // A term with weight 0 adds nothing.
        assert!((value(objective(0.0, 3.0).loss(&encoder, None, batch(), &device)) - 3.0 * ranking).abs() < 1e-5);
    }

    #[test]
    fn the_cursor_visits_every_sentence_once_per_pass() {
        let lengths: Vec<usize> = (0..10).map(|i| 1 + i % 3).collect();
        let mut c = TransferCursor::new(lengths.clone(), 4, 1);
        assert_eq!(c.batches_per_pass(), 3);
        for _ in 0..2 {
            let batches: Vec<Vec<usize>> = (0..3).map(|_| c.next_batch()).collect();
            // Sorted within the pass's one window: each batch spans at most two lengths.
            assert!(batches
                .iter()
                .all(|b| b.iter().map(|&i| lengths[i]).max().unwrap() - b.iter().map(|&i| lengths[i]).min().unwrap() <= 1));
            let mut seen: Vec<usize> = batches.concat();
            seen.sort();
            assert_eq!(seen, (0..10).collect::<Vec<_>>());
        }
        assert!(TransferCursor::new(Vec::new(), 4, 1).next_batch().is_empty());
    }

    #[test]
    fn neighbour_batches_keep_groups_together_and_cover_every_sentence() {
        // Sentences 2i and 2i+1 are each other's neighbour.
        let neighbours: Vec<Vec<usize>> = (0..10).map(|i| vec![i ^ 1]).collect();
        let mut c = TransferCursor::with_neighbours(vec![1; 10], neighbours, 4, 3);
        let batches: Vec<Vec<usize>> = (0..c.batches_per_pass()).map(|_| c.next_batch()).collect();
        let mut seen: Vec<usize> = batches.concat();
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        // Batches of 4 hold two whole pairs: every sentence sits beside its neighbour.
        for b in &batches {
            assert!(b.iter().all(|&i| b.contains(&(i ^ 1))), "{b:?}");
        }
    }

    /// A transfer file of `lines` with 2-dimensional teacher `vectors` in a temporary folder, its
    /// `[distill]` table, and a tokenizer.
    fn transfer_files(lines: &str, vectors: &[f32]) -> (tempfile::TempDir, PathBuf, DistillConfig, WordTokenizer) {
        let dir = tempfile::tempdir().unwrap();
        let sentences = dir.path().join("s.txt");
        let targets = dir.path().join("t.f32");
        std::fs::write(&sentences, lines).unwrap();
        targets::tests::write_targets(&targets, 2, vectors);
        let tok = WordTokenizer::build(["the cat", "a dog"], &Default::default(), &[]).unwrap();
        let d: DistillConfig = toml::from_str(&format!("sentences = {sentences:?}\ntargets = {targets:?}\n")).unwrap();
        (dir, sentences, d, tok)
    }

    #[test]
    fn transfer_data_refuses_targets_of_other_sentences() {
        let (dir, sentences, d, tok) = transfer_files("the cat\na dog\n", &[1.0, 0.0, 0.0, 1.0]);
        let data = TransferData::load(&d, &tok, &HashSet::new()).unwrap();
        assert_eq!((data.len(), data.dim()), (2, 2));
        let b = data.batch(&[1], &Backend::Flex.device());
        assert_eq!(b.teacher.into_data().try_into_vec::<f32>().unwrap(), vec![0.0, 1.0]);
        // A held-out sentence leaves with its vector: "a dog" is now row 0.
        let data = TransferData::load(&d, &tok, &HashSet::from(["the cat"])).unwrap();
        assert_eq!(data.len(), 1);
        let b = data.batch(&[0], &Backend::Flex.device());
        assert_eq!(b.teacher.into_data().try_into_vec::<f32>().unwrap(), vec![0.0, 1.0]);
        // A third line without a vector.
        std::fs::write(&sentences, "the cat\na dog\nmore\n").unwrap();
        assert!(TransferData::load(&d, &tok, &HashSet::new()).unwrap_err().to_string().contains("2 vectors but"));
        // The side file records another input.
        std::fs::write(&sentences, "the cat\na dog\n").unwrap();
        std::fs::write(dir.path().join("t.f32.json"), r#"{"input_sha256": "00"}"#).unwrap();
        assert!(TransferData::load(&d, &tok, &HashSet::new()).unwrap_err().to_string().contains("another version"));
    }

    #[test]
    fn pairs_are_grouped_by_their_sentences_teacher_vectors() {
        // Four sentences: two near (1, 0), two near (0, 1).
        let (_dir, _, d, tok) = transfer_files("the cat\na cat\nthe dog\na dog\n", &[1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.2, 0.9]);
        let data = TransferData::load(&d, &tok, &HashSet::new()).unwrap();
        let pair = |a: &str, b: &str| Pair { a: a.into(), b: b.into(), label: 1.0, line: 1 };
        // Sentences are matched as the transfer file writes them (one line, single spaces).
        let pairs = [pair("the  cat", "the dog"), pair("a dog", "the dog"), pair("the cat", "a cat"), pair("unknown", "none")];
        let near = data.pair_neighbours(&pairs, 1);
        // Pair 0 sums (1, 1): nearest is pair 1, (0.2, 1.9), closer than pair 2, (1.9, 0.1).
        assert_eq!(near, vec![vec![1], vec![0], vec![0], vec![]]);
        assert_eq!(data.pair_neighbours(&pairs, 5)[2], vec![0, 1]);
    }

    use encoder::Backend;
}
