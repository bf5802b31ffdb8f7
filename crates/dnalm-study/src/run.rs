//! Running a study: the baselines once, then every cell and seed (pretraining with the cell's
//! budget, then a bench of its checkpoint), each result written as soon as it exists.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use dnalm_eval::{
    bench::{run_bench, BenchConfig, BenchResults, Progress, TaskResult},
    features::embed::ModelSpec,
    finetune::FinetuneOptions,
    metrics::{Summary, TestPredictions},
    ProbeOptions,
};
use dnalm_model::DeviceName;
use dnalm_seq::suite::TaskSource;
use dnalm_tokenize::Tokenizer;
use dnalm_train::{
    trainer::{latest_checkpoint, read_metrics, Observer, StepRecord},
    ResolvedRun, RunConfig, RunOptions, Trainer,
};
use serde::{Deserialize, Serialize};

use crate::{
    analysis::{analyse, CellResult, StudyResults, TaskScore},
    report::{write_study_report, write_text},
    Cell, StudyError, StudySpec,
};

/// Runs (or resumes) a study into `out`, then analyses it and writes `study.json`, `study.md`
/// and `plots/`. `stop` (e.g. set by Ctrl-C) ends it after the current pretraining step with
/// a checkpoint; what finished is reported and the next run resumes. With `stop` already set,
/// nothing new runs: the report covers the cells finished so far. Pretraining, embedding and
/// every fit run on `device`.
pub fn run_study(
    spec: &StudySpec,
    out: &Path,
    device: DeviceName,
    stop: Arc<AtomicBool>,
    progress: &mut dyn Progress,
) -> Result<StudyResults, StudyError> {
    spec.check_output(out)?;
    let tasks = spec.task_dirs()?;
    let base = spec.check_cells()?;
    let cells = spec.cells();
    progress.message(&format!(
        "study '{}': {} cell(s) × {} seed(s), {} task(s); output {}",
        spec.name,
        cells.len(),
        spec.seeds.len(),
        tasks.len(),
        out.display()
    ));
    std::fs::create_dir_all(out).map_err(|e| StudyError::io(out, e))?;
    let spec_path = out.join("study.toml");
    if !spec_path.exists() {
        let text = toml::to_string(spec).map_err(|e| StudyError::Spec {
            path: spec_path.clone(),
            message: e.to_string(),
        })?;
        write_text(&spec_path, &text)?;
    }
    let baselines = baselines(spec, out, &tasks, &stop, progress)?;
    let mut results = Vec::new();
    let mut complete = true;
    'cells: for (i, cell) in cells.iter().enumerate() {
        for &seed in &spec.seeds {
            let dir = out
                .join("cells")
                .join(&cell.id)
                .join(format!("seed-{seed}"));
            let path = dir.join("result.json");
            if let Some(r) = read_json::<CellResult>(&path)? {
                results.push(r);
                continue;
            }
            if stop.load(Ordering::SeqCst) {
                complete = false;
                break 'cells;
            }
            progress.message(&format!(
                "cell {}/{} [{}] seed {seed}: pretraining",
                i + 1,
                cells.len(),
                cell.label()
            ));
            let run = CellRun {
                spec,
                base: &base,
                cell,
                seed,
                dir: &dir,
                tasks: &tasks,
                device,
            };
            match run.run(stop.clone(), progress)? {
                Some(r) => {
                    write_text(&path, &json(&r)?)?;
                    results.push(r);
                }
                None => {
                    complete = false;
                    break 'cells;
                }
            }
        }
    }
    let analysis = analyse(spec, &cells, &results, &baselines);
    let study = StudyResults {
        spec: spec.clone(),
        cells,
        results,
        baselines,
        analysis,
        complete,
    };
    write_study_report(out, &study)?;
    Ok(study)
}

