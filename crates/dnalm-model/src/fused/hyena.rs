//! The Hyena operator's short convolution, long convolution and gating ([`crate::hyena`]) as
//! one operation with a hand-written backward pass, on burn Flex (CPU).
//!
//! From `in_proj`'s output `p` (`[rows, len, 3d]`), the short filter (`[3d, width]` taps and a
//! `[3d]` bias), the long filter taps `k` (`[len, d]`) and the skip weights `bias` (`[d]`):
//! `[x0 | x1 | v]` is the causal depthwise convolution of `p` with the short filter, then, per
//! row and channel,
//!
//! ```text
//! w = x1 * v
//! c[i] = sum_(s <= i) k[s] w[i - s] + bias * w[i]      (causal convolution, by FFT)
//! y = x0 * c
//! ```
//!
//! and the backward pass, with `g` the gradient of `y`:
//!
//! ```text
//! g_c = g * x0;  g_x0 = g * c
//! g_w[i] = sum_(s >= 0) k[s] g_c[i + s] + bias * g_c[i]      (correlation, by FFT)
//! g_k[s] = sum_rows sum_i g_c[i] w[i - s]                    (cross-correlation, by FFT)
//! g_bias = sum_rows sum_i g_c[i] w[i];  g_x1 = g_w * v;  g_v = g_w * x1
//! ```
//!
//! and the short convolution's backward (depthwise, so within a channel) turns the gradients
//! of `x0`, `x1`, `v` into those of `p` and of the short filter.
//!
//! Why hand-written: as burn operations this is about twenty-five operations per block (the
//! short convolution's padding, shifted copies and products; the two real FFTs and the inverse;
//! the complex product as four real products; the gates and the transposes), each a fresh
//! tensor that autodiff keeps, the half-spectra included (measured: a 4-block d = 256 Hyena
//! model kept about 224 KB per token in training and ran at 0.48-0.75x the same model in
//! PyTorch). Here the forward pass keeps only its inputs and the backward pass recomputes the
//! short convolution and the spectra it needs. The FFTs are the `realfft` crate's (rustfft's
//! planner, AVX kernels chosen at run time), on sizes rounded up to a power of two `>= 2 len`
//! so that the circular convolution is the linear one. Work is split into tasks of
//! [`CHANNELS_PER_TASK`] channels (parallel with rayon); a task reads its channels' values one
//! cache line per position, and its results are written channel-major and transposed once at
//! the end.

use std::sync::Arc;

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
use realfft::{num_complex::Complex, ComplexToReal, RealFftPlanner, RealToComplex};

use super::{flex_tensor, host, register_gradients};

/// Channels per task (one 64-byte cache line of f32 per position).
pub const CHANNELS_PER_TASK: usize = 16;
/// Positions per block of the final channel-major to row-major transpose.
const TRANSPOSE_POSITIONS: usize = 16;

/// The sizes of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixDims {
    /// Rows of the batch.
    pub rows: usize,
    /// Positions per row.
    pub len: usize,
    /// Channels `d` (the input `p` has `3d`).
    pub channels: usize,
    /// Taps of the short convolution.
    pub width: usize,
}

impl MixDims {
    /// The FFT size: a power of two `>= 2 len`, so that no output position wraps around.
    fn fft_len(&self) -> usize {
        (2 * self.len).next_power_of_two()
    }
}

/// The FFT plans of one size, shared by every task (each task has its own buffers).
struct Plans {
    n: usize,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
}

impl Plans {
    fn new(n: usize) -> Self {
        let mut planner = RealFftPlanner::<f32>::new();
        Plans {
            n,
            forward: planner.plan_fft_forward(n),
            inverse: planner.plan_fft_inverse(n),
        }
    }

    fn spectrum_len(&self) -> usize {
        self.n / 2 + 1
    }

    fn scratch(&self) -> Vec<Complex<f32>> {
        let len = self
            .forward
            .get_scratch_len()
            .max(self.inverse.get_scratch_len());
        vec![Complex::default(); len]
    }

