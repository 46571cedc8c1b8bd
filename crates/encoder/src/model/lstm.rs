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
use std::sync::atomic::{AtomicBool, Ordering};

static FUSED: AtomicBool = AtomicBool::new(true);

/// Whether [`MaskedLstm::forward`] runs the fused operation where the device has one (the
/// default) or the composed recurrence everywhere, for this process. Both compute the same
/// numbers; the switch exists so that a benchmark can compare the two on one machine
/// (`bench --lstm composed`). Inference on the CPU backends runs on the host either way.
pub fn set_fused(enabled: bool) {
    FUSED.store(enabled, Ordering::Relaxed);
}

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
    ///
    /// On the CPU backends and on wgpu this is one fused operation with a hand-written backward
    /// pass (`op`: host kernels, or CubeCL kernels); elsewhere it is
    /// [`MaskedLstm::forward_composed`]. All compute the same numbers.
    pub fn forward(&self, input: Tensor<3>, mask: Tensor<2>, keep_all: bool) -> LstmOutput {
        if !FUSED.load(Ordering::Relaxed) || !crate::op::supported(&input.device()) {
            return self.forward_composed(input, mask, keep_all);
        }
        let [b, _, _] = input.dims();
        let h = self.d_hidden();
        let all = crate::op::masked_lstm(input, mask.clone(), self.w_input.val(), self.w_hidden.val(), self.bias.val(), self.reverse);
        // The final state is the output at the last real token (the first one when reading
        // backwards); an empty row's output is zero everywhere.
        let last = if self.reverse {
            all.clone().slice([0..b, 0..1, 0..h]).reshape([b, h])
        } else {
            let index = mask.sum_dim(1).sub_scalar(1.0).clamp_min(0.0).int().unsqueeze_dim::<3>(2).repeat_dim(2, h);
            all.clone().gather(1, index).reshape([b, h])
        };
        LstmOutput { last, all: keep_all.then_some(all) }
    }

    /// The recurrence as a chain of tensor ops, mask-gated step by step: runs on every backend
    /// and is the reference the fused operation is tested against.
    pub fn forward_composed(&self, input: Tensor<3>, mask: Tensor<2>, keep_all: bool) -> LstmOutput {
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
            let alone = run(&lstm, std::slice::from_ref(&s), 3);
            let padded = run(&lstm, std::slice::from_ref(&s), 23);
            for (a, b) in alone[0].iter().zip(&padded[0]) {
                assert!((a - b).abs() < 1e-6, "{a} vs {b}");
            }
        }
    }

    /// A padded batch of random vectors, as tensors, with its mask.
    fn batch(lengths: &[usize], t: usize, d: usize, seed: u64, device: &Device) -> (Tensor<3>, Tensor<2>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let x = uniform(&mut rng, lengths.len() * t * d, 1.0);
        let mut m = vec![0f32; lengths.len() * t];
        for (r, &len) in lengths.iter().enumerate() {
            m[r * t..r * t + len].fill(1.0);
        }
        (
            Tensor::from_data(TensorData::new(x, [lengths.len(), t, d]), device),
            Tensor::from_data(TensorData::new(m, [lengths.len(), t]), device),
        )
    }

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (k, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() < tol, "{what}[{k}]: {x} vs {y}");
        }
    }

    #[test]
    fn fused_operation_matches_the_composed_recurrence_forward_and_backward() {
        use crate::Backend;
        let lengths = [6usize, 2, 0, 5, 1];
        for backend in [Backend::Ndarray, Backend::Flex] {
            let device = backend.device().autodiff();
            assert!(crate::op::supported(&device));
            for reverse in [false, true] {
                let lstm = MaskedLstmConfig::new(5, 7).with_reverse(reverse).with_seed(11).init(&device);
                let (x, m) = batch(&lengths, 6, 5, 4, &device);
                let run = |fused: bool| {
                    let x = x.clone().require_grad();
                    let out =
                        if fused { lstm.forward(x.clone(), m.clone(), true) } else { lstm.forward_composed(x.clone(), m.clone(), true) };
                    let all = out.all.unwrap();
                    // A loss that reads both outputs, with different weights per element.
                    let probe = Tensor::<1, Int>::arange(0..(5 * 6 * 7) as i64, &device).float().reshape([5, 6, 7]).cos();
                    let loss = (all.clone() * probe).sum() + out.last.clone().powi_scalar(2).sum();
                    let grads = loss.backward();
                    (
                        host(all),
                        host(out.last),
                        host(x.grad(&grads).unwrap()),
                        host(lstm.w_input.val().grad(&grads).unwrap()),
                        host(lstm.w_hidden.val().grad(&grads).unwrap()),
                        host(lstm.bias.val().grad(&grads).unwrap()),
                    )
                };
                let (f, c) = (run(true), run(false));
                let what = format!("{backend} reverse={reverse}");
                assert_close(&f.0, &c.0, 1e-5, &format!("{what} all"));
                assert_close(&f.1, &c.1, 1e-5, &format!("{what} last"));
                assert_close(&f.2, &c.2, 1e-5, &format!("{what} d input"));
                assert_close(&f.3, &c.3, 1e-5, &format!("{what} d w_input"));
                assert_close(&f.4, &c.4, 1e-5, &format!("{what} d w_hidden"));
                assert_close(&f.5, &c.5, 1e-5, &format!("{what} d bias"));
            }
        }
    }

    #[test]
    fn fused_operation_matches_burns_stock_lstm() {
        use burn::nn::{Linear, LstmConfig};
        let device = device();
        let (d, h, t) = (6usize, 8usize, 7usize);
        for reverse in [false, true] {
            let ours = MaskedLstmConfig::new(d, h).with_reverse(reverse).with_seed(5).init(&device);
            // burn's Lstm keeps one input and one hidden Linear per gate; give it our weights,
            // the bias on the input side only.
            let mut stock = LstmConfig::new(d, h, true).with_reverse(reverse).with_batch_first(true).init(&device);
            let w_in = ours.w_input.val();
            let w_h = ours.w_hidden.val();
            let bias = ours.bias.val();
            let gate = |k: usize| {
                let cols = k * h..(k + 1) * h;
                (
                    Linear {
                        weight: Param::from_tensor(w_in.clone().slice([0..d, cols.clone()])),
                        bias: Some(Param::from_tensor(bias.clone().slice([cols.clone()]))),
                    },
                    Linear {
                        weight: Param::from_tensor(w_h.clone().slice([0..h, cols])),
                        bias: Some(Param::from_tensor(Tensor::zeros([h], &device))),
                    },
                )
            };
            (stock.input_gate.input_transform, stock.input_gate.hidden_transform) = gate(0);
            let forget = stock.forget_gate.as_mut().expect("uncoupled forget gate");
            (forget.input_transform, forget.hidden_transform) = gate(1);
            (stock.cell_gate.input_transform, stock.cell_gate.hidden_transform) = gate(2);
            (stock.output_gate.input_transform, stock.output_gate.hidden_transform) = gate(3);

            // Unpadded rows: the stock LSTM has no mask, so every row uses all 7 steps.
            let (x, m) = batch(&[t, t, t], t, d, 8, &device);
            let (stock_all, stock_state) = stock.forward(x.clone(), None);
            let ours_out = ours.forward(x, m, true);
            assert_close(&host(ours_out.all.unwrap()), &host(stock_all), 1e-5, &format!("reverse={reverse} all"));
            assert_close(&host(ours_out.last), &host(stock_state.hidden), 1e-5, &format!("reverse={reverse} last"));
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
