//! Training and inference throughput of the small encoder (the README's recorded-run model),
//! measured the same way as `scripts/bench_train.py` measures PyTorch/transformers on the same
//! shapes. Run through `scripts/bench_train.sh`, which prints both and their ratio.
//!
//! Shapes (override with env): BENCH_LAYERS=4 BENCH_D=256 BENCH_HEADS=4 BENCH_FFN=1024
//! BENCH_SEQ=512 BENCH_BATCH=8 BENCH_VOCAB=12 BENCH_STEPS=5. fp32; masked-LM loss on 15% of
//! positions; AdamW update included in a training step. BENCH_DEVICE (default `cpu`) picks the
//! device: `vulkan` on a build with `--features dnalm-model/vulkan` (`scripts/gpu_check.sh`).
//! BENCH_ARCH=hyena measures a Hyena model of the same width, depth and feed-forward network
//! instead (`scripts/bench_long_context.sh`: Hyena against the encoder at long contexts); the
//! loss is on the same positions, so the two differ only in the token mixer. BENCH_ARCH=caduceus
//! measures a Caduceus model (BiMamba blocks, no feed-forward network; reverse-complement
//! equivariant unless BENCH_RC=0; BENCH_STATE=16 states per channel), as
//! `scripts/bench_caduceus.py` measures the same model in PyTorch. BENCH_RECOMPUTE=1 trains
//! with activation checkpointing (`train.activation_checkpointing`: blocks recomputed in the
//! backward pass), what 131 k-token contexts need to fit in memory; like `dnalm pretrain`, it
//! then returns freed memory to the kernel after BENCH_PURGE_DELAY_MS=10 (BENCH_RETAIN=1 keeps
//! it, as every other run does).

use std::time::Instant;

use dnalm_model::{
    burn::{module::Module, optim::GradientsParams},
    Architecture, AttentionPattern, DeviceName, DnaLm, ModelConfig, ModelInput,
};
use dnalm_train::{
    data::{Batch, BatchAttention},
    loss::{batch_loss, batch_loss_recomputing},
    optim::AdamW,
    run_config::OptimConfig,
    TargetKind,
};
use rand::{Rng, SeedableRng};

