//! `config.json` both ways: a Hugging Face config into a [`ModelConfig`], and back.

use std::path::Path;

use serde_json::{json, Value};

use super::{HfFamily, NoHfLayout};
use crate::{Architecture, FeedForwardKind, ModelConfig, ModelError, PositionEncoding};

fn config_err(path: &Path, field: &'static str, message: String) -> ModelError {
    ModelError::Config {
        field,
        message: format!("{}: {message}", path.display()),
    }
}

/// Reads a Hugging Face `config.json` value into a dnalm config. `path` names the file in errors.
///
/// The family is found by [`HfFamily::detect`]. Refused, with the field named: activations
/// other than GELU (BERT, ESM, DNABERT-2's LM head) or SiLU (Llama), relative position
/// embeddings, ESM's `emb_layer_norm_before` and folding models, Llama's grouped-query
/// attention, attention/MLP biases and RoPE scaling, BERT decoders and cross-attention.
pub fn import_config(value: &Value, path: &Path) -> Result<(HfFamily, ModelConfig), ModelError> {
    let family = HfFamily::detect(value).map_err(|model_type| match model_type {
        None => config_err(
            path,
            "model_type",
            "missing, and the keys are not those of DNABERT-2 (alibi_starting_size) or \
             Nucleotide Transformer v2 (add_bias_fnn)"
                .into(),
        ),
        Some(t) => config_err(
            path,
            "model_type",
            format!(
                "\"{t}\" is not supported (dnalm reads bert, esm, llama, hyenadna, caduceus, \
                 DNABERT-2 and Nucleotide Transformer v2)"
            ),
        ),
    })?;
    let keys = Keys { value, path };
    if family == HfFamily::HyenaDna {
        let cfg = hyena(&keys)?;
        return Ok((family, checked(cfg, path)?));
    }
    if family == HfFamily::Caduceus {
        let cfg = caduceus(&keys)?;
        return Ok((family, checked(cfg, path)?));
    }
    let vocab_size = keys.whole("vocab_size")?;
    let mut cfg = ModelConfig::new(
        match family {
            HfFamily::Llama => Architecture::Decoder,
            _ => Architecture::Encoder,
        },
        vocab_size,
    );
    cfg.d_model = keys.whole("hidden_size")?;
    cfg.n_layers = keys.whole("num_hidden_layers")?;
    cfg.n_heads = keys.whole("num_attention_heads")?;
    cfg.d_ffn = keys.whole("intermediate_size")?;
    cfg.pad_token_id = keys.id("pad_token_id");
    cfg.mask_token_id = keys.id("mask_token_id");
    cfg.bos_token_id = keys.id("bos_token_id");
    cfg.eos_token_id = keys.id("eos_token_id");
    let max_positions = keys.whole("max_position_embeddings")?;
    match family {
        HfFamily::Bert => bert(&keys, &mut cfg, max_positions)?,
        HfFamily::Esm | HfFamily::NtV2 => esm(&keys, family, &mut cfg, max_positions)?,
        HfFamily::DnaBert2 => dnabert2(&keys, &mut cfg, max_positions)?,
        HfFamily::Llama => llama(&keys, &mut cfg, max_positions)?,
        HfFamily::HyenaDna | HfFamily::Caduceus => unreachable!("returned above"),
    }
    Ok((family, checked(cfg, path)?))
}

fn checked(cfg: ModelConfig, path: &Path) -> Result<ModelConfig, ModelError> {
    cfg.validate().map_err(|e| match e {
        ModelError::Config { field, message } => config_err(path, field, message),
        other => other,
    })?;
    Ok(cfg)
}

/// The keys of one `config.json`, read with errors that name the file and the field.
struct Keys<'a> {
    value: &'a Value,
    path: &'a Path,
}

