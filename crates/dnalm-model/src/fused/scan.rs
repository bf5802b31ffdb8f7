//! One direction of a Mamba mixer as two operations with hand-written backward passes, on burn
//! Flex (CPU): the causal depthwise convolution with its SiLU, and the selective scan with its
//! step-size softplus and its output gate. The projections between them stay burn matrix
//! products.
//!
//! The scan, for every row and channel `i` (state size `n`), with `A = -exp(A_log)`:
//!
//! ```text
//! delta_t,i = softplus(dt_t,i + dt_bias_i) * keep_t           (keep: 0 at padding)
//! h_t = exp(delta_t,i A_i) * h_(t-1) + delta_t,i u_t,i B_t      (h: n values per channel)
//! y_t,i = (<h_t, C_t> + D_i u_t,i) * silu(z_t,i)
//! ```
//!
//! and a reverse scan runs the same recurrence from the last position to the first (Caduceus'
//! reverse Mamba, without flipping any tensor).
//!
//! Why hand-written: as burn operations the scan is a loop of about eight tensor operations per
//! position (every position depends on the one before) and autodiff keeps every state; around it
//! the convolution, softplus, gate and flips are another ~25 element-wise operations per
//! direction, each a fresh buffer kept for the backward pass (measured: a 6-layer d = 256
//! Caduceus held ~1 MB per token in training, and element-wise operations, `expf` and strided
//! copies took about half a step, `perf`). Here the scan is one pass per (row, block of 64
//! channels), parallel over the blocks with rayon and vectorised over the channels of a block
//! (AVX-512/AVX2 chosen at run time, [`super::rows`]), with [`fast_exp`] for the decays. The
//! forward pass keeps only the state every [`CHECKPOINT_EVERY`] positions; the backward pass
//! recomputes one such stretch at a time and runs the adjoint recurrence backwards through it
//! (`g_(t-1) = exp(delta_t A) g_t + C_(t-1) dy_(t-1)`), so memory is linear in the length and
//! small. The convolution's backward recomputes its pre-activation instead of keeping it.
//!
//! Layouts: `u`, `dt`, `z`, `y`: `[rows, len, channels]`; `A_log`: `[channels, n]`; `B`, `C`:
//! `[rows, len, n]`; `D`, `dt_bias`: `[channels]`; `keep`: `[rows, len]`; row-major f32.

// `multiversion!` calls `#[target_feature]` functions behind run-time feature checks.
#![allow(unsafe_code)]

use std::{ops::Range, sync::Arc};

use burn::{
    backend::{
        autodiff::{
            checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
            grads::Gradients,
            ops::{Backward, Ops, OpsKind},
            Autodiff,
        },
        backend_extension,
        flex::FlexTensor,
        tensor::FloatTensor,
        Backend, Dispatch, Flex, TensorMetadata,
    },
    tensor::Tensor,
};
use rayon::prelude::*;

use super::rows::{fast_exp, lane_sum3, multiversion};
use super::{flex_tensor, host, register_gradients};

/// Positions between the states the forward pass keeps for the backward pass.
pub const CHECKPOINT_EVERY: usize = 32;
/// Channels per task: one task scans one row's block of channels.
const CHANNEL_BLOCK: usize = 64;

/// Shapes of one scan or convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanDims {
    /// Sequences.
    pub rows: usize,
    /// Positions per sequence.
    pub len: usize,
    /// Channels (Mamba's inner width).
    pub channels: usize,
    /// State size per channel (the convolution's width, for the convolution).
    pub state: usize,
    /// Whether the recurrence runs from the last position to the first.
    pub reverse: bool,
}

/// The inputs of one scan, as host slices (layouts in the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct ScanInputs<'a> {
    /// Input `u`.
    pub u: &'a [f32],
    /// Step sizes before the bias and the softplus.
    pub dt: &'a [f32],
    /// Step-size bias.
    pub dt_bias: &'a [f32],
    /// `log(-A)`.
    pub a_log: &'a [f32],
    /// Input projection of the state, per position.
    pub b: &'a [f32],
    /// Output projection of the state, per position.
    pub c: &'a [f32],
    /// Skip weight per channel.
    pub d: &'a [f32],
    /// The gate, before its SiLU.
    pub z: &'a [f32],
    /// 1 at real positions, 0 at padding (`[rows, len]`).
    pub keep: &'a [f32],
}

/// The gradients of a scan with respect to its inputs (same layouts; `keep` is a constant).
#[derive(Debug, Clone, PartialEq)]
pub struct ScanGrads {
    /// d/d`u`.
    pub u: Vec<f32>,
    /// d/d`dt`.
    pub dt: Vec<f32>,
    /// d/d`dt_bias`.
    pub dt_bias: Vec<f32>,
    /// d/d`A_log`.
    pub a_log: Vec<f32>,
    /// d/d`B`.
    pub b: Vec<f32>,
    /// d/d`C`.
    pub c: Vec<f32>,
    /// d/d`D`.
    pub d: Vec<f32>,
    /// d/d`z`.
    pub z: Vec<f32>,
}

/// The states a forward pass kept: per task (row-major over rows, then channel blocks), the
/// state before every [`CHECKPOINT_EVERY`]-th step, `[state][block channels]` each.
#[derive(Debug, Clone)]
pub struct ScanCheckpoints(Vec<Vec<f32>>);

#[derive(Debug, Clone)]
struct Task {
    row: usize,
    channels: Range<usize>,
}

impl ScanDims {
    fn tasks(&self) -> Vec<Task> {
        let blocks = self.channels.div_ceil(CHANNEL_BLOCK);
        (0..self.rows)
            .flat_map(|row| {
                (0..blocks).map(move |k| Task {
                    row,
                    channels: k * CHANNEL_BLOCK..((k + 1) * CHANNEL_BLOCK).min(self.channels),
                })
            })
            .collect()
    }

