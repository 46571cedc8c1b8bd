//! The training loop and evaluation.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::grad_clipping::GradientClippingConfig;
use burn::prelude::*;
use burn::nn::DropoutConfig;
use data::metrics::{
    best_accuracy_threshold, binary_metrics, graded_metrics, to_gold_scale, BinaryMetrics, GradedMetrics, RetrievalMetrics,
    RetrievalSplit,
};
use data::{load_pairs, split_train_valid, LoadOptions, Pair, PairFormat};
use encoder::embed::embed_texts;
use encoder::loss::POSITIVE_FROM;
use encoder::package::{PackageConfig, FORMAT_VERSION};
use encoder::{
    contrastive_loss, in_batch_negatives_loss, online_contrastive_loss, regression_loss, BatchTensors, Coverage, Energy,
    EncoderConfig, Glove, ModelPackage, SentenceEncoder, TwinEncoder, VerdictHead, VerdictHeadConfig, verdict_loss,
};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tokenize::{Batch, WordTokenizer};

use crate::config::{DataDirs, LossKind, SelectMetric, TrainConfig};
use crate::{Result, TrainError};

/// What the optimiser updates: the twin encoder and, when a verdict loss is configured, its head.
#[derive(Module, Debug)]
struct Trainable {
    twin: TwinEncoder,
    head: Option<VerdictHead>,
}

/// Run-time knobs that are not part of the reproducible config.
#[derive(Debug, Clone, Default)]
pub struct TrainRun {
    /// Draw progress bars (on a terminal).
    pub progress: bool,
    /// Write the package here instead of the config's `output`.
    pub output: Option<PathBuf>,
}

/// Validation numbers of one epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Loss on the validation pairs: contrastive for binary data, the regression MSE (labels
    /// scaled to `[0, 1]`) for graded data.
    pub valid_loss: f64,
    /// Accuracy at this epoch's best distance threshold.
    pub accuracy: f64,
    /// Precision at that threshold.
    pub precision: f64,
    /// Recall at that threshold.
    pub recall: f64,
    /// F1 at that threshold.
    pub f1: f64,
    /// Average precision of the ranking by distance.
    pub average_precision: f64,
    /// Pairs at or below this distance are called duplicates.
    pub threshold: f64,
    /// The verdict head's binary metrics (its `threshold` is a probability), when one is
    /// trained; the epoch is then chosen by these instead of the distance's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<BinaryMetrics>,
    /// Pearson, Spearman and MSE against the gold scores (graded validation data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graded: Option<GradedMetrics>,
    /// Retrieval over the validation sentences (binary validation data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RetrievalMetrics>,
    /// Training throughput.
    pub pairs_per_sec: f64,
    /// Share of the padded id matrices that was padding.
    pub padding_fraction: f64,
    /// Wall time of the epoch, validation included.
    pub seconds: f64,
}

/// What a training run produced; also written as the package's `metrics.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// Decision threshold on distance, from the best epoch.
    pub threshold: f64,
    /// Decision threshold on the verdict head's probability, from the best epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_threshold: Option<f64>,
    /// The energy distances are measured with.
    pub energy: Energy,
    /// The epoch that was kept.
    pub best_epoch: usize,
    /// Its validation metrics.
    pub best: EpochMetrics,
    /// Every epoch's validation metrics.
    pub epochs: Vec<EpochMetrics>,
    /// Which number chose the best epoch.
    pub select: SelectMetric,
    /// Training pairs used.
    pub train_pairs: usize,
    /// Validation pairs used.
    pub valid_pairs: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// GloVe coverage of the vocabulary, when GloVe was used.
    pub glove_coverage: Option<Coverage>,
    /// The backend that trained the model.
    pub backend: String,
    /// Where the package was written.
    pub output: PathBuf,
}

