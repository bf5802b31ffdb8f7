//! Per-base (segmentation) heads: one class per base, whatever the tokenizer.
//!
//! A model's states are per token; a per-base task asks about bases. [`BaseMap`] maps every base
//! to one token through the tokenizer's offsets — the covering token whose centre is nearest
//! (ties to the earlier token; a base no token covers, e.g. cut by the context, takes the nearest
//! covered base's token) — and records the base's position inside it. So single-nucleotide,
//! non-overlapping k-mer, overlapping k-mer and BPE tokens all give base-resolution outputs.
//!
//! [`BaseHead`] (the head of the frozen-embedding probe and of per-base fine-tuning): the token
//! states projected to 64 channels, gathered to bases, plus a learned vector for the base's
//! position inside its token (so bases sharing a 6-mer or BPE token can differ), ReLU, a
//! convolution over bases (kernel 9) with ReLU, and a linear output per base — in the pattern of
//! BEND's and SegmentNT's per-nucleotide heads on top of token embeddings.
//!
//! [`BaseCnn`], the baseline that needs no pretraining: the one-hot sequence through four
//! convolutions over bases (kernel 9, dilations 1, 2, 4, 8: a receptive field of 121 bases) with
//! batch norm and ReLU, and a linear output per base.
//!
//! Both are trained by [`super::fit`] (cross-entropy over every base of the batch, early
//! stopping on the validation loss), one run per seed, and scored at base resolution
//! ([`crate::metrics::PerBaseMetrics`]).

use dnalm_model::burn::{
    module::Module,
    nn::{
        conv::{Conv1d, Conv1dConfig},
        BatchNorm, BatchNormConfig, Embedding, EmbeddingConfig, Linear, LinearConfig,
        PaddingConfig1d,
    },
    tensor::{activation::relu, Device, Int, Tensor, TensorData},
};
use dnalm_model::tensors::{named_parameters, HostTensor};
use dnalm_seq::task::Task;
use ndarray::Array2;
use std::collections::BTreeMap;

use crate::{
    features::{
        baseline::{one_hot, CnnReport},
        tasks::{split_rows, targets},
        Targets,
    },
    probes::{
        concat_targets,
        fit::{fit, fit_seeds, predict, FitOptions, Forward, SeedData, SeedRuns},
        token::padded_states,
        Standardizer,
    },
    EvalError,
};

/// The per-base probe's default training budget (`bench` on per-base tasks, the LP-FT start of
/// per-base fine-tuning).
pub const PER_BASE_PROBE_BUDGET: FitOptions = FitOptions {
    epochs: 20,
    batch_size: 16,
    lr: 2e-3,
    weight_decay: 0.01,
    patience: 4,
    seed: 0,
    max_steps: None,
    eval_every: None,
    select: crate::probes::fit::Selection::ValidLoss,
    score_initial: false,
    device: dnalm_model::DeviceName::Cpu,
    balance: crate::probes::fit::ClassBalance::None,
};

/// Channels of the per-base head.
const CHANNELS: usize = 64;
/// Convolution kernel width, in bases.
const KERNEL: usize = 9;
/// Positions inside a token the head tells apart; later positions share the last.
const WITHIN: usize = 16;

/// Where each base of a sequence reads its token state from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseMap {
    /// Per base, the index of its token (among the sequence's tokens, template tokens left out).
    pub token: Vec<u32>,
    /// Per base, its position inside that token (capped at 15).
    pub within: Vec<u8>,
}

