//! The operation on burn's CubeCL backend (what wgpu runs on): the input projection as one
//! matrix product, then the persistent kernels of [`super::kernel`] for the recurrence.
//!
//! wgpu runs `Fusion<CubeBackend>`: operations are queued on a fusion stream and run later. The
//! launches are therefore written for `CubeBackend` ([`FusedLstmOps`] and [`LstmKernelOps`] below)
//! and `#[backend_extension(.., Fusion)]` generates their lazy `Fusion` versions, which only
//! need the output shapes up front. The training half ([`LstmTraining`] for `Cube`) is written
//! with `Cube`'s own tensor operations, so that its matrix products and the custom kernels are
//! queued on the same stream in order.
//!
//! The backward pass: the kernel turns the output's gradient into every step's pre-activation
//! gate gradients `G` `[B·T, 4h]`; then `∂input = G·W_inputᵀ`, `∂W_input = Xᵀ·G`,
//! `∂W_hidden = H_prevᵀ·G` (the hidden state each step started from, saved by the forward
//! pass) and `∂bias = Σ G`, four products and a sum on the backend's own kernels.

use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::fusion::custom::TensorSpec;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, Cube, TensorMetadata};
use burn::prelude::*;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeBackend;
use cubecl::prelude::{CubeCount, CubeDim};

use super::kernel::{lstm_backward_kernel, lstm_forward_kernel};
use super::{FusedLstmOps, LstmGrads, LstmTraining};