    /// The position of step `k` (steps run backwards in a reverse scan).
    fn position(&self, k: usize) -> usize {
        if self.reverse {
            self.len - 1 - k
        } else {
            k
        }
    }

    fn check(&self, x: &ScanInputs<'_>) {
        let tokens = self.rows * self.len;
        let wide = tokens * self.channels;
        assert_eq!(x.u.len(), wide, "u is [rows, len, channels]");
        assert_eq!(x.dt.len(), wide, "dt is [rows, len, channels]");
        assert_eq!(x.z.len(), wide, "z is [rows, len, channels]");
        assert_eq!(
            x.a_log.len(),
            self.channels * self.state,
            "A_log is [channels, state]"
        );
        assert_eq!(x.b.len(), tokens * self.state, "B is [rows, len, state]");
        assert_eq!(x.c.len(), x.b.len(), "C is [rows, len, state]");
        assert_eq!(x.d.len(), self.channels, "D is [channels]");
        assert_eq!(x.dt_bias.len(), self.channels, "dt_bias is [channels]");
        assert_eq!(x.keep.len(), tokens, "keep is [rows, len]");
    }
}

/// `A = -exp(A_log)` of a block of channels, transposed to `[state][block channels]`, so that
/// the inner loops run over contiguous channels.
fn block_a(a_log: &[f32], state: usize, channels: &Range<usize>) -> Vec<f32> {
    let cb = channels.len();
    let mut out = vec![0.0; state * cb];
    for (i, c) in channels.clone().enumerate() {
        for s in 0..state {
            out[s * cb + i] = -a_log[c * state + s].exp();
        }
    }
    out
}

/// `ln(1 + y)` for `y` in `[0, 1]`, branch-free (the libm call took a sixth of a Caduceus
/// training step, `perf`): `2 atanh(t)` with `t = y / (2 + y)` in `[0, 1/3]`, by its series to
/// `t^13` (relative error below 2e-7); exact for small `y`, where `1 + y` would round.
#[inline(always)]
fn ln_1p_unit(y: f32) -> f32 {
    let t = y / (2.0 + y);
    let t2 = t * t;
    let mut p = 1.0 / 13.0;
    p = p * t2 + 1.0 / 11.0;
    p = p * t2 + 1.0 / 9.0;
    p = p * t2 + 1.0 / 7.0;
    p = p * t2 + 1.0 / 5.0;
    p = p * t2 + 1.0 / 3.0;
    2.0 * t * (p * t2 + 1.0)
}

/// `softplus(x) = ln(1 + e^x)` without overflow, and its derivative `sigmoid(x)`; branch-free.
#[inline(always)]
fn softplus_and_sigmoid(x: f32) -> (f32, f32) {
    let e = fast_exp(-x.abs());
    let s = 1.0 / (1.0 + e);
    let sigmoid = if x >= 0.0 { s } else { 1.0 - s };
    (x.max(0.0) + ln_1p_unit(e), sigmoid)
}

/// `sigmoid(z)`, computed without overflow; branch-free.
#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    let s = 1.0 / (1.0 + fast_exp(-z.abs()));
    if z >= 0.0 {
        s
    } else {
        1.0 - s
    }
}

multiversion! {
    /// One position's step sizes `softplus(dt + bias) * keep` and slopes `sigmoid(.) * keep`.
    fn step_sizes_row(dt: &[f32], bias: &[f32], keep: f32, delta: &mut [f32], slope: Option<&mut [f32]>) {
        let n = dt.len().min(bias.len()).min(delta.len());
        let (dt, bias, delta) = (&dt[..n], &bias[..n], &mut delta[..n]);
        match slope {
            Some(slope) => {
                let slope = &mut slope[..n];
                for i in 0..n {
                    let (sp, sg) = softplus_and_sigmoid(dt[i] + bias[i]);
                    delta[i] = sp * keep;
                    slope[i] = sg * keep;
                }
            }
            None => {
                for i in 0..n {
                    delta[i] = softplus_and_sigmoid(dt[i] + bias[i]).0 * keep;
                }
            }
        }
    }
}

/// One task's step sizes `[len][cb]` (by position) and, when `slopes`, the softplus slopes.
fn step_sizes(
    dims: ScanDims,
    x: &ScanInputs<'_>,
    task: &Task,
    slopes: bool,
) -> (Vec<f32>, Vec<f32>) {
    let (len, channels) = (dims.len, dims.channels);
    let cb = task.channels.len();
    let bias = &x.dt_bias[task.channels.clone()];
    let mut delta = vec![0.0; len * cb];
    let mut slope = if slopes {
        vec![0.0; len * cb]
    } else {
        Vec::new()
    };
    for t in 0..len {
        let token = task.row * len + t;
        let at = token * channels + task.channels.start;
        let span = t * cb..(t + 1) * cb;
        step_sizes_row(
            &x.dt[at..at + cb],
            bias,
            x.keep[token],
            &mut delta[span.clone()],
            slopes.then(|| &mut slope[span]),
        );
    }
    (delta, slope)
}

multiversion! {
    /// The gate's backward at one position: `gy = g silu(z)`, `gz = g y silu'(z)`.
    fn gate_backward_row(g: &[f32], z: &[f32], ungated: &[f32], gy: &mut [f32], gz: &mut [f32]) {
        let n = g.len().min(z.len()).min(ungated.len()).min(gy.len()).min(gz.len());
        for i in 0..n {
            let s = sigmoid(z[i]);
            gy[i] = g[i] * z[i] * s;
            gz[i] = g[i] * ungated[i] * s * (1.0 + z[i] * (1.0 - s));
        }
    }
}

multiversion! {
    /// The gate at one position, in place: `y *= silu(z)`.
    fn gate_row(y: &mut [f32], z: &[f32]) {
        for (v, &z) in y.iter_mut().zip(z) {
            *v *= z * sigmoid(z);
        }
    }
}