impl BaseMap {
    /// The map of a sequence of `bases` bases from its tokens' offsets (`(start, end)` in bases,
    /// template tokens left out). Every base gets a token (see the module notes); a sequence
    /// without tokens maps every base to token 0.
    pub fn from_offsets(offsets: &[(usize, usize)], bases: usize) -> BaseMap {
        // Twice the distance to the token's centre, so centres between bases stay integral.
        let mut best: Vec<Option<(usize, u32)>> = vec![None; bases];
        for (t, &(a, b)) in offsets.iter().enumerate() {
            for (p, slot) in best.iter_mut().enumerate().take(b.min(bases)).skip(a) {
                let distance = (2 * p + 1).abs_diff(a + b);
                if slot.is_none_or(|(d, _)| distance < d) {
                    *slot = Some((distance, t as u32));
                }
            }
        }
        let mut token: Vec<Option<u32>> = best.iter().map(|b| b.map(|(_, t)| t)).collect();
        // Uncovered bases: the nearest covered base's token (the earlier one on a tie).
        let covered: Vec<usize> = (0..bases).filter(|&p| token[p].is_some()).collect();
        if !covered.is_empty() {
            for p in 0..bases {
                if token[p].is_some() {
                    continue;
                }
                let i = covered.partition_point(|&c| c < p);
                let before = i.checked_sub(1).map(|j| covered[j]);
                let after = covered.get(i).copied();
                let pick = match (before, after) {
                    (Some(b), Some(a)) if a - p < p - b => a,
                    (Some(b), _) => b,
                    (None, Some(a)) => a,
                    (None, None) => continue,
                };
                token[p] = token[pick];
            }
        }
        let token: Vec<u32> = token.into_iter().map(|t| t.unwrap_or(0)).collect();
        let within = (0..bases)
            .map(|p| {
                let start = offsets.get(token[p] as usize).map_or(p, |o| o.0);
                p.saturating_sub(start).min(WITHIN - 1) as u8
            })
            .collect();
        BaseMap { token, within }
    }
}

/// One split of a per-base task as frozen per-token embeddings.
#[derive(Debug, Clone)]
pub struct PerBaseSplit {
    /// Per sequence, its tokens' vectors (`tokens x width`).
    pub x: Vec<Array2<f32>>,
    /// Per sequence, its bases' tokens.
    pub maps: Vec<BaseMap>,
    /// Per-base targets.
    pub y: Targets,
}

/// A per-base task's splits as frozen per-token embeddings.
#[derive(Debug, Clone)]
pub struct PerBaseFeatures {
    /// Training sequences.
    pub train: PerBaseSplit,
    /// Validation sequences (early stopping).
    pub valid: PerBaseSplit,
    /// Test sequences.
    pub test: PerBaseSplit,
}

/// The index tensors that take a batch's token states to its bases.
pub struct BaseBatch {
    /// `[rows · bases]`: for each (padded) base, its token's row in the flattened
    /// `[rows · tokens]` states.
    gather: Tensor<1, Int>,
    /// `[rows, bases]`: each base's position inside its token.
    within: Tensor<2, Int>,
    /// `[rows, bases, 1]`: 1 at real bases.
    mask: Tensor<3>,
    /// The real bases in the flattened `[rows · bases]`, row after row.
    real: Tensor<1, Int>,
    rows: usize,
    bases: usize,
}

impl BaseBatch {
    /// The batch of `maps`, whose token states come padded to `tokens` per row, the first
    /// sequence token of each row at position `first` (after template tokens).
    pub fn new(maps: &[&BaseMap], tokens: usize, first: usize, device: &Device) -> BaseBatch {
        let rows = maps.len();
        let bases = maps.iter().map(|m| m.token.len()).max().unwrap_or(1).max(1);
        let mut gather = vec![0i64; rows * bases];
        let mut within = vec![0i64; rows * bases];
        let mut mask = vec![0f32; rows * bases];
        let mut real = Vec::new();
        for (r, m) in maps.iter().enumerate() {
            for (p, (&t, &w)) in m.token.iter().zip(&m.within).enumerate() {
                let at = r * bases + p;
                gather[at] = (r * tokens + first + t as usize) as i64;
                within[at] = w as i64;
                mask[at] = 1.0;
                real.push(at as i64);
            }
        }
        let n = real.len();
        BaseBatch {
            gather: Tensor::from_data(TensorData::new(gather, [rows * bases]), device),
            within: Tensor::from_data(TensorData::new(within, [rows, bases]), device),
            mask: Tensor::from_data(TensorData::new(mask, [rows, bases, 1]), device),
            real: Tensor::from_data(TensorData::new(real, [n]), device),
            rows,
            bases,
        }
    }
}

