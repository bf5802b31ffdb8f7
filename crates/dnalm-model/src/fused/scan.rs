//! Mamba's selective scan as one operation with a hand-written backward pass, on burn Flex (CPU).
//!
//! For every row and channel `i` (state size `n`), with `A` negative:
//!
//! ```text
//! h_t = exp(delta_t,i A_i) * h_(t-1) + delta_t,i u_t,i B_t      (h: n values per channel)
//! y_t,i = <h_t, C_t> + D_i u_t,i
//! ```
//!
//! Why hand-written: as burn operations the scan is a loop of about eight tensor operations per
//! position (every position depends on the one before), and autodiff keeps every state; a
//! 1,024-token sequence is then ~8,000 operations per layer and direction. Here the scan is
//! one pass per (row, block of 64 channels), parallel over the blocks with rayon and vectorised
//! over the channels of a block (AVX-512/AVX2 chosen at run time, [`super::rows`]), with
//! [`fast_exp`] for the decays. The forward pass keeps only the state every
//! [`CHECKPOINT_EVERY`] positions; the backward pass recomputes the states of one such stretch
//! at a time and runs the adjoint recurrence backwards through it
//! (`g_(t-1) = exp(delta_t A) g_t + C_(t-1) dy_(t-1)`), so memory is linear in the length and
//! small: `n / 32` floats per channel and position, against `n` for keeping every state.
//!
//! Layouts: `u`, `delta`, `y`: `[rows, len, channels]`; `A`: `[channels, n]`; `B`, `C`:
//! `[rows, len, n]`; `D`: `[channels]`; all row-major f32.

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
use super::{flex_tensor, host};

/// Positions between the states the forward pass keeps for the backward pass.
pub const CHECKPOINT_EVERY: usize = 32;
/// Channels per task: one task scans one row's block of channels.
const CHANNEL_BLOCK: usize = 64;

/// Shapes of one scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanDims {
    /// Sequences.
    pub rows: usize,
    /// Positions per sequence.
    pub len: usize,
    /// Channels (Mamba's inner width).
    pub channels: usize,
    /// State size per channel.
    pub state: usize,
}

/// The inputs of one scan, as host slices (layouts in the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct ScanInputs<'a> {
    /// Input `u`.
    pub u: &'a [f32],
    /// Step sizes (positive).
    pub delta: &'a [f32],
    /// State matrix `A` (negative for a decaying state).
    pub a: &'a [f32],
    /// Input projection of the state, per position.
    pub b: &'a [f32],
    /// Output projection of the state, per position.
    pub c: &'a [f32],
    /// Skip weight per channel.
    pub d: &'a [f32],
}

/// The gradients of a scan with respect to its six inputs (same layouts).
#[derive(Debug, Clone, PartialEq)]
pub struct ScanGrads {
    /// d/d`u`.
    pub u: Vec<f32>,
    /// d/d`delta`.
    pub delta: Vec<f32>,
    /// d/d`A`.
    pub a: Vec<f32>,
    /// d/d`B`.
    pub b: Vec<f32>,
    /// d/d`C`.
    pub c: Vec<f32>,
    /// d/d`D`.
    pub d: Vec<f32>,
}

/// The states a forward pass kept: per task (row-major over rows, then channel blocks), the
/// state before every [`CHECKPOINT_EVERY`]-th position, `[state][block channels]` each.
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

    fn check(&self, x: &ScanInputs<'_>) {
        let tokens = self.rows * self.len;
        assert_eq!(
            x.u.len(),
            tokens * self.channels,
            "u is [rows, len, channels]"
        );
        assert_eq!(x.delta.len(), x.u.len(), "delta is [rows, len, channels]");
        assert_eq!(
            x.a.len(),
            self.channels * self.state,
            "A is [channels, state]"
        );
        assert_eq!(x.b.len(), tokens * self.state, "B is [rows, len, state]");
        assert_eq!(x.c.len(), x.b.len(), "C is [rows, len, state]");
        assert_eq!(x.d.len(), self.channels, "D is [channels]");
    }
}

