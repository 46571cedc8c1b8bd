//! Training configuration, read from a TOML file in `configs/`.

use std::path::{Path, PathBuf};

use data::PairFormat;
use encoder::{Backend, EncoderConfig, Energy, Pooling, VerdictHeadConfig};
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// A whole training run. Every field has a default except the training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Where the pairs come from.
    pub data: DataConfig,
    /// How the vocabulary is built.
    #[serde(default)]
    pub tokenizer: tokenize::VocabOptions,
    /// Shape of the encoder.
    #[serde(default)]
    pub model: ModelConfig,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainOptions,
    /// Knowledge distillation from a sentence-embedding teacher, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<DistillConfig>,
    /// Graded pairs (SICK, STS scores) learnt beside the training pairs, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graded: Option<GradedConfig>,
    /// Directory the model package is written to.
    #[serde(default = "default_output")]
    pub output: PathBuf,
}

/// Knowledge distillation: the student also learns to reproduce a teacher's sentence vectors
/// (all-MiniLM-L6-v2, computed offline by `scripts/distill-targets.sh`) on a transfer set of
/// unlabelled sentences. Paths are relative to the working directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// The transfer set: one sentence per line (written by the `transfer` binary).
    pub sentences: PathBuf,
    /// The teacher's vectors of those sentences, row `i` for line `i` (a `TWINTCH1` file).
    pub targets: PathBuf,
    /// Transfer sentences per training step.
    #[serde(default = "default_distill_batch")]
    pub batch_size: usize,
    /// Weight of `1 − cos(W·student, teacher)` through a learned projection `W`.
    #[serde(default = "one")]
    pub projection_weight: f32,
    /// Weight of the mean squared difference between the batch's student and teacher cosine
    /// similarity matrices (shapes the student's own space, the one search uses).
    #[serde(default = "one")]
    pub similarity_weight: f32,
    /// Weight of the ranking term: how far each sentence's softmax over its cosines to the
    /// batch's other sentences is from the teacher's (KL divergence). 0: off.
    #[serde(default)]
    pub ranking_weight: f32,
    /// Temperature of the ranking term's softmaxes (lower: only the nearest others count).
    #[serde(default = "default_ranking_temperature")]
    pub ranking_temperature: f32,
    /// Epochs over the transfer set alone before the pair epochs start.
    #[serde(default)]
    pub pretrain_epochs: usize,
    /// Build transfer batches from groups of each sentence and its this-many nearest
    /// neighbours by the teacher (0: length-bucketed random batches), so that the similarity
    /// term sees close sentences that mean different things.
    #[serde(default)]
    pub neighbours: usize,
    /// Unlabelled sentences for the transfer set besides the training pairs' (every sentence of
    /// these files; paths relative to the data directory).
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Files whose sentences never enter the transfer set (evaluation splits).
    #[serde(default)]
    pub exclude: Vec<SourceConfig>,
    /// Augmentation tries per training-pair sentence (Tang et al.: masking, same-class
    /// replacement, n-gram sampling); 0 = none.
    #[serde(default = "default_augment_tries")]
    pub augment_tries: usize,
    /// Seed of the augmentation and of the transfer batches' order.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

/// Graded pairs as a second task: each step on the training pairs also takes one batch of
/// graded pairs (scores scaled to `[0, 1]`) and regresses the energy's similarity on their
/// scores. A model trained on binary duplicate labels alone learns "duplicate or not"; the
/// graded sets teach it how similar two sentences are, which SICK and STS-B measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradedConfig {
    /// The graded files (relative to the data directory). Any pair that is also a validation
    /// or reporting pair (either order), or a pair of `exclude`, is dropped.
    pub sources: Vec<SourceConfig>,
    /// Files whose pairs must never be trained on (evaluation splits: SICK TRIAL, STS-B dev,
    /// whose pairs also appear in the SemEval STS files).
    #[serde(default)]
    pub exclude: Vec<SourceConfig>,
    /// Graded pairs per training step.
    #[serde(default = "default_graded_batch")]
    pub batch_size: usize,
    /// Weight of the regression term in the step's loss.
    #[serde(default = "one")]
    pub weight: f32,
    /// Graded selection slices: pairs held out of training and scored after every epoch, so
    /// that recipes can be compared on graded data without touching SICK TRIAL or STS-B dev.
    /// Their pairs (either order) leave every graded source and their sentences the
    /// distillation transfer set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub select: Vec<GradedSlice>,
}

