//! The run configuration: one TOML file describes a pretraining run (data, tokenizer, model,
//! objectives, optimiser, schedule, budget, seed, evaluation cadence).
//!
//! ```toml
//! seed = 1
//! [data]
//! fasta = "../data/ecoli_MG1655.fa.gz"   # paths are relative to the config file
//! context = 512                          # bases per window
//! [tokenizer]
//! spec = "kmer:6"
//! [model]
//! n_layers = 4
//! d_model = 256
//! [[objectives]]
//! type = "mlm"
//! weight = 1.0
//! [optim]
//! lr = 5e-4
//! [train]
//! steps = 1000
//! batch_size = 16
//! ```
//!
//! [`RunConfig::resolve`] checks everything that can be checked before training (unknown keys
//! and objectives, context/tokenizer divisibility, vocabulary/model agreement, annotation files,
//! objective/architecture agreement) and fills in what the tokenizer decides (vocabulary size,
//! positions). The resolved config is written into the run directory; two runs differ only
//! where their resolved configs differ.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use dnalm_model::ModelConfig;
use dnalm_seq::sampler::{ClassKey, ClassWeights};
use dnalm_tokenize::{AnyTokenizer, TokenizerSpec};

use crate::ObjectiveConfig;

mod resolve;

/// Errors of run configuration, all raised before training starts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown keys.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong (with line and column, from the TOML parser).
        message: String,
    },
    /// A value is invalid.
    #[error("{key}: {message}")]
    Invalid {
        /// The config key, dotted (`data.context`).
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: one_line(&message.into()),
    }
}

/// TOML parser messages span lines (a source excerpt); errors here are one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Where windows come from and how they are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Genome FASTA (plain, gzip or bgzip), or a multi-genome corpus: a list of FASTA files,
    /// directories of them, TSV manifests (`path<TAB>weight<TAB>split`) or a `.dnapack` made by
    /// `dnalm corpus pack`. A corpus is packed once into the run directory and memory-mapped.
    pub fasta: FastaInput,
    /// How a corpus's genomes share the windows when no manifest weights them: `length`
    /// (proportional to their bases, i.e. every start equally likely) or `uniform` (each genome
    /// equally often).
    #[serde(default, skip_serializing_if = "GenomeWeights::is_length")]
    pub genome_weights: GenomeWeights,
    /// BED or GFF3 annotations (rarity-balanced sampling, annotation-aware masking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<PathBuf>,
    /// Which annotation field names a class: `type`, `name` or `name-prefix`.
    #[serde(default = "default_class_key")]
    pub class_key: ClassKey,
    /// `uniform` or `balanced` (rarity-balanced over annotation classes).
    #[serde(default)]
    pub sampler: SamplerKind,
    /// Class weights of the balanced sampler: `uniform` or `class:weight,...`.
    #[serde(default = "default_class_weights")]
    pub class_weights: ClassWeights,
    /// Bases per window.
    pub context: usize,
    /// When set, training windows start on this grid (a tiling with this stride, drawn in random
    /// order); when absent, any start is equally likely (uniform sampler only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    /// Probability that a window is reverse-complemented.
    #[serde(default = "default_rc")]
    pub reverse_complement: f64,
    /// Genome blocks (bases) assigned whole to train/valid/test.
    #[serde(default = "default_block")]
    pub split_block: usize,
    /// Fraction of the genome held out for validation.
    #[serde(default = "default_valid")]
    pub valid_fraction: f64,
    /// Fraction held out for testing (never read by pretraining).
    #[serde(default = "default_valid")]
    pub test_fraction: f64,
}

/// `data.fasta`: one path, or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FastaInput {
    /// One FASTA file (or one directory, manifest or pack).
    One(PathBuf),
    /// Several.
    Many(Vec<PathBuf>),
}

