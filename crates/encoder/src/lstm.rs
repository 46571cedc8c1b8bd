//! A fused LSTM whose recurrence honours a length mask.
//!
//! burn's stock `Lstm` runs every time step of the padded batch, so a padded sentence ends in a
//! different state than the same sentence alone. Here a `[batch, time]` mask of 1 (real token) and
//! 0 (padding) gates every update: on a padded step the state is carried over unchanged, so the
//! final state of each row is the state after its last real token, whatever the padding. The
//! layout is the fast one: the input projection of all steps is one `[B·T, d] × [d, 4h]` matmul,
//! and each step is one `[B, h] × [h, 4h]` matmul whose result is split into the four gates.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, tanh};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Shape of a [`MaskedLstm`].
#[derive(Config, Debug)]
pub struct MaskedLstmConfig {
    /// Size of each input vector.
    pub d_input: usize,
    /// Size of the hidden and cell state.
    pub d_hidden: usize,
    /// Read the sentence from its last real token to its first.
    #[config(default = false)]
    pub reverse: bool,
    /// Seed of the uniform initialisation, so that every backend starts from the same weights.
    #[config(default = 0)]
    pub seed: u64,
}

/// What one LSTM pass produces.
#[derive(Debug, Clone)]
pub struct LstmOutput {
    /// Hidden state after the last real token of each row: `[B, h]`.
    pub last: Tensor<2>,
    /// Hidden state at every step, zero on padded steps: `[B, T, h]`. Only computed when asked
    /// for, since last-state pooling does not need it.
    pub all: Option<Tensor<3>>,
}

/// Single-direction LSTM with gates ordered input, forget, cell, output along the `4h` axis.
#[derive(Module, Debug)]
pub struct MaskedLstm {
    /// Input weights of the four gates, `[d, 4h]`.
    pub w_input: Param<Tensor<2>>,
    /// Recurrent weights of the four gates, `[h, 4h]`.
    pub w_hidden: Param<Tensor<2>>,
    /// Bias of the four gates, `[4h]`.
    pub bias: Param<Tensor<1>>,
    /// Direction of reading.
    pub reverse: bool,
}

/// Uniform `[-k, k]` values from a seeded host RNG: identical on every backend.
pub(crate) fn uniform(rng: &mut StdRng, n: usize, k: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-k..=k)).collect()
}

impl MaskedLstmConfig {
    /// Initialises like PyTorch's `nn.LSTM` (uniform in `±1/√h`), with the forget-gate bias set to
    /// 1 so that early training keeps its memory.
    pub fn init(&self, device: &Device) -> MaskedLstm {
        let (d, h) = (self.d_input, self.d_hidden);
        let k = 1.0 / (h as f32).sqrt();
        let mut rng = StdRng::seed_from_u64(self.seed);
        let w_input = uniform(&mut rng, d * 4 * h, k);
        let w_hidden = uniform(&mut rng, h * 4 * h, k);
        let mut bias = uniform(&mut rng, 4 * h, k);
        for b in &mut bias[h..2 * h] {
            *b += 1.0;
        }
        MaskedLstm {
            w_input: Param::from_tensor(Tensor::from_data(TensorData::new(w_input, [d, 4 * h]), device)),
            w_hidden: Param::from_tensor(Tensor::from_data(TensorData::new(w_hidden, [h, 4 * h]), device)),
            bias: Param::from_tensor(Tensor::from_data(TensorData::new(bias, [4 * h]), device)),
            reverse: self.reverse,
        }
    }
}

impl MaskedLstm {
    /// Size of the hidden state.
    pub fn d_hidden(&self) -> usize {
        self.w_hidden.dims()[0]
    }

