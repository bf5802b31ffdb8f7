//! The transformer block shared by the encoder and the decoder.
//!
//! Both are pre-normalisation blocks, `x + attn(norm(x))` then `x + ffn(norm(x))`; the encoder
//! uses LayerNorm, a GELU feed-forward and biases (ESM-2), the decoder RMSNorm, SwiGLU and no
//! biases (Llama). Which one is fixed by [`Architecture`], unless the config names another
//! feed-forward network ([`crate::FeedForwardKind`]: NT-v2's bias-free SwiGLU encoder, DNABERT-2's
//! GEGLU). With [`ModelConfig::post_norm`] the encoder block is BERT's instead:
//! `norm(x + attn(x))` then `norm(x + ffn(x))`. A Hyena block ([`Architecture::Hyena`]) is
//! the pre-LayerNorm block with the Hyena operator ([`crate::hyena`]) in place of attention and
//! HyenaDNA's tanh-GELU feed-forward network. A Caduceus block ([`Architecture::Caduceus`]) is
//! `x + mix(rmsnorm(x))` with a BiMamba mixer ([`crate::caduceus`]) and no feed-forward
//! network, on a stream of `2 d_model` channels when reverse-complement equivariant.

use burn::{
    module::Module,
    nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig},
    tensor::{
        activation::{gelu, silu},
        Device, Tensor,
    },
};

use crate::{
    attention::{apply_rotary, chunked_attention, fused_attention, AttentionBias},
    caduceus::{halves, swap_halves, BiMamba},
    hyena::HyenaOperator,
    Architecture, FeedForwardKind, ModelConfig,
};

/// LayerNorm (encoder) or RMSNorm (decoder).
#[derive(Module, Debug)]
pub enum Norm {
    /// LayerNorm with bias.
    Layer(LayerNorm),
    /// RMSNorm.
    Rms(RmsNorm),
}

impl Norm {
    /// The normalisation `cfg.architecture` calls for, over `cfg.d_model` features.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        match cfg.architecture {
            Architecture::Encoder | Architecture::Hyena => Norm::Layer(
                LayerNormConfig::new(cfg.d_model)
                    .with_epsilon(cfg.norm_eps)
                    .init(device),
            ),
            Architecture::Decoder | Architecture::Caduceus => Norm::Rms(
                RmsNormConfig::new(cfg.d_model)
                    .with_epsilon(cfg.norm_eps)
                    .init(device),
            ),
        }
    }

    /// Normalises over the last axis.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Norm::Layer(n) => n.forward(x),
            Norm::Rms(n) => n.forward(x),
        }
    }

    /// Normalises a reverse-complement-equivariant stream `[a, b]` (`2 d` channels):
    /// `[norm(a), flip_C(norm(flip_C(b)))]`, i.e. the scale applies flipped to `b`.
    pub fn forward_equivariant<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let (a, b) = halves(x);
        let b = self.forward(b.flip([D - 1])).flip([D - 1]);
        Tensor::cat(vec![self.forward(a), b], D - 1)
    }
}

/// Position-wise feed-forward network ([`FeedForwardKind`]).
#[derive(Module, Debug)]
pub enum FeedForward {
    /// `down(gelu(up(x)))`, with biases (encoder).
    Gelu(GeluFeedForward),
    /// `down(silu(gate(x)) * up(x))` (decoder, Nucleotide Transformer v2).
    SwiGlu(GatedFeedForward),
    /// `down(gelu(gate(x)) * up(x))` (DNABERT-2).
    GeGlu(GatedFeedForward),
    /// `down(gelu_tanh(up(x)))`, with biases (HyenaDNA).
    GeluTanh(GeluFeedForward),
}

/// The encoder's feed-forward network.
#[derive(Module, Debug)]
pub struct GeluFeedForward {
    /// `d_model -> d_ffn`.
    pub up: Linear,
    /// `d_ffn -> d_model`.
    pub down: Linear,
}

/// A gated feed-forward network (SwiGLU, GEGLU). Biases as the config says
/// ([`ModelConfig::ffn_biases`]).
#[derive(Module, Debug)]
pub struct GatedFeedForward {
    /// `d_model -> d_ffn`, through the activation.
    pub gate: Linear,
    /// `d_model -> d_ffn`.
    pub up: Linear,
    /// `d_ffn -> d_model`.
    pub down: Linear,
}

