//! Multitask fine-tuning: one encoder, one pooled head per task, trained together.
//!
//! Each optimiser step draws one task (by [`TaskSampling`]: proportional to its training rows,
//! uniform, or with a temperature between the two) and one batch of that task's rows; the loss
//! is that task's (as single-task fine-tuning computes it) and its gradient reaches the encoder
//! and that task's head only. Every task is validated on its own rows every `eval_every` steps;
//! each keeps the network of its best validation (per-task early stopping) and leaves the draw
//! once `patience` validations in a row failed to beat it, so a task that has peaked stops
//! pulling the encoder. The budget is a sum of per-task budgets: a task's share is what
//! single-task fine-tuning would give it (`min(max_steps, epochs x steps per epoch)`), so a
//! task alone trains under exactly its share and the joint run under the sum.
//!
//! [`multitask`] trains the given groups (one run per group and seed), each task alone too, and
//! reports, per task, the grouped and the single-task test metrics and the paired gain over
//! seeds. [`plan`] proposes the groups from a short joint run (inter-task gradient affinity).

pub mod plan;

use std::{collections::BTreeMap, fmt, path::Path};

use burn::{module::Module, optim::GradientsParams, store::ModuleRecord, tensor::Tensor};
use dnalm_model::{
    heads::SequenceHead,
    tensors::{named_parameters, HostTensor},
    DnaLm, ModelConfig,
};
use dnalm_seq::task::{LabelledSequence, Task, TaskKind};
use dnalm_tokenize::AnyTokenizer;
use dnalm_train::{optim::AdamW, run_config::OptimConfig};
use ndarray::Array2;
use rand::{
    seq::{IndexedRandom, SliceRandom},
    Rng,
};
use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};
use serde::{Deserialize, Serialize};

use crate::{
    bench::Progress,
    features::{
        embed::ModelSpec,
        tasks::{check_tokenizer, split_rows, targets},
        Targets,
    },
    finetune::{
        adapter_info, frozen_pass, pooled_forward, probe_head_weights, save_finetuned,
        sequence_head_info, size_scaled_lr, token_rows, trainable_encoder, FinetuneOptions,
        HeadInit, LearningRate, PooledSpan, ProbeStart, SequenceClassifier, LORA_LR_FACTOR,
    },
    metrics::Summary,
    probes::{
        concat_targets,
        fit::{loss, predict_rows, validation, validation_rows, OutputKind, SeedRuns, Validation},
        headline,
    },
    EvalError,
};

/// How the task of each step is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskSampling {
    /// In proportion to each task's training rows (every row seen about equally often).
    Proportional,
    /// Every task equally often.
    Uniform,
    /// In proportion to `rows^(1/T)`: T = 1 is proportional, large T approaches uniform.
    Temperature(f64),
}

impl TaskSampling {
    /// The draw probability of each task, given its training rows.
    pub fn probabilities(self, rows: &[usize]) -> Vec<f64> {
        let power = match self {
            TaskSampling::Proportional => 1.0,
            TaskSampling::Uniform => 0.0,
            TaskSampling::Temperature(t) => 1.0 / t,
        };
        let w: Vec<f64> = rows
            .iter()
            .map(|&n| (n.max(1) as f64).powf(power))
            .collect();
        let total: f64 = w.iter().sum();
        w.iter().map(|x| x / total).collect()
    }
}

impl std::str::FromStr for TaskSampling {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("'{s}' is not a task sampling (proportional, uniform or temperature=T, T > 0)")
        };
        match s {
            "proportional" => Ok(TaskSampling::Proportional),
            "uniform" => Ok(TaskSampling::Uniform),
            _ => {
                let t = s
                    .strip_prefix("temperature=")
                    .ok_or_else(bad)?
                    .parse::<f64>()
                    .map_err(|_| bad())?;
                if t.is_finite() && t > 0.0 {
                    Ok(TaskSampling::Temperature(t))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

impl fmt::Display for TaskSampling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskSampling::Proportional => write!(f, "proportional"),
            TaskSampling::Uniform => write!(f, "uniform"),
            TaskSampling::Temperature(t) => write!(f, "temperature={t}"),
        }
    }
}

/// Multitask settings.
#[derive(Debug, Clone)]
pub struct MultitaskOptions {
    /// Per-task budget (`fit.epochs`, `fit.max_steps`), batch, patience, validation interval,
    /// learning rate (`scaled` or fixed), head start, pooling, seeds, frozen parts.
    pub finetune: FinetuneOptions,
    /// How each step's task is drawn.
    pub sampling: TaskSampling,
}

/// An encoder with one pooled head per task.
#[derive(Module, Debug)]
pub struct MultitaskNet {
    /// The shared encoder.
    pub encoder: DnaLm,
    /// One head per task of the group, in the group's order.
    pub heads: Vec<SequenceHead>,
}

/// One task's rows as multitask training reads them (every split's token rows in one list).
pub(crate) struct TaskRows<'t> {
    task: &'t Task,
    rows: Vec<Vec<u32>>,
    y: Targets,
    train: Vec<usize>,
    valid: Vec<usize>,
    test: Vec<usize>,
    output: OutputKind,
    weights: Option<Vec<f32>>,
    /// LP-FT's start (the probe and its linear head), with `--head linear-probe`.
    probe: Option<(ProbeStart, Vec<f32>, Vec<f32>)>,
    /// The frozen encoder's pooled states of every row (what LogME and the probe read).
    pooled: Array2<f32>,
}

impl TaskRows<'_> {
    fn name(&self) -> &str {
        &self.task.spec.name
    }

    /// The rows validation reads: valid, or train when the task has none.
    fn valid_rows(&self) -> &[usize] {
        validation_rows(&self.train, &self.valid)
    }
}

/// What every run over a set of tasks shares: the base encoder's weights and each task's rows.
pub(crate) struct Prepared<'t> {
    model: &'t ModelSpec,
    config: ModelConfig,
    weights: BTreeMap<String, HostTensor>,
    parameters: usize,
    tokenizer: AnyTokenizer,
    span: PooledSpan,
    tasks: Vec<TaskRows<'t>>,
}

