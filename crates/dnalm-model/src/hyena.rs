//! The Hyena operator of HyenaDNA (Poli et al. 2023; Nguyen et al. 2023), the token mixer of
//! [`crate::Architecture::Hyena`] blocks.
//!
//! For an input `x` of `[rows, len, d]` (already normalised by the block):
//!
//! 1. `in_proj` widens it to `3d` channels; a depthwise convolution of width 3 over the
//!    current and two previous positions (causal) mixes neighbours; the channels split into
//!    `x0`, `x1`, `v`;
//! 2. `v = v * x1`, then `v = (k * v) + v * bias`: a causal convolution with a long filter `k`
//!    (one per channel, as long as the input), applied by FFT in `O(len log len)`;
//! 3. `out_proj(v * x0)`.
//!
//! The long filter is implicit: a small network maps positional features (time, and cosines and
//! sines of a few frequencies; trained) through linear layers with sine activations to `d`
//! channels per position, and an exponential decay window, fixed per channel, shapes it. The
//! filter at lag `s` depends only on `s`, so a position never sees later ones, and memory is
//! linear in the length.
//!
//! On the CPU the short convolution, the FFT convolution and the gates of step 1-3 run as one
//! fused operation with a hand-written backward pass ([`crate::fused::hyena`], FFTs by the
//! `realfft` crate); elsewhere (GPU backends, and as the reference the fused path is tested
//! against) as burn operations, with burn's own FFT (`burn::signal`, with autodiff). Both use
//! sizes rounded up to a power of two (HyenaDNA uses `2 len`; any size `>= 2 len - 1` gives the
//! same linear convolution).

use burn::{
    module::{Module, Param},
    nn::Linear,
    tensor::{Device, Tensor, TensorData},
};

use crate::{block::linear, config::HyenaOptions, ModelConfig};

/// HyenaDNA's decay window: channel `c` decays as `exp(-t |delta_c|)` over normalised time
/// `t` in `[0, 1]`, with `delta` spread evenly between these rates (`ln(target) / pct`), plus a
/// floor of [`WINDOW_SHIFT`].
const FAST_DECAY_PCT: f64 = 0.3;
const SLOW_DECAY_PCT: f64 = 1.5;
const DECAY_TARGET: f64 = 1e-2;
/// Added to the decay window, so that no lag is cut off entirely.
pub const WINDOW_SHIFT: f64 = 0.05;

/// `torch.linspace(start, end, n)` in f64.
pub(crate) fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    (0..n).map(|i| start + i as f64 * step).collect()
}

/// Normalised time `t` (`[max_len]`, 0 to 1) and the decay rates `delta` (`[d]`) of the
/// window: HyenaDNA's fixed buffers (`pos_emb.t`, `modulation.deltas`), which import checks.
pub fn window_buffers(max_len: usize, d_model: usize) -> (Vec<f64>, Vec<f64>) {
    let max_decay = DECAY_TARGET.ln() / FAST_DECAY_PCT;
    let min_decay = DECAY_TARGET.ln() / SLOW_DECAY_PCT;
    (
        linspace(0.0, 1.0, max_len),
        linspace(min_decay, max_decay, d_model),
    )
}

/// The initial positional features `[max_len, emb_dim]`: time, then `cos(-f w)` and
/// `sin(-f w)` for `(emb_dim - 1) / 2` frequencies `f` (HyenaDNA's `pos_emb.z`, a trained
/// parameter).
fn initial_positions(max_len: usize, emb_dim: usize) -> Vec<f32> {
    let bands = (emb_dim - 1) / 2;
    let t = linspace(0.0, 1.0, max_len);
    let rescaled = linspace(0.0, max_len as f64 - 1.0, max_len);
    let f = linspace(1e-4, bands as f64 - 1.0, bands);
    let mut z = Vec::with_capacity(max_len * emb_dim);
    for p in 0..max_len {
        let w = std::f64::consts::TAU * rescaled[p] / max_len as f64;
        z.push(t[p] as f32);
        z.extend(f.iter().map(|f| (-f * w).cos() as f32));
        z.extend(f.iter().map(|f| (-f * w).sin() as f32));
    }
    z
}

