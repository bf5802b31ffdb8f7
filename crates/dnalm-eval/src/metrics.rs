//! Task metrics: accuracy, MCC, macro-F1, AUROC and AUPRC (binary and one-vs-rest) for
//! classification; Pearson, Spearman, MSE and R² for regression; mean ± sd summaries.
//!
//! Conventions follow scikit-learn, so numbers can be checked against it: MCC is Gorodkin's
//! multi-class R_K and is 0 when undefined (a constant prediction or a one-class truth); AUROC
//! gives tied scores half credit (Mann-Whitney with average ranks); AUPRC is average precision
//! (the step-wise sum over distinct thresholds, no interpolation); macro-F1 averages over the
//! classes that occur in the truth or the predictions.

use std::collections::BTreeMap;

use ndarray::{Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::Targets;

/// Metrics of a classifier on one split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    /// Fraction of rows whose arg-max class is the true class.
    pub accuracy: f64,
    /// Matthews correlation coefficient (multi-class R_K); 0 when undefined.
    pub mcc: f64,
    /// Unweighted mean of per-class F1.
    pub macro_f1: f64,
    /// Area under the ROC curve (binary), or the mean one-vs-rest AUROC over classes that occur
    /// (multi-class); `None` when the truth has a single class.
    pub auroc: Option<f64>,
    /// Average precision (binary, positive class 1) or mean one-vs-rest average precision.
    pub auprc: Option<f64>,
}

impl ClassificationMetrics {
    /// Computes all metrics from true classes and per-class scores (`rows x classes`, e.g.
    /// probabilities); the prediction is the arg-max of each row.
    ///
    /// # Panics
    /// Never on data; `labels.len()` must equal `scores.nrows()` (checked by callers, asserted
    /// here) and every label must be `< scores.ncols()`.
    pub fn compute(labels: &[u32], scores: ArrayView2<f32>) -> Self {
        assert_eq!(labels.len(), scores.nrows(), "one score row per label");
        let k = scores.ncols();
        let predicted: Vec<u32> = scores
            .rows()
            .into_iter()
            .map(|r| argmax(r) as u32)
            .collect();
        let confusion = confusion(labels, &predicted, k);
        let (auroc, auprc) = if k == 2 {
            let positive: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
            let s: Vec<f64> = scores.column(1).iter().map(|&v| v as f64).collect();
            (auroc(&positive, &s), average_precision(&positive, &s))
        } else {
            let mut rocs = Vec::new();
            let mut prcs = Vec::new();
            for c in 0..k {
                let positive: Vec<bool> = labels.iter().map(|&l| l as usize == c).collect();
                let s: Vec<f64> = scores.column(c).iter().map(|&v| v as f64).collect();
                rocs.extend(auroc(&positive, &s));
                prcs.extend(average_precision(&positive, &s));
            }
            (mean_of(&rocs), mean_of(&prcs))
        };
        ClassificationMetrics {
            accuracy: accuracy(labels, &predicted),
            mcc: mcc(&confusion),
            macro_f1: macro_f1(&confusion),
            auroc,
            auprc,
        }
    }

    /// The metrics by name (`accuracy`, `mcc`, `macro_f1`, `auroc`, `auprc`), undefined ones
    /// left out.
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        m.insert("accuracy".into(), self.accuracy);
        m.insert("mcc".into(), self.mcc);
        m.insert("macro_f1".into(), self.macro_f1);
        if let Some(v) = self.auroc {
            m.insert("auroc".into(), v);
        }
        if let Some(v) = self.auprc {
            m.insert("auprc".into(), v);
        }
        m
    }
}

/// Metrics of a multi-label classifier on one split: per label, AUROC, average precision and
/// MCC at probability 0.5; their unweighted means over labels (labels whose metric is undefined
/// on the split, e.g. no positive row, left out of the mean).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiLabelMetrics {
    /// Label names, in column order.
    pub names: Vec<String>,
    /// AUROC per label (`None` where the split has only one side of it).
    pub auroc: Vec<Option<f64>>,
    /// Average precision per label (`None` without a positive row).
    pub auprc: Vec<Option<f64>>,
    /// MCC per label, predicting the label where its probability is at least 0.5.
    pub mcc: Vec<f64>,
}

impl MultiLabelMetrics {
    /// Computes the metrics from `present` (`rows x labels`) and per-label probabilities of the
    /// same shape.
    ///
    /// # Panics
    /// When the shapes differ (callers check them).
    pub fn compute(present: ArrayView2<bool>, names: &[String], scores: ArrayView2<f32>) -> Self {
        assert_eq!(present.dim(), scores.dim(), "one score per row and label");
        let mut out = MultiLabelMetrics {
            names: names.to_vec(),
            auroc: Vec::new(),
            auprc: Vec::new(),
            mcc: Vec::new(),
        };
        for (truth, s) in present.columns().into_iter().zip(scores.columns()) {
            let positive: Vec<bool> = truth.to_vec();
            let s: Vec<f64> = s.iter().map(|&v| v as f64).collect();
            out.auroc.push(auroc(&positive, &s));
            out.auprc.push(average_precision(&positive, &s));
            let labels: Vec<u32> = positive.iter().map(|&p| p as u32).collect();
            let predicted: Vec<u32> = s.iter().map(|&v| (v >= 0.5) as u32).collect();
            out.mcc.push(mcc(&confusion(&labels, &predicted, 2)));
        }
        out
    }

