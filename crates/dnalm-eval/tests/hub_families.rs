//! Golden tests against the hub families' own reference code: DNABERT-2 (`bert_layers.py`) and
//! Nucleotide Transformer v2 (`modeling_esm.py`) (issue 15), HyenaDNA (`modeling_hyena.py`) and
//! Caduceus-PS (`modeling_caduceus.py`, `modeling_rcps.py`) (issue 16).
//!
//! `tests/golden/{dnabert2,nt_v2,hyenadna,caduceus}` are copies of `shared/golden/<family>/`: tiny random-weight
//! checkpoints in each family's hub layout, with the token ids, last hidden states and logits the
//! family's code produced (see each README for provenance). dnalm must load each checkpoint as it
//! is and match: token ids exactly, hidden states and logits within 1e-4, alone and in a padded
//! batch; and what dnalm writes back must be the hub layout again (same tensor names and shapes)
//! and load to the same outputs.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use dnalm_model::{
    cpu,
    hf::HfFamily,
    tensors::{read_safetensors, HostTensor},
    AttentionMask, AttentionPattern, DnaLm, ModelInput,
};
use dnalm_tokenize::{AnyTokenizer, Tokenizer};
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;

fn fixture(family: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(family)
}

fn inputs(family: &str) -> Value {
    let text = std::fs::read_to_string(fixture(family).join("inputs.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

fn expected(family: &str) -> BTreeMap<String, HostTensor> {
    read_safetensors(&fixture(family).join("expected.safetensors")).unwrap()
}

/// Last hidden states `[rows * len, d]` and logits `[rows * len, vocab]` for padded rows.
fn run(model: &DnaLm, rows: &[Vec<u32>], real: &[Vec<bool>]) -> (HostTensor, HostTensor) {
    let len = rows[0].len();
    let input = ModelInput {
        rows: rows.len(),
        len,
        input_ids: rows.concat(),
        position_ids: (0..rows.len()).flat_map(|_| 0..len as u32).collect(),
        mask: AttentionMask {
            padding: Some(real.concat()),
            pattern: AttentionPattern::Bidirectional,
        },
        dropout_seed: None,
    };
    let hidden = model.forward(&input).unwrap();
    let flat = hidden.reshape([rows.len() * len, model.config.hidden_size()]);
    let logits = model.lm_logits(flat.clone());
    (HostTensor::of(&flat), HostTensor::of(&logits))
}

fn max_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "sizes differ");
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Each sequence alone: ids exactly, hidden states and logits within the tolerance.
fn check_sequences(family: &str, model: &DnaLm, tokenizer: &AnyTokenizer) {
    let inputs = inputs(family);
    let expected = expected(family);
    for s in inputs["sequences"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        let want_ids = ids(&s["input_ids"]);
        let got_ids = tokenizer
            .encode(s["sequence"].as_str().unwrap().as_bytes())
            .ids;
        assert_eq!(got_ids, want_ids, "{family} {name}: token ids");
        let (hidden, logits) = run(
            model,
            std::slice::from_ref(&want_ids),
            &[vec![true; want_ids.len()]],
        );
        let h = max_diff(
            &hidden.values,
            &expected[&format!("{name}.last_hidden_state")].values,
        );
        let l = max_diff(&logits.values, &expected[&format!("{name}.logits")].values);
        eprintln!(
            "{family} {name}: max |hidden difference| {h:.1e}, max |logit difference| {l:.1e}"
        );
        assert!(
            h <= TOLERANCE && l <= TOLERANCE,
            "{family} {name}: hidden {h:e}, logits {l:e}"
        );
    }
}

/// The padded batch; `all_positions` compares padded positions too (DNABERT-2's are zero).
fn check_batch(family: &str, model: &DnaLm, all_positions: bool) {
    let inputs = inputs(family);
    let batch = &inputs["batch"];
    let rows: Vec<Vec<u32>> = batch["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids)
        .collect();
    // HyenaDNA takes no attention mask: its left padding is processed like any token.
    let real: Vec<Vec<bool>> = match batch["attention_mask"].as_array() {
        Some(masks) => masks
            .iter()
            .map(|m| ids(m).into_iter().map(|v| v == 1).collect())
            .collect(),
        None => rows.iter().map(|r| vec![true; r.len()]).collect(),
    };
    let (hidden, _) = run(model, &rows, &real);
    let want = &expected(family)["batch.last_hidden_state"];
    let d = model.config.hidden_size();
    let mut worst = 0f32;
    for (p, &is_real) in real.concat().iter().enumerate() {
        if is_real || all_positions {
            let span = p * d..(p + 1) * d;
            worst = worst.max(max_diff(&hidden.values[span.clone()], &want.values[span]));
        }
    }
    eprintln!("{family} batch: max |hidden difference| {worst:.1e}");
    assert!(worst <= TOLERANCE, "{family} batch: {worst:e}");
}

/// dnalm writes the checkpoint back in the hub layout (same tensor names and shapes as the
/// reference's state dict) and reads it back to the same outputs.
fn check_export(family: &str, model: &DnaLm, tokenizer: &AnyTokenizer) {
    let out = tempfile::tempdir().unwrap();
    model.save(out.path()).unwrap();
    tokenizer.save(out.path()).unwrap();
    // Caduceus' complement maps are buffers its code builds from `config.json`; dnalm checks
    // them on import and does not write them.
    let shapes = |dir: &Path| -> BTreeMap<String, Vec<usize>> {
        read_safetensors(&dir.join("model.safetensors"))
            .unwrap()
            .into_iter()
            .filter(|(k, _)| !k.ends_with("complement_map"))
            .map(|(k, v)| (k, v.shape))
            .collect()
    };
    assert_eq!(
        shapes(out.path()),
        shapes(&fixture(family).join("checkpoint")),
        "{family}: exported tensors"
    );
    // The hub keys that pick the code and the layout are all there, with the same values.
    let read = |dir: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
    };
    let (ours, hub) = (read(out.path()), read(&fixture(family).join("checkpoint")));
    for key in [
        "hidden_size",
        "num_attention_heads",
        "num_hidden_layers",
        "intermediate_size",
        "vocab_size",
        "max_position_embeddings",
        "alibi_starting_size",
        "add_bias_fnn",
        "position_embedding_type",
        "tie_word_embeddings",
        "emb_layer_norm_before",
        "token_dropout",
        "d_model",
        "n_layer",
        "d_inner",
        "max_seq_len",
        "emb_dim",
        "filter_order",
        "num_inner_mlps",
        "short_filter_order",
        "hyena_order",
        "train_freq",
        "rcps",
        "fused_add_norm",
        "rms_norm",
        "bidirectional",
        "bidirectional_strategy",
        "bidirectional_weight_tie",
        "norm_epsilon",
    ] {
        // HyenaDNA pads `vocab_size` (12) up to a multiple of 8 rows; dnalm keeps and writes
        // the padded count (16), which the hub code reads as the same 16-row tables.
        if family == "hyenadna" && key == "vocab_size" {
            assert_eq!(ours[key], 16);
            continue;
        }
        if let Some(want) = hub.get(key) {
            assert_eq!(ours.get(key), Some(want), "{family}: config.json {key}");
        }
    }
    assert_eq!(
        ours["architectures"][0], hub["architectures"][0],
        "{family}"
    );
    // Caduceus' code reads the complement map's values in file order, which must be the order
    // of the token ids (the hub file's). serde_json keeps keys sorted as strings, so the export
    // zero-pads them: its values in key order are the hub's in numeric key order.
    if let (Some(ours), Some(hub)) = (
        ours.get("complement_map").and_then(Value::as_object),
        hub.get("complement_map").and_then(Value::as_object),
    ) {
        let mut by_id: Vec<(usize, Value)> = hub
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.clone()))
            .collect();
        by_id.sort_by_key(|(k, _)| *k);
        let hub_values: Vec<Value> = by_id.into_iter().map(|(_, v)| v).collect();
        let our_values: Vec<Value> = ours.values().cloned().collect();
        assert_eq!(
            our_values, hub_values,
            "{family}: complement_map in file order"
        );
    }
    assert_eq!(ours.get("model_type"), hub.get("model_type"), "{family}");
    let back = DnaLm::load(out.path(), &cpu()).unwrap();
    let back_tokenizer = AnyTokenizer::load(out.path()).unwrap();
    check_sequences(family, &back, &back_tokenizer);
}

