//! The masked LSTM recurrence as CubeCL kernels (compiled for wgpu: Vulkan, Metal, DX12, and
//! lavapipe on a CPU).
//!
//! Persistent kernels: one cube (workgroup) per batch row runs every time step of that row,
//! with the row's hidden and cell state in shared memory, so a whole pass is ONE launch instead
//! of a chain of small kernels per step. Within a cube, unit `j` (and `j + CUBE_DIM_X`, ...)
//! owns hidden unit `j`: it computes that unit's four gates as the input projection (one matmul
//! for all steps, done before the launch) plus the dot product of the previous hidden state with
//! its four columns of `W_h`; the cube synchronises twice per step, before and after publishing
//! the new hidden state. No subgroup operations and no atomics, so the kernels run the same on
//! lavapipe (which disables subgroups) and on GPUs.
//!
//! Semantics are those of the host recurrence (`cpu::recurrence`): rows are right-padded, a row's
//! length is its count of mask values above 0.5, a reversed row is read from its last token to
//! its first, and every padded position's output (and saved state, and gate gradient) is zero.
//! Gates are ordered input, forget, cell, output along the `4h` axis. f32 only.

use cubecl::prelude::*;

#[cube]
fn sigmoid<F: Float>(x: F) -> F {
    F::new(1.0) / (F::new(1.0) + F::exp(F::new(0.0) - x))
}

/// The number of real tokens of row `row` of a `[B, T]` mask.
#[cube]
fn row_length<F: Float>(mask: &Tensor<F>, row: usize) -> usize {
    let steps = mask.shape(1);
    let mut len = 0usize;
    for t in 0..steps {
        if mask[row * mask.stride(0) + t * mask.stride(1)] > F::new(0.5) {
            len += 1;
        }
    }
    len
}