    /// The macro averages (`auroc`, `auprc`, `mcc`) and every label's (`auroc/NAME`, ...),
    /// undefined ones left out.
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        let defined = |v: &[Option<f64>]| v.iter().flatten().copied().collect::<Vec<_>>();
        for (metric, values) in [("auroc", &self.auroc), ("auprc", &self.auprc)] {
            if let Some(mean) = mean_of(&defined(values)) {
                m.insert(metric.to_string(), mean);
            }
            for (name, v) in self.names.iter().zip(values.iter()) {
                if let Some(v) = v {
                    m.insert(format!("{metric}/{name}"), *v);
                }
            }
        }
        if let Some(mean) = mean_of(&self.mcc) {
            m.insert("mcc".into(), mean);
        }
        for (name, v) in self.names.iter().zip(&self.mcc) {
            m.insert(format!("mcc/{name}"), *v);
        }
        m
    }
}

/// Metrics of a per-base (segmentation) classifier on one split, at base resolution: the
/// multi-class MCC, accuracy and macro-F1 over all bases (the prediction is each base's arg-max
/// class), and per class (one-vs-rest) MCC, F1 and average precision; the macro AUPRC is the
/// mean over classes that occur.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerBaseMetrics {
    /// Class names, in column order.
    pub names: Vec<String>,
    /// The metrics over all bases (as [`ClassificationMetrics`], AUROC left out).
    pub overall: ClassificationMetrics,
    /// Per class, one-vs-rest MCC.
    pub mcc: Vec<f64>,
    /// Per class, F1.
    pub f1: Vec<f64>,
    /// Per class, average precision (`None` where the class is absent from the split).
    pub auprc: Vec<Option<f64>>,
}

impl PerBaseMetrics {
    /// Computes the metrics from the class of every base and per-class scores (`bases x
    /// classes`).
    ///
    /// # Panics
    /// When the lengths differ (callers check them).
    pub fn compute(truth: &[u32], names: &[String], scores: ArrayView2<f32>) -> Self {
        assert_eq!(truth.len(), scores.nrows(), "one score row per base");
        let k = scores.ncols();
        let predicted: Vec<u32> = scores
            .rows()
            .into_iter()
            .map(|r| argmax(r) as u32)
            .collect();
        let matrix = confusion(truth, &predicted, k);
        let mut out = PerBaseMetrics {
            names: names.to_vec(),
            overall: ClassificationMetrics {
                accuracy: accuracy(truth, &predicted),
                mcc: mcc(&matrix),
                macro_f1: macro_f1(&matrix),
                auroc: None,
                auprc: None,
            },
            mcc: Vec::new(),
            f1: Vec::new(),
            auprc: Vec::new(),
        };
        for c in 0..k {
            let positive: Vec<bool> = truth.iter().map(|&l| l as usize == c).collect();
            let s: Vec<f64> = scores.column(c).iter().map(|&v| v as f64).collect();
            out.auprc.push(average_precision(&positive, &s));
            let t: Vec<u32> = positive.iter().map(|&p| p as u32).collect();
            let p: Vec<u32> = predicted
                .iter()
                .map(|&p| (p as usize == c) as u32)
                .collect();
            let m = confusion(&t, &p, 2);
            out.mcc.push(mcc(&m));
            let (tp, fp, fn_) = (m[1][1] as f64, m[0][1] as f64, m[1][0] as f64);
            out.f1.push(if tp == 0.0 {
                0.0
            } else {
                2.0 * tp / (2.0 * tp + fp + fn_)
            });
        }
        out.overall.auprc = mean_of(&out.auprc.iter().flatten().copied().collect::<Vec<_>>());
        out
    }

    /// The overall metrics (`mcc`, `accuracy`, `macro_f1`, `auprc`) and every class's
    /// (`mcc/NAME`, `f1/NAME`, `auprc/NAME`), undefined ones left out.
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        let mut m = self.overall.to_map();
        for (i, name) in self.names.iter().enumerate() {
            m.insert(format!("mcc/{name}"), self.mcc[i]);
            m.insert(format!("f1/{name}"), self.f1[i]);
            if let Some(v) = self.auprc[i] {
                m.insert(format!("auprc/{name}"), v);
            }
        }
        m
    }
}

/// Metrics of a regressor on one split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    /// Pearson correlation (0 when either side is constant).
    pub pearson: f64,
    /// Spearman rank correlation, ties given average ranks.
    pub spearman: f64,
    /// Mean squared error.
    pub mse: f64,
    /// Coefficient of determination, `1 - SSE/SST` (0 when the truth is constant).
    pub r2: f64,
}

impl RegressionMetrics {
    /// Computes all metrics; `truth` and `predicted` have equal lengths.
    pub fn compute(truth: &[f64], predicted: &[f64]) -> Self {
        assert_eq!(truth.len(), predicted.len(), "one prediction per target");
        let n = truth.len().max(1) as f64;
        let mse = truth
            .iter()
            .zip(predicted)
            .map(|(t, p)| (t - p).powi(2))
            .sum::<f64>()
            / n;
        let mean = truth.iter().sum::<f64>() / n;
        let sst = truth.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / n;
        RegressionMetrics {
            pearson: pearson(truth, predicted),
            spearman: spearman(truth, predicted),
            mse,
            r2: if sst > 0.0 { 1.0 - mse / sst } else { 0.0 },
        }
    }

