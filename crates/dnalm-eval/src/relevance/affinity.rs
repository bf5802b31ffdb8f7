//! Task × task affinity of one model's embeddings, two views:
//! - **probe transfer** — how much of task B's signal task A's decision function carries: a
//!   linear probe trained on A's labels is applied to B's sequences, and a logistic regression on
//!   those outputs alone is fitted on B's training rows and scored (MCC) on B's test rows;
//! - **covariance similarity** (Wu, Zhang & Ré 2020, [`super::covariance`]) — how well the two
//!   tasks' training representations are aligned, from the inputs alone.

use serde::{Deserialize, Serialize};

use super::{covariance::similarity_matrix, linalg::Gram};
use crate::{
    features::{Labelled, Targets},
    probes::{score, LinearModel, SplitFeatures, Standardizer},
    EvalError,
};

/// Affinity of one model's task pairs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Affinity {
    /// Model.
    pub model: String,
    /// Task names (rows: source probe, columns: target task).
    pub tasks: Vec<String>,
    /// MCC on the target's test rows from the source probe's outputs; NaN where undefined.
    #[serde(deserialize_with = "crate::metrics::nullable::matrix")]
    pub mcc: Vec<Vec<f64>>,
    /// Covariance similarity score of the tasks' training representations (symmetric; the
    /// diagonal is not 1, see [`super::covariance`]); empty in results written before it existed.
    #[serde(default, deserialize_with = "crate::metrics::nullable::matrix")]
    pub covariance_similarity: Vec<Vec<f64>>,
    /// Directions each task's covariance keeps (99% of its eigenvalue sum).
    #[serde(default)]
    pub covariance_ranks: Vec<usize>,
}

/// Fixed L2 strength of the affinity probes (per training row).
const AFFINITY_L2: f64 = 1e-3;

/// Task × task affinity for one model's embedded tasks: probe transfer (classification tasks
/// only; others NaN) and covariance similarity (every task).
pub fn task_affinity(
    model: &str,
    tasks: &[(String, SplitFeatures)],
) -> Result<Affinity, EvalError> {
    let grams: Vec<Gram> = tasks
        .iter()
        .map(|(_, f)| Gram::of(f.train.x.view()))
        .collect();
    task_affinity_with(model, tasks, &grams)
}

/// [`task_affinity`] with the Gram matrix of each task's training features already computed
/// (as LogME computes them): their eigen-decompositions are shared, not redone.
pub fn task_affinity_with(
    model: &str,
    tasks: &[(String, SplitFeatures)],
    train_grams: &[Gram],
) -> Result<Affinity, EvalError> {
    let n = tasks.len();
    if train_grams.len() != n {
        return Err(EvalError::Mismatch {
            what: "task affinity".into(),
            message: format!("{} Gram matrices for {n} tasks", train_grams.len()),
        });
    }
    for ((name, f), g) in tasks.iter().zip(train_grams) {
        if g.rows() != f.train.x.nrows() {
            return Err(EvalError::Mismatch {
                what: "task affinity".into(),
                message: format!(
                    "{name}: a Gram matrix of {} rows for {} training rows",
                    g.rows(),
                    f.train.x.nrows()
                ),
            });
        }
        g.check(f.train.x.view())?;
    }
    let mut mcc = vec![vec![f64::NAN; n]; n];
    for (a, (_, source)) in tasks.iter().enumerate() {
        if !matches!(source.train.y, Targets::Classes { .. }) {
            continue;
        }
        let scaler = Standardizer::fit(source.train.x.view());
        let probe = LinearModel::logistic(
            &Labelled {
                x: scaler.apply(source.train.x.view()),
                y: source.train.y.clone(),
            },
            AFFINITY_L2,
            200,
        )?;
        for (b, (_, target)) in tasks.iter().enumerate() {
            if !matches!(target.train.y, Targets::Classes { .. }) {
                continue;
            }
            let outputs = |x: &ndarray::Array2<f32>| probe.predict(scaler.apply(x.view()).view());
            let train = Labelled {
                x: outputs(&target.train.x),
                y: target.train.y.clone(),
            };
            let transfer = LinearModel::logistic(&train, AFFINITY_L2, 200)?;
            let test_out = transfer.predict(outputs(&target.test.x).view());
            mcc[a][b] = score(&target.test.y, test_out.view())
                .get("mcc")
                .copied()
                .unwrap_or(f64::NAN);
        }
    }
    let (covariance_similarity, covariance_ranks) = similarity_matrix(train_grams)?;
    Ok(Affinity {
        model: model.to_string(),
        tasks: tasks.iter().map(|(t, _)| t.clone()).collect(),
        mcc,
        covariance_similarity,
        covariance_ranks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::Rng;
    use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};

    fn task(labels: impl Fn(&[f32]) -> u32, seed: u64) -> SplitFeatures {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut part = |n: usize| {
            let x = Array2::from_shape_fn((n, 6), |_| rng.random::<f32>() * 2.0 - 1.0);
            let y = x
                .rows()
                .into_iter()
                .map(|r| labels(r.as_slice().unwrap_or(&[])))
                .collect();
            Labelled {
                x,
                y: Targets::Classes {
                    labels: y,
                    num_classes: 2,
                },
            }
        };
        SplitFeatures {
            train: part(300),
            valid: part(50),
            test: part(200),
        }
    }

    #[test]
    fn affinity_is_high_between_tasks_sharing_a_signal_and_low_otherwise() {
        let a = task(|r| (r[0] > 0.0) as u32, 1);
        let same = task(|r| (r[0] > 0.1) as u32, 2);
        let other = task(|r| (r[5] > 0.0) as u32, 3);
        let tasks = vec![
            ("a".into(), a),
            ("same".into(), same),
            ("other".into(), other),
        ];
        let aff = task_affinity("m", &tasks).unwrap();
        assert_eq!(aff.tasks, ["a", "same", "other"]);
        assert!(aff.mcc[0][0] > 0.9, "{:?}", aff.mcc);
        assert!(aff.mcc[0][1] > 0.8, "{:?}", aff.mcc);
        assert!(aff.mcc[0][2].abs() < 0.25, "{:?}", aff.mcc);
        // The three tasks draw their inputs alike: covariance similarity sees no difference
        // between them, whatever their labels.
        let cov = &aff.covariance_similarity;
        assert_eq!(aff.covariance_ranks.len(), 3);
        assert!((cov[0][1] - cov[0][2]).abs() < 0.02, "{cov:?}");
        assert!((cov[0][1] - cov[0][0]).abs() < 0.02, "{cov:?}");
        // With the Gram matrices computed beforehand (as LogME's, in bench): the same numbers.
        let grams: Vec<Gram> = tasks
            .iter()
            .map(|(_, f)| Gram::of(f.train.x.view()))
            .collect();
        let shared = task_affinity_with("m", &tasks, &grams).unwrap();
        assert_eq!(shared.mcc, aff.mcc);
        assert_eq!(shared.covariance_similarity, aff.covariance_similarity);
        // Gram matrices of other rows are refused, naming the task, before any probe is fitted.
        let wrong: Vec<Gram> = tasks
            .iter()
            .map(|(_, f)| Gram::of(f.valid.x.view()))
            .collect();
        let err = task_affinity_with("m", &tasks, &wrong)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a: a Gram matrix of 50 rows for 300 training rows"),
            "{err}"
        );
        let err = task_affinity_with("m", &tasks, &grams[..2])
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 Gram matrices for 3 tasks"), "{err}");
    }
}