impl Keys<'_> {
    fn err(&self, field: &'static str, message: String) -> ModelError {
        config_err(self.path, field, message)
    }

    /// A required whole number.
    fn whole(&self, field: &'static str) -> Result<usize, ModelError> {
        self.value
            .get(field)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| self.err(field, "missing or not a whole number".into()))
    }

    fn id(&self, field: &str) -> Option<u32> {
        self.value
            .get(field)
            .and_then(Value::as_u64)
            .map(|v| v as u32)
    }

    fn float(&self, field: &str, default: f64) -> f64 {
        self.value
            .get(field)
            .and_then(Value::as_f64)
            .unwrap_or(default)
    }

    fn string(&self, field: &str) -> Option<String> {
        self.value
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// An optional whole number with its default.
    fn whole_or(&self, field: &'static str, default: usize) -> Result<usize, ModelError> {
        match self.value.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(_) => self.whole(field),
        }
    }

    fn flag(&self, field: &str) -> Option<bool> {
        self.value.get(field).and_then(Value::as_bool)
    }

    /// `field` (or `default` when absent) must be one of `allowed`.
    fn require(
        &self,
        field: &'static str,
        got: Option<String>,
        allowed: &[&str],
        default: &str,
    ) -> Result<(), ModelError> {
        let got = got.unwrap_or_else(|| default.to_string());
        if allowed.contains(&got.as_str()) {
            Ok(())
        } else {
            Err(self.err(
                field,
                format!(
                    "\"{got}\" is not supported (dnalm runs {})",
                    allowed.join(", ")
                ),
            ))
        }
    }

    /// `field` must not be `true`.
    fn refuse_true(&self, field: &'static str, why: &str) -> Result<(), ModelError> {
        if self.flag(field) == Some(true) {
            Err(self.err(field, format!("true is not supported ({why})")))
        } else {
            Ok(())
        }
    }
}

/// BERT (DNABERT): post-LN, learned positions.
fn bert(keys: &Keys, cfg: &mut ModelConfig, max_positions: usize) -> Result<(), ModelError> {
    keys.require("hidden_act", keys.string("hidden_act"), &["gelu"], "gelu")?;
    keys.require(
        "position_embedding_type",
        keys.string("position_embedding_type"),
        &["absolute"],
        "absolute",
    )?;
    keys.refuse_true("is_decoder", "dnalm imports BERT as an encoder")?;
    keys.refuse_true("add_cross_attention", "no cross-attention in dnalm")?;
    cfg.post_norm = true;
    cfg.position = PositionEncoding::Learned;
    cfg.max_positions = max_positions;
    cfg.norm_eps = keys.float("layer_norm_eps", 1e-12);
    cfg.tie_embeddings = keys.flag("tie_word_embeddings").unwrap_or(true);
    Ok(())
}

/// ESM-2 and Nucleotide Transformer (v1: ESM; v2: gated SwiGLU): pre-LN, rotary or learned
/// positions counted from the padding id.
fn esm(
    keys: &Keys,
    family: HfFamily,
    cfg: &mut ModelConfig,
    max_positions: usize,
) -> Result<(), ModelError> {
    if family == HfFamily::NtV2 {
        // The v2 code gates its feed-forward network with SiLU whatever `hidden_act`
        // says, and its LM head calls an exact GELU of its own.
        cfg.feed_forward = Some(FeedForwardKind::SwiGlu);
        let bias = keys.flag("add_bias_fnn").unwrap_or(true);
        cfg.ffn_input_bias = Some(bias);
        cfg.ffn_output_bias = Some(bias);
    } else {
        keys.require("hidden_act", keys.string("hidden_act"), &["gelu"], "gelu")?;
    }
    keys.refuse_true(
        "emb_layer_norm_before",
        "a LayerNorm before the first block, as in ESM-1b",
    )?;
    keys.refuse_true("is_folding_model", "ESMFold")?;
    cfg.norm_eps = keys.float("layer_norm_eps", 1e-12);
    cfg.tie_embeddings = keys.flag("tie_word_embeddings").unwrap_or(true);
    cfg.token_dropout = keys.flag("token_dropout").unwrap_or(false);
    match keys
        .string("position_embedding_type")
        .as_deref()
        .unwrap_or("absolute")
    {
        "rotary" => {
            cfg.position = PositionEncoding::Rotary;
            cfg.max_positions = max_positions;
        }
        "absolute" => {
            let pad = cfg.pad_token_id.ok_or_else(|| {
                keys.err(
                    "pad_token_id",
                    "ESM's learned positions count from pad_token_id + 1; it is missing".into(),
                )
            })? as usize;
            cfg.position = PositionEncoding::Learned;
            cfg.max_positions = max_positions
                .checked_sub(pad + 1)
                .filter(|&m| m > 0)
                .ok_or_else(|| {
                    keys.err(
                        "max_position_embeddings",
                        format!("{max_positions} leaves no position after pad_token_id = {pad}"),
                    )
                })?;
        }
        other => {
            return Err(keys.err(
                "position_embedding_type",
                format!("\"{other}\" is not supported (dnalm runs absolute, rotary)"),
            ))
        }
    }
    Ok(())
}