    /// The metrics by name (`pearson`, `spearman`, `mse`, `r2`).
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("pearson".into(), self.pearson),
            ("spearman".into(), self.spearman),
            ("mse".into(), self.mse),
            ("r2".into(), self.r2),
        ])
    }
}

/// Index of the largest value (the first on ties; NaN never wins).
pub fn argmax(row: ArrayView1<f32>) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] || row[best].is_nan() {
            best = i;
        }
    }
    best
}

/// Fraction of equal entries.
pub fn accuracy(labels: &[u32], predicted: &[u32]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    labels.iter().zip(predicted).filter(|(a, b)| a == b).count() as f64 / labels.len() as f64
}

/// The `k x k` confusion matrix, `[true][predicted]`.
pub fn confusion(labels: &[u32], predicted: &[u32], k: usize) -> Vec<Vec<u64>> {
    let mut c = vec![vec![0u64; k]; k];
    for (&t, &p) in labels.iter().zip(predicted) {
        c[t as usize][p as usize] += 1;
    }
    c
}

/// Matthews correlation (Gorodkin's R_K) of a confusion matrix; 0 when undefined.
pub fn mcc(confusion: &[Vec<u64>]) -> f64 {
    let k = confusion.len();
    let total: f64 = confusion.iter().flatten().map(|&v| v as f64).sum();
    let correct: f64 = (0..k).map(|i| confusion[i][i] as f64).sum();
    let truth: Vec<f64> = (0..k)
        .map(|i| confusion[i].iter().sum::<u64>() as f64)
        .collect();
    let pred: Vec<f64> = (0..k)
        .map(|j| confusion.iter().map(|r| r[j]).sum::<u64>() as f64)
        .collect();
    let cov_tp = correct * total - truth.iter().zip(&pred).map(|(t, p)| t * p).sum::<f64>();
    let cov_pp = total * total - pred.iter().map(|p| p * p).sum::<f64>();
    let cov_tt = total * total - truth.iter().map(|t| t * t).sum::<f64>();
    let denominator = (cov_pp * cov_tt).sqrt();
    if denominator > 0.0 {
        cov_tp / denominator
    } else {
        0.0
    }
}

/// Mean F1 over the classes present in the truth or the predictions.
pub fn macro_f1(confusion: &[Vec<u64>]) -> f64 {
    let k = confusion.len();
    let mut f1s = Vec::new();
    for c in 0..k {
        let tp = confusion[c][c] as f64;
        let truth = confusion[c].iter().sum::<u64>() as f64;
        let pred = confusion.iter().map(|r| r[c]).sum::<u64>() as f64;
        if truth + pred == 0.0 {
            continue;
        }
        f1s.push(2.0 * tp / (truth + pred));
    }
    mean_of(&f1s).unwrap_or(0.0)
}

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting one half. `None` without both classes.
pub fn auroc(positive: &[bool], scores: &[f64]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    let ranks = average_ranks(scores);
    let rank_sum: f64 = ranks
        .iter()
        .zip(positive)
        .filter(|(_, &p)| p)
        .map(|(r, _)| r)
        .sum();
    Some((rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

/// Average precision: `sum_n (R_n - R_{n-1}) P_n` over distinct score thresholds, highest
/// first. `None` without positives.
pub fn average_precision(positive: &[bool], scores: &[f64]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    if n_pos == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut ap, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let threshold = scores[order[i]];
        while i < order.len() && scores[order[i]] == threshold {
            if positive[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        let recall = tp as f64 / n_pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - last_recall) * precision;
        last_recall = recall;
    }
    Some(ap)
}

/// 1-based ranks, ties given the mean of the ranks they span.
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            ranks[o] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// Pearson correlation; 0 when either side is constant or empty.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    if a.len() < 2 {
        return 0.0;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    if saa > 0.0 && sbb > 0.0 {
        sab / (saa * sbb).sqrt()
    } else {
        0.0
    }
}

/// Spearman rank correlation (Pearson of average ranks).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&average_ranks(a), &average_ranks(b))
}

fn mean_of(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Mean, sample standard deviation and count of repeated measurements (seeds or folds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Mean.
    #[serde(deserialize_with = "nullable::number")]
    pub mean: f64,
    /// Sample standard deviation (n - 1); 0 for a single value.
    #[serde(deserialize_with = "nullable::number")]
    pub sd: f64,
    /// Number of values.
    pub n: usize,
}

impl Summary {
    /// Summarises `values` (NaN if empty).
    pub fn of(values: &[f64]) -> Summary {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Summary { mean, sd, n }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.n > 1 {
            write!(f, "{:.3} ± {:.3}", self.mean, self.sd)
        } else {
            write!(f, "{:.3}", self.mean)
        }
    }
}

/// Summarises several metric maps key by key (keys missing from some maps use the rest).
pub fn summarise(runs: &[BTreeMap<String, f64>]) -> BTreeMap<String, Summary> {
    let mut keys: Vec<&String> = runs.iter().flat_map(|m| m.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| {
            let values: Vec<f64> = runs.iter().filter_map(|m| m.get(k).copied()).collect();
            (k.clone(), Summary::of(&values))
        })
        .collect()
}

/// The difference in a headline metric between two methods scored on the same test rows, with
/// its paired bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedDifference {
    /// `a − b` on the test split as it is (means over each side's runs).
    #[serde(deserialize_with = "nullable::number")]
    pub difference: f64,
    /// 2.5th and 97.5th percentiles of the difference over resamples of the test rows (each
    /// resample scores both sides on the same rows).
    #[serde(deserialize_with = "nullable::pair")]
    pub ci: [f64; 2],
    /// Resamples drawn.
    pub resamples: usize,
}

impl PairedDifference {
    /// `a` is better than `b` only when the whole interval is above 0, worse only when it is
    /// below: the rule every "win" in a report follows.
    pub fn verdict(&self) -> Verdict {
        if self.ci[0] > 0.0 {
            Verdict::Win
        } else if self.ci[1] < 0.0 {
            Verdict::Loss
        } else {
            Verdict::Tie
        }
    }
}

/// Outcome of a paired comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The interval lies above 0.
    Win,
    /// The interval lies below 0.
    Loss,
    /// The interval holds 0: no difference shown.
    Tie,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Win => "win",
            Verdict::Loss => "loss",
            Verdict::Tie => "no difference",
        })
    }
}

