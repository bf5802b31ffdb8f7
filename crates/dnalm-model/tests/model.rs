//! Model behaviour: shapes, save/load, causality, position encodings, two-stream attention.
#![allow(clippy::unwrap_used)]

use dnalm_model::{
    burn::{
        module::Module,
        tensor::{Tensor, TensorData},
    },
    cpu,
    tensors::parameter_names,
    Architecture, AttentionMask, AttentionPattern, DnaLm, ModelConfig, ModelInput,
    PositionEncoding,
};

fn tiny(architecture: Architecture, position: PositionEncoding) -> ModelConfig {
    let mut cfg = ModelConfig::new(architecture, 11);
    cfg.n_layers = 2;
    cfg.d_model = 16;
    cfg.n_heads = 2;
    cfg.d_ffn = 32;
    cfg.max_positions = 32;
    cfg.position = position;
    cfg.attention_chunk = 3;
    cfg
}

fn values(t: Tensor<3>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn row(t: &Tensor<3>, r: usize, pos: usize) -> Vec<f32> {
    let [_, _, d] = t.dims();
    values(t.clone().slice([r..r + 1, pos..pos + 1, 0..d]))
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
}

#[test]
fn every_layout_runs_with_padding_and_its_shapes_are_right() {
    let device = cpu();
    for arch in [Architecture::Encoder, Architecture::Decoder] {
        for pos in [
            PositionEncoding::Rotary,
            PositionEncoding::Learned,
            PositionEncoding::Alibi,
        ] {
            let cfg = tiny(arch, pos);
            let model = DnaLm::new(&cfg, &device).unwrap();
            let input = ModelInput::from_rows(
                &[vec![2, 5, 6, 7, 8, 3], vec![2, 9, 10, 3]],
                AttentionPattern::Bidirectional,
            );
            let hidden = model.forward(&input).unwrap();
            assert_eq!(hidden.dims(), [2, 6, 16]);
            let flat = hidden.reshape([12, 16]);
            assert_eq!(model.lm_logits(flat.clone()).dims(), [12, 11]);
            assert_eq!(model.deletion_logits(flat).dims(), [12]);
            // Padding does not change the real tokens' states.
            let alone =
                ModelInput::from_rows(&[vec![2, 9, 10, 3]], AttentionPattern::Bidirectional);
            let h_alone = model.forward(&alone).unwrap();
            let h_batch = model.forward(&input).unwrap();
            for p in 0..4 {
                assert!(
                    close(&row(&h_alone, 0, p), &row(&h_batch, 1, p)),
                    "{arch:?} {pos:?} position {p}"
                );
            }
            assert_eq!(
                model.num_params(),
                cfg.parameter_count(),
                "{arch:?} {pos:?}"
            );
        }
    }
}

#[test]
fn causal_outputs_do_not_depend_on_later_tokens() {
    let device = cpu();
    let model = DnaLm::new(
        &tiny(Architecture::Decoder, PositionEncoding::Rotary),
        &device,
    )
    .unwrap();
    let a = ModelInput::from_rows(&[vec![5, 6, 7, 8, 9, 4, 4]], AttentionPattern::Causal);
    let mut b = a.clone();
    b.input_ids[5] = 10;
    let (ha, hb) = (model.forward(&a).unwrap(), model.forward(&b).unwrap());
    for p in 0..5 {
        assert!(close(&row(&ha, 0, p), &row(&hb, 0, p)), "position {p}");
    }
    assert!(!close(&row(&ha, 0, 5), &row(&hb, 0, 5)));
}

#[test]
fn bidirectional_outputs_do_depend_on_later_tokens() {
    let device = cpu();
    let model = DnaLm::new(
        &tiny(Architecture::Encoder, PositionEncoding::Rotary),
        &device,
    )
    .unwrap();
    let a = ModelInput::from_rows(&[vec![5, 6, 7, 8, 9]], AttentionPattern::Bidirectional);
    let mut b = a.clone();
    b.input_ids[4] = 10;
    let (ha, hb) = (model.forward(&a).unwrap(), model.forward(&b).unwrap());
    assert!(!close(&row(&ha, 0, 0), &row(&hb, 0, 0)));
}

#[test]
fn query_stream_never_sees_its_own_token() {
    let device = cpu();
    let model = DnaLm::new(
        &tiny(Architecture::Encoder, PositionEncoding::Rotary),
        &device,
    )
    .unwrap();
    let n = 5;
    // Order: positions 0, 1 are context; 2, 3, 4 predicted in the order 3, 2, 4 (ranks 0, 1, 2).
    let rank = [-1i32, -1, 1, 0, 2];
    let content: Vec<bool> = (0..n * n)
        .map(|ij| rank[ij % n] <= rank[ij / n].max(-1))
        .collect();
    let query: Vec<bool> = (0..n * n).map(|ij| rank[ij % n] < rank[ij / n]).collect();
    let base = ModelInput::from_rows(&[vec![5, 6, 7, 8, 9]], AttentionPattern::Bidirectional);
    let g = model
        .forward_two_stream(&base, content.clone(), query.clone())
        .unwrap();
    // Changing token 2 (rank 1) may change the query stream of token 4 (rank 2), never its own.
    let mut changed = base.clone();
    changed.input_ids[2] = 10;
    let g2 = model.forward_two_stream(&changed, content, query).unwrap();
    assert!(close(&row(&g, 0, 2), &row(&g2, 0, 2)));
    assert!(
        close(&row(&g, 0, 3), &row(&g2, 0, 3)),
        "rank 0 sees no predicted token"
    );
    assert!(!close(&row(&g, 0, 4), &row(&g2, 0, 4)));
}

#[test]
fn dense_mask_matches_causal_pattern() {
    let device = cpu();
    let model = DnaLm::new(
        &tiny(Architecture::Encoder, PositionEncoding::Alibi),
        &device,
    )
    .unwrap();
    let ids = vec![5, 6, 7, 8, 9, 10, 4];
    let n = ids.len();
    let causal = ModelInput::from_rows(std::slice::from_ref(&ids), AttentionPattern::Causal);
    let mut dense = causal.clone();
    dense.mask = AttentionMask {
        padding: None,
        pattern: AttentionPattern::Dense((0..n * n).map(|ij| ij % n <= ij / n).collect()),
    };
    let a = values(model.forward(&causal).unwrap());
    let b = values(model.forward(&dense).unwrap());
    assert!(close(&a, &b));
}

#[test]
fn save_and_load_give_the_same_outputs() {
    let device = cpu();
    let dir = tempfile::tempdir().unwrap();
    for arch in [Architecture::Encoder, Architecture::Decoder] {
        let mut cfg = tiny(arch, PositionEncoding::Rotary);
        cfg.tie_embeddings = arch == Architecture::Encoder;
        let model = DnaLm::new(&cfg, &device).unwrap();
        let path = dir.path().join(format!("{arch:?}"));
        model.save(&path).unwrap();
        let loaded = DnaLm::load(&path, &device).unwrap();
        let input = ModelInput::from_rows(&[vec![1, 2, 3, 4]], AttentionPattern::Bidirectional);
        let a = model.forward(&input).unwrap();
        let b = loaded.forward(&input).unwrap();
        assert_eq!(values(a.clone()), values(b.clone()));
        let la = model.lm_logits(a.reshape([4, 16]));
        let lb = loaded.lm_logits(b.reshape([4, 16]));
        assert_eq!(la.into_data(), lb.into_data());
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path.join("config.json")).unwrap())
                .unwrap();
        let expected = if arch == Architecture::Encoder {
            "esm"
        } else {
            "llama"
        };
        assert_eq!(json["model_type"], expected);
    }
}