/// The k-mer spectrum and one-hot CNN on every task, run once per study (`baselines.json`).
fn baselines(
    spec: &StudySpec,
    out: &Path,
    tasks: &[PathBuf],
    stop: &AtomicBool,
    progress: &mut dyn Progress,
) -> Result<Vec<TaskResult>, StudyError> {
    if !spec.eval.baselines {
        return Ok(Vec::new());
    }
    let path = out.join("baselines.json");
    if let Some(b) = read_json::<Vec<TaskResult>>(&path)? {
        return Ok(b);
    }
    if stop.load(Ordering::SeqCst) {
        // Stopped before starting (a report of what is done): no new work.
        return Ok(Vec::new());
    }
    progress.message("baselines: k-mer spectrum and one-hot CNN");
    // The CNN gets the bench's default seeds (a one-seed CNN is too noisy to compare with).
    let config = BenchConfig {
        tasks: tasks.iter().cloned().map(TaskSource::from).collect(),
        probe: probe_options(spec),
        ..BenchConfig::default()
    };
    let r = run_bench(&config, progress)?;
    write_text(&path, &json(&r.tasks)?)?;
    Ok(r.tasks)
}

fn probe_options(spec: &StudySpec) -> ProbeOptions {
    ProbeOptions {
        folds: spec.eval.folds.max(2),
        ..Default::default()
    }
}

/// Pretty JSON with a final newline.
pub(crate) fn json<T: Serialize>(value: &T) -> Result<String, StudyError> {
    Ok(serde_json::to_string_pretty(value).map_err(StudyError::Json)? + "\n")
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, StudyError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| StudyError::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| StudyError::Unreadable {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// The resolved run config of one cell and seed, with the budget turned into steps.
pub(crate) fn cell_config(
    spec: &StudySpec,
    base: &RunConfig,
    cell: &Cell,
    seed: u64,
) -> Result<(RunConfig, ResolvedRun), StudyError> {
    let in_cell = |source| StudyError::CellConfig {
        cell: cell.label(),
        source,
    };
    let mut set = spec.set.clone();
    set.extend(cell.set.iter().cloned());
    set.push(format!("seed={seed}"));
    let mut config = base.with_overrides(&set).map_err(in_cell)?;
    // Paths the overrides name (a BPE directory, annotations) are relative to the study file.
    config.rebase(&spec.root);
    let mut resolved = config.resolve().map_err(in_cell)?;
    let t = &resolved.config.train;
    let rows = (t.batch_size * t.accumulation) as u64;
    let steps = match (spec.budget.tokens, spec.budget.bases) {
        (Some(tokens), _) => {
            let window = resolved
                .tokenizer
                .window_tokens(resolved.config.data.context);
            tokens.div_ceil(rows * window as u64)
        }
        (_, Some(bases)) => bases.div_ceil(rows * resolved.config.data.context as u64),
        _ => t.steps,
    }
    .max(1);
    // The budget only touches the schedule and cadence, which nothing resolved depends on, so
    // they are set on both configs rather than resolving (and loading the tokenizer) again.
    // Checkpoints a few times per cell so a killed study resumes inside the cell.
    for train in [&mut config.train, &mut resolved.config.train] {
        train.eval_every = train.eval_every.min(steps).max(1);
        train.steps = steps;
        train.save_every = steps.div_ceil(4).max(1);
        train.keep_last = 1;
    }
    Ok((config, resolved))
}

/// Passes pretraining progress on every fifth of the run.
struct CellObserver<'a> {
    progress: &'a mut dyn Progress,
    label: String,
}

impl Observer for CellObserver<'_> {
    fn on_step(&mut self, r: &StepRecord, total: u64) {
        if r.step.is_multiple_of((total / 5).max(1)) {
            self.progress.message(&format!(
                "  [{}] step {}/{total} loss {:.4} acc {:.3} {:.0} tok/s",
                self.label, r.step, r.loss, r.accuracy, r.tokens_per_s
            ));
        }
    }
}

/// What a cell's pretraining left for its evaluation and its result.
struct Pretrained {
    checkpoint: PathBuf,
    steps: u64,
    tokens: u64,
    bases: u64,
    parameters: usize,
    train_seconds: f64,
    valid_loss: Option<f64>,
    valid_accuracy: Option<f64>,
}

/// One cell and seed of a study, to run in `dir`.
struct CellRun<'a> {
    spec: &'a StudySpec,
    base: &'a RunConfig,
    cell: &'a Cell,
    seed: u64,
    dir: &'a Path,
    tasks: &'a [PathBuf],
    device: DeviceName,
}