/// Refuses, before any work, what multitask training does not do: fewer than two tasks, a task
/// given twice, a per-base task, LoRA, the learning-rate search.
pub fn check_request(tasks: &[Task], options: &FinetuneOptions) -> Result<(), EvalError> {
    if tasks.len() < 2 {
        return Err(EvalError::BadOption {
            option: "tasks",
            message: format!(
                "multitask training needs at least two tasks (got {}); use `dnalm finetune` \
                 for one",
                tasks.len()
            ),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in tasks {
        if !seen.insert(t.spec.name.as_str()) {
            return Err(EvalError::BadOption {
                option: "tasks",
                message: format!(
                    "task '{}' is given twice (tasks are told apart by name)",
                    t.spec.name
                ),
            });
        }
        if matches!(t.spec.kind, TaskKind::PerBase { .. }) {
            return Err(EvalError::BadOption {
                option: "tasks",
                message: format!(
                    "task '{}' is per-base: multitask training has pooled (sequence) heads \
                     only; fine-tune it alone with `dnalm finetune`",
                    t.spec.name
                ),
            });
        }
    }
    if options.lr == LearningRate::Search {
        return Err(EvalError::BadOption {
            option: "lr",
            message: "`auto` searches one task's rate; give a number or `scaled` for multitask \
                      runs"
                .into(),
        });
    }
    Ok(())
}

/// Loads `model` and tokenises every task (after [`check_request`]).
pub(crate) fn prepare<'t>(
    model: &'t ModelSpec,
    tasks: &'t [Task],
    options: &FinetuneOptions,
) -> Result<Prepared<'t>, EvalError> {
    check_request(tasks, options)?;
    let encoder = model.load(&dnalm_model::cpu())?;
    let tokenizer = encoder.tokenizer.clone();
    let config = encoder.model.config.clone();
    let span = PooledSpan::of(&tokenizer);
    let mut prepared = Vec::with_capacity(tasks.len());
    for task in tasks {
        check_tokenizer(task, &encoder)?;
        let [train, valid, test] = split_rows(task)?;
        let all: Vec<&LabelledSequence> =
            train.iter().chain(&valid).chain(&test).copied().collect();
        let seqs: Vec<&[u8]> = all.iter().map(|r| r.sequence.as_slice()).collect();
        let rows = token_rows(&tokenizer, config.max_positions, &seqs);
        let y = concat_targets(
            &concat_targets(&targets(task, &train), &targets(task, &valid)),
            &targets(task, &test),
        );
        let (n_train, n_valid) = (train.len(), valid.len());
        let train_idx: Vec<usize> = (0..n_train).collect();
        let valid_idx: Vec<usize> = (n_train..n_train + n_valid).collect();
        let test_idx: Vec<usize> = (n_train + n_valid..rows.len()).collect();
        let pooled = frozen_pass(&encoder.model, &rows, options.pooling, span, 0, false)?.pooled;
        let probe = if options.head == HeadInit::LinearProbe {
            Some(probe_head_weights(&pooled, &y, &train_idx, &valid_idx)?)
        } else {
            None
        };
        prepared.push(TaskRows {
            task,
            output: OutputKind::of(&y, &train_idx),
            weights: options.fit.balance.weights(&y, &train_idx),
            rows,
            y,
            train: train_idx,
            valid: valid_idx,
            test: test_idx,
            probe,
            pooled,
        });
    }
    Ok(Prepared {
        model,
        parameters: encoder.model.num_params(),
        weights: named_parameters(&encoder.model),
        config,
        tokenizer,
        span,
        tasks: prepared,
    })
}

/// One task's result in one run.
pub(crate) struct TaskRun {
    /// Test outputs of its kept network.
    test: Array2<f32>,
    /// Its best validation headline metric.
    best_valid: f64,
    /// The step its kept network was taken at (0: the start).
    best_step: usize,
    /// Steps that drew it.
    steps: usize,
    /// Its kept network (asked for with `keep`).
    kept: Option<MultitaskNet>,
}

/// What a joint run of a group gave.
pub(crate) struct GroupRun {
    /// Per task of the group, in its order.
    tasks: Vec<TaskRun>,
    /// Steps run.
    steps: usize,
    /// `[i][j]`: per lookahead, the relative drop of task j's loss after a step on task i's
    /// batch (asked for with `lookahead_every`).
    lookaheads: Vec<Vec<Vec<f64>>>,
}

/// How a joint run is set up beyond the options.
pub(crate) struct RunSetup {
    /// Tasks (indices into the prepared tasks).
    pub(crate) group: Vec<usize>,
    /// First seed of the run's shuffles, dropout and heads.
    pub(crate) seed: u64,
    /// The task draw.
    pub(crate) sampling: TaskSampling,
    /// A budget in steps replacing the per-task sum.
    pub(crate) steps: Option<usize>,
    /// Measure the inter-task gradient affinity every this many steps.
    pub(crate) lookahead_every: Option<usize>,
    /// Keep every task's best network (for saving).
    pub(crate) keep: bool,
    /// Validate (early stopping, best network per task); without, a task's network is the last
    /// (a plan's run, whose networks are not kept, skips the validation passes).
    pub(crate) validate: bool,
}

/// The peak learning rate of a multitask run: single-task fine-tuning's default (the
/// size-scaled rate, × [`LORA_LR_FACTOR`] with LoRA) unless one is given.
fn peak_lr(options: &FinetuneOptions, parameters: usize) -> f64 {
    match options.lr {
        LearningRate::Fixed(lr) => lr,
        LearningRate::Scaled | LearningRate::Search => {
            size_scaled_lr(parameters)
                * if options.lora.is_some() {
                    LORA_LR_FACTOR
                } else {
                    1.0
                }
        }
    }
}

/// Trains one group jointly (see the module notes).
pub(crate) fn train_group(
    data: &Prepared<'_>,
    options: &FinetuneOptions,
    setup: &RunSetup,
) -> Result<GroupRun, EvalError> {
    let group: Vec<&TaskRows> = setup.group.iter().map(|&t| &data.tasks[t]).collect();
    let device = crate::train_device(&options.fit.device.open()?);
    let hidden = data.config.hidden_size();
    let mut heads = Vec::with_capacity(group.len());
    for (k, t) in group.iter().enumerate() {
        heads.push(match &t.probe {
            Some((_, w, b)) => SequenceHead::linear_from(w.clone(), b.clone(), hidden, &device)?,
            None => dnalm_model::io::reinitialize(
                SequenceHead::new(hidden, t.task.spec.outputs(), &device),
                setup.seed.wrapping_add(1 + k as u64),
            ),
        });
    }
    let encoder = trainable_encoder(
        &data.config,
        &data.weights,
        &data.model.dir,
        &device,
        options,
        options
            .train_last
            .map_or(0, |n| data.config.n_layers.saturating_sub(n)),
        setup.seed,
    )?;
    let mut net = MultitaskNet { encoder, heads };
    let (pooling, span) = (options.pooling, data.span);
    // The forward pass of the group's k-th task.
    let forward_of = |k: usize| {
        let t = group[k];
        move |net: &MultitaskNet,
              idx: &[usize],
              seed: Option<u64>|
              -> Result<Tensor<2>, EvalError> {
            let rows: Vec<Vec<u32>> = idx.iter().map(|&i| t.rows[i].clone()).collect();
            pooled_forward(&net.encoder, &net.heads[k], &rows, pooling, span, seed)
        }
    };
    let forwards: Vec<_> = (0..group.len()).map(forward_of).collect();
    let batch_loss = |net: &MultitaskNet, k: usize, idx: &[usize], seed: Option<u64>| {
        let t = group[k];
        let out = forwards[k](net, idx, seed)?;
        loss(
            out,
            &t.y,
            idx,
            t.output.target_scale(),
            t.weights.as_deref(),
        )
    };
    let validate = |net: &MultitaskNet, k: usize| -> Result<Validation, EvalError> {
        let t = group[k];
        validation(
            net,
            &forwards[k],
            &t.y,
            t.valid_rows(),
            t.output,
            options.fit.select,
            t.weights.as_deref(),
        )
    };

    let batch = options.fit.batch_size.max(1);
    let total = setup.steps.unwrap_or_else(|| {
        group
            .iter()
            .map(|t| options.fit.total_steps(t.train.len()))
            .sum()
    });
    let eval_every = options
        .fit
        .eval_every
        .unwrap_or_else(|| {
            group
                .iter()
                .map(|t| options.fit.steps_per_epoch(t.train.len()))
                .sum::<usize>()
                .clamp(1, 100)
        })
        .max(1);
    let optim_config = OptimConfig {
        lr: peak_lr(options, data.parameters),
        weight_decay: options.fit.weight_decay,
        grad_clip: 1.0,
        warmup_steps: (total as u64 / 20).max(1),
        ..OptimConfig::default()
    };
    let mut optim = AdamW::new(optim_config.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(setup.seed);
    let mut lookahead_rng = ChaCha8Rng::seed_from_u64(setup.seed ^ 0x7a5f_1d3c);
    let probabilities = setup
        .sampling
        .probabilities(&group.iter().map(|t| t.train.len()).collect::<Vec<_>>());
    let mut orders: Vec<Vec<usize>> = group.iter().map(|t| t.train.clone()).collect();
    let mut cursors = vec![usize::MAX; group.len()];
    let mut active = vec![true; group.len()];
    let mut since_best = vec![0usize; group.len()];
    let mut steps_of = vec![0usize; group.len()];
    let mut best: Vec<Option<(ModuleRecord, usize, Validation)>> = vec![None; group.len()];
    let mut lookaheads = Vec::new();
    if setup.validate && options.fit.score_initial {
        for (k, b) in best.iter_mut().enumerate() {
            *b = Some((net.clone().into_record(), 0, validate(&net, k)?));
        }
    }
    let mut step = 0usize;
    while step < total && active.iter().any(|&a| a) {
        if let Some(every) = setup.lookahead_every {
            if step.is_multiple_of(every.max(1)) {
                let lr = optim_config.lr_at(step as u64, total as u64);
                lookaheads.push(lookahead(
                    &net,
                    &optim,
                    lr,
                    &group,
                    batch,
                    &mut lookahead_rng,
                    &batch_loss,
                )?);
            }
        }
        // The task of this step, among those still training.
        let k = draw_task(&probabilities, &active, rng.random::<f64>());
        // Its next batch (a fresh shuffle once its rows are used up).
        let n = orders[k].len();
        if cursors[k] >= n {
            orders[k].shuffle(&mut rng);
            cursors[k] = 0;
        }
        let end = (cursors[k] + batch).min(n);
        let rows = orders[k][cursors[k]..end].to_vec();
        cursors[k] = end;
        let seed = setup.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ step as u64;
        let value = batch_loss(&net, k, &rows, Some(seed))?;
        let scalar = value.clone().into_scalar::<f32>();
        if !scalar.is_finite() {
            return Err(EvalError::Numeric {
                routine: "multitask training",
                message: format!(
                    "the loss of task '{}' became {scalar} at step {step}",
                    group[k].name()
                ),
            });
        }
        let grads = GradientsParams::from_grads(value.backward(), &net);
        net = optim
            .step(net, grads, optim_config.lr_at(step as u64, total as u64))
            .0;
        steps_of[k] += 1;
        step += 1;
        if setup.validate && (step.is_multiple_of(eval_every) || step == total) {
            for j in 0..group.len() {
                if !active[j] {
                    continue;
                }
                let v = validate(&net, j)?;
                if best[j]
                    .as_ref()
                    .is_none_or(|b| v.beats(&b.2, options.fit.select))
                {
                    best[j] = Some((net.clone().into_record(), step, v));
                    since_best[j] = 0;
                } else {
                    since_best[j] += 1;
                    if since_best[j] >= options.fit.patience.max(1) {
                        active[j] = false;
                    }
                }
            }
        }
    }
    if !setup.validate {
        let last = Validation {
            loss: f64::NAN,
            metric: None,
        };
        for b in best.iter_mut() {
            *b = Some((net.clone().into_record(), step, last));
        }
    }
    let mut tasks = Vec::with_capacity(group.len());
    for (k, kept) in best.into_iter().enumerate() {
        let (record, best_step, v) = kept.ok_or_else(|| EvalError::BadOption {
            option: "max-steps",
            message: "no step ran".into(),
        })?;
        let kept_net = net
            .clone()
            .try_load_record(record)
            .map_err(|e| EvalError::Numeric {
                routine: "restoring a task's best step",
                message: e.to_string(),
            })?;
        let t = group[k];
        let test = if setup.validate {
            predict_rows(&kept_net, &forwards[k], &t.test, batch, t.output)?
        } else {
            Array2::zeros((0, 0))
        };
        tasks.push(TaskRun {
            test,
            best_valid: v.metric.unwrap_or(f64::NAN),
            best_step,
            steps: steps_of[k],
            kept: setup.keep.then(|| kept_net.valid()),
        });
    }
    Ok(GroupRun {
        tasks,
        steps: step,
        lookaheads,
    })
}

/// The smallest loss an affinity ratio divides by (see [`lookahead`]).
const LOOKAHEAD_LOSS_FLOOR: f64 = 1e-3;

/// The loss of one task's batch on a network, with or without dropout.
type BatchLoss<'a> =
    dyn Fn(&MultitaskNet, usize, &[usize], Option<u64>) -> Result<Tensor<1>, EvalError> + 'a;

/// One lookahead of the inter-task gradient affinity (Fifty et al. 2021): for every task i, the
/// update the optimiser would make from i's batch alone (on a copy of the network and of the
/// optimiser's state), and for every task j the relative change of j's loss on its batch,
/// `1 - L_j(after i's update) / L_j(now)` (positive: i's step helped j). Losses are measured in
/// inference mode, on one batch per task drawn for the lookahead. Two guards keep one lookahead
/// from dominating the mean: a loss below [`LOOKAHEAD_LOSS_FLOOR`] counts as the floor (a task
/// whose batch is already fitted has nothing to gain, and its ratio would be noise over almost
/// nothing), and each value is clipped to `[-1, 1]` (a step that more than doubles a loss counts
/// as doubling it).
fn lookahead(
    net: &MultitaskNet,
    optim: &AdamW,
    lr: f64,
    group: &[&TaskRows],
    batch: usize,
    rng: &mut ChaCha8Rng,
    batch_loss: &BatchLoss<'_>,
) -> Result<Vec<Vec<f64>>, EvalError> {
    let batches: Vec<Vec<usize>> = group
        .iter()
        .map(|t| {
            t.train
                .choose_multiple(rng, batch.min(t.train.len()))
                .copied()
                .collect()
        })
        .collect();
    let eval_loss = |n: &MultitaskNet, j: usize| -> Result<f64, EvalError> {
        Ok(batch_loss(&n.valid(), j, &batches[j], None)?.into_scalar::<f32>() as f64)
    };
    let now: Vec<f64> = (0..group.len())
        .map(|j| eval_loss(net, j))
        .collect::<Result<_, _>>()?;
    let mut z = vec![vec![0.0; group.len()]; group.len()];
    for (i, row) in z.iter_mut().enumerate() {
        let value = batch_loss(net, i, &batches[i], None)?;
        let grads = GradientsParams::from_grads(value.backward(), net);
        let (after, _) = optim.clone().step(net.clone(), grads, lr);
        for (j, cell) in row.iter_mut().enumerate() {
            *cell =
                (1.0 - eval_loss(&after, j)? / now[j].max(LOOKAHEAD_LOSS_FLOOR)).clamp(-1.0, 1.0);
        }
    }
    Ok(z)
}

/// The task a uniform draw `u` in [0, 1) picks: task `k` with probability `probabilities[k]`
/// renormalised over the tasks still `active` (an early-stopped task is never drawn again).
/// At least one task must be active.
fn draw_task(probabilities: &[f64], active: &[bool], u: f64) -> usize {
    let mass: f64 = probabilities
        .iter()
        .zip(active)
        .filter(|(_, &a)| a)
        .map(|(p, _)| p)
        .sum();
    let mut draw = u * mass;
    let mut k = usize::MAX;
    for (j, &p) in probabilities.iter().enumerate() {
        if active[j] {
            k = j;
            if draw < p {
                break;
            }
            draw -= p;
        }
    }
    k
}

/// How a task fared grouped against alone, from its gains paired by seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The mean gain is above zero by more than one sd of the paired differences.
    #[serde(rename = "gained")]
    Gained,
    /// The mean gain is below zero by more than one sd.
    #[serde(rename = "lost")]
    Lost,
    /// The mean gain is within one sd of zero.
    #[serde(rename = "no clear change")]
    NoClearChange,
    /// The task was its own group: there is nothing to compare.
    #[serde(rename = "alone")]
    Alone,
    /// One seed: no replicates to judge a gain against.
    #[serde(rename = "one seed")]
    OneSeed,
}

impl Verdict {
    /// The verdict on the gains of a task's seeds (`alone`: its group has only it).
    pub fn of(gains: &[f64], alone: bool) -> Verdict {
        let s = Summary::of(gains);
        if alone {
            Verdict::Alone
        } else if s.n < 2 {
            Verdict::OneSeed
        } else if s.mean.abs() > s.sd {
            if s.mean > 0.0 {
                Verdict::Gained
            } else {
                Verdict::Lost
            }
        } else {
            Verdict::NoClearChange
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Gained => "gained",
            Verdict::Lost => "lost",
            Verdict::NoClearChange => "no clear change",
            Verdict::Alone => "alone",
            Verdict::OneSeed => "one seed",
        })
    }
}

