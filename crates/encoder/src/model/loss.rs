//! Training objectives for the twin encoder.
//!
//! All of them take the two sides' vectors (or the distance between them) for one batch of pairs
//! and return a scalar tensor to back-propagate. Labels are in `[0, 1]`: 0/1 for binary data, and
//! graded scores scaled to `[0, 1]` (see `data::PairFormat::score_range`). They may be combined
//! with weights; the trainer sums them.
//!
//! - [`contrastive_loss`]: Hadsell, Chopra and LeCun's loss over a distance, the seed objective.
//! - [`online_contrastive_loss`]: the same, restricted to the batch's *hard* pairs.
//! - [`in_batch_negatives_loss`]: multiple-negatives ranking in both directions; every other
//!   sentence in the batch is a negative for a genuine pair, which is what nearest-neighbour
//!   retrieval needs.
//! - [`regression_loss`]: MSE between a similarity and the graded label; with the Manhattan energy
//!   this is MaLSTM's `MSE(exp(−‖a−b‖₁), (score−1)/4)` on SICK.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::model::l2_normalize;

/// Labels at or above this are genuine pairs for the losses that need a yes/no answer.
pub const POSITIVE_FROM: f32 = 0.5;

/// The contrastive loss of Hadsell, Chopra and LeCun: `Y·E² + (1−Y)·max(margin − E, 0)²`,
/// averaged over the batch. Genuine pairs (`Y = 1`) are pulled together; impostors are pushed
/// apart until they are `margin` away, and no further.
pub fn contrastive_loss(distance: Tensor<1>, labels: Tensor<1>, margin: f32) -> Tensor<1> {
    let genuine = labels.clone() * distance.clone().powi_scalar(2);
    let gap = distance.neg().add_scalar(margin).clamp_min(0.0);
    let impostor = labels.neg().add_scalar(1.0) * gap.powi_scalar(2);
    (genuine + impostor).mean()
}

/// Which pairs of a batch are hard, as sentence-transformers' `OnlineContrastiveLoss` picks them:
/// a genuine pair is hard when it is farther apart than the closest impostor, an impostor when it
/// is closer than the farthest genuine pair. (With fewer than two pairs on the other side, the
/// mean of the own side is the bar instead.)
pub fn hard_pairs(distance: &[f32], labels: &[f32]) -> Vec<bool> {
    let pos: Vec<f32> = distance.iter().zip(labels).filter(|(_, &y)| y >= POSITIVE_FROM).map(|(&d, _)| d).collect();
    let neg: Vec<f32> = distance.iter().zip(labels).filter(|(_, &y)| y < POSITIVE_FROM).map(|(&d, _)| d).collect();
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
    let pos_bar = if neg.len() > 1 { neg.iter().copied().fold(f32::INFINITY, f32::min) } else { mean(&pos) };
    let neg_bar = if pos.len() > 1 { pos.iter().copied().fold(f32::NEG_INFINITY, f32::max) } else { mean(&neg) };
    distance.iter().zip(labels).map(|(&d, &y)| if y >= POSITIVE_FROM { d > pos_bar } else { d < neg_bar }).collect()
}

/// The contrastive loss over the batch's hard pairs only ([`hard_pairs`]), divided by the batch
/// size (so its scale matches [`contrastive_loss`]). Easy pairs, which the plain loss keeps
/// averaging in, contribute nothing; the gradient goes where the ranking is wrong. Labels are
/// treated as 0/1 (genuine from [`POSITIVE_FROM`]).
pub fn online_contrastive_loss(distance: Tensor<1>, labels: &[f32], margin: f32) -> Tensor<1> {
    let device = distance.device();
    let n = labels.len();
    let host: Vec<f32> = distance.clone().into_data().convert::<f32>().try_into_vec::<f32>().expect("distances converted to f32");
    let hard = hard_pairs(&host, labels);
    let y: Vec<f32> = labels.iter().map(|&l| if l >= POSITIVE_FROM { 1.0 } else { 0.0 }).collect();
    let w: Vec<f32> = hard.iter().map(|&h| if h { 1.0 } else { 0.0 }).collect();
    let y = Tensor::<1>::from_data(TensorData::new(y, [n]), &device);
    let w = Tensor::<1>::from_data(TensorData::new(w, [n]), &device);
    let genuine = y.clone() * distance.clone().powi_scalar(2);
    let impostor = y.neg().add_scalar(1.0) * distance.neg().add_scalar(margin).clamp_min(0.0).powi_scalar(2);
    ((genuine + impostor) * w).sum().div_scalar(n.max(1) as f32)
}

