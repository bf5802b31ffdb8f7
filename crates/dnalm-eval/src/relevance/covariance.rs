//! The covariance similarity score of Wu, Zhang & Ré 2020 ("Understanding and Improving
//! Information Transfer in Multi-Task Learning", ICLR, §2.3, equation 5): how well two tasks'
//! representations are aligned, from their data alone (no labels).
//!
//! For task `i` with representations `X_i` (rows: examples, columns: the `d` embedding
//! dimensions): (a) its covariance `X_iᵀ X_i` (uncentred, as in the paper); (b) its best rank-`r_i`
//! approximation `U_i D_i U_iᵀ`, with `r_i` the fewest leading eigenvalues whose sum reaches 99% of
//! the total (the paper: "chosen to contain 99% of the singular values"); (c) with
//! `A_i = U_i D_i^{1/2}`,
//!
//! ```text
//! score(1, 2) = ‖A_1ᵀ A_2‖_F / (‖A_1‖_F · ‖A_2‖_F)
//! ```
//!
//! The score lies in [0, 1], is symmetric, unchanged when both tasks' representations are rotated
//! alike or either is scaled, and is not 1 on the diagonal: a task's score with itself is
//! `‖D‖₂ / ‖D‖₁` over its kept eigenvalues, 1 only when one direction holds all its variance.
//! It sees the inputs, not the labels: two tasks on the same sequences with different labels
//! score as one task with itself.

use ndarray::{s, Array2, ArrayView2};

use super::linalg::Gram;
use crate::EvalError;

/// Share of the covariance's eigenvalue sum the kept directions must reach.
pub const KEPT_SPECTRUM: f64 = 0.99;

/// One task's truncated covariance factor `A = U_r D_r^{1/2}` (`d × r`).
#[derive(Debug, Clone)]
pub struct TaskCovariance {
    factor: Array2<f64>,
    /// `‖A‖_F`, i.e. the square root of the kept eigenvalues' sum.
    norm: f64,
}

impl TaskCovariance {
    /// The factor of `xᵀx` for a task's representations `x` (rows: examples). An all-zero `x`
    /// (or one without rows) is an error: it has no covariance to compare.
    pub fn of(x: ArrayView2<f32>) -> Result<TaskCovariance, EvalError> {
        TaskCovariance::from_gram(&Gram::of(x))
    }

    /// [`TaskCovariance::of`] from the representations' Gram matrix, whose eigen-decomposition
    /// it shares (LogME uses the same one).
    pub fn from_gram(gram: &Gram) -> Result<TaskCovariance, EvalError> {
        let (values, vectors) = gram.eigen()?;
        // Ascending from faer: walk from the largest down; tiny negative round-off counts as 0.
        let d = values.len();
        let total: f64 = values.iter().map(|v| v.max(0.0)).sum();
        if total <= 0.0 || !total.is_finite() {
            return Err(EvalError::Numeric {
                routine: "covariance similarity",
                message: format!(
                    "representations of {} rows × {d} dimensions with zero covariance",
                    gram.rows()
                ),
            });
        }
        let mut kept = 0.0;
        let mut rank = 0;
        while rank < d && kept < KEPT_SPECTRUM * total {
            kept += values[d - 1 - rank].max(0.0);
            rank += 1;
        }
        let mut factor = Array2::<f64>::zeros((d, rank));
        for k in 0..rank {
            let column = d - 1 - k;
            let scale = values[column].max(0.0).sqrt();
            factor
                .column_mut(k)
                .assign(&(&vectors.slice(s![.., column]) * scale));
        }
        Ok(TaskCovariance {
            factor,
            norm: kept.sqrt(),
        })
    }

    /// Directions kept (`r`).
    pub fn rank(&self) -> usize {
        self.factor.ncols()
    }

    /// The covariance similarity score with `other` (equation 5). Both must come from
    /// representations of the same width.
    pub fn similarity(&self, other: &TaskCovariance) -> Result<f64, EvalError> {
        if self.factor.nrows() != other.factor.nrows() {
            return Err(EvalError::Numeric {
                routine: "covariance similarity",
                message: format!(
                    "representations of {} and {} dimensions",
                    self.factor.nrows(),
                    other.factor.nrows()
                ),
            });
        }
        let cross = self.factor.t().dot(&other.factor);
        let frobenius = cross.iter().map(|v| v * v).sum::<f64>().sqrt();
        Ok(frobenius / (self.norm * other.norm))
    }
}

