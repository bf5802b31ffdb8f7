//! Studies: a grid over pretraining knobs, each cell pretrained with the same budget and
//! evaluated on a task suite beside the baselines, then analysed per task (easy / hard /
//! knob-sensitive, with effect sizes and error bars over seeds).
//!
//! A study is a TOML file ([`StudySpec`]): a base run config, overrides common to every cell,
//! knobs (each a config key with values, or named values that set several keys), seeds, a budget
//! (tokens, bases or seconds of training per cell) and the evaluation. Cells run one after
//! another; each writes `cells/<cell>/seed-<s>/result.json` when done, so a killed study picks
//! up at the first unfinished cell (resuming that cell's pretraining from its last checkpoint).

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use dnalm_train::{
    run_config::ConfigError,
    trainer::{latest_checkpoint, read_metrics, tokens_per_window, Observer, StepRecord},
    RunConfig, RunOptions, Trainer,
};
use serde::{Deserialize, Serialize};

use crate::{
    bench::{run_bench, BenchConfig, Progress, TaskResult},
    embed::ModelSpec,
    finetune::FinetuneOptions,
    metrics::Summary,
    plot::{heatmap, lines, Series},
    probe::ProbeKind,
    report::write_text,
    EvalError,
};

/// A study file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySpec {
    /// Name (used for the default output directory).
    pub name: String,
    /// What the study asks.
    #[serde(default)]
    pub description: String,
    /// The base run config (relative to the study file).
    pub base: PathBuf,
    /// Task directories, or suite directories whose subdirectories are tasks.
    pub tasks: Vec<PathBuf>,
    /// Pretraining seeds; each cell is pretrained once per seed (error bars need two or more).
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// `key=value` overrides applied to every cell before its knobs (like `pretrain --set`).
    #[serde(default)]
    pub set: Vec<String>,
    /// The same training budget for every cell.
    pub budget: Budget,
    /// The grid: every combination of the knobs' values is a cell.
    pub knobs: Vec<Knob>,
    /// Evaluation of each cell.
    #[serde(default)]
    pub eval: StudyEval,
    /// The study file's directory (absolute): relative paths in knob overrides are taken from
    /// here, like the base config's.
    #[serde(skip)]
    pub root: PathBuf,
}

fn default_seeds() -> Vec<u64> {
    vec![1]
}

/// How much training each cell gets: exactly one of the three.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Training tokens (steps = tokens / (batch × accumulation × tokens per window)).
    pub tokens: Option<u64>,
    /// Training bases (the same genome sequence for every tokenizer).
    pub bases: Option<u64>,
    /// Wall-clock seconds of training; the learning-rate schedule is laid out over the config's
    /// `train.steps`, and training stops (with a checkpoint) at the deadline.
    pub seconds: Option<f64>,
}

/// One knob of the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Knob {
    /// Name, e.g. `context`.
    pub name: String,
    /// The config key that plain values set, e.g. `data.context`.
    #[serde(default)]
    pub key: Option<String>,
    /// Values: plain TOML values (with `key`), or `{ label = "...", set = ["k=v", ...] }`.
    pub values: Vec<toml::Value>,
}

/// How each cell is evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StudyEval {
    /// Probes on frozen embeddings (the linear probe always runs: it is the study's score).
    pub probes: Vec<String>,
    /// Run the k-mer spectrum and one-hot CNN baselines once for the suite.
    pub baselines: bool,
    /// Also evaluate a randomly initialised copy of each cell (first seed only).
    pub random_control: bool,
    /// Fine-tune each cell on each task (slow).
    pub finetune: bool,
    /// Fine-tuning epochs.
    pub finetune_epochs: usize,
    /// A task whose every variant scores at least this, with no knob mattering, is "easy".
    pub easy_score: f64,
    /// Smallest knob effect (in the headline metric) called an effect.
    pub min_effect: f64,
    /// Refits of the linear probe (its reported spread).
    pub folds: usize,
}

impl Default for StudyEval {
    fn default() -> Self {
        StudyEval {
            probes: vec!["linear".into()],
            baselines: true,
            random_control: false,
            finetune: false,
            finetune_epochs: 3,
            easy_score: 0.8,
            min_effect: 0.03,
            folds: 3,
        }
    }
}

/// One cell of the grid: a value of every knob.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Directory-safe id, e.g. `context-128`.
    pub id: String,
    /// Knob name → value label.
    pub knobs: Vec<(String, String)>,
    /// The overrides that make this cell (after the study's common ones).
    pub set: Vec<String>,
}