/// Multiple-negatives ranking loss ("in-batch negatives"), in both directions. For every genuine
/// pair `(aᵢ, bᵢ)` of the batch, `aᵢ` must pick `bᵢ` out of all the batch's second sentences
/// `b₀ … b_{n−1}`, and `bᵢ` must pick `aᵢ` out of all first sentences, by cosine similarity times
/// `scale` (softmax cross-entropy; the two directions are averaged). Impostor pairs are not
/// anchors, but their sentences still serve as negatives. `keys` (one hash per sentence, e.g. of
/// its token ids) removes false negatives: a candidate with the same text as the anchor or as its
/// partner is left out. `None` when the batch has no genuine pair.
pub fn in_batch_negatives_loss(
    a: Tensor<2>,
    b: Tensor<2>,
    labels: &[f32],
    scale: f32,
    keys: Option<(&[u64], &[u64])>,
) -> Option<Tensor<1>> {
    let device = a.device();
    let [n, _] = b.dims();
    let anchors: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] >= POSITIVE_FROM).collect();
    if anchors.is_empty() {
        return None;
    }
    let p = anchors.len();
    // Target one-hot rows and the additive mask of false negatives, for both directions.
    let mut target = vec![0f32; p * n];
    let (mut mask_ab, mut mask_ba) = (vec![0f32; p * n], vec![0f32; p * n]);
    for (k, &i) in anchors.iter().enumerate() {
        target[k * n + i] = 1.0;
        if let Some((ka, kb)) = keys {
            for j in (0..n).filter(|&j| j != i) {
                if kb[j] == kb[i] || kb[j] == ka[i] {
                    mask_ab[k * n + j] = -1e4;
                }
                if ka[j] == ka[i] || ka[j] == kb[i] {
                    mask_ba[k * n + j] = -1e4;
                }
            }
        }
    }
    let host = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [p, n]), &device);
    let idx = Tensor::<1, Int>::from_data(TensorData::new(anchors.iter().map(|&i| i as i64).collect::<Vec<_>>(), [p]), &device);
    let (a, b) = (l2_normalize(a), l2_normalize(b));
    let (a_p, b_p) = (a.clone().select(0, idx.clone()), b.clone().select(0, idx));
    let target = host(target);
    let ce = |logits: Tensor<2>, mask: Vec<f32>| {
        let logits = logits.mul_scalar(scale) + host(mask);
        (log_softmax(logits, 1) * target.clone()).sum().neg().div_scalar(p as f32)
    };
    let ab = ce(a_p.matmul(b.transpose()), mask_ab); // [p, n]: anchor aᵢ against every b
    let ba = ce(b_p.matmul(a.transpose()), mask_ba); // [p, n]: anchor bᵢ against every a
    Some((ab + ba).div_scalar(2.0))
}

/// Mean squared error between a predicted similarity and the label in `[0, 1]`. With
/// `Energy::Manhattan.similarity` (`exp(−‖a−b‖₁)`) this is MaLSTM's regression loss.
pub fn regression_loss(similarity: Tensor<1>, target: Tensor<1>) -> Tensor<1> {
    (similarity - target).powi_scalar(2).mean()
}

/// Distillation through a projection: the mean over rows of `1 − cos(projected, teacher)`, where
/// `projected` is the student's vector mapped to the teacher's size by a learned linear layer.
pub fn projection_distill_loss(projected: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    let cos: Tensor<2> = (l2_normalize(projected) * l2_normalize(teacher)).sum_dim(1);
    cos.neg().add_scalar(1.0).mean()
}

/// Distillation of the batch's geometry: the mean over all `B×B` entries of the squared
/// difference between the student's and the teacher's cosine similarity matrices. Sizes may
/// differ; no projection is involved, so this shapes the student's own space.
pub fn similarity_distill_loss(student: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    let cosines = |x: Tensor<2>| {
        let u = l2_normalize(x);
        u.clone().matmul(u.transpose())
    };
    (cosines(student) - cosines(teacher)).powi_scalar(2).mean()
}

