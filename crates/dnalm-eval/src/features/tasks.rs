//! Tasks as features: targets per split, embedding a whole task, the checks a task must pass.

use dnalm_seq::task::{Label, LabelledSequence, Split, Task, TaskKind};
use ndarray::Array2;

use dnalm_model::Checkpoint;
use dnalm_tokenize::{Tokenizer, TokenizerSpec};

use crate::{
    features::embed::{Embedder, Granularity},
    features::{Labelled, Targets},
    probes::per_base::{BaseMap, PerBaseFeatures, PerBaseSplit},
    probes::token::{TokenFeatures, TokenSplit},
    probes::SplitFeatures,
    EvalError,
};

/// Sequences per embedding call: bounds memory whatever the task's size.
const CHUNK: usize = 512;

/// The targets of `rows` under `task`'s kind.
pub fn targets(task: &Task, rows: &[&LabelledSequence]) -> Targets {
    match &task.spec.kind {
        TaskKind::Classification { num_classes, .. } => Targets::Classes {
            labels: rows
                .iter()
                .map(|r| match &r.label {
                    Label::Class(c) => *c,
                    Label::Value(v) => *v as u32,
                    Label::Labels(set) => set.first().copied().unwrap_or(0),
                    Label::Bases(c) => c.first().copied().unwrap_or(0) as u32,
                })
                .collect(),
            num_classes: *num_classes as usize,
        },
        TaskKind::Regression => Targets::Values(
            rows.iter()
                .map(|r| match &r.label {
                    Label::Value(v) => *v,
                    Label::Class(c) => *c as f64,
                    Label::Labels(set) => set.len() as f64,
                    Label::Bases(c) => c.len() as f64,
                })
                .collect(),
        ),
        TaskKind::MultiLabel { label_names } => {
            let mut m = Array2::from_elem((rows.len(), label_names.len()), false);
            for (i, r) in rows.iter().enumerate() {
                let set: &[u32] = match &r.label {
                    Label::Labels(set) => set,
                    Label::Class(c) => std::slice::from_ref(c),
                    Label::Value(_) | Label::Bases(_) => &[],
                };
                for &k in set.iter().filter(|&&k| (k as usize) < label_names.len()) {
                    m[[i, k as usize]] = true;
                }
            }
            Targets::Labels {
                present: m,
                names: label_names.clone(),
            }
        }
        TaskKind::PerBase { label_names } => Targets::Bases {
            classes: rows
                .iter()
                .map(|r| match &r.label {
                    Label::Bases(c) => c.clone(),
                    // Only a per-base label parses under a per-base task.
                    _ => vec![0; r.sequence.len()],
                })
                .collect(),
            names: label_names.clone(),
        },
    }
}

/// The rows of each split; fails if the task has no train or no test rows, or (classification)
/// a single class in training.
pub fn split_rows(task: &Task) -> Result<[Vec<&LabelledSequence>; 3], EvalError> {
    let rows = Split::ALL.map(|s| task.split(s).collect::<Vec<_>>());
    let name = &task.spec.name;
    if rows[0].is_empty() || rows[2].is_empty() {
        return Err(EvalError::TooLittleData {
            what: format!("task {name} ({})", task.dir.display()),
            message: format!(
                "needs train and test rows (has {} train, {} test)",
                rows[0].len(),
                rows[2].len()
            ),
        });
    }
    if let TaskKind::Classification { .. } | TaskKind::PerBase { .. } = task.spec.kind {
        let t = targets(task, &rows[0]);
        if t.classes_present() < 2 {
            return Err(EvalError::TooLittleData {
                what: format!("task {name} ({})", task.dir.display()),
                message: format!(
                    "the training split has a single class{}; nothing to learn",
                    if matches!(task.spec.kind, TaskKind::PerBase { .. }) {
                        " over all its bases"
                    } else {
                        ""
                    }
                ),
            });
        }
    }
    if let TaskKind::MultiLabel { label_names } = &task.spec.kind {
        check_label_counts(&targets(task, &rows[0]), label_names).map_err(|message| {
            EvalError::TooLittleData {
                what: format!("task {name} ({})", task.dir.display()),
                message,
            }
        })?;
    }
    Ok(rows)
}

