//! Caduceus (Schiff et al. 2024), the token mixer of [`crate::Architecture::Caduceus`] blocks:
//! bidirectional Mamba (Gu & Dao 2023), and reverse-complement equivariance by parameter
//! sharing.
//!
//! **Mamba** (one direction), on a normalised input `x` of `[rows, len, d]`: `in_proj` widens
//! it to `2 e` channels, split into `x` and the gate `z`; a causal depthwise convolution and
//! SiLU mix neighbours of `x`; `x_proj` gives, per position, a low-rank step size, `B` and
//! `C`; the selective scan ([`selective_scan`]) runs the state-space recurrence with the step
//! size `delta = softplus(dt_proj(dt) + dt_bias)` and `A = -exp(A_log)`; the output, gated by
//! `SiLU(z)`, goes through `out_proj`.
//!
//! **BiMamba** adds a second scan over the reversed sequence, with its own convolution,
//! `x_proj`, `dt_proj`, `A_log` and `D`, and the forward scan's `in_proj` and `out_proj`
//! (Caduceus' `bidirectional_weight_tie`); the two outputs are added.
//!
//! **Reverse-complement equivariance** (Caduceus-PS, [`crate::CaduceusOptions::rc_equivariant`]):
//! the residual stream is `2 d` wide. The embedding writes `[emb(x), flip_C(emb(comp(x)))]`;
//! every block runs the same mixer on the first half and on the position-and-channel flip of
//! the second half and writes `[mix(a), flip_LC(mix(flip_LC(b)))]`; norms apply their scale
//! flipped to the second half; the LM head reads both halves. Reverse-complementing the input
//! then flips the whole stream in position and channel, exactly.
//!
//! Padding: a padded position passes the scans' states on unchanged (its step size is 0 and its
//! input 0), so real positions get what they would get unpadded. Without a padding mask every
//! position is a token, as in the reference code (which has no attention mask).

use burn::{
    module::{Module, Param},
    nn::Linear,
    tensor::{activation::silu, Device, Tensor, TensorData},
};

use crate::{block::linear, hyena::causal_depthwise_convolution, ModelConfig};

/// Smallest and largest initial step size of a fresh model (Mamba's `dt_min`, `dt_max`).
const DT_MIN: f64 = 1e-3;
const DT_MAX: f64 = 1e-1;

/// The parameters of one scan direction.
#[derive(Module, Debug)]
pub struct SelectiveSsm {
    /// Depthwise causal convolution weights `[inner, d_conv]`: tap `j` multiplies the input
    /// `d_conv - 1 - j` positions back.
    pub conv_weight: Param<Tensor<2>>,
    /// Its bias `[inner]`.
    pub conv_bias: Param<Tensor<1>>,
    /// `inner -> dt_rank + 2 d_state` (step size, `B`, `C`), no bias.
    pub x_proj: Linear,
    /// `dt_rank -> inner`, no bias (the bias is [`SelectiveSsm::dt_bias`]).
    pub dt_proj: Linear,
    /// Step-size bias `[inner]`, `softplus^-1` of the initial step sizes.
    pub dt_bias: Param<Tensor<1>>,
    /// `log(-A)`, `[inner, d_state]`.
    pub a_log: Param<Tensor<2>>,
    /// Skip weight `D` `[inner]`.
    pub d_skip: Param<Tensor<1>>,
}

/// A (bi)directional Mamba mixer with shared input and output projections.
#[derive(Module, Debug)]
pub struct BiMamba {
    /// `d_model -> 2 inner` (`x`, `z`), no bias.
    pub in_proj: Linear,
    /// The left-to-right scan.
    pub forward_ssm: SelectiveSsm,
    /// The right-to-left scan (bidirectional models).
    pub reverse_ssm: Option<SelectiveSsm>,
    /// `inner -> d_model`, no bias.
    pub out_proj: Linear,
}

/// `log(exp(x) - 1)`, the inverse of softplus.
fn inverse_softplus(x: f64) -> f64 {
    x + (-(-x).exp_m1()).ln()
}

