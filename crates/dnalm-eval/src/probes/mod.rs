//! Probes on frozen features: multinomial logistic regression (L2), ridge regression, k-nearest
//! neighbours and a one-hidden-layer MLP, all under one protocol.
//!
//! # Protocol (no test row ever informs a choice)
//! 1. Features are standardised with the training rows' statistics.
//! 2. The probe's one hyperparameter (L2 strength, ridge λ, k, or — for the MLP — the epoch) is
//!    chosen on the validation split (or, without one, on a seeded 10% of the training rows
//!    held out from fitting).
//! 3. With that choice the probe is refitted `folds` times, each time on the training rows minus
//!    one of `folds` seeded folds (and, for the MLP, with seed `seed + fold`), and scored on the
//!    test split; metrics are reported as mean ± sd over those runs.
//!
//! Logistic regression is argmin's L-BFGS on a loss written in [`logistic`] (why: see
//! there); the L2 grid (1e-1 … 1e-4, as for ridge's λ) is walked from strong to weak with warm
//! starts and, when the best value sits at an end, extended past it (×10 or ×0.1, up to three
//! steps) until the best is inside — the report's `chosen` says when it was; each refit starts
//! from the chosen solution. Ridge is solved by conjugate
//! gradients on the normal equations (matrix-free, so 5,460 k-mer features cost no more than
//! 512 embedding dims); kNN is a brute-force cosine search written here (linfa's kNN needs a
//! spatial index that is slower than one GEMM at these dimensions). The MLP is burn.

use std::{collections::BTreeMap, fmt, str::FromStr};

use ndarray::{Array1, Array2, ArrayView2};
use rand::seq::SliceRandom;
use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};
use serde::{Deserialize, Serialize};

pub mod fit;
mod knn;
mod linear;
pub mod logistic;
mod mlp;
/// Per-base heads: one class per base, through tokenizer offsets.
pub mod per_base;
mod standardizer;
pub mod token;

pub use knn::{knn_outputs, nearest};
pub use linear::{LinearModel, LinearOutput};
pub use mlp::{concat_targets, Mlp};
pub use standardizer::Standardizer;

use crate::{
    features::{Labelled, Targets},
    metrics::{
        summarise, ClassificationMetrics, MultiLabelMetrics, PerBaseMetrics, RegressionMetrics,
        Summary,
    },
    probes::{
        fit::{FitOptions, Selection},
        mlp::mlp_fit_predict,
    },
    EvalError,
};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// Multinomial logistic regression (classification) or ridge (regression): the linear probe.
    Linear,
    /// k-nearest neighbours, cosine similarity.
    Knn,
    /// One hidden layer (GELU), trained with early stopping.
    Mlp,
}

impl ProbeKind {
    /// All probes.
    pub const ALL: [ProbeKind; 3] = [ProbeKind::Linear, ProbeKind::Knn, ProbeKind::Mlp];
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeKind::Linear => "linear",
            ProbeKind::Knn => "knn",
            ProbeKind::Mlp => "mlp",
        })
    }
}

impl FromStr for ProbeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linear" | "logistic" | "ridge" => Ok(ProbeKind::Linear),
            "knn" => Ok(ProbeKind::Knn),
            "mlp" => Ok(ProbeKind::Mlp),
            _ => Err(format!("unknown probe '{s}' (expected linear, knn or mlp)")),
        }
    }
}

/// A task's splits as features.
#[derive(Debug, Clone)]
pub struct SplitFeatures {
    /// Training rows.
    pub train: Labelled,
    /// Validation rows (may be empty).
    pub valid: Labelled,
    /// Test rows.
    pub test: Labelled,
}

impl SplitFeatures {
    /// Columns `range` of every split (e.g. one layer's block of a multi-layer embedding).
    pub fn columns(&self, range: std::ops::Range<usize>) -> SplitFeatures {
        let part = |l: &Labelled| Labelled {
            x: l.x.slice(ndarray::s![.., range.clone()]).to_owned(),
            y: l.y.clone(),
        };
        SplitFeatures {
            train: part(&self.train),
            valid: part(&self.valid),
            test: part(&self.test),
        }
    }