#[test]
fn bad_weights_and_inputs_are_clear_errors() {
    let device = cpu();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny(Architecture::Encoder, PositionEncoding::Rotary);
    DnaLm::new(&cfg, &device).unwrap().save(dir.path()).unwrap();
    // A config whose shape disagrees with the weights.
    let mut other = cfg.clone();
    other.d_ffn = 48;
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    json["dnalm"] = serde_json::to_value(&other).unwrap();
    std::fs::write(dir.path().join("config.json"), json.to_string()).unwrap();
    let err = DnaLm::load(dir.path(), &device).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("shape"),
        "{err}"
    );

    // Missing and unexpected tensors are named (model.safetensors holds transformers' names).
    json["dnalm"] = serde_json::to_value(&cfg).unwrap();
    std::fs::write(dir.path().join("config.json"), json.to_string()).unwrap();
    let weights = dir.path().join("model.safetensors");
    let mut tensors = dnalm_model::tensors::read_safetensors(&weights).unwrap();
    let moved = tensors
        .remove("esm.encoder.emb_layer_norm_after.weight")
        .map(|t| ("extra.gamma".to_string(), t));
    if let Some((name, t)) = moved {
        tensors.insert(name, t);
    }
    dnalm_model::tensors::write_safetensors(&weights, &tensors, None).unwrap();
    let err = DnaLm::load(dir.path(), &device).unwrap_err().to_string();
    assert!(
        err.contains("missing tensor esm.encoder.emb_layer_norm_after.weight")
            && err.contains("unexpected tensor extra.gamma"),
        "{err}"
    );
    // A config.json of an unsupported transformers family is refused, naming the field.
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let err = DnaLm::load(dir.path(), &device).unwrap_err().to_string();
    assert!(
        err.contains("model_type") && err.contains("\"gpt2\" is not supported"),
        "{err}"
    );
    // No config.json at all.
    let empty = tempfile::tempdir().unwrap();
    let err = DnaLm::load(empty.path(), &device).unwrap_err().to_string();
    assert!(err.contains("no config.json"), "{err}");

    let model = DnaLm::new(&cfg, &device).unwrap();
    let input = ModelInput::from_rows(&[vec![1, 2, 99]], AttentionPattern::Bidirectional);
    let err = model.forward(&input).unwrap_err().to_string();
    assert!(err.contains("token id 99"), "{err}");
    let long = ModelInput::from_rows(&[vec![1; 40]], AttentionPattern::Bidirectional);
    assert!(model
        .forward(&long)
        .unwrap_err()
        .to_string()
        .contains("max_positions"));
}

