//! Model configuration: one serde struct, written into `config.json` of every checkpoint.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Which way attention flows, and which layout the blocks follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// Bidirectional encoder, ESM-2 layout: pre-LayerNorm, GELU feed-forward, biases.
    Encoder,
    /// Causal decoder, Llama layout: pre-RMSNorm, SwiGLU feed-forward, no biases.
    Decoder,
    /// Causal Hyena model, HyenaDNA layout: pre-LayerNorm blocks whose token mixer is the
    /// Hyena operator (short convolution, implicit long filter applied by FFT, gating) instead of
    /// attention, and a tanh-GELU feed-forward network ([`HyenaOptions`]).
    Hyena,
    /// Bidirectional Mamba model, Caduceus layout: pre-RMSNorm blocks whose token mixer is a
    /// BiMamba (selective state-space scans in both directions), no feed-forward network, and
    /// optionally reverse-complement equivariant (Caduceus-PS; [`CaduceusOptions`]).
    Caduceus,
}

impl Architecture {
    /// Whether a position sees only itself and earlier positions (decoder, Hyena): such models
    /// are trained by next-token prediction and score sequences left to right.
    pub fn is_causal(self) -> bool {
        matches!(self, Architecture::Decoder | Architecture::Hyena)
    }

    /// Whether the blocks mix tokens with attention (encoder, decoder) rather than a
    /// convolution or state-space operator (Hyena, Caduceus).
    pub fn attends(self) -> bool {
        matches!(self, Architecture::Encoder | Architecture::Decoder)
    }

    /// What a position attends to in ordinary inputs: everything (encoder), or itself and
    /// what comes before (decoder; Hyena ignores the pattern, being causal by construction).
    pub fn attention_pattern(self) -> crate::AttentionPattern {
        if self.is_causal() {
            crate::AttentionPattern::Causal
        } else {
            crate::AttentionPattern::Bidirectional
        }
    }
}

/// How positions enter the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionEncoding {
    /// Rotary embeddings on queries and keys (rotate-half form, as ESM-2 and Llama).
    Rotary,
    /// A learned absolute position embedding added to the token embedding (BERT).
    Learned,
    /// ALiBi: a per-head linear distance penalty added to the attention scores.
    Alibi,
    /// None: the token mixer knows positions by itself (Hyena's filters are functions of the
    /// distance, Mamba's scans are sequential). Only for [`Architecture::Hyena`] and
    /// [`Architecture::Caduceus`].
    None,
}

/// The position-wise feed-forward network of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeedForwardKind {
    /// `down(gelu(up(x)))` (ESM-2, BERT; the encoder's default). Config: `"gelu"`.
    #[serde(rename = "gelu")]
    Gelu,
    /// `down(silu(gate(x)) * up(x))` (Llama, Nucleotide Transformer v2; the decoder's default).
    /// Config: `"swiglu"`.
    #[serde(rename = "swiglu")]
    SwiGlu,
    /// `down(gelu(gate(x)) * up(x))` (DNABERT-2's GEGLU: exact GELU on the first half).
    /// Config: `"geglu"`.
    #[serde(rename = "geglu")]
    GeGlu,
    /// `down(gelu_tanh(up(x)))`, GELU's tanh approximation, with biases (HyenaDNA's MLP; the
    /// Hyena architecture's default). Config: `"gelu_tanh"`.
    #[serde(rename = "gelu_tanh")]
    GeluTanh,
}

impl FeedForwardKind {
    /// Whether the network gates one projection by another (SwiGLU, GEGLU).
    pub fn gated(self) -> bool {
        matches!(self, FeedForwardKind::SwiGlu | FeedForwardKind::GeGlu)
    }
}

