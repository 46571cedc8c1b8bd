//! Energy functions: how far apart two sentence vectors are.
//!
//! Every energy is expressed as a *distance* (lower = more alike), which is what the contrastive
//! loss and the decision threshold work on, and as a *similarity* (higher = more alike), which is
//! what users see. The two are tied by [`Energy::similarity_from_distance`].

#[cfg(feature = "burn")]
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// The distance used to compare two sentence vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Energy {
    /// `‖a − b‖₂`; on unit vectors it lies in `[0, 2]`.
    #[default]
    Euclidean,
    /// `1 − cos(a, b)`, in `[0, 2]`.
    Cosine,
    /// MaLSTM's Manhattan energy: distance `1 − exp(−‖a − b‖₁)`, similarity `exp(−‖a − b‖₁)`.
    Manhattan,
}

impl std::str::FromStr for Energy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "euclidean" => Ok(Energy::Euclidean),
            "cosine" => Ok(Energy::Cosine),
            "manhattan" => Ok(Energy::Manhattan),
            other => Err(format!("unknown energy {other:?} (expected euclidean, cosine or manhattan)")),
        }
    }
}

/// Keeps the square root's gradient finite when two vectors coincide.
const SQRT_EPS: f32 = 1e-12;

impl Energy {
    /// Row-wise distance between `[B, d]` tensors, `[B]`.
    #[cfg(feature = "burn")]
    pub fn distance(&self, a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
        let d: Tensor<2> = match self {
            Energy::Euclidean => (a - b).powi_scalar(2).sum_dim(1).add_scalar(SQRT_EPS).sqrt(),
            Energy::Cosine => {
                let dot = (a.clone() * b.clone()).sum_dim(1);
                let na = a.powi_scalar(2).sum_dim(1).add_scalar(1e-12).sqrt();
                let nb = b.powi_scalar(2).sum_dim(1).add_scalar(1e-12).sqrt();
                (dot / (na * nb)).neg().add_scalar(1.0)
            }
            Energy::Manhattan => (a - b).abs().sum_dim(1).neg().exp().neg().add_scalar(1.0),
        };
        d.squeeze_dim(1)
    }

    /// Row-wise similarity, `[B]`, higher = more alike: cosine for the Euclidean and cosine
    /// energies (`1 − d²/2` is the cosine on unit vectors) and `exp(−‖a − b‖₁)` for Manhattan.
    /// The tensor form of [`Energy::similarity_from_distance`], which regression losses train.
    #[cfg(feature = "burn")]
    pub fn similarity(&self, a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
        match self {
            Energy::Euclidean => self.distance(a, b).powi_scalar(2).mul_scalar(-0.5).add_scalar(1.0),
            Energy::Cosine | Energy::Manhattan => self.distance(a, b).neg().add_scalar(1.0),
        }
    }

    /// The same distance on host vectors, for scoring and search outside burn.
    pub fn distance_host(&self, a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "vectors of different sizes");
        match self {
            Energy::Euclidean => (a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>() + SQRT_EPS).sqrt(),
            Energy::Cosine => {
                let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                let na = (a.iter().map(|x| x * x).sum::<f32>() + 1e-12).sqrt();
                let nb = (b.iter().map(|x| x * x).sum::<f32>() + 1e-12).sqrt();
                1.0 - dot / (na * nb)
            }
            Energy::Manhattan => 1.0 - (-a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>()).exp(),
        }
    }

    /// The similarity users see for a distance: cosine similarity for Euclidean distance between
    /// unit vectors (`1 − d²/2`) and for cosine distance (`1 − d`), `exp(−‖a−b‖₁)` for Manhattan.
    /// Decreasing in `d`, so a distance threshold maps to a similarity threshold.
    pub fn similarity_from_distance(&self, d: f64) -> f64 {
        match self {
            Energy::Euclidean => 1.0 - d * d / 2.0,
            Energy::Cosine | Energy::Manhattan => 1.0 - d,
        }
    }
}

#[cfg(all(test, feature = "burn"))]
mod tests {
    use super::*;

    fn dev() -> Device {
        Device::flex()
    }

    fn t2(rows: &[[f32; 2]]) -> Tensor<2> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), 2]), &dev())
    }

    fn v(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn energies_match_hand_computed_values() {
        // a = (3, 0), b = (0, 4): L2 = 5, L1 = 7, cos = 0; a = b = (1, 1): all zero distance.
        let a = t2(&[[3.0, 0.0], [1.0, 1.0], [1.0, 0.0]]);
        let b = t2(&[[0.0, 4.0], [1.0, 1.0], [-1.0, 0.0]]);
        close(&v(Energy::Euclidean.distance(a.clone(), b.clone())), &[5.0, 0.0, 2.0]);
        close(&v(Energy::Cosine.distance(a.clone(), b.clone())), &[1.0, 0.0, 2.0]);
        close(&v(Energy::Manhattan.distance(a, b)), &[1.0 - (-7f32).exp(), 0.0, 1.0 - (-2f32).exp()]);
    }

    #[test]
    fn host_and_tensor_energies_agree() {
        let (a, b) = ([0.3f32, -1.2], [0.9f32, 0.4]);
        for e in [Energy::Euclidean, Energy::Cosine, Energy::Manhattan] {
            let t = v(e.distance(t2(&[a]), t2(&[b])));
            assert!((t[0] - e.distance_host(&a, &b)).abs() < 1e-6, "{e:?}");
        }
        assert!((Energy::Manhattan.similarity_from_distance(1.0 - (-7f64).exp()) - (-7f64).exp()).abs() < 1e-12);
        // Unit vectors at 90°: Euclidean distance √2 means cosine similarity 0.
        assert!(Energy::Euclidean.similarity_from_distance(2f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn tensor_similarity_is_similarity_from_distance() {
        let (a, b) = ([0.6f32, 0.8], [1.0f32, 0.0]);
        for e in [Energy::Euclidean, Energy::Cosine, Energy::Manhattan] {
            let s = v(e.similarity(t2(&[a]), t2(&[b])))[0];
            let want = e.similarity_from_distance(f64::from(e.distance_host(&a, &b)));
            assert!((f64::from(s) - want).abs() < 1e-5, "{e:?}: {s} vs {want}");
        }
        // Unit vectors: the Euclidean similarity is their cosine, 0.6.
        assert!((v(Energy::Euclidean.similarity(t2(&[a]), t2(&[b])))[0] - 0.6).abs() < 1e-5);
    }
}
