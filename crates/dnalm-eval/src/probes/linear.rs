//! The linear probes: L2 logistic regression (argmin's L-BFGS on [`super::logistic`]'s loss) and
//! ridge regression by conjugate gradients.

use ndarray::{Array1, Array2, ArrayView2, Axis};

use crate::{
    features::{Labelled, Targets},
    probes::{
        logistic::{fit_logistic, fit_multi_label_logistic},
        standardizer::Standardizer,
    },
    EvalError,
};

/// A linear model `softmax(x W + b)` (classification), `sigmoid(x W + b)` (multi-label) or
/// `x w + b` (regression).
#[derive(Debug, Clone)]
pub struct LinearModel {
    /// `dims x outputs`.
    pub weights: Array2<f32>,
    /// `outputs`.
    pub bias: Array1<f32>,
    /// What the outputs are.
    pub output: LinearOutput,
}

/// What a [`LinearModel`]'s outputs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearOutput {
    /// Class probabilities (softmax over the row).
    Classes,
    /// One probability per label (a sigmoid each).
    Labels,
    /// Values (no link).
    Values,
}

impl LinearModel {
    /// L2-regularised logistic regression: mean log-loss plus `l2 / 2 · |W|²` (binary tasks
    /// use one logit; classes absent from `train` get probability 0).
    pub fn logistic(
        train: &Labelled,
        l2: f64,
        max_iterations: u64,
    ) -> Result<LinearModel, EvalError> {
        Ok(Self::logistic_from(train, l2, max_iterations, None)?.0)
    }

    /// [`LinearModel::logistic`] from a warm start (the flat parameters a previous call
    /// returned on rows with the same present classes; ignored if the shape differs). Returns
    /// the model and its flat parameters.
    pub fn logistic_from(
        train: &Labelled,
        l2: f64,
        max_iterations: u64,
        start: Option<&Array1<f64>>,
    ) -> Result<(LinearModel, Array1<f64>), EvalError> {
        let (labels, num_classes) = match &train.y {
            Targets::Classes {
                labels,
                num_classes,
            } => (labels, num_classes),
            Targets::Labels { present, .. } => {
                let solution = fit_multi_label_logistic(
                    train.x.view(),
                    present.view(),
                    l2,
                    max_iterations,
                    start,
                )?;
                let model = LinearModel {
                    weights: solution.weights().mapv(|v| v as f32),
                    bias: solution.bias().mapv(|v| v as f32),
                    output: LinearOutput::Labels,
                };
                return Ok((model, solution.params));
            }
            Targets::Values(_) | Targets::Bases { .. } => {
                return Err(EvalError::Mismatch {
                    what: "logistic regression".into(),
                    message: "needs class labels (one per row)".into(),
                })
            }
        };
        let k = *num_classes;
        let d = train.x.ncols();
        let mut present: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
        present.sort_unstable();
        present.dedup();
        if present.len() < 2 {
            return Err(EvalError::TooLittleData {
                what: "logistic regression".into(),
                message: "the training rows have a single class; it needs two".into(),
            });
        }
        let mut index = vec![0usize; k.max(present.len())];
        for (i, &c) in present.iter().enumerate() {
            index[c] = i;
        }
        let classes: Vec<usize> = labels.iter().map(|&l| index[l as usize]).collect();
        let solution = fit_logistic(
            train.x.view(),
            &classes,
            present.len(),
            l2,
            max_iterations,
            start,
        )?;
        let mut weights = Array2::<f32>::zeros((d, k));
        // Absent classes: a very negative bias gives probability ~0.
        let mut bias = Array1::<f32>::from_elem(k, -1e4);
        let (w, b) = (solution.weights(), solution.bias());
        if present.len() == 2 {
            // One logit: class present[1] against present[0].
            weights
                .column_mut(present[1])
                .assign(&w.column(0).mapv(|v| v as f32));
            bias[present[1]] = b[0] as f32;
            bias[present[0]] = 0.0;
        } else {
            for (j, &c) in present.iter().enumerate() {
                weights
                    .column_mut(c)
                    .assign(&w.column(j).mapv(|v| v as f32));
                bias[c] = b[j] as f32;
            }
        }
        Ok((
            LinearModel {
                weights,
                bias,
                output: LinearOutput::Classes,
            },
            solution.params,
        ))
    }