/// One position's slices of one block: `A` (`[state][cb]`), the step sizes, inputs and skip
/// weights of its channels (`[cb]`), and the position's `B` and `C` (`[state]`).
#[derive(Clone, Copy)]
struct StepInputs<'a> {
    a_t: &'a [f32],
    delta: &'a [f32],
    u: &'a [f32],
    b: &'a [f32],
    c: &'a [f32],
    d: &'a [f32],
}

multiversion! {
    /// One position of one block: updates the states `h` (`[state][cb]`) and writes the
    /// ungated output `y` (`[cb]`); `du` is scratch.
    fn forward_step(h: &mut [f32], x: StepInputs<'_>, du: &mut [f32], y: &mut [f32]) {
        let StepInputs { a_t, delta, u, b, c, d } = x;
        let cb = delta.len();
        let (u, d, du, y) = (&u[..cb], &d[..cb], &mut du[..cb], &mut y[..cb]);
        for i in 0..cb {
            du[i] = delta[i] * u[i];
            y[i] = d[i] * u[i];
        }
        for (s, (&bs, &cs)) in b.iter().zip(c).enumerate() {
            let hs = &mut h[s * cb..(s + 1) * cb];
            let a_s = &a_t[s * cb..(s + 1) * cb];
            for ((((hv, &av), &dv), &duv), yv) in
                hs.iter_mut().zip(a_s).zip(delta).zip(du.iter()).zip(y.iter_mut())
            {
                let e = fast_exp(dv * av);
                *hv = e * *hv + duv * bs;
                *yv += *hv * cs;
            }
        }
    }
}

/// Per-position slices of one block's gradients.
struct StepGrads<'a> {
    u: &'a mut [f32],
    delta: &'a mut [f32],
    b: &'a mut [f32],
    c: &'a mut [f32],
}

/// One block's gradients summed over positions: `A` (`[state][cb]`) and `D` (`[cb]`).
struct BlockSums<'a> {
    a: &'a mut [f32],
    d: &'a mut [f32],
}

/// Scratch of one block (`[cb]` each).
struct Scratch {
    du: Vec<f32>,
    gg: Vec<f32>,
}

multiversion! {
    /// One position of the adjoint recurrence: `g` (`[state][cb]`) enters as the gradient
    /// reaching `h_t` from later steps and leaves as the one reaching the previous step's;
    /// `states` are the previous step's and this step's; `gy` is the gradient of the ungated
    /// output.
    fn backward_step(
        g: &mut [f32],
        states: (&[f32], &[f32]),
        x: StepInputs<'_>,
        gy: &[f32],
        out: StepGrads<'_>,
        sums: BlockSums<'_>,
        scratch: &mut Scratch,
    ) {
        let StepInputs { a_t, delta, u, b, c, d } = x;
        let (h_prev, h_cur) = states;
        let cb = delta.len();
        let (u, gy, d) = (&u[..cb], &gy[..cb], &d[..cb]);
        let (du, gg) = (&mut scratch.du[..cb], &mut scratch.gg[..cb]);
        let (gu, gdelta, gd) = (&mut out.u[..cb], &mut out.delta[..cb], &mut sums.d[..cb]);
        for i in 0..cb {
            du[i] = delta[i] * u[i];
            gu[i] = d[i] * gy[i];
            gd[i] += gy[i] * u[i];
            gdelta[i] = 0.0;
        }
        for (s, (&bs, &cs)) in b.iter().zip(c).enumerate() {
            let span = s * cb..(s + 1) * cb;
            out.c[s] += lane_sum3(gy, &h_cur[span.clone()], gy, |x, h, _| x * h);
            for ((ggv, &gv), &gyv) in gg.iter_mut().zip(&g[span.clone()]).zip(gy) {
                *ggv = gv + gyv * cs;
            }
            out.b[s] += lane_sum3(gg, du, gg, |x, y, _| x * y);
            let (gs, hp, a_s, ga_s) = (
                &mut g[span.clone()],
                &h_prev[span.clone()],
                &a_t[span.clone()],
                &mut sums.a[span],
            );
            for i in 0..cb {
                let e = fast_exp(delta[i] * a_s[i]);
                let ga_i = gg[i] * hp[i] * e;
                gdelta[i] += ga_i * a_s[i] + gg[i] * u[i] * bs;
                ga_s[i] += ga_i * delta[i];
                gu[i] += gg[i] * delta[i] * bs;
                gs[i] = gg[i] * e;
            }
        }
    }
}

impl<'a> ScanInputs<'a> {
    /// The slices of position `t` for `task`'s block (`a_t`: the block's transposed `A`;
    /// `delta`: its step sizes by position).
    fn step(
        &self,
        dims: ScanDims,
        task: &Task,
        t: usize,
        a_t: &'a [f32],
        delta: &'a [f32],
    ) -> StepInputs<'a> {
        let n = dims.state;
        let token = task.row * dims.len + t;
        let at = token * dims.channels + task.channels.start;
        let cb = task.channels.len();
        StepInputs {
            a_t,
            delta: &delta[t * cb..(t + 1) * cb],
            u: &self.u[at..at + cb],
            b: &self.b[token * n..(token + 1) * n],
            c: &self.c[token * n..(token + 1) * n],
            d: &self.d[task.channels.clone()],
        }
    }
}