impl FeedForward {
    fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let (d, f) = (cfg.d_model, cfg.d_ffn);
        let (bias_in, bias_out) = cfg.ffn_biases();
        let gated = || GatedFeedForward {
            gate: linear(d, f, bias_in, device),
            up: linear(d, f, bias_in, device),
            down: linear(f, d, bias_out, device),
        };
        match cfg.feed_forward() {
            FeedForwardKind::Gelu => FeedForward::Gelu(GeluFeedForward {
                up: linear(d, f, bias_in, device),
                down: linear(f, d, bias_out, device),
            }),
            FeedForwardKind::SwiGlu => FeedForward::SwiGlu(gated()),
            FeedForwardKind::GeGlu => FeedForward::GeGlu(gated()),
            FeedForwardKind::GeluTanh => FeedForward::GeluTanh(GeluFeedForward {
                up: linear(d, f, bias_in, device),
                down: linear(f, d, bias_out, device),
            }),
        }
    }

    /// `fused`: GELU-tanh may run as the fused operation of [`crate::fused::gelu`] (on the CPU
    /// in f32).
    fn forward(&self, x: Tensor<3>, fused: bool) -> Tensor<3> {
        match self {
            FeedForward::Gelu(f) => f.down.forward(gelu(f.up.forward(x))),
            FeedForward::SwiGlu(f) => f
                .down
                .forward(silu(f.gate.forward(x.clone())) * f.up.forward(x)),
            FeedForward::GeGlu(f) => f
                .down
                .forward(gelu(f.gate.forward(x.clone())) * f.up.forward(x)),
            FeedForward::GeluTanh(f) => {
                let hidden = f.up.forward(x);
                let fused = fused
                    && hidden.dtype() == burn::tensor::DType::F32
                    && crate::fused::supports(&hidden.device());
                f.down.forward(if fused {
                    crate::fused::gelu::gelu_tanh(hidden)
                } else {
                    gelu_tanh(hidden)
                })
            }
        }
    }
}

/// GELU's tanh approximation, `x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` (PyTorch's
/// `gelu(approximate="tanh")`), computed as `x sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3))`, the
/// same function: burn's sigmoid is vectorised on the CPU where its tanh calls libm per
/// element (tanh and its gradient took 20% of a Hyena training step; perf, the throughput
/// bench at 4,096 tokens).
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let inner = (x.clone() + x.clone().powi_scalar(3) * 0.044_715)
        * (2.0 * (2.0 / std::f64::consts::PI).sqrt());
    x * burn::tensor::activation::sigmoid(inner)
}

/// A linear layer with the initialisation of BERT/ESM (normal, sd 0.02; zero bias).
pub(crate) fn linear(d_in: usize, d_out: usize, bias: bool, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(burn::module::Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        })
        .init(device)
}

/// One block: a token mixer (multi-head self-attention, or the Hyena operator) and a
/// feed-forward network, each behind a pre-normalisation and a residual connection.
///
/// An attention block has the four projections and no Hyena operator; a Hyena block the
/// operator and no projections (the fields stay flat, so that parameter names are
/// `blocks.0.query.weight`, `blocks.0.hyena.in_proj.weight`).
#[derive(Module, Debug)]
pub struct Block {
    /// Normalisation before the token mixer.
    pub attn_norm: Norm,
    /// Query projection (attention blocks).
    pub query: Option<Linear>,
    /// Key projection (attention blocks).
    pub key: Option<Linear>,
    /// Value projection (attention blocks).
    pub value: Option<Linear>,
    /// Attention output projection (attention blocks).
    pub output: Option<Linear>,
    /// The Hyena operator (Hyena blocks).
    pub hyena: Option<HyenaOperator>,
    /// The BiMamba mixer (Caduceus blocks).
    pub mamba: Option<BiMamba>,
    /// Normalisation before the feed-forward network (all but Caduceus blocks).
    pub ffn_norm: Option<Norm>,
    /// Feed-forward network (all but Caduceus blocks).
    pub ffn: Option<FeedForward>,
    /// Dropout rate on the two residual branches (applied only when the input carries a
    /// dropout seed, i.e. in training).
    pub dropout: f64,
    /// Number of heads.
    pub n_heads: usize,
    /// Queries per attention chunk.
    pub chunk: usize,
    /// BERT layout: normalise after the residual additions instead of before the branches.
    pub post_norm: bool,
    /// The normalisations' epsilon (read by the fused layer; the norms hold their own copy).
    pub norm_eps: f64,
    /// Caduceus-PS: the stream is reverse-complement equivariant, `2 d_model` wide.
    pub rc_equivariant: bool,
    /// Caduceus-PS with the reference's fused add-and-norm: the stream's halves are swapped
    /// before the block ([`crate::CaduceusOptions::swap_halves`]).
    pub swap_halves: bool,
}

