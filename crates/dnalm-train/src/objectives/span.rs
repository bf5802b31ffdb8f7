//! Span (n-gram) masking: contiguous runs of tokens, of lengths drawn from a geometric
//! distribution, are hidden; the model predicts them.
//!
//! With overlapping k-mers, every token that shares a base with a chosen token is hidden too, and
//! the loss only counts hidden tokens whose bases no visible token shows, so the answer never
//! leaks through neighbours. With non-overlapping tokens both steps change nothing.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{
    check_rate, mask_neighbourhoods, Attention, Objective, ObjectiveError, ObjectiveExample,
    TargetKind, TokenWindow, VocabInfo,
};

/// Span masking settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpanMasking {
    /// Fraction of tokens chosen (before neighbourhood expansion).
    pub mask_rate: f64,
    /// Mean span length in tokens (geometric distribution).
    pub mean_span: f64,
    /// Longest span in tokens.
    pub max_span: usize,
}

impl Default for SpanMasking {
    fn default() -> Self {
        SpanMasking {
            mask_rate: 0.15,
            mean_span: 3.0,
            max_span: 10,
        }
    }
}

impl SpanMasking {
    pub(crate) fn validate(&self, vocab: &VocabInfo) -> Result<(), ObjectiveError> {
        check_rate("mask rate", self.mask_rate)?;
        if !(self.mean_span >= 1.0 && self.mean_span.is_finite()) || self.max_span == 0 {
            return Err(ObjectiveError::Invalid {
                what: "mean span",
                value: self.mean_span,
                message: "must be at least 1, with max_span at least 1",
            });
        }
        vocab.mask_id().map(|_| ())
    }

    fn span_length(&self, rng: &mut ChaCha8Rng) -> usize {
        // Geometric on {1, 2, ...} with mean `mean_span`.
        let p = 1.0 / self.mean_span;
        let mut len = 1;
        while len < self.max_span && rng.random::<f64>() >= p {
            len += 1;
        }
        len
    }
}

impl Objective for SpanMasking {
    fn name(&self) -> &'static str {
        "span"
    }

    fn apply(
        &self,
        window: &TokenWindow,
        vocab: &VocabInfo,
        rng: &mut ChaCha8Rng,
    ) -> ObjectiveExample {
        let mut ex =
            ObjectiveExample::unchanged(window.ids, Attention::Bidirectional, TargetKind::Token);
        let Ok(mask) = vocab.mask_id() else { return ex };
        let n = window.ids.len();
        let eligible: Vec<usize> = (0..n)
            .filter(|&i| !vocab.is_special(window.ids[i]))
            .collect();
        if eligible.is_empty() || self.mask_rate == 0.0 {
            return ex;
        }
        let want = ((self.mask_rate * eligible.len() as f64).round() as usize).max(1);
        let mut chosen = vec![false; n];
        let mut count = 0;
        for _ in 0..4 * eligible.len() {
            if count >= want {
                break;
            }
            let start = eligible[rng.random_range(0..eligible.len())];
            let end = (start + self.span_length(rng)).min(n);
            for (c, &id) in chosen[start..end].iter_mut().zip(&window.ids[start..end]) {
                if count < want && !vocab.is_special(id) && !*c {
                    *c = true;
                    count += 1;
                }
            }
        }
        mask_neighbourhoods(&mut ex, &chosen, window, vocab, mask);
        ex
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectives::testing::*;

    #[test]
    fn no_leak_through_overlapping_kmers() {
        let tok = kmer6();
        let vocab = VocabInfo::of(&tok);
        let mask = vocab.specials.mask.unwrap();
        for seed in 0..50 {
            let seq = bases(512, seed);
            let (ids, offsets) = encode(&tok, &seq);
            let ex = SpanMasking::default().apply(
                &TokenWindow {
                    ids: &ids,
                    offsets: &offsets,
                    annotations: &[],
                },
                &vocab,
                &mut rng(seed),
            );
            assert!(ex.n_targets() > 0);
            assert_no_leak(&ex, &offsets, mask);
            // Every target's neighbourhood (tokens sharing a base) is masked.
            for i in (0..ids.len()).filter(|&i| ex.loss_mask[i]) {
                for j in i.saturating_sub(5)..=(i + 5).min(ids.len() - 2) {
                    if j >= 1 {
                        assert_eq!(ex.input_ids[j], mask, "neighbour {j} of target {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn spans_are_contiguous_on_single_nucleotides() {
        let tok = nucleotide();
        let vocab = VocabInfo::of(&tok);
        let seq = bases(10_000, 3);
        let (ids, offsets) = encode(&tok, &seq);
        let cfg = SpanMasking {
            mask_rate: 0.15,
            mean_span: 4.0,
            max_span: 10,
        };
        let ex = cfg.apply(
            &TokenWindow {
                ids: &ids,
                offsets: &offsets,
                annotations: &[],
            },
            &vocab,
            &mut rng(2),
        );
        let n = ex.n_targets();
        assert_eq!(n, 1500);
        // Runs of targets are longer than isolated picks would be.
        let runs = ex.loss_mask.windows(2).filter(|w| w[1] && !w[0]).count();
        let mean_run = n as f64 / runs as f64;
        assert!(mean_run > 2.5, "{mean_run}");
        assert_no_leak(&ex, &offsets, vocab.specials.mask.unwrap());
    }
}