/// The scan's output (and, when `save`, the states the backward pass needs).
pub fn forward(
    dims: ScanDims,
    x: &ScanInputs<'_>,
    save: bool,
) -> (Vec<f32>, Option<ScanCheckpoints>) {
    dims.check(x);
    let (len, n, channels) = (dims.len, dims.state, dims.channels);
    let tasks = dims.tasks();
    let results: Vec<(Vec<f32>, Vec<f32>)> = tasks
        .par_iter()
        .map(|task| {
            let cb = task.channels.len();
            let a_t = block_a(x.a_log, n, &task.channels);
            let (delta, _) = step_sizes(dims, x, task, false);
            let mut h = vec![0.0; n * cb];
            let mut du = vec![0.0; cb];
            let mut y = vec![0.0; len * cb];
            let mut kept = Vec::new();
            if save {
                kept.reserve(len.div_ceil(CHECKPOINT_EVERY) * n * cb);
            }
            for k in 0..len {
                if save && k % CHECKPOINT_EVERY == 0 {
                    kept.extend_from_slice(&h);
                }
                let t = dims.position(k);
                let step = x.step(dims, task, t, &a_t, &delta);
                let out = &mut y[t * cb..(t + 1) * cb];
                forward_step(&mut h, step, &mut du, out);
                let at = (task.row * len + t) * channels + task.channels.start;
                gate_row(out, &x.z[at..at + cb]);
            }
            (y, kept)
        })
        .collect();
    let mut y = vec![0.0; dims.rows * len * channels];
    let mut kept = Vec::with_capacity(tasks.len());
    for (task, (local, states)) in tasks.iter().zip(results) {
        let cb = task.channels.len();
        for t in 0..len {
            let at = (task.row * len + t) * channels + task.channels.start;
            y[at..at + cb].copy_from_slice(&local[t * cb..(t + 1) * cb]);
        }
        kept.push(states);
    }
    (y, save.then_some(ScanCheckpoints(kept)))
}

/// One task's gradients: `u`, `dt`, `z` (`[len][cb]`), `A_log` (`[state][cb]`), `D` and
/// `dt_bias` (`[cb]`), `B` and `C` (`[len][state]`, this block's share).
struct TaskGrads {
    u: Vec<f32>,
    dt: Vec<f32>,
    z: Vec<f32>,
    a: Vec<f32>,
    d: Vec<f32>,
    dt_bias: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

fn backward_task(
    dims: ScanDims,
    x: &ScanInputs<'_>,
    task: &Task,
    kept: &[f32],
    g_out: &[f32],
) -> TaskGrads {
    let (len, n, channels) = (dims.len, dims.state, dims.channels);
    let cb = task.channels.len();
    let width = n * cb;
    let a_t = block_a(x.a_log, n, &task.channels);
    let (delta, slope) = step_sizes(dims, x, task, true);
    let mut grads = TaskGrads {
        u: vec![0.0; len * cb],
        dt: vec![0.0; len * cb],
        z: vec![0.0; len * cb],
        a: vec![0.0; width],
        d: vec![0.0; cb],
        dt_bias: vec![0.0; cb],
        b: vec![0.0; len * n],
        c: vec![0.0; len * n],
    };
    let mut g = vec![0.0; width];
    let mut states = vec![0.0; (CHECKPOINT_EVERY + 1) * width];
    let mut ungated = vec![0.0; CHECKPOINT_EVERY * cb];
    let mut scratch = Scratch {
        du: vec![0.0; cb],
        gg: vec![0.0; cb],
    };
    let mut gy = vec![0.0; cb];
    let mut gdelta = vec![0.0; cb];
    for stretch in (0..len.div_ceil(CHECKPOINT_EVERY)).rev() {
        let k0 = stretch * CHECKPOINT_EVERY;
        let k1 = (k0 + CHECKPOINT_EVERY).min(len);
        states[..width].copy_from_slice(&kept[stretch * width..(stretch + 1) * width]);
        for k in k0..k1 {
            let j = k - k0;
            let (before, after) = states.split_at_mut((j + 1) * width);
            let h = &mut after[..width];
            h.copy_from_slice(&before[j * width..]);
            let step = x.step(dims, task, dims.position(k), &a_t, &delta);
            forward_step(h, step, &mut scratch.du, &mut ungated[j * cb..(j + 1) * cb]);
        }
        for k in (k0..k1).rev() {
            let j = k - k0;
            let t = dims.position(k);
            let at = (task.row * len + t) * channels + task.channels.start;
            // The gate: out = y * silu(z).
            gate_backward_row(
                &g_out[at..at + cb],
                &x.z[at..at + cb],
                &ungated[j * cb..(j + 1) * cb],
                &mut gy,
                &mut grads.z[t * cb..(t + 1) * cb],
            );
            let step = StepGrads {
                u: &mut grads.u[t * cb..(t + 1) * cb],
                delta: &mut gdelta,
                b: &mut grads.b[t * n..(t + 1) * n],
                c: &mut grads.c[t * n..(t + 1) * n],
            };
            backward_step(
                &mut g,
                (
                    &states[j * width..(j + 1) * width],
                    &states[(j + 1) * width..(j + 2) * width],
                ),
                x.step(dims, task, t, &a_t, &delta),
                &gy,
                step,
                BlockSums {
                    a: &mut grads.a,
                    d: &mut grads.d,
                },
                &mut scratch,
            );
            // The step size: delta = softplus(dt + bias) * keep.
            for i in 0..cb {
                let gdt = gdelta[i] * slope[t * cb + i];
                grads.dt[t * cb + i] = gdt;
                grads.dt_bias[i] += gdt;
            }
        }
    }
    // A = -exp(A_log): dA/dA_log = A.
    for (ga, &a) in grads.a.iter_mut().zip(&a_t) {
        *ga *= a;
    }
    grads
}

/// The gradients of the scan given the output gradient `g_out` (`[rows, len, channels]`).
pub fn backward(
    dims: ScanDims,
    x: &ScanInputs<'_>,
    kept: &ScanCheckpoints,
    g_out: &[f32],
) -> ScanGrads {
    dims.check(x);
    let (len, n, channels) = (dims.len, dims.state, dims.channels);
    let tasks = dims.tasks();
    let results: Vec<TaskGrads> = tasks
        .par_iter()
        .zip(kept.0.par_iter())
        .map(|(task, kept)| backward_task(dims, x, task, kept, g_out))
        .collect();
    let wide = x.u.len();
    let mut out = ScanGrads {
        u: vec![0.0; wide],
        dt: vec![0.0; wide],
        dt_bias: vec![0.0; channels],
        a_log: vec![0.0; x.a_log.len()],
        b: vec![0.0; x.b.len()],
        c: vec![0.0; x.c.len()],
        d: vec![0.0; channels],
        z: vec![0.0; wide],
    };
    for (task, local) in tasks.iter().zip(results) {
        let cb = task.channels.len();
        for t in 0..len {
            let at = (task.row * len + t) * channels + task.channels.start;
            let span = t * cb..(t + 1) * cb;
            out.u[at..at + cb].copy_from_slice(&local.u[span.clone()]);
            out.dt[at..at + cb].copy_from_slice(&local.dt[span.clone()]);
            out.z[at..at + cb].copy_from_slice(&local.z[span]);
            let token = (task.row * len + t) * n;
            for s in 0..n {
                out.b[token + s] += local.b[t * n + s];
                out.c[token + s] += local.c[t * n + s];
            }
        }
        for (i, c) in task.channels.clone().enumerate() {
            out.d[c] += local.d[i];
            out.dt_bias[c] += local.dt_bias[i];
            for s in 0..n {
                out.a_log[c * n + s] += local.a[s * cb + i];
            }
        }
    }
    out
}

/// `[width][channels]` from `[channels, width]`, so that the convolution's inner loops run
/// over contiguous channels.
fn taps_by_offset(w: &[f32], channels: usize, width: usize) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    for c in 0..channels {
        for j in 0..width {
            out[j * channels + c] = w[c * width + j];
        }
    }
    out
}

