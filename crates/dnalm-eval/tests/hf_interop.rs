//! Golden tests against `transformers` itself (issue 5: interoperability).
//!
//! `tests/golden/hf/{dnabert6,nt6,esm_rotary,llama}` are tiny random checkpoints that
//! `scripts/hf_interop.py make` created with `transformers` (BERT as DNABERT, ESM as Nucleotide
//! Transformer v1 and as ESM-2, Llama), with the token ids its stock tokenizers gave and the last
//! hidden states and logits its models gave on fixed DNA. dnalm must load each directory as it is
//! and match: token ids exactly, hidden states and logits within 1e-4.
//!
//! `tests/golden/hf/esm_rotary_lora` is a LoRA adapter PEFT made on `esm_rotary`
//! (`scripts/hf_interop.py make-peft`), with the PeftModel's outputs; dnalm must load it on its
//! base and match them.
//!
//! `tests/golden/hf/export/*` are dnalm models saved by dnalm (`write_export_fixtures`, run by
//! `scripts/hf_interop.sh`) with dnalm's logits; `scripts/hf_interop.py check` loads them with
//! `transformers`' stock classes and compares, and `exported_models_still_give_their_logits`
//! checks that dnalm still reads them back to the same logits. `tests/golden/hf/export_peft/*` is
//! a dnalm LoRA adapter on `export/encoder_rotary` in PEFT's layout, which `check` loads with
//! `peft.PeftModel.from_pretrained`.

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, path::PathBuf};

use dnalm_model::{
    burn::tensor::Tensor,
    cpu,
    tensors::{named_parameters, HostTensor},
    AttentionMask, DnaLm, ModelInput,
};
use dnalm_tokenize::{AnyTokenizer, Template, Tokenizer, TokenizerKind};
use safetensors::{Dtype, SafeTensors};

const TOLERANCE: f32 = 1e-4;

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/hf")
}

/// A tensor of the fixture file: integer tensors as i64, float ones as f32.
enum Value {
    Int(Vec<i64>, Vec<usize>),
    Float(Vec<f32>),
}

fn read_expected(dir: &std::path::Path) -> BTreeMap<String, Value> {
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let shape = view.shape().to_vec();
            let value = match view.dtype() {
                Dtype::I64 => Value::Int(
                    view.data()
                        .chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                        .collect(),
                    shape,
                ),
                Dtype::F32 => Value::Float(
                    view.data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                        .collect(),
                ),
                other => panic!("{name}: unexpected dtype {other:?}"),
            };
            (name, value)
        })
        .collect()
}

fn ints(e: &BTreeMap<String, Value>, name: &str) -> (Vec<i64>, [usize; 2]) {
    match &e[name] {
        Value::Int(v, s) => (v.clone(), [s[0], s[1]]),
        Value::Float(..) => panic!("{name} is not an integer tensor"),
    }
}

fn floats(e: &BTreeMap<String, Value>, name: &str) -> Vec<f32> {
    match &e[name] {
        Value::Float(v) => v.clone(),
        Value::Int(..) => panic!("{name} is not a float tensor"),
    }
}

