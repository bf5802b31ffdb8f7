//! One training loop for every network dnalm-eval trains (MLP probe, one-hot CNN baseline,
//! token probe, fine-tuned encoder): mini-batch AdamW (dnalm-train's, global-norm clipping, an
//! optional learning-rate factor per parameter), cross-entropy (optionally class-weighted),
//! binary cross-entropy per label (multi-label) or standardised MSE, a budget in
//! epochs and optionally in steps, validation every epoch or every N steps, early stopping on the
//! validation loss or on the validation headline metric, the best point kept (its parameters and
//! batch-norm statistics). Deterministic for a seed: batches are shuffled by a seeded ChaCha
//! generator.
//!
//! On x86, a process that trains should flush subnormal floats to zero (the `dnalm` binary does,
//! first thing in `main`): a backward pass full of them ran 5 times slower when fine-tuning.

use dnalm_model::burn::{
    module::Module,
    optim::GradientsParams,
    store::ModuleRecord,
    tensor::{
        activation::{log_sigmoid, log_softmax, sigmoid, softmax},
        Int, Tensor, TensorData,
    },
};
use dnalm_train::{optim::AdamW, run_config::OptimConfig};
use ndarray::Array2;
use rand::seq::SliceRandom;
use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};

use std::collections::BTreeMap;

use crate::{
    features::Targets,
    metrics::{summarise, Summary},
    probes::{headline, score},
    EvalError,
};
use dnalm_model::DeviceName;

/// Budget and optimiser settings of one fit.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FitOptions {
    /// Maximum passes over the training rows.
    pub epochs: usize,
    /// Rows per step.
    pub batch_size: usize,
    /// Peak learning rate (linear warmup over the first 5% of steps, then cosine decay).
    pub lr: f64,
    /// Decoupled weight decay on matrices.
    pub weight_decay: f64,
    /// Stop after this many validations without a better score.
    pub patience: usize,
    /// Seed of the shuffling (and of dropout, where the network has it).
    pub seed: u64,
    /// A budget in optimiser steps on top of `epochs` (whichever ends first; the schedule spans
    /// the smaller).
    #[serde(default)]
    pub max_steps: Option<usize>,
    /// Validate every this many steps; `None`: at the end of every epoch.
    #[serde(default)]
    pub eval_every: Option<usize>,
    /// What picks the best point and drives early stopping.
    #[serde(default)]
    pub select: Selection,
    /// Also validate the network before the first step, so that the fit can end where it began
    /// (a head initialised from a linear probe is never left for something worse on valid).
    #[serde(default)]
    pub score_initial: bool,
    /// Where the network trains (`cpu` by default; a GPU with `--device`).
    #[serde(default)]
    pub device: DeviceName,
    /// Whether rare classes (or, multi-label, rare positives) weigh more in the loss.
    #[serde(default)]
    pub balance: ClassBalance,
}

/// How the classes of a classification loss are weighted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassBalance {
    /// Every row weighs the same.
    #[default]
    None,
    /// Classes weigh `rows / (classes · rows of the class)` (scikit-learn's `"balanced"`),
    /// the loss a weighted mean; multi-label: each label's positives weigh `negatives /
    /// positives` (PyTorch's `pos_weight`), so a rare label is not learnt as "never".
    Balanced,
}

impl std::str::FromStr for ClassBalance {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(ClassBalance::None),
            "balanced" => Ok(ClassBalance::Balanced),
            _ => Err(format!(
                "unknown class weighting '{s}' (expected none or balanced)"
            )),
        }
    }
}

