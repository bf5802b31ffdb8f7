//! Hugging Face interoperability: configs and weight names of `transformers`' BERT, ESM and Llama
//! classes, both ways.
//!
//! | family | `transformers` class | dnalm layout |
//! |---|---|---|
//! | `bert` (DNABERT) | `BertForMaskedLM` / `BertModel` | encoder, [`ModelConfig::post_norm`], learned positions |
//! | `esm` (Nucleotide Transformer, dnalm encoders) | `EsmForMaskedLM` / `EsmModel` | encoder, rotary or learned positions, optional token dropout |
//! | `llama` (dnalm decoders) | `LlamaForCausalLM` | decoder, rotary |
//!
//! Import ([`import_config`], [`import_weights`]) turns a `config.json` and its tensors into a
//! [`ModelConfig`] and dnalm's parameter names; an option dnalm cannot run exactly is refused,
//! naming the field. Export ([`export_config`], [`export_weights`]) is the inverse, so that
//! `transformers` loads a dnalm checkpoint with its stock classes (no `trust_remote_code`).
//!
//! Three conversions are not plain renames: `transformers` stores linear weights as
//! `[out, in]` and burn as `[in, out]` (transposed); ESM's learned positions count from
//! `pad_token_id + 1` (dnalm keeps rows from there on, and export puts the rows back); BERT adds
//! token-type embedding 0 to every token, which import folds into the position embeddings (the
//! sum is the same) and export writes as zeros.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use serde_json::{json, Value};

use crate::{io::HostTensor, Architecture, ModelConfig, ModelError, PositionEncoding};

/// The `transformers` model family of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HfFamily {
    /// BERT (DNABERT): post-LayerNorm encoder, learned absolute positions.
    Bert,
    /// ESM (Nucleotide Transformer, ESM-2; dnalm's encoder layout).
    Esm,
    /// Llama (dnalm's decoder layout).
    Llama,
}

impl HfFamily {
    /// The family of a `model_type`, if dnalm reads it.
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "bert" => Some(HfFamily::Bert),
            "esm" => Some(HfFamily::Esm),
            "llama" => Some(HfFamily::Llama),
            _ => None,
        }
    }

    /// The `model_type` string.
    pub fn model_type(self) -> &'static str {
        match self {
            HfFamily::Bert => "bert",
            HfFamily::Esm => "esm",
            HfFamily::Llama => "llama",
        }
    }

    /// The prefix of the base model's tensors in the `*For*LM` classes.
    pub fn prefix(self) -> &'static str {
        match self {
            HfFamily::Bert => "bert.",
            HfFamily::Esm => "esm.",
            HfFamily::Llama => "model.",
        }
    }

    /// The `transformers` class a dnalm model of this family loads as.
    pub fn class(self) -> &'static str {
        match self {
            HfFamily::Bert => "BertForMaskedLM",
            HfFamily::Esm => "EsmForMaskedLM",
            HfFamily::Llama => "LlamaForCausalLM",
        }
    }

    /// The family a dnalm config exports to, or why it has none.
    pub fn of(config: &ModelConfig) -> Result<Self, String> {
        match (config.architecture, config.position, config.post_norm) {
            (Architecture::Encoder, PositionEncoding::Learned, true) => Ok(HfFamily::Bert),
            (Architecture::Encoder, _, true) => Err(format!(
                "position = {:?}: the BERT layout (post_norm) exports with learned positions only",
                config.position
            )),
            (Architecture::Encoder, PositionEncoding::Alibi, false) => Err(
                "position = alibi: ESM (the encoder's transformers class) has no ALiBi".into(),
            ),
            (Architecture::Encoder, _, false) => Ok(HfFamily::Esm),
            (Architecture::Decoder, PositionEncoding::Rotary, _) => Ok(HfFamily::Llama),
            (Architecture::Decoder, p, _) => Err(format!(
                "position = {p:?}: Llama (the decoder's transformers class) uses rotary positions only"
            )),
        }
    }
}

fn config_err(path: &Path, field: &'static str, message: String) -> ModelError {
    ModelError::Config {
        field,
        message: format!("{}: {message}", path.display()),
    }
}

