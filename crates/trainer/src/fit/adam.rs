//! Adam for the CPU backends as one pass over host buffers, split over rayon's threads.
//!
//! burn's Adam updates a parameter with a dozen tensor operations, each a full pass that
//! allocates its result; on ndarray and flex they run on one thread. For the embedding table,
//! which is most of the model's parameters, that made the update one of the largest serial parts
//! of a training step. [`HostAdam`] does the same arithmetic, in the same order, in one pass per
//! chunk of values, on every core: its results equal burn's bit for bit (tested), and its state
//! is burn's own [`AdamState`], so nothing else changes. wgpu keeps burn's Adam, which runs where
//! the tensors live.

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer};
use burn::prelude::*;
use encoder::Backend;
use rayon::prelude::*;

/// Values per rayon task: large enough that a task's cost dwarfs its scheduling.
const CHUNK: usize = 1 << 14;

/// Adam on host buffers, with the settings of burn's `AdamConfig::new()` (no weight decay); the
/// bit-for-bit test against burn's Adam holds the two to the same settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
}

impl Default for HostAdam {
    fn default() -> Self {
        Self { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-5 }
    }
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("converted to f32")
}

impl Optimizer for HostAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let (device, dims) = (tensor.device(), tensor.dims());
        let mut param = host(tensor);
        let grad = host(grad);
        let (time, mut m1, mut m2) = match state {
            Some(s) => (s.momentum.time + 1, host(s.momentum.moment_1), host(s.momentum.moment_2)),
            None => (1, vec![0f32; param.len()], vec![0f32; param.len()]),
        };
        let (b1, b2) = (self.beta_1, self.beta_2);
        // As burn computes them, in f32.
        let bias_correction2_sqrt = (1.0 - b2.powi(time as i32)).sqrt();
        let combined = bias_correction2_sqrt / (1.0 - b1.powi(time as i32));
        let eps = self.epsilon * bias_correction2_sqrt;
        let lr = lr as f32;
        param.par_chunks_mut(CHUNK).zip(m1.par_chunks_mut(CHUNK)).zip(m2.par_chunks_mut(CHUNK)).zip(grad.par_chunks(CHUNK)).for_each(
            |(((p, m1), m2), g)| {
                for i in 0..p.len() {
                    // A first step starts from zero moments: 0·β + x is x, as burn's first step.
                    m1[i] = m1[i] * b1 + g[i] * (1.0 - b1);
                    m2[i] = m2[i] * b2 + g[i] * g[i] * (1.0 - b2);
                    let update = m1[i] * combined / (m2[i].sqrt() + eps);
                    p[i] -= update * lr;
                }
            },
        );
        let tensor = |v: Vec<f32>| Tensor::<D>::from_data(TensorData::new(v, dims), &device);
        let state = AdamState::new(AdaptiveMomentumState::new(time, tensor(m1), tensor(m2)));
        (tensor(param), Some(state))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

/// The optimiser a run on `backend` uses: Adam, on the host for the CPU backends, with its
/// gradients clipped to norm `grad_clip` when that is above zero.
pub fn adam(backend: Backend, grad_clip: f32) -> ModuleOptimizer {
    let clip = (grad_clip > 0.0).then_some(GradientClippingConfig::Norm(grad_clip));
    match backend {
        Backend::Ndarray | Backend::Flex => {
            let optim = ModuleOptimizer::from(HostAdam::default());
            match clip {
                Some(c) => optim.with_grad_clipping(c.init()),
                None => optim,
            }
        }
        Backend::Wgpu => AdamConfig::new().with_grad_clipping(clip).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-scale..scale)).collect()
    }

    /// Four steps on a matrix larger than one chunk, with gradients of very different sizes
    /// (some zero): every parameter and both moments equal burn's Adam's, bit for bit.
    #[test]
    fn host_adam_equals_burns_adam_bit_for_bit() {
        let device = Backend::Flex.device();
        let (rows, cols) = (300, 70);
        let n = rows * cols;
        assert!(n > CHUNK);
        let ours = HostAdam::default();
        let theirs = AdamConfig::new().build();
        let start = Tensor::<2>::from_data(TensorData::new(random(n, 1, 1.0), [rows, cols]), &device);
        let (mut p_ours, mut p_theirs) = (start.clone(), start);
        let (mut s_ours, mut s_theirs) = (None, None);
        for step in 0..4u64 {
            let mut g = random(n, 10 + step, 10f32.powi(step as i32 - 2));
            g[..100].fill(0.0);
            let grad = Tensor::<2>::from_data(TensorData::new(g, [rows, cols]), &device);
            let lr = 1e-3 * (step + 1) as f64;
            (p_ours, s_ours) = ours.step(lr, p_ours, grad.clone(), s_ours);
            (p_theirs, s_theirs) = theirs.step(lr, p_theirs, grad, s_theirs);
            let bits = |t: &Tensor<2>| host(t.clone()).iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&p_ours), bits(&p_theirs), "parameters after step {step}");
            let (a, b) = (&s_ours.as_ref().unwrap().momentum, &s_theirs.as_ref().unwrap().momentum);
            assert_eq!(a.time, b.time);
            assert_eq!(bits(&a.moment_1), bits(&b.moment_1), "first moment after step {step}");
            assert_eq!(bits(&a.moment_2), bits(&b.moment_2), "second moment after step {step}");
        }
    }
}