/// The kernels' training pieces, on the projected input (`x_t · W_input`, `[B, T, 4h]`).
#[backend_extension(Cube: cfg(feature = "wgpu"), Fusion: cfg(feature = "wgpu"))]
pub(crate) trait LstmKernelOps: Backend {
    /// The forward pass keeping its state: every step's hidden state `[B, T, h]`, and for the
    /// backward pass the hidden and cell state each step started from (`[B, T, h]` each) and the
    /// activated gates (`[B, T, 4h]`).
    #[fusion(meta = saving_specs)]
    fn lstm_forward_saving(
        projected: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        w_hidden: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        reverse: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// The pre-activation gate gradients `[B, T, 4h]` of every step, from the output's gradient
    /// `[B, T, h]` and the state [`LstmKernelOps::lstm_forward_saving`] kept.
    #[fusion(dtype = gates, shape = gates)]
    fn lstm_gate_gradients(
        grad_output: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        w_hidden: FloatTensor<Self>,
        c_prev: FloatTensor<Self>,
        gates: FloatTensor<Self>,
        reverse: bool,
    ) -> FloatTensor<Self>;
}

/// The shapes of [`LstmKernelOps::lstm_forward_saving`]'s outputs, for the fusion stream.
fn saving_specs(
    projected: &TensorSpec,
    _mask: &TensorSpec,
    _w_hidden: &TensorSpec,
    _bias: &TensorSpec,
    _reverse: &bool,
) -> (TensorSpec, TensorSpec, TensorSpec, TensorSpec) {
    let (b, t, h) = (projected.shape[0], projected.shape[1], projected.shape[2] / 4);
    let state = TensorSpec::new(Shape::new([b, t, h]), projected.dtype);
    (state.clone(), state.clone(), state, projected.clone())
}

/// `input` `[B, T, d]` times `w_input` `[d, 4h]`: the input part of every step's gates at once.
fn project<B: Backend>(input: FloatTensor<B>, w_input: FloatTensor<B>) -> FloatTensor<B> {
    let [b, t, d] = input.shape().dims::<3>();
    let four_h = w_input.shape().dims::<2>()[1];
    let flat = B::float_reshape(input, Shape::new([b * t, d]));
    B::float_reshape(B::float_matmul(flat, w_input), Shape::new([b, t, four_h]))
}

/// One cube per batch row, with one unit per hidden unit up to the device's limit (units then
/// take several hidden units each).
fn cube_shape(tensor: &CubeTensor, rows: usize, h: usize) -> (CubeCount, CubeDim) {
    let max = tensor.client.properties().hardware.max_cube_dim.0;
    let units = (h as u32).clamp(1, max.clamp(1, 256));
    (CubeCount::Static(rows as u32, 1, 1), CubeDim::new_1d(units))
}

/// The tensors a launch reads, contiguous, with the mask in the projection's float type.
fn prepared(tensors: [CubeTensor; 4]) -> [CubeTensor; 4] {
    let [a, mask, c, d] = tensors.map(into_contiguous);
    assert_eq!(mask.dtype, a.dtype, "the LSTM kernels take the mask in the input's float type");
    [a, mask, c, d]
}

/// Launches the forward kernel; with `save`, also returns `(h_prev, c_prev, gates)`.
fn forward(
    projected: CubeTensor,
    mask: CubeTensor,
    w_hidden: CubeTensor,
    bias: CubeTensor,
    reverse: bool,
    save: bool,
) -> (CubeTensor, Option<(CubeTensor, CubeTensor, CubeTensor)>) {
    let [projected, mask, w_hidden, bias] = prepared([projected, mask, w_hidden, bias]);
    let [b, t, four_h] = projected.shape().dims::<3>();
    let h = four_h / 4;
    let (client, device, dtype) = (projected.client.clone(), projected.device.clone(), projected.dtype);
    let empty = |shape: [usize; 3]| empty_device_contiguous_dtype(client.clone(), device.clone(), Shape::new(shape), dtype);
    let output = empty([b, t, h]);
    // Without `save` the kernel never touches the three state tensors: one-element placeholders.
    let state = if save { [[b, t, h], [b, t, h], [b, t, four_h]] } else { [[1, 1, 1]; 3] };
    let [h_prev, c_prev, gates] = state.map(empty);
    if b > 0 && t > 0 && h > 0 {
        let (count, dim) = cube_shape(&projected, b, h);
        lstm_forward_kernel::launch(
            &client,
            count,
            dim,
            projected.into_tensor_arg(),
            mask.into_tensor_arg(),
            w_hidden.into_tensor_arg(),
            bias.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            h_prev.clone().into_tensor_arg(),
            c_prev.clone().into_tensor_arg(),
            gates.clone().into_tensor_arg(),
            u32::from(reverse),
            h,
            save,
            dtype_to_storage_type(dtype),
        );
    }
    (output, save.then_some((h_prev, c_prev, gates)))
}

impl FusedLstmOps for CubeBackend {
    fn fused_masked_lstm(
        input: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        w_input: FloatTensor<Self>,
        w_hidden: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        reverse: bool,
    ) -> FloatTensor<Self> {
        forward(project::<Self>(input, w_input), mask, w_hidden, bias, reverse, false).0
    }
}

impl LstmKernelOps for CubeBackend {
    fn lstm_forward_saving(
        projected: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        w_hidden: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        reverse: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (output, state) = forward(projected, mask, w_hidden, bias, reverse, true);
        let (h_prev, c_prev, gates) = state.expect("saved when asked");
        (output, h_prev, c_prev, gates)
    }

    fn lstm_gate_gradients(
        grad_output: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        w_hidden: FloatTensor<Self>,
        c_prev: FloatTensor<Self>,
        gates: FloatTensor<Self>,
        reverse: bool,
    ) -> FloatTensor<Self> {
        // The kernel reads W_hᵀ, so that its units read consecutive addresses.
        let w_hidden_t = Self::float_transpose(w_hidden);
        let [grad_output, mask, w_hidden_t, c_prev] = prepared([grad_output, mask, w_hidden_t, c_prev]);
        let gates = into_contiguous(gates);
        let [b, t, four_h] = gates.shape().dims::<3>();
        let h = four_h / 4;
        let (client, dtype) = (gates.client.clone(), gates.dtype);
        let grad_gates = empty_device_contiguous_dtype(client.clone(), gates.device.clone(), Shape::new([b, t, four_h]), dtype);
        if b > 0 && t > 0 && h > 0 {
            let (count, dim) = cube_shape(&gates, b, h);
            lstm_backward_kernel::launch(
                &client,
                count,
                dim,
                grad_output.into_tensor_arg(),
                mask.into_tensor_arg(),
                w_hidden_t.into_tensor_arg(),
                c_prev.into_tensor_arg(),
                gates.into_tensor_arg(),
                grad_gates.clone().into_tensor_arg(),
                u32::from(reverse),
                h,
                dtype_to_storage_type(dtype),
            );
        }
        grad_gates
    }
}

/// What the backward pass on `Cube` reads: the pass's inputs and the kernel's saved state, all
/// device tensors on the fusion stream.
#[derive(Clone, Debug)]
pub(crate) struct CubeSaved {
    input: FloatTensor<Cube>,
    mask: FloatTensor<Cube>,
    w_input: FloatTensor<Cube>,
    w_hidden: FloatTensor<Cube>,
    h_prev: FloatTensor<Cube>,
    c_prev: FloatTensor<Cube>,
    gates: FloatTensor<Cube>,
    reverse: bool,
}

impl LstmTraining for Cube {
    type Saved = CubeSaved;

