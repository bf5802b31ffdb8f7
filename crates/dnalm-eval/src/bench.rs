//! The benchmark runner: a suite of tasks × a list of models, always beside the baselines, with
//! relevance scores from frozen embeddings and (optionally) fine-tuning.
//!
//! For each task and model the pooled embeddings are computed once and reused by every probe,
//! by the relevance scores (LogME and H-score on the training split; kNN accuracy and linear-probe
//! MCC on the test split) and by the task × task affinity: a linear probe trained on task A's
//! labels is applied to task B's sequences, and a logistic regression on those outputs alone is
//! fitted on B's training rows and scored (MCC) on B's test rows — how much of B's signal A's
//! decision function carries; beside it the covariance similarity of Wu, Zhang & Ré 2020 between
//! the tasks' training representations.

use std::{collections::BTreeMap, path::PathBuf, time::Instant};

use dnalm_model::Checkpoint;
use dnalm_seq::{
    suite::{SuiteFormat, TaskSource},
    task::{Task, TaskKind},
};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::{
    features::baseline::{cnn_baseline, kmer_spectrum, BaselineKind, SPECTRUM_KS},
    features::embed::{EmbedOptions, Embedder, Granularity, ModelSpec},
    features::tasks::{
        embed_task, embed_task_bases, embed_task_tokens, features_task, split_rows, targets,
    },
    features::Targets,
    finetune::{finetune, per_base::finetune_per_base, FinetuneOptions},
    metrics::{
        nullable, paired_bootstrap, spearman_bootstrap, Correlation, PairedDifference, Summary,
        TestPredictions, Verdict,
    },
    probes::fit::{FitOptions, SeedRuns, Selection},
    probes::per_base::{per_base_cnn, run_per_base_probe, PER_BASE_PROBE_BUDGET},
    probes::token::run_token_probe,
    probes::{headline, run_probe, ProbeKind, ProbeOptions, SplitFeatures},
    relevance::{h_score_with, logme_with, task_affinity_with, Affinity, Gram},
    EvalError,
};
use dnalm_model::DeviceName;

/// What to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchConfig {
    /// Models to evaluate.
    pub models: Vec<ModelSpec>,
    /// Tasks: dnalm task directories or tasks of a standard suite in its own layout.
    pub tasks: Vec<TaskSource>,
    /// Embedding extraction.
    pub embed: EmbedOptions,
    /// Probes on frozen embeddings.
    pub probes: Vec<ProbeKind>,
    /// Probe settings.
    pub probe: ProbeOptions,
    /// The baselines to run on every task (all of them unless told otherwise).
    pub baselines: Vec<BaselineKind>,
    /// CNN budget (the same as fine-tuning's when fine-tuning runs).
    pub cnn: FitOptions,
    /// CNN filters per layer.
    pub cnn_channels: usize,
    /// Seeds for the CNN (and fine-tuning).
    pub seeds: usize,
    /// Fine-tune each model on each task.
    pub finetune: Option<FinetuneOptions>,
    /// Also probe every layer separately (the probing curve: which layer carries the signal).
    #[serde(default)]
    pub per_layer: bool,
    /// Also train the token probe (a conv + attention-pooling head on frozen per-token
    /// embeddings), with this budget, `seeds` times.
    #[serde(default)]
    pub token_probe: Option<FitOptions>,
    /// The per-base probe's budget (per-base tasks; `seeds` runs).
    #[serde(default = "per_base_probe_budget")]
    pub per_base_probe: FitOptions,
    /// Where models embed; [`BenchConfig::on_device`] also sends every fit there.
    #[serde(default)]
    pub device: DeviceName,
}

impl BenchConfig {
    /// Runs everything on `device`: embedding, the MLP probe, the CNN baseline, the token probe
    /// and fine-tuning.
    pub fn on_device(mut self, device: DeviceName) -> Self {
        self.device = device;
        self.probe.mlp_fit.device = device;
        self.cnn.device = device;
        if let Some(fit) = &mut self.token_probe {
            fit.device = device;
        }
        self.per_base_probe.device = device;
        if let Some(finetune) = &mut self.finetune {
            finetune.fit.device = device;
        }
        self
    }
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            models: Vec::new(),
            tasks: Vec::new(),
            embed: EmbedOptions::default(),
            probes: vec![ProbeKind::Linear],
            probe: ProbeOptions::default(),
            baselines: BaselineKind::ALL.to_vec(),
            cnn: FitOptions {
                epochs: 30,
                batch_size: 64,
                lr: 2e-3,
                weight_decay: 0.01,
                patience: 5,
                seed: 0,
                max_steps: None,
                eval_every: None,
                select: Selection::ValidLoss,
                score_initial: false,
                device: DeviceName::Cpu,
                balance: crate::probes::fit::ClassBalance::None,
            },
            cnn_channels: 64,
            seeds: 3,
            finetune: None,
            per_layer: false,
            token_probe: None,
            per_base_probe: PER_BASE_PROBE_BUDGET,
            device: DeviceName::Cpu,
        }
    }
}

fn per_base_probe_budget() -> FitOptions {
    PER_BASE_PROBE_BUDGET
}