/// The implicit long filter: positional features through a sine-activated network, times the
/// decay window.
#[derive(Module, Debug)]
pub struct HyenaFilter {
    /// Positional features `[max_len, emb_dim]` (trained).
    pub positions: Param<Tensor<2>>,
    /// `emb_dim -> filter_order`.
    pub input: Linear,
    /// Frequencies of the sine activations `[filter_order]`, one set shared by every sine of
    /// the network (trained).
    pub freq: Param<Tensor<1>>,
    /// Hidden layers, `filter_order -> filter_order`.
    pub inner: Vec<Linear>,
    /// `filter_order -> d_model`, no bias.
    pub output: Linear,
    /// Per-channel weight of the skip term `v * bias` added to the convolution `[d_model]`.
    pub bias: Param<Tensor<1>>,
    /// Normalised time of each position `[max_len, 1]` (a constant, not a parameter).
    pub time: Tensor<2>,
    /// Decay rate of each channel, `|delta|`, `[1, d_model]` (a constant). The window
    /// `exp(-time * decay) + shift` is built for the positions a call uses, as HyenaDNA does:
    /// kept whole it would be `max_len x d_model` per layer (1 GB for a 1 M-base model).
    pub decay: Tensor<2>,
}

impl HyenaFilter {
    /// The filter for the first `len` lags.
    ///
    /// # Shapes
    /// - output: `[len, d_model]`
    pub fn taps(&self, len: usize) -> Tensor<2> {
        let freq = self.freq.val().unsqueeze::<2>();
        let sine = |x: Tensor<2>| (x * freq.clone()).sin();
        let mut h = sine(self.input.forward(self.positions.val().narrow(0, 0, len)));
        for layer in &self.inner {
            h = sine(layer.forward(h));
        }
        let window = (self.time.clone().narrow(0, 0, len) * self.decay.clone())
            .neg()
            .exp()
            + WINDOW_SHIFT;
        self.output.forward(h) * window
    }
}

/// The Hyena operator of order 2 (see the module documentation).
#[derive(Module, Debug)]
pub struct HyenaOperator {
    /// `d_model -> 3 d_model` (`x0`, `x1`, `v`).
    pub in_proj: Linear,
    /// Depthwise causal convolution weights `[3 d_model, 3]`: tap `j` multiplies the input
    /// `2 - j` positions back.
    pub short_filter: Param<Tensor<2>>,
    /// Its bias `[3 d_model]`.
    pub short_filter_bias: Param<Tensor<1>>,
    /// The implicit long filter.
    pub filter: HyenaFilter,
    /// `d_model -> d_model`.
    pub out_proj: Linear,
}

impl HyenaOperator {
    /// A freshly initialised operator (linear layers N(0, 0.02²); positional features,
    /// frequencies and window as HyenaDNA computes them).
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let d = cfg.d_model;
        let HyenaOptions {
            filter_order,
            emb_dim,
            inner_layers,
            activation_freq,
            short_filter,
        } = cfg.hyena_options();
        let max_len = cfg.max_positions;
        let (t, deltas) = window_buffers(max_len, d);
        let column = |values: Vec<f32>, shape: [usize; 2]| {
            Tensor::from_data(TensorData::new(values, shape), device)
        };
        HyenaOperator {
            in_proj: linear(d, 3 * d, true, device),
            short_filter: Param::from_tensor(Tensor::zeros([3 * d, short_filter], device)),
            short_filter_bias: Param::from_tensor(Tensor::zeros([3 * d], device)),
            filter: HyenaFilter {
                positions: Param::from_tensor(Tensor::from_data(
                    TensorData::new(initial_positions(max_len, emb_dim), [max_len, emb_dim]),
                    device,
                )),
                input: linear(emb_dim, filter_order, true, device),
                freq: Param::from_tensor(Tensor::full(
                    [filter_order],
                    activation_freq as f32,
                    device,
                )),
                inner: (0..inner_layers)
                    .map(|_| linear(filter_order, filter_order, true, device))
                    .collect(),
                output: linear(filter_order, d, false, device),
                bias: Param::from_tensor(Tensor::zeros([d], device)),
                time: column(t.iter().map(|&t| t as f32).collect(), [max_len, 1]),
                decay: column(deltas.iter().map(|d| d.abs() as f32).collect(), [1, d]),
            },
            out_proj: linear(d, d, true, device),
        }
    }

    /// Mixes the tokens of `x`; position `i` of the output depends on positions `0..=i` only.
    /// On the CPU in f32 (unless `fused` is off) the short and long convolutions and the gates
    /// run as the fused operation of [`crate::fused::hyena`]; elsewhere as burn operations.
    ///
    /// # Shapes
    /// - `x`, output: `[rows, len, d_model]`
    pub fn forward(&self, x: Tensor<3>, fused: bool) -> Tensor<3> {
        let [_, len, d] = x.dims();
        let fused =
            fused && x.dtype() == burn::tensor::DType::F32 && crate::fused::supports(&x.device());
        let projected = self.in_proj.forward(x);
        let taps = self.filter.taps(len);
        let mixed = if fused {
            crate::fused::hyena::mix(
                projected,
                self.short_filter.val(),
                self.short_filter_bias.val(),
                taps,
                self.filter.bias.val(),
            )
        } else {
            let u = self.short_convolution(projected);
            let x0 = u.clone().narrow(2, 0, d);
            let x1 = u.clone().narrow(2, d, d);
            let v = u.narrow(2, 2 * d, d) * x1;
            let skip = v.clone() * self.filter.bias.val().unsqueeze::<3>();
            (causal_fft_convolution(v, taps) + skip) * x0
        };
        self.out_proj.forward(mixed)
    }

    /// The depthwise causal convolution of width 3 on the projections.
    fn short_convolution(&self, u: Tensor<3>) -> Tensor<3> {
        causal_depthwise_convolution(u, self.short_filter.val(), self.short_filter_bias.val())
    }
}

