//! Tensors both ways: a checkpoint's tensors under dnalm's parameter names, and back.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use super::{config::esm_position_offset, HfFamily, NoHfLayout};
use crate::{tensors::HostTensor, ModelConfig, ModelError, PositionEncoding};

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
    /// Rows `start..` of a tensor that packs several of dnalm's (DNABERT-2's `Wqkv` and
    /// `gated_layers`, NT-v2's gated `intermediate.dense`), `total` rows in all: a weight is
    /// also transposed, a bias is a plain slice.
    Packed {
        start: usize,
        total: usize,
    },
    /// Row 0 of a table (BERT's token-type embeddings, for DNABERT-2's token-type vector).
    FirstRow,
    /// The same values with one more axis in the checkpoint: `[1, ..]` in front
    /// (`HyenaDNA`'s positional features and sine frequencies), or `[c, 1, k]` for dnalm's
    /// `[c, k]` (a depthwise convolution's weight).
    Unsqueeze {
        /// Where the axis of length 1 goes.
        axis: usize,
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
    match family {
        HfFamily::Esm | HfFamily::Bert | HfFamily::NtV2 | HfFamily::DnaBert2 => {
            encoder_name(family, config, &parts, prefix)
        }
        HfFamily::Llama => llama_name(&parts, prefix),
        HfFamily::HyenaDna => hyena_name(config, &parts, prefix),
        HfFamily::Caduceus => caduceus_name(config, &parts, prefix),
    }
}

/// Caduceus' names (`modeling_caduceus.py`, `modeling_rcps.py`). The equivariant layout wraps
/// the embedding (`.embedding.`), the mixers (`.submodule.`) and, on the un-fused path, the
/// norms (`.submodule.`).
fn caduceus_name(config: &ModelConfig, parts: &[&str], prefix: &str) -> Option<(String, Change)> {
    let p = format!("{prefix}backbone");
    let c = config.caduceus_options();
    let wrapped = if c.rc_equivariant { ".submodule" } else { "" };
    let norm_wrapped = if c.rc_equivariant && !c.swap_halves {
        ".submodule"
    } else {
        ""
    };
    match parts {
        ["embed", "weight"] => Some((
            if c.rc_equivariant {
                format!("{p}.embeddings.word_embeddings.embedding.weight")
            } else {
                format!("{p}.embeddings.word_embeddings.weight")
            },
            Change::Same,
        )),
        ["blocks", i, rest @ ..] => {
            let l = format!("{p}.layers.{i}");
            let m = format!("{l}.mixer{wrapped}");
            let ssm = |direction: &str| match direction {
                "forward_ssm" => Some(format!("{m}.mamba_fwd")),
                "reverse_ssm" => Some(format!("{m}.mamba_rev")),
                _ => None,
            };
            match rest {
                ["attn_norm", "Rms", "gamma"] => {
                    Some((format!("{l}.norm{norm_wrapped}.weight"), Change::Same))
                }
                ["mamba", proj @ ("in_proj" | "out_proj"), leaf] => {
                    linear(format!("{m}.mamba_fwd.{proj}"), leaf)
                }
                ["mamba", direction, rest @ ..] => {
                    let s = ssm(direction)?;
                    match rest {
                        ["conv_weight"] => {
                            Some((format!("{s}.conv1d.weight"), Change::Unsqueeze { axis: 1 }))
                        }
                        ["conv_bias"] => Some((format!("{s}.conv1d.bias"), Change::Same)),
                        [proj @ ("x_proj" | "dt_proj"), leaf] => {
                            linear(format!("{s}.{proj}"), leaf)
                        }
                        ["dt_bias"] => Some((format!("{s}.dt_proj.bias"), Change::Same)),
                        ["a_log"] => Some((format!("{s}.A_log"), Change::Same)),
                        ["d_skip"] => Some((format!("{s}.D"), Change::Same)),
                        _ => None,
                    }
                }
                _ => None,
            }
        }
        ["final_norm", "Rms", "gamma"] => {
            Some((format!("{p}.norm_f{norm_wrapped}.weight"), Change::Same))
        }
        _ => None,
    }
}

/// Checks Caduceus' `complement_map` buffers present in `hf` against the config's (marking
/// them used); one that differs is a problem naming it.
fn check_caduceus_buffers(
    config: &ModelConfig,
    hf: &BTreeMap<String, HostTensor>,
    used: &mut BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    let map = config.caduceus_options().complement_map;
    for (key, got) in hf.iter().filter(|(k, _)| k.ends_with("complement_map")) {
        used.insert(key.clone());
        let same = got.values.len() == map.len()
            && got.values.iter().zip(&map).all(|(&g, &m)| g == m as f32);
        if !same {
            problems.push(format!(
                "tensor {key} differs from the config's complement_map (dnalm runs the config's)"
            ));
        }
    }
}