    /// `spectrum = FFT(signal)`; `signal` (length `n`) is used as scratch.
    fn forward(
        &self,
        signal: &mut [f32],
        spectrum: &mut [Complex<f32>],
        scratch: &mut [Complex<f32>],
    ) {
        self.forward
            .process_with_scratch(signal, spectrum, scratch)
            .expect("buffer lengths match the plan");
    }

    /// `signal = n * IFFT(spectrum)` (unnormalised); `spectrum` is used as scratch.
    fn inverse(
        &self,
        spectrum: &mut [Complex<f32>],
        signal: &mut [f32],
        scratch: &mut [Complex<f32>],
    ) {
        // The imaginary parts of the first and (n even) last bins of a real signal's spectrum
        // are zero; rounding can leave a trace, which realfft refuses.
        spectrum[0].im = 0.0;
        if let Some(last) = spectrum.last_mut() {
            last.im = 0.0;
        }
        self.inverse
            .process_with_scratch(spectrum, signal, scratch)
            .expect("buffer lengths match the plan");
    }
}

/// One task's buffers for one channel: a real signal of length `n` and its spectrum.
struct Lane {
    signal: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
}

impl Lane {
    fn new(plans: &Plans) -> Self {
        Lane {
            signal: vec![0.0; plans.n],
            spectrum: vec![Complex::default(); plans.spectrum_len()],
        }
    }
}

/// The spectra of the filter taps of channels `channels` (each zero-padded to `n`).
fn filter_spectra(
    plans: &Plans,
    dims: MixDims,
    k: &[f32],
    channels: std::ops::Range<usize>,
    scratch: &mut [Complex<f32>],
) -> Vec<Vec<Complex<f32>>> {
    let mut signal = vec![0.0; plans.n];
    channels
        .map(|c| {
            signal.fill(0.0);
            for (s, value) in signal.iter_mut().take(dims.len).enumerate() {
                *value = k[s * dims.channels + c];
            }
            let mut spectrum = vec![Complex::default(); plans.spectrum_len()];
            plans.forward(&mut signal, &mut spectrum, scratch);
            spectrum
        })
        .collect()
}

/// `out[p * width + ch] = planes[base[ch] + p]` for `positions` positions: channel-major planes
/// (one per channel, located by `base`) into the row-major layout, in blocks of positions.
fn to_row_major(planes: &[f32], base: &[usize], positions: usize) -> Vec<f32> {
    let width = base.len();
    let mut out = vec![0.0; positions * width];
    out.par_chunks_mut(TRANSPOSE_POSITIONS * width)
        .enumerate()
        .for_each(|(block, chunk)| {
            let p0 = block * TRANSPOSE_POSITIONS;
            let count = chunk.len() / width;
            for (ch, &start) in base.iter().enumerate() {
                let plane = &planes[start + p0..start + p0 + count];
                for (p, &value) in plane.iter().enumerate() {
                    chunk[p * width + ch] = value;
                }
            }
        });
    out
}

/// Where each of `segments * channels` channels' planes starts in a task-major buffer whose
/// tasks hold `segments` groups of [`CHANNELS_PER_TASK`] channels (the task's channels `c`,
/// then `d + c`, then `2d + c`), each plane `plane` long.
fn task_major_bases(channels: usize, segments: usize, plane: usize) -> Vec<usize> {
    (0..segments * channels)
        .map(|ch| {
            let (segment, c) = (ch / channels, ch % channels);
            let (task, lane) = (c / CHANNELS_PER_TASK, c % CHANNELS_PER_TASK);
            let task_start = task * CHANNELS_PER_TASK * segments * plane;
            let lanes = (channels - task * CHANNELS_PER_TASK).min(CHANNELS_PER_TASK);
            task_start + (segment * lanes + lane) * plane
        })
        .collect()
}

/// The host inputs of one call (layouts in the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct MixInputs<'a> {
    /// `in_proj`'s output, `[rows, len, 3d]`.
    pub p: &'a [f32],
    /// Short filter taps `[3d, width]` (tap `j` reads `width - 1 - j` positions back).
    pub short_w: &'a [f32],
    /// Short filter bias `[3d]`.
    pub short_b: &'a [f32],
    /// Long filter taps `[len, d]`.
    pub k: &'a [f32],
    /// Skip weights `[d]`.
    pub bias: &'a [f32],
}

