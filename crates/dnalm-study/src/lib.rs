//! Studies: a grid over pretraining knobs, each cell pretrained with the same budget and
//! evaluated on a task suite beside the baselines, then analysed per task (easy / hard /
//! knob-sensitive, with effect sizes and error bars over seeds).
//!
//! A study is a TOML file ([`StudySpec`]): a base run config, overrides common to every cell,
//! knobs (each a config key with values, or named values that set several keys), seeds, a budget
//! (tokens, bases or seconds of training per cell) and the evaluation. Cells run one after
//! another ([`run_study`]); each writes `cells/<cell>/seed-<s>/result.json` when done, so a
//! killed study picks up at the first unfinished cell (resuming that cell's pretraining from its
//! last checkpoint). [`analyse`] classifies each task from the results and
//! [`write_study_report`] writes `study.json`, `study.md` and `plots/`.
//!
//! This crate only plans, runs and reports: pretraining is `dnalm-train`'s and evaluation
//! `dnalm-eval`'s.
//!
//! ```no_run
//! use std::sync::{atomic::AtomicBool, Arc};
//! use dnalm_study::{run_study, StudySpec};
//!
//! let spec = StudySpec::load("studies/context.toml".as_ref())?;
//! let stop = Arc::new(AtomicBool::new(false));
//! let mut progress = |message: &str| eprintln!("{message}");
//! let study = run_study(&spec, "runs/study-context".as_ref(), dnalm_model::DeviceName::Cpu, stop, &mut progress)?;
//! for task in &study.analysis {
//!     println!("{}: {}", task.task, task.class);
//! }
//! # Ok::<(), dnalm_study::StudyError>(())
//! ```

mod analysis;
mod report;
mod run;
mod spec;

use std::path::PathBuf;

pub use analysis::{
    analyse, CellResult, KnobEffect, StudyResults, TaskAnalysis, TaskClass, TaskScore,
};
pub use report::write_study_report;
pub use run::run_study;
pub use spec::{Budget, Cell, Knob, StudyEval, StudySpec};

/// Everything that can go wrong in a study.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StudyError {
    /// The study file is invalid.
    #[error("{}: {message}", path.display())]
    Spec {
        /// The study file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The output directory holds another study.
    #[error("{} holds a different study ({}); choose another output directory to keep both", out.display(), out.join("study.toml").display())]
    DifferentStudy {
        /// The output directory.
        out: PathBuf,
    },
    /// A `tasks` entry is neither a task nor a suite of tasks.
    #[error("{}: neither a task (no task.json) nor a suite of tasks", path.display())]
    NotATask {
        /// The entry.
        path: PathBuf,
    },
    /// The base run config is invalid.
    #[error(transparent)]
    BaseConfig(#[from] dnalm_train::run_config::ConfigError),
    /// A cell's run config is invalid.
    #[error("cell [{cell}]: {source}")]
    CellConfig {
        /// The cell's label.
        cell: String,
        /// The cause.
        #[source]
        source: dnalm_train::run_config::ConfigError,
    },
    /// A cell's pretraining failed.
    #[error("cell [{cell}]: {source}")]
    CellTraining {
        /// The cell's label.
        cell: String,
        /// The cause.
        #[source]
        source: Box<dnalm_train::trainer::TrainError>,
    },
    /// A cell's pretraining finished without a checkpoint to evaluate.
    #[error("cell [{cell}]: pretraining left no checkpoint")]
    NoCheckpoint {
        /// The cell's label.
        cell: String,
    },
    /// A result file of an earlier run cannot be read back.
    #[error("{}: unreadable ({message}); delete it to redo this part of the study", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// Results could not be serialised.
    #[error("cannot serialise the study's results: {0}")]
    Json(#[source] serde_json::Error),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The evaluation of a cell (or the baselines) failed.
    #[error(transparent)]
    Eval(#[from] dnalm_eval::EvalError),
    /// A file could not be written.
    #[error(transparent)]
    Seq(#[from] dnalm_seq::SeqError),
}

impl StudyError {
    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StudyError::Io {
            path: path.into(),
            source,
        }
    }
}
