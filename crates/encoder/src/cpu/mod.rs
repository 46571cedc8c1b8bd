//! Host code for the CPU backends (ndarray and flex), where plain loops over buffers beat a chain
//! of small tensor ops: the LSTM kernels and the inference path built on them. Nothing here runs
//! on wgpu, which keeps the composed tensor-op recurrence of [`crate::model::lstm`].
//!
//! - [`gemm`]: the one matrix product every kernel uses (also public, as `encoder::matmul`);
//! - [`gates`]: the gate arithmetic of one row of one time step, vectorized;
//! - [`recurrence`]: the packed forward pass, the inference pass and back-propagation through
//!   time;
//! - [`lstm_op`]: the kernels as one burn operation with its own backward pass, for training;
//! - [`host`]: [`HostEncoder`](host::HostEncoder), inference from token ids to sentence vectors
//!   without tensors.

pub(crate) mod gates;
pub(crate) mod gemm;
pub(crate) mod host;
pub(crate) mod lstm_op;
pub(crate) mod recurrence;
