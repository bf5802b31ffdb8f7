//! The pretraining loop: batches from the pipeline (prepared ahead on another thread), forward,
//! loss over the loss positions, backward, gradient accumulation, AdamW with global-norm
//! clipping and a warmup + decay schedule; validation on fixed held-out windows; metrics to
//! `metrics.jsonl`; atomic checkpoints (keep-last-N) that resume exactly.
//!
//! Determinism: model initialisation, windows, masking and dropout all derive from the config's
//! seed and the step number, so the same config gives the same losses, and a run resumed from a
//! checkpoint at step N computes exactly the steps N+1.. that the uninterrupted run computed.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use serde::{Deserialize, Serialize};

use dnalm_model::{
    burn::{module::Module, optim::GradientsParams, tensor::Device},
    tensors::{read_safetensors, write_safetensors},
    DnaLm, ModelError,
};
use dnalm_seq::{
    corpus,
    interval::{read_bed, read_gff3, Interval},
    sampler::{ClassWeights, RarityBalancedSampler},
    window::{split_genome, RandomWindows, SplitConfig, SplitUnit, WindowSpec},
    Genome, PackedCorpus, SequenceStore,
};

pub use crate::checkpoints::latest_checkpoint;
use crate::{
    checkpoints::{checkpoint_name, prune, CheckpointScan},
    data::{BatchConfig, BatchPipeline, WindowSource},
    loss::batch_loss,
    optim::AdamW,
    parallel::{all_reduce_gradients, deal, peer_step, Micro, MicroResult, PeerOutput},
    run_config::{ResolvedRun, RunConfig, SamplerKind},
    TargetKind,
};

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::run_config::ConfigError),
    /// The data could not be read or split.
    #[error(transparent)]
    Data(#[from] dnalm_seq::SeqError),
    /// The objectives do not fit the data or tokenizer.
    #[error(transparent)]
    Objective(#[from] crate::objectives::ObjectiveError),
    /// The model refused its input or weights.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The loss became NaN or infinite.
    #[error("the loss became {value} at step {step}; the run stopped and {kept}")]
    NonFinite {
        /// The step.
        step: u64,
        /// The loss value.
        value: f64,
        /// What was kept.
        kept: String,
    },
    /// A data-parallel peer failed; the others stopped with it.
    #[error(
        "data-parallel peer {peer} ({device}) failed: {message}; every peer stopped and {kept}"
    )]
    Peer {
        /// The peer's position in `train.devices`.
        peer: usize,
        /// Its device.
        device: String,
        /// What it said.
        message: String,
        /// What was kept.
        kept: String,
    },
    /// The run directory cannot be used.
    #[error("{}: {message}", path.display())]
    RunDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The message of a panic payload.
fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "it panicked".into())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One training step, as logged to `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// `"train"`.
    pub kind: String,
    /// Step number (1-based: the number of updates applied).
    pub step: u64,
    /// Mean loss over the step's micro-batches.
    pub loss: f64,
    /// Fraction of loss positions predicted right.
    pub accuracy: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens (real, unpadded) read by the model this step.
    pub tokens: usize,
    /// Tokens per second this step.
    pub tokens_per_s: f64,
    /// Seconds since this process started training.
    pub elapsed_s: f64,
}

/// One validation, as logged to `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// `"valid"`.
    pub kind: String,
    /// Step evaluated after.
    pub step: u64,
    /// Mean loss per loss position.
    pub loss: f64,
    /// `exp(loss)` for token targets; NaN (logged as `null`) for binary targets (deletion).
    #[serde(deserialize_with = "nan_if_null")]
    pub perplexity: f64,
    /// Fraction of loss positions predicted right.
    pub accuracy: f64,
    /// Loss positions evaluated.
    pub targets: usize,
}

/// JSON has no NaN: serde_json writes it as `null`, which reads back as NaN here.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// `trainer_state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Updates applied.
    pub step: u64,
    /// Real tokens read so far.
    pub tokens_seen: u64,
    /// The resolved run config (TOML).
    pub config: String,
    /// Last validation, if any.
    pub last_eval: Option<EvalRecord>,
}