/// One method's predictions for a test split, once per run (refit or seed), with the truth:
/// what a paired comparison reads. Classes are the argmax of each row's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestPredictions {
    /// Classification.
    Classes {
        /// True class per row.
        truth: Vec<u32>,
        /// Number of classes.
        num_classes: usize,
        /// Predicted class per row, per run.
        runs: Vec<Vec<u32>>,
    },
    /// Regression.
    Values {
        /// True value per row.
        truth: Vec<f64>,
        /// Predicted value per row, per run.
        runs: Vec<Vec<f64>>,
    },
    /// Multi-label: the headline is the macro AUROC, so the scores are kept.
    Labels {
        /// Per row, whether each label applies.
        truth: Vec<Vec<bool>>,
        /// Per run, per row, each label's probability.
        runs: Vec<Vec<Vec<f32>>>,
    },
    /// Per-base: rows are sequences (a bootstrap draws whole sequences), the headline the MCC
    /// over their bases.
    Bases {
        /// Per row, the class of each base.
        truth: Vec<Vec<u8>>,
        /// Number of classes.
        num_classes: usize,
        /// Per run, per row, each base's predicted class.
        runs: Vec<Vec<Vec<u8>>>,
    },
}

impl TestPredictions {
    /// Predictions from outputs (`rows x classes` scores, `rows x 1` values, or per-base
    /// `bases x classes` scores; one array per run, rows in the order of `targets`).
    pub fn of(targets: &Targets, runs: &[Array2<f32>]) -> TestPredictions {
        match targets {
            Targets::Classes {
                labels,
                num_classes,
            } => TestPredictions::Classes {
                truth: labels.clone(),
                num_classes: *num_classes,
                runs: runs
                    .iter()
                    .map(|o| o.rows().into_iter().map(|r| argmax(r) as u32).collect())
                    .collect(),
            },
            Targets::Values(values) => TestPredictions::Values {
                truth: values.clone(),
                runs: runs
                    .iter()
                    .map(|o| o.column(0).iter().map(|&v| v as f64).collect())
                    .collect(),
            },
            Targets::Labels { present, .. } => TestPredictions::Labels {
                truth: present.rows().into_iter().map(|r| r.to_vec()).collect(),
                runs: runs
                    .iter()
                    .map(|o| o.rows().into_iter().map(|r| r.to_vec()).collect())
                    .collect(),
            },
            Targets::Bases { classes, names } => TestPredictions::Bases {
                truth: classes.clone(),
                num_classes: names.len(),
                runs: runs
                    .iter()
                    .map(|o| {
                        let mut at = 0;
                        classes
                            .iter()
                            .map(|c| {
                                let rows = o.slice(ndarray::s![at..at + c.len(), ..]);
                                at += c.len();
                                rows.rows().into_iter().map(|r| argmax(r) as u8).collect()
                            })
                            .collect()
                    })
                    .collect(),
            },
        }
    }

    /// Test rows.
    pub fn rows(&self) -> usize {
        match self {
            TestPredictions::Classes { truth, .. } => truth.len(),
            TestPredictions::Values { truth, .. } => truth.len(),
            TestPredictions::Labels { truth, .. } => truth.len(),
            TestPredictions::Bases { truth, .. } => truth.len(),
        }
    }

    /// Whether both were scored against the same truth (the same test rows, in order).
    fn same_truth(&self, other: &TestPredictions) -> bool {
        match (self, other) {
            (
                TestPredictions::Classes { truth: a, .. },
                TestPredictions::Classes { truth: b, .. },
            ) => a == b,
            (
                TestPredictions::Values { truth: a, .. },
                TestPredictions::Values { truth: b, .. },
            ) => a == b,
            (
                TestPredictions::Labels { truth: a, .. },
                TestPredictions::Labels { truth: b, .. },
            ) => a == b,
            (TestPredictions::Bases { truth: a, .. }, TestPredictions::Bases { truth: b, .. }) => {
                a == b
            }
            _ => false,
        }
    }

