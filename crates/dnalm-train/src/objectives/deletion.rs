//! Token deletion: tokens are deleted at a rate; the model sees the shortened sequence and
//! predicts, at each position, whether a deletion happened just before it.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Attention, Objective, ObjectiveExample, TargetKind, TokenWindow, VocabInfo};

/// Token deletion settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenDeletion {
    /// Probability that each non-special token is deleted.
    pub rate: f64,
}

impl Default for TokenDeletion {
    fn default() -> Self {
        TokenDeletion { rate: 0.15 }
    }
}

impl Objective for TokenDeletion {
    fn name(&self) -> &'static str {
        "deletion"
    }

    fn apply(
        &self,
        window: &TokenWindow,
        vocab: &VocabInfo,
        rng: &mut ChaCha8Rng,
    ) -> ObjectiveExample {
        let mut input_ids = Vec::with_capacity(window.ids.len());
        let mut targets = Vec::with_capacity(window.ids.len());
        let mut deleted_before = false;
        for &id in window.ids {
            if !vocab.is_special(id) && rng.random::<f64>() < self.rate {
                deleted_before = true;
                continue;
            }
            input_ids.push(id);
            targets.push(deleted_before as u32);
            deleted_before = false;
        }
        let n = input_ids.len();
        ObjectiveExample {
            position_ids: (0..n as u32).collect(),
            loss_mask: vec![true; n],
            input_ids,
            targets,
            attention: Attention::Bidirectional,
            target_kind: TargetKind::Binary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectives::testing::*;

    #[test]
    fn flags_mark_gaps() {
        // Distinct ids (beyond the 7 specials), so the kept tokens identify the deletions.
        let tok = kmer6();
        let vocab = VocabInfo::of(&tok);
        let mut ids: Vec<u32> = vec![2];
        ids.extend(7..5007);
        ids.push(3);
        let offsets = vec![(0, 0); ids.len()];
        let ex = TokenDeletion::default().apply(
            &TokenWindow {
                ids: &ids,
                offsets: &offsets,
                annotations: &[],
            },
            &vocab,
            &mut rng(4),
        );
        let deleted = ids.len() - ex.input_ids.len();
        assert!((deleted as f64 / 5000.0 - 0.15).abs() < 0.02, "{deleted}");
        assert_eq!(
            (ex.input_ids[0], *ex.input_ids.last().unwrap()),
            (2, 3),
            "specials are never deleted"
        );
        let mut previous = None::<u32>;
        for (j, &id) in ex.input_ids.iter().enumerate() {
            // 1 exactly when the kept token does not directly follow the previous kept one.
            let expected = match previous {
                None => 0,
                Some(2) => (id != 7) as u32,
                Some(p) if id == 3 => (p != 5006) as u32,
                Some(p) => (id != p + 1) as u32,
            };
            assert_eq!(
                ex.targets[j], expected,
                "position {j} (id {id}, previous {previous:?})"
            );
            previous = Some(id);
        }
        assert_eq!(ex.target_kind, TargetKind::Binary);
        assert!(ex.loss_mask.iter().all(|&m| m));
    }
}
