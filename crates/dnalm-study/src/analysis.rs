//! What a study found: each cell's scores, and per task its class (easy / hard /
//! knob-sensitive) with the knob effects that decide it.

use std::path::PathBuf;

use dnalm_eval::{
    bench::{TaskResult, BOOTSTRAP_RESAMPLES},
    metrics::{paired_bootstrap_groups, PairedDifference, Summary, TestPredictions, Verdict},
};
use serde::{Deserialize, Serialize};

use crate::{spec::knob_value, Cell, Knob, StudySpec};

/// The linear-probe score of one model on one task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskScore {
    /// Task name.
    pub task: String,
    /// `mcc` or `pearson`.
    pub metric: String,
    /// Linear-probe test score, mean ± sd over refits.
    pub linear: Summary,
    /// LogME on the training split.
    pub logme: f64,
    /// kNN test accuracy (or Pearson).
    pub knn: f64,
    /// Fine-tuned score, when fine-tuning ran.
    pub finetuned: Option<Summary>,
    /// The linear probe's test predictions (its full-data fit), for paired comparisons
    /// between cells; absent in results written before they were kept.
    #[serde(default)]
    pub linear_predictions: Option<TestPredictions>,
}

/// One cell, one seed: its pretraining and its scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellResult {
    /// Cell id.
    pub cell: String,
    /// Pretraining seed.
    pub seed: u64,
    /// Config keys that differ from the base config (seed and steps aside).
    pub differs: Vec<String>,
    /// Steps trained.
    pub steps: u64,
    /// Training tokens (real, non-padding) seen.
    pub tokens: u64,
    /// Training bases seen (windows × context).
    pub bases: u64,
    /// Model parameters.
    pub parameters: usize,
    /// Seconds of pretraining.
    pub train_seconds: f64,
    /// Last validation loss and masked-token accuracy.
    pub valid_loss: Option<f64>,
    /// Last validation accuracy.
    pub valid_accuracy: Option<f64>,
    /// The checkpoint evaluated.
    pub checkpoint: PathBuf,
    /// Seconds of evaluation.
    pub eval_seconds: f64,
    /// Scores of the pretrained model per task.
    pub scores: Vec<TaskScore>,
    /// Scores of a randomly initialised copy (first seed, with `random_control`).
    pub random: Vec<TaskScore>,
}

impl CellResult {
    /// The linear-probe score on `task` (mean, refit sd), if it was scored.
    pub fn linear(&self, task: &str) -> Option<(f64, f64)> {
        self.scores
            .iter()
            .find(|s| s.task == task)
            .map(|s| (s.linear.mean, s.linear.sd))
    }
}

/// What a study found for one knob on one task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KnobEffect {
    /// Knob.
    pub knob: String,
    /// Its values.
    pub values: Vec<String>,
    /// Mean score at each value (over seeds and the other knobs' values).
    pub means: Vec<f64>,
    /// Standard error of each mean (over seeds; the probe's refit sd where one value exists).
    pub errors: Vec<f64>,
    /// Largest minus smallest mean.
    pub effect: f64,
    /// Standard error of that difference.
    pub error: f64,
    /// The best value's cells against the worst value's, by a paired bootstrap of the linear
    /// probe's test predictions (each side the mean over its cells); absent when predictions
    /// were not kept.
    #[serde(default)]
    pub paired: Option<PairedDifference>,
    /// `effect ≥ min_effect`, `effect > 2 × error` (seed noise) and, where predictions were
    /// kept, the paired interval excludes 0 (the rule `bench` uses for a win).
    pub sensitive: bool,
    /// The value with the highest mean.
    pub best: String,
}

/// The class of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskClass {
    /// Every variant scores at least `easy_score`; no knob matters.
    Easy,
    /// No knob matters and some variant scores below `easy_score`.
    Hard,
    /// These knobs change the score beyond noise.
    KnobSensitive(Vec<String>),
}

impl std::fmt::Display for TaskClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskClass::Easy => write!(f, "easy"),
            TaskClass::Hard => write!(f, "hard"),
            TaskClass::KnobSensitive(k) => write!(f, "knob-sensitive: {}", k.join(", ")),
        }
    }
}

/// A task's verdict with its evidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskAnalysis {
    /// Task.
    pub task: String,
    /// `mcc` or `pearson`.
    pub metric: String,
    /// The class.
    pub class: TaskClass,
    /// Best cell and its mean score.
    pub best: (String, f64),
    /// Worst cell and its mean score.
    pub worst: (String, f64),
    /// Best baseline and its score.
    pub best_baseline: Option<(String, f64)>,
    /// Mean score of the random-initialisation controls.
    pub random_control: Option<f64>,
    /// Per knob.
    pub effects: Vec<KnobEffect>,
}

/// Everything a study produced (`study.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudyResults {
    /// The study as run.
    pub spec: StudySpec,
    /// The cells.
    pub cells: Vec<Cell>,
    /// Results per cell and seed.
    pub results: Vec<CellResult>,
    /// Baselines per task (when run).
    pub baselines: Vec<TaskResult>,
    /// Per-task verdicts.
    pub analysis: Vec<TaskAnalysis>,
    /// Whether every cell and seed finished.
    pub complete: bool,
}

/// Mean and standard error of `values`; with one value, its own refit sd stands in.
fn mean_se(values: &[(f64, f64)]) -> (f64, f64) {
    let v: Vec<f64> = values
        .iter()
        .map(|x| x.0)
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let s = Summary::of(&v);
    if v.len() == 1 {
        return (s.mean, values[0].1);
    }
    (s.mean, s.sd / (v.len() as f64).sqrt())
}

