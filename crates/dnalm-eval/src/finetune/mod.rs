//! Fine-tuning: a sequence classification/regression head on the encoder, training all layers or
//! the last N, early stopping on the validation split; the result is a checkpoint that `embed`
//! (and `label`) load.
//!
//! A fine-tuned directory is a model directory (`config.json`, `model.safetensors`, tokenizer
//! files) plus `head.safetensors` and `head.json` (the task, its classes and the pooling).

use std::path::{Path, PathBuf};

use burn::{
    module::Module,
    tensor::{Tensor, TensorData},
};
use dnalm_model::{
    heads::{pool, Pooling, SequenceHead},
    io::load_parameters,
    lora::{adapter_tensors, lora_paths, trainable_parameters, AdapterInfo, LoraSpec},
    tensors::{named_parameters, read_safetensors, write_safetensors},
    AttentionPattern, Checkpoint, DnaLm, ModelInput,
};
use dnalm_seq::task::{LabelledSequence, Task, TaskKind};
use dnalm_tokenize::{AnyTokenizer, Tokenizer};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

pub mod per_base;

use crate::{
    features::embed::ModelSpec,
    features::tasks::{check_tokenizer, split_rows, targets},
    features::Targets,
    probes::concat_targets,
    probes::fit::{fit_scaled, predict, FitOptions, SeedRuns, Selection},
    probes::{fit_linear_probe, ProbeOptions},
    EvalError,
};

/// An encoder with a sequence head.
#[derive(Module, Debug)]
pub struct SequenceClassifier {
    /// The encoder.
    pub encoder: DnaLm,
    /// The head on its pooled output.
    pub head: SequenceHead,
}

/// What `head.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadInfo {
    /// Task name.
    pub task: String,
    /// Class names (classification) or empty (regression).
    pub label_names: Vec<String>,
    /// Whether the head regresses a value.
    pub regression: bool,
    /// Whether the head scores independent labels (multi-label: a sigmoid each, `label_names`
    /// naming them) rather than exclusive classes.
    #[serde(default)]
    pub multi_label: bool,
    /// Pooling of the encoder output.
    pub pooling: Pooling,
    /// Regression targets' mean and sd (the head predicts standardised values).
    pub target_scale: Option<(f64, f64)>,
    /// Median length (bases) of the training sequences: the window `dnalm label` slides.
    #[serde(default)]
    pub seq_len: Option<usize>,
    /// Whether the head is linear (`out` alone, as LP-FT trains it) rather than
    /// `dense -> GELU -> out`.
    #[serde(default)]
    pub linear_head: bool,
    /// Whether mean/max pooling took in the template tokens (`[CLS]`, `[SEP]`) too, as heads
    /// trained before 2026-11-30 did; newer heads leave them out, as the embeddings do.
    #[serde(default = "pooled_specials_before")]
    pub pools_specials: bool,
    /// Whether the head labels every base (a per-base task; [`per_base::BaseTagger`]) rather
    /// than the pooled sequence.
    #[serde(default)]
    pub per_base: bool,
}

fn pooled_specials_before() -> bool {
    true
}

/// The tokens of each row that mean and max pooling take in: all but the template tokens at its
/// ends (`[CLS]`, `[SEP]`), as the embeddings' pooling does (their states are not sequence
/// content, and a small model's can dominate a mean).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PooledSpan {
    /// Leading template tokens left out.
    pub skip_leading: usize,
    /// Trailing template tokens left out.
    pub skip_trailing: usize,
}

impl PooledSpan {
    /// Every real token.
    pub const ALL: PooledSpan = PooledSpan {
        skip_leading: 0,
        skip_trailing: 0,
    };

    /// The span of `tokenizer`'s rows: its template's tokens left out.
    pub fn of(tokenizer: &AnyTokenizer) -> PooledSpan {
        let (prefix, suffix) = tokenizer.template_tokens();
        PooledSpan {
            skip_leading: prefix.is_some() as usize,
            skip_trailing: suffix.is_some() as usize,
        }
    }

    /// The span a saved head was trained with.
    pub fn of_head(info: &HeadInfo, tokenizer: &AnyTokenizer) -> PooledSpan {
        if info.pools_specials {
            PooledSpan::ALL
        } else {
            PooledSpan::of(tokenizer)
        }
    }
}

/// How the fine-tuning learning rate is set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LearningRate {
    /// Scaled to the model's size ([`size_scaled_lr`]).
    Scaled,
    /// This peak rate.
    Fixed(f64),
    /// Short runs at [`LR_SEARCH_FACTORS`] times the size-scaled rate, scored on valid; the best
    /// is then trained in full.
    Search,
}

impl std::str::FromStr for LearningRate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" | "search" => Ok(LearningRate::Search),
            "scaled" => Ok(LearningRate::Scaled),
            _ => match s.parse::<f64>() {
                Ok(v) if v > 0.0 && v.is_finite() => Ok(LearningRate::Fixed(v)),
                _ => Err(format!(
                    "`{s}` is not a learning rate: give a positive number, `scaled` (by model \
                     size) or `auto` (a short search on valid)"
                )),
            },
        }
    }
}

/// Multiples of the size-scaled rate that `--lr auto` tries.
pub const LR_SEARCH_FACTORS: [f64; 3] = [1.0 / 3.0, 1.0, 3.0];

/// The share of the step budget each `--lr auto` trial runs.
pub const LR_SEARCH_SHARE: f64 = 0.25;

/// How much higher LoRA's default rate is than full fine-tuning's ([`size_scaled_lr`]): the
/// factors start at zero and are few, and the LoRA paper and PEFT's examples train them at
/// about ten times the full fine-tuning rate.
pub const LORA_LR_FACTOR: f64 = 10.0;

/// A default peak learning rate for fine-tuning a model of `parameters` parameters:
/// `5e-4 · (3 M / parameters)^0.6`, within `[1e-5, 1e-3]`. About 5e-4 for the 3 M-parameter
/// encoders dnalm pretrains on a CPU, 6e-5 for DNABERT-2 (117 M) and 2e-5 for a 500 M Nucleotide
/// Transformer, in line with the rates those models' papers fine-tune with (small models
/// tolerate 1e-3, large ones need 1e-5 to 5e-5).
pub fn size_scaled_lr(parameters: usize) -> f64 {
    (5e-4 * (3e6 / parameters.max(1) as f64).powf(0.6)).clamp(1e-5, 1e-3)
}