impl SelectiveSsm {
    fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let c = cfg.caduceus_options();
        let inner = c.inner_width(cfg.d_model);
        let (state, rank) = (c.d_state, c.dt_rank(cfg.d_model));
        // Mamba draws the initial step sizes log-uniformly from [DT_MIN, DT_MAX]; a fresh
        // dnalm model spreads them evenly on that log scale (deterministic, same range), and
        // starts A at -(1..=d_state) (S4D-real) and D at 1, as Mamba does.
        let span = (DT_MAX / DT_MIN).ln();
        let dt_bias: Vec<f32> = (0..inner)
            .map(|i| {
                let share = if inner > 1 {
                    i as f64 / (inner - 1) as f64
                } else {
                    0.5
                };
                inverse_softplus(DT_MIN * (span * share).exp()) as f32
            })
            .collect();
        let a_log: Vec<f32> = (0..inner)
            .flat_map(|_| (1..=state).map(|s| (s as f32).ln()))
            .collect();
        SelectiveSsm {
            conv_weight: Param::from_tensor(Tensor::random(
                [inner, c.d_conv],
                burn::tensor::Distribution::Normal(0.0, 0.02),
                device,
            )),
            conv_bias: Param::from_tensor(Tensor::zeros([inner], device)),
            x_proj: linear(inner, rank + 2 * state, false, device),
            dt_proj: linear(rank, inner, false, device),
            dt_bias: Param::from_tensor(Tensor::from_data(
                TensorData::new(dt_bias, [inner]),
                device,
            )),
            a_log: Param::from_tensor(Tensor::from_data(
                TensorData::new(a_log, [inner, state]),
                device,
            )),
            d_skip: Param::from_tensor(Tensor::ones([inner], device)),
        }
    }

    /// One direction's scan of `x`, gated by `z`, left to right or (`reverse`) right to left;
    /// `keep` (`[rows, len, 1]`, 1 at real positions) makes padded positions pass the state on
    /// unchanged. On the CPU (unless `fused` is off) the convolution and the gated scan run as
    /// the fused operations of [`crate::fused::scan`]; elsewhere as burn operations.
    ///
    /// # Shapes
    /// - `x`, `z`, output: `[rows, len, inner]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        z: Tensor<3>,
        keep: Option<&Tensor<3>>,
        fused: bool,
        reverse: bool,
    ) -> Tensor<3> {
        let fused =
            fused && x.dtype() == burn::tensor::DType::F32 && crate::fused::supports(&x.device());
        if !fused {
            if !reverse {
                return self.forward_reference(x, z, keep);
            }
            let keep = keep.map(|k| k.clone().flip([1]));
            return self
                .forward_reference(x.flip([1]), z.flip([1]), keep.as_ref())
                .flip([1]);
        }
        let [rows, len, _] = x.dims();
        let x = match keep {
            Some(keep) => x * keep.clone(),
            None => x,
        };
        let u =
            crate::fused::scan::conv_silu(x, self.conv_weight.val(), self.conv_bias.val(), reverse);
        let (dt, b, c) = self.project(u.clone());
        let keep = match keep {
            Some(keep) => keep.clone().reshape([rows, len]),
            None => Tensor::ones([rows, len], &u.device()),
        };
        crate::fused::scan::selective_scan(
            crate::fused::scan::ScanTensors {
                u,
                dt: self.dt_proj.forward(dt),
                dt_bias: self.dt_bias.val(),
                a_log: self.a_log.val(),
                b,
                c,
                d: self.d_skip.val(),
                z,
                keep,
            },
            reverse,
        )
    }

    /// The low-rank step size, `B` and `C` of each position of `u`.
    fn project(&self, u: Tensor<3>) -> (Tensor<3>, Tensor<3>, Tensor<3>) {
        let [_, state] = self.a_log.dims();
        let [rank, _] = self.dt_proj.weight.dims();
        let projected = self.x_proj.forward(u);
        (
            projected.clone().narrow(2, 0, rank),
            projected.clone().narrow(2, rank, state),
            projected.narrow(2, rank + state, state),
        )
    }

    /// [`SelectiveSsm::forward`] left to right as burn operations (GPU backends, and the
    /// reference the fused path is tested against).
    fn forward_reference(&self, x: Tensor<3>, z: Tensor<3>, keep: Option<&Tensor<3>>) -> Tensor<3> {
        let x = match keep {
            Some(keep) => x * keep.clone(),
            None => x,
        };
        let x = silu(causal_depthwise_convolution(
            x,
            self.conv_weight.val(),
            self.conv_bias.val(),
        ));
        let [_, _, inner] = x.dims();
        let (dt, b, c) = self.project(x.clone());
        let mut delta =
            softplus(self.dt_proj.forward(dt) + self.dt_bias.val().reshape([1, 1, inner]));
        if let Some(keep) = keep {
            delta = delta * keep.clone();
        }
        let a = self.a_log.val().exp().neg();
        let y = selective_scan_reference(x, delta, a, b, c, self.d_skip.val());
        y * silu(z)
    }
}