/// The forward pass of one row per cube.
///
/// `projected` `[B, T, 4h]` is `x_t · W_input` (without the bias), `w_hidden` `[h, 4h]`, `bias`
/// `[4h]`; `output` `[B, T, h]` receives every step's hidden state. With `save`, the pass also
/// writes what the backward pass reads: the hidden and cell state each step started from
/// (`h_prev`, `c_prev`, `[B, T, h]`) and the activated gates (`gates`, `[B, T, 4h]`); without it
/// those three are never touched (the launch passes placeholders). All tensors are contiguous
/// (the launch makes them so), and the three `[B, T, h]` outputs share one layout.
#[cube(launch)]
pub(crate) fn lstm_forward_kernel<F: Float>(
    projected: &Tensor<F>,
    mask: &Tensor<F>,
    w_hidden: &Tensor<F>,
    bias: &Tensor<F>,
    output: &mut Tensor<F>,
    h_prev: &mut Tensor<F>,
    c_prev: &mut Tensor<F>,
    gates: &mut Tensor<F>,
    reverse: u32,
    #[comptime] hidden: usize,
    #[comptime] save: bool,
    #[define(F)] _dtype: ElemType,
) {
    let row = CUBE_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    let h = hidden;
    let four_h = 4 * hidden;
    let steps = mask.shape(1);
    let len = row_length::<F>(mask, row);

    // [0, h): the state each step reads; [h, 2h): the step's new state, published after a sync.
    let mut h_sh = Shared::new_slice(2 * hidden);
    let mut c_sh = Shared::new_slice(hidden);
    let mut j = UNIT_POS_X as usize;
    while j < h {
        h_sh[j] = F::new(0.0);
        c_sh[j] = F::new(0.0);
        j += units;
    }
    sync_cube();

    for s in 0..len {
        let t = if reverse == 1 { len - 1 - s } else { s };
        // Offsets of this row and step in the [B, T, 4h] and [B, T, h] tensors.
        let g4 = (row * steps + t) * four_h;
        let g1 = (row * steps + t) * h;
        let mut j = UNIT_POS_X as usize;
        while j < h {
            let mut gi = projected[g4 + j] + bias[j];
            let mut gf = projected[g4 + h + j] + bias[h + j];
            let mut gg = projected[g4 + 2 * h + j] + bias[2 * h + j];
            let mut go = projected[g4 + 3 * h + j] + bias[3 * h + j];
            // Four rows of W_h per iteration: independent loads in flight (the loop is bound by
            // memory latency on a GPU, and by gathers on lavapipe).
            for k4 in 0..h / 4 {
                let k = 4 * k4;
                let (h0, h1, h2, h3) = (h_sh[k], h_sh[k + 1], h_sh[k + 2], h_sh[k + 3]);
                let w0 = k * four_h + j;
                let w1 = w0 + four_h;
                let w2 = w1 + four_h;
                let w3 = w2 + four_h;
                gi += h0 * w_hidden[w0] + h1 * w_hidden[w1] + h2 * w_hidden[w2] + h3 * w_hidden[w3];
                gf += h0 * w_hidden[w0 + h] + h1 * w_hidden[w1 + h] + h2 * w_hidden[w2 + h] + h3 * w_hidden[w3 + h];
                gg += h0 * w_hidden[w0 + 2 * h] + h1 * w_hidden[w1 + 2 * h] + h2 * w_hidden[w2 + 2 * h] + h3 * w_hidden[w3 + 2 * h];
                go += h0 * w_hidden[w0 + 3 * h] + h1 * w_hidden[w1 + 3 * h] + h2 * w_hidden[w2 + 3 * h] + h3 * w_hidden[w3 + 3 * h];
            }
            for k in 4 * (h / 4)..h {
                let hk = h_sh[k];
                let w = k * four_h + j;
                gi += hk * w_hidden[w];
                gf += hk * w_hidden[w + h];
                gg += hk * w_hidden[w + 2 * h];
                go += hk * w_hidden[w + 3 * h];
            }
            let i = sigmoid::<F>(gi);
            let f = sigmoid::<F>(gf);
            let g = F::tanh(gg);
            let og = sigmoid::<F>(go);
            let c_old = c_sh[j];
            let c = f * c_old + i * g;
            let hn = og * F::tanh(c);
            if save {
                h_prev[g1 + j] = h_sh[j];
                c_prev[g1 + j] = c_old;
                gates[g4 + j] = i;
                gates[g4 + h + j] = f;
                gates[g4 + 2 * h + j] = g;
                gates[g4 + 3 * h + j] = og;
            }
            c_sh[j] = c;
            h_sh[h + j] = hn;
            output[g1 + j] = hn;
            j += units;
        }
        sync_cube();
        let mut j = UNIT_POS_X as usize;
        while j < h {
            h_sh[j] = h_sh[h + j];
            j += units;
        }
        sync_cube();
    }

    // Padding: zero outputs (and zero saved state, so that the weight gradients read zeros).
    for t in len..steps {
        let g4 = (row * steps + t) * four_h;
        let g1 = (row * steps + t) * h;
        let mut j = UNIT_POS_X as usize;
        while j < h {
            output[g1 + j] = F::new(0.0);
            if save {
                h_prev[g1 + j] = F::new(0.0);
                c_prev[g1 + j] = F::new(0.0);
            }
            j += units;
        }
        if save {
            let mut j = UNIT_POS_X as usize;
            while j < four_h {
                gates[g4 + j] = F::new(0.0);
                j += units;
            }
        }
    }
}