/// How the head starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadInit {
    /// LP-FT (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features"): a linear head
    /// initialised from the linear probe on the frozen model's pooled embeddings (L2 chosen on
    /// valid), then everything is fine-tuned. The fit validates before its first step and keeps
    /// the best point, so on valid it never ends below the probe it started from.
    LinearProbe,
    /// A randomly initialised `dense -> GELU -> out` head.
    Random,
}

impl std::str::FromStr for HeadInit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linear-probe" | "lp" | "lp-ft" => Ok(HeadInit::LinearProbe),
            "random" => Ok(HeadInit::Random),
            _ => Err(format!(
                "`{s}` is not a head initialisation: linear-probe (LP-FT) or random"
            )),
        }
    }
}

/// Fine-tuning settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinetuneOptions {
    /// Budget, schedule and selection (its `lr` is replaced by the rate `lr` sets).
    pub fit: FitOptions,
    /// How the peak learning rate is set.
    pub lr: LearningRate,
    /// How the head starts.
    pub head: HeadInit,
    /// Train only the last N blocks (and the head); `None` trains everything. The frozen lower
    /// blocks' output is computed once per sequence and cached (when it fits in
    /// [`FROZEN_CACHE_BYTES`]): they run in inference mode, without dropout.
    pub train_last: Option<usize>,
    /// Freeze the token (and position) embeddings.
    pub freeze_embeddings: bool,
    /// Layer-wise learning-rate decay: block `i` of `L` trains at `decay^(L - i)` times the rate,
    /// the embeddings at `decay^(L + 1)`, the head and final norm at the full rate.
    pub layer_decay: Option<f64>,
    /// Pooling of the encoder output for the head.
    pub pooling: Pooling,
    /// Independent runs (seeds `fit.seed ..`).
    pub seeds: usize,
    /// Train LoRA adapters (and the head) instead of the encoder's weights; the result is saved
    /// as an adapter directory on the base model.
    #[serde(default)]
    pub lora: Option<LoraSpec>,
}

/// The most memory the frozen lower blocks' cached output may take.
pub const FROZEN_CACHE_BYTES: usize = 4 << 30;

/// The default budget: at most 10 epochs and 1,000 steps of 32 sequences, validated every epoch
/// or every 100 steps (whichever comes first), early-stopped after 3 validations without a
/// better headline metric.
pub const FINETUNE_BUDGET: FitOptions = FitOptions {
    epochs: 10,
    batch_size: 32,
    lr: 0.0,
    weight_decay: 0.01,
    patience: 3,
    seed: 0,
    max_steps: Some(1000),
    eval_every: None,
    select: Selection::ValidMetric,
    score_initial: true,
    device: dnalm_model::DeviceName::Cpu,
    balance: crate::probes::fit::ClassBalance::None,
};

/// Steps between validations when the budget does not say: every epoch, at most 100 steps.
const EVAL_EVERY_MAX: usize = 100;

impl Default for FinetuneOptions {
    fn default() -> Self {
        FinetuneOptions {
            fit: FINETUNE_BUDGET,
            lr: LearningRate::Scaled,
            head: HeadInit::LinearProbe,
            train_last: None,
            freeze_embeddings: false,
            layer_decay: None,
            pooling: Pooling::Mean,
            seeds: 1,
            lora: None,
        }
    }
}

/// One trial of the learning-rate search.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LrTrial {
    /// The peak rate tried.
    pub lr: f64,
    /// Its best validation headline metric.
    pub valid: f64,
    /// Steps it ran.
    pub steps: usize,
}

/// The linear probe LP-FT started from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeStart {
    /// Its regularisation, as chosen on valid.
    pub chosen: String,
    /// Its validation headline metric.
    pub valid: f64,
}

/// Test results of fine-tuning (metrics and outputs per seed) and how the run was set up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinetuneReport {
    /// Test metrics and outputs per seed.
    #[serde(flatten)]
    pub seeds: SeedRuns,
    /// The peak learning rate used.
    pub lr: f64,
    /// How it was set: `scaled`, `fixed` or `search`.
    pub lr_source: String,
    /// The search's trials (`--lr auto`), best last-wins order as tried.
    pub lr_search: Vec<LrTrial>,
    /// How the head started.
    pub head: HeadInit,
    /// LP-FT: the probe the head started from.
    pub linear_probe: Option<ProbeStart>,
    /// Best validation headline metric per seed.
    pub best_valid: Vec<f64>,
    /// The step each seed's kept network was taken at (0: the initial network).
    pub best_steps: Vec<usize>,
    /// Steps each seed ran.
    pub steps_run: Vec<usize>,
    /// Training throughput per seed: real tokens through forward and backward per second of
    /// training steps (validation excluded).
    pub tokens_per_second: Vec<f64>,
    /// Lower blocks whose output was cached (frozen, computed once per sequence).
    pub cached_blocks: usize,
    /// Encoder parameters.
    pub parameters: usize,
    /// Parameters the optimiser updated (encoder and head; with LoRA, the factors and head).
    pub trainable_parameters: usize,
    /// LoRA: the adapter as saved (base model, rank, alpha, targets, adapted weights).
    pub adapter: Option<AdapterInfo>,
}

impl FinetuneReport {
    /// One line on how the runs were set up, e.g.
    /// `LP-FT (probe l2=1e-2, valid 0.61); lr=5.1e-4 (scaled); steps=[400, 380]; best at [300, 200]`.
    pub fn describe(&self) -> String {
        let head = match (&self.head, &self.linear_probe) {
            (HeadInit::LinearProbe, Some(p)) => {
                format!("LP-FT (probe {}, valid {:.3})", p.chosen, p.valid)
            }
            _ => "random head".to_string(),
        };
        let head = match &self.adapter {
            Some(a) => format!(
                "{head}; LoRA r={} alpha={} on {} ({} trainable parameters)",
                a.lora.rank,
                a.lora.alpha,
                a.lora.targets.join(","),
                self.trainable_parameters
            ),
            None => head,
        };
        let search = if self.lr_search.is_empty() {
            String::new()
        } else {
            let tried: Vec<String> = self
                .lr_search
                .iter()
                .map(|t| format!("{:.1e}: {:.3}", t.lr, t.valid))
                .collect();
            format!(" from {{{}}}", tried.join(", "))
        };
        format!(
            "{head}; lr={:.1e} ({}{search}); steps={:?}; best at {:?}",
            self.lr, self.lr_source, self.steps_run, self.best_steps
        )
    }
}

