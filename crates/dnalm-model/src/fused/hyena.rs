//! The Hyena operator's long convolution and gating ([`crate::hyena`]) as one operation with a
//! hand-written backward pass, on burn Flex (CPU).
//!
//! From the short convolution's output `u = [x0 | x1 | v]` (`[rows, len, 3d]`), the filter taps
//! `k` (`[len, d]`) and the skip weights `bias` (`[d]`), per row and channel:
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
//! Why hand-written: as burn operations this is about fifteen operations per block (the two
//! real FFTs and the inverse, the complex product as four real products, the gates and their
//! transposes), each a fresh tensor that autodiff keeps, the half-spectra included (measured:
//! a 4-block d = 256 Hyena model kept about 224 KB per token in training and ran at 0.48-0.75x
//! the same model in PyTorch). Here the forward pass keeps only its inputs and the backward pass
//! recomputes the spectra it needs. The FFTs are the `realfft` crate's (rustfft's planner, AVX
//! kernels chosen at run time), on sizes rounded up to a power of two `>= 2 len` so that the
//! circular convolution is the linear one. Work is split into tasks of [`CHANNELS_PER_TASK`]
//! channels (parallel with rayon); a task reads its channels' values one cache line per
//! position, and its results are written channel-major and transposed once at the end.

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

use super::{flex_tensor, host};

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
    /// Channels `d` (the input `u` has `3d`).
    pub channels: usize,
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

/// `(x0, x1, v)` of channel `c` at position `i` of row `row`.
#[inline]
fn gates(u: &[f32], dims: MixDims, row: usize, i: usize, c: usize) -> (f32, f32, f32) {
    let d = dims.channels;
    let base = (row * dims.len + i) * 3 * d + c;
    (u[base], u[base + d], u[base + 2 * d])
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

/// Where each of `width` channels' planes starts in a task-major buffer whose tasks hold
/// `segments` groups of [`CHANNELS_PER_TASK`] channels (the channels `c`, `d + c`, `2d + c`…
/// of the task's block, in that order), each plane `plane` long.
fn task_major_bases(channels: usize, segments: usize, plane: usize) -> Vec<usize> {
    let per_task = |c: usize| c.min(CHANNELS_PER_TASK);
    (0..segments * channels)
        .map(|ch| {
            let (segment, c) = (ch / channels, ch % channels);
            let (task, lane) = (c / CHANNELS_PER_TASK, c % CHANNELS_PER_TASK);
            let task_start = task * CHANNELS_PER_TASK * segments * plane;
            let lanes = per_task(channels - task * CHANNELS_PER_TASK);
            task_start + (segment * lanes + lane) * plane
        })
        .collect()
}

/// `x0 * (causal_conv(x1 * v, k) + bias * x1 * v)`, `[rows, len, d]` (module documentation).
pub fn forward(dims: MixDims, u: &[f32], k: &[f32], bias: &[f32]) -> Vec<f32> {
    let MixDims {
        rows,
        len,
        channels: d,
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
            let lanes_here = out.len() / plane;
            let mut scratch = plans.scratch();
            let kf = filter_spectra(&plans, dims, k, c0..c0 + lanes_here, &mut scratch);
            let mut lanes: Vec<Lane> = (0..lanes_here).map(|_| Lane::new(&plans)).collect();
            for row in 0..rows {
                for lane in &mut lanes {
                    lane.signal[len..].fill(0.0);
                }
                for i in 0..len {
                    for (b, lane) in lanes.iter_mut().enumerate() {
                        let (_, x1, v) = gates(u, dims, row, i, c0 + b);
                        lane.signal[i] = x1 * v;
                    }
                }
                for (b, lane) in lanes.iter_mut().enumerate() {
                    plans.forward(&mut lane.signal, &mut lane.spectrum, &mut scratch);
                    for (s, f) in lane.spectrum.iter_mut().zip(&kf[b]) {
                        *s = *s * *f * scale;
                    }
                    plans.inverse(&mut lane.spectrum, &mut lane.signal, &mut scratch);
                    let c = c0 + b;
                    let plane_out = &mut out[b * plane + row * len..b * plane + (row + 1) * len];
                    for (i, y) in plane_out.iter_mut().enumerate() {
                        let (x0, x1, v) = gates(u, dims, row, i, c);
                        *y = x0 * (lane.signal[i] + bias[c] * x1 * v);
                    }
                }
            }
        });
    to_row_major(&planes, &task_major_bases(d, 1, plane), plane)
}