/// Multi-label: every label must occur in training, and not in every row (a constant label
/// has nothing to learn); says which label fails.
pub(crate) fn check_label_counts(train: &Targets, names: &[String]) -> Result<(), String> {
    for (k, (positive, negative)) in train.label_counts().into_iter().enumerate() {
        let name = names.get(k).map_or_else(|| k.to_string(), String::clone);
        if positive == 0 || negative == 0 {
            return Err(format!(
                "label '{name}' is {} training row; every label needs rows with and without it",
                if positive == 0 { "in no" } else { "in every" }
            ));
        }
    }
    Ok(())
}

/// Fails if `task.json` names a tokenizer (`"tokenizer": "kmer:6"`, any
/// [`TokenizerSpec`](dnalm_tokenize::TokenizerSpec)) that differs from the encoder's.
pub fn check_tokenizer(task: &Task, encoder: &Checkpoint) -> Result<(), EvalError> {
    let Some(expected) = task.spec.tokenizer.as_deref() else {
        return Ok(());
    };
    let path = task.dir.join("task.json");
    let bad = |message: String| EvalError::Format {
        path: path.clone(),
        message,
    };
    let spec: TokenizerSpec = expected
        .parse()
        .map_err(|e| bad(format!("\"tokenizer\": {e}")))?;
    let ours = &encoder.tokenizer;
    let theirs = spec
        .build(ours.template())
        .map_err(|e| bad(format!("\"tokenizer\": {e}")))?;
    if theirs.kind() != ours.kind() || theirs.vocab().tokens() != ours.vocab().tokens() {
        return Err(EvalError::Mismatch {
            what: format!("task {}", task.spec.name),
            message: format!(
                "expects the {} tokenizer ({expected}) but {} uses {} with {} tokens",
                theirs.kind(),
                encoder.source,
                ours.kind(),
                ours.vocab().len()
            ),
        });
    }
    Ok(())
}

/// Features of every split of `task`, `features` turning one split's rows into a matrix.
fn split_features(
    task: &Task,
    mut features: impl FnMut(&[&LabelledSequence]) -> Result<Array2<f32>, EvalError>,
) -> Result<SplitFeatures, EvalError> {
    if let TaskKind::PerBase { .. } = task.spec.kind {
        // Refused before any feature is computed (`Labelled` refuses per-base targets too).
        return Err(EvalError::Mismatch {
            what: format!("task {} ({})", task.spec.name, task.dir.display()),
            message: "a per-base task has no single target per sequence for pooled features; \
                      its models are scored by the per-base head (`dnalm bench`, `dnalm finetune`)"
                .into(),
        });
    }
    let rows = split_rows(task)?;
    let mut part = |split: Split, rows: &[&LabelledSequence]| {
        Labelled::new(
            features(rows)?,
            targets(task, rows),
            &format!("{} {}", task.spec.name, split.as_str()),
        )
    };
    let [train, valid, test] = &rows;
    Ok(SplitFeatures {
        train: part(Split::Train, train)?,
        valid: part(Split::Valid, valid)?,
        test: part(Split::Test, test)?,
    })
}

/// Per-token embeddings of every split of `task` (the embedder must give one vector per token).
pub fn embed_task_tokens(embedder: &Embedder, task: &Task) -> Result<TokenFeatures, EvalError> {
    check_tokenizer(task, embedder.encoder())?;
    if embedder.options().granularity != Granularity::Token {
        return Err(EvalError::BadOption {
            option: "granularity",
            message: "per-token features need an embedder with token granularity".into(),
        });
    }
    let [train, valid, test] = split_rows(task)?;
    let split = |rows: &[&LabelledSequence]| -> Result<TokenSplit, EvalError> {
        let mut x = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(CHUNK) {
            let seqs: Vec<&[u8]> = chunk.iter().map(|r| r.sequence.as_slice()).collect();
            x.extend(embedder.embed(&seqs)?);
        }
        Ok(TokenSplit {
            x,
            y: targets(task, rows),
        })
    };
    Ok(TokenFeatures {
        train: split(&train)?,
        valid: split(&valid)?,
        test: split(&test)?,
    })
}