/// DNABERT-2 (MosaicBERT): post-LN, ALiBi, GEGLU, one token-type row, unpadded attention.
fn dnabert2(keys: &Keys, cfg: &mut ModelConfig, max_positions: usize) -> Result<(), ModelError> {
    // The LM head's transform applies `hidden_act`; the GEGLU gate is an exact GELU
    // in the code whatever the config says.
    keys.require("hidden_act", keys.string("hidden_act"), &["gelu"], "gelu")?;
    keys.refuse_true("is_decoder", "dnalm imports DNABERT-2 as an encoder")?;
    keys.refuse_true("add_cross_attention", "no cross-attention in dnalm")?;
    if keys.value.get("type_vocab_size").and_then(Value::as_u64) == Some(0) {
        return Err(keys.err(
            "type_vocab_size",
            "0 leaves no token-type row 0, which every token adds".into(),
        ));
    }
    cfg.post_norm = true;
    // No position table: ALiBi. The code builds its bias for `alibi_starting_size`
    // positions and rebuilds it for any longer input, so dnalm accepts any length and
    // takes `max_position_embeddings` as the trained length.
    cfg.position = PositionEncoding::Alibi;
    cfg.max_positions = max_positions;
    cfg.feed_forward = Some(FeedForwardKind::GeGlu);
    cfg.ffn_input_bias = Some(false);
    cfg.ffn_output_bias = Some(true);
    cfg.token_type_embedding = true;
    cfg.zero_padding = true;
    cfg.norm_eps = keys.float("layer_norm_eps", 1e-12);
    cfg.tie_embeddings = true;
    Ok(())
}

/// `vocab` rounded up to `pad_vocab_size_multiple` (default 8), as the HyenaDNA and Caduceus
/// hub code size their embedding and LM head.
fn padded_vocab(keys: &Keys, vocab: usize) -> Result<usize, ModelError> {
    let multiple = keys.whole_or("pad_vocab_size_multiple", 8)?.max(1);
    Ok(vocab.div_ceil(multiple) * multiple)
}

/// The `pad_vocab_size_multiple` an export writes: the hub code pads the tables to this
/// multiple, and dnalm's already have their rows (8 when that holds, else 1).
fn pad_multiple_of(config: &ModelConfig) -> Value {
    json!(if config.vocab_size.is_multiple_of(8) {
        8
    } else {
        1
    })
}

/// HyenaDNA (`HyenaConfig` of the hub port; its defaults where a key is absent). The
/// embedding and LM head have `vocab_size` rounded up to `pad_vocab_size_multiple` rows, which
/// is dnalm's `vocab_size`.
fn hyena(keys: &Keys) -> Result<ModelConfig, ModelError> {
    let vocab = padded_vocab(keys, keys.whole_or("vocab_size", 12)?)?;
    let mut cfg = ModelConfig::new(Architecture::Hyena, vocab);
    cfg.d_model = keys.whole_or("d_model", 256)?;
    cfg.n_layers = keys.whole_or("n_layer", 12)?;
    cfg.d_ffn = keys.whole_or("d_inner", 4 * cfg.d_model)?;
    cfg.n_heads = 1;
    cfg.max_positions = keys.whole_or("max_seq_len", 1024)?;
    let order = keys.whole_or("hyena_order", 2)?;
    if order != 2 {
        return Err(keys.err(
            "hyena_order",
            format!("{order} is not supported (dnalm runs order 2, as HyenaDNA's checkpoints)"),
        ));
    }
    if keys.flag("train_freq") == Some(false) {
        return Err(keys.err(
            "train_freq",
            "false is not supported (dnalm trains the sine frequencies, as HyenaDNA's \
             checkpoints do)"
                .into(),
        ));
    }
    // norm1 and norm2 use PyTorch's default epsilon; only ln_f reads the config's.
    let eps = keys.float("layer_norm_epsilon", 1e-5);
    if (eps - 1e-5).abs() > 1e-12 {
        return Err(keys.err(
            "layer_norm_epsilon",
            format!(
                "{eps}: the blocks' norms use 1e-5 whatever it says, and dnalm has one epsilon"
            ),
        ));
    }
    cfg.norm_eps = 1e-5;
    cfg.hyena = Some(crate::HyenaOptions {
        filter_order: keys.whole_or("filter_order", 64)?,
        emb_dim: keys.whole_or("emb_dim", 3)?,
        inner_layers: keys.whole_or("num_inner_mlps", 2)?,
        activation_freq: keys.float("activation_freq", 1.0),
        short_filter: keys.whole_or("short_filter_order", 3)?,
    });
    cfg.tie_embeddings = keys.flag("tie_word_embeddings").unwrap_or(true);
    cfg.pad_token_id = keys.id("pad_token_id");
    cfg.bos_token_id = keys.id("bos_token_id");
    cfg.eos_token_id = keys.id("eos_token_id");
    Ok(cfg)
}