/// Receives progress (the CLI draws a progress bar with it).
pub trait Observer {
    /// After each step.
    fn on_step(&mut self, _record: &StepRecord, _total_steps: u64) {}
    /// After each validation.
    fn on_eval(&mut self, _record: &EvalRecord) {}
    /// After each checkpoint.
    fn on_checkpoint(&mut self, _dir: &Path) {}
    /// Something about the run directory the user should know, before the first step
    /// (the same lines end up in [`RunSummary::notes`]).
    fn on_note(&mut self, _note: &str) {}
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {}

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from the latest checkpoint in the run directory.
    pub resume: bool,
    /// Stop (with a checkpoint) after this step even if the budget is larger.
    pub stop_at: Option<u64>,
    /// Set (e.g. by Ctrl-C) to stop after the current step with a checkpoint.
    pub stop: Arc<AtomicBool>,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// The step the run started from (0, or the checkpoint resumed).
    pub start_step: u64,
    /// The last step done.
    pub step: u64,
    /// Whether it stopped before the budget (stop flag or `stop_at`).
    pub interrupted: bool,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
    /// The last validation.
    pub last_eval: Option<EvalRecord>,
    /// Mean training tokens per second over this process's steps.
    pub tokens_per_s: f64,
    /// What the user should know about the run directory: checkpoints skipped as incomplete,
    /// directories ignored, a restart from step 0 because nothing had been saved.
    pub notes: Vec<String>,
}

/// Name of the metrics log in a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The resolved config in a run directory.
pub const CONFIG_FILE: &str = "run.toml";
pub(crate) const STATE_FILE: &str = "trainer_state.json";
pub(crate) const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Where a run starts: fresh, or from a checkpoint.
struct Start {
    model: DnaLm,
    optim: AdamW,
    step: u64,
    tokens_seen: u64,
    last_eval: Option<EvalRecord>,
    notes: Vec<String>,
}

/// A prepared run: data read, pipelines built, run directory known.
pub struct Trainer {
    run: ResolvedRun,
    dir: PathBuf,
    /// The first device: validation, checkpoints.
    device: Device,
    /// Every device of a data-parallel run (just `device` otherwise).
    devices: Vec<Device>,
    train: Arc<BatchPipeline>,
    valid: BatchPipeline,
    /// What opening a multi-genome corpus did (packing, renamed records), for the run's notes.
    corpus_notes: Vec<String>,
}

/// The sequences of `data.fasta`: one FASTA file read into memory (as always), or a corpus
/// (several files, a directory, a manifest) packed once into `dir/corpus.dnapack` and
/// memory-mapped, or a `.dnapack` made by `dnalm corpus pack`. Returns notes on what it did.
fn open_store(inputs: &[PathBuf], dir: &Path) -> Result<(SequenceStore, Vec<String>), TrainError> {
    if !corpus::is_corpus(inputs) {
        return Ok((SequenceStore::Genome(Genome::read(&inputs[0])?), Vec::new()));
    }
    let mut notes = Vec::new();
    let packed = match inputs {
        [one] if corpus::is_pack(one) => PackedCorpus::open(one)?,
        _ => {
            if let Some(p) = inputs.iter().find(|p| corpus::is_pack(p)) {
                return Err(crate::run_config::ConfigError::Invalid {
                    key: "data.fasta".into(),
                    message: format!(
                        "{} is a corpus pack: give it alone (a pack already holds its genomes)",
                        p.display()
                    ),
                }
                .into());
            }
            let genomes = corpus::corpus_genomes(inputs)?;
            let cache = dir.join(CORPUS_CACHE);
            match PackedCorpus::open(&cache) {
                Ok(p) if p.is_current(&genomes) => p,
                _ => {
                    let t0 = Instant::now();
                    let summary = corpus::pack(&genomes, &cache, |_, _, _| {})?;
                    notes.push(format!(
                        "packed {} genomes ({} records, {:.2} Gb) into {} in {:.0} s (reused while the files are unchanged)",
                        summary.genomes,
                        summary.records,
                        summary.bases as f64 / 1e9,
                        cache.display(),
                        t0.elapsed().as_secs_f64()
                    ));
                    PackedCorpus::open(&cache)?
                }
            }
        }
    };
    if packed.renamed() > 0 {
        notes.push(format!(
            "{} record names are used by more than one genome; they are named genome:record (genome = file name without its FASTA suffixes)",
            packed.renamed()
        ));
    }
    Ok((SequenceStore::Packed(packed), notes))
}

