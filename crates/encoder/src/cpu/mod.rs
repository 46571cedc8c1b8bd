//! Host code, where plain loops over buffers beat a chain of small tensor ops: the LSTM kernels
//! of the CPU backends and the inference path built on them, which needs no burn at all. Nothing
//! here runs on wgpu, which keeps the composed tensor-op recurrence of `model::lstm`.
//!
//! - [`gemm`]: the one matrix product every kernel uses (also public, as `encoder::matmul`);
//! - [`gates`]: the gate arithmetic of one row of one time step, vectorized;
//! - [`recurrence`]: the packed forward pass, the inference pass and back-propagation through
//!   time;
//! - `lstm_op` (with burn): the kernels as one burn operation with its own backward pass, for
//!   training;
//! - [`host`]: [`HostEncoder`](host::HostEncoder), inference from token ids to sentence vectors
//!   without tensors;
//! - [`head`]: [`HostHead`](head::HostHead), the verdict head's probabilities without tensors.

// Without burn only the inference pass is used; the training kernels wait for `lstm_op`.
#[cfg_attr(not(feature = "burn"), allow(dead_code))]
pub(crate) mod gates;
pub(crate) mod gemm;
pub(crate) mod head;
pub(crate) mod host;
#[cfg(feature = "burn")]
pub(crate) mod lstm_op;
#[cfg_attr(not(feature = "burn"), allow(dead_code))]
pub(crate) mod recurrence;
