//! The benchmark runner: a suite of tasks × a list of models, always beside the baselines, with
//! relevance scores from frozen embeddings and (optionally) fine-tuning.
//!
//! For each task and model the pooled embeddings are computed once and reused by every probe,
//! by the relevance scores (LogME and H-score on the training split; kNN accuracy and linear-probe
//! MCC on the test split) and by the task × task affinity: a linear probe trained on task A's
//! labels is applied to task B's sequences, and a logistic regression on those outputs alone is
//! fitted on B's training rows and scored (MCC) on B's test rows — how much of B's signal A's
//! decision function carries.

use std::{collections::BTreeMap, path::PathBuf, time::Instant};

use dnalm_seq::task::Task;
use serde::{Deserialize, Serialize};

use crate::{
    baseline::{cnn_baseline, kmer_spectrum, SPECTRUM_KS},
    embed::{EmbedOptions, Embedder, ModelSpec},
    features::{Labelled, Standardizer, Targets},
    finetune::{finetune, FinetuneOptions},
    fit::FitOptions,
    metrics::{spearman, Summary},
    probe::{headline, run_probe, LinearModel, ProbeKind, ProbeOptions, SplitFeatures},
    tasks::{embed_task, features_task},
    transfer::{h_score_with, logme_with, Gram},
    EvalError,
};

/// What to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchConfig {
    /// Models to evaluate.
    pub models: Vec<ModelSpec>,
    /// Task directories.
    pub tasks: Vec<PathBuf>,
    /// Embedding extraction.
    pub embed: EmbedOptions,
    /// Probes on frozen embeddings.
    pub probes: Vec<ProbeKind>,
    /// Probe settings.
    pub probe: ProbeOptions,
    /// Run the k-mer spectrum and one-hot CNN baselines.
    pub baselines: bool,
    /// CNN budget (the same as fine-tuning's when fine-tuning runs).
    pub cnn: FitOptions,
    /// CNN filters per layer.
    pub cnn_channels: usize,
    /// Seeds for the CNN (and fine-tuning).
    pub seeds: usize,
    /// Fine-tune each model on each task.
    pub finetune: Option<FinetuneOptions>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            models: Vec::new(),
            tasks: Vec::new(),
            embed: EmbedOptions::default(),
            probes: vec![ProbeKind::Linear],
            probe: ProbeOptions::default(),
            baselines: true,
            cnn: FitOptions {
                epochs: 10,
                batch_size: 64,
                lr: 2e-3,
                weight_decay: 0.01,
                patience: 3,
                seed: 0,
            },
            cnn_channels: 64,
            seeds: 3,
            finetune: None,
        }
    }
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
}

/// Relevance of one model to one task, from frozen embeddings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Relevance {
    /// Model.
    pub model: String,
    /// Task.
    pub task: String,
    /// LogME evidence per sample (train split).
    pub logme: f64,
    /// H-score (train split; classification only).
    pub h_score: Option<f64>,
    /// kNN test accuracy (classification) or Pearson (regression).
    pub knn: f64,
    /// Linear-probe test MCC (classification) or Pearson (regression).
    pub linear: f64,
    /// The fine-tuned headline metric, when fine-tuning ran.
    pub finetuned: Option<f64>,
    /// Seconds to embed the task.
    pub embed_seconds: f64,
}

/// A task's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    /// Task name.
    pub task: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Headline metric (`mcc` or `pearson`).
    pub headline: String,
    /// Rows per split.
    pub rows: [usize; 3],
    /// Results, baselines first.
    pub entries: Vec<Entry>,
}

/// Affinity of one model's task pairs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Affinity {
    /// Model.
    pub model: String,
    /// Task names (rows: source probe, columns: target task).
    pub tasks: Vec<String>,
    /// MCC on the target's test rows from the source probe's outputs; NaN where undefined.
    pub mcc: Vec<Vec<f64>>,
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
    /// Task × task affinity per model.
    pub affinity: Vec<Affinity>,
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