/// The gradients of [`forward`]'s inputs from the gradient `grad` of its output.
pub struct MixGradients {
    /// `[rows, len, 3d]`.
    pub u: Vec<f32>,
    /// `[len, d]`.
    pub k: Vec<f32>,
    /// `[d]`.
    pub bias: Vec<f32>,
}

/// The backward pass of [`forward`] (module documentation): recomputes the spectra of `x1 * v`
/// and of the filter, one task per block of channels, every row in turn.
pub fn backward(dims: MixDims, u: &[f32], k: &[f32], bias: &[f32], grad: &[f32]) -> MixGradients {
    let MixDims {
        rows,
        len,
        channels: d,
    } = dims;
    let plans = Plans::new(dims.fft_len());
    let plane = rows * len;
    let scale = 1.0 / plans.n as f32;
    // Per task: the three gradient planes of u (x0, x1, v) for each of its channels, then the
    // filter gradient (one plane of `len` per channel) and the bias gradient, kept apart.
    let mut u_planes = vec![0.0; 3 * d * plane];
    let tasks: Vec<(Vec<f32>, Vec<f32>)> = u_planes
        .par_chunks_mut(3 * CHANNELS_PER_TASK * plane)
        .enumerate()
        .map(|(task, out)| {
            let c0 = task * CHANNELS_PER_TASK;
            let lanes_here = out.len() / (3 * plane);
            let mut scratch = plans.scratch();
            let kf = filter_spectra(&plans, dims, k, c0..c0 + lanes_here, &mut scratch);
            let mut w_lanes: Vec<Lane> = (0..lanes_here).map(|_| Lane::new(&plans)).collect();
            let mut g_lanes: Vec<Lane> = (0..lanes_here).map(|_| Lane::new(&plans)).collect();
            let mut k_grad_spectra =
                vec![vec![Complex::<f32>::default(); plans.spectrum_len()]; lanes_here];
            let mut bias_grad = vec![0.0f32; lanes_here];
            for row in 0..rows {
                for lane in w_lanes.iter_mut().chain(g_lanes.iter_mut()) {
                    lane.signal[len..].fill(0.0);
                }
                for i in 0..len {
                    let at = (row * len + i) * d + c0;
                    for b in 0..lanes_here {
                        let (x0, x1, v) = gates(u, dims, row, i, c0 + b);
                        w_lanes[b].signal[i] = x1 * v;
                        g_lanes[b].signal[i] = grad[at + b] * x0;
                    }
                }
                for b in 0..lanes_here {
                    let c = c0 + b;
                    let (w, g) = (&mut w_lanes[b], &mut g_lanes[b]);
                    // g_bias, before the FFTs overwrite the signals.
                    bias_grad[b] += g.signal[..len]
                        .iter()
                        .zip(&w.signal[..len])
                        .map(|(g, w)| g * w)
                        .sum::<f32>();
                    plans.forward(&mut w.signal, &mut w.spectrum, &mut scratch);
                    plans.forward(&mut g.signal, &mut g.spectrum, &mut scratch);
                    for ((acc, gs), ws) in k_grad_spectra[b]
                        .iter_mut()
                        .zip(&g.spectrum)
                        .zip(&w.spectrum)
                    {
                        *acc += *gs * ws.conj();
                    }
                    // The convolution again (for g_x0), into w's signal buffer...
                    for (s, f) in w.spectrum.iter_mut().zip(&kf[b]) {
                        *s = *s * *f * scale;
                    }
                    plans.inverse(&mut w.spectrum, &mut w.signal, &mut scratch);
                    // ... and the correlation of g_c with the filter, into g's.
                    for (s, f) in g.spectrum.iter_mut().zip(&kf[b]) {
                        *s = *s * f.conj() * scale;
                    }
                    plans.inverse(&mut g.spectrum, &mut g.signal, &mut scratch);
                    let span = |segment: usize| {
                        let start = (segment * lanes_here + b) * plane + row * len;
                        start..start + len
                    };
                    for i in 0..len {
                        let (x0, x1, v) = gates(u, dims, row, i, c);
                        let gy = grad[(row * len + i) * d + c];
                        let wi = x1 * v;
                        let gc = gy * x0;
                        let g_w = g.signal[i] + bias[c] * gc;
                        out[span(0).start + i] = gy * (w.signal[i] + bias[c] * wi);
                        out[span(1).start + i] = g_w * v;
                        out[span(2).start + i] = g_w * x1;
                    }
                }
            }
            let mut k_grad = vec![0.0f32; lanes_here * len];
            let mut signal = vec![0.0f32; plans.n];
            for (b, spectrum) in k_grad_spectra.iter_mut().enumerate() {
                for s in spectrum.iter_mut() {
                    *s *= scale;
                }
                plans.inverse(spectrum, &mut signal, &mut scratch);
                k_grad[b * len..(b + 1) * len].copy_from_slice(&signal[..len]);
            }
            (k_grad, bias_grad)
        })
        .collect();
    let u_grad = to_row_major(&u_planes, &task_major_bases(d, 3, plane), plane);
    let mut k_planes = Vec::with_capacity(d * len);
    let mut bias_grad = Vec::with_capacity(d);
    for (k, b) in tasks {
        k_planes.extend(k);
        bias_grad.extend(b);
    }
    let k_grad = to_row_major(&k_planes, &task_major_bases(d, 1, len), len);
    MixGradients {
        u: u_grad,
        k: k_grad,
        bias: bias_grad,
    }
}

