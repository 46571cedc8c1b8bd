//! The matrix product under every kernel of this folder: `gemm` behind one safe function whose
//! strided operands are bounds-checked, so that no caller needs an `unsafe` of its own.

/// `c[m, n] (+)= a[m, k] · b[k, n]`, each operand given with its row and column strides; `c` is
/// row-major with row stride `rsc`. `parallel` spreads one large product over rayon's threads;
/// the per-step products are small and run inside a rayon task of their own instead. Public (as
/// `encoder::matmul`) so that other crates (the batched search) get gemm with its bounds
/// checked, not another `unsafe`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    k: usize,
    n: usize,
    a: (&[f32], isize, isize),
    b: (&[f32], isize, isize),
    accumulate: bool,
    c: &mut [f32],
    rsc: isize,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: isize, cs: isize| -> usize {
        if rows == 0 || cols == 0 {
            0
        } else {
            ((rows - 1) as isize * rs + (cols - 1) as isize * cs) as usize + 1
        }
    };
    assert!(a.0.len() >= last(m, k, a.1, a.2) && b.0.len() >= last(k, n, b.1, b.2) && c.len() >= last(m, n, rsc, 1));
    if k == 0 {
        if !accumulate {
            for row in 0..m {
                c[row * rsc as usize..row * rsc as usize + n].fill(0.0);
            }
        }
        return;
    }
    let parallelism = if parallel { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    // SAFETY: the assertion above keeps every strided access inside the three slices, and `c`
    // does not alias `a` or `b` (it is a distinct `&mut`). gemm computes
    // `dst = alpha · dst + beta · lhs · rhs`, reading `dst` only when `accumulate`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            rsc,
            accumulate,
            a.0.as_ptr(),
            a.2,
            a.1,
            b.0.as_ptr(),
            b.2,
            b.1,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
