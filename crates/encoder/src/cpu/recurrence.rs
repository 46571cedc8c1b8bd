//! The masked LSTM's forward and backward passes as host kernels, for the CPU backends.
//!
//! Run as a chain of burn tensor ops, each time step costs about twenty small ops, and with
//! autodiff each one also records a graph node; the profile of a training step was spread over
//! allocation, page faults, copies and elementwise loops rather than the matmuls. These kernels do
//! the same arithmetic in a few buffers:
//!
//! - rows are sorted by length, longest first, and every step works on the prefix of rows that
//!   are still reading, so padded steps cost nothing (PyTorch's packed sequences do the same);
//! - the input projection of every real token is one `[N, d] × [d, 4h]` matmul, each step one
//!   `[n, h] × [h, 4h]` matmul added in place, and the four gates are one pass over that row;
//! - training deals the batch's rows into one shard per thread ([`shards`]), and each thread runs
//!   every step of its shard, so a pass costs one join; a batch too small to shard splits each
//!   step's rows into one block per thread instead (a join per step), as inference may;
//! - the backward pass is hand-derived back-propagation through time, with one matmul per step
//!   for the recurrent gradient and one each for the weight gradients of the whole sequence.
//!
//! The gate arithmetic of a row lives in [`super::gates`], the matmuls in [`super::gemm`]. A
//! row's final state is the state after its last real token, exactly as the mask-gated
//! recurrence in [`crate::model::lstm`] computes it; the tests there check both against each
//! other and against burn's stock `Lstm`.

use rayon::prelude::*;

use super::gates::{step_row, step_row_backward};
use super::gemm::matmul;

/// Weights of one direction, row-major, gates ordered input, forget, cell, output.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Weights<'a> {
    /// `[d, 4h]`.
    pub(crate) w_input: &'a [f32],
    /// `[h, 4h]`.
    pub(crate) w_hidden: &'a [f32],
    /// `[4h]`.
    pub(crate) bias: &'a [f32],
    /// Input size.
    pub(crate) d: usize,
    /// Hidden size.
    pub(crate) h: usize,
}

/// Where each step's rows live in the packed layout.
#[derive(Debug, Clone)]
pub(crate) struct Packing {
    /// Sorted position → row of the batch (longest row first).
    pub(crate) order: Vec<usize>,
    /// Length of each sorted row.
    pub(crate) lens: Vec<usize>,
    /// Per step: offset of its first row in the packed buffers, and how many rows still read.
    pub(crate) steps: Vec<(usize, usize)>,
    /// Packed rows in all (the number of real tokens).
    pub(crate) total: usize,
    /// Read each row from its last token to its first.
    pub(crate) reverse: bool,
}

impl Packing {
    /// Packs a batch whose rows have `lengths` real tokens (right-padded to any width).
    pub(crate) fn new(lengths: &[usize], reverse: bool) -> Self {
        Self::of_rows(lengths, (0..lengths.len()).collect(), reverse)
    }

    /// Packs the batch rows `rows` alone (a shard of the batch; `lengths` covers the whole
    /// batch): `order` then maps sorted positions to rows of the whole batch.
    pub(crate) fn of_rows(lengths: &[usize], mut order: Vec<usize>, reverse: bool) -> Self {
        order.sort_by_key(|&r| std::cmp::Reverse(lengths[r]));
        let lens: Vec<usize> = order.iter().map(|&r| lengths[r]).collect();
        let max = lens.first().copied().unwrap_or(0);
        let mut steps = Vec::with_capacity(max);
        let mut offset = 0;
        for s in 0..max {
            let n = lens.partition_point(|&l| l > s);
            steps.push((offset, n));
            offset += n;
        }
        Packing { order, lens, steps, total: offset, reverse }
    }

    /// Time index, in the padded batch, of sorted row `r` at step `s`.
    pub(crate) fn position(&self, r: usize, s: usize) -> usize {
        if self.reverse {
            self.lens[r] - 1 - s
        } else {
            s
        }
    }

    /// Calls `f(packed_row, batch_row, time)` for every real token.
    pub(crate) fn for_each(&self, mut f: impl FnMut(usize, usize, usize)) {
        for (s, &(offset, n)) in self.steps.iter().enumerate() {
            for r in 0..n {
                f(offset + r, self.order[r], self.position(r, s));
            }
        }
    }
}