/// Runs the whole bench.
pub fn run_bench(
    config: &BenchConfig,
    progress: &mut dyn Progress,
) -> Result<BenchResults, EvalError> {
    let tasks: Vec<Task> = config
        .tasks
        .iter()
        .map(Task::load)
        .collect::<Result<_, _>>()?;
    let mut results: Vec<TaskResult> = tasks
        .iter()
        .map(|t| {
            let rows = dnalm_seq::task::Split::ALL.map(|s| t.split(s).count());
            TaskResult {
                task: t.spec.name.clone(),
                dir: t.dir.clone(),
                headline: match t.spec.kind {
                    dnalm_seq::task::TaskKind::Regression => "pearson".into(),
                    _ => "mcc".into(),
                },
                rows,
                entries: Vec::new(),
            }
        })
        .collect();
    // Baselines.
    if config.baselines {
        for (task, result) in tasks.iter().zip(&mut results) {
            progress.message(&format!(
                "{}: k-mer spectrum + linear probe",
                task.spec.name
            ));
            let t0 = Instant::now();
            let features = features_task(task, |s| kmer_spectrum(s, &SPECTRUM_KS))?;
            let report = run_probe(ProbeKind::Linear, &features, &config.probe)?;
            result.entries.push(Entry {
                subject: "kmer-spectrum".into(),
                method: "probe:linear".into(),
                baseline: true,
                metrics: report.summary,
                chosen: Some(report.chosen),
                seconds: t0.elapsed().as_secs_f64(),
            });
            progress.message(&format!("{}: one-hot CNN", task.spec.name));
            let t0 = Instant::now();
            let cnn_fit = config
                .finetune
                .as_ref()
                .map(|f| FitOptions {
                    lr: config.cnn.lr,
                    ..f.fit.clone()
                })
                .unwrap_or_else(|| config.cnn.clone());
            let cnn = cnn_baseline(task, config.cnn_channels, &cnn_fit, config.seeds)?;
            result.entries.push(Entry {
                subject: "onehot-cnn".into(),
                method: "cnn".into(),
                baseline: true,
                metrics: cnn.summary,
                chosen: Some(format!("epochs={:?}", cnn.epochs)),
                seconds: t0.elapsed().as_secs_f64(),
            });
        }
    }
    let mut relevance = Vec::new();
    let mut affinity = Vec::new();
    for spec in &config.models {
        progress.message(&format!("{}: loading {}", spec.name, spec.dir.display()));
        let encoder = spec.load()?;
        let embedder = Embedder::new(&encoder, config.embed.clone())?;
        let mut per_task: Vec<(String, SplitFeatures)> = Vec::new();
        for (task, result) in tasks.iter().zip(&mut results) {
            progress.message(&format!("{}: embedding {}", spec.name, task.spec.name));
            let t0 = Instant::now();
            let features = embed_task(&embedder, task)?;
            let embed_seconds = t0.elapsed().as_secs_f64();
            let train_x = features.train.x.view();
            let gram = Gram::of(train_x);
            let mut rel = Relevance {
                model: spec.name.clone(),
                task: task.spec.name.clone(),
                logme: logme_with(train_x, &gram, &features.train.y)?,
                h_score: match &features.train.y {
                    Targets::Classes {
                        labels,
                        num_classes,
                    } => Some(h_score_with(train_x, &gram, labels, *num_classes)?),
                    Targets::Values(_) => None,
                },
                knn: f64::NAN,
                linear: f64::NAN,
                finetuned: None,
                embed_seconds,
            };
            let metric = headline(&features.train.y);
            let mut probes = config.probes.clone();
            for needed in [ProbeKind::Linear, ProbeKind::Knn] {
                if !probes.contains(&needed) {
                    probes.push(needed);
                }
            }
            for kind in probes {
                progress.message(&format!(
                    "{}: {} probe on {}",
                    spec.name, kind, task.spec.name
                ));
                let t0 = Instant::now();
                let report = run_probe(kind, &features, &config.probe)?;
                match kind {
                    ProbeKind::Linear => rel.linear = report.mean(metric),
                    ProbeKind::Knn => {
                        rel.knn = report.mean(if metric == "mcc" { "accuracy" } else { metric })
                    }
                    ProbeKind::Mlp => {}
                }
                if config.probes.contains(&kind) {
                    result.entries.push(Entry {
                        subject: spec.name.clone(),
                        method: format!("probe:{kind}"),
                        baseline: false,
                        metrics: report.summary,
                        chosen: Some(report.chosen),
                        seconds: t0.elapsed().as_secs_f64(),
                    });
                }
            }
            if let Some(ft) = &config.finetune {
                progress.message(&format!("{}: fine-tuning on {}", spec.name, task.spec.name));
                let t0 = Instant::now();
                let mut ft = ft.clone();
                ft.seeds = config.seeds;
                let (report, ..) = finetune(spec, task, &ft)?;
                rel.finetuned = report.summary.get(metric).map(|s| s.mean);
                result.entries.push(Entry {
                    subject: spec.name.clone(),
                    method: "finetune".into(),
                    baseline: false,
                    metrics: report.summary,
                    chosen: Some(format!("epochs={:?}", report.epochs)),
                    seconds: t0.elapsed().as_secs_f64(),
                });
            }
            relevance.push(rel);
            per_task.push((task.spec.name.clone(), features));
        }
        if per_task.len() > 1 {
            progress.message(&format!("{}: task affinity", spec.name));
            affinity.push(task_affinity(&spec.name, &per_task)?);
        }
    }
    let relevance_vs_finetune = correlate(&relevance);
    Ok(BenchResults {
        config: config.clone(),
        tasks: results,
        relevance,
        relevance_vs_finetune,
        affinity,
    })
}