fn sequences(dir: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("inputs.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The model's last hidden state and logits, `[rows * len, d]` and `[rows * len, vocab]`.
fn run(model: &DnaLm, ids: &[i64], mask: &[i64], [rows, len]: [usize; 2]) -> (Vec<f32>, Vec<f32>) {
    let pattern = model.config.architecture.attention_pattern();
    let input = ModelInput {
        rows,
        len,
        input_ids: ids.iter().map(|&i| i as u32).collect(),
        position_ids: (0..rows).flat_map(|_| 0..len as u32).collect(),
        mask: AttentionMask {
            padding: Some(mask.iter().map(|&m| m == 1).collect()),
            pattern,
        },
        dropout_seed: None,
    };
    let hidden = model.forward(&input).unwrap();
    let d = model.config.d_model;
    let flat: Tensor<2> = hidden.reshape([rows * len, d]);
    let logits = model.lm_logits(flat.clone());
    (HostTensor::of(&flat).values, HostTensor::of(&logits).values)
}

/// Largest difference at real (unpadded) positions.
fn max_diff(got: &[f32], want: &[f32], mask: &[i64], width: usize) -> f32 {
    assert_eq!(got.len(), want.len(), "sizes differ");
    let mut worst = 0f32;
    for (p, &m) in mask.iter().enumerate() {
        if m == 1 {
            for j in 0..width {
                worst = worst.max((got[p * width + j] - want[p * width + j]).abs());
            }
        }
    }
    worst
}

fn check_fixture(name: &str, tokenized: bool) {
    let dir = golden().join(name);
    let expected = read_expected(&dir);
    let (mask, _) = ints(&expected, "attention_mask");
    if tokenized {
        let tokenizer = AnyTokenizer::load(&dir).unwrap();
        let (token_ids, [_, len]) = ints(&expected, "token_ids");
        for (r, seq) in sequences(&dir).iter().enumerate() {
            let got: Vec<i64> = tokenizer
                .encode(seq.as_bytes())
                .ids
                .iter()
                .map(|&i| i as i64)
                .collect();
            let real = mask[r * len..(r + 1) * len]
                .iter()
                .filter(|&&m| m == 1)
                .count();
            assert_eq!(
                got,
                token_ids[r * len..r * len + real],
                "{name}: sequence {r} ids"
            );
        }
    }
    check_outputs(name, &DnaLm::load(&dir, &cpu()).unwrap(), &expected);
}

/// The model's last hidden state and logits on the fixture's inputs match the expected ones.
fn check_outputs(name: &str, model: &DnaLm, expected: &BTreeMap<String, Value>) {
    let (ids, shape) = ints(expected, "input_ids");
    let (mask, _) = ints(expected, "attention_mask");
    let (hidden, logits) = run(model, &ids, &mask, shape);
    let d = model.config.d_model;
    let h = max_diff(&hidden, &floats(expected, "last_hidden_state"), &mask, d);
    let l = max_diff(
        &logits,
        &floats(expected, "logits"),
        &mask,
        model.config.vocab_size,
    );
    eprintln!("{name}: max |hidden difference| {h:.1e}, max |logit difference| {l:.1e}");
    assert!(
        h <= TOLERANCE && l <= TOLERANCE,
        "{name}: hidden {h:e}, logits {l:e}"
    );
}

#[test]
fn dnabert_bert_for_masked_lm_matches_transformers() {
    check_fixture("dnabert6", true);
}

#[test]
fn nucleotide_transformer_esm_matches_transformers() {
    check_fixture("nt6", true);
    // NT's tokenizer lists <eos> and <bos> beyond the 4,105 embedded tokens and never emits them.
    let dir = golden().join("nt6");
    let tokenizer = AnyTokenizer::load(&dir).unwrap();
    assert_eq!(tokenizer.vocab().len(), 4107);
    assert_eq!(tokenizer.template(), Template::Cls);
    assert_eq!(
        tokenizer.kind(),
        TokenizerKind::Kmer {
            k: 6,
            overlapping: false
        }
    );
    assert!(dnalm_model::Checkpoint::load(&dir, &dnalm_model::cpu()).is_ok());
}

#[test]
fn esm2_rotary_matches_transformers() {
    check_fixture("esm_rotary", true);
}

/// `esm_rotary_lora`: a LoRA adapter PEFT made on `esm_rotary` (`scripts/hf_interop.py
/// make-peft`: query, value and intermediate.dense, r = 2, alpha = 6), as `save_pretrained`
/// wrote it. dnalm opens the directory as a model (the base with the adapter attached) and
/// gives the PeftModel's hidden states and logits.
#[test]
fn a_peft_lora_adapter_matches_peft() {
    let dir = golden().join("esm_rotary_lora");
    let model = dnalm_model::Checkpoint::load(&dir, &cpu()).unwrap().model;
    assert_eq!(dnalm_model::lora::adapter_tensors(&model).len(), 2 * 3 * 2);
    check_outputs("esm_rotary_lora", &model, &read_expected(&dir));
}

#[test]
fn llama_matches_transformers() {
    check_fixture("llama", false);
}

#[test]
fn exported_models_still_give_their_logits() {
    let export = golden().join("export");
    let mut checked = 0;
    for entry in std::fs::read_dir(&export).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        check_logits(&name, &dir, &DnaLm::load(&dir, &cpu()).unwrap());
        checked += 1;
    }
    assert_eq!(checked, 3, "expected three exported models");
}

/// Writes `tests/golden/hf/export/*`: dnalm models in the three layouts it exports (ESM with
/// rotary and with learned positions, Llama), their tokenizers and dnalm's logits on fixed DNA.
/// Run by `scripts/hf_interop.sh` (`cargo test ... -- --ignored write_export_fixtures`).
#[test]
#[ignore = "writes fixtures; run by scripts/hf_interop.sh"]
fn write_export_fixtures() {
    use dnalm_model::{Architecture, ModelConfig, PositionEncoding};
    let seqs = ["GGGCGGCGACCTCGCGGGTTTTCGCTATTTATG", "ACGTNACGGT"];
    let cases = [
        (
            "encoder_rotary",
            Architecture::Encoder,
            PositionEncoding::Rotary,
            TokenizerKind::Nucleotide,
        ),
        (
            "encoder_learned",
            Architecture::Encoder,
            PositionEncoding::Learned,
            TokenizerKind::Kmer {
                k: 3,
                overlapping: false,
            },
        ),
        (
            "decoder",
            Architecture::Decoder,
            PositionEncoding::Rotary,
            TokenizerKind::Nucleotide,
        ),
    ];
    for (name, architecture, position, kind) in cases {
        let template = if architecture.is_causal() {
            Template::Causal
        } else {
            Template::Bert
        };
        let tokenizer = AnyTokenizer::new(kind, template).unwrap();
        let s = *tokenizer.special_ids();
        let config = ModelConfig {
            n_layers: 2,
            d_model: 16,
            n_heads: 2,
            d_ffn: 32,
            max_positions: 48,
            position,
            tie_embeddings: architecture == Architecture::Encoder,
            pad_token_id: s.pad,
            mask_token_id: s.mask,
            bos_token_id: s.bos,
            eos_token_id: s.eos,
            ..ModelConfig::new(architecture, tokenizer.vocab().len())
        };
        let mut model = DnaLm::seeded(&config, &cpu(), 7).unwrap();
        // Non-zero biases and norms, so that a wrong mapping cannot hide behind zeros and ones.
        let mut params = dnalm_model::tensors::named_parameters(&model);
        for (i, t) in params.values_mut().enumerate() {
            for (j, v) in t.values.iter_mut().enumerate() {
                *v += 0.05 * (((i * 31 + j * 17) % 13) as f32 / 13.0 - 0.5);
            }
        }
        model =
            dnalm_model::io::load_parameters(model, &params, std::path::Path::new("-")).unwrap();
        let dir = golden().join("export").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        model.save(&dir).unwrap();
        tokenizer.save(&dir).unwrap();
        let rows: Vec<Vec<u32>> = seqs
            .iter()
            .map(|q| tokenizer.encode(q.as_bytes()).ids)
            .collect();
        let len = rows.iter().map(Vec::len).max().unwrap();
        let pad = s.pad.unwrap_or(0) as i64;
        let mut ids = Vec::new();
        let mut mask = Vec::new();
        for r in &rows {
            ids.extend(r.iter().map(|&i| i as i64));
            ids.extend(std::iter::repeat_n(pad, len - r.len()));
            mask.extend(std::iter::repeat_n(1i64, r.len()));
            mask.extend(std::iter::repeat_n(0i64, len - r.len()));
        }
        let shape = [rows.len(), len];
        let (_, logits) = run(&model, &ids, &mask, shape);
        write_expected(&dir, &ids, &mask, shape, &logits, config.vocab_size);
        let inputs = serde_json::json!({"sequences": seqs});
        std::fs::write(dir.join("inputs.json"), inputs.to_string() + "\n").unwrap();
        if name == "encoder_rotary" {
            write_adapter_fixture(&model, &ids, &mask, shape);
        }
    }
    for (family, targets) in [("dnabert2", "q,v,ffn"), ("nt_v2", "q,ffn")] {
        write_packed_adapter_fixture(family, targets);
    }
}

/// `base` with LoRA on `targets` (r = 2, alpha = 4), its B factors set non-zero, and the
/// adapter settings that point at `base_dir`.
fn nonzero_adapter(
    base: &DnaLm,
    targets: &str,
    base_dir: &str,
) -> (DnaLm, dnalm_model::lora::AdapterInfo) {
    use dnalm_model::lora::{adapter_tensors, AdapterInfo, LoraSpec};
    let spec: LoraSpec = format!("r=2,alpha=4,targets={targets}").parse().unwrap();
    let model = base.clone().with_lora(&spec, 3).unwrap();
    let mut params = named_parameters(&model);
    for (name, t) in params.iter_mut().filter(|(n, _)| n.ends_with(".lora.b")) {
        for (j, v) in t.values.iter_mut().enumerate() {
            *v = 0.2 * (((name.len() * 7 + j * 11) % 13) as f32 / 13.0 - 0.5);
        }
    }
    let model =
        dnalm_model::io::load_parameters(model, &params, std::path::Path::new("-")).unwrap();
    let info = AdapterInfo {
        base_model: base_dir.into(),
        lora: LoraSpec {
            targets: targets.split(',').map(str::to_string).collect(),
            ..spec
        },
        parameters: adapter_tensors(&model)
            .into_keys()
            .filter_map(|k| k.strip_suffix(".lora.a").map(str::to_string))
            .collect(),
    };
    (model, info)
}

/// The hub checkpoint of golden family `family` (`tests/golden/<family>/checkpoint`).
fn hub_checkpoint(family: &str) -> PathBuf {
    golden().join("..").join(family).join("checkpoint")
}

/// `export_peft/<family>_lora`: a LoRA adapter on the family's hub checkpoint whose targets
/// include layers that pack several of dnalm's weights (DNABERT-2's `Wqkv` and
/// `mlp.gated_layers`, NT-v2's `intermediate.dense`), in PEFT's layout only, with
/// `merged.safetensors`: dnalm's merged weights of the adapted layers under the hub's names.
/// `scripts/hf_interop.py check` merges the adapter with PEFT itself and compares;
/// `packed_peft_adapters_merge_to_dnalms_weights` loads it with dnalm and compares.
fn write_packed_adapter_fixture(family: &str, targets: &str) {
    let base = dnalm_model::Checkpoint::load(&hub_checkpoint(family), &cpu())
        .unwrap()
        .model;
    let (model, info) = nonzero_adapter(&base, targets, &format!("../../../{family}/checkpoint"));
    let dir = golden().join(format!("export_peft/{family}_lora"));
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(info.save(&dir, &model).unwrap(), None, "a PEFT layout");
    // PEFT's files only: dnalm reads them as it reads an adapter PEFT made.
    for own in [
        dnalm_model::lora::ADAPTER_CONFIG,
        dnalm_model::lora::ADAPTER_FILE,
    ] {
        std::fs::remove_file(dir.join(own)).unwrap();
    }
    // The adapted layers' weights (the others are the base's).
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).unwrap())
            .unwrap();
    let adapted: Vec<String> = config["target_modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{}.weight", m.as_str().unwrap()))
        .collect();
    let mut merged = hub_weights(&model.merge_lora());
    merged.retain(|k, _| adapted.contains(k));
    dnalm_model::tensors::write_safetensors(&dir.join("merged.safetensors"), &merged, None)
        .unwrap();
}

