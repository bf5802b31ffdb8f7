//! The MLP probe (burn): `Linear -> GELU -> Linear`, trained by [`super::fit`] with early
//! stopping on the selection rows.

use dnalm_model::burn::{
    module::Module,
    nn::{Linear, LinearConfig},
    tensor::{activation::gelu, Device, Tensor, TensorData},
};
use ndarray::{Array2, Axis};

use crate::{
    features::{Labelled, Targets},
    probes::fit::{fit, predict, FitOptions, Forward},
    EvalError,
};

/// The MLP probe: `Linear -> GELU -> Linear`.
#[derive(Module, Debug)]
pub struct Mlp {
    hidden: Linear,
    out: Linear,
}

impl Mlp {
    /// A fresh MLP.
    pub fn new(d_in: usize, hidden: usize, outputs: usize, device: &Device) -> Mlp {
        Mlp {
            hidden: LinearConfig::new(d_in, hidden).init(device),
            out: LinearConfig::new(hidden, outputs).init(device),
        }
    }

    /// `[rows, d_in] -> [rows, outputs]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.out.forward(gelu(self.hidden.forward(x)))
    }
}

/// Trains an MLP on `train`, selects its epoch on `select`, and predicts `test`.
pub(crate) fn mlp_fit_predict(
    train: &Labelled,
    select: &Labelled,
    test: &Array2<f32>,
    hidden: usize,
    options: &FitOptions,
) -> Result<Array2<f32>, EvalError> {
    let device = crate::train_device(&options.device.open()?);
    // Training and selection rows in one table; forward gathers rows by index.
    let all = ndarray::concatenate(Axis(0), &[train.x.view(), select.x.view()])
        .map_err(|e| crate::shape_error("MLP probe", e))?;
    let targets = concat_targets(&train.y, &select.y);
    let n_train = train.x.nrows();
    let rows_of = |table: &Array2<f32>, rows: &[usize], device: &Device| {
        let d = table.ncols();
        let mut v: Vec<f32> = Vec::with_capacity(rows.len() * d);
        for &r in rows {
            v.extend(table.row(r).iter());
        }
        Tensor::<2>::from_data(TensorData::new(v, [rows.len(), d]), device)
    };
    let forward = |net: &Mlp, rows: &[usize], _seed: Option<u64>| -> Result<Tensor<2>, EvalError> {
        let device = net.hidden.weight.val().device();
        Ok(net.forward(rows_of(&all, rows, &device)))
    };
    let net = dnalm_model::io::reinitialize(
        Mlp::new(all.ncols(), hidden, Targets::outputs(&train.y), &device),
        options.seed,
    );
    let train_rows: Vec<usize> = (0..n_train).collect();
    let valid_rows: Vec<usize> = (n_train..all.nrows()).collect();
    let fitted = fit(net, &forward, &targets, &train_rows, &valid_rows, options)?;
    let test_forward =
        |net: &Mlp, rows: &[usize], _: Option<u64>| -> Result<Tensor<2>, EvalError> {
            let device = net.hidden.weight.val().device();
            Ok(net.forward(rows_of(test, rows, &device)))
        };
    let test_rows: Vec<usize> = (0..test.nrows()).collect();
    predict(&fitted, &test_forward as &Forward<Mlp>, &test_rows, 512)
}

/// Targets of `a` followed by those of `b`.
pub fn concat_targets(a: &Targets, b: &Targets) -> Targets {
    match (a, b) {
        (
            Targets::Classes {
                labels,
                num_classes,
            },
            Targets::Classes { labels: l2, .. },
        ) => Targets::Classes {
            labels: labels.iter().chain(l2).copied().collect(),
            num_classes: *num_classes,
        },
        (Targets::Values(v), Targets::Values(v2)) => {
            Targets::Values(v.iter().chain(v2).copied().collect())
        }
        (
            Targets::Labels { present, names },
            Targets::Labels {
                present: present2, ..
            },
        ) => match ndarray::concatenate(ndarray::Axis(0), &[present.view(), present2.view()]) {
            Ok(present) => Targets::Labels {
                present,
                names: names.clone(),
            },
            Err(_) => a.clone(),
        },
        (Targets::Bases { classes, names }, Targets::Bases { classes: c2, .. }) => Targets::Bases {
            classes: classes.iter().chain(c2).cloned().collect(),
            names: names.clone(),
        },
        (a, _) => a.clone(),
    }
}