    /// Checks that the splits agree on width and kind and that training has two classes.
    pub fn check(&self, what: &str) -> Result<(), EvalError> {
        let d = self.train.x.ncols();
        for (name, part) in [("valid", &self.valid), ("test", &self.test)] {
            if part.x.nrows() > 0 && part.x.ncols() != d {
                return Err(EvalError::Mismatch {
                    what: what.to_string(),
                    message: format!(
                        "{name} has {} feature columns, train has {d}",
                        part.x.ncols()
                    ),
                });
            }
        }
        if self.train.x.nrows() < 2 || self.test.x.nrows() == 0 {
            return Err(EvalError::TooLittleData {
                what: what.to_string(),
                message: format!(
                    "needs at least 2 training rows and 1 test row (has {} and {})",
                    self.train.x.nrows(),
                    self.test.x.nrows()
                ),
            });
        }
        if let Targets::Classes { .. } = self.train.y {
            if self.train.y.classes_present() < 2 {
                return Err(EvalError::TooLittleData {
                    what: what.to_string(),
                    message: "the training split has a single class; a classifier needs two".into(),
                });
            }
        }
        Ok(())
    }
}

/// Probe settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeOptions {
    /// Refits for the reported mean ± sd (each leaves out one fold of the training rows).
    pub folds: usize,
    /// Seed of folds, hold-outs and MLP initialisation.
    pub seed: u64,
    /// MLP hidden width.
    pub mlp_hidden: usize,
    /// MLP training budget.
    pub mlp_fit: FitOptions,
    /// Logistic regression iteration cap.
    pub max_iterations: u64,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            folds: 5,
            seed: 0,
            mlp_hidden: 256,
            mlp_fit: FitOptions {
                epochs: 40,
                batch_size: 128,
                lr: 1e-3,
                weight_decay: 0.01,
                patience: 5,
                seed: 0,
                max_steps: None,
                eval_every: None,
                select: Selection::ValidLoss,
                score_initial: false,
                device: dnalm_model::DeviceName::Cpu,
                balance: fit::ClassBalance::None,
            },
            max_iterations: 100,
        }
    }
}

/// A probe's result on one task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeReport {
    /// Which probe.
    pub probe: ProbeKind,
    /// The chosen hyperparameter, e.g. `alpha=0.01` or `k=15`.
    pub chosen: String,
    /// Test metrics of each refit (all training rows but one fold).
    pub runs: Vec<BTreeMap<String, f64>>,
    /// Test metrics of the fit on all training rows.
    pub full: BTreeMap<String, f64>,
    /// The headline per metric: the fit on all training rows, ± the sd over the refits (`n`
    /// refits).
    pub summary: BTreeMap<String, Summary>,
    /// The headline fit's test outputs (class probabilities or values), for paired comparisons;
    /// not serialised.
    #[serde(skip)]
    pub test_outputs: Option<Array2<f32>>,
}

impl ProbeReport {
    /// The mean of metric `name` (NaN if absent).
    pub fn mean(&self, name: &str) -> f64 {
        self.summary.get(name).map_or(f64::NAN, |s| s.mean)
    }
}

/// Metrics of outputs (`rows x classes` scores, or `rows x 1` predictions) against targets.
pub fn score(targets: &Targets, outputs: ArrayView2<f32>) -> BTreeMap<String, f64> {
    match targets {
        Targets::Classes { labels, .. } => ClassificationMetrics::compute(labels, outputs).to_map(),
        Targets::Values(v) => {
            let p: Vec<f64> = outputs.column(0).iter().map(|&x| x as f64).collect();
            RegressionMetrics::compute(v, &p).to_map()
        }
        Targets::Labels { present, names } => {
            MultiLabelMetrics::compute(present.view(), names, outputs).to_map()
        }
        Targets::Bases { names, .. } => {
            PerBaseMetrics::compute(&targets.flat_bases(), names, outputs).to_map()
        }
    }
}

/// The headline metric of a target kind: MCC for classes, Pearson for values, the macro AUROC
/// for multi-label (threshold-free, and the figure chromatin-profile models are compared on).
pub fn headline(targets: &Targets) -> &'static str {
    match targets {
        Targets::Classes { .. } | Targets::Bases { .. } => "mcc",
        Targets::Values(_) => "pearson",
        Targets::Labels { .. } => "auroc",
    }
}

