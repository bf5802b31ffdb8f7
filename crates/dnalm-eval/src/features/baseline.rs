//! Baselines that use no pretraining, reported beside every model: the k-mer spectrum (k = 1..6,
//! frequencies) with the linear probe, and a small one-hot CNN trained from scratch with the same
//! budget as fine-tuning.

use std::{fmt, str::FromStr};

use burn::{
    module::Module,
    nn::{
        conv::{Conv1d, Conv1dConfig},
        pool::{MaxPool1d, MaxPool1dConfig},
        BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig1d,
    },
    tensor::{activation::relu, Device, Tensor, TensorData},
};
use dnalm_model::block::DropoutStream;
use dnalm_seq::task::{LabelledSequence, Task};
use serde::{Deserialize, Serialize};

use crate::{
    features::tasks::{split_rows, targets},
    probes::concat_targets,
    probes::fit::{fit, predict, FitOptions, SeedRuns},
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

/// The baselines `bench` runs beside every model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineKind {
    /// The k-mer spectrum (k = 1..6) with the linear probe.
    Kmer,
    /// The one-hot CNN trained from scratch.
    Cnn,
}

impl BaselineKind {
    /// Every baseline.
    pub const ALL: [BaselineKind; 2] = [BaselineKind::Kmer, BaselineKind::Cnn];
}

impl fmt::Display for BaselineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BaselineKind::Kmer => "kmer",
            BaselineKind::Cnn => "cnn",
        })
    }
}

impl FromStr for BaselineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kmer" | "kmer-spectrum" => Ok(BaselineKind::Kmer),
            "cnn" | "onehot-cnn" => Ok(BaselineKind::Cnn),
            _ => Err(format!("unknown baseline '{s}' (expected kmer or cnn)")),
        }
    }
}

/// Convolution kernel width of every CNN block (bases at the first block).
const CNN_KERNEL: usize = 9;
/// Max-pooling width (and stride) after the first two blocks.
const CNN_POOL: usize = 4;
/// Dropout after each pooled block.
const CNN_BLOCK_DROPOUT: f64 = 0.2;
/// Dropout before the output layer.
const CNN_HEAD_DROPOUT: f64 = 0.5;
/// Position bins of the final max pooling: each bin is the max over one eighth of the
/// sequence, so the output layer knows roughly *where* a motif is, not only whether it is
/// there (global max pooling cannot tell a convergent motif pair from a divergent one).
const CNN_BINS: usize = 8;

/// One convolution block: convolution ('same' padding) → batch norm → ReLU → optional max
/// pooling.
#[derive(Module, Debug)]
struct ConvBlock {
    conv: Conv1d,
    norm: BatchNorm,
    pool: Option<MaxPool1d>,
}

impl ConvBlock {
    fn new(inputs: usize, channels: usize, pool: bool, device: &Device) -> ConvBlock {
        ConvBlock {
            conv: Conv1dConfig::new(inputs, channels, CNN_KERNEL)
                .with_padding(PaddingConfig1d::Same)
                .init(device),
            norm: BatchNormConfig::new(channels).init(device),
            pool: pool.then(|| MaxPool1dConfig::new(CNN_POOL).with_stride(CNN_POOL).init()),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = relu(self.norm.forward(self.conv.forward(x)));
        match &self.pool {
            // A sequence shorter than the pool keeps its length (nothing to pool over).
            Some(pool) if h.dims()[2] >= CNN_POOL => pool.forward(h),
            _ => h,
        }
    }
}

/// The one-hot CNN, in the Genomic Benchmarks / DeepSEA pattern: three blocks of convolution
/// (kernel 9) → batch norm → ReLU, the first two max-pooled (4) with dropout 0.2; max pooling
/// into 8 position bins, flattened (the fixed-length flatten of those networks, for any
/// length); dropout 0.5; a linear output. The receptive field of one position of the last
/// block is 9 + 8·4 + 8·16 = 169 bases.
#[derive(Module, Debug)]
pub struct OneHotCnn {
    blocks: Vec<ConvBlock>,
    out: Linear,
}

impl OneHotCnn {
    /// A CNN with `channels` filters per block and `outputs` outputs.
    pub fn new(channels: usize, outputs: usize, device: &Device) -> OneHotCnn {
        OneHotCnn {
            blocks: vec![
                ConvBlock::new(4, channels, true, device),
                ConvBlock::new(channels, channels, true, device),
                ConvBlock::new(channels, channels, false, device),
            ],
            out: LinearConfig::new(channels * CNN_BINS, outputs).init(device),
        }
    }