/// What the backward pass needs from the forward pass.
#[derive(Debug, Clone)]
pub(crate) struct Saved {
    /// The packing of the batch.
    pub(crate) packing: Packing,
    /// Packed inputs, `[N, d]`.
    pub(crate) inputs: Vec<f32>,
    /// Activated gates (i, f, g, o) per packed row, `[N, 4h]`.
    pub(crate) gates: Vec<f32>,
    /// Cell state after each packed row, `[N, h]`.
    pub(crate) cells: Vec<f32>,
    /// Hidden state after each packed row, `[N, h]`.
    pub(crate) hidden: Vec<f32>,
}

/// Gradients of one direction.
#[derive(Debug, Clone)]
pub(crate) struct Grads {
    /// `[B, T, d]`, zero on padding.
    pub(crate) input: Vec<f32>,
    /// `[d, 4h]`.
    pub(crate) w_input: Vec<f32>,
    /// `[h, 4h]`.
    pub(crate) w_hidden: Vec<f32>,
    /// `[4h]`.
    pub(crate) bias: Vec<f32>,
}

/// Rows per rayon task for a step of `n` rows: the rows split evenly over the threads, unless the
/// step is too small to be worth splitting.
fn block_rows(n: usize, h: usize) -> usize {
    if n * h < PARALLEL_FROM {
        n.max(1)
    } else {
        n.div_ceil(rayon::current_num_threads()).max(1)
    }
}

/// Below this many state values per step, splitting the rows over threads costs more than it saves.
const PARALLEL_FROM: usize = 8192;

/// One time step of the `n` rows still reading (`cell`, `hid`, `c_prev`, `h_prev`: `[n, h]`):
/// `z` `[n, 4h]` arrives holding the input projection plus bias,
/// gets `h_prev · W_h` added (not at the `first` step, whose previous state is zero) and leaves
/// holding the activated gates; `cell` and `hid` receive the new state. With `parallel`, a step
/// big enough is split into one block of rows per thread, each running its own slice of the
/// matmul (single-threaded `gemm`) and its gate loop, so the step costs one join.
#[allow(clippy::too_many_arguments)]
fn step(
    first: bool,
    z: &mut [f32],
    cell: &mut [f32],
    hid: &mut [f32],
    c_prev: &[f32],
    h_prev: &[f32],
    w_hidden: &[f32],
    h: usize,
    parallel: bool,
) {
    let g4 = 4 * h;
    let run = |z: &mut [f32], cell: &mut [f32], hid: &mut [f32], c_prev: &[f32], h_prev: &[f32]| {
        let rows = cell.len() / h;
        if !first {
            matmul(rows, h, g4, (h_prev, h as isize, 1), (w_hidden, g4 as isize, 1), true, z, g4 as isize, false);
        }
        for r in 0..rows {
            let (hr, gr) = (r * h..(r + 1) * h, r * g4..(r + 1) * g4);
            step_row(&mut z[gr], &c_prev[hr.clone()], &mut cell[hr.clone()], &mut hid[hr]);
        }
    };
    let n = cell.len() / h;
    let block = block_rows(n, h);
    if parallel && block < n {
        z.par_chunks_mut(block * g4)
            .zip(cell.par_chunks_mut(block * h))
            .zip(hid.par_chunks_mut(block * h))
            .zip(c_prev.par_chunks(block * h).zip(h_prev.par_chunks(block * h)))
            .for_each(|(((z, cell), hid), (c_prev, h_prev))| run(z, cell, hid, c_prev, h_prev));
    } else {
        run(z, cell, hid, c_prev, h_prev);
    }
}

/// Fewest rows a training shard gets: below this, a shard's per-step matrix products are too
/// small to be worth a thread of their own.
const SHARD_ROWS: usize = 8;

/// The rows of a training batch dealt into at most `threads` shards, each run start to end by one
/// thread: sorted longest first and dealt back and forth (0, 1, …, n−1, n−1, …, 0), so every
/// shard gets rows of every length and about the same number of tokens. A batch with fewer than
/// two shards' worth of rows stays whole.
pub(crate) fn shards(lengths: &[usize], threads: usize) -> Vec<Vec<usize>> {
    let count = threads.min(lengths.len() / SHARD_ROWS).max(1);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&r| std::cmp::Reverse(lengths[r]));
    let mut out = vec![Vec::with_capacity(lengths.len().div_ceil(count)); count];
    for (i, row) in order.into_iter().enumerate() {
        let (round, j) = (i / count, i % count);
        out[if round % 2 == 0 { j } else { count - 1 - j }].push(row);
    }
    out
}

