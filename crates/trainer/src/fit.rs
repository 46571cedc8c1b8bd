//! The training loop and evaluation.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::grad_clipping::GradientClippingConfig;
use burn::prelude::*;
use data::metrics::{best_accuracy_threshold, binary_metrics, BinaryMetrics};
use data::{load_pairs, split_train_valid, LoadOptions, Pair};
use encoder::embed::embed_texts;
use encoder::package::{PackageConfig, FORMAT_VERSION};
use encoder::{contrastive_loss, BatchTensors, Coverage, Energy, EncoderConfig, Glove, ModelPackage, SentenceEncoder, TwinEncoder};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tokenize::{Batch, WordTokenizer};

use crate::config::{DataDirs, SelectMetric, TrainConfig};
use crate::{Result, TrainError};

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
    /// Contrastive loss on the validation pairs.
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

fn load(path: &Path, cfg: &TrainConfig) -> Result<Vec<Pair>> {
    let loaded = load_pairs(path, cfg.data.format, LoadOptions { skip_bad: cfg.data.skip_bad_rows, ..Default::default() })?;
    for bad in &loaded.skipped {
        eprintln!("warning: {}:{}: skipped: {}", path.display(), bad.line, bad.reason);
    }
    data::load::check_binary(path, &loaded.pairs)?;
    Ok(loaded.pairs)
}

/// Length-bucketed batches: shuffle, then sort by length within windows of `window` batches,
/// then shuffle the batches, so each batch holds sentences of similar length.
fn batches(lengths: &[usize], batch_size: usize, window: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
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
    let texts: Vec<&str> = pairs.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()]).collect();
    let vecs = embed_texts(encoder, tokenizer, &texts, device, 256, |_| {})?;
    let d = encoder.d_output();
    Ok((0..pairs.len()).map(|i| energy.distance_host(&vecs[2 * i * d..(2 * i + 1) * d], &vecs[(2 * i + 1) * d..(2 * i + 2) * d])).collect())
}