/// Per-token embeddings of every split of a per-base task with each sequence's [`BaseMap`] (from
/// the encoder's tokenizer offsets; the embedder must give one vector per token).
pub fn embed_task_bases(embedder: &Embedder, task: &Task) -> Result<PerBaseFeatures, EvalError> {
    let tokens = embed_task_tokens(embedder, task)?;
    let tokenizer = &embedder.encoder().tokenizer;
    let [train, valid, test] = split_rows(task)?;
    let split = |rows: &[&LabelledSequence], part: TokenSplit| -> Result<PerBaseSplit, EvalError> {
        let mut maps = Vec::with_capacity(rows.len());
        for (r, x) in rows.iter().zip(&part.x) {
            let (mut ids, mut offsets) = (Vec::new(), Vec::new());
            tokenizer.tokenize_into(&r.sequence, &mut ids, Some(&mut offsets));
            if ids.len() != x.nrows() {
                return Err(EvalError::Mismatch {
                    what: format!("sequence {}", r.id),
                    message: format!(
                        "{} token vectors for {} tokens (per-base tasks need one vector per token)",
                        x.nrows(),
                        ids.len()
                    ),
                });
            }
            maps.push(BaseMap::from_offsets(&offsets, r.sequence.len()));
        }
        Ok(PerBaseSplit {
            x: part.x,
            maps,
            y: part.y,
        })
    };
    Ok(PerBaseFeatures {
        train: split(&train, tokens.train)?,
        valid: split(&valid, tokens.valid)?,
        test: split(&test, tokens.test)?,
    })
}

/// Pooled embeddings of every split of `task`.
pub fn embed_task(embedder: &Embedder, task: &Task) -> Result<SplitFeatures, EvalError> {
    check_tokenizer(task, embedder.encoder())?;
    require_pooled(embedder.options().granularity)?;
    split_features(task, |rows| embed_rows(embedder, rows))
}

/// Pooled embeddings of `rows`, in order (the embedder must pool: one vector per sequence).
pub fn embed_rows(
    embedder: &Embedder,
    rows: &[&LabelledSequence],
) -> Result<Array2<f32>, EvalError> {
    require_pooled(embedder.options().granularity)?;
    let width = embedder.width();
    let mut x = Array2::<f32>::zeros((rows.len(), width));
    for (c, chunk) in rows.chunks(CHUNK).enumerate() {
        let seqs: Vec<&[u8]> = chunk.iter().map(|r| r.sequence.as_slice()).collect();
        let out = embedder.embed(&seqs)?;
        for (i, v) in out.iter().enumerate() {
            x.row_mut(c * CHUNK + i).assign(&v.row(0));
        }
    }
    Ok(x)
}

/// Features computed from the sequence alone (baselines) for every split.
pub fn features_task(
    task: &Task,
    features: impl Fn(&[u8]) -> Vec<f32> + Sync,
) -> Result<SplitFeatures, EvalError> {
    use rayon::prelude::*;
    split_features(task, |rows| {
        let vectors: Vec<Vec<f32>> = rows.par_iter().map(|r| features(&r.sequence)).collect();
        let width = vectors.first().map_or(0, Vec::len);
        let flat: Vec<f32> = vectors.into_iter().flatten().collect();
        Array2::from_shape_vec((rows.len(), width), flat)
            .map_err(|e| crate::shape_error("embedding", e))
    })
}

/// Fails unless the embedder gives one vector per sequence.
fn require_pooled(granularity: Granularity) -> Result<(), EvalError> {
    if granularity != Granularity::Sequence {
        return Err(EvalError::BadOption {
            option: "granularity",
            message: "probes need one vector per sequence (pooled embeddings)".into(),
        });
    }
    Ok(())
}
