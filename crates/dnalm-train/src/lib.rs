//! Pretraining for dnalm (third stage of the data flow: tokens -> objective examples -> batches).
//!
//! This crate holds the pretraining **objectives**, the **batch pipeline** ([`data`]: windows ->
//! tokens -> objective -> padded batches, each a pure function of `(seed, step)`), the **run
//! config** ([`run_config`], one TOML file, checked before training), the **loss** ([`loss`],
//! over loss positions only), **AdamW** ([`optim`]), the **trainer** ([`trainer`]: validation,
//! `metrics.jsonl`, atomic keep-last-N checkpoints, exact resume) and the order-k **Markov
//! baseline** ([`baseline`]). The objectives: each turns a window of tokens (with
//! each token's base span, and the window's annotations when given) into an
//! [`ObjectiveExample`]: model inputs, targets, a loss mask and an attention pattern. Examples are
//! plain vectors, independent of the tensor library; the pipeline and the burn trainer build on
//! them.
//!
//! | objective | module | attention | targets |
//! |---|---|---|---|
//! | masked LM (BERT 80/10/10) | [`objectives::mlm`] | bidirectional | masked tokens |
//! | span / n-gram masking, k-mer-aware | [`objectives::span`] | bidirectional | tokens whose bases no visible token reveals |
//! | next-token prediction | [`objectives::causal`] | causal | the next token |
//! | token deletion | [`objectives::deletion`] | bidirectional | 1 where a deletion happened just before |
//! | permutation LM | [`objectives::permutation`] | two-stream (content / query) | the last tokens of a random order |
//! | denoising | [`objectives::denoise`] | bidirectional | the original token everywhere |
//! | annotation-aware masking | [`objectives::annotation`] | bidirectional | whole masked elements + background |
//!
//! A run is a config file resolved against its tokenizer and data, then trained into a run
//! directory (`dnalm pretrain` does exactly this, with progress bars and Ctrl-C):
//!
//! ```no_run
//! use dnalm_train::{trainer::Silent, RunConfig, RunOptions, Trainer};
//!
//! let run = RunConfig::load("configs/mlm.toml".as_ref())?.resolve()?;
//! let device = dnalm_model::cpu().autodiff();
//! let trainer = Trainer::new(run, "runs/mlm".as_ref(), device)?;
//! let summary = trainer.run(&RunOptions::default(), &mut Silent)?;
//! println!("{} steps", summary.step);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod baseline;
pub mod checkpoints;
pub mod data;
pub mod loss;
pub mod objectives;
pub mod optim;
pub mod parallel;
pub mod run_config;
pub mod trainer;

pub use run_config::{ResolvedRun, RunConfig};
pub use trainer::{RunOptions, RunSummary, Trainer};

pub use objectives::{
    Attention, Objective, ObjectiveConfig, ObjectiveExample, ObjectiveKind, ObjectiveMixture,
    TargetKind, TokenWindow, VocabInfo,
};
