//! The training objective: the configured weighted sum of losses over one batch.

use burn::prelude::*;
use encoder::{contrastive_loss, in_batch_negatives_loss, online_contrastive_loss, regression_loss, verdict_loss, Energy, VerdictHead};

use crate::config::{LossKind, LossSpec, TrainConfig};

/// What a training step minimises: a weighted sum of losses on the energy between the two sides
/// of each pair (and on the verdict head's logits).
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    /// The terms of the sum.
    pub losses: Vec<LossSpec>,
    /// The energy distances and similarities are measured with.
    pub energy: Energy,
    /// The contrastive margin.
    pub margin: f32,
}

impl Objective {
    /// The objective `cfg` configures.
    pub fn of(cfg: &TrainConfig) -> Self {
        Self { losses: cfg.train.loss.clone(), energy: cfg.model.energy, margin: cfg.train.margin }
    }

    /// The sum of weighted losses for one batch of sentence vectors `a`, `b` with `labels` (and
    /// one text hash per sentence in `keys`, for in-batch negatives); `None` when no term
    /// applies (e.g. only in-batch negatives and no genuine pair in the batch).
    pub fn loss(
        &self,
        a: Tensor<2>,
        b: Tensor<2>,
        labels: &[f32],
        keys: (&[u64], &[u64]),
        head: Option<&VerdictHead>,
        device: &Device,
    ) -> Option<Tensor<1>> {
        let energy = self.energy;
        let margin = self.margin;
        let label_tensor = || Tensor::<1>::from_data(TensorData::new(labels.to_vec(), [labels.len()]), device);
        // The distance is built once, however many loss terms read it.
        let mut distance: Option<Tensor<1>> = None;
        let mut total: Option<Tensor<1>> = None;
        for spec in &self.losses {
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
}
