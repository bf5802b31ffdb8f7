//! Evaluation for dnalm: how much of a task's signal a model's embeddings carry, and at what cost.
//!
//! Modules follow the stages data flows through, one way: a checkpoint and a task →
//! [`features`] (frozen embeddings, task features, and the baselines' features that need no
//! pretraining) → [`probes`] (linear, kNN, MLP, under one protocol, with their fit loop) →
//! [`metrics`] → [`relevance`] (LogME, H-score, task affinity) → [`report`] (markdown and plots).
//! [`bench`](mod@bench) runs each stage once per task and model; [`finetune`] trains the encoder itself;
//! [`score`] and [`label`] use a model as a function.
//!
//! Every number is a held-out test metric ([`metrics`]) with its spread over refits or seeds;
//! no test row informs any choice (hyperparameters are picked on the validation split).

pub mod anchors;
pub mod bench;
pub mod features;
pub mod finetune;
pub mod label;
pub mod metrics;
pub mod multitask;
pub mod probes;
pub mod relevance;
pub mod report;
pub mod score;
#[cfg(test)]
mod test_support;

use std::path::PathBuf;

use dnalm_model::burn::tensor::Device;

pub use features::{Labelled, Targets};
pub use metrics::{ClassificationMetrics, MultiLabelMetrics, RegressionMetrics, Summary};
pub use probes::{run_probe, ProbeKind, ProbeOptions, ProbeReport, SplitFeatures};

/// Everything that can go wrong in evaluation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// Features, labels or splits do not fit together (`what` names the data).
    #[error("{what}: {message}")]
    Mismatch {
        /// The data (a split, a file, a routine's input).
        what: String,
        /// What does not fit.
        message: String,
    },
    /// There is too little to fit: too few rows, or a single class.
    #[error("{what}: {message}")]
    TooLittleData {
        /// The data.
        what: String,
        /// What is missing.
        message: String,
    },
    /// A feature value is NaN or infinite.
    #[error("{what}: embedding row {row}, column {column} is {value} (not finite)")]
    NonFinite {
        /// The data.
        what: String,
        /// 0-based row.
        row: usize,
        /// 0-based column.
        column: usize,
        /// The value.
        value: f32,
    },
    /// An option is out of range or does not fit the model.
    #[error("{option}: {message}")]
    BadOption {
        /// The option, as the CLI and the options structs name it.
        option: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The model cannot do what was asked.
    #[error("{model}: {message}")]
    Unsupported {
        /// The model (its source).
        model: String,
        /// Why.
        message: String,
    },
    /// A numerical routine failed.
    #[error("{routine}: {message}")]
    Numeric {
        /// The routine.
        routine: &'static str,
        /// What happened.
        message: String,
    },
    /// Results could not be serialised.
    #[error("cannot serialise results: {0}")]
    Json(#[source] serde_json::Error),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file has the wrong format.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A model could not be built, loaded or run.
    #[error(transparent)]
    Model(#[from] dnalm_model::ModelError),
    /// A sequence or task file could not be read.
    #[error(transparent)]
    Seq(#[from] dnalm_seq::SeqError),
    /// A tokenizer could not be loaded.
    #[error(transparent)]
    Tokenize(#[from] dnalm_tokenize::TokenizeError),
}

impl EvalError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EvalError::Io {
            path: path.into(),
            source,
        }
    }
}

/// A tensor that could not be read back to the host.
pub(crate) fn tensor_error(routine: &'static str, e: impl std::fmt::Debug) -> EvalError {
    EvalError::Numeric {
        routine,
        message: format!("reading a tensor back: {e:?}"),
    }
}

/// An array whose shape does not match its values (a bug if it happens).
pub(crate) fn shape_error(routine: &'static str, e: ndarray::ShapeError) -> EvalError {
    EvalError::Numeric {
        routine,
        message: e.to_string(),
    }
}

/// `device` with autodiff, for everything dnalm-eval trains. Parameters are initialised
/// deterministically by name from a seed ([`dnalm_model::io::reinitialize`]), never from the
/// device's generator, so a fit starts from the same weights on every device.
pub fn train_device(device: &Device) -> Device {
    device.clone().autodiff()
}