    /// Runs the recurrence over `input` `[B, T, d]` under `mask` `[B, T]` (1 = token, 0 = pad).
    /// Rows must be right-padded. With `keep_all`, also returns every step's hidden state.
    pub fn forward(&self, input: Tensor<3>, mask: Tensor<2>, keep_all: bool) -> LstmOutput {
        let [b, t, d] = input.dims();
        let h = self.d_hidden();
        let device = input.device();
        // All input projections at once, time-major so each step is a contiguous slice.
        let projected = input
            .swap_dims(0, 1)
            .reshape([t * b, d])
            .matmul(self.w_input.val())
            .add(self.bias.val().unsqueeze_dim::<2>(0))
            .reshape([t, b, 4 * h]);
        let mask_tm: Tensor<3> = mask.swap_dims(0, 1).unsqueeze_dim(2); // [T, B, 1]
        let w_hidden = self.w_hidden.val();
        let mut hidden = Tensor::<2>::zeros([b, h], &device);
        let mut cell = Tensor::<2>::zeros([b, h], &device);
        let mut outputs: Vec<Tensor<2>> = Vec::with_capacity(if keep_all { t } else { 0 });
        let steps: Box<dyn Iterator<Item = usize>> = if self.reverse { Box::new((0..t).rev()) } else { Box::new(0..t) };
        for step in steps {
            let x_t: Tensor<2> = projected.clone().slice([step..step + 1, 0..b, 0..4 * h]).reshape([b, 4 * h]);
            let gates = x_t + hidden.clone().matmul(w_hidden.clone());
            let mut parts = gates.chunk(4, 1).into_iter();
            let (i, f, g, o) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(i), Some(f), Some(g), Some(o)) => (i, f, g, o),
                _ => unreachable!("chunk(4) of a 4h axis gives four parts"),
            };
            let new_cell = sigmoid(f) * cell.clone() + sigmoid(i) * tanh(g);
            let new_hidden = sigmoid(o) * tanh(new_cell.clone());
            // m = 1 takes the new state exactly, m = 0 keeps the old state exactly.
            let m: Tensor<2> = mask_tm.clone().slice([step..step + 1, 0..b, 0..1]).reshape([b, 1]);
            let keep = m.clone().neg().add_scalar(1.0);
            cell = new_cell * m.clone() + cell * keep.clone();
            hidden = new_hidden.clone() * m.clone() + hidden * keep;
            if keep_all {
                outputs.push(new_hidden * m);
            }
        }
        let all = keep_all.then(|| {
            if self.reverse {
                outputs.reverse();
            }
            Tensor::stack::<3>(outputs, 1)
        });
        LstmOutput { last: hidden, all }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device::flex()
    }

    /// A plain, unfused, unmasked LSTM over one unpadded sentence, written gate by gate on host
    /// vectors: the reference the fused version must match.
    fn reference(lstm: &MaskedLstm, xs: &[Vec<f32>]) -> Vec<f32> {
        let wi = lstm.w_input.val().into_data().try_into_vec::<f32>().unwrap();
        let wh = lstm.w_hidden.val().into_data().try_into_vec::<f32>().unwrap();
        let bias = lstm.bias.val().into_data().try_into_vec::<f32>().unwrap();
        let h = lstm.d_hidden();
        let d = xs[0].len();
        let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
        let (mut hs, mut cs) = (vec![0f32; h], vec![0f32; h]);
        let order: Vec<usize> = if lstm.reverse { (0..xs.len()).rev().collect() } else { (0..xs.len()).collect() };
        for s in order {
            let mut g = bias.clone();
            for (j, gj) in g.iter_mut().enumerate() {
                for k in 0..d {
                    *gj += xs[s][k] * wi[k * 4 * h + j];
                }
                for k in 0..h {
                    *gj += hs[k] * wh[k * 4 * h + j];
                }
            }
            for u in 0..h {
                let (i, f, c, o) = (sig(g[u]), sig(g[h + u]), g[2 * h + u].tanh(), sig(g[3 * h + u]));
                cs[u] = f * cs[u] + i * c;
                hs[u] = o * cs[u].tanh();
            }
        }
        hs
    }

    fn run(lstm: &MaskedLstm, rows: &[Vec<Vec<f32>>], pad_to: usize) -> Vec<Vec<f32>> {
        let dev = device();
        let d = rows[0][0].len();
        let mut x = vec![0f32; rows.len() * pad_to * d];
        let mut m = vec![0f32; rows.len() * pad_to];
        for (r, row) in rows.iter().enumerate() {
            for (s, v) in row.iter().enumerate() {
                x[(r * pad_to + s) * d..(r * pad_to + s + 1) * d].copy_from_slice(v);
                m[r * pad_to + s] = 1.0;
            }
        }
        let x = Tensor::<3>::from_data(TensorData::new(x, [rows.len(), pad_to, d]), &dev);
        let m = Tensor::<2>::from_data(TensorData::new(m, [rows.len(), pad_to]), &dev);
        let out = lstm.forward(x, m, false).last.into_data().try_into_vec::<f32>().unwrap();
        out.chunks(lstm.d_hidden()).map(|c| c.to_vec()).collect()
    }

    fn sentence(len: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..len).map(|_| uniform(&mut rng, d, 1.0)).collect()
    }

    #[test]
    fn fused_masked_matches_reference_in_both_directions() {
        for reverse in [false, true] {
            let lstm = MaskedLstmConfig::new(5, 7).with_reverse(reverse).with_seed(3).init(&device());
            let rows = vec![sentence(4, 5, 1), sentence(2, 5, 2), sentence(6, 5, 3)];
            let got = run(&lstm, &rows, 6);
            for (row, g) in rows.iter().zip(&got) {
                let want = reference(&lstm, row);
                for (a, b) in g.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-5, "reverse={reverse}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn padding_does_not_change_the_final_state() {
        for reverse in [false, true] {
            let lstm = MaskedLstmConfig::new(4, 6).with_reverse(reverse).init(&device());
            let s = sentence(3, 4, 9);
            let alone = run(&lstm, &[s.clone()], 3);
            let padded = run(&lstm, &[s.clone()], 23);
            for (a, b) in alone[0].iter().zip(&padded[0]) {
                assert!((a - b).abs() < 1e-6, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn all_states_are_zero_on_padding() {
        let lstm = MaskedLstmConfig::new(2, 3).init(&device());
        let dev = device();
        let x = Tensor::<3>::ones([1, 4, 2], &dev);
        let m = Tensor::<2>::from_data(TensorData::new(vec![1f32, 1.0, 0.0, 0.0], [1, 4]), &dev);
        let out = lstm.forward(x, m, true);
        let all = out.all.unwrap().into_data().try_into_vec::<f32>().unwrap();
        assert!(all[6..].iter().all(|&v| v == 0.0));
        assert!(all[..6].iter().any(|&v| v != 0.0));
        let last = out.last.into_data().try_into_vec::<f32>().unwrap();
        assert_eq!(&all[3..6], &last[..]);
    }
}