/// Distillation of each sentence's ranking of the others: for every row `i` of the batch, the
/// KL divergence from the teacher's softmax over `cos(tᵢ, tⱼ) / temperature` (`j ≠ i`) to the
/// student's over `cos(sᵢ, sⱼ) / temperature`, averaged over rows. [`similarity_distill_loss`]
/// weighs every entry alike, so a batch of mostly unrelated sentences teaches mostly "unrelated";
/// this term puts the weight where the teacher's distribution is: on each sentence's nearest
/// others, whose order is what search shows. Sizes may differ; no projection is involved.
/// Batches of fewer than two rows have no others and cost zero.
pub fn ranking_distill_loss(student: Tensor<2>, teacher: Tensor<2>, temperature: f32) -> Tensor<1> {
    let device = student.device();
    let [n, _] = student.dims();
    if n < 2 {
        return Tensor::zeros([1], &device);
    }
    // The diagonal (a sentence against itself) takes no part: a large negative logit.
    let diagonal: Vec<f32> = (0..n * n).map(|k| if k / n == k % n { -1e4 } else { 0.0 }).collect();
    let diagonal = Tensor::<2>::from_data(TensorData::new(diagonal, [n, n]), &device);
    let log_p = |x: Tensor<2>| {
        let u = l2_normalize(x);
        log_softmax(u.clone().matmul(u.transpose()).div_scalar(temperature) + diagonal.clone(), 1)
    };
    let (log_q, log_t) = (log_p(student), log_p(teacher).detach());
    (log_t.clone().exp() * (log_t - log_q)).sum().div_scalar(n as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> Device {
        Device::flex()
    }

    fn t1(v: &[f32]) -> Tensor<1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &dev())
    }

    fn t2(rows: &[&[f32]]) -> Tensor<2> {
        let d = rows[0].len();
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), d]), &dev())
    }

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    #[test]
    fn contrastive_loss_matches_hand_computed_values() {
        // margin 1: genuine 0.5 → 0.25; impostor inside margin 0.5 → (1−0.5)² = 0.25;
        // impostor beyond margin 1.5 → 0; genuine 0.2 → 0.04. Mean = 0.54 / 4.
        let loss = scalar(contrastive_loss(t1(&[0.5, 0.5, 1.5, 0.2]), t1(&[1.0, 0.0, 0.0, 1.0]), 1.0));
        assert!((loss - 0.54 / 4.0).abs() < 1e-6, "{loss}");
        let one = |d: f32, y: f32, m: f32| scalar(contrastive_loss(t1(&[d]), t1(&[y]), m));
        assert!((one(0.3, 1.0, 0.5) - 0.09).abs() < 1e-6);
        assert!((one(1.2, 1.0, 0.5) - 1.44).abs() < 1e-6, "genuine beyond margin still pulled");
        assert!((one(0.3, 0.0, 0.5) - 0.04).abs() < 1e-6);
        assert_eq!(one(0.7, 0.0, 0.5), 0.0);
    }

    #[test]
    fn online_contrastive_keeps_only_hard_pairs() {
        // Genuine at 0.2, 0.9; impostors at 0.5, 1.4. Closest impostor 0.5: genuine 0.9 is hard.
        // Farthest genuine 0.9: impostor 0.5 is hard. 0.2 and 1.4 are easy.
        let d = [0.2, 0.9, 0.5, 1.4];
        let y = [1.0, 1.0, 0.0, 0.0];
        assert_eq!(hard_pairs(&d, &y), [false, true, true, false]);
        // Loss with margin 1: 0.9² + (1 − 0.5)² = 0.81 + 0.25, over 4 pairs.
        let loss = scalar(online_contrastive_loss(t1(&d), &y, 1.0));
        assert!((loss - 1.06 / 4.0).abs() < 1e-6, "{loss}");
        // A perfectly separated batch has no hard pair and no loss.
        assert_eq!(scalar(online_contrastive_loss(t1(&[0.1, 0.2, 0.8, 0.9]), &[1.0, 1.0, 0.0, 0.0], 1.0)), 0.0);
        // One genuine pair only: the bar for impostors is their own mean (0.6), so 0.4 is hard.
        assert_eq!(hard_pairs(&[0.1, 0.4, 0.8], &[1.0, 0.0, 0.0]), [false, true, false]);
    }

    #[test]
    fn in_batch_negatives_by_hand() {
        // Unit vectors: a0 = b0 = e1, a1 = e2, b1 = e1 (impostor pair), a2 = b2 = e2.
        let a = t2(&[&[1.0, 0.0], &[0.0, 1.0], &[0.0, 1.0]]);
        let b = t2(&[&[1.0, 0.0], &[1.0, 0.0], &[0.0, 1.0]]);
        let y = [1.0, 0.0, 1.0];
        let s = 2.0f32;
        let loss = scalar(in_batch_negatives_loss(a.clone(), b.clone(), &y, s, None).unwrap());
        let e = s.exp();
        // a→b. Anchor a0: logits (s, s, 0), target 0 → −log(eˢ / (2eˢ + 1)).
        //      Anchor a2: logits (0, 0, s), target 2 → −log(eˢ / (eˢ + 2)).
        let ab = (-(e / (2.0 * e + 1.0)).ln() - (e / (e + 2.0)).ln()) / 2.0;
        // b→a. Anchor b0 = e1 against a = (e1, e2, e2): logits (s, 0, 0) → −log(eˢ / (eˢ + 2)).
        //      Anchor b2 = e2: logits (0, s, s), target 2 → −log(eˢ / (2eˢ + 1)).
        let ba = (-(e / (e + 2.0)).ln() - (e / (2.0 * e + 1.0)).ln()) / 2.0;
        let expected = (ab + ba) / 2.0;
        assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
        // Keys: b1 has the same text as b0 (both e1), and a1 the same as a2. Leaving those false
        // negatives out: a0 ranks (b0, b2) → −log(eˢ / (eˢ + 1)); a2 still ranks all three b
        // (b1 is not a2's text nor its partner's) → −log(eˢ / (eˢ + 2)); b0 ranks all three a,
        // unchanged → −log(eˢ / (eˢ + 2)); b2 ranks (a0, a2) → −log(eˢ / (eˢ + 1)).
        let keys_a = [10u64, 11, 11];
        let keys_b = [20u64, 20, 21];
        let masked = scalar(in_batch_negatives_loss(a, b, &y, s, Some((&keys_a, &keys_b))).unwrap());
        let two = -(e / (e + 1.0)).ln();
        let three = -(e / (e + 2.0)).ln();
        let expected = ((two + three) / 2.0 + (three + two) / 2.0) / 2.0;
        assert!((masked - expected).abs() < 1e-4, "{masked} vs {expected}");
        // No genuine pair: nothing to rank.
        assert!(in_batch_negatives_loss(t2(&[&[1.0, 0.0]]), t2(&[&[0.0, 1.0]]), &[0.0], s, None).is_none());
    }

    #[test]
    fn distillation_losses_match_hand_computed_values() {
        let r = std::f32::consts::FRAC_1_SQRT_2;
        // Rows at angle 0 and 45° from the teacher's: (1 − 1 + 1 − 1/√2) / 2. Lengths do not count.
        let l = scalar(projection_distill_loss(t2(&[&[2.0, 0.0], &[0.0, 3.0]]), t2(&[&[1.0, 0.0], &[1.0, 1.0]])));
        assert!((l - (1.0 - r) / 2.0).abs() < 1e-6, "{l}");
        // Student cosines [[1, 0], [0, 1]], teacher [[1, 1/√2], [1/√2, 1]]: two entries differ by
        // 1/√2, so the mean of squares over four entries is (1/2 + 1/2) / 4.
        let s = scalar(similarity_distill_loss(t2(&[&[1.0, 0.0], &[0.0, 5.0]]), t2(&[&[1.0, 0.0, 0.0], &[1.0, 1.0, 0.0]])));
        assert!((s - 0.25).abs() < 1e-6, "{s}");
        // The same geometry in another basis and size costs nothing.
        let same = scalar(similarity_distill_loss(t2(&[&[0.0, 1.0], &[1.0, 1.0]]), t2(&[&[0.0, 0.0, 2.0], &[0.0, 1.0, 1.0]])));
        assert!(same.abs() < 1e-6, "{same}");
    }

    #[test]
    fn ranking_distillation_by_hand() {
        let kl = |p: &[f32], q: &[f32]| p.iter().zip(q).map(|(&p, &q)| p * (p / q).ln()).sum::<f32>();
        let softmax = |x: &[f32]| {
            let e: Vec<f32> = x.iter().map(|v| v.exp()).collect();
            let z: f32 = e.iter().sum();
            e.into_iter().map(|v| v / z).collect::<Vec<f32>>()
        };
        // Three sentences. Teacher cosines: (0,1) = 0, (0,2) = 1/√2, (1,2) = 1/√2. Student
        // cosines: (0,1) = 1, (0,2) = 1, (1,2) = 1 (all one direction). Temperature 0.5 doubles them.
        let r = std::f32::consts::FRAC_1_SQRT_2;
        let teacher = t2(&[&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0], &[1.0, 1.0, 0.0]]);
        let student = t2(&[&[1.0, 0.0], &[2.0, 0.0], &[3.0, 0.0]]);
        let l = scalar(ranking_distill_loss(student, teacher.clone(), 0.5));
        // Row 0 over (1, 2) and row 1 over (0, 2): teacher logits (0, 2r); row 2 over (0, 1): (2r, 2r).
        // The student's rows are uniform.
        let uniform = [0.5, 0.5];
        let expected = (2.0 * kl(&softmax(&[0.0, 2.0 * r]), &uniform) + kl(&softmax(&[2.0 * r, 2.0 * r]), &uniform)) / 3.0;
        assert!((l - expected).abs() < 1e-5, "{l} vs {expected}");
        // The teacher's own geometry in another basis and size costs nothing; so does a lone row.
        let same = scalar(ranking_distill_loss(t2(&[&[0.0, 3.0], &[2.0, 0.0], &[1.0, 1.0]]), teacher, 0.5));
        assert!(same.abs() < 1e-5, "{same}");
        assert_eq!(scalar(ranking_distill_loss(t2(&[&[1.0, 0.0]]), t2(&[&[0.0, 1.0]]), 0.5)), 0.0);
    }

    #[test]
    fn regression_loss_is_malstm_mse_with_manhattan_similarity() {
        use crate::Energy;
        // ‖(0,0) − (1,1)‖₁ = 2 → exp(−2); ‖(1,0) − (1,0)‖₁ = 0 → 1. Gold SICK scores 3 and 5.
        let a = t2(&[&[0.0, 0.0], &[1.0, 0.0]]);
        let b = t2(&[&[1.0, 1.0], &[1.0, 0.0]]);
        let target = t1(&[(3.0 - 1.0) / 4.0, (5.0 - 1.0) / 4.0]);
        let loss = scalar(regression_loss(Energy::Manhattan.similarity(a, b), target));
        let expected = ((-2f32).exp() - 0.5).powi(2) / 2.0;
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    }

    #[test]
    fn every_loss_decreases_when_the_vectors_move_the_right_way() {
        // Moving a genuine pair's vectors together and an impostor's apart lowers every loss.
        let y = [1.0, 0.0];
        let far = (t2(&[&[1.0, 0.0], &[1.0, 0.0]]), t2(&[&[0.6, 0.8], &[0.8, 0.6]]));
        let near = (t2(&[&[1.0, 0.0], &[1.0, 0.0]]), t2(&[&[0.99, 0.141], &[0.0, 1.0]]));
        let e = crate::Energy::Euclidean;
        let c = |(a, b): (Tensor<2>, Tensor<2>)| scalar(contrastive_loss(e.distance(a, b), t1(&y), 1.5));
        assert!(c(near.clone()) < c(far.clone()));
        let m = |(a, b): (Tensor<2>, Tensor<2>)| scalar(in_batch_negatives_loss(a, b, &y, 20.0, None).unwrap());
        assert!(m(near.clone()) < m(far.clone()));
        let r = |(a, b): (Tensor<2>, Tensor<2>)| scalar(regression_loss(e.similarity(a, b), t1(&y)));
        assert!(r(near) < r(far));
    }
}