/// One graded selection slice: `size` pairs drawn (seeded by `data.split_seed`) from one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradedSlice {
    /// File layout (a graded format).
    pub format: PairFormat,
    /// The file, relative to the data directory.
    pub path: PathBuf,
    /// SICK: the `SemEval_set` to draw from.
    #[serde(default)]
    pub subset: Option<String>,
    /// Pairs to hold out (all of them when the file has fewer).
    pub size: usize,
}

impl GradedSlice {
    /// The file the slice is drawn from.
    pub fn source(&self) -> SourceConfig {
        SourceConfig { format: self.format, path: self.path.clone(), subset: self.subset.clone() }
    }

    /// The slice's short name in logs and metrics: the file's stem, and its subset.
    pub fn name(&self) -> String {
        let stem = self.path.file_stem().map_or_else(|| self.path.display().to_string(), |s| s.to_string_lossy().into_owned());
        match &self.subset {
            Some(sub) => format!("{stem}:{sub}"),
            None => stem,
        }
    }
}

fn default_graded_batch() -> usize {
    64
}

fn default_distill_batch() -> usize {
    128
}
fn default_ranking_temperature() -> f32 {
    0.05
}

fn default_augment_tries() -> usize {
    2
}

fn default_output() -> PathBuf {
    PathBuf::from("runs/model")
}

/// The training pairs and the validation split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// File layout.
    pub format: PairFormat,
    /// Training pairs; a relative path is taken from the data directory.
    pub train: PathBuf,
    /// Separate validation pairs; when absent, `valid_size` pairs are split off `train`.
    #[serde(default)]
    pub valid: Option<PathBuf>,
    /// Pairs split off the training file for validation (when `valid` is absent).
    #[serde(default = "default_valid_size")]
    pub valid_size: usize,
    /// Pairs split off the training file for reporting (when `valid` is absent): never trained
    /// on and never used to choose anything; `eval --report` measures them.
    #[serde(default)]
    pub report_size: usize,
    /// Use at most this many training pairs (after the split).
    #[serde(default)]
    pub train_size: Option<usize>,
    /// Seed of the train/validation split.
    #[serde(default = "default_seed")]
    pub split_seed: u64,
    /// Skip malformed rows with a warning instead of stopping.
    #[serde(default)]
    pub skip_bad_rows: bool,
    /// SICK: the `SemEval_set` of the training rows (e.g. `TRAIN`).
    #[serde(default)]
    pub subset: Option<String>,
    /// Layout of `valid`, when it differs from `format`.
    #[serde(default)]
    pub valid_format: Option<PairFormat>,
    /// SICK: the `SemEval_set` of the validation rows (e.g. `TRIAL`).
    #[serde(default)]
    pub valid_subset: Option<String>,
    /// Range of a graded CSV's label column (e.g. `[0.0, 5.0]`); other formats know their own.
    #[serde(default)]
    pub score_range: Option<(f32, f32)>,
    /// Also train on every pair the other way round, `(b, a)`.
    #[serde(default)]
    pub symmetric: bool,
    /// More training files, e.g. all graded sets for pre-training. Any of their pairs that is
    /// also a validation pair (either order) is dropped.
    #[serde(default)]
    pub extra: Vec<SourceConfig>,
    /// Files whose pairs must never be trained on (e.g. the STS-B dev split, whose pairs also
    /// appear in the SemEval STS sets): matching pairs of the `extra` files are dropped.
    #[serde(default)]
    pub exclude: Vec<SourceConfig>,
}

