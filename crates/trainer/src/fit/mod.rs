//! Training and evaluation. [`train`] runs the stages, each in a module of its own: `prepare`
//! (the pairs), `init` (vocabulary, model, optimiser), then per epoch one `step` per batch
//! (minimising the `objective`), `validate` (metrics, and the epoch to keep) and `report` (the
//! log line, the run's numbers); last it writes the package. `score` measures a model on pairs,
//! for validation and for [`evaluate`].

mod evaluate;
mod init;
mod objective;
mod prepare;
mod report;
mod score;
mod step;
mod validate;

pub(crate) use score::is_duplicate;

pub use evaluate::{evaluate, heldout_pairs, EvalOptions, EvalReport};
pub use objective::Objective;
pub use prepare::load_scaled;
pub use report::{EpochMetrics, TrainReport};
pub use score::{graded_on, pair_distances, pair_scores, retrieval_on};
pub use step::{bucketed_batches, train_step, EncodedPairs, StepOutcome, Trainable};

use std::path::PathBuf;

use burn::module::Module;
use encoder::package::{PackageConfig, FORMAT_VERSION};
use encoder::ModelPackage;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::config::{DataDirs, TrainConfig};
use crate::{Result, TrainError};
use init::Initial;
use report::{progress_bar, EpochTally};
use validate::{Best, Selection};

/// Run-time knobs that are not part of the reproducible config.
#[derive(Debug, Clone, Default)]
pub struct TrainRun {
    /// Draw progress bars (on a terminal).
    pub progress: bool,
    /// Write the package here instead of the config's `output`.
    pub output: Option<PathBuf>,
}

/// Trains a model as `cfg` says and writes its package. Returns the validation report.
pub fn train(cfg: &TrainConfig, dirs: &DataDirs, run: &TrainRun) -> Result<TrainReport> {
    cfg.check().map_err(TrainError::Training)?;
    // A bad output (a file, or a folder that is not a package) fails now, not after training.
    encoder::package::check_target(&run.output.clone().unwrap_or_else(|| cfg.output.clone()))?;
    let data = prepare::prepare(&cfg.data, dirs)?;
    let device = cfg.train.backend.try_device().map_err(TrainError::Training)?.autodiff();
    device.seed(cfg.train.seed);
    let Initial { tokenizer, enc_cfg, mut model, head_cfg, coverage } = init::initialise(cfg, dirs, &data.train, &device)?;
    fsio::warn!(
        "training on {} pairs, validating on {} ({} backend, vocabulary {})",
        data.train.len(),
        data.valid.len(),
        cfg.train.backend,
        tokenizer.vocab_size()
    );
    let mut optim = init::optimizer(cfg);
    let objective = Objective::of(cfg);
    let pairs = EncodedPairs::new(&tokenizer, &data.train)?;
    let lengths = pairs.lengths();
    let mut rng = StdRng::seed_from_u64(cfg.train.seed);
    let mut epochs: Vec<EpochMetrics> = Vec::new();
    let mut selection = Selection::default();
    let inference = device.clone().without_autodiff();

    for epoch in 1..=cfg.train.epochs {
        let mut tally = EpochTally::start();
        let plan = bucketed_batches(&lengths, cfg.train.batch_size, cfg.train.bucket_batches, &mut rng);
        let bar = progress_bar(run.progress, pairs.len() as u64, format!("epoch {epoch:>2}/{}", cfg.train.epochs));
        for idx in &plan {
            let (next, step) = train_step(model, &mut optim, cfg.train.lr, &objective, &pairs, idx, &device);
            model = next;
            tally.tokens(step.real_tokens, step.cells);
            if let Some(loss) = step.loss {
                let loss_value = f64::from(loss.into_scalar::<f32>());
                if !loss_value.is_finite() {
                    bar.abandon();
                    return Err(TrainError::Training(format!("loss became {loss_value} in epoch {epoch}; lower train.lr")));
                }
                tally.loss(loss_value, idx.len());
                bar.inc(idx.len() as u64);
                bar.set_message(tally.message());
            } else {
                bar.inc(idx.len() as u64);
            }
        }
        let train_secs = tally.seconds();
        bar.finish_and_clear();

        let encoder = model.twin.encoder.valid();
        let head = model.head.as_ref().map(|h| h.valid());
        let v = validate::validate(&encoder, head.as_ref(), &tokenizer, &data, cfg, &inference)?;
        let em = EpochMetrics::new(epoch, &tally, train_secs, v);
        let score = Selection::score(&em, cfg.train.select);
        let improved = selection.improves(score);
        em.log(improved);
        epochs.push(em);
        if improved {
            selection.keep(Best { score, epoch, encoder, head });
        } else if selection.patience_spent(epoch, cfg.train.patience) {
            fsio::warn!("no improvement for {} epochs: stopping", cfg.train.patience.max(1));
            break;
        }
    }

    let best = selection.into_best().ok_or_else(|| TrainError::Training("no epoch ran".into()))?;
    let best_metrics = epochs[best.epoch - 1].clone();
    let output = run.output.clone().unwrap_or_else(|| cfg.output.clone());
    let report = TrainReport {
        threshold: best_metrics.threshold,
        head_threshold: best_metrics.head.as_ref().map(|h| h.threshold),
        energy: cfg.model.energy,
        best_epoch: best.epoch,
        best: best_metrics,
        epochs,
        select: cfg.train.select,
        train_pairs: data.train.len(),
        valid_pairs: data.valid.len(),
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
    ModelPackage::save(&output, &package, &tokenizer, &best.encoder, best.head.as_ref(), &metrics)?;
    Ok(report)
}