/// One task's results: grouped and alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    /// Task name.
    pub task: String,
    /// The headline metric (`mcc`, `auroc` for multi-label, `pearson` for values).
    pub metric: String,
    /// The tasks it was trained with (itself included).
    pub group: Vec<String>,
    /// Test metrics per seed of its group's joint run (its kept network).
    pub grouped: SeedRuns,
    /// Test metrics per seed of the single-task run under its share of the budget.
    pub single: SeedRuns,
    /// Headline grouped − single, paired by seed (mean ± sd).
    pub gain: Summary,
    /// How it fared grouped against alone.
    pub verdict: Verdict,
    /// Best validation headline per seed (grouped run).
    pub best_valid: Vec<f64>,
    /// Step of the kept network per seed (grouped run).
    pub best_steps: Vec<usize>,
    /// Steps that drew this task per seed (grouped run).
    pub steps: Vec<usize>,
    /// LP-FT: the probe its head started from.
    pub linear_probe: Option<ProbeStart>,
}

/// What `dnalm multitask` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MultitaskReport {
    /// Model name.
    pub model: String,
    /// Task draw.
    pub sampling: TaskSampling,
    /// Peak learning rate.
    pub lr: f64,
    /// The plan the groups came from (`--groups auto` or `--plan`).
    pub plan: Option<plan::Plan>,
    /// The groups trained.
    pub groups: Vec<Vec<String>>,
    /// Per task, in the order given.
    pub tasks: Vec<TaskResult>,
    /// Steps each group's joint run took, per seed.
    pub group_steps: Vec<Vec<usize>>,
}