/// One task's view of a row: for each of its channels (`lanes`) and each segment (`x0`, `x1`,
/// `v`), the projection `p` and its short convolution `u`, each `len` long, at index
/// `segment * lanes + lane`.
struct RowSignals {
    p: Vec<Vec<f32>>,
    u: Vec<Vec<f32>>,
}

impl RowSignals {
    fn new(lanes: usize, len: usize) -> Self {
        RowSignals {
            p: vec![vec![0.0; len]; 3 * lanes],
            u: vec![vec![0.0; len]; 3 * lanes],
        }
    }

    /// Gathers row `row` of the task's channels (from `c0`) and convolves them.
    fn load(&mut self, dims: MixDims, x: &MixInputs<'_>, row: usize, c0: usize) {
        const TILE: usize = 16;
        let MixDims {
            len, channels: d, ..
        } = dims;
        let lanes = self.p.len() / 3;
        // In tiles of 16 positions: one cache line read per position and channel block, one
        // 16-value copy written per channel.
        let mut tile = [[0f32; TILE]; CHANNELS_PER_TASK];
        for i0 in (0..len).step_by(TILE) {
            let n = TILE.min(len - i0);
            for segment in 0..3 {
                for (t, column) in
                    (0..n).map(|t| (t, (row * len + i0 + t) * 3 * d + segment * d + c0))
                {
                    for (b, &value) in x.p[column..column + lanes].iter().enumerate() {
                        tile[b][t] = value;
                    }
                }
                for (b, values) in tile.iter().take(lanes).enumerate() {
                    self.p[segment * lanes + b][i0..i0 + n].copy_from_slice(&values[..n]);
                }
            }
        }
        for (index, (p, u)) in self.p.iter().zip(self.u.iter_mut()).enumerate() {
            let ch = (index / lanes) * d + c0 + index % lanes;
            short_convolution(
                dims.width,
                p,
                &x.short_w[ch * dims.width..],
                x.short_b[ch],
                u,
            );
        }
    }
}

/// `u[i] = bias + sum_j w[j] p[i - (width - 1) + j]`, zero before the start.
fn short_convolution(width: usize, p: &[f32], w: &[f32], bias: f32, u: &mut [f32]) {
    u.fill(bias);
    let len = p.len();
    for (j, &tap) in w[..width].iter().enumerate() {
        let back = (width - 1 - j).min(len);
        for (out, &value) in u[back..].iter_mut().zip(&p[..len - back]) {
            *out += tap * value;
        }
    }
}

/// The short convolution's backward for one channel: `g_p` from `g_u`, and the taps' and
/// bias's gradients added to `g_w`, `g_b`.
fn short_convolution_backward(
    width: usize,
    p: &[f32],
    w: &[f32],
    g_u: &[f32],
    g_p: &mut [f32],
    g_w: &mut [f32],
    g_b: &mut f32,
) {
    let len = p.len();
    g_p.fill(0.0);
    for (j, &tap) in w[..width].iter().enumerate() {
        let back = (width - 1 - j).min(len);
        for (out, &g) in g_p[..len - back].iter_mut().zip(&g_u[back..]) {
            *out += tap * g;
        }
    }
    for (j, gw) in g_w[..width].iter_mut().enumerate() {
        let back = (width - 1 - j).min(len);
        *gw += g_u[back..].iter().zip(p).map(|(g, p)| g * p).sum::<f32>();
    }
    *g_b += g_u.iter().sum::<f32>();
}

