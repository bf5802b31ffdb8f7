//! DNA tokenizers for dnalm: the second stage of the data flow (sequences -> tokens).
//!
//! Every tokenizer implements one trait, [`Tokenizer`], which turns *normalised* bases (the
//! `ACGTN` alphabet produced by [`dnalm_seq::alphabet`]) into token ids **and offsets**: each
//! token's half-open base span, so later stages can map tokens back to bases and annotations.
//!
//! | tokenizer | tokens | offsets of token i | as in |
//! |---|---|---|---|
//! | [`NucleotideTokenizer`] | one per base | `(i, i+1)` | HyenaDNA, Caduceus |
//! | [`KmerTokenizer`] overlapping | `L-k+1` k-mers, stride 1; k-mers with `N` are `[UNK]` | `(i, i+k)` | DNABERT |
//! | [`KmerTokenizer`] non-overlapping | k-mers at stride k; single bases at `N` and at the tail | varies | Nucleotide Transformer |
//! | [`BpeTokenizer`] | byte-pair merges learnt from a genome (HF `tokenizers`) | varies | DNABERT-2 |
//!
//! The k-mer and nucleotide kernels are hand-written (2-bit codes, a rolling k-mer index and a
//! lookup table; no string slicing) because they are the hot path of data preparation; BPE uses
//! the Hugging Face `tokenizers` crate for both training and encoding.
//!
//! All of them save to a directory that Hugging Face loads: `tokenizer.json` (+ `vocab.txt` for
//! k-mer and nucleotide vocabularies, + `tokenizer_config.json`); see [`AnyTokenizer::save`].
//!
//! ```
//! use dnalm_tokenize::{KmerTokenizer, Template, Tokenizer};
//! let tok = KmerTokenizer::new(3, true, Template::Bert).unwrap();
//! let enc = tok.encode(b"ACGTN");
//! // [CLS] ACG CGT [UNK] [UNK] [SEP]
//! assert_eq!(enc.ids.len(), 5);
//! assert_eq!(enc.offsets[1], (0, 3));
//! assert_eq!(tok.vocab().token(enc.ids[1]), Some("ACG"));
//! ```

mod batch;
mod bpe;
mod bpe_merge;
mod error;
mod io;
mod kmer;
mod nucleotide;
pub mod stats;
mod vocab;

pub use batch::{encode_batch, BatchEncoding, BatchOptions, Padding};
pub use bpe::{BpeTokenizer, BpeTrainOptions};
pub use error::{Result, TokenizeError};
pub use io::{AnyTokenizer, TokenizerKind, TokenizerSpec};
pub use kmer::KmerTokenizer;
pub use nucleotide::NucleotideTokenizer;
pub use stats::{TokenCounter, TokenStats};
pub use vocab::{SpecialTokenIds, Template, Vocab, DEFAULT_SPECIALS};

/// The result of encoding one sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoding {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Half-open base span of each token in the input; `(0, 0)` for special and padding tokens.
    pub offsets: Vec<(usize, usize)>,
    /// 1 for special (and padding) tokens, 0 for sequence tokens.
    pub special_tokens_mask: Vec<u8>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u8>,
}

impl Encoding {
    /// Number of tokens (padding included).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A DNA tokenizer.
///
/// Inputs are normalised sequences (`ACGTN`; see [`dnalm_seq::alphabet`]). Any other byte is
/// tokenised as unknown, never a panic.
pub trait Tokenizer: Send + Sync {
    /// Appends the ids of `seq`'s tokens (no special tokens) to `ids`, and their base spans to
    /// `offsets` when given. This is the hot path: it allocates nothing beyond the outputs.
    fn tokenize_into(
        &self,
        seq: &[u8],
        ids: &mut Vec<u32>,
        offsets: Option<&mut Vec<(usize, usize)>>,
    );

    /// The vocabulary.
    fn vocab(&self) -> &Vocab;

    /// The special tokens' ids.
    fn special_ids(&self) -> &SpecialTokenIds;

    /// Which special tokens [`encode`](Tokenizer::encode) adds.
    fn template(&self) -> Template;

    /// What kind of tokenizer this is (saved in `tokenizer_config.json`).
    fn kind(&self) -> TokenizerKind;

    /// Encodes one sequence with its template's special tokens.
    fn encode(&self, seq: &[u8]) -> Encoding {
        let (prefix, suffix) = self.template_tokens();
        encode_between(self, seq, prefix, suffix, None).0
    }

    /// The special tokens [`encode`](Tokenizer::encode) puts before and after a sequence.
    fn template_tokens(&self) -> (Option<u32>, Option<u32>) {
        template_ids(self.template(), self.special_ids())
    }

    /// How many special tokens [`encode`](Tokenizer::encode) adds to a sequence (0, 1 or 2).
    fn special_count(&self) -> usize {
        let (prefix, suffix) = self.template_tokens();
        prefix.is_some() as usize + suffix.is_some() as usize
    }

    /// Sequence tokens that fit in `max_positions` beside the special tokens.
    fn room(&self, max_positions: usize) -> usize {
        max_positions.saturating_sub(self.special_count())
    }

    /// The most sequence tokens (no special tokens) `bases` bases of `ACGT` give: exact for
    /// nucleotide and k-mer tokenizers, an upper bound for BPE (every token covers at least one
    /// base). The one place dnalm answers "how many tokens is a window of N bases".
    fn max_tokens(&self, bases: usize) -> usize {
        match self.kind() {
            TokenizerKind::Nucleotide | TokenizerKind::Bpe => bases,
            TokenizerKind::Kmer {
                k,
                overlapping: true,
            } => (bases + 1).saturating_sub(k),
            // Whole k-mers, then single bases for the tail.
            TokenizerKind::Kmer {
                k,
                overlapping: false,
            } => bases / k.max(1) + bases % k.max(1),
        }
    }