/// Runs the LSTM over `input` `[B, T, d]` whose rows have `lengths` real tokens. Returns every
/// step's hidden state `[B, T, h]` (zero on padding) and, with `save`, what the backward pass
/// needs, one [`Saved`] per shard.
///
/// Rows of an LSTM never meet, so the batch is split into [`shards`], one per rayon thread, and
/// each shard runs all its steps without waiting for the others: one join per pass, where
/// splitting each step's rows costs one join per step (and that is what a batch too small to
/// shard still does). A row gets the outputs it gets alone, whatever its shard (tested to 1e-5).
pub(crate) fn forward(
    input: &[f32],
    lengths: &[usize],
    t: usize,
    w: Weights<'_>,
    reverse: bool,
    save: bool,
) -> (Vec<f32>, Option<Vec<Saved>>) {
    let shards = shards(lengths, rayon::current_num_threads());
    let whole = shards.len() == 1;
    let run = |rows: Vec<usize>| forward_shard(input, t, w, Packing::of_rows(lengths, rows, reverse), whole);
    let saved: Vec<Saved> = if whole { shards.into_iter().map(run).collect() } else { shards.into_par_iter().map(run).collect() };
    let h = w.h;
    let mut out = vec![0f32; lengths.len() * t * h];
    for shard in &saved {
        shard.packing.for_each(|p, row, time| {
            let dst = (row * t + time) * h;
            out[dst..dst + h].copy_from_slice(&shard.hidden[p * h..(p + 1) * h]);
        });
    }
    (out, save.then_some(saved))
}

/// The forward pass of the rows `packing` holds. `parallel` splits the input projection and each
/// large step over rayon's threads (for a batch run as one shard).
fn forward_shard(input: &[f32], t: usize, w: Weights<'_>, packing: Packing, parallel: bool) -> Saved {
    let (d, h) = (w.d, w.h);
    let g4 = 4 * h;
    let total = packing.total;
    let mut inputs = vec![0f32; total * d];
    packing.for_each(|p, row, time| {
        let src = (row * t + time) * d;
        inputs[p * d..(p + 1) * d].copy_from_slice(&input[src..src + d]);
    });
    // Input projection of every real token at once, on top of the bias.
    let mut gates = vec![0f32; total * g4];
    for row in gates.chunks_exact_mut(g4) {
        row.copy_from_slice(w.bias);
    }
    matmul(total, d, g4, (&inputs, d as isize, 1), (w.w_input, g4 as isize, 1), true, &mut gates, g4 as isize, parallel);

    let mut cells = vec![0f32; total * h];
    let mut hidden = vec![0f32; total * h];
    let zeros = vec![0f32; packing.order.len() * h];
    let mut prev_offset = 0;
    for (s, &(offset, n)) in packing.steps.iter().enumerate() {
        let (cells_before, cells_now) = cells.split_at_mut(offset * h);
        let (hidden_before, hidden_now) = hidden.split_at_mut(offset * h);
        let (c_prev, h_prev): (&[f32], &[f32]) = if s > 0 {
            (&cells_before[prev_offset * h..(prev_offset + n) * h], &hidden_before[prev_offset * h..(prev_offset + n) * h])
        } else {
            (&zeros[..n * h], &zeros[..n * h])
        };
        let z = &mut gates[offset * g4..(offset + n) * g4];
        step(s == 0, z, &mut cells_now[..n * h], &mut hidden_now[..n * h], c_prev, h_prev, w.w_hidden, h, parallel);
        prev_offset = offset;
    }
    Saved { packing, inputs, gates, cells, hidden }
}

