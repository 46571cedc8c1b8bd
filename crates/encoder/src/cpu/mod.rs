//! Host code, where plain loops over buffers beat a chain of small tensor ops: the LSTM kernels
//! of the CPU backends and the inference path built on them, which needs no burn at all. Nothing
//! here runs on wgpu, which has CubeCL kernels of its own (`op::kernel`).
//!
//! - [`gemm`]: the one matrix product every kernel uses (also public, as `encoder::matmul`);
//! - [`gates`]: the gate arithmetic of one row of one time step, vectorized;
//! - [`recurrence`]: the packed forward pass, the inference pass and back-propagation through
//!   time;
//! - [`host`]: [`HostEncoder`](host::HostEncoder), inference from token ids to sentence vectors
//!   without tensors;
//! - [`head`]: [`HostHead`](head::HostHead), the verdict head's probabilities without tensors.

// Without burn only the inference pass is used; the training kernels wait for `op::host`.
#[cfg_attr(not(feature = "burn"), allow(dead_code))]
pub(crate) mod gates;
pub(crate) mod gemm;
pub(crate) mod head;
pub(crate) mod host;
#[cfg_attr(not(feature = "burn"), allow(dead_code))]
pub(crate) mod recurrence;