    /// Positions a window of `bases` bases takes in a model: [`max_tokens`](Tokenizer::max_tokens)
    /// plus the special tokens.
    fn window_tokens(&self, bases: usize) -> usize {
        self.max_tokens(bases) + self.special_count()
    }

    /// The largest id this tokenizer puts into a model input: any non-special token, the
    /// unknown, padding and mask tokens, and its template's tokens. A model needs more embedding
    /// rows than this; it may have fewer than the vocabulary (Nucleotide Transformer's tokenizer
    /// lists `<eos>` and `<bos>` after the 4,105 tokens its model embeds, and never emits them).
    fn highest_emitted_id(&self) -> u32 {
        let s = self.special_ids();
        let (first, last) = self.template_tokens();
        let regular = (0..self.vocab().len() as u32)
            .rev()
            .find(|&id| !s.contains(id));
        [regular, s.unk, s.pad, s.mask, first, last]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0)
    }

    /// Turns ids back into bases (special tokens are skipped, `[UNK]` becomes `N`).
    fn decode(&self, ids: &[u32]) -> String {
        let specials = self.special_ids();
        ids.iter()
            .filter(|&&id| !specials.contains(id) || Some(id) == specials.unk)
            .map(|&id| match self.vocab().token(id) {
                Some(t) if Some(id) != specials.unk => t,
                _ => "N",
            })
            .collect()
    }
}

/// Tokenizes `seq` between optional special tokens. With `max_length`, sequence tokens are cut so
/// that the whole encoding (special tokens included) fits. Returns the encoding and the length it
/// would have had without cutting.
pub(crate) fn encode_between<T: Tokenizer + ?Sized>(
    tokenizer: &T,
    seq: &[u8],
    prefix: Option<u32>,
    suffix: Option<u32>,
    max_length: Option<usize>,
) -> (Encoding, usize) {
    let mut ids = Vec::with_capacity(seq.len() + 2);
    let mut offsets = Vec::with_capacity(seq.len() + 2);
    ids.extend(prefix);
    offsets.extend(prefix.map(|_| (0, 0)));
    tokenizer.tokenize_into(seq, &mut ids, Some(&mut offsets));
    let full = ids.len() + suffix.is_some() as usize;
    if let Some(max) = max_length.filter(|&m| full > m) {
        let keep = max
            .saturating_sub(suffix.is_some() as usize)
            .max(prefix.is_some() as usize);
        ids.truncate(keep);
        offsets.truncate(keep);
    }
    ids.extend(suffix);
    offsets.extend(suffix.map(|_| (0, 0)));
    let mut special_tokens_mask = vec![0u8; ids.len()];
    if prefix.is_some() {
        special_tokens_mask[0] = 1;
    }
    if suffix.is_some() {
        if let Some(last) = special_tokens_mask.last_mut() {
            *last = 1;
        }
    }
    let attention_mask = vec![1u8; ids.len()];
    let encoding = Encoding {
        ids,
        offsets,
        special_tokens_mask,
        attention_mask,
    };
    (encoding, full)
}

/// The ids placed before and after a sequence by `template`.
pub fn template_ids(template: Template, s: &SpecialTokenIds) -> (Option<u32>, Option<u32>) {
    match template {
        Template::Bert => (s.cls, s.sep),
        Template::Causal => (s.bos, s.eos),
        Template::Cls => (s.cls, None),
        Template::Sep => (None, s.sep),
        Template::None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `max_tokens` is what encoding gives, for every length and tokenizer family (an upper
    /// bound for BPE), and `window_tokens` adds exactly the template's special tokens.
    #[test]
    fn window_sizes_match_what_encoding_gives() {
        let genome: Vec<u8> = (0..4000u32)
            .map(|i| b"ACGT"[(i.wrapping_mul(2_654_435_761) >> 7) as usize % 4])
            .collect();
        let bpe = BpeTokenizer::train(
            [genome.clone()],
            &BpeTrainOptions {
                vocab_size: 64,
                ..Default::default()
            },
            Template::Bert,
        )
        .map(|b| AnyTokenizer::Bpe(Box::new(b)));
        let mut tokenizers: Vec<AnyTokenizer> = ["nucleotide", "kmer:3", "kmer:6:non-overlapping"]
            .iter()
            .flat_map(|spec| {
                let spec: TokenizerSpec = spec.parse().unwrap();
                [
                    Template::Bert,
                    Template::Cls,
                    Template::Causal,
                    Template::None,
                ]
                .map(|t| spec.build(t).unwrap())
            })
            .collect();
        tokenizers.push(bpe.unwrap());
        for tok in &tokenizers {
            for bases in [0usize, 1, 2, 5, 6, 7, 12, 13, 100] {
                let seq = &genome[..bases];
                let encoded = tok.encode(seq).ids.len();
                let window = tok.window_tokens(bases);
                if tok.kind() == TokenizerKind::Bpe {
                    assert!(encoded <= window, "{}: {bases} bases", tok.kind());
                } else {
                    assert_eq!(
                        encoded,
                        window,
                        "{} {:?}: {bases} bases",
                        tok.kind(),
                        tok.template()
                    );
                }
                assert_eq!(window - tok.max_tokens(bases), tok.special_count());
            }
            assert_eq!(tok.room(10), 10 - tok.special_count());
        }
    }
}