/// `A` of a block of channels, transposed to `[state][block channels]`, so that the inner
/// loops run over contiguous channels.
fn block_a(a: &[f32], state: usize, channels: &Range<usize>) -> Vec<f32> {
    let cb = channels.len();
    let mut out = vec![0.0; state * cb];
    for (i, c) in channels.clone().enumerate() {
        for s in 0..state {
            out[s * cb + i] = a[c * state + s];
        }
    }
    out
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
    /// One position of one block: updates the states `h` (`[state][cb]`) and writes `y`
    /// (`[cb]`); `du` is scratch.
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
    /// reaching `h_t` from later positions and leaves as the one reaching `h_(t-1)`;
    /// `states` are `h_(t-1)` and `h_t`.
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
            let a_t = block_a(x.a, n, &task.channels);
            let mut h = vec![0.0; n * cb];
            let mut du = vec![0.0; cb];
            let mut y = vec![0.0; len * cb];
            let mut kept = Vec::new();
            if save {
                kept.reserve(len.div_ceil(CHECKPOINT_EVERY) * n * cb);
            }
            for t in 0..len {
                if save && t % CHECKPOINT_EVERY == 0 {
                    kept.extend_from_slice(&h);
                }
                let step = x.step(dims, task, t, &a_t);
                forward_step(&mut h, step, &mut du, &mut y[t * cb..(t + 1) * cb]);
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

impl<'a> ScanInputs<'a> {
    /// The slices of position `t` for `task`'s block (`a_t`: the block's transposed `A`).
    fn step(&self, dims: ScanDims, task: &Task, t: usize, a_t: &'a [f32]) -> StepInputs<'a> {
        let n = dims.state;
        let token = task.row * dims.len + t;
        let at = token * dims.channels + task.channels.start;
        let cb = task.channels.len();
        StepInputs {
            a_t,
            delta: &self.delta[at..at + cb],
            u: &self.u[at..at + cb],
            b: &self.b[token * n..(token + 1) * n],
            c: &self.c[token * n..(token + 1) * n],
            d: &self.d[task.channels.clone()],
        }
    }
}

/// One task's gradients: `u`, `delta` (`[len][cb]`), `A` (`[state][cb]`), `D` (`[cb]`), `B`
/// and `C` (`[len][state]`, this block's share).
struct TaskGrads {
    u: Vec<f32>,
    delta: Vec<f32>,
    a: Vec<f32>,
    d: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

fn backward_task(
    dims: ScanDims,
    x: &ScanInputs<'_>,
    task: &Task,
    kept: &[f32],
    gy: &[f32],
) -> TaskGrads {
    let (len, n, channels) = (dims.len, dims.state, dims.channels);
    let cb = task.channels.len();
    let width = n * cb;
    let a_t = block_a(x.a, n, &task.channels);
    let mut grads = TaskGrads {
        u: vec![0.0; len * cb],
        delta: vec![0.0; len * cb],
        a: vec![0.0; width],
        d: vec![0.0; cb],
        b: vec![0.0; len * n],
        c: vec![0.0; len * n],
    };
    let mut g = vec![0.0; width];
    let mut states = vec![0.0; (CHECKPOINT_EVERY + 1) * width];
    let mut scratch = Scratch {
        du: vec![0.0; cb],
        gg: vec![0.0; cb],
    };
    let mut y = vec![0.0; cb];
    for stretch in (0..len.div_ceil(CHECKPOINT_EVERY)).rev() {
        let t0 = stretch * CHECKPOINT_EVERY;
        let t1 = (t0 + CHECKPOINT_EVERY).min(len);
        states[..width].copy_from_slice(&kept[stretch * width..(stretch + 1) * width]);
        for t in t0..t1 {
            let k = t - t0;
            let (before, after) = states.split_at_mut((k + 1) * width);
            let h = &mut after[..width];
            h.copy_from_slice(&before[k * width..]);
            forward_step(h, x.step(dims, task, t, &a_t), &mut scratch.du, &mut y);
        }
        for t in (t0..t1).rev() {
            let k = t - t0;
            let at = (task.row * len + t) * channels + task.channels.start;
            let step = StepGrads {
                u: &mut grads.u[t * cb..(t + 1) * cb],
                delta: &mut grads.delta[t * cb..(t + 1) * cb],
                b: &mut grads.b[t * n..(t + 1) * n],
                c: &mut grads.c[t * n..(t + 1) * n],
            };
            backward_step(
                &mut g,
                (
                    &states[k * width..(k + 1) * width],
                    &states[(k + 1) * width..(k + 2) * width],
                ),
                x.step(dims, task, t, &a_t),
                &gy[at..at + cb],
                step,
                BlockSums {
                    a: &mut grads.a,
                    d: &mut grads.d,
                },
                &mut scratch,
            );
        }
    }
    grads
}

/// The gradients of the scan given the output gradient `gy` (`[rows, len, channels]`).
pub fn backward(
    dims: ScanDims,
    x: &ScanInputs<'_>,
    kept: &ScanCheckpoints,
    gy: &[f32],
) -> ScanGrads {
    dims.check(x);
    let (len, n, channels) = (dims.len, dims.state, dims.channels);
    let tasks = dims.tasks();
    let results: Vec<TaskGrads> = tasks
        .par_iter()
        .zip(kept.0.par_iter())
        .map(|(task, kept)| backward_task(dims, x, task, kept, gy))
        .collect();
    let mut out = ScanGrads {
        u: vec![0.0; x.u.len()],
        delta: vec![0.0; x.u.len()],
        a: vec![0.0; x.a.len()],
        b: vec![0.0; x.b.len()],
        c: vec![0.0; x.c.len()],
        d: vec![0.0; x.d.len()],
    };
    for (task, local) in tasks.iter().zip(results) {
        let cb = task.channels.len();
        for t in 0..len {
            let at = (task.row * len + t) * channels + task.channels.start;
            out.u[at..at + cb].copy_from_slice(&local.u[t * cb..(t + 1) * cb]);
            out.delta[at..at + cb].copy_from_slice(&local.delta[t * cb..(t + 1) * cb]);
            let token = (task.row * len + t) * n;
            for s in 0..n {
                out.b[token + s] += local.b[t * n + s];
                out.c[token + s] += local.c[t * n + s];
            }
        }
        for (i, c) in task.channels.clone().enumerate() {
            out.d[c] += local.d[i];
            for s in 0..n {
                out.a[c * n + s] += local.a[s * cb + i];
            }
        }
    }
    out
}

/// The selective scan as a burn backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait SelectiveScanOps: Backend {
    /// `y = scan(u, delta, A, B, C) + D u` (module documentation).
    fn fused_selective_scan(
        u: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// Runs the selective scan as one operation (differentiable when an input tracks gradients).
///
/// # Shapes
/// - `u`, `delta`: `[rows, len, channels]`; `a`: `[channels, state]`; `b`, `c`:
///   `[rows, len, state]`; `d`: `[channels]`; on a device where [`super::supports`] holds, f32
/// - output: `[rows, len, channels]`
pub(crate) fn selective_scan(
    u: Tensor<3>,
    delta: Tensor<3>,
    a: Tensor<2>,
    b: Tensor<3>,
    c: Tensor<3>,
    d: Tensor<1>,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as SelectiveScanOps>::fused_selective_scan(
        u.into_dispatch(),
        delta.into_dispatch(),
        a.into_dispatch(),
        b.into_dispatch(),
        c.into_dispatch(),
        d.into_dispatch(),
    ))
}

fn dims_of(u: &FlexTensor, a: &FlexTensor) -> ScanDims {
    let (us, as_) = (u.shape().to_vec(), a.shape().to_vec());
    ScanDims {
        rows: us[0],
        len: us[1],
        channels: us[2],
        state: as_[1],
    }
}

fn run_forward(inputs: &[FlexTensor; 6], save: bool) -> (FlexTensor, Option<ScanCheckpoints>) {
    let dims = dims_of(&inputs[0], &inputs[2]);
    let host: Vec<_> = inputs.iter().map(host).collect();
    let x = ScanInputs {
        u: &host[0],
        delta: &host[1],
        a: &host[2],
        b: &host[3],
        c: &host[4],
        d: &host[5],
    };
    let (y, kept) = forward(dims, &x, save);
    (flex_tensor(y, inputs[0].shape().to_vec()), kept)
}

impl SelectiveScanOps for Flex {
    fn fused_selective_scan(
        u: FlexTensor,
        delta: FlexTensor,
        a: FlexTensor,
        b: FlexTensor,
        c: FlexTensor,
        d: FlexTensor,
    ) -> FlexTensor {
        run_forward(&[u, delta, a, b, c, d], false).0
    }
}

/// The autodiff node of one scan: six parents (`u`, `delta`, `A`, `B`, `C`, `D`).
#[derive(Debug)]
struct SelectiveScanBackward;

#[derive(Debug, Clone)]
struct ScanState {
    inputs: Arc<[FlexTensor; 6]>,
    kept: Arc<ScanCheckpoints>,
}

impl Backward<Flex, 6> for SelectiveScanBackward {
    type State = ScanState;

    fn backward(self, ops: Ops<Self::State, 6>, grads: &mut Gradients, _: &mut Checkpointer) {
        let state = ops.state;
        let grad_out = grads.consume::<Flex>(&ops.node);
        let inputs = &state.inputs;
        let dims = dims_of(&inputs[0], &inputs[2]);
        let host: Vec<_> = inputs.iter().map(host).collect();
        let x = ScanInputs {
            u: &host[0],
            delta: &host[1],
            a: &host[2],
            b: &host[3],
            c: &host[4],
            d: &host[5],
        };
        let g = backward(dims, &x, &state.kept, &host_of(&grad_out));
        let values = [g.u, g.delta, g.a, g.b, g.c, g.d];
        for ((node, grad), input) in ops.parents.into_iter().zip(values).zip(inputs.iter()) {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, flex_tensor(grad, input.shape().to_vec()));
            }
        }
    }
}

fn host_of(t: &FlexTensor) -> Vec<f32> {
    host(t).into_owned()
}

impl<C: CheckpointStrategy> SelectiveScanOps for Autodiff<Flex, C> {
    fn fused_selective_scan(
        u: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [
            u.node(),
            delta.node(),
            a.node(),
            b.node(),
            c.node(),
            d.node(),
        ];
        let inputs = [u, delta, a, b, c, d].map(|t| t.into_primitive());
        match SelectiveScanBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, kept) = run_forward(&inputs, true);
                let state = ScanState {
                    inputs: Arc::new(inputs),
                    kept: Arc::new(kept.expect("kept when asked")),
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(run_forward(&inputs, false).0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small random problem, with a step size and decay in Mamba's ranges.
    fn problem(dims: ScanDims, seed: u64) -> [Vec<f32>; 6] {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut draw = |n: usize, lo: f32, hi: f32| -> Vec<f32> {
            (0..n).map(|_| rng.random_range(lo..hi)).collect()
        };
        let tokens = dims.rows * dims.len;
        [
            draw(tokens * dims.channels, -1.0, 1.0),
            draw(tokens * dims.channels, 0.01, 0.5),
            draw(dims.channels * dims.state, -3.0, -0.1),
            draw(tokens * dims.state, -1.0, 1.0),
            draw(tokens * dims.state, -1.0, 1.0),
            draw(dims.channels, 0.5, 1.5),
        ]
    }

    fn inputs(p: &[Vec<f32>; 6]) -> ScanInputs<'_> {
        ScanInputs {
            u: &p[0],
            delta: &p[1],
            a: &p[2],
            b: &p[3],
            c: &p[4],
            d: &p[5],
        }
    }

    /// The recurrence exactly as written, in f64.
    fn direct(dims: ScanDims, x: &ScanInputs<'_>) -> Vec<f64> {
        let (len, ch, n) = (dims.len, dims.channels, dims.state);
        let mut y = vec![0.0; dims.rows * len * ch];
        for r in 0..dims.rows {
            for i in 0..ch {
                let mut h = vec![0.0f64; n];
                for t in 0..len {
                    let token = r * len + t;
                    let (dl, u) = (x.delta[token * ch + i] as f64, x.u[token * ch + i] as f64);
                    let mut acc = x.d[i] as f64 * u;
                    for (s, hs) in h.iter_mut().enumerate() {
                        let a = (dl * x.a[i * n + s] as f64).exp();
                        *hs = a * *hs + dl * u * x.b[token * n + s] as f64;
                        acc += *hs * x.c[token * n + s] as f64;
                    }
                    y[token * ch + i] = acc;
                }
            }
        }
        y
    }

    #[test]
    fn the_scan_is_the_recurrence() {
        // 70 channels: one full block of 64 and a partial one; 45 positions: two stretches.
        let dims = ScanDims {
            rows: 2,
            len: 45,
            channels: 70,
            state: 5,
        };
        let p = problem(dims, 1);
        let (y, kept) = forward(dims, &inputs(&p), true);
        let want = direct(dims, &inputs(&p));
        let worst = y
            .iter()
            .zip(&want)
            .map(|(&a, &b)| (a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-5, "max |diff| {worst}");
        assert_eq!(kept.unwrap().0.len(), 4);
    }

    /// Every gradient against central differences of `sum(w * y)` in f64.
    #[test]
    fn the_backward_pass_matches_finite_differences() {
        let dims = ScanDims {
            rows: 2,
            len: 37,
            channels: 67,
            state: 3,
        };
        let p = problem(dims, 2);
        let weights: Vec<f32> = (0..p[0].len())
            .map(|k| ((k * 7919) % 13) as f32 / 13.0 - 0.5)
            .collect();
        let loss = |p: &[Vec<f32>; 6]| -> f64 {
            direct(dims, &inputs(p))
                .iter()
                .zip(&weights)
                .map(|(&y, &w)| y * w as f64)
                .sum()
        };
        let (_, kept) = forward(dims, &inputs(&p), true);
        let g = backward(dims, &inputs(&p), &kept.unwrap(), &weights);
        let analytic = [&g.u, &g.delta, &g.a, &g.b, &g.c, &g.d];
        for (which, grad) in analytic.iter().enumerate() {
            // A spread of entries of each input, both blocks and both rows included.
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
                    "input {which} entry {k}: analytic {got}, numeric {numeric}"
                );
            }
        }
    }
}
