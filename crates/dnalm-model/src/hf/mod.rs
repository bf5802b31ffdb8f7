//! Hugging Face interoperability: configs and weight names of the model families people publish,
//! both ways.
//!
//! | family | class (`transformers`, or the hub's own code) | dnalm layout |
//! |---|---|---|
//! | `bert` (DNABERT) | `BertForMaskedLM` / `BertModel` | encoder, [`ModelConfig::post_norm`], learned positions |
//! | `esm` (Nucleotide Transformer v1, ESM-2, dnalm encoders) | `EsmForMaskedLM` / `EsmModel` | encoder, rotary or learned positions, optional token dropout |
//! | `llama` (dnalm decoders) | `LlamaForCausalLM` | decoder, rotary |
//! | DNABERT-2 (MosaicBERT) | hub `bert_layers.BertForMaskedLM` | encoder, post-norm, ALiBi, GEGLU, token type 0, padded positions zero |
//! | Nucleotide Transformer v2 | hub `modeling_esm.EsmForMaskedLM` | encoder, pre-norm, rotary, SwiGLU (biases as `add_bias_fnn`) |
//! | `hyenadna` (HyenaDNA) | hub `modeling_hyena.HyenaDNAForCausalLM` | Hyena, tanh-GELU MLP, no positions |
//! | `caduceus` (Caduceus-PS, -Ph) | hub `modeling_caduceus.CaduceusForMaskedLM` | Caduceus: BiMamba, RMSNorm, reverse-complement equivariant (PS) or not (Ph) |
//!
//! The two hub families' `config.json` has no `model_type` (their code is `trust_remote_code`);
//! they are recognised by their own keys (`alibi_starting_size`, `add_bias_fnn`) or by the module
//! names in `auto_map` ([`HfFamily::detect`]).
//!
//! Import ([`import_config`], [`import_weights`]) turns a `config.json` and its tensors into a
//! [`ModelConfig`] and dnalm's parameter names; an option dnalm cannot run exactly is refused,
//! naming the field. Export ([`export_config`], [`export_weights`]) is the inverse: the stock
//! families load with `transformers`' own classes, the hub families with their hub code (the
//! exported `auto_map` points at the original hub repository's code).
//!
//! Conversions that are not plain renames: `transformers` stores linear weights as `[out, in]`
//! and burn as `[in, out]` (transposed); ESM's learned positions count from `pad_token_id + 1`
//! (dnalm keeps rows from there on, and export puts the rows back); BERT adds token-type
//! embedding 0 to every token, which import folds into the position embeddings (the sum is the
//! same) and export writes as zeros, while DNABERT-2, which has no position table, keeps it as
//! its own vector; packed tensors (DNABERT-2's `Wqkv` and `gated_layers`, NT-v2's gated
//! `intermediate.dense`) are split into dnalm's separate projections and packed again on export.

mod config;
pub mod peft;
mod weights;

pub use config::{export_config, import_config};
pub use weights::{export_weights, import_weights, ImportReport};

use serde_json::Value;

use crate::{Architecture, FeedForwardKind, ModelConfig, PositionEncoding};

/// The Hugging Face model family of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HfFamily {
    /// BERT (DNABERT): post-LayerNorm encoder, learned absolute positions.
    Bert,
    /// ESM (Nucleotide Transformer v1, ESM-2; dnalm's encoder layout).
    Esm,
    /// Llama (dnalm's decoder layout).
    Llama,
    /// DNABERT-2 (MosaicBERT, hub code `bert_layers.py`): post-LayerNorm encoder with ALiBi and
    /// a GEGLU feed-forward network.
    DnaBert2,
    /// Nucleotide Transformer v2 (hub code `modeling_esm.py`): ESM with rotary positions and a
    /// gated SwiGLU feed-forward network.
    NtV2,
    /// HyenaDNA (hub code `modeling_hyena.py` of the `LongSafari/hyenadna-*-hf` repositories):
    /// causal Hyena operator blocks.
    HyenaDna,
    /// Caduceus (hub code `modeling_caduceus.py` of the `kuleshov-group/caduceus-*`
    /// repositories): BiMamba blocks, reverse-complement equivariant (`rcps`) or not.
    Caduceus,
}

/// Why a dnalm config has no Hugging Face layout to export to.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct NoHfLayout {
    /// The config field that decides it.
    pub field: &'static str,
    /// Why, in words.
    pub reason: String,
}