/// One more file of training pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// File layout.
    pub format: PairFormat,
    /// The file, relative to the data directory.
    pub path: PathBuf,
    /// SICK: the `SemEval_set` to keep.
    #[serde(default)]
    pub subset: Option<String>,
}

impl DataConfig {
    /// Layout of the validation pairs.
    pub fn valid_format(&self) -> PairFormat {
        self.valid_format.unwrap_or(self.format)
    }

    /// The label range of `format` in this config (a CSV may be graded through `score_range`).
    pub fn range_of(&self, format: PairFormat) -> (f32, f32) {
        match (format, self.score_range) {
            (PairFormat::Csv, Some(r)) => r,
            _ => format.score_range(),
        }
    }

    /// Whether validation is on graded scores (correlations) rather than 0/1 labels.
    pub fn graded(&self) -> bool {
        let (lo, hi) = self.range_of(self.valid_format());
        (lo, hi) != (0.0, 1.0)
    }
}

fn default_valid_size() -> usize {
    1000
}
fn default_seed() -> u64 {
    42
}

/// Encoder shape and initialisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Word vector size; taken from the GloVe file when one is given.
    pub d_embed: usize,
    /// LSTM state size per direction.
    pub d_hidden: usize,
    /// Read sentences in both directions.
    pub bidirectional: bool,
    /// How LSTM states become a sentence vector.
    pub pooling: Pooling,
    /// Dropout on word vectors.
    pub dropout: f64,
    /// GloVe text file to initialise word vectors from; relative to the embeddings directory.
    pub glove: Option<PathBuf>,
    /// Read only the first this-many GloVe words.
    pub glove_limit: Option<usize>,
    /// More word vectors, appended to GloVe's for the same words (a text file in GloVe's format,
    /// relative to the working directory, like the `[distill]` files): the teacher's vectors of
    /// single words, which `scripts/distill-targets.sh` writes when this is set. Data, not
    /// shipped: the trained embedding table holds what the model keeps of them.
    pub extra_vectors: Option<PathBuf>,
    /// Keep the word vectors fixed during training: words never seen in training then stay
    /// consistent with the ones that were (what a small training set needs).
    pub freeze_embeddings: bool,
    /// Compare sentence vectors with this energy.
    pub energy: Energy,
    /// Scale sentence vectors to unit length (MaLSTM's Manhattan energy works on raw states).
    pub normalize: bool,
    /// Start from this model package (its vocabulary, shape and weights) instead of a fresh
    /// encoder: fine-tuning after pre-training. Relative to the working directory.
    pub init: Option<PathBuf>,
    /// Seed of the weight initialisation.
    pub seed: u64,
    /// Hidden width of the verdict head, which is trained (and shipped) when a `verdict` loss
    /// is configured.
    pub head_hidden: usize,
    /// The verdict head multiplies both vectors by this before forming its features (see
    /// `encoder::VerdictHeadConfig::input_scale`).
    pub head_input_scale: f64,
}

impl Default for ModelConfig {
    /// The encoder's and the head's own defaults ([`EncoderConfig`], [`VerdictHeadConfig`]),
    /// so that the shape defaults are written once.
    fn default() -> Self {
        let encoder = EncoderConfig::new(0);
        let head = VerdictHeadConfig::new(0);
        Self {
            d_embed: encoder.d_embed,
            d_hidden: encoder.d_hidden,
            bidirectional: encoder.bidirectional,
            pooling: encoder.pooling,
            dropout: encoder.dropout,
            glove: None,
            glove_limit: None,
            extra_vectors: None,
            freeze_embeddings: false,
            energy: Energy::default(),
            normalize: encoder.normalize,
            init: None,
            seed: encoder.seed,
            head_hidden: head.d_hidden,
            head_input_scale: head.input_scale,
        }
    }
}