/// `model`'s weights under its hub layout's names.
fn hub_weights(model: &DnaLm) -> BTreeMap<String, HostTensor> {
    dnalm_model::hf::export_weights(&model.config, &named_parameters(model))
        .unwrap()
        .0
}

/// dnalm reads the PEFT adapters on packed layers (`export_peft/{dnabert2,nt_v2}_lora`) onto
/// their hub checkpoints, and merging gives the weights PEFT's merge gives (which
/// `scripts/hf_interop.py check` compares with the same `merged.safetensors`).
///
/// `dnabert2_peft_lora` is the other way: an adapter PEFT itself made on the DNABERT-2
/// checkpoint's `Wqkv`, `gated_layers` (rank and alpha of their own, by `rank_pattern` and
/// `alpha_pattern`) and `wo`, with PEFT's merged weights (`scripts/hf_interop.py
/// make-peft-packed`); dnalm must merge it to the same weights.
#[test]
fn packed_peft_adapters_merge_to_dnalms_weights() {
    for (name, family, tolerance) in [
        ("export_peft/dnabert2_lora", "dnabert2", 1e-6),
        ("export_peft/nt_v2_lora", "nt_v2", 1e-6),
        ("dnabert2_peft_lora", "dnabert2", 1e-5),
    ] {
        let dir = golden().join(name);
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        // A packed layer has a rank of its own (dnalm's export: two parts of r = 2).
        assert!(
            config["rank_pattern"]
                .as_object()
                .is_some_and(|p| !p.is_empty() && p.values().all(|r| r == 4 || r == 3)),
            "{name}: {config}"
        );
        let model = dnalm_model::Checkpoint::load(&dir, &cpu()).unwrap().model;
        let got = hub_weights(&model.merge_lora());
        let want = dnalm_model::tensors::read_safetensors(&dir.join("merged.safetensors")).unwrap();
        let base = hub_weights(
            &dnalm_model::Checkpoint::load(&hub_checkpoint(family), &cpu())
                .unwrap()
                .model,
        );
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            base.keys().collect::<Vec<_>>()
        );
        let mut gap = 0.0f32;
        for (k, t) in &got {
            // The adapted layers as stored, every other tensor as the base has it.
            let reference = want.get(k).unwrap_or(&base[k]);
            assert_eq!(t.shape, reference.shape, "{name}: {k}");
            for (x, y) in t.values.iter().zip(&reference.values) {
                gap = gap.max((x - y).abs());
            }
        }
        assert!(
            gap <= tolerance,
            "{name}: merged weights {gap:e} from the stored ones"
        );
        // The adapter moved the weights it targets.
        let moved = want
            .iter()
            .filter(|(k, t)| t.values != base[*k].values)
            .count();
        assert!(moved >= 4, "{name}: {moved} tensors moved");
    }
}

