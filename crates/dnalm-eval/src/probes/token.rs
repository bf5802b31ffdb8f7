//! The token probe: a small head trained on a frozen model's *per-token* embeddings, so a
//! motif's presence and position survive (mean pooling averages a 19-base site into a 1,000-base
//! window). As BEND's downstream heads: a linear projection to 64 channels, a convolution
//! (kernel 9) with ReLU, then attention pooling (a learned score per position, softmax over the
//! sequence's real tokens) beside max pooling within each eighth of the sequence (so the output
//! layer knows roughly *where*, as the one-hot CNN's bins do), and a linear output. Trained by [`super::fit`]
//! with early stopping on the validation loss, one run per seed; the embeddings are computed once
//! and standardised with the training tokens' statistics.

use dnalm_model::burn::{
    module::Module,
    nn::{
        conv::{Conv1d, Conv1dConfig},
        Linear, LinearConfig, PaddingConfig1d,
    },
    tensor::{activation::relu, activation::softmax, Device, Tensor, TensorData},
};
use ndarray::Array2;

use crate::{
    features::Targets,
    probes::{
        concat_targets,
        fit::{fit_seeds, FitOptions, SeedData, SeedRuns, Selection},
        Standardizer,
    },
    EvalError,
};

/// Channels after the projection.
const CHANNELS: usize = 64;
/// Convolution kernel width, in tokens.
const KERNEL: usize = 9;
/// The token probe's default training budget (`bench --token-probe`).
pub const TOKEN_PROBE_BUDGET: FitOptions = FitOptions {
    epochs: 20,
    batch_size: 32,
    lr: 1e-3,
    weight_decay: 0.01,
    patience: 4,
    seed: 0,
    max_steps: None,
    eval_every: None,
    select: Selection::ValidLoss,
    score_initial: false,
    device: dnalm_model::DeviceName::Cpu,
    balance: crate::probes::fit::ClassBalance::None,
};
/// Position bins of the max pooling, each an eighth of the sequence's own tokens.
const BINS: usize = 8;

/// One split's per-token embeddings (`tokens x width` per sequence) and targets.
#[derive(Debug, Clone)]
pub struct TokenSplit {
    /// Per sequence, its tokens' vectors.
    pub x: Vec<Array2<f32>>,
    /// Targets, one per sequence.
    pub y: Targets,
}

/// A task's splits as per-token embeddings.
#[derive(Debug, Clone)]
pub struct TokenFeatures {
    /// Training sequences.
    pub train: TokenSplit,
    /// Validation sequences (early stopping; may be empty, then training is used).
    pub valid: TokenSplit,
    /// Test sequences.
    pub test: TokenSplit,
}

/// The token probe's result: test metrics and outputs per seed.
pub type TokenProbeReport = SeedRuns;

/// The head: projection → conv + ReLU → [attention pooling ‖ max pooling per position bin] →
/// linear.
#[derive(Module, Debug)]
pub struct TokenHead {
    project: Linear,
    conv: Conv1d,
    score: Linear,
    out: Linear,
}

impl TokenHead {
    /// A head for `width`-wide token vectors and `outputs` outputs.
    pub fn new(width: usize, outputs: usize, device: &Device) -> TokenHead {
        TokenHead {
            project: LinearConfig::new(width, CHANNELS).init(device),
            conv: Conv1dConfig::new(CHANNELS, CHANNELS, KERNEL)
                .with_padding(PaddingConfig1d::Same)
                .init(device),
            score: LinearConfig::new(CHANNELS, 1).init(device),
            out: LinearConfig::new((1 + BINS) * CHANNELS, outputs).init(device),
        }
    }