fn correlate(relevance: &[Relevance]) -> BTreeMap<String, f64> {
    let pairs: Vec<&Relevance> = relevance.iter().filter(|r| r.finetuned.is_some()).collect();
    let mut out = BTreeMap::new();
    if pairs.len() < 3 {
        return out;
    }
    let ft: Vec<f64> = pairs
        .iter()
        .map(|r| r.finetuned.unwrap_or(f64::NAN))
        .collect();
    let score = |f: &dyn Fn(&Relevance) -> f64| pairs.iter().map(|r| f(r)).collect::<Vec<f64>>();
    out.insert("logme".into(), spearman(&score(&|r| r.logme), &ft));
    out.insert("knn".into(), spearman(&score(&|r| r.knn), &ft));
    out.insert("linear".into(), spearman(&score(&|r| r.linear), &ft));
    if pairs.iter().all(|r| r.h_score.is_some()) {
        out.insert(
            "h_score".into(),
            spearman(&score(&|r| r.h_score.unwrap_or(f64::NAN)), &ft),
        );
    }
    out
}

/// Fixed L2 strength of the affinity probes (per training row).
const AFFINITY_L2: f64 = 1e-3;

/// Task × task affinity for one model's embedded tasks (classification tasks only; others NaN).
pub fn task_affinity(
    model: &str,
    tasks: &[(String, SplitFeatures)],
) -> Result<Affinity, EvalError> {
    let n = tasks.len();
    let mut mcc = vec![vec![f64::NAN; n]; n];
    for (a, (_, source)) in tasks.iter().enumerate() {
        if !matches!(source.train.y, Targets::Classes { .. }) {
            continue;
        }
        let scaler = Standardizer::fit(source.train.x.view());
        let probe = LinearModel::logistic(
            &Labelled {
                x: scaler.apply(source.train.x.view()),
                y: source.train.y.clone(),
            },
            AFFINITY_L2,
            200,
        )?;
        for (b, (_, target)) in tasks.iter().enumerate() {
            if !matches!(target.train.y, Targets::Classes { .. }) {
                continue;
            }
            let outputs = |x: &ndarray::Array2<f32>| probe.predict(scaler.apply(x.view()).view());
            let train = Labelled {
                x: outputs(&target.train.x),
                y: target.train.y.clone(),
            };
            let transfer = LinearModel::logistic(&train, AFFINITY_L2, 200)?;
            let test_out = transfer.predict(outputs(&target.test.x).view());
            mcc[a][b] = crate::probe::score(&target.test.y, test_out.view())
                .get("mcc")
                .copied()
                .unwrap_or(f64::NAN);
        }
    }
    Ok(Affinity {
        model: model.to_string(),
        tasks: tasks.iter().map(|(t, _)| t.clone()).collect(),
        mcc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::Rng;
    use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};

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
    fn scores_are_rank_correlated_with_fine_tuning_only_with_three_pairs() {
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

    fn task(labels: impl Fn(&[f32]) -> u32, seed: u64) -> SplitFeatures {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut part = |n: usize| {
            let x = Array2::from_shape_fn((n, 6), |_| rng.random::<f32>() * 2.0 - 1.0);
            let y = x
                .rows()
                .into_iter()
                .map(|r| labels(r.as_slice().unwrap_or(&[])))
                .collect();
            Labelled {
                x,
                y: Targets::Classes {
                    labels: y,
                    num_classes: 2,
                },
            }
        };
        SplitFeatures {
            train: part(300),
            valid: part(50),
            test: part(200),
        }
    }

    #[test]
    fn affinity_is_high_between_tasks_sharing_a_signal_and_low_otherwise() {
        let a = task(|r| (r[0] > 0.0) as u32, 1);
        let same = task(|r| (r[0] > 0.1) as u32, 2);
        let other = task(|r| (r[5] > 0.0) as u32, 3);
        let tasks = vec![
            ("a".into(), a),
            ("same".into(), same),
            ("other".into(), other),
        ];
        let aff = task_affinity("m", &tasks).unwrap();
        assert_eq!(aff.tasks, ["a", "same", "other"]);
        assert!(aff.mcc[0][0] > 0.9, "{:?}", aff.mcc);
        assert!(aff.mcc[0][1] > 0.8, "{:?}", aff.mcc);
        assert!(aff.mcc[0][2].abs() < 0.25, "{:?}", aff.mcc);
    }
}