/// Which validation number picks the best epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectMetric {
    /// Accuracy at the best threshold.
    Accuracy,
    /// Average precision (threshold-free, steadier).
    #[default]
    Ap,
    /// Retrieval MRR@10 over the validation questions (binary data).
    Mrr,
    /// Pearson correlation with the gold scores (graded data).
    Pearson,
    /// Spearman correlation with the gold scores (graded data).
    Spearman,
}

impl SelectMetric {
    /// Whether this metric needs graded validation data.
    pub fn is_graded(&self) -> bool {
        matches!(self, SelectMetric::Pearson | SelectMetric::Spearman)
    }
}

/// A training objective (see `encoder::loss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// `Y·E² + (1−Y)·max(margin − E, 0)²` over every pair.
    Contrastive,
    /// The contrastive loss over the batch's hard pairs only.
    OnlineContrastive,
    /// Multiple-negatives ranking: every other sentence of the batch is a negative.
    InBatchNegatives,
    /// MSE between the energy's similarity and the label scaled to `[0, 1]` (MaLSTM with the
    /// Manhattan energy).
    Regression,
    /// Binary cross-entropy of a verdict head over `[|a−b|, a⊙b]`, trained with the encoder;
    /// the package then judges pairs with the head (see `encoder::head`).
    Verdict,
}

/// One term of the training objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossSpec {
    /// Which loss.
    pub kind: LossKind,
    /// Its weight in the sum.
    #[serde(default = "one")]
    pub weight: f32,
    /// Similarity scale of `in_batch_negatives` (sentence-transformers uses 20).
    #[serde(default = "twenty")]
    pub scale: f32,
}

fn one() -> f32 {
    1.0
}
fn twenty() -> f32 {
    20.0
}

impl LossSpec {
    /// `kind` with weight 1 and scale 20.
    pub fn new(kind: LossKind) -> Self {
        Self { kind, weight: 1.0, scale: 20.0 }
    }
}

/// Optimisation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainOptions {
    /// Maximum number of passes over the training pairs.
    pub epochs: usize,
    /// Pairs per step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Contrastive margin: impostors are pushed this far apart.
    pub margin: f32,
    /// Seed of shuffling and dropout.
    pub seed: u64,
    /// Stop after this many epochs without a better validation score.
    pub patience: usize,
    /// Which validation number picks the best epoch.
    pub select: SelectMetric,
    /// Gradient norm clip (0 = none).
    pub grad_clip: f32,
    /// Sort pairs by length within windows of this many batches, so batches carry little
    /// padding (1 = plain shuffled batches).
    pub bucket_batches: usize,
    /// Build pair batches from groups of each pair and its this-many nearest pairs by the
    /// teacher (0: length-bucketed batches; needs `[distill]`, whose transfer set holds the
    /// training sentences' teacher vectors), so that the in-batch negatives are close questions.
    /// Every pair still comes once per epoch.
    pub neighbours: usize,
    /// Compute backend.
    pub backend: Backend,
    /// The objective: a weighted sum of these losses (`[[train.loss]]` tables).
    pub loss: Vec<LossSpec>,
    /// Binary data: after training, choose the package's search threshold on the validation
    /// pairs' search verdicts (corpus = every sentence of the training file), as the one with
    /// the most detection at false alarm at most this rate. Unset: search uses the pair
    /// threshold (or `eval --heldout --calibrate-search` sets one later).
    pub search_false_alarm: Option<f64>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 20,
            batch_size: 64,
            lr: 1e-3,
            margin: 1.0,
            seed: 42,
            patience: 4,
            select: SelectMetric::Ap,
            grad_clip: 5.0,
            bucket_batches: 50,
            neighbours: 0,
            backend: Backend::Ndarray,
            loss: vec![LossSpec::new(LossKind::Contrastive)],
            search_false_alarm: None,
        }
    }
}