/// The per-base head on token states (see the module notes).
#[derive(Module, Debug)]
pub struct BaseHead {
    project: Linear,
    within: Embedding,
    conv: Conv1d,
    out: Linear,
}

impl BaseHead {
    /// A head for `width`-wide token states and `classes` classes.
    pub fn new(width: usize, classes: usize, device: &Device) -> BaseHead {
        BaseHead {
            project: LinearConfig::new(width, CHANNELS).init(device),
            within: EmbeddingConfig::new(WITHIN, CHANNELS).init(device),
            conv: Conv1dConfig::new(CHANNELS, CHANNELS, KERNEL)
                .with_padding(PaddingConfig1d::Same)
                .init(device),
            out: LinearConfig::new(CHANNELS, classes).init(device),
        }
    }

    /// Token states `[rows, tokens, width]` → `[real bases, classes]` logits, the bases of row 0
    /// first. Padded bases are zero before the convolution (as its own padding is), so a
    /// sequence's outputs do not depend on its batch.
    pub fn forward(&self, states: Tensor<3>, batch: &BaseBatch) -> Tensor<2> {
        let [rows, tokens, _] = states.dims();
        let h = self
            .project
            .forward(states)
            .reshape([rows * tokens, CHANNELS]);
        let h = h
            .select(0, batch.gather.clone())
            .reshape([batch.rows, batch.bases, CHANNELS]);
        let h = relu(h + self.within.forward(batch.within.clone())) * batch.mask.clone();
        let h = relu(self.conv.forward(h.swap_dims(1, 2))).swap_dims(1, 2);
        self.out
            .forward(h)
            .reshape([batch.rows * batch.bases, self.classes()])
            .select(0, batch.real.clone())
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.out.weight.dims()[1]
    }

    fn device(&self) -> Device {
        self.out.weight.val().device()
    }
}

fn head_forward<'a>(
    x: Vec<&'a Array2<f32>>,
    maps: Vec<&'a BaseMap>,
    scaler: &'a Standardizer,
) -> impl Fn(&BaseHead, &[usize], Option<u64>) -> Result<Tensor<2>, EvalError> + 'a {
    move |net: &BaseHead, rows: &[usize], _: Option<u64>| {
        let device = net.device();
        let seqs: Vec<&Array2<f32>> = rows.iter().map(|&r| x[r]).collect();
        let states = padded_states(&seqs, scaler, &device);
        let tokens = states.dims()[1];
        let m: Vec<&BaseMap> = rows.iter().map(|&r| maps[r]).collect();
        Ok(net.forward(states, &BaseBatch::new(&m, tokens, 0, &device)))
    }
}

/// Trains the per-base head on frozen token embeddings once per seed (seed `options.seed + i`)
/// and scores the test bases.
pub fn run_per_base_probe(
    data: &PerBaseFeatures,
    options: &FitOptions,
    seeds: usize,
) -> Result<SeedRuns, EvalError> {
    let width = data.train.x.first().map_or(0, |x| x.ncols());
    if width == 0 || data.test.x.is_empty() {
        return Err(EvalError::TooLittleData {
            what: "per-base probe".into(),
            message: "needs training and test sequences with at least one token".into(),
        });
    }
    let scaler = Standardizer::fit_all(&data.train.x);
    let x: Vec<&Array2<f32>> = data.train.x.iter().chain(&data.valid.x).collect();
    let maps: Vec<&BaseMap> = data.train.maps.iter().chain(&data.valid.maps).collect();
    let y = concat_targets(&data.train.y, &data.valid.y);
    let forward = head_forward(x.clone(), maps, &scaler);
    let test_forward = head_forward(
        data.test.x.iter().collect(),
        data.test.maps.iter().collect(),
        &scaler,
    );
    let n_train = data.train.x.len();
    let train: Vec<usize> = (0..n_train).collect();
    let valid: Vec<usize> = (n_train..x.len()).collect();
    let outputs = y.outputs();
    fit_seeds(
        options,
        seeds,
        &|device, seed| {
            dnalm_model::io::reinitialize_fan_in(BaseHead::new(width, outputs, device), seed)
        },
        &SeedData {
            forward: &forward,
            targets: &y,
            train: &train,
            valid: &valid,
            test_forward: &test_forward,
            test_targets: &data.test.y,
            test_batch: 32,
        },
    )
}