/// Warns about skipped rows: the first few with their line, then one count per reason, so that a
/// file with thousands of unscored rows (SemEval 2015/2016 distractors) does not flood the terminal.
fn report_skipped(path: &Path, skipped: &[data::BadRow]) {
    const SHOWN: usize = 3;
    for bad in skipped.iter().take(SHOWN) {
        fsio::warn!("warning: {}:{}: skipped: {}", path.display(), bad.line, bad.reason);
    }
    if skipped.len() > SHOWN {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for bad in &skipped[SHOWN..] {
            match counts.iter_mut().find(|(r, _)| *r == bad.reason) {
                Some((_, n)) => *n += 1,
                None => counts.push((&bad.reason, 1)),
            }
        }
        for (reason, n) in counts {
            fsio::warn!("warning: {}: {n} more rows skipped: {reason}", path.display());
        }
    }
}

/// Loads one file of pairs and scales its labels to `[0, 1]` by the format's score range.
/// Binary files must hold 0/1 labels; graded labels outside their range are errors.
pub fn load_scaled(path: &Path, format: PairFormat, subset: Option<&str>, range: (f32, f32), skip_bad: bool) -> Result<Vec<Pair>> {
    let opts = LoadOptions { skip_bad, subset: subset.map(str::to_string) };
    let loaded = load_pairs(path, format, opts)?;
    report_skipped(path, &loaded.skipped);
    let mut pairs = loaded.pairs;
    if range == (0.0, 1.0) {
        data::load::check_binary(path, &pairs)?;
        return Ok(pairs);
    }
    let (lo, hi) = range;
    for p in &mut pairs {
        if !(lo..=hi).contains(&p.label) {
            return Err(TrainError::Data(data::DataError::Row {
                path: path.to_path_buf(),
                line: p.line,
                reason: format!("score {} outside the range [{lo}, {hi}]", p.label),
            }));
        }
        p.label = (p.label - lo) / (hi - lo);
    }
    Ok(pairs)
}

/// Length-bucketed batches: shuffle, then sort by length within windows of `window` batches,
/// then shuffle the batches, so each batch holds sentences of similar length.
pub fn bucketed_batches(lengths: &[usize], batch_size: usize, window: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(rng);
    let mut out: Vec<Vec<usize>> = Vec::new();
    for w in order.chunks(batch_size * window.max(1)) {
        let mut w = w.to_vec();
        if window > 1 {
            w.sort_by_key(|&i| lengths[i]);
        }
        out.extend(w.chunks(batch_size).map(|c| c.to_vec()));
    }
    out.shuffle(rng);
    out
}

/// Distances between the two sides of `pairs`, with `encoder` in inference mode.
pub fn pair_distances(
    encoder: &SentenceEncoder,
    tokenizer: &WordTokenizer,
    pairs: &[Pair],
    energy: Energy,
    device: &Device,
) -> Result<Vec<f32>> {
    Ok(pair_scores(encoder, None, tokenizer, pairs, energy, device)?.0)
}

/// The energy's distance of every pair and, with a verdict head, the head's probability that
/// the pair is a duplicate; both from one encoding of the pairs.
pub fn pair_scores(
    encoder: &SentenceEncoder,
    head: Option<&VerdictHead>,
    tokenizer: &WordTokenizer,
    pairs: &[Pair],
    energy: Energy,
    device: &Device,
) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
    let texts: Vec<&str> = pairs.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()]).collect();
    let vecs = embed_texts(encoder, tokenizer, &texts, device, 256, |_| {})?;
    let d = encoder.d_output();
    let pair = |i: usize| (&vecs[2 * i * d..(2 * i + 1) * d], &vecs[(2 * i + 1) * d..(2 * i + 2) * d]);
    let distances = (0..pairs.len())
        .map(|i| {
            let (a, b) = pair(i);
            energy.distance_host(a, b)
        })
        .collect();
    let probabilities = head.map(|h| h.probabilities(pairs.len(), pair, device));
    Ok((distances, probabilities))
}

/// Binary metrics of the head's probabilities at the accuracy-maximising threshold.
fn head_validation(probabilities: &[f32], pairs: &[Pair]) -> BinaryMetrics {
    let labels: Vec<bool> = pairs.iter().map(|p| p.label >= POSITIVE_FROM).collect();
    let t = best_accuracy_threshold(probabilities, &labels);
    binary_metrics(probabilities, &labels, t)
}