/// One row of a task's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// A model name, or `kmer-spectrum` / `onehot-cnn`.
    pub subject: String,
    /// `probe:linear`, `probe:knn`, `probe:mlp`, `finetune`, `cnn`.
    pub method: String,
    /// Whether this is a baseline.
    pub baseline: bool,
    /// Metrics, mean ± sd over refits or seeds.
    pub metrics: BTreeMap<String, Summary>,
    /// Chosen hyperparameter (probes).
    pub chosen: Option<String>,
    /// Wall-clock seconds (embedding excluded for probes; see `embed_seconds`).
    pub seconds: f64,
    /// Test outputs per run behind the headline (the full-data fit of a probe, each seed of
    /// the CNN or fine-tuning), for the paired comparisons; not serialised.
    #[serde(skip)]
    pub test_outputs: Vec<Array2<f32>>,
}

impl Entry {
    /// The entry of a network trained once per seed (CNN, token probe, fine-tuning): its
    /// summary and outputs, `chosen` its epochs per seed unless given.
    fn from_seeds(
        subject: &str,
        method: &str,
        baseline: bool,
        runs: SeedRuns,
        chosen: Option<String>,
        started: Instant,
    ) -> Entry {
        Entry {
            subject: subject.to_string(),
            method: method.to_string(),
            baseline,
            chosen: Some(chosen.unwrap_or_else(|| format!("epochs={:?}", runs.epochs))),
            metrics: runs.summary,
            seconds: started.elapsed().as_secs_f64(),
            test_outputs: runs.test_outputs,
        }
    }
}

/// A model's entry against the task's best baseline, on the same test rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// The entry's subject (a model name).
    pub subject: String,
    /// Its method.
    pub method: String,
    /// The baseline it is compared with (`subject method`).
    pub baseline: String,
    /// Headline difference (entry − baseline) with its paired bootstrap interval.
    pub difference: PairedDifference,
    /// Win only when the interval lies above 0, loss only when below.
    pub verdict: Verdict,
}

/// Relevance of one model to one task, from frozen embeddings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Relevance {
    /// Model.
    pub model: String,
    /// Task.
    pub task: String,
    /// LogME evidence per sample (train split).
    #[serde(deserialize_with = "nullable::number")]
    pub logme: f64,
    /// H-score (train split; classification only).
    pub h_score: Option<f64>,
    /// kNN test accuracy (classification) or Pearson (regression).
    #[serde(deserialize_with = "nullable::number")]
    pub knn: f64,
    /// Linear-probe test MCC (classification) or Pearson (regression).
    #[serde(deserialize_with = "nullable::number")]
    pub linear: f64,
    /// The fine-tuned headline metric, when fine-tuning ran.
    pub finetuned: Option<f64>,
    /// Seconds to embed the task.
    pub embed_seconds: f64,
}

impl Relevance {
    /// Whether fine-tuning ended below the same model's frozen linear probe: the fine-tuned
    /// model is under-trained, and a "fine-tuned vs baseline" comparison would mislead.
    pub fn finetune_below_probe(&self) -> bool {
        self.finetuned
            .is_some_and(|f| f.is_finite() && self.linear.is_finite() && f < self.linear)
    }
}

impl BenchResults {
    /// The (model, task) pairs whose fine-tuning ended below their frozen linear probe.
    pub fn finetune_below_probe(&self) -> Vec<&Relevance> {
        self.relevance
            .iter()
            .filter(|r| r.finetune_below_probe())
            .collect()
    }
}

/// A task's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    /// Task name.
    pub task: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The layout it was read from (a standard suite's tasks carry its published anchors).
    #[serde(default = "dnalm_layout")]
    pub format: SuiteFormat,
    /// How it was read (suite layout, carved validation split, inferred classes).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Headline metric (`mcc` or `pearson`).
    pub headline: String,
    /// Rows per split.
    pub rows: [usize; 3],
    /// Results, baselines first.
    pub entries: Vec<Entry>,
    /// Every model entry against the best baseline (paired bootstrap over the test rows).
    #[serde(default)]
    pub comparisons: Vec<Comparison>,
    /// The test split's targets (for the comparisons); not serialised.
    #[serde(skip)]
    pub test_targets: Option<Targets>,
}