    fn forward_saving(
        input: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        w_input: FloatTensor<Self>,
        w_hidden: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        reverse: bool,
    ) -> (FloatTensor<Self>, Self::Saved) {
        let projected = project::<Self>(input.clone(), w_input.clone());
        let (output, h_prev, c_prev, gates) = Self::lstm_forward_saving(projected, mask.clone(), w_hidden.clone(), bias, reverse);
        (output, CubeSaved { input, mask, w_input, w_hidden, h_prev, c_prev, gates, reverse })
    }

    fn backward(saved: Self::Saved, grad_output: FloatTensor<Self>) -> LstmGrads<Self> {
        let [b, t, d] = saved.input.shape().dims::<3>();
        let [h, four_h] = saved.w_hidden.shape().dims::<2>();
        let grad_gates = Self::lstm_gate_gradients(grad_output, saved.mask, saved.w_hidden, saved.c_prev, saved.gates, saved.reverse);
        let grad_gates = Self::float_reshape(grad_gates, Shape::new([b * t, four_h]));
        let input = Self::float_reshape(saved.input, Shape::new([b * t, d]));
        let h_prev = Self::float_reshape(saved.h_prev, Shape::new([b * t, h]));
        let grad_input = Self::float_matmul(grad_gates.clone(), Self::float_transpose(saved.w_input));
        LstmGrads {
            input: Self::float_reshape(grad_input, Shape::new([b, t, d])),
            w_input: Self::float_matmul(Self::float_transpose(input), grad_gates.clone()),
            w_hidden: Self::float_matmul(Self::float_transpose(h_prev), grad_gates.clone()),
            bias: Self::float_reshape(Self::float_sum_dim(grad_gates, 0), Shape::new([four_h])),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The kernels against the host operation of ndarray/flex (itself tested against the composed
    //! recurrence and burn's stock LSTM in `model::lstm`), on whatever wgpu adapter the machine
    //! has: lavapipe in CI, where `.ci/run` installs it and these tests must run.

    use crate::model::lstm::{uniform, MaskedLstmConfig};
    use crate::Backend as Choice;
    use burn::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// The wgpu device, or `None` (with a note) where wgpu need not be tested.
    fn wgpu() -> Option<Device> {
        if !Choice::Wgpu.required_in_tests() {
            eprintln!("no wgpu adapter on this machine (and not under CI): the CubeCL kernels left untested");
            return None;
        }
        Some(Choice::Wgpu.try_device().expect("wgpu is required here"))
    }

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
    }

    fn assert_close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (k, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-4, "{what}[{k}]: {x} (wgpu) vs {y} (flex)");
        }
    }

    /// Everything one pass produces, read back: every step's output, the final state, and the
    /// gradients of a loss that weights every output element differently.
    struct Pass {
        all: Vec<f32>,
        last: Vec<f32>,
        grads: Option<[Vec<f32>; 4]>,
    }

