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
    tensors::{named_parameters, read_safetensors, write_safetensors},
    Architecture, AttentionPattern, Checkpoint, DnaLm, ModelInput,
};
use dnalm_seq::task::{LabelledSequence, Task, TaskKind};
use dnalm_tokenize::{AnyTokenizer, Tokenizer};
use serde::{Deserialize, Serialize};

use crate::{
    features::embed::ModelSpec,
    features::tasks::{check_tokenizer, split_rows, targets},
    probes::concat_targets,
    probes::fit::{fit, predict, FitOptions, SeedRuns},
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
    /// Pooling of the encoder output.
    pub pooling: Pooling,
    /// Regression targets' mean and sd (the head predicts standardised values).
    pub target_scale: Option<(f64, f64)>,
    /// Median length (bases) of the training sequences: the window `dnalm label` slides.
    #[serde(default)]
    pub seq_len: Option<usize>,
}

/// Fine-tuning settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinetuneOptions {
    /// Budget and optimiser.
    pub fit: FitOptions,
    /// Train only the last N blocks (and the head); `None` trains everything.
    pub train_last: Option<usize>,
    /// Pooling of the encoder output for the head.
    pub pooling: Pooling,
    /// Independent runs (seeds `fit.seed ..`).
    pub seeds: usize,
}

impl Default for FinetuneOptions {
    fn default() -> Self {
        FinetuneOptions {
            fit: FitOptions {
                epochs: 5,
                batch_size: 32,
                lr: 1e-4,
                weight_decay: 0.01,
                patience: 2,
                seed: 0,
            },
            train_last: None,
            pooling: Pooling::Mean,
            seeds: 1,
        }
    }
}

/// Test results of fine-tuning: metrics and outputs per seed.
pub type FinetuneReport = SeedRuns;

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

impl SequenceClassifier {
    /// Outputs `[rows, outputs]` for token rows.
    pub fn forward(
        &self,
        rows: &[Vec<u32>],
        pooling: Pooling,
        dropout_seed: Option<u64>,
    ) -> Result<Tensor<2>, EvalError> {
        let pattern = match self.encoder.config.architecture {
            Architecture::Encoder => AttentionPattern::Bidirectional,
            Architecture::Decoder => AttentionPattern::Causal,
        };
        let mut input = ModelInput::from_rows(rows, pattern);
        input.dropout_seed = dropout_seed;
        let device = self.encoder.device();
        let real: Vec<f32> = input
            .mask
            .padding
            .as_ref()
            .map(|p| p.iter().map(|&r| r as u8 as f32).collect())
            .unwrap_or_else(|| vec![1.0; input.rows * input.len]);
        let real = Tensor::<2>::from_data(TensorData::new(real, [input.rows, input.len]), &device);
        let hidden = self.encoder.forward(&input)?;
        Ok(self.head.forward(pool(hidden, real, pooling)))
    }
}