/// Everything a bench produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchResults {
    /// The configuration that ran.
    pub config: BenchConfig,
    /// Per task.
    pub tasks: Vec<TaskResult>,
    /// Models × tasks.
    pub relevance: Vec<Relevance>,
    /// Spearman correlation, over (model, task) pairs, of each relevance score with the fine-tuned
    /// result (present when fine-tuning ran on at least 3 pairs).
    pub relevance_vs_finetune: BTreeMap<String, f64>,
    /// The same correlations with 95% bootstrap intervals: over every (model, task) pair, and
    /// within each task over its models (where a task has at least 3).
    #[serde(default)]
    pub relevance_correlations: Vec<ScoreCorrelation>,
    /// Task × task affinity per model.
    pub affinity: Vec<Affinity>,
    /// Per-layer probing curves (with `per_layer`).
    #[serde(default)]
    pub layer_curves: Vec<LayerCurve>,
    /// What the reader should know about how these results were made (e.g. merged from shards).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl BenchResults {
    /// Joins the results of the shards of one bench (`dnalm bench --shard I/N`, each a
    /// contiguous part of the task list; given in shard order) into the results of the whole
    /// task list: per-task results, relevance and layer curves concatenated, the
    /// relevance-vs-fine-tuning correlation recomputed over every (model, task) pair. The task ×
    /// task affinity needs every task's features in one process, so a merge that would need
    /// pairs across shards leaves it out and says so in `notes`.
    pub fn merge_shards(parts: Vec<BenchResults>) -> Result<BenchResults, EvalError> {
        let mut parts = parts.into_iter();
        let Some(mut merged) = parts.next() else {
            return Err(EvalError::BadOption {
                option: "merge",
                message: "no bench results given".into(),
            });
        };
        let shards = 1 + parts.len();
        let mut affinities = vec![std::mem::take(&mut merged.affinity)];
        for part in parts {
            merged.config.tasks.extend(part.config.tasks);
            merged.tasks.extend(part.tasks);
            merged.relevance.extend(part.relevance);
            merged.layer_curves.extend(part.layer_curves);
            affinities.push(part.affinity);
        }
        merged.relevance_correlations =
            correlate_with_intervals(&merged.relevance, merged.config.probe.seed);
        merged.relevance_vs_finetune = pooled_rho(&merged.relevance_correlations);
        let with_tasks = merged.tasks.len();
        if !merged.config.models.is_empty() && with_tasks > 1 {
            merged.notes.push(format!(
                "Merged from {shards} shards (`dnalm bench --shard`, `dnalm merge`): the task × task affinity needs every task's features in one process and is left out; run `dnalm bench` without --shard for it."
            ));
        } else {
            merged.affinity = affinities.into_iter().flatten().collect();
        }
        Ok(merged)
    }
}

/// A model's probing curve on one task: the linear probe's headline on each layer's pooled
/// embedding alone (layer 0 = token embeddings, `i` = block `i`, the last = the final,
/// normalised output).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerCurve {
    /// Model.
    pub model: String,
    /// Task.
    pub task: String,
    /// `mcc` or `pearson`.
    pub metric: String,
    /// Layers probed.
    pub layers: Vec<usize>,
    /// The probe's headline per layer (full-data fit ± refit sd).
    pub scores: Vec<Summary>,
}

/// Progress messages for the caller to show.
pub trait Progress {
    /// Something started or finished.
    fn message(&mut self, text: &str);
}

impl<F: FnMut(&str)> Progress for F {
    fn message(&mut self, text: &str) {
        self(text)
    }
}

/// Runs the whole bench: the baselines on every task, then for each model and task the stages
/// in order — features (embeddings, once) → relevance scores → probes → fine-tuning — and the
/// task affinity of each model's features.
///
/// ```no_run
/// use dnalm_eval::bench::{run_bench, BenchConfig};
/// use dnalm_eval::features::embed::ModelSpec;
/// use dnalm_seq::suite::TaskSource;
///
/// let config = BenchConfig {
///     models: vec![ModelSpec::parse("runs/mlm/checkpoint-001000")],
///     // A dnalm task directory and a GUE task in GUE's own layout.
///     tasks: vec![
///         TaskSource::parse("data/tasks/pub_coding", None),
///         TaskSource::parse("gue:GUE/prom/prom_300_all", None),
///     ],
///     ..BenchConfig::default()
/// };
/// let results = run_bench(&config, &mut |message: &str| eprintln!("{message}"))?;
/// dnalm_eval::report::write_report("bench".as_ref(), &results)?;
/// # Ok::<(), dnalm_eval::EvalError>(())
/// ```
pub fn run_bench(
    config: &BenchConfig,
    progress: &mut dyn Progress,
) -> Result<BenchResults, EvalError> {
    // An absent device is an error before any task is read or baseline trained.
    let device = config.device.open()?;
    let tasks: Vec<Task> = config
        .tasks
        .iter()
        .map(TaskSource::load)
        .collect::<Result<_, _>>()?;
    let mut results: Vec<TaskResult> = tasks
        .iter()
        .zip(&config.tasks)
        .map(|(task, source)| TaskResult::of(task, source.format))
        .collect::<Result<_, _>>()?;
    if !config.baselines.is_empty() {
        for (task, result) in tasks.iter().zip(&mut results) {
            result.entries.extend(baselines(config, task, progress)?);
            if is_per_base(task) && config.baselines.contains(&BaselineKind::Kmer) {
                result.notes.push(
                    "The k-mer spectrum baseline scores whole sequences; a per-base task has the \
                     per-base one-hot CNN as its baseline"
                        .into(),
                );
            }
        }
    }
    let mut relevance = Vec::new();
    let mut affinity = Vec::new();
    let mut layer_curves = Vec::new();
    for spec in &config.models {
        progress.message(&format!("{}: loading {}", spec.name, spec.dir.display()));
        let encoder = spec.load(&device)?;
        let embedder = Embedder::new(&encoder, config.embed.clone())?;
        let mut per_task: Vec<(String, SplitFeatures)> = Vec::new();
        // Each task's training-feature Gram matrix: LogME, H-score and the covariance
        // similarity share it and its eigen-decomposition.
        let mut train_grams: Vec<Gram> = Vec::new();
        for (task, result) in tasks.iter().zip(&mut results) {
            if is_per_base(task) {
                result
                    .entries
                    .extend(per_base_entries(config, spec, &encoder, task, progress)?);
                continue;
            }
            progress.message(&format!("{}: embedding {}", spec.name, task.spec.name));
            let t0 = Instant::now();
            let features = embed_task(&embedder, task)?;
            let gram = Gram::of(features.train.x.view());
            let mut rel =
                relevance_scores(spec, task, &features, &gram, t0.elapsed().as_secs_f64())?;
            let stage = ModelOnTask {
                config,
                spec,
                task,
                features: &features,
            };
            result.entries.extend(stage.probes(&mut rel, progress)?);
            if let Some(ft) = &config.finetune {
                result.entries.push(stage.finetune(ft, &mut rel, progress)?);
            }
            if config.per_layer {
                layer_curves.push(stage.layer_curve(&encoder, progress)?);
            }
            if let Some(budget) = &config.token_probe {
                result
                    .entries
                    .push(stage.token_probe(&encoder, budget, progress)?);
            }
            relevance.push(rel);
            per_task.push((task.spec.name.clone(), features));
            train_grams.push(gram);
        }
        if per_task.len() > 1 {
            progress.message(&format!("{}: task affinity", spec.name));
            affinity.push(task_affinity_with(&spec.name, &per_task, &train_grams)?);
        }
    }
    for result in &mut results {
        result.compare_with_baselines(BOOTSTRAP_RESAMPLES, config.probe.seed);
    }
    let relevance_correlations = correlate_with_intervals(&relevance, config.probe.seed);
    let relevance_vs_finetune = pooled_rho(&relevance_correlations);
    Ok(BenchResults {
        config: config.clone(),
        tasks: results,
        relevance,
        relevance_vs_finetune,
        relevance_correlations,
        affinity,
        layer_curves,
        notes: Vec::new(),
    })
}