impl ClassBalance {
    /// The loss weights of `targets` from its `train` rows: per class (classes) or per label's
    /// positives (multi-label); `None` when unweighted or for values. Absent classes get 0,
    /// labels without positives 1.
    pub(crate) fn weights(self, targets: &Targets, train: &[usize]) -> Option<Vec<f32>> {
        if self == ClassBalance::None {
            return None;
        }
        match targets {
            Targets::Classes {
                labels,
                num_classes,
            } => {
                let mut counts = vec![0usize; *num_classes];
                for &r in train {
                    counts[labels[r] as usize] += 1;
                }
                let present = counts.iter().filter(|&&c| c > 0).count().max(1);
                Some(
                    counts
                        .iter()
                        .map(|&c| {
                            if c == 0 {
                                0.0
                            } else {
                                (train.len() as f64 / (present * c) as f64) as f32
                            }
                        })
                        .collect(),
                )
            }
            Targets::Labels { .. } => Some(
                targets
                    .select(train)
                    .label_counts()
                    .into_iter()
                    .map(|(pos, neg)| {
                        if pos == 0 {
                            1.0
                        } else {
                            (neg as f64 / pos as f64) as f32
                        }
                    })
                    .collect(),
            ),
            Targets::Bases { classes, names } => {
                let mut counts = vec![0usize; names.len()];
                for &r in train {
                    for &k in &classes[r] {
                        counts[k as usize] += 1;
                    }
                }
                let total: usize = counts.iter().sum();
                let present = counts.iter().filter(|&&c| c > 0).count().max(1);
                Some(
                    counts
                        .iter()
                        .map(|&c| {
                            if c == 0 {
                                0.0
                            } else {
                                (total as f64 / (present * c) as f64) as f32
                            }
                        })
                        .collect(),
                )
            }
            Targets::Values(_) => None,
        }
    }
}

/// What picks the best point of a fit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// The lowest validation loss.
    #[default]
    ValidLoss,
    /// The highest validation headline metric (MCC for classes, Pearson for values), ties
    /// broken by the lower loss: what the test score is reported in.
    ValidMetric,
}

impl FitOptions {
    /// Optimiser steps one pass over `train_rows` rows takes.
    pub fn steps_per_epoch(&self, train_rows: usize) -> usize {
        train_rows.div_ceil(self.batch_size.max(1))
    }

    /// Optimiser steps the whole fit runs on `train_rows` rows: `epochs` passes, cut to
    /// `max_steps` when that is smaller (and never below one step).
    pub fn total_steps(&self, train_rows: usize) -> usize {
        let planned = self.steps_per_epoch(train_rows) * self.epochs.max(1);
        self.max_steps.map_or(planned, |m| m.clamp(1, planned))
    }
}

/// The rows validation reads: `valid`, or `train` when there are no validation rows.
pub(crate) fn validation_rows<'r>(train: &'r [usize], valid: &'r [usize]) -> &'r [usize] {
    if valid.is_empty() {
        train
    } else {
        valid
    }
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            epochs: 30,
            batch_size: 64,
            lr: 1e-3,
            weight_decay: 0.01,
            patience: 4,
            seed: 0,
            max_steps: None,
            eval_every: None,
            select: Selection::ValidLoss,
            score_initial: false,
            device: dnalm_model::DeviceName::Cpu,
            balance: ClassBalance::None,
        }
    }
}

/// Test results of a network trained once per seed (the CNN baseline, the token probe,
/// fine-tuning): one owner for "mean ± sd over seeds, with each seed's outputs kept".
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SeedRuns {
    /// Test metrics per seed scored.
    pub runs: Vec<BTreeMap<String, f64>>,
    /// Mean ± sd over those seeds (after [`SeedRuns::summarise`]).
    pub summary: BTreeMap<String, Summary>,
    /// Epochs run per seed.
    pub epochs: Vec<usize>,
    /// Test outputs (class probabilities or values) per seed scored, for paired comparisons;
    /// not serialised.
    #[serde(skip)]
    pub test_outputs: Vec<Array2<f32>>,
}

impl SeedRuns {
    /// Records one seed: the epochs it ran and its test outputs, scored against `targets`.
    pub fn record(&mut self, epochs_run: usize, targets: &Targets, outputs: Array2<f32>) {
        self.epochs.push(epochs_run);
        self.runs.push(score(targets, outputs.view()));
        self.test_outputs.push(outputs);
    }

    /// Fills `summary` from the runs recorded.
    pub fn summarise(mut self) -> Self {
        self.summary = summarise(&self.runs);
        self
    }
}