/// The allocator of the `dnalm` binary, so the bench measures what users run: burn allocates a
/// fresh buffer per operation, and with glibc malloc 7.7% of a training step went to the kernel
/// zeroing newly mapped pages (perf, this bench).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use dnalm_model::allocator;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    allocator::retain_freed_memory();
    let (layers, d, heads, ffn) = (
        env("BENCH_LAYERS", 4),
        env("BENCH_D", 256),
        env("BENCH_HEADS", 4),
        env("BENCH_FFN", 1024),
    );
    let (seq, batch, vocab, steps) = (
        env("BENCH_SEQ", 512),
        env("BENCH_BATCH", 8),
        env("BENCH_VOCAB", 12),
        env("BENCH_STEPS", 5),
    );
    let architecture = match std::env::var("BENCH_ARCH").as_deref() {
        Ok("hyena") => Architecture::Hyena,
        Ok("caduceus") => Architecture::Caduceus,
        Ok("encoder") | Err(_) => Architecture::Encoder,
        Ok(other) => panic!("BENCH_ARCH={other}: expected encoder, hyena or caduceus"),
    };
    let mut cfg = ModelConfig::new(architecture, vocab);
    cfg.n_layers = layers;
    cfg.d_model = d;
    cfg.n_heads = heads;
    cfg.d_ffn = ffn;
    cfg.max_positions = seq;
    cfg.attention_chunk = env("BENCH_CHUNK", seq);
    if architecture == Architecture::Caduceus {
        let rc = env("BENCH_RC", 1) == 1;
        cfg.caduceus = Some(dnalm_model::CaduceusOptions {
            d_state: env("BENCH_STATE", 16),
            rc_equivariant: rc,
            // Specials map to themselves; 7..=10 are A C G T (A<->T, C<->G).
            complement_map: if rc {
                (0..vocab as u32)
                    .map(|i| match i {
                        7 => 10,
                        10 => 7,
                        8 => 9,
                        9 => 8,
                        other => other,
                    })
                    .collect()
            } else {
                Vec::new()
            },
            ..Default::default()
        });
    }
    let recompute = env("BENCH_RECOMPUTE", 0) == 1;
    // As `dnalm pretrain` does with activation checkpointing (BENCH_RETAIN=1 keeps freed memory).
    if env("BENCH_RETAIN", usize::from(!recompute)) == 0 {
        let ms = env("BENCH_PURGE_DELAY_MS", 10) as u64;
        allocator::return_freed_memory(std::time::Duration::from_millis(ms));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let n = batch * seq;
    let ids: Vec<u32> = (0..n).map(|_| rng.random_range(5..vocab as u32)).collect();
    let loss_mask: Vec<bool> = (0..n).map(|_| rng.random::<f64>() < 0.15).collect();
    let b = Batch {
        step: 0,
        objective: dnalm_train::ObjectiveKind::Mlm,
        rows: batch,
        seq_len: seq,
        input_ids: ids.clone(),
        position_ids: (0..batch).flat_map(|_| 0..seq as u32).collect(),
        targets: ids.clone(),
        loss_mask,
        padding_mask: vec![true; n],
        attention: BatchAttention::Bidirectional,
        target_kind: TargetKind::Token,
        origins: Vec::new(),
    };

    // Training: forward, masked-LM loss, backward, AdamW.
    let device_name: DeviceName = std::env::var("BENCH_DEVICE")
        .unwrap_or_else(|_| "cpu".into())
        .parse()
        .expect("BENCH_DEVICE is a device name");
    let device = device_name.open().expect("the device opens").autodiff();
    let mut model = DnaLm::seeded(&cfg, &device, 0).expect("valid config");
    let mut optim = AdamW::new(OptimConfig::default());
    let mut times = Vec::new();
    for step in 0..steps + 1 {
        let t = Instant::now();
        let grads = if recompute {
            let (out, kept) = batch_loss_recomputing(&model, &b, None)
                .expect("input fits")
                .expect("targets");
            kept.backward(&model, out.loss.backward())
        } else {
            let out = batch_loss(&model, &b, None)
                .expect("input fits")
                .expect("targets");
            GradientsParams::from_grads(out.loss.backward(), &model)
        };
        let (m, _) = optim.step(model, grads, 1e-4);
        model = m;
        // Wait for the update to finish (Flex is eager; this is a no-op there).
        let _ = model
            .embed
            .weight
            .val()
            .slice([0..1, 0..1])
            .into_scalar::<f32>();
        if step > 0 {
            times.push(t.elapsed().as_secs_f64()); // step 0 is warm-up
        }
    }
    let train = n as f64 / median(&mut times);

    // Inference: forward only, no autodiff.
    let model = model.valid();
    let input = ModelInput::from_rows(
        &ids.chunks(seq).map(<[u32]>::to_vec).collect::<Vec<_>>(),
        AttentionPattern::Bidirectional,
    );
    let mut times = Vec::new();
    for step in 0..steps + 1 {
        let t = Instant::now();
        let h = model.forward(&input).expect("input fits");
        let _ = h.slice([0..1, 0..1, 0..1]).into_scalar::<f32>();
        if step > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let infer = n as f64 / median(&mut times);
    println!(
        "{{\"impl\":\"dnalm\",\"arch\":\"{architecture:?}\",\"parameters\":{},\"device\":\"{device_name}\",\"threads\":{},\"layers\":{layers},\"d_model\":{d},\"seq\":{seq},\"batch\":{batch},\"recompute\":{recompute},\"train_tokens_per_s\":{train:.1},\"infer_tokens_per_s\":{infer:.1}}}",
        cfg.parameter_count(),
        rayon::current_num_threads()
    );
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