fn dnalm_layout() -> SuiteFormat {
    SuiteFormat::Dnalm
}

/// Resamples of the test rows behind every paired comparison.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

impl TaskResult {
    /// A task's result with no entries yet.
    fn of(task: &Task, format: SuiteFormat) -> Result<TaskResult, EvalError> {
        let [_, _, test] = split_rows(task)?;
        Ok(TaskResult {
            task: task.spec.name.clone(),
            dir: task.dir.clone(),
            format,
            notes: task.notes.clone(),
            headline: headline(&targets(task, &test)).into(),
            rows: dnalm_seq::task::Split::ALL.map(|s| task.split(s).count()),
            entries: Vec::new(),
            comparisons: Vec::new(),
            test_targets: Some(targets(task, &test)),
        })
    }

    /// The baseline entry with the best headline mean (among those with test outputs).
    pub fn best_baseline(&self) -> Option<&Entry> {
        let headline = |e: &Entry| {
            e.metrics
                .get(&self.headline)
                .map_or(f64::NEG_INFINITY, |s| s.mean)
        };
        self.entries
            .iter()
            .filter(|e| e.baseline && !e.test_outputs.is_empty())
            .max_by(|a, b| headline(a).total_cmp(&headline(b)))
    }

    /// Compares every model entry with the best baseline by a paired bootstrap of the headline
    /// over the test rows (`resamples` draws, seeded), filling `comparisons`.
    pub fn compare_with_baselines(&mut self, resamples: usize, seed: u64) {
        let (Some(targets), Some(baseline)) = (&self.test_targets, self.best_baseline()) else {
            return;
        };
        self.comparisons = self
            .entries
            .iter()
            .filter(|e| !e.baseline && !e.test_outputs.is_empty())
            .map(|e| {
                let difference = paired_bootstrap(
                    &TestPredictions::of(targets, &e.test_outputs),
                    &TestPredictions::of(targets, &baseline.test_outputs),
                    resamples,
                    seed,
                );
                Comparison {
                    subject: e.subject.clone(),
                    method: e.method.clone(),
                    baseline: format!("{} {}", baseline.subject, baseline.method),
                    verdict: difference.verdict(),
                    difference,
                }
            })
            .collect();
    }
}

