//! The language model: token (and optionally position) embeddings, a stack of [`Block`]s, a
//! final norm and the pretraining heads (LM, deletion, permutation query stream).

use burn::{
    module::{Module, Param},
    nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear},
    tensor::{activation::gelu, Device, Int, Tensor, TensorData},
};

use crate::{
    attention::{alibi_slopes, AttentionBias, AttentionMask, RotaryTables},
    block::{linear, Block, BlockContext, Norm},
    Architecture, ModelConfig, ModelError, PositionEncoding,
};

/// One batch of model input as plain data, row-major `rows x len`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInput {
    /// Number of rows.
    pub rows: usize,
    /// Tokens per row (padded).
    pub len: usize,
    /// Token ids.
    pub input_ids: Vec<u32>,
    /// Position ids (`0..len` per row for ordinary inputs).
    pub position_ids: Vec<u32>,
    /// Padding and attention pattern.
    pub mask: AttentionMask,
    /// Dropout is applied (training) only when this is set; its masks derive from this seed.
    pub dropout_seed: Option<u64>,
}

impl ModelInput {
    /// Unpadded rows of equal length with positions `0..len` and a pattern.
    pub fn from_rows(rows: &[Vec<u32>], pattern: crate::AttentionPattern) -> Self {
        let len = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut input_ids = Vec::with_capacity(rows.len() * len);
        let mut real = Vec::with_capacity(rows.len() * len);
        for r in rows {
            input_ids.extend_from_slice(r);
            input_ids.extend(std::iter::repeat_n(0, len - r.len()));
            real.extend(std::iter::repeat_n(true, r.len()));
            real.extend(std::iter::repeat_n(false, len - r.len()));
        }
        ModelInput {
            rows: rows.len(),
            len,
            input_ids,
            position_ids: (0..rows.len()).flat_map(|_| 0..len as u32).collect(),
            mask: AttentionMask {
                padding: Some(real),
                pattern,
            },
            dropout_seed: None,
        }
    }
}

/// The LM output layer. Encoder: ESM-2's `dense -> GELU -> LayerNorm -> decoder (+ bias)`.
/// Decoder: Llama's plain projection. The decoder matrix is the token embedding when tied.
#[derive(Module, Debug)]
pub struct LmHead {
    /// Encoder only: the transform before the projection.
    pub dense: Option<Linear>,
    /// Encoder only: LayerNorm after the transform.
    pub layer_norm: Option<LayerNorm>,
    /// The projection `d_model -> vocab` when not tied to the embedding.
    pub decoder: Option<Linear>,
    /// Encoder only: output bias `[vocab]`.
    pub bias: Option<Param<Tensor<1>>>,
}

/// A dnalm language model (encoder or decoder, see [`ModelConfig`]).
#[derive(Module, Debug)]
pub struct DnaLm {
    /// Token embedding `[vocab, d_model]`.
    pub embed: Embedding,
    /// Learned absolute positions `[max_positions, d_model]` (learned position encoding only).
    pub positions: Option<Embedding>,
    /// BERT's token-type embedding 0, `[d_model]`, added to every token
    /// ([`ModelConfig::token_type_embedding`] only).
    pub token_type: Option<Param<Tensor<1>>>,
    /// LayerNorm of the embeddings (BERT layout, [`ModelConfig::post_norm`], only).
    pub embed_norm: Option<LayerNorm>,
    /// The blocks.
    pub blocks: Vec<Block>,
    /// Norm after the last block (pre-normalisation layouts only; BERT's blocks end normalised).
    pub final_norm: Option<Norm>,
    /// LM output layer.
    pub lm_head: LmHead,
    /// Token-deletion head: per-position logit that a deletion happened just before.
    pub deletion_head: Linear,
    /// Initial query stream of permutation LM (XLNet's `w`), `[d_model]`.
    pub query_stream: Param<Tensor<1>>,
    /// Rotary tables (rotary position encoding only; constants, not parameters).
    pub rotary: Option<RotaryTables>,
    /// The configuration (not a parameter).
    #[module(skip)]
    pub config: ModelConfig,
    /// Whether pre-LayerNorm encoder layers run as the fused operation on the CPU (the
    /// default) or as separate burn operations ([`DnaLm::with_fused_layers`]).
    #[module(skip)]
    pub fused_layers: bool,
}