    /// `x`: `[rows, len, width]` (padded), `mask`: `[rows, len]` with 1 at real tokens, `bins`:
    /// `[rows, BINS, len]` with 1 where a real token falls in a bin → `[rows, outputs]`.
    pub fn forward(&self, x: Tensor<3>, mask: Tensor<2>, bins: Tensor<3>) -> Tensor<2> {
        let [rows, len, _] = x.dims();
        let keep = mask.clone().reshape([rows, len, 1]);
        // Padded positions are zero before the convolution (as its own 'same' padding is, so a
        // sequence's output does not depend on its batch), never attended to, and never the max
        // (after ReLU every value is ≥ 0, so a zeroed position cannot beat a real one).
        let h = (self.project.forward(x) * keep.clone()).swap_dims(1, 2); // [rows, C, len]
        let h = relu(self.conv.forward(h)).swap_dims(1, 2) * keep; // [rows, len, C]
        let scores = self.score.forward(h.clone()).reshape([rows, len]);
        let scores = scores + (mask - 1.0) * 1e9;
        let weights = softmax(scores, 1).reshape([rows, len, 1]);
        let attended = (h.clone() * weights).sum_dim(1).reshape([rows, CHANNELS]);
        // [rows, 1, len, C] × [rows, BINS, len, 1] → max over len: each bin's max.
        let binned = (h.reshape([rows, 1, len, CHANNELS]) * bins.reshape([rows, BINS, len, 1]))
            .max_dim(2)
            .reshape([rows, BINS * CHANNELS]);
        self.out.forward(Tensor::cat(vec![attended, binned], 1))
    }

    fn device(&self) -> Device {
        self.out.weight.val().device()
    }
}

/// Token vectors of `seqs` standardised by `scaler`, padded with zeros to the longest:
/// `[rows, tokens, width]` (what the token and per-base heads read).
pub(crate) fn padded_states(
    seqs: &[&Array2<f32>],
    scaler: &Standardizer,
    device: &Device,
) -> Tensor<3> {
    let width = seqs.first().map_or(0, |x| x.ncols());
    let len = seqs.iter().map(|x| x.nrows()).max().unwrap_or(1).max(1);
    let mut v = vec![0f32; seqs.len() * len * width];
    for (r, x) in seqs.iter().enumerate() {
        for (t, row) in x.rows().into_iter().enumerate() {
            let at = (r * len + t) * width;
            scaler.apply_into(row, &mut v[at..at + width]);
        }
    }
    Tensor::from_data(TensorData::new(v, [seqs.len(), len, width]), device)
}

/// A batch of sequences as [`padded_states`], its `[rows, len]` mask and its `[rows, BINS,
/// len]` position bins (token `t` of a sequence of `n` tokens is in bin `t · BINS / n`, so a
/// sequence's bins do not depend on its batch).
fn batch(
    seqs: &[&Array2<f32>],
    scaler: &Standardizer,
    device: &Device,
) -> (Tensor<3>, Tensor<2>, Tensor<3>) {
    let len = seqs.iter().map(|x| x.nrows()).max().unwrap_or(1).max(1);
    let mut m = vec![0f32; seqs.len() * len];
    let mut b = vec![0f32; seqs.len() * BINS * len];
    for (r, x) in seqs.iter().enumerate() {
        let n = x.nrows();
        for t in 0..n {
            m[r * len + t] = 1.0;
            b[(r * BINS + t * BINS / n) * len + t] = 1.0;
        }
    }
    (
        padded_states(seqs, scaler, device),
        Tensor::<2>::from_data(TensorData::new(m, [seqs.len(), len]), device),
        Tensor::<3>::from_data(TensorData::new(b, [seqs.len(), BINS, len]), device),
    )
}

/// The forward pass over rows of `source` (standardised, padded per batch).
fn token_forward<'a>(
    source: Vec<&'a Array2<f32>>,
    scaler: &'a Standardizer,
) -> impl Fn(&TokenHead, &[usize], Option<u64>) -> Result<Tensor<2>, EvalError> + 'a {
    move |net: &TokenHead, rows: &[usize], _: Option<u64>| {
        let seqs: Vec<&Array2<f32>> = rows.iter().map(|&r| source[r]).collect();
        let (x, mask, bins) = batch(&seqs, scaler, &net.device());
        Ok(net.forward(x, mask, bins))
    }
}

