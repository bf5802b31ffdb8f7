//! Transferability scores from frozen embeddings alone: LogME and H-score.
//!
//! No crate implements these, so they are written here from the papers, on the shared
//! eigen-decomposition in `relevance::linalg`:
//! - **LogME** (You et al., ICML 2021, "LogME: Practical Assessment of Pre-trained Models for
//!   Transfer Learning"): the log marginal evidence per sample of Bayesian linear regression from
//!   the features to each one-hot target column (or each regression target), with prior and noise
//!   precisions α, β maximised by the fixed-point iteration of the authors' reference code
//!   (`_fit_fixed_point` in thuml/LogME), averaged over columns. Higher is better.
//! - **H-score** (Bao et al., ICIP 2019): `tr(cov(f)⁺ · cov(E[f | y]))`, the between-class
//!   variance of the features in units of their total covariance (pseudo-inverse over eigenvalues
//!   above `1e-10 × largest`). Classification only; higher is better.
//!
//! `scripts/logme_reference.py` runs the authors' published algorithm in numpy on a fixed matrix;
//! the test below checks our numbers against its output.

use ndarray::{Array1, ArrayView2, Axis};

use crate::{
    features::Targets,
    relevance::linalg::{symmetric_eigen, Gram},
    EvalError,
};

/// LogME evidence of features `x` (`rows x dims`, used as given) for `targets`.
pub fn logme(x: ArrayView2<f32>, targets: &Targets) -> Result<f64, EvalError> {
    logme_with(x, &Gram::of(x), targets)
}

/// [`logme`] with `x`'s Gram matrix already computed.
pub fn logme_with(x: ArrayView2<f32>, gram: &Gram, targets: &Targets) -> Result<f64, EvalError> {
    let n = x.nrows();
    let d = x.ncols();
    if n == 0 {
        return Err(EvalError::TooLittleData {
            what: "LogME".into(),
            message: "needs at least one row".into(),
        });
    }
    gram.check(x)?;
    // Thin SVD through the Gram matrix (the reference's `truncated_svd`): F = U S Vᵀ with
    // sigma = S² the eigenvalues of FᵀF. Uᵀy = S⁻¹ Vᵀ (Fᵀy), so U is never formed.
    let (eigenvalues, vectors) = gram.eigen()?;
    let keep: Vec<usize> = (0..d).filter(|&i| eigenvalues[i].sqrt() > 1e-10).collect();
    let sigma: Array1<f64> = keep.iter().map(|&i| eigenvalues[i]).collect();
    let v = vectors.select(Axis(1), &keep);
    let columns: Vec<Vec<f64>> = match targets {
        Targets::Classes {
            labels,
            num_classes,
        } => {
            let k = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
            (0..k.min(*num_classes))
                .map(|c| {
                    labels
                        .iter()
                        .map(|&l| if l as usize == c { 1.0 } else { 0.0 })
                        .collect()
                })
                .collect()
        }
        Targets::Values(v) => vec![v.clone()],
        // As for classes: one indicator column per label (here any number may be 1 per row).
        Targets::Labels { present, .. } => present
            .columns()
            .into_iter()
            .map(|c| c.iter().map(|&b| b as u8 as f64).collect())
            .collect(),
        Targets::Bases { .. } => {
            return Err(EvalError::Mismatch {
                what: "LogME".into(),
                message: "takes one target per row, not per-base classes".into(),
            })
        }
    };
    let mut total = 0.0;
    for y in &columns {
        // Fᵀy in f64.
        let mut fty = Array1::<f64>::zeros(d);
        for (row, &yi) in x.rows().into_iter().zip(y) {
            if yi != 0.0 {
                fty.zip_mut_with(&row, |a, &b| *a += yi * b as f64);
            }
        }
        let proj = v.t().dot(&fty);
        let x2: Array1<f64> = proj.iter().zip(&sigma).map(|(p, s)| p * p / s).collect();
        let res_x2 = y.iter().map(|v| v * v).sum::<f64>() - x2.sum();
        total += evidence(n as f64, d as f64, &sigma, &x2, res_x2);
    }
    Ok(total / columns.len() as f64)
}

/// The fixed-point maximisation of one target column's evidence (reference: `_fit_fixed_point`).
fn evidence(n: f64, d: f64, sigma: &Array1<f64>, x2: &Array1<f64>, res_x2: f64) -> f64 {
    let (mut alpha, mut beta) = (1.0f64, 1.0f64);
    let (mut m2, mut res2) = (0.0, 0.0);
    for _ in 0..11 {
        let t = alpha / beta;
        let gamma: f64 = sigma.iter().map(|s| s / (s + t)).sum();
        m2 = sigma
            .iter()
            .zip(x2)
            .map(|(s, x)| s * x / (t + s).powi(2))
            .sum();
        res2 = x2
            .iter()
            .zip(sigma)
            .map(|(x, s)| x / (1.0 + s / t).powi(2))
            .sum::<f64>()
            + res_x2;
        alpha = gamma / (m2 + 1e-5);
        beta = (n - gamma) / (res2 + 1e-5);
        let t_new = alpha / beta;
        if (t_new - t).abs() / t <= 1e-3 {
            break;
        }
    }
    let log_det: f64 = sigma.iter().map(|s| (alpha + beta * s).ln()).sum();
    (d / 2.0 * alpha.ln() + n / 2.0 * beta.ln()
        - 0.5 * log_det
        - beta / 2.0 * res2
        - alpha / 2.0 * m2
        - n / 2.0 * (2.0 * std::f64::consts::PI).ln())
        / n
}

