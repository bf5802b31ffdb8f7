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

pub mod bench;
pub mod features;
pub mod finetune;
pub mod label;
pub mod metrics;
pub mod probes;
pub mod relevance;
pub mod report;
pub mod score;

use std::path::PathBuf;

use dnalm_model::burn::tensor::Device;

pub use features::{Labelled, Targets};
pub use metrics::{ClassificationMetrics, RegressionMetrics, Summary};
pub use probes::{run_probe, ProbeKind, ProbeOptions, ProbeReport, SplitFeatures};

/// Everything that can go wrong in evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The inputs are inconsistent or unusable (counts, labels, NaN...).
    #[error("{0}")]
    Input(String),
    /// A numerical routine failed.
    #[error("{0}")]
    Numeric(String),
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

/// The CPU device with autodiff, for everything dnalm-eval trains. Parameters are initialised
/// deterministically by name from a seed ([`dnalm_model::io::reinitialize`]), never from the
/// device's generator.
pub fn train_device() -> Device {
    dnalm_model::cpu().autodiff()
}
