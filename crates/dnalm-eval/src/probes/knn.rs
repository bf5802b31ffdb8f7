//! The k-nearest-neighbour probe: a brute-force cosine search (one GEMM; faster than a spatial
//! index at embedding dimensions).

use ndarray::{s, Array2, ArrayView2, Axis};
use rayon::prelude::*;

use crate::features::Targets;

/// For each query row, the indices of its `k` most cosine-similar reference rows (most similar
/// first).
pub fn nearest(reference: ArrayView2<f32>, queries: ArrayView2<f32>, k: usize) -> Vec<Vec<usize>> {
    let normalise = |x: ArrayView2<f32>| {
        let mut x = x.to_owned();
        for mut row in x.rows_mut() {
            let norm = row.dot(&row).sqrt().max(1e-12);
            row /= norm;
        }
        x
    };
    let reference = normalise(reference);
    let queries = normalise(queries);
    let k = k.min(reference.nrows()).max(1);
    let chunks: Vec<_> = queries.axis_chunks_iter(Axis(0), 256).collect();
    chunks
        .into_par_iter()
        .flat_map_iter(|chunk| {
            let sims = chunk.dot(&reference.t());
            (0..sims.nrows())
                .map(|r| {
                    let row = sims.slice(s![r, ..]);
                    let mut idx: Vec<usize> = (0..row.len()).collect();
                    let by_sim = |a: &usize, b: &usize| row[*b].total_cmp(&row[*a]).then(a.cmp(b));
                    if k < idx.len() {
                        idx.select_nth_unstable_by(k - 1, by_sim);
                        idx.truncate(k);
                    }
                    idx.sort_by(by_sim);
                    idx
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// kNN outputs from neighbour lists: class fractions among the first `k`, their mean value, or
/// (multi-label) the fraction of them that have each label.
pub fn knn_outputs(neighbours: &[Vec<usize>], targets: &Targets, k: usize) -> Array2<f32> {
    match targets {
        Targets::Classes {
            labels,
            num_classes,
        } => {
            let mut out = Array2::<f32>::zeros((neighbours.len(), *num_classes));
            for (r, nb) in neighbours.iter().enumerate() {
                let take = nb.len().min(k);
                for &i in &nb[..take] {
                    out[[r, labels[i] as usize]] += 1.0 / take as f32;
                }
            }
            out
        }
        Targets::Values(v) => {
            let mut out = Array2::<f32>::zeros((neighbours.len(), 1));
            for (r, nb) in neighbours.iter().enumerate() {
                let take = nb.len().min(k);
                out[[r, 0]] = (nb[..take].iter().map(|&i| v[i]).sum::<f64>() / take as f64) as f32;
            }
            out
        }
        Targets::Labels { present, .. } => {
            let mut out = Array2::<f32>::zeros((neighbours.len(), present.ncols()));
            for (r, nb) in neighbours.iter().enumerate() {
                let take = nb.len().min(k);
                for &i in &nb[..take] {
                    for (o, &p) in out.row_mut(r).iter_mut().zip(present.row(i)) {
                        *o += p as u8 as f32 / take as f32;
                    }
                }
            }
            out
        }
        // `Labelled` refuses per-base targets: a pooled row has no bases to vote on.
        Targets::Bases { names, .. } => Array2::zeros((neighbours.len(), names.len())),
    }
}