/// The Hyena operator's settings (HyenaDNA's config keys in brackets), for
/// [`Architecture::Hyena`]. The operator is of order 2 (two gates), as every HyenaDNA checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HyenaOptions {
    /// Width of the implicit filter network (`filter_order`).
    #[serde(default = "default_filter_order")]
    pub filter_order: usize,
    /// Width of the positional features fed to the filter network: time, then cosines and
    /// sines of `(emb_dim - 1) / 2` frequencies; odd, at least 3 (`emb_dim`).
    #[serde(default = "default_emb_dim")]
    pub emb_dim: usize,
    /// Hidden layers of the filter network (`num_inner_mlps`).
    #[serde(default = "default_inner_mlps")]
    pub inner_layers: usize,
    /// Initial frequency of the filter network's sine activations (`activation_freq`; trained
    /// afterwards).
    #[serde(default = "default_activation_freq")]
    pub activation_freq: f64,
    /// Width of the causal depthwise convolution on the projections (`short_filter_order`;
    /// HyenaDNA pads it by 2, so only 3 is causal, and only 3 is accepted).
    #[serde(default = "default_short_filter")]
    pub short_filter: usize,
}

impl Default for HyenaOptions {
    fn default() -> Self {
        HyenaOptions {
            filter_order: default_filter_order(),
            emb_dim: default_emb_dim(),
            inner_layers: default_inner_mlps(),
            activation_freq: default_activation_freq(),
            short_filter: default_short_filter(),
        }
    }
}

fn default_filter_order() -> usize {
    64
}
fn default_emb_dim() -> usize {
    5
}
fn default_inner_mlps() -> usize {
    2
}
fn default_activation_freq() -> f64 {
    10.0
}
fn default_short_filter() -> usize {
    3
}

/// The Caduceus settings (the hub config keys in brackets), for [`Architecture::Caduceus`].
/// Blocks are RMS-normalised; the bidirectional strategy is `add` (every released Caduceus).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaduceusOptions {
    /// State size per channel of the selective scan (`ssm_cfg.d_state`).
    #[serde(default = "default_d_state")]
    pub d_state: usize,
    /// Width of the causal depthwise convolution before the scan (`ssm_cfg.d_conv`).
    #[serde(default = "default_d_conv")]
    pub d_conv: usize,
    /// Inner width of a Mamba mixer, as a multiple of `d_model` (`ssm_cfg.expand`).
    #[serde(default = "default_expand")]
    pub expand: usize,
    /// Rank of the step-size projection (`ssm_cfg.dt_rank`); `None`: `ceil(d_model / 16)`,
    /// Mamba's `"auto"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dt_rank: Option<usize>,
    /// A second scan runs over the reversed sequence and is added (`bidirectional`); its
    /// input and output projections are the forward scan's (`bidirectional_weight_tie`).
    #[serde(default = "default_true")]
    pub bidirectional: bool,
    /// Reverse-complement equivariance by parameter sharing (Caduceus-PS, `rcps`): the
    /// residual stream is `2 d_model` wide, its second half the flipped stream of the reverse
    /// complement, so that the output for the reverse complement of a sequence is the output
    /// for the sequence, flipped in position and channel.
    #[serde(default = "default_true")]
    pub rc_equivariant: bool,
    /// Caduceus-PS with the hub setting `fused_add_norm: true`: the reference code's fused
    /// add-and-norm swaps the two halves of the residual stream before every block (not the
    /// final norm). A different function from the un-fused path, and the one every released
    /// PS checkpoint was trained with, so it is the default.
    #[serde(default = "default_true")]
    pub swap_halves: bool,
    /// The token id of each token's complement (`complement_map`), one per vocabulary entry:
    /// what reverse-complementing a sequence does to its ids. Needed when `rc_equivariant`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub complement_map: Vec<u32>,
}

impl Default for CaduceusOptions {
    fn default() -> Self {
        CaduceusOptions {
            d_state: default_d_state(),
            d_conv: default_d_conv(),
            expand: default_expand(),
            dt_rank: None,
            bidirectional: true,
            rc_equivariant: true,
            swap_halves: true,
            complement_map: Vec::new(),
        }
    }
}

impl CaduceusOptions {
    /// The scan's inner width for a model of `d_model`.
    pub fn inner_width(&self, d_model: usize) -> usize {
        self.expand * d_model
    }

    /// The step-size rank for a model of `d_model`.
    pub fn dt_rank(&self, d_model: usize) -> usize {
        self.dt_rank.unwrap_or(d_model.div_ceil(16))
    }
}