/// Back-propagation through time of one row per cube: from the output's gradient
/// `grad_output` `[B, T, h]` and what the forward pass saved, the gradient of every step's
/// pre-activation gates, `grad_gates` `[B, T, 4h]` (zero on padding). The weight and input
/// gradients are matrix products of it, done after the launch. Contiguous tensors, as above;
/// `w_hidden_t` is `W_hᵀ` (`[4h, h]`), so that the units read consecutive addresses.
#[cube(launch)]
pub(crate) fn lstm_backward_kernel<F: Float>(
    grad_output: &Tensor<F>,
    mask: &Tensor<F>,
    w_hidden_t: &Tensor<F>,
    c_prev: &Tensor<F>,
    gates: &Tensor<F>,
    grad_gates: &mut Tensor<F>,
    reverse: u32,
    #[comptime] hidden: usize,
    #[define(F)] _dtype: ElemType,
) {
    let row = CUBE_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    let h = hidden;
    let four_h = 4 * hidden;
    let steps = mask.shape(1);
    let len = row_length::<F>(mask, row);

    // The gradient reaching the hidden and cell state from the steps after this one, and this
    // step's gate gradients, which every unit reads for the hidden state's gradient.
    let mut dh_sh = Shared::new_slice(hidden);
    let mut dc_sh = Shared::new_slice(hidden);
    let mut dg_sh = Shared::new_slice(4 * hidden);
    let mut j = UNIT_POS_X as usize;
    while j < h {
        dh_sh[j] = F::new(0.0);
        dc_sh[j] = F::new(0.0);
        j += units;
    }
    sync_cube();

    for s in 0..len {
        // Steps in the reverse of the order the forward pass took them.
        let t = if reverse == 1 { s } else { len - 1 - s };
        let g4 = (row * steps + t) * four_h;
        let g1 = (row * steps + t) * h;
        let mut j = UNIT_POS_X as usize;
        while j < h {
            let i = gates[g4 + j];
            let f = gates[g4 + h + j];
            let g = gates[g4 + 2 * h + j];
            let og = gates[g4 + 3 * h + j];
            let cp = c_prev[g1 + j];
            let tc = F::tanh(f * cp + i * g);
            let dh = grad_output[g1 + j] + dh_sh[j];
            let dc = dc_sh[j] + dh * og * (F::new(1.0) - tc * tc);
            let dgi = dc * g * i * (F::new(1.0) - i);
            let dgf = dc * cp * f * (F::new(1.0) - f);
            let dgg = dc * i * (F::new(1.0) - g * g);
            let dgo = dh * tc * og * (F::new(1.0) - og);
            dc_sh[j] = dc * f;
            dg_sh[j] = dgi;
            dg_sh[h + j] = dgf;
            dg_sh[2 * h + j] = dgg;
            dg_sh[3 * h + j] = dgo;
            grad_gates[g4 + j] = dgi;
            grad_gates[g4 + h + j] = dgf;
            grad_gates[g4 + 2 * h + j] = dgg;
            grad_gates[g4 + 3 * h + j] = dgo;
            j += units;
        }
        sync_cube();
        // The previous step's hidden state fed these gates through W_h: its gradient is the gate
        // gradients times W_hᵀ.
        let mut j = UNIT_POS_X as usize;
        while j < h {
            // Four independent sums, as in the forward kernel (4h is a multiple of four).
            let mut a0 = F::new(0.0);
            let mut a1 = F::new(0.0);
            let mut a2 = F::new(0.0);
            let mut a3 = F::new(0.0);
            for k4 in 0..h {
                let k = 4 * k4;
                let w = k * h + j;
                a0 += dg_sh[k] * w_hidden_t[w];
                a1 += dg_sh[k + 1] * w_hidden_t[w + h];
                a2 += dg_sh[k + 2] * w_hidden_t[w + 2 * h];
                a3 += dg_sh[k + 3] * w_hidden_t[w + 3 * h];
            }
            let acc = (a0 + a1) + (a2 + a3);
            dh_sh[j] = acc;
            j += units;
        }
        sync_cube();
    }

    for t in len..steps {
        let g4 = (row * steps + t) * four_h;
        let mut j = UNIT_POS_X as usize;
        while j < four_h {
            grad_gates[g4 + j] = F::new(0.0);
            j += units;
        }
    }
}