/// A model and its tasks, tokenised and probed once, for a plan and the runs of groups.
pub struct Multitask<'t> {
    data: Prepared<'t>,
    options: MultitaskOptions,
}

impl<'t> Multitask<'t> {
    /// Loads `model` and prepares `tasks` (at least two, pooled heads only): token rows, the
    /// frozen encoder's pooled states and, for LP-FT heads, each task's linear probe.
    pub fn new(
        model: &'t ModelSpec,
        tasks: &'t [Task],
        options: MultitaskOptions,
    ) -> Result<Self, EvalError> {
        Ok(Multitask {
            data: prepare(model, tasks, &options.finetune)?,
            options,
        })
    }

    /// The tasks' names, in order.
    pub fn task_names(&self) -> Vec<String> {
        self.data
            .tasks
            .iter()
            .map(|t| t.name().to_string())
            .collect()
    }

    /// Trains `groups` (indices into the tasks) jointly and every task alone, `seeds` times
    /// each, and compares them; the first seed's kept network of every task is saved under
    /// `save/<task>/` (a fine-tuned checkpoint directory) when `save` is given.
    pub fn train(
        &self,
        groups: &[Vec<usize>],
        plan: Option<plan::Plan>,
        save: Option<&Path>,
        progress: &mut dyn Progress,
    ) -> Result<MultitaskReport, EvalError> {
        train_groups(&self.data, groups, &self.options, plan, save, progress)
    }
}