impl BiMamba {
    /// A freshly initialised mixer for `cfg` (a Caduceus config).
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let c = cfg.caduceus_options();
        let (d, inner) = (cfg.d_model, c.inner_width(cfg.d_model));
        BiMamba {
            in_proj: linear(d, 2 * inner, false, device),
            forward_ssm: SelectiveSsm::new(cfg, device),
            reverse_ssm: c.bidirectional.then(|| SelectiveSsm::new(cfg, device)),
            out_proj: linear(inner, d, false, device),
        }
    }

    /// Mixes the tokens of `x` (already normalised).
    ///
    /// # Shapes
    /// - `x`, output: `[rows, len, d_model]`; `keep`: `[rows, len, 1]`
    pub fn forward(&self, x: Tensor<3>, keep: Option<&Tensor<3>>, fused: bool) -> Tensor<3> {
        let xz = self.in_proj.forward(x);
        let [_, _, wide] = xz.dims();
        let inner = wide / 2;
        let x = xz.clone().narrow(2, 0, inner);
        let z = xz.narrow(2, inner, inner);
        let mut y = self
            .forward_ssm
            .forward(x.clone(), z.clone(), keep, fused, false);
        if let Some(reverse) = &self.reverse_ssm {
            y = y + reverse.forward(x, z, keep, fused, true);
        }
        self.out_proj.forward(y)
    }

    /// Scan directions: 2 when bidirectional.
    pub(crate) fn directions(&self) -> usize {
        1 + usize::from(self.reverse_ssm.is_some())
    }

    /// Direction `direction`'s share of [`BiMamba::forward`] (0: forward scan, 1: reverse):
    /// `out_proj` of that scan alone. `out_proj` has no bias (Caduceus refuses one), so the
    /// shares of the directions sum to the mixer's output; activation checkpointing recomputes
    /// them one at a time ([`crate::block::Block::forward_part`]).
    pub(crate) fn forward_direction(
        &self,
        x: Tensor<3>,
        keep: Option<&Tensor<3>>,
        fused: bool,
        direction: usize,
    ) -> Tensor<3> {
        let xz = self.in_proj.forward(x);
        let [_, _, wide] = xz.dims();
        let inner = wide / 2;
        let x = xz.clone().narrow(2, 0, inner);
        let z = xz.narrow(2, inner, inner);
        let y = match (&self.reverse_ssm, direction) {
            (Some(reverse), 1) => reverse.forward(x, z, keep, fused, true),
            _ => self.forward_ssm.forward(x, z, keep, fused, false),
        };
        self.out_proj.forward(y)
    }

    /// [`BiMamba::forward`] on a reverse-complement-equivariant stream `[a, b]` (`2 d_model`
    /// channels): `[mix(a), flip_LC(mix(flip_LC(b)))]`, both halves in one batch.
    pub fn forward_equivariant(
        &self,
        x: Tensor<3>,
        keep: Option<&Tensor<3>>,
        fused: bool,
    ) -> Tensor<3> {
        let [rows, _, _] = x.dims();
        let (a, b) = halves(x);
        let both = Tensor::cat(vec![a, b.flip([1, 2])], 0);
        let keep = keep.map(|k| Tensor::cat(vec![k.clone(), k.clone().flip([1])], 0));
        let mixed = self.forward(both, keep.as_ref(), fused);
        let a = mixed.clone().narrow(0, 0, rows);
        let b = mixed.narrow(0, rows, rows).flip([1, 2]);
        Tensor::cat(vec![a, b], 2)
    }
}

/// The two channel halves of an equivariant stream.
pub(crate) fn halves<const D: usize>(x: Tensor<D>) -> (Tensor<D>, Tensor<D>) {
    let width = x.dims()[D - 1];
    let half = width / 2;
    (
        x.clone().narrow(D - 1, 0, half),
        x.narrow(D - 1, half, half),
    )
}

/// `[b, a]` from `[a, b]`: what the reference code's fused add-and-norm does to the residual
/// stream of Caduceus-PS before every block ([`crate::CaduceusOptions::swap_halves`]).
pub(crate) fn swap_halves(x: Tensor<3>) -> Tensor<3> {
    let (a, b) = halves(x);
    Tensor::cat(vec![b, a], 2)
}

/// `softplus(x) = ln(1 + e^x)`, in the form that neither overflows nor loses small values:
/// `max(x, 0) + ln(1 + e^-|x|)`.
fn softplus(x: Tensor<3>) -> Tensor<3> {
    x.clone().clamp_min(0.0) + x.abs().neg().exp().log1p()
}

