//! Feature matrices with their targets: what every probe, baseline and relevance score takes.

use ndarray::{Array1, Array2, ArrayView2, Axis};

use crate::EvalError;

/// What a task asks for, per row.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Class indices `0..num_classes`.
    Classes {
        /// One class per row.
        labels: Vec<u32>,
        /// Number of classes of the task (some may be absent from a split).
        num_classes: usize,
    },
    /// Real values.
    Values(Vec<f64>),
}

impl Targets {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes { labels, .. } => labels.len(),
            Targets::Values(v) => v.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows at `index`, in that order.
    pub fn select(&self, index: &[usize]) -> Targets {
        match self {
            Targets::Classes {
                labels,
                num_classes,
            } => Targets::Classes {
                labels: index.iter().map(|&i| labels[i]).collect(),
                num_classes: *num_classes,
            },
            Targets::Values(v) => Targets::Values(index.iter().map(|&i| v[i]).collect()),
        }
    }

    /// Number of distinct classes present (regression: 0).
    pub fn classes_present(&self) -> usize {
        match self {
            Targets::Classes {
                labels,
                num_classes,
            } => {
                let mut seen = vec![false; *num_classes];
                for &l in labels {
                    seen[l as usize] = true;
                }
                seen.iter().filter(|&&s| s).count()
            }
            Targets::Values(_) => 0,
        }
    }
}

/// A feature matrix (`rows x dims`) with one target per row.
#[derive(Debug, Clone)]
pub struct Labelled {
    /// Features.
    pub x: Array2<f32>,
    /// Targets.
    pub y: Targets,
}

impl Labelled {
    /// Pairs features with targets, checking counts, finiteness and labels. `what` names the data
    /// in errors (a file or split).
    pub fn new(x: Array2<f32>, y: Targets, what: &str) -> Result<Labelled, EvalError> {
        if x.nrows() != y.len() {
            return Err(EvalError::Input(format!(
                "{what}: {} embedding rows but {} labels",
                x.nrows(),
                y.len()
            )));
        }
        check_finite(x.view(), what)?;
        if let Targets::Classes {
            labels,
            num_classes,
        } = &y
        {
            if let Some(bad) = labels.iter().find(|&&l| l as usize >= *num_classes) {
                return Err(EvalError::Input(format!(
                    "{what}: label {bad} is outside 0..{num_classes}"
                )));
            }
        }
        Ok(Labelled { x, y })
    }

    /// The rows at `index`.
    pub fn select(&self, index: &[usize]) -> Labelled {
        Labelled {
            x: self.x.select(Axis(0), index),
            y: self.y.select(index),
        }
    }
}

/// Fails on the first NaN or infinite value, naming its row and column.
pub fn check_finite(x: ArrayView2<f32>, what: &str) -> Result<(), EvalError> {
    for (r, row) in x.rows().into_iter().enumerate() {
        if let Some(c) = row.iter().position(|v| !v.is_finite()) {
            return Err(EvalError::Input(format!(
                "{what}: embedding row {r}, column {c} is {} (not finite)",
                row[c]
            )));
        }
    }
    Ok(())
}

/// Per-column centring and scaling, fitted on training rows and applied to any split.
#[derive(Debug, Clone)]
pub struct Standardizer {
    mean: Array1<f32>,
    scale: Array1<f32>,
}

impl Standardizer {
    /// Fits column means and standard deviations (constant columns get scale 1).
    pub fn fit(x: ArrayView2<f32>) -> Standardizer {
        let n = x.nrows().max(1) as f64;
        let mut mean = Array1::<f64>::zeros(x.ncols());
        for row in x.rows() {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean /= n;
        let mut var = Array1::<f64>::zeros(x.ncols());
        for row in x.rows() {
            for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (v as f64 - m).powi(2);
            }
        }
        let scale = var.mapv(|v| {
            let sd = (v / n).sqrt();
            if sd > 1e-12 {
                sd as f32
            } else {
                1.0
            }
        });
        Standardizer {
            mean: mean.mapv(|m| m as f32),
            scale,
        }
    }