fn train_groups(
    data: &Prepared<'_>,
    groups: &[Vec<usize>],
    options: &MultitaskOptions,
    plan: Option<plan::Plan>,
    save: Option<&Path>,
    progress: &mut dyn Progress,
) -> Result<MultitaskReport, EvalError> {
    let tasks = &data.tasks;
    let fo = &options.finetune;
    let seeds = fo.seeds.max(1) as u64;
    let mut grouped: Vec<Vec<TaskRun>> = (0..tasks.len()).map(|_| Vec::new()).collect();
    let mut single: Vec<Vec<TaskRun>> = (0..tasks.len()).map(|_| Vec::new()).collect();
    let mut group_steps = Vec::new();
    for group in groups {
        let mut steps = Vec::new();
        let names: Vec<&str> = group.iter().map(|&t| tasks[t].name()).collect();
        for s in 0..seeds {
            progress.message(&format!(
                "group {{{}}}: seed {} of {seeds}",
                names.join(", "),
                s + 1
            ));
            let setup = RunSetup {
                group: group.clone(),
                seed: fo.fit.seed.wrapping_add(s),
                sampling: options.sampling,
                steps: None,
                lookahead_every: None,
                keep: s == 0 && save.is_some(),
                validate: true,
            };
            let run = train_group(data, fo, &setup)?;
            steps.push(run.steps);
            for (&t, r) in group.iter().zip(run.tasks) {
                grouped[t].push(r);
            }
        }
        group_steps.push(steps);
    }
    // Single-task runs under the same loop (a group of one is its own single-task run).
    for (t, runs) in single.iter_mut().enumerate() {
        if groups.iter().any(|g| g.len() == 1 && g[0] == t) {
            continue;
        }
        for s in 0..seeds {
            progress.message(&format!(
                "{} alone: seed {} of {seeds}",
                tasks[t].name(),
                s + 1
            ));
            let setup = RunSetup {
                group: vec![t],
                seed: fo.fit.seed.wrapping_add(s),
                sampling: options.sampling,
                steps: None,
                lookahead_every: None,
                keep: false,
                validate: true,
            };
            runs.extend(train_group(data, fo, &setup)?.tasks);
        }
    }
    let mut results = Vec::with_capacity(tasks.len());
    for (t, rows) in data.tasks.iter().enumerate() {
        let group = groups
            .iter()
            .find(|g| g.contains(&t))
            .ok_or_else(|| EvalError::BadOption {
                option: "groups",
                message: format!("task '{}' is in no group", rows.name()),
            })?;
        let alone = group.len() == 1;
        let test_targets = rows.y.select(&rows.test);
        let runs_of = |runs: &[TaskRun]| {
            let mut seed_runs = SeedRuns::default();
            for r in runs {
                // Passes over the task's training rows.
                let epochs = (r.steps * fo.fit.batch_size.max(1)).div_ceil(rows.train.len());
                seed_runs.record(epochs, &test_targets, r.test.clone());
            }
            seed_runs.summarise()
        };
        let grouped_runs = runs_of(&grouped[t]);
        let single_runs = if alone {
            grouped_runs.clone()
        } else {
            runs_of(&single[t])
        };
        let metric = headline(&rows.y);
        let gains: Vec<f64> = grouped_runs
            .runs
            .iter()
            .zip(&single_runs.runs)
            .map(|(g, s)| {
                g.get(metric).copied().unwrap_or(f64::NAN)
                    - s.get(metric).copied().unwrap_or(f64::NAN)
            })
            .collect();
        if let (Some(dir), Some(net)) = (save, grouped[t].first().and_then(|r| r.kept.as_ref())) {
            let k = group.iter().position(|&g| g == t).unwrap_or(0);
            let classifier = SequenceClassifier {
                encoder: net.encoder.clone(),
                head: net.heads[k].clone(),
            };
            let info = sequence_head_info(
                rows.task,
                fo.pooling,
                rows.output.target_scale(),
                classifier.head.dense.is_none(),
            );
            // With LoRA: the group's adapters and this task's head, on the base model.
            let adapter = adapter_info(data.model, fo, &classifier.encoder)?;
            save_finetuned(
                &dir.join(rows.name()),
                &classifier,
                &info,
                &data.tokenizer,
                adapter.as_ref(),
            )?;
        }
        results.push(TaskResult {
            task: rows.name().to_string(),
            metric: metric.to_string(),
            group: group
                .iter()
                .map(|&g| data.tasks[g].name().to_string())
                .collect(),
            verdict: Verdict::of(&gains, alone),
            gain: Summary::of(&gains),
            best_valid: grouped[t].iter().map(|r| r.best_valid).collect(),
            best_steps: grouped[t].iter().map(|r| r.best_step).collect(),
            steps: grouped[t].iter().map(|r| r.steps).collect(),
            linear_probe: rows.probe.as_ref().map(|p| p.0.clone()),
            grouped: grouped_runs,
            single: single_runs,
        });
    }
    Ok(MultitaskReport {
        model: data.model.name.clone(),
        sampling: options.sampling,
        lr: peak_lr(fo, data.parameters),
        plan,
        groups: groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|&t| data.tasks[t].name().to_string())
                    .collect()
            })
            .collect(),
        tasks: results,
        group_steps,
    })
}