/// Binary metrics (graded labels count as genuine from [`POSITIVE_FROM`]) and the validation
/// loss: the regression MSE on `[0, 1]` for graded data, the contrastive loss otherwise.
fn validation(distances: &[f32], pairs: &[Pair], margin: f32, graded: Option<Energy>) -> (BinaryMetrics, f64) {
    let labels: Vec<bool> = pairs.iter().map(|p| p.label >= POSITIVE_FROM).collect();
    let scores: Vec<f32> = distances.iter().map(|d| -d).collect();
    let t = best_accuracy_threshold(&scores, &labels);
    let mut m = binary_metrics(&scores, &labels, t);
    m.threshold = -t;
    let loss = distances
        .iter()
        .zip(pairs)
        .map(|(&d, p)| {
            let d = f64::from(d);
            let y = f64::from(p.label);
            match graded {
                Some(energy) => (energy.similarity_from_distance(d) - y).powi(2),
                None => y * d * d + (1.0 - y) * (f64::from(margin) - d).max(0.0).powi(2),
            }
        })
        .sum::<f64>()
        / pairs.len().max(1) as f64;
    (m, loss)
}

/// The configured sum of weighted losses for one batch; `None` when no term applies (e.g. only
/// in-batch negatives and no genuine pair in the batch).
fn objective(
    cfg: &TrainConfig,
    a: Tensor<2>,
    b: Tensor<2>,
    labels: &[f32],
    keys: (&[u64], &[u64]),
    head: Option<&VerdictHead>,
    device: &Device,
) -> Option<Tensor<1>> {
    let energy = cfg.model.energy;
    let margin = cfg.train.margin;
    let label_tensor = || Tensor::<1>::from_data(TensorData::new(labels.to_vec(), [labels.len()]), device);
    // The distance is built once, however many loss terms read it.
    let mut distance: Option<Tensor<1>> = None;
    let mut total: Option<Tensor<1>> = None;
    for spec in &cfg.train.loss {
        let mut dist = || distance.get_or_insert_with(|| energy.distance(a.clone(), b.clone())).clone();
        let term = match spec.kind {
            LossKind::Contrastive => contrastive_loss(dist(), label_tensor(), margin),
            LossKind::OnlineContrastive => online_contrastive_loss(dist(), labels, margin),
            LossKind::InBatchNegatives => match in_batch_negatives_loss(a.clone(), b.clone(), labels, spec.scale, Some(keys)) {
                Some(l) => l,
                None => continue,
            },
            LossKind::Regression => regression_loss(energy.similarity(a.clone(), b.clone()), label_tensor()),
            LossKind::Verdict => verdict_loss(head.expect("a verdict loss has a head").forward(a.clone(), b.clone()), label_tensor()),
        };
        let term = if spec.weight == 1.0 { term } else { term.mul_scalar(spec.weight) };
        total = Some(match total {
            Some(t) => t + term,
            None => term,
        });
    }
    total
}

/// Correlations of the predicted similarity with the gold scores; labels are in `[0, 1]` and
/// mapped back onto the gold `range` for the MSE.
pub fn graded_on(distances: &[f32], pairs: &[Pair], energy: Energy, range: (f32, f32)) -> GradedMetrics {
    let range = (f64::from(range.0), f64::from(range.1));
    let predicted: Vec<f64> =
        distances.iter().map(|&d| to_gold_scale(energy.similarity_from_distance(f64::from(d)), range)).collect();
    let gold: Vec<f64> = pairs.iter().map(|p| range.0 + f64::from(p.label) * (range.1 - range.0)).collect();
    graded_metrics(&predicted, &gold)
}

/// Retrieval quality on `pairs` as sentence-transformers measures it on Quora: every distinct
/// sentence (plus `extra_corpus`) is a corpus entry, every duplicate pair's first sentence a
/// query that must find its partner.
pub fn retrieval_on(
    encoder: &SentenceEncoder,
    tokenizer: &WordTokenizer,
    pairs: &[Pair],
    energy: Energy,
    device: &Device,
    extra_corpus: Option<&[&str]>,
) -> Result<RetrievalMetrics> {
    let mut split = RetrievalSplit::from_pairs(pairs.iter().map(|p| (p.a.as_str(), p.b.as_str(), p.label >= POSITIVE_FROM)));
    if let Some(extra) = extra_corpus {
        split.add_to_corpus(extra.iter().copied());
    }
    let texts: Vec<&str> = split.corpus.iter().map(String::as_str).collect();
    let vecs = embed_texts(encoder, tokenizer, &texts, device, 256, |_| {})?;
    let d = encoder.d_output();
    let n = texts.len();
    Ok(split.evaluate(|q| {
        let qv = &vecs[split.queries[q] * d..(split.queries[q] + 1) * d];
        (0..n).map(|i| -energy.distance_host(qv, &vecs[i * d..(i + 1) * d])).collect()
    }))
}