/// Classifies each task from the cells' linear-probe scores.
pub fn analyse(
    spec: &StudySpec,
    cells: &[Cell],
    results: &[CellResult],
    baselines: &[TaskResult],
) -> Vec<TaskAnalysis> {
    let mut tasks: Vec<(String, String)> = Vec::new();
    for r in results {
        for s in &r.scores {
            if !tasks.iter().any(|(t, _)| t == &s.task) {
                tasks.push((s.task.clone(), s.metric.clone()));
            }
        }
    }
    tasks
        .into_iter()
        .map(|(task, metric)| {
            let per_cell: Vec<(String, f64)> = cells
                .iter()
                .filter_map(|c| {
                    let v: Vec<(f64, f64)> = results
                        .iter()
                        .filter(|r| r.cell == c.id)
                        .filter_map(|r| r.linear(&task))
                        .collect();
                    (!v.is_empty()).then(|| (c.id.clone(), mean_se(&v).0))
                })
                .collect();
            let best = per_cell
                .iter()
                .cloned()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or((String::new(), f64::NAN));
            let worst = per_cell
                .iter()
                .cloned()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or((String::new(), f64::NAN));
            let effects: Vec<KnobEffect> = spec
                .knobs
                .iter()
                .filter(|k| k.values.len() > 1)
                .map(|knob| knob_effect(spec, knob, cells, results, &task))
                .collect();
            let sensitive: Vec<String> = effects
                .iter()
                .filter(|e| e.sensitive)
                .map(|e| e.knob.clone())
                .collect();
            let class = if !sensitive.is_empty() {
                TaskClass::KnobSensitive(sensitive)
            } else if worst.1 >= spec.eval.easy_score {
                TaskClass::Easy
            } else {
                TaskClass::Hard
            };
            let best_baseline = baselines.iter().find(|t| t.task == task).and_then(|t| {
                t.entries
                    .iter()
                    .filter_map(|e| e.metrics.get(&metric).map(|m| (e.subject.clone(), m.mean)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
            });
            let controls: Vec<f64> = results
                .iter()
                .flat_map(|r| r.random.iter())
                .filter(|s| s.task == task)
                .map(|s| s.linear.mean)
                .collect();
            TaskAnalysis {
                task,
                metric,
                class,
                best,
                worst,
                best_baseline,
                random_control: (!controls.is_empty()).then(|| Summary::of(&controls).mean),
                effects,
            }
        })
        .collect()
}

/// The effect of one knob on one task's score: the spread of its values' mean scores (over
/// seeds and the other knobs' values) against its standard error.
fn knob_effect(
    spec: &StudySpec,
    knob: &Knob,
    cells: &[Cell],
    results: &[CellResult],
    task: &str,
) -> KnobEffect {
    let values: Vec<String> = knob
        .values
        .iter()
        .filter_map(|v| knob_value(knob, v).ok().map(|(l, _)| l))
        .collect();
    let (means, errors): (Vec<f64>, Vec<f64>) = values
        .iter()
        .map(|value| {
            let v: Vec<(f64, f64)> = results_at(knob, value, cells, results)
                .filter_map(|r| r.linear(task))
                .collect();
            mean_se(&v)
        })
        .unzip();
    let finite = |i: &usize| means[*i].is_finite();
    let hi = (0..means.len())
        .filter(finite)
        .max_by(|&a, &b| means[a].total_cmp(&means[b]));
    let lo = (0..means.len())
        .filter(finite)
        .min_by(|&a, &b| means[a].total_cmp(&means[b]));
    let (effect, error, best) = match (hi, lo) {
        (Some(h), Some(l)) => (
            means[h] - means[l],
            (errors[h].powi(2) + errors[l].powi(2)).sqrt(),
            values[h].clone(),
        ),
        _ => (f64::NAN, f64::NAN, String::new()),
    };
    let paired = match (hi, lo) {
        (Some(h), Some(l)) if h != l => {
            let a = predictions_at(knob, &values[h], cells, results, task);
            let b = predictions_at(knob, &values[l], cells, results, task);
            (!a.is_empty() && !b.is_empty())
                .then(|| paired_bootstrap_groups(&a, &b, BOOTSTRAP_RESAMPLES, 0))
        }
        _ => None,
    };
    KnobEffect {
        knob: knob.name.clone(),
        values,
        means,
        errors,
        effect,
        error,
        sensitive: effect.is_finite()
            && effect >= spec.eval.min_effect
            && effect > 2.0 * error.max(0.0)
            && paired.is_none_or(|p| p.verdict() == Verdict::Win),
        paired,
        best,
    }
}

/// The cell results (every seed) of the cells at `value` of `knob`.
fn results_at<'a>(
    knob: &'a Knob,
    value: &'a str,
    cells: &'a [Cell],
    results: &'a [CellResult],
) -> impl Iterator<Item = &'a CellResult> {
    results.iter().filter(move |r| {
        cells
            .iter()
            .any(|c| c.id == r.cell && c.value(&knob.name) == Some(value))
    })
}

/// The linear probe's test predictions on `task` of every cell result at `value` of `knob`.
fn predictions_at<'a>(
    knob: &'a Knob,
    value: &'a str,
    cells: &'a [Cell],
    results: &'a [CellResult],
    task: &str,
) -> Vec<&'a TestPredictions> {
    results_at(knob, value, cells, results)
        .filter_map(|r| r.scores.iter().find(|s| s.task == task))
        .filter_map(|s| s.linear_predictions.as_ref())
        .collect()
}
