//! Next-token prediction (causal LM, for the decoder): position i predicts token i+1.

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Attention, Objective, ObjectiveExample, TargetKind, TokenWindow, VocabInfo};

/// Next-token prediction. No settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextToken {}

impl Objective for NextToken {
    fn name(&self) -> &'static str {
        "next_token"
    }

    fn apply(
        &self,
        window: &TokenWindow,
        vocab: &VocabInfo,
        _rng: &mut ChaCha8Rng,
    ) -> ObjectiveExample {
        let ids = window.ids;
        let mut ex = ObjectiveExample::unchanged(ids, Attention::Causal, TargetKind::Token);
        let pad = vocab.specials.pad;
        for i in 0..ids.len() {
            match ids.get(i + 1) {
                Some(&next) if Some(next) != pad => {
                    ex.targets[i] = next;
                    ex.loss_mask[i] = true;
                }
                _ => {
                    ex.targets[i] = pad.unwrap_or(0);
                    ex.loss_mask[i] = false;
                }
            }
        }
        ex
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectives::testing::*;

    #[test]
    fn targets_are_shifted_inputs() {
        let tok = nucleotide();
        let vocab = VocabInfo::of(&tok);
        let (ids, offsets) = encode(&tok, b"ACGT"); // <bos> A C G T <eos>
        let ex = NextToken::default().apply(
            &TokenWindow {
                ids: &ids,
                offsets: &offsets,
                annotations: &[],
            },
            &vocab,
            &mut rng(0),
        );
        assert_eq!(ex.input_ids, ids);
        assert_eq!(ex.targets[..5], ids[1..]);
        assert_eq!(ex.loss_mask, [true, true, true, true, true, false]);
        assert_eq!(ex.attention, Attention::Causal);
    }
}