/// `x0 * (causal_conv(x1 * v, k) + bias * x1 * v)` with `[x0 | x1 | v]` the short convolution
/// of `p`, `[rows, len, d]` (module documentation).
pub fn forward(dims: MixDims, x: &MixInputs<'_>) -> Vec<f32> {
    let MixDims {
        rows,
        len,
        channels: d,
        ..
    } = dims;
    let plans = Plans::new(dims.fft_len());
    let plane = rows * len;
    let scale = 1.0 / plans.n as f32;
    let mut planes = vec![0.0; d * plane];
    planes
        .par_chunks_mut(CHANNELS_PER_TASK * plane)
        .enumerate()
        .for_each(|(task, out)| {
            let c0 = task * CHANNELS_PER_TASK;
            let lanes = out.len() / plane;
            let mut scratch = plans.scratch();
            let kf = filter_spectra(&plans, dims, x.k, c0..c0 + lanes, &mut scratch);
            let mut lane = Lane::new(&plans);
            let mut signals = RowSignals::new(lanes, len);
            for row in 0..rows {
                signals.load(dims, x, row, c0);
                for (b, kf) in kf.iter().enumerate() {
                    let (x0, x1, v) = (
                        &signals.u[b],
                        &signals.u[lanes + b],
                        &signals.u[2 * lanes + b],
                    );
                    for ((s, x1), v) in lane.signal.iter_mut().zip(x1).zip(v) {
                        *s = x1 * v;
                    }
                    lane.signal[len..].fill(0.0);
                    plans.forward(&mut lane.signal, &mut lane.spectrum, &mut scratch);
                    for (s, f) in lane.spectrum.iter_mut().zip(kf) {
                        *s = *s * *f * scale;
                    }
                    plans.inverse(&mut lane.spectrum, &mut lane.signal, &mut scratch);
                    let bias = x.bias[c0 + b];
                    let y = &mut out[b * plane + row * len..b * plane + (row + 1) * len];
                    for i in 0..len {
                        y[i] = x0[i] * (lane.signal[i] + bias * x1[i] * v[i]);
                    }
                }
            }
        });
    to_row_major(&planes, &task_major_bases(d, 1, plane), plane)
}

/// The gradients of [`forward`]'s inputs from the gradient `grad` of its output.
pub struct MixGradients {
    /// `[rows, len, 3d]`.
    pub p: Vec<f32>,
    /// `[3d, width]`.
    pub short_w: Vec<f32>,
    /// `[3d]`.
    pub short_b: Vec<f32>,
    /// `[len, d]`.
    pub k: Vec<f32>,
    /// `[d]`.
    pub bias: Vec<f32>,
}

/// What one backward task found besides its `p` gradient planes, per channel of its block.
struct TaskGradients {
    /// `[3][lanes][width]`.
    short_w: Vec<f32>,
    /// `[3][lanes]`.
    short_b: Vec<f32>,
    /// `[lanes][len]`.
    k: Vec<f32>,
    /// `[lanes]`.
    bias: Vec<f32>,
}

