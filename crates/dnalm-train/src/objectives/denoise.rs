//! Denoising: tokens are corrupted at a rate (substituted by a random token, or turned into the
//! unknown-base token `N`/`[UNK]`, as sequencing errors and gaps would); the model predicts the
//! original token at every position.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{
    check_rate, Attention, Objective, ObjectiveError, ObjectiveExample, TargetKind, TokenWindow,
    VocabInfo,
};

/// Denoising settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Denoising {
    /// Probability that each non-special token is corrupted.
    pub rate: f64,
    /// Of the corrupted, the fraction turned into `N` (the rest are substituted).
    pub n_fraction: f64,
}

impl Default for Denoising {
    fn default() -> Self {
        Denoising {
            rate: 0.1,
            n_fraction: 0.3,
        }
    }
}

impl Denoising {
    pub(crate) fn validate(&self) -> Result<(), ObjectiveError> {
        check_rate("corruption rate", self.rate)?;
        check_rate("N fraction", self.n_fraction)
    }
}

impl Objective for Denoising {
    fn name(&self) -> &'static str {
        "denoise"
    }

    fn apply(
        &self,
        window: &TokenWindow,
        vocab: &VocabInfo,
        rng: &mut ChaCha8Rng,
    ) -> ObjectiveExample {
        let mut ex =
            ObjectiveExample::unchanged(window.ids, Attention::Bidirectional, TargetKind::Token);
        for (i, &id) in window.ids.iter().enumerate() {
            if vocab.is_special(id) && Some(id) != vocab.n_token {
                continue;
            }
            ex.loss_mask[i] = true;
            if rng.random::<f64>() >= self.rate {
                continue;
            }
            ex.input_ids[i] = match vocab.n_token {
                Some(n) if rng.random::<f64>() < self.n_fraction => n,
                // A substitution is another real token: not itself, not `N`.
                _ => (0..64)
                    .map(|_| vocab.random_ordinary(rng))
                    .find(|&r| r != id && Some(r) != vocab.n_token)
                    .unwrap_or(id),
            };
        }
        ex
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectives::testing::*;

    #[test]
    fn corrupts_at_rate_and_predicts_everything() {
        let tok = nucleotide();
        let vocab = VocabInfo::of(&tok);
        let seq = bases(20_000, 8);
        let (ids, offsets) = encode(&tok, &seq);
        let ex = Denoising {
            rate: 0.2,
            n_fraction: 0.5,
        }
        .apply(
            &TokenWindow {
                ids: &ids,
                offsets: &offsets,
                annotations: &[],
            },
            &vocab,
            &mut rng(1),
        );
        let changed = (0..ids.len())
            .filter(|&i| ex.input_ids[i] != ids[i])
            .count() as f64;
        assert!((changed / 20_000.0 - 0.2).abs() < 0.01, "{changed}");
        let n_id = tok_n(&vocab);
        let to_n = (0..ids.len()).filter(|&i| ex.input_ids[i] == n_id).count() as f64;
        assert!((to_n / changed - 0.5).abs() < 0.03);
        assert_eq!(ex.targets, ids);
        assert_eq!(ex.n_targets(), 20_000);
    }

    fn tok_n(vocab: &VocabInfo) -> u32 {
        vocab.n_token.unwrap()
    }
}
