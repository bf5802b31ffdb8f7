//! Per-column standardisation of features: statistics from the training rows only.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

/// Per-column centring and scaling, fitted on training rows and applied to any split.
#[derive(Debug, Clone)]
pub struct Standardizer {
    mean: Array1<f32>,
    scale: Array1<f32>,
}

impl Standardizer {
    /// Column means.
    pub fn mean(&self) -> &Array1<f32> {
        &self.mean
    }

    /// Column scales (standard deviations; 1 for constant columns).
    pub fn scale(&self) -> &Array1<f32> {
        &self.scale
    }

    /// Fits column means and standard deviations (constant columns get scale 1).
    pub fn fit(x: ArrayView2<f32>) -> Standardizer {
        Self::fit_rows(x.ncols(), || x.rows().into_iter())
    }

    /// [`Standardizer::fit`] over the rows of several matrices together (e.g. every token of
    /// every training sequence), without stacking them.
    pub fn fit_all(blocks: &[Array2<f32>]) -> Standardizer {
        let width = blocks.first().map_or(0, |b| b.ncols());
        Self::fit_rows(width, || blocks.iter().flat_map(|b| b.rows()))
    }

    /// Two passes over `rows()` (mean, then variance), `width` columns.
    /// The standardiser that changes nothing (mean 0, scale 1).
    pub fn identity(width: usize) -> Standardizer {
        Standardizer {
            mean: Array1::zeros(width),
            scale: Array1::ones(width),
        }
    }

    /// [`Standardizer::fit_all`] over borrowed blocks.
    pub fn fit_views(blocks: &[&Array2<f32>]) -> Standardizer {
        let width = blocks.first().map_or(0, |b| b.ncols());
        Self::fit_rows(width, || blocks.iter().flat_map(|b| b.rows()))
    }

    fn fit_rows<'a, I: Iterator<Item = ArrayView1<'a, f32>>>(
        width: usize,
        rows: impl Fn() -> I,
    ) -> Standardizer {
        let mut mean = Array1::<f64>::zeros(width);
        let mut count = 0usize;
        for row in rows() {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
            count += 1;
        }
        let n = count.max(1) as f64;
        mean /= n;
        let mut var = Array1::<f64>::zeros(width);
        for row in rows() {
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

    /// `(row - mean) / sd` written into `out` (as long as the row).
    pub fn apply_into(&self, row: ArrayView1<f32>, out: &mut [f32]) {
        for (((o, &v), m), s) in out.iter_mut().zip(row).zip(&self.mean).zip(&self.scale) {
            *o = (v - m) / s;
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn standardizer_uses_training_statistics() {
        let train = array![[1.0f32, 5.0], [3.0, 5.0]];
        let s = Standardizer::fit(train.view());
        let out = s.apply(array![[2.0f32, 6.0]].view());
        assert_eq!(out, array![[0.0f32, 1.0]]);
        // The same statistics from the rows split over two matrices.
        let split = Standardizer::fit_all(&[array![[1.0f32, 5.0]], array![[3.0f32, 5.0]]]);
        let mut row = [0.0f32; 2];
        split.apply_into(array![2.0f32, 6.0].view(), &mut row);
        assert_eq!(row, [0.0, 1.0]);
    }
}
