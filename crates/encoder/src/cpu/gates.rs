//! The gate arithmetic of one row of one time step, forward and backward: the fast `exp`,
//! `sigmoid` and `tanh` it spends its time in, and the loops over a row's four gates, compiled
//! for AVX2 + FMA as well and chosen at run time.

/// `e^x` to about 2 ulp: range reduction to `[-ln2/2, ln2/2]`, a degree-6 polynomial (Cephes'
/// `expf` coefficients) and the exponent written into the float's bits. Unlike libm's `expf`
/// it inlines, so the gate loops below vectorize; the gate functions spend most of their time
/// here. `n` is rounded by adding 1.5 · 2²³, whose sum holds `n` in its low mantissa bits: a
/// float-to-int `as` cast would saturate lane by lane and keep the loop scalar.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5 · 2²³
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + SHIFT;
    let n = t - SHIFT;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001e-1, which is 0.5 in f32
    let e = p * r * r + r + 1.0;
    // t's bits are SHIFT's plus n, and n + 127 lies in [1, 254]: a valid biased exponent.
    e * f32::from_bits(t.to_bits().wrapping_sub(SHIFT.to_bits() - 127) << 23)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// Compiles `$body` twice, once for AVX2 + FMA, and picks the version the CPU supports at run
/// time: the workspace builds for baseline x86-64, whose 4-wide SSE leaves half the machine idle.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU was just checked for both features.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

multiversion! {
    /// One step of one row: `z` holds the gate pre-activations and leaves holding the activated
    /// gates; `cell` and `hidden` receive the new state.
    pub(super) fn step_row(z: &mut [f32], c_prev: &[f32], cell: &mut [f32], hidden: &mut [f32]) {
        let h = cell.len();
        let (zi, rest) = z.split_at_mut(h);
        let (zf, rest) = rest.split_at_mut(h);
        let (zg, zo) = rest.split_at_mut(h);
        let (zf, zg, zo, c_prev, hidden) = (&mut zf[..h], &mut zg[..h], &mut zo[..h], &c_prev[..h], &mut hidden[..h]);
        for u in 0..h {
            let i = sigmoid(zi[u]);
            let f = sigmoid(zf[u]);
            let g = tanh(zg[u]);
            let o = sigmoid(zo[u]);
            let c = f * c_prev[u] + i * g;
            cell[u] = c;
            hidden[u] = o * tanh(c);
            zi[u] = i;
            zf[u] = f;
            zg[u] = g;
            zo[u] = o;
        }
    }
}

multiversion! {
    /// Back-propagates one row of one step: from the activated gates `z`, the cell states, and the
    /// incoming gradients of the hidden state (`dh` carried plus `dh_out` from the output) and of
    /// the cell (`dc`, replaced by the gradient for the previous cell), into `dz`.
    pub(super) fn step_row_backward(
        z: &[f32],
        cell: &[f32],
        c_prev: &[f32],
        dh: &[f32],
        dh_out: &[f32],
        dc: &mut [f32],
        dz: &mut [f32],
    ) {
        let h = cell.len();
        let (zi, rest) = z.split_at(h);
        let (zf, rest) = rest.split_at(h);
        let (zg, zo) = rest.split_at(h);
        let (dzi, rest) = dz.split_at_mut(h);
        let (dzf, rest) = rest.split_at_mut(h);
        let (dzg, dzo) = rest.split_at_mut(h);
        let (zi, zf, zg, zo, c_prev, dh, dh_out, dc) = (&zi[..h], &zf[..h], &zg[..h], &zo[..h], &c_prev[..h], &dh[..h], &dh_out[..h], &mut dc[..h]);
        let (dzi, dzf, dzg, dzo) = (&mut dzi[..h], &mut dzf[..h], &mut dzg[..h], &mut dzo[..h]);
        for u in 0..h {
            let (i, f, g, o) = (zi[u], zf[u], zg[u], zo[u]);
            let tc = tanh(cell[u]);
            let dhu = dh[u] + dh_out[u];
            let dcu = dc[u] + dhu * o * (1.0 - tc * tc);
            dzi[u] = dcu * g * i * (1.0 - i);
            dzf[u] = dcu * c_prev[u] * f * (1.0 - f);
            dzg[u] = dcu * i * (1.0 - g * g);
            dzo[u] = dhu * tc * o * (1.0 - o);
            dc[u] = dcu * f;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_sigmoid_and_tanh_match_libm() {
        let mut x = -90.0f32;
        while x < 90.0 {
            let (e, want) = (exp(x), x.exp());
            if x.abs() < 87.0 {
                assert!(((e - want) / want).abs() < 1e-6, "exp({x}): {e} vs {want}");
            }
            assert!((sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs() < 1e-6, "sigmoid({x})");
            assert!((tanh(x) - x.tanh()).abs() < 1e-6, "tanh({x})");
            x += 0.0137;
        }
        assert_eq!(sigmoid(-1e9), 0.0f32.max(sigmoid(-1e9)));
        assert!(tanh(1e9) <= 1.0 && tanh(-1e9) >= -1.0);
    }
}