/// Reads a Hugging Face `config.json` value into a dnalm config. `path` names the file in errors.
///
/// Refused, with the field named: activations other than GELU (BERT, ESM) or SiLU (Llama),
/// relative position embeddings, ESM's `emb_layer_norm_before` and folding models, Llama's
/// grouped-query attention, attention/MLP biases and RoPE scaling.
pub fn import_config(value: &Value, path: &Path) -> Result<(HfFamily, ModelConfig), ModelError> {
    let model_type = value
        .get("model_type")
        .and_then(Value::as_str)
        .ok_or_else(|| config_err(path, "model_type", "missing".into()))?;
    let family = HfFamily::from_model_type(model_type).ok_or_else(|| {
        config_err(
            path,
            "model_type",
            format!("\"{model_type}\" is not supported (dnalm reads bert, esm and llama)"),
        )
    })?;
    let usize_field = |field: &'static str| -> Result<usize, ModelError> {
        value
            .get(field)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| config_err(path, field, "missing or not a whole number".into()))
    };
    let opt_id = |field: &str| value.get(field).and_then(Value::as_u64).map(|v| v as u32);
    let float =
        |field: &str, default: f64| value.get(field).and_then(Value::as_f64).unwrap_or(default);
    let string = |field: &str| value.get(field).and_then(Value::as_str).map(str::to_string);
    let flag = |field: &str| value.get(field).and_then(Value::as_bool);
    let require = |field: &'static str, got: Option<String>, allowed: &[&str], default: &str| {
        let got = got.unwrap_or_else(|| default.to_string());
        if allowed.contains(&got.as_str()) {
            Ok(())
        } else {
            Err(config_err(
                path,
                field,
                format!(
                    "\"{got}\" is not supported (dnalm runs {})",
                    allowed.join(", ")
                ),
            ))
        }
    };
    let refuse_true = |field: &'static str, why: &str| {
        if flag(field) == Some(true) {
            Err(config_err(
                path,
                field,
                format!("true is not supported ({why})"),
            ))
        } else {
            Ok(())
        }
    };

    let vocab_size = usize_field("vocab_size")?;
    let mut cfg = ModelConfig::new(
        match family {
            HfFamily::Llama => Architecture::Decoder,
            _ => Architecture::Encoder,
        },
        vocab_size,
    );
    cfg.d_model = usize_field("hidden_size")?;
    cfg.n_layers = usize_field("num_hidden_layers")?;
    cfg.n_heads = usize_field("num_attention_heads")?;
    cfg.d_ffn = usize_field("intermediate_size")?;
    cfg.pad_token_id = opt_id("pad_token_id");
    cfg.mask_token_id = opt_id("mask_token_id");
    cfg.bos_token_id = opt_id("bos_token_id");
    cfg.eos_token_id = opt_id("eos_token_id");
    let max_positions = usize_field("max_position_embeddings")?;
    match family {
        HfFamily::Bert => {
            require("hidden_act", string("hidden_act"), &["gelu"], "gelu")?;
            require(
                "position_embedding_type",
                string("position_embedding_type"),
                &["absolute"],
                "absolute",
            )?;
            refuse_true("is_decoder", "dnalm imports BERT as an encoder")?;
            refuse_true("add_cross_attention", "no cross-attention in dnalm")?;
            cfg.post_norm = true;
            cfg.position = PositionEncoding::Learned;
            cfg.max_positions = max_positions;
            cfg.norm_eps = float("layer_norm_eps", 1e-12);
            cfg.tie_embeddings = flag("tie_word_embeddings").unwrap_or(true);
        }
        HfFamily::Esm => {
            require("hidden_act", string("hidden_act"), &["gelu"], "gelu")?;
            refuse_true(
                "emb_layer_norm_before",
                "a LayerNorm before the first block, as in ESM-1b",
            )?;
            refuse_true("is_folding_model", "ESMFold")?;
            cfg.norm_eps = float("layer_norm_eps", 1e-12);
            cfg.tie_embeddings = flag("tie_word_embeddings").unwrap_or(true);
            cfg.token_dropout = flag("token_dropout").unwrap_or(false);
            match string("position_embedding_type")
                .as_deref()
                .unwrap_or("absolute")
            {
                "rotary" => {
                    cfg.position = PositionEncoding::Rotary;
                    cfg.max_positions = max_positions;
                }
                "absolute" => {
                    let pad = cfg.pad_token_id.ok_or_else(|| {
                        config_err(
                            path,
                            "pad_token_id",
                            "ESM's learned positions count from pad_token_id + 1; it is missing"
                                .into(),
                        )
                    })? as usize;
                    cfg.position = PositionEncoding::Learned;
                    cfg.max_positions = max_positions
                        .checked_sub(pad + 1)
                        .filter(|&m| m > 0)
                        .ok_or_else(|| {
                            config_err(
                                path,
                                "max_position_embeddings",
                                format!(
                                    "{max_positions} leaves no position after pad_token_id = {pad}"
                                ),
                            )
                        })?;
                }
                other => {
                    return Err(config_err(
                        path,
                        "position_embedding_type",
                        format!("\"{other}\" is not supported (dnalm runs absolute, rotary)"),
                    ))
                }
            }
        }
        HfFamily::Llama => {
            require("hidden_act", string("hidden_act"), &["silu"], "silu")?;
            if let Some(kv) = value.get("num_key_value_heads").and_then(Value::as_u64) {
                if kv as usize != cfg.n_heads {
                    return Err(config_err(
                        path,
                        "num_key_value_heads",
                        format!(
                            "{kv} differs from num_attention_heads = {} (grouped-query attention is not supported)",
                            cfg.n_heads
                        ),
                    ));
                }
            }
            refuse_true("attention_bias", "dnalm's decoder has no biases")?;
            refuse_true("mlp_bias", "dnalm's decoder has no biases")?;
            let scaling = value
                .get("rope_scaling")
                .filter(|v| !v.is_null())
                .or_else(|| {
                    value
                        .get("rope_parameters")
                        .and_then(|p| p.get("rope_type"))
                        .filter(|t| t.as_str() != Some("default"))
                });
            if let Some(s) = scaling {
                return Err(config_err(
                    path,
                    "rope_scaling",
                    format!("{s} is not supported (plain RoPE only)"),
                ));
            }
            if let Some(hd) = value.get("head_dim").and_then(Value::as_u64) {
                if cfg.n_heads > 0 && hd as usize * cfg.n_heads != cfg.d_model {
                    return Err(config_err(
                        path,
                        "head_dim",
                        format!(
                            "{hd} x {} heads differs from hidden_size = {}",
                            cfg.n_heads, cfg.d_model
                        ),
                    ));
                }
            }
            cfg.position = PositionEncoding::Rotary;
            cfg.max_positions = max_positions;
            cfg.norm_eps = float("rms_norm_eps", 1e-6);
            cfg.rope_theta = value
                .get("rope_theta")
                .and_then(Value::as_f64)
                .or_else(|| {
                    value
                        .get("rope_parameters")
                        .and_then(|p| p.get("rope_theta"))
                        .and_then(Value::as_f64)
                })
                .unwrap_or(10_000.0);
            cfg.tie_embeddings = flag("tie_word_embeddings").unwrap_or(false);
        }
    }
    cfg.validate().map_err(|e| match e {
        ModelError::Config { field, message } => config_err(path, field, message),
        other => other,
    })?;
    Ok((family, cfg))
}

