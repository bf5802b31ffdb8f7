//! Baselines that use no pretraining, reported beside every model: the k-mer spectrum (k = 1..6,
//! frequencies) with the linear probe, and a small one-hot CNN trained from scratch with the same
//! budget as fine-tuning.

use std::collections::BTreeMap;

use burn::{
    module::Module,
    nn::{
        conv::{Conv1d, Conv1dConfig},
        Linear, LinearConfig, PaddingConfig1d,
    },
    tensor::{activation::relu, Device, Tensor, TensorData},
};
use dnalm_seq::task::{LabelledSequence, Task};
use serde::{Deserialize, Serialize};

use crate::{
    features::tasks::{split_rows, targets},
    metrics::{summarise, Summary},
    probes::fit::{fit, predict, FitOptions},
    probes::{concat_targets, score},
    EvalError,
};

/// Normalised k-mer counts for k in `ks` (overlapping k-mers; those with `N` skipped): for each
/// k, `4^k` frequencies summing to 1 (0 if the sequence is shorter than k).
pub fn kmer_spectrum(seq: &[u8], ks: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(ks.iter().map(|&k| 1usize << (2 * k)).sum());
    for &k in ks {
        let size = 1usize << (2 * k);
        let base = out.len();
        out.resize(base + size, 0.0);
        let mask = size - 1;
        let (mut code, mut valid, mut total) = (0usize, 0usize, 0usize);
        for &b in seq {
            let v = match b {
                b'A' | b'a' => 0,
                b'C' | b'c' => 1,
                b'G' | b'g' => 2,
                b'T' | b't' => 3,
                _ => {
                    valid = 0;
                    continue;
                }
            };
            code = ((code << 2) | v) & mask;
            valid += 1;
            if valid >= k {
                out[base + code] += 1.0;
                total += 1;
            }
        }
        if total > 0 {
            for v in &mut out[base..] {
                *v /= total as f32;
            }
        }
    }
    out
}

/// The one-hot CNN: two convolutions (kernel 9, ReLU), global max pooling, a linear output.
#[derive(Module, Debug)]
pub struct OneHotCnn {
    conv1: Conv1d,
    conv2: Conv1d,
    out: Linear,
}

impl OneHotCnn {
    /// A CNN with `channels` filters per layer and `outputs` outputs.
    pub fn new(channels: usize, outputs: usize, device: &Device) -> OneHotCnn {
        let conv = |i, o| {
            Conv1dConfig::new(i, o, 9)
                .with_padding(PaddingConfig1d::Same)
                .init(device)
        };
        OneHotCnn {
            conv1: conv(4, channels),
            conv2: conv(channels, channels),
            out: LinearConfig::new(channels, outputs).init(device),
        }
    }

    /// `[rows, 4, len]` one-hot → `[rows, outputs]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let h = relu(self.conv2.forward(relu(self.conv1.forward(x))));
        let [rows, channels, _] = h.dims();
        self.out.forward(h.max_dim(2).reshape([rows, channels]))
    }

    fn device(&self) -> Device {
        self.out.weight.val().device()
    }
}

/// One-hot `[rows, 4, len]` of sequences padded (with zeros, like `N`) to the longest.
pub fn one_hot(seqs: &[&[u8]], device: &Device) -> Tensor<3> {
    let len = seqs.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
    let mut v = vec![0f32; seqs.len() * 4 * len];
    for (r, s) in seqs.iter().enumerate() {
        for (i, &b) in s.iter().enumerate() {
            let c = match b {
                b'A' => 0,
                b'C' => 1,
                b'G' => 2,
                b'T' => 3,
                _ => continue,
            };
            v[(r * 4 + c) * len + i] = 1.0;
        }
    }
    Tensor::from_data(TensorData::new(v, [seqs.len(), 4, len]), device)
}

/// Result of training the CNN over seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CnnReport {
    /// Test metrics per seed.
    pub runs: Vec<BTreeMap<String, f64>>,
    /// Mean ± sd over seeds.
    pub summary: BTreeMap<String, Summary>,
    /// Epochs run per seed.
    pub epochs: Vec<usize>,
}

