//! Permutation language modelling (XLNet): tokens are predicted in a random factorisation order,
//! each seeing only the tokens before it in that order, through two-stream attention.
//!
//! A fraction of tokens is chosen for prediction. With overlapping k-mers a chosen token's bases
//! also sit in its neighbours, so (as in span masking) every token sharing a base with a chosen one
//! is predicted too; tokens that share bases form one *group*, and a whole group takes one place in
//! the order. Then:
//!
//! - content stream: token i sees token j iff `rank(j) <= rank(i)` (context tokens have rank -1:
//!   they see only context, and everyone sees them);
//! - query stream (which predicts i): token i sees j iff `rank(j) < rank(i)`: never itself, never
//!   a token that shares a base with it, and, through any number of layers, nothing that has seen
//!   one (the test follows the information flow to its closure).
//!
//! The loss counts the predicted tokens whose bases no context token shows. With non-overlapping
//! tokens every group is one token and this is XLNet exactly.

use rand::{seq::SliceRandom, Rng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{
    expand_to_neighbourhood, mlm::choose, unrevealed, Attention, Objective, ObjectiveExample,
    TargetKind, TokenWindow, VocabInfo,
};

/// Permutation LM settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PermutationLm {
    /// Fraction of tokens chosen for prediction (before neighbourhood expansion).
    pub predict_fraction: f64,
}

impl Default for PermutationLm {
    fn default() -> Self {
        PermutationLm {
            predict_fraction: 0.15,
        }
    }
}

impl Objective for PermutationLm {
    fn name(&self) -> &'static str {
        "permutation"
    }

    fn apply(
        &self,
        window: &TokenWindow,
        vocab: &VocabInfo,
        rng: &mut ChaCha8Rng,
    ) -> ObjectiveExample {
        let ids = window.ids;
        let n = ids.len();
        let ordinary: Vec<bool> = ids.iter().map(|&id| !vocab.is_special(id)).collect();
        let chosen = choose(&ordinary, self.predict_fraction, rng);
        let mut predicted = expand_to_neighbourhood(&chosen, window.offsets);
        for (p, &o) in predicted.iter_mut().zip(&ordinary) {
            *p &= o;
        }
        // Keep at least one context token so every query row can attend somewhere.
        if predicted.iter().all(|&p| p) && n > 0 {
            predicted[rng.random_range(0..n)] = false;
        }
        // Groups: runs of predicted tokens connected by shared bases (tokens are in base order).
        let mut group = vec![usize::MAX; n];
        let mut n_groups = 0;
        let mut group_end = 0usize;
        for i in 0..n {
            if !predicted[i] {
                continue;
            }
            let (s, e) = window.offsets[i];
            let joins =
                i > 0 && predicted[i - 1] && group[i - 1] != usize::MAX && s < group_end && s < e;
            if joins {
                group[i] = group[i - 1];
                group_end = group_end.max(e);
            } else {
                group[i] = n_groups;
                n_groups += 1;
                group_end = e;
            }
        }
        let mut order: Vec<usize> = (0..n_groups).collect();
        order.shuffle(rng);
        let mut rank_of_group = vec![0i64; n_groups];
        for (r, &g) in order.iter().enumerate() {
            rank_of_group[g] = r as i64;
        }
        let rank: Vec<i64> = (0..n)
            .map(|i| {
                if group[i] == usize::MAX {
                    -1
                } else {
                    rank_of_group[group[i]]
                }
            })
            .collect();
        let mut content = vec![false; n * n];
        let mut query = vec![false; n * n];
        for i in 0..n {
            for j in 0..n {
                content[i * n + j] = rank[j] <= rank[i];
                query[i * n + j] = if predicted[i] {
                    rank[j] < rank[i]
                } else {
                    rank[j] <= rank[i]
                };
            }
        }
        let mut ex = ObjectiveExample::unchanged(
            ids,
            Attention::TwoStream { content, query },
            TargetKind::Token,
        );
        ex.loss_mask = unrevealed(&predicted, window.offsets);
        ex
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectives::testing::*;

    /// Every token whose information can reach the query stream of `i` after any number of layers.
    fn reaches_query(content: &[bool], query: &[bool], n: usize, i: usize) -> Vec<bool> {
        let mut seen: Vec<bool> = (0..n).map(|j| query[i * n + j]).collect();
        let mut frontier: Vec<usize> = (0..n).filter(|&j| seen[j]).collect();
        while let Some(j) = frontier.pop() {
            for k in 0..n {
                if content[j * n + k] && !seen[k] {
                    seen[k] = true;
                    frontier.push(k);
                }
            }
        }
        seen
    }

    fn check(tok: &dyn dnalm_tokenize::Tokenizer, len: usize) {
        let vocab = VocabInfo::of(tok);
        for seed in 0..8 {
            let seq = bases(len, seed);
            let (ids, offsets) = encode(tok, &seq);
            let n = ids.len();
            let w = TokenWindow {
                ids: &ids,
                offsets: &offsets,
                annotations: &[],
            };
            let ex = PermutationLm {
                predict_fraction: 0.2,
            }
            .apply(&w, &vocab, &mut rng(seed));
            let Attention::TwoStream { content, query } = &ex.attention else {
                panic!("two-stream")
            };
            assert!(ex.n_targets() > 0);
            for i in (0..n).filter(|&i| ex.loss_mask[i]) {
                assert!(!query[i * n + i], "target {i} sees itself");
                assert!(content[i * n + i]);
                let reach = reaches_query(content, query, n, i);
                let (s, e) = offsets[i];
                for j in (0..n).filter(|&j| reach[j]) {
                    let (vs, ve) = offsets[j];
                    assert!(
                        !(vs < e && ve > s),
                        "target {i} {:?} sees its own bases through {j} {:?}",
                        (s, e),
                        (vs, ve)
                    );
                }
            }
            // Every query row can attend somewhere (no empty softmax).
            for i in 0..n {
                assert!((0..n).any(|j| query[i * n + j]), "row {i} is empty");
            }
        }
    }

    #[test]
    fn targets_never_see_their_own_content() {
        check(&nucleotide(), 300);
        check(&kmer6(), 300);
        check(
            &dnalm_tokenize::KmerTokenizer::new(6, false, dnalm_tokenize::Template::Bert).unwrap(),
            300,
        );
    }
}