    /// `(x - mean) / sd`, column-wise.
    pub fn apply(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let mut out = x.to_owned();
        out.axis_iter_mut(Axis(0)).for_each(|mut row| {
            row -= &self.mean;
            row /= &self.scale;
        });
        out
    }
}

/// `x^T x` in f64 (the Gram matrix), from f32 rows.
pub fn gram(x: ArrayView2<f32>) -> Array2<f64> {
    // Chunks of rows keep the f64 copy small; the products are BLAS-like GEMMs (matrixmultiply).
    let d = x.ncols();
    let mut g = Array2::<f64>::zeros((d, d));
    for chunk in x.axis_chunks_iter(Axis(0), 4096) {
        let c = chunk.mapv(|v| v as f64);
        ndarray::linalg::general_mat_mul(1.0, &c.t(), &c, 1.0, &mut g);
    }
    g
}

/// Eigen-decomposition of a symmetric matrix: eigenvalues (ascending) and eigenvectors as
/// columns.
///
/// faer's divide-and-conquer solver: linfa-linalg's (tridiagonal QR) took ~2.5 s per 512 × 512
/// matrix and was half of LogME + H-score time in `benches/relevance_speed.rs`.
pub fn symmetric_eigen(a: Array2<f64>) -> Result<(Array1<f64>, Array2<f64>), EvalError> {
    let n = a.nrows();
    if a.ncols() != n {
        return Err(EvalError::Numeric(format!(
            "eigen-decomposition of a non-square {n} x {} matrix",
            a.ncols()
        )));
    }
    if a.iter().any(|v| !v.is_finite()) {
        return Err(EvalError::Numeric(
            "eigen-decomposition of a matrix with non-finite values".into(),
        ));
    }
    let m = faer::Mat::<f64>::from_fn(n, n, |i, j| a[[i, j]]);
    let evd = m
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|e| EvalError::Numeric(format!("eigen-decomposition failed: {e:?}")))?;
    let values = evd.S().column_vector();
    let vectors = evd.U();
    Ok((
        Array1::from_shape_fn(n, |i| values[i]),
        Array2::from_shape_fn((n, n), |(i, j)| vectors[(i, j)]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn counts_and_non_finite_values_are_refused_by_name() {
        let x = array![[1.0f32, 2.0], [3.0, f32::NAN]];
        let y = Targets::Classes {
            labels: vec![0, 1],
            num_classes: 2,
        };
        let err = Labelled::new(x.clone(), y.clone(), "train").unwrap_err();
        assert!(err.to_string().contains("row 1, column 1"), "{err}");
        let short = Targets::Values(vec![1.0]);
        let err = Labelled::new(array![[1.0f32], [2.0]], short, "emb.npy").unwrap_err();
        assert!(
            err.to_string().contains("2 embedding rows but 1 labels"),
            "{err}"
        );
    }

    #[test]
    fn standardizer_uses_training_statistics() {
        let train = array![[1.0f32, 5.0], [3.0, 5.0]];
        let s = Standardizer::fit(train.view());
        let out = s.apply(array![[2.0f32, 6.0]].view());
        assert_eq!(out, array![[0.0f32, 1.0]]);
    }

    #[test]
    fn eigen_decomposition_reconstructs_the_matrix() {
        let a = array![[2.0, 1.0], [1.0, 2.0]];
        let (values, vectors) = symmetric_eigen(a.clone()).unwrap();
        assert!((values[0] - 1.0).abs() < 1e-12 && (values[1] - 3.0).abs() < 1e-12);
        let back = vectors.dot(&Array2::from_diag(&values)).dot(&vectors.t());
        assert!((back - a).iter().all(|v| v.abs() < 1e-12));
        let x = array![[1.0f32, 2.0], [3.0, 4.0]];
        assert_eq!(gram(x.view()), array![[10.0, 14.0], [14.0, 20.0]]);
    }
}