/// The recurrence alone, for inference: `gates` holds every real token's input projection plus
/// bias, `[N, 4h]` in `packing`'s order, and is used up. After each step `s`, `visit(s, n,
/// hidden)` receives the new hidden state of the `n` rows still reading (`[n, h]`, sorted
/// rows), so callers pool as they go instead of keeping `[B, T, h]`: only two steps of state
/// are held. `parallel` splits each step's rows over rayon's threads; without it the pass runs
/// on the calling thread, for callers that already run one batch per thread.
pub(crate) fn infer(
    packing: &Packing,
    gates: &mut [f32],
    w_hidden: &[f32],
    h: usize,
    parallel: bool,
    mut visit: impl FnMut(usize, usize, &[f32]),
) {
    let g4 = 4 * h;
    let b = packing.order.len();
    assert!(gates.len() >= packing.total * g4 && w_hidden.len() >= h * g4);
    // Two buffers each for the cell and hidden state: step s writes one and reads the other.
    let (mut c0, mut c1) = (vec![0f32; b * h], vec![0f32; b * h]);
    let (mut h0, mut h1) = (vec![0f32; b * h], vec![0f32; b * h]);
    for (s, &(offset, n)) in packing.steps.iter().enumerate() {
        let (c_prev, c_now, h_prev, h_now) = if s % 2 == 0 { (&c1, &mut c0, &h1, &mut h0) } else { (&c0, &mut c1, &h0, &mut h1) };
        let z = &mut gates[offset * g4..(offset + n) * g4];
        step(s == 0, z, &mut c_now[..n * h], &mut h_now[..n * h], &c_prev[..n * h], &h_prev[..n * h], w_hidden, h, parallel);
        visit(s, n, &h_now[..n * h]);
    }
}

/// Back-propagates `grad_output` `[B, T, h]` (the gradient of every step's hidden state; padding
/// entries are ignored) through the pass that produced `saved`: each shard on a thread of its
/// own, then the shards' weight gradients summed in shard order.
pub(crate) fn backward(saved: &[Saved], grad_output: &[f32], t: usize, w: Weights<'_>) -> Grads {
    let whole = saved.len() == 1;
    let run = |shard: &Saved| backward_shard(shard, grad_output, t, w, whole);
    let mut parts: Vec<ShardGrads> = if whole { saved.iter().map(run).collect() } else { saved.par_iter().map(run).collect() };
    let d = w.d;
    let b: usize = saved.iter().map(|s| s.packing.order.len()).sum();
    let mut input = vec![0f32; b * t * d];
    for (shard, part) in saved.iter().zip(&parts) {
        shard.packing.for_each(|p, row, time| {
            let dst = (row * t + time) * d;
            input[dst..dst + d].copy_from_slice(&part.packed_input[p * d..(p + 1) * d]);
        });
    }
    let mut sum = parts.remove(0);
    for part in &parts {
        for (acc, g) in [(&mut sum.w_input, &part.w_input), (&mut sum.w_hidden, &part.w_hidden), (&mut sum.bias, &part.bias)] {
            acc.iter_mut().zip(g).for_each(|(a, g)| *a += g);
        }
    }
    Grads { input, w_input: sum.w_input, w_hidden: sum.w_hidden, bias: sum.bias }
}

/// One shard's gradients: its rows' input gradients in packed order, and its share of the
/// weight gradients.
struct ShardGrads {
    packed_input: Vec<f32>,
    w_input: Vec<f32>,
    w_hidden: Vec<f32>,
    bias: Vec<f32>,
}