/// The Hyena mix as a burn backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait HyenaOps: Backend {
    /// `x0 * (causal_conv(x1 * v, k) + bias * x1 * v)` (module documentation).
    fn fused_hyena_mix(
        u: FloatTensor<Self>,
        k: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// The long convolution and gates of the Hyena operator as one operation (differentiable when
/// an input tracks gradients).
///
/// # Shapes
/// - `u`: `[rows, len, 3d]` (`x0`, `x1`, `v`); `k`: `[len, d]`; `bias`: `[d]`
/// - output: `[rows, len, d]`
pub(crate) fn mix(u: Tensor<3>, k: Tensor<2>, bias: Tensor<1>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as HyenaOps>::fused_hyena_mix(
        u.into_dispatch(),
        k.into_dispatch(),
        bias.into_dispatch(),
    ))
}

fn mix_dims(u: &FlexTensor) -> MixDims {
    let shape = u.shape().to_vec();
    MixDims {
        rows: shape[0],
        len: shape[1],
        channels: shape[2] / 3,
    }
}

fn mix_run(inputs: &[FlexTensor; 3]) -> FlexTensor {
    let [u, k, bias] = inputs;
    let dims = mix_dims(u);
    let y = forward(dims, &host(u), &host(k), &host(bias));
    flex_tensor(y, vec![dims.rows, dims.len, dims.channels])
}

impl HyenaOps for Flex {
    fn fused_hyena_mix(u: FlexTensor, k: FlexTensor, bias: FlexTensor) -> FlexTensor {
        mix_run(&[u, k, bias])
    }
}

/// The autodiff node of one mix: three parents (`u`, `k`, `bias`).
#[derive(Debug)]
struct MixBackward;

impl Backward<Flex, 3> for MixBackward {
    type State = Arc<[FlexTensor; 3]>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let inputs = ops.state;
        let grad_out = grads.consume::<Flex>(&ops.node);
        let [u, k, bias] = &*inputs;
        let g = backward(
            mix_dims(u),
            &host(u),
            &host(k),
            &host(bias),
            &host(&grad_out),
        );
        let parents = ops.parents.map(|p| p.map(|node| node.id));
        for ((id, grad), input) in parents.into_iter().zip([g.u, g.k, g.bias]).zip(&*inputs) {
            if let Some(id) = id {
                grads.register::<Flex>(id, flex_tensor(grad, input.shape().to_vec()));
            }
        }
    }
}