multiversion! {
    /// `acc += w * v` over a row of channels.
    fn multiply_add_row(acc: &mut [f32], w: &[f32], v: &[f32]) {
        for ((a, &w), &v) in acc.iter_mut().zip(w).zip(v) {
            *a += w * v;
        }
    }
}

multiversion! {
    /// `row = silu(row)` in place.
    fn silu_row(row: &mut [f32]) {
        for o in row.iter_mut() {
            *o *= sigmoid(*o);
        }
    }
}

multiversion! {
    /// The SiLU's backward over a row: `pre` (the pre-activation) becomes `g silu'(pre)`,
    /// which is also added to the bias gradient `gb`.
    fn silu_backward_row(pre: &mut [f32], g: &[f32], gb: &mut [f32]) {
        for ((p, &g), b) in pre.iter_mut().zip(g).zip(gb.iter_mut()) {
            let s = sigmoid(*p);
            *p = g * s * (1.0 + *p * (1.0 - s));
            *b += *p;
        }
    }
}

multiversion! {
    /// One tap's backward over a row: `gx += gp * w`, `gw += gp * x`.
    fn tap_backward_row(gp: &[f32], w: &[f32], x: &[f32], gx: &mut [f32], gw: &mut [f32]) {
        for ((((&g, &w), &x), gx), gw) in gp.iter().zip(w).zip(x).zip(gx.iter_mut()).zip(gw.iter_mut()) {
            *gx += g * w;
            *gw += g * x;
        }
    }
}

/// `silu(bias + sum_j w[j] x[t - (K-1) + j])` per channel, or, reversed,
/// `silu(bias + sum_j w[j] x[t + (K-1) - j])`: Mamba's causal depthwise convolution (on the
/// reversed sequence, read back in the original order).
pub fn conv_forward(dims: ScanDims, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
    let (len, channels, width) = (dims.len, dims.channels, dims.state);
    let taps = taps_by_offset(w, channels, width);
    let mut out = vec![0.0; x.len()];
    out.par_chunks_mut(channels)
        .enumerate()
        .for_each(|(token, row)| {
            let (r, t) = (token / len, token % len);
            let x = &x[r * len * channels..(r + 1) * len * channels];
            row.copy_from_slice(bias);
            for j in 0..width {
                let Some(s) = conv_source(dims, t, j) else {
                    continue;
                };
                multiply_add_row(
                    row,
                    &taps[j * channels..(j + 1) * channels],
                    &x[s * channels..(s + 1) * channels],
                );
            }
            silu_row(row);
        });
    out
}

/// The position tap `j` of position `t` reads, if inside the sequence.
fn conv_source(dims: ScanDims, t: usize, j: usize) -> Option<usize> {
    let back = dims.state - 1 - j;
    if dims.reverse {
        Some(t + back).filter(|&s| s < dims.len)
    } else {
        t.checked_sub(back)
    }
}

/// One stretch's share of the convolution's gradients: the first token it touches, and its
/// input, tap (`[width][channels]`) and bias gradients.
type ConvPiece = (usize, Vec<f32>, Vec<f32>, Vec<f32>);