/// H-score of features `x` for class `labels` (`0..num_classes`).
pub fn h_score(x: ArrayView2<f32>, labels: &[u32], num_classes: usize) -> Result<f64, EvalError> {
    h_score_with(x, &Gram::of(x), labels, num_classes)
}

/// [`h_score`] with `x`'s Gram matrix already computed.
pub fn h_score_with(
    x: ArrayView2<f32>,
    gram: &Gram,
    labels: &[u32],
    num_classes: usize,
) -> Result<f64, EvalError> {
    let n = x.nrows();
    let d = x.ncols();
    if n < 2 {
        return Err(EvalError::TooLittleData {
            what: "H-score".into(),
            message: "needs at least two rows".into(),
        });
    }
    gram.check(x)?;
    let mut mean = Array1::<f64>::zeros(d);
    for row in x.rows() {
        mean.zip_mut_with(&row, |a, &b| *a += b as f64);
    }
    mean /= n as f64;
    // Covariance = FᵀF/n - μμᵀ.
    let mut cov = gram.matrix() / n as f64;
    for i in 0..d {
        for j in 0..d {
            cov[[i, j]] -= mean[i] * mean[j];
        }
    }
    let (values, vectors) = symmetric_eigen(cov)?;
    let largest = values.iter().cloned().fold(0.0f64, f64::max);
    let mut sums = vec![Array1::<f64>::zeros(d); num_classes];
    let mut counts = vec![0usize; num_classes];
    for (row, &l) in x.rows().into_iter().zip(labels) {
        sums[l as usize].zip_mut_with(&row, |a, &b| *a += b as f64);
        counts[l as usize] += 1;
    }
    let mut score = 0.0;
    for (sum, &count) in sums.iter().zip(&counts) {
        if count == 0 {
            continue;
        }
        let diff = sum / count as f64 - &mean;
        let proj = vectors.t().dot(&diff);
        let quad: f64 = proj
            .iter()
            .zip(&values)
            .filter(|(_, &s)| s > 1e-10 * largest)
            .map(|(p, s)| p * p / s)
            .sum();
        score += count as f64 / n as f64 * quad;
    }
    Ok(score)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// The fixed matrix of `scripts/logme_reference.py`: x[i][j] = sin(i * (j + 1) * 0.37) +
    /// 0.1 * j, labels i % 3, regression target cos(0.05 * i).
    fn fixture() -> (Array2<f32>, Vec<u32>, Vec<f64>) {
        let n = 60;
        let d = 8;
        let x = Array2::from_shape_fn((n, d), |(i, j)| {
            (((i * (j + 1)) as f64 * 0.37).sin() + 0.1 * j as f64) as f32
        });
        let labels = (0..n).map(|i| (i % 3) as u32).collect();
        let values = (0..n).map(|i| (0.05 * i as f64).cos()).collect();
        (x, labels, values)
    }

    #[test]
    fn logme_matches_the_reference_implementation() {
        // Numbers printed by `python scripts/logme_reference.py` (numpy, the authors' algorithm).
        let (x, labels, values) = fixture();
        let classes = Targets::Classes {
            labels,
            num_classes: 3,
        };
        let c = logme(x.view(), &classes).unwrap();
        let r = logme(x.view(), &Targets::Values(values)).unwrap();
        // One label per row as multi-label indicators is the same one-hot problem.
        let Targets::Classes { labels: l, .. } = &classes else {
            unreachable!()
        };
        let present = ndarray::Array2::from_shape_fn((l.len(), 3), |(i, k)| l[i] as usize == k);
        let names = vec!["a".into(), "b".into(), "c".into()];
        let m = logme(x.view(), &Targets::Labels { present, names }).unwrap();
        assert!((m - c).abs() < 1e-12, "{m} vs {c}");
        assert!((c - REFERENCE_CLASSIFICATION).abs() < 1e-6, "{c}");
        assert!((r - REFERENCE_REGRESSION).abs() < 1e-6, "{r}");
        // The shared-Gram forms give the same numbers, and refuse a Gram of other features.
        let gram = Gram::of(x.view());
        assert_eq!(logme_with(x.view(), &gram, &classes).unwrap(), c);
        let narrow = Gram::of(x.slice(ndarray::s![.., ..3]));
        let err = logme_with(x.view(), &narrow, &classes).unwrap_err();
        assert!(
            err.to_string().contains("3 columns for features of 8"),
            "{err}"
        );
    }

    const REFERENCE_CLASSIFICATION: f64 = -0.808015606482;
    const REFERENCE_REGRESSION: f64 = -1.049307698002;

    #[test]
    fn h_score_grows_with_class_separation() {
        let (x, labels, _) = fixture();
        let base = h_score(x.view(), &labels, 3).unwrap();
        let mut separated = x.clone();
        for (mut row, &l) in separated.rows_mut().into_iter().zip(&labels) {
            row[0] += 3.0 * l as f32;
        }
        let better = h_score(separated.view(), &labels, 3).unwrap();
        assert!(better > base + 0.5, "{base} -> {better}");
        // One-dimensional check by hand: two classes at ±1, unit within-class spread zero:
        // cov(f) = 1, between-class cov = 1, so H = 1.
        let x = Array2::from_shape_vec((4, 1), vec![-1.0f32, -1.0, 1.0, 1.0]).unwrap();
        assert!((h_score(x.view(), &[0, 0, 1, 1], 2).unwrap() - 1.0).abs() < 1e-9);
    }
}