#[test]
fn gradients_reach_every_parameter() {
    let device = cpu().autodiff();
    let model = DnaLm::new(
        &tiny(Architecture::Encoder, PositionEncoding::Learned),
        &device,
    )
    .unwrap();
    let input = ModelInput::from_rows(&[vec![2, 5, 6, 7, 3]], AttentionPattern::Bidirectional);
    let hidden = model.forward(&input).unwrap().reshape([5, 16]);
    let loss = model.lm_logits(hidden.clone()).sum() + model.deletion_logits(hidden).sum();
    let grads = loss.backward();
    let grads = dnalm_model::burn::optim::GradientsParams::from_grads(grads, &model);
    // Every parameter but the permutation query vector (unused here) has a gradient.
    let n_params = parameter_names(&model).len();
    assert_eq!(grads.len(), n_params - 1);
    let _ = TensorData::new(vec![0f32], [1]);
}

#[test]
fn task_heads_pool_only_real_tokens() {
    use dnalm_model::heads::{pool, Pooling, SequenceHead, TokenHead};
    let device = cpu();
    let model = DnaLm::new(
        &tiny(Architecture::Encoder, PositionEncoding::Rotary),
        &device,
    )
    .unwrap();
    let input = ModelInput::from_rows(
        &[vec![2, 5, 6, 3], vec![2, 7, 3]],
        AttentionPattern::Bidirectional,
    );
    let hidden = model.forward(&input).unwrap();
    let real: Vec<f32> = input
        .mask
        .padding
        .as_ref()
        .unwrap()
        .iter()
        .map(|&r| if r { 1.0 } else { 0.0 })
        .collect();
    let real = Tensor::<2>::from_data(TensorData::new(real, [2, 4]), &device);
    let mean = pool(hidden.clone(), real.clone(), Pooling::Mean);
    assert_eq!(mean.dims(), [2, 16]);
    // Row 1's mean is over its 3 real tokens only.
    let expected: Vec<f32> = (0..16)
        .map(|j| (0..3).map(|p| row(&hidden, 1, p)[j]).sum::<f32>() / 3.0)
        .collect();
    let got = mean
        .slice([1..2, 0..16])
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(close(&got, &expected));
    let max = pool(hidden.clone(), real.clone(), Pooling::Max);
    // The last real token: position 3 of row 0 (all real), position 2 of row 1 (padded after).
    let last = pool(hidden.clone(), real.clone(), Pooling::Last);
    for (r, p) in [(0, 3), (1, 2)] {
        let got = last
            .clone()
            .slice([r..r + 1, 0..16])
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(close(&got, &row(&hidden, r, p)), "row {r}");
    }
    // One-token rows: the last token is the only one.
    let first = hidden.clone().slice([0..2, 0..1, 0..16]);
    let one = pool(first, real.clone().slice([0..2, 0..1]), Pooling::Last);
    let got = one
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(close(&got[..16], &row(&hidden, 0, 0)) && close(&got[16..], &row(&hidden, 1, 0)));
    let cls = pool(hidden.clone(), real, Pooling::Cls);
    assert_eq!(
        cls.clone()
            .slice([0..1, 0..16])
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap(),
        row(&hidden, 0, 0)
    );
    assert_eq!(
        SequenceHead::new(16, 3, &device).forward(max).dims(),
        [2, 3]
    );
    assert_eq!(
        TokenHead::new(16, 5, &device).forward(hidden).dims(),
        [2, 4, 5]
    );
}