    /// The headline (MCC, Pearson, macro AUROC, or per-base MCC) on `rows` (indices, repeats allowed),
    /// averaged over runs.
    pub fn headline(&self, rows: &[usize]) -> f64 {
        let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
        match self {
            TestPredictions::Classes {
                truth,
                num_classes,
                runs,
            } => {
                let truth: Vec<u32> = rows.iter().map(|&r| truth[r]).collect();
                mean(
                    runs.iter()
                        .map(|p| {
                            let predicted: Vec<u32> = rows.iter().map(|&r| p[r]).collect();
                            mcc(&confusion(&truth, &predicted, *num_classes))
                        })
                        .collect(),
                )
            }
            TestPredictions::Values { truth, runs } => {
                let truth: Vec<f64> = rows.iter().map(|&r| truth[r]).collect();
                mean(
                    runs.iter()
                        .map(|p| {
                            let predicted: Vec<f64> = rows.iter().map(|&r| p[r]).collect();
                            pearson(&truth, &predicted)
                        })
                        .collect(),
                )
            }
            TestPredictions::Labels { truth, runs } => {
                let labels = truth.first().map_or(0, Vec::len);
                mean(
                    runs.iter()
                        .map(|p| {
                            let rocs: Vec<f64> = (0..labels)
                                .filter_map(|k| {
                                    let positive: Vec<bool> =
                                        rows.iter().map(|&r| truth[r][k]).collect();
                                    let s: Vec<f64> =
                                        rows.iter().map(|&r| p[r][k] as f64).collect();
                                    auroc(&positive, &s)
                                })
                                .collect();
                            mean_of(&rocs).unwrap_or(f64::NAN)
                        })
                        .collect(),
                )
            }
            TestPredictions::Bases {
                truth,
                num_classes,
                runs,
            } => {
                let truth: Vec<u32> = rows
                    .iter()
                    .flat_map(|&r| truth[r].iter().map(|&k| k as u32))
                    .collect();
                mean(
                    runs.iter()
                        .map(|p| {
                            let predicted: Vec<u32> = rows
                                .iter()
                                .flat_map(|&r| p[r].iter().map(|&k| k as u32))
                                .collect();
                            mcc(&confusion(&truth, &predicted, *num_classes))
                        })
                        .collect(),
                )
            }
        }
    }
}

/// Paired bootstrap of the headline's difference between two methods on the same test rows:
/// `resamples` draws of the rows with replacement (seeded), both sides scored on each draw,
/// the 95% percentile interval of `a − b`.
pub fn paired_bootstrap(
    a: &TestPredictions,
    b: &TestPredictions,
    resamples: usize,
    seed: u64,
) -> PairedDifference {
    paired_bootstrap_groups(&[a], &[b], resamples, seed)
}

/// [`paired_bootstrap`] between two groups of methods (e.g. every cell of a study at one knob
/// value against every cell at another): each side's statistic is the mean of its members'
/// headlines on the drawn rows. NaN when a group is empty or the members were scored against
/// different truths.
pub fn paired_bootstrap_groups(
    a: &[&TestPredictions],
    b: &[&TestPredictions],
    resamples: usize,
    seed: u64,
) -> PairedDifference {
    use rand::{Rng, SeedableRng};
    let consistent = a.first().filter(|first| {
        first.rows() > 0 && !b.is_empty() && a.iter().chain(b).all(|p| p.same_truth(first))
    });
    let Some(first) = consistent else {
        return PairedDifference {
            difference: f64::NAN,
            ci: [f64::NAN; 2],
            resamples: 0,
        };
    };
    let n = first.rows();
    let side = |group: &[&TestPredictions], rows: &[usize]| {
        group.iter().map(|p| p.headline(rows)).sum::<f64>() / group.len() as f64
    };
    let all: Vec<usize> = (0..n).collect();
    let difference = side(a, &all) - side(b, &all);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut draws: Vec<f64> = (0..resamples)
        .map(|_| {
            let rows: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            side(a, &rows) - side(b, &rows)
        })
        .filter(|d| d.is_finite())
        .collect();
    PairedDifference {
        difference,
        ci: percentile_interval(&mut draws),
        resamples,
    }
}

/// The 2.5th and 97.5th percentiles of `draws` (NaN when there are none).
fn percentile_interval(draws: &mut [f64]) -> [f64; 2] {
    draws.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        if draws.is_empty() {
            f64::NAN
        } else {
            draws[((draws.len() - 1) as f64 * q).round() as usize]
        }
    };
    [quantile(0.025), quantile(0.975)]
}

/// Reading back values that may be NaN: JSON has no NaN, so `serde_json` writes it as `null`;
/// these read `null` as NaN again (for `#[serde(deserialize_with = ...)]`).
pub mod nullable {
    use serde::{Deserialize, Deserializer};

    /// One value.
    pub fn number<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }

    /// A pair (an interval).
    pub fn pair<'de, D: Deserializer<'de>>(d: D) -> Result<[f64; 2], D::Error> {
        let [a, b] = <[Option<f64>; 2]>::deserialize(d)?;
        Ok([a.unwrap_or(f64::NAN), b.unwrap_or(f64::NAN)])
    }

    /// A matrix, row by row.
    pub fn matrix<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<f64>>, D::Error> {
        Ok(Vec::<Vec<Option<f64>>>::deserialize(d)?
            .into_iter()
            .map(|row| row.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
            .collect())
    }
}

/// A rank correlation with its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Correlation {
    /// Spearman's rho on the pairs as they are.
    #[serde(deserialize_with = "nullable::number")]
    pub rho: f64,
    /// 2.5th and 97.5th percentiles of rho over resamples of the pairs (draws where either side
    /// is constant have no rank correlation and are left out).
    #[serde(deserialize_with = "nullable::pair")]
    pub ci: [f64; 2],
    /// Pairs.
    pub n: usize,
}