/// Runs one probe on a task's splits under the module's protocol.
///
/// ```
/// use dnalm_eval::{run_probe, Labelled, ProbeKind, ProbeOptions, SplitFeatures, Targets};
/// use ndarray::Array2;
///
/// // Class = whether the first feature is positive.
/// let split = |n: usize, shift: usize| {
///     let x = Array2::from_shape_fn((n, 3), |(i, j)| (((i + shift) * 7 + j * 3) % 11) as f32 - 5.0);
///     let labels = x.column(0).iter().map(|&v| (v > 0.0) as u32).collect();
///     Labelled { x, y: Targets::Classes { labels, num_classes: 2 } }
/// };
/// let data = SplitFeatures { train: split(80, 0), valid: split(20, 1), test: split(40, 2) };
/// let report = run_probe(ProbeKind::Linear, &data, &ProbeOptions::default())?;
/// assert!(report.mean("mcc") > 0.9);
/// # Ok::<(), dnalm_eval::EvalError>(())
/// ```
pub fn run_probe(
    kind: ProbeKind,
    data: &SplitFeatures,
    options: &ProbeOptions,
) -> Result<ProbeReport, EvalError> {
    data.check("probe")?;
    let scaler = Standardizer::fit(data.train.x.view());
    let train = Labelled {
        x: scaler.apply(data.train.x.view()),
        y: data.train.y.clone(),
    };
    let test = Labelled {
        x: scaler.apply(data.test.x.view()),
        y: data.test.y.clone(),
    };
    // Selection rows: the validation split, or a held-out tenth of training.
    let (fit_rows, select): (Vec<usize>, Labelled) = if data.valid.x.nrows() > 0 {
        (
            (0..train.x.nrows()).collect(),
            Labelled {
                x: scaler.apply(data.valid.x.view()),
                y: data.valid.y.clone(),
            },
        )
    } else {
        let mut rows: Vec<usize> = (0..train.x.nrows()).collect();
        rows.shuffle(&mut ChaCha8Rng::seed_from_u64(options.seed ^ 0x5e1ec7));
        let cut = (rows.len() / 10).max(1);
        (rows[cut..].to_vec(), train.select(&rows[..cut]))
    };
    let fit_part = train.select(&fit_rows);
    let model = Probe::new(kind, options);
    let chosen = model.choose(&fit_part, &select)?;
    let folds = fold_rows(train.x.nrows(), options.folds, options.seed);
    let mut runs = Vec::new();
    for (f, rows) in folds.iter().enumerate() {
        let part = train.select(rows);
        let outputs = model.fit_predict(&part, &select, &test.x, &chosen, f as u64)?;
        runs.push(score(&test.y, outputs.view()));
    }
    // The headline: one fit on every training row (the refits above, each on all but one fold,
    // give its spread).
    let outputs = model.fit_predict(&train, &select, &test.x, &chosen, folds.len() as u64)?;
    let full = score(&test.y, outputs.view());
    let test_outputs = Some(outputs);
    // Said wherever the choice is shown (CLI, report.md, results.json): without a validation
    // split the hyperparameter was chosen on held-out training rows.
    let chosen = if data.valid.x.nrows() > 0 {
        chosen.to_string()
    } else {
        format!("{chosen} (no valid split: chosen on 10% of train)")
    };
    let summary = summarise(&runs)
        .into_iter()
        .map(|(name, refits)| {
            let mean = full.get(&name).copied().unwrap_or(refits.mean);
            (name, Summary { mean, ..refits })
        })
        .collect();
    Ok(ProbeReport {
        probe: kind,
        chosen,
        summary,
        full,
        runs,
        test_outputs,
    })
}