/// Fits the per-base head on frozen token states `x` (one run, seed `options.seed`, the
/// standardiser fitted on the `train` rows) and returns its parameters with the standardiser
/// folded into the projection — so it reads raw states, as the head of a fine-tuned encoder
/// does — and its validation MCC (the LP-FT start of per-base fine-tuning).
pub fn fit_folded_head(
    x: &[&Array2<f32>],
    maps: &[&BaseMap],
    y: &Targets,
    train: &[usize],
    valid: &[usize],
    options: &FitOptions,
) -> Result<(BTreeMap<String, HostTensor>, f64), EvalError> {
    let width = x.first().map_or(0, |x| x.ncols());
    let train_x: Vec<&Array2<f32>> = train.iter().map(|&r| x[r]).collect();
    let scaler = Standardizer::fit_views(&train_x);
    let forward = head_forward(x.to_vec(), maps.to_vec(), &scaler);
    let device = crate::train_device(&options.device.open()?);
    let net = dnalm_model::io::reinitialize_fan_in(
        BaseHead::new(width, y.outputs(), &device),
        options.seed,
    );
    let fitted = fit(net, &forward, y, train, valid, options)?;
    let rows = if valid.is_empty() { train } else { valid };
    let out = predict(&fitted, &forward as &Forward<BaseHead>, rows, 32)?;
    let valid_mcc = crate::probes::score(&y.select(rows), out.view())
        .get("mcc")
        .copied()
        .unwrap_or(f64::NAN);
    Ok((
        fold_standardizer(named_parameters(&fitted.net), &scaler),
        valid_mcc,
    ))
}

/// A head's parameters with `scaler` folded into its projection:
/// `project((x - m) / s) = x (W / s) + (b - (m / s) W)`.
fn fold_standardizer(
    mut params: BTreeMap<String, HostTensor>,
    scaler: &Standardizer,
) -> BTreeMap<String, HostTensor> {
    let (mean, scale) = (scaler.mean(), scaler.scale());
    if let (Some(w), Some(b)) = (
        params.get("project.weight").cloned(),
        params.get_mut("project.bias"),
    ) {
        let channels = b.values.len();
        let mut folded = w.values.clone();
        for i in 0..mean.len() {
            for c in 0..channels {
                let v = w.values[i * channels + c];
                folded[i * channels + c] = v / scale[i];
                b.values[c] -= mean[i] / scale[i] * v;
            }
        }
        if let Some(w) = params.get_mut("project.weight") {
            w.values = folded;
        }
    }
    params
}

/// Dilations of the baseline's convolutions.
const CNN_DILATIONS: [usize; 4] = [1, 2, 4, 8];

/// One dilated convolution ('same' padding) → batch norm → ReLU.
#[derive(Module, Debug)]
struct DilatedBlock {
    conv: Conv1d,
    norm: BatchNorm,
}

/// The per-base one-hot CNN baseline (see the module notes).
#[derive(Module, Debug)]
pub struct BaseCnn {
    blocks: Vec<DilatedBlock>,
    out: Linear,
}

impl BaseCnn {
    /// A CNN with `channels` filters per block and `classes` classes.
    pub fn new(channels: usize, classes: usize, device: &Device) -> BaseCnn {
        let blocks = CNN_DILATIONS
            .iter()
            .enumerate()
            .map(|(i, &dilation)| DilatedBlock {
                conv: Conv1dConfig::new(if i == 0 { 4 } else { channels }, channels, KERNEL)
                    .with_dilation(dilation)
                    .with_padding(PaddingConfig1d::Explicit(
                        dilation * (KERNEL - 1) / 2,
                        dilation * (KERNEL - 1) / 2,
                    ))
                    .init(device),
                norm: BatchNormConfig::new(channels).init(device),
            })
            .collect();
        BaseCnn {
            blocks,
            out: LinearConfig::new(channels, classes).init(device),
        }
    }