/// Gradients of [`conv_forward`]: input, weights `[channels, width]`, bias.
pub fn conv_backward(
    dims: ScanDims,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    g_out: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (len, channels, width) = (dims.len, dims.channels, dims.state);
    let taps = taps_by_offset(w, channels, width);
    // Rows in parallel, and each row in stretches, so that two threads share even one row.
    let stretch = 256;
    let pieces: Vec<(usize, usize)> = (0..dims.rows)
        .flat_map(|r| (0..len.div_ceil(stretch)).map(move |k| (r, k)))
        .collect();
    let per_piece: Vec<ConvPiece> = pieces
        .par_iter()
        .map(|&(r, k)| {
            let x = &x[r * len * channels..(r + 1) * len * channels];
            let g_out = &g_out[r * len * channels..(r + 1) * len * channels];
            let (t0, t1) = (k * stretch, ((k + 1) * stretch).min(len));
            // Input gradients of positions t0 - (width - 1) ..= t1 - 1 + (width - 1).
            let lo = t0.saturating_sub(width - 1);
            let hi = (t1 + width - 1).min(len);
            let mut gx = vec![0.0; (hi - lo) * channels];
            let mut gw = vec![0.0; width * channels];
            let mut gb = vec![0.0; channels];
            let mut pre = vec![0.0; channels];
            for t in t0..t1 {
                pre.copy_from_slice(bias);
                for j in 0..width {
                    let Some(s) = conv_source(dims, t, j) else {
                        continue;
                    };
                    multiply_add_row(
                        &mut pre,
                        &taps[j * channels..(j + 1) * channels],
                        &x[s * channels..(s + 1) * channels],
                    );
                }
                silu_backward_row(&mut pre, &g_out[t * channels..(t + 1) * channels], &mut gb);
                for j in 0..width {
                    let Some(s) = conv_source(dims, t, j) else {
                        continue;
                    };
                    tap_backward_row(
                        &pre,
                        &taps[j * channels..(j + 1) * channels],
                        &x[s * channels..(s + 1) * channels],
                        &mut gx[(s - lo) * channels..(s - lo + 1) * channels],
                        &mut gw[j * channels..(j + 1) * channels],
                    );
                }
            }
            (r * len + lo, gx, gw, gb)
        })
        .collect();
    let mut gx = vec![0.0; x.len()];
    let mut gw_taps = vec![0.0; channels * width];
    let mut gb = vec![0.0; channels];
    for (start, px, pw, pb) in per_piece {
        gx[start * channels..start * channels + px.len()]
            .iter_mut()
            .zip(&px)
            .for_each(|(a, b)| *a += b);
        gw_taps.iter_mut().zip(&pw).for_each(|(a, b)| *a += b);
        gb.iter_mut().zip(&pb).for_each(|(a, b)| *a += b);
    }
    // Back to [channels, width].
    let mut gw = vec![0.0; channels * width];
    for j in 0..width {
        for c in 0..channels {
            gw[c * width + j] = gw_taps[j * channels + c];
        }
    }
    (gx, gw, gb)
}

/// One Mamba direction's two fused operations as burn backend operations.
#[backend_extension(Flex, Autodiff)]
pub trait MambaOps: Backend {
    /// `silu(causal depthwise convolution of x)` (reversed: anti-causal).
    fn fused_conv_silu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        reverse: bool,
    ) -> FloatTensor<Self>;

    /// The gated selective scan (module documentation); `keep` is a constant.
    #[allow(clippy::too_many_arguments)]
    fn fused_selective_scan(
        u: FloatTensor<Self>,
        dt: FloatTensor<Self>,
        dt_bias: FloatTensor<Self>,
        a_log: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
        z: FloatTensor<Self>,
        keep: FloatTensor<Self>,
        reverse: bool,
    ) -> FloatTensor<Self>;
}

/// The causal depthwise convolution and SiLU of one Mamba direction, as one operation.
///
/// # Shapes
/// - `x`, output: `[rows, len, channels]`; `weight`: `[channels, width]`; `bias`: `[channels]`
pub(crate) fn conv_silu(
    x: Tensor<3>,
    weight: Tensor<2>,
    bias: Tensor<1>,
    reverse: bool,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as MambaOps>::fused_conv_silu(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        reverse,
    ))
}

/// The tensors of one gated selective scan (shapes in the module documentation).
pub(crate) struct ScanTensors {
    pub u: Tensor<3>,
    pub dt: Tensor<3>,
    pub dt_bias: Tensor<1>,
    pub a_log: Tensor<2>,
    pub b: Tensor<3>,
    pub c: Tensor<3>,
    pub d: Tensor<1>,
    pub z: Tensor<3>,
    /// `[rows, len]`.
    pub keep: Tensor<2>,
}

/// The gated selective scan of one Mamba direction, as one operation (differentiable when an
/// input tracks gradients).
pub(crate) fn selective_scan(t: ScanTensors, reverse: bool) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as MambaOps>::fused_selective_scan(
        t.u.into_dispatch(),
        t.dt.into_dispatch(),
        t.dt_bias.into_dispatch(),
        t.a_log.into_dispatch(),
        t.b.into_dispatch(),
        t.c.into_dispatch(),
        t.d.into_dispatch(),
        t.z.into_dispatch(),
        t.keep.into_dispatch(),
        reverse,
    ))
}

/// The scan's tensors in [`MambaOps::fused_selective_scan`] order (the constant `keep` last).
type ScanArgs = [FlexTensor; 9];

fn scan_dims(args: &ScanArgs, reverse: bool) -> ScanDims {
    let (us, a) = (args[0].shape().to_vec(), args[3].shape().to_vec());
    ScanDims {
        rows: us[0],
        len: us[1],
        channels: us[2],
        state: a[1],
        reverse,
    }
}