impl Cell {
    /// `context=128, objective=mlm`.
    pub fn label(&self) -> String {
        self.knobs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// This cell's value of `knob`.
    pub fn value(&self, knob: &str) -> Option<&str> {
        self.knobs
            .iter()
            .find(|(k, _)| k == knob)
            .map(|(_, v)| v.as_str())
    }
}

fn spec_err(path: &Path, message: impl Into<String>) -> EvalError {
    EvalError::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl StudySpec {
    /// Reads a study file; relative paths are taken from its directory. Checks the knobs.
    pub fn load(path: &Path) -> Result<StudySpec, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
        let mut spec: StudySpec = toml::from_str(&text)
            .map_err(|e| spec_err(path, e.to_string().replace('\n', " ").trim().to_string()))?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        let base = std::fs::canonicalize(parent.unwrap_or(Path::new(".")))
            .map_err(|e| EvalError::io(path, e))?;
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut spec.base);
        spec.tasks.iter_mut().for_each(fix);
        spec.root = base;
        spec.check(path)?;
        Ok(spec)
    }

    fn check(&self, path: &Path) -> Result<(), EvalError> {
        if self.knobs.is_empty() {
            return Err(spec_err(path, "a study needs at least one [[knobs]]"));
        }
        if self.seeds.is_empty() {
            return Err(spec_err(path, "seeds is empty"));
        }
        let given = [
            self.budget.tokens.is_some(),
            self.budget.bases.is_some(),
            self.budget.seconds.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            return Err(spec_err(
                path,
                "[budget] needs exactly one of tokens, bases or seconds",
            ));
        }
        for knob in &self.knobs {
            if knob.values.is_empty() {
                return Err(spec_err(
                    path,
                    format!("knob '{}' has no values", knob.name),
                ));
            }
            for v in &knob.values {
                knob_value(knob, v).map_err(|m| spec_err(path, m))?;
            }
        }
        self.probes().map_err(|e| spec_err(path, e.to_string()))?;
        Ok(())
    }

    /// Builds and checks every cell's run config (data files, tokenizer, model, objectives),
    /// so that a bad cell fails before anything trains; returns the base config.
    pub fn check_cells(&self) -> Result<RunConfig, EvalError> {
        let base = RunConfig::load(&self.base).map_err(config_err)?;
        for cell in self.cells() {
            cell_config(self, &base, &cell, self.seeds[0])?;
        }
        Ok(base)
    }

    /// Refuses an output directory that holds a different study (resuming needs the same one).
    pub fn check_output(&self, out: &Path) -> Result<(), EvalError> {
        let spec_path = out.join("study.toml");
        if !spec_path.exists() {
            return Ok(());
        }
        let old = std::fs::read_to_string(&spec_path).map_err(|e| EvalError::io(&spec_path, e))?;
        let old: Option<StudySpec> = toml::from_str(&old).ok().map(|mut o: StudySpec| {
            o.root = self.root.clone();
            o
        });
        if old.as_ref() != Some(self) {
            return Err(EvalError::Input(format!(
                "{} holds a different study ({}); choose another output directory to keep both",
                out.display(),
                spec_path.display()
            )));
        }
        Ok(())
    }

    fn probes(&self) -> Result<Vec<ProbeKind>, EvalError> {
        let mut out = vec![ProbeKind::Linear];
        for p in &self.eval.probes {
            let kind: ProbeKind = p
                .parse()
                .map_err(|e: String| EvalError::Input(format!("eval.probes: {e}")))?;
            if !out.contains(&kind) {
                out.push(kind);
            }
        }
        Ok(out)
    }

    /// Every combination of knob values, in file order (the last knob varies fastest).
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = vec![Cell {
            id: String::new(),
            knobs: Vec::new(),
            set: Vec::new(),
        }];
        for knob in &self.knobs {
            let mut next = Vec::new();
            for cell in &cells {
                for v in &knob.values {
                    // Checked in `load`.
                    let Ok((label, set)) = knob_value(knob, v) else {
                        continue;
                    };
                    let mut c = cell.clone();
                    c.knobs.push((knob.name.clone(), label));
                    c.set.extend(set);
                    next.push(c);
                }
            }
            cells = next;
        }
        for c in &mut cells {
            c.id = c
                .knobs
                .iter()
                .map(|(k, v)| format!("{k}-{v}"))
                .collect::<Vec<_>>()
                .join("_")
                .chars()
                .map(|ch| {
                    if ch.is_ascii_alphanumeric() || "-_.".contains(ch) {
                        ch
                    } else {
                        '-'
                    }
                })
                .collect();
        }
        cells
    }

    /// The task directories: each entry that holds a `task.json`, or the subdirectories (sorted)
    /// of an entry that does not.
    pub fn task_dirs(&self) -> Result<Vec<PathBuf>, EvalError> {
        let mut out = Vec::new();
        for t in &self.tasks {
            if t.join("task.json").exists() {
                out.push(t.clone());
                continue;
            }
            let entries = std::fs::read_dir(t).map_err(|e| EvalError::io(t, e))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("task.json").exists())
                .collect();
            if found.is_empty() {
                return Err(EvalError::Input(format!(
                    "{}: neither a task (no task.json) nor a suite of tasks",
                    t.display()
                )));
            }
            found.sort();
            out.extend(found);
        }
        Ok(out)
    }
}