/// Mamba's selective scan, `y_t = <h_t, C_t> + D u_t` with
/// `h_t = exp(delta_t A) h_(t-1) + delta_t u_t B_t` per channel, as burn operations, one
/// position at a time (the path of GPU backends, and the reference the fused scan is tested
/// against).
///
/// # Shapes
/// - `u`, `delta`, output: `[rows, len, inner]`; `a`: `[inner, state]`; `b`, `c`:
///   `[rows, len, state]`; `d`: `[inner]`
pub fn selective_scan_reference(
    u: Tensor<3>,
    delta: Tensor<3>,
    a: Tensor<2>,
    b: Tensor<3>,
    c: Tensor<3>,
    d: Tensor<1>,
) -> Tensor<3> {
    let [rows, len, inner] = u.dims();
    let [_, state] = a.dims();
    // [rows, len, inner, state]
    let decay = (delta.clone().unsqueeze_dim::<4>(3) * a.unsqueeze::<4>()).exp();
    let drive = (delta * u.clone()).unsqueeze_dim::<4>(3) * b.unsqueeze_dim::<4>(2);
    let mut h = Tensor::<3>::zeros([rows, inner, state], &u.device());
    let mut ys = Vec::with_capacity(len);
    for t in 0..len {
        let at = |x: &Tensor<4>| x.clone().narrow(1, t, 1).reshape([rows, inner, state]);
        h = at(&decay) * h + at(&drive);
        let ct = c.clone().narrow(1, t, 1); // [rows, 1, state]
        ys.push((h.clone() * ct).sum_dim(2).reshape([rows, 1, inner]));
    }
    Tensor::cat(ys, 1) + u * d.reshape([1, 1, inner])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Architecture, AttentionPattern, CaduceusOptions, DnaLm, ModelInput};

    /// A character vocabulary of 12 (HyenaDNA/Caduceus order: 7 specials, then A C G T N).
    pub(crate) fn tiny(rc_equivariant: bool) -> ModelConfig {
        let mut cfg = ModelConfig::new(Architecture::Caduceus, 12);
        (cfg.d_model, cfg.n_layers, cfg.max_positions) = (8, 2, 64);
        cfg.caduceus = Some(CaduceusOptions {
            d_state: 4,
            rc_equivariant,
            complement_map: if rc_equivariant {
                vec![0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11]
            } else {
                Vec::new()
            },
            ..CaduceusOptions::default()
        });
        cfg
    }

    #[test]
    fn the_config_counts_every_parameter() {
        for rc in [false, true] {
            let cfg = tiny(rc);
            let model = DnaLm::new(&cfg, &crate::cpu()).unwrap();
            assert_eq!(model.num_params(), cfg.parameter_count(), "rc {rc}");
        }
    }

    fn random(dims: [usize; 3], seed: u64, device: &Device) -> Tensor<3> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_data(TensorData::new(v, dims), device)
    }

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// One direction of a Mamba mixer, fused and as burn operations, agree on the output and
    /// on the gradients of the input, the gate and every parameter, in both directions and
    /// with padding.
    #[test]
    fn the_fused_direction_matches_the_reference_with_gradients() {
        let device = crate::cpu().autodiff();
        let cfg = tiny(false);
        let inner = cfg.caduceus_options().inner_width(cfg.d_model);
        let (rows, len) = (2, 40);
        let ssm = crate::io::reinitialize(SelectiveSsm::new(&cfg, &device), 9);
        let x0 = random([rows, len, inner], 1, &device);
        let z0 = random([rows, len, inner], 2, &device);
        let weights = random([rows, len, inner], 3, &device);
        let mut keep = vec![1.0f32; rows * len];
        keep[len - 4..len].fill(0.0);
        let keep = Tensor::<3>::from_data(TensorData::new(keep, [rows, len, 1]), &device);
        for reverse in [false, true] {
            let run = |fused: bool| {
                let (x, z) = (x0.clone().require_grad(), z0.clone().require_grad());
                let y = ssm.forward(x.clone(), z.clone(), Some(&keep), fused, reverse);
                let grads = (y.clone() * weights.clone()).sum().backward();
                let mut g: Vec<Tensor<1>> = vec![
                    x.grad(&grads).unwrap().flatten(0, 2),
                    z.grad(&grads).unwrap().flatten(0, 2),
                ];
                let params = crate::tensors::named_parameters(&ssm);
                g.extend(ssm.a_log.val().grad(&grads).map(|t| t.flatten(0, 1)));
                g.extend(ssm.dt_bias.val().grad(&grads));
                g.extend(ssm.d_skip.val().grad(&grads));
                g.extend(ssm.conv_weight.val().grad(&grads).map(|t| t.flatten(0, 1)));
                g.extend(ssm.conv_bias.val().grad(&grads));
                g.extend(
                    ssm.x_proj
                        .weight
                        .val()
                        .grad(&grads)
                        .map(|t| t.flatten(0, 1)),
                );
                g.extend(
                    ssm.dt_proj
                        .weight
                        .val()
                        .grad(&grads)
                        .map(|t| t.flatten(0, 1)),
                );
                assert_eq!(g.len(), params.len() + 2, "every parameter has a gradient");
                (y.inner(), g)
            };
            let (y1, g1) = run(true);
            let (y2, g2) = run(false);
            assert!(max_diff(y1, y2) < 1e-5, "reverse {reverse}");
            for (i, (a, b)) in g1.into_iter().zip(g2).enumerate() {
                let scale = b.clone().abs().max().into_scalar::<f32>().max(1e-3);
                let diff = max_diff(a, b) / scale;
                assert!(
                    diff < 1e-3,
                    "reverse {reverse}: gradient {i} differs by {diff}"
                );
            }
        }
    }

    fn reverse_complement(ids: &[u32], map: &[u32]) -> Vec<u32> {
        ids.iter().rev().map(|&i| map[i as usize]).collect()
    }

    /// Caduceus-PS: the hidden states of the reverse complement are the hidden states flipped
    /// in position and channel, and its logits are the logits flipped in position with the
    /// vocabulary complemented.
    #[test]
    fn caduceus_ps_is_reverse_complement_equivariant() {
        let cfg = tiny(true);
        let map = cfg.caduceus_options().complement_map;
        let model = DnaLm::seeded(&cfg, &crate::cpu(), 7).unwrap();
        let ids: Vec<u32> = vec![7, 8, 9, 10, 10, 7, 11, 8, 9, 9, 7, 1];
        let rc = reverse_complement(&ids, &map);
        let run = |row: &[u32]| {
            let input = ModelInput::from_rows(&[row.to_vec()], AttentionPattern::Bidirectional);
            model.forward(&input).unwrap()
        };
        let (h, h_rc) = (run(&ids), run(&rc));
        assert_eq!(h.dims(), [1, ids.len(), 16]);
        assert!(max_diff(h_rc.clone(), h.clone().flip([1, 2])) < 1e-5);
        let logits = |h: Tensor<3>| model.lm_logits(h.reshape([ids.len(), 16]));
        let (l, l_rc) = (logits(h), logits(h_rc));
        let map_ids = Tensor::<1, burn::tensor::Int>::from_data(
            TensorData::new(
                map.iter().map(|&m| m as i64).collect::<Vec<_>>(),
                [map.len()],
            ),
            &crate::cpu(),
        );
        let expected = l.flip([0]).select(1, map_ids);
        let worst = max_diff(l_rc, expected);
        assert!(worst < 1e-5, "{worst}");
    }

    /// A padded row gives, at its real positions, what it gives alone (both directions).
    #[test]
    fn padding_does_not_reach_real_positions() {
        for rc in [false, true] {
            let model = DnaLm::seeded(&tiny(rc), &crate::cpu(), 3).unwrap();
            let short = vec![7u32, 9, 8, 10, 7, 1];
            let long = vec![8u32, 8, 9, 7, 10, 10, 9, 7, 8, 1];
            let batch =
                ModelInput::from_rows(&[short.clone(), long], AttentionPattern::Bidirectional);
            let both = model.forward(&batch).unwrap();
            let alone = model
                .forward(&ModelInput::from_rows(
                    std::slice::from_ref(&short),
                    AttentionPattern::Bidirectional,
                ))
                .unwrap();
            let padded = both.narrow(0, 0, 1).narrow(1, 0, short.len());
            assert!(max_diff(padded, alone) < 1e-5, "rc {rc}");
        }
    }

    /// Gradients reach every parameter of both scans.
    #[test]
    fn training_reaches_both_directions() {
        use burn::module::Module;
        let device = crate::cpu().autodiff();
        let model = DnaLm::seeded(&tiny(true), &device, 5).unwrap();
        let input =
            ModelInput::from_rows(&[vec![7, 8, 9, 10, 11, 1]], AttentionPattern::Bidirectional);
        let loss = model.forward(&input).unwrap().powi_scalar(2).sum();
        let grads = loss.backward();
        let mixer = model.blocks[0].mamba.as_ref().unwrap();
        for ssm in [&mixer.forward_ssm, mixer.reverse_ssm.as_ref().unwrap()] {
            let g = ssm.a_log.val().grad(&grads).unwrap();
            let norm = g.abs().sum().into_scalar::<f32>();
            assert!(norm > 0.0);
        }
        assert!(model.num_params() > 0);
    }
}
