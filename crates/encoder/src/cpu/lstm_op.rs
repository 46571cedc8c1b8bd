//! The host kernels of [`super::recurrence`] as one burn operation with its own backward pass.
//!
//! burn 0.22 lets a crate add operations to its runtime-dispatched backends
//! (`#[backend_extension]`). [`FusedLstmOps::fused_masked_lstm`] is such an operation for the two
//! CPU backends, ndarray and flex, and for autodiff on top of either: the autodiff version records
//! ONE graph node for the whole recurrence and back-propagates through it with
//! [`super::recurrence::backward`], instead of recording some twenty nodes per time step. Other
//! devices (wgpu) keep the composed tensor-op recurrence of [`crate::model::lstm`], which runs
//! where the tensors live.

// ndarray is deprecated upstream in favour of flex; the product keeps it on purpose, and the
// extension macro's generated code names it too.
#![allow(deprecated)]

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, DispatchDevice, Flex, NdArray, TensorMetadata};
use burn::prelude::*;

use super::recurrence::{self, Saved, Weights};

/// A masked LSTM pass as one operation: `[B, T, d]` inputs and a `[B, T]` mask (1 = token,
/// 0 = padding, rows right-padded) to every step's hidden state `[B, T, h]`, zero on padding.
#[backend_extension(NdArray, Flex, Autodiff)]
pub(crate) trait FusedLstmOps: Backend {
    /// Runs the recurrence with weights `w_input` `[d, 4h]`, `w_hidden` `[h, 4h]`, `bias` `[4h]`.
    fn fused_masked_lstm(
        input: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        w_input: FloatTensor<Self>,
        w_hidden: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        reverse: bool,
    ) -> FloatTensor<Self>;
}

/// Whether `device` runs the fused operation (ndarray or flex, with or without autodiff).
pub(crate) fn supported(device: &Device) -> bool {
    matches!(device.clone().inner().as_dispatch(), DispatchDevice::NdArray(_) | DispatchDevice::Flex(_))
}

/// Runs the fused operation on tensors of the high-level API. `device` must be [`supported`].
pub(crate) fn masked_lstm(
    input: Tensor<3>,
    mask: Tensor<2>,
    w_input: Tensor<2>,
    w_hidden: Tensor<2>,
    bias: Tensor<1>,
    reverse: bool,
) -> Tensor<3> {
    use burn::backend::Dispatch;
    Tensor::from_dispatch(<Dispatch as FusedLstmOps>::fused_masked_lstm(
        input.into_dispatch(),
        mask.into_dispatch(),
        w_input.into_dispatch(),
        w_hidden.into_dispatch(),
        bias.into_dispatch(),
        reverse,
    ))
}

fn host<B: Backend>(tensor: FloatTensor<B>) -> Vec<f32> {
    burn::tensor::read_sync(B::float_into_data(tensor))
        .expect("reading a CPU tensor cannot fail")
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32")
}

/// Per-row token counts of a `[B, T]` mask.
fn lengths(mask: &[f32], b: usize, t: usize) -> Vec<usize> {
    (0..b).map(|r| mask[r * t..(r + 1) * t].iter().filter(|&&m| m > 0.5).count()).collect()
}

/// Everything the backward pass reads: the forward's buffers and the weights it used.
#[derive(Debug)]
pub(crate) struct LstmState {
    saved: Vec<Saved>,
    w_input: Vec<f32>,
    w_hidden: Vec<f32>,
    bias: Vec<f32>,
    dims: [usize; 4], // b, t, d, h
}

impl LstmState {
    fn weights(&self) -> Weights<'_> {
        Weights { w_input: &self.w_input, w_hidden: &self.w_hidden, bias: &self.bias, d: self.dims[2], h: self.dims[3] }
    }
}