/// Token rows for sequences, cut to the model's context (the middle is kept).
pub(crate) fn token_rows(tokenizer: &AnyTokenizer, max: usize, seqs: &[&[u8]]) -> Vec<Vec<u32>> {
    let (prefix, suffix) = tokenizer.template_tokens();
    let room = tokenizer.room(max);
    seqs.iter()
        .map(|s| {
            let mut ids = Vec::with_capacity(s.len());
            tokenizer.tokenize_into(s, &mut ids, None);
            if ids.len() > room {
                let cut = (ids.len() - room) / 2;
                ids = ids[cut..cut + room].to_vec();
            }
            let mut row = Vec::with_capacity(ids.len() + 2);
            row.extend(prefix);
            row.extend(ids);
            row.extend(suffix);
            row
        })
        .collect()
}

fn attention_pattern(config: &dnalm_model::ModelConfig) -> AttentionPattern {
    config.architecture.attention_pattern()
}

/// `[rows, len]`: 1.0 at the tokens pooling takes in (real tokens inside `span`; a row with no
/// token inside it keeps all its real tokens).
fn pooled_tokens(
    input: &ModelInput,
    rows: &[Vec<u32>],
    span: PooledSpan,
    device: &dnalm_model::burn::tensor::Device,
) -> Tensor<2> {
    let mut weights = vec![0.0f32; input.rows * input.len];
    for (r, row) in rows.iter().enumerate() {
        let n = row.len();
        let (mut first, mut last) = (span.skip_leading, n.saturating_sub(span.skip_trailing));
        if first >= last {
            (first, last) = (0, n);
        }
        weights[r * input.len + first..r * input.len + last].fill(1.0);
    }
    Tensor::<2>::from_data(TensorData::new(weights, [input.rows, input.len]), device)
}

/// `head`'s outputs `[rows, outputs]` on `encoder`'s pooled output for token rows: the forward
/// pass of a sequence head, whichever network holds the two (one fine-tuned task, or one task of
/// a multitask network).
pub(crate) fn pooled_forward(
    encoder: &DnaLm,
    head: &SequenceHead,
    rows: &[Vec<u32>],
    pooling: Pooling,
    span: PooledSpan,
    dropout_seed: Option<u64>,
) -> Result<Tensor<2>, EvalError> {
    let mut input = ModelInput::from_rows(rows, attention_pattern(&encoder.config));
    input.dropout_seed = dropout_seed;
    let device = encoder.device();
    let real = pooled_tokens(&input, rows, span, &device);
    let hidden = encoder.forward(&input)?;
    Ok(head.forward(pool(hidden, real, pooling)))
}

impl SequenceClassifier {
    /// Outputs `[rows, outputs]` for token rows.
    pub fn forward(
        &self,
        rows: &[Vec<u32>],
        pooling: Pooling,
        span: PooledSpan,
        dropout_seed: Option<u64>,
    ) -> Result<Tensor<2>, EvalError> {
        pooled_forward(&self.encoder, &self.head, rows, pooling, span, dropout_seed)
    }

    /// [`SequenceClassifier::forward`] from cached states after the first `first` blocks: one
    /// `len_i x hidden` slice per row (row-major), as [`DnaLm::hidden_after`] gave them.
    pub fn forward_cached(
        &self,
        rows: &[Vec<u32>],
        cached: &[&[f32]],
        first: usize,
        pooling: Pooling,
        span: PooledSpan,
        dropout_seed: Option<u64>,
    ) -> Result<Tensor<2>, EvalError> {
        let mut input = ModelInput::from_rows(rows, attention_pattern(&self.encoder.config));
        input.dropout_seed = dropout_seed;
        let device = self.encoder.device();
        let d = self.encoder.config.hidden_size();
        let mut values = vec![0.0f32; input.rows * input.len * d];
        for (r, states) in cached.iter().enumerate() {
            let start = r * input.len * d;
            values[start..start + states.len()].copy_from_slice(states);
        }
        let hidden =
            Tensor::<3>::from_data(TensorData::new(values, [input.rows, input.len, d]), &device);
        let real = pooled_tokens(&input, rows, span, &device);
        let hidden = self.encoder.forward_from(&input, hidden, first)?;
        Ok(self.head.forward(pool(hidden, real, pooling)))
    }
}

/// What one pass of the frozen model over every sequence gives: the pooled final states (for the
/// linear probe) and, when lower blocks are frozen, their output per sequence.
pub(crate) struct FrozenPass {
    /// `rows x hidden` pooled final states (train, valid, test order of the row list given).
    pub(crate) pooled: Array2<f32>,
    /// Per row: `len_i x hidden` states after the frozen blocks (empty when not cached).
    pub(crate) cached: Vec<Vec<f32>>,
}

/// Runs the frozen (inference) encoder over `rows` in batches.
pub(crate) fn frozen_pass(
    encoder: &DnaLm,
    rows: &[Vec<u32>],
    pooling: Pooling,
    span: PooledSpan,
    cut: usize,
    cache: bool,
) -> Result<FrozenPass, EvalError> {
    let d = encoder.config.hidden_size();
    let device = encoder.device();
    let mut pooled = Vec::with_capacity(rows.len() * d);
    let mut cached = Vec::new();
    for chunk in rows.chunks(32) {
        let input = ModelInput::from_rows(chunk, attention_pattern(&encoder.config));
        let hidden = if cache {
            let lower = encoder.hidden_after(&input, cut)?;
            let values = lower
                .clone()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| crate::tensor_error("frozen states", e))?;
            for (r, row) in chunk.iter().enumerate() {
                let start = r * input.len * d;
                cached.push(values[start..start + row.len() * d].to_vec());
            }
            encoder.forward_from(&input, lower, cut)?
        } else {
            encoder.forward(&input)?
        };
        let p = pool(hidden, pooled_tokens(&input, chunk, span, &device), pooling);
        pooled.extend(
            p.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| crate::tensor_error("pooled states", e))?,
        );
    }
    let pooled = Array2::from_shape_vec((rows.len(), d), pooled)
        .map_err(|e| crate::shape_error("pooled states", e))?;
    Ok(FrozenPass { pooled, cached })
}