impl DnaLm {
    /// A freshly initialised model (normal, sd 0.02, as BERT/ESM; norms at identity).
    pub fn new(config: &ModelConfig, device: &Device) -> Result<Self, ModelError> {
        config.validate()?;
        let d = config.d_model;
        let embedding = |n: usize| {
            EmbeddingConfig::new(n, d)
                .with_initializer(burn::module::Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device)
        };
        let encoder = config.architecture == Architecture::Encoder;
        let lm_head = LmHead {
            dense: encoder.then(|| linear(d, d, true, device)),
            layer_norm: encoder.then(|| {
                LayerNormConfig::new(d)
                    .with_epsilon(config.norm_eps)
                    .init(device)
            }),
            decoder: (!config.tie_embeddings).then(|| linear(d, config.vocab_size, false, device)),
            bias: encoder.then(|| Param::from_tensor(Tensor::zeros([config.vocab_size], device))),
        };
        Ok(DnaLm {
            embed: embedding(config.vocab_size),
            positions: (config.position == PositionEncoding::Learned)
                .then(|| embedding(config.max_positions)),
            token_type: config
                .token_type_embedding
                .then(|| Param::from_tensor(Tensor::zeros([d], device))),
            embed_norm: config.post_norm.then(|| {
                LayerNormConfig::new(d)
                    .with_epsilon(config.norm_eps)
                    .init(device)
            }),
            blocks: (0..config.n_layers)
                .map(|_| Block::new(config, device))
                .collect(),
            final_norm: (!config.post_norm).then(|| Norm::new(config, device)),
            lm_head,
            deletion_head: linear(config.hidden_size(), 1, true, device),
            query_stream: Param::from_tensor(Tensor::<1>::random(
                [d],
                burn::tensor::Distribution::Normal(0.0, 0.02),
                device,
            )),
            rotary: (config.position == PositionEncoding::Rotary).then(|| {
                RotaryTables::new(
                    config.max_positions,
                    config.head_dim(),
                    config.rope_theta,
                    device,
                )
            }),
            config: config.clone(),
            fused_layers: true,
        })
    }

    /// The same model with the fused encoder layer on or off ([`crate::fused`]; on by
    /// default). Off, every layer runs as separate burn operations, as on a GPU backend: the
    /// reference that the fused layer is tested against. Outputs agree to float rounding.
    pub fn with_fused_layers(mut self, on: bool) -> Self {
        self.fused_layers = on;
        self
    }