impl<C: CheckpointStrategy> HyenaOps for Autodiff<Flex, C> {
    fn fused_hyena_mix(
        u: FloatTensor<Self>,
        k: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [u.node(), k.node(), bias.node()];
        let inputs = [u, k, bias].map(|t| t.into_primitive());
        match MixBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = mix_run(&inputs);
                prep.finish(Arc::new(inputs), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(mix_run(&inputs)),
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
    fn direct(dims: MixDims, u: &[f32], k: &[f32], bias: &[f32]) -> Vec<f64> {
        let MixDims {
            rows,
            len,
            channels: d,
        } = dims;
        let mut y = vec![0.0; rows * len * d];
        for r in 0..rows {
            for c in 0..d {
                let w = |i: usize| {
                    let (_, x1, v) = gates(u, dims, r, i, c);
                    x1 as f64 * v as f64
                };
                for i in 0..len {
                    let conv: f64 = (0..=i).map(|s| k[s * d + c] as f64 * w(i - s)).sum();
                    let (x0, _, _) = gates(u, dims, r, i, c);
                    y[(r * len + i) * d + c] = x0 as f64 * (conv + bias[c] as f64 * w(i));
                }
            }
        }
        y
    }

    fn problem(dims: MixDims) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let MixDims {
            rows,
            len,
            channels: d,
        } = dims;
        (draw(rows * len * 3 * d, 1), draw(len * d, 2), draw(d, 3))
    }

    /// Channel counts that fill whole tasks and leave a partial one; lengths that are and are
    /// not powers of two.
    const SHAPES: [MixDims; 3] = [
        MixDims {
            rows: 2,
            len: 9,
            channels: 5,
        },
        MixDims {
            rows: 1,
            len: 32,
            channels: 16,
        },
        MixDims {
            rows: 3,
            len: 20,
            channels: 37,
        },
    ];

    #[test]
    fn the_forward_pass_is_the_causal_sum() {
        for dims in SHAPES {
            let (u, k, bias) = problem(dims);
            let y = forward(dims, &u, &k, &bias);
            let want = direct(dims, &u, &k, &bias);
            let worst = y
                .iter()
                .zip(&want)
                .fold(0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
            assert!(worst < 1e-5, "{dims:?}: {worst}");
        }
    }

    /// The backward pass against central finite differences of `sum(y * weights)` in f64.
    #[test]
    fn the_backward_pass_matches_finite_differences() {
        for dims in SHAPES {
            let (u, k, bias) = problem(dims);
            let weights = draw(dims.rows * dims.len * dims.channels, 4);
            let g = backward(dims, &u, &k, &bias, &weights);
            let loss = |u: &[f32], k: &[f32], bias: &[f32]| -> f64 {
                direct(dims, u, k, bias)
                    .iter()
                    .zip(&weights)
                    .map(|(y, w)| y * *w as f64)
                    .sum()
            };
            let check =
                |name: &str, values: &[f32], analytic: &[f32], at: &dyn Fn(Vec<f32>) -> f64| {
                    for i in (0..values.len()).step_by(values.len() / 23 + 1) {
                        let h = 1e-2f32;
                        let (mut up, mut down) = (values.to_vec(), values.to_vec());
                        up[i] += h;
                        down[i] -= h;
                        let numeric = (at(up) - at(down)) / (2.0 * h as f64);
                        let diff = (numeric - analytic[i] as f64).abs();
                        assert!(
                            diff < 1e-3 * numeric.abs().max(1.0),
                            "{dims:?} {name}[{i}]: {numeric} vs {}",
                            analytic[i]
                        );
                    }
                };
            check("u", &u, &g.u, &|x| loss(&x, &k, &bias));
            check("k", &k, &g.k, &|x| loss(&u, &x, &bias));
            check("bias", &bias, &g.bias, &|x| loss(&u, &k, &x));
        }
    }
}