/// The factor on a linear model's logits that minimises the mean log-loss of `labels` (temperature
/// scaling, Guo et al. 2017), searched over 81 log-spaced values in `[1e-3, 10]`.
fn calibrated_scale(logits: &Array2<f32>, labels: &[u32]) -> f32 {
    let log_loss = |t: f64| -> f64 {
        let mut total = 0.0;
        for (row, &label) in logits.rows().into_iter().zip(labels) {
            let scaled: Vec<f64> = row.iter().map(|&z| z as f64 * t).collect();
            let max = scaled.iter().cloned().fold(f64::MIN, f64::max);
            let sum: f64 = scaled.iter().map(|z| (z - max).exp()).sum();
            total += max + sum.ln() - scaled[label as usize];
        }
        total / labels.len().max(1) as f64
    };
    let (mut best, mut best_loss) = (1.0, log_loss(1.0));
    for i in 0..=80 {
        let t = 10f64.powf(-3.0 + 4.0 * i as f64 / 80.0);
        let l = log_loss(t);
        if l < best_loss {
            (best, best_loss) = (t, l);
        }
    }
    best as f32
}

/// The learning-rate factor of a parameter of a [`SequenceClassifier`] under layer-wise decay.
fn layer_decay_scale(name: &str, decay: f64, layers: usize) -> f64 {
    let Some(rest) = name.strip_prefix("encoder.") else {
        return 1.0;
    };
    if let Some(block) = rest.strip_prefix("blocks.") {
        let index: usize = block
            .split('.')
            .next()
            .and_then(|i| i.parse().ok())
            .unwrap_or(layers);
        return decay.powi(layers.saturating_sub(index) as i32);
    }
    if ["embed", "positions", "embed_norm", "token_type"]
        .iter()
        .any(|p| rest == *p || rest.starts_with(&format!("{p}.")))
    {
        return decay.powi(layers as i32 + 1);
    }
    1.0
}

/// LP-FT's start: the linear probe fitted on the frozen pooled states `pooled` of the `train`
/// rows (regularisation chosen on `valid`, or on `train` when there is none), as a linear head's
/// weights (`hidden x outputs`, row-major) and biases: temperature-scaled on the selection rows
/// for classes, on the standardised scale the head predicts for values.
pub(crate) fn probe_head_weights(
    pooled: &Array2<f32>,
    y: &Targets,
    train_idx: &[usize],
    valid_idx: &[usize],
) -> Result<(ProbeStart, Vec<f32>, Vec<f32>), EvalError> {
    let labelled = |idx: &[usize]| crate::features::Labelled {
        x: pooled.select(ndarray::Axis(0), idx),
        y: y.select(idx),
    };
    let select = if valid_idx.is_empty() {
        train_idx
    } else {
        valid_idx
    };
    let (probe, chosen, valid_score) = fit_linear_probe(
        &labelled(train_idx),
        &labelled(select),
        &ProbeOptions::default(),
    )?;
    let (mut w, mut b) = (probe.weights, probe.bias);
    if let Targets::Classes { labels, .. } = &y.select(select) {
        // Temperature-scale the probe on the selection rows: the same decisions (so the
        // same MCC), but calibrated logits, so fine-tuning does not start from a weakly
        // regularised probe's saturated softmax (logit gaps of tens, gradients near 0).
        let logits = pooled.select(ndarray::Axis(0), select).dot(&w) + &b;
        let t = calibrated_scale(&logits, labels);
        w *= t;
        b *= t;
    }
    if let Some((mean, sd)) = crate::probes::fit::target_scale(y, train_idx) {
        // The head predicts standardised targets (as `fit` scales them).
        w /= sd as f32;
        b = (b - mean as f32) / sd as f32;
    }
    let start = ProbeStart {
        chosen,
        valid: valid_score,
    };
    Ok((start, w.iter().copied().collect(), b.to_vec()))
}

/// What `head.json` records for a pooled head trained on `task`.
pub(crate) fn sequence_head_info(
    task: &Task,
    pooling: Pooling,
    target_scale: Option<(f64, f64)>,
    linear_head: bool,
) -> HeadInfo {
    HeadInfo {
        task: task.spec.name.clone(),
        label_names: match &task.spec.kind {
            TaskKind::Classification {
                label_names,
                num_classes,
            } => label_names
                .clone()
                .unwrap_or_else(|| (0..*num_classes).map(|c| c.to_string()).collect()),
            TaskKind::Regression => Vec::new(),
            TaskKind::MultiLabel { label_names } | TaskKind::PerBase { label_names } => {
                label_names.clone()
            }
        },
        regression: task.spec.kind == TaskKind::Regression,
        multi_label: matches!(task.spec.kind, TaskKind::MultiLabel { .. }),
        pooling,
        target_scale,
        seq_len: {
            let mut lens: Vec<usize> = task
                .split(dnalm_seq::task::Split::Train)
                .map(|r| r.sequence.len())
                .collect();
            lens.sort_unstable();
            lens.get(lens.len() / 2).copied()
        },
        linear_head,
        pools_specials: false,
        per_base: false,
    }
}