/// Trains the one-hot CNN on `task` with `seeds` seeds (early stopping on valid), scoring test.
pub fn cnn_baseline(
    task: &Task,
    channels: usize,
    options: &FitOptions,
    seeds: usize,
) -> Result<CnnReport, EvalError> {
    let [train, valid, test] = split_rows(task)?;
    let all: Vec<&LabelledSequence> = train.iter().chain(&valid).copied().collect();
    let y = concat_targets(&targets(task, &train), &targets(task, &valid));
    let outputs = match &y {
        crate::Targets::Classes { num_classes, .. } => *num_classes,
        crate::Targets::Values(_) => 1,
    };
    let train_rows: Vec<usize> = (0..train.len()).collect();
    let valid_rows: Vec<usize> = (train.len()..all.len()).collect();
    let test_targets = targets(task, &test);
    let forward = cnn_forward(&all);
    let test_forward = cnn_forward(&test);
    let mut runs = Vec::new();
    let mut epochs = Vec::new();
    for seed in 0..seeds.max(1) as u64 {
        let mut o = options.clone();
        o.seed = options.seed.wrapping_add(seed);
        let device = crate::train_device();
        let net = dnalm_model::io::reinitialize(OneHotCnn::new(channels, outputs, &device), o.seed);
        let fitted = fit(net, &forward, &y, &train_rows, &valid_rows, &o)?;
        epochs.push(fitted.epochs_run);
        let test_rows: Vec<usize> = (0..test.len()).collect();
        let out = predict(&fitted, &test_forward, &test_rows, 256)?;
        runs.push(score(&test_targets, out.view()));
    }
    Ok(CnnReport {
        summary: summarise(&runs),
        runs,
        epochs,
    })
}

fn cnn_forward<'a>(
    rows_src: &[&'a LabelledSequence],
) -> impl Fn(&OneHotCnn, &[usize], Option<u64>) -> Result<Tensor<2>, EvalError> + 'a {
    let src: Vec<&'a [u8]> = rows_src.iter().map(|r| r.sequence.as_slice()).collect();
    move |net: &OneHotCnn, rows: &[usize], _: Option<u64>| {
        let seqs: Vec<&[u8]> = rows.iter().map(|&r| src[r]).collect();
        Ok(net.forward(one_hot(&seqs, &net.device())))
    }
}

/// The k-mer sizes of the spectrum baseline.
pub const SPECTRUM_KS: [usize; 6] = [1, 2, 3, 4, 5, 6];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spectrum_counts_overlapping_kmers_and_skips_n() {
        let v = kmer_spectrum(b"ACGNAC", &[1, 2]);
        assert_eq!(v.len(), 4 + 16);
        // 1-mers: A 2, C 2, G 1 of 5.
        assert_eq!(&v[..4], &[0.4, 0.4, 0.2, 0.0]);
        // 2-mers: AC twice, CG once (GN, NA skipped) of 3.
        assert!((v[4 + 1] - 2.0 / 3.0).abs() < 1e-6);
        assert!((v[4 + 6] - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(kmer_spectrum(b"A", &[2]), vec![0.0; 16]);
    }

    #[test]
    fn the_cnn_learns_a_planted_motif() {
        use dnalm_seq::task::{Label, Split, TaskKind, TaskSpec};
        // Label 1: the sequence holds GATTACA somewhere; label 0: random sequence without it.
        let mut examples = Vec::new();
        let mut x = 7u64;
        for i in 0..360 {
            let mut seq: Vec<u8> = (0..40)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    b"ACGT"[(x >> 62) as usize]
                })
                .collect();
            let label = (i % 2) as u32;
            if label == 1 {
                let at = (x >> 20) as usize % 33;
                seq[at..at + 7].copy_from_slice(b"GATTACA");
            } else if seq.windows(7).any(|w| w == b"GATTACA") {
                continue;
            }
            let split = match i % 6 {
                0 => Split::Valid,
                1 | 2 => Split::Test,
                _ => Split::Train,
            };
            examples.push(LabelledSequence {
                id: i.to_string(),
                sequence: seq,
                label: Label::Class(label),
                split: Some(split),
            });
        }
        let task = Task {
            spec: TaskSpec {
                name: "motif".into(),
                description: None,
                kind: TaskKind::Classification {
                    num_classes: 2,
                    label_names: None,
                },
            },
            dir: std::path::PathBuf::from("."),
            examples,
        };
        let options = FitOptions {
            epochs: 15,
            batch_size: 16,
            lr: 3e-3,
            weight_decay: 0.0,
            patience: 15,
            seed: 0,
        };
        let report = cnn_baseline(&task, 16, &options, 1).unwrap();
        // Chance is 0.5; a CNN that finds the motif ranks nearly every positive first.
        assert!(report.summary["auroc"].mean > 0.95, "{:?}", report.summary);
        assert!(
            report.summary["accuracy"].mean > 0.75,
            "{:?}",
            report.summary
        );
    }

    #[test]
    fn one_hot_pads_with_zeros() {
        let d = dnalm_model::cpu();
        let t = one_hot(&[b"AC", b"T"], &d);
        assert_eq!(t.dims(), [2, 4, 2]);
        let v = t
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        // Row 0: A at 0, C at 1; row 1: T at 0, nothing at 1.
        assert_eq!(&v[..8], &[1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(&v[8..], &[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    }
}