impl CellRun<'_> {
    /// Pretrains (or resumes) the cell and evaluates it; `None` when `stop` interrupted it.
    fn run(
        &self,
        stop: Arc<AtomicBool>,
        progress: &mut dyn Progress,
    ) -> Result<Option<CellResult>, StudyError> {
        let (config, resolved) = cell_config(self.spec, self.base, self.cell, self.seed)?;
        let differs = self.differences(&config)?;
        let Some(pretrained) = self.pretrain(resolved, stop, progress)? else {
            return Ok(None);
        };
        progress.message(&format!(
            "  [{}] evaluating on {} tasks",
            self.cell.label(),
            self.tasks.len()
        ));
        let t0 = Instant::now();
        let bench = self.evaluate(&pretrained.checkpoint, progress)?;
        let random_name = format!("random({})", self.cell.id);
        Ok(Some(CellResult {
            cell: self.cell.id.clone(),
            seed: self.seed,
            differs,
            steps: pretrained.steps,
            tokens: pretrained.tokens,
            bases: pretrained.bases,
            parameters: pretrained.parameters,
            train_seconds: pretrained.train_seconds,
            valid_loss: pretrained.valid_loss,
            valid_accuracy: pretrained.valid_accuracy,
            checkpoint: pretrained.checkpoint,
            eval_seconds: t0.elapsed().as_secs_f64(),
            scores: scores_of(&bench, &self.cell.id),
            random: scores_of(&bench, &random_name),
        }))
    }

    /// What the knobs change, `key = value`: against the base with the study's common
    /// overrides applied (seed and training cadence aside).
    fn differences(&self, config: &RunConfig) -> Result<Vec<String>, StudyError> {
        let common =
            self.base
                .with_overrides(&self.spec.set)
                .map_err(|source| StudyError::CellConfig {
                    cell: self.cell.label(),
                    source,
                })?;
        let mut differs = common.differences(config);
        differs.retain(|d| !d.starts_with("seed") && !d.starts_with("train."));
        let values = toml::Value::try_from(config).ok();
        Ok(differs
            .into_iter()
            .map(|key| {
                let v = key
                    .split('.')
                    .try_fold(values.as_ref(), |node, part| Some(node?.get(part)))
                    .flatten();
                match v {
                    Some(v) => format!("{key} = {v}"),
                    None => key,
                }
            })
            .collect())
    }

    /// Pretrains the cell within its budget (resuming from its last checkpoint).
    fn pretrain(
        &self,
        resolved: ResolvedRun,
        stop: Arc<AtomicBool>,
        progress: &mut dyn Progress,
    ) -> Result<Option<Pretrained>, StudyError> {
        let label = self.cell.label();
        let in_cell = |source| StudyError::CellTraining {
            cell: label.clone(),
            source: Box::new(source),
        };
        let parameters = resolved.model.parameter_count();
        let run_dir = self.dir.join("run");
        let resume = latest_checkpoint(&run_dir).is_some();
        if !resume && run_dir.exists() {
            // Killed before its first checkpoint: start the cell again.
            std::fs::remove_dir_all(&run_dir).map_err(|e| StudyError::io(&run_dir, e))?;
        }
        let steps = resolved.config.train.steps;
        let windows_per_step =
            (resolved.config.train.batch_size * resolved.config.train.accumulation) as u64;
        let context = resolved.config.data.context as u64;
        let trainer = Trainer::new(
            resolved,
            &run_dir,
            dnalm_eval::train_device(&self.device.open().map_err(|e| StudyError::Eval(e.into()))?),
        )
        .map_err(in_cell)?;
        let previous = read_metrics(&run_dir)
            .ok()
            .and_then(|(s, _)| s.last().map(|r| r.elapsed_s))
            .unwrap_or(0.0);
        // The wall-clock budget: a deadline that stops training like Ctrl-C does.
        let limit = self.spec.budget.seconds.map(|s| (s - previous).max(0.0));
        let deadline = Deadline::start(limit, stop.clone());
        let options = RunOptions {
            resume,
            stop: deadline.flag.clone(),
            ..Default::default()
        };
        let mut observer = CellObserver {
            progress: &mut *progress,
            label: label.clone(),
        };
        let summary = trainer.run(&options, &mut observer);
        deadline.finish();
        let summary = summary.map_err(in_cell)?;
        if summary.interrupted && stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let (step_records, evals) = read_metrics(&run_dir).map_err(in_cell)?;
        let checkpoint = latest_checkpoint(&run_dir).ok_or_else(|| StudyError::NoCheckpoint {
            cell: label.clone(),
        })?;
        let last_eval = evals.last();
        Ok(Some(Pretrained {
            checkpoint,
            steps: summary.step.min(steps),
            tokens: step_records.iter().map(|r| r.tokens as u64).sum(),
            bases: summary.step * windows_per_step * context,
            parameters,
            train_seconds: step_records.last().map(|r| r.elapsed_s).unwrap_or(0.0),
            valid_loss: last_eval.map(|e| e.loss),
            valid_accuracy: last_eval.map(|e| e.accuracy),
        }))
    }

    /// Benches the checkpoint (and its random-init control on the first seed) on the tasks.
    fn evaluate(
        &self,
        checkpoint: &Path,
        progress: &mut dyn Progress,
    ) -> Result<BenchResults, StudyError> {
        let spec = self.spec;
        let mut models = vec![ModelSpec {
            name: self.cell.id.clone(),
            dir: checkpoint.to_path_buf(),
            random: None,
        }];
        if spec.eval.random_control && self.seed == spec.seeds[0] {
            models.push(ModelSpec {
                name: format!("random({})", self.cell.id),
                dir: checkpoint.to_path_buf(),
                random: Some(self.seed),
            });
        }
        let config = BenchConfig {
            models,
            tasks: self.tasks.iter().cloned().map(TaskSource::from).collect(),
            // Checked when the study was loaded.
            probes: spec.probes().unwrap_or_default(),
            probe: probe_options(spec),
            baselines: Vec::new(),
            seeds: 1,
            finetune: spec.eval.finetune.then(|| FinetuneOptions {
                fit: dnalm_eval::probes::fit::FitOptions {
                    epochs: spec.eval.finetune_epochs,
                    ..FinetuneOptions::default().fit
                },
                ..FinetuneOptions::default()
            }),
            ..BenchConfig::default()
        }
        .on_device(self.device);
        Ok(run_bench(&config, progress)?)
    }
}

