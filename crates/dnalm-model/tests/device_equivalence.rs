//! The GPU path against the CPU: the same seeded model, on a fixed padded input, gives the same
//! hidden states, LM logits and gradients (of the embedding and every attention projection)
//! within 1e-3 relative on both devices (the CPU runs dnalm's fused encoder layer, the GPU
//! burn's own operations). The CPU's two paths are held to the same gradients here too.
//!
//! Runs on the device `DNALM_TEST_DEVICE` names (default `vulkan`). Where this build has no GPU
//! backend or the machine no such device, each test prints why and passes: CI has no GPU, and
//! `scripts/gpu_check.sh` runs this file on a GPU machine.
#![allow(clippy::unwrap_used)]

use dnalm_model::{
    burn::tensor::{Device, Tensor, TensorData},
    cpu, Architecture, AttentionPattern, DeviceName, DnaLm, ModelConfig, ModelInput,
    PositionEncoding,
};

/// The device under test, or `None` (with the reason printed) where there is none.
fn gpu() -> Option<Device> {
    let name = std::env::var("DNALM_TEST_DEVICE").unwrap_or_else(|_| "vulkan".into());
    let name: DeviceName = name.parse().unwrap();
    match name.open() {
        Ok(device) => {
            eprintln!("comparing cpu with {name}");
            Some(device)
        }
        Err(e) => {
            eprintln!("skipped: no GPU to compare with the CPU ({e})");
            None
        }
    }
}

fn config(architecture: Architecture, position: PositionEncoding) -> ModelConfig {
    let mut cfg = ModelConfig::new(architecture, 12);
    cfg.n_layers = 2;
    cfg.d_model = 64;
    cfg.n_heads = 4;
    cfg.d_ffn = 128;
    cfg.max_positions = 64;
    cfg.position = position;
    cfg
}

fn input(pattern: AttentionPattern) -> ModelInput {
    let rows: Vec<Vec<u32>> = (0..3u32)
        .map(|r| {
            (0..40 - 7 * r as usize)
                .map(|i| 5 + (i as u32 * i as u32 + 3 * i as u32 + r) % 7)
                .collect()
        })
        .collect();
    ModelInput::from_rows(&rows, pattern)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Largest difference relative to the largest magnitude of the CPU's values.
fn relative_error(gpu: &[f32], cpu: &[f32]) -> f32 {
    assert_eq!(gpu.len(), cpu.len());
    let scale = cpu.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    gpu.iter()
        .zip(cpu)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

/// The states of real tokens only (padding rows hold whatever each backend leaves there).
fn real_tokens(hidden: Vec<f32>, input: &ModelInput, d: usize) -> Vec<f32> {
    let real = input.mask.padding.as_ref().unwrap();
    hidden
        .chunks(d)
        .zip(real)
        .filter(|(_, r)| **r)
        .flat_map(|(h, _)| h.to_vec())
        .collect()
}

#[test]
fn hidden_states_and_logits_agree_with_the_cpu() {
    let Some(gpu) = gpu() else { return };
    for (architecture, position, pattern) in [
        (
            Architecture::Encoder,
            PositionEncoding::Rotary,
            AttentionPattern::Bidirectional,
        ),
        (
            Architecture::Encoder,
            PositionEncoding::Alibi,
            AttentionPattern::Bidirectional,
        ),
        (
            Architecture::Decoder,
            PositionEncoding::Rotary,
            AttentionPattern::Causal,
        ),
    ] {
        let cfg = config(architecture, position);
        let x = input(pattern);
        let run = |device: &Device| {
            let model = DnaLm::seeded(&cfg, device, 7).unwrap();
            let hidden = model.forward(&x).unwrap();
            let [rows, len, d] = hidden.dims();
            let logits = model.lm_logits(hidden.clone().reshape([rows * len, d]));
            (
                real_tokens(values(hidden), &x, d),
                real_tokens(values(logits), &x, cfg.vocab_size),
            )
        };
        let (h_cpu, l_cpu) = run(&cpu());
        let (h_gpu, l_gpu) = run(&gpu);
        let (eh, el) = (
            relative_error(&h_gpu, &h_cpu),
            relative_error(&l_gpu, &l_cpu),
        );
        eprintln!("{architecture:?} {position:?}: hidden {eh:.2e}, logits {el:.2e} relative");
        assert!(eh < 1e-3 && el < 1e-3, "{architecture:?} {position:?}");
    }
}

/// Gradients of a smooth loss over every real token's logits, for the parameters named.
fn gradients(cfg: &ModelConfig, device: Device, fused: bool) -> Vec<(String, Vec<f32>)> {
    let x = input(AttentionPattern::Bidirectional);
    let device = device.autodiff();
    let model = DnaLm::seeded(cfg, &device, 3)
        .unwrap()
        .with_fused_layers(fused);
    let hidden = model.forward(&x).unwrap();
    let [rows, len, d] = hidden.dims();
    let logits = model.lm_logits(hidden.reshape([rows * len, d]));
    // Padded positions are left out, as every loss of dnalm's leaves them out: what a backend
    // computes there (the fused CPU layer skips them) is nobody's result.
    let real: Vec<f32> = x
        .mask
        .padding
        .as_ref()
        .unwrap()
        .iter()
        .map(|&r| f32::from(u8::from(r)))
        .collect();
    let real = Tensor::<1>::from_data(TensorData::new(real, [rows * len]), &device)
        .reshape([rows * len, 1]);
    let logits = logits * real;
    let loss = (logits.clone() * logits).mean();
    let grads = loss.backward();
    let mut out = vec![(
        "embed".to_string(),
        values(model.embed.weight.grad(&grads).unwrap()),
    )];
    for (i, block) in model.blocks.iter().enumerate() {
        for (name, linear) in [
            ("query", &block.query),
            ("key", &block.key),
            ("value", &block.value),
            ("output", &block.output),
        ] {
            out.push((
                format!("blocks.{i}.{name}"),
                values(linear.as_ref().unwrap().weight.grad(&grads).unwrap()),
            ));
        }
    }
    out
}

#[test]
fn the_cpu_paths_agree_on_these_gradients() {
    let mut worst = 0f32;
    for position in [PositionEncoding::Rotary, PositionEncoding::Learned] {
        let cfg = config(Architecture::Encoder, position);
        let fused = gradients(&cfg, cpu(), true);
        let plain = gradients(&cfg, cpu(), false);
        for ((name, a), (_, b)) in fused.iter().zip(&plain) {
            let e = relative_error(a, b);
            eprintln!("{position:?} {name}: fused vs burn on the cpu {e:.2e}");
            // A gradient of (numerically) zero would make the comparison empty: an input whose
            // rows repeat one token leaves the query and key gradients at ~1e-10.
            let largest = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(
                largest > 1e-5,
                "{position:?} {name}: gradient {largest:.1e}"
            );
            worst = worst.max(e);
        }
    }
    assert!(worst < 1e-3, "worst {worst:.2e}");
}

#[test]
fn gradients_agree_with_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut worst = 0f32;
    for position in [PositionEncoding::Rotary, PositionEncoding::Learned] {
        let cfg = config(Architecture::Encoder, position);
        let on_cpu = gradients(&cfg, cpu(), true);
        let on_gpu = gradients(&cfg, gpu.clone(), true);
        for ((name, a), (_, b)) in on_gpu.iter().zip(&on_cpu) {
            let e = relative_error(a, b);
            eprintln!("{position:?} {name}: gpu vs cpu {e:.2e}");
            worst = worst.max(e);
        }
    }
    assert!(worst < 1e-3, "worst {worst:.2e}");
}
