//! Features: feature matrices with their targets (what every probe and relevance score takes),
//! and where they come from — a model's frozen [`embed`]dings (kept in a [`store`]), a task's
//! splits ([`tasks`]), or the [`baseline`]s that need no pretraining.

use ndarray::{Array2, ArrayView2, Axis};

pub mod baseline;
pub mod embed;
pub mod store;
pub mod tasks;

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
    /// Binary labels, any number per row (multi-label).
    Labels {
        /// `rows x labels`, true where a label applies.
        present: Array2<bool>,
        /// The name of each label (metrics per label are reported under it).
        names: Vec<String>,
    },
    /// One class per base (per-base tasks). A model's outputs hold one row per base, the bases
    /// of the rows in row order.
    Bases {
        /// Per row (sequence), the class of each base.
        classes: Vec<Vec<u8>>,
        /// The name of each class (metrics per class are reported under it).
        names: Vec<String>,
    },
}

impl Targets {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes { labels, .. } => labels.len(),
            Targets::Values(v) => v.len(),
            Targets::Labels { present, .. } => present.nrows(),
            Targets::Bases { classes, .. } => classes.len(),
        }
    }

    /// Rows of a model's outputs for these targets: one per row, or (per-base) one per base.
    pub fn output_rows(&self) -> usize {
        match self {
            Targets::Bases { classes, .. } => classes.iter().map(Vec::len).sum(),
            _ => self.len(),
        }
    }

    /// Per-base targets: the class of every base, rows one after another (as outputs are).
    pub fn flat_bases(&self) -> Vec<u32> {
        match self {
            Targets::Bases { classes, .. } => classes
                .iter()
                .flat_map(|c| c.iter().map(|&k| k as u32))
                .collect(),
            _ => Vec::new(),
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
            Targets::Labels { present, names } => Targets::Labels {
                present: present.select(Axis(0), index),
                names: names.clone(),
            },
            Targets::Bases { classes, names } => Targets::Bases {
                classes: index.iter().map(|&i| classes[i].clone()).collect(),
                names: names.clone(),
            },
        }
    }

    /// Number of distinct classes present (per-base: over all bases; regression and
    /// multi-label: 0).
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
            Targets::Bases { classes, names } => {
                let mut seen = vec![false; names.len()];
                for &k in classes.iter().flatten() {
                    seen[k as usize] = true;
                }
                seen.iter().filter(|&&s| s).count()
            }
            Targets::Values(_) | Targets::Labels { .. } => 0,
        }
    }

    /// The number of outputs a model of these targets has: classes (per row or per base),
    /// labels, or 1 (a value).
    pub fn outputs(&self) -> usize {
        match self {
            Targets::Classes { num_classes, .. } => *num_classes,
            Targets::Values(_) => 1,
            Targets::Labels { present, .. } => present.ncols(),
            Targets::Bases { names, .. } => names.len(),
        }
    }

    /// Multi-label: per label, the rows that have it and the rows that do not.
    pub fn label_counts(&self) -> Vec<(usize, usize)> {
        match self {
            Targets::Labels { present, .. } => present
                .columns()
                .into_iter()
                .map(|c| {
                    let positive = c.iter().filter(|&&b| b).count();
                    (positive, c.len() - positive)
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// One binary target per label (multi-label), class 1 where the label applies: what a
    /// per-label metric or a method made for classes reads.
    pub fn per_label(&self) -> Vec<Targets> {
        match self {
            Targets::Labels { present, .. } => present
                .columns()
                .into_iter()
                .map(|c| Targets::Classes {
                    labels: c.iter().map(|&b| b as u32).collect(),
                    num_classes: 2,
                })
                .collect(),
            _ => Vec::new(),
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
            return Err(EvalError::Mismatch {
                what: what.to_string(),
                message: format!("{} embedding rows but {} labels", x.nrows(), y.len()),
            });
        }
        if let Targets::Bases { .. } = y {
            return Err(EvalError::Mismatch {
                what: what.to_string(),
                message: "a per-base task has no single target per sequence for pooled \
                          features; its models are scored by the per-base head (`dnalm bench`, \
                          `dnalm finetune`)"
                    .into(),
            });
        }
        check_finite(x.view(), what)?;
        if let Targets::Classes {
            labels,
            num_classes,
        } = &y
        {
            if let Some(bad) = labels.iter().find(|&&l| l as usize >= *num_classes) {
                return Err(EvalError::Mismatch {
                    what: what.to_string(),
                    message: format!("label {bad} is outside 0..{num_classes}"),
                });
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
            return Err(EvalError::NonFinite {
                what: what.to_string(),
                row: r,
                column: c,
                value: row[c],
            });
        }
    }
    Ok(())
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
}
