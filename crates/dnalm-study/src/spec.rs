//! The study file: knobs, seeds, budget, tasks and evaluation, and the grid of cells it makes.

use std::path::{Path, PathBuf};

use dnalm_eval::probes::ProbeKind;
use dnalm_train::RunConfig;
use serde::{Deserialize, Serialize};

use crate::{run::cell_config, StudyError};

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

fn spec_err(path: &Path, message: impl Into<String>) -> StudyError {
    StudyError::Spec {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl StudySpec {
    /// Reads a study file; relative paths are taken from its directory. Checks the knobs.
    pub fn load(path: &Path) -> Result<StudySpec, StudyError> {
        let text = std::fs::read_to_string(path).map_err(|e| StudyError::io(path, e))?;
        let mut spec: StudySpec = toml::from_str(&text)
            .map_err(|e| spec_err(path, e.to_string().replace('\n', " ").trim().to_string()))?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        let base = std::fs::canonicalize(parent.unwrap_or(Path::new(".")))
            .map_err(|e| StudyError::io(path, e))?;
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

    fn check(&self, path: &Path) -> Result<(), StudyError> {
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
        self.probes().map_err(|e| spec_err(path, e))?;
        Ok(())
    }

    /// Builds and checks every cell's run config (data files, tokenizer, model, objectives),
    /// so that a bad cell fails before anything trains; returns the base config.
    pub fn check_cells(&self) -> Result<RunConfig, StudyError> {
        let base = RunConfig::load(&self.base)?;
        for cell in self.cells() {
            cell_config(self, &base, &cell, self.seeds[0])?;
        }
        Ok(base)
    }

    /// Whether any cell trains with `train.activation_checkpointing`: the program running the
    /// study may then favour memory over speed (`dnalm study` returns freed memory to the kernel,
    /// as `dnalm pretrain` does for such a run). Resolves every cell, as [`Self::check_cells`].
    pub fn checkpoints_activations(&self) -> Result<bool, StudyError> {
        let base = RunConfig::load(&self.base)?;
        for cell in self.cells() {
            let (config, _) = cell_config(self, &base, &cell, self.seeds[0])?;
            if config.train.activation_checkpointing {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Refuses an output directory that holds a different study (resuming needs the same one).
    pub fn check_output(&self, out: &Path) -> Result<(), StudyError> {
        let spec_path = out.join("study.toml");
        if !spec_path.exists() {
            return Ok(());
        }
        let old = std::fs::read_to_string(&spec_path).map_err(|e| StudyError::io(&spec_path, e))?;
        let old: Option<StudySpec> = toml::from_str(&old).ok().map(|mut o: StudySpec| {
            o.root = self.root.clone();
            o
        });
        if old.as_ref() != Some(self) {
            return Err(StudyError::DifferentStudy {
                out: out.to_path_buf(),
            });
        }
        Ok(())
    }

    /// The probes each cell is scored with: the linear probe first, then `eval.probes`.
    pub(crate) fn probes(&self) -> Result<Vec<ProbeKind>, String> {
        let mut out = vec![ProbeKind::Linear];
        for p in &self.eval.probes {
            let kind: ProbeKind = p.parse().map_err(|e: String| format!("eval.probes: {e}"))?;
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
    pub fn task_dirs(&self) -> Result<Vec<PathBuf>, StudyError> {
        let mut out = Vec::new();
        for t in &self.tasks {
            if t.join("task.json").exists() {
                out.push(t.clone());
                continue;
            }
            let entries = std::fs::read_dir(t).map_err(|e| StudyError::io(t, e))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("task.json").exists())
                .collect();
            if found.is_empty() {
                return Err(StudyError::NotATask { path: t.clone() });
            }
            found.sort();
            out.extend(found);
        }
        Ok(out)
    }
}

/// A knob value's label and overrides.
pub(crate) fn knob_value(
    knob: &Knob,
    value: &toml::Value,
) -> Result<(String, Vec<String>), String> {
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