impl TrainConfig {
    /// Reads and checks a TOML config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io { path: path.to_path_buf(), source })?;
        let cfg: TrainConfig = toml::from_str(&text).map_err(|e| TrainError::Config { path: path.to_path_buf(), reason: e.to_string() })?;
        cfg.check().map_err(|reason| TrainError::Config { path: path.to_path_buf(), reason })?;
        Ok(cfg)
    }

    /// Rejects settings that cannot train.
    pub fn check(&self) -> std::result::Result<(), String> {
        let t = &self.train;
        if t.epochs == 0 || t.batch_size == 0 {
            return Err("train.epochs and train.batch_size must be at least 1".into());
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return Err("train.lr must be positive".into());
        }
        if !(t.margin > 0.0 && t.margin.is_finite()) {
            return Err("train.margin must be positive".into());
        }
        if !(0.0..1.0).contains(&self.model.dropout) {
            return Err("model.dropout must be in [0, 1)".into());
        }
        if !(self.model.head_input_scale > 0.0 && self.model.head_input_scale.is_finite()) {
            return Err("model.head_input_scale must be positive".into());
        }
        if self.model.extra_vectors.is_some() && self.model.glove.is_none() {
            return Err("model.extra_vectors are appended to GloVe's vectors: set model.glove too".into());
        }
        if self.model.d_hidden == 0 || self.model.d_embed == 0 || self.model.head_hidden == 0 {
            return Err("model.d_hidden, model.d_embed and model.head_hidden must be at least 1".into());
        }
        if t.loss.is_empty() {
            return Err("train.loss needs at least one [[train.loss]] entry".into());
        }
        for l in &t.loss {
            if !(l.weight > 0.0 && l.weight.is_finite() && l.scale > 0.0 && l.scale.is_finite()) {
                return Err(format!("train.loss {:?}: weight and scale must be positive", l.kind));
            }
        }
        if t.select.is_graded() != self.data.graded() {
            let kind = if self.data.graded() { "graded (use pearson or spearman)" } else { "binary (use accuracy, ap or mrr)" };
            return Err(format!("train.select = {:?} does not fit the validation data, which is {kind}", t.select));
        }
        if let Some((lo, hi)) = self.data.score_range {
            // Written so that NaN bounds are refused too.
            if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
                return Err("data.score_range must be [low, high] with low < high".into());
            }
        }
        if t.neighbours > 0 && self.distill.is_none() {
            return Err("train.neighbours groups pairs by the teacher's vectors: it needs a [distill] table".into());
        }
        if let Some(d) = &self.distill {
            if d.batch_size == 0 {
                return Err("distill.batch_size must be at least 1".into());
            }
            let w = |x: f32| x >= 0.0 && x.is_finite();
            if !(w(d.projection_weight) && w(d.similarity_weight) && w(d.ranking_weight))
                || d.projection_weight + d.similarity_weight + d.ranking_weight == 0.0
            {
                return Err("distill.projection_weight, similarity_weight and ranking_weight must be >= 0, not all 0".into());
            }
            if !(d.ranking_temperature > 0.0 && d.ranking_temperature.is_finite()) {
                return Err("distill.ranking_temperature must be positive".into());
            }
        }
        if let Some(g) = &self.graded {
            if g.sources.is_empty() || g.batch_size == 0 {
                return Err("graded.sources must name at least one file and graded.batch_size must be at least 1".into());
            }
            if !(g.weight > 0.0 && g.weight.is_finite()) {
                return Err("graded.weight must be positive".into());
            }
            if let Some(s) = g.sources.iter().find(|s| self.data.range_of(s.format) == (0.0, 1.0)) {
                return Err(format!("graded.sources: {} is not a graded format ({:?})", s.path.display(), s.format));
            }
            for slice in &g.select {
                if slice.size == 0 {
                    return Err(format!("graded.select: {} needs a size of at least 1", slice.path.display()));
                }
                if self.data.range_of(slice.format) == (0.0, 1.0) {
                    return Err(format!("graded.select: {} is not a graded format ({:?})", slice.path.display(), slice.format));
                }
            }
        }
        if let Some(rate) = t.search_false_alarm {
            if !(0.0..=1.0).contains(&rate) {
                return Err("train.search_false_alarm must be a rate in [0, 1]".into());
            }
            if self.data.graded() {
                return Err("train.search_false_alarm needs binary validation data".into());
            }
        }
        if self.data.valid.is_some() && self.data.report_size > 0 {
            return Err("data.report_size splits the training file; it cannot be combined with data.valid".into());
        }
        if self.data.valid.is_none() && self.data.valid_size == 0 {
            return Err("either data.valid or a non-zero data.valid_size is needed for validation".into());
        }
        Ok(())
    }
}

