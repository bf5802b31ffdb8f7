//! One training loop for every network dnalm-eval trains (MLP probe, one-hot CNN baseline,
//! fine-tuned encoder): mini-batch AdamW (dnalm-train's, global-norm clipping), cross-entropy or
//! standardised MSE, early stopping on the validation loss, the best epoch kept (its parameters and
//! batch-norm statistics). Deterministic
//! for a seed: batches are shuffled by a seeded ChaCha generator.

use dnalm_model::burn::{
    module::Module,
    optim::GradientsParams,
    store::ModuleRecord,
    tensor::{activation::log_softmax, activation::softmax, Int, Tensor, TensorData},
};
use dnalm_train::{optim::AdamW, run_config::OptimConfig};
use ndarray::Array2;
use rand::seq::SliceRandom;
use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};

use std::collections::BTreeMap;

use crate::{
    features::Targets,
    metrics::{summarise, Summary},
    probes::score,
    EvalError,
};

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
    /// Stop after this many epochs without a better validation loss.
    pub patience: usize,
    /// Seed of the shuffling (and of dropout, where the network has it).
    pub seed: u64,
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
    /// The network at its best validation epoch.
    pub net: N,
    /// That epoch (1-based).
    pub best_epoch: usize,
    /// Its validation loss.
    pub best_valid_loss: f64,
    /// Epochs actually run.
    pub epochs_run: usize,
    /// Regression only: the training targets' mean and sd (the network predicts standardised
    /// values).
    pub target_scale: Option<(f64, f64)>,
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
    if train.is_empty() {
        return Err(EvalError::TooLittleData {
            what: "training".into(),
            message: "no training rows".into(),
        });
    }
    let target_scale = match targets {
        Targets::Values(v) => {
            let vals: Vec<f64> = train.iter().map(|&i| v[i]).collect();
            let s = crate::metrics::Summary::of(&vals);
            Some((s.mean, if s.sd > 0.0 { s.sd } else { 1.0 }))
        }
        Targets::Classes { .. } => None,
    };
    let steps_per_epoch = train.len().div_ceil(options.batch_size.max(1));
    let total = (steps_per_epoch * options.epochs.max(1)) as u64;
    let optim_config = OptimConfig {
        lr: options.lr,
        weight_decay: options.weight_decay,
        grad_clip: 1.0,
        warmup_steps: (total / 20).max(1),
        ..OptimConfig::default()
    };
    let mut optim = AdamW::new(optim_config.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut order = train.to_vec();
    let mut net = net;
    // The best epoch is kept as a record, not a clone: clones share batch norm's running
    // statistics, which later epochs would go on updating.
    let mut best: Option<(ModuleRecord, usize, f64)> = None;
    let mut since_best = 0;
    let mut step = 0u64;
    let mut epochs_run = 0;
    for epoch in 1..=options.epochs.max(1) {
        order.shuffle(&mut rng);
        for rows in order.chunks(options.batch_size.max(1)) {
            let seed = options.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ step;
            let out = forward(&net, rows, Some(seed))?;
            let loss = loss(out, targets, rows, target_scale)?;
            let value = loss.clone().into_scalar::<f32>();
            if !value.is_finite() {
                return Err(EvalError::Numeric {
                    routine: "training",
                    message: format!("the loss became {value} at epoch {epoch}"),
                });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            let lr = optim_config.lr_at(step, total);
            net = optim.step(net, grads, lr).0;
            step += 1;
        }
        epochs_run = epoch;
        let valid_rows = if valid.is_empty() { train } else { valid };
        let eval = net.valid();
        let mut weighted = 0.0;
        for rows in valid_rows.chunks(256) {
            let out = forward(&eval, rows, None)?;
            let l = loss(out, targets, rows, target_scale)?.into_scalar::<f32>() as f64;
            weighted += l * rows.len() as f64;
        }
        let valid_loss = weighted / valid_rows.len() as f64;
        if best.as_ref().is_none_or(|b| valid_loss < b.2) {
            best = Some((net.clone().into_record(), epoch, valid_loss));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= options.patience {
                break;
            }
        }
    }
    let (record, best_epoch, best_valid_loss) = best.ok_or_else(|| EvalError::BadOption {
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
        best_epoch,
        best_valid_loss,
        epochs_run,
        target_scale,
    })
}

fn loss(
    out: Tensor<2>,
    targets: &Targets,
    rows: &[usize],
    scale: Option<(f64, f64)>,
) -> Result<Tensor<1>, EvalError> {
    let device = out.device();
    let n = rows.len();
    Ok(match targets {
        Targets::Classes { labels, .. } => {
            let t: Vec<i64> = rows.iter().map(|&r| labels[r] as i64).collect();
            let t = Tensor::<2, Int>::from_data(TensorData::new(t, [n, 1]), &device);
            log_softmax(out, 1).gather(1, t).mean().neg()
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

/// Outputs of a trained network for `rows`: class probabilities (`rows x classes`) or, for
/// regression, the de-standardised prediction (`rows x 1`).
pub fn predict<N: Module>(
    fitted: &Fitted<N>,
    forward: &Forward<N>,
    rows: &[usize],
    batch: usize,
) -> Result<Array2<f32>, EvalError> {
    let eval = fitted.net.valid();
    let mut out: Vec<f32> = Vec::new();
    let mut width = 0;
    for chunk in rows.chunks(batch.max(1)) {
        let y = forward(&eval, chunk, None)?;
        let y = match fitted.target_scale {
            Some((mean, sd)) => {
                let [n, _] = y.dims();
                y.slice([0..n, 0..1]) * sd + mean
            }
            None => softmax(y, 1),
        };
        width = y.dims()[1];
        out.extend(
            y.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| crate::tensor_error("prediction", e))?,
        );
    }
    Array2::from_shape_vec((rows.len(), width), out)
        .map_err(|e| crate::shape_error("prediction", e))
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
        let device = crate::train_device();
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
}