/// A knob value's label and overrides.
fn knob_value(knob: &Knob, value: &toml::Value) -> Result<(String, Vec<String>), String> {
    match value {
        toml::Value::Table(t) => {
            let label = t
                .get("label")
                .and_then(|l| l.as_str())
                .ok_or_else(|| {
                    format!("knob '{}': a table value needs label = \"...\"", knob.name)
                })?
                .to_string();
            let mut set = Vec::new();
            for (k, v) in t {
                match k.as_str() {
                    "label" => {}
                    "set" => {
                        let items = v.as_array().ok_or_else(|| {
                            format!("knob '{}' value '{label}': set must be a list of \"key=value\" strings", knob.name)
                        })?;
                        for item in items {
                            let s = item.as_str().filter(|s| s.contains('=')).ok_or_else(|| {
                                format!("knob '{}' value '{label}': {item} is not a \"key=value\" string", knob.name)
                            })?;
                            set.push(s.to_string());
                        }
                    }
                    other => {
                        return Err(format!(
                            "knob '{}' value '{label}': unknown key '{other}' (label, set)",
                            knob.name
                        ))
                    }
                }
            }
            if let Some(key) = &knob.key {
                if let Some(v) = t.get("value") {
                    set.insert(0, format!("{key}={v}"));
                }
            }
            Ok((label, set))
        }
        plain => {
            let key = knob.key.as_ref().ok_or_else(|| {
                format!(
                    "knob '{}': plain values need key = \"section.name\" (or use {{ label, set }} tables)",
                    knob.name
                )
            })?;
            let label = match plain {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Ok((label, vec![format!("{key}={plain}")]))
        }
    }
}

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
    /// `effect > 2 × error` and `effect ≥ min_effect`.
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

/// Runs (or resumes) a study into `out`, then analyses it and writes `study.json`, `study.md`
/// and `plots/`. `stop` (e.g. set by Ctrl-C) ends it after the current pretraining step with
/// a checkpoint; what finished is reported and the next run resumes. With `stop` already set,
/// nothing new runs: the report covers the cells finished so far.
pub fn run_study(
    spec: &StudySpec,
    out: &Path,
    stop: Arc<AtomicBool>,
    progress: &mut dyn Progress,
) -> Result<StudyResults, EvalError> {
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
    std::fs::create_dir_all(out).map_err(|e| EvalError::io(out, e))?;
    let spec_path = out.join("study.toml");
    if !spec_path.exists() {
        let text = toml::to_string(spec).map_err(|e| EvalError::Input(e.to_string()))?;
        write_text(&spec_path, &text)?;
    }
    let baselines = if spec.eval.baselines {
        let path = out.join("baselines.json");
        match read_json::<Vec<TaskResult>>(&path)? {
            Some(b) => b,
            // Stopped before starting (a report of what is done): no new work.
            None if stop.load(Ordering::SeqCst) => Vec::new(),
            None => {
                progress.message("baselines: k-mer spectrum and one-hot CNN");
                let config = BenchConfig {
                    tasks: tasks.clone(),
                    probe: probe_options(spec),
                    seeds: 1,
                    ..BenchConfig::default()
                };
                let r = run_bench(&config, progress)?;
                write_text(&path, &json(&r.tasks)?)?;
                r.tasks
            }
        }
    } else {
        Vec::new()
    };
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
            match run_cell(
                spec,
                &base,
                cell,
                seed,
                &dir,
                &tasks,
                stop.clone(),
                progress,
            )? {
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

fn config_err(e: ConfigError) -> EvalError {
    EvalError::Input(e.to_string())
}

fn probe_options(spec: &StudySpec) -> crate::ProbeOptions {
    crate::ProbeOptions {
        folds: spec.eval.folds.max(2),
        ..Default::default()
    }
}

fn json<T: Serialize>(value: &T) -> Result<String, EvalError> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| EvalError::Input(e.to_string()))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, EvalError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        spec_err(
            path,
            format!("unreadable ({e}); delete it to redo this part of the study"),
        )
    })
}