/// A temporary copy of `family`'s fixture checkpoint, changed by `edit`.
fn edited_copy(family: &str, edit: &dyn Fn(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(fixture(family).join("checkpoint")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.path().join(f.file_name())).unwrap();
    }
    edit(dir.path());
    dir
}

/// An edit that sets `key` of `config.json` to `value`.
fn set(key: &'static str, value: Value) -> impl Fn(&Path) {
    move |dir: &Path| {
        let path = dir.join("config.json");
        let mut config: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config[key] = value.clone();
        std::fs::write(&path, config.to_string()).unwrap();
    }
}

#[test]
fn dnabert2_matches_its_reference_code() {
    let dir = fixture("dnabert2").join("checkpoint");
    let (model, report) = DnaLm::load_with_report(&dir, &cpu()).unwrap();
    assert!(report.fresh.is_empty(), "{report:?}");
    let c = &model.config;
    assert!(c.extrapolates() && c.zero_padding && c.token_type_embedding && c.post_norm);
    assert_eq!(HfFamily::of(c), Ok(HfFamily::DnaBert2));
    let tokenizer = AnyTokenizer::load(&dir).unwrap();
    check_sequences("dnabert2", &model, &tokenizer);
    check_batch("dnabert2", &model, true);
    check_export("dnabert2", &model, &tokenizer);
}