/// The covariance similarity score of two tasks' representations (see the module notes).
pub fn covariance_similarity(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Result<f64, EvalError> {
    TaskCovariance::of(a)?.similarity(&TaskCovariance::of(b)?)
}

/// The score between every pair of tasks (`[i][j]`, symmetric, diagonal included) and each task's
/// kept rank, from the Gram matrix of each task's representations.
pub fn similarity_matrix(grams: &[Gram]) -> Result<(Vec<Vec<f64>>, Vec<usize>), EvalError> {
    let factors = grams
        .iter()
        .map(TaskCovariance::from_gram)
        .collect::<Result<Vec<_>, _>>()?;
    let n = factors.len();
    let mut scores = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in i..n {
            let v = factors[i].similarity(&factors[j])?;
            scores[i][j] = v;
            scores[j][i] = v;
        }
    }
    Ok((scores, factors.iter().map(TaskCovariance::rank).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relevance::linalg::gram;
    use ndarray::Array2;
    use rand::Rng;
    use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};

    /// `n` rows spread over the given coordinate directions (with per-direction scales).
    fn rows_on(n: usize, dims: usize, directions: &[(usize, f32)], seed: u64) -> Array2<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Array2::<f32>::zeros((n, dims));
        for mut row in x.rows_mut() {
            for &(d, scale) in directions {
                row[d] = scale * (rng.random::<f32>() * 2.0 - 1.0);
            }
        }
        x
    }

    /// The definition written out: eigenvalues by power of the full matrices, no truncation
    /// needed when every direction is kept. `‖A1ᵀA2‖_F² = tr(Σ1 Σ2)`, `‖Ai‖_F² = tr Σi`.
    fn by_traces(a: &Array2<f32>, b: &Array2<f32>) -> f64 {
        let (ga, gb) = (gram(a.view()), gram(b.view()));
        let cross: f64 = (&ga * &gb).sum(); // tr(Σ1 Σ2) for symmetric matrices
        let trace = |g: &Array2<f64>| g.diag().sum();
        cross.sqrt() / (trace(&ga) * trace(&gb)).sqrt()
    }

    #[test]
    fn the_score_matches_the_trace_form_when_every_direction_is_kept() {
        // Equal scales: every direction is needed to reach 99%, so nothing is truncated.
        let a = rows_on(400, 5, &[(0, 1.0), (1, 1.0), (2, 1.0)], 1);
        let b = rows_on(300, 5, &[(1, 1.0), (2, 1.0), (3, 1.0)], 2);
        let got = covariance_similarity(a.view(), b.view()).unwrap();
        let want = by_traces(&a, &b);
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        // Two of three directions shared with equal weight: sqrt(2·(1/3)²·…) = sqrt(2)/3.
        assert!((got - 2f64.sqrt() / 3.0).abs() < 0.05, "{got}");
    }

    #[test]
    fn aligned_tasks_score_high_and_orthogonal_ones_zero() {
        let a = rows_on(500, 6, &[(0, 3.0)], 3);
        let same_direction = rows_on(200, 6, &[(0, 1.0)], 4);
        let orthogonal = rows_on(500, 6, &[(4, 2.0), (5, 1.0)], 5);
        let grams = [&a, &same_direction, &orthogonal].map(|x| Gram::of(x.view()));
        let (scores, ranks) = similarity_matrix(&grams).unwrap();
        assert_eq!(ranks[0], 1);
        assert!((scores[0][1] - 1.0).abs() < 1e-9, "{scores:?}");
        assert!(scores[0][2].abs() < 1e-9, "{scores:?}");
        assert_eq!(scores[1][2], scores[2][1]);
        // The diagonal is ‖D‖₂ / ‖D‖₁: 1 for one direction, below 1 for two.
        assert!((scores[0][0] - 1.0).abs() < 1e-9);
        assert!(scores[2][2] < 0.95, "{scores:?}");
    }

    #[test]
    fn the_score_ignores_a_common_rotation_and_each_tasks_scale() {
        let a = rows_on(300, 4, &[(0, 2.0), (1, 1.0), (2, 0.5)], 6);
        let b = rows_on(300, 4, &[(1, 1.0), (2, 2.0), (3, 1.0)], 7);
        let base = covariance_similarity(a.view(), b.view()).unwrap();
        let (c, s) = (0.6f32, 0.8f32);
        let rotation = ndarray::array![
            [c, -s, 0.0, 0.0],
            [s, c, 0.0, 0.0],
            [0.0, 0.0, c, s],
            [0.0, 0.0, -s, c]
        ];
        let rotated =
            covariance_similarity(a.dot(&rotation).view(), b.dot(&rotation).view()).unwrap();
        let scaled = covariance_similarity((&a * 7.0).view(), b.view()).unwrap();
        assert!((base - rotated).abs() < 1e-6, "{base} vs {rotated}");
        assert!((base - scaled).abs() < 1e-9, "{base} vs {scaled}");
    }

    #[test]
    fn a_weak_direction_below_the_one_percent_tail_is_dropped() {
        // 99.9% of the variance on direction 0: the rank is 1 and direction 1 does not count.
        let a = rows_on(400, 3, &[(0, 30.0), (1, 1.0)], 8);
        let b = rows_on(400, 3, &[(1, 1.0)], 9);
        let fa = TaskCovariance::of(a.view()).unwrap();
        assert_eq!(fa.rank(), 1);
        // Only the leading direction's small tilt towards direction 1 (sample correlation) is
        // left; with direction 1 kept the score would be about 1/30.
        let score = fa
            .similarity(&TaskCovariance::of(b.view()).unwrap())
            .unwrap();
        assert!(score < 0.01, "{score}");
    }

    #[test]
    fn zero_representations_and_mismatched_widths_are_errors() {
        let zero = Array2::<f32>::zeros((10, 3));
        let err = TaskCovariance::of(zero.view()).unwrap_err().to_string();
        assert!(err.contains("zero covariance"), "{err}");
        let a = rows_on(20, 3, &[(0, 1.0)], 10);
        let b = rows_on(20, 4, &[(0, 1.0)], 11);
        let err = covariance_similarity(a.view(), b.view())
            .unwrap_err()
            .to_string();
        assert!(err.contains("3 and 4 dimensions"), "{err}");
    }
}