impl FastaInput {
    /// The paths, in order.
    pub fn paths(&self) -> Vec<PathBuf> {
        match self {
            FastaInput::One(p) => vec![p.clone()],
            FastaInput::Many(v) => v.clone(),
        }
    }

    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        match self {
            FastaInput::One(p) => vec![p],
            FastaInput::Many(v) => v.iter_mut().collect(),
        }
    }
}

impl From<PathBuf> for FastaInput {
    fn from(p: PathBuf) -> Self {
        FastaInput::One(p)
    }
}

/// How the genomes of a corpus are weighted (without manifest weights).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GenomeWeights {
    /// By length: every window start in the corpus equally likely.
    #[default]
    Length,
    /// Each genome equally often, whatever its length.
    Uniform,
}

impl GenomeWeights {
    fn is_length(&self) -> bool {
        *self == GenomeWeights::Length
    }
}

/// How training windows are drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    /// Any start equally likely (or a shuffled tiling with `data.stride`).
    #[default]
    Uniform,
    /// Rarity-balanced over annotation classes (needs `data.annotations`).
    Balanced,
}

fn default_class_key() -> ClassKey {
    ClassKey::FeatureType
}
fn default_class_weights() -> ClassWeights {
    ClassWeights::Uniform
}
fn default_rc() -> f64 {
    0.5
}
fn default_block() -> usize {
    50_000
}
fn default_valid() -> f64 {
    0.05
}

/// Tokenizer choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerConfig {
    /// `nucleotide`, `kmer:K`, `kmer:K:non-overlapping`, or a saved tokenizer directory
    /// (relative to the config file).
    pub spec: TokenizerSpec,
}

/// Learning-rate schedule after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Cosine decay to `min_lr_ratio * lr` at the last step.
    Cosine,
    /// Linear decay to `min_lr_ratio * lr` at the last step.
    Linear,
    /// Constant.
    Constant,
}

/// AdamW and its schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Adam betas.
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    /// Adam epsilon.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Decoupled weight decay (matrices only; not biases, norms or embeddings).
    #[serde(default = "default_wd")]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0 = no clipping).
    #[serde(default = "default_clip")]
    pub grad_clip: f64,
    /// Linear warmup steps.
    #[serde(default)]
    pub warmup_steps: u64,
    /// Decay after warmup.
    #[serde(default = "default_schedule")]
    pub schedule: Schedule,
    /// Final learning rate as a fraction of the peak.
    #[serde(default = "default_min_lr")]
    pub min_lr_ratio: f64,
}

fn default_lr() -> f64 {
    5e-4
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.98]
}
fn default_eps() -> f64 {
    1e-8
}
fn default_wd() -> f64 {
    0.01
}
fn default_clip() -> f64 {
    1.0
}
fn default_schedule() -> Schedule {
    Schedule::Cosine
}
fn default_min_lr() -> f64 {
    0.1
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: default_lr(),
            betas: default_betas(),
            eps: default_eps(),
            weight_decay: default_wd(),
            grad_clip: default_clip(),
            warmup_steps: 0,
            schedule: default_schedule(),
            min_lr_ratio: default_min_lr(),
        }
    }
}