fn progress_bar(show: bool, len: u64, prefix: String) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {pos}/{len} pairs {msg} ({elapsed}<{eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix);
    bar
}

/// Trains a model as `cfg` says and writes its package. Returns the validation report.
pub fn train(cfg: &TrainConfig, dirs: &DataDirs, run: &TrainRun) -> Result<TrainReport> {
    cfg.check().map_err(TrainError::Training)?;
    // A bad output (a file, or a folder that is not a package) fails now, not after training.
    encoder::package::check_target(&run.output.clone().unwrap_or_else(|| cfg.output.clone()))?;
    let d = &cfg.data;
    let train_path = DataDirs::resolve(&dirs.data, &d.train);
    let all = load_scaled(&train_path, d.format, d.subset.as_deref(), d.range_of(d.format), d.skip_bad_rows)?;
    let (mut train_pairs, valid_pairs) = match &d.valid {
        Some(v) => {
            let vf = d.valid_format();
            (all, load_scaled(&DataDirs::resolve(&dirs.data, v), vf, d.valid_subset.as_deref(), d.range_of(vf), d.skip_bad_rows)?)
        }
        None => {
            if all.len() <= d.valid_size {
                return Err(TrainError::Training(format!(
                    "{}: {} pairs cannot give {} validation pairs and still train",
                    train_path.display(),
                    all.len(),
                    d.valid_size
                )));
            }
            split_train_valid(all, d.valid_size, d.split_seed)
        }
    };
    if let Some(n) = d.train_size {
        train_pairs.truncate(n);
    }
    if !d.extra.is_empty() {
        // Extra sources may contain evaluation pairs (SemEval STS holds STS-B dev): drop them.
        let key = |p: &Pair| if p.a <= p.b { (p.a.clone(), p.b.clone()) } else { (p.b.clone(), p.a.clone()) };
        let mut banned: std::collections::HashSet<(String, String)> = valid_pairs.iter().map(key).collect();
        for src in &d.exclude {
            let path = DataDirs::resolve(&dirs.data, &src.path);
            let pairs = load_pairs(&path, src.format, LoadOptions { skip_bad: true, subset: src.subset.clone() })?;
            banned.extend(pairs.pairs.iter().map(key));
        }
        for src in &d.extra {
            let path = DataDirs::resolve(&dirs.data, &src.path);
            let more = load_scaled(&path, src.format, src.subset.as_deref(), d.range_of(src.format), d.skip_bad_rows)?;
            let before = more.len();
            let kept: Vec<Pair> = more.into_iter().filter(|p| !banned.contains(&key(p))).collect();
            fsio::warn!(
                "{}: {} more training pairs{}",
                path.display(),
                kept.len(),
                if kept.len() < before { format!(" ({} held-out pairs dropped)", before - kept.len()) } else { String::new() }
            );
            train_pairs.extend(kept);
        }
    }
    if d.symmetric {
        let swapped: Vec<Pair> = train_pairs.iter().map(|p| Pair { a: p.b.clone(), b: p.a.clone(), ..p.clone() }).collect();
        train_pairs.extend(swapped);
    }
    let graded = d.graded();
    let range = d.range_of(d.valid_format());

    let device = cfg.train.backend.try_device().map_err(TrainError::Training)?.autodiff();
    device.seed(cfg.train.seed);
    let (tokenizer, enc_cfg, encoder, coverage, init_head) = match &cfg.model.init {
        Some(dir) => {
            // Fine-tuning: vocabulary, shape and weights come from the package.
            let pkg = ModelPackage::load(dir, &device)?;
            let mut tokenizer = pkg.tokenizer;
            tokenizer.set_max_len(cfg.tokenizer.max_len)?;
            let enc_cfg = pkg.config.encoder.with_dropout(cfg.model.dropout);
            let mut encoder = pkg.encoder;
            encoder.dropout = DropoutConfig::new(cfg.model.dropout).init();
            fsio::warn!("starting from {} (vocabulary {}, {} hidden)", dir.display(), tokenizer.vocab_size(), enc_cfg.d_hidden);
            let head = pkg.config.head.zip(pkg.head.map(|(h, _)| h));
            (tokenizer, enc_cfg, encoder, None, head)
        }
        None => {
            let glove = match &cfg.model.glove {
                Some(g) => Some(Glove::load(&DataDirs::resolve(&dirs.embeddings, g), cfg.model.glove_limit)?),
                None => None,
            };
            let seeds: &[String] = glove.as_ref().map(|g| g.words.as_slice()).unwrap_or(&[]);
            let tokenizer = WordTokenizer::build(
                train_pairs.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()]),
                &cfg.tokenizer,
                seeds,
            )?;
            let d_embed = glove.as_ref().map(|g| g.dim).unwrap_or(cfg.model.d_embed);
            let enc_cfg = EncoderConfig::new(tokenizer.vocab_size())
                .with_d_embed(d_embed)
                .with_d_hidden(cfg.model.d_hidden)
                .with_bidirectional(cfg.model.bidirectional)
                .with_pooling(cfg.model.pooling)
                .with_dropout(cfg.model.dropout)
                .with_normalize(cfg.model.normalize)
                .with_seed(cfg.model.seed);
            let (encoder, coverage) = match &glove {
                Some(g) => {
                    let (table, cov) = g.embedding_table(&tokenizer, cfg.model.seed);
                    (enc_cfg.init_with_embeddings(table, &device), Some(cov))
                }
                None => (enc_cfg.init(&device), None),
            };
            (tokenizer, enc_cfg, encoder, coverage, None)
        }
    };
    if let Some(c) = coverage {
        fsio::warn!("GloVe covers {} of {} vocabulary words ({:.1}%)", c.found, c.vocab, 100.0 * c.ratio());
    }
    fsio::warn!(
        "training on {} pairs, validating on {} ({} backend, vocabulary {})",
        train_pairs.len(),
        valid_pairs.len(),
        cfg.train.backend,
        tokenizer.vocab_size()
    );
    // A verdict loss trains a head: the fine-tuned package's own, or a fresh one.
    let (head_cfg, head) = if cfg.train.loss.iter().any(|l| l.kind == LossKind::Verdict) {
        let (c, h) = init_head.unwrap_or_else(|| {
            let c = VerdictHeadConfig::new(enc_cfg.d_output())
                .with_d_hidden(cfg.model.head_hidden)
                .with_input_scale(cfg.model.head_input_scale)
                .with_seed(cfg.model.seed.wrapping_add(3));
            let h = c.init(&device);
            (c, h)
        });
        (Some(c), Some(h))
    } else {
        (None, None)
    };
    let mut model = Trainable { twin: TwinEncoder { encoder }, head };
    if cfg.model.freeze_embeddings {
        model.twin.encoder.embedding = model.twin.encoder.embedding.no_grad();
    }
    let mut adam = AdamConfig::new();
    if cfg.train.grad_clip > 0.0 {
        adam = adam.with_grad_clipping(Some(GradientClippingConfig::Norm(cfg.train.grad_clip)));
    }
    let mut optim = adam.init();

    // Token ids once, up front.
    let ids_a = tokenizer.encode_batch_rows(&train_pairs.iter().map(|p| p.a.as_str()).collect::<Vec<_>>())?;
    let ids_b = tokenizer.encode_batch_rows(&train_pairs.iter().map(|p| p.b.as_str()).collect::<Vec<_>>())?;
    let lengths: Vec<usize> = ids_a.iter().zip(&ids_b).map(|(a, b)| a.len().max(b.len())).collect();
    // One hash per sentence, so in-batch negatives can leave out candidates with the same text.
    let hash = |ids: &[u32]| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        ids.hash(&mut h);
        h.finish()
    };
    let keys: Vec<(u64, u64)> = ids_a.iter().zip(&ids_b).map(|(a, b)| (hash(a), hash(b))).collect();
    let mut rng = StdRng::seed_from_u64(cfg.train.seed);
    let mut epochs: Vec<EpochMetrics> = Vec::new();
    let mut best: Option<(f64, usize, SentenceEncoder, Option<VerdictHead>)> = None;
    let inference = device.clone().without_autodiff();

    for epoch in 1..=cfg.train.epochs {
        let started = Instant::now();
        let plan = bucketed_batches(&lengths, cfg.train.batch_size, cfg.train.bucket_batches, &mut rng);
        let bar = progress_bar(run.progress, train_pairs.len() as u64, format!("epoch {epoch:>2}/{}", cfg.train.epochs));
        let (mut loss_sum, mut seen, mut real, mut cells) = (0f64, 0usize, 0usize, 0usize);
        for idx in &plan {
            let rows: Vec<&[u32]> =
                idx.iter().map(|&i| ids_a[i].as_slice()).chain(idx.iter().map(|&i| ids_b[i].as_slice())).collect();
            let batch = Batch::from_rows(&rows);
            real += batch.lengths.iter().sum::<usize>();
            cells += batch.batch_size * batch.seq_len;
            let labels: Vec<f32> = idx.iter().map(|&i| train_pairs[i].label).collect();
            let (a, b) = model.twin.forward(BatchTensors::new(&batch, &device));
            let keys_a: Vec<u64> = idx.iter().map(|&i| keys[i].0).collect();
            let keys_b: Vec<u64> = idx.iter().map(|&i| keys[i].1).collect();
            let Some(loss) = objective(cfg, a, b, &labels, (&keys_a, &keys_b), model.head.as_ref(), &device) else {
                bar.inc(idx.len() as u64);
                continue;
            };
            let loss_value = f64::from(loss.clone().into_scalar::<f32>());
            if !loss_value.is_finite() {
                bar.abandon();
                return Err(TrainError::Training(format!("loss became {loss_value} in epoch {epoch}; lower train.lr")));
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(cfg.train.lr, model, grads);
            loss_sum += loss_value * idx.len() as f64;
            seen += idx.len();
            bar.inc(idx.len() as u64);
            let rate = seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("loss {:.4} {:.0} pairs/s", loss_sum / seen as f64, rate));
        }
        let train_secs = started.elapsed().as_secs_f64();
        bar.finish_and_clear();

        let valid_encoder = model.twin.encoder.valid();
        let valid_head = model.head.as_ref().map(|h| h.valid());
        let (distances, probabilities) =
            pair_scores(&valid_encoder, valid_head.as_ref(), &tokenizer, &valid_pairs, cfg.model.energy, &inference)?;
        let head_m = probabilities.map(|p| head_validation(&p, &valid_pairs));
        let (m, valid_loss) = validation(&distances, &valid_pairs, cfg.train.margin, graded.then_some(cfg.model.energy));
        let graded_m = graded.then(|| graded_on(&distances, &valid_pairs, cfg.model.energy, range));
        let retrieval_m = if graded {
            None
        } else {
            Some(retrieval_on(&valid_encoder, &tokenizer, &valid_pairs, cfg.model.energy, &inference, None)?)
        };
        let em = EpochMetrics {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            valid_loss,
            accuracy: m.accuracy,
            precision: m.precision,
            recall: m.recall,
            f1: m.f1,
            average_precision: m.average_precision,
            threshold: m.threshold,
            head: head_m,
            graded: graded_m,
            retrieval: retrieval_m,
            pairs_per_sec: seen as f64 / train_secs.max(1e-9),
            padding_fraction: if cells == 0 { 0.0 } else { 1.0 - real as f64 / cells as f64 },
            seconds: started.elapsed().as_secs_f64(),
        };
        // With a head, the package's verdict comes from the head: choose the epoch by it.
        let verdict = em.head.as_ref();
        let score = match cfg.train.select {
            SelectMetric::Accuracy => verdict.map_or(em.accuracy, |h| h.accuracy),
            SelectMetric::Ap => verdict.map_or(em.average_precision, |h| h.average_precision),
            SelectMetric::Mrr => em.retrieval.map_or(0.0, |r| r.mrr_at_10),
            SelectMetric::Pearson => em.graded.map_or(0.0, |g| g.pearson),
            SelectMetric::Spearman => em.graded.map_or(0.0, |g| g.spearman),
        };
        let improved = best.as_ref().is_none_or(|(s, _, _, _)| score > *s);
        let head_line = em.head.as_ref().map_or(String::new(), |h| {
            format!("head acc {:.4}  F1 {:.4}  AP {:.4}  p >= {:.3} | ", h.accuracy, h.f1, h.average_precision, h.threshold)
        });
        let quality = match (&em.graded, &em.retrieval) {
            (Some(g), _) => format!("pearson {:.4}  spearman {:.4}  MSE {:.3}", g.pearson, g.spearman, g.mse),
            (None, Some(r)) => format!(
                "acc {:.4}  F1 {:.4}  AP {:.4}  MRR@10 {:.4}  thr {:.3}",
                em.accuracy, em.f1, em.average_precision, r.mrr_at_10, em.threshold
            ),
            (None, None) => format!("acc {:.4}  F1 {:.4}  AP {:.4}  thr {:.3}", em.accuracy, em.f1, em.average_precision, em.threshold),
        };
        fsio::warn!(
            "epoch {epoch:>2}: train loss {:.4}  valid loss {:.4}  {head_line}{quality}  {:.0} pairs/s  pad {:.0}%{}",
            em.train_loss,
            em.valid_loss,
            em.pairs_per_sec,
            100.0 * em.padding_fraction,
            if improved { "  *" } else { "" }
        );
        epochs.push(em);
        if improved {
            best = Some((score, epoch, valid_encoder, valid_head));
        } else if best.as_ref().is_some_and(|(_, e, _, _)| epoch - e >= cfg.train.patience.max(1)) {
            fsio::warn!("no improvement for {} epochs: stopping", cfg.train.patience.max(1));
            break;
        }
    }

    let (_, best_epoch, best_encoder, best_head) = best.ok_or_else(|| TrainError::Training("no epoch ran".into()))?;
    let best_metrics = epochs[best_epoch - 1].clone();
    let output = run.output.clone().unwrap_or_else(|| cfg.output.clone());
    let report = TrainReport {
        threshold: best_metrics.threshold,
        head_threshold: best_metrics.head.as_ref().map(|h| h.threshold),
        energy: cfg.model.energy,
        best_epoch,
        best: best_metrics,
        epochs,
        select: cfg.train.select,
        train_pairs: train_pairs.len(),
        valid_pairs: valid_pairs.len(),
        vocab_size: tokenizer.vocab_size(),
        glove_coverage: coverage,
        backend: cfg.train.backend.to_string(),
        output: output.clone(),
    };
    let package = PackageConfig {
        format_version: FORMAT_VERSION,
        encoder: enc_cfg,
        energy: cfg.model.energy,
        max_len: cfg.tokenizer.max_len,
        training: serde_json::to_value(cfg).map_err(|e| TrainError::Training(e.to_string()))?,
        head: head_cfg,
    };
    let metrics = serde_json::to_value(&report).map_err(|e| TrainError::Training(e.to_string()))?;
    ModelPackage::save(&output, &package, &tokenizer, &best_encoder, best_head.as_ref(), &metrics)?;
    Ok(report)
}

