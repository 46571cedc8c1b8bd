//! The masked LSTM recurrence as ONE burn operation with its own backward pass.
//!
//! burn 0.22 lets a crate add operations to its runtime-dispatched backends
//! (`#[backend_extension]`). [`FusedLstmOps::fused_masked_lstm`] is such an operation for the two
//! CPU backends, ndarray and flex (`host`: the host kernels of `cpu::recurrence`), for the CubeCL
//! backend that wgpu runs on (`cube`: CubeCL kernels, with the `wgpu` feature), and for autodiff
//! on top of any of them: the autodiff version records ONE graph node for the whole recurrence
//! and back-propagates through it with the backend's own backward pass ([`LstmTraining`]),
//! instead of recording some twenty nodes per time step as the composed recurrence of
//! [`crate::model::lstm`] does.
//!
//! - `host`: ndarray and flex, forward and backward on host buffers;
//! - `cube` (with `wgpu`): the launches and the training pieces on the CubeCL backend, lazily
//!   through burn's fusion stream;
//! - `kernel` (with `wgpu`): the `#[cube]` kernels themselves.

// ndarray is deprecated upstream in favour of flex; the product keeps it on purpose, and the
// extension macro's generated code names it too.
#![allow(deprecated)]

#[cfg(feature = "wgpu")]
mod cube;
mod host;
#[cfg(feature = "wgpu")]
mod kernel;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, DispatchDevice};
use burn::prelude::*;

/// A masked LSTM pass as one operation: `[B, T, d]` inputs and a `[B, T]` mask (1 = token,
/// 0 = padding, rows right-padded) to every step's hidden state `[B, T, h]`, zero on padding.
#[backend_extension(NdArray, Flex, Cube: cfg(feature = "wgpu"), Fusion: cfg(feature = "wgpu"), Autodiff)]
pub(crate) trait FusedLstmOps: Backend {
    /// Runs the recurrence with weights `w_input` `[d, 4h]`, `w_hidden` `[h, 4h]`, `bias` `[4h]`.
    #[fusion(dtype = input, shape = output_shape(input, w_hidden))]
    fn fused_masked_lstm(
        input: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        w_input: FloatTensor<Self>,
        w_hidden: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        reverse: bool,
    ) -> FloatTensor<Self>;
}

/// The output shape `[B, T, h]` from the input's `[B, T, d]` and `w_hidden`'s `[h, 4h]`; the
/// fusion stream needs it before the operation runs.
#[cfg(feature = "wgpu")]
fn output_shape(input: &Shape, w_hidden: &Shape) -> Shape {
    Shape::new([input[0], input[1], w_hidden[0]])
}

/// Whether `device` runs the fused operation (with or without autodiff): ndarray and flex
/// always, and the wgpu device in builds with the `wgpu` feature.
pub(crate) fn supported(device: &Device) -> bool {
    match device.clone().inner().as_dispatch() {
        DispatchDevice::NdArray(_) | DispatchDevice::Flex(_) => true,
        #[cfg(feature = "wgpu")]
        DispatchDevice::Cube(_) => true,
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// Whether `device` computes on the host (ndarray or flex, with or without autodiff), where
/// inference skips tensors altogether (`cpu::host`).
pub(crate) fn on_host(device: &Device) -> bool {
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

/// The gradients of one pass with respect to its four differentiable inputs.
pub(crate) struct LstmGrads<B: Backend> {
    /// `[B, T, d]`.
    pub(crate) input: FloatTensor<B>,
    /// `[d, 4h]`.
    pub(crate) w_input: FloatTensor<B>,
    /// `[h, 4h]`.
    pub(crate) w_hidden: FloatTensor<B>,
    /// `[4h]`.
    pub(crate) bias: FloatTensor<B>,
}

/// A backend's training half of the operation: a forward pass that keeps what its backward pass
/// reads, and that backward pass. The host backends keep host buffers, the CubeCL backend keeps
/// device tensors; the autodiff operation below is the same for both.
pub(crate) trait LstmTraining: FusedLstmOps {
    /// What the forward pass leaves for the backward pass.
    type Saved: Clone + Send + std::fmt::Debug + 'static;

    /// The forward pass of [`FusedLstmOps::fused_masked_lstm`], keeping its state.
    fn forward_saving(
        input: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        w_input: FloatTensor<Self>,
        w_hidden: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        reverse: bool,
    ) -> (FloatTensor<Self>, Self::Saved);

    /// The gradients of the pass that saved `saved`, given the output's gradient `[B, T, h]`.
    fn backward(saved: Self::Saved, grad_output: FloatTensor<Self>) -> LstmGrads<Self>;
}

/// The backward step of the whole recurrence; parents are input, `w_input`, `w_hidden`, `bias`.
#[derive(Debug)]
struct LstmBackward;

impl<B: LstmTraining> Backward<B, 4> for LstmBackward {
    type State = B::Saved;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad_output = grads.consume::<B>(&ops.node);
        let g = B::backward(ops.state, grad_output);
        let [input, w_input, w_hidden, bias] = ops.parents;
        for (node, grad) in [(input, g.input), (w_input, g.w_input), (w_hidden, g.w_hidden), (bias, g.bias)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: LstmTraining, C: CheckpointStrategy> FusedLstmOps for Autodiff<B, C> {
    fn fused_masked_lstm(
        input: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        w_input: FloatTensor<Self>,
        w_hidden: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        reverse: bool,
    ) -> FloatTensor<Self> {
        let nodes = [input.node(), w_input.node(), w_hidden.node(), bias.node()];
        let (input, mask, w_input, w_hidden, bias) =
            (input.into_primitive(), mask.into_primitive(), w_input.into_primitive(), w_hidden.into_primitive(), bias.into_primitive());
        match LstmBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (out, saved) = B::forward_saving(input, mask, w_input, w_hidden, bias, reverse);
                prep.finish(saved, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_masked_lstm(input, mask, w_input, w_hidden, bias, reverse)),
        }
    }
}