/// The backward pass of [`forward`] (module documentation): recomputes the short convolution
/// and the spectra of `x1 * v` and of the filter, one task per block of channels, every row in
/// turn.
pub fn backward(dims: MixDims, x: &MixInputs<'_>, grad: &[f32]) -> MixGradients {
    let MixDims {
        rows,
        len,
        channels: d,
        width,
    } = dims;
    let plans = Plans::new(dims.fft_len());
    let plane = rows * len;
    let scale = 1.0 / plans.n as f32;
    let mut p_planes = vec![0.0; 3 * d * plane];
    let tasks: Vec<TaskGradients> = p_planes
        .par_chunks_mut(3 * CHANNELS_PER_TASK * plane)
        .enumerate()
        .map(|(task, out)| {
            let c0 = task * CHANNELS_PER_TASK;
            let lanes = out.len() / (3 * plane);
            let mut scratch = plans.scratch();
            let kf = filter_spectra(&plans, dims, x.k, c0..c0 + lanes, &mut scratch);
            let (mut w, mut g) = (Lane::new(&plans), Lane::new(&plans));
            let mut k_spectra = vec![vec![Complex::<f32>::default(); plans.spectrum_len()]; lanes];
            let mut signals = RowSignals::new(lanes, len);
            let mut g_u = vec![vec![0.0f32; len]; 3];
            let mut found = TaskGradients {
                short_w: vec![0.0; 3 * lanes * width],
                short_b: vec![0.0; 3 * lanes],
                k: vec![0.0; lanes * len],
                bias: vec![0.0; lanes],
            };
            for row in 0..rows {
                signals.load(dims, x, row, c0);
                for b in 0..lanes {
                    let c = c0 + b;
                    let (x0, x1, v) = (
                        &signals.u[b],
                        &signals.u[lanes + b],
                        &signals.u[2 * lanes + b],
                    );
                    let gy = |i: usize| grad[(row * len + i) * d + c];
                    for i in 0..len {
                        w.signal[i] = x1[i] * v[i];
                        g.signal[i] = gy(i) * x0[i];
                    }
                    w.signal[len..].fill(0.0);
                    g.signal[len..].fill(0.0);
                    // g_bias, before the FFTs overwrite the signals.
                    found.bias[b] += g.signal[..len]
                        .iter()
                        .zip(&w.signal[..len])
                        .map(|(g, w)| g * w)
                        .sum::<f32>();
                    plans.forward(&mut w.signal, &mut w.spectrum, &mut scratch);
                    plans.forward(&mut g.signal, &mut g.spectrum, &mut scratch);
                    for ((acc, gs), ws) in k_spectra[b].iter_mut().zip(&g.spectrum).zip(&w.spectrum)
                    {
                        *acc += *gs * ws.conj();
                    }
                    // The convolution again (for g_x0), into w's signal...
                    for (s, f) in w.spectrum.iter_mut().zip(&kf[b]) {
                        *s = *s * *f * scale;
                    }
                    plans.inverse(&mut w.spectrum, &mut w.signal, &mut scratch);
                    // ... and the correlation of g_c with the filter, into g's.
                    for (s, f) in g.spectrum.iter_mut().zip(&kf[b]) {
                        *s = *s * f.conj() * scale;
                    }
                    plans.inverse(&mut g.spectrum, &mut g.signal, &mut scratch);
                    let bias = x.bias[c];
                    for i in 0..len {
                        let gc = gy(i) * x0[i];
                        let g_w = g.signal[i] + bias * gc;
                        g_u[0][i] = gy(i) * (w.signal[i] + bias * x1[i] * v[i]);
                        g_u[1][i] = g_w * v[i];
                        g_u[2][i] = g_w * x1[i];
                    }
                    for (segment, g_u) in g_u.iter().enumerate() {
                        let index = segment * lanes + b;
                        let ch = segment * d + c;
                        let start = index * plane + row * len;
                        short_convolution_backward(
                            width,
                            &signals.p[index],
                            &x.short_w[ch * width..],
                            g_u,
                            &mut out[start..start + len],
                            &mut found.short_w[index * width..(index + 1) * width],
                            &mut found.short_b[index],
                        );
                    }
                }
            }
            let mut signal = vec![0.0f32; plans.n];
            for (b, spectrum) in k_spectra.iter_mut().enumerate() {
                for s in spectrum.iter_mut() {
                    *s *= scale;
                }
                plans.inverse(spectrum, &mut signal, &mut scratch);
                found.k[b * len..(b + 1) * len].copy_from_slice(&signal[..len]);
            }
            found
        })
        .collect();
    let p = to_row_major(&p_planes, &task_major_bases(d, 3, plane), plane);
    let mut k_planes = Vec::with_capacity(d * len);
    let mut bias = Vec::with_capacity(d);
    let mut short_w = vec![0.0; 3 * d * width];
    let mut short_b = vec![0.0; 3 * d];
    for (task, found) in tasks.into_iter().enumerate() {
        let (c0, lanes) = (task * CHANNELS_PER_TASK, found.bias.len());
        for segment in 0..3 {
            for b in 0..lanes {
                let (index, ch) = (segment * lanes + b, segment * d + c0 + b);
                short_w[ch * width..(ch + 1) * width]
                    .copy_from_slice(&found.short_w[index * width..(index + 1) * width]);
                short_b[ch] = found.short_b[index];
            }
        }
        k_planes.extend(found.k);
        bias.extend(found.bias);
    }
    let k = to_row_major(&k_planes, &task_major_bases(d, 1, len), len);
    MixGradients {
        p,
        short_w,
        short_b,
        k,
        bias,
    }
}