/// Trains the token probe once per seed (seed `options.seed + i`) on `data` and scores test.
pub fn run_token_probe(
    data: &TokenFeatures,
    options: &FitOptions,
    seeds: usize,
) -> Result<TokenProbeReport, EvalError> {
    let width = data.train.x.first().map_or(0, |x| x.ncols());
    if width == 0 || data.test.x.is_empty() {
        return Err(EvalError::TooLittleData {
            what: "token probe".into(),
            message: "needs training and test sequences with at least one token".into(),
        });
    }
    let scaler = Standardizer::fit_all(&data.train.x);
    let all: Vec<&Array2<f32>> = data.train.x.iter().chain(&data.valid.x).collect();
    let y = concat_targets(&data.train.y, &data.valid.y);
    let outputs = y.outputs();
    let forward = token_forward(all.clone(), &scaler);
    let test_forward = token_forward(data.test.x.iter().collect(), &scaler);
    let n_train = data.train.x.len();
    let train: Vec<usize> = (0..n_train).collect();
    let valid: Vec<usize> = (n_train..all.len()).collect();
    fit_seeds(
        options,
        seeds,
        &|device, seed| {
            dnalm_model::io::reinitialize_fan_in(TokenHead::new(width, outputs, device), seed)
        },
        &SeedData {
            forward: &forward,
            targets: &y,
            train: &train,
            valid: &valid,
            test_forward: &test_forward,
            test_targets: &data.test.y,
            test_batch: 64,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sequences of random token vectors; label 1 plants a fixed "motif" vector at one random
    /// position. Mean pooling dilutes it over 24 tokens; the token probe finds it.
    fn planted(n: usize, seed: u64) -> TokenSplit {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let mut seqs = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let label = (i % 2) as u32;
            let mut s = Array2::from_shape_fn((24, 8), |_| next());
            if label == 1 {
                let at = ((next() + 0.5) * 23.0) as usize;
                s.row_mut(at).fill(1.5);
            }
            seqs.push(s);
            labels.push(label);
        }
        TokenSplit {
            x: seqs,
            y: Targets::Classes {
                labels,
                num_classes: 2,
            },
        }
    }

    #[test]
    fn the_token_probe_finds_a_planted_token() {
        let data = TokenFeatures {
            train: planted(96, 1),
            valid: planted(32, 2),
            test: planted(64, 3),
        };
        let options = FitOptions {
            epochs: 10,
            batch_size: 16,
            lr: 3e-3,
            weight_decay: 0.0,
            patience: 10,
            seed: 0,
            max_steps: None,
            eval_every: None,
            select: Selection::ValidLoss,
            score_initial: false,
            device: dnalm_model::DeviceName::Cpu,
            balance: crate::probes::fit::ClassBalance::None,
        };
        let report = run_token_probe(&data, &options, 1).unwrap();
        assert!(report.summary["auroc"].mean > 0.95, "{:?}", report.summary);
        assert_eq!(report.test_outputs.len(), 1);
        assert_eq!(report.test_outputs[0].nrows(), 64);
    }

    #[test]
    fn padding_never_changes_a_sequence_output() {
        let device = dnalm_model::cpu();
        let head = dnalm_model::io::reinitialize_fan_in(TokenHead::new(8, 2, &device), 3);
        let scaler = Standardizer::fit_all(&[Array2::zeros((2, 8))]);
        let short = Array2::from_shape_fn((5, 8), |(i, j)| (i * 8 + j) as f32 / 40.0);
        let long = Array2::from_shape_fn((12, 8), |(i, j)| ((i + j) % 5) as f32);
        let alone = {
            let (x, m, b) = batch(&[&short], &scaler, &device);
            head.forward(x, m, b)
        };
        let padded = {
            let (x, m, b) = batch(&[&short, &long], &scaler, &device);
            head.forward(x, m, b).slice([0..1, 0..2])
        };
        let a = alone
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        let b = padded
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }
}