/// `export_peft/encoder_rotary_lora`: a LoRA adapter (q, v and the feed-forward network, r = 2,
/// B factors set non-zero) on `export/encoder_rotary`, saved by dnalm in PEFT's layout too, with
/// dnalm's logits; `scripts/hf_interop.py check` loads it with `PeftModel.from_pretrained`.
fn write_adapter_fixture(base: &DnaLm, ids: &[i64], mask: &[i64], shape: [usize; 2]) {
    let (model, info) = nonzero_adapter(base, "q,v,ffn", "../../export/encoder_rotary");
    let dir = golden().join("export_peft/encoder_rotary_lora");
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(info.save(&dir, &model).unwrap(), None, "a PEFT layout");
    let (_, logits) = run(&model, ids, mask, shape);
    write_expected(&dir, ids, mask, shape, &logits, model.config.vocab_size);
}

/// Writes `expected.safetensors`: the inputs and dnalm's logits.
fn write_expected(
    dir: &std::path::Path,
    ids: &[i64],
    mask: &[i64],
    shape: [usize; 2],
    logits: &[f32],
    vocab: usize,
) {
    let int_bytes = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let float_bytes: Vec<u8> = logits.iter().flat_map(|x| x.to_le_bytes()).collect();
    let (id_bytes, mask_bytes) = (int_bytes(ids), int_bytes(mask));
    let views = vec![
        (
            "input_ids",
            safetensors::tensor::TensorView::new(Dtype::I64, shape.to_vec(), &id_bytes).unwrap(),
        ),
        (
            "attention_mask",
            safetensors::tensor::TensorView::new(Dtype::I64, shape.to_vec(), &mask_bytes).unwrap(),
        ),
        (
            "logits",
            safetensors::tensor::TensorView::new(
                Dtype::F32,
                vec![shape[0], shape[1], vocab],
                &float_bytes,
            )
            .unwrap(),
        ),
    ];
    safetensors::serialize_to_file(views, None, &dir.join("expected.safetensors")).unwrap();
}