    /// `[rows, 4, len]` one-hot → `[rows, outputs]`; `dropout` (training) draws its masks
    /// from that stream.
    pub fn forward(&self, x: Tensor<3>, dropout: Option<&DropoutStream>) -> Tensor<2> {
        let mut h = x;
        for block in &self.blocks {
            h = block.forward(h);
            if let (Some(stream), Some(_)) = (dropout, &block.pool) {
                h = stream.apply(h, CNN_BLOCK_DROPOUT);
            }
        }
        let mut pooled = binned_max(h, CNN_BINS);
        if let Some(stream) = dropout {
            pooled = stream.apply(pooled, CNN_HEAD_DROPOUT);
        }
        self.out.forward(pooled)
    }

    fn device(&self) -> Device {
        self.out.weight.val().device()
    }
}

/// `[rows, channels, len]` → `[rows, channels · bins]`: the max over each of `bins` equal
/// stretches of positions (the last ones padded with zeros, which never win after a ReLU;
/// a sequence shorter than `bins` positions repeats its values).
fn binned_max(h: Tensor<3>, bins: usize) -> Tensor<2> {
    let [rows, channels, len] = h.dims();
    let h = if len < bins {
        // Too short to split: every bin sees the whole sequence.
        h.max_dim(2).repeat_dim(2, bins)
    } else {
        let width = len.div_ceil(bins);
        let h = if width * bins > len {
            let pad = Tensor::<3>::zeros([rows, channels, width * bins - len], &h.device());
            Tensor::cat(vec![h, pad], 2)
        } else {
            h
        };
        h.reshape([rows, channels, bins, width])
            .max_dim(3)
            .reshape([rows, channels, bins])
    };
    h.reshape([rows, channels * bins])
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
    /// The seeds that fitted: test metrics, their mean ± sd (empty when none did), outputs;
    /// epochs of every seed.
    #[serde(flatten)]
    pub fitted: SeedRuns,
    /// Seeds whose network predicted a single class for every test row (while the test split
    /// has several): a failed fit, reported as such rather than scored.
    #[serde(default)]
    pub failed_seeds: Vec<u64>,
}

impl CnnReport {
    /// What the report shows beside the metrics: epochs per seed and any failed fits.
    pub fn describe(&self) -> String {
        let mut text = format!("epochs={:?}", self.fitted.epochs);
        if !self.failed_seeds.is_empty() {
            text.push_str(&format!(
                "; failed fit (one class predicted) for {} of {} seeds {:?}",
                self.failed_seeds.len(),
                self.fitted.epochs.len(),
                self.failed_seeds
            ));
        }
        text
    }
}

/// Whether class probabilities `outputs` predict one class for every row although `targets`
/// hold several: the fit collapsed to a constant, and its metrics say nothing.
pub fn predicts_one_class(targets: &crate::Targets, outputs: ndarray::ArrayView2<f32>) -> bool {
    let crate::Targets::Classes { labels, .. } = targets else {
        return false;
    };
    let mut predicted = outputs.rows().into_iter().map(crate::metrics::argmax);
    let first = predicted.next();
    let constant = predicted.all(|p| Some(p) == first);
    let truth_varies = labels.iter().any(|&l| l != labels[0]);
    constant && truth_varies
}

/// Trains the one-hot CNN on `task` with `seeds` seeds (seed `options.seed + i`; early
/// stopping on the validation loss, the best epoch kept), scoring test. A seed whose network
/// predicts one class for the whole test split is a failed fit: listed, not averaged.
pub fn cnn_baseline(
    task: &Task,
    channels: usize,
    options: &FitOptions,
    seeds: usize,
) -> Result<CnnReport, EvalError> {
    let [train, valid, test] = split_rows(task)?;
    let all: Vec<&LabelledSequence> = train.iter().chain(&valid).copied().collect();
    let y = concat_targets(&targets(task, &train), &targets(task, &valid));
    let outputs = y.outputs();
    let train_rows: Vec<usize> = (0..train.len()).collect();
    let valid_rows: Vec<usize> = (train.len()..all.len()).collect();
    let test_targets = targets(task, &test);
    let forward = cnn_forward(&all);
    let test_forward = cnn_forward(&test);
    let (mut fitted_seeds, mut failed_seeds) = (SeedRuns::default(), Vec::new());
    for i in 0..seeds.max(1) as u64 {
        let mut o = options.clone();
        o.seed = options.seed.wrapping_add(i);
        let device = crate::train_device(&o.device.open()?);
        let net = dnalm_model::io::reinitialize_fan_in(
            OneHotCnn::new(channels, outputs, &device),
            o.seed,
        );
        let fitted = fit(net, &forward, &y, &train_rows, &valid_rows, &o)?;
        let test_rows: Vec<usize> = (0..test.len()).collect();
        let out = predict(&fitted, &test_forward, &test_rows, 256)?;
        if predicts_one_class(&test_targets, out.view()) {
            fitted_seeds.epochs.push(fitted.epochs_run);
            failed_seeds.push(o.seed);
        } else {
            fitted_seeds.record(fitted.epochs_run, &test_targets, out);
        }
    }
    Ok(CnnReport {
        fitted: fitted_seeds.summarise(),
        failed_seeds,
    })
}

fn cnn_forward<'a>(
    rows_src: &[&'a LabelledSequence],
) -> impl Fn(&OneHotCnn, &[usize], Option<u64>) -> Result<Tensor<2>, EvalError> + 'a {
    let src: Vec<&'a [u8]> = rows_src.iter().map(|r| r.sequence.as_slice()).collect();
    move |net: &OneHotCnn, rows: &[usize], seed: Option<u64>| {
        let seqs: Vec<&[u8]> = rows.iter().map(|&r| src[r]).collect();
        let dropout = seed.map(DropoutStream::new);
        Ok(net.forward(one_hot(&seqs, &net.device()), dropout.as_ref()))
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
                tokenizer: None,
            },
            dir: std::path::PathBuf::from("."),
            examples,
            notes: Vec::new(),
        };
        let options = FitOptions {
            epochs: 20,
            batch_size: 16,
            lr: 1e-2,
            weight_decay: 0.0,
            patience: 20,
            seed: 0,
            ..FitOptions::default()
        };
        let report = cnn_baseline(&task, 16, &options, 1).unwrap();
        // Chance is 0.5; a CNN that finds the motif ranks nearly every positive first.
        let summary = &report.fitted.summary;
        assert!(summary["auroc"].mean > 0.95, "{summary:?}");
        assert!(summary["accuracy"].mean > 0.75, "{summary:?}");
    }

    #[test]
    fn binned_max_keeps_where_the_maximum_is() {
        let d = dnalm_model::cpu();
        // One channel, 10 positions, a peak at position 9: with 4 bins of 3 (two padded
        // zeros), only the last bin sees it.
        let mut v = vec![0.1f32; 10];
        v[9] = 5.0;
        let h = Tensor::<3>::from_data(TensorData::new(v, [1, 1, 10]), &d);
        let out = binned_max(h, 4).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(out, vec![0.1, 0.1, 0.1, 5.0]);
        // Shorter than the bins: every bin holds the sequence's max.
        let h = Tensor::<3>::from_data(TensorData::new(vec![1.0f32, 3.0], [1, 1, 2]), &d);
        let out = binned_max(h, 4).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(out, vec![3.0; 4]);
    }

    #[test]
    fn a_single_class_prediction_is_a_failed_fit() {
        let targets = crate::Targets::Classes {
            labels: vec![0, 1, 1],
            num_classes: 2,
        };
        let constant = ndarray::array![[0.9f32, 0.1], [0.8, 0.2], [0.6, 0.4]];
        assert!(predicts_one_class(&targets, constant.view()));
        let varied = ndarray::array![[0.9f32, 0.1], [0.2, 0.8], [0.6, 0.4]];
        assert!(!predicts_one_class(&targets, varied.view()));
        // A test split of one class can only be predicted as one class: not a failure.
        let one = crate::Targets::Classes {
            labels: vec![1, 1, 1],
            num_classes: 2,
        };
        assert!(!predicts_one_class(&one, constant.view()));
        let report = CnnReport {
            fitted: SeedRuns {
                epochs: vec![3, 4],
                ..SeedRuns::default()
            },
            failed_seeds: vec![1],
        };
        assert_eq!(
            report.describe(),
            "epochs=[3, 4]; failed fit (one class predicted) for 1 of 2 seeds [1]"
        );
    }

    #[test]
    fn baseline_names_parse_and_print() {
        for kind in BaselineKind::ALL {
            assert_eq!(kind.to_string().parse::<BaselineKind>(), Ok(kind));
        }
        assert_eq!("onehot-cnn".parse::<BaselineKind>(), Ok(BaselineKind::Cnn));
        assert!("svm"
            .parse::<BaselineKind>()
            .unwrap_err()
            .contains("kmer or cnn"));
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