/// What a fit produced.
#[derive(Debug, Clone)]
pub struct Fitted<N> {
    /// The network at its best validation point.
    pub net: N,
    /// The epoch that point ended (1-based; 0: the initial network, see
    /// [`FitOptions::score_initial`]).
    pub best_epoch: usize,
    /// The optimiser steps taken before that point.
    pub best_step: usize,
    /// Its validation loss.
    pub best_valid_loss: f64,
    /// Its validation headline metric (only when selecting on it).
    pub best_valid_metric: Option<f64>,
    /// Epochs run (the last one possibly in part).
    pub epochs_run: usize,
    /// Optimiser steps run.
    pub steps_run: usize,
    /// Seconds spent in training steps (forward, backward, update), validation excluded.
    pub train_seconds: f64,
    /// How the network's outputs become predictions.
    pub output: OutputKind,
}

/// How a network's raw outputs become predictions: one owner for `fit`, [`predict`] and the
/// heads fine-tuning saves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutputKind {
    /// Exclusive classes (per row or per base): a softmax.
    Classes,
    /// Independent labels (multi-label): a sigmoid each.
    Labels,
    /// A value, predicted standardised by the training targets' mean and sd.
    Value {
        /// Training targets' mean.
        mean: f64,
        /// Training targets' sd (1 when they are all equal).
        sd: f64,
    },
}

impl OutputKind {
    /// The output of a network trained on the `train` rows of `targets`.
    pub fn of(targets: &Targets, train: &[usize]) -> OutputKind {
        match targets {
            Targets::Values(_) => match target_scale(targets, train) {
                Some((mean, sd)) => OutputKind::Value { mean, sd },
                None => OutputKind::Value { mean: 0.0, sd: 1.0 },
            },
            Targets::Labels { .. } => OutputKind::Labels,
            Targets::Classes { .. } | Targets::Bases { .. } => OutputKind::Classes,
        }
    }

    /// A value's mean and sd (`None` for classes and labels).
    pub fn target_scale(self) -> Option<(f64, f64)> {
        match self {
            OutputKind::Value { mean, sd } => Some((mean, sd)),
            OutputKind::Classes | OutputKind::Labels => None,
        }
    }
}

/// Computes a network's outputs (`[rows, outputs]`: logits, or one standardised value) for the
/// given dataset rows; `Some(seed)` asks for training behaviour (dropout) with that seed.
pub type Forward<'a, N> = dyn Fn(&N, &[usize], Option<u64>) -> Result<Tensor<2>, EvalError> + 'a;

/// Trains `net` (on an autodiff device) on `train` rows, early-stopping on `valid` rows.
pub fn fit<N: Module + Clone>(
    net: N,
    forward: &Forward<N>,
    targets: &Targets,
    train: &[usize],
    valid: &[usize],
    options: &FitOptions,
) -> Result<Fitted<N>, EvalError> {
    fit_scaled(net, forward, targets, train, valid, options, &|_| 1.0)
}

/// One validation: the mean loss and, when selecting on it, the headline metric.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Validation {
    /// Mean loss over the rows.
    pub(crate) loss: f64,
    /// Headline metric (when selecting on it).
    pub(crate) metric: Option<f64>,
}

impl Validation {
    /// Whether `self` beats `best` under `select`.
    pub(crate) fn beats(&self, best: &Validation, select: Selection) -> bool {
        match (select, self.metric, best.metric) {
            (Selection::ValidMetric, Some(a), Some(b)) if a.is_finite() && b.is_finite() => {
                a > b || (a == b && self.loss < best.loss)
            }
            (Selection::ValidMetric, Some(a), _) if a.is_finite() => true,
            _ => self.loss < best.loss,
        }
    }
}