/// A thread that raises `flag` once `limit` seconds pass or the user's `stop` is set.
struct Deadline {
    flag: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    watcher: JoinHandle<()>,
}

impl Deadline {
    fn start(limit: Option<f64>, user: Arc<AtomicBool>) -> Deadline {
        let flag = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (flag, done) = (flag.clone(), done.clone());
            std::thread::spawn(move || {
                let t0 = Instant::now();
                while !done.load(Ordering::SeqCst) {
                    if user.load(Ordering::SeqCst)
                        || limit.is_some_and(|l| t0.elapsed().as_secs_f64() >= l)
                    {
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Deadline {
            flag,
            done,
            watcher,
        }
    }

    fn finish(self) {
        self.done.store(true, Ordering::SeqCst);
        let _ = self.watcher.join();
    }
}

/// The scores of `model` on each task of a bench.
fn scores_of(bench: &BenchResults, model: &str) -> Vec<TaskScore> {
    bench
        .relevance
        .iter()
        .filter(|r| r.model == model)
        .map(|r| {
            let task = bench.tasks.iter().find(|t| t.task == r.task);
            let metric = task
                .map(|t| t.headline.clone())
                .unwrap_or_else(|| "mcc".into());
            let entry = |method: &str| {
                task.and_then(|t| {
                    t.entries
                        .iter()
                        .find(|e| e.subject == model && e.method == method)
                        .and_then(|e| e.metrics.get(&metric).cloned())
                })
            };
            TaskScore {
                task: r.task.clone(),
                metric: metric.clone(),
                linear: entry("probe:linear").unwrap_or(Summary {
                    mean: r.linear,
                    sd: 0.0,
                    n: 1,
                }),
                logme: r.logme,
                knn: r.knn,
                finetuned: entry("finetune"),
                linear_predictions: task.and_then(|t| {
                    let linear = t
                        .entries
                        .iter()
                        .find(|e| e.subject == model && e.method == "probe:linear")?;
                    let targets = t.test_targets.as_ref()?;
                    (!linear.test_outputs.is_empty())
                        .then(|| TestPredictions::of(targets, &linear.test_outputs))
                }),
            }
        })
        .collect()
}