/// A linear probe fitted once on all of `train` (standardised with the training statistics),
/// its L2 strength chosen on `select` as [`run_probe`] chooses it: the probe that LP-FT starts
/// fine-tuning from. Returns the model on raw (unstandardised) features, the choice as text, and
/// the headline metric on `select`.
pub fn fit_linear_probe(
    train: &Labelled,
    select: &Labelled,
    options: &ProbeOptions,
) -> Result<(LinearModel, String, f64), EvalError> {
    let scaler = Standardizer::fit(train.x.view());
    let standardised = |l: &Labelled| Labelled {
        x: scaler.apply(l.x.view()),
        y: l.y.clone(),
    };
    let (train_std, select_std) = (standardised(train), standardised(select));
    let probe = Probe::new(ProbeKind::Linear, options);
    let chosen = probe.choose(&train_std, &select_std)?;
    let model = match &chosen {
        Choice::Alpha(l2, start) => {
            LinearModel::logistic_from(&train_std, *l2, options.max_iterations, Some(start))?.0
        }
        Choice::Lambda(lambda) => LinearModel::ridge(&train_std, *lambda)?,
        other => {
            return Err(EvalError::Mismatch {
                what: "linear probe".into(),
                message: format!("the linear search chose {other}"),
            })
        }
    };
    let metric = score(&select.y, model.predict(select_std.x.view()).view())
        .get(headline(&train.y))
        .copied()
        .unwrap_or(f64::NAN);
    Ok((model.on_raw_features(&scaler), chosen.to_string(), metric))
}

/// Training rows of each refit: all rows minus one of `folds` seeded folds (all rows if
/// `folds <= 1`).
pub fn fold_rows(n: usize, folds: usize, seed: u64) -> Vec<Vec<usize>> {
    if folds <= 1 {
        return vec![(0..n).collect()];
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0xf01d));
    (0..folds)
        .map(|f| {
            let mut rows: Vec<usize> = order
                .iter()
                .enumerate()
                .filter(|(i, _)| i % folds != f)
                .map(|(_, &r)| r)
                .collect();
            rows.sort_unstable();
            rows
        })
        .collect()
}

/// A chosen hyperparameter.
#[derive(Debug, Clone, PartialEq)]
enum Choice {
    /// L2 strength, with the solution found while choosing it (the refits' warm start).
    Alpha(f64, Array1<f64>),
    Lambda(f64),
    K(usize),
    Epochs(usize),
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Choice::Alpha(a, _) => write!(f, "l2={a:.0e}{}", beyond_grid(*a)),
            Choice::Lambda(l) => write!(f, "lambda={l:.0e}{}", beyond_grid(*l)),
            Choice::K(k) => write!(f, "k={k}"),
            Choice::Epochs(e) => write!(f, "epochs={e}"),
        }
    }
}

/// L2 strengths on the mean loss (`C = 1 / (l2 · rows)` in scikit-learn's terms), strongest
/// first so each fit warm-starts from the previous, smoother solution.
const L2_GRID: [f64; 4] = [1e-1, 1e-2, 1e-3, 1e-4];
const K_GRID: [usize; 6] = [1, 3, 7, 15, 31, 63];
/// Steps (×10 or ×0.1) the L2 grid is extended by at most, at whichever end the best value sits.
const GRID_EXTENSION: usize = 3;

/// Says so when a chosen strength lies outside [`L2_GRID`] (the grid was extended to reach it),
/// and when it is at the end of the extension (the best may lie further out).
fn beyond_grid(value: f64) -> &'static str {
    let (strongest, weakest) = (L2_GRID[0], L2_GRID[L2_GRID.len() - 1]);
    let reach = 10f64.powi(GRID_EXTENSION as i32);
    if value > strongest * reach * 0.9999 || value < weakest / reach * 1.0001 {
        " (beyond the grid: extended to its limit, the best may lie further out)"
    } else if value > strongest * 1.0001 || value < weakest * 0.9999 {
        " (beyond the grid: extended)"
    } else {
        ""
    }
}

/// One value of a regularisation grid search: its strength, its score on the selection rows,
/// and the logistic solution it left (the next fit's warm start).
struct GridPoint {
    strength: f64,
    score: f64,
    solution: Option<Array1<f64>>,
}