/// The corpus cache in a run directory.
pub const CORPUS_CACHE: &str = "corpus.dnapack";

impl Trainer {
    /// Reads the genome (and annotations), splits it, and builds the train and validation
    /// pipelines. Nothing is written yet.
    pub fn new(run: ResolvedRun, dir: &Path, device: Device) -> Result<Self, TrainError> {
        Trainer::on_devices(run, dir, vec![device])
    }

    /// [`Trainer::new`] for data-parallel training on `devices` (autodiff devices, opened from
    /// `train.devices` when the config names them; the same device may appear more than once):
    /// a model replica on each, every step's micro-batches shared between them, gradients summed
    /// with burn's `all_reduce` (see [`crate::parallel`]).
    pub fn on_devices(
        run: ResolvedRun,
        dir: &Path,
        devices: Vec<Device>,
    ) -> Result<Self, TrainError> {
        let cfg = &run.config;
        let Some(device) = devices.first().cloned() else {
            return Err(crate::run_config::ConfigError::Invalid {
                key: "train.devices".into(),
                message: "no device given".into(),
            }
            .into());
        };
        let named = cfg.train.devices.len();
        if named > 0 && named != devices.len() {
            return Err(crate::run_config::ConfigError::Invalid {
                key: "train.devices".into(),
                message: format!("names {named} devices but {} were opened", devices.len()),
            }
            .into());
        }
        cfg.train.check_shared_by(devices.len())?;
        let d = &cfg.data;
        let (store, corpus_notes) = open_store(&d.fasta.paths(), dir)?;
        let genome = Arc::new(store);
        let mut split = split_genome(
            &genome.lengths(),
            &SplitConfig {
                unit: SplitUnit::Block(d.split_block),
                fractions: [
                    1.0 - d.valid_fraction - d.test_fraction,
                    d.valid_fraction,
                    d.test_fraction,
                ],
                seed: cfg.seed,
            },
        )?;
        if let SequenceStore::Packed(corpus) = genome.as_ref() {
            corpus::apply_split_overrides(&mut split, corpus);
        }
        let window_weights = match genome.as_ref() {
            SequenceStore::Packed(corpus) => corpus::window_weights(
                corpus,
                &split.train,
                d.context,
                d.genome_weights == crate::run_config::GenomeWeights::Uniform,
            ),
            SequenceStore::Genome(_) => None,
        };
        if window_weights.is_some() && d.stride.is_some() {
            return Err(crate::run_config::ConfigError::Invalid {
                key: "data.stride".into(),
                message: "genome weights (manifest weights or data.genome_weights = \"uniform\") need the random window sampler; remove data.stride".into(),
            }
            .into());
        }
        let annotations: Option<Vec<Interval>> = match &d.annotations {
            None => None,
            Some(path) => {
                let name = path.to_string_lossy().to_lowercase();
                Some(if name.contains(".gff") {
                    read_gff3(path)?
                } else {
                    read_bed(path)?
                })
            }
        };
        let (weights, class_key) = (d.class_weights.clone(), d.class_key);
        let names = genome.names();
        let index = |segments: &[dnalm_seq::window::Segment],
                     weights: &ClassWeights,
                     seed: u64|
         -> Result<Option<RarityBalancedSampler>, TrainError> {
            match &annotations {
                None => Ok(None),
                Some(anns) => Ok(Some(RarityBalancedSampler::new(
                    &names, segments, anns, class_key, weights, d.context, seed,
                )?)),
            }
        };
        let objectives: Vec<_> = cfg
            .objectives
            .iter()
            .map(|w| (w.objective.clone(), w.weight))
            .collect();
        let tokenizer = Arc::new(run.tokenizer.clone());
        let (train_source, train_index) = if d.sampler == SamplerKind::Balanced {
            let sampler = index(&split.train, &weights, cfg.seed)?.ok_or_else(|| {
                crate::run_config::ConfigError::Invalid {
                    key: "data.sampler".into(),
                    message: "balanced sampling needs annotations".into(),
                }
            })?;
            (WindowSource::Balanced(sampler), None)
        } else {
            let source = match d.stride {
                Some(stride) => WindowSource::Tiled(
                    WindowSpec::new(d.context, stride)?
                        .tile(&split.train)
                        .collect(),
                ),
                None => WindowSource::Uniform(match &window_weights {
                    Some(w) => {
                        RandomWindows::weighted(&split.train, d.context, cfg.seed, &|r| w[r])?
                    }
                    None => RandomWindows::new(&split.train, d.context, cfg.seed)?,
                }),
            };
            (
                source,
                index(&split.train, &ClassWeights::Uniform, cfg.seed)?,
            )
        };
        let batch = |seed| BatchConfig {
            batch_size: cfg.train.batch_size,
            reverse_complement: d.reverse_complement,
            seed,
        };
        let train = Arc::new(BatchPipeline::with_annotations(
            genome.clone(),
            tokenizer.clone(),
            objectives.clone(),
            train_source,
            train_index,
            batch(cfg.seed),
        )?);
        let valid_windows = RandomWindows::new(&split.valid, d.context, cfg.seed).map_err(|e| {
            crate::run_config::ConfigError::Invalid {
                key: "data.valid_fraction".into(),
                message: format!("the validation split has no room for a {}-base window ({e}); raise valid_fraction or split_block", d.context),
            }
        })?;
        let valid_seed = cfg.seed ^ 0x9e37_79b9_7f4a_7c15;
        let valid = BatchPipeline::with_annotations(
            genome.clone(),
            tokenizer,
            objectives,
            WindowSource::Uniform(valid_windows),
            index(&split.valid, &ClassWeights::Uniform, valid_seed)?,
            batch(valid_seed),
        )?;
        Ok(Trainer {
            run,
            dir: dir.to_path_buf(),
            device,
            devices,
            train,
            valid,
            corpus_notes,
        })
    }