/// The `config.json` that `transformers` loads a dnalm model of `config` from (with the full
/// dnalm config under `"dnalm"`), or why the config has no `transformers` equivalent.
pub fn export_config(config: &ModelConfig) -> Result<Value, String> {
    let family = HfFamily::of(config)?;
    let mut value = json!({
        "model_type": family.model_type(),
        "architectures": [family.class()],
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "intermediate_size": config.d_ffn,
        "tie_word_embeddings": config.tie_embeddings,
        "torch_dtype": "float32",
        "initializer_range": 0.02,
    });
    let obj = value.as_object_mut().ok_or("config is not an object")?;
    let mut set = |k: &str, v: Value| {
        obj.insert(k.to_string(), v);
    };
    for (key, id) in [
        ("pad_token_id", config.pad_token_id),
        ("mask_token_id", config.mask_token_id),
        ("bos_token_id", config.bos_token_id),
        ("eos_token_id", config.eos_token_id),
    ] {
        if let Some(id) = id {
            set(key, json!(id));
        }
    }
    match family {
        HfFamily::Bert => {
            set("hidden_act", json!("gelu"));
            set("max_position_embeddings", json!(config.max_positions));
            set("position_embedding_type", json!("absolute"));
            set("type_vocab_size", json!(2));
            set("layer_norm_eps", json!(config.norm_eps));
            set("hidden_dropout_prob", json!(config.dropout));
            set("attention_probs_dropout_prob", json!(0.0));
        }
        HfFamily::Esm => {
            set("hidden_act", json!("gelu"));
            let learned = config.position == PositionEncoding::Learned;
            let offset = if learned {
                esm_position_offset(config)
            } else {
                0
            };
            set(
                "max_position_embeddings",
                json!(config.max_positions + offset),
            );
            set(
                "position_embedding_type",
                json!(if learned { "absolute" } else { "rotary" }),
            );
            // ESM needs a padding id for its learned positions; dnalm vocabularies pad with 0.
            set("pad_token_id", json!(config.pad_token_id.unwrap_or(0)));
            set("layer_norm_eps", json!(config.norm_eps));
            set("emb_layer_norm_before", json!(false));
            set("token_dropout", json!(config.token_dropout));
            set("is_folding_model", json!(false));
            set("hidden_dropout_prob", json!(config.dropout));
            set("attention_probs_dropout_prob", json!(0.0));
        }
        HfFamily::Llama => {
            set("hidden_act", json!("silu"));
            set("max_position_embeddings", json!(config.max_positions));
            set("num_key_value_heads", json!(config.n_heads));
            set("head_dim", json!(config.head_dim()));
            set("rms_norm_eps", json!(config.norm_eps));
            set("rope_theta", json!(config.rope_theta));
            set(
                "rope_parameters",
                json!({"rope_type": "default", "rope_theta": config.rope_theta}),
            );
            set("attention_bias", json!(false));
            set("mlp_bias", json!(false));
            set("attention_dropout", json!(0.0));
        }
    }
    set(
        "dnalm",
        serde_json::to_value(config).map_err(|e| e.to_string())?,
    );
    Ok(value)
}