/// Spearman's rho of `a` against `b` (paired by position) with a 95% percentile interval from
/// `resamples` draws of the pairs with replacement (seeded).
pub fn spearman_bootstrap(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> Correlation {
    use rand::{Rng, SeedableRng};
    let n = a.len().min(b.len());
    let constant = |v: &[f64]| v.iter().all(|x| *x == v[0]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut draws: Vec<f64> = Vec::with_capacity(resamples);
    if n >= 3 {
        for _ in 0..resamples {
            let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            let (x, y): (Vec<f64>, Vec<f64>) = idx.iter().map(|&i| (a[i], b[i])).unzip();
            if !constant(&x) && !constant(&y) {
                draws.push(spearman(&x, &y));
            }
        }
    }
    Correlation {
        rho: if n >= 3 {
            spearman(&a[..n], &b[..n])
        } else {
            f64::NAN
        },
        ci: percentile_interval(&mut draws),
        n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn spearman_intervals_cover_rho_and_narrow_with_agreement() {
        // Perfectly monotone pairs: rho 1 in every draw that has a correlation.
        let a: Vec<f64> = (0..12).map(f64::from).collect();
        let b: Vec<f64> = a.iter().map(|x| x * x).collect();
        let c = spearman_bootstrap(&a, &b, 500, 1);
        assert!(
            (c.rho - 1.0).abs() < 1e-12 && (c.ci[0] - 1.0).abs() < 1e-12,
            "{c:?}"
        );
        // Noisy agreement: the interval holds rho and is wide with six pairs.
        let noisy = [1.0, 3.0, 2.0, 5.0, 4.0, 6.0];
        let c = spearman_bootstrap(&a[..6], &noisy, 2000, 1);
        assert!(c.ci[0] <= c.rho && c.rho <= c.ci[1], "{c:?}");
        assert!(c.ci[1] - c.ci[0] > 0.2, "{c:?}");
        assert_eq!(c.n, 6);
        // Too few pairs: no correlation.
        assert!(spearman_bootstrap(&[1.0, 2.0], &[2.0, 1.0], 100, 1)
            .rho
            .is_nan());
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// Class-probability outputs predicting `predicted`.
    fn outputs(predicted: &[u32]) -> Array2<f32> {
        Array2::from_shape_fn((predicted.len(), 2), |(r, c)| {
            if predicted[r] as usize == c {
                0.9
            } else {
                0.1
            }
        })
    }

    #[test]
    fn a_paired_bootstrap_calls_a_win_only_when_the_interval_excludes_zero() {
        // 400 rows; `good` is right on 90% of them, `bad` on 60%, `same` equals `good`.
        let labels: Vec<u32> = (0..400).map(|i| (i % 2) as u32).collect();
        let flip = |every: usize| -> Vec<u32> {
            labels
                .iter()
                .enumerate()
                .map(|(i, &l)| if i % every == 0 { 1 - l } else { l })
                .collect()
        };
        let targets = Targets::Classes {
            labels: labels.clone(),
            num_classes: 2,
        };
        let good = outputs(&flip(10));
        let bad = [outputs(&flip(3)), outputs(&flip(2))];
        let p = |runs: &[Array2<f32>]| TestPredictions::of(&targets, runs);
        let d = paired_bootstrap(&p(std::slice::from_ref(&good)), &p(&bad), 500, 7);
        let expected = mcc(&confusion(&labels, &flip(10), 2))
            - (mcc(&confusion(&labels, &flip(3), 2)) + mcc(&confusion(&labels, &flip(2), 2))) / 2.0;
        assert!(close(d.difference, expected), "{d:?} vs {expected}");
        assert!(
            d.ci[0] > 0.0 && d.ci[0] < d.difference && d.difference < d.ci[1],
            "{d:?}"
        );
        assert_eq!(d.verdict(), Verdict::Win);
        let reversed = paired_bootstrap(&p(&bad), &p(std::slice::from_ref(&good)), 500, 7);
        assert_eq!(reversed.verdict(), Verdict::Loss);
        // Identical predictions: every resample's difference is exactly 0.
        let same = paired_bootstrap(
            &p(std::slice::from_ref(&good)),
            &p(std::slice::from_ref(&good)),
            200,
            1,
        );
        assert_eq!((same.difference, same.ci), (0.0, [0.0, 0.0]));
        assert_eq!(same.verdict(), Verdict::Tie);
        // Seeded: the same call gives the same interval.
        assert_eq!(
            d,
            paired_bootstrap(&p(std::slice::from_ref(&good)), &p(&bad), 500, 7)
        );
        // Rows that disagree: no comparison.
        let short = TestPredictions::of(
            &Targets::Classes {
                labels: vec![0, 1],
                num_classes: 2,
            },
            &[outputs(&[0, 1])],
        );
        assert!(paired_bootstrap(&p(&bad), &short, 10, 0)
            .difference
            .is_nan());
        // As many rows but another truth (another task's test split): no comparison either.
        let other = TestPredictions::of(
            &Targets::Classes {
                labels: flip(2),
                num_classes: 2,
            },
            std::slice::from_ref(&good),
        );
        assert!(paired_bootstrap(&p(&bad), &other, 10, 0)
            .difference
            .is_nan());
    }

    #[test]
    fn a_paired_bootstrap_of_regressions_compares_pearson() {
        let truth: Vec<f64> = (0..200).map(|i| i as f64).collect();
        let near = Array2::from_shape_fn((200, 1), |(r, _)| r as f32 + (r % 7) as f32);
        let far = Array2::from_shape_fn((200, 1), |(r, _)| r as f32 + 60.0 * (r % 5) as f32);
        let targets = Targets::Values(truth);
        let d = paired_bootstrap(
            &TestPredictions::of(&targets, &[near]),
            &TestPredictions::of(&targets, &[far]),
            300,
            3,
        );
        assert!(d.difference > 0.0);
        assert_eq!(d.verdict(), Verdict::Win);
    }

    #[test]
    fn binary_metrics_match_hand_computed_values() {
        // truth 1 1 0 0 1, predicted 1 0 0 1 1: TP 2, FN 1, TN 1, FP 1.
        let labels = [1, 1, 0, 0, 1];
        let scores = array![
            [0.2f32, 0.8],
            [0.6, 0.4],
            [0.9, 0.1],
            [0.3, 0.7],
            [0.1, 0.9]
        ];
        let m = ClassificationMetrics::compute(&labels, scores.view());
        assert!(close(m.accuracy, 0.6));
        // MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2-1)/sqrt(3*3*2*2) = 1/6.
        assert!(close(m.mcc, 1.0 / 6.0), "{}", m.mcc);
        // F1(1) = 2*2/(3+3) = 2/3, F1(0) = 2*1/(2+2) = 1/2.
        assert!(close(m.macro_f1, (2.0 / 3.0 + 0.5) / 2.0));
        // Positive scores 0.8 0.4 0.9 vs negatives 0.1 0.7: pairs won 2 + 1 + 2 = 5 of 6.
        assert!(close(m.auroc.unwrap(), 5.0 / 6.0));
        // Ranked: .9(+) .8(+) .7(-) .4(+) .1(-): AP = 1/3*1 + 1/3*1 + 1/3*3/4 = 11/12.
        assert!(close(m.auprc.unwrap(), 11.0 / 12.0));
    }

    #[test]
    fn mcc_edge_cases_are_zero_not_nan() {
        // Constant prediction.
        assert_eq!(mcc(&confusion(&[0, 1, 1], &[1, 1, 1], 2)), 0.0);
        // One-class truth.
        assert_eq!(mcc(&confusion(&[1, 1, 1], &[0, 1, 1], 2)), 0.0);
        // Perfect and perfectly inverted.
        assert!(close(mcc(&confusion(&[0, 1, 0, 1], &[0, 1, 0, 1], 2)), 1.0));
        assert!(close(
            mcc(&confusion(&[0, 1, 0, 1], &[1, 0, 1, 0], 2)),
            -1.0
        ));
        // Empty.
        assert_eq!(mcc(&confusion(&[], &[], 3)), 0.0);
    }

    #[test]
    fn multiclass_mcc_matches_sklearn() {
        // sklearn.metrics.matthews_corrcoef([0,1,2,0,1,2,2], [0,2,1,0,0,2,2]) = 0.4750...
        let c = confusion(&[0, 1, 2, 0, 1, 2, 2], &[0, 2, 1, 0, 0, 2, 2], 3);
        // cov_tp = 4*7 - (2*3 + 2*1 + 3*3) = 11; cov_pp = 49 - 19 = 30; cov_tt = 49 - 17 = 32.
        assert!(close(mcc(&c), 11.0 / (30.0f64 * 32.0).sqrt()));
    }

    #[test]
    fn auroc_gives_ties_half_credit() {
        // Every score tied: 0.5 exactly.
        assert!(close(
            auroc(&[true, false, true, false], &[0.3; 4]).unwrap(),
            0.5
        ));
        // Positive 0.5 ties one negative 0.5 and beats 0.1: (1 + 0.5) / 2.
        assert!(close(
            auroc(&[true, false, false], &[0.5, 0.5, 0.1]).unwrap(),
            0.75
        ));
        assert_eq!(auroc(&[true, true], &[0.1, 0.2]), None);
    }

    #[test]
    fn average_precision_groups_tied_scores() {
        // One threshold holding 1 positive + 1 negative: precision 1/2 at recall 1.
        assert!(close(
            average_precision(&[true, false], &[0.5, 0.5]).unwrap(),
            0.5
        ));
        assert_eq!(average_precision(&[false, false], &[0.5, 0.4]), None);
    }

    #[test]
    fn macro_f1_skips_absent_classes() {
        // Class 2 neither true nor predicted.
        let c = confusion(&[0, 1], &[0, 1], 3);
        assert!(close(macro_f1(&c), 1.0));
    }

    #[test]
    fn correlations_and_ranks() {
        assert_eq!(
            average_ranks(&[10.0, 20.0, 10.0, 5.0]),
            [2.5, 4.0, 2.5, 1.0]
        );
        assert!(close(pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]), 1.0));
        assert!(close(spearman(&[1.0, 2.0, 3.0], &[1.0, 8.0, 27.0]), 1.0));
        assert_eq!(pearson(&[1.0, 1.0], &[2.0, 3.0]), 0.0);
        let r = RegressionMetrics::compute(&[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0]);
        assert!(close(r.mse, 1.0 / 3.0));
        assert!(close(r.r2, 1.0 - (1.0 / 3.0) / (2.0 / 3.0)));
    }

    #[test]
    fn summaries_use_the_sample_sd() {
        let s = Summary::of(&[1.0, 2.0, 3.0]);
        assert!(close(s.mean, 2.0) && close(s.sd, 1.0) && s.n == 3);
        assert_eq!(format!("{s}"), "2.000 ± 1.000");
        assert_eq!(Summary::of(&[4.0]).sd, 0.0);
    }

    /// Multi-label metrics: each label's AUROC / average precision / MCC at 0.5 are the binary
    /// metrics of its column; a label without positives on the split is left out of the macro
    /// AUROC and AUPRC (its MCC is 0 and counts); the paired-comparison headline is the macro
    /// AUROC.
    #[test]
    fn multi_label_metrics_are_per_label_binary_metrics_and_their_means() {
        let present = ndarray::array![
            [true, false, false],
            [false, true, false],
            [true, true, false],
            [false, false, false]
        ];
        let scores = ndarray::array![
            [0.9f32, 0.2, 0.1],
            [0.4, 0.7, 0.3],
            [0.6, 0.4, 0.2],
            [0.1, 0.6, 0.0]
        ];
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let m = MultiLabelMetrics::compute(present.view(), &names, scores.view());
        for k in 0..2 {
            let positive: Vec<bool> = present.column(k).to_vec();
            let s: Vec<f64> = scores.column(k).iter().map(|&v| v as f64).collect();
            assert_eq!(m.auroc[k], auroc(&positive, &s));
            assert_eq!(m.auprc[k], average_precision(&positive, &s));
        }
        assert_eq!((m.auroc[2], m.auprc[2]), (None, None));
        // a: AUROC 1; b: positives 0.7, 0.4 vs negatives 0.2, 0.6 -> 3 of 4 pairs.
        assert!(close(m.auroc[0].unwrap(), 1.0) && close(m.auroc[1].unwrap(), 0.75));
        let map = m.to_map();
        assert!(close(map["auroc"], 0.875));
        assert!(close(map["auroc/b"], 0.75));
        assert!(!map.contains_key("auroc/c"));
        // MCC at 0.5: a is predicted exactly (1); b predicts rows 1 and 3 (truth 1 and 2).
        assert!(close(map["mcc/a"], 1.0) && close(map["mcc/c"], 0.0));
        assert!(close(map["mcc"], (1.0 + map["mcc/b"]) / 3.0));
        let targets = Targets::Labels { present, names };
        let predictions = TestPredictions::of(&targets, &[scores]);
        assert!(close(predictions.headline(&[0, 1, 2, 3]), 0.875));
    }

    /// Per-base metrics follow their definitions on a hand-checked case; the paired headline
    /// draws whole sequences and scores their bases.
    #[test]
    fn per_base_metrics_score_every_base_and_bootstrap_sequences() {
        // Truth 0 0 1 1 2 2, predicted 0 1 1 1 2 0 (0.8 on the predicted class, 0.1 elsewhere).
        let truth = [0u32, 0, 1, 1, 2, 2];
        let predicted = [0usize, 1, 1, 1, 2, 0];
        let scores = Array2::from_shape_fn(
            (6, 3),
            |(r, c)| {
                if predicted[r] == c {
                    0.8f32
                } else {
                    0.1
                }
            },
        );
        let names = vec!["other".to_string(), "CDS".into(), "rRNA".into()];
        let m = PerBaseMetrics::compute(&truth, &names, scores.view());
        // Gorodkin: (c·s - Σ p_k t_k) / sqrt((s² - Σ p_k²)(s² - Σ t_k²)) = 12 / sqrt(22 · 24).
        assert!(close(m.overall.mcc, 12.0 / (22.0f64 * 24.0).sqrt()));
        assert!(close(m.overall.accuracy, 4.0 / 6.0));
        assert!(close(m.f1[0], 0.5) && close(m.f1[1], 0.8) && close(m.f1[2], 2.0 / 3.0));
        // CDS one-vs-rest: tp 2, fp 1, fn 0, tn 3.
        assert!(close(m.mcc[1], 6.0 / 72.0f64.sqrt()));
        // rRNA: 0.8 on its first base, 0.1 on the rest: AP = ½·1 + ½·(2/6).
        assert!(close(m.auprc[2].unwrap(), 0.5 + 0.5 * 2.0 / 6.0));
        let map = m.to_map();
        assert!(close(map["f1/CDS"], 0.8) && map.contains_key("auprc/rRNA"));

        // Two sequences of three bases: the headline over both is the MCC above.
        let targets = Targets::Bases {
            classes: vec![vec![0, 0, 1], vec![1, 2, 2]],
            names,
        };
        let predictions = TestPredictions::of(&targets, &[scores]);
        assert_eq!(predictions.rows(), 2);
        assert!(close(predictions.headline(&[0, 1]), m.overall.mcc));
        // Drawing the first sequence twice scores its bases twice.
        let first = PerBaseMetrics::compute(
            &[0, 0, 1, 0, 0, 1],
            &targets_names(),
            Array2::from_shape_fn(
                (6, 3),
                |(r, c)| if predicted[r % 3] == c { 0.8 } else { 0.1 },
            )
            .view(),
        );
        assert!(close(predictions.headline(&[0, 0]), first.overall.mcc));
    }

    fn targets_names() -> Vec<String> {
        vec!["other".into(), "CDS".into(), "rRNA".into()]
    }
}