/// What [`evaluate`] measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// Binary metrics of the package's verdict at its stored threshold (graded labels count as
    /// genuine from the middle of their range): the head's probability when the package has a
    /// head, the distance otherwise.
    pub binary: BinaryMetrics,
    /// With a head: the same metrics for the energy's distance at its own stored threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_binary: Option<BinaryMetrics>,
    /// Correlations and MSE, for graded data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graded: Option<GradedMetrics>,
    /// Retrieval metrics, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RetrievalMetrics>,
}

/// How [`evaluate`] reads its pairs.
#[derive(Debug, Clone, Default)]
pub struct EvalOptions<'a> {
    /// The labels' original range when they are graded (labels are already scaled to `[0, 1]`).
    pub graded_range: Option<(f32, f32)>,
    /// Also measure retrieval over the pairs' sentences.
    pub retrieval: bool,
    /// More corpus sentences for retrieval (distractors).
    pub extra_corpus: Option<&'a [&'a str]>,
}

/// Scores a package on labelled pairs (labels in `[0, 1]`) at the package's stored threshold,
/// never one chosen on the evaluated data.
pub fn evaluate(package: &ModelPackage, pairs: &[Pair], options: &EvalOptions<'_>, device: &Device) -> Result<EvalReport> {
    let energy = package.config.energy;
    let head = package.head.as_ref();
    let (distances, probabilities) =
        pair_scores(&package.encoder, head.map(|(h, _)| h), &package.tokenizer, pairs, energy, device)?;
    let labels: Vec<bool> = pairs.iter().map(|p| p.label >= POSITIVE_FROM).collect();
    let scores: Vec<f32> = distances.iter().map(|d| -d).collect();
    let mut by_distance = binary_metrics(&scores, &labels, -package.threshold);
    by_distance.threshold = package.threshold;
    let (binary, energy_binary) = match (head, probabilities) {
        (Some((_, t)), Some(p)) => (binary_metrics(&p, &labels, *t), Some(by_distance)),
        _ => (by_distance, None),
    };
    let graded = options.graded_range.map(|r| graded_on(&distances, pairs, energy, r));
    let retrieval = if options.retrieval {
        Some(retrieval_on(&package.encoder, &package.tokenizer, pairs, energy, device, options.extra_corpus)?)
    } else {
        None
    };
    Ok(EvalReport { binary, energy_binary, graded, retrieval })
}