/// Rows ESM keeps before the first learned position: positions count from `pad_token_id + 1`.
fn esm_position_offset(config: &ModelConfig) -> usize {
    config.pad_token_id.unwrap_or(0) as usize + 1
}

/// How a tensor changes between the two names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Same,
    /// A linear weight: burn `[in, out]`, `transformers` `[out, in]`.
    Transpose,
    /// Learned positions whose `transformers` table has `offset` extra rows in front.
    PositionRows {
        offset: usize,
    },
}

/// The `transformers` name of dnalm parameter `name` (with the prefix of the base model: `esm.`,
/// `bert.` or `model.`), or `None` for dnalm's own pretraining heads (deletion, permutation
/// query stream), which `transformers` has no place for.
fn hf_name(
    family: HfFamily,
    config: &ModelConfig,
    name: &str,
    prefix: &str,
) -> Option<(String, Change)> {
    let parts: Vec<&str> = name.split('.').collect();
    fn norm(leaf: &str) -> &str {
        match leaf {
            "gamma" => "weight",
            "beta" => "bias",
            other => other,
        }
    }
    let linear = |hf: String, leaf: &str| {
        let change = if leaf == "weight" {
            Change::Transpose
        } else {
            Change::Same
        };
        Some((format!("{hf}.{leaf}"), change))
    };
    match family {
        HfFamily::Esm | HfFamily::Bert => {
            let bert = family == HfFamily::Bert;
            let p = prefix;
            match parts.as_slice() {
                ["embed", "weight"] => Some((
                    format!("{p}embeddings.word_embeddings.weight"),
                    Change::Same,
                )),
                ["positions", "weight"] => Some((
                    format!("{p}embeddings.position_embeddings.weight"),
                    if bert {
                        Change::Same
                    } else {
                        Change::PositionRows {
                            offset: esm_position_offset(config),
                        }
                    },
                )),
                ["embed_norm", leaf] => Some((
                    format!("{p}embeddings.LayerNorm.{}", norm(leaf)),
                    Change::Same,
                )),
                ["blocks", i, rest @ ..] => {
                    let l = format!("{p}encoder.layer.{i}");
                    match rest {
                        ["query" | "key" | "value", leaf] => {
                            linear(format!("{l}.attention.self.{}", rest[0]), leaf)
                        }
                        ["output", leaf] => linear(format!("{l}.attention.output.dense"), leaf),
                        ["attn_norm", "Layer", leaf] => Some((
                            if bert {
                                format!("{l}.attention.output.LayerNorm.{}", norm(leaf))
                            } else {
                                format!("{l}.attention.LayerNorm.{}", norm(leaf))
                            },
                            Change::Same,
                        )),
                        ["ffn_norm", "Layer", leaf] => Some((
                            if bert {
                                format!("{l}.output.LayerNorm.{}", norm(leaf))
                            } else {
                                format!("{l}.LayerNorm.{}", norm(leaf))
                            },
                            Change::Same,
                        )),
                        ["ffn", "Gelu", "up", leaf] => {
                            linear(format!("{l}.intermediate.dense"), leaf)
                        }
                        ["ffn", "Gelu", "down", leaf] => linear(format!("{l}.output.dense"), leaf),
                        _ => None,
                    }
                }
                ["final_norm", "Layer", leaf] => Some((
                    format!("{p}encoder.emb_layer_norm_after.{}", norm(leaf)),
                    Change::Same,
                )),
                ["lm_head", "dense", leaf] => linear(
                    if bert {
                        "cls.predictions.transform.dense".into()
                    } else {
                        "lm_head.dense".into()
                    },
                    leaf,
                ),
                ["lm_head", "layer_norm", leaf] => Some((
                    if bert {
                        format!("cls.predictions.transform.LayerNorm.{}", norm(leaf))
                    } else {
                        format!("lm_head.layer_norm.{}", norm(leaf))
                    },
                    Change::Same,
                )),
                ["lm_head", "decoder", "weight"] => Some((
                    if bert {
                        "cls.predictions.decoder.weight".into()
                    } else {
                        "lm_head.decoder.weight".into()
                    },
                    Change::Transpose,
                )),
                ["lm_head", "bias"] => Some((
                    if bert {
                        "cls.predictions.bias".into()
                    } else {
                        "lm_head.bias".into()
                    },
                    Change::Same,
                )),
                _ => None,
            }
        }
        HfFamily::Llama => {
            let p = prefix;
            match parts.as_slice() {
                ["embed", "weight"] => Some((format!("{p}embed_tokens.weight"), Change::Same)),
                ["blocks", i, rest @ ..] => {
                    let l = format!("{p}layers.{i}");
                    let proj = |n: &str| format!("{l}.self_attn.{n}_proj");
                    match rest {
                        ["query", leaf] => linear(proj("q"), leaf),
                        ["key", leaf] => linear(proj("k"), leaf),
                        ["value", leaf] => linear(proj("v"), leaf),
                        ["output", leaf] => linear(proj("o"), leaf),
                        ["attn_norm", "Rms", "gamma"] => {
                            Some((format!("{l}.input_layernorm.weight"), Change::Same))
                        }
                        ["ffn_norm", "Rms", "gamma"] => {
                            Some((format!("{l}.post_attention_layernorm.weight"), Change::Same))
                        }
                        ["ffn", "SwiGlu", m @ ("gate" | "up" | "down"), leaf] => {
                            linear(format!("{l}.mlp.{m}_proj"), leaf)
                        }
                        _ => None,
                    }
                }
                ["final_norm", "Rms", "gamma"] => Some((format!("{p}norm.weight"), Change::Same)),
                ["lm_head", "decoder", "weight"] => {
                    Some(("lm_head.weight".into(), Change::Transpose))
                }
                _ => None,
            }
        }
    }
}

