//! PEFT's LoRA adapter layout (`adapter_config.json`, `adapter_model.safetensors`), both ways,
//! so that `peft.PeftModel.from_pretrained` loads dnalm's adapters on the exported
//! `transformers` model and dnalm loads PEFT's adapters on a model it reads.
//!
//! PEFT names a factor `base_model.model.<module>.lora_A.weight` (`[r, in]`) and
//! `...lora_B.weight` (`[out, r]`), where `<module>` is the linear layer's path in the family's
//! [`HfFamily::class`](super::HfFamily::class) (e.g. `esm.encoder.layer.0.attention.self.query`);
//! burn's factors are `A` `[in, r]` and `B` `[r, out]`, so both are transposed. The targets are
//! written as full module paths, which PEFT matches exactly.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde_json::{json, Value};

use super::weights::{linear_module, transpose};
use crate::{lora::LoraSpec, tensors::HostTensor, ModelConfig, ModelError};

/// PEFT's adapter settings file.
pub const PEFT_CONFIG: &str = "adapter_config.json";
/// PEFT's adapter weights file.
pub const PEFT_WEIGHTS: &str = "adapter_model.safetensors";
/// The prefix of every factor's name (`PeftModel.base_model.model`).
const PREFIX: &str = "base_model.model.";

/// dnalm's factors (`<weight>.lora.a`, `<weight>.lora.b`) of a model of `config` as PEFT's
/// tensors and `adapter_config.json`, or why the layout has no place for them (no
/// `transformers` layout, or an adapted weight packed with others, as DNABERT-2's `Wqkv`).
pub fn export_peft(
    config: &ModelConfig,
    factors: &BTreeMap<String, HostTensor>,
    lora: &LoraSpec,
    base_model: &Path,
) -> Result<(BTreeMap<String, HostTensor>, Value), String> {
    let mut tensors = BTreeMap::new();
    let mut modules = Vec::new();
    for (name, factor) in factors {
        let (weight, peft) = match (name.strip_suffix(".lora.a"), name.strip_suffix(".lora.b")) {
            (Some(w), _) => (w, "lora_A"),
            (_, Some(w)) => (w, "lora_B"),
            _ => return Err(format!("{name} is not a LoRA factor")),
        };
        let module = linear_module(config, weight)?;
        tensors.insert(format!("{PREFIX}{module}.{peft}.weight"), transpose(factor));
        if !modules.contains(&module) {
            modules.push(module);
        }
    }
    let config = json!({
        "peft_type": "LORA",
        "task_type": null,
        "base_model_name_or_path": base_model.display().to_string(),
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": 0.0,
        "target_modules": modules,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "use_rslora": false,
        "use_dora": false,
        "rank_pattern": {},
        "alpha_pattern": {},
        "layers_to_transform": null,
    });
    Ok((tensors, config))
}

/// What [`import_peft`] reads from a PEFT adapter directory.
#[derive(Debug, Clone)]
pub struct PeftAdapter {
    /// `base_model_name_or_path`.
    pub base_model: PathBuf,
    /// Rank and alpha (the targets are left empty: the factors say which weights).
    pub lora: LoraSpec,
}

