//! The order-k Markov baseline for masked-token accuracy: the best a k-mer-frequency predictor
//! does on exactly the validation positions the model is scored on.
//!
//! For each order k, counts of (k preceding tokens -> token) are taken from training batches;
//! a loss position is predicted as the most frequent token after its k preceding tokens, backing
//! off to shorter contexts when a context was never seen. The context is the *original* sequence
//! (masked tokens restored), which is generous to the baseline: the model must infer what the
//! mask hides, the baseline reads it.

use std::collections::HashMap;

use serde::Serialize;

use crate::{data::Batch, TargetKind};

/// Accuracy of one order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MarkovAccuracy {
    /// Context length in tokens.
    pub order: usize,
    /// Fraction of loss positions predicted right.
    pub accuracy: f64,
    /// Loss positions scored.
    pub targets: usize,
}

/// Original tokens of each row (targets restored where the loss is), `None` for padding.
fn originals(batch: &Batch) -> Vec<Vec<u32>> {
    (0..batch.rows)
        .map(|r| {
            let row = r * batch.seq_len..(r + 1) * batch.seq_len;
            row.filter(|&i| batch.padding_mask[i])
                .map(|i| {
                    if batch.loss_mask[i] {
                        batch.targets[i]
                    } else {
                        batch.input_ids[i]
                    }
                })
                .collect()
        })
        .collect()
}

/// A fitted order-`max_order` Markov predictor with backoff.
pub struct MarkovPredictor {
    max_order: usize,
    /// Per order: context -> (token -> count).
    tables: Vec<HashMap<Vec<u32>, HashMap<u32, u64>>>,
}

impl MarkovPredictor {
    /// Counts contexts of every order up to `max_order` in `batches` (which should be masked-LM
    /// batches of token targets: the originals are read back from inputs and targets).
    pub fn fit(batches: impl IntoIterator<Item = Batch>, max_order: usize) -> Self {
        let mut tables = vec![HashMap::new(); max_order + 1];
        for batch in batches {
            for seq in originals(&batch) {
                for i in 0..seq.len() {
                    for (k, table) in tables.iter_mut().enumerate() {
                        if k > i {
                            break;
                        }
                        let ctx = seq[i - k..i].to_vec();
                        let counts: &mut HashMap<u32, u64> = table.entry(ctx).or_default();
                        *counts.entry(seq[i]).or_default() += 1;
                    }
                }
            }
        }
        MarkovPredictor { max_order, tables }
    }

    /// The predicted token after `context` using at most `order` tokens of it.
    pub fn predict(&self, context: &[u32], order: usize) -> Option<u32> {
        let order = order.min(self.max_order).min(context.len());
        (0..=order).rev().find_map(|k| {
            let ctx = &context[context.len() - k..];
            self.tables[k].get(ctx).and_then(|counts| {
                counts
                    .iter()
                    .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                    .map(|(t, _)| *t)
            })
        })
    }

    /// Accuracy of each order `0..=max_order` on the loss positions of `batches`.
    pub fn evaluate(&self, batches: &[Batch]) -> Vec<MarkovAccuracy> {
        (0..=self.max_order)
            .map(|order| {
                let (mut correct, mut total) = (0usize, 0usize);
                for batch in batches
                    .iter()
                    .filter(|b| b.target_kind == TargetKind::Token)
                {
                    for r in 0..batch.rows {
                        let base = r * batch.seq_len;
                        let seq: Vec<u32> = (0..batch.seq_len)
                            .map(|i| {
                                let j = base + i;
                                if batch.loss_mask[j] {
                                    batch.targets[j]
                                } else {
                                    batch.input_ids[j]
                                }
                            })
                            .collect();
                        for i in 0..batch.seq_len {
                            if !batch.loss_mask[base + i] {
                                continue;
                            }
                            total += 1;
                            if self.predict(&seq[..i], order) == Some(batch.targets[base + i]) {
                                correct += 1;
                            }
                        }
                    }
                }
                MarkovAccuracy {
                    order,
                    accuracy: if total == 0 {
                        0.0
                    } else {
                        correct as f64 / total as f64
                    },
                    targets: total,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::BatchAttention;

    fn batch(ids: &[u32], mask: &[bool]) -> Batch {
        let n = ids.len();
        Batch {
            step: 0,
            objective: crate::ObjectiveKind::Mlm,
            rows: 1,
            seq_len: n,
            input_ids: ids
                .iter()
                .zip(mask)
                .map(|(&i, &m)| if m { 4 } else { i })
                .collect(),
            position_ids: (0..n as u32).collect(),
            targets: ids.to_vec(),
            loss_mask: mask.to_vec(),
            padding_mask: vec![true; n],
            attention: BatchAttention::Bidirectional,
            target_kind: TargetKind::Token,
            origins: Vec::new(),
        }
    }

    #[test]
    fn a_periodic_sequence_is_learned_by_order_one_not_order_zero() {
        // 5 6 7 5 6 7 ...: order 0 predicts the commonest token (a third right), order 1 is exact.
        let ids: Vec<u32> = (0..30).map(|i| 5 + (i % 3)).collect();
        let train = batch(&ids, &[false; 30]);
        let p = MarkovPredictor::fit([train], 2);
        let mask: Vec<bool> = (0..30).map(|i| i % 4 == 1).collect();
        let acc = p.evaluate(&[batch(&ids, &mask)]);
        assert_eq!(acc[1].accuracy, 1.0);
        assert_eq!(acc[2].accuracy, 1.0);
        assert!(acc[0].accuracy < 0.5, "{acc:?}");
        assert_eq!(acc[0].targets, mask.iter().filter(|&&m| m).count());
    }
}
