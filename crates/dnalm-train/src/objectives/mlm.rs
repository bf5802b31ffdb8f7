//! Masked language modelling (BERT): a fraction of tokens are chosen; of those, 80% become
//! `[MASK]`, 10% a random token, 10% stay; the model predicts the originals.
//!
//! With overlapping k-mers a masked token's bases stay visible in its neighbours; use
//! [span masking](super::span), which hides whole neighbourhoods, when that matters.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{
    check_rate, Attention, Objective, ObjectiveError, ObjectiveExample, TargetKind, TokenWindow,
    VocabInfo,
};

/// Masked LM settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaskedLm {
    /// Fraction of (non-special) tokens chosen as targets.
    pub mask_rate: f64,
    /// Of the chosen, the fraction replaced by `[MASK]`.
    pub replace_with_mask: f64,
    /// Of the chosen, the fraction replaced by a random token (the rest stay unchanged).
    pub replace_with_random: f64,
}

impl Default for MaskedLm {
    fn default() -> Self {
        MaskedLm {
            mask_rate: 0.15,
            replace_with_mask: 0.8,
            replace_with_random: 0.1,
        }
    }
}

impl MaskedLm {
    pub(crate) fn validate(&self, vocab: &VocabInfo) -> Result<(), ObjectiveError> {
        check_rate("mask rate", self.mask_rate)?;
        check_rate("replace with mask", self.replace_with_mask)?;
        check_rate("replace with random", self.replace_with_random)?;
        check_rate(
            "replace with mask + random",
            self.replace_with_mask + self.replace_with_random,
        )?;
        vocab.mask_id().map(|_| ())
    }
}

/// Chooses each eligible position with probability `rate`; at least one when any is eligible.
pub(crate) fn choose(eligible: &[bool], rate: f64, rng: &mut ChaCha8Rng) -> Vec<bool> {
    let mut chosen: Vec<bool> = eligible
        .iter()
        .map(|&e| e && rng.random::<f64>() < rate)
        .collect();
    if rate > 0.0 && !chosen.iter().any(|&c| c) {
        let candidates: Vec<usize> = (0..eligible.len()).filter(|&i| eligible[i]).collect();
        if !candidates.is_empty() {
            chosen[candidates[rng.random_range(0..candidates.len())]] = true;
        }
    }
    chosen
}

impl Objective for MaskedLm {
    fn name(&self) -> &'static str {
        "mlm"
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
        let eligible: Vec<bool> = window.ids.iter().map(|&id| !vocab.is_special(id)).collect();
        let chosen = choose(&eligible, self.mask_rate, rng);
        for (i, &c) in chosen.iter().enumerate() {
            if !c {
                continue;
            }
            let u: f64 = rng.random();
            if u < self.replace_with_mask {
                ex.input_ids[i] = mask;
            } else if u < self.replace_with_mask + self.replace_with_random {
                ex.input_ids[i] = vocab.random_ordinary(rng);
            }
        }
        ex.loss_mask = chosen;
        ex
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectives::testing::*;

    #[test]
    fn bert_80_10_10() {
        let tok = nucleotide();
        let vocab = VocabInfo::of(&tok);
        let seq = bases(20_000, 5);
        let (ids, offsets) = encode(&tok, &seq);
        let ex = MaskedLm::default().apply(
            &TokenWindow {
                ids: &ids,
                offsets: &offsets,
                annotations: &[],
            },
            &vocab,
            &mut rng(1),
        );
        let n = ex.n_targets() as f64;
        assert!((n / 20_000.0 - 0.15).abs() < 0.01, "{n}");
        let mask = vocab.specials.mask.unwrap();
        let masked = ex
            .loss_mask
            .iter()
            .zip(&ex.input_ids)
            .filter(|(l, &i)| **l && i == mask)
            .count() as f64;
        let kept = (0..ids.len())
            .filter(|&i| ex.loss_mask[i] && ex.input_ids[i] == ids[i])
            .count() as f64;
        assert!((masked / n - 0.8).abs() < 0.03, "{}", masked / n);
        // "kept" includes random replacements that drew the same token (1 in 5 here).
        assert!((kept / n - (0.1 + 0.1 / 5.0)).abs() < 0.03, "{}", kept / n);
        // Targets are the originals; specials are never chosen; non-targets are untouched.
        assert_eq!(ex.targets, ids);
        assert!(!ex.loss_mask[0] && !ex.loss_mask[ids.len() - 1]);
        assert!((0..ids.len()).all(|i| ex.loss_mask[i] || ex.input_ids[i] == ids[i]));
    }

    #[test]
    fn hand_checked_and_deterministic() {
        let tok = nucleotide();
        let vocab = VocabInfo::of(&tok);
        let (ids, offsets) = encode(&tok, b"ACGTACGT");
        let w = TokenWindow {
            ids: &ids,
            offsets: &offsets,
            annotations: &[],
        };
        let all = MaskedLm {
            mask_rate: 1.0,
            replace_with_mask: 1.0,
            replace_with_random: 0.0,
        };
        let ex = all.apply(&w, &vocab, &mut rng(0));
        let mask = vocab.specials.mask.unwrap();
        assert_eq!(ex.input_ids[1..9], [mask; 8]);
        assert_eq!(
            ex.loss_mask,
            [false, true, true, true, true, true, true, true, true, false]
        );
        let a = MaskedLm::default().apply(&w, &vocab, &mut rng(9));
        let b = MaskedLm::default().apply(&w, &vocab, &mut rng(9));
        assert_eq!(a, b);
        assert!(MaskedLm {
            mask_rate: 1.5,
            ..Default::default()
        }
        .validate(&vocab)
        .is_err());
    }
}