    /// Ridge regression `min |Xw + b - y|² + lambda * rows * |w|²`, solved by conjugate
    /// gradients on centred data.
    pub fn ridge(train: &Labelled, lambda: f64) -> Result<LinearModel, EvalError> {
        let Targets::Values(y) = &train.y else {
            return Err(EvalError::Mismatch {
                what: "ridge regression".into(),
                message: "needs real-valued labels".into(),
            });
        };
        let x = train.x.mapv(|v| v as f64);
        let n = x.nrows() as f64;
        let x_mean = x.mean_axis(Axis(0)).unwrap_or_default();
        let y_mean = y.iter().sum::<f64>() / n;
        let xc = &x - &x_mean;
        let yc: Array1<f64> = y.iter().map(|v| v - y_mean).collect();
        let reg = lambda * n;
        let apply = |w: &Array1<f64>| xc.t().dot(&xc.dot(w)) + w * reg;
        let rhs = xc.t().dot(&yc);
        let w = conjugate_gradient(apply, &rhs, 500, 1e-8);
        let b = y_mean - x_mean.dot(&w);
        Ok(LinearModel {
            weights: w.mapv(|v| v as f32).insert_axis(Axis(1)),
            bias: Array1::from_elem(1, b as f32),
            output: LinearOutput::Values,
        })
    }

    /// The same model on unstandardised features: `scaler` was applied to the features it was
    /// fitted on, and is folded into the weights (`W / sd`) and biases (`b - Σ mean · W / sd`).
    pub fn on_raw_features(&self, scaler: &Standardizer) -> LinearModel {
        let scale = scaler.scale().mapv(|s| 1.0 / s).insert_axis(Axis(1));
        let weights = &self.weights * &scale;
        let bias = &self.bias - &scaler.mean().dot(&weights);
        LinearModel {
            weights,
            bias,
            output: self.output,
        }
    }

    /// Outputs for `x` (`rows x dims`).
    pub fn predict(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let mut z = x.dot(&self.weights) + &self.bias;
        if self.output == LinearOutput::Labels {
            z.mapv_inplace(|v| 1.0 / (1.0 + (-v).exp()));
        } else if self.output == LinearOutput::Classes {
            for mut row in z.rows_mut() {
                let max = row.iter().cloned().fold(f32::MIN, f32::max);
                row.mapv_inplace(|v| (v - max).exp());
                let sum = row.sum();
                row /= sum;
            }
        }
        z
    }
}

/// Solves `A w = b` for symmetric positive-definite `A` given as a product.
fn conjugate_gradient(
    apply: impl Fn(&Array1<f64>) -> Array1<f64>,
    b: &Array1<f64>,
    max_iterations: usize,
    tolerance: f64,
) -> Array1<f64> {
    let mut w = Array1::<f64>::zeros(b.len());
    let mut r = b.clone();
    let mut p = r.clone();
    let mut rr = r.dot(&r);
    let stop = tolerance * tolerance * b.dot(b).max(1e-300);
    for _ in 0..max_iterations {
        if rr <= stop {
            break;
        }
        let ap = apply(&p);
        let step = rr / p.dot(&ap);
        w.scaled_add(step, &p);
        r.scaled_add(-step, &ap);
        let rr_new = r.dot(&r);
        p = &r + &(p * (rr_new / rr));
        rr = rr_new;
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_the_scaler_in_gives_the_same_outputs_on_raw_features() {
        let x = Array2::from_shape_fn((6, 3), |(i, j)| (i * 3 + j * j) as f32 * 0.7 - 2.0);
        let scaler = Standardizer::fit(x.view());
        let model = LinearModel {
            weights: Array2::from_shape_fn((3, 2), |(i, j)| i as f32 - j as f32 * 0.5),
            bias: Array1::from(vec![0.3f32, -0.2]),
            output: LinearOutput::Classes,
        };
        let expected = model.predict(scaler.apply(x.view()).view());
        let folded = model.on_raw_features(&scaler).predict(x.view());
        for (a, b) in expected.iter().zip(&folded) {
            assert!((a - b).abs() < 1e-5, "{a} {b}");
        }
    }
}