/// Forward on the host; returns the output on `input`'s device and, with `save`, the state.
fn run<B: Backend>(
    input: FloatTensor<B>,
    mask: FloatTensor<B>,
    w_input: FloatTensor<B>,
    w_hidden: FloatTensor<B>,
    bias: FloatTensor<B>,
    reverse: bool,
    save: bool,
) -> (FloatTensor<B>, Option<Arc<LstmState>>) {
    let device = input.device();
    let dims = input.shape().dims::<3>();
    let (b, t, d) = (dims[0], dims[1], dims[2]);
    let h = w_hidden.shape().dims::<2>()[0];
    let input = host::<B>(input);
    let lengths = lengths(&host::<B>(mask), b, t);
    let (w_input, w_hidden, bias) = (host::<B>(w_input), host::<B>(w_hidden), host::<B>(bias));
    let weights = Weights { w_input: &w_input, w_hidden: &w_hidden, bias: &bias, d, h };
    let (out, saved) = recurrence::forward(&input, &lengths, t, weights, reverse, save);
    let out = B::float_from_data(TensorData::new(out, [b, t, h]), &device);
    let state = saved.map(|saved| Arc::new(LstmState { saved, w_input, w_hidden, bias, dims: [b, t, d, h] }));
    (out, state)
}

/// The plain CPU backends run the forward kernel and keep nothing for a backward pass.
macro_rules! cpu_backend {
    ($($backend:ty),*) => {$(
        impl FusedLstmOps for $backend {
            fn fused_masked_lstm(
                input: FloatTensor<Self>,
                mask: FloatTensor<Self>,
                w_input: FloatTensor<Self>,
                w_hidden: FloatTensor<Self>,
                bias: FloatTensor<Self>,
                reverse: bool,
            ) -> FloatTensor<Self> {
                run::<Self>(input, mask, w_input, w_hidden, bias, reverse, false).0
            }
        }
    )*};
}

cpu_backend!(NdArray, Flex);

/// The backward step of the whole recurrence; parents are input, `w_input`, `w_hidden`, `bias`.
#[derive(Debug)]
struct LstmBackward;

impl<B: Backend> Backward<B, 4> for LstmBackward {
    type State = Arc<LstmState>;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let state = ops.state;
        let grad_output = grads.consume::<B>(&ops.node);
        let device = grad_output.device();
        let [b, t, d, h] = state.dims;
        let g = recurrence::backward(&state.saved, &host::<B>(grad_output), t, state.weights());
        let [input, w_input, w_hidden, bias] = ops.parents;
        if let Some(node) = input {
            grads.register::<B>(node.id, B::float_from_data(TensorData::new(g.input, [b, t, d]), &device));
        }
        if let Some(node) = w_input {
            grads.register::<B>(node.id, B::float_from_data(TensorData::new(g.w_input, [d, 4 * h]), &device));
        }
        if let Some(node) = w_hidden {
            grads.register::<B>(node.id, B::float_from_data(TensorData::new(g.w_hidden, [h, 4 * h]), &device));
        }
        if let Some(node) = bias {
            grads.register::<B>(node.id, B::float_from_data(TensorData::new(g.bias, [4 * h]), &device));
        }
    }
}

impl<B: Backend, C: CheckpointStrategy> FusedLstmOps for Autodiff<B, C> {
    fn fused_masked_lstm(
        input: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        w_input: FloatTensor<Self>,
        w_hidden: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        reverse: bool,
    ) -> FloatTensor<Self> {
        let nodes = [input.node(), w_input.node(), w_hidden.node(), bias.node()];
        let args =
            (input.into_primitive(), mask.into_primitive(), w_input.into_primitive(), w_hidden.into_primitive(), bias.into_primitive());
        match LstmBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (out, state) = run::<B>(args.0, args.1, args.2, args.3, args.4, reverse, true);
                prep.finish(state.expect("saved when asked"), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(run::<B>(args.0, args.1, args.2, args.3, args.4, reverse, false).0),
        }
    }
}