fn transpose(t: &HostTensor) -> HostTensor {
    let [rows, cols] = [t.shape[0], t.shape[1]];
    let mut values = vec![0.0; t.values.len()];
    for r in 0..rows {
        for c in 0..cols {
            values[c * rows + r] = t.values[r * cols + c];
        }
    }
    HostTensor {
        shape: vec![cols, rows],
        values,
    }
}

/// The tensors `transformers` keeps for its own bookkeeping, or that dnalm does not use: skipped
/// on import without complaint.
fn ignorable(name: &str) -> bool {
    name.ends_with("position_ids")
        || name.ends_with("inv_freq")
        || name.contains("pooler.")
        || name.contains("contact_head.")
        || name.starts_with("cls.seq_relationship")
        || name == "cls.predictions.decoder.bias"
}

/// What import left as freshly initialised, for the user to know.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    /// dnalm parameters of the LM head that the checkpoint has no tensor for (a bare
    /// `BertModel` or `EsmModel`); they keep a fresh initialisation. (dnalm's own pretraining
    /// heads are always fresh in a foreign checkpoint and are not listed.)
    pub fresh: Vec<String>,
    /// Checkpoint tensors dnalm does not use (pooler, contact head, position-id buffers...).
    pub skipped: Vec<String>,
}

/// The checkpoint's tensors (by `transformers` name) under dnalm's names, for a model whose
/// parameters have `shapes` (by dnalm name; [`crate::io::parameter_shapes`]). `path` names the
/// weight file in errors. Parameters the result lacks (dnalm's own heads, the LM head of a bare
/// base model, listed in the report) are for the caller to initialise.
///
/// The base-model prefix (`bert.`, `esm.`, `model.`) is optional, so `BertModel`/`EsmModel`
/// checkpoints load too. Any other missing tensor, a shape mismatch or a tensor dnalm has no
/// place for is an error that names it.
pub fn import_weights(
    family: HfFamily,
    config: &ModelConfig,
    hf: &BTreeMap<String, HostTensor>,
    shapes: &BTreeMap<String, Vec<usize>>,
    path: &Path,
) -> Result<(BTreeMap<String, HostTensor>, ImportReport), ModelError> {
    let prefix = if hf.keys().any(|k| k.starts_with(family.prefix())) {
        family.prefix()
    } else {
        ""
    };
    let mut out = BTreeMap::new();
    let mut used = BTreeSet::new();
    let mut report = ImportReport::default();
    let mut problems = Vec::new();
    for (name, shape) in shapes {
        let Some((hf_key, change)) = hf_name(family, config, name, prefix) else {
            continue; // dnalm's own heads: no transformers counterpart.
        };
        // Old BERT checkpoints (DNABERT, 2020) name LayerNorm parameters gamma/beta.
        let legacy = hf_key
            .strip_suffix(".weight")
            .map(|s| format!("{s}.gamma"))
            .or_else(|| hf_key.strip_suffix(".bias").map(|s| format!("{s}.beta")))
            .filter(|_| hf_key.contains("LayerNorm"));
        let found = hf
            .get(&hf_key)
            .map(|t| (hf_key.clone(), t))
            .or_else(|| legacy.and_then(|k| hf.get(&k).map(|t| (k, t))));
        let Some((key, tensor)) = found else {
            if name.starts_with("lm_head.") {
                report.fresh.push(name.clone());
            } else {
                problems.push(format!("missing tensor {hf_key} (for {name})"));
            }
            continue;
        };
        used.insert(key.clone());
        // The shape dnalm expects, in the checkpoint's layout.
        let expected = match change {
            Change::Same => shape.clone(),
            Change::Transpose => shape.iter().rev().copied().collect(),
            Change::PositionRows { offset } => vec![shape[0] + offset, shape[1]],
        };
        if tensor.shape != expected {
            problems.push(format!(
                "tensor {key} has shape {:?}, the config implies {expected:?}",
                tensor.shape
            ));
            continue;
        }
        let mut value = match change {
            Change::Same => tensor.clone(),
            Change::Transpose => transpose(tensor),
            Change::PositionRows { offset } => HostTensor {
                shape: shape.clone(),
                values: tensor.values[offset * shape[1]..].to_vec(),
            },
        };
        if family == HfFamily::Bert && name == "positions.weight" {
            // BERT adds token-type embedding 0 to every token: fold it into the positions.
            let type_key = format!("{prefix}embeddings.token_type_embeddings.weight");
            if let Some(types) = hf.get(&type_key) {
                let width = shape[1];
                if types.shape.len() != 2 || types.shape[1] != width {
                    problems.push(format!("tensor {type_key} has shape {:?}", types.shape));
                } else {
                    for row in value.values.chunks_mut(width) {
                        for (v, t) in row.iter_mut().zip(&types.values[..width]) {
                            *v += t;
                        }
                    }
                    used.insert(type_key);
                }
            }
        }
        out.insert(name.clone(), value);
    }
    for key in hf.keys().filter(|k| !used.contains(*k)) {
        if ignorable(key) {
            report.skipped.push(key.clone());
        } else {
            problems.push(format!("unexpected tensor {key}"));
        }
    }
    if problems.is_empty() {
        Ok((out, report))
    } else {
        Err(ModelError::Weights {
            path: path.to_path_buf(),
            message: crate::io::summarise(&problems),
        })
    }
}