fn with_host<R>(args: &ScanArgs, f: impl FnOnce(&ScanInputs<'_>) -> R) -> R {
    let h: Vec<_> = args.iter().map(host).collect();
    f(&ScanInputs {
        u: &h[0],
        dt: &h[1],
        dt_bias: &h[2],
        a_log: &h[3],
        b: &h[4],
        c: &h[5],
        d: &h[6],
        z: &h[7],
        keep: &h[8],
    })
}

fn scan_forward(
    args: &ScanArgs,
    reverse: bool,
    save: bool,
) -> (FlexTensor, Option<ScanCheckpoints>) {
    let dims = scan_dims(args, reverse);
    let (y, kept) = with_host(args, |x| forward(dims, x, save));
    (flex_tensor(y, args[0].shape().to_vec()), kept)
}

fn conv_dims(x: &FlexTensor, w: &FlexTensor, reverse: bool) -> ScanDims {
    let (xs, ws) = (x.shape().to_vec(), w.shape().to_vec());
    ScanDims {
        rows: xs[0],
        len: xs[1],
        channels: xs[2],
        state: ws[1],
        reverse,
    }
}

fn conv_run(x: &FlexTensor, w: &FlexTensor, b: &FlexTensor, reverse: bool) -> FlexTensor {
    let dims = conv_dims(x, w, reverse);
    let out = conv_forward(dims, &host(x), &host(w), &host(b));
    flex_tensor(out, x.shape().to_vec())
}

impl MambaOps for Flex {
    fn fused_conv_silu(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        reverse: bool,
    ) -> FlexTensor {
        conv_run(&x, &weight, &bias, reverse)
    }

    fn fused_selective_scan(
        u: FlexTensor,
        dt: FlexTensor,
        dt_bias: FlexTensor,
        a_log: FlexTensor,
        b: FlexTensor,
        c: FlexTensor,
        d: FlexTensor,
        z: FlexTensor,
        keep: FlexTensor,
        reverse: bool,
    ) -> FlexTensor {
        scan_forward(&[u, dt, dt_bias, a_log, b, c, d, z, keep], reverse, false).0
    }
}

/// The autodiff node of one convolution: three parents (input, weights, bias).
#[derive(Debug)]
struct ConvBackward;

#[derive(Debug, Clone)]
struct ConvState {
    inputs: Arc<[FlexTensor; 3]>,
    reverse: bool,
}

impl Backward<Flex, 3> for ConvBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let state = ops.state;
        let grad_out = grads.consume::<Flex>(&ops.node);
        let [x, w, b] = &*state.inputs;
        let dims = conv_dims(x, w, state.reverse);
        let (gx, gw, gb) = conv_backward(dims, &host(x), &host(w), &host(b), &host(&grad_out));
        let parents = ops.parents.map(|p| p.map(|node| node.id));
        register_gradients(grads, parents, [gx, gw, gb], &*state.inputs);
    }
}

/// The autodiff node of one scan: eight parents (`u`, `dt`, `dt_bias`, `A_log`, `B`, `C`, `D`,
/// `z`).
#[derive(Debug)]
struct ScanBackward;

#[derive(Debug, Clone)]
struct ScanState {
    args: Arc<ScanArgs>,
    kept: Arc<ScanCheckpoints>,
    reverse: bool,
}

impl Backward<Flex, 8> for ScanBackward {
    type State = ScanState;

    fn backward(self, ops: Ops<Self::State, 8>, grads: &mut Gradients, _: &mut Checkpointer) {
        let state = ops.state;
        let grad_out = grads.consume::<Flex>(&ops.node);
        let args = &state.args;
        let dims = scan_dims(args, state.reverse);
        let g = with_host(args, |x| backward(dims, x, &state.kept, &host(&grad_out)));
        let values = [g.u, g.dt, g.dt_bias, g.a_log, g.b, g.c, g.d, g.z];
        let parents = ops.parents.map(|p| p.map(|node| node.id));
        register_gradients(grads, parents, values, &args[..8]);
    }
}