    /// A model initialised from `seed` alone (normal, sd 0.02, for matrices and embeddings; one
    /// for norm scales; zero for biases), parameter by parameter name: the same seed gives the
    /// same model whatever else the process is doing.
    pub fn seeded(config: &ModelConfig, device: &Device, seed: u64) -> Result<Self, ModelError> {
        Ok(crate::io::reinitialize(Self::new(config, device)?, seed))
    }

    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        self.embed.weight.val().device()
    }

    pub(crate) fn check(&self, input: &ModelInput) -> Result<(), ModelError> {
        let n = input.rows * input.len;
        if input.input_ids.len() != n || input.position_ids.len() != n {
            return Err(ModelError::InputShape {
                ids: input.input_ids.len(),
                positions: input.position_ids.len(),
                rows: input.rows,
                len: input.len,
            });
        }
        if let Some(&bad) = input
            .input_ids
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            return Err(ModelError::TokenOutOfVocabulary {
                id: bad,
                vocab_size: self.config.vocab_size,
            });
        }
        let longest = input.position_ids.iter().copied().max().unwrap_or(0) as usize;
        let beyond = longest >= self.config.max_positions || input.len > self.config.max_positions;
        if beyond && !self.config.extrapolates() {
            return Err(ModelError::TooLong {
                len: input.len,
                largest_position: longest,
                max_positions: self.config.max_positions,
            });
        }
        Ok(())
    }

    pub(crate) fn context(&self, input: &ModelInput, mask: &AttentionMask) -> BlockContext {
        let device = self.device();
        let slopes = (self.config.position == PositionEncoding::Alibi)
            .then(|| alibi_slopes(self.config.n_heads));
        let bias = AttentionBias::new(mask, input.rows, input.len, slopes.as_deref(), &device);
        let rotary = self.rotary.as_ref().map(|tables| {
            tables.select(self.int_tensor(&input.position_ids, input.rows, input.len))
        });
        let dropout = input.dropout_seed.map(|seed| crate::block::DropoutStream {
            seed,
            calls: std::cell::Cell::new(0),
        });
        let keep = self.padding_keep(input, &mask.padding);
        BlockContext {
            bias,
            keep,
            rotary,
            fused: self.fused_layers,
            dropout,
        }
    }

    /// `[rows, len, 1]`, 1 at real positions: what Caduceus' scans skip padding with (`None`
    /// for other architectures and for inputs without padding).
    fn padding_keep(&self, input: &ModelInput, padding: &Option<Vec<bool>>) -> Option<Tensor<3>> {
        if self.config.architecture != Architecture::Caduceus {
            return None;
        }
        let real = padding.as_ref().filter(|p| p.contains(&false))?;
        let keep: Vec<f32> = real.iter().map(|&r| f32::from(u8::from(r))).collect();
        Some(Tensor::from_data(
            TensorData::new(keep, [input.rows, input.len, 1]),
            &self.device(),
        ))
    }

    /// The complement of each token id (reverse-complement-equivariant Caduceus only).
    fn complement_map(&self) -> Option<&[u32]> {
        let options = self.config.caduceus.as_ref()?;
        self.config
            .rc_equivariant()
            .then_some(options.complement_map.as_slice())
    }

    fn int_tensor(&self, values: &[u32], rows: usize, len: usize) -> Tensor<2, Int> {
        let data: Vec<i64> = values.iter().map(|&v| v as i64).collect();
        Tensor::from_data(TensorData::new(data, [rows, len]), &self.device())
    }

    pub(crate) fn embed(&self, input: &ModelInput) -> Tensor<3> {
        let ids = self.int_tensor(&input.input_ids, input.rows, input.len);
        let mut x = self.embed.forward(ids);
        if let Some(map) = self.complement_map() {
            // Caduceus-PS: the second half is the flipped embedding of the reverse complement,
            // flipped back in position, i.e. the channel-flipped embedding of each complement.
            let complements: Vec<u32> = input.input_ids.iter().map(|&i| map[i as usize]).collect();
            let rc = self
                .embed
                .forward(self.int_tensor(&complements, input.rows, input.len))
                .flip([2]);
            x = Tensor::cat(vec![x, rc], 2);
        }
        if self.config.token_dropout {
            x = x * self.token_dropout_scale(input);
        }
        if let Some(token_type) = &self.token_type {
            x = x + token_type.val().unsqueeze::<3>();
        }
        let x = self.add_positions(x, input);
        match &self.embed_norm {
            Some(norm) => norm.forward(x),
            None => x,
        }
    }

    /// ESM's token dropout as a per-token factor: 0 at mask tokens, elsewhere
    /// `(1 - 0.15 * 0.8) / (1 - share of the row's real tokens that are masks)`.
    ///
    /// # Shapes
    /// - output: `[rows, len, 1]`
    fn token_dropout_scale(&self, input: &ModelInput) -> Tensor<3> {
        const MASK_RATIO_TRAIN: f64 = 0.15 * 0.8;
        let mask_id = self.config.mask_token_id;
        let mut factors = Vec::with_capacity(input.rows * input.len);
        for r in 0..input.rows {
            let ids = &input.input_ids[r * input.len..(r + 1) * input.len];
            let real = match &input.mask.padding {
                Some(p) => p[r * input.len..(r + 1) * input.len]
                    .iter()
                    .filter(|&&v| v)
                    .count(),
                None => input.len,
            };
            let masked = ids.iter().filter(|&&id| Some(id) == mask_id).count();
            let scale = (1.0 - MASK_RATIO_TRAIN) / (1.0 - masked as f64 / real.max(1) as f64);
            factors.extend(ids.iter().map(|&id| {
                if Some(id) == mask_id {
                    0.0
                } else {
                    scale as f32
                }
            }));
        }
        Tensor::from_data(
            TensorData::new(factors, [input.rows, input.len, 1]),
            &self.device(),
        )
    }

    pub(crate) fn finish(&self, x: Tensor<3>) -> Tensor<3> {
        match &self.final_norm {
            Some(norm) if self.config.rc_equivariant() => norm.forward_equivariant(x),
            Some(norm) => norm.forward(x),
            None => x,
        }
    }

    fn add_positions(&self, x: Tensor<3>, input: &ModelInput) -> Tensor<3> {
        match &self.positions {
            Some(p) => x + p.forward(self.int_tensor(&input.position_ids, input.rows, input.len)),
            None => x,
        }
    }

    /// Final hidden states (after the final norm).
    ///
    /// # Shapes
    /// - output: `[rows, len, hidden]` (`hidden`: [`ModelConfig::hidden_size`])
    pub fn forward(&self, input: &ModelInput) -> Result<Tensor<3>, ModelError> {
        Ok(self.forward_layers(input, false)?.0)
    }

    /// Final hidden states and, when `keep` is set, the output of every block (before the final
    /// norm), first block first; index 0 of the list is the embedding output (after the
    /// embedding norm of the BERT layout).
    ///
    /// # Shapes
    /// - output: `[rows, len, hidden]` and `n_layers + 1` tensors of the same shape
    pub fn forward_layers(
        &self,
        input: &ModelInput,
        keep: bool,
    ) -> Result<(Tensor<3>, Vec<Tensor<3>>), ModelError> {
        self.check(input)?;
        let ctx = self.context(input, &input.mask);
        let mut x = self.embed(input);
        let mut layers = Vec::new();
        for block in &self.blocks {
            if keep {
                layers.push(x.clone());
            }
            x = block.forward(x, &ctx);
        }
        if keep {
            layers.push(x.clone());
        }
        let x = self.finish(x);
        if let Some(keep) = self.padding_zeroes(input) {
            layers = layers.into_iter().map(|l| l * keep.clone()).collect();
            return Ok((x * keep, layers));
        }
        Ok((x, layers))
    }

    /// The hidden state after the embedding and the first `blocks` blocks (before the final
    /// norm): what fine-tuning with frozen lower blocks computes once per sequence and caches.
    ///
    /// # Shapes
    /// - output: `[rows, len, hidden]`
    pub fn hidden_after(&self, input: &ModelInput, blocks: usize) -> Result<Tensor<3>, ModelError> {
        self.check(input)?;
        let ctx = self.context(input, &input.mask);
        let mut x = self.embed(input);
        for block in self.blocks.iter().take(blocks) {
            x = block.forward(x, &ctx);
        }
        Ok(x)
    }

    /// Final hidden states from `hidden`, the state after the first `first` blocks (see
    /// [`DnaLm::hidden_after`]): the remaining blocks, then the final norm. Equals
    /// [`DnaLm::forward`] at real tokens.
    ///
    /// # Shapes
    /// - `hidden`, output: `[rows, len, hidden]`
    pub fn forward_from(
        &self,
        input: &ModelInput,
        hidden: Tensor<3>,
        first: usize,
    ) -> Result<Tensor<3>, ModelError> {
        self.check(input)?;
        let ctx = self.context(input, &input.mask);
        let mut x = hidden;
        for block in self.blocks.iter().skip(first) {
            x = block.forward(x, &ctx);
        }
        let x = self.finish(x);
        Ok(match self.padding_zeroes(input) {
            Some(keep) => x * keep,
            None => x,
        })
    }

    /// `[rows, len, 1]`: 0 at padded tokens, when the layout zeroes their states (ESM's
    /// `zero_padding`) and the input has padding.
    pub(crate) fn padding_zeroes(&self, input: &ModelInput) -> Option<Tensor<3>> {
        let real = input
            .mask
            .padding
            .as_ref()
            .filter(|_| self.config.zero_padding)?;
        let keep: Vec<f32> = real.iter().map(|&r| f32::from(u8::from(r))).collect();
        Some(Tensor::<3>::from_data(
            TensorData::new(keep, [input.rows, input.len, 1]),
            &self.device(),
        ))
    }

    /// Two-stream forward of permutation LM: the content stream attends with `content`, the
    /// query stream (which starts from [`DnaLm::query_stream`] plus positions and never sees its
    /// own token) with `query`. Returns the final query stream, from which targets are predicted.
    ///
    /// # Shapes
    /// - `content`, `query`: `rows x len x len` (`[r][i][j]`: may i see j)
    /// - output: `[rows, len, d_model]`
    pub fn forward_two_stream(
        &self,
        input: &ModelInput,
        content: Vec<bool>,
        query: Vec<bool>,
    ) -> Result<Tensor<3>, ModelError> {
        self.check(input)?;
        if !self.config.architecture.attends() {
            return Err(ModelError::Config {
                field: "architecture",
                message: format!(
                    "permutation LM's two-stream attention needs attention blocks; {:?} models \
                     train with next-token prediction (Hyena) or masked LM (Caduceus)",
                    self.config.architecture
                ),
            });
        }
        let with = |pattern| AttentionMask {
            padding: input.mask.padding.clone(),
            pattern,
        };
        let content_ctx = self.context(input, &with(crate::AttentionPattern::Dense(content)));
        let mut query_ctx = self.context(input, &with(crate::AttentionPattern::Dense(query)));
        if let Some(stream) = &mut query_ctx.dropout {
            stream.seed = !stream.seed;
        }
        let mut h = self.embed(input);
        let d = self.config.d_model;
        let g0 = self
            .query_stream
            .val()
            .reshape([1, 1, d])
            .expand([input.rows, input.len, d]);
        let mut g = self.add_positions(g0, input);
        for block in &self.blocks {
            let g_next = block.forward_query_stream(g, h.clone(), &query_ctx);
            h = block.forward(h, &content_ctx);
            g = g_next;
        }
        Ok(self.finish(g))
    }

    /// LM logits for selected hidden rows: computing them only where the loss counts is what
    /// makes masked-LM training cheap with large k-mer vocabularies.
    ///
    /// # Shapes
    /// - `hidden`: `[n, hidden]`
    /// - output: `[n, vocab]`
    pub fn lm_logits(&self, hidden: Tensor<2>) -> Tensor<2> {
        if let Some(map) = self.complement_map() {
            // Caduceus-PS: `W a + W[comp] flip_C(b)`; the second term is the first's
            // projection of `flip_C(b)` with the vocabulary permuted by the complement map.
            let (a, b) = crate::caduceus::halves(hidden);
            let ids: Vec<i64> = map.iter().map(|&m| i64::from(m)).collect();
            let ids =
                Tensor::<1, Int>::from_data(TensorData::new(ids, [map.len()]), &self.device());
            return self.lm_projection(a) + self.lm_projection(b.flip([1])).select(1, ids);
        }
        self.lm_projection(hidden)
    }

    fn lm_projection(&self, hidden: Tensor<2>) -> Tensor<2> {
        let head = &self.lm_head;
        let mut x = hidden;
        if let (Some(dense), Some(norm)) = (&head.dense, &head.layer_norm) {
            x = norm.forward(gelu(dense.forward(x)));
        }
        let mut logits = match &head.decoder {
            Some(decoder) => decoder.forward(x),
            None => x.matmul(self.embed.weight.val().transpose()),
        };
        if let Some(bias) = &head.bias {
            logits = logits + bias.val().unsqueeze::<2>();
        }
        logits
    }

    /// Token-deletion logits (one per row of `hidden`).
    ///
    /// # Shapes
    /// - `hidden`: `[n, hidden]`
    /// - output: `[n]`
    pub fn deletion_logits(&self, hidden: Tensor<2>) -> Tensor<1> {
        let [n, _] = hidden.dims();
        self.deletion_head.forward(hidden).reshape([n])
    }
}