/// HyenaDNA's names (`modeling_hyena.py`).
fn hyena_name(config: &ModelConfig, parts: &[&str], prefix: &str) -> Option<(String, Change)> {
    let p = format!("{prefix}backbone");
    let norm_of = |hf: String, leaf: &str| Some((format!("{hf}.{}", norm(leaf)), Change::Same));
    match parts {
        ["embed", "weight"] => Some((
            format!("{p}.embeddings.word_embeddings.weight"),
            Change::Same,
        )),
        ["blocks", i, rest @ ..] => {
            let l = format!("{p}.layers.{i}");
            let f = format!("{l}.mixer.filter_fn");
            let inner = config.hyena_options().inner_layers;
            match rest {
                ["attn_norm", "Layer", leaf] => norm_of(format!("{l}.norm1"), leaf),
                ["ffn_norm", "Layer", leaf] => norm_of(format!("{l}.norm2"), leaf),
                ["ffn", "GeluTanh", "up", leaf] => linear(format!("{l}.mlp.fc1"), leaf),
                ["ffn", "GeluTanh", "down", leaf] => linear(format!("{l}.mlp.fc2"), leaf),
                ["hyena", proj @ ("in_proj" | "out_proj"), leaf] => {
                    linear(format!("{l}.mixer.{proj}"), leaf)
                }
                ["hyena", "short_filter"] => Some((
                    format!("{l}.mixer.short_filter.weight"),
                    Change::Unsqueeze { axis: 1 },
                )),
                ["hyena", "short_filter_bias"] => {
                    Some((format!("{l}.mixer.short_filter.bias"), Change::Same))
                }
                ["hyena", "filter", "positions"] => {
                    Some((format!("{f}.pos_emb.z"), Change::Unsqueeze { axis: 0 }))
                }
                ["hyena", "filter", "freq"] => Some((
                    format!("{f}.implicit_filter.1.freq"),
                    Change::Unsqueeze { axis: 0 },
                )),
                ["hyena", "filter", "bias"] => Some((format!("{f}.bias"), Change::Same)),
                ["hyena", "filter", "input", leaf] => {
                    linear(format!("{f}.implicit_filter.0"), leaf)
                }
                ["hyena", "filter", "inner", j, leaf] => {
                    let j: usize = j.parse().ok()?;
                    linear(format!("{f}.implicit_filter.{}", 2 + 2 * j), leaf)
                }
                ["hyena", "filter", "output", leaf] => {
                    linear(format!("{f}.implicit_filter.{}", 2 + 2 * inner), leaf)
                }
                _ => None,
            }
        }
        ["final_norm", "Layer", leaf] => norm_of(format!("{p}.ln_f"), leaf),
        ["lm_head", "decoder", "weight"] => Some(("lm_head.weight".into(), Change::Transpose)),
        _ => None,
    }
}

/// Checks HyenaDNA's fixed buffers present in `hf` against dnalm's values (marking them used);
/// a buffer that differs is a problem naming it.
fn check_hyena_buffers(
    config: &ModelConfig,
    prefix: &str,
    hf: &BTreeMap<String, HostTensor>,
    used: &mut BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    for l in 0..config.n_layers {
        for (key, want) in hyena_buffers(config, prefix, l) {
            let Some(got) = hf.get(&key) else { continue };
            used.insert(key.clone());
            let close = got.shape == want.shape
                && got
                    .values
                    .iter()
                    .zip(&want.values)
                    .all(|(a, b)| (a - b).abs() <= 1e-5 * b.abs().max(1.0));
            if !close {
                problems.push(format!(
                    "tensor {key} differs from HyenaDNA's fixed values (dnalm computes them from \
                     the config and runs only those)"
                ));
            }
        }
    }
}

/// HyenaDNA's fixed buffers of layer `l` (`hyena.backbone.layers.{l}.mixer.filter_fn.`):
/// normalised time `pos_emb.t` `[1, max_len, 1]` and decay rates `modulation.deltas`
/// `[1, 1, d]`, which dnalm computes from the config.
fn hyena_buffers(config: &ModelConfig, prefix: &str, l: usize) -> [(String, HostTensor); 2] {
    let (t, deltas) = crate::hyena::window_buffers(config.max_positions, config.d_model);
    let f = format!("{prefix}backbone.layers.{l}.mixer.filter_fn");
    let host = |values: Vec<f64>, shape: Vec<usize>| HostTensor {
        shape,
        values: values.into_iter().map(|v| v as f32).collect(),
    };
    [
        (
            format!("{f}.pos_emb.t"),
            host(t, vec![1, config.max_positions, 1]),
        ),
        (
            format!("{f}.modulation.deltas"),
            host(deltas, vec![1, 1, config.d_model]),
        ),
    ]
}