impl OptimConfig {
    /// Learning rate at `step` (0-based) of a `total`-step run.
    pub fn lr_at(&self, step: u64, total: u64) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = total.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        let floor = self.lr * self.min_lr_ratio;
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Linear => self.lr - (self.lr - floor) * progress,
            Schedule::Cosine => {
                floor + (self.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// Budget and cadence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimiser steps.
    pub steps: u64,
    /// Windows per micro-batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Micro-batches per optimiser step (gradient accumulation), over all devices together: the
    /// optimiser sees `batch_size × accumulation` windows per step however many devices share
    /// them.
    #[serde(default = "default_one")]
    pub accumulation: usize,
    /// Data parallelism: devices (`cpu`, `vulkan:0`, `cuda:1`, …) that share each step's
    /// micro-batches, a model replica on each; gradients are summed across them with burn's
    /// `all_reduce`. Empty: the one `--device`. `accumulation` must be a multiple of their
    /// number. An execution detail: results do not depend on it, so it may change on resume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Validate every this many steps (and at the end).
    #[serde(default = "default_eval_every")]
    pub eval_every: u64,
    /// Validation batches (fixed held-out windows).
    #[serde(default = "default_eval_batches")]
    pub eval_batches: u64,
    /// Save a checkpoint every this many steps (and at the end).
    #[serde(default = "default_save_every")]
    pub save_every: u64,
    /// Checkpoints kept.
    #[serde(default = "default_keep")]
    pub keep_last: usize,
    /// Batches prepared ahead of the model, on a separate thread.
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
    /// Activation checkpointing: the forward pass keeps only each block's input and the
    /// backward pass recomputes each block from it ([`dnalm_model::BlockRecompute`]), so a
    /// step holds one block's intermediates instead of every block's, at about a third more
    /// arithmetic. What makes 131 k-token contexts fit in memory (Hyena, Caduceus). An
    /// execution detail: the gradients are the same, so it may change on resume. Not with
    /// permutation LM (two streams).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub activation_checkpointing: bool,
}

impl TrainConfig {
    /// Whether `devices` data-parallel peers can share each step's micro-batches evenly.
    pub(crate) fn check_shared_by(&self, devices: usize) -> Result<(), ConfigError> {
        if self.accumulation.is_multiple_of(devices.max(1)) {
            return Ok(());
        }
        Err(ConfigError::Invalid {
            key: "train.accumulation".into(),
            message: format!(
                "{} micro-batches per step cannot be shared evenly by {devices} devices; make it a multiple of {devices}",
                self.accumulation
            ),
        })
    }
}

fn default_batch() -> usize {
    16
}
fn default_one() -> usize {
    1
}
fn default_eval_every() -> u64 {
    100
}
fn default_eval_batches() -> u64 {
    8
}
fn default_save_every() -> u64 {
    500
}
fn default_keep() -> usize {
    2
}
fn default_prefetch() -> usize {
    4
}

/// One objective and its weight in the mixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightedObjective {
    /// Share of batches (normalised over the mixture).
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// The objective (`type = "mlm"` and its settings).
    #[serde(flatten)]
    pub objective: ObjectiveConfig,
}

fn default_weight() -> f64 {
    1.0
}

/// A whole run, as written in `run.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Seed of every random stream (initialisation, windows, masking, dropout).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Data.
    pub data: DataConfig,
    /// Tokenizer.
    pub tokenizer: TokenizerConfig,
    /// Model shape; `vocab_size` and `max_positions` are filled in from the tokenizer and the
    /// context when absent, and checked against them when given.
    #[serde(default)]
    pub model: toml::Table,
    /// Objectives (at least one).
    pub objectives: Vec<WeightedObjective>,
    /// Optimiser.
    #[serde(default)]
    pub optim: OptimConfig,
    /// Budget and cadence.
    pub train: TrainConfig,
}

fn default_seed() -> u64 {
    1
}

/// A config with everything decided: the tokenizer built, the model config complete.
#[derive(Debug, Clone)]
pub struct ResolvedRun {
    /// The config, paths made absolute, model section complete.
    pub config: RunConfig,
    /// The model config.
    pub model: ModelConfig,
    /// The tokenizer.
    pub tokenizer: AnyTokenizer,
}