#[test]
fn rotary_positions_are_relative_only() {
    // With rotary encoding alone, shifting every position id by the same amount changes nothing;
    // with learned positions it does.
    let device = cpu();
    for (pos, same) in [
        (PositionEncoding::Rotary, true),
        (PositionEncoding::Learned, false),
    ] {
        let model = DnaLm::new(&tiny(Architecture::Encoder, pos), &device).unwrap();
        let a = ModelInput::from_rows(&[vec![2, 5, 6, 7, 8, 3]], AttentionPattern::Bidirectional);
        let mut b = a.clone();
        b.position_ids.iter_mut().for_each(|p| *p += 9);
        let (ha, hb) = (model.forward(&a).unwrap(), model.forward(&b).unwrap());
        assert_eq!(close(&values(ha), &values(hb)), same, "{pos:?}");
        // Positions are encoded at all: without them, reversing the input would reverse the
        // outputs.
        let fwd = ModelInput::from_rows(&[vec![5, 6, 7, 8]], AttentionPattern::Bidirectional);
        let rev = ModelInput::from_rows(&[vec![8, 7, 6, 5]], AttentionPattern::Bidirectional);
        let (hf, hr) = (model.forward(&fwd).unwrap(), model.forward(&rev).unwrap());
        assert!(!close(&row(&hf, 0, 0), &row(&hr, 0, 3)), "{pos:?}");
    }
}

/// The three ways weights reach `DnaLm::load` besides one `model.safetensors` in transformers'
/// names: shards listed by `model.safetensors.index.json`, dnalm's own names (checkpoints written
/// before the transformers layout, and configs with no transformers class), and a foreign
/// checkpoint without dnalm's heads, whose heads are then drawn from a fixed seed.
#[test]
fn sharded_native_and_headless_checkpoints_load() {
    use dnalm_model::tensors::{named_parameters, read_safetensors, write_safetensors};
    let device = cpu();
    let cfg = tiny(Architecture::Encoder, PositionEncoding::Rotary);
    let model = DnaLm::seeded(&cfg, &device, 5).unwrap();
    let want = named_parameters(&model);
    let same = |dir: &std::path::Path, skip_heads: bool| {
        let got = named_parameters(&DnaLm::load(dir, &device).unwrap());
        for (k, v) in &want {
            let head = k.starts_with("deletion_head") || k == "query_stream";
            if !(skip_heads && head) {
                assert_eq!(&got[k], v, "{k} in {}", dir.display());
            }
        }
        got
    };

    // Sharded: the same tensors in two files and an index.
    let sharded = tempfile::tempdir().unwrap();
    model.save(sharded.path()).unwrap();
    let all = read_safetensors(&sharded.path().join("model.safetensors")).unwrap();
    std::fs::remove_file(sharded.path().join("model.safetensors")).unwrap();
    let (first, second): (Vec<_>, Vec<_>) =
        all.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let mut map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", first),
        ("model-00002-of-00002.safetensors", second),
    ] {
        let part: std::collections::BTreeMap<_, _> = part.into_iter().map(|(_, kv)| kv).collect();
        for name in part.keys() {
            map.insert(name.clone(), file.into());
        }
        write_safetensors(&sharded.path().join(file), &part, None).unwrap();
    }
    std::fs::write(
        sharded.path().join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
    )
    .unwrap();
    same(sharded.path(), false);

    // dnalm's own names in model.safetensors.
    let native = tempfile::tempdir().unwrap();
    model.save(native.path()).unwrap();
    std::fs::remove_file(native.path().join("dnalm_heads.safetensors")).unwrap();
    write_safetensors(&native.path().join("model.safetensors"), &want, None).unwrap();
    same(native.path(), false);

    // No dnalm_heads.safetensors: the heads are drawn from seed 0, the same on every load.
    let headless = tempfile::tempdir().unwrap();
    model.save(headless.path()).unwrap();
    std::fs::remove_file(headless.path().join("dnalm_heads.safetensors")).unwrap();
    let a = same(headless.path(), true);
    let b = same(headless.path(), true);
    assert_eq!(a["query_stream"], b["query_stream"]);
    assert_ne!(a["query_stream"], want["query_stream"]);
}

/// Issue 14, item 7: the fused encoder layer is a per-model choice, not a process-wide switch,
/// so the two paths run side by side in one process (the old global could only be tested by
/// racing the other tests) and agree to float rounding.
#[test]
fn fused_and_reference_layers_run_side_by_side() {
    let device = cpu();
    let cfg = tiny(Architecture::Encoder, PositionEncoding::Rotary);
    let fused = DnaLm::seeded(&cfg, &device, 5).unwrap();
    assert!(fused.fused_layers);
    let reference = DnaLm::seeded(&cfg, &device, 5)
        .unwrap()
        .with_fused_layers(false);
    let input = ModelInput::from_rows(
        &[vec![2, 5, 6, 7, 8, 3], vec![2, 9, 10, 3]],
        AttentionPattern::Bidirectional,
    );
    let a = fused.forward(&input).unwrap();
    let b = reference.forward(&input).unwrap();
    let diff = (a - b).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-4, "{diff}");
    // The choice survives loading new weights into the model.
    let weights = dnalm_model::tensors::named_parameters(&fused);
    let reloaded =
        dnalm_model::io::load_parameters(reference, &weights, std::path::Path::new("w")).unwrap();
    assert!(!reloaded.fused_layers);
}