/// Reads `dir/adapter_config.json`, refusing, by key, what dnalm cannot run exactly.
pub fn read_peft_config(dir: &Path) -> Result<PeftAdapter, ModelError> {
    let path = dir.join(PEFT_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
    let bad = |message: String| ModelError::Weights {
        path: path.clone(),
        message,
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    if v["peft_type"] != "LORA" {
        return Err(bad(format!(
            "peft_type {}: dnalm reads LoRA adapters only",
            v["peft_type"]
        )));
    }
    for (key, fine) in [
        ("use_dora", v["use_dora"].as_bool() != Some(true)),
        ("use_rslora", v["use_rslora"].as_bool() != Some(true)),
        (
            "fan_in_fan_out",
            v["fan_in_fan_out"].as_bool() != Some(true),
        ),
        ("bias", v["bias"].is_null() || v["bias"] == "none"),
        ("modules_to_save", v["modules_to_save"].is_null()),
        ("lora_bias", v["lora_bias"].as_bool() != Some(true)),
        ("target_parameters", v["target_parameters"].is_null()),
        (
            "trainable_token_indices",
            v["trainable_token_indices"].is_null(),
        ),
        ("layer_replication", v["layer_replication"].is_null()),
        (
            "rank_pattern",
            v["rank_pattern"].as_object().is_none_or(|m| m.is_empty()),
        ),
        (
            "alpha_pattern",
            v["alpha_pattern"].as_object().is_none_or(|m| m.is_empty()),
        ),
    ] {
        if !fine {
            return Err(bad(format!(
                "{key} = {}: not supported by dnalm's LoRA (plain LoRA, one rank and alpha, no \
                 extra trained modules)",
                v[key]
            )));
        }
    }
    let rank = v["r"]
        .as_u64()
        .filter(|&r| r > 0)
        .ok_or_else(|| bad("r: not a positive integer".into()))? as usize;
    let alpha = v["lora_alpha"]
        .as_f64()
        .ok_or_else(|| bad("lora_alpha: not a number".into()))?;
    let base_model = v["base_model_name_or_path"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("base_model_name_or_path: missing".into()))?;
    Ok(PeftAdapter {
        base_model: PathBuf::from(base_model),
        lora: LoraSpec {
            rank,
            alpha,
            targets: Vec::new(),
        },
    })
}

/// PEFT's factors (`tensors` of `adapter_model.safetensors`) under dnalm's names, for a model of
/// `config` whose linear weights are `weights` (dnalm names). Names no weight of the model has,
/// and factors of the wrong shape, are refused.
pub fn import_peft(
    config: &ModelConfig,
    weights: &BTreeMap<String, Vec<usize>>,
    tensors: BTreeMap<String, HostTensor>,
    source: &Path,
) -> Result<BTreeMap<String, HostTensor>, ModelError> {
    let modules: BTreeMap<String, &String> = weights
        .iter()
        .filter(|(_, shape)| shape.len() == 2)
        .filter_map(|(name, _)| linear_module(config, name).ok().map(|m| (m, name)))
        .collect();
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, tensor) in tensors {
        let parsed = key.strip_prefix(PREFIX).and_then(|rest| {
            let (module, factor) = rest
                .strip_suffix(".lora_A.weight")
                .map(|m| (m, "a"))
                .or_else(|| rest.strip_suffix(".lora_B.weight").map(|m| (m, "b")))?;
            modules.get(module).map(|w| (*w, factor))
        });
        let Some((weight, factor)) = parsed else {
            problems.push(format!(
                "{key}: not a LoRA factor of a linear layer of this model"
            ));
            continue;
        };
        let shape = &weights[weight];
        let fits = tensor.shape.len() == 2
            && match factor {
                "a" => tensor.shape[1] == shape[0],
                _ => tensor.shape[0] == shape[1],
            };
        if !fits {
            problems.push(format!(
                "{key}: shape {:?} does not fit the weight {:?}",
                tensor.shape, shape
            ));
            continue;
        }
        out.insert(format!("{weight}.lora.{factor}"), transpose(&tensor));
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(ModelError::Weights {
            path: source.to_path_buf(),
            message: crate::tensors::summarise(&problems),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::tests::encoder as esm_encoder;

    #[test]
    fn factors_go_to_peft_names_and_back() {
        let model = esm_encoder();
        let spec: crate::lora::LoraSpec = "r=2,targets=q,ffn".parse().unwrap();
        let adapted = model.clone().with_lora(&spec, 4).unwrap();
        let mut factors = crate::lora::adapter_tensors(&adapted);
        for t in factors.values_mut() {
            for (i, v) in t.values.iter_mut().enumerate() {
                *v = i as f32 * 0.01 - 0.1;
            }
        }
        let (tensors, config) =
            export_peft(&adapted.config, &factors, &spec, Path::new("/base")).unwrap();
        assert!(tensors.contains_key(
            "base_model.model.esm.encoder.layer.0.attention.self.query.lora_A.weight"
        ));
        assert_eq!(
            tensors["base_model.model.esm.encoder.layer.1.intermediate.dense.lora_B.weight"].shape,
            [32, 2]
        );
        assert_eq!(config["r"], 2);
        assert_eq!(config["target_modules"].as_array().unwrap().len(), 6);
        let shapes = crate::tensors::parameter_shapes(&model);
        let back = import_peft(&model.config, &shapes, tensors, Path::new("x")).unwrap();
        assert_eq!(back, factors);
    }

    #[test]
    fn what_dnalm_cannot_run_exactly_is_refused_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let base =
            r#""peft_type": "LORA", "r": 4, "lora_alpha": 8, "base_model_name_or_path": "b""#;
        for (extra, key) in [
            (r#", "use_dora": true"#, "use_dora"),
            (r#", "use_rslora": true"#, "use_rslora"),
            (r#", "bias": "all""#, "bias"),
            (r#", "modules_to_save": ["classifier"]"#, "modules_to_save"),
            (r#", "rank_pattern": {"query": 8}"#, "rank_pattern"),
        ] {
            std::fs::write(dir.path().join(PEFT_CONFIG), format!("{{{base}{extra}}}")).unwrap();
            let e = read_peft_config(dir.path()).unwrap_err().to_string();
            assert!(e.contains(key) && !e.contains('\n'), "{e}");
        }
        std::fs::write(dir.path().join(PEFT_CONFIG), format!("{{{base}}}")).unwrap();
        let read = read_peft_config(dir.path()).unwrap();
        assert_eq!((read.lora.rank, read.lora.alpha), (4, 8.0));

        let model = esm_encoder();
        let shapes = crate::tensors::parameter_shapes(&model);
        let stray = BTreeMap::from([(
            "base_model.model.esm.pooler.dense.lora_A.weight".to_string(),
            HostTensor {
                shape: vec![2, 16],
                values: vec![0.0; 32],
            },
        )]);
        let e = import_peft(&model.config, &shapes, stray, Path::new("a.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pooler.dense") && e.contains("not a LoRA factor"),
            "{e}"
        );
    }
}