impl RunConfig {
    /// Reads a TOML run config; relative paths are taken from the config file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.rebase(base);
        Ok(config)
    }

    /// Parses TOML text (paths stay as written).
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: one_line(&e.to_string()),
        })
    }

    /// Makes relative paths relative to `base`.
    pub fn rebase(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for p in self.data.fasta.paths_mut() {
            fix(p);
        }
        if let Some(a) = &mut self.data.annotations {
            fix(a);
        }
        // A saved tokenizer directory is, like the data files, relative to the config.
        if let TokenizerSpec::Path(dir) = &mut self.tokenizer.spec {
            fix(dir);
        }
    }

    /// Applies `key=value` overrides (TOML values; dotted keys into sections), as the CLI's
    /// `--set` does.
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Self, ConfigError> {
        let mut value =
            toml::Value::try_from(self).map_err(|e| invalid("config", e.to_string()))?;
        for o in overrides {
            let (key, raw) = o
                .split_once('=')
                .ok_or_else(|| invalid(o, "expected key=value"))?;
            let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .map(|mut t| t.remove("v").unwrap_or(toml::Value::String(raw.into())))
                .unwrap_or_else(|_| toml::Value::String(raw.trim().to_string()));
            let mut node = &mut value;
            let parts: Vec<&str> = key.trim().split('.').collect();
            for (i, part) in parts.iter().enumerate() {
                let table = node
                    .as_table_mut()
                    .ok_or_else(|| invalid(key, "is not inside a table"))?;
                if i + 1 == parts.len() {
                    table.insert(part.to_string(), parsed.clone());
                    break;
                }
                node = table
                    .entry(part.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            }
        }
        value
            .try_into()
            .map_err(|e: toml::de::Error| invalid("--set", e.to_string().trim().to_string()))
    }

    /// The resolved config as TOML, written into the run directory.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Top-level keys (`section.key`) whose values differ between two configs, ignoring
    /// `train.steps` (a run may be extended when resumed).
    pub fn differences(&self, other: &RunConfig) -> Vec<String> {
        let flat = |c: &RunConfig| -> Vec<(String, String)> {
            let v = toml::Value::try_from(c).unwrap_or(toml::Value::Table(toml::Table::new()));
            let mut out = Vec::new();
            if let Some(t) = v.as_table() {
                for (k, v) in t {
                    match v.as_table() {
                        Some(inner) => {
                            for (k2, v2) in inner {
                                out.push((format!("{k}.{k2}"), v2.to_string()));
                            }
                        }
                        None => out.push((k.clone(), v.to_string())),
                    }
                }
            }
            out
        };
        let (a, b) = (flat(self), flat(other));
        let mut keys: Vec<String> = a
            .iter()
            .chain(b.iter())
            .map(|(k, _)| k.clone())
            .filter(|k| k != "train.steps" && k != "train.devices")
            .collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter(|k| {
                a.iter().find(|(x, _)| x == k).map(|(_, v)| v)
                    != b.iter().find(|(x, _)| x == k).map(|(_, v)| v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dnalm_tokenize::{Template, Tokenizer, TokenizerKind};

    const BASE: &str = r#"
seed = 3
[data]
fasta = "genome.fa"
context = 60
[tokenizer]
spec = "kmer:6:non-overlapping"
[model]
n_layers = 2
d_model = 32
n_heads = 2
d_ffn = 64
[[objectives]]
type = "mlm"
weight = 0.7
[[objectives]]
type = "span"
weight = 0.3
[train]
steps = 10
"#;

    fn with_fasta(text: &str) -> (tempfile::TempDir, RunConfig) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("genome.fa"), ">a\nACGT\n").unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(&path, text).unwrap();
        let cfg = RunConfig::load(&path).unwrap();
        (dir, cfg)
    }

    #[test]
    fn resolves_vocab_and_positions_from_the_tokenizer() {
        let (_d, cfg) = with_fasta(BASE);
        let run = cfg.resolve().unwrap();
        assert_eq!(run.model.vocab_size, run.tokenizer.vocab().len());
        assert_eq!(run.model.max_positions, 60 / 6 + 2);
        assert_eq!(run.model.n_layers, 2);
        let s = run.tokenizer.special_ids();
        assert_eq!(
            (run.model.pad_token_id, run.model.mask_token_id),
            (s.pad, s.mask)
        );
        assert!(run.model.pad_token_id.is_some() && run.model.bos_token_id.is_some());
        assert_eq!(cfg.objectives.len(), 2);
        assert_eq!(cfg.objectives[0].weight, 0.7);
        // The resolved config round-trips through TOML.
        let back = RunConfig::parse(&run.config.to_toml(), Path::new("run.toml")).unwrap();
        assert_eq!(back, run.config);
    }

    #[test]
    fn config_errors_name_the_key() {
        let cases = [
            (BASE.replace("context = 60", "context = 64"), "data.context"),
            (
                BASE.replace("type = \"span\"", "type = \"electra\""),
                "electra",
            ),
            (
                BASE.replace("n_layers = 2", "n_layers = 2\nvocab_size = 12"),
                "model.vocab_size",
            ),
            (
                BASE.replace("type = \"span\"", "type = \"annotation\""),
                "data.annotations",
            ),
            (BASE.replace("n_layers = 2", "n_layrs = 2"), "n_layrs"),
            (
                BASE.replace("n_layers = 2", "architecture = \"decoder\""),
                "encoder",
            ),
            // Typed fields: refused when read, with the key and the accepted values.
            (
                BASE.replace("context = 60", "context = 60\nsampler = \"random\""),
                "unknown variant `random`, expected `uniform` or `balanced`",
            ),
            (
                BASE.replace("context = 60", "context = 60\nclass_key = \"kind\""),
                "'kind' is not type, name or name-prefix",
            ),
            (
                BASE.replace("context = 60", "context = 60\nclass_weights = \"cds=1\""),
                "'cds=1' is not class:weight",
            ),
            (
                BASE.replace("kmer:6:non-overlapping", "kmer:x"),
                "k 'x' is not a number",
            ),
            (
                BASE.replace("kmer:6:non-overlapping", "no_such_tokenizer"),
                "tokenizer.spec: '",
            ),
        ];
        for (text, needle) in cases {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("genome.fa"), ">a\nACGT\n").unwrap();
            let path = dir.path().join("run.toml");
            std::fs::write(&path, text).unwrap();
            let err = RunConfig::load(&path)
                .and_then(|c| c.resolve().map(|_| ()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn a_saved_tokenizer_is_found_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("genome.fa"), ">a\nACGT\n").unwrap();
        let tok = AnyTokenizer::new(
            TokenizerKind::Kmer {
                k: 3,
                overlapping: true,
            },
            Template::Bert,
        )
        .unwrap();
        tok.save(&dir.path().join("tok3")).unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(&path, BASE.replace("kmer:6:non-overlapping", "tok3")).unwrap();
        // Loaded from another working directory: the spec is taken from the config's folder.
        let run = RunConfig::load(&path).unwrap().resolve().unwrap();
        assert_eq!(run.model.vocab_size, tok.vocab().len());
        assert_eq!(run.model.max_positions, 60 - 3 + 1 + 2);
    }

    #[test]
    fn overrides_and_differences() {
        let (_d, cfg) = with_fasta(BASE);
        let changed = cfg
            .with_overrides(&["optim.lr=0.01".into(), "train.steps=99".into()])
            .unwrap();
        assert_eq!(changed.optim.lr, 0.01);
        assert_eq!(changed.train.steps, 99);
        assert_eq!(cfg.differences(&changed), vec!["optim.lr".to_string()]);
    }

    #[test]
    fn schedules() {
        let o = OptimConfig {
            lr: 1.0,
            warmup_steps: 10,
            min_lr_ratio: 0.0,
            ..Default::default()
        };
        assert!((o.lr_at(0, 110) - 0.1).abs() < 1e-12);
        assert!((o.lr_at(9, 110) - 1.0).abs() < 1e-12);
        assert!((o.lr_at(60, 110) - 0.5).abs() < 1e-12);
        assert!(o.lr_at(110, 110).abs() < 1e-12);
    }
}