/// HyenaDNA's `config.json` keys for a dnalm Hyena config.
fn hyena_export(config: &ModelConfig) -> serde_json::Map<String, Value> {
    let h = config.hyena_options();
    let mut obj = serde_json::Map::new();
    for (k, v) in [
        ("model_type", json!("hyenadna")),
        ("architectures", json!([HfFamily::HyenaDna.class()])),
        (
            "auto_map",
            hub_auto_map(HfFamily::HyenaDna, super::HYENADNA_HUB_CODE),
        ),
        ("vocab_size", json!(config.vocab_size)),
        ("pad_vocab_size_multiple", pad_multiple_of(config)),
        ("d_model", json!(config.d_model)),
        ("n_layer", json!(config.n_layers)),
        ("d_inner", json!(config.d_ffn)),
        ("max_seq_len", json!(config.max_positions)),
        ("hyena_order", json!(2)),
        ("filter_order", json!(h.filter_order)),
        ("emb_dim", json!(h.emb_dim)),
        ("num_inner_mlps", json!(h.inner_layers)),
        ("activation_freq", json!(h.activation_freq)),
        ("short_filter_order", json!(h.short_filter)),
        ("train_freq", json!(true)),
        ("use_bias", json!(true)),
        ("layer_norm_epsilon", json!(config.norm_eps)),
        ("embed_dropout", json!(config.dropout)),
        ("hyena_dropout", json!(0.0)),
        ("hyena_filter_dropout", json!(0.0)),
        ("initializer_range", json!(0.02)),
        ("tie_word_embeddings", json!(config.tie_embeddings)),
        ("torch_dtype", json!("float32")),
    ] {
        obj.insert(k.to_string(), v);
    }
    for (key, id) in [
        ("pad_token_id", config.pad_token_id),
        ("bos_token_id", config.bos_token_id),
        ("eos_token_id", config.eos_token_id),
    ] {
        if let Some(id) = id {
            obj.insert(key.to_string(), json!(id));
        }
    }
    obj
}

/// Longest input dnalm accepts for an imported Caduceus (the scans have no length limit; this
/// is the released models' training length and their tokenizers' `model_max_length`).
const CADUCEUS_MAX_POSITIONS: usize = 131_072;