/// [`fit`] with a learning-rate factor per parameter (by dotted name, e.g. layer-wise decay).
pub fn fit_scaled<N: Module + Clone>(
    net: N,
    forward: &Forward<N>,
    targets: &Targets,
    train: &[usize],
    valid: &[usize],
    options: &FitOptions,
    lr_scale: &dyn Fn(&str) -> f64,
) -> Result<Fitted<N>, EvalError> {
    if train.is_empty() {
        return Err(EvalError::TooLittleData {
            what: "training".into(),
            message: "no training rows".into(),
        });
    }
    let output = OutputKind::of(targets, train);
    let target_scale = output.target_scale();
    let weights = options.balance.weights(targets, train);
    let loss =
        |out: Tensor<2>, rows: &[usize]| loss(out, targets, rows, target_scale, weights.as_deref());
    let batch_size = options.batch_size.max(1);
    let steps_per_epoch = options.steps_per_epoch(train.len());
    let total = options.total_steps(train.len());
    let eval_every = options.eval_every.unwrap_or(steps_per_epoch).max(1);
    let optim_config = OptimConfig {
        lr: options.lr,
        weight_decay: options.weight_decay,
        grad_clip: 1.0,
        warmup_steps: (total as u64 / 20).max(1),
        ..OptimConfig::default()
    };
    let mut optim = AdamW::new(optim_config.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut order = train.to_vec();
    let valid_rows = validation_rows(train, valid);
    let validate = |net: &N| {
        validation(
            net,
            forward,
            targets,
            valid_rows,
            output,
            options.select,
            weights.as_deref(),
        )
    };
    let mut net = net;
    // The best point is kept as a record, not a clone: clones share batch norm's running
    // statistics, which later steps would go on updating.
    let mut best: Option<(ModuleRecord, usize, Validation)> = None;
    if options.score_initial {
        best = Some((net.clone().into_record(), 0, validate(&net)?));
    }
    let mut since_best = 0;
    let mut step = 0usize;
    let mut epochs_run = 0;
    let mut train_seconds = 0.0;
    'epochs: for epoch in 1..=options.epochs.max(1) {
        epochs_run = epoch;
        order.shuffle(&mut rng);
        for rows in order.chunks(batch_size) {
            let t0 = std::time::Instant::now();
            let seed = options.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ step as u64;
            let out = forward(&net, rows, Some(seed))?;
            let loss = loss(out, rows)?;
            let value = loss.clone().into_scalar::<f32>();
            if !value.is_finite() {
                return Err(EvalError::Numeric {
                    routine: "training",
                    message: format!("the loss became {value} at epoch {epoch}"),
                });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            let lr = optim_config.lr_at(step as u64, total as u64);
            net = optim.step_scaled(net, grads, lr, lr_scale).0;
            step += 1;
            train_seconds += t0.elapsed().as_secs_f64();
            if step.is_multiple_of(eval_every) || step == total {
                let v = validate(&net)?;
                if best.as_ref().is_none_or(|b| v.beats(&b.2, options.select)) {
                    best = Some((net.clone().into_record(), step, v));
                    since_best = 0;
                } else {
                    since_best += 1;
                    if since_best >= options.patience.max(1) {
                        break 'epochs;
                    }
                }
            }
            if step >= total {
                break 'epochs;
            }
        }
    }
    let (record, best_step, best_validation) = best.ok_or_else(|| EvalError::BadOption {
        option: "epochs",
        message: "no epoch ran".into(),
    })?;
    let net = net
        .try_load_record(record)
        .map_err(|e| EvalError::Numeric {
            routine: "restoring the best epoch",
            message: e.to_string(),
        })?;
    Ok(Fitted {
        net,
        best_epoch: best_step.div_ceil(steps_per_epoch),
        best_step,
        best_valid_loss: best_validation.loss,
        best_valid_metric: best_validation.metric,
        epochs_run,
        steps_run: step,
        train_seconds,
        output,
    })
}

/// A batch's outputs on the host as [`predict`] gives them: class probabilities, or
/// de-standardised values.
/// The mean and sd of the regression targets of `rows` (sd 1 when they are all equal), by which
/// a network's outputs are standardised; `None` for classes. One owner: `fit` and the LP-FT head
/// of fine-tuning must scale alike.
pub(crate) fn target_scale(targets: &Targets, rows: &[usize]) -> Option<(f64, f64)> {
    match targets {
        Targets::Values(v) => {
            let vals: Vec<f64> = rows.iter().map(|&i| v[i]).collect();
            let s = crate::metrics::Summary::of(&vals);
            Some((s.mean, if s.sd > 0.0 { s.sd } else { 1.0 }))
        }
        Targets::Classes { .. } | Targets::Labels { .. } | Targets::Bases { .. } => None,
    }
}

/// Validates `net` (in inference mode) on `rows` of `targets`: the mean loss and, when selecting
/// on it, the headline metric.
pub(crate) fn validation<N: Module>(
    net: &N,
    forward: &Forward<N>,
    targets: &Targets,
    rows: &[usize],
    output: OutputKind,
    select: Selection,
    weights: Option<&[f32]>,
) -> Result<Validation, EvalError> {
    let eval = net.valid();
    let mut weighted = 0.0;
    let mut outputs: Vec<Array2<f32>> = Vec::new();
    for chunk in rows.chunks(256) {
        let out = forward(&eval, chunk, None)?;
        let l = loss(out.clone(), targets, chunk, output.target_scale(), weights)?
            .into_scalar::<f32>() as f64;
        weighted += l * chunk.len() as f64;
        if select == Selection::ValidMetric {
            outputs.push(host_outputs(out, output)?);
        }
    }
    let metric = if outputs.is_empty() {
        None
    } else {
        let views: Vec<_> = outputs.iter().map(Array2::view).collect();
        let all = ndarray::concatenate(ndarray::Axis(0), &views)
            .map_err(|e| crate::shape_error("validation outputs", e))?;
        score(&targets.select(rows), all.view())
            .get(headline(targets))
            .copied()
    };
    Ok(Validation {
        loss: weighted / rows.len().max(1) as f64,
        metric,
    })
}

pub(crate) fn host_outputs(y: Tensor<2>, output: OutputKind) -> Result<Array2<f32>, EvalError> {
    let y = match output {
        OutputKind::Value { mean, sd } => {
            let [n, _] = y.dims();
            y.slice([0..n, 0..1]) * sd + mean
        }
        OutputKind::Labels => sigmoid(y),
        OutputKind::Classes => softmax(y, 1),
    };
    let [rows, width] = y.dims();
    let values = y
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| crate::tensor_error("prediction", e))?;
    Array2::from_shape_vec((rows, width), values).map_err(|e| crate::shape_error("prediction", e))
}