/// Where relative paths in a config are resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct DataDirs {
    /// Datasets directory (`--data-dir`, `TWIN_DATA_DIR`, default [`data::DEFAULT_DATA_DIR`]).
    pub data: PathBuf,
    /// Word-vector directory (`--embeddings-dir`, `TWIN_EMBEDDINGS_DIR`, default
    /// [`data::DEFAULT_EMBEDDINGS_DIR`]).
    pub embeddings: PathBuf,
}

impl Default for DataDirs {
    fn default() -> Self {
        Self { data: PathBuf::from(data::DEFAULT_DATA_DIR), embeddings: PathBuf::from(data::DEFAULT_EMBEDDINGS_DIR) }
    }
}

/// `--data-dir` and `--embeddings-dir`, as the binaries that read a config take them.
#[derive(Debug, Clone, clap::Args)]
pub struct DataDirArgs {
    /// Directory holding the datasets the config names.
    #[arg(long, env = "TWIN_DATA_DIR", default_value = data::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Directory holding the word vectors the config names.
    #[arg(long, env = "TWIN_EMBEDDINGS_DIR", default_value = data::DEFAULT_EMBEDDINGS_DIR)]
    pub embeddings_dir: PathBuf,
}

impl DataDirArgs {
    /// Where the config's relative paths resolve.
    pub fn dirs(&self) -> DataDirs {
        DataDirs { data: self.data_dir.clone(), embeddings: self.embeddings_dir.clone() }
    }
}

