//! Byte-pair encoding learnt from DNA (DNABERT-2 style), through Hugging Face `tokenizers`.

use std::collections::HashSet;

use tokenizers::{
    models::{bpe::BpeTrainerBuilder, bpe::BPE, TrainerWrapper},
    AddedToken,
};

use crate::{
    bpe_merge::MergeEncoder,
    io::{alphabet_normalizer, template_processor, TokenizerKind},
    vocab::{SpecialTokenIds, Template, Vocab, DEFAULT_SPECIALS},
    Result, TokenizeError, Tokenizer,
};

/// Options for [`BpeTokenizer::train`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpeTrainOptions {
    /// Final vocabulary size, special tokens and the 5 bases included.
    pub vocab_size: usize,
    /// Merges must occur at least this often.
    pub min_frequency: u64,
    /// Training sequences are cut into chunks of this many bases (BPE words).
    pub chunk_length: usize,
    /// Stop reading training sequences after this many bases (`None`: all).
    pub max_bases: Option<usize>,
    /// Longest token, in bases (`None`: no limit).
    pub max_token_length: Option<usize>,
}

impl Default for BpeTrainOptions {
    fn default() -> Self {
        BpeTrainOptions {
            vocab_size: 4096,
            min_frequency: 2,
            chunk_length: 1000,
            max_bases: None,
            max_token_length: Some(16),
        }
    }
}

/// A tokenizer backed by a Hugging Face `tokenizer.json`: the BPE tokenizers dnalm trains, and
/// any other HF tokenizer a user brings (DNABERT-2's, for example).
#[derive(Clone)]
pub struct BpeTokenizer {
    /// The full tokenizer, as saved (alphabet-policy normalizer and post-processor included).
    hf: tokenizers::Tokenizer,
    /// The same without normalizer and post-processor, for already normalised input (the
    /// normalizer is the identity there; skipping it saves several passes over the input).
    fast: tokenizers::Tokenizer,
    /// The exact DNA merge encoder for `fast`, when it replicates it ([`crate::bpe_merge`]).
    merge: Option<MergeEncoder>,
    vocab: Vocab,
    specials: SpecialTokenIds,
    template: Template,
}

impl std::fmt::Debug for BpeTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpeTokenizer")
            .field("vocab_size", &self.vocab.len())
            .field("template", &self.template)
            .finish()
    }
}

impl BpeTokenizer {
    /// Learns a BPE vocabulary from normalised sequences.
    pub fn train<I>(sequences: I, options: &BpeTrainOptions, template: Template) -> Result<Self>
    where
        I: IntoIterator<Item = Vec<u8>>,
    {
        let min_vocab = DEFAULT_SPECIALS.len() + 5;
        if options.vocab_size < min_vocab {
            return Err(TokenizeError::invalid(
                "vocab size",
                format!(
                    "{} is below the {min_vocab} special and base tokens",
                    options.vocab_size
                ),
            ));
        }
        if options.chunk_length == 0 {
            return Err(TokenizeError::invalid("chunk length", "must be positive"));
        }
        let mut chunks: Vec<String> = Vec::new();
        let mut total = 0usize;
        'outer: for seq in sequences {
            for chunk in seq.chunks(options.chunk_length) {
                if options.max_bases.is_some_and(|m| total >= m) {
                    break 'outer;
                }
                total += chunk.len();
                chunks.push(String::from_utf8_lossy(chunk).into_owned());
            }
        }
        if chunks.is_empty() {
            return Err(TokenizeError::invalid(
                "training data",
                "no bases to train on",
            ));
        }
        let specials: Vec<AddedToken> = DEFAULT_SPECIALS
            .iter()
            .map(|s| AddedToken::from(*s, true))
            .collect();
        let trainer = BpeTrainerBuilder::new()
            .vocab_size(options.vocab_size)
            .min_frequency(options.min_frequency)
            .special_tokens(specials)
            .initial_alphabet(HashSet::from(['A', 'C', 'G', 'T', 'N']))
            .max_token_length(options.max_token_length)
            .show_progress(false)
            .build();
        let model = BPE::builder()
            .unk_token("[UNK]".into())
            .build()
            .map_err(TokenizeError::hf)?;
        let mut hf = tokenizers::Tokenizer::new(model);
        hf.with_normalizer(Some(alphabet_normalizer()?));
        hf.train(&mut TrainerWrapper::BpeTrainer(trainer), chunks.iter())
            .map_err(TokenizeError::hf)?;
        let vocab = vocab_of(&hf)?;
        let specials = SpecialTokenIds::find(&vocab);
        hf.with_post_processor(template_processor(template, &vocab, &specials)?);
        Self::from_parts(hf, vocab, template)
    }

    /// Wraps an existing Hugging Face tokenizer.
    pub fn from_hf(hf: tokenizers::Tokenizer, template: Template) -> Result<Self> {
        let vocab = vocab_of(&hf)?;
        Self::from_parts(hf, vocab, template)
    }

    fn from_parts(hf: tokenizers::Tokenizer, vocab: Vocab, template: Template) -> Result<Self> {
        let specials = SpecialTokenIds::find(&vocab);
        let mut fast = hf.clone();
        fast.with_normalizer(None::<tokenizers::NormalizerWrapper>);
        fast.with_post_processor(None::<tokenizers::PostProcessorWrapper>);
        fast.with_truncation(None).map_err(TokenizeError::hf)?;
        fast.with_padding(None);
        let merge = MergeEncoder::from_hf(&fast);
        Ok(BpeTokenizer {
            hf,
            merge,
            fast,
            vocab,
            specials,
            template,
        })
    }

    /// Whether encoding runs dnalm's exact DNA merge encoder ([`crate::bpe_merge`]) rather than
    /// `tokenizers` itself (same ids; the encoder replicates most BPE tokenizers).
    pub fn has_fast_encoder(&self) -> bool {
        self.merge.is_some()
    }

    /// The underlying Hugging Face tokenizer (as saved to `tokenizer.json`).
    pub fn hf(&self) -> &tokenizers::Tokenizer {
        &self.hf
    }
}