    /// Sequences → `[bases, classes]` logits, the bases of the first sequence first.
    pub fn forward(&self, seqs: &[&[u8]]) -> Tensor<2> {
        let device = self.out.weight.val().device();
        let mut h = one_hot(seqs, &device);
        let [rows, _, len] = h.dims();
        let mut real = Vec::new();
        let mut mask = vec![0f32; rows * len];
        for (r, s) in seqs.iter().enumerate() {
            for p in 0..s.len() {
                real.push((r * len + p) as i64);
                mask[r * len + p] = 1.0;
            }
        }
        let mask = Tensor::<3>::from_data(TensorData::new(mask, [rows, 1, len]), &device);
        for block in &self.blocks {
            // Padding stays zero between blocks, so a sequence's outputs do not depend on its
            // batch (batch norm aside, which uses running statistics at inference).
            h = relu(block.norm.forward(block.conv.forward(h))) * mask.clone();
        }
        let classes = self.out.weight.dims()[1];
        let n = real.len();
        self.out
            .forward(h.swap_dims(1, 2))
            .reshape([rows * len, classes])
            .select(
                0,
                Tensor::<1, Int>::from_data(TensorData::new(real, [n]), &device),
            )
    }
}

/// Trains the per-base one-hot CNN on `task` with `seeds` seeds (seed `options.seed + i`), scoring
/// the test bases.
pub fn per_base_cnn(
    task: &Task,
    channels: usize,
    options: &FitOptions,
    seeds: usize,
) -> Result<CnnReport, EvalError> {
    let [train, valid, test] = split_rows(task)?;
    let fit_seqs: Vec<&[u8]> = train
        .iter()
        .chain(&valid)
        .map(|r| r.sequence.as_slice())
        .collect();
    let test_seqs: Vec<&[u8]> = test.iter().map(|r| r.sequence.as_slice()).collect();
    let y = concat_targets(&targets(task, &train), &targets(task, &valid));
    let train_rows: Vec<usize> = (0..train.len()).collect();
    let valid_rows: Vec<usize> = (train.len()..fit_seqs.len()).collect();
    let over = |seqs: &[&[u8]], net: &BaseCnn, rows: &[usize]| {
        let s: Vec<&[u8]> = rows.iter().map(|&r| seqs[r]).collect();
        Ok(net.forward(&s))
    };
    let forward = |net: &BaseCnn, rows: &[usize], _: Option<u64>| over(&fit_seqs, net, rows);
    let test_forward = |net: &BaseCnn, rows: &[usize], _: Option<u64>| over(&test_seqs, net, rows);
    let outputs = y.outputs();
    let fitted = fit_seeds(
        options,
        seeds,
        &|device, seed| {
            dnalm_model::io::reinitialize_fan_in(BaseCnn::new(channels, outputs, device), seed)
        },
        &SeedData {
            forward: &forward,
            targets: &y,
            train: &train_rows,
            valid: &valid_rows,
            test_forward: &test_forward,
            test_targets: &targets(task, &test),
            test_batch: 64,
        },
    )?;
    Ok(CnnReport {
        fitted,
        failed_seeds: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::fit::{ClassBalance, Selection};

    fn options(epochs: usize) -> FitOptions {
        FitOptions {
            epochs,
            batch_size: 16,
            lr: 3e-3,
            weight_decay: 0.0,
            patience: epochs,
            seed: 0,
            max_steps: None,
            eval_every: None,
            select: Selection::ValidLoss,
            score_initial: false,
            device: dnalm_model::DeviceName::Cpu,
            balance: ClassBalance::None,
        }
    }

    /// Every tokenizer's offsets map each base to one token: its own (single nucleotides,
    /// non-overlapping k-mers, BPE), the one centred on it (overlapping k-mers), the nearest
    /// covered base's (bases no token covers).
    #[test]
    fn every_base_maps_to_the_covering_token_nearest_its_centre() {
        let single = BaseMap::from_offsets(&[(0, 1), (1, 2), (2, 3)], 3);
        assert_eq!(single.token, [0, 1, 2]);
        assert_eq!(single.within, [0, 0, 0]);
        let kmers = BaseMap::from_offsets(&[(0, 3), (3, 6), (6, 7)], 7);
        assert_eq!(kmers.token, [0, 0, 0, 1, 1, 1, 2]);
        assert_eq!(kmers.within, [0, 1, 2, 0, 1, 2, 0]);
        // Overlapping 3-mers of 6 bases: token t covers t..t+3, centred on t + 1.
        let overlapping = BaseMap::from_offsets(&[(0, 3), (1, 4), (2, 5), (3, 6)], 6);
        assert_eq!(overlapping.token, [0, 0, 1, 2, 3, 3]);
        assert_eq!(overlapping.within, [0, 1, 1, 1, 1, 2]);
        // Bases 0-1 and 6-9 are covered by no token (a cut context).
        let cut = BaseMap::from_offsets(&[(2, 4), (4, 6)], 10);
        assert_eq!(cut.token, [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
        assert_eq!(BaseMap::from_offsets(&[], 2).token, [0, 0]);
    }

    /// Random token vectors; every base of a token whose vector is marked is class 1, and the
    /// token's *second* base is class 2 — the head must read the token and the position in it.
    fn planted(n: usize, seed: u64) -> PerBaseSplit {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let (mut xs, mut maps, mut classes) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let tokens = 10 + i % 5;
            let mut s = Array2::from_shape_fn((tokens, 8), |_| next());
            let offsets: Vec<(usize, usize)> = (0..tokens).map(|t| (3 * t, 3 * t + 3)).collect();
            let mut c = vec![0u8; 3 * tokens];
            for t in 0..tokens {
                if next() > 0.2 {
                    s[[t, 0]] = 2.0;
                    c[3 * t..3 * t + 3].fill(1);
                    c[3 * t + 1] = 2;
                }
            }
            maps.push(BaseMap::from_offsets(&offsets, 3 * tokens));
            xs.push(s);
            classes.push(c);
        }
        PerBaseSplit {
            x: xs,
            maps,
            y: Targets::Bases {
                classes,
                names: vec!["other".into(), "site".into(), "centre".into()],
            },
        }
    }

    #[test]
    fn the_per_base_head_finds_planted_tokens_and_positions_inside_them() {
        let data = PerBaseFeatures {
            train: planted(64, 1),
            valid: planted(16, 2),
            test: planted(32, 3),
        };
        let report = run_per_base_probe(&data, &options(12), 1).unwrap();
        assert!(report.summary["mcc"].mean > 0.9, "{:?}", report.summary);
        assert!(
            report.summary["f1/centre"].mean > 0.9,
            "{:?}",
            report.summary
        );
        let bases: usize = data.test.maps.iter().map(|m| m.token.len()).sum();
        assert_eq!(report.test_outputs[0].nrows(), bases);
    }

    #[test]
    fn padding_never_changes_a_sequence_output() {
        let device = dnalm_model::cpu();
        let head = dnalm_model::io::reinitialize_fan_in(BaseHead::new(8, 3, &device), 3);
        let scaler = Standardizer::fit_all(&[Array2::zeros((2, 8))]);
        let short = Array2::from_shape_fn((4, 8), |(i, j)| (i * 8 + j) as f32 / 40.0);
        let long = Array2::from_shape_fn((9, 8), |(i, j)| ((i + j) % 5) as f32);
        let map = |tokens: usize| {
            BaseMap::from_offsets(
                &(0..tokens).map(|t| (2 * t, 2 * t + 2)).collect::<Vec<_>>(),
                2 * tokens,
            )
        };
        let (m_short, m_long) = (map(4), map(9));
        let run = |seqs: &[&Array2<f32>], maps: &[&BaseMap]| {
            let states = padded_states(seqs, &scaler, &device);
            let tokens = states.dims()[1];
            head.forward(states, &BaseBatch::new(maps, tokens, 0, &device))
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let alone = run(&[&short], &[&m_short]);
        let padded = run(&[&short, &long], &[&m_short, &m_long]);
        assert_eq!(alone.len(), 8 * 3);
        assert_eq!(padded.len(), (8 + 18) * 3);
        for (a, b) in alone.iter().zip(&padded) {
            assert!((a - b).abs() < 1e-5, "{alone:?} vs {padded:?}");
        }
    }

    /// The LP-FT start: the probe head with its standardiser folded in gives, on raw states,
    /// the outputs the probe gives on standardised ones.
    #[test]
    fn a_folded_head_reads_raw_states_as_the_probe_read_standardised_ones() {
        let device = dnalm_model::cpu();
        let head = dnalm_model::io::reinitialize_fan_in(BaseHead::new(8, 3, &device), 5);
        let x = Array2::from_shape_fn((6, 8), |(i, j)| (i * 8 + j) as f32 * 0.37 - 4.0);
        let y = Array2::from_shape_fn((4, 8), |(i, j)| ((i + 3 * j) % 7) as f32 + 2.0);
        let scaler = Standardizer::fit_all(&[x.clone(), y.clone()]);
        let maps = [
            BaseMap::from_offsets(&(0..6).map(|t| (t, t + 1)).collect::<Vec<_>>(), 6),
            BaseMap::from_offsets(&(0..4).map(|t| (t, t + 1)).collect::<Vec<_>>(), 4),
        ];
        let maps: Vec<&BaseMap> = maps.iter().collect();
        let run = |head: &BaseHead, scaler: &Standardizer| {
            let states = padded_states(&[&x, &y], scaler, &device);
            let tokens = states.dims()[1];
            head.forward(states, &BaseBatch::new(&maps, tokens, 0, &device))
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let probe = run(&head, &scaler);
        let folded = dnalm_model::io::load_parameters(
            BaseHead::new(8, 3, &device),
            &fold_standardizer(named_parameters(&head), &scaler),
            "folded".as_ref(),
        )
        .unwrap();
        let raw = run(&folded, &Standardizer::identity(8));
        assert_eq!(probe.len(), 10 * 3);
        for (a, b) in probe.iter().zip(&raw) {
            assert!((a - b).abs() < 1e-4, "{probe:?} vs {raw:?}");
        }
    }

    /// A per-base task from sequence alone: bases inside a planted `GATTACA` are class 1.
    #[test]
    fn the_per_base_cnn_marks_a_planted_motif_base_by_base() {
        use dnalm_seq::task::{Label, LabelledSequence, Split, TaskKind, TaskSpec};
        let mut x = 11u64;
        let mut examples = Vec::new();
        for i in 0..150 {
            let mut seq: Vec<u8> = (0..48)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    b"ACGT"[(x >> 62) as usize]
                })
                .collect();
            let mut classes = vec![0u8; 48];
            if i % 2 == 0 {
                let at = (x >> 20) as usize % 40;
                seq[at..at + 7].copy_from_slice(b"GATTACA");
                classes[at..at + 7].fill(1);
            }
            let split = match (i / 2) % 6 {
                0 => Split::Valid,
                1 => Split::Test,
                _ => Split::Train,
            };
            examples.push(LabelledSequence {
                id: i.to_string(),
                sequence: seq,
                label: Label::Bases(classes),
                split: Some(split),
            });
        }
        let task = Task {
            spec: TaskSpec {
                name: "motif".into(),
                description: None,
                kind: TaskKind::PerBase {
                    label_names: vec!["other".into(), "motif".into()],
                },
                tokenizer: None,
            },
            dir: "motif".into(),
            examples,
            notes: Vec::new(),
        };
        let o = FitOptions {
            lr: 1e-2,
            batch_size: 8,
            ..options(20)
        };
        let report = per_base_cnn(&task, 8, &o, 1).unwrap();
        assert!(
            report.fitted.summary["mcc/motif"].mean > 0.8,
            "{:?}",
            report.fitted.summary
        );
    }
}