/// Fine-tunes `model` on `task` once per seed; returns test metrics and the first seed's network.
pub fn finetune(
    model: &ModelSpec,
    task: &Task,
    options: &FinetuneOptions,
) -> Result<(FinetuneReport, SequenceClassifier, HeadInfo, AnyTokenizer), EvalError> {
    let [train, valid, test] = split_rows(task)?;
    // Loaded on the CPU: its weights are copied into the network that trains on the device.
    let encoder = model.load(&dnalm_model::cpu())?;
    check_tokenizer(task, &encoder)?;
    let tokenizer = encoder.tokenizer.clone();
    let config = encoder.model.config.clone();
    let parameters = encoder.model.num_params();
    if let Some(lora) = &options.lora {
        if model.random.is_some() {
            return Err(EvalError::BadOption {
                option: "lora",
                message: format!(
                    "LoRA adapts trained weights; {} is a random initialisation (fine-tune it \
                     in full instead)",
                    model.name
                ),
            });
        }
        if options.train_last.is_some() {
            return Err(EvalError::BadOption {
                option: "lora",
                message: "LoRA adapts every block; --lora and --train-last exclude each other"
                    .into(),
            });
        }
        // The targets are checked before any work.
        lora_paths(&encoder.model, lora)?;
    }
    if let Some(decay) = options.layer_decay {
        if !(decay > 0.0 && decay <= 1.0) {
            return Err(EvalError::BadOption {
                option: "layer-decay",
                message: format!("{decay} is not in (0, 1]"),
            });
        }
    }
    let max = config.max_positions;
    let all: Vec<&LabelledSequence> = train.iter().chain(&valid).chain(&test).copied().collect();
    let seqs: Vec<&[u8]> = all.iter().map(|r| r.sequence.as_slice()).collect();
    let rows = token_rows(&tokenizer, max, &seqs);
    let (n_train, n_valid) = (train.len(), valid.len());
    let y = concat_targets(
        &concat_targets(&targets(task, &train), &targets(task, &valid)),
        &targets(task, &test),
    );
    let outputs = task.spec.outputs();
    let pooling = options.pooling;
    let span = PooledSpan::of(&tokenizer);
    let cut = options
        .train_last
        .map_or(0, |n| config.n_layers.saturating_sub(n));
    let cache_bytes: usize = rows
        .iter()
        .map(|r| r.len() * config.hidden_size() * 4)
        .sum();
    let cache = cut > 0 && cache_bytes <= FROZEN_CACHE_BYTES;
    let probe_head = options.head == HeadInit::LinearProbe;
    let frozen = if probe_head || cache {
        Some(frozen_pass(
            &encoder.model,
            &rows,
            pooling,
            span,
            cut,
            cache,
        )?)
    } else {
        None
    };
    let train_idx: Vec<usize> = (0..n_train).collect();
    let valid_idx: Vec<usize> = (n_train..n_train + n_valid).collect();
    let test_idx: Vec<usize> = (n_train + n_valid..rows.len()).collect();

    // LP-FT: the linear probe on the frozen pooled states, as a linear head.
    let mut linear_probe = None;
    let probe_weights = match (&frozen, probe_head) {
        (Some(pass), true) => {
            let (start, w, b) = probe_head_weights(&pass.pooled, &y, &train_idx, &valid_idx)?;
            linear_probe = Some(start);
            Some((w, b))
        }
        _ => None,
    };

    let tokens = std::cell::Cell::new(0usize);
    let pick = |idx: &[usize]| -> Vec<Vec<u32>> { idx.iter().map(|&i| rows[i].clone()).collect() };
    let forward = |net: &SequenceClassifier, idx: &[usize], seed: Option<u64>| {
        if seed.is_some() {
            tokens.set(tokens.get() + idx.iter().map(|&i| rows[i].len()).sum::<usize>());
        }
        match &frozen {
            Some(pass) if cache => {
                let states: Vec<&[f32]> = idx.iter().map(|&i| pass.cached[i].as_slice()).collect();
                net.forward_cached(&pick(idx), &states, cut, pooling, span, seed)
            }
            _ => net.forward(&pick(idx), pooling, span, seed),
        }
    };
    let device = crate::train_device(&options.fit.device.open()?);
    let weights = named_parameters(&encoder.model);
    let build = |seed: u64| -> Result<SequenceClassifier, EvalError> {
        let enc = trainable_encoder(&config, &weights, &model.dir, &device, options, cut, seed)?;
        let head = match &probe_weights {
            Some((w, b)) => {
                SequenceHead::linear_from(w.clone(), b.clone(), config.hidden_size(), &device)?
            }
            None => dnalm_model::io::reinitialize(
                SequenceHead::new(config.hidden_size(), outputs, &device),
                seed,
            ),
        };
        Ok(SequenceClassifier { encoder: enc, head })
    };
    let trained = train_seeds(
        options,
        &config,
        parameters,
        &build,
        &forward,
        &tokens,
        &y,
        [&train_idx, &valid_idx, &test_idx],
    )?;
    let (net, target_scale) = (trained.net.valid(), trained.target_scale);
    let info = sequence_head_info(task, pooling, target_scale, net.head.dense.is_none());
    let adapter = adapter_info(model, options, &net.encoder)?;
    let report = trained.report(
        options.head,
        linear_probe,
        if cache { cut } else { 0 },
        parameters,
        adapter,
    );
    Ok((report, net, info, tokenizer))
}

/// The encoder as fine-tuning trains it, on `device`: `weights` loaded, the embeddings frozen
/// (`freeze_embeddings`, or any frozen block), the first `cut` blocks frozen, LoRA factors
/// (seeded) added when asked for.
pub(crate) fn trainable_encoder(
    config: &dnalm_model::ModelConfig,
    weights: &std::collections::BTreeMap<String, dnalm_model::tensors::HostTensor>,
    source: &Path,
    device: &dnalm_model::burn::tensor::Device,
    options: &FinetuneOptions,
    cut: usize,
    seed: u64,
) -> Result<DnaLm, EvalError> {
    let mut enc = load_parameters(DnaLm::new(config, device)?, weights, source)?;
    if options.freeze_embeddings || cut > 0 {
        enc.embed = enc.embed.no_grad();
        enc.positions = enc.positions.map(Module::no_grad);
        enc.embed_norm = enc.embed_norm.map(Module::no_grad);
        enc.token_type = enc.token_type.map(|p| p.set_require_grad(false));
    }
    if let Some(lora) = &options.lora {
        enc = enc.with_lora(lora, seed)?.train();
    }
    if cut > 0 {
        enc.blocks = enc
            .blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| if i < cut { b.no_grad() } else { b })
            .collect();
    }
    Ok(enc)
}

/// The peak learning rate under `mode`, how it was set, and (`--lr auto`) the trials: short
/// runs at [`LR_SEARCH_FACTORS`] times `scaled`, each scored on its own validations, the best
/// kept.
#[allow(clippy::too_many_arguments)]
pub(crate) fn choose_lr<N: Module + Clone>(
    mode: LearningRate,
    scaled: f64,
    total_steps: usize,
    budget: &FitOptions,
    build: &dyn Fn(u64) -> Result<N, EvalError>,
    forward: &crate::probes::fit::Forward<N>,
    y: &Targets,
    train: &[usize],
    valid: &[usize],
    lr_scale: &dyn Fn(&str) -> f64,
) -> Result<(f64, &'static str, Vec<LrTrial>), EvalError> {
    let mut trials = Vec::new();
    Ok(match mode {
        LearningRate::Fixed(lr) => (lr, "fixed", trials),
        LearningRate::Scaled => (scaled, "scaled", trials),
        LearningRate::Search => {
            let steps = ((total_steps as f64 * LR_SEARCH_SHARE).ceil() as usize).max(1);
            let mut best = (scaled, f64::NEG_INFINITY);
            for factor in LR_SEARCH_FACTORS {
                // Scored on its own validations only: with the start counted, every trial of
                // an LP-FT run would tie at the probe's score.
                let trial = FitOptions {
                    lr: scaled * factor,
                    max_steps: Some(steps),
                    seed: budget.seed,
                    score_initial: false,
                    ..budget.clone()
                };
                let fitted = fit_scaled(
                    build(trial.seed)?,
                    forward,
                    y,
                    train,
                    valid,
                    &trial,
                    lr_scale,
                )?;
                let score = fitted.best_valid_metric.unwrap_or(f64::NAN);
                if score > best.1 {
                    best = (trial.lr, score);
                }
                trials.push(LrTrial {
                    lr: trial.lr,
                    valid: score,
                    steps: fitted.steps_run,
                });
            }
            (best.0, "search", trials)
        }
    })
}

