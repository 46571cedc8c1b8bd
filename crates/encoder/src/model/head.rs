//! A learned verdict over a pair of sentence vectors.
//!
//! The energy (cosine, Euclidean, Manhattan) weighs every dimension of the two vectors alike, so
//! two questions that agree on their topic but differ in one entity ("5th gen" against "6th gen")
//! stay close. A [`VerdictHead`] reads the symmetric features `[|a−b|, a⊙b]` of the SAME twin
//! vectors through a small MLP and is trained jointly with the encoder (the `verdict` loss, binary
//! cross-entropy), so it can learn which differences decide a duplicate. It is still a Siamese
//! model: each sentence is encoded alone, and search keeps using the energy over stored vectors;
//! only the yes/no verdict on a pair reads the head.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, relu, sigmoid};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::config::VerdictHeadConfig;
use super::lstm::uniform;

impl VerdictHeadConfig {
    /// A freshly initialised head, uniform in `±1/√fan_in` like PyTorch's `nn.Linear`, from a
    /// seeded host RNG so that every backend starts from the same weights.
    pub fn init(&self, device: &Device) -> VerdictHead {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let d_in = 2 * self.d_input;
        let k1 = 1.0 / (d_in as f32).sqrt();
        let k2 = 1.0 / (self.d_hidden as f32).sqrt();
        let tensor2 = |v: Vec<f32>, shape: [usize; 2]| Param::from_tensor(Tensor::<2>::from_data(TensorData::new(v, shape), device));
        let tensor1 = |v: Vec<f32>| {
            let n = v.len();
            Param::from_tensor(Tensor::<1>::from_data(TensorData::new(v, [n]), device))
        };
        VerdictHead {
            input_scale: self.input_scale,
            w_hidden: tensor2(uniform(&mut rng, d_in * self.d_hidden, k1), [d_in, self.d_hidden]),
            b_hidden: tensor1(uniform(&mut rng, self.d_hidden, k1)),
            w_out: tensor2(uniform(&mut rng, self.d_hidden, k2), [self.d_hidden, 1]),
            b_out: tensor1(uniform(&mut rng, 1, k2)),
        }
    }
}

/// An MLP over `[|a−b|, a⊙b]` giving the logit of "these two sentences are duplicates". The
/// features do not change when `a` and `b` swap, so neither does the verdict.
#[derive(Module, Debug)]
pub struct VerdictHead {
    /// See [`VerdictHeadConfig::input_scale`].
    pub input_scale: f64,
    /// `[2·d, hidden]`.
    pub w_hidden: Param<Tensor<2>>,
    /// `[hidden]`.
    pub b_hidden: Param<Tensor<1>>,
    /// `[hidden, 1]`.
    pub w_out: Param<Tensor<2>>,
    /// `[1]`.
    pub b_out: Param<Tensor<1>>,
}

impl VerdictHead {
    /// Logits of "duplicate", one per row of `a` and `b` (`[n, d]` each).
    pub fn forward(&self, a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
        let n = a.dims()[0];
        let (a, b) = if self.input_scale == 1.0 { (a, b) } else { (a.mul_scalar(self.input_scale), b.mul_scalar(self.input_scale)) };
        let features = Tensor::cat(vec![(a.clone() - b.clone()).abs(), a * b], 1);
        let hidden = relu(features.matmul(self.w_hidden.val()) + self.b_hidden.val().unsqueeze::<2>());
        (hidden.matmul(self.w_out.val()) + self.b_out.val().unsqueeze::<2>()).reshape([n])
    }

    /// Width of the sentence vectors this head reads.
    pub fn d_input(&self) -> usize {
        self.w_hidden.dims()[0] / 2
    }

    /// Probabilities of "duplicate" for `n` pairs of host vectors, `pair(i)` giving the two
    /// vectors of pair `i` wherever they live (interleaved encoder output, a query against index
    /// rows), so that no caller copies them into two side arrays first. Runs in chunks so that a
    /// large file needs no more than a few MiB of feature tensors at once.
    pub fn probabilities<'a>(&self, n: usize, pair: impl Fn(usize) -> (&'a [f32], &'a [f32]), device: &Device) -> Vec<f32> {
        const CHUNK: usize = 2048;
        let d = self.d_input();
        let mut out = Vec::with_capacity(n);
        for start in (0..n).step_by(CHUNK) {
            let rows = CHUNK.min(n - start);
            let (mut a, mut b) = (Vec::with_capacity(rows * d), Vec::with_capacity(rows * d));
            for i in start..start + rows {
                let (x, y) = pair(i);
                assert!(x.len() == d && y.len() == d, "pair {i}: vectors of width {d} expected");
                a.extend_from_slice(x);
                b.extend_from_slice(y);
            }
            let side = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [rows, d]), device);
            let p = sigmoid(self.forward(side(a), side(b)));
            out.extend(p.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 probabilities"));
        }
        out
    }
}