/// The configured baselines on one task: the k-mer spectrum's linear probe and the one-hot CNN.
fn baselines(
    config: &BenchConfig,
    task: &Task,
    progress: &mut dyn Progress,
) -> Result<Vec<Entry>, EvalError> {
    let mut entries = Vec::new();
    if is_per_base(task) {
        if config.baselines.contains(&BaselineKind::Cnn) {
            progress.message(&format!(
                "{}: per-base one-hot CNN ({} seeds)",
                task.spec.name, config.seeds
            ));
            let t0 = Instant::now();
            let cnn = per_base_cnn(task, config.cnn_channels, &config.cnn, config.seeds)?;
            entries.push(Entry::from_seeds(
                "onehot-cnn",
                "cnn:per-base",
                true,
                cnn.fitted,
                None,
                t0,
            ));
        }
        return Ok(entries);
    }
    if config.baselines.contains(&BaselineKind::Kmer) {
        progress.message(&format!(
            "{}: k-mer spectrum + linear probe",
            task.spec.name
        ));
        let t0 = Instant::now();
        let features = features_task(task, |s| kmer_spectrum(s, &SPECTRUM_KS))?;
        let report = run_probe(ProbeKind::Linear, &features, &config.probe)?;
        entries.push(Entry {
            subject: "kmer-spectrum".into(),
            method: "probe:linear".into(),
            baseline: true,
            metrics: report.summary,
            chosen: Some(report.chosen),
            seconds: t0.elapsed().as_secs_f64(),
            test_outputs: report.test_outputs.into_iter().collect(),
        });
    }
    if config.baselines.contains(&BaselineKind::Cnn) {
        progress.message(&format!(
            "{}: one-hot CNN ({} seeds)",
            task.spec.name, config.seeds
        ));
        let t0 = Instant::now();
        // The CNN keeps its reference budget with or without fine-tuning: early-stopped, it
        // ends well inside the wall-clock that fine-tuning an encoder takes (both times are
        // reported).
        let cnn = cnn_baseline(task, config.cnn_channels, &config.cnn, config.seeds)?;
        if !cnn.failed_seeds.is_empty() {
            progress.message(&format!(
                "{}: one-hot CNN: {}",
                task.spec.name,
                cnn.describe()
            ));
        }
        let chosen = cnn.describe();
        entries.push(Entry::from_seeds(
            "onehot-cnn",
            "cnn",
            true,
            cnn.fitted,
            Some(chosen),
            t0,
        ));
    }
    Ok(entries)
}

/// Whether every base of the task's sequences has a class.
fn is_per_base(task: &Task) -> bool {
    matches!(task.spec.kind, TaskKind::PerBase { .. })
}

/// A model on a per-base task: the per-base head on its frozen token states, checked to leave the backbone unchanged, and per-base
/// fine-tuning when configured. Pooled probes, relevance scores and affinities need one target
/// per sequence and are not run.
fn per_base_entries(
    config: &BenchConfig,
    spec: &ModelSpec,
    encoder: &Checkpoint,
    task: &Task,
    progress: &mut dyn Progress,
) -> Result<Vec<Entry>, EvalError> {
    progress.message(&format!(
        "{}: per-base probe on {} ({} seeds)",
        spec.name, task.spec.name, config.seeds
    ));
    let t0 = Instant::now();
    let before = fingerprint(&encoder.model);
    let options = EmbedOptions {
        granularity: Granularity::Token,
        reverse_complement: false,
        ..config.embed.clone()
    };
    let features = embed_task_bases(&Embedder::new(encoder, options)?, task)?;
    let report = run_per_base_probe(&features, &config.per_base_probe, config.seeds)?;
    if fingerprint(&encoder.model) != before {
        return Err(EvalError::Numeric {
            routine: "per-base probe",
            message: format!("the frozen backbone {} changed while probing", spec.name),
        });
    }
    let mut entries = vec![Entry::from_seeds(
        &spec.name,
        "probe:per-base",
        false,
        report,
        None,
        t0,
    )];
    if let Some(ft) = &config.finetune {
        progress.message(&format!(
            "{}: per-base fine-tuning on {}",
            spec.name, task.spec.name
        ));
        let t0 = Instant::now();
        let options = FinetuneOptions {
            seeds: config.seeds,
            ..ft.clone()
        };
        let (report, ..) = finetune_per_base(spec, task, &options)?;
        let chosen = report.describe();
        entries.push(Entry::from_seeds(
            &spec.name,
            "finetune",
            false,
            report.seeds,
            Some(chosen),
            t0,
        ));
    }
    Ok(entries)
}

/// LogME and H-score of a model's training-split features, whose Gram matrix is `gram` (kNN and
/// linear filled in by the probes, fine-tuning by fine-tuning).
fn relevance_scores(
    spec: &ModelSpec,
    task: &Task,
    features: &SplitFeatures,
    gram: &Gram,
    embed_seconds: f64,
) -> Result<Relevance, EvalError> {
    let train_x = features.train.x.view();
    Ok(Relevance {
        model: spec.name.clone(),
        task: task.spec.name.clone(),
        logme: logme_with(train_x, gram, &features.train.y)?,
        h_score: match &features.train.y {
            Targets::Classes {
                labels,
                num_classes,
            } => Some(h_score_with(train_x, gram, labels, *num_classes)?),
            Targets::Values(_) => None,
            // The mean of each label's binary H-score.
            Targets::Labels { .. } => {
                let per_label = features.train.y.per_label();
                let mut total = 0.0;
                for t in &per_label {
                    if let Targets::Classes { labels, .. } = t {
                        total += h_score_with(train_x, gram, labels, 2)?;
                    }
                }
                Some(total / per_label.len().max(1) as f64)
            }
            Targets::Bases { .. } => None,
        },
        knn: f64::NAN,
        linear: f64::NAN,
        finetuned: None,
        embed_seconds,
    })
}