/// BERT's names, DNABERT-2's own where MosaicBERT renamed or packed them, else ESM's.
fn encoder_name(
    family: HfFamily,
    config: &ModelConfig,
    parts: &[&str],
    prefix: &str,
) -> Option<(String, Change)> {
    let bert = matches!(family, HfFamily::Bert | HfFamily::DnaBert2);
    let mosaic = family == HfFamily::DnaBert2;
    let p = prefix;
    match parts {
        ["embed", "weight"] => Some((
            format!("{p}embeddings.word_embeddings.weight"),
            Change::Same,
        )),
        ["token_type"] => Some((
            format!("{p}embeddings.token_type_embeddings.weight"),
            Change::FirstRow,
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
            encoder_block_name(family, config, &format!("{p}encoder.layer.{i}"), rest)
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
            if mosaic {
                "cls.predictions.decoder.bias".into()
            } else if bert {
                "cls.predictions.bias".into()
            } else {
                "lm_head.bias".into()
            },
            Change::Same,
        )),
        _ => None,
    }
}

/// The name of a parameter of encoder block `l` (`rest`: its path inside the block).
fn encoder_block_name(
    family: HfFamily,
    config: &ModelConfig,
    l: &str,
    rest: &[&str],
) -> Option<(String, Change)> {
    let bert = matches!(family, HfFamily::Bert | HfFamily::DnaBert2);
    let mosaic = family == HfFamily::DnaBert2;
    let (d, f) = (config.d_model, config.d_ffn);
    match rest {
        // MosaicBERT packs [q; k; v] into `Wqkv`.
        [proj @ ("query" | "key" | "value"), leaf] if mosaic => {
            let start = match *proj {
                "query" => 0,
                "key" => d,
                _ => 2 * d,
            };
            Some((
                format!("{l}.attention.self.Wqkv.{leaf}"),
                Change::Packed {
                    start,
                    total: 3 * d,
                },
            ))
        }
        [proj @ ("query" | "key" | "value"), leaf] => {
            linear(format!("{l}.attention.self.{proj}"), leaf)
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
            if mosaic {
                format!("{l}.mlp.layernorm.{}", norm(leaf))
            } else if bert {
                format!("{l}.output.LayerNorm.{}", norm(leaf))
            } else {
                format!("{l}.LayerNorm.{}", norm(leaf))
            },
            Change::Same,
        )),
        ["ffn", "Gelu", "up", leaf] => linear(format!("{l}.intermediate.dense"), leaf),
        ["ffn", "Gelu", "down", leaf] => linear(format!("{l}.output.dense"), leaf),
        // Gated networks pack [gate; up] into one projection, the activation on
        // the first half: NT-v2's `intermediate.dense`, DNABERT-2's
        // `mlp.gated_layers`.
        ["ffn", "SwiGlu" | "GeGlu", half @ ("gate" | "up"), leaf] => Some((
            if mosaic {
                format!("{l}.mlp.gated_layers.{leaf}")
            } else {
                format!("{l}.intermediate.dense.{leaf}")
            },
            Change::Packed {
                start: if *half == "gate" { 0 } else { f },
                total: 2 * f,
            },
        )),
        ["ffn", "SwiGlu" | "GeGlu", "down", leaf] => linear(
            if mosaic {
                format!("{l}.mlp.wo")
            } else {
                format!("{l}.output.dense")
            },
            leaf,
        ),
        _ => None,
    }
}

/// Llama's names.
fn llama_name(parts: &[&str], prefix: &str) -> Option<(String, Change)> {
    let p = prefix;
    match parts {
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
        ["lm_head", "decoder", "weight"] => Some(("lm_head.weight".into(), Change::Transpose)),
        _ => None,
    }
}

/// The `transformers` leaf name of a burn norm parameter (`gamma`/`beta` -> `weight`/`bias`).
fn norm(leaf: &str) -> &str {
    match leaf {
        "gamma" => "weight",
        "beta" => "bias",
        other => other,
    }
}

/// A linear layer's parameter: the weight transposed, the bias as it is.
fn linear(hf: String, leaf: &str) -> Option<(String, Change)> {
    let change = if leaf == "weight" {
        Change::Transpose
    } else {
        Change::Same
    };
    Some((format!("{hf}.{leaf}"), change))
}