    /// A pass over a padded batch of rows `lengths` long, padded to `t`, on `device` (which is
    /// autodiff for `train`); the same numbers on every device.
    fn pass(device: &Device, lengths: &[usize], t: usize, d: usize, h: usize, reverse: bool, train: bool) -> Pass {
        let b = lengths.len();
        let lstm = MaskedLstmConfig::new(d, h).with_reverse(reverse).with_seed(11).init(device);
        let mut rng = StdRng::seed_from_u64(4);
        let x = Tensor::<3>::from_data(TensorData::new(uniform(&mut rng, b * t * d, 1.0), [b, t, d]), device);
        let mut m = vec![0f32; b * t];
        for (r, &len) in lengths.iter().enumerate() {
            m[r * t..r * t + len].fill(1.0);
        }
        let m = Tensor::<2>::from_data(TensorData::new(m, [b, t]), device);
        let x = if train { x.require_grad() } else { x };
        let out = lstm.forward(x.clone(), m, true);
        let all = out.all.expect("asked for every step");
        if !train {
            return Pass { all: host(all), last: host(out.last), grads: None };
        }
        let probe = Tensor::<1, Int>::arange(0..(b * t * h) as i64, device).float().reshape([b, t, h]).cos();
        let loss = (all.clone() * probe).sum() + out.last.clone().powi_scalar(2).sum();
        let grads = loss.backward();
        let grads = [
            host(x.grad(&grads).expect("input gradient")),
            host(lstm.w_input.val().grad(&grads).expect("w_input gradient")),
            host(lstm.w_hidden.val().grad(&grads).expect("w_hidden gradient")),
            host(lstm.bias.val().grad(&grads).expect("bias gradient")),
        ];
        Pass { all: host(all), last: host(out.last), grads: Some(grads) }
    }

    /// Mixed lengths (an empty row, a full one), both directions, with and without autodiff;
    /// `h = 300` is wider than a cube, so units take several hidden units each.
    #[test]
    fn kernels_match_the_host_operation_forward_and_backward() {
        let Some(gpu) = wgpu() else { return };
        let cpu = Device::flex();
        let shapes: [(&[usize], usize, usize, usize); 3] =
            [(&[6, 2, 0, 5, 1], 6, 5, 7), (&[8, 3, 8, 1], 8, 4, 32), (&[3, 1, 2], 4, 3, 300)];
        for (lengths, t, d, h) in shapes {
            for reverse in [false, true] {
                for train in [false, true] {
                    let (gd, cd) = if train { (gpu.clone().autodiff(), cpu.clone().autodiff()) } else { (gpu.clone(), cpu.clone()) };
                    assert!(crate::op::supported(&gd) && !crate::op::on_host(&gd));
                    let (g, c) = (pass(&gd, lengths, t, d, h, reverse, train), pass(&cd, lengths, t, d, h, reverse, train));
                    let what = format!("lengths {lengths:?} h={h} reverse={reverse} train={train}");
                    assert_close(&g.all, &c.all, &format!("{what}: all"));
                    assert_close(&g.last, &c.last, &format!("{what}: last"));
                    if let (Some(g), Some(c)) = (g.grads, c.grads) {
                        for (k, name) in ["d input", "d w_input", "d w_hidden", "d bias"].iter().enumerate() {
                            assert_close(&g[k], &c[k], &format!("{what}: {name}"));
                        }
                    }
                }
            }
        }
    }

    /// Padding is zero in every output, and a padded row ends where the unpadded one does.
    #[test]
    fn padding_changes_nothing_on_the_kernels() {
        let Some(gpu) = wgpu() else { return };
        for reverse in [false, true] {
            let lstm = MaskedLstmConfig::new(3, 5).with_reverse(reverse).with_seed(2).init(&gpu);
            let mut rng = StdRng::seed_from_u64(9);
            let words = uniform(&mut rng, 3 * 3, 1.0);
            let run = |t: usize| {
                let mut x = vec![0f32; t * 3];
                x[..9].copy_from_slice(&words);
                let mut m = vec![0f32; t];
                m[..3].fill(1.0);
                let x = Tensor::<3>::from_data(TensorData::new(x, [1, t, 3]), &gpu);
                let m = Tensor::<2>::from_data(TensorData::new(m, [1, t]), &gpu);
                let out = lstm.forward(x, m, true);
                (host(out.all.unwrap()), host(out.last))
            };
            let (alone, last_alone) = run(3);
            let (padded, last_padded) = run(7);
            assert_close(&padded[..15], &alone, "the real steps");
            assert!(padded[15..].iter().all(|&v| v == 0.0), "reverse={reverse}: padding not zero");
            assert_close(&last_padded, &last_alone, "the final state");
        }
    }
}