/// Groups named on the command line: `A+B,C` (every task in exactly one group), as indices into
/// `names`.
pub fn parse_groups(spec: &str, names: &[String]) -> Result<Vec<Vec<usize>>, EvalError> {
    let bad = |message: String| EvalError::BadOption {
        option: "groups",
        message,
    };
    let mut groups = Vec::new();
    let mut seen = vec![false; names.len()];
    for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
        let mut group = Vec::new();
        for name in part.split('+').map(str::trim) {
            let t = names.iter().position(|n| n == name).ok_or_else(|| {
                bad(format!(
                    "'{name}' is not one of the tasks ({})",
                    names.join(", ")
                ))
            })?;
            if std::mem::replace(&mut seen[t], true) {
                return Err(bad(format!("task '{name}' is in two groups")));
            }
            group.push(t);
        }
        groups.push(group);
    }
    if let Some(t) = seen.iter().position(|&s| !s) {
        return Err(bad(format!(
            "task '{}' is in no group (every task belongs to one; a task alone is a group of \
             one)",
            names[t]
        )));
    }
    Ok(groups)
}

/// `mean ± sd` of a summary with three decimals.
fn mean_sd(s: &Summary) -> String {
    format!("{:.3} ± {:.3}", s.mean, s.sd)
}

impl MultitaskReport {
    /// The report as Markdown: the per-task comparison, then the plan when there is one.
    pub fn markdown(&self) -> String {
        let seeds = self.tasks.first().map_or(0, |t| t.grouped.runs.len());
        let groups: Vec<String> = self
            .groups
            .iter()
            .map(|g| format!("{{{}}}", g.join(", ")))
            .collect();
        let mut md = format!(
            "# Multitask fine-tuning: {}\n\nGroups: {}. Task draw: {}; peak learning rate \
             {:.1e}; {seeds} seed(s). Each task's single-task model trains under the same loop \
             and its own share of the budget; the gain is grouped − single, paired by seed.\n\n\
             | task | metric | group | single-task | grouped | gain | verdict |\n\
             |---|---|---|---|---|---|---|\n",
            self.model,
            groups.join(" "),
            self.sampling,
            self.lr
        );
        for t in &self.tasks {
            let of = |runs: &SeedRuns| runs.summary.get(&t.metric).map_or("–".into(), mean_sd);
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {:+.3} ± {:.3} | {} |\n",
                t.task,
                t.metric,
                t.group.join("+"),
                of(&t.single),
                of(&t.grouped),
                t.gain.mean,
                t.gain.sd,
                t.verdict
            ));
        }
        if let Some(plan) = &self.plan {
            md.push('\n');
            md.push_str(&plan.markdown());
        }
        md
    }
}