impl<C: CheckpointStrategy> MambaOps for Autodiff<Flex, C> {
    fn fused_conv_silu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        reverse: bool,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node(), bias.node()];
        let inputs = [x, weight, bias].map(|t| t.into_primitive());
        match ConvBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = conv_run(&inputs[0], &inputs[1], &inputs[2], reverse);
                let state = ConvState {
                    inputs: Arc::new(inputs),
                    reverse,
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(conv_run(&inputs[0], &inputs[1], &inputs[2], reverse))
            }
        }
    }

    fn fused_selective_scan(
        u: FloatTensor<Self>,
        dt: FloatTensor<Self>,
        dt_bias: FloatTensor<Self>,
        a_log: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
        z: FloatTensor<Self>,
        keep: FloatTensor<Self>,
        reverse: bool,
    ) -> FloatTensor<Self> {
        let nodes = [
            u.node(),
            dt.node(),
            dt_bias.node(),
            a_log.node(),
            b.node(),
            c.node(),
            d.node(),
            z.node(),
        ];
        // `keep` (padding) is a constant of the scan: no gradient flows to it.
        let args: ScanArgs = [u, dt, dt_bias, a_log, b, c, d, z, keep].map(|t| t.into_primitive());
        match ScanBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (out, kept) = scan_forward(&args, reverse, true);
                let state = ScanState {
                    args: Arc::new(args),
                    kept: Arc::new(kept.expect("kept when asked")),
                    reverse,
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(scan_forward(&args, reverse, false).0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small random problem, with step sizes and decays in Mamba's ranges and some padding.
    fn problem(dims: ScanDims, seed: u64) -> [Vec<f32>; 9] {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut draw = |n: usize, lo: f32, hi: f32| -> Vec<f32> {
            (0..n).map(|_| rng.random_range(lo..hi)).collect()
        };
        let tokens = dims.rows * dims.len;
        let wide = tokens * dims.channels;
        let mut keep = vec![1.0; tokens];
        keep[tokens - 3..].fill(0.0);
        [
            draw(wide, -1.0, 1.0),
            draw(wide, -3.0, 0.5),
            draw(dims.channels, -1.0, 0.0),
            draw(dims.channels * dims.state, -1.0, 1.0),
            draw(tokens * dims.state, -1.0, 1.0),
            draw(tokens * dims.state, -1.0, 1.0),
            draw(dims.channels, 0.5, 1.5),
            draw(wide, -2.0, 2.0),
            keep,
        ]
    }

    fn inputs(p: &[Vec<f32>; 9]) -> ScanInputs<'_> {
        ScanInputs {
            u: &p[0],
            dt: &p[1],
            dt_bias: &p[2],
            a_log: &p[3],
            b: &p[4],
            c: &p[5],
            d: &p[6],
            z: &p[7],
            keep: &p[8],
        }
    }

    /// The definition, position by position, in f64.
    fn direct(dims: ScanDims, x: &ScanInputs<'_>) -> Vec<f64> {
        let (len, ch, n) = (dims.len, dims.channels, dims.state);
        let mut y = vec![0.0; dims.rows * len * ch];
        for r in 0..dims.rows {
            for i in 0..ch {
                let mut h = vec![0.0f64; n];
                for k in 0..len {
                    let t = dims.position(k);
                    let token = r * len + t;
                    let pre = (x.dt[token * ch + i] + x.dt_bias[i]) as f64;
                    let dl = pre.exp().ln_1p() * x.keep[token] as f64;
                    let u = x.u[token * ch + i] as f64;
                    let mut acc = x.d[i] as f64 * u;
                    for (s, hs) in h.iter_mut().enumerate() {
                        let a = -(x.a_log[i * n + s] as f64).exp();
                        *hs = (dl * a).exp() * *hs + dl * u * x.b[token * n + s] as f64;
                        acc += *hs * x.c[token * n + s] as f64;
                    }
                    let z = x.z[token * ch + i] as f64;
                    y[token * ch + i] = acc * z / (1.0 + (-z).exp());
                }
            }
        }
        y
    }

    fn dims(reverse: bool) -> ScanDims {
        // 67 channels: one full block of 64 and a partial one; 37 positions: two stretches.
        ScanDims {
            rows: 2,
            len: 37,
            channels: 67,
            state: 3,
            reverse,
        }
    }

    #[test]
    fn the_scan_is_its_definition_both_ways() {
        for reverse in [false, true] {
            let dims = dims(reverse);
            let p = problem(dims, 1);
            let (y, kept) = forward(dims, &inputs(&p), true);
            let want = direct(dims, &inputs(&p));
            let worst = y
                .iter()
                .zip(&want)
                .map(|(&a, &b)| (a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-5, "reverse {reverse}: max |diff| {worst}");
            assert_eq!(kept.unwrap().0.len(), 4);
        }
    }

    /// Every gradient against central differences of `sum(w * y)` in f64, both directions.
    #[test]
    fn the_backward_pass_matches_finite_differences() {
        for reverse in [false, true] {
            let dims = dims(reverse);
            let p = problem(dims, 2);
            let weights: Vec<f32> = (0..p[0].len())
                .map(|k| ((k * 7919) % 13) as f32 / 13.0 - 0.5)
                .collect();
            let loss = |p: &[Vec<f32>; 9]| -> f64 {
                direct(dims, &inputs(p))
                    .iter()
                    .zip(&weights)
                    .map(|(&y, &w)| y * w as f64)
                    .sum()
            };
            let (_, kept) = forward(dims, &inputs(&p), true);
            let g = backward(dims, &inputs(&p), &kept.unwrap(), &weights);
            let analytic = [&g.u, &g.dt, &g.dt_bias, &g.a_log, &g.b, &g.c, &g.d, &g.z];
            for (which, grad) in analytic.iter().enumerate() {
                let n = p[which].len();
                for k in [0, 1, n / 3, n / 2, n - 66, n - 1] {
                    let h = 1e-2f32;
                    let mut plus = p.clone();
                    plus[which][k] += h;
                    let mut minus = p.clone();
                    minus[which][k] -= h;
                    let numeric = (loss(&plus) - loss(&minus)) / (2.0 * h as f64);
                    let got = grad[k] as f64;
                    assert!(
                        (got - numeric).abs() < 2e-3 * (1.0 + numeric.abs()),
                        "reverse {reverse}, input {which} entry {k}: analytic {got}, numeric {numeric}"
                    );
                }
            }
        }
    }

    /// The convolution and its gradients against the definition and central differences.
    #[test]
    fn the_convolution_matches_its_definition_and_gradients() {
        use rand::{Rng, SeedableRng};
        for reverse in [false, true] {
            // 300 positions: the backward pass's stretches of 256 meet inside the rows.
            let len = 300;
            let dims = ScanDims {
                rows: 2,
                len,
                channels: 5,
                state: 4,
                reverse,
            };
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
            let mut draw =
                |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
            let (x, w, b) = (draw(2 * len * 5), draw(5 * 4), draw(5));
            let weights = draw(2 * len * 5);
            let direct = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
                let mut total = 0.0;
                for r in 0..2 {
                    for t in 0..len {
                        for c in 0..5 {
                            let mut p = b[c] as f64;
                            for j in 0..4usize {
                                let back = 3 - j;
                                let s = if reverse {
                                    t + back
                                } else {
                                    t.wrapping_sub(back)
                                };
                                if s < len {
                                    p += w[c * 4 + j] as f64 * x[(r * len + s) * 5 + c] as f64;
                                }
                            }
                            let y = p / (1.0 + (-p).exp());
                            total += y * weights[(r * len + t) * 5 + c] as f64;
                        }
                    }
                }
                total
            };
            let y = conv_forward(dims, &x, &w, &b);
            let got: f64 = y
                .iter()
                .zip(&weights)
                .map(|(&y, &w)| y as f64 * w as f64)
                .sum();
            assert!((got - direct(&x, &w, &b)).abs() < 1e-4);
            let (gx, gw, gb) = conv_backward(dims, &x, &w, &b, &weights);
            let h = 1e-2f32;
            for (which, grad) in [&gx, &gw, &gb].into_iter().enumerate() {
                for k in [0, 5 * 255 + 2, 5 * 256 + 1, grad.len() / 2, grad.len() - 1]
                    .into_iter()
                    .filter(|&k| k < grad.len())
                {
                    let mut args = [x.clone(), w.clone(), b.clone()];
                    args[which][k] += h;
                    let plus = direct(&args[0], &args[1], &args[2]);
                    args[which][k] -= 2.0 * h;
                    let minus = direct(&args[0], &args[1], &args[2]);
                    let numeric = (plus - minus) / (2.0 * h as f64);
                    assert!(
                        (grad[k] as f64 - numeric).abs() < 2e-3 * (1.0 + numeric.abs()),
                        "reverse {reverse}, input {which} entry {k}: {} vs {numeric}",
                        grad[k]
                    );
                }
            }
        }
    }
}
