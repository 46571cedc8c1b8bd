//! The operation on the CPU backends (ndarray, flex): the host kernels of
//! [`crate::cpu::recurrence`], reading the tensors into host buffers and writing the results back.
//! The training forward pass keeps its buffers ([`LstmState`]) for the backward pass.

use std::sync::Arc;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, NdArray, TensorMetadata};
use burn::prelude::*;

use super::{FusedLstmOps, LstmGrads, LstmTraining};
use crate::cpu::recurrence::{self, Saved, Weights};

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

/// The CPU backends: inference runs the forward kernel and keeps nothing; training keeps the
/// forward's buffers, and the backward pass runs [`recurrence::backward`] over them.
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

        impl LstmTraining for $backend {
            type Saved = Arc<LstmState>;

            fn forward_saving(
                input: FloatTensor<Self>,
                mask: FloatTensor<Self>,
                w_input: FloatTensor<Self>,
                w_hidden: FloatTensor<Self>,
                bias: FloatTensor<Self>,
                reverse: bool,
            ) -> (FloatTensor<Self>, Self::Saved) {
                let (out, state) = run::<Self>(input, mask, w_input, w_hidden, bias, reverse, true);
                (out, state.expect("saved when asked"))
            }

            fn backward(state: Self::Saved, grad_output: FloatTensor<Self>) -> LstmGrads<Self> {
                backward::<Self>(&state, grad_output)
            }
        }
    )*};
}

cpu_backend!(NdArray, Flex);

/// The backward pass over the forward's buffers; the gradients land on `grad_output`'s device.
fn backward<B: Backend>(state: &LstmState, grad_output: FloatTensor<B>) -> LstmGrads<B> {
    let device = grad_output.device();
    let [b, t, d, h] = state.dims;
    let g = recurrence::backward(&state.saved, &host::<B>(grad_output), t, state.weights());
    let tensor = |values: Vec<f32>, shape: Vec<usize>| B::float_from_data(TensorData::new(values, shape), &device);
    LstmGrads {
        input: tensor(g.input, vec![b, t, d]),
        w_input: tensor(g.w_input, vec![d, 4 * h]),
        w_hidden: tensor(g.w_hidden, vec![h, 4 * h]),
        bias: tensor(g.bias, vec![4 * h]),
    }
}