/// What the seeds of one fine-tuning gave: test metrics per seed and how each ran, and the first
/// seed's network.
pub(crate) struct TrainedSeeds<N> {
    seeds: SeedRuns,
    lr: f64,
    lr_source: &'static str,
    lr_search: Vec<LrTrial>,
    best_valid: Vec<f64>,
    best_steps: Vec<usize>,
    steps_run: Vec<usize>,
    tokens_per_second: Vec<f64>,
    trainable: usize,
    /// The first seed's kept network.
    pub(crate) net: N,
    /// Its regression target scale.
    pub(crate) target_scale: Option<(f64, f64)>,
}

impl<N> TrainedSeeds<N> {
    /// The report of these runs.
    pub(crate) fn report(
        self,
        head: HeadInit,
        linear_probe: Option<ProbeStart>,
        cached_blocks: usize,
        parameters: usize,
        adapter: Option<AdapterInfo>,
    ) -> FinetuneReport {
        FinetuneReport {
            seeds: self.seeds.summarise(),
            lr: self.lr,
            lr_source: self.lr_source.into(),
            lr_search: self.lr_search,
            head,
            linear_probe,
            best_valid: self.best_valid,
            best_steps: self.best_steps,
            steps_run: self.steps_run,
            tokens_per_second: self.tokens_per_second,
            cached_blocks,
            parameters,
            trainable_parameters: self.trainable,
            adapter,
        }
    }
}

/// The part every fine-tuning shares once its network and forward pass exist: the budget
/// (validation every epoch, at most [`EVAL_EVERY_MAX`] steps), the peak learning rate
/// ([`choose_lr`]; LoRA's scaled rate × [`LORA_LR_FACTOR`]), layer-wise decay, and one run per
/// seed (`options.fit.seed ..`) scored on the test rows. `tokens` is the counter `forward` adds
/// its training tokens to.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_seeds<N: Module + Clone>(
    options: &FinetuneOptions,
    config: &dnalm_model::ModelConfig,
    parameters: usize,
    build: &dyn Fn(u64) -> Result<N, EvalError>,
    forward: &crate::probes::fit::Forward<N>,
    tokens: &std::cell::Cell<usize>,
    y: &Targets,
    [train, valid, test]: [&[usize]; 3],
) -> Result<TrainedSeeds<N>, EvalError> {
    let layers = config.n_layers;
    let lr_scale = |name: &str| {
        options
            .layer_decay
            .map_or(1.0, |d| layer_decay_scale(name, d, layers))
    };
    let mut budget = options.fit.clone();
    if budget.eval_every.is_none() {
        budget.eval_every = Some(budget.steps_per_epoch(train.len()).clamp(1, EVAL_EVERY_MAX));
    }
    let total_steps = budget.total_steps(train.len());
    let scaled = size_scaled_lr(parameters)
        * if options.lora.is_some() {
            LORA_LR_FACTOR
        } else {
            1.0
        };
    let (lr, lr_source, lr_search) = choose_lr(
        options.lr,
        scaled,
        total_steps,
        &budget,
        build,
        forward,
        y,
        train,
        valid,
        &lr_scale,
    )?;
    let test_targets = y.select(test);
    let mut seeds = SeedRuns::default();
    let (mut best_valid, mut best_steps, mut steps_run, mut tokens_per_second) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut first = None;
    let mut trainable = 0;
    for s in 0..options.seeds.max(1) as u64 {
        let o = FitOptions {
            lr,
            seed: budget.seed.wrapping_add(s),
            ..budget.clone()
        };
        tokens.set(0);
        let net = build(o.seed)?;
        trainable = trainable_parameters(&net);
        let fitted = fit_scaled(net, forward, y, train, valid, &o, &lr_scale)?;
        tokens_per_second.push(tokens.get() as f64 / fitted.train_seconds.max(1e-9));
        let out = predict(&fitted, forward, test, o.batch_size)?;
        seeds.record(fitted.epochs_run, &test_targets, out);
        best_valid.push(fitted.best_valid_metric.unwrap_or(f64::NAN));
        best_steps.push(fitted.best_step);
        steps_run.push(fitted.steps_run);
        if first.is_none() {
            first = Some((fitted.net, fitted.output.target_scale()));
        }
    }
    let (net, target_scale) = first.ok_or_else(|| EvalError::BadOption {
        option: "seeds",
        message: "no fine-tuning run".into(),
    })?;
    Ok(TrainedSeeds {
        seeds,
        lr,
        lr_source,
        lr_search,
        best_valid,
        best_steps,
        steps_run,
        tokens_per_second,
        trainable,
        net,
        target_scale,
    })
}

/// Fine-tunes `model` on `task` ([`finetune`], or [`per_base::finetune_per_base`] for a
/// per-base task) and saves the first seed's network to `output` (atomically: a fine-tuned
/// checkpoint, or with LoRA an adapter directory). Returns the report and, for an adapter
/// that has no PEFT layout, why.
pub fn finetune_to(
    model: &ModelSpec,
    task: &Task,
    options: &FinetuneOptions,
    output: &Path,
) -> Result<(FinetuneReport, Option<String>), EvalError> {
    if matches!(task.spec.kind, TaskKind::PerBase { .. }) {
        let (report, net, info, tokenizer) = per_base::finetune_per_base(model, task, options)?;
        let no_peft =
            per_base::save_base_tagger(output, &net, &info, &tokenizer, report.adapter.as_ref())?;
        Ok((report, no_peft))
    } else {
        let (report, net, info, tokenizer) = finetune(model, task, options)?;
        let no_peft = save_finetuned(output, &net, &info, &tokenizer, report.adapter.as_ref())?;
        Ok((report, no_peft))
    }
}

/// The adapter a LoRA run saves (`None` without LoRA).
pub(crate) fn adapter_info(
    model: &ModelSpec,
    options: &FinetuneOptions,
    encoder: &DnaLm,
) -> Result<Option<AdapterInfo>, EvalError> {
    let Some(lora) = &options.lora else {
        return Ok(None);
    };
    Ok(Some(AdapterInfo {
        base_model: model
            .dir
            .canonicalize()
            .map_err(|e| EvalError::io(&model.dir, e))?,
        lora: LoraSpec {
            targets: lora.targets_for(&encoder.config),
            ..lora.clone()
        },
        parameters: adapter_tensors(encoder)
            .into_keys()
            .filter_map(|k| k.strip_suffix(".lora.a").map(str::to_string))
            .collect(),
    }))
}

