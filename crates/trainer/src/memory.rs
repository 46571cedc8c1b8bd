//! How a training process asks the C allocator to keep freed memory.
//!
//! Every training step allocates and frees the same large buffers (the LSTM's saved gates and
//! states, gradients, the optimiser's temporaries). glibc's defaults hand large blocks back to the
//! kernel when they are freed, so the next step page-faults them in again, zeroed; with the batch
//! split over threads each thread's arena does so, and the page faults of the threads contend in
//! the kernel. Raising the two thresholds keeps those blocks in the process for reuse: memory
//! stays at the step's peak instead of dropping between steps.

/// Blocks up to this size come from the heap, not from a mapping of their own: well above the
/// largest buffer of a training step at the sizes the configs use (the whole batch's gates).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Free memory at the top of a heap is returned to the kernel only past this much.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 512 << 20;

/// Makes glibc keep the large blocks a training step frees, for the next step. Call it first
/// thing in a process that trains; elsewhere (another C library) it does nothing. Returns whether
/// the allocator took both settings.
pub fn keep_freed_buffers() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt changes allocator parameters under the allocator's own lock, and
        // returns 0 for a value it rejects.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    /// glibc accepts both values (one it refused would change nothing).
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_both_thresholds() {
        assert!(super::keep_freed_buffers());
    }
}