/// dnalm's tensors under `transformers` names (for `model.safetensors`) and the rest (dnalm's
/// own pretraining heads, kept in a side file), or why the config cannot be exported.
#[allow(clippy::type_complexity)]
pub fn export_weights(
    config: &ModelConfig,
    tensors: &BTreeMap<String, HostTensor>,
) -> Result<(BTreeMap<String, HostTensor>, BTreeMap<String, HostTensor>), String> {
    let family = HfFamily::of(config)?;
    let prefix = family.prefix();
    let mut hf = BTreeMap::new();
    let mut extra = BTreeMap::new();
    for (name, tensor) in tensors {
        let Some((key, change)) = hf_name(family, config, name, prefix) else {
            extra.insert(name.clone(), tensor.clone());
            continue;
        };
        let value = match change {
            Change::Same => tensor.clone(),
            Change::Transpose => transpose(tensor),
            Change::PositionRows { offset } => {
                let width = tensor.shape[1];
                let mut values = vec![0.0; offset * width];
                values.extend_from_slice(&tensor.values);
                HostTensor {
                    shape: vec![tensor.shape[0] + offset, width],
                    values,
                }
            }
        };
        hf.insert(key, value);
    }
    let d = config.d_model;
    match family {
        HfFamily::Bert => {
            // Token types are folded into the positions (see the module docs).
            hf.insert(
                format!("{prefix}embeddings.token_type_embeddings.weight"),
                HostTensor {
                    shape: vec![2, d],
                    values: vec![0.0; 2 * d],
                },
            );
        }
        HfFamily::Esm => {
            // EsmModel always builds a contact head (unused by the LM); zeros keep
            // transformers from warning that it was left uninitialised.
            let n = config.n_layers * config.n_heads;
            hf.insert(
                format!("{prefix}contact_head.regression.weight"),
                HostTensor {
                    shape: vec![1, n],
                    values: vec![0.0; n],
                },
            );
            hf.insert(
                format!("{prefix}contact_head.regression.bias"),
                HostTensor {
                    shape: vec![1],
                    values: vec![0.0],
                },
            );
            if config.position == PositionEncoding::Rotary {
                // transformers 5 keeps ESM's rotary frequencies as a saved buffer.
                let hd = config.head_dim();
                hf.insert(
                    format!("{prefix}rotary_embeddings.inv_freq"),
                    HostTensor {
                        shape: vec![hd / 2],
                        values: (0..hd / 2)
                            .map(|i| {
                                (1.0 / config.rope_theta.powf(2.0 * i as f64 / hd as f64)) as f32
                            })
                            .collect(),
                    },
                );
            }
        }
        HfFamily::Llama => {}
    }
    Ok((hf, extra))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        io::{named_parameters, parameter_shapes},
        DnaLm,
    };

    fn tiny(
        architecture: Architecture,
        position: PositionEncoding,
        post_norm: bool,
    ) -> ModelConfig {
        ModelConfig {
            n_layers: 2,
            d_model: 16,
            n_heads: 2,
            d_ffn: 32,
            max_positions: 40,
            position,
            post_norm,
            pad_token_id: Some(1),
            tie_embeddings: false,
            ..ModelConfig::new(architecture, 30)
        }
    }

    #[test]
    fn export_then_import_is_the_identity_for_every_family() {
        let device = crate::cpu();
        for cfg in [
            tiny(Architecture::Encoder, PositionEncoding::Rotary, false),
            tiny(Architecture::Encoder, PositionEncoding::Learned, false),
            tiny(Architecture::Encoder, PositionEncoding::Learned, true),
            tiny(Architecture::Decoder, PositionEncoding::Rotary, false),
        ] {
            let model = DnaLm::seeded(&cfg, &device, 3).unwrap();
            let ours = named_parameters(&model);
            let (hf, extra) = export_weights(&cfg, &ours).unwrap();
            assert!(extra.contains_key("query_stream"), "{extra:?}");
            let config_json = export_config(&cfg).unwrap();
            let (family, back_cfg) = import_config(&config_json, Path::new("config.json")).unwrap();
            assert_eq!(family, HfFamily::of(&cfg).unwrap());
            assert_eq!(back_cfg.max_positions, cfg.max_positions, "{cfg:?}");
            let shapes = parameter_shapes(&DnaLm::new(&back_cfg, &device).unwrap());
            let (back, report) =
                import_weights(family, &back_cfg, &hf, &shapes, Path::new("w")).unwrap();
            assert!(report.fresh.is_empty(), "{report:?}");
            // Only what export adds for transformers' sake is skipped (token types are used).
            assert!(
                report
                    .skipped
                    .iter()
                    .all(|k| k.contains("contact_head") || k.ends_with("inv_freq")),
                "{report:?}"
            );
            for (name, t) in &ours {
                if extra.contains_key(name) {
                    continue;
                }
                assert_eq!(&back[name], t, "{name} of {cfg:?}");
            }
        }
    }

    #[test]
    fn unsupported_options_are_named() {
        let path = Path::new("m/config.json");
        let base = json!({"model_type": "esm", "vocab_size": 10, "hidden_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
            "max_position_embeddings": 20, "pad_token_id": 1, "position_embedding_type": "rotary"});
        assert!(import_config(&base, path).is_ok());
        let cases = [
            ("model_type", json!("gpt2")),
            ("emb_layer_norm_before", json!(true)),
            ("position_embedding_type", json!("relative_key")),
            ("hidden_act", json!("relu")),
        ];
        for (field, v) in cases {
            let mut bad = base.clone();
            bad[field] = v;
            let err = import_config(&bad, path).unwrap_err().to_string();
            assert!(
                err.contains(field) && err.contains("m/config.json"),
                "{err}"
            );
        }
        let llama = json!({"model_type": "llama", "vocab_size": 10, "hidden_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
            "intermediate_size": 16, "max_position_embeddings": 20});
        let err = import_config(&llama, path).unwrap_err().to_string();
        assert!(err.contains("num_key_value_heads"), "{err}");
        let mut no_pad = base.clone();
        no_pad["position_embedding_type"] = json!("absolute");
        no_pad.as_object_mut().unwrap().remove("pad_token_id");
        let err = import_config(&no_pad, path).unwrap_err().to_string();
        assert!(err.contains("pad_token_id"), "{err}");
    }

    #[test]
    fn alibi_has_no_transformers_class() {
        let cfg = tiny(Architecture::Encoder, PositionEncoding::Alibi, false);
        assert!(export_config(&cfg).unwrap_err().contains("alibi"));
        let cfg = tiny(Architecture::Decoder, PositionEncoding::Learned, false);
        assert!(export_config(&cfg).unwrap_err().contains("Llama"));
    }

    #[test]
    fn mis_shaped_and_unknown_tensors_are_named() {
        let device = crate::cpu();
        let cfg = tiny(Architecture::Encoder, PositionEncoding::Rotary, false);
        let ours = named_parameters(&DnaLm::seeded(&cfg, &device, 1).unwrap());
        let (mut hf, _) = export_weights(&cfg, &ours).unwrap();
        hf.insert(
            "esm.encoder.layer.0.attention.self.query.weight".into(),
            HostTensor {
                shape: vec![16, 8],
                values: vec![0.0; 128],
            },
        );
        hf.insert(
            "esm.encoder.layer.0.adapter.weight".into(),
            HostTensor {
                shape: vec![1],
                values: vec![0.0],
            },
        );
        hf.remove("esm.encoder.layer.1.LayerNorm.weight");
        let shapes = parameter_shapes(&DnaLm::new(&cfg, &device).unwrap());
        let err = import_weights(
            HfFamily::Esm,
            &cfg,
            &hf,
            &shapes,
            Path::new("w.safetensors"),
        )
        .unwrap_err()
        .to_string();
        for part in [
            "w.safetensors",
            "query.weight has shape [16, 8]",
            "unexpected tensor esm.encoder.layer.0.adapter.weight",
            "missing tensor esm.encoder.layer.1.LayerNorm.weight",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
    }

    /// A bare `BertModel` as DNABERT's 2020 checkpoints store it: no `bert.` prefix, LayerNorm
    /// parameters named gamma/beta, no LM head. It imports; the LM head is reported fresh and
    /// the token types are folded into the positions.
    #[test]
    fn bare_bert_model_with_gamma_beta_names_imports() {
        let device = crate::cpu();
        let cfg = ModelConfig {
            tie_embeddings: true,
            ..tiny(Architecture::Encoder, PositionEncoding::Learned, true)
        };
        let ours = named_parameters(&DnaLm::seeded(&cfg, &device, 4).unwrap());
        let (hf, _) = export_weights(&cfg, &ours).unwrap();
        let mut bare = BTreeMap::new();
        for (key, mut t) in hf {
            let Some(key) = key.strip_prefix("bert.") else {
                continue; // the cls.* LM head
            };
            let key = key
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
            if key == "embeddings.token_type_embeddings.weight" {
                t.values.iter_mut().for_each(|v| *v = 0.5);
            }
            bare.insert(key, t);
        }
        let shapes = parameter_shapes(&DnaLm::new(&cfg, &device).unwrap());
        let (back, report) =
            import_weights(HfFamily::Bert, &cfg, &bare, &shapes, Path::new("w")).unwrap();
        assert_eq!(
            report.fresh,
            [
                "lm_head.bias",
                "lm_head.dense.bias",
                "lm_head.dense.weight",
                "lm_head.layer_norm.beta",
                "lm_head.layer_norm.gamma"
            ]
        );
        assert!(report.skipped.is_empty(), "{report:?}");
        assert_eq!(
            back["blocks.1.ffn_norm.Layer.gamma"],
            ours["blocks.1.ffn_norm.Layer.gamma"]
        );
        let folded = &back["positions.weight"].values;
        let original = &ours["positions.weight"].values;
        assert!(folded
            .iter()
            .zip(original)
            .all(|(f, o)| (f - o - 0.5).abs() < 1e-6));
    }
}
