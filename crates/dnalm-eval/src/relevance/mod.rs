//! How relevant a model's frozen embeddings are to a task, without training the model:
//! LogME and H-score ([`transfer`]) on the training split, and the task × task
//! [`affinity`] of one model's embeddings (probe transfer and the [`covariance`] similarity).

pub mod affinity;
pub mod covariance;
mod linalg;
pub mod transfer;

pub use affinity::{task_affinity, task_affinity_with, Affinity};
pub use covariance::{covariance_similarity, TaskCovariance};
pub use linalg::{gram, symmetric_eigen, Gram};
pub use transfer::{h_score, h_score_with, logme, logme_with};