/// Back-propagation through time over the rows of one shard. `parallel` splits each large step
/// and the weight-gradient products over rayon's threads (for a batch run as one shard).
fn backward_shard(saved: &Saved, grad_output: &[f32], t: usize, w: Weights<'_>, parallel: bool) -> ShardGrads {
    let (d, h) = (w.d, w.h);
    let g4 = 4 * h;
    let packing = &saved.packing;
    let b = packing.order.len();
    let total = packing.total;
    let mut grad_hidden = vec![0f32; total * h];
    packing.for_each(|p, row, time| {
        let src = (row * t + time) * h;
        grad_hidden[p * h..(p + 1) * h].copy_from_slice(&grad_output[src..src + h]);
    });

    // Gradient flowing into each sorted row's hidden and cell state from later steps.
    let mut dh = vec![0f32; b * h];
    let mut dc = vec![0f32; b * h];
    let mut dz = vec![0f32; total * g4];
    let zeros = vec![0f32; b * h];
    for s in (0..packing.steps.len()).rev() {
        let (offset, n) = packing.steps[s];
        let prev_offset = if s > 0 { packing.steps[s - 1].0 } else { 0 };
        let c_prev: &[f32] = if s > 0 { &saved.cells[prev_offset * h..(prev_offset + n) * h] } else { &zeros[..n * h] };
        // Each task takes a block of rows through the gate derivatives, then passes the gradient
        // to the previous hidden state: dh_prev = dz · W_hᵀ. Without `parallel`, one block.
        let block = if parallel { block_rows(n, h) } else { n };
        saved.gates[offset * g4..(offset + n) * g4]
            .par_chunks(block * g4)
            .zip(saved.cells[offset * h..(offset + n) * h].par_chunks(block * h))
            .zip(c_prev.par_chunks(block * h))
            .zip(grad_hidden[offset * h..(offset + n) * h].par_chunks(block * h))
            .zip(dh[..n * h].par_chunks_mut(block * h))
            .zip(dc[..n * h].par_chunks_mut(block * h))
            .zip(dz[offset * g4..(offset + n) * g4].par_chunks_mut(block * g4))
            .for_each(|((((((z, cell), c_prev), dh_out), dh), dc), dz)| {
                let rows = cell.len() / h;
                for r in 0..rows {
                    let (hr, gr) = (r * h..(r + 1) * h, r * g4..(r + 1) * g4);
                    step_row_backward(
                        &z[gr.clone()],
                        &cell[hr.clone()],
                        &c_prev[hr.clone()],
                        &dh[hr.clone()],
                        &dh_out[hr.clone()],
                        &mut dc[hr],
                        &mut dz[gr],
                    );
                }
                if s > 0 {
                    matmul(rows, g4, h, (dz, g4 as isize, 1), (w.w_hidden, 1, g4 as isize), false, dh, h as isize, false);
                }
            });
    }
    // W_h's gradient for all steps at once: Σ_s h_prevᵀ · dz over the steps after the first.
    let first = packing.steps.first().map_or(0, |&(_, n)| n);
    let mut h_prev = vec![0f32; (total - first) * h];
    for s in 1..packing.steps.len() {
        let ((offset, n), (prev_offset, _)) = (packing.steps[s], packing.steps[s - 1]);
        h_prev[(offset - first) * h..(offset - first + n) * h].copy_from_slice(&saved.hidden[prev_offset * h..(prev_offset + n) * h]);
    }
    let mut w_hidden_grad = vec![0f32; h * g4];
    matmul(
        h,
        total - first,
        g4,
        (&h_prev, 1, h as isize),
        (&dz[first * g4..], g4 as isize, 1),
        false,
        &mut w_hidden_grad,
        g4 as isize,
        parallel,
    );

    let mut w_input_grad = vec![0f32; d * g4];
    matmul(d, total, g4, (&saved.inputs, 1, d as isize), (&dz, g4 as isize, 1), false, &mut w_input_grad, g4 as isize, parallel);
    let mut bias_grad = vec![0f32; g4];
    for row in dz.chunks_exact(g4) {
        for (acc, v) in bias_grad.iter_mut().zip(row) {
            *acc += v;
        }
    }
    let mut packed_input = vec![0f32; total * d];
    matmul(total, g4, d, (&dz, g4 as isize, 1), (w.w_input, 1, g4 as isize), false, &mut packed_input, d as isize, parallel);
    ShardGrads { packed_input, w_input: w_input_grad, w_hidden: w_hidden_grad, bias: bias_grad }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-0.5f32..0.5)).collect()
    }

    #[test]
    fn packing_puts_the_longest_rows_first_and_counts_real_tokens() {
        let p = Packing::new(&[2, 0, 3, 1], false);
        assert_eq!(p.order, vec![2, 0, 3, 1]);
        assert_eq!(p.steps, vec![(0, 3), (3, 2), (5, 1)]);
        assert_eq!(p.total, 6);
        let rev = Packing::new(&[2, 3], true);
        // Sorted row 0 is batch row 1 (3 tokens): reversed, step 0 reads its token 2.
        assert_eq!(rev.position(0, 0), 2);
        assert_eq!(rev.position(1, 0), 1);
    }

    /// The loss `Σ out · probe` as a function of one perturbed value, for finite differences.
    fn loss(input: &[f32], lengths: &[usize], t: usize, w: Weights<'_>, reverse: bool, probe: &[f32]) -> f64 {
        let (out, _) = forward(input, lengths, t, w, reverse, false);
        out.iter().zip(probe).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum()
    }

    #[test]
    fn backward_matches_finite_differences() {
        let (d, h, t) = (3usize, 4usize, 5usize);
        let lengths = [5usize, 2, 0, 4];
        let b = lengths.len();
        for reverse in [false, true] {
            let params = [random(b * t * d, 1), random(d * 4 * h, 2), random(h * 4 * h, 3), random(4 * h, 4)];
            let probe = random(b * t * h, 5);
            fn weights(p: &[Vec<f32>; 4], d: usize, h: usize) -> Weights<'_> {
                Weights { w_input: &p[1], w_hidden: &p[2], bias: &p[3], d, h }
            }
            let loss_with = |which: usize, k: usize, delta: f32| {
                let mut p = params.clone();
                p[which][k] += delta;
                loss(&p[0], &lengths, t, weights(&p, d, h), reverse, &probe)
            };
            let w = weights(&params, d, h);
            let (_, saved) = forward(&params[0], &lengths, t, w, reverse, true);
            let grads = backward(&saved.unwrap(), &probe, t, w);
            let analytic = [&grads.input, &grads.w_input, &grads.w_hidden, &grads.bias];
            let probes: [&[usize]; 4] = [&[0, 7, 20, 31, 45], &[0, 5, 17, 40], &[0, 9, 33, 63], &[0, 6, 11, 15]];
            let eps = 1e-2f32;
            for (which, ks) in probes.iter().enumerate() {
                for &k in *ks {
                    let numeric = (loss_with(which, k, eps) - loss_with(which, k, -eps)) / (2.0 * f64::from(eps));
                    let a = f64::from(analytic[which][k]);
                    assert!((a - numeric).abs() < 2e-3, "reverse={reverse} param {which}[{k}]: {a} vs {numeric}");
                }
            }
            // Padding gets no gradient: row 1 has 2 tokens, row 2 none.
            assert!(grads.input[(t + 2) * d..2 * t * d].iter().all(|&v| v == 0.0));
            assert!(grads.input[2 * t * d..3 * t * d].iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn shards_deal_every_row_once_back_and_forth_by_length() {
        let lengths = [3, 9, 1, 7, 5, 2, 8, 4, 6, 0, 10, 11, 12, 13, 14, 15, 16];
        // 17 rows make two shards of at least SHARD_ROWS, whatever the thread count above two.
        for threads in [2, 3, 16] {
            let s = shards(&lengths, threads);
            assert_eq!(s.len(), 2, "{threads} threads");
            // Longest first (rows 16, 15, 14, …, 10, then row 1 of length 9), dealt to shards
            // 0, 1, 1, 0, 0, 1, 1, 0, …
            assert_eq!(s[0][..4], [16, 13, 12, 1]);
            assert_eq!(s[1][..4], [15, 14, 11, 10]);
            let mut all: Vec<usize> = s.concat();
            all.sort();
            assert_eq!(all, (0..lengths.len()).collect::<Vec<_>>());
        }
        // One thread, or too few rows for two shards: one shard holding every row.
        assert_eq!(shards(&lengths, 1).len(), 1);
        assert_eq!(shards(&lengths[..15], 8).len(), 1);
        assert_eq!(shards(&[], 8), vec![Vec::<usize>::new()]);
    }

    /// On one thread (one shard), two (two shards) and three: the batch gives every row the
    /// output it gets alone, and gradients that sum the rows' own gradients.
    #[test]
    fn shards_give_the_same_numbers_as_rows_alone() {
        let (d, h, t) = (4usize, 96usize, 5usize);
        let lengths: Vec<usize> = (0..90).map(|r| 1 + r % t).collect();
        let b = lengths.len();
        let (w_input, w_hidden, bias) = (random(d * 4 * h, 2), random(h * 4 * h, 3), random(4 * h, 4));
        let w = Weights { w_input: &w_input, w_hidden: &w_hidden, bias: &bias, d, h };
        let input = random(b * t * d, 6);
        let probe = random(b * t * h, 7);
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let (out, grads) = pool.install(|| {
                let (out, saved) = forward(&input, &lengths, t, w, false, true);
                assert_eq!(saved.as_ref().unwrap().len(), threads);
                (out.clone(), backward(&saved.unwrap(), &probe, t, w))
            });
            check_against_rows_alone(&input, &lengths, t, w, &probe, &out, &grads);
        }
    }

    fn check_against_rows_alone(input: &[f32], lengths: &[usize], t: usize, w: Weights<'_>, probe: &[f32], out: &[f32], grads: &Grads) {
        let (d, h, b) = (w.d, w.h, lengths.len());
        let mut w_hidden_sum = vec![0f64; h * 4 * h];
        for r in 0..b {
            let x = &input[r * t * d..(r + 1) * t * d];
            let (alone, saved) = forward(x, &[lengths[r]], t, w, false, true);
            for (a, o) in alone.iter().zip(&out[r * t * h..(r + 1) * t * h]) {
                assert!((a - o).abs() < 1e-5, "row {r}: {a} vs {o}");
            }
            let g = backward(&saved.unwrap(), &probe[r * t * h..(r + 1) * t * h], t, w);
            for (a, o) in g.input.iter().zip(&grads.input[r * t * d..(r + 1) * t * d]) {
                assert!((a - o).abs() < 1e-4, "row {r} input grad: {a} vs {o}");
            }
            for (acc, v) in w_hidden_sum.iter_mut().zip(&g.w_hidden) {
                *acc += f64::from(*v);
            }
        }
        for (a, o) in w_hidden_sum.iter().zip(&grads.w_hidden) {
            assert!((a - f64::from(*o)).abs() < 1e-3, "w_hidden grad: {a} vs {o}");
        }
    }

    /// `infer` hands each row the same hidden states as `forward`, in both directions, with its
    /// steps split over the threads (a batch large enough to split) and on the calling thread.
    #[test]
    fn infer_visits_the_states_of_forward_split_or_not() {
        let (d, h, t) = (4usize, 96usize, 6usize);
        let lengths: Vec<usize> = (0..90).map(|r| 1 + (r * 7) % t).collect();
        assert!(lengths.len() * h >= PARALLEL_FROM, "large enough for its steps to split over the threads");
        let b = lengths.len();
        let (w_input, w_hidden, bias) = (random(d * 4 * h, 12), random(h * 4 * h, 13), random(4 * h, 14));
        let w = Weights { w_input: &w_input, w_hidden: &w_hidden, bias: &bias, d, h };
        let input = random(b * t * d, 16);
        for reverse in [false, true] {
            let (want, _) = forward(&input, &lengths, t, w, reverse, false);
            let packing = Packing::new(&lengths, reverse);
            let mut gates0 = vec![0f32; packing.total * 4 * h];
            packing.for_each(|p, row, time| {
                let x = &input[(row * t + time) * d..(row * t + time + 1) * d];
                for (g, col) in gates0[p * 4 * h..(p + 1) * 4 * h].iter_mut().zip(0..) {
                    *g = bias[col] + (0..d).map(|k| x[k] * w_input[k * 4 * h + col]).sum::<f32>();
                }
            });
            for parallel in [true, false] {
                let mut gates = gates0.clone();
                let mut seen = 0;
                infer(&packing, &mut gates, &w_hidden, h, parallel, |s, n, hidden| {
                    assert_eq!(n, packing.steps[s].1);
                    for r in 0..n {
                        let (row, time) = (packing.order[r], packing.position(r, s));
                        let want = &want[(row * t + time) * h..(row * t + time + 1) * h];
                        for (g, w) in hidden[r * h..(r + 1) * h].iter().zip(want) {
                            assert!((g - w).abs() < 1e-5, "reverse={reverse} parallel={parallel} row {row} step {s}: {g} vs {w}");
                        }
                        seen += 1;
                    }
                });
                assert_eq!(seen, lengths.iter().sum::<usize>());
            }
        }
    }

    #[test]
    fn padding_and_batch_order_do_not_change_a_row() {
        let (d, h) = (3usize, 5usize);
        let w_input = random(d * 4 * h, 2);
        let w_hidden = random(h * 4 * h, 3);
        let bias = random(4 * h, 4);
        let w = Weights { w_input: &w_input, w_hidden: &w_hidden, bias: &bias, d, h };
        let sentence = random(3 * d, 9);
        let (alone, _) = forward(&sentence, &[3], 3, w, false, false);
        // The same sentence padded to 7 steps, second in a batch behind a longer row.
        let t = 7;
        let mut input = random(2 * t * d, 10);
        input[t * d..(t + 3) * d].copy_from_slice(&sentence);
        let (out, _) = forward(&input, &[6, 3], t, w, false, false);
        assert_eq!(&out[t * h..(t + 3) * h], &alone[..]);
        assert!(out[(t + 3) * h..2 * t * h].iter().all(|&v| v == 0.0));
    }
}