fn validation(distances: &[f32], pairs: &[Pair], margin: f32) -> (BinaryMetrics, f64) {
    let labels: Vec<bool> = pairs.iter().map(|p| p.label == 1.0).collect();
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
            y * d * d + (1.0 - y) * (f64::from(margin) - d).max(0.0).powi(2)
        })
        .sum::<f64>()
        / pairs.len().max(1) as f64;
    (m, loss)
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
    let train_path = DataDirs::resolve(&dirs.data, &cfg.data.train);
    let all = load(&train_path, cfg)?;
    let (mut train_pairs, valid_pairs) = match &cfg.data.valid {
        Some(v) => (all, load(&DataDirs::resolve(&dirs.data, v), cfg)?),
        None => {
            if all.len() <= cfg.data.valid_size {
                return Err(TrainError::Training(format!(
                    "{}: {} pairs cannot give {} validation pairs and still train",
                    train_path.display(),
                    all.len(),
                    cfg.data.valid_size
                )));
            }
            split_train_valid(all, cfg.data.valid_size, cfg.data.split_seed)
        }
    };
    if let Some(n) = cfg.data.train_size {
        train_pairs.truncate(n);
    }

    // Vocabulary and embeddings.
    let glove = match &cfg.model.glove {
        Some(g) => Some(Glove::load(&DataDirs::resolve(&dirs.embeddings, g), cfg.model.glove_limit)?),
        None => None,
    };
    let seeds: &[String] = glove.as_ref().map(|g| g.words.as_slice()).unwrap_or(&[]);
    let tokenizer =
        WordTokenizer::build(train_pairs.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()]), &cfg.tokenizer, seeds)?;
    let d_embed = glove.as_ref().map(|g| g.dim).unwrap_or(cfg.model.d_embed);
    let enc_cfg = EncoderConfig::new(tokenizer.vocab_size())
        .with_d_embed(d_embed)
        .with_d_hidden(cfg.model.d_hidden)
        .with_bidirectional(cfg.model.bidirectional)
        .with_pooling(cfg.model.pooling)
        .with_dropout(cfg.model.dropout)
        .with_seed(cfg.model.seed);
    let device = cfg.train.backend.try_device().map_err(TrainError::Training)?.autodiff();
    device.seed(cfg.train.seed);
    let (encoder, coverage) = match &glove {
        Some(g) => {
            let (table, cov) = g.embedding_table(&tokenizer, cfg.model.seed);
            (enc_cfg.init_with_embeddings(table, &device), Some(cov))
        }
        None => (enc_cfg.init(&device), None),
    };
    if let Some(c) = coverage {
        eprintln!("GloVe covers {} of {} vocabulary words ({:.1}%)", c.found, c.vocab, 100.0 * c.ratio());
    }
    eprintln!(
        "training on {} pairs, validating on {} ({} backend, vocabulary {})",
        train_pairs.len(),
        valid_pairs.len(),
        cfg.train.backend,
        tokenizer.vocab_size()
    );
    let mut model = TwinEncoder { encoder };
    if cfg.model.freeze_embeddings {
        model.encoder.embedding = model.encoder.embedding.no_grad();
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
    let mut rng = StdRng::seed_from_u64(cfg.train.seed);
    let mut epochs: Vec<EpochMetrics> = Vec::new();
    let mut best: Option<(f64, usize, SentenceEncoder)> = None;
    let inference = device.clone().without_autodiff();

    for epoch in 1..=cfg.train.epochs {
        let started = Instant::now();
        let plan = batches(&lengths, cfg.train.batch_size, cfg.train.bucket_batches, &mut rng);
        let bar = progress_bar(run.progress, train_pairs.len() as u64, format!("epoch {epoch:>2}/{}", cfg.train.epochs));
        let (mut loss_sum, mut seen, mut real, mut cells) = (0f64, 0usize, 0usize, 0usize);
        for idx in &plan {
            let rows: Vec<&[u32]> =
                idx.iter().map(|&i| ids_a[i].as_slice()).chain(idx.iter().map(|&i| ids_b[i].as_slice())).collect();
            let batch = Batch::from_rows(&rows);
            real += batch.lengths.iter().sum::<usize>();
            cells += batch.batch_size * batch.seq_len;
            let labels: Vec<f32> = idx.iter().map(|&i| train_pairs[i].label).collect();
            let labels = Tensor::<1>::from_data(TensorData::new(labels, [idx.len()]), &device);
            let (a, b) = model.forward(BatchTensors::new(&batch, &device));
            let loss = contrastive_loss(cfg.model.energy.distance(a, b), labels, cfg.train.margin);
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

        let valid_encoder = model.encoder.valid();
        let distances = pair_distances(&valid_encoder, &tokenizer, &valid_pairs, cfg.model.energy, &inference)?;
        let (m, valid_loss) = validation(&distances, &valid_pairs, cfg.train.margin);
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
            pairs_per_sec: seen as f64 / train_secs.max(1e-9),
            padding_fraction: if cells == 0 { 0.0 } else { 1.0 - real as f64 / cells as f64 },
            seconds: started.elapsed().as_secs_f64(),
        };
        let score = match cfg.train.select {
            SelectMetric::Accuracy => em.accuracy,
            SelectMetric::Ap => em.average_precision,
        };
        let improved = best.as_ref().is_none_or(|(s, _, _)| score > *s);
        eprintln!(
            "epoch {epoch:>2}: train loss {:.4}  valid loss {:.4}  acc {:.4}  F1 {:.4}  AP {:.4}  thr {:.3}  {:.0} pairs/s  pad {:.0}%{}",
            em.train_loss,
            em.valid_loss,
            em.accuracy,
            em.f1,
            em.average_precision,
            em.threshold,
            em.pairs_per_sec,
            100.0 * em.padding_fraction,
            if improved { "  *" } else { "" }
        );
        epochs.push(em);
        if improved {
            best = Some((score, epoch, valid_encoder));
        } else if best.as_ref().is_some_and(|(_, e, _)| epoch - e >= cfg.train.patience.max(1)) {
            eprintln!("no improvement for {} epochs: stopping", cfg.train.patience.max(1));
            break;
        }
    }

    let (_, best_epoch, best_encoder) = best.ok_or_else(|| TrainError::Training("no epoch ran".into()))?;
    let best_metrics = epochs[best_epoch - 1].clone();
    let output = run.output.clone().unwrap_or_else(|| cfg.output.clone());
    let report = TrainReport {
        threshold: best_metrics.threshold,
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
    };
    let metrics = serde_json::to_value(&report).map_err(|e| TrainError::Training(e.to_string()))?;
    ModelPackage::save(&output, &package, &tokenizer, &best_encoder, &metrics)?;
    Ok(report)
}

/// Scores a package on labelled pairs at the package's stored threshold (never one chosen on
/// the evaluated data).
pub fn evaluate(package: &ModelPackage, pairs: &[Pair], device: &Device) -> Result<BinaryMetrics> {
    let distances = pair_distances(&package.encoder, &package.tokenizer, pairs, package.config.energy, device)?;
    let labels: Vec<bool> = pairs.iter().map(|p| p.label == 1.0).collect();
    let scores: Vec<f32> = distances.iter().map(|d| -d).collect();
    let mut m = binary_metrics(&scores, &labels, -package.threshold);
    m.threshold = package.threshold;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucketed_batches_cover_every_pair_once_and_group_lengths() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 37) % 50 + 1).collect();
        let mut rng = StdRng::seed_from_u64(1);
        let plan = batches(&lengths, 64, 8, &mut rng);
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
        let plain = batches(&lengths, 64, 1, &mut StdRng::seed_from_u64(1));
        assert!(waste(&plan) < waste(&plain) / 3.0, "{} vs {}", waste(&plan), waste(&plain));
    }
}