/// The Hyena mix as a burn backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait HyenaOps: Backend {
    /// `x0 * (causal_conv(x1 * v, k) + bias * x1 * v)`, `[x0 | x1 | v]` the short
    /// convolution of `p` (module documentation).
    fn fused_hyena_mix(
        p: FloatTensor<Self>,
        short_w: FloatTensor<Self>,
        short_b: FloatTensor<Self>,
        k: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// The short convolution, long convolution and gates of the Hyena operator as one operation
/// (differentiable when an input tracks gradients).
///
/// # Shapes
/// - `p`: `[rows, len, 3d]`; `short_w`: `[3d, width]`; `short_b`: `[3d]`; `k`: `[len, d]`;
///   `bias`: `[d]`
/// - output: `[rows, len, d]`
pub(crate) fn mix(
    p: Tensor<3>,
    short_w: Tensor<2>,
    short_b: Tensor<1>,
    k: Tensor<2>,
    bias: Tensor<1>,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as HyenaOps>::fused_hyena_mix(
        p.into_dispatch(),
        short_w.into_dispatch(),
        short_b.into_dispatch(),
        k.into_dispatch(),
        bias.into_dispatch(),
    ))
}

/// The operation's inputs in [`HyenaOps::fused_hyena_mix`] order.
type MixArgs = [FlexTensor; 5];

fn mix_dims(args: &MixArgs) -> MixDims {
    let (p, w) = (args[0].shape().to_vec(), args[1].shape().to_vec());
    MixDims {
        rows: p[0],
        len: p[1],
        channels: p[2] / 3,
        width: w[1],
    }
}

fn with_host<R>(args: &MixArgs, f: impl FnOnce(&MixInputs<'_>) -> R) -> R {
    let h: Vec<_> = args.iter().map(host).collect();
    f(&MixInputs {
        p: &h[0],
        short_w: &h[1],
        short_b: &h[2],
        k: &h[3],
        bias: &h[4],
    })
}

fn mix_run(args: &MixArgs) -> FlexTensor {
    let dims = mix_dims(args);
    let y = with_host(args, |x| forward(dims, x));
    flex_tensor(y, vec![dims.rows, dims.len, dims.channels])
}

impl HyenaOps for Flex {
    fn fused_hyena_mix(
        p: FlexTensor,
        short_w: FlexTensor,
        short_b: FlexTensor,
        k: FlexTensor,
        bias: FlexTensor,
    ) -> FlexTensor {
        mix_run(&[p, short_w, short_b, k, bias])
    }
}

/// The autodiff node of one mix: five parents (`p`, short filter taps and bias, `k`, `bias`).
#[derive(Debug)]
struct MixBackward;

impl Backward<Flex, 5> for MixBackward {
    type State = Arc<MixArgs>;

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _: &mut Checkpointer) {
        let args = ops.state;
        let grad_out = grads.consume::<Flex>(&ops.node);
        let g = with_host(&args, |x| backward(mix_dims(&args), x, &host(&grad_out)));
        let parents = ops.parents.map(|p| p.map(|node| node.id));
        let values = [g.p, g.short_w, g.short_b, g.k, g.bias];
        register_gradients(grads, parents, values, &args[..]);
    }
}