/// What [`heldout_pairs`] returns: the held-out pairs, every sentence of the training file, and
/// the label range the pairs were scaled from.
pub type Heldout = (Vec<Pair>, Vec<String>, (f32, f32));

/// The validation pairs a package was trained against, rebuilt from the training config stored
/// in it (same file, same split seed and size), so that `eval --heldout` measures exactly the
/// pairs training never saw. Returns the held-out pairs, every sentence of the file, and the
/// label range the pairs were scaled from.
pub fn heldout_pairs(package: &ModelPackage, dirs: &DataDirs) -> Result<Heldout> {
    let cfg: TrainConfig = serde_json::from_value(package.config.training.clone()).map_err(|e| {
        TrainError::Training(format!("{}: the package does not record its training config: {e}", package.dir.display()))
    })?;
    if cfg.data.valid.is_some() {
        return Err(TrainError::Training(format!(
            "{}: trained with a separate validation file ({}); evaluate on that file instead of --heldout",
            package.dir.display(),
            cfg.data.valid.as_ref().map(|v| v.display().to_string()).unwrap_or_default()
        )));
    }
    let d = &cfg.data;
    let path = DataDirs::resolve(&dirs.data, &d.train);
    let all = load_scaled(&path, d.format, d.subset.as_deref(), d.range_of(d.format), d.skip_bad_rows)?;
    let sentences: Vec<String> = all.iter().flat_map(|p| [p.a.clone(), p.b.clone()]).collect();
    let (_, valid) = split_train_valid(all, d.valid_size, d.split_seed);
    Ok((valid, sentences, d.range_of(d.format)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucketed_batches_cover_every_pair_once_and_group_lengths() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 37) % 50 + 1).collect();
        let mut rng = StdRng::seed_from_u64(1);
        let plan = bucketed_batches(&lengths, 64, 8, &mut rng);
        let mut all: Vec<usize> = plan.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        let waste = |plan: &[Vec<usize>]| -> f64 {
            let (mut real, mut cells) = (0, 0);
            for b in plan {
                let max = b.iter().map(|&i| lengths[i]).max().unwrap();
                real += b.iter().map(|&i| lengths[i]).sum::<usize>();
                cells += max * b.len();
            }
            1.0 - real as f64 / cells as f64
        };
        let plain = bucketed_batches(&lengths, 64, 1, &mut StdRng::seed_from_u64(1));
        assert!(waste(&plan) < waste(&plain) / 3.0, "{} vs {}", waste(&plan), waste(&plain));
    }
}