impl plan::Plan {
    /// The plan as Markdown: the gradient affinity matrix, LogME, the probe affinity and the
    /// proposed groups.
    pub fn markdown(&self) -> String {
        let header = |md: &mut String, corner: &str| {
            md.push_str(&format!("| {corner} | {} |\n", self.tasks.join(" | ")));
            md.push_str(&format!("|---|{}\n", "---|".repeat(self.tasks.len())));
        };
        let mut md = format!(
            "## Plan: which tasks to train together\n\nInter-task gradient affinity (Fifty et \
             al. 2021) from a joint run of {} steps, {} lookaheads: the relative drop of the \
             column task's loss after one step on the row task's batch (mean ± se; positive: \
             the row helps the column).\n\n",
            self.steps, self.lookaheads
        );
        header(&mut md, "step on \\ loss of");
        for (i, name) in self.tasks.iter().enumerate() {
            let cells: Vec<String> = (0..self.tasks.len())
                .map(|j| {
                    format!(
                        "{:+.4} ± {:.4}",
                        self.gradient_affinity[i][j], self.gradient_affinity_se[i][j]
                    )
                })
                .collect();
            md.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
        }
        md.push_str("\nOn the frozen encoder: LogME of each task (higher: the embeddings carry more of it), the probe affinity (MCC on the column task from the outputs of a probe trained on the row task), and the covariance similarity of the tasks' training embeddings (Wu, Zhang & Ré 2020; inputs only, blind to labels).\n\n");
        header(&mut md, "");
        let logme: Vec<String> = self.logme.iter().map(|v| format!("{v:.3}")).collect();
        md.push_str(&format!("| LogME | {} |\n", logme.join(" | ")));
        let missing_or_3 = |v: f64| {
            if v.is_finite() {
                format!("{v:.3}")
            } else {
                "–".into()
            }
        };
        let affinity = &self.probe_affinity;
        crate::report::matrix_rows(
            &mut md,
            &affinity.tasks,
            |t| format!("probe of {t}"),
            &affinity.mcc,
            missing_or_3,
        );
        crate::report::matrix_rows(
            &mut md,
            &affinity.tasks,
            |t| format!("covariance similarity of {t}"),
            &affinity.covariance_similarity,
            missing_or_3,
        );
        let groups: Vec<String> = self
            .groups
            .iter()
            .map(|g| format!("{{{}}}", g.join(", ")))
            .collect();
        md.push_str(&format!(
            "\nProposed groups: {} (a task joins a group only when the affinity it receives \
             from its mates, at mean − se, is positive; the partition with the largest total \
             is kept).\n",
            groups.join(" ")
        ));
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finetune::{load_finetuned, FINETUNE_BUDGET};
    use crate::probes::fit::FitOptions;
    use crate::test_support::binary_task;

    /// A task in `dir/name` of 48-base sequences: GC-richer vs AT-richer (`shuffled`: the same
    /// sequences with labels that ignore them), drawn from `seed`.
    fn gc_task(dir: &Path, name: &str, seed: u64, shuffled: bool) -> Task {
        let task = binary_task(dir, name, seed, |i, rng| {
            // 60% against 40% G/C: about 8% of rows on the wrong side of the best cut, so no
            // loss vanishes.
            let gc = i % 2;
            let p = if gc == 1 { 60 } else { 40 };
            let seq: String = (0..48)
                .map(|_| {
                    let pair = if rng.next() % 100 < p { b"GC" } else { b"AT" };
                    pair[rng.next() % 2] as char
                })
                .collect();
            let label = if shuffled { rng.next() % 2 } else { gc };
            (seq, label)
        });
        Task::load(&task).unwrap()
    }

    fn fixture(dir: &Path) -> (ModelSpec, Vec<Task>) {
        crate::features::embed::tests::encoder(64, "nucleotide")
            .save(&dir.join("model"))
            .unwrap();
        let tasks = vec![
            gc_task(dir, "gc_a", 7, false),
            gc_task(dir, "noise", 13, true),
            gc_task(dir, "gc_b", 11, false),
        ];
        (ModelSpec::parse(dir.join("model").to_str().unwrap()), tasks)
    }

    fn quick() -> MultitaskOptions {
        MultitaskOptions {
            finetune: FinetuneOptions {
                fit: FitOptions {
                    epochs: 3,
                    batch_size: 16,
                    ..FINETUNE_BUDGET
                },
                lr: LearningRate::Fixed(3e-3),
                head: HeadInit::Random,
                seeds: 2,
                ..FinetuneOptions::default()
            },
            sampling: TaskSampling::Uniform,
        }
    }

    #[test]
    fn the_plan_groups_related_tasks_and_keeps_a_shuffled_label_task_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, tasks) = fixture(dir.path());
        let mt = Multitask::new(&spec, &tasks, quick()).unwrap();
        let plan = mt.plan(30, &mut |_: &str| {}).unwrap();
        assert_eq!(plan.lookaheads, 15, "{plan:?}");
        let z = &plan.gradient_affinity;
        // Steps on one GC task lower the other's loss; steps on the shuffled task do not.
        assert!(z[0][2] > 0.0 && z[2][0] > 0.0, "{z:?}");
        assert_eq!(
            plan.groups,
            vec![vec!["gc_a", "gc_b"], vec!["noise"]],
            "{plan:?}"
        );
        assert_eq!(plan.group_indices, vec![vec![0, 2], vec![1]]);
        // The frozen view agrees: the GC tasks' probes carry each other, LogME ranks noise last.
        assert!(plan.probe_affinity.mcc[0][2] > 0.5, "{plan:?}");
        assert!(plan.logme[1] < plan.logme[0] && plan.logme[1] < plan.logme[2]);
        let cov = &plan.probe_affinity.covariance_similarity;
        assert_eq!(cov.len(), 3, "{plan:?}");
        assert!(cov.iter().flatten().all(|v| (0.0..=1.0 + 1e-9).contains(v)));
        assert_eq!(cov[0][2], cov[2][0]);
        assert!(plan
            .markdown()
            .contains("| covariance similarity of gc_a |"));
        assert!(plan
            .markdown()
            .contains("Proposed groups: {gc_a, gc_b} {noise}"));
    }

    #[test]
    fn groups_train_jointly_and_every_task_is_compared_with_its_single_task_model() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, tasks) = fixture(dir.path());
        let mt = Multitask::new(&spec, &tasks, quick()).unwrap();
        let groups = parse_groups("gc_a+gc_b,noise", &mt.task_names()).unwrap();
        let save = dir.path().join("models");
        let report = mt
            .train(&groups, None, Some(&save), &mut |_: &str| {})
            .unwrap();
        assert_eq!(report.groups, vec![vec!["gc_a", "gc_b"], vec!["noise"]]);
        for t in &report.tasks {
            assert_eq!(t.grouped.runs.len(), 2, "{t:?}");
            assert_eq!(t.single.runs.len(), 2, "{t:?}");
            let gains: Vec<f64> = (0..2)
                .map(|s| t.grouped.runs[s]["mcc"] - t.single.runs[s]["mcc"])
                .collect();
            assert!((t.gain.mean - (gains[0] + gains[1]) / 2.0).abs() < 1e-12);
        }
        let by_name = |n: &str| report.tasks.iter().find(|t| t.task == n).unwrap();
        assert_eq!(by_name("noise").verdict, Verdict::Alone);
        assert_eq!(by_name("noise").gain.mean, 0.0);
        // The GC tasks are learnt, jointly as alone; the shuffled task is not.
        for name in ["gc_a", "gc_b"] {
            assert!(
                by_name(name).grouped.summary["mcc"].mean > 0.8,
                "{report:?}"
            );
            assert!(by_name(name).single.summary["mcc"].mean > 0.8, "{report:?}");
            // Per-task budget: 3 epochs of 4 steps each, so a joint run of at most 24 steps.
            assert!(by_name(name).steps.iter().all(|&s| s > 0 && s <= 24));
        }
        assert!(report.group_steps[0].iter().all(|&s| s <= 24));
        assert!(by_name("noise").grouped.summary["mcc"].mean.abs() < 0.5);
        // Each task's kept network is a fine-tuned checkpoint that predicts its test rows.
        let (net, info, _) = load_finetuned(&save.join("gc_b"), &dnalm_model::cpu()).unwrap();
        assert_eq!(info.task, "gc_b");
        assert_eq!(net.head.out.weight.dims(), [16, 2]);
        let md = report.markdown();
        assert!(md.contains("| gc_a | mcc | gc_a+gc_b |"), "{md}");
    }

    #[test]
    fn with_lora_a_group_shares_its_adapters_and_the_base_stays_frozen() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, tasks) = fixture(dir.path());
        let mut options = quick();
        options.finetune.lora = Some("r=4,alpha=8,targets=q,v,ffn".parse().unwrap());
        options.finetune.lr = LearningRate::Fixed(2e-2);
        options.finetune.seeds = 1;
        let tasks = [tasks[0].clone(), tasks[2].clone()];
        let mt = Multitask::new(&spec, &tasks, options).unwrap();
        let save = dir.path().join("models");
        let report = mt
            .train(&[vec![0, 1]], None, Some(&save), &mut |_: &str| {})
            .unwrap();
        for t in &report.tasks {
            assert!(t.grouped.summary["mcc"].mean > 0.8, "{report:?}");
        }
        // Each task's directory is an adapter on the base: the group's factors and its head.
        let base = dnalm_model::Checkpoint::load(&spec.dir, &dnalm_model::cpu())
            .unwrap()
            .model;
        let base_weights = named_parameters(&base);
        // (Each task keeps the group's network from its own best step.)
        for name in ["gc_a", "gc_b"] {
            let task_dir = save.join(name);
            assert!(task_dir.join(dnalm_model::lora::ADAPTER_CONFIG).is_file());
            assert!(!task_dir.join("model.safetensors").exists());
            let (net, info, _) = load_finetuned(&task_dir, &dnalm_model::cpu()).unwrap();
            assert_eq!(info.task, name);
            let weights = named_parameters(&net.encoder);
            for (k, w) in &base_weights {
                assert_eq!(&weights[k], w, "{name}: {k} moved");
            }
            let adapters = dnalm_model::lora::adapter_tensors(&net.encoder);
            assert!(
                adapters
                    .iter()
                    .any(|(k, t)| k.ends_with(".lora.b") && t.values.iter().any(|&x| x != 0.0)),
                "{name}: the adapters did not train"
            );
        }
    }

    #[test]
    fn bad_requests_are_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, tasks) = fixture(dir.path());
        let err = |r: Result<Multitask<'_>, EvalError>| r.err().unwrap().to_string();
        assert!(err(Multitask::new(&spec, &tasks[..1], quick())).contains("at least two tasks"));
        let twice = [tasks[0].clone(), tasks[0].clone()];
        assert!(err(Multitask::new(&spec, &twice, quick())).contains("given twice"));
        let mut search = quick();
        search.finetune.lr = LearningRate::Search;
        assert!(err(Multitask::new(&spec, &tasks, search)).contains("`auto`"));
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let group_err = |s: &str| parse_groups(s, &names).unwrap_err().to_string();
        assert!(group_err("a+b,d").contains("'d' is not one of the tasks (a, b, c)"));
        assert!(group_err("a+b,b+c").contains("'b' is in two groups"));
        assert!(group_err("a+b").contains("'c' is in no group"));
        assert_eq!(
            parse_groups("a+c,b", &names).unwrap(),
            vec![vec![0, 2], vec![1]]
        );
    }

    #[test]
    fn task_sampling_parses_and_weighs_tasks_by_their_rows() {
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        let rows = [100, 400];
        assert!(close(
            &TaskSampling::Proportional.probabilities(&rows),
            &[0.2, 0.8]
        ));
        assert!(close(
            &TaskSampling::Uniform.probabilities(&rows),
            &[0.5, 0.5]
        ));
        // T = 2: sqrt(100) : sqrt(400) = 1 : 2.
        let t: TaskSampling = "temperature=2".parse().unwrap();
        assert!(close(&t.probabilities(&rows), &[1.0 / 3.0, 2.0 / 3.0]));
        assert_eq!(t.to_string(), "temperature=2");
        for bad in ["temperature=0", "temperature=x", "square"] {
            let e = bad.parse::<TaskSampling>().unwrap_err();
            assert!(e.contains("proportional, uniform or temperature=T"), "{e}");
        }
    }

    #[test]
    fn the_task_draw_follows_its_probabilities_among_active_tasks() {
        let probabilities = TaskSampling::Proportional.probabilities(&[100, 300, 600]);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n = 20_000;
        let share = |active: &[bool], rng: &mut ChaCha8Rng| {
            let mut counts = [0usize; 3];
            for _ in 0..n {
                counts[draw_task(&probabilities, active, rng.random::<f64>())] += 1;
            }
            counts.map(|c| c as f64 / n as f64)
        };
        // All active: 0.1, 0.3, 0.6 (binomial sd at most 0.0035; 0.015 is over four sd).
        let all = share(&[true, true, true], &mut rng);
        for (got, want) in all.iter().zip([0.1, 0.3, 0.6]) {
            assert!((got - want).abs() < 0.015, "{all:?}");
        }
        // The second task stopped early: it is never drawn, the others renormalise to 1 : 6.
        let two = share(&[true, false, true], &mut rng);
        assert_eq!(two[1], 0.0, "{two:?}");
        assert!((two[0] - 1.0 / 7.0).abs() < 0.015, "{two:?}");
        // Only the last task left: every draw is it, even at the edges of [0, 1).
        for u in [0.0, 0.5, 0.999_999] {
            assert_eq!(draw_task(&probabilities, &[false, false, true], u), 2);
            assert_eq!(draw_task(&probabilities, &[true, false, false], u), 0);
        }
    }

    #[test]
    fn verdicts_need_replicates_and_a_gain_beyond_one_sd() {
        assert_eq!(Verdict::of(&[0.2, 0.3], true), Verdict::Alone);
        assert_eq!(Verdict::of(&[0.2], false), Verdict::OneSeed);
        assert_eq!(Verdict::of(&[0.2, 0.3, 0.25], false), Verdict::Gained);
        assert_eq!(Verdict::of(&[-0.2, -0.3], false), Verdict::Lost);
        // Mean 0.05, sd 0.21: no clear change.
        assert_eq!(Verdict::of(&[0.2, -0.1], false), Verdict::NoClearChange);
        // The report's JSON keeps the words the markdown shows.
        for v in [
            Verdict::Gained,
            Verdict::Lost,
            Verdict::NoClearChange,
            Verdict::Alone,
            Verdict::OneSeed,
        ] {
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(json, format!("\"{v}\""));
            assert_eq!(serde_json::from_str::<Verdict>(&json).unwrap(), v);
        }
    }
}