    /// The resolved run this trainer runs.
    pub fn run_config(&self) -> &ResolvedRun {
        &self.run
    }

    /// Trains to the budget (or until stopped) and returns what happened.
    pub fn run(
        &self,
        options: &RunOptions,
        observer: &mut dyn Observer,
    ) -> Result<RunSummary, TrainError> {
        let cfg = &self.run.config;
        let total = cfg.train.steps;
        let Start {
            mut model,
            mut optim,
            step: start,
            mut tokens_seen,
            mut last_eval,
            notes,
        } = self.prepare(options.resume)?;
        for note in &notes {
            observer.on_note(note);
        }
        let metrics_path = self.dir.join(METRICS_FILE);
        truncate_metrics(&metrics_path, start)?;
        let mut metrics = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .map_err(io_err(&metrics_path))?;
        let accumulation = cfg.train.accumulation as u64;
        let mut batches = self
            .train
            .clone()
            .prefetch(start * accumulation, cfg.train.prefetch);
        let began = Instant::now();
        let mut tokens_this_run = 0u64;
        let mut checkpoint: Option<PathBuf> = None;
        let mut step = start;
        let stop_at = options.stop_at.unwrap_or(u64::MAX).min(total);
        let mut interrupted = false;
        let peers = self.devices.len();
        let recompute = cfg.train.activation_checkpointing;
        let mut replicas: Vec<(DnaLm, AdamW)> = self.devices[1..]
            .iter()
            .map(|d| (model.clone().fork(d), optim.to_device(&d.clone().inner())))
            .collect();
        while step < total {
            let t0 = Instant::now();
            let lr = cfg.optim.lr_at(step, total);
            let mut micros = Vec::with_capacity(accumulation as usize);
            let mut tokens = 0usize;
            for micro in 0..accumulation {
                let Some(batch) = batches.next() else {
                    break;
                };
                tokens += batch.padding_mask.iter().filter(|&&r| r).count();
                micros.push(Micro {
                    index: micro as usize,
                    dropout_seed: cfg.seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
                        ^ (step * accumulation + micro).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    batch,
                });
            }
            let shares = deal(&micros, peers);
            let outputs: Vec<PeerOutput> = if peers == 1 {
                vec![peer_step(
                    &model,
                    &shares[0],
                    accumulation as usize,
                    recompute,
                )?]
            } else {
                let models: Vec<&DnaLm> = std::iter::once(&model)
                    .chain(replicas.iter().map(|(m, _)| m))
                    .collect();
                std::thread::scope(|scope| {
                    let handles: Vec<_> = models
                        .iter()
                        .zip(&shares)
                        .map(|(m, share)| {
                            scope.spawn(move || {
                                peer_step(m, share, accumulation as usize, recompute)
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .enumerate()
                        .map(|(p, h)| match h.join() {
                            Ok(result) => result.map_err(TrainError::from),
                            Err(panic) => Err(TrainError::Peer {
                                peer: p,
                                device: format!("{:?}", self.devices[p]),
                                message: panic_text(&panic),
                                kept: match latest_checkpoint(&self.dir) {
                                    Some(c) => {
                                        format!("the last checkpoint, {}, is intact", c.display())
                                    }
                                    None => "no checkpoint had been written yet".into(),
                                },
                            }),
                        })
                        .collect::<Result<Vec<_>, _>>()
                })?
            };
            // The step's results in micro-batch order, whichever peer ran them.
            let mut results: Vec<&MicroResult> =
                outputs.iter().flat_map(|o| o.micros.iter()).collect();
            results.sort_by_key(|r| r.index);
            let (mut loss_sum, mut targets, mut correct) = (0.0, 0usize, 0usize);
            for r in &results {
                if !r.loss.is_finite() {
                    return Err(TrainError::NonFinite {
                        step: step + 1,
                        value: r.loss,
                        kept: match latest_checkpoint(&self.dir) {
                            Some(c) => format!("the last good checkpoint is {}", c.display()),
                            None => "no checkpoint had been written yet".into(),
                        },
                    });
                }
                loss_sum += r.loss;
                targets += r.targets;
                correct += r.correct;
            }
            let micro_batches = results.len();
            let mut grad_norm = 0.0;
            let grads: Vec<Option<GradientsParams>> =
                outputs.into_iter().map(|o| o.grads).collect();
            if grads.iter().any(Option::is_some) {
                let mut grads: Vec<GradientsParams> =
                    grads.into_iter().map(Option::unwrap_or_default).collect();
                if peers > 1 {
                    all_reduce_gradients(&model, &mut grads, &self.devices);
                }
                // Every peer applies the same update; the first device's model is the one
                // validated and saved.
                let mut grads = grads.into_iter();
                if let Some(g) = grads.next() {
                    let (updated, norm) = optim.step(model, g, lr);
                    model = updated;
                    grad_norm = norm;
                }
                replicas = replicas
                    .into_iter()
                    .zip(grads)
                    .map(|((replica, mut replica_optim), g)| {
                        let (updated, _) = replica_optim.step(replica, g, lr);
                        (updated, replica_optim)
                    })
                    .collect();
            }
            step += 1;
            tokens_seen += tokens as u64;
            tokens_this_run += tokens as u64;
            let seconds = t0.elapsed().as_secs_f64();
            let record = StepRecord {
                kind: "train".into(),
                step,
                loss: if micro_batches > 0 {
                    loss_sum / micro_batches as f64
                } else {
                    0.0
                },
                accuracy: ratio(correct, targets),
                lr,
                grad_norm,
                tokens,
                tokens_per_s: tokens as f64 / seconds.max(1e-9),
                elapsed_s: began.elapsed().as_secs_f64(),
            };
            write_line(&mut metrics, &record, &metrics_path)?;
            observer.on_step(&record, total);
            let stopping = options.stop.load(Ordering::SeqCst) || step >= stop_at;
            let last = step == total;
            if step.is_multiple_of(cfg.train.eval_every) || last {
                let eval = self.evaluate(&model, step)?;
                write_line(&mut metrics, &eval, &metrics_path)?;
                observer.on_eval(&eval);
                last_eval = Some(eval);
            }
            if step.is_multiple_of(cfg.train.save_every) || last || stopping {
                let state = TrainerState {
                    step,
                    tokens_seen,
                    config: cfg.to_toml(),
                    last_eval: last_eval.clone(),
                };
                let dir = self.save_checkpoint(&model, &optim, &state)?;
                observer.on_checkpoint(&dir);
                checkpoint = Some(dir);
            }
            if stopping && !last {
                interrupted = true;
                break;
            }
        }
        let seconds = began.elapsed().as_secs_f64();
        Ok(RunSummary {
            start_step: start,
            step,
            interrupted,
            checkpoint,
            last_eval,
            tokens_per_s: tokens_this_run as f64 / seconds.max(1e-9),
            notes,
        })
    }

    /// A fresh model and optimiser, or those of the latest checkpoint.
    fn prepare(&self, resume: bool) -> Result<Start, TrainError> {
        let cfg = &self.run.config;
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let scan = CheckpointScan::of(&self.dir);
        let mut notes = scan.warnings();
        notes.extend(self.corpus_notes.iter().cloned());
        let latest = scan.latest().map(Path::to_path_buf);
        let config_path = self.dir.join(CONFIG_FILE);
        let started = fs::symlink_metadata(self.dir.join(METRICS_FILE)).is_ok();
        if !resume && (latest.is_some() || started) {
            let message = if latest.is_some() {
                "already holds a run; pass --resume to continue it or choose another output directory"
            } else {
                "holds a run that stopped before its first checkpoint; pass --resume to restart \
                 it from step 0, or choose another output directory"
            };
            return Err(TrainError::RunDir {
                path: self.dir.clone(),
                message: message.into(),
            });
        }
        let Some(checkpoint) = latest else {
            if resume && !started && fs::symlink_metadata(&config_path).is_err() {
                return Err(TrainError::RunDir {
                    path: self.dir.clone(),
                    message: "has no checkpoint to resume from (and holds no run)".into(),
                });
            }
            if resume {
                notes.push(format!(
                    "{}: no complete checkpoint to resume from; restarting from step 0",
                    self.dir.display()
                ));
            }
            write_atomically(&config_path, cfg.to_toml().as_bytes())?;
            let model = DnaLm::seeded(&self.run.model, &self.device, cfg.seed)?;
            return Ok(Start {
                model,
                optim: AdamW::new(cfg.optim.clone()),
                step: 0,
                tokens_seen: 0,
                last_eval: None,
                notes,
            });
        };
        let state_path = checkpoint.join(STATE_FILE);
        let text = fs::read_to_string(&state_path).map_err(io_err(&state_path))?;
        let state: TrainerState = serde_json::from_str(&text).map_err(|e| TrainError::RunDir {
            path: state_path.clone(),
            message: e.to_string(),
        })?;
        let saved = RunConfig::parse(&state.config, &state_path)?;
        let differences = saved.differences(cfg);
        if !differences.is_empty() {
            return Err(TrainError::RunDir {
                path: checkpoint,
                message: format!(
                    "was trained with a different config ({} differ); only train.steps may change on resume",
                    differences.join(", ")
                ),
            });
        }
        write_atomically(&config_path, cfg.to_toml().as_bytes())?;
        let model = DnaLm::load(&checkpoint, &self.device)?;
        let mut optim = AdamW::new(cfg.optim.clone());
        let optim_path = checkpoint.join(OPTIMIZER_FILE);
        let tensors = read_safetensors(&optim_path)?;
        optim
            .load_state(&tensors, state.step, &self.device.clone().inner())
            .map_err(|message| TrainError::RunDir {
                path: optim_path,
                message,
            })?;
        Ok(Start {
            model,
            optim,
            step: state.step,
            tokens_seen: state.tokens_seen,
            last_eval: state.last_eval,
            notes,
        })
    }

    /// Loss, perplexity and accuracy on the fixed validation batches.
    pub fn evaluate(&self, model: &DnaLm, step: u64) -> Result<EvalRecord, TrainError> {
        let model = model.valid();
        let (mut weighted, mut targets, mut correct) = (0.0, 0usize, 0usize);
        let mut kind = TargetKind::Token;
        for b in 0..self.run.config.train.eval_batches {
            let batch = self.valid.batch(b);
            kind = batch.target_kind;
            if let Some(out) = batch_loss(&model, &batch, None)? {
                weighted += out.loss.into_scalar::<f32>() as f64 * out.targets as f64;
                targets += out.targets;
                correct += out.correct;
            }
        }
        let loss = if targets > 0 {
            weighted / targets as f64
        } else {
            0.0
        };
        Ok(EvalRecord {
            kind: "valid".into(),
            step,
            loss,
            perplexity: if kind == TargetKind::Token {
                loss.exp()
            } else {
                f64::NAN
            },
            accuracy: ratio(correct, targets),
            targets,
        })
    }

    /// The validation batches (for baselines computed on exactly the same positions).
    pub fn validation_batches(&self) -> Vec<crate::data::Batch> {
        (0..self.run.config.train.eval_batches)
            .map(|b| self.valid.batch(b))
            .collect()
    }

    /// Training batches `0..n` (for baselines fitted on training data).
    pub fn training_batches(&self, n: u64) -> impl Iterator<Item = crate::data::Batch> + '_ {
        (0..n).map(|b| self.train.batch(b))
    }

    fn save_checkpoint(
        &self,
        model: &DnaLm,
        optim: &AdamW,
        state: &TrainerState,
    ) -> Result<PathBuf, TrainError> {
        let name = checkpoint_name(state.step);
        let final_dir = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        model.save(&tmp)?;
        self.run
            .tokenizer
            .save(&tmp)
            .map_err(|e| TrainError::RunDir {
                path: tmp.clone(),
                message: e.to_string(),
            })?;
        let state_path = tmp.join(STATE_FILE);
        let json = serde_json::to_string_pretty(state).unwrap_or_default();
        fs::write(&state_path, json + "\n").map_err(io_err(&state_path))?;
        let mut meta = std::collections::HashMap::new();
        meta.insert("step".to_string(), optim.steps.to_string());
        write_safetensors(
            &tmp.join(OPTIMIZER_FILE),
            &optim.state_tensors(),
            Some(meta),
        )?;
        if final_dir.exists() {
            fs::remove_dir_all(&final_dir).map_err(io_err(&final_dir))?;
        }
        fs::rename(&tmp, &final_dir).map_err(io_err(&final_dir))?;
        prune(&self.dir, self.run.config.train.keep_last, &final_dir).map_err(io_err(&self.dir))?;
        Ok(final_dir)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn write_line<T: Serialize>(file: &mut fs::File, value: &T, path: &Path) -> Result<(), TrainError> {
    let line = serde_json::to_string(value).unwrap_or_default();
    writeln!(file, "{line}").map_err(io_err(path))?;
    file.flush().map_err(io_err(path))
}

/// Drops metric lines after `step` (a resumed run rewrites them exactly). The file is rewritten
/// through a temporary file and a rename, so a symbolic link in its place is replaced by a
/// regular file (its target is never truncated, and the appends that follow go to the run
/// directory).
fn truncate_metrics(path: &Path, step: u64) -> Result<(), TrainError> {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    let text = if meta.file_type().is_symlink() {
        // Read through the link (a dangling one holds nothing); never written through it.
        fs::read_to_string(path).unwrap_or_default()
    } else {
        fs::read_to_string(path).map_err(io_err(path))?
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<BTreeMap<String, serde_json::Value>>(l)
                .ok()
                .and_then(|m| m.get("step").and_then(serde_json::Value::as_u64))
                .is_some_and(|s| s <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    write_atomically(path, kept.as_bytes())
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so that
/// a kill never leaves a half-written file and a symbolic link at `path` is replaced, not
/// followed (its target is never written).
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    Ok(dnalm_seq::write_atomic(path, |w| w.write_all(bytes))?)
}

/// Reads `metrics.jsonl`: training records and validation records.
pub fn read_metrics(dir: &Path) -> Result<(Vec<StepRecord>, Vec<EvalRecord>), TrainError> {
    let path = dir.join(METRICS_FILE);
    let text = fs::read_to_string(&path).map_err(io_err(&path))?;
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for line in text.lines() {
        if let Ok(r) = serde_json::from_str::<StepRecord>(line) {
            if r.kind == "train" {
                train.push(r);
                continue;
            }
        }
        if let Ok(r) = serde_json::from_str::<EvalRecord>(line) {
            valid.push(r);
        }
    }
    Ok((train, valid))
}
