//! What a tokenizer does to a corpus: tokens per base, vocabulary use, unknown rate, speed.

use serde::Serialize;

use crate::Tokenizer;

/// Statistics of a tokenizer over a set of sequences (`dnalm tokenize` prints them).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TokenStats {
    /// The tokenizer's kind, in words.
    pub tokenizer: String,
    /// Tokens in its vocabulary.
    pub vocab_size: usize,
    /// Sequences counted.
    pub sequences: u64,
    /// Bases counted.
    pub bases: u64,
    /// Tokens they gave (no special tokens).
    pub tokens: u64,
    /// `tokens / bases`.
    pub tokens_per_base: f64,
    /// Distinct vocabulary entries emitted.
    pub vocab_used: usize,
    /// `vocab_used / vocab_size`.
    pub vocab_used_fraction: f64,
    /// Unknown tokens emitted.
    pub unknown_tokens: u64,
    /// `unknown_tokens / tokens`.
    pub unknown_rate: f64,
    /// Wall-clock seconds (as given to [`TokenCounter::finish`]).
    pub seconds: f64,
    /// `bases / seconds`.
    pub bases_per_second: f64,
}

/// Counts [`TokenStats`] one sequence at a time (memory: one flag per vocabulary entry).
#[derive(Debug)]
pub struct TokenCounter<'a, T: Tokenizer + ?Sized> {
    tokenizer: &'a T,
    stats: TokenStats,
    seen: Vec<bool>,
    ids: Vec<u32>,
}

impl<'a, T: Tokenizer + ?Sized> TokenCounter<'a, T> {
    /// A counter with nothing counted.
    pub fn new(tokenizer: &'a T) -> Self {
        let vocab_size = tokenizer.vocab().len();
        TokenCounter {
            tokenizer,
            stats: TokenStats {
                tokenizer: tokenizer.kind().to_string(),
                vocab_size,
                ..Default::default()
            },
            seen: vec![false; vocab_size],
            ids: Vec::new(),
        }
    }

    /// Tokenizes `seq` (without special tokens) and counts it.
    pub fn add(&mut self, seq: &[u8]) {
        self.ids.clear();
        self.tokenizer.tokenize_into(seq, &mut self.ids, None);
        let unk = self.tokenizer.special_ids().unk;
        self.stats.sequences += 1;
        self.stats.bases += seq.len() as u64;
        self.stats.tokens += self.ids.len() as u64;
        for &i in &self.ids {
            if let Some(slot) = self.seen.get_mut(i as usize) {
                *slot = true;
            }
            if Some(i) == unk {
                self.stats.unknown_tokens += 1;
            }
        }
    }

    /// The statistics, with the rates and a throughput over `seconds`.
    pub fn finish(self, seconds: f64) -> TokenStats {
        let mut stats = self.stats;
        stats.seconds = seconds;
        stats.tokens_per_base = stats.tokens as f64 / stats.bases.max(1) as f64;
        stats.vocab_used = self.seen.iter().filter(|&&s| s).count();
        stats.vocab_used_fraction = stats.vocab_used as f64 / stats.vocab_size.max(1) as f64;
        stats.unknown_rate = stats.unknown_tokens as f64 / stats.tokens.max(1) as f64;
        stats.bases_per_second = stats.bases as f64 / seconds.max(1e-9);
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Template, TokenizerSpec};

    #[test]
    fn counts_tokens_vocabulary_use_and_unknowns() {
        let spec: TokenizerSpec = "kmer:3:non-overlapping".parse().unwrap();
        let tok = spec.build(Template::None).unwrap();
        let mut counter = TokenCounter::new(&tok);
        counter.add(b"AAACCC");
        counter.add(b"AAANNN");
        let stats = counter.finish(2.0);
        // AAA CCC | AAA N N N: N is a single-base token and framing restarts after it.
        assert_eq!((stats.sequences, stats.bases, stats.tokens), (2, 12, 6));
        assert_eq!(stats.tokens_per_base, 0.5);
        assert_eq!(stats.vocab_used, 3);
        assert_eq!(stats.unknown_tokens, 0);
        let unknown = tok.special_ids().unk.expect("an unknown token");
        let mut ids = Vec::new();
        tok.tokenize_into(b"AAAXXX", &mut ids, None);
        let mut counter = TokenCounter::new(&tok);
        counter.add(b"AAAXXX");
        let with_unknown = counter.finish(1.0);
        let expected = ids.iter().filter(|&&i| i == unknown).count() as u64;
        assert!(expected > 0, "{ids:?}");
        assert_eq!(with_unknown.unknown_tokens, expected);
        assert_eq!(
            with_unknown.unknown_rate,
            expected as f64 / ids.len() as f64
        );
        assert_eq!(stats.bases_per_second, 6.0);
    }
}