/// The resolved run config of one cell and seed, with the budget turned into steps.
fn cell_config(
    spec: &StudySpec,
    base: &RunConfig,
    cell: &Cell,
    seed: u64,
) -> Result<(RunConfig, dnalm_train::ResolvedRun), EvalError> {
    let mut set = spec.set.clone();
    set.extend(cell.set.iter().cloned());
    set.push(format!("seed={seed}"));
    let mut config = base
        .with_overrides(&set)
        .map_err(|e| EvalError::Input(format!("cell [{}]: {e}", cell.label())))?;
    // Paths the overrides name (a BPE directory, annotations) are relative to the study file.
    config.rebase(&spec.root);
    let mut resolved = config
        .resolve()
        .map_err(|e| EvalError::Input(format!("cell [{}]: {e}", cell.label())))?;
    let t = &resolved.config.train;
    let rows = (t.batch_size * t.accumulation) as u64;
    let steps = match (spec.budget.tokens, spec.budget.bases) {
        (Some(tokens), _) => tokens.div_ceil(rows * tokens_per_window(&resolved) as u64),
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

/// Passes pretraining progress on every tenth of the run.
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

#[allow(clippy::too_many_arguments)]
fn run_cell(
    spec: &StudySpec,
    base: &RunConfig,
    cell: &Cell,
    seed: u64,
    dir: &Path,
    tasks: &[PathBuf],
    stop: Arc<AtomicBool>,
    progress: &mut dyn Progress,
) -> Result<Option<CellResult>, EvalError> {
    let (config, resolved) = cell_config(spec, base, cell, seed)?;
    // What the knobs change: against the base with the study's common overrides applied.
    let common = base
        .with_overrides(&spec.set)
        .map_err(|e| EvalError::Input(e.to_string()))?;
    let mut differs = common.differences(&config);
    differs.retain(|d| !d.starts_with("seed") && !d.starts_with("train."));
    let values = toml::Value::try_from(&config).ok();
    let differs: Vec<String> = differs
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
        .collect();
    let parameters = resolved.model.parameter_count();
    let run_dir = dir.join("run");
    let resume = latest_checkpoint(&run_dir).is_some();
    if !resume && run_dir.exists() {
        // Killed before its first checkpoint: start the cell again.
        std::fs::remove_dir_all(&run_dir).map_err(|e| EvalError::io(&run_dir, e))?;
    }
    let steps = resolved.config.train.steps;
    let windows_per_step =
        (resolved.config.train.batch_size * resolved.config.train.accumulation) as u64;
    let context = resolved.config.data.context as u64;
    let trainer = Trainer::new(resolved, &run_dir, crate::train_device())
        .map_err(|e| EvalError::Input(format!("cell [{}]: {e}", cell.label())))?;
    let previous = read_metrics(&run_dir)
        .ok()
        .and_then(|(s, _)| s.last().map(|r| r.elapsed_s))
        .unwrap_or(0.0);
    // The wall-clock budget: a deadline that stops training like Ctrl-C does.
    let deadline_stop = Arc::new(AtomicBool::new(false));
    let options = RunOptions {
        resume,
        stop: deadline_stop.clone(),
        ..Default::default()
    };
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (flag, user, done) = (deadline_stop.clone(), stop.clone(), done.clone());
        let limit = spec.budget.seconds.map(|s| (s - previous).max(0.0));
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
    let mut observer = CellObserver {
        progress: &mut *progress,
        label: cell.label(),
    };
    let summary = trainer.run(&options, &mut observer);
    done.store(true, Ordering::SeqCst);
    let _ = watcher.join();
    let summary = summary.map_err(|e| EvalError::Input(format!("cell [{}]: {e}", cell.label())))?;
    if summary.interrupted && stop.load(Ordering::SeqCst) {
        return Ok(None);
    }
    let (step_records, evals) = read_metrics(&run_dir)
        .map_err(|e| EvalError::Input(format!("cell [{}]: {e}", cell.label())))?;
    let checkpoint = latest_checkpoint(&run_dir).ok_or_else(|| {
        EvalError::Input(format!(
            "cell [{}]: pretraining left no checkpoint",
            cell.label()
        ))
    })?;
    let tokens: u64 = step_records.iter().map(|r| r.tokens as u64).sum();
    let train_seconds = step_records.last().map(|r| r.elapsed_s).unwrap_or(0.0);
    let last_eval = evals.last();
    drop(trainer);
    progress.message(&format!(
        "  [{}] evaluating on {} tasks",
        cell.label(),
        tasks.len()
    ));
    let t0 = Instant::now();
    let mut models = vec![ModelSpec {
        name: cell.id.clone(),
        dir: checkpoint.clone(),
        random: None,
    }];
    if spec.eval.random_control && seed == spec.seeds[0] {
        models.push(ModelSpec {
            name: format!("random({})", cell.id),
            dir: checkpoint.clone(),
            random: Some(seed),
        });
    }
    let config = BenchConfig {
        models,
        tasks: tasks.to_vec(),
        probes: spec.probes()?,
        probe: probe_options(spec),
        baselines: false,
        seeds: 1,
        finetune: spec.eval.finetune.then(|| FinetuneOptions {
            fit: crate::fit::FitOptions {
                epochs: spec.eval.finetune_epochs,
                ..FinetuneOptions::default().fit
            },
            ..FinetuneOptions::default()
        }),
        ..BenchConfig::default()
    };
    let bench = run_bench(&config, progress)?;
    let scores_of = |model: &str| -> Vec<TaskScore> {
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
                }
            })
            .collect()
    };
    let scores = scores_of(&cell.id);
    let random = scores_of(&format!("random({})", cell.id));
    Ok(Some(CellResult {
        cell: cell.id.clone(),
        seed,
        differs,
        steps: summary.step.min(steps),
        tokens,
        bases: summary.step * windows_per_step * context,
        parameters,
        train_seconds,
        valid_loss: last_eval.map(|e| e.loss),
        valid_accuracy: last_eval.map(|e| e.accuracy),
        checkpoint,
        eval_seconds: t0.elapsed().as_secs_f64(),
        scores,
        random,
    }))
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
    let score = |r: &CellResult, task: &str| {
        r.scores
            .iter()
            .find(|s| s.task == task)
            .map(|s| (s.linear.mean, s.linear.sd))
    };
    tasks
        .into_iter()
        .map(|(task, metric)| {
            let per_cell: Vec<(String, f64)> = cells
                .iter()
                .filter_map(|c| {
                    let v: Vec<(f64, f64)> = results
                        .iter()
                        .filter(|r| r.cell == c.id)
                        .filter_map(|r| score(r, &task))
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
                .map(|knob| {
                    let values: Vec<String> = knob
                        .values
                        .iter()
                        .filter_map(|v| knob_value(knob, v).ok().map(|(l, _)| l))
                        .collect();
                    let (means, errors): (Vec<f64>, Vec<f64>) = values
                        .iter()
                        .map(|value| {
                            let v: Vec<(f64, f64)> = results
                                .iter()
                                .filter(|r| {
                                    cells.iter().any(|c| {
                                        c.id == r.cell && c.value(&knob.name) == Some(value)
                                    })
                                })
                                .filter_map(|r| score(r, &task))
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
                    KnobEffect {
                        knob: knob.name.clone(),
                        values,
                        means,
                        errors,
                        effect,
                        error,
                        sensitive: effect.is_finite()
                            && effect >= spec.eval.min_effect
                            && effect > 2.0 * error.max(0.0),
                        best,
                    }
                })
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

/// Writes `study.json`, `study.md` and `plots/` (heatmap of cells × tasks, one effect plot per
/// knob).
pub fn write_study_report(out: &Path, study: &StudyResults) -> Result<PathBuf, EvalError> {
    use std::fmt::Write as _;
    write_text(&out.join("study.json"), &json(study)?)?;
    let plots = out.join("plots");
    std::fs::create_dir_all(&plots).map_err(|e| EvalError::io(&plots, e))?;
    let spec = &study.spec;
    let tasks: Vec<&TaskAnalysis> = study.analysis.iter().collect();
    let cell_score = |cell: &str, task: &str| -> (f64, f64, usize) {
        let v: Vec<f64> = study
            .results
            .iter()
            .filter(|r| r.cell == cell)
            .flat_map(|r| r.scores.iter())
            .filter(|s| s.task == task)
            .map(|s| s.linear.mean)
            .collect();
        let s = Summary::of(&v);
        (s.mean, s.sd, s.n)
    };
    let baseline_score = |subject: &str, task: &str| -> f64 {
        study
            .baselines
            .iter()
            .find(|t| t.task == task)
            .and_then(|t| {
                t.entries
                    .iter()
                    .find(|e| e.subject == subject)
                    .and_then(|e| e.metrics.get(&t.headline).map(|m| m.mean))
            })
            .unwrap_or(f64::NAN)
    };
    let random_score = |cell: &str, task: &str| -> f64 {
        study
            .results
            .iter()
            .filter(|r| r.cell == cell)
            .flat_map(|r| r.random.iter())
            .find(|s| s.task == task)
            .map(|s| s.linear.mean)
            .unwrap_or(f64::NAN)
    };
    let has_random = study.results.iter().any(|r| !r.random.is_empty());
    // Heatmap: tasks × cells (+ random controls, + baselines).
    let mut columns: Vec<String> = study.cells.iter().map(|c| c.id.clone()).collect();
    let mut values: Vec<Vec<f64>> = tasks
        .iter()
        .map(|t| {
            study
                .cells
                .iter()
                .map(|c| cell_score(&c.id, &t.task).0)
                .collect()
        })
        .collect();
    if has_random {
        for c in &study.cells {
            columns.push(format!("random({})", c.id));
            for (i, t) in tasks.iter().enumerate() {
                values[i].push(random_score(&c.id, &t.task));
            }
        }
    }
    if !study.baselines.is_empty() {
        for b in ["kmer-spectrum", "onehot-cnn"] {
            columns.push(b.into());
            for (i, t) in tasks.iter().enumerate() {
                values[i].push(baseline_score(b, &t.task));
            }
        }
    }
    let rows: Vec<String> = tasks.iter().map(|t| t.task.clone()).collect();
    if !rows.is_empty() {
        heatmap(
            &plots.join("heatmap.png"),
            &format!("{}: linear-probe score (test), mean over seeds", spec.name),
            &rows,
            &columns,
            &values,
            false,
        )?;
    }
    let mut effect_plots = Vec::new();
    for knob in spec.knobs.iter().filter(|k| k.values.len() > 1) {
        let series: Vec<Series> = tasks
            .iter()
            .filter_map(|t| {
                t.effects
                    .iter()
                    .find(|e| e.knob == knob.name)
                    .map(|e| Series {
                        name: t.task.clone(),
                        points: e
                            .means
                            .iter()
                            .copied()
                            .zip(e.errors.iter().copied())
                            .collect(),
                    })
            })
            .collect();
        let Some(first) = tasks
            .first()
            .and_then(|t| t.effects.iter().find(|e| e.knob == knob.name))
        else {
            continue;
        };
        let file = format!("effect_{}.png", sanitize(&knob.name));
        lines(
            &plots.join(&file),
            &format!(
                "{}: score against {} (± s.e. over seeds)",
                spec.name, knob.name
            ),
            &knob.name,
            "linear-probe score",
            &first.values,
            &series,
        )?;
        effect_plots.push((knob.name.clone(), file));
    }
    // study.md
    let mut md = String::new();
    let _ = writeln!(md, "# Study: {}\n", spec.name);
    if !spec.description.is_empty() {
        let _ = writeln!(md, "{}\n", spec.description.trim());
    }
    let budget = match (spec.budget.tokens, spec.budget.bases, spec.budget.seconds) {
        (Some(t), _, _) => format!("{t} training tokens"),
        (_, Some(b), _) => format!("{b} training bases"),
        (_, _, Some(s)) => format!("{s} s of training"),
        _ => "?".into(),
    };
    let _ = writeln!(
        md,
        "Base config `{}`; every cell pretrained with the same budget ({budget}) for each of {} seed(s) ({:?}); {} cell(s); scored by a linear probe on frozen, mean-pooled final-layer embeddings (test split; mean over seeds, ± sd over seeds, or over the probe's {} refits where there is one seed).{}\n",
        spec.base.display(),
        spec.seeds.len(),
        spec.seeds,
        study.cells.len(),
        spec.eval.folds.max(2),
        if study.complete { "" } else { " **Incomplete: run the same command again to resume.**" }
    );
    let _ = writeln!(md, "## Cells\n");
    let _ = writeln!(
        md,
        "| cell | differs from the study's base (base config + common `set`) in | params | steps | tokens | bases | train s | valid loss | valid acc |\n|---|---|---|---|---|---|---|---|---|"
    );
    // Settings every cell shares are not what the knobs change.
    let first_differs: Vec<&Vec<String>> = study
        .cells
        .iter()
        .filter_map(|c| {
            study
                .results
                .iter()
                .find(|r| r.cell == c.id)
                .map(|r| &r.differs)
        })
        .collect();
    let shared =
        |d: &String| first_differs.len() > 1 && first_differs.iter().all(|x| x.contains(d));
    for c in &study.cells {
        let rs: Vec<&CellResult> = study.results.iter().filter(|r| r.cell == c.id).collect();
        let Some(r) = rs.first() else {
            let _ = writeln!(md, "| {} | (not run yet) | | | | | | | |", c.id);
            continue;
        };
        let mean = |f: &dyn Fn(&CellResult) -> f64| {
            Summary::of(&rs.iter().map(|r| f(r)).collect::<Vec<_>>()).mean
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} M | {} | {:.2} M | {:.2} M | {:.0} | {:.4} | {:.4} |",
            c.id,
            {
                let own: Vec<&str> = r
                    .differs
                    .iter()
                    .filter(|d| !shared(d))
                    .map(String::as_str)
                    .collect();
                if own.is_empty() {
                    "—".to_string()
                } else {
                    own.join("; ").replace('|', "\\|")
                }
            },
            r.parameters as f64 / 1e6,
            r.steps,
            mean(&|r| r.tokens as f64) / 1e6,
            mean(&|r| r.bases as f64) / 1e6,
            mean(&|r| r.train_seconds),
            mean(&|r| r.valid_loss.unwrap_or(f64::NAN)),
            mean(&|r| r.valid_accuracy.unwrap_or(f64::NAN)),
        );
    }
    let _ = writeln!(md, "\n## Scores (linear probe, test split)\n");
    let mut header = String::from("| task | metric |");
    let mut rule = String::from("|---|---|");
    for c in &study.cells {
        let _ = write!(header, " {} |", c.id);
        rule.push_str("---|");
    }
    if has_random {
        header.push_str(" random init (mean over cells) |");
        rule.push_str("---|");
    }
    if !study.baselines.is_empty() {
        header.push_str(" k-mer spectrum | one-hot CNN |");
        rule.push_str("---|---|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    for t in &tasks {
        let mut line = format!("| {} | {} |", t.task, t.metric);
        for c in &study.cells {
            let (m, sd, n) = cell_score(&c.id, &t.task);
            if n == 0 || !m.is_finite() {
                line.push_str(" — |");
            } else if n > 1 {
                let _ = write!(line, " {m:.3} ± {sd:.3} |");
            } else {
                let refit = study
                    .results
                    .iter()
                    .find(|r| r.cell == c.id)
                    .and_then(|r| r.scores.iter().find(|s| s.task == t.task))
                    .map(|s| s.linear.sd)
                    .unwrap_or(f64::NAN);
                let _ = write!(line, " {m:.3} (± {refit:.3}) |");
            }
        }
        if has_random {
            let _ = write!(line, " {:.3} |", t.random_control.unwrap_or(f64::NAN));
        }
        if !study.baselines.is_empty() {
            let _ = write!(
                line,
                " {:.3} | {:.3} |",
                baseline_score("kmer-spectrum", &t.task),
                baseline_score("onehot-cnn", &t.task)
            );
        }
        let _ = writeln!(md, "{line}");
    }
    let finetuned = |cell: &str, task: &str| -> Vec<f64> {
        study
            .results
            .iter()
            .filter(|r| r.cell == cell)
            .flat_map(|r| r.scores.iter())
            .filter(|s| s.task == task)
            .filter_map(|s| s.finetuned.as_ref().map(|f| f.mean))
            .collect()
    };
    if study
        .results
        .iter()
        .any(|r| r.scores.iter().any(|s| s.finetuned.is_some()))
    {
        let _ = writeln!(md, "\n### Fine-tuned (test, mean ± sd over seeds)\n");
        let _ = writeln!(
            md,
            "| task | {} |\n|---|{}",
            study
                .cells
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(" | "),
            "---|".repeat(study.cells.len())
        );
        for t in &tasks {
            let vals: Vec<String> = study
                .cells
                .iter()
                .map(|c| {
                    let v = finetuned(&c.id, &t.task);
                    if v.is_empty() {
                        "—".into()
                    } else {
                        let s = Summary::of(&v);
                        format!("{:.3} ± {:.3}", s.mean, s.sd)
                    }
                })
                .collect();
            let _ = writeln!(md, "| {} | {} |", t.task, vals.join(" | "));
        }
    }
    let _ = writeln!(md, "\n![heatmap](plots/heatmap.png)\n");
    let _ = writeln!(md, "## Easy, hard or knob-sensitive\n");
    let _ = writeln!(
        md,
        "A knob matters for a task when the spread of its values' mean scores (over seeds and the other knobs) exceeds twice its standard error and {:.2}; a task no knob moves is *easy* if every cell scores ≥ {:.2}, else *hard*.\n",
        spec.eval.min_effect, spec.eval.easy_score
    );
    let _ = writeln!(md, "| task | class | best cell | worst cell | best baseline | random init |\n|---|---|---|---|---|---|");
    for t in &tasks {
        let class = &t.class;
        let _ = writeln!(
            md,
            "| {} | **{class}** | {} ({:.3}) | {} ({:.3}) | {} | {} |",
            t.task,
            t.best.0,
            t.best.1,
            t.worst.0,
            t.worst.1,
            t.best_baseline
                .as_ref()
                .map(|(n, v)| format!("{n} ({v:.3})"))
                .unwrap_or_else(|| "—".into()),
            t.random_control
                .map(|v| format!("{v:.3}"))
                .unwrap_or_else(|| "—".into()),
        );
    }
    let _ = writeln!(md, "\n### Evidence: knob effects\n");
    let _ = writeln!(md, "| task | knob | mean score per value (± s.e.) | effect (max − min) ± s.e. | matters |\n|---|---|---|---|---|");
    for t in &tasks {
        for e in &t.effects {
            let per: Vec<String> = e
                .values
                .iter()
                .zip(e.means.iter().zip(&e.errors))
                .map(|(v, (m, s))| format!("{v}: {m:.3} ± {s:.3}"))
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.3} ± {:.3} | {} |",
                t.task,
                e.knob,
                per.join("; "),
                e.effect,
                e.error,
                if e.sensitive {
                    format!("yes (best: {})", e.best)
                } else {
                    "no".into()
                }
            );
        }
    }
    for (knob, file) in &effect_plots {
        let _ = writeln!(md, "\n![{knob}](plots/{file})");
    }
    let _ = writeln!(
        md,
        "\n## LogME (train split; higher = embeddings explain the labels better)\n"
    );
    let _ = writeln!(
        md,
        "| task | {} |\n|---|{}",
        study
            .cells
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(study.cells.len())
    );
    for t in &tasks {
        let vals: Vec<String> = study
            .cells
            .iter()
            .map(|c| {
                let v: Vec<f64> = study
                    .results
                    .iter()
                    .filter(|r| r.cell == c.id)
                    .flat_map(|r| r.scores.iter())
                    .filter(|s| s.task == t.task)
                    .map(|s| s.logme)
                    .collect();
                format!("{:.3}", Summary::of(&v).mean)
            })
            .collect();
        let _ = writeln!(md, "| {} | {} |", t.task, vals.join(" | "));
    }
    let path = out.join("study.md");
    write_text(&path, &md)?;
    Ok(path)
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<StudySpec, EvalError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        std::fs::write(&p, text).unwrap();
        StudySpec::load(&p)
    }

    const GRID: &str = r#"
name = "g"
base = "run.toml"
tasks = ["t"]
seeds = [1, 2]
[budget]
tokens = 1000
[[knobs]]
name = "context"
key = "data.context"
values = [128, 512]
[[knobs]]
name = "objective"
values = [{ label = "mlm", set = ["objectives=[{type=\"mlm\"}]"] }, { label = "next token", set = ["model.architecture=\"decoder\"", "objectives=[{type=\"next_token\"}]"] }]
"#;

    #[test]
    fn grid_is_every_combination() {
        let s = spec(GRID).unwrap();
        let cells = s.cells();
        assert_eq!(cells.len(), 4);
        assert_eq!(cells[0].id, "context-128_objective-mlm");
        assert_eq!(cells[3].id, "context-512_objective-next-token");
        assert_eq!(cells[3].label(), "context=512, objective=next token");
        assert_eq!(
            cells[3].set,
            vec![
                "data.context=512".to_string(),
                "model.architecture=\"decoder\"".into(),
                "objectives=[{type=\"next_token\"}]".into()
            ]
        );
        assert!(s.base.is_absolute() || s.base.ends_with("run.toml"));
    }

    #[test]
    fn bad_studies_are_refused_with_a_reason() {
        let cases = [
            (
                GRID.replace("tokens = 1000", "tokens = 1000\nseconds = 5"),
                "exactly one",
            ),
            (
                GRID.replace("key = \"data.context\"\n", ""),
                "plain values need key",
            ),
            (GRID.replace("label = \"mlm\", ", ""), "needs label"),
            (
                GRID.replace("seeds = [1, 2]", "seeds = []"),
                "seeds is empty",
            ),
            (
                GRID.replace("name = \"g\"", "name = \"g\"\nbogus = 1"),
                "unknown field",
            ),
        ];
        for (text, want) in cases {
            let e = spec(&text).unwrap_err().to_string();
            assert!(e.contains("s.toml") && e.contains(want), "{want}: {e}");
        }
    }

    fn result(cell: &str, seed: u64, task_scores: &[(&str, f64)]) -> CellResult {
        CellResult {
            cell: cell.into(),
            seed,
            differs: vec![],
            steps: 1,
            tokens: 1,
            bases: 1,
            parameters: 1,
            train_seconds: 0.0,
            valid_loss: None,
            valid_accuracy: None,
            checkpoint: PathBuf::new(),
            eval_seconds: 0.0,
            scores: task_scores
                .iter()
                .map(|(t, v)| TaskScore {
                    task: t.to_string(),
                    metric: "mcc".into(),
                    linear: Summary {
                        mean: *v,
                        sd: 0.01,
                        n: 3,
                    },
                    logme: 0.0,
                    knn: 0.0,
                    finetuned: None,
                })
                .collect(),
            random: vec![],
        }
    }

    #[test]
    fn analysis_separates_easy_hard_and_knob_sensitive() {
        let s = spec(GRID).unwrap();
        let cells = s.cells();
        let mut results = Vec::new();
        for c in &cells {
            let long = c.value("context") == Some("512");
            for seed in [1u64, 2] {
                let jitter = seed as f64 * 0.002;
                results.push(result(
                    &c.id,
                    seed,
                    &[
                        ("easy", 0.93 + jitter),
                        ("hard", 0.30 + jitter),
                        ("long", if long { 0.6 } else { 0.05 } + jitter),
                    ],
                ));
            }
        }
        let a = analyse(&s, &cells, &results, &[]);
        let class = |t: &str| a.iter().find(|x| x.task == t).unwrap().class.clone();
        assert_eq!(class("easy"), TaskClass::Easy);
        assert_eq!(class("hard"), TaskClass::Hard);
        assert_eq!(
            class("long"),
            TaskClass::KnobSensitive(vec!["context".into()])
        );
        let long = a.iter().find(|x| x.task == "long").unwrap();
        let ctx = &long.effects[0];
        assert_eq!(ctx.best, "512");
        assert!((ctx.effect - 0.55).abs() < 1e-9, "{}", ctx.effect);
        assert!(ctx.error < 0.01);
        // The report renders from these.
        let dir = tempfile::tempdir().unwrap();
        let study = StudyResults {
            spec: s,
            cells,
            results,
            baselines: vec![],
            analysis: a,
            complete: true,
        };
        let md = std::fs::read_to_string(write_study_report(dir.path(), &study).unwrap()).unwrap();
        assert!(md.contains("knob-sensitive: context"), "{md}");
        assert!(dir.path().join("plots/heatmap.png").exists());
        assert!(dir.path().join("plots/effect_context.png").exists());
        assert!(dir.path().join("plots/effect_objective.png").exists());
    }
}