/// Binary cross-entropy of the head's `logits` against labels in `[0, 1]`, written with
/// `log σ(x)` and `log σ(−x)` so that confident logits neither overflow nor lose the gradient.
pub fn verdict_loss(logits: Tensor<1>, labels: Tensor<1>) -> Tensor<1> {
    let pos = log_sigmoid(logits.clone());
    let neg = log_sigmoid(logits.neg());
    let ones = labels.ones_like();
    (labels.clone() * pos + (ones - labels) * neg).mean().neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::{AdamConfig, GradientsParams};

    fn dev() -> Device {
        Device::flex()
    }

    fn t2(v: &[f32], rows: usize, device: &Device) -> Tensor<2> {
        let d = v.len() / rows;
        Tensor::<2>::from_data(TensorData::new(v.to_vec(), [rows, d]), device)
    }

    #[test]
    fn the_verdict_is_symmetric_and_the_host_path_matches() {
        let device = dev();
        let head = VerdictHeadConfig::new(4).with_d_hidden(8).init(&device);
        let a = [0.5, -0.5, 0.5, 0.5, 0.1, 0.2, -0.9, 0.3];
        let b = [0.4, -0.6, 0.3, 0.6, -0.7, 0.0, 0.7, 0.1];
        let ab: Vec<f32> = head.forward(t2(&a, 2, &device), t2(&b, 2, &device)).into_data().try_into_vec().unwrap();
        let ba: Vec<f32> = head.forward(t2(&b, 2, &device), t2(&a, 2, &device)).into_data().try_into_vec().unwrap();
        assert_eq!(ab, ba);
        assert_ne!(ab[0], ab[1]);
        let p = head.probabilities(2, |i| (&a[i * 4..(i + 1) * 4], &b[i * 4..(i + 1) * 4]), &device);
        for (l, p) in ab.iter().zip(&p) {
            assert!((1.0 / (1.0 + (-l).exp()) - p).abs() < 1e-6);
        }
        // The input scale is applied to both vectors: scaling them by hand is the same.
        let scaled = VerdictHeadConfig::new(4).with_d_hidden(8).with_input_scale(2.0).init(&device);
        let twice = |v: &[f32]| v.iter().map(|x| 2.0 * x).collect::<Vec<f32>>();
        let (a2, b2) = (twice(&a), twice(&b));
        let by_config = scaled.probabilities(2, |i| (&a[i * 4..(i + 1) * 4], &b[i * 4..(i + 1) * 4]), &device);
        let by_hand = head.probabilities(2, |i| (&a2[i * 4..(i + 1) * 4], &b2[i * 4..(i + 1) * 4]), &device);
        for (x, y) in by_config.iter().zip(&by_hand) {
            assert!((x - y).abs() < 1e-6, "{by_config:?} vs {by_hand:?}");
        }
        assert!(by_config.iter().zip(&p).any(|(x, y)| (x - y).abs() > 1e-4));
    }

    #[test]
    fn verdict_loss_is_binary_cross_entropy() {
        let device = dev();
        let logits = Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 2.0, -1.0, 40.0], [4]), &device);
        let labels = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0], [4]), &device);
        let got: f32 = verdict_loss(logits, labels).into_scalar();
        // −log σ(0) = ln 2; −log σ(−2) = ln(1 + e²); −log σ(1) = ln(1 + e⁻¹); −log σ(40) ≈ 0.
        let want = (2f64.ln() + (1.0 + 2f64.exp()).ln() + (1.0 + (-1f64).exp()).ln()) / 4.0;
        assert!((f64::from(got) - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn training_the_head_separates_close_pairs_from_far_ones() {
        // Pairs that differ only in dimension 0 are impostors; pairs that agree there are
        // duplicates, however much the other dimensions differ. The energy cannot learn this;
        // the head must.
        let device = dev().autodiff();
        let mut head = VerdictHeadConfig::new(3).with_d_hidden(16).with_seed(7).init(&device);
        let a = [1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let b = [1.0, 0.9, -0.9, -1.0, 0.5, 0.5, 0.0, -1.0, 0.9, 0.0, 0.0, -0.9];
        let y = [1.0f32, 0.0, 1.0, 1.0];
        let labels = || Tensor::<1>::from_data(TensorData::new(y.to_vec(), [4]), &device);
        let mut optim = AdamConfig::new().init();
        let loss_of =
            |head: &VerdictHead| -> f32 { verdict_loss(head.forward(t2(&a, 4, &device), t2(&b, 4, &device)), labels()).into_scalar() };
        let first = loss_of(&head);
        for _ in 0..300 {
            let loss = verdict_loss(head.forward(t2(&a, 4, &device), t2(&b, 4, &device)), labels());
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = optim.step(0.01, head, grads);
        }
        let last = loss_of(&head);
        assert!(last < first / 10.0, "loss {first} -> {last}");
        let p = head.valid().probabilities(4, |i| (&a[i * 3..(i + 1) * 3], &b[i * 3..(i + 1) * 3]), &dev());
        assert!(p[0] > 0.9 && p[1] < 0.1 && p[2] > 0.9 && p[3] > 0.9, "{p:?}");
    }
}