fn default_d_state() -> usize {
    16
}
fn default_d_conv() -> usize {
    4
}
fn default_expand() -> usize {
    2
}
fn default_true() -> bool {
    true
}

/// Everything that fixes a model's shape. Two models with equal configs have the same parameters
/// (names and shapes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Encoder or decoder.
    #[serde(default = "default_architecture")]
    pub architecture: Architecture,
    /// Vocabulary size (must equal the tokenizer's).
    pub vocab_size: usize,
    /// Number of transformer blocks.
    #[serde(default = "default_layers")]
    pub n_layers: usize,
    /// Width of the residual stream.
    #[serde(default = "default_d_model")]
    pub d_model: usize,
    /// Attention heads; must divide `d_model`.
    #[serde(default = "default_heads")]
    pub n_heads: usize,
    /// Hidden width of the feed-forward network.
    #[serde(default = "default_ffn")]
    pub d_ffn: usize,
    /// Dropout on attention output and feed-forward output (0 disables it).
    #[serde(default)]
    pub dropout: f64,
    /// Longest sequence, in tokens (special tokens included), the model accepts.
    #[serde(default = "default_max_positions")]
    pub max_positions: usize,
    /// Position encoding.
    #[serde(default = "default_position")]
    pub position: PositionEncoding,
    /// Rotary base frequency.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// Whether the LM output layer shares the token embedding matrix.
    #[serde(default = "default_tie")]
    pub tie_embeddings: bool,
    /// Epsilon of the normalisation layers.
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    /// Attention is computed for this many queries at a time, so that the score matrix held at
    /// once is `chunk x length`, not `length x length`.
    #[serde(default = "default_chunk")]
    pub attention_chunk: usize,
    /// BERT layout (encoder only): normalise after each residual addition and after the
    /// embeddings, with no final norm (post-LayerNorm, as DNABERT). Off: pre-normalisation.
    #[serde(default)]
    pub post_norm: bool,
    /// ESM's token dropout (encoder only; Nucleotide Transformer v1 sets it): embeddings of
    /// `mask_token_id` are zeroed and the rest of a row scaled by `0.88 / (1 - masked share)`,
    /// in training and inference alike.
    #[serde(default)]
    pub token_dropout: bool,
    /// Feed-forward network; `None`: the architecture's (GELU for the encoder, SwiGLU for the
    /// decoder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed_forward: Option<FeedForwardKind>,
    /// Biases on the feed-forward input projections (`up`, and `gate` when gated); `None`: as
    /// the feed-forward kind has them (GELU yes, SwiGLU and GEGLU no).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ffn_input_bias: Option<bool>,
    /// Bias on the feed-forward output projection; `None`: as the feed-forward kind has it
    /// (GELU and GEGLU yes, SwiGLU no).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ffn_output_bias: Option<bool>,
    /// BERT's token-type embedding 0, one learned vector added to every token embedding
    /// (DNABERT-2 keeps it; it has no position table to fold it into).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub token_type_embedding: bool,
    /// Hidden states at padded positions are exactly zero, as in MosaicBERT's unpadded
    /// attention (DNABERT-2). Real positions never depend on padding either way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub zero_padding: bool,
    /// The Hyena operator's settings ([`Architecture::Hyena`] only; `None` there: the
    /// defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyena: Option<HyenaOptions>,
    /// The Caduceus settings ([`Architecture::Caduceus`] only; `None` there: the defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caduceus: Option<CaduceusOptions>,
    /// Id of the padding token (Hugging Face configs record it; ESM's learned positions count
    /// from it).
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Id of the mask token.
    #[serde(default)]
    pub mask_token_id: Option<u32>,
    /// Id of the sequence-start token of decoders.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// Id of the sequence-end token of decoders.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

/// The largest model [`ModelConfig::validate`] accepts: 1e11 parameters (400 GB in f32), far
/// above any DNA LM, so that a mistyped size is refused in one line instead of aborting the
/// process in an allocation.
pub const MAX_PARAMETERS: usize = 100_000_000_000;