/// The part of `tensor` (a checkpoint tensor of shape `[total, ..]`) that a packed dnalm
/// parameter of `shape` holds, starting at row `start`, in dnalm's layout.
fn unpack(tensor: &HostTensor, shape: &[usize], start: usize) -> HostTensor {
    match shape {
        [d_in, n] => {
            let rows = HostTensor {
                shape: vec![*n, *d_in],
                values: tensor.values[start * d_in..(start + n) * d_in].to_vec(),
            };
            transpose(&rows)
        }
        _ => HostTensor {
            shape: shape.to_vec(),
            values: tensor.values[start..start + shape[0]].to_vec(),
        },
    }
}

/// Writes dnalm parameter `tensor` into rows `start..` of the packed checkpoint tensor `into`.
fn pack(into: &mut HostTensor, tensor: &HostTensor, start: usize) {
    match tensor.shape.as_slice() {
        [d_in, n] => {
            let rows = transpose(tensor);
            into.values[start * d_in..(start + n) * d_in].copy_from_slice(&rows.values);
        }
        _ => into.values[start..start + tensor.values.len()].copy_from_slice(&tensor.values),
    }
}

/// The checkpoint-side shape of a packed tensor whose dnalm part has `shape`.
fn packed_shape(shape: &[usize], total: usize) -> Vec<usize> {
    match shape {
        [d_in, _] => vec![total, *d_in],
        _ => vec![total],
    }
}

/// `shape` with an axis of length 1 inserted at `axis`.
fn unsqueezed(shape: &[usize], axis: usize) -> Vec<usize> {
    let mut out = shape.to_vec();
    out.insert(axis.min(out.len()), 1);
    out
}

pub(crate) fn transpose(t: &HostTensor) -> HostTensor {
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
fn ignorable(family: HfFamily, config: &ModelConfig, name: &str) -> bool {
    // NT-v2 stores a position table its rotary model never reads; a tied decoder may be stored
    // beside the embeddings it repeats (as a converted `pytorch_model.bin` has it).
    let unused = match family {
        HfFamily::NtV2 => name.ends_with("embeddings.position_embeddings.weight"),
        HfFamily::DnaBert2 | HfFamily::Bert => {
            config.tie_embeddings && name == "cls.predictions.decoder.weight"
        }
        // The sine frequencies are one tensor under several names (safetensors keeps one), and
        // a tied LM head repeats the embeddings.
        HfFamily::HyenaDna => {
            (name.contains(".implicit_filter.") && name.ends_with(".freq"))
                || (config.tie_embeddings && name == "lm_head.weight")
        }
        // The reverse scan's projections are the forward scan's, and the LM head is the
        // embedding: repeats that a converted `pytorch_model.bin` may store.
        HfFamily::Caduceus => {
            name.contains(".mamba_rev.in_proj.")
                || name.contains(".mamba_rev.out_proj.")
                || name == "lm_head.lm_head.weight"
                || name == "lm_head.weight"
        }
        _ => false,
    };
    unused
        || name.ends_with("position_ids")
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
/// parameters have `shapes` (by dnalm name; [`crate::tensors::parameter_shapes`]). `path` names the
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
            Change::Packed { total, .. } => packed_shape(shape, total),
            // Any number of token types; dnalm keeps type 0, the one every token adds.
            Change::FirstRow => vec![tensor.shape[0].max(1), shape[0]],
            Change::Unsqueeze { axis } => unsqueezed(shape, axis),
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
            Change::Packed { start, .. } => unpack(tensor, shape, start),
            Change::FirstRow => HostTensor {
                shape: shape.clone(),
                values: tensor.values[..shape[0]].to_vec(),
            },
            Change::Unsqueeze { .. } => HostTensor {
                shape: shape.clone(),
                values: tensor.values.clone(),
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
    if family == HfFamily::HyenaDna {
        check_hyena_buffers(config, prefix, hf, &mut used, &mut problems);
    }
    if family == HfFamily::Caduceus {
        check_caduceus_buffers(config, hf, &mut used, &mut problems);
    }
    for key in hf.keys().filter(|k| !used.contains(*k)) {
        if ignorable(family, config, key) {
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
            message: crate::tensors::summarise(&problems),
        })
    }
}

/// Where a dnalm linear weight lives in a family's `transformers` layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinearSlot {
    /// The linear layer's module (dotted path in the family's [`HfFamily::class`]).
    pub(crate) module: String,
    /// `Some((start, total))` when the layer packs several of dnalm's weights (DNABERT-2's
    /// `Wqkv`, a gated network's `[gate; up]`): this one is output rows `start..` of `total`.
    pub(crate) packed: Option<(usize, usize)>,
}

