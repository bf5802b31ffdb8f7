//! How relevant a model's frozen embeddings are to a task, without training the model:
//! LogME and H-score ([`transfer`]) on the training split, and the task × task
//! [`affinity`] of one model's embeddings.

pub mod affinity;
mod linalg;
pub mod transfer;

pub use affinity::{task_affinity, Affinity};
pub use linalg::{gram, symmetric_eigen};
pub use transfer::{h_score, h_score_with, logme, logme_with, Gram};