fn default_architecture() -> Architecture {
    Architecture::Encoder
}
fn default_layers() -> usize {
    4
}
fn default_d_model() -> usize {
    256
}
fn default_heads() -> usize {
    4
}
fn default_ffn() -> usize {
    1024
}
fn default_max_positions() -> usize {
    1026
}
fn default_position() -> PositionEncoding {
    PositionEncoding::Rotary
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_tie() -> bool {
    true
}
fn default_eps() -> f64 {
    1e-5
}
fn default_chunk() -> usize {
    1024
}

impl ModelConfig {
    /// A config with the defaults (4 layers, d = 256, 4 heads, rotary) for `vocab_size` tokens.
    pub fn new(architecture: Architecture, vocab_size: usize) -> Self {
        ModelConfig {
            architecture,
            vocab_size,
            n_layers: default_layers(),
            d_model: default_d_model(),
            n_heads: default_heads(),
            d_ffn: default_ffn(),
            dropout: 0.0,
            max_positions: default_max_positions(),
            position: if !architecture.attends() {
                PositionEncoding::None
            } else {
                default_position()
            },
            rope_theta: default_theta(),
            tie_embeddings: default_tie(),
            norm_eps: default_eps(),
            attention_chunk: default_chunk(),
            post_norm: false,
            token_dropout: false,
            feed_forward: None,
            ffn_input_bias: None,
            ffn_output_bias: None,
            token_type_embedding: false,
            zero_padding: false,
            hyena: None,
            caduceus: None,
            pad_token_id: None,
            mask_token_id: None,
            bos_token_id: None,
            eos_token_id: None,
        }
    }

    /// The feed-forward network of every block ([`ModelConfig::feed_forward`] or the
    /// architecture's).
    pub fn feed_forward(&self) -> FeedForwardKind {
        self.feed_forward.unwrap_or(match self.architecture {
            Architecture::Encoder => FeedForwardKind::Gelu,
            Architecture::Decoder => FeedForwardKind::SwiGlu,
            Architecture::Hyena => FeedForwardKind::GeluTanh,
            // Caduceus blocks have no feed-forward network; the kind is never built.
            Architecture::Caduceus => FeedForwardKind::Gelu,
        })
    }

    /// Whether the blocks have a feed-forward network (all but Caduceus).
    pub fn has_feed_forward(&self) -> bool {
        self.architecture != Architecture::Caduceus
    }

    /// The Caduceus settings (the defaults when the config names none).
    pub fn caduceus_options(&self) -> CaduceusOptions {
        self.caduceus.clone().unwrap_or_default()
    }

    /// Whether this is a reverse-complement-equivariant Caduceus (Caduceus-PS).
    pub fn rc_equivariant(&self) -> bool {
        self.architecture == Architecture::Caduceus
            && self.caduceus.as_ref().is_none_or(|c| c.rc_equivariant)
    }

    /// Width of the hidden states the model outputs: `d_model`, or `2 d_model` for a
    /// reverse-complement-equivariant Caduceus (the stream of the sequence and the flipped
    /// stream of its reverse complement, side by side).
    pub fn hidden_size(&self) -> usize {
        if self.rc_equivariant() {
            2 * self.d_model
        } else {
            self.d_model
        }
    }

    /// The Hyena operator's settings (the defaults when the config names none).
    pub fn hyena_options(&self) -> HyenaOptions {
        self.hyena.clone().unwrap_or_default()
    }

    /// Whether the feed-forward input and output projections carry biases.
    pub fn ffn_biases(&self) -> (bool, bool) {
        let kind = self.feed_forward();
        (
            self.ffn_input_bias.unwrap_or(!kind.gated()),
            self.ffn_output_bias
                .unwrap_or(kind != FeedForwardKind::SwiGlu),
        )
    }

    /// Whether the model accepts inputs longer than [`ModelConfig::max_positions`]: ALiBi has
    /// no position table, and extrapolates (as DNABERT-2's reference code does, rebuilding its
    /// bias for any length), and neither has Caduceus (its scans run on any length).
    /// `max_positions` is then the trained length.
    pub fn extrapolates(&self) -> bool {
        self.position == PositionEncoding::Alibi || self.architecture == Architecture::Caduceus
    }

    /// The token mixer in words, for run summaries: `4 heads`, or
    /// `Hyena operator (filter network width 64)`.
    pub fn mixer_summary(&self) -> String {
        match self.architecture {
            Architecture::Hyena => format!(
                "Hyena operator (filter network width {})",
                self.hyena_options().filter_order
            ),
            Architecture::Caduceus => {
                let c = self.caduceus_options();
                format!(
                    "{}Mamba (state {}{})",
                    if c.bidirectional { "Bi" } else { "" },
                    c.d_state,
                    if c.rc_equivariant {
                        ", reverse-complement equivariant"
                    } else {
                        ""
                    }
                )
            }
            _ => format!("{} heads", self.n_heads),
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads.max(1)
    }

    /// Checks that the shape is buildable; the error names the field.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |field: &'static str, message: String| Err(ModelError::Config { field, message });
        if self.vocab_size == 0 {
            return bad("vocab_size", "must be at least 1".into());
        }
        if self.n_layers == 0 {
            return bad("n_layers", "must be at least 1".into());
        }
        if self.n_heads == 0 || self.d_model == 0 || !self.d_model.is_multiple_of(self.n_heads) {
            return bad(
                "n_heads",
                format!(
                    "d_model = {} must be a positive multiple of n_heads = {}",
                    self.d_model, self.n_heads
                ),
            );
        }
        if self.position == PositionEncoding::Rotary && !self.head_dim().is_multiple_of(2) {
            return bad(
                "position",
                format!(
                    "rotary embeddings need an even head width, got d_model / n_heads = {}",
                    self.head_dim()
                ),
            );
        }
        if self.d_ffn == 0 {
            return bad("d_ffn", "must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", format!("{} is not in [0, 1)", self.dropout));
        }
        if self.max_positions == 0 {
            return bad("max_positions", "must be at least 1".into());
        }
        if self.attention_chunk == 0 {
            return bad("attention_chunk", "must be at least 1".into());
        }
        if self.norm_eps <= 0.0 || self.rope_theta <= 0.0 {
            return bad(
                "norm_eps",
                "norm_eps and rope_theta must be positive".into(),
            );
        }
        if self.architecture != Architecture::Encoder && (self.post_norm || self.token_dropout) {
            return bad(
                "post_norm",
                "post_norm and token_dropout are encoder options (BERT, ESM)".into(),
            );
        }
        if self.architecture.attends() == (self.position == PositionEncoding::None) {
            return bad(
                "position",
                format!(
                    "{:?} with architecture {:?}: Hyena and Caduceus take no position encoding \
                     (\"none\"), attention needs one",
                    self.position, self.architecture
                ),
            );
        }
        if self.hyena.is_some() && self.architecture != Architecture::Hyena {
            return bad(
                "hyena",
                "Hyena options need architecture = \"hyena\"".into(),
            );
        }
        if self.caduceus.is_some() && self.architecture != Architecture::Caduceus {
            return bad(
                "caduceus",
                "Caduceus options need architecture = \"caduceus\"".into(),
            );
        }
        if self.architecture == Architecture::Caduceus {
            self.validate_caduceus()?;
        }
        if self.architecture == Architecture::Hyena {
            let h = self.hyena_options();
            if h.emb_dim < 3 || h.emb_dim.is_multiple_of(2) {
                return bad(
                    "hyena.emb_dim",
                    format!(
                        "{} must be odd and at least 3 (time, cosine, sine)",
                        h.emb_dim
                    ),
                );
            }
            if h.filter_order == 0 {
                return bad("hyena.filter_order", "must be at least 1".into());
            }
            if h.short_filter != 3 {
                return bad(
                    "hyena.short_filter",
                    format!(
                        "{}: HyenaDNA pads its short convolution by 2, which is causal only for \
                         width 3; dnalm runs width 3",
                        h.short_filter
                    ),
                );
            }
            if !(h.activation_freq.is_finite()) {
                return bad("hyena.activation_freq", "must be finite".into());
            }
        }
        let parameters = self.parameter_count();
        if parameters > MAX_PARAMETERS {
            return bad(
                "d_model",
                format!(
                    "n_layers = {}, d_model = {}, d_ffn = {} and vocab_size = {} give {parameters} \
                     parameters, above dnalm's limit of {MAX_PARAMETERS:e}",
                    self.n_layers, self.d_model, self.d_ffn, self.vocab_size,
                ),
            );
        }
        if self.token_dropout && self.mask_token_id.is_none() {
            return bad("token_dropout", "token dropout needs mask_token_id".into());
        }
        let ids = [
            ("pad_token_id", self.pad_token_id),
            ("mask_token_id", self.mask_token_id),
            ("bos_token_id", self.bos_token_id),
            ("eos_token_id", self.eos_token_id),
        ];
        for (field, id) in ids {
            if id.is_some_and(|id| id as usize >= self.vocab_size) {
                return bad(
                    field,
                    format!("{id:?} is outside the vocabulary of {}", self.vocab_size),
                );
            }
        }
        Ok(())
    }

    fn validate_caduceus(&self) -> Result<(), ModelError> {
        let bad = |field: &'static str, message: String| Err(ModelError::Config { field, message });
        let c = self.caduceus_options();
        for (field, value) in [
            ("caduceus.d_state", c.d_state),
            ("caduceus.d_conv", c.d_conv),
            ("caduceus.expand", c.expand),
            ("caduceus.dt_rank", c.dt_rank(self.d_model)),
        ] {
            if value == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if c.rc_equivariant {
            if c.complement_map.len() != self.vocab_size {
                return bad(
                    "caduceus.complement_map",
                    format!(
                        "reverse-complement equivariance needs the complement of every token: \
                         {} entries for a vocabulary of {}",
                        c.complement_map.len(),
                        self.vocab_size
                    ),
                );
            }
            for (id, &to) in c.complement_map.iter().enumerate() {
                let back = c.complement_map.get(to as usize).copied();
                if back != Some(id as u32) {
                    return bad(
                        "caduceus.complement_map",
                        format!(
                            "token {id} maps to {to}, which maps to {back:?}: the complement of \
                             a complement must be the token itself"
                        ),
                    );
                }
            }
        }
        if self.feed_forward.is_some() {
            return bad(
                "feed_forward",
                "Caduceus blocks have no feed-forward network".into(),
            );
        }
        Ok(())
    }

    /// Number of parameters the model (with its pretraining heads) will have; computed in 128
    /// bits, so absurd shapes give a huge count (at most `usize::MAX`) instead of overflowing.
    pub fn parameter_count(&self) -> usize {
        // Each size is capped at 2^40 (any larger one is refused anyway), so that no product
        // below can overflow 128 bits.
        let wide = |v: usize| (v as u128).min(1 << 40);
        let (d, f, vocab) = (wide(self.d_model), wide(self.d_ffn), wide(self.vocab_size));
        let (bias_in, bias_out) = self.ffn_biases();
        let inputs = if self.feed_forward().gated() { 2 } else { 1 };
        let ffn =
            inputs * (d * f + if bias_in { f } else { 0 }) + f * d + if bias_out { d } else { 0 };
        let (attn, norm) = match self.architecture {
            Architecture::Encoder => (4 * (d * d + d), 2 * d),
            Architecture::Decoder => (4 * d * d, d),
            Architecture::Hyena => {
                let h = self.hyena_options();
                let (order, emb) = (wide(h.filter_order), wide(h.emb_dim));
                let inner = wide(h.inner_layers);
                // in_proj, short filter (weights and bias), out_proj; the filter network:
                // positions, input layer, frequencies, inner layers, output layer, skip bias.
                let mixer = 3 * d * d + 3 * d + 3 * d * wide(h.short_filter) + 3 * d + d * d + d;
                let filter = wide(self.max_positions) * emb
                    + emb * order
                    + order
                    + order
                    + inner * (order * order + order)
                    + order * d
                    + d;
                (mixer + filter, 2 * d)
            }
            Architecture::Caduceus => {
                let c = self.caduceus_options();
                let (inner, state, conv) = (
                    wide(c.inner_width(self.d_model)),
                    wide(c.d_state),
                    wide(c.d_conv),
                );
                let rank = wide(c.dt_rank(self.d_model));
                let directions = if c.bidirectional { 2 } else { 1 };
                // Shared in/out projections; per direction the convolution, x_proj, dt_proj
                // (with its bias), A_log and D. One RMSNorm scale per block.
                let scan = inner * conv
                    + inner
                    + inner * (rank + 2 * state)
                    + rank * inner
                    + inner
                    + inner * state
                    + inner;
                (2 * d * inner + inner * d + directions * scan, d)
            }
        };
        let ffn = if self.has_feed_forward() { ffn } else { 0 };
        let norms = if self.has_feed_forward() { 2 } else { 1 };
        let blocks = wide(self.n_layers) * (attn + ffn + norms * norm);
        let embed = vocab * d;
        let positions = if self.position == PositionEncoding::Learned {
            wide(self.max_positions) * d
        } else {
            0
        };
        let head = match self.architecture {
            Architecture::Encoder => d * d + d + 2 * d + vocab,
            Architecture::Decoder | Architecture::Hyena | Architecture::Caduceus => 0,
        } + if self.tie_embeddings { 0 } else { vocab * d };
        let token_type = if self.token_type_embedding { d } else { 0 };
        let final_norm = if self.post_norm { 0 } else { norm };
        let embed_norm = if self.post_norm { norm } else { 0 };
        // The deletion head (hidden + 1) and the permutation query vector (d).
        let hidden = wide(self.hidden_size());
        let total = embed
            + token_type
            + positions
            + embed_norm
            + blocks
            + final_norm
            + head
            + (hidden + 1)
            + d;
        usize::try_from(total).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_round_trip_and_defaults() {
        let cfg = ModelConfig::new(Architecture::Decoder, 4101);
        let json = serde_json::to_string(&cfg).unwrap();
        let back: ModelConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(cfg, back);
        let minimal: ModelConfig = serde_json::from_str(r#"{"vocab_size": 12}"#).unwrap();
        assert_eq!(minimal, ModelConfig::new(Architecture::Encoder, 12));
    }

    #[test]
    fn feed_forward_spellings_and_parameter_counts() {
        let cfg: ModelConfig = serde_json::from_str(
            r#"{"vocab_size": 12, "feed_forward": "geglu", "ffn_output_bias": false}"#,
        )
        .unwrap();
        assert_eq!(cfg.feed_forward(), FeedForwardKind::GeGlu);
        assert_eq!(cfg.ffn_biases(), (false, false));
        let swiglu: ModelConfig =
            serde_json::from_str(r#"{"vocab_size": 12, "feed_forward": "swiglu"}"#).unwrap();
        assert_eq!(swiglu.ffn_biases(), (false, false));
        // Every combination builds a model with exactly the parameters the config counts.
        let device = crate::cpu();
        for kind in [
            FeedForwardKind::Gelu,
            FeedForwardKind::SwiGlu,
            FeedForwardKind::GeGlu,
        ] {
            for (post_norm, token_type) in [(false, false), (true, true)] {
                let cfg = ModelConfig {
                    n_layers: 1,
                    d_model: 8,
                    n_heads: 2,
                    d_ffn: 12,
                    feed_forward: Some(kind),
                    ffn_input_bias: Some(true),
                    post_norm,
                    token_type_embedding: token_type,
                    ..ModelConfig::new(Architecture::Encoder, 10)
                };
                let model = crate::DnaLm::new(&cfg, &device).unwrap();
                use burn::module::Module;
                assert_eq!(
                    model.num_params(),
                    cfg.parameter_count(),
                    "{kind:?} {post_norm}"
                );
            }
        }
    }

    /// Issue 14, defect 6: absurd sizes are refused before anything is allocated, and the
    /// count does not overflow.
    #[test]
    fn absurd_sizes_are_refused_without_overflow() {
        let base = ModelConfig::new(Architecture::Encoder, 12);
        for cfg in [
            ModelConfig {
                n_layers: 10_000_000,
                ..base.clone()
            },
            ModelConfig {
                d_model: 1 << 20,
                ..base.clone()
            },
            ModelConfig {
                d_model: 1 << 40,
                d_ffn: 1 << 40,
                n_heads: 1,
                ..base.clone()
            },
        ] {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains("parameters"), "{err}");
        }
        let huge = ModelConfig {
            d_model: usize::MAX / 2,
            d_ffn: usize::MAX / 2,
            ..base
        };
        assert!(huge.parameter_count() > MAX_PARAMETERS);
    }

    #[test]
    fn validation_names_the_field() {
        let mut cfg = ModelConfig::new(Architecture::Encoder, 12);
        cfg.n_heads = 3;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("n_heads"), "{err}");
        let unknown = serde_json::from_str::<ModelConfig>(r#"{"vocab_size": 12, "layers": 2}"#);
        assert!(unknown.unwrap_err().to_string().contains("unknown field"));
    }

    /// Caduceus-PS needs a complement map that covers the vocabulary and is its own inverse;
    /// Caduceus options need the Caduceus architecture, which has no feed-forward network and
    /// no zero-sized scan.
    #[test]
    fn caduceus_settings_are_checked() {
        let err = |cfg: ModelConfig| cfg.validate().unwrap_err().to_string();
        let mut ps = ModelConfig::new(Architecture::Caduceus, 6);
        assert_eq!(ps.position, PositionEncoding::None);
        assert!(err(ps.clone()).contains("0 entries for a vocabulary of 6"));
        let map = |m: Vec<u32>| {
            Some(CaduceusOptions {
                complement_map: m,
                ..CaduceusOptions::default()
            })
        };
        ps.caduceus = map(vec![0, 1, 5, 4, 3, 2]);
        ps.validate().unwrap();
        assert_eq!(ps.hidden_size(), 2 * ps.d_model);
        let mut broken = ps.clone();
        broken.caduceus = map(vec![0, 1, 5, 4, 3, 3]);
        let e = err(broken);
        assert!(
            e.contains("caduceus.complement_map") && e.contains("token 2 maps to 5"),
            "{e}"
        );
        let ph = ModelConfig {
            caduceus: Some(CaduceusOptions {
                rc_equivariant: false,
                ..CaduceusOptions::default()
            }),
            ..ps.clone()
        };
        ph.validate().unwrap();
        assert_eq!(ph.hidden_size(), ph.d_model);
        let mut empty = ps.clone();
        empty.caduceus = Some(CaduceusOptions {
            d_state: 0,
            ..ps.caduceus_options()
        });
        assert!(err(empty).contains("caduceus.d_state"));
        let ffn = ModelConfig {
            feed_forward: Some(FeedForwardKind::Gelu),
            ..ps.clone()
        };
        assert!(err(ffn).contains("no feed-forward network"));
        let misplaced = ModelConfig {
            caduceus: ps.caduceus.clone(),
            ..ModelConfig::new(Architecture::Encoder, 6)
        };
        assert!(err(misplaced).contains("architecture = \"caduceus\""));
    }

    /// Hyena takes no position encoding and attention needs one; Hyena options need the Hyena
    /// architecture; the filter's positional features are odd-sized.
    #[test]
    fn hyena_settings_are_checked() {
        let hyena = ModelConfig::new(Architecture::Hyena, 12);
        assert_eq!(hyena.position, PositionEncoding::None);
        hyena.validate().unwrap();
        let err = |cfg: ModelConfig| cfg.validate().unwrap_err().to_string();
        let rotary = ModelConfig {
            position: PositionEncoding::Rotary,
            ..hyena.clone()
        };
        assert!(err(rotary).contains("position"));
        let none = ModelConfig {
            position: PositionEncoding::None,
            ..ModelConfig::new(Architecture::Decoder, 12)
        };
        assert!(err(none).contains("position"));
        let misplaced = ModelConfig {
            hyena: Some(HyenaOptions::default()),
            ..ModelConfig::new(Architecture::Encoder, 12)
        };
        assert!(err(misplaced).contains("hyena"));
        let even = ModelConfig {
            hyena: Some(HyenaOptions {
                emb_dim: 4,
                ..HyenaOptions::default()
            }),
            ..hyena
        };
        assert!(err(even).contains("hyena.emb_dim"));
    }
}