/// A block's tensors in the order [`crate::fused::encoder_layer`] takes them.
pub(crate) struct FusedParts {
    pub weights: [Tensor<2>; 6],
    pub vectors: [Tensor<1>; 10],
}

/// Per-forward inputs every block needs besides the hidden states.
#[derive(Debug, Clone)]
pub(crate) struct BlockContext {
    pub bias: AttentionBias,
    /// `[rows, len, 1]`: 1 at real positions, 0 at padding; set for Caduceus blocks when the
    /// input has padding (their scans skip padded positions).
    pub keep: Option<Tensor<3>>,
    pub rotary: Option<(Tensor<4>, Tensor<4>)>,
    /// Whether the fused encoder layer may be used ([`crate::DnaLm::with_fused_layers`]).
    pub fused: bool,
    /// Dropout masks are drawn from this seed and a per-call counter (not from the backend's
    /// global generator), so training is deterministic and resumable, even with several models
    /// training in one process.
    pub dropout: Option<DropoutStream>,
}

/// A deterministic source of dropout masks: call `i` uses stream `i` of a ChaCha8 generator
/// seeded with `seed`, so a training step is reproducible from its seed alone (burn's own
/// dropout draws from a process-global generator).
#[derive(Debug, Clone)]
pub struct DropoutStream {
    /// Seed of every mask of this stream.
    pub seed: u64,
    /// Masks drawn so far (the next mask's stream number).
    pub calls: std::cell::Cell<u64>,
}

impl DropoutStream {
    /// A stream whose first mask is stream 0 of `seed`.
    pub fn new(seed: u64) -> Self {
        DropoutStream {
            seed,
            calls: std::cell::Cell::new(0),
        }
    }

    /// Zeroes each element of `x` with probability `rate` and scales the rest by
    /// `1 / (1 - rate)` (inverted dropout).
    pub fn apply<const D: usize>(&self, x: Tensor<D>, rate: f64) -> Tensor<D> {
        let mask = self.mask(x.dims(), rate, &x.device());
        x * mask
    }

    /// The next mask of `dims` (0 or `1 / (1 - rate)` per element).
    fn mask<const D: usize>(&self, dims: [usize; D], rate: f64, device: &Device) -> Tensor<D> {
        use rand::{Rng, SeedableRng};
        let call = self.calls.get();
        self.calls.set(call + 1);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(call);
        let n: usize = dims.iter().product();
        let keep = 1.0 - rate;
        let scale = (1.0 / keep) as f32;
        let mask: Vec<f32> = (0..n)
            .map(|_| {
                if rng.random::<f64>() < keep {
                    scale
                } else {
                    0.0
                }
            })
            .collect();
        Tensor::<D>::from_data(burn::tensor::TensorData::new(mask, dims), device)
    }
}