fn vocab_of(hf: &tokenizers::Tokenizer) -> Result<Vocab> {
    Vocab::from_map(&hf.get_vocab(true))
        .map_err(|e| TokenizeError::invalid("tokenizer.json vocabulary", e.to_string()))
}

impl Tokenizer for BpeTokenizer {
    fn tokenize_into(
        &self,
        seq: &[u8],
        ids: &mut Vec<u32>,
        mut offsets: Option<&mut Vec<(usize, usize)>>,
    ) {
        if let Some(merge) = &self.merge {
            if merge.encode(seq, ids, offsets.as_deref_mut()) {
                return;
            }
        }
        let text = String::from_utf8_lossy(seq);
        let encoded = match &offsets {
            Some(_) => self.fast.encode(text.as_ref(), false),
            None => self.fast.encode_fast(text.as_ref(), false),
        };
        match encoded {
            Ok(e) => {
                ids.extend_from_slice(e.get_ids());
                if let Some(o) = offsets {
                    o.extend_from_slice(e.get_offsets());
                }
            }
            // Encoding a plain string without truncation does not fail in `tokenizers`; if it
            // ever does, every base becomes unknown rather than silently vanishing.
            Err(_) => {
                let unk = self.specials.unk.unwrap_or(0);
                ids.extend(std::iter::repeat_n(unk, seq.len()));
                if let Some(o) = offsets {
                    o.extend((0..seq.len()).map(|i| (i, i + 1)));
                }
            }
        }
    }

    fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    fn special_ids(&self) -> &SpecialTokenIds {
        &self.specials
    }

    fn template(&self) -> Template {
        self.template
    }

    fn kind(&self) -> TokenizerKind {
        TokenizerKind::Bpe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn genome() -> Vec<u8> {
        // A repetitive genome: BPE must learn its repeats as tokens.
        b"ACGTTGCAAC"
            .repeat(200)
            .into_iter()
            .chain(b"GGGAAATTTC".repeat(100))
            .collect()
    }

    #[test]
    fn learns_merges_and_round_trips() {
        let opts = BpeTrainOptions {
            vocab_size: 64,
            chunk_length: 100,
            ..Default::default()
        };
        let tok = BpeTokenizer::train([genome()], &opts, Template::Bert).unwrap();
        assert!(tok.vocab().len() > 12 && tok.vocab().len() <= 64);
        let seq = b"ACGTTGCAACACGTTGCAACNNGGGAAATTTC";
        let enc = tok.encode(seq);
        assert!(
            enc.ids.len() < seq.len(),
            "merges compress: {}",
            enc.ids.len()
        );
        assert_eq!(tok.vocab().token(enc.ids[0]), Some("[CLS]"));
        assert_eq!(tok.decode(&enc.ids), String::from_utf8_lossy(seq));
        // Offsets tile the input.
        let spans = &enc.offsets[1..enc.offsets.len() - 1];
        assert_eq!(spans[0].0, 0);
        assert!(spans.windows(2).all(|w| w[0].1 == w[1].0));
        assert_eq!(spans.last().unwrap().1, seq.len());
        // The full (normalizing) HF tokenizer agrees, lowercase input included.
        let hf = tok
            .hf()
            .encode("acgttgcaacACGTTGCAACnnGGGAAATTTC", true)
            .unwrap();
        assert_eq!(hf.get_ids(), enc.ids.as_slice());
    }

    #[test]
    fn rejects_bad_options() {
        let opts = BpeTrainOptions {
            vocab_size: 5,
            ..Default::default()
        };
        assert!(BpeTokenizer::train([genome()], &opts, Template::Bert).is_err());
        assert!(BpeTokenizer::train(
            Vec::<Vec<u8>>::new(),
            &BpeTrainOptions::default(),
            Template::Bert
        )
        .is_err());
    }
}