/// Walks [`L2_GRID`] from strong to weak, each fit given the previous point (a warm start),
/// then extends the grid past whichever end the best score is reached at (×10 above the
/// strongest, ×0.1 below the weakest, at most [`GRID_EXTENSION`] steps each way, each fit given
/// the best point) for as long as that end scores as well as the best, ties included, so the
/// choice is never at an edge of what was tried. Returns the best point (the first among equals;
/// NaN never wins).
fn search_grid(
    mut fit: impl FnMut(f64, Option<&GridPoint>) -> Result<GridPoint, EvalError>,
) -> Result<GridPoint, EvalError> {
    let better = |a: f64, b: f64| a > b || (b.is_nan() && !a.is_nan());
    let best_index = |tried: &[GridPoint]| {
        (0..tried.len()).fold(0, |b, i| {
            if better(tried[i].score, tried[b].score) {
                i
            } else {
                b
            }
        })
    };
    let mut tried: Vec<GridPoint> = Vec::new();
    for &strength in &L2_GRID {
        let point = fit(strength, tried.last())?;
        tried.push(point);
    }
    for step in [10.0, 0.1] {
        for _ in 0..GRID_EXTENSION {
            let best = &tried[best_index(&tried)];
            let edge = if step > 1.0 {
                tried
                    .iter()
                    .max_by(|a, b| a.strength.total_cmp(&b.strength))
            } else {
                tried
                    .iter()
                    .min_by(|a, b| a.strength.total_cmp(&b.strength))
            };
            // Extend while the edge scores as well as the best: a tie there (a flat curve, e.g.
            // the same MCC at 1e-3 and 1e-4) does not show that the best lies inside.
            let Some(edge) = edge.filter(|e| !e.score.is_nan() && !better(best.score, e.score))
            else {
                break;
            };
            let point = fit(edge.strength * step, Some(best))?;
            tried.push(point);
        }
    }
    let b = best_index(&tried);
    Ok(tried.swap_remove(b))
}

struct Probe<'a> {
    kind: ProbeKind,
    options: &'a ProbeOptions,
}

impl<'a> Probe<'a> {
    fn new(kind: ProbeKind, options: &'a ProbeOptions) -> Self {
        Probe { kind, options }
    }

    fn choose(&self, train: &Labelled, select: &Labelled) -> Result<Choice, EvalError> {
        let metric = headline(&train.y);
        let better = |a: f64, b: f64| a > b || b.is_nan();
        match (self.kind, &train.y) {
            (ProbeKind::Linear, Targets::Classes { .. } | Targets::Labels { .. }) => {
                let best = search_grid(|l2, from| {
                    let start = from.and_then(|p| p.solution.as_ref());
                    let (m, solution) =
                        LinearModel::logistic_from(train, l2, self.options.max_iterations, start)?;
                    Ok(GridPoint {
                        strength: l2,
                        score: score(&select.y, m.predict(select.x.view()).view())[metric],
                        solution: Some(solution),
                    })
                })?;
                Ok(Choice::Alpha(
                    best.strength,
                    best.solution.unwrap_or_default(),
                ))
            }
            (ProbeKind::Linear, Targets::Bases { .. }) => Err(EvalError::Mismatch {
                what: "linear probe".into(),
                message: "takes one target per row, not per-base classes".into(),
            }),
            (ProbeKind::Linear, Targets::Values(_)) => {
                let best = search_grid(|lambda, _| {
                    let m = LinearModel::ridge(train, lambda)?;
                    Ok(GridPoint {
                        strength: lambda,
                        score: score(&select.y, m.predict(select.x.view()).view())[metric],
                        solution: None,
                    })
                })?;
                Ok(Choice::Lambda(best.strength))
            }
            (ProbeKind::Knn, _) => {
                let neighbours = nearest(
                    train.x.view(),
                    select.x.view(),
                    *K_GRID.last().unwrap_or(&1),
                );
                let mut best = (Choice::K(1), f64::NAN);
                for &k in K_GRID.iter().filter(|&&k| k <= train.x.nrows()) {
                    let out = knn_outputs(&neighbours, &train.y, k);
                    let s = score(&select.y, out.view())[metric];
                    if better(s, best.1) {
                        best = (Choice::K(k), s);
                    }
                }
                Ok(best.0)
            }
            (ProbeKind::Mlp, _) => {
                // Early stopping on the selection rows picks the epoch inside each fit.
                Ok(Choice::Epochs(self.options.mlp_fit.epochs))
            }
        }
    }