impl<C: CheckpointStrategy> HyenaOps for Autodiff<Flex, C> {
    fn fused_hyena_mix(
        p: FloatTensor<Self>,
        short_w: FloatTensor<Self>,
        short_b: FloatTensor<Self>,
        k: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [
            p.node(),
            short_w.node(),
            short_b.node(),
            k.node(),
            bias.node(),
        ];
        let args: MixArgs = [p, short_w, short_b, k, bias].map(|t| t.into_primitive());
        match MixBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = mix_run(&args);
                prep.finish(Arc::new(args), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(mix_run(&args)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(n: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// The definition, position by position, in f64.
    fn direct(dims: MixDims, x: &MixInputs<'_>) -> Vec<f64> {
        let MixDims {
            rows,
            len,
            channels: d,
            width,
        } = dims;
        let mut y = vec![0.0; rows * len * d];
        // u[r][i][ch]: the short convolution.
        let u = |r: usize, i: usize, ch: usize| -> f64 {
            let mut acc = x.short_b[ch] as f64;
            for j in 0..width {
                if let Some(s) = (i + j).checked_sub(width - 1) {
                    acc +=
                        x.short_w[ch * width + j] as f64 * x.p[(r * len + s) * 3 * d + ch] as f64;
                }
            }
            acc
        };
        for r in 0..rows {
            for c in 0..d {
                let w: Vec<f64> = (0..len)
                    .map(|i| u(r, i, d + c) * u(r, i, 2 * d + c))
                    .collect();
                for i in 0..len {
                    let conv: f64 = (0..=i).map(|s| x.k[s * d + c] as f64 * w[i - s]).sum();
                    y[(r * len + i) * d + c] = u(r, i, c) * (conv + x.bias[c] as f64 * w[i]);
                }
            }
        }
        y
    }

    fn problem(dims: MixDims) -> [Vec<f32>; 5] {
        let MixDims {
            rows,
            len,
            channels: d,
            width,
        } = dims;
        [
            draw(rows * len * 3 * d, 1),
            draw(3 * d * width, 2),
            draw(3 * d, 3),
            draw(len * d, 4),
            draw(d, 5),
        ]
    }

    fn inputs(p: &[Vec<f32>; 5]) -> MixInputs<'_> {
        MixInputs {
            p: &p[0],
            short_w: &p[1],
            short_b: &p[2],
            k: &p[3],
            bias: &p[4],
        }
    }

    /// Channel counts that fill whole tasks and leave a partial one; lengths that are and are
    /// not powers of two.
    const SHAPES: [MixDims; 3] = [
        MixDims {
            rows: 2,
            len: 9,
            channels: 5,
            width: 3,
        },
        MixDims {
            rows: 1,
            len: 32,
            channels: 16,
            width: 3,
        },
        MixDims {
            rows: 3,
            len: 20,
            channels: 37,
            width: 2,
        },
    ];

    #[test]
    fn the_forward_pass_is_the_causal_sum() {
        for dims in SHAPES {
            let problem = problem(dims);
            let y = forward(dims, &inputs(&problem));
            let want = direct(dims, &inputs(&problem));
            let worst = y
                .iter()
                .zip(&want)
                .fold(0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
            assert!(worst < 1e-4, "{dims:?}: {worst}");
        }
    }

    /// The backward pass against central finite differences of `sum(y * weights)` in f64.
    #[test]
    fn the_backward_pass_matches_finite_differences() {
        for dims in SHAPES {
            let problem = problem(dims);
            let weights = draw(dims.rows * dims.len * dims.channels, 6);
            let g = backward(dims, &inputs(&problem), &weights);
            let analytic = [g.p, g.short_w, g.short_b, g.k, g.bias];
            for (which, analytic) in analytic.iter().enumerate() {
                let values = &problem[which];
                assert_eq!(values.len(), analytic.len());
                for i in (0..values.len()).step_by(values.len() / 23 + 1) {
                    let h = 1e-2f32;
                    let at = |delta: f32| -> f64 {
                        let mut changed = problem.clone();
                        changed[which][i] += delta;
                        let y = direct(dims, &inputs(&changed));
                        y.iter().zip(&weights).map(|(y, w)| y * *w as f64).sum()
                    };
                    let numeric = (at(h) - at(-h)) / (2.0 * h as f64);
                    let diff = (numeric - analytic[i] as f64).abs();
                    assert!(
                        diff < 2e-3 * numeric.abs().max(1.0),
                        "{dims:?} input {which} [{i}]: {numeric} vs {}",
                        analytic[i]
                    );
                }
            }
        }
    }
}