/// Caduceus (`CaduceusConfig` of the hub code; Mamba's defaults where an `ssm_cfg` key is
/// absent). The vocabulary is rounded up to `pad_vocab_size_multiple` and the complement map
/// extended by identity over the added rows, as the reference constructor does.
fn caduceus(keys: &Keys) -> Result<ModelConfig, ModelError> {
    let vocab = padded_vocab(keys, keys.whole("vocab_size")?)?;
    let mut cfg = ModelConfig::new(Architecture::Caduceus, vocab);
    cfg.d_model = keys.whole("d_model")?;
    cfg.n_layers = keys.whole("n_layer")?;
    cfg.n_heads = 1;
    cfg.max_positions = CADUCEUS_MAX_POSITIONS;
    cfg.norm_eps = keys.float("norm_epsilon", 1e-5);
    if keys.flag("rms_norm") == Some(false) {
        return Err(keys.err(
            "rms_norm",
            "false (LayerNorm) is not supported: dnalm's Caduceus blocks use RMSNorm, as every \
             released checkpoint"
                .into(),
        ));
    }
    keys.require(
        "bidirectional_strategy",
        keys.string("bidirectional_strategy"),
        &["add"],
        "add",
    )?;
    let bidirectional = keys.flag("bidirectional").unwrap_or(true);
    if bidirectional && keys.flag("bidirectional_weight_tie") == Some(false) {
        return Err(keys.err(
            "bidirectional_weight_tie",
            "false is not supported: dnalm's reverse scan shares the forward scan's input and \
             output projections, as every released checkpoint"
                .into(),
        ));
    }
    let ssm = Keys {
        value: keys.value.get("ssm_cfg").unwrap_or(&Value::Null),
        path: keys.path,
    };
    if ssm.flag("bias") == Some(true) {
        return Err(keys.err(
            "ssm_cfg",
            "bias = true is not supported (Mamba's in/out projections have no bias in dnalm)"
                .into(),
        ));
    }
    if ssm.flag("conv_bias") == Some(false) {
        return Err(keys.err(
            "ssm_cfg",
            "conv_bias = false is not supported (dnalm's convolution has a bias)".into(),
        ));
    }
    let dt_rank = match ssm.value.get("dt_rank") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "auto" => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            keys.err(
                "ssm_cfg",
                format!("dt_rank = {v} is neither \"auto\" nor a whole number"),
            )
        })? as usize),
    };
    let rc_equivariant = keys.flag("rcps").unwrap_or(false);
    let complement_map = if rc_equivariant {
        let map = keys
            .value
            .get("complement_map")
            .and_then(Value::as_object)
            .ok_or_else(|| keys.err("complement_map", "rcps needs a complement_map".into()))?;
        let mut ids: Vec<u32> = (0..vocab as u32).collect();
        for (from, to) in map {
            let (Ok(from), Some(to)) = (from.parse::<usize>(), to.as_u64()) else {
                return Err(keys.err(
                    "complement_map",
                    format!("entry {from:?}: {to} is not a token id pair"),
                ));
            };
            if from >= vocab || to as usize >= vocab {
                return Err(keys.err(
                    "complement_map",
                    format!("entry {from} -> {to} is outside the vocabulary of {vocab}"),
                ));
            }
            ids[from] = to as u32;
        }
        ids
    } else {
        Vec::new()
    };
    cfg.caduceus = Some(crate::CaduceusOptions {
        d_state: ssm.whole_or("d_state", 16)?,
        d_conv: ssm.whole_or("d_conv", 4)?,
        expand: ssm.whole_or("expand", 2)?,
        dt_rank,
        bidirectional,
        rc_equivariant,
        // The reference's fused add-and-norm swaps the halves; the un-fused path does not.
        swap_halves: rc_equivariant && keys.flag("fused_add_norm").unwrap_or(false),
        complement_map,
    });
    cfg.tie_embeddings = true;
    Ok(cfg)
}

/// Caduceus' `config.json` keys for a dnalm Caduceus config.
fn caduceus_export(config: &ModelConfig) -> serde_json::Map<String, Value> {
    let c = config.caduceus_options();
    // The hub code reads the map's values in file order (`OrderedDict(map).values()`), and
    // serde_json writes object keys sorted as strings ("10" before "2"): the keys are
    // zero-padded to one width, so that sorted order is numeric order.
    let width = c.complement_map.len().saturating_sub(1).to_string().len();
    let complement: serde_json::Map<String, Value> = c
        .complement_map
        .iter()
        .enumerate()
        .map(|(from, &to)| (format!("{from:0width$}"), json!(to)))
        .collect();
    let mut obj = serde_json::Map::new();
    for (k, v) in [
        ("model_type", json!("caduceus")),
        ("architectures", json!([HfFamily::Caduceus.class()])),
        (
            "auto_map",
            hub_auto_map(HfFamily::Caduceus, super::CADUCEUS_HUB_CODE),
        ),
        ("vocab_size", json!(config.vocab_size)),
        ("pad_vocab_size_multiple", pad_multiple_of(config)),
        ("d_model", json!(config.d_model)),
        ("n_layer", json!(config.n_layers)),
        (
            "ssm_cfg",
            json!({
                "d_state": c.d_state,
                "d_conv": c.d_conv,
                "expand": c.expand,
                "dt_rank": c.dt_rank.map_or(json!("auto"), |r| json!(r)),
                "dt_min": 0.001,
                "dt_max": 0.1,
                "dt_init": "random",
                "dt_scale": 1.0,
                "dt_init_floor": 1e-4,
                "conv_bias": true,
                "bias": false,
                "use_fast_path": true,
            }),
        ),
        ("rms_norm", json!(true)),
        ("norm_epsilon", json!(config.norm_eps)),
        ("residual_in_fp32", json!(false)),
        // Only the equivariant layout differs between the two paths (the halves swap).
        ("fused_add_norm", json!(!c.rc_equivariant || c.swap_halves)),
        ("bidirectional", json!(c.bidirectional)),
        ("bidirectional_strategy", json!("add")),
        ("bidirectional_weight_tie", json!(true)),
        ("rcps", json!(c.rc_equivariant)),
        ("complement_map", Value::Object(complement)),
        (
            "initializer_cfg",
            json!({"initializer_range": 0.02, "rescale_prenorm_residual": true, "n_residuals_per_layer": 1}),
        ),
        ("torch_dtype", json!("float32")),
    ] {
        obj.insert(k.to_string(), v);
    }
    obj
}