/// Writes a fine-tuned checkpoint to `dir` atomically (a temp directory renamed into place).
/// With `adapter` (a LoRA run), the directory holds the adapter and the head, not a copy of the
/// base model ([`Checkpoint::load`] attaches the adapter to the base), in dnalm's layout and
/// PEFT's; returns why PEFT's layout was not written when it was not.
pub fn save_finetuned(
    dir: &Path,
    net: &SequenceClassifier,
    info: &HeadInfo,
    tokenizer: &AnyTokenizer,
    adapter: Option<&AdapterInfo>,
) -> Result<Option<String>, EvalError> {
    save_checkpoint(
        dir,
        &net.encoder,
        &named_parameters(&net.head),
        info,
        tokenizer,
        adapter,
    )
}

/// [`save_finetuned`] for any head, given by its parameters.
pub(crate) fn save_checkpoint(
    dir: &Path,
    encoder: &DnaLm,
    head: &std::collections::BTreeMap<String, dnalm_model::tensors::HostTensor>,
    info: &HeadInfo,
    tokenizer: &AnyTokenizer,
    adapter: Option<&AdapterInfo>,
) -> Result<Option<String>, EvalError> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| EvalError::io(parent, e))?;
    let tmp = dnalm_seq::temp_dir_in(parent, ".finetune-").map_err(|e| EvalError::io(parent, e))?;
    let mut no_peft = None;
    match adapter {
        Some(adapter) => no_peft = adapter.save(tmp.path(), encoder)?,
        None => {
            encoder.save(tmp.path())?;
            tokenizer.save(tmp.path())?;
        }
    }
    write_safetensors(&tmp.path().join("head.safetensors"), head, None)?;
    let json = serde_json::to_string_pretty(info).map_err(EvalError::Json)?;
    let head_json = tmp.path().join("head.json");
    std::fs::write(&head_json, json).map_err(|e| EvalError::io(&head_json, e))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
    }
    let kept: PathBuf = tmp.keep();
    std::fs::rename(&kept, dir).map_err(|e| EvalError::io(dir, e))?;
    Ok(no_peft)
}

/// The `head.json` of a fine-tuned checkpoint directory: what its head predicts.
pub fn read_head_info(dir: &Path) -> Result<HeadInfo, EvalError> {
    let head_json = dir.join("head.json");
    let text = std::fs::read_to_string(&head_json).map_err(|e| EvalError::io(&head_json, e))?;
    serde_json::from_str(&text).map_err(|e| EvalError::Format {
        path: head_json.clone(),
        message: format!("not a dnalm head.json: {e}"),
    })
}