#[test]
fn dnabert2_extrapolates_past_its_trained_length() {
    // ALiBi has no position table: the reference rebuilds its bias for longer inputs, and so
    // does dnalm. 40 tokens here, beyond a shrunk trained length of 16.
    let dir = fixture("dnabert2").join("checkpoint");
    let mut model = DnaLm::load(&dir, &cpu()).unwrap();
    model.config.max_positions = 16;
    let row: Vec<u32> = (0..40).map(|i| 5 + i * 7).collect();
    let (hidden, _) = run(&model, &[row], &[vec![true; 40]]);
    assert!(hidden.values.iter().all(|v| v.is_finite()));
}

#[test]
fn nt_v2_matches_its_reference_code() {
    let dir = fixture("nt_v2").join("checkpoint");
    let (model, report) = DnaLm::load_with_report(&dir, &cpu()).unwrap();
    assert!(report.fresh.is_empty(), "{report:?}");
    // The unused position table, the contact head and the rotary buffers are skipped.
    assert!(
        report
            .skipped
            .iter()
            .any(|k| k == "esm.embeddings.position_embeddings.weight"),
        "{report:?}"
    );
    assert_eq!(HfFamily::of(&model.config), Ok(HfFamily::NtV2));
    let tokenizer = AnyTokenizer::load(&dir).unwrap();
    assert_eq!(tokenizer.template(), dnalm_tokenize::Template::Cls);
    check_sequences("nt_v2", &model, &tokenizer);
    check_batch("nt_v2", &model, false);
    check_export("nt_v2", &model, &tokenizer);
}

#[test]
fn hyenadna_matches_its_reference_code() {
    let dir = fixture("hyenadna").join("checkpoint");
    let (model, report) = DnaLm::load_with_report(&dir, &cpu()).unwrap();
    assert!(report.fresh.is_empty(), "{report:?}");
    let c = &model.config;
    assert_eq!(c.architecture, dnalm_model::Architecture::Hyena);
    assert_eq!(
        (c.vocab_size, c.max_positions, c.tie_embeddings),
        (16, 256, false)
    );
    assert_eq!(HfFamily::of(c), Ok(HfFamily::HyenaDna));
    // No vocabulary file: the tokenizer is recognised by its class.
    let tokenizer = AnyTokenizer::load(&dir).unwrap();
    assert_eq!(tokenizer.template(), dnalm_tokenize::Template::Sep);
    // Case-sensitive, as the hub code: a lower-case base is [UNK] (6).
    assert_eq!(tokenizer.encode(b"aC").ids, vec![6, 8, 1]);
    check_sequences("hyenadna", &model, &tokenizer);
    check_batch("hyenadna", &model, true);
    check_export("hyenadna", &model, &tokenizer);
}