/// The batch loss: cross-entropy (weighted mean under `weights`; per-base: over the rows'
/// bases), standardised MSE, or multi-label binary cross-entropy (positives of label `l`
/// weighted by `weights[l]`).
pub(crate) fn loss(
    out: Tensor<2>,
    targets: &Targets,
    rows: &[usize],
    scale: Option<(f64, f64)>,
    weights: Option<&[f32]>,
) -> Result<Tensor<1>, EvalError> {
    let device = out.device();
    let n = rows.len();
    // Cross-entropy of `out` (one row per class index in `t`), weighted mean under `weights`.
    let cross_entropy = |out: Tensor<2>, t: Vec<u32>| -> Result<Tensor<1>, EvalError> {
        let n = t.len();
        let [rows_out, _] = out.dims();
        if rows_out != n {
            return Err(EvalError::Mismatch {
                what: "training batch".into(),
                message: format!("{rows_out} output rows for {n} targets"),
            });
        }
        let ids: Vec<i64> = t.iter().map(|&k| k as i64).collect();
        let picked = log_softmax(out, 1).gather(
            1,
            Tensor::<2, Int>::from_data(TensorData::new(ids, [n, 1]), &device),
        );
        Ok(match weights {
            None => picked.mean().neg(),
            Some(w) => {
                let w: Vec<f32> = t.iter().map(|&k| w[k as usize]).collect();
                let total = w.iter().sum::<f32>().max(f32::MIN_POSITIVE);
                let w = Tensor::<2>::from_data(TensorData::new(w, [n, 1]), &device);
                (picked * w).sum().neg() / total
            }
        })
    };
    Ok(match targets {
        Targets::Classes { labels, .. } => {
            cross_entropy(out, rows.iter().map(|&r| labels[r]).collect())?
        }
        // One output row per base, the rows' bases one after another.
        Targets::Bases { classes, .. } => cross_entropy(
            out,
            rows.iter()
                .flat_map(|&r| classes[r].iter().map(|&k| k as u32))
                .collect(),
        )?,
        Targets::Labels { present, .. } => {
            let k = present.ncols();
            let t: Vec<f32> = rows
                .iter()
                .flat_map(|&r| {
                    present
                        .row(r)
                        .iter()
                        .map(|&b| b as u8 as f32)
                        .collect::<Vec<_>>()
                })
                .collect();
            let t = Tensor::<2>::from_data(TensorData::new(t, [n, k]), &device);
            // -[w·y·log σ(z) + (1 - y)·log σ(-z)], log σ written stably by burn.
            let positive = match weights {
                Some(w) => {
                    let w = Tensor::<2>::from_data(TensorData::new(w.to_vec(), [1, k]), &device);
                    t.clone() * w
                }
                None => t.clone(),
            };
            (positive * log_sigmoid(out.clone()) + (t.neg() + 1.0) * log_sigmoid(out.neg()))
                .mean()
                .neg()
        }
        Targets::Values(v) => {
            let (mean, sd) = scale.unwrap_or((0.0, 1.0));
            let t: Vec<f32> = rows.iter().map(|&r| ((v[r] - mean) / sd) as f32).collect();
            let t = Tensor::<2>::from_data(TensorData::new(t, [n, 1]), &device);
            let [_, width] = out.dims();
            (out.slice([0..n, 0..width.min(1)]) - t)
                .powi_scalar(2)
                .mean()
        }
    })
}

