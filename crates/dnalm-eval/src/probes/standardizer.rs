//! Per-column standardisation of features: statistics from the training rows only.

use ndarray::{Array1, Array2, ArrayView2, Axis};

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
    }
}