    fn fit_predict(
        &self,
        train: &Labelled,
        select: &Labelled,
        test: &Array2<f32>,
        choice: &Choice,
        run: u64,
    ) -> Result<Array2<f32>, EvalError> {
        match *choice {
            Choice::Alpha(l2, ref start) => Ok(LinearModel::logistic_from(
                train,
                l2,
                self.options.max_iterations,
                Some(start),
            )?
            .0
            .predict(test.view())),
            Choice::Lambda(l) => Ok(LinearModel::ridge(train, l)?.predict(test.view())),
            Choice::K(k) => Ok(knn_outputs(
                &nearest(train.x.view(), test.view(), k),
                &train.y,
                k,
            )),
            Choice::Epochs(_) => {
                let mut fit_options = self.options.mlp_fit.clone();
                fit_options.seed = self.options.seed.wrapping_add(run);
                mlp_fit_predict(train, select, test, self.options.mlp_hidden, &fit_options)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grid is extended at whichever end the best sits, until the best is inside, and the
    /// report says so.
    #[test]
    fn the_l2_grid_is_extended_until_the_choice_is_inside() {
        let search = |peak: f64| {
            let score = |l: f64| -(l.log10() - peak.log10()).powi(2);
            let mut fits = 0;
            let best = search_grid(|l, _| {
                fits += 1;
                Ok(GridPoint {
                    strength: l,
                    score: score(l),
                    solution: None,
                })
            })
            .unwrap();
            (best.strength, fits)
        };
        let (best, n) = search(1e-6);
        assert!((best / 1e-6 - 1.0).abs() < 1e-9, "{best}");
        assert_eq!(n, 4 + 3, "1e-5, 1e-6, then 1e-7 shows the peak is inside");
        let (best, _) = search(10.0);
        assert!((best / 10.0 - 1.0).abs() < 1e-9, "{best}");
        let (best, n) = search(1e-2);
        assert!((best / 1e-2 - 1.0).abs() < 1e-9, "{best}");
        assert_eq!(n, 4, "an inside choice extends nothing");
        // At most GRID_EXTENSION steps: a peak far away is reported at the last step.
        let (best, _) = search(1e-12);
        assert!((best / 1e-7 - 1.0).abs() < 1e-9, "{best}");
        // 1e-7 is as far as the grid extends: the report says the best may lie beyond it.
        let far = Choice::Lambda(best).to_string();
        assert_eq!(
            far,
            "lambda=1e-7 (beyond the grid: extended to its limit, the best may lie further out)"
        );
        assert_eq!(
            Choice::Lambda(1e-5).to_string(),
            "lambda=1e-5 (beyond the grid: extended)"
        );
        assert_eq!(Choice::Lambda(1e-3).to_string(), "lambda=1e-3");
    }

    /// A tie between the weakest grid point and the best (a flat stretch of the valid curve)
    /// extends the grid: LP-FT's probe and the bench's, on features equal to 2e-6, chose 1e-3
    /// and 1e-7 on `pub_gc_species2` when a tie at 1e-4 stopped one search and not the other.
    #[test]
    fn a_tie_with_the_edge_extends_the_grid() {
        let mut tried = Vec::new();
        let best = search_grid(|l, _| {
            tried.push(l);
            // Flat from 1e-3 to 1e-4, better further out.
            let score = match l {
                l if l >= 1e-2 * 0.99 => 0.88,
                l if l >= 1e-4 * 0.99 => 0.886,
                l if l >= 1e-5 * 0.99 => 0.89,
                _ => 0.87,
            };
            Ok(GridPoint {
                strength: l,
                score,
                solution: None,
            })
        })
        .unwrap();
        assert!((best.strength / 1e-5 - 1.0).abs() < 1e-9, "{tried:?}");
        assert_eq!(
            tried.len(),
            4 + 2,
            "1e-5, then 1e-6 shows it is inside: {tried:?}"
        );
        // A tie inside the grid (not at an edge) still extends nothing, and the first among
        // equals (the stronger) is kept.
        let best = search_grid(|l, _| {
            Ok(GridPoint {
                strength: l,
                score: if (1e-3 * 0.99..=1e-2 * 1.01).contains(&l) {
                    0.9
                } else {
                    0.8
                },
                solution: None,
            })
        })
        .unwrap();
        assert!(
            (best.strength / 1e-2 - 1.0).abs() < 1e-9,
            "{}",
            best.strength
        );
    }

    /// A NaN score at an edge (a fit that failed, a validation split with one class) never
    /// extends the grid, even when every score is NaN (where NaN "ties" the best).
    #[test]
    fn a_nan_edge_does_not_extend_the_grid() {
        for all_nan in [false, true] {
            let mut tried = Vec::new();
            let best = search_grid(|l, _| {
                tried.push(l);
                let inside = (1e-3 * 0.99..=1e-2 * 1.01).contains(&l);
                Ok(GridPoint {
                    strength: l,
                    score: if inside && !all_nan { 0.9 } else { f64::NAN },
                    solution: None,
                })
            })
            .unwrap();
            assert_eq!(tried.len(), L2_GRID.len(), "all NaN: {all_nan}: {tried:?}");
            let want = if all_nan { 1e-1 } else { 1e-2 };
            assert!(
                (best.strength / want - 1.0).abs() < 1e-9,
                "{}",
                best.strength
            );
        }
    }
    use rand::Rng;

    /// Rows with a planted linear signal: class = [x·w > 0], plus pure-noise columns.
    fn planted(n: usize, d: usize, seed: u64) -> Labelled {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = Array2::from_shape_fn((n, d), |_| rng.random::<f32>() * 2.0 - 1.0);
        let labels = x
            .rows()
            .into_iter()
            .map(|r| (r[0] - 0.5 * r[1] + 0.25 * r[2] > 0.0) as u32)
            .collect();
        Labelled {
            x,
            y: Targets::Classes {
                labels,
                num_classes: 2,
            },
        }
    }

    fn splits(seed: u64) -> SplitFeatures {
        SplitFeatures {
            train: planted(400, 10, seed),
            valid: planted(100, 10, seed + 1),
            test: planted(200, 10, seed + 2),
        }
    }

    #[test]
    fn linear_probe_recovers_a_planted_signal() {
        let options = ProbeOptions {
            folds: 3,
            ..Default::default()
        };
        let report = run_probe(ProbeKind::Linear, &splits(1), &options).unwrap();
        assert!(report.mean("accuracy") > 0.93, "{:?}", report.summary);
        assert!(report.mean("mcc") > 0.85);
        assert_eq!(report.runs.len(), 3);
        // The same features with training labels shuffled (no signal) stay near chance. One
        // fit on random labels points in a random direction of the 10 dimensions, whose test MCC
        // against the planted direction spreads with sd ~0.3, so the check averages 8 shuffles.
        let shuffled: Vec<f64> = (0..8u64)
            .map(|seed| {
                let mut noise = splits(1);
                if let Targets::Classes { labels, .. } = &mut noise.train.y {
                    labels.shuffle(&mut ChaCha8Rng::seed_from_u64(9 + seed));
                }
                run_probe(ProbeKind::Linear, &noise, &options)
                    .unwrap()
                    .mean("mcc")
            })
            .collect();
        let mean = shuffled.iter().sum::<f64>() / shuffled.len() as f64;
        assert!(mean.abs() < 0.2, "{shuffled:?}");
    }

    #[test]
    fn knn_and_mlp_probes_learn_the_signal() {
        let mut options = ProbeOptions {
            folds: 2,
            mlp_hidden: 32,
            ..Default::default()
        };
        options.mlp_fit.epochs = 30;
        options.mlp_fit.batch_size = 32;
        options.mlp_fit.lr = 3e-3;
        let knn = run_probe(ProbeKind::Knn, &splits(3), &options).unwrap();
        assert!(knn.mean("accuracy") > 0.75, "{:?}", knn.summary);
        let mlp = run_probe(ProbeKind::Mlp, &splits(3), &options).unwrap();
        assert!(mlp.mean("accuracy") > 0.85, "{:?}", mlp.summary);
    }

    #[test]
    fn ridge_recovers_linear_weights() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let x = Array2::from_shape_fn((300, 5), |_| rng.random::<f32>());
        let y: Vec<f64> = x
            .rows()
            .into_iter()
            .map(|r| 2.0 * r[0] as f64 - r[3] as f64 + 0.5)
            .collect();
        let train = Labelled {
            x,
            y: Targets::Values(y),
        };
        let m = LinearModel::ridge(&train, 1e-9).unwrap();
        assert!((m.weights[[0, 0]] - 2.0).abs() < 1e-3, "{:?}", m.weights);
        assert!((m.weights[[3, 0]] + 1.0).abs() < 1e-3);
        assert!((m.bias[0] - 0.5).abs() < 1e-3);
    }

    #[test]
    fn folds_never_put_a_row_in_every_refit_and_never_touch_test_rows() {
        let folds = fold_rows(10, 5, 0);
        assert_eq!(folds.len(), 5);
        for row in 0..10 {
            let held_out = folds.iter().filter(|f| !f.contains(&row)).count();
            assert_eq!(held_out, 1, "row {row} is held out exactly once");
        }
        assert!(folds.iter().flatten().all(|&r| r < 10));
    }

    #[test]
    fn a_one_class_training_split_is_refused() {
        let mut data = splits(5);
        data.train.y = Targets::Classes {
            labels: vec![1; 400],
            num_classes: 2,
        };
        let err = run_probe(ProbeKind::Linear, &data, &ProbeOptions::default()).unwrap_err();
        assert!(err.to_string().contains("single class"), "{err}");
    }

    #[test]
    fn nearest_neighbours_are_by_cosine_similarity() {
        let reference = ndarray::array![[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]];
        let q = ndarray::array![[2.0f32, 0.1]];
        assert_eq!(nearest(reference.view(), q.view(), 2), vec![vec![0, 2]]);
    }

    /// Multi-label rows: label 0 = [x0 > 0], label 1 = [x1 > 0], label 2 (rare, ~10%) =
    /// [x0 + x2 > 1.1]; the rest noise.
    fn planted_labels(n: usize, seed: u64) -> Labelled {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = Array2::from_shape_fn((n, 8), |_| rng.random::<f32>() * 2.0 - 1.0);
        let present = Array2::from_shape_fn((n, 3), |(i, k)| match k {
            0 => x[[i, 0]] > 0.0,
            1 => x[[i, 1]] > 0.0,
            _ => x[[i, 0]] + x[[i, 2]] > 1.1,
        });
        Labelled {
            x,
            y: Targets::Labels {
                present,
                names: vec!["a".into(), "b".into(), "rare".into()],
            },
        }
    }

    /// Every probe handles multi-label targets: per-label and macro metrics, by name, and a
    /// planted signal recovered. Shuffling the rare label's training rows takes it to chance
    /// while the others stay: the labels are fitted independently.
    #[test]
    fn every_probe_fits_multi_label_targets_per_label() {
        let data = SplitFeatures {
            train: planted_labels(600, 1),
            valid: planted_labels(150, 2),
            test: planted_labels(400, 3),
        };
        let options = ProbeOptions {
            folds: 2,
            ..Default::default()
        };
        for (kind, floor) in [
            (ProbeKind::Linear, 0.97),
            (ProbeKind::Knn, 0.85),
            (ProbeKind::Mlp, 0.95),
        ] {
            let report = run_probe(kind, &data, &options).unwrap();
            assert_eq!(headline(&data.train.y), "auroc");
            for name in ["auroc", "auprc", "mcc", "auroc/rare", "auprc/a", "mcc/b"] {
                assert!(report.summary.contains_key(name), "{kind}: no {name}");
            }
            assert!(
                report.mean("auroc") > floor && report.mean("auroc/rare") > floor - 0.05,
                "{kind}: {:?}",
                report.summary
            );
        }
        let mut noise = data.clone();
        if let Targets::Labels { present, .. } = &mut noise.train.y {
            let mut column: Vec<bool> = present.column(2).to_vec();
            column.shuffle(&mut ChaCha8Rng::seed_from_u64(9));
            present.column_mut(2).assign(&ndarray::Array1::from(column));
        }
        let report = run_probe(ProbeKind::Linear, &noise, &options).unwrap();
        assert!(report.mean("auroc/a") > 0.97, "{:?}", report.summary);
        assert!(
            (report.mean("auroc/rare") - 0.5).abs() < 0.15,
            "{:?}",
            report.summary
        );
    }
}