/// dnalm still reads its exported adapter (its own files) to the same logits.
#[test]
fn the_exported_adapter_still_gives_its_logits() {
    let dir = golden().join("export_peft/encoder_rotary_lora");
    let model = dnalm_model::Checkpoint::load(&dir, &cpu()).unwrap().model;
    check_logits("encoder_rotary_lora", &dir, &model);
}

/// `model`'s logits on the inputs of `dir/expected.safetensors` match the stored ones.
fn check_logits(name: &str, dir: &std::path::Path, model: &DnaLm) {
    let expected = read_expected(dir);
    let (ids, shape) = ints(&expected, "input_ids");
    let (mask, _) = ints(&expected, "attention_mask");
    let (_, logits) = run(model, &ids, &mask, shape);
    let l = max_diff(
        &logits,
        &floats(&expected, "logits"),
        &mask,
        model.config.vocab_size,
    );
    assert!(l <= TOLERANCE, "{name}: logits {l:e}");
}

/// `dnalm convert` of every hub fixture: the output loads to the same parameters, and an
/// existing output directory is refused.
#[test]
fn a_converted_checkpoint_loads_to_the_same_model() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let out = tempfile::tempdir().unwrap();
    for name in [
        "hf/dnabert6",
        "hf/nt6",
        "hf/esm_rotary",
        "dnabert2/checkpoint",
        "nt_v2/checkpoint",
    ] {
        let src = root.join(name);
        let dst = out.path().join(name);
        let report = dnalm_model::convert::convert(&src, &dst).unwrap();
        assert!(report.exported_as.is_ok(), "{name}: {report:?}");
        let a = named_parameters(&DnaLm::load(&src, &dnalm_model::cpu()).unwrap());
        let b = named_parameters(&DnaLm::load(&dst, &dnalm_model::cpu()).unwrap());
        for (k, v) in &a {
            if k.starts_with("deletion_head") || k == "query_stream" {
                continue;
            }
            assert_eq!(v, &b[k], "{name}: {k}");
        }
        assert!(dnalm_model::convert::convert(&src, &dst)
            .unwrap_err()
            .to_string()
            .contains("already exists"));
    }
}