/// Llama: RMSNorm, rotary, SwiGLU, no biases.
fn llama(keys: &Keys, cfg: &mut ModelConfig, max_positions: usize) -> Result<(), ModelError> {
    keys.require("hidden_act", keys.string("hidden_act"), &["silu"], "silu")?;
    if let Some(kv) = keys
        .value
        .get("num_key_value_heads")
        .and_then(Value::as_u64)
    {
        if kv as usize != cfg.n_heads {
            return Err(keys.err(
                    "num_key_value_heads",
                    format!(
                        "{kv} differs from num_attention_heads = {} (grouped-query attention is not supported)",
                        cfg.n_heads
                    ),
                ));
        }
    }
    keys.refuse_true("attention_bias", "dnalm's decoder has no biases")?;
    keys.refuse_true("mlp_bias", "dnalm's decoder has no biases")?;
    let scaling = keys
        .value
        .get("rope_scaling")
        .filter(|v| !v.is_null())
        .or_else(|| {
            keys.value
                .get("rope_parameters")
                .and_then(|p| p.get("rope_type"))
                .filter(|t| t.as_str() != Some("default"))
        });
    if let Some(s) = scaling {
        return Err(keys.err(
            "rope_scaling",
            format!("{s} is not supported (plain RoPE only)"),
        ));
    }
    if let Some(hd) = keys.value.get("head_dim").and_then(Value::as_u64) {
        if cfg.n_heads > 0 && hd as usize * cfg.n_heads != cfg.d_model {
            return Err(keys.err(
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
    cfg.norm_eps = keys.float("rms_norm_eps", 1e-6);
    cfg.rope_theta = keys
        .value
        .get("rope_theta")
        .and_then(Value::as_f64)
        .or_else(|| {
            keys.value
                .get("rope_parameters")
                .and_then(|p| p.get("rope_theta"))
                .and_then(Value::as_f64)
        })
        .unwrap_or(10_000.0);
    cfg.tie_embeddings = keys.flag("tie_word_embeddings").unwrap_or(false);
    Ok(())
}

/// The `config.json` that `transformers` (or, for DNABERT-2 and NT-v2, the family's hub code)
/// loads a dnalm model of `config` from, with the full dnalm config under `"dnalm"`; or why
/// the config has no Hugging Face equivalent.
pub fn export_config(config: &ModelConfig) -> Result<Value, NoHfLayout> {
    let family = HfFamily::of(config)?;
    if family == HfFamily::HyenaDna {
        return with_dnalm_section(hyena_export(config), config);
    }
    if family == HfFamily::Caduceus {
        return with_dnalm_section(caduceus_export(config), config);
    }
    let mut obj = serde_json::Map::new();
    let mut set = |k: &str, v: Value| {
        obj.insert(k.to_string(), v);
    };
    if let Some(model_type) = family.model_type() {
        set("model_type", json!(model_type));
    }
    if let Some(repo) = family.hub_code() {
        set("auto_map", hub_auto_map(family, repo));
    }
    set("architectures", json!([family.class()]));
    set("vocab_size", json!(config.vocab_size));
    set("hidden_size", json!(config.d_model));
    set("num_hidden_layers", json!(config.n_layers));
    set("num_attention_heads", json!(config.n_heads));
    set("intermediate_size", json!(config.d_ffn));
    set("tie_word_embeddings", json!(config.tie_embeddings));
    set("torch_dtype", json!("float32"));
    set("initializer_range", json!(0.02));
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
        HfFamily::Bert | HfFamily::DnaBert2 => {
            set("hidden_act", json!("gelu"));
            set("max_position_embeddings", json!(config.max_positions));
            set("position_embedding_type", json!("absolute"));
            set("type_vocab_size", json!(2));
            set("layer_norm_eps", json!(config.norm_eps));
            set("hidden_dropout_prob", json!(config.dropout));
            set("attention_probs_dropout_prob", json!(0.0));
            if family == HfFamily::DnaBert2 {
                set("alibi_starting_size", json!(config.max_positions));
                set("classifier_dropout", Value::Null);
            }
        }
        HfFamily::Esm | HfFamily::NtV2 => {
            // NT-v2's code gates its feed-forward network with SiLU whatever `hidden_act` says.
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
            if family == HfFamily::NtV2 {
                set("add_bias_fnn", json!(config.ffn_biases().1));
                set("esmfold_config", Value::Null);
                set("vocab_list", Value::Null);
                set("use_cache", json!(false));
            } else {
                set("hidden_act", json!("gelu"));
            }
        }
        HfFamily::HyenaDna | HfFamily::Caduceus => unreachable!("returned above"),
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
    with_dnalm_section(obj, config)
}

/// `obj` with the full dnalm config under `"dnalm"` (what dnalm reads back), as a JSON value.
fn with_dnalm_section(
    mut obj: serde_json::Map<String, Value>,
    config: &ModelConfig,
) -> Result<Value, NoHfLayout> {
    let section = serde_json::to_value(config).map_err(|e| NoHfLayout {
        field: "dnalm",
        reason: e.to_string(),
    })?;
    obj.insert("dnalm".into(), section);
    Ok(Value::Object(obj))
}

/// The `auto_map` of a hub family: its classes in hub repository `repo` (`transformers`
/// fetches `repo--module.Class` with `trust_remote_code=True`, as for the original checkpoint).
fn hub_auto_map(family: HfFamily, repo: &str) -> Value {
    let classes: &[(&str, &str)] = match family {
        HfFamily::DnaBert2 => &[
            ("AutoConfig", "configuration_bert.BertConfig"),
            ("AutoModel", "bert_layers.BertModel"),
            ("AutoModelForMaskedLM", "bert_layers.BertForMaskedLM"),
            (
                "AutoModelForSequenceClassification",
                "bert_layers.BertForSequenceClassification",
            ),
        ],
        HfFamily::NtV2 => &[
            ("AutoConfig", "esm_config.EsmConfig"),
            ("AutoModelForMaskedLM", "modeling_esm.EsmForMaskedLM"),
            (
                "AutoModelForTokenClassification",
                "modeling_esm.EsmForTokenClassification",
            ),
            (
                "AutoModelForSequenceClassification",
                "modeling_esm.EsmForSequenceClassification",
            ),
        ],
        HfFamily::HyenaDna => &[
            ("AutoConfig", "configuration_hyena.HyenaConfig"),
            ("AutoModel", "modeling_hyena.HyenaDNAModel"),
            ("AutoModelForCausalLM", "modeling_hyena.HyenaDNAForCausalLM"),
            (
                "AutoModelForSequenceClassification",
                "modeling_hyena.HyenaDNAForSequenceClassification",
            ),
        ],
        HfFamily::Caduceus => &[
            ("AutoConfig", "configuration_caduceus.CaduceusConfig"),
            ("AutoModel", "modeling_caduceus.Caduceus"),
            (
                "AutoModelForMaskedLM",
                "modeling_caduceus.CaduceusForMaskedLM",
            ),
            (
                "AutoModelForSequenceClassification",
                "modeling_caduceus.CaduceusForSequenceClassification",
            ),
        ],
        HfFamily::Bert | HfFamily::Esm | HfFamily::Llama => &[],
    };
    Value::Object(
        classes
            .iter()
            .map(|(auto, class)| (auto.to_string(), json!(format!("{repo}--{class}"))))
            .collect(),
    )
}

/// Rows ESM keeps before the first learned position: positions count from `pad_token_id + 1`.
pub(super) fn esm_position_offset(config: &ModelConfig) -> usize {
    config.pad_token_id.unwrap_or(0) as usize + 1
}
