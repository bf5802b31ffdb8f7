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

use serde_json::{json, Map, Value};

use super::weights::{linear_module, transpose, LinearSlot};
use crate::{lora::LoraSpec, tensors::HostTensor, ModelConfig, ModelError};

/// PEFT's adapter settings file.
pub const PEFT_CONFIG: &str = "adapter_config.json";
/// PEFT's adapter weights file.
pub const PEFT_WEIGHTS: &str = "adapter_model.safetensors";
/// The prefix of every factor's name (`PeftModel.base_model.model`).
const PREFIX: &str = "base_model.model.";

/// One adapted weight's factors in burn's layout: `A` `[in, r]`, `B` `[r, out]`.
struct Factors<'t> {
    a: &'t HostTensor,
    b: &'t HostTensor,
}

/// dnalm's factors (`<weight>.lora.a`, `<weight>.lora.b`) of a model of `config` as PEFT's
/// tensors and `adapter_config.json`, or why the layout has no place for them (no
/// `transformers` layout).
///
/// A layer that packs several of dnalm's weights (DNABERT-2's `Wqkv` packs `q`, `k` and `v`;
/// a gated network's projection packs `[gate; up]`) gets one adapter whose rank is the sum of
/// its adapted parts': `A` stacks the parts' `A`s, `B` is block-diagonal (each part's `B` on
/// its own output rows, zeros elsewhere, so an unadapted part such as `k` stays unchanged).
/// Its `rank_pattern` and `alpha_pattern` entries (full module paths) keep PEFT's scale
/// `alpha / r` equal to dnalm's, so the update is exactly dnalm's.
pub fn export_peft(
    config: &ModelConfig,
    factors: &BTreeMap<String, HostTensor>,
    lora: &LoraSpec,
    base_model: &Path,
) -> Result<(BTreeMap<String, HostTensor>, Value), String> {
    let mut weights: BTreeMap<&str, (Option<&HostTensor>, Option<&HostTensor>)> = BTreeMap::new();
    for (name, factor) in factors {
        match (name.strip_suffix(".lora.a"), name.strip_suffix(".lora.b")) {
            (Some(w), _) => weights.entry(w).or_default().0 = Some(factor),
            (_, Some(w)) => weights.entry(w).or_default().1 = Some(factor),
            _ => return Err(format!("{name} is not a LoRA factor")),
        }
    }
    // The parts each `transformers` layer receives, in the order the layers are first met.
    let mut layers: Vec<(LinearSlot, Vec<(usize, Factors)>)> = Vec::new();
    for (weight, pair) in weights {
        let (Some(a), Some(b)) = pair else {
            return Err(format!("{weight}: lora.a and lora.b must come in pairs"));
        };
        let slot = linear_module(config, weight)?;
        let start = slot.packed.map_or(0, |(start, _)| start);
        let part = (start, Factors { a, b });
        match layers.iter_mut().find(|(s, _)| s.module == slot.module) {
            Some((_, parts)) => parts.push(part),
            None => layers.push((slot, vec![part])),
        }
    }
    let mut tensors = BTreeMap::new();
    let mut modules = Vec::new();
    let mut rank_pattern = Map::new();
    let mut alpha_pattern = Map::new();
    for (slot, mut parts) in layers {
        parts.sort_by_key(|(start, _)| *start);
        let d_in = parts[0].1.a.shape[0];
        let rank: usize = parts.iter().map(|(_, f)| f.a.shape[1]).sum();
        let rows = slot
            .packed
            .map_or(parts[0].1.b.shape[1], |(_, total)| total);
        // PEFT's A `[rank, in]`: the parts' A, transposed, one under the other.
        let mut a = Vec::with_capacity(rank * d_in);
        for (_, f) in &parts {
            a.extend_from_slice(&transpose(f.a).values);
        }
        // PEFT's B `[rows, rank]`: part p's B, transposed, at its rows and its columns.
        let mut b = vec![0.0f32; rows * rank];
        let mut column = 0;
        for (start, f) in &parts {
            let (r, out) = (f.b.shape[0], f.b.shape[1]);
            for j in 0..r {
                for o in 0..out {
                    b[(start + o) * rank + column + j] = f.b.values[j * out + o];
                }
            }
            column += r;
        }
        tensors.insert(
            format!("{PREFIX}{}.lora_A.weight", slot.module),
            HostTensor {
                shape: vec![rank, d_in],
                values: a,
            },
        );
        tensors.insert(
            format!("{PREFIX}{}.lora_B.weight", slot.module),
            HostTensor {
                shape: vec![rows, rank],
                values: b,
            },
        );
        if rank != lora.rank {
            rank_pattern.insert(slot.module.clone(), json!(rank));
            alpha_pattern.insert(
                slot.module.clone(),
                json!(lora.alpha * rank as f64 / lora.rank as f64),
            );
        }
        modules.push(slot.module);
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
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
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
    /// `rank_pattern`: a layer's own rank, by module-name suffix.
    pub rank_pattern: BTreeMap<String, usize>,
    /// `alpha_pattern`: a layer's own alpha, by module-name suffix.
    pub alpha_pattern: BTreeMap<String, f64>,
}

impl PeftAdapter {
    /// The rank and alpha PEFT gives `module`: a pattern key that is the module's name or a
    /// dotted suffix of it (PEFT's rule, `(.*\.)?key$`, for keys without other regex syntax),
    /// the longest such key first, else the global `r` and `lora_alpha`.
    fn rank_and_alpha(&self, module: &str) -> (usize, f64) {
        fn lookup<T: Copy>(patterns: &BTreeMap<String, T>, module: &str) -> Option<T> {
            patterns
                .iter()
                .filter(|(key, _)| {
                    module == key.as_str()
                        || module
                            .strip_suffix(key.as_str())
                            .is_some_and(|head| head.ends_with('.'))
                })
                .max_by_key(|(key, _)| key.len())
                .map(|(_, v)| *v)
        }
        (
            lookup(&self.rank_pattern, module).unwrap_or(self.lora.rank),
            lookup(&self.alpha_pattern, module).unwrap_or(self.lora.alpha),
        )
    }
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
    ] {
        if !fine {
            return Err(bad(format!(
                "{key} = {}: not supported by dnalm's LoRA (plain LoRA, no extra trained \
                 modules)",
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
    // Pattern keys are regular expressions in PEFT; dnalm takes the ones that are plain
    // (dotted) module names, which is what PEFT and dnalm write.
    let pattern = |key: &str| -> Result<Vec<(String, f64)>, ModelError> {
        let Some(entries) = v[key].as_object() else {
            return match &v[key] {
                Value::Null => Ok(Vec::new()),
                other => Err(bad(format!("{key} = {other}: not an object"))),
            };
        };
        entries
            .iter()
            .map(|(name, value)| {
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                {
                    return Err(bad(format!(
                        "{key} key '{name}': dnalm reads pattern keys that are module names \
                         (letters, digits, '.', '_', '-'), not other regular expressions"
                    )));
                }
                let number = value
                    .as_f64()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| {
                        bad(format!("{key} '{name}' = {value}: not a positive number"))
                    })?;
                Ok((name.clone(), number))
            })
            .collect()
    };
    let mut rank_pattern = BTreeMap::new();
    for (name, r) in pattern("rank_pattern")? {
        if r.fract() != 0.0 {
            return Err(bad(format!("rank_pattern '{name}' = {r}: not an integer")));
        }
        rank_pattern.insert(name, r as usize);
    }
    Ok(PeftAdapter {
        base_model: PathBuf::from(base_model),
        lora: LoraSpec {
            rank,
            alpha,
            targets: Vec::new(),
        },
        rank_pattern,
        alpha_pattern: pattern("alpha_pattern")?.into_iter().collect(),
    })
}

/// PEFT's factors (`tensors` of `adapter_model.safetensors`, settings `adapter`) under dnalm's
/// names, for a model of `config` whose weights have the shapes `weights` (dnalm names), with
/// the one rank and alpha dnalm's adapters then share.
///
/// Names no linear layer of the model has, factors of the wrong shape and a `B` without its
/// `A` are refused. Every layer's own scale (its `rank_pattern` / `alpha_pattern` entry) is
/// folded into its `B`, so the adapters share the global `lora_alpha / r`. A layer that packs
/// several of dnalm's weights gives each part the shared `A` and its own rows of `B`, with the
/// rank components that leave that part unchanged (all-zero columns of its rows of `B`) dropped
/// and no adapter on a part the update leaves unchanged, which takes dnalm's own export back to
/// the factors it came from. Adapters of different ranks are
/// padded with zero components to the largest: the update is exactly PEFT's.
pub fn import_peft(
    config: &ModelConfig,
    weights: &BTreeMap<String, Vec<usize>>,
    tensors: BTreeMap<String, HostTensor>,
    adapter: &PeftAdapter,
    source: &Path,
) -> Result<(BTreeMap<String, HostTensor>, LoraSpec), ModelError> {
    // Every linear layer of the layout and the dnalm weights it holds (with their rows, packed).
    type Parts<'w> = Vec<(&'w String, Option<(usize, usize)>)>;
    let mut layers: BTreeMap<String, Parts> = BTreeMap::new();
    for (name, shape) in weights {
        if shape.len() != 2 {
            continue;
        }
        if let Ok(slot) = linear_module(config, name) {
            layers
                .entry(slot.module)
                .or_default()
                .push((name, slot.packed));
        }
    }
    let mut problems = Vec::new();
    let mut pairs: BTreeMap<&str, (Option<HostTensor>, Option<HostTensor>)> = BTreeMap::new();
    for (key, tensor) in tensors {
        let parsed = key.strip_prefix(PREFIX).and_then(|rest| {
            let (module, a) = rest
                .strip_suffix(".lora_A.weight")
                .map(|m| (m, true))
                .or_else(|| rest.strip_suffix(".lora_B.weight").map(|m| (m, false)))?;
            layers.get_key_value(module).map(|(m, _)| (m.as_str(), a))
        });
        let Some((module, is_a)) = parsed else {
            problems.push(format!(
                "{key}: not a LoRA factor of a linear layer of this model"
            ));
            continue;
        };
        let pair = pairs.entry(module).or_default();
        if is_a {
            pair.0 = Some(tensor);
        } else {
            pair.1 = Some(tensor);
        }
    }
    let global_scale = adapter.lora.scale();
    // Per dnalm weight: A `[in, k]` and B `[k, out]`, scale folded into B.
    let mut factors: Vec<(String, HostTensor, HostTensor)> = Vec::new();
    for (module, pair) in pairs {
        let (Some(a), Some(b)) = pair else {
            problems.push(format!("{module}: lora_A and lora_B must come in pairs"));
            continue;
        };
        let parts = &layers[module];
        let d_in = weights[parts[0].0][0];
        let rows: usize = match parts[0].1 {
            Some((_, total)) => total,
            None => weights[parts[0].0][1],
        };
        let (rank, alpha) = adapter.rank_and_alpha(module);
        if a.shape != [rank, d_in] || b.shape != [rows, rank] {
            problems.push(format!(
                "{module}: lora_A {:?} and lora_B {:?}, the layer [{rows}, {d_in}] at r = {rank} \
                 needs [{rank}, {d_in}] and [{rows}, {rank}]",
                a.shape, b.shape
            ));
            continue;
        }
        let fold = (alpha / rank as f64 / global_scale) as f32;
        let a_t = transpose(&a);
        for &(weight, packed) in parts {
            let (start, out) = match packed {
                Some((start, _)) => (start, weights[weight][1]),
                None => (0, rows),
            };
            // Component j of this part: column j of A's transpose, row j of its B.
            let b_values = &b.values;
            let b_of = |j: usize| (0..out).map(move |o| b_values[(start + o) * rank + j]);
            let mut keep: Vec<usize> = (0..rank)
                .filter(|&j| packed.is_none() || b_of(j).any(|x| x != 0.0))
                .collect();
            if keep.is_empty() {
                if b.values.iter().any(|&x| x != 0.0) {
                    // The layer's update leaves this part unchanged: no adapter on it.
                    continue;
                }
                // A fresh adapter (B = 0): every component, as PEFT made it.
                keep = (0..rank).collect();
            }
            let k = keep.len();
            let mut a_part = Vec::with_capacity(d_in * k);
            for i in 0..d_in {
                a_part.extend(keep.iter().map(|&j| a_t.values[i * rank + j]));
            }
            let mut b_part = Vec::with_capacity(k * out);
            for &j in &keep {
                b_part.extend(b_of(j).map(|x| x * fold));
            }
            factors.push((
                weight.clone(),
                HostTensor {
                    shape: vec![d_in, k],
                    values: a_part,
                },
                HostTensor {
                    shape: vec![k, out],
                    values: b_part,
                },
            ));
        }
    }
    if !problems.is_empty() {
        return Err(ModelError::Weights {
            path: source.to_path_buf(),
            message: crate::tensors::summarise(&problems),
        });
    }
    // One rank for all: zero components pad the smaller adapters.
    let shared = factors
        .iter()
        .map(|(_, a, _)| a.shape[1])
        .max()
        .unwrap_or(adapter.lora.rank);
    let mut out = BTreeMap::new();
    for (weight, a, b) in factors {
        let (d_in, k, d_out) = (a.shape[0], a.shape[1], b.shape[1]);
        let mut a_padded = vec![0.0f32; d_in * shared];
        for i in 0..d_in {
            a_padded[i * shared..i * shared + k].copy_from_slice(&a.values[i * k..(i + 1) * k]);
        }
        let mut b_padded = b.values;
        b_padded.resize(shared * d_out, 0.0);
        out.insert(
            format!("{weight}.lora.a"),
            HostTensor {
                shape: vec![d_in, shared],
                values: a_padded,
            },
        );
        out.insert(
            format!("{weight}.lora.b"),
            HostTensor {
                shape: vec![shared, d_out],
                values: b_padded,
            },
        );
    }
    let lora = LoraSpec {
        rank: shared,
        alpha: global_scale * shared as f64,
        targets: Vec::new(),
    };
    Ok((out, lora))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{lora::tests::encoder as esm_encoder, DnaLm};

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
        let adapter = peft_adapter(&config);
        let (back, lora) =
            import_peft(&model.config, &shapes, tensors, &adapter, Path::new("x")).unwrap();
        assert_eq!(back, factors);
        assert_eq!((lora.rank, lora.alpha), (spec.rank, spec.alpha));
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
            (r#", "rank_pattern": {"layer.*query": 8}"#, "rank_pattern"),
            (r#", "alpha_pattern": {"query": -1}"#, "alpha_pattern"),
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
        let e = import_peft(
            &model.config,
            &shapes,
            stray,
            &read,
            Path::new("a.safetensors"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("pooler.dense") && e.contains("not a LoRA factor"),
            "{e}"
        );
    }

    /// The settings PEFT would read from `config` (what `adapter_config.json` holds).
    fn peft_adapter(config: &Value) -> PeftAdapter {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config.clone();
        config["base_model_name_or_path"] = json!("base");
        std::fs::write(dir.path().join(PEFT_CONFIG), config.to_string()).unwrap();
        read_peft_config(dir.path()).unwrap()
    }

    /// `W + (alpha_m / r_m) B A` for every adapted layer of a PEFT export: what PEFT's merge
    /// gives, from the config's own numbers.
    fn peft_merge(
        base: &BTreeMap<String, HostTensor>,
        tensors: &BTreeMap<String, HostTensor>,
        config: &Value,
    ) -> BTreeMap<String, HostTensor> {
        let mut merged = base.clone();
        for (key, a) in tensors {
            let Some(module) = key
                .strip_prefix(PREFIX)
                .and_then(|k| k.strip_suffix(".lora_A.weight"))
            else {
                continue;
            };
            let b = &tensors[&format!("{PREFIX}{module}.lora_B.weight")];
            // PEFT's `(.*\.)?key$` for plain keys.
            let pattern = |key: &str, default: &str| {
                config[key]
                    .as_object()
                    .and_then(|p| {
                        p.iter()
                            .find(|(k, _)| module == *k || module.ends_with(&format!(".{k}")))
                    })
                    .map_or(config[default].as_f64().unwrap(), |(_, v)| {
                        v.as_f64().unwrap()
                    })
            };
            let (r, alpha) = (
                pattern("rank_pattern", "r"),
                pattern("alpha_pattern", "lora_alpha"),
            );
            let w = merged.get_mut(&format!("{module}.weight")).unwrap();
            let (rows, cols, rank) = (w.shape[0], w.shape[1], a.shape[0]);
            assert_eq!(r as usize, rank, "{module}");
            for o in 0..rows {
                for i in 0..cols {
                    let update: f32 = (0..rank)
                        .map(|j| b.values[o * rank + j] * a.values[j * cols + i])
                        .sum();
                    w.values[o * cols + i] += (alpha / r) as f32 * update;
                }
            }
        }
        merged
    }

    fn max_gap(a: &BTreeMap<String, HostTensor>, b: &BTreeMap<String, HostTensor>) -> f32 {
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        a.iter()
            .flat_map(|(k, t)| t.values.iter().zip(&b[k].values))
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn packed_layers_export_as_one_adapter_that_peft_merges_to_dnalms_weights() {
        use crate::hf::tests::{dnabert2_like, nt_v2_like};
        use crate::hf::weights::export_weights;
        for (config, targets, packed) in [
            // Wqkv packs q, k, v: q and v adapted, k left alone inside the same layer.
            (dnabert2_like(), "q,v,ffn", "attention.self.Wqkv"),
            (dnabert2_like(), "k", "attention.self.Wqkv"),
            // [gate; up] in one projection.
            (nt_v2_like(false), "q,ffn", "intermediate.dense"),
        ] {
            let model = DnaLm::seeded(&config, &crate::cpu(), 2).unwrap();
            let spec: LoraSpec = format!("r=2,alpha=6,targets={targets}").parse().unwrap();
            let adapted = model.clone().with_lora(&spec, 4).unwrap();
            let mut factors = crate::lora::adapter_tensors(&adapted);
            for (n, t) in factors.values_mut().enumerate() {
                for (i, v) in t.values.iter_mut().enumerate() {
                    *v = ((i * 7 + n * 3) % 11) as f32 * 0.02 - 0.1;
                }
            }
            let (tensors, peft) =
                export_peft(&config, &factors, &spec, Path::new("/base")).unwrap();
            let modules: Vec<&str> = peft["target_modules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap())
                .collect();
            let layers_with = |part: &str| modules.iter().filter(|m| m.ends_with(part)).count();
            assert_eq!(layers_with(packed), 2, "{targets}: {modules:?}");
            // One layer per adapted module, each packed layer once.
            assert_eq!(modules.len() * 2, tensors.len());

            // PEFT's merge of the export gives dnalm's merged weights.
            let mut values = crate::tensors::named_parameters(&adapted);
            values.extend(factors.clone());
            let adapted = crate::io::load_parameters(adapted, &values, Path::new("x")).unwrap();
            let (merged, _) = export_weights(
                &config,
                &crate::tensors::named_parameters(&adapted.merge_lora()),
            )
            .unwrap();
            let (base, _) =
                export_weights(&config, &crate::tensors::named_parameters(&model)).unwrap();
            let by_peft = peft_merge(&base, &tensors, &peft);
            let gap = max_gap(&by_peft, &merged);
            assert!(gap < 1e-5, "{targets}: PEFT's merge is {gap} from dnalm's");

            // And back: the same factors, the same rank and alpha.
            let (back, lora) = import_peft(
                &config,
                &crate::tensors::parameter_shapes(&model),
                tensors,
                &peft_adapter(&peft),
                Path::new("x"),
            )
            .unwrap();
            assert_eq!(back, factors, "{targets}");
            assert_eq!((lora.rank, lora.alpha), (2, 6.0));
        }
    }

    #[test]
    fn per_layer_ranks_and_alphas_fold_into_one_shared_rank() {
        // A PEFT adapter (ESM layout) whose query layers have r = 4, alpha = 2 by pattern while
        // the global r = 2, alpha = 6: scales 0.5 and 3.
        let model = esm_encoder();
        let config = model.config.clone();
        let (base, _) =
            crate::hf::weights::export_weights(&config, &crate::tensors::named_parameters(&model))
                .unwrap();
        let mut tensors = BTreeMap::new();
        let mut fill = |name: String, shape: Vec<usize>, seed: usize| {
            let n = shape.iter().product::<usize>();
            let values = (0..n)
                .map(|i| ((i * 5 + seed) % 13) as f32 * 0.01 - 0.06)
                .collect();
            tensors.insert(name, HostTensor { shape, values });
        };
        for l in 0..2 {
            let m = format!("esm.encoder.layer.{l}.attention.self");
            fill(format!("{PREFIX}{m}.query.lora_A.weight"), vec![4, 16], l);
            fill(
                format!("{PREFIX}{m}.query.lora_B.weight"),
                vec![16, 4],
                l + 1,
            );
            fill(
                format!("{PREFIX}{m}.value.lora_A.weight"),
                vec![2, 16],
                l + 2,
            );
            fill(
                format!("{PREFIX}{m}.value.lora_B.weight"),
                vec![16, 2],
                l + 3,
            );
        }
        let peft = json!({"peft_type": "LORA", "r": 2, "lora_alpha": 6,
            "rank_pattern": {"query": 4}, "alpha_pattern": {"query": 2}});
        let adapter = peft_adapter(&peft);
        assert_eq!(
            adapter.rank_and_alpha("esm.encoder.layer.1.attention.self.query"),
            (4, 2.0)
        );
        assert_eq!(
            adapter.rank_and_alpha("esm.encoder.layer.1.attention.self.value"),
            (2, 6.0)
        );
        // Suffixes match at a dot only.
        assert_eq!(
            adapter.rank_and_alpha("esm.encoder.layer.1.attention.self.xquery"),
            (2, 6.0)
        );
        let (factors, lora) = import_peft(
            &config,
            &crate::tensors::parameter_shapes(&model),
            tensors.clone(),
            &adapter,
            Path::new("x"),
        )
        .unwrap();
        assert_eq!((lora.rank, lora.scale()), (4, 3.0));
        let adapted = model
            .clone()
            .with_lora_on(
                &factors
                    .keys()
                    .filter_map(|k| k.strip_suffix(".lora.a").map(str::to_string))
                    .collect(),
                lora.rank,
                lora.scale(),
                0,
            )
            .unwrap();
        let mut values = crate::tensors::named_parameters(&adapted);
        values.extend(factors);
        let adapted = crate::io::load_parameters(adapted, &values, Path::new("x")).unwrap();
        let (merged, _) = crate::hf::weights::export_weights(
            &config,
            &crate::tensors::named_parameters(&adapted.merge_lora()),
        )
        .unwrap();
        let gap = max_gap(&peft_merge(&base, &tensors, &peft), &merged);
        assert!(gap < 1e-5, "{gap}");
    }
}
