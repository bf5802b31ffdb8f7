//! The linear algebra of the relevance scores: Gram matrices and symmetric eigen-decomposition.

use std::sync::OnceLock;

use ndarray::{Array1, Array2, ArrayView2, Axis};

use crate::EvalError;

/// `FᵀF` of one feature matrix (f64) and, once asked for, its eigen-decomposition: what LogME
/// ([`crate::relevance::logme_with`]), H-score ([`crate::relevance::h_score_with`]) and the
/// covariance similarity ([`crate::relevance::TaskCovariance::from_gram`]) start from, computed
/// once per task when several are wanted (`dnalm bench`, the multitask plan).
#[derive(Debug, Clone)]
pub struct Gram {
    matrix: Array2<f64>,
    rows: usize,
    eigen: OnceLock<(Array1<f64>, Array2<f64>)>,
}

impl Gram {
    /// The Gram matrix of `x`.
    pub fn of(x: ArrayView2<f32>) -> Gram {
        Gram {
            matrix: gram(x),
            rows: x.nrows(),
            eigen: OnceLock::new(),
        }
    }

    /// `FᵀF` (`dims x dims`).
    pub fn matrix(&self) -> &Array2<f64> {
        &self.matrix
    }

    /// Rows of the features it was computed from.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Eigenvalues (ascending) and eigenvectors (columns) of `FᵀF`, decomposed on the first call
    /// and kept.
    pub fn eigen(&self) -> Result<(&Array1<f64>, &Array2<f64>), EvalError> {
        let (values, vectors) = match self.eigen.get() {
            Some(done) => done,
            None => {
                let done = symmetric_eigen(self.matrix.clone())?;
                self.eigen.get_or_init(|| done)
            }
        };
        Ok((values, vectors))
    }

    /// An error unless `x` has the width this Gram matrix was computed for.
    pub(crate) fn check(&self, x: ArrayView2<f32>) -> Result<(), EvalError> {
        if self.matrix.nrows() != x.ncols() {
            return Err(EvalError::Mismatch {
                what: "Gram matrix".into(),
                message: format!(
                    "{} columns for features of {}",
                    self.matrix.nrows(),
                    x.ncols()
                ),
            });
        }
        Ok(())
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
        return Err(EvalError::Numeric {
            routine: "eigen-decomposition",
            message: format!("a non-square {n} x {} matrix", a.ncols()),
        });
    }
    if a.iter().any(|v| !v.is_finite()) {
        return Err(EvalError::Numeric {
            routine: "eigen-decomposition",
            message: "a matrix with non-finite values".into(),
        });
    }
    let m = faer::Mat::<f64>::from_fn(n, n, |i, j| a[[i, j]]);
    let evd = m
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|e| EvalError::Numeric {
            routine: "eigen-decomposition",
            message: format!("failed: {e:?}"),
        })?;
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
    fn gram_decomposes_once_and_keeps_it() {
        let x = array![[1.0f32, 2.0], [3.0, 4.0]];
        let g = Gram::of(x.view());
        assert_eq!(g.rows(), 2);
        let (values, vectors) = g.eigen().unwrap();
        let first = (values.as_ptr(), vectors.as_ptr());
        let (direct_values, direct_vectors) = symmetric_eigen(g.matrix().clone()).unwrap();
        assert_eq!((values, vectors), (&direct_values, &direct_vectors));
        let (values, vectors) = g.eigen().unwrap();
        assert_eq!(
            first,
            (values.as_ptr(), vectors.as_ptr()),
            "decomposed again"
        );
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