/// One model on one task, its features extracted.
struct ModelOnTask<'a> {
    config: &'a BenchConfig,
    spec: &'a ModelSpec,
    task: &'a Task,
    features: &'a SplitFeatures,
}

impl ModelOnTask<'_> {
    /// The configured probes (plus the linear and kNN probes the relevance table needs, which
    /// are reported only there unless configured).
    fn probes(
        &self,
        rel: &mut Relevance,
        progress: &mut dyn Progress,
    ) -> Result<Vec<Entry>, EvalError> {
        let metric = headline(&self.features.train.y);
        let mut probes = self.config.probes.clone();
        for needed in [ProbeKind::Linear, ProbeKind::Knn] {
            if !probes.contains(&needed) {
                probes.push(needed);
            }
        }
        let mut entries = Vec::new();
        for kind in probes {
            progress.message(&format!(
                "{}: {} probe on {}",
                self.spec.name, kind, self.task.spec.name
            ));
            let t0 = Instant::now();
            let report = run_probe(kind, self.features, &self.config.probe)?;
            match kind {
                ProbeKind::Linear => rel.linear = report.mean(metric),
                ProbeKind::Knn => {
                    rel.knn = report.mean(if metric == "mcc" { "accuracy" } else { metric })
                }
                ProbeKind::Mlp => {}
            }
            if self.config.probes.contains(&kind) {
                entries.push(Entry {
                    subject: self.spec.name.clone(),
                    method: format!("probe:{kind}"),
                    baseline: false,
                    metrics: report.summary,
                    chosen: Some(report.chosen),
                    seconds: t0.elapsed().as_secs_f64(),
                    test_outputs: report.test_outputs.into_iter().collect(),
                });
            }
        }
        Ok(entries)
    }

    /// The token probe on the model's per-token embeddings (the bench's embedding layers), with
    /// the backbone checked unchanged afterwards: frozen means frozen.
    fn token_probe(
        &self,
        encoder: &Checkpoint,
        budget: &FitOptions,
        progress: &mut dyn Progress,
    ) -> Result<Entry, EvalError> {
        progress.message(&format!(
            "{}: token probe on {} ({} seeds)",
            self.spec.name, self.task.spec.name, self.config.seeds
        ));
        let t0 = Instant::now();
        let before = fingerprint(&encoder.model);
        let options = EmbedOptions {
            granularity: Granularity::Token,
            ..self.config.embed.clone()
        };
        let features = embed_task_tokens(&Embedder::new(encoder, options)?, self.task)?;
        let report = run_token_probe(&features, budget, self.config.seeds)?;
        if fingerprint(&encoder.model) != before {
            return Err(EvalError::Numeric {
                routine: "token probe",
                message: format!(
                    "the frozen backbone {} changed while probing",
                    self.spec.name
                ),
            });
        }
        Ok(Entry::from_seeds(
            &self.spec.name,
            "probe:token",
            false,
            report,
            None,
            t0,
        ))
    }

    /// The linear probe on each layer's pooled embedding alone, from one embedding pass that
    /// keeps every layer.
    fn layer_curve(
        &self,
        encoder: &Checkpoint,
        progress: &mut dyn Progress,
    ) -> Result<LayerCurve, EvalError> {
        progress.message(&format!(
            "{}: probing every layer on {}",
            self.spec.name, self.task.spec.name
        ));
        let layers: Vec<usize> = (0..=encoder.n_layers()).collect();
        let options = EmbedOptions {
            layers: layers.iter().map(|&l| l as i64).collect(),
            ..self.config.embed.clone()
        };
        let all = embed_task(&Embedder::new(encoder, options)?, self.task)?;
        let width = encoder.width();
        let metric = headline(&all.train.y);
        let scores = layers
            .iter()
            .map(|&l| {
                let report = run_probe(
                    ProbeKind::Linear,
                    &all.columns(l * width..(l + 1) * width),
                    &self.config.probe,
                )?;
                Ok(report.summary.get(metric).copied().unwrap_or(Summary {
                    mean: f64::NAN,
                    sd: f64::NAN,
                    n: 0,
                }))
            })
            .collect::<Result<Vec<_>, EvalError>>()?;
        Ok(LayerCurve {
            model: self.spec.name.clone(),
            task: self.task.spec.name.clone(),
            metric: metric.to_string(),
            layers,
            scores,
        })
    }

    /// Fine-tunes the model on the task (the bench's seeds).
    fn finetune(
        &self,
        options: &FinetuneOptions,
        rel: &mut Relevance,
        progress: &mut dyn Progress,
    ) -> Result<Entry, EvalError> {
        progress.message(&format!(
            "{}: fine-tuning on {}",
            self.spec.name, self.task.spec.name
        ));
        let t0 = Instant::now();
        let options = FinetuneOptions {
            seeds: self.config.seeds,
            ..options.clone()
        };
        let (report, ..) = finetune(self.spec, self.task, &options)?;
        rel.finetuned = report
            .seeds
            .summary
            .get(headline(&self.features.train.y))
            .map(|s| s.mean);
        let chosen = report.describe();
        Ok(Entry::from_seeds(
            &self.spec.name,
            "finetune",
            false,
            report.seeds,
            Some(chosen),
            t0,
        ))
    }
}