/// HyenaDNA's buffers are fixed by the config; a checkpoint whose buffers differ is refused by
/// name, and so is a config option dnalm does not run.
#[test]
fn hyenadna_refuses_what_it_does_not_run() {
    let copy = |edit: &dyn Fn(&Path)| {
        let dir = edited_copy("hyenadna", edit);
        DnaLm::load(dir.path(), &cpu()).unwrap_err().to_string()
    };
    let err = copy(&set("hyena_order", Value::from(3)));
    assert!(
        err.contains("hyena_order") && err.contains("order 2"),
        "{err}"
    );
    let err = copy(&set("train_freq", Value::Bool(false)));
    assert!(err.contains("train_freq"), "{err}");
    let err = copy(&set("short_filter_order", Value::from(5)));
    assert!(err.contains("short_filter"), "{err}");
    let err = copy(&set("layer_norm_epsilon", Value::from(1e-6)));
    assert!(err.contains("layer_norm_epsilon"), "{err}");
    let err = copy(&|dir: &Path| {
        let path = dir.join("model.safetensors");
        let mut tensors = read_safetensors(&path).unwrap();
        let key = "hyena.backbone.layers.1.mixer.filter_fn.modulation.deltas";
        tensors.get_mut(key).unwrap().values[3] += 0.5;
        dnalm_model::tensors::write_safetensors(&path, &tensors, None).unwrap();
    });
    assert!(
        err.contains("layers.1.mixer.filter_fn.modulation.deltas") && err.contains("fixed"),
        "{err}"
    );
}

#[test]
fn caduceus_matches_its_reference_code() {
    let dir = fixture("caduceus").join("checkpoint");
    let (model, report) = DnaLm::load_with_report(&dir, &cpu()).unwrap();
    assert!(report.fresh.is_empty(), "{report:?}");
    let c = &model.config;
    assert_eq!(c.architecture, dnalm_model::Architecture::Caduceus);
    let options = c.caduceus_options();
    assert!(options.rc_equivariant && options.swap_halves && options.bidirectional);
    assert_eq!((c.vocab_size, c.hidden_size()), (16, 64));
    assert_eq!(HfFamily::of(c), Ok(HfFamily::Caduceus));
    let tokenizer = AnyTokenizer::load(&dir).unwrap();
    assert_eq!(tokenizer.template(), dnalm_tokenize::Template::Sep);
    check_sequences("caduceus", &model, &tokenizer);
    // No attention mask: the left padding is processed like any token, as in the reference.
    check_batch("caduceus", &model, true);
    check_export("caduceus", &model, &tokenizer);
}