/// The `transformers` linear layer that holds the dnalm linear weight `name`, or why there is
/// none (no `transformers` layout, or not a linear weight).
pub(crate) fn linear_module(config: &ModelConfig, name: &str) -> Result<LinearSlot, String> {
    let family = HfFamily::of(config).map_err(|why| why.to_string())?;
    let module = |key: String| {
        key.strip_suffix(".weight")
            .map(str::to_string)
            .ok_or_else(|| format!("{name}: {key} is not a weight"))
    };
    match hf_name(family, config, name, family.prefix()) {
        Some((key, Change::Transpose)) => Ok(LinearSlot {
            module: module(key)?,
            packed: None,
        }),
        Some((key, Change::Packed { start, total })) => Ok(LinearSlot {
            module: module(key)?,
            packed: Some((start, total)),
        }),
        _ => Err(format!(
            "{name} is not a linear weight of the {} layout",
            family.name()
        )),
    }
}

/// dnalm's tensors under `transformers` names (for `model.safetensors`) and the rest (dnalm's
/// own pretraining heads, kept in a side file), or why the config cannot be exported.
#[allow(clippy::type_complexity)]
pub fn export_weights(
    config: &ModelConfig,
    tensors: &BTreeMap<String, HostTensor>,
) -> Result<(BTreeMap<String, HostTensor>, BTreeMap<String, HostTensor>), NoHfLayout> {
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
            Change::Packed { start, total } => {
                let shape = packed_shape(&tensor.shape, total);
                let packed = hf.entry(key).or_insert_with(|| HostTensor {
                    values: vec![0.0; shape.iter().product()],
                    shape,
                });
                pack(packed, tensor, start);
                continue;
            }
            Change::FirstRow => {
                // Token type 1 (sentence B) is never used by dnalm: zeros.
                let d = tensor.values.len();
                let mut values = tensor.values.clone();
                values.extend(std::iter::repeat_n(0.0, d));
                HostTensor {
                    shape: vec![2, d],
                    values,
                }
            }
            Change::Unsqueeze { axis } => HostTensor {
                shape: unsqueezed(&tensor.shape, axis),
                values: tensor.values.clone(),
            },
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
        // BERT folds token types into the positions (see the module docs); a DNABERT-2 model
        // without its token-type vector adds none.
        HfFamily::Bert | HfFamily::DnaBert2 if !tensors.contains_key("token_type") => {
            hf.insert(
                format!("{prefix}embeddings.token_type_embeddings.weight"),
                HostTensor {
                    shape: vec![2, d],
                    values: vec![0.0; 2 * d],
                },
            );
        }
        HfFamily::NtV2 => {
            // The v2 code builds a contact head, a (rotary-unused) position table and a rotary
            // buffer per layer, and loads them strictly: zeros and the reference frequencies.
            let n = config.n_layers * config.n_heads;
            for (key, shape) in [
                (
                    format!("{prefix}contact_head.regression.weight"),
                    vec![1, n],
                ),
                (format!("{prefix}contact_head.regression.bias"), vec![1]),
                (
                    format!("{prefix}embeddings.position_embeddings.weight"),
                    vec![config.max_positions, d],
                ),
            ] {
                let values = vec![0.0; shape.iter().product()];
                hf.insert(key, HostTensor { shape, values });
            }
            for i in 0..config.n_layers {
                hf.insert(
                    format!("{prefix}encoder.layer.{i}.attention.self.rotary_embeddings.inv_freq"),
                    inv_freq(config),
                );
            }
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
                hf.insert(
                    format!("{prefix}rotary_embeddings.inv_freq"),
                    inv_freq(config),
                );
            }
        }
        HfFamily::HyenaDna => {
            for l in 0..config.n_layers {
                hf.extend(hyena_buffers(config, prefix, l));
            }
        }
        // The complement maps are buffers the hub code builds from `config.json`; not written.
        HfFamily::Bert | HfFamily::DnaBert2 | HfFamily::Llama | HfFamily::Caduceus => {}
    }
    Ok((hf, extra))
}

/// The rotary frequencies `1 / theta^(2i / head_dim)` that ESM's code keeps as a buffer.
fn inv_freq(config: &ModelConfig) -> HostTensor {
    let hd = config.head_dim();
    HostTensor {
        shape: vec![hd / 2],
        values: (0..hd / 2)
            .map(|i| (1.0 / config.rope_theta.powf(2.0 * i as f64 / hd as f64)) as f32)
            .collect(),
    }
}
