//! Speed of the relevance path on 50,000 x 512 embeddings (the target: seconds).
//!
//! `cargo bench -p dnalm-eval --bench relevance_speed` (BENCH_ROWS / BENCH_DIMS override the
//! shape). Times LogME, H-score, and the linear probe protocol (L2 strength chosen on a
//! validation split over 4 values, then 5 refits each leaving out one fold, scored on test).

use std::time::Instant;

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

fn main() {
    let n = env("BENCH_ROWS", 50_000);
    let d = env("BENCH_DIMS", 512);
    let train = planted(n, d, 1);
    let t = Instant::now();
    let evidence = logme(train.x.view(), &train.y).expect("logme");
    let logme_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let Targets::Classes { labels, .. } = &train.y else {
        unreachable!()
    };
    let h = h_score(train.x.view(), labels, 2).expect("h-score");
    let h_s = t.elapsed().as_secs_f64();
    let data = SplitFeatures {
        train,
        valid: planted(n / 10, d, 2),
        test: planted(n / 10, d, 3),
    };
    let t = Instant::now();
    let report = run_probe(ProbeKind::Linear, &data, &ProbeOptions::default()).expect("probe");
    let probe_s = t.elapsed().as_secs_f64();
    println!(
        "rows {n} x dims {d}, threads {}",
        rayon::current_num_threads()
    );
    println!("logme            {logme_s:>7.2} s   (evidence {evidence:.4})");
    println!("h-score          {h_s:>7.2} s   (score {h:.4})");
    println!(
        "linear probe     {probe_s:>7.2} s   (4 L2 values on valid + 5 fold refits; test mcc {:.3}, {})",
        report.mean("mcc"),
        report.chosen
    );
    println!("logme + probe    {:>7.2} s", logme_s + probe_s);
}
