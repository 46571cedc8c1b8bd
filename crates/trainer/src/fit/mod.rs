//! Training and evaluation. [`train`] runs the stages, each in a module of its own: `prepare`
//! (the pairs), `init` (vocabulary, model, optimiser), then per epoch one `step` per batch
//! (minimising the `objective`), `validate` (metrics, and the epoch to keep) and `report` (the
//! log line, the run's numbers); last it writes the package. `score` measures a model on pairs,
//! for validation and for [`evaluate`].

mod adam;
mod evaluate;
mod graded;
mod init;
mod objective;
pub(crate) mod prepare;
mod report;
mod score;
mod step;
mod validate;

pub(crate) use score::is_duplicate;

pub use adam::adam;
pub use evaluate::{evaluate, heldout_pairs, EvalOptions, EvalReport, HeldoutPart};
pub use graded::GradedStream;
pub use objective::Objective;
pub use prepare::load_scaled;
pub use report::{EpochMetrics, SliceMetrics, TrainReport};
pub use score::{graded_on, pair_distances, pair_scores, retrieval_on};
pub use step::{bucketed_batches, train_step, EncodedPairs, StepOutcome, Trainable};

use std::path::PathBuf;

use burn::module::Module;
use encoder::package::{PackageConfig, FORMAT_VERSION};
use encoder::ModelPackage;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::config::{DataDirs, TrainConfig};
use crate::distill::neighbours::{neighbour_batches, Redraw};
use crate::distill::{DistillObjective, TransferCursor, TransferData};
use crate::{Result, TrainError};
use burn::prelude::Device;
use init::Initial;
pub(crate) use report::progress_bar;
use report::EpochTally;
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
    let graded_data = match &cfg.graded {
        Some(g) => prepare::graded_pairs(g, &cfg.data, dirs, &data)?,
        None => prepare::GradedData::default(),
    };
    let graded_pairs = &graded_data.train;
    // The vocabulary holds the graded pairs' words too.
    let vocab_pairs: std::borrow::Cow<[data::Pair]> = if graded_pairs.is_empty() {
        std::borrow::Cow::Borrowed(&data.train)
    } else {
        data.train.iter().chain(graded_pairs).cloned().collect()
    };
    let Initial { tokenizer, enc_cfg, mut model, head_cfg, coverage } = init::initialise(cfg, dirs, &vocab_pairs, &device)?;
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
    let mut graded = match &cfg.graded {
        Some(g) => {
            fsio::warn!("learning graded scores on {} pairs ({} a step)", graded_pairs.len(), g.batch_size);
            for slice in &graded_data.slices {
                fsio::warn!("scoring graded selection slice {} ({} pairs) after every epoch", slice.name, slice.pairs.len());
            }
            let encoded = EncodedPairs::new(&tokenizer, graded_pairs)?;
            Some(GradedStream::new(encoded, g.batch_size, g.weight, cfg.train.seed.wrapping_add(1)))
        }
        None => None,
    };
    let mut rng = StdRng::seed_from_u64(cfg.train.seed);
    let mut epochs: Vec<EpochMetrics> = Vec::new();
    let mut selection = Selection::default();
    let inference = device.clone().without_autodiff();
    let mut distill = match &cfg.distill {
        Some(d) => {
            let transfer = TransferData::load(d, &tokenizer, &graded_data.slice_sentences())?;
            let objective = DistillObjective::of(d);
            model.projection = objective.projection(enc_cfg.d_output(), transfer.dim(), &device);
            fsio::warn!("distilling on {} transfer sentences ({} teacher dimensions)", transfer.len(), transfer.dim());
            let neighbours = transfer.neighbours(d.neighbours, run.progress)?;
            let cursor = TransferCursor::with_neighbours(transfer.lengths(), neighbours, d.batch_size, d.seed);
            Some((transfer, objective, cursor))
        }
        None => None,
    };
    // Pair batches of teacher neighbours (`train.neighbours`), or length-bucketed ones.
    let pair_neighbours = match &distill {
        Some((transfer, _, _)) if cfg.train.neighbours > 0 => transfer.pair_neighbours(&data.train, cfg.train.neighbours),
        _ => Vec::new(),
    };
    let pretrain = cfg.distill.as_ref().map_or(0, |d| d.pretrain_epochs);
    let total_epochs = pretrain + cfg.train.epochs;

    for epoch in 1..=total_epochs {
        let mut tally = EpochTally::start();
        // Pre-training epochs are passes over the transfer set alone; pair epochs carry one
        // transfer batch along with each pair batch.
        let plan = if epoch <= pretrain {
            let passes = distill.as_ref().map_or(0, |(_, _, c)| c.batches_per_pass());
            vec![Vec::new(); passes]
        } else if !pair_neighbours.is_empty() {
            neighbour_batches(&pair_neighbours, cfg.train.batch_size, Redraw::Never, &mut rng)
        } else {
            bucketed_batches(&lengths, cfg.train.batch_size, cfg.train.bucket_batches, &mut rng)
        };
        let what = if epoch <= pretrain { "distil" } else { "epoch" };
        let bar = progress_bar(run.progress, plan.len() as u64, format!("{what} {epoch:>2}/{total_epochs}"), "batches");
        for idx in &plan {
            let transfer = distill.as_mut().map(|(data, objective, cursor)| (&*objective, data.batch(&cursor.next_batch(), &device)));
            // Graded batches ride along the pair batches only (not the transfer-only passes).
            let graded_idx = match graded.as_mut() {
                Some(g) if !idx.is_empty() => g.next_batch(),
                _ => Vec::new(),
            };
            let graded_step = graded.as_ref().map(|g| (g, graded_idx.as_slice()));
            let (next, step) = train_step(model, &mut optim, cfg.train.lr, &objective, &pairs, idx, transfer, graded_step, &device);
            model = next;
            tally.tokens(step.real_tokens, step.cells);
            if let Some(loss) = step.loss {
                let loss_value = f64::from(loss.into_scalar::<f32>());
                if !loss_value.is_finite() {
                    bar.abandon();
                    return Err(TrainError::Training(format!("loss became {loss_value} in epoch {epoch}; lower train.lr")));
                }
                tally.loss(loss_value, if idx.is_empty() { cfg.distill.as_ref().map_or(1, |d| d.batch_size) } else { idx.len() });
            }
            bar.inc(1);
            bar.set_message(tally.message());
        }
        let train_secs = tally.seconds();
        bar.finish_and_clear();

        let encoder = model.twin.encoder.valid();
        let head = model.head.as_ref().map(|h| h.valid());
        let v = validate::validate(&encoder, head.as_ref(), &tokenizer, &data, &graded_data.slices, cfg, &inference)?;
        let em = EpochMetrics::new(epoch, &tally, train_secs, v);
        let score = Selection::score(&em, cfg.train.select);
        // Pre-training epochs are shown but never kept and spend no patience: their verdict
        // head has not trained yet, and a long pre-training must not end the run before the
        // first pair epoch.
        let improved = epoch > pretrain && selection.improves(score);
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
    if let Some(rate) = cfg.train.search_false_alarm {
        calibrate_search(&output, dirs, rate, &inference)?;
    }
    Ok(report)
}

/// Chooses and stores the search threshold of the package just written, on the search verdicts
/// of its validation pairs (corpus: every sentence of its training file, as `eval --heldout`).
fn calibrate_search(dir: &std::path::Path, dirs: &DataDirs, max_false_alarm: f64, device: &Device) -> Result<()> {
    let embedder = encoder::Embedder::on_device(ModelPackage::load(dir)?, device)?;
    let (valid, sentences, _) = evaluate::heldout_pairs(&embedder.package, dirs, HeldoutPart::Selection)?;
    let corpus: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let verdicts = crate::verdicts::search_verdicts(&embedder, &valid, Some(&corpus), None)?;
    let (flag, point) = crate::verdicts::store_search_threshold(&embedder.package, &verdicts, max_false_alarm)?;
    fsio::warn!(
        "search threshold {:.4} ({}) chosen on the validation pairs: detection {:.4}, false alarm {:.4}",
        point.threshold,
        flag.describe(),
        point.detection,
        point.false_alarm
    );
    Ok(())
}