fn no_layout(field: &'static str, reason: impl Into<String>) -> NoHfLayout {
    NoHfLayout {
        field,
        reason: reason.into(),
    }
}

/// The hub repository whose code the exported DNABERT-2 `auto_map` points at.
pub const DNABERT2_HUB_CODE: &str = "zhihan1996/DNABERT-2-117M";
/// The hub repository whose code the exported Nucleotide Transformer v2 `auto_map` points at.
pub const NT_V2_HUB_CODE: &str = "InstaDeepAI/nucleotide-transformer-v2-50m-multi-species";
/// The hub repository whose code the exported HyenaDNA `auto_map` points at.
pub const HYENADNA_HUB_CODE: &str = "LongSafari/hyenadna-tiny-1k-seqlen-hf";
/// The hub repository whose code the exported Caduceus `auto_map` points at (the PS and Ph
/// repositories ship the same code).
pub const CADUCEUS_HUB_CODE: &str = "kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16";

impl HfFamily {
    /// The family of a `model_type`, if dnalm reads it.
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "bert" => Some(HfFamily::Bert),
            "esm" => Some(HfFamily::Esm),
            "llama" => Some(HfFamily::Llama),
            "hyenadna" => Some(HfFamily::HyenaDna),
            "caduceus" => Some(HfFamily::Caduceus),
            _ => None,
        }
    }

    /// The family of a `config.json` value: the hub families by their own keys or `auto_map`
    /// modules (whatever `model_type` says, since derived checkpoints often add one), the
    /// others by `model_type`. `Err` holds the `model_type` found (or `None`), for the message.
    pub fn detect(value: &Value) -> Result<Self, Option<String>> {
        let has = |key: &str| value.get(key).is_some();
        let auto_map_names = |module: &str| {
            value
                .get("auto_map")
                .and_then(Value::as_object)
                .is_some_and(|m| {
                    m.values()
                        .filter_map(Value::as_str)
                        .any(|class| class.contains(module))
                })
        };
        if has("alibi_starting_size") || auto_map_names("bert_layers.") {
            return Ok(HfFamily::DnaBert2);
        }
        if has("add_bias_fnn") || auto_map_names("modeling_esm.") || auto_map_names("esm_config.") {
            return Ok(HfFamily::NtV2);
        }
        let model_type = value.get("model_type").and_then(Value::as_str);
        model_type
            .and_then(HfFamily::from_model_type)
            .ok_or_else(|| model_type.map(str::to_string))
    }

    /// The `model_type` string (`None` for the hub families, whose configs have none).
    pub fn model_type(self) -> Option<&'static str> {
        match self {
            HfFamily::Bert => Some("bert"),
            HfFamily::Esm => Some("esm"),
            HfFamily::Llama => Some("llama"),
            HfFamily::HyenaDna => Some("hyenadna"),
            HfFamily::Caduceus => Some("caduceus"),
            HfFamily::DnaBert2 | HfFamily::NtV2 => None,
        }
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            HfFamily::Bert => "BERT",
            HfFamily::Esm => "ESM",
            HfFamily::Llama => "Llama",
            HfFamily::DnaBert2 => "DNABERT-2",
            HfFamily::NtV2 => "Nucleotide Transformer v2",
            HfFamily::HyenaDna => "HyenaDNA",
            HfFamily::Caduceus => "Caduceus",
        }
    }

    /// The prefix of the base model's tensors in the `*For*LM` classes.
    pub fn prefix(self) -> &'static str {
        match self {
            HfFamily::Bert | HfFamily::DnaBert2 => "bert.",
            HfFamily::Esm | HfFamily::NtV2 => "esm.",
            HfFamily::Llama => "model.",
            HfFamily::HyenaDna => "hyena.",
            HfFamily::Caduceus => "caduceus.",
        }
    }

    /// The class a dnalm model of this family loads as (`architectures` in `config.json`):
    /// `transformers`' own, or, for the families with [`HfFamily::hub_code`], the hub code's.
    pub fn class(self) -> &'static str {
        match self {
            HfFamily::Bert | HfFamily::DnaBert2 => "BertForMaskedLM",
            HfFamily::Esm | HfFamily::NtV2 => "EsmForMaskedLM",
            HfFamily::Llama => "LlamaForCausalLM",
            HfFamily::HyenaDna => "HyenaDNAForCausalLM",
            HfFamily::Caduceus => "CaduceusForMaskedLM",
        }
    }

    /// The hub repository whose code runs this family (`trust_remote_code=True`); `None` for
    /// the families `transformers` has classes for.
    pub fn hub_code(self) -> Option<&'static str> {
        match self {
            HfFamily::DnaBert2 => Some(DNABERT2_HUB_CODE),
            HfFamily::NtV2 => Some(NT_V2_HUB_CODE),
            HfFamily::HyenaDna => Some(HYENADNA_HUB_CODE),
            HfFamily::Caduceus => Some(CADUCEUS_HUB_CODE),
            HfFamily::Bert | HfFamily::Esm | HfFamily::Llama => None,
        }
    }

    /// Whether the LM decoder shares the word embeddings whatever the config says (DNABERT-2's
    /// and Caduceus' code tie them).
    fn always_tied(self) -> bool {
        matches!(self, HfFamily::DnaBert2 | HfFamily::Caduceus)
    }

    /// The family a dnalm config exports to, or why it has none.
    pub fn of(config: &ModelConfig) -> Result<Self, NoHfLayout> {
        use FeedForwardKind::{GeGlu, Gelu, GeluTanh, SwiGlu};
        use PositionEncoding::{Alibi, Learned, Rotary};
        let ffn = config.feed_forward();
        let family = match (config.architecture, config.position, config.post_norm, ffn) {
            (Architecture::Encoder, Learned, true, Gelu) => HfFamily::Bert,
            (Architecture::Encoder, Alibi, true, GeGlu) => HfFamily::DnaBert2,
            (Architecture::Encoder, Rotary | Learned, false, Gelu) => HfFamily::Esm,
            (Architecture::Encoder, Rotary, false, SwiGlu) => HfFamily::NtV2,
            (Architecture::Decoder, Rotary, _, SwiGlu) => HfFamily::Llama,
            (Architecture::Hyena, _, _, GeluTanh) => HfFamily::HyenaDna,
            (Architecture::Caduceus, _, _, _) => HfFamily::Caduceus,
            (Architecture::Hyena, _, _, f) => {
                return Err(no_layout(
                    "feed_forward",
                    format!("HyenaDNA's MLP is a tanh-GELU one; this model has {f:?}"),
                ))
            }
            (Architecture::Encoder, p, true, f) => {
                return Err(no_layout(
                    "position",
                    format!(
                        "the post-norm encoder exports as BERT (learned positions, GELU) or \
                         DNABERT-2 (ALiBi, GEGLU); this one has {p:?} positions and {f:?}"
                    ),
                ))
            }
            (Architecture::Encoder, p, false, f) => {
                return Err(no_layout(
                    "position",
                    format!(
                        "the pre-norm encoder exports as ESM (rotary or learned positions, GELU) \
                         or Nucleotide Transformer v2 (rotary, SwiGLU); this one has {p:?} \
                         positions and {f:?}"
                    ),
                ))
            }
            (Architecture::Decoder, p, _, f) => {
                return Err(no_layout(
                    "position",
                    format!(
                        "Llama (the decoder's transformers class) uses rotary positions and \
                         SwiGLU; this one has {p:?} positions and {f:?}"
                    ),
                ))
            }
        };
        let biases = config.ffn_biases();
        let expected = match family {
            HfFamily::Bert | HfFamily::Esm | HfFamily::HyenaDna => Some((true, true)),
            // No feed-forward network: nothing to compare.
            HfFamily::Caduceus => None,
            HfFamily::Llama => Some((false, false)),
            HfFamily::DnaBert2 => Some((false, true)),
            HfFamily::NtV2 => (biases.0 != biases.1).then_some((biases.1, biases.1)),
        };
        if let Some(expected) = expected.filter(|&e| e != biases) {
            return Err(no_layout(
                "ffn_input_bias",
                format!(
                    "{} has feed-forward biases (input, output) = {expected:?}, this model {biases:?}",
                    family.name()
                ),
            ));
        }
        if config.token_type_embedding && family != HfFamily::DnaBert2 {
            return Err(no_layout(
                "token_type_embedding",
                format!("{} has no place for a token-type vector", family.name()),
            ));
        }
        if family.always_tied() && !config.tie_embeddings {
            return Err(no_layout(
                "tie_embeddings",
                format!(
                    "{}'s code ties the LM decoder to the embeddings",
                    family.name()
                ),
            ));
        }
        Ok(family)
    }
}

#[cfg(test)]
pub(crate) mod tests;