impl DataDirs {
    /// A path from the config, taken relative to `base` unless absolute.
    pub fn resolve(base: &Path, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults_and_unknown_keys_are_rejected() {
        let cfg: TrainConfig = toml::from_str("[data]\nformat = \"csv\"\ntrain = \"pairs.csv\"\n").unwrap();
        assert_eq!(cfg.train.batch_size, 64);
        assert_eq!(cfg.tokenizer.max_len, 48);
        assert_eq!(cfg.model.energy, Energy::Euclidean);
        assert!(cfg.check().is_ok());
        let err = toml::from_str::<TrainConfig>("[data]\nformat = \"csv\"\ntrain = \"p\"\n[train]\nepochz = 3\n");
        assert!(err.unwrap_err().to_string().contains("epochz"));
    }

    #[test]
    fn losses_and_graded_selection_parse_and_are_checked() {
        let text = "[data]\nformat = \"sick\"\ntrain = \"SICK.txt\"\nsubset = \"TRAIN\"\nvalid = \"SICK.txt\"\nvalid_subset = \"TRIAL\"\n\
                    [[data.extra]]\nformat = \"stsb\"\npath = \"sts-train.csv\"\n\
                    [train]\nselect = \"pearson\"\n[[train.loss]]\nkind = \"regression\"\n[[train.loss]]\nkind = \"in_batch_negatives\"\nweight = 0.5\n";
        let cfg: TrainConfig = toml::from_str(text).unwrap();
        assert!(cfg.data.graded());
        assert_eq!(cfg.data.extra[0].format, PairFormat::Stsb);
        assert_eq!(
            cfg.train.loss,
            vec![LossSpec::new(LossKind::Regression), LossSpec { weight: 0.5, ..LossSpec::new(LossKind::InBatchNegatives) }]
        );
        assert!(cfg.check().is_ok(), "{:?}", cfg.check());
        // Accuracy cannot pick epochs on graded SICK scores, nor Pearson on 0/1 labels.
        let mut wrong = cfg.clone();
        wrong.train.select = SelectMetric::Accuracy;
        assert!(wrong.check().unwrap_err().contains("graded"));
        let binary: TrainConfig = toml::from_str("[data]\nformat = \"qqp\"\ntrain = \"d.tsv\"\n[train]\nselect = \"spearman\"\n").unwrap();
        assert!(binary.check().unwrap_err().contains("binary"));
        // A CSV becomes graded once it has a score range.
        let csv: TrainConfig =
            toml::from_str("[data]\nformat = \"csv\"\ntrain = \"p.csv\"\nscore_range = [0.0, 5.0]\n[train]\nselect = \"spearman\"\n")
                .unwrap();
        assert!(csv.check().is_ok());
    }

    #[test]
    fn graded_pairs_parse_with_defaults_and_are_checked() {
        let base = "[data]\nformat = \"qqp\"\ntrain = \"d.tsv\"\n[train]\nselect = \"ap\"\n";
        let cfg: TrainConfig = toml::from_str(&format!(
            "{base}[graded]\nsources = [{{ format = \"sick\", path = \"SICK.txt\", subset = \"TRAIN\" }}]\n\
             exclude = [{{ format = \"stsb\", path = \"sts-dev.csv\" }}]\n"
        ))
        .unwrap();
        let g = cfg.graded.as_ref().unwrap();
        assert_eq!((g.batch_size, g.weight, g.sources[0].subset.as_deref()), (64, 1.0, Some("TRAIN")));
        assert_eq!(g.exclude[0].format, PairFormat::Stsb);
        assert!(cfg.check().is_ok(), "{:?}", cfg.check());
        let with = |edit: &dyn Fn(&mut GradedConfig)| {
            let mut c = cfg.clone();
            edit(c.graded.as_mut().unwrap());
            c.check()
        };
        assert!(with(&|g: &mut GradedConfig| g.weight = 0.0).unwrap_err().contains("graded.weight"));
        assert!(with(&|g: &mut GradedConfig| g.batch_size = 0).unwrap_err().contains("graded.batch_size"));
        assert!(with(&|g: &mut GradedConfig| g.sources.clear()).unwrap_err().contains("graded.sources"));
        // Binary labels have no scores to regress on.
        let binary = |g: &mut GradedConfig| g.sources[0] = SourceConfig { format: PairFormat::Mrpc, path: "m.txt".into(), subset: None };
        assert!(with(&binary).unwrap_err().contains("m.txt is not a graded format"));
        // Selection slices: named by file and subset, sized, graded.
        let sliced: TrainConfig = toml::from_str(&format!(
            "{base}[graded]\nsources = [{{ format = \"stsb\", path = \"sts-train.csv\" }}]\n\
             select = [{{ format = \"sick\", path = \"sick/SICK.txt\", subset = \"TRAIN\", size = 30 }}]\n"
        ))
        .unwrap();
        let slice = &sliced.graded.as_ref().unwrap().select[0];
        assert_eq!((slice.name().as_str(), slice.size, slice.source().format), ("SICK:TRAIN", 30, PairFormat::Sick));
        assert!(sliced.check().is_ok());
        let with_slice = |edit: &dyn Fn(&mut GradedSlice)| {
            let mut c = sliced.clone();
            edit(&mut c.graded.as_mut().unwrap().select[0]);
            c.check()
        };
        assert!(with_slice(&|s: &mut GradedSlice| s.size = 0).unwrap_err().contains("size of at least 1"));
        assert!(with_slice(&|s: &mut GradedSlice| s.format = PairFormat::Qqp).unwrap_err().contains("graded.select"));
        // Configs without slices write none, so packages' stored configs stay as they were.
        assert!(!serde_json::to_string(&cfg).unwrap().contains("select\":["));
        // Old configs (and packages' stored configs) have no [graded] table, and write none.
        let old: TrainConfig = toml::from_str(base).unwrap();
        assert!(old.graded.is_none());
        assert!(!serde_json::to_string(&old).unwrap().contains("graded"));
    }

    #[test]
    fn distill_terms_default_and_are_checked() {
        let base = "[data]\nformat = \"qqp\"\ntrain = \"d.tsv\"\n[distill]\nsentences = \"s.txt\"\ntargets = \"t.f32\"\n";
        let cfg: TrainConfig = toml::from_str(base).unwrap();
        let d = cfg.distill.as_ref().unwrap();
        // Configs written before the ranking term keep their two terms and leave it off.
        assert_eq!((d.projection_weight, d.similarity_weight, d.ranking_weight, d.ranking_temperature), (1.0, 1.0, 0.0, 0.05));
        assert!(cfg.check().is_ok(), "{:?}", cfg.check());
        let with = |edit: &dyn Fn(&mut DistillConfig)| {
            let mut c = cfg.clone();
            edit(c.distill.as_mut().unwrap());
            c.check()
        };
        let ranking_only = |d: &mut DistillConfig| {
            d.projection_weight = 0.0;
            d.similarity_weight = 0.0;
            d.ranking_weight = 1.0;
        };
        assert!(with(&ranking_only).is_ok());
        let none = |d: &mut DistillConfig| {
            d.projection_weight = 0.0;
            d.similarity_weight = 0.0;
        };
        assert!(with(&none).unwrap_err().contains("not all 0"));
        assert!(with(&|d: &mut DistillConfig| d.ranking_weight = f32::NAN).unwrap_err().contains("ranking_weight"));
        assert!(with(&|d: &mut DistillConfig| d.ranking_temperature = 0.0).unwrap_err().contains("ranking_temperature"));
        // Pair neighbour batches default off and need the teacher's vectors.
        assert_eq!(cfg.train.neighbours, 0);
        let mut grouped = cfg.clone();
        grouped.train.neighbours = 3;
        assert!(grouped.check().is_ok());
        grouped.distill = None;
        assert!(grouped.check().unwrap_err().contains("needs a [distill] table"));
    }

    #[test]
    fn model_defaults_are_the_encoders_and_heads() {
        let m = ModelConfig::default();
        assert_eq!(
            (m.d_embed, m.d_hidden, m.bidirectional, m.pooling, m.dropout, m.normalize, m.seed),
            (50, 128, false, Pooling::Last, 0.0, true, 42)
        );
        assert_eq!((m.head_hidden, m.head_input_scale, m.energy), (128, 1.0, Energy::Euclidean));
        assert_eq!((m.glove, m.glove_limit, m.freeze_embeddings, m.init), (None, None, false, None));
        // A fresh encoder built from the defaults has exactly the encoder's default shape.
        let from_cfg = EncoderConfig::new(7)
            .with_d_embed(m.d_embed)
            .with_d_hidden(m.d_hidden)
            .with_bidirectional(m.bidirectional)
            .with_pooling(m.pooling)
            .with_dropout(m.dropout)
            .with_normalize(m.normalize)
            .with_seed(m.seed);
        assert_eq!(from_cfg, EncoderConfig::new(7));
        // Extra word vectors are appended to GloVe's, so they need a GloVe file.
        let base = "[data]\nformat = \"csv\"\ntrain = \"p.csv\"\n[model]\nextra_vectors = \"t.txt\"\n";
        let cfg: TrainConfig = toml::from_str(base).unwrap();
        assert!(cfg.check().unwrap_err().contains("model.glove"));
        let cfg: TrainConfig = toml::from_str(&format!("{base}glove = \"g.txt\"\n")).unwrap();
        assert_eq!(cfg.check(), Ok(()));
    }

    #[test]
    fn data_dirs_default_to_the_shared_layout() {
        let d = DataDirs::default();
        assert_eq!((d.data.as_path(), d.embeddings.as_path()), (Path::new("../shared/datasets"), Path::new("../shared/embeddings")));
    }

    #[test]
    fn bad_values_are_refused_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[data]\nformat = \"csv\"\ntrain = \"p\"\n[train]\nlr = -1.0\n").unwrap();
        let e = TrainConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains("lr"), "{e}");
    }
}