impl Block {
    /// A freshly initialised block.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let d = cfg.d_model;
        let bias = cfg.architecture == Architecture::Encoder;
        let attention = cfg.architecture.attends();
        let projection = || attention.then(|| linear(d, d, bias, device));
        let caduceus = cfg.architecture == Architecture::Caduceus;
        let options = cfg.caduceus_options();
        let ffn = cfg.has_feed_forward();
        Block {
            attn_norm: Norm::new(cfg, device),
            query: projection(),
            key: projection(),
            value: projection(),
            output: projection(),
            hyena: (cfg.architecture == Architecture::Hyena)
                .then(|| HyenaOperator::new(cfg, device)),
            mamba: caduceus.then(|| BiMamba::new(cfg, device)),
            ffn_norm: ffn.then(|| Norm::new(cfg, device)),
            ffn: ffn.then(|| FeedForward::new(cfg, device)),
            dropout: cfg.dropout,
            n_heads: cfg.n_heads,
            chunk: cfg.attention_chunk,
            post_norm: cfg.post_norm,
            norm_eps: cfg.norm_eps,
            rc_equivariant: cfg.rc_equivariant(),
            swap_halves: cfg.rc_equivariant() && options.swap_halves,
        }
    }

    /// Self-attention block.
    ///
    /// # Shapes
    /// - `x`: `[rows, len, d_model]`
    /// - output: `[rows, len, d_model]`
    pub(crate) fn forward(&self, x: Tensor<3>, ctx: &BlockContext) -> Tensor<3> {
        if let Some(mamba) = &self.mamba {
            return self.forward_caduceus(mamba, x, ctx);
        }
        if let Some(fused) = self.fused_parts(&x, ctx) {
            return self.forward_fused(x, ctx, fused);
        }
        self.forward_reference(x, ctx)
    }

    /// Into how many parts [`Block::forward_part`] splits this block for activation
    /// checkpointing: a Caduceus block (without dropout in this call) into its strands (two in
    /// the reverse-complement-equivariant layout) times its scan directions; any other block
    /// into one.
    pub(crate) fn recompute_parts(&self, ctx: &BlockContext) -> usize {
        match &self.mamba {
            Some(mamba)
                if mamba.out_proj.bias.is_none()
                    && (ctx.dropout.is_none() || self.dropout == 0.0) =>
            {
                (1 + usize::from(self.rc_equivariant)) * mamba.directions()
            }
            _ => 1,
        }
    }

    /// Part `part` (of [`Block::recompute_parts`]) of [`Block::forward`]: some of the output's
    /// channels (the returned range) and a share of their values; the parts' shares, each in
    /// its channels, sum to the block's output. A part of a Caduceus block is one strand's
    /// mixer with one scan direction (plus the strand's residual, with direction 0), so
    /// recomputing one part at a time holds a quarter of the block's intermediates.
    ///
    /// # Shapes
    /// - `x`: `[rows, len, width]`; output: `[rows, len, range.len()]`
    pub(crate) fn forward_part(
        &self,
        x: Tensor<3>,
        ctx: &BlockContext,
        part: usize,
    ) -> (Tensor<3>, std::ops::Range<usize>) {
        let width = x.dims()[2];
        let Some(mamba) = self
            .mamba
            .as_ref()
            .filter(|_| self.recompute_parts(ctx) > 1)
        else {
            return (self.forward(x, ctx), 0..width);
        };
        let directions = mamba.directions();
        let (strand, direction) = (part / directions, part % directions);
        let with_residual = |residual: Tensor<3>, mixed: Tensor<3>| {
            if direction == 0 {
                residual + mixed
            } else {
                mixed
            }
        };
        let x = if self.swap_halves { swap_halves(x) } else { x };
        let keep = ctx.keep.as_ref();
        if !self.rc_equivariant {
            let normed = self.attn_norm.forward(x.clone());
            let mixed = mamba.forward_direction(normed, keep, ctx.fused, direction);
            return (with_residual(x, mixed), 0..width);
        }
        let half = width / 2;
        let (a, b) = halves(x);
        if strand == 0 {
            let normed = self.attn_norm.forward(a.clone());
            let mixed = mamba.forward_direction(normed, keep, ctx.fused, direction);
            return (with_residual(a, mixed), 0..half);
        }
        // The other strand, as [`BiMamba::forward_equivariant`] and
        // [`Norm::forward_equivariant`] compute it: flip_LC(mix(flip_L(norm(flip_C(b))))).
        let keep = keep.map(|k| k.clone().flip([1]));
        let normed = self.attn_norm.forward(b.clone().flip([2])).flip([1]);
        let mixed = mamba
            .forward_direction(normed, keep.as_ref(), ctx.fused, direction)
            .flip([1, 2]);
        (with_residual(b, mixed), half..width)
    }

    /// A Caduceus block: `x + mix(norm(x))`, after swapping the halves of an equivariant stream
    /// when the layout does.
    fn forward_caduceus(&self, mamba: &BiMamba, x: Tensor<3>, ctx: &BlockContext) -> Tensor<3> {
        let x = if self.swap_halves { swap_halves(x) } else { x };
        let keep = ctx.keep.as_ref();
        let mixed = if self.rc_equivariant {
            mamba.forward_equivariant(
                self.attn_norm.forward_equivariant(x.clone()),
                keep,
                ctx.fused,
            )
        } else {
            mamba.forward(self.attn_norm.forward(x.clone()), keep, ctx.fused)
        };
        x + self.drop(mixed, ctx)
    }

    /// [`Block::forward`] as separate burn operations (the path every backend and layout has).
    pub(crate) fn forward_reference(&self, x: Tensor<3>, ctx: &BlockContext) -> Tensor<3> {
        if self.post_norm {
            let attended = self.mix(x.clone(), x.clone(), ctx);
            return self.finish(x, attended, ctx);
        }
        let normed = self.attn_norm.forward(x.clone());
        let attended = self.mix(normed.clone(), normed, ctx);
        self.finish(x, attended, ctx)
    }

    /// The weights of the fused encoder layer ([`crate::fused`]) when this block and call can
    /// take it: a pre-LayerNorm encoder layer with biases, padding-only attention, f32 on Flex.
    pub(crate) fn fused_parts(&self, x: &Tensor<3>, ctx: &BlockContext) -> Option<FusedParts> {
        if self.post_norm
            || ctx.bias.rows.is_some()
            || !ctx.fused
            || x.dtype() != burn::tensor::DType::F32
            || !crate::fused::supports(&x.device())
        {
            return None;
        }
        let (Norm::Layer(n1), Some(Norm::Layer(n2)), Some(FeedForward::Gelu(ffn))) =
            (&self.attn_norm, &self.ffn_norm, &self.ffn)
        else {
            return None;
        };
        let (query, key, value, output) = self.attention()?;
        let bias = |l: &Linear| l.bias.as_ref().map(|b| b.val());
        Some(FusedParts {
            weights: [
                query.weight.val(),
                key.weight.val(),
                value.weight.val(),
                output.weight.val(),
                ffn.up.weight.val(),
                ffn.down.weight.val(),
            ],
            vectors: [
                n1.gamma.val(),
                n1.beta.as_ref()?.val(),
                bias(query)?,
                bias(key)?,
                bias(value)?,
                bias(output)?,
                n2.gamma.val(),
                n2.beta.as_ref()?.val(),
                bias(&ffn.up)?,
                bias(&ffn.down)?,
            ],
        })
    }

    pub(crate) fn forward_fused(
        &self,
        x: Tensor<3>,
        ctx: &BlockContext,
        parts: FusedParts,
    ) -> Tensor<3> {
        let [b, l, d] = x.dims();
        // `weights[4]` is the up projection, `[d, d_ffn]`.
        let ffn = parts.weights[4].dims()[1];
        let dims = crate::fused::LayerDims {
            rows: b,
            len: l,
            d_model: d,
            heads: self.n_heads,
            d_ffn: ffn,
            eps: self.norm_eps as f32,
            chunk: self.chunk,
        };
        let hd = d / self.n_heads;
        let rotary = ctx.rotary.as_ref().map(|(cos, sin)| {
            (
                cos.clone().reshape([b * l, hd]),
                sin.clone().reshape([b * l, hd]),
            )
        });
        let key_bias = ctx.bias.padding.as_ref().map(|p| p.clone().reshape([b, l]));
        // The masks are drawn in the reference path's order (attention branch, then the
        // feed-forward branch), so both paths train identically.
        let dropout = match &ctx.dropout {
            Some(stream) if self.dropout > 0.0 => {
                let device = x.device();
                let attn = stream.mask([b, l, d], self.dropout, &device);
                let ffn = stream.mask([b, l, d], self.dropout, &device);
                Some((attn, ffn))
            }
            _ => None,
        };
        crate::fused::encoder_layer(
            x,
            parts.weights,
            parts.vectors,
            crate::fused::LayerInputs {
                rotary,
                key_bias,
                dropout,
            },
            dims,
        )
    }

    /// Query-stream block of two-stream attention: queries come from `g`, keys and values from
    /// the content stream `h` (same weights as [`Block::forward`]).
    ///
    /// # Shapes
    /// - `g`, `h`: `[rows, len, d_model]`
    /// - output: `[rows, len, d_model]` (the new query stream)
    pub(crate) fn forward_query_stream(
        &self,
        g: Tensor<3>,
        h: Tensor<3>,
        ctx: &BlockContext,
    ) -> Tensor<3> {
        let attended = if self.post_norm {
            self.mix(g.clone(), h, ctx)
        } else {
            self.mix(
                self.attn_norm.forward(g.clone()),
                self.attn_norm.forward(h),
                ctx,
            )
        };
        self.finish(g, attended, ctx)
    }

    /// The residual additions and the feed-forward branch, around `attended`.
    fn finish(&self, x: Tensor<3>, attended: Tensor<3>, ctx: &BlockContext) -> Tensor<3> {
        let (Some(ffn_norm), Some(ffn)) = (&self.ffn_norm, &self.ffn) else {
            let x = x + self.drop(attended, ctx);
            return if self.post_norm {
                self.attn_norm.forward(x)
            } else {
                x
            };
        };
        if self.post_norm {
            let x = self.attn_norm.forward(x + self.drop(attended, ctx));
            let ff = ffn.forward(x.clone(), ctx.fused);
            return ffn_norm.forward(x + self.drop(ff, ctx));
        }
        let x = x + self.drop(attended, ctx);
        let ff = ffn.forward(ffn_norm.forward(x.clone()), ctx.fused);
        x + self.drop(ff, ctx)
    }

    fn drop(&self, x: Tensor<3>, ctx: &BlockContext) -> Tensor<3> {
        match &ctx.dropout {
            Some(stream) if self.dropout > 0.0 => stream.apply(x, self.dropout),
            _ => x,
        }
    }

    /// The four attention projections (query, key, value, output) of an attention block.
    fn attention(&self) -> Option<(&Linear, &Linear, &Linear, &Linear)> {
        Some((
            self.query.as_ref()?,
            self.key.as_ref()?,
            self.value.as_ref()?,
            self.output.as_ref()?,
        ))
    }

    /// The token mixer: queries from `xq`, keys and values from `xkv` (the Hyena operator
    /// mixes `xq` alone; it has no query stream).
    fn mix(&self, xq: Tensor<3>, xkv: Tensor<3>, ctx: &BlockContext) -> Tensor<3> {
        match (&self.hyena, &self.mamba, self.attention()) {
            (Some(hyena), _, _) => hyena.forward(xq, ctx.fused),
            (None, Some(mamba), _) => mamba.forward(xq, ctx.keep.as_ref(), ctx.fused),
            (None, None, Some(projections)) => self.attend(projections, xq, xkv, ctx),
            (None, None, None) => unreachable!("Block::new gives every block a token mixer"),
        }
    }

    fn attend(
        &self,
        (query, key, value, output): (&Linear, &Linear, &Linear, &Linear),
        xq: Tensor<3>,
        xkv: Tensor<3>,
        ctx: &BlockContext,
    ) -> Tensor<3> {
        let [b, l, d] = xq.dims();
        let h = self.n_heads;
        let hd = d / h;
        let heads = |t: Tensor<3>| t.reshape([b, l, h, hd]).swap_dims(1, 2);
        let mut q = heads(query.forward(xq));
        let mut k = heads(key.forward(xkv.clone()));
        let v = heads(value.forward(xkv));
        if let Some((cos, sin)) = &ctx.rotary {
            q = apply_rotary(q, cos, sin);
            k = apply_rotary(k, cos, sin);
        }
        let q = q * (1.0 / (hd as f64).sqrt());
        // Inference takes the backend's fused (flash) attention; training the chunked form,
        // which autodiff differentiates.
        let out = if q.is_autodiff() {
            chunked_attention(q, k, v, &ctx.bias, self.chunk)
        } else {
            fused_attention(q, k, v, &ctx.bias)
        };
        output.forward(out.swap_dims(1, 2).reshape([b, l, d]))
    }
}