/// What [`fit_seeds`] trains and scores: the rows a network fits on, and the test rows with
/// their own forward pass and targets.
pub struct SeedData<'a, N> {
    /// Forward pass over the training and validation rows.
    pub forward: &'a Forward<'a, N>,
    /// Targets of those rows.
    pub targets: &'a Targets,
    /// Training rows.
    pub train: &'a [usize],
    /// Validation rows (early stopping).
    pub valid: &'a [usize],
    /// Forward pass over the test rows.
    pub test_forward: &'a Forward<'a, N>,
    /// Test targets, one per test row in order.
    pub test_targets: &'a Targets,
    /// Test rows per prediction batch.
    pub test_batch: usize,
}

/// Trains a fresh network once per seed (seed `options.seed + i`; `init` builds it on the
/// options' training device from the seed), early-stopping on valid, and scores every test row:
/// the loop every head trained from scratch shares (token probe, per-base probe, per-base CNN).
pub fn fit_seeds<N: Module + Clone>(
    options: &FitOptions,
    seeds: usize,
    init: &dyn Fn(&dnalm_model::burn::tensor::Device, u64) -> N,
    data: &SeedData<'_, N>,
) -> Result<SeedRuns, EvalError> {
    let test_rows: Vec<usize> = (0..data.test_targets.len()).collect();
    let mut runs = SeedRuns::default();
    for i in 0..seeds.max(1) as u64 {
        let o = FitOptions {
            seed: options.seed.wrapping_add(i),
            ..options.clone()
        };
        let device = crate::train_device(&o.device.open()?);
        let net = init(&device, o.seed);
        let fitted = fit(net, data.forward, data.targets, data.train, data.valid, &o)?;
        let out = predict(&fitted, data.test_forward, &test_rows, data.test_batch)?;
        runs.record(fitted.epochs_run, data.test_targets, out);
    }
    Ok(runs.summarise())
}

/// Outputs of a trained network for `rows`: class probabilities (`rows x classes`) or, for
/// regression, the de-standardised prediction (`rows x 1`).
pub fn predict<N: Module>(
    fitted: &Fitted<N>,
    forward: &Forward<N>,
    rows: &[usize],
    batch: usize,
) -> Result<Array2<f32>, EvalError> {
    predict_rows(&fitted.net, forward, rows, batch, fitted.output)
}

/// [`predict`] for any network (in inference mode) whose outputs are `output`.
pub(crate) fn predict_rows<N: Module>(
    net: &N,
    forward: &Forward<N>,
    rows: &[usize],
    batch: usize,
    output: OutputKind,
) -> Result<Array2<f32>, EvalError> {
    let eval = net.valid();
    let mut parts = Vec::new();
    for chunk in rows.chunks(batch.max(1)) {
        parts.push(host_outputs(forward(&eval, chunk, None)?, output)?);
    }
    if parts.is_empty() {
        let width = match output {
            OutputKind::Value { .. } => 1,
            OutputKind::Classes | OutputKind::Labels => 0,
        };
        return Ok(Array2::zeros((0, width)));
    }
    let views: Vec<_> = parts.iter().map(Array2::view).collect();
    ndarray::concatenate(ndarray::Axis(0), &views).map_err(|e| crate::shape_error("prediction", e))
}