/// Loads a fine-tuned checkpoint onto `device`.
pub fn load_finetuned(
    dir: &Path,
    device: &dnalm_model::burn::tensor::Device,
) -> Result<(SequenceClassifier, HeadInfo, AnyTokenizer), EvalError> {
    let head_json = dir.join("head.json");
    let info = read_head_info(dir)?;
    if info.per_base {
        return Err(EvalError::Format {
            path: head_json,
            message: "a per-base head (one class per base); load it with \
                      finetune::per_base::load_base_tagger"
                .into(),
        });
    }
    let Checkpoint {
        model: encoder,
        tokenizer,
        ..
    } = Checkpoint::load(dir, device)?;
    let outputs = if info.regression {
        1
    } else {
        info.label_names.len()
    };
    let head_path = dir.join("head.safetensors");
    let shape = if info.linear_head {
        SequenceHead::linear(encoder.config.hidden_size(), outputs, device)
    } else {
        SequenceHead::new(encoder.config.hidden_size(), outputs, device)
    };
    let head = load_parameters(shape, &read_safetensors(&head_path)?, &head_path)?;
    Ok((SequenceClassifier { encoder, head }, info, tokenizer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::binary_task;
    use dnalm_model::{Architecture, ModelConfig};

    /// A 2-block, d = 16 encoder saved to `dir/model`, and a task in `dir/task` whose label is
    /// whether a 48-base sequence is GC-rich.
    fn fixture(dir: &Path) -> (ModelSpec, Task) {
        crate::features::embed::tests::encoder(64, "nucleotide")
            .save(&dir.join("model"))
            .unwrap();
        let task = binary_task(dir, "gc", 7, |i, rng| {
            let label = i % 2;
            let alphabet: &[u8] = if label == 1 { b"GGCCGCAT" } else { b"AATTATGC" };
            let seq: String = (0..48)
                .map(|_| alphabet[rng.next() % alphabet.len()] as char)
                .collect();
            (seq, label)
        });
        (
            ModelSpec::parse(dir.join("model").to_str().unwrap()),
            Task::load(&task).unwrap(),
        )
    }

    fn quick(lr: LearningRate, head: HeadInit) -> FinetuneOptions {
        FinetuneOptions {
            fit: FitOptions {
                epochs: 2,
                batch_size: 16,
                ..FINETUNE_BUDGET
            },
            lr,
            head,
            ..FinetuneOptions::default()
        }
    }

    #[test]
    fn the_lp_ft_head_starts_as_the_linear_probe_it_was_fitted_from() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, task) = fixture(dir.path());
        // A rate too small to move anything: the kept network is the initial one, whose valid
        // score is the probe's only if the probe (and its standardisation) was folded into the
        // head correctly.
        let options = quick(LearningRate::Fixed(1e-12), HeadInit::LinearProbe);
        let (report, net, info, _) = finetune(&spec, &task, &options).unwrap();
        let probe = report.linear_probe.as_ref().unwrap();
        assert!(probe.valid > 0.5, "{probe:?}");
        assert!(
            (report.best_valid[0] - probe.valid).abs() < 1e-9,
            "{} vs {}",
            report.best_valid[0],
            probe.valid
        );
        assert!(net.head.dense.is_none() && info.linear_head);
        assert!(
            report.describe().starts_with("LP-FT"),
            "{}",
            report.describe()
        );
    }

    #[test]
    fn fine_tuning_never_keeps_a_point_below_its_starting_probe_on_valid() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, task) = fixture(dir.path());
        // A rate large enough to wreck the features: the fit must fall back on its start.
        let options = quick(LearningRate::Fixed(1.0), HeadInit::LinearProbe);
        let (report, ..) = finetune(&spec, &task, &options).unwrap();
        let probe = report.linear_probe.as_ref().unwrap().valid;
        assert!(report.best_valid[0] >= probe - 1e-9, "{report:?}");
    }

    #[test]
    fn the_learning_rate_search_tries_each_factor_and_keeps_the_best() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, task) = fixture(dir.path());
        let mut options = quick(LearningRate::Search, HeadInit::Random);
        options.train_last = Some(1);
        let (report, ..) = finetune(&spec, &task, &options).unwrap();
        assert_eq!(report.lr_search.len(), LR_SEARCH_FACTORS.len());
        // 2 epochs of 4 steps; each trial runs a quarter of them.
        assert!(report.lr_search.iter().all(|t| t.steps == 2), "{report:?}");
        assert_eq!(report.lr_source, "search");
        let best = report
            .lr_search
            .iter()
            .fold(f64::NEG_INFINITY, |b, t| b.max(t.valid));
        let chosen = report.lr_search.iter().find(|t| t.lr == report.lr).unwrap();
        assert_eq!(chosen.valid, best);
        assert_eq!(report.cached_blocks, 1);
        assert!(report.tokens_per_second[0] > 0.0);
    }

    #[test]
    fn cached_frozen_blocks_give_the_outputs_of_the_full_forward() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, _) = fixture(dir.path());
        let checkpoint = spec.load(&dnalm_model::cpu()).unwrap();
        let device = checkpoint.model.device();
        let net = SequenceClassifier {
            head: SequenceHead::new(16, 2, &device),
            encoder: checkpoint.model,
        };
        let rows: Vec<Vec<u32>> = vec![vec![2, 5, 6, 7, 8, 3], vec![2, 8, 7, 3], vec![2, 6, 3]];
        let span = PooledSpan {
            skip_leading: 1,
            skip_trailing: 1,
        };
        let pass = frozen_pass(&net.encoder, &rows, Pooling::Mean, span, 1, true).unwrap();
        let states: Vec<&[f32]> = pass.cached.iter().map(Vec::as_slice).collect();
        let values = |t: Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let full = values(net.forward(&rows, Pooling::Mean, span, None).unwrap());
        let cached = values(
            net.forward_cached(&rows, &states, 1, Pooling::Mean, span, None)
                .unwrap(),
        );
        for (a, b) in full.iter().zip(&cached) {
            assert!((a - b).abs() < 1e-5, "{full:?} vs {cached:?}");
        }
    }

    #[test]
    fn the_probe_lp_ft_starts_from_sees_the_embeddings_the_probes_see() {
        use crate::features::embed::{EmbedOptions, Embedder};
        let dir = tempfile::tempdir().unwrap();
        let (spec, task) = fixture(dir.path());
        let checkpoint = spec.load(&dnalm_model::cpu()).unwrap();
        let seqs: Vec<&[u8]> = task
            .split(dnalm_seq::task::Split::Train)
            .take(5)
            .map(|r| r.sequence.as_slice())
            .collect();
        let rows = token_rows(&checkpoint.tokenizer, 64, &seqs);
        let span = PooledSpan::of(&checkpoint.tokenizer);
        for pooling in [Pooling::Mean, Pooling::Last] {
            let pass = frozen_pass(&checkpoint.model, &rows, pooling, span, 0, false).unwrap();
            let options = EmbedOptions {
                pooling,
                ..EmbedOptions::default()
            };
            let embedder = Embedder::new(&checkpoint, options).unwrap();
            for (i, vectors) in embedder.embed(&seqs).unwrap().iter().enumerate() {
                for (a, b) in pass.pooled.row(i).iter().zip(vectors.row(0)) {
                    assert!((a - b).abs() < 1e-4, "{pooling:?}, row {i}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn layer_decay_reaches_every_block_and_the_embeddings() {
        let config = ModelConfig {
            vocab_size: 8,
            n_layers: 3,
            d_model: 8,
            n_heads: 2,
            d_ffn: 16,
            max_positions: 16,
            ..ModelConfig::new(Architecture::Encoder, 0)
        };
        let device = dnalm_model::cpu();
        let net = SequenceClassifier {
            encoder: DnaLm::new(&config, &device).unwrap(),
            head: SequenceHead::new(8, 2, &device),
        };
        let mut seen = std::collections::BTreeSet::new();
        for name in named_parameters(&net).keys() {
            let scale = layer_decay_scale(name, 0.5, 3);
            let embedding = ["encoder.embed.", "encoder.positions.", "encoder.token_type"]
                .iter()
                .any(|p| name.starts_with(p));
            let expected = if let Some(rest) = name.strip_prefix("encoder.blocks.") {
                let i: i32 = rest.split('.').next().unwrap().parse().unwrap();
                0.5f64.powi(3 - i)
            } else if embedding {
                0.5f64.powi(4)
            } else {
                // The head, the final norm and the pretraining heads (unused here).
                1.0
            };
            assert_eq!(scale, expected, "{name}");
            seen.insert((scale * 1e6) as u64);
        }
        // The head (1), blocks 2, 1, 0 (1/2, 1/4, 1/8) and the embeddings (1/16).
        assert_eq!(seen.len(), 5, "{seen:?}");
    }

    #[test]
    fn temperature_scaling_tames_overconfident_logits() {
        // Gaps of 200 on rows that are right 90% of the time: the calibrated factor brings the
        // gap down to about ln(9) = 2.2.
        let logits = Array2::from_shape_fn((100, 2), |(_, j)| if j == 1 { 200.0 } else { 0.0 });
        let labels: Vec<u32> = (0..100).map(|i| u32::from(i % 10 != 0)).collect();
        let t = calibrated_scale(&logits, &labels);
        assert!((200.0 * t - 9f32.ln()).abs() < 0.2, "{t}");
    }

    #[test]
    fn learning_rates_parse_and_scale_with_model_size() {
        assert_eq!("auto".parse::<LearningRate>(), Ok(LearningRate::Search));
        assert_eq!(
            "3e-4".parse::<LearningRate>(),
            Ok(LearningRate::Fixed(3e-4))
        );
        assert!("-1"
            .parse::<LearningRate>()
            .unwrap_err()
            .contains("positive"));
        assert!((size_scaled_lr(3_000_000) - 5e-4).abs() < 1e-12);
        assert!(size_scaled_lr(117_000_000) < 1e-4);
        assert!(size_scaled_lr(500_000_000) < 5e-5);
        assert_eq!(size_scaled_lr(1_000), 1e-3);
    }
}