/// A hash of every parameter of a module (names, shapes, values' bits).
fn fingerprint<M: dnalm_model::burn::module::Module>(module: &M) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (name, t) in dnalm_model::tensors::named_parameters(module) {
        name.hash(&mut h);
        t.shape.hash(&mut h);
        for v in &t.values {
            v.to_bits().hash(&mut h);
        }
    }
    h.finish()
}

/// How one relevance score ranks (model, task) pairs against fine-tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreCorrelation {
    /// `logme`, `h_score`, `knn` or `linear`.
    pub score: String,
    /// The task whose models were ranked; `None`: every (model, task) pair.
    pub task: Option<String>,
    /// Spearman's rho with the fine-tuned headline and its interval.
    pub correlation: Correlation,
}

/// How to read one relevance score from a (model, task) row (`None`: the task has none).
type ScoreReader = fn(&Relevance) -> Option<f64>;

/// The relevance scores a bench correlates with fine-tuning, and how to read each.
const SCORES: [(&str, ScoreReader); 4] = [
    ("logme", |r| Some(r.logme)),
    ("h_score", |r| r.h_score),
    ("knn", |r| Some(r.knn)),
    ("linear", |r| Some(r.linear)),
];

/// [`ScoreCorrelation`]s of every score: over all fine-tuned pairs, then per task.
fn correlate_with_intervals(relevance: &[Relevance], seed: u64) -> Vec<ScoreCorrelation> {
    let pairs: Vec<&Relevance> = relevance.iter().filter(|r| r.finetuned.is_some()).collect();
    let mut tasks: Vec<&str> = Vec::new();
    for r in &pairs {
        if !tasks.contains(&r.task.as_str()) {
            tasks.push(&r.task);
        }
    }
    let scopes = std::iter::once(None).chain(tasks.into_iter().map(Some));
    let mut out = Vec::new();
    for scope in scopes {
        let members: Vec<&Relevance> = pairs
            .iter()
            .copied()
            .filter(|r| scope.is_none_or(|t| r.task == t))
            .collect();
        if members.len() < 3 {
            continue;
        }
        let ft: Vec<f64> = members
            .iter()
            .map(|r| r.finetuned.unwrap_or(f64::NAN))
            .collect();
        for (score, read) in SCORES {
            let Some(values) = members
                .iter()
                .map(|r| read(r))
                .collect::<Option<Vec<f64>>>()
            else {
                continue;
            };
            out.push(ScoreCorrelation {
                score: score.into(),
                task: scope.map(str::to_string),
                correlation: spearman_bootstrap(&values, &ft, BOOTSTRAP_RESAMPLES, seed),
            });
        }
    }
    out
}

