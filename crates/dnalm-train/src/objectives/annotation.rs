//! Annotation-aware masking: whole annotated elements (exons, promoters, TF sites...) are masked
//! with a probability, so the model must reconstruct an element from its context; other tokens
//! are masked at a background rate. As in span masking, tokens sharing bases with masked ones are
//! hidden too and the loss only counts tokens whose bases stay hidden.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{
    check_rate, mask_neighbourhoods, mlm::choose, Attention, Objective, ObjectiveError,
    ObjectiveExample, TargetKind, TokenWindow, VocabInfo,
};

/// Annotation-aware masking settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnnotationMasking {
    /// Probability that each element (of the chosen classes) in a window is masked whole.
    pub element_rate: f64,
    /// Element types (annotation classes, e.g. `["CDS"]`) whose elements may be masked; empty =
    /// every annotated class. Resolved to class indices by the batch pipeline.
    #[serde(default)]
    pub element_types: Vec<String>,
    /// Class indices whose elements may be masked (set from `element_types`); empty = every
    /// class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<u32>,
    /// Masking rate for tokens outside masked elements.
    pub background_rate: f64,
}

impl Default for AnnotationMasking {
    fn default() -> Self {
        AnnotationMasking {
            element_rate: 0.5,
            element_types: Vec::new(),
            classes: Vec::new(),
            background_rate: 0.1,
        }
    }
}

impl AnnotationMasking {
    pub(crate) fn validate(&self, vocab: &VocabInfo) -> Result<(), ObjectiveError> {
        check_rate("element rate", self.element_rate)?;
        check_rate("background rate", self.background_rate)?;
        vocab.mask_id().map(|_| ())
    }
}

impl Objective for AnnotationMasking {
    fn name(&self) -> &'static str {
        "annotation"
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
        let ordinary: Vec<bool> = window.ids.iter().map(|&id| !vocab.is_special(id)).collect();
        let mut chosen = vec![false; n];
        for el in window.annotations {
            if !(self.classes.is_empty() || self.classes.contains(&el.class)) {
                continue;
            }
            if rng.random::<f64>() >= self.element_rate {
                continue;
            }
            for (i, &(s, e)) in window.offsets.iter().enumerate() {
                if ordinary[i] && s < e && s < el.span.1 && e > el.span.0 {
                    chosen[i] = true;
                }
            }
        }
        let outside: Vec<bool> = (0..n).map(|i| ordinary[i] && !chosen[i]).collect();
        let background = if self.background_rate > 0.0 {
            choose(&outside, self.background_rate, rng)
        } else {
            vec![false; n]
        };
        let chosen: Vec<bool> = chosen
            .iter()
            .zip(&background)
            .map(|(a, b)| *a || *b)
            .collect();
        mask_neighbourhoods(&mut ex, &chosen, window, vocab, mask);
        ex
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectives::{testing::*, Annotated};

    #[test]
    fn masks_whole_elements_without_leaks() {
        let tok = kmer6();
        let vocab = VocabInfo::of(&tok);
        let mask = vocab.specials.mask.unwrap();
        let seq = bases(400, 2);
        let (ids, offsets) = encode(&tok, &seq);
        let elements = [
            Annotated {
                span: (100, 160),
                class: 1,
            },
            Annotated {
                span: (300, 320),
                class: 2,
            },
        ];
        let w = TokenWindow {
            ids: &ids,
            offsets: &offsets,
            annotations: &elements,
        };
        let only_class_1 = AnnotationMasking {
            element_rate: 1.0,
            classes: vec![1],
            background_rate: 0.0,
            ..Default::default()
        };
        let ex = only_class_1.apply(&w, &vocab, &mut rng(0));
        assert_no_leak(&ex, &offsets, mask);
        for (i, &(s, e)) in offsets.iter().enumerate() {
            let in_el1 = s < 160 && e > 100 && s < e;
            let in_el2 = s < 320 && e > 300;
            if in_el1 {
                assert_eq!(ex.input_ids[i], mask, "token {i} of element 1");
            }
            if in_el2 && !(s < 165 && e > 95) {
                assert_eq!(ex.input_ids[i], ids[i], "class 2 is not masked");
            }
            // Every base of element 1 is a target somewhere: tokens fully inside it are targets.
            if s >= 100 && e <= 160 {
                assert!(ex.loss_mask[i], "token {i} inside element 1 is a target");
            }
        }
        let bg = AnnotationMasking {
            element_rate: 0.0,
            classes: vec![],
            background_rate: 0.2,
            ..Default::default()
        };
        let ex = bg.apply(&w, &vocab, &mut rng(1));
        assert!(ex.n_targets() > 0);
        assert_no_leak(&ex, &offsets, mask);
    }
}