/// Fine-tunes `model` on `task` once per seed; returns test metrics and the first seed's network.
pub fn finetune(
    model: &ModelSpec,
    task: &Task,
    options: &FinetuneOptions,
) -> Result<(FinetuneReport, SequenceClassifier, HeadInfo, AnyTokenizer), EvalError> {
    let [train, valid, test] = split_rows(task)?;
    let encoder = model.load()?;
    check_tokenizer(task, &encoder)?;
    let tokenizer = encoder.tokenizer.clone();
    let config = encoder.model.config.clone();
    let max = config.max_positions;
    let all: Vec<&LabelledSequence> = train.iter().chain(&valid).copied().collect();
    let seqs: Vec<&[u8]> = all.iter().map(|r| r.sequence.as_slice()).collect();
    let rows = token_rows(&tokenizer, max, &seqs);
    let test_seqs: Vec<&[u8]> = test.iter().map(|r| r.sequence.as_slice()).collect();
    let test_token_rows = token_rows(&tokenizer, max, &test_seqs);
    let y = concat_targets(&targets(task, &train), &targets(task, &valid));
    let (outputs, regression) = match &task.spec.kind {
        TaskKind::Classification { num_classes, .. } => (*num_classes as usize, false),
        TaskKind::Regression => (1, true),
    };
    let pooling = options.pooling;
    let forward = |net: &SequenceClassifier, idx: &[usize], seed: Option<u64>| {
        let r: Vec<Vec<u32>> = idx.iter().map(|&i| rows[i].clone()).collect();
        net.forward(&r, pooling, seed)
    };
    let test_forward = |net: &SequenceClassifier, idx: &[usize], _: Option<u64>| {
        let r: Vec<Vec<u32>> = idx.iter().map(|&i| test_token_rows[i].clone()).collect();
        net.forward(&r, pooling, None)
    };
    let train_idx: Vec<usize> = (0..train.len()).collect();
    let valid_idx: Vec<usize> = (train.len()..all.len()).collect();
    let test_idx: Vec<usize> = (0..test.len()).collect();
    let test_targets = targets(task, &test);
    let (mut report, mut first) = (SeedRuns::default(), None);
    for s in 0..options.seeds.max(1) as u64 {
        let mut o = options.fit.clone();
        o.seed = options.fit.seed.wrapping_add(s);
        let device = crate::train_device();
        let weights = named_parameters(&encoder.model);
        let mut enc = load_parameters(DnaLm::new(&config, &device)?, &weights, &model.dir)?;
        if let Some(n) = options.train_last {
            let cut = config.n_layers.saturating_sub(n);
            enc.embed = enc.embed.no_grad();
            enc.positions = enc.positions.map(Module::no_grad);
            enc.embed_norm = enc.embed_norm.map(Module::no_grad);
            enc.token_type = enc.token_type.map(|p| p.set_require_grad(false));
            enc.blocks = enc
                .blocks
                .into_iter()
                .enumerate()
                .map(|(i, b)| if i < cut { b.no_grad() } else { b })
                .collect();
        }
        let head = dnalm_model::io::reinitialize(
            SequenceHead::new(config.d_model, outputs, &device),
            o.seed,
        );
        let net = SequenceClassifier { encoder: enc, head };
        let fitted = fit(net, &forward, &y, &train_idx, &valid_idx, &o)?;
        let out = predict(&fitted, &test_forward, &test_idx, o.batch_size)?;
        report.record(fitted.epochs_run, &test_targets, out);
        if first.is_none() {
            first = Some((fitted.net.valid(), fitted.target_scale));
        }
    }
    let (net, target_scale) = first.ok_or_else(|| EvalError::BadOption {
        option: "seeds",
        message: "no fine-tuning run".into(),
    })?;
    let info = HeadInfo {
        task: task.spec.name.clone(),
        label_names: match &task.spec.kind {
            TaskKind::Classification {
                label_names,
                num_classes,
            } => label_names
                .clone()
                .unwrap_or_else(|| (0..*num_classes).map(|c| c.to_string()).collect()),
            TaskKind::Regression => Vec::new(),
        },
        regression,
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
    };
    Ok((report.summarise(), net, info, tokenizer))
}

/// Writes a fine-tuned checkpoint to `dir` atomically (a temp directory renamed into place).
pub fn save_finetuned(
    dir: &Path,
    net: &SequenceClassifier,
    info: &HeadInfo,
    tokenizer: &AnyTokenizer,
) -> Result<(), EvalError> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| EvalError::io(parent, e))?;
    let tmp = dnalm_seq::temp_dir_in(parent, ".finetune-").map_err(|e| EvalError::io(parent, e))?;
    net.encoder.save(tmp.path())?;
    tokenizer.save(tmp.path())?;
    write_safetensors(
        &tmp.path().join("head.safetensors"),
        &named_parameters(&net.head),
        None,
    )?;
    let json = serde_json::to_string_pretty(info).map_err(EvalError::Json)?;
    let head_json = tmp.path().join("head.json");
    std::fs::write(&head_json, json).map_err(|e| EvalError::io(&head_json, e))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
    }
    let kept: PathBuf = tmp.keep();
    std::fs::rename(&kept, dir).map_err(|e| EvalError::io(dir, e))?;
    Ok(())
}

/// Loads a fine-tuned checkpoint (inference device).
pub fn load_finetuned(
    dir: &Path,
) -> Result<(SequenceClassifier, HeadInfo, AnyTokenizer), EvalError> {
    let head_json = dir.join("head.json");
    let text = std::fs::read_to_string(&head_json).map_err(|e| EvalError::io(&head_json, e))?;
    let info: HeadInfo = serde_json::from_str(&text).map_err(|e| EvalError::Format {
        path: head_json.clone(),
        message: format!("not a dnalm head.json: {e}"),
    })?;
    let device = dnalm_model::cpu();
    let Checkpoint {
        model: encoder,
        tokenizer,
        ..
    } = Checkpoint::load(dir, &device)?;
    let outputs = if info.regression {
        1
    } else {
        info.label_names.len()
    };
    let head_path = dir.join("head.safetensors");
    let head = load_parameters(
        SequenceHead::new(encoder.config.d_model, outputs, &device),
        &read_safetensors(&head_path)?,
        &head_path,
    )?;
    Ok((SequenceClassifier { encoder, head }, info, tokenizer))
}
