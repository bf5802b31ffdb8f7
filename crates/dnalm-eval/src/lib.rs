//! Evaluation for dnalm: how much of a task's signal a model's embeddings carry, and at what cost.
//!
//! Data flows one way: a checkpoint and a task → [`embed`] (frozen features) → [`probe`]s and
//! [`transfer`] scores, beside the [`baseline`]s that use no pretraining at all; [`finetune`]
//! trains the encoder itself; [`bench`] runs a suite of tasks against a list of models and writes
//! the [`report`].
//!
//! Every number is a held-out test metric ([`metrics`]) with its spread over refits or seeds;
//! no test row informs any choice (hyperparameters are picked on the validation split).

pub mod baseline;
pub mod bench;
pub mod convert;
pub mod embed;
pub mod features;
pub mod finetune;
pub mod fit;
pub mod label;
pub mod logistic;
pub mod metrics;
pub mod plot;
pub mod probe;
pub mod report;
pub mod score;
pub mod store;
pub mod tasks;
pub mod transfer;

use std::path::PathBuf;

use dnalm_model::burn::tensor::Device;

pub use features::{Labelled, Targets};
pub use metrics::{ClassificationMetrics, RegressionMetrics, Summary};
pub use probe::{run_probe, ProbeKind, ProbeOptions, ProbeReport, SplitFeatures};

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