#[cfg(test)]
mod tests {
    use dnalm_model::burn::{
        module::Module,
        nn::{BatchNorm, BatchNormConfig},
        tensor::{Tensor, TensorData},
    };

    /// `fit` keeps its best epoch as a record because clones share batch norm's running
    /// statistics: this fails if a snapshot stops being independent of later training.
    #[test]
    fn a_record_snapshot_keeps_batch_norm_statistics_that_a_clone_shares() {
        let device = crate::train_device(&dnalm_model::cpu());
        let norm: BatchNorm = BatchNormConfig::new(2).init(&device);
        let snapshot = norm.clone().into_record();
        let clone = norm.clone();
        let x = Tensor::<3>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], [2, 2, 2]),
            &device,
        );
        // A training pass updates the running mean (momentum 0.1 toward the batch mean).
        let _ = norm.forward(x);
        let values = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert!(
            values(clone.running_mean.value_sync())[0] > 0.0,
            "clones share running statistics"
        );
        // Inference reads `value()`: the snapshot's statistics.
        let restored = norm.try_load_record(snapshot).unwrap();
        assert_eq!(values(restored.running_mean.value()), vec![0.0, 0.0]);
    }

    /// `balanced` weights are scikit-learn's (`rows / (classes present · rows of the class)`,
    /// absent classes 0) and PyTorch's `pos_weight` (`negatives / positives`); the multi-label
    /// loss is the mean of `-[w·y·log σ(z) + (1-y)·log σ(-z)]` over rows and labels.
    #[test]
    fn class_weights_and_the_multi_label_loss_follow_their_definitions() {
        use super::{loss, ClassBalance, Targets};
        let classes = Targets::Classes {
            labels: vec![0, 0, 0, 1],
            num_classes: 3,
        };
        let w = ClassBalance::Balanced
            .weights(&classes, &[0, 1, 2, 3])
            .unwrap();
        assert_eq!(w, vec![4.0 / 6.0, 2.0, 0.0]);
        assert_eq!(ClassBalance::None.weights(&classes, &[0, 1]), None);
        // The weighted cross-entropy is `-Σ w_y log p_y / Σ w_y`.
        let z3 = [
            0.5f32, -1.0, 2.0, 0.25, -0.5, 1.5, 0.0, -2.0, 1.0, 1.0, 0.5, -0.5,
        ];
        let device = crate::train_device(&dnalm_model::cpu());
        let out = Tensor::<2>::from_data(TensorData::new(z3.to_vec(), [4, 3]), &device);
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for (row, &y) in z3.chunks(3).zip(&[0usize, 0, 0, 1]) {
            let lse = row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
            num -= w[y] as f64 * (row[y] as f64 - lse);
            den += w[y] as f64;
        }
        let got = loss(out, &classes, &[0, 1, 2, 3], None, Some(&w))
            .unwrap()
            .into_scalar::<f32>() as f64;
        assert!((got - num / den).abs() < 1e-6, "{got} vs {}", num / den);
        let present = ndarray::array![[true, false], [false, false], [false, true], [false, true]];
        let labels = Targets::Labels {
            present: present.clone(),
            names: vec!["a".into(), "b".into()],
        };
        let w = ClassBalance::Balanced
            .weights(&labels, &[0, 1, 2, 3])
            .unwrap();
        assert_eq!(w, vec![3.0, 1.0]);
        let z = [0.5f32, -1.0, 2.0, 0.25, -0.5, 1.5, 0.0, -2.0];
        let out = Tensor::<2>::from_data(TensorData::new(z.to_vec(), [4, 2]), &device);
        let log_sigmoid = |v: f64| -(1.0 + (-v).exp()).ln();
        let mut expected = 0.0;
        for (i, &zi) in z.iter().enumerate() {
            let (y, weight) = (present[[i / 2, i % 2]] as u8 as f64, w[i % 2] as f64);
            let zi = zi as f64;
            expected -= weight * y * log_sigmoid(zi) + (1.0 - y) * log_sigmoid(-zi);
        }
        expected /= 8.0;
        let got = loss(out, &labels, &[0, 1, 2, 3], None, Some(&w))
            .unwrap()
            .into_scalar::<f32>() as f64;
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
    }
}