/// The reference's un-fused path (`fused_add_norm: false`, norms wrapped as `.submodule.`)
/// does not swap the stream's halves: a different function, which dnalm runs too; the fused
/// one is what the checkpoints were trained with. And options dnalm does not run are refused
/// by name.
#[test]
fn caduceus_reads_both_add_norm_paths_and_refuses_what_it_does_not_run() {
    let src = fixture("caduceus").join("checkpoint");
    let copy = |edit: &dyn Fn(&Path)| edited_copy("caduceus", edit);
    let unfused = copy(&|dir: &Path| {
        set("fused_add_norm", Value::Bool(false))(dir);
        let path = dir.join("model.safetensors");
        let tensors: BTreeMap<String, HostTensor> = read_safetensors(&path)
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                let k = k
                    .replace(".norm.weight", ".norm.submodule.weight")
                    .replace(".norm_f.weight", ".norm_f.submodule.weight");
                (k, v)
            })
            .collect();
        dnalm_model::tensors::write_safetensors(&path, &tensors, None).unwrap();
    });
    let fused = DnaLm::load(&src, &cpu()).unwrap();
    let model = DnaLm::load(unfused.path(), &cpu()).unwrap();
    assert!(!model.config.caduceus_options().swap_halves);
    let row = ids(&inputs("caduceus")["sequences"][1]["input_ids"]);
    let (a, _) = run(&fused, std::slice::from_ref(&row), &[vec![true; row.len()]]);
    let (b, _) = run(&model, std::slice::from_ref(&row), &[vec![true; row.len()]]);
    assert!(
        max_diff(&a.values, &b.values) > 1e-2,
        "the two paths differ"
    );
    let refused = |edit: &dyn Fn(&Path)| {
        let dir = copy(edit);
        DnaLm::load(dir.path(), &cpu()).unwrap_err().to_string()
    };
    let err = refused(&set("rms_norm", Value::Bool(false)));
    assert!(err.contains("rms_norm"), "{err}");
    let err = refused(&set("bidirectional_strategy", Value::from("ew_multiply")));
    assert!(err.contains("bidirectional_strategy"), "{err}");
    let err = refused(&set("bidirectional_weight_tie", Value::Bool(false)));
    assert!(err.contains("bidirectional_weight_tie"), "{err}");
    let err = refused(&set("ssm_cfg", serde_json::json!({"bias": true})));
    assert!(
        err.contains("ssm_cfg") && err.contains("bias = true"),
        "{err}"
    );
    let err = refused(&set("ssm_cfg", serde_json::json!({"conv_bias": false})));
    assert!(
        err.contains("ssm_cfg") && err.contains("conv_bias = false"),
        "{err}"
    );
    let err = refused(&set("ssm_cfg", serde_json::json!({"dt_rank": "big"})));
    assert!(err.contains("dt_rank"), "{err}");
    let err = refused(&|dir: &Path| {
        let path = dir.join("model.safetensors");
        let mut tensors = read_safetensors(&path).unwrap();
        let key = "lm_head.complement_map";
        tensors.get_mut(key).unwrap().values[7] = 9.0;
        dnalm_model::tensors::write_safetensors(&path, &tensors, None).unwrap();
    });
    assert!(err.contains("lm_head.complement_map"), "{err}");
}

#[test]
fn nt_v2_tokenizer_restarts_the_frame_after_n() {
    // seq1 holds an N at base 12: EsmTokenizer's trie starts a new 6-mer frame right after it
    // (fixed framing would give single bases up to the next multiple of 6).
    let dir = fixture("nt_v2").join("checkpoint");
    let tokenizer = AnyTokenizer::load(&dir).unwrap();
    let inputs = inputs("nt_v2");
    let s = &inputs["sequences"][1];
    let enc = tokenizer.encode(s["sequence"].as_str().unwrap().as_bytes());
    let tokens: Vec<&str> = enc
        .ids
        .iter()
        .map(|&i| tokenizer.vocab().token(i).unwrap())
        .collect();
    let want: Vec<&str> = s["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens, want);
    let fixed = &inputs["fixed_6mer_framing_for_comparison"]["seq1"]["tokens"];
    assert_ne!(fixed.as_array().unwrap().len(), want.len());
}

#[test]
fn hub_checkpoints_embed_through_the_cli_path() {
    for family in ["dnabert2", "nt_v2", "hyenadna", "caduceus"] {
        let dir = fixture(family).join("checkpoint");
        let encoder = dnalm_model::Checkpoint::load(&dir, &dnalm_model::cpu()).unwrap();
        let embedder =
            dnalm_eval::features::embed::Embedder::new(&encoder, Default::default()).unwrap();
        // Longer than the shrunk NT-v2 context (64 tokens) and HyenaDNA's (256): windows are
        // stitched.
        let long: Vec<u8> = b"GCAGCGCAACACCCTTAGGCATTACGNA".repeat(20);
        let vectors = embedder.embed(&[b"GCAGCGCAACACCCTTA", &long]).unwrap();
        for v in &vectors {
            assert_eq!(v.dim(), (1, encoder.width()), "{family}");
            assert!(v.iter().all(|x| x.is_finite()), "{family}");
        }
    }
}