/// A depthwise causal convolution: `out[i] = bias + sum_j w[j] u[i - (width - 1) + j]`, zero
/// before the start (Hyena's short filter; Mamba's `conv1d` with padding `width - 1`, cut to
/// the input length).
///
/// # Shapes
/// - `u`, output: `[rows, len, channels]`; `weights`: `[channels, width]`; `bias`: `[channels]`
pub fn causal_depthwise_convolution(
    u: Tensor<3>,
    weights: Tensor<2>,
    bias: Tensor<1>,
) -> Tensor<3> {
    let [rows, len, channels] = u.dims();
    let [_, width] = weights.dims();
    let padded = Tensor::cat(
        vec![Tensor::zeros([rows, width - 1, channels], &u.device()), u],
        1,
    );
    let mut out = bias.reshape([1, 1, channels]);
    for j in 0..width {
        let tap = weights.clone().narrow(1, j, 1).reshape([1, 1, channels]);
        out = out + padded.clone().narrow(1, j, len) * tap;
    }
    out
}

/// `y[i] = sum_{s <= i} k[s] v[i - s]` per channel, by FFT.
///
/// # Shapes
/// - `v`: `[rows, len, channels]`; `k`: `[len, channels]`; output: `[rows, len, channels]`
pub fn causal_fft_convolution(v: Tensor<3>, k: Tensor<2>) -> Tensor<3> {
    use burn::signal::{irfft, rfft};
    let [_, len, _] = v.dims();
    let n = (2 * len).next_power_of_two();
    let (vr, vi) = rfft(v.swap_dims(1, 2), 2, Some(n));
    let (kr, ki) = rfft(k.swap_dims(0, 1), 1, Some(n));
    let (kr, ki) = (kr.unsqueeze::<3>(), ki.unsqueeze::<3>());
    let re = vr.clone() * kr.clone() - vi.clone() * ki.clone();
    let im = vr * ki + vi * kr;
    irfft(re, im, 2, Some(n)).narrow(2, 0, len).swap_dims(1, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Architecture, AttentionPattern, DnaLm, ModelInput};

    fn tiny() -> ModelConfig {
        let mut cfg = ModelConfig::new(Architecture::Hyena, 12);
        (cfg.d_model, cfg.n_layers, cfg.d_ffn, cfg.max_positions) = (8, 2, 16, 32);
        cfg.hyena = Some(HyenaOptions {
            filter_order: 6,
            ..HyenaOptions::default()
        });
        cfg
    }

    #[test]
    fn the_config_counts_every_parameter() {
        use burn::module::Module;
        let cfg = tiny();
        let model = DnaLm::new(&cfg, &crate::cpu()).unwrap();
        assert_eq!(model.num_params(), cfg.parameter_count());
    }

    /// Changing token `j` changes no output before `j` (and does change output `j`).
    #[test]
    fn a_hyena_model_is_causal() {
        let model = DnaLm::seeded(&tiny(), &crate::cpu(), 3).unwrap();
        let row: Vec<u32> = (0..20).map(|i| 5 + (i * 7) % 5).collect();
        let hidden = |row: Vec<u32>| {
            let input = ModelInput::from_rows(&[row], AttentionPattern::Causal);
            let out = model.forward(&input).unwrap();
            out.into_data().try_to_vec::<f32>().unwrap()
        };
        let base = hidden(row.clone());
        let j = 11;
        let mut changed = row;
        changed[j] = if changed[j] == 5 { 6 } else { 5 };
        let other = hidden(changed);
        let d = 8;
        let diff = |p: usize| {
            (p * d..(p + 1) * d)
                .map(|i| (base[i] - other[i]).abs())
                .fold(0.0f32, f32::max)
        };
        for p in 0..j {
            assert!(diff(p) < 1e-6, "position {p} sees token {j}: {}", diff(p));
        }
        assert!(diff(j) > 1e-4);
    }

    /// Permutation LM's two-stream attention has no Hyena counterpart: one error, no panic.
    #[test]
    fn two_stream_attention_is_refused() {
        let model = DnaLm::seeded(&tiny(), &crate::cpu(), 5).unwrap();
        let input = ModelInput::from_rows(&[vec![5, 6, 7]], AttentionPattern::Causal);
        let err = model
            .forward_two_stream(&input, vec![true; 9], vec![true; 9])
            .unwrap_err()
            .to_string();
        assert!(err.contains("Hyena"), "{err}");
    }

    /// Every parameter, the filter network's included, receives a gradient through the FFT
    /// (all but dnalm's own deletion head and permutation query vector, unused here).
    #[test]
    fn gradients_reach_the_filter_network() {
        let device = crate::cpu().autodiff();
        let model = DnaLm::seeded(&tiny(), &device, 4).unwrap();
        let input = ModelInput::from_rows(&[vec![5, 6, 7, 8, 9, 5, 6]], AttentionPattern::Causal);
        let hidden = model.forward(&input).unwrap().reshape([7, 8]);
        let loss = model.lm_logits(hidden).sum();
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
        let names = crate::tensors::named_parameters(&model);
        assert!(names.contains_key("blocks.0.hyena.filter.positions"));
        assert_eq!(grads.len(), names.len() - 3, "{:?}", names.keys());
    }

    /// The fused operator and the burn operations agree on the hidden states and on every
    /// parameter's gradient (the filter network's included).
    #[test]
    fn the_fused_operator_matches_the_reference_with_gradients() {
        let device = crate::cpu().autodiff();
        let mut cfg = tiny();
        cfg.d_model = 20;
        let rows = [
            (0..23).map(|i| 5 + (i * 7) % 5).collect::<Vec<u32>>(),
            (0..17).map(|i| 5 + (i * 3) % 5).collect(),
        ];
        let run = |fused: bool| {
            let model = DnaLm::seeded(&cfg, &device, 6)
                .unwrap()
                .with_fused_layers(fused);
            let input = ModelInput::from_rows(&rows, AttentionPattern::Causal);
            let hidden = model.forward(&input).unwrap();
            let weights = hidden.clone().detach().sin();
            let grads = (hidden.clone() * weights).sum().backward();
            let grads = burn::optim::GradientsParams::from_grads(grads, &model);
            let grads = crate::tensors::named_gradients(&model, &grads);
            (hidden.into_data().try_to_vec::<f32>().unwrap(), grads)
        };
        let ((h1, g1), (h2, g2)) = (run(true), run(false));
        let worst = |a: &[f32], b: &[f32]| {
            let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
        };
        assert!(worst(&h1, &h2) < 1e-5, "hidden states: {}", worst(&h1, &h2));
        assert_eq!(g1.keys().collect::<Vec<_>>(), g2.keys().collect::<Vec<_>>());
        assert!(g1.len() > 20, "{} gradients", g1.len());
        for (name, a) in &g1 {
            assert!(
                worst(a, &g2[name]) < 1e-4,
                "{name}: {}",
                worst(a, &g2[name])
            );
        }
    }

    /// The FFT convolution equals the direct sum, for lengths that are and are not powers of
    /// two.
    #[test]
    fn fft_convolution_is_the_causal_sum() {
        let device = crate::cpu();
        for len in [1usize, 5, 8, 13] {
            let channels = 3;
            let v: Vec<f32> = (0..2 * len * channels)
                .map(|i| ((i * 7919) % 17) as f32 / 17.0 - 0.5)
                .collect();
            let k: Vec<f32> = (0..len * channels)
                .map(|i| ((i * 104_729) % 13) as f32 / 13.0 - 0.4)
                .collect();
            let got = causal_fft_convolution(
                Tensor::from_data(TensorData::new(v.clone(), [2, len, channels]), &device),
                Tensor::from_data(TensorData::new(k.clone(), [len, channels]), &device),
            )
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
            for r in 0..2 {
                for i in 0..len {
                    for c in 0..channels {
                        let want: f32 = (0..=i)
                            .map(|s| k[s * channels + c] * v[(r * len + i - s) * channels + c])
                            .sum();
                        let g = got[(r * len + i) * channels + c];
                        assert!((g - want).abs() < 1e-5, "len {len}: {g} vs {want}");
                    }
                }
            }
        }
    }
}
