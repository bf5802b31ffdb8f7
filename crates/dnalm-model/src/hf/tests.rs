//! Export and import against each other, and the refusals.

use std::{collections::BTreeMap, path::Path};

use serde_json::json;

use super::*;
use crate::{
    tensors::{named_parameters, parameter_shapes, HostTensor},
    DnaLm,
};

fn tiny(architecture: Architecture, position: PositionEncoding, post_norm: bool) -> ModelConfig {
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
    assert!(export_config(&cfg)
        .unwrap_err()
        .to_string()
        .contains("Alibi"));
    let cfg = tiny(Architecture::Decoder, PositionEncoding::Learned, false);
    assert!(export_config(&cfg)
        .unwrap_err()
        .to_string()
        .contains("Llama"));
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

/// DNABERT-2's layout (MosaicBERT): what `import_config` makes of its hub config.
pub(crate) fn dnabert2_like() -> ModelConfig {
    ModelConfig {
        n_layers: 2,
        d_model: 18,
        n_heads: 3,
        d_ffn: 32,
        max_positions: 40,
        position: PositionEncoding::Alibi,
        post_norm: true,
        feed_forward: Some(FeedForwardKind::GeGlu),
        ffn_input_bias: Some(false),
        ffn_output_bias: Some(true),
        token_type_embedding: true,
        zero_padding: true,
        tie_embeddings: true,
        norm_eps: 1e-12,
        ..ModelConfig::new(Architecture::Encoder, 30)
    }
}

/// Nucleotide Transformer v2's layout: rotary ESM with a bias-free SwiGLU.
pub(crate) fn nt_v2_like(bias: bool) -> ModelConfig {
    ModelConfig {
        feed_forward: Some(FeedForwardKind::SwiGlu),
        ffn_input_bias: Some(bias),
        ffn_output_bias: Some(bias),
        ..tiny(Architecture::Encoder, PositionEncoding::Rotary, false)
    }
}

#[test]
fn hub_families_export_then_import_to_the_same_tensors() {
    let device = crate::cpu();
    for (cfg, family) in [
        (dnabert2_like(), HfFamily::DnaBert2),
        (nt_v2_like(false), HfFamily::NtV2),
        (nt_v2_like(true), HfFamily::NtV2),
    ] {
        assert_eq!(HfFamily::of(&cfg), Ok(family));
        let ours = named_parameters(&DnaLm::seeded(&cfg, &device, 7).unwrap());
        let (hf, extra) = export_weights(&cfg, &ours).unwrap();
        let config_json = export_config(&cfg).unwrap();
        assert!(config_json.get("model_type").is_none(), "{config_json}");
        let (detected, back_cfg) = import_config(&config_json, Path::new("config.json")).unwrap();
        assert_eq!(detected, family);
        // The exported keys alone (without the dnalm section) import to the same shape.
        let mut hub_only = config_json.clone();
        hub_only.as_object_mut().unwrap().remove("dnalm");
        let (_, hub_cfg) = import_config(&hub_only, Path::new("config.json")).unwrap();
        assert_eq!(hub_cfg.feed_forward(), cfg.feed_forward());
        assert_eq!(hub_cfg.ffn_biases(), cfg.ffn_biases());
        assert_eq!(hub_cfg.position, cfg.position);
        assert_eq!(
            parameter_shapes(&DnaLm::new(&hub_cfg, &device).unwrap()),
            parameter_shapes(&DnaLm::new(&cfg, &device).unwrap()),
        );
        let shapes = parameter_shapes(&DnaLm::new(&back_cfg, &device).unwrap());
        let (back, report) =
            import_weights(family, &back_cfg, &hf, &shapes, Path::new("w")).unwrap();
        assert!(report.fresh.is_empty(), "{report:?}");
        for (name, t) in &ours {
            if !extra.contains_key(name) {
                assert_eq!(&back[name], t, "{name} of {family:?}");
            }
        }
    }
}

#[test]
fn packed_tensors_are_split_in_the_reference_order() {
    let device = crate::cpu();
    let cfg = dnabert2_like();
    let ours = named_parameters(&DnaLm::seeded(&cfg, &device, 2).unwrap());
    let (hf, _) = export_weights(&cfg, &ours).unwrap();
    // Wqkv is [q; k; v] rows of [out, in]: row d of the packed weight is key's output 0.
    let wqkv = &hf["bert.encoder.layer.0.attention.self.Wqkv.weight"];
    assert_eq!(wqkv.shape, [54, 18]);
    let key = &ours["blocks.0.key.weight"]; // burn [in, out]
    for i in 0..18 {
        assert_eq!(wqkv.values[18 * 18 + i], key.values[i * 18]);
    }
    // gated_layers is [gate; up]: the GELU half first.
    let gated = &hf["bert.encoder.layer.1.mlp.gated_layers.weight"];
    assert_eq!(gated.shape, [64, 18]);
    let up = &ours["blocks.1.ffn.GeGlu.up.weight"]; // [18, 32]
    assert_eq!(gated.values[32 * 18], up.values[0]);
    assert!(!hf.contains_key("bert.encoder.layer.0.mlp.gated_layers.bias"));
    assert_eq!(
        hf["bert.embeddings.token_type_embeddings.weight"].shape,
        [2, 18]
    );
    assert!(!hf.contains_key("cls.predictions.decoder.weight"), "tied");
}

#[test]
fn hub_families_are_recognised_without_model_type() {
    let dnabert2 = json!({"alibi_starting_size": 512, "vocab_size": 10});
    assert_eq!(HfFamily::detect(&dnabert2), Ok(HfFamily::DnaBert2));
    let by_auto_map =
        json!({"auto_map": {"AutoModel": "bert_layers.BertModel"}, "model_type": "bert"});
    assert_eq!(HfFamily::detect(&by_auto_map), Ok(HfFamily::DnaBert2));
    let nt = json!({"add_bias_fnn": false});
    assert_eq!(HfFamily::detect(&nt), Ok(HfFamily::NtV2));
    assert_eq!(
        HfFamily::detect(&json!({"model_type": "esm"})),
        Ok(HfFamily::Esm)
    );
    assert_eq!(HfFamily::detect(&json!({})), Err(None));
    let path = Path::new("m/config.json");
    let err = import_config(&json!({"vocab_size": 4}), path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model_type") && err.contains("alibi_starting_size"),
        "{err}"
    );
}

#[test]
fn dnabert2_options_dnalm_does_not_run_are_named() {
    let path = Path::new("d/config.json");
    let base = json!({"alibi_starting_size": 512, "vocab_size": 10, "hidden_size": 6,
        "num_hidden_layers": 1, "num_attention_heads": 3, "intermediate_size": 8,
        "max_position_embeddings": 32, "hidden_act": "gelu"});
    let (_, cfg) = import_config(&base, path).unwrap();
    assert!(cfg.extrapolates() && cfg.zero_padding && cfg.token_type_embedding);
    for (field, value) in [
        ("hidden_act", json!("relu")),
        ("is_decoder", json!(true)),
        ("type_vocab_size", json!(0)),
    ] {
        let mut bad = base.clone();
        bad[field] = value;
        let err = import_config(&bad, path).unwrap_err().to_string();
        assert!(
            err.contains(field) && err.contains("d/config.json"),
            "{err}"
        );
    }
    // An untied DNABERT-2 cannot be written back: its code ties the decoder.
    let cfg = ModelConfig {
        tie_embeddings: false,
        ..dnabert2_like()
    };
    assert_eq!(HfFamily::of(&cfg).unwrap_err().field, "tie_embeddings");
}