/// Spearman's rho of each score over every (model, task) pair (the point estimates of
/// [`correlate_with_intervals`]' all-pairs rows).
fn pooled_rho(correlations: &[ScoreCorrelation]) -> BTreeMap<String, f64> {
    correlations
        .iter()
        .filter(|c| c.task.is_none())
        .map(|c| (c.score.clone(), c.correlation.rho))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relevance(logme: f64, finetuned: Option<f64>) -> Relevance {
        Relevance {
            model: "m".into(),
            task: "t".into(),
            logme,
            h_score: Some(-logme),
            knn: 0.5,
            linear: logme,
            finetuned,
            embed_seconds: 0.0,
        }
    }

    #[test]
    fn fine_tuning_below_the_frozen_probe_is_flagged_in_the_report() {
        assert!(relevance(0.5, Some(0.3)).finetune_below_probe());
        assert!(!relevance(0.5, Some(0.6)).finetune_below_probe());
        assert!(!relevance(0.5, None).finetune_below_probe());
        assert!(!relevance(f64::NAN, Some(0.1)).finetune_below_probe());
        let results = BenchResults {
            config: BenchConfig::default(),
            tasks: Vec::new(),
            relevance: vec![relevance(0.5, Some(0.3)), relevance(0.2, Some(0.4))],
            relevance_vs_finetune: BTreeMap::new(),
            relevance_correlations: Vec::new(),
            affinity: Vec::new(),
            layer_curves: Vec::new(),
            notes: Vec::new(),
        };
        assert_eq!(results.finetune_below_probe().len(), 1);
        let dir = tempfile::tempdir().unwrap();
        let md =
            std::fs::read_to_string(crate::report::write_report(dir.path(), &results).unwrap())
                .unwrap();
        assert!(md.contains("0.300 ⚠ below the frozen probe"), "{md}");
        // Three fine-tuned pairs: the correlation table with intervals.
        let mut results = results;
        results.relevance.push(relevance(0.9, Some(0.8)));
        results.relevance_correlations = correlate_with_intervals(&results.relevance, 0);
        let md =
            std::fs::read_to_string(crate::report::write_report(dir.path(), &results).unwrap())
                .unwrap();
        assert!(md.contains("| score | all pairs | `t` |"), "{md}");
        assert!(
            md.contains("| logme | 0.500 [-1.000, 1.000] (n = 3) |"),
            "{md}"
        );
        assert!(
            md.contains("Fine-tuning ended below the frozen linear probe"),
            "{md}"
        );
        assert!(md.contains("m / t (0.300 vs 0.500)"), "{md}");
    }

    #[test]
    fn the_frozen_check_sees_any_changed_parameter() {
        use dnalm_model::burn::nn::LinearConfig;
        let device = dnalm_model::cpu();
        let layer = dnalm_model::io::reinitialize(LinearConfig::new(3, 2).init(&device), 1);
        let same = dnalm_model::io::reinitialize(LinearConfig::new(3, 2).init(&device), 1);
        let other = dnalm_model::io::reinitialize(LinearConfig::new(3, 2).init(&device), 2);
        assert_eq!(fingerprint(&layer), fingerprint(&same));
        assert_ne!(fingerprint(&layer), fingerprint(&other));
    }

    #[test]
    fn scores_are_rank_correlated_with_fine_tuning_only_with_three_pairs() {
        let correlate = |rows: &[Relevance]| pooled_rho(&correlate_with_intervals(rows, 0));
        let two = [relevance(1.0, Some(0.1)), relevance(2.0, Some(0.2))];
        assert!(correlate(&two).is_empty());
        let rows = [
            relevance(1.0, Some(0.1)),
            relevance(3.0, Some(0.3)),
            relevance(2.0, Some(0.2)),
            relevance(9.0, None),
        ];
        let c = correlate(&rows);
        assert!((c["logme"] - 1.0).abs() < 1e-12);
        assert!((c["linear"] - 1.0).abs() < 1e-12);
        assert!((c["h_score"] + 1.0).abs() < 1e-12);
        assert_eq!(c["knn"], 0.0, "a constant score has no rank correlation");
    }

    #[test]
    fn results_with_nan_read_back() {
        // JSON has no NaN: serde_json writes null, and the results must read back (`dnalm merge`).
        let mut rows = vec![relevance(f64::NAN, Some(0.1))];
        rows[0].knn = f64::NAN;
        let results = BenchResults {
            config: BenchConfig::default(),
            tasks: Vec::new(),
            relevance: rows,
            relevance_vs_finetune: BTreeMap::new(),
            relevance_correlations: vec![ScoreCorrelation {
                score: "knn".into(),
                task: None,
                correlation: spearman_bootstrap(&[1.0; 4], &[1.0, 2.0, 3.0, 4.0], 10, 0),
            }],
            affinity: vec![Affinity {
                model: "m".into(),
                tasks: vec!["a".into(), "b".into()],
                mcc: vec![vec![1.0, f64::NAN], vec![f64::NAN, 1.0]],
                covariance_similarity: vec![vec![0.5, f64::NAN], vec![f64::NAN, 0.5]],
                covariance_ranks: vec![3, 0],
            }],
            layer_curves: Vec::new(),
            notes: Vec::new(),
        };
        let json = serde_json::to_string(&results).unwrap();
        assert!(json.contains("null"));
        let back: BenchResults = serde_json::from_str(&json).unwrap();
        assert!(back.relevance[0].logme.is_nan() && back.relevance[0].knn.is_nan());
        assert!(back.affinity[0].mcc[0][1].is_nan() && back.affinity[0].mcc[1][1] == 1.0);
        assert!(back.affinity[0].covariance_similarity[1][0].is_nan());
        // Results written before the covariance similarity existed still read.
        let old = json.replace(
            ",\"covariance_similarity\":[[0.5,null],[null,0.5]],\"covariance_ranks\":[3,0]",
            "",
        );
        assert_ne!(old, json);
        let back: BenchResults = serde_json::from_str(&old).unwrap();
        assert!(back.affinity[0].covariance_similarity.is_empty());
        assert!(back.relevance_correlations[0].correlation.ci[0].is_nan());
    }

    #[test]
    fn correlations_come_per_task_and_over_all_pairs_with_intervals() {
        // Two tasks of four models: within each task LogME ranks the models as fine-tuning does;
        // over all pairs the second task's lower scores and results keep it so.
        let mut rows = Vec::new();
        for (task, offset) in [("a", 0.0), ("b", -10.0)] {
            for m in 0..4 {
                let mut r = relevance(offset + m as f64, Some(offset / 20.0 + m as f64 / 10.0));
                r.task = task.into();
                r.model = format!("m{m}");
                rows.push(r);
            }
        }
        let c = correlate_with_intervals(&rows, 3);
        let find = |score: &str, task: Option<&str>| {
            c.iter()
                .find(|x| x.score == score && x.task.as_deref() == task)
                .unwrap()
                .correlation
        };
        for task in [None, Some("a"), Some("b")] {
            let logme = find("logme", task);
            assert!((logme.rho - 1.0).abs() < 1e-12, "{task:?}: {logme:?}");
            assert!(logme.ci[0] <= logme.rho && logme.rho <= logme.ci[1]);
        }
        assert_eq!(find("logme", None).n, 8);
        assert_eq!(find("logme", Some("b")).n, 4);
        // A constant score (kNN here) has no rank correlation in any resample.
        assert!(find("knn", Some("a")).ci[0].is_nan());
    }
}
