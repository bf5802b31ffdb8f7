//! Speed of the relevance path on 50,000 x 512 embeddings (the target: seconds).
//!
//! `cargo bench -p dnalm-eval --bench relevance_speed` (BENCH_ROWS / BENCH_DIMS override the
//! shape). Times, with criterion (10 samples each): LogME, H-score, and the linear probe
//! protocol (L2 strength chosen on a validation split, then 5 refits each leaving out one fold,
//! scored on test). There is no peer in this bench to alternate with, so criterion's sampling
//! and its median/confidence interval are the right tool.

// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use dnalm_eval::{
    features::{Labelled, Targets},
    probes::{run_probe, ProbeKind, ProbeOptions, SplitFeatures},
    relevance::transfer::{h_score, logme},
};
use ndarray::Array2;
use rand::Rng;
use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn planted(n: usize, d: usize, seed: u64) -> Labelled {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Array2::from_shape_fn((n, d), |_| rng.random::<f32>() * 2.0 - 1.0);
    let labels = x
        .rows()
        .into_iter()
        .map(|r| (r[0] + 0.5 * r[1] - 0.3 * r[2] + 0.2 * r[3] > 0.0) as u32)
        .collect();
    Labelled {
        x,
        y: Targets::Classes {
            labels,
            num_classes: 2,
        },
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn relevance(c: &mut Criterion) {
    let n = env("BENCH_ROWS", 50_000);
    let d = env("BENCH_DIMS", 512);
    let data = SplitFeatures {
        train: planted(n, d, 1),
        valid: planted(n / 10, d, 2),
        test: planted(n / 10, d, 3),
    };
    let Targets::Classes { labels, .. } = &data.train.y else {
        unreachable!("planted() makes classes")
    };
    eprintln!(
        "rows {n} x dims {d}, threads {}",
        rayon::current_num_threads()
    );
    let mut group = c.benchmark_group(format!("relevance {n}x{d}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    group.bench_function("logme", |b| {
        b.iter(|| logme(data.train.x.view(), &data.train.y).expect("logme"))
    });
    group.bench_function("h-score", |b| {
        b.iter(|| h_score(data.train.x.view(), labels, 2).expect("h-score"))
    });
    group.bench_function("linear probe (L2 on valid + 5 fold refits)", |b| {
        b.iter(|| run_probe(ProbeKind::Linear, &data, &ProbeOptions::default()).expect("probe"))
    });
    group.finish();
}

criterion_group!(benches, relevance);
criterion_main!(benches);
