//! Vocabularies and special tokens.

use crate::TokenizeError;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The special tokens every dnalm vocabulary starts with, in id order.
///
/// BERT-style encoders use `[CLS] ... [SEP]`, causal decoders `<bos> ... <eos>`; one vocabulary
/// serves both, so a tokenizer can be shared between the two kinds of model.
pub const DEFAULT_SPECIALS: [&str; 7] = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<bos>", "<eos>",
];

/// Ids of the special tokens present in a vocabulary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokenIds {
    /// Padding.
    pub pad: Option<u32>,
    /// Unknown.
    pub unk: Option<u32>,
    /// Sequence start for encoders.
    pub cls: Option<u32>,
    /// Sequence end / separator for encoders.
    pub sep: Option<u32>,
    /// Mask for masked-LM objectives.
    pub mask: Option<u32>,
    /// Sequence start for decoders.
    pub bos: Option<u32>,
    /// Sequence end for decoders.
    pub eos: Option<u32>,
}

impl SpecialTokenIds {
    /// Finds the special tokens of `vocab` by their usual spellings (`[PAD]`/`<pad>`, ...).
    ///
    /// ESM vocabularies (Nucleotide Transformer) spell the start token `<cls>` and have no
    /// separator: their `<eos>` plays the separator's part, as in `EsmTokenizer`.
    pub fn find(vocab: &Vocab) -> Self {
        let get = |names: &[&str]| names.iter().find_map(|n| vocab.id(n));
        let esm_style = vocab.id("<cls>").is_some() && vocab.id("[CLS]").is_none();
        SpecialTokenIds {
            pad: get(&["[PAD]", "<pad>"]),
            unk: get(&["[UNK]", "<unk>"]),
            cls: get(&["[CLS]", "<cls>"]),
            sep: get(&["[SEP]", "<sep>"])
                .or_else(|| esm_style.then(|| vocab.id("<eos>")).flatten()),
            mask: get(&["[MASK]", "<mask>"]),
            bos: get(&["<bos>", "<s>", "[BOS]"]),
            eos: get(&["<eos>", "</s>", "[EOS]"]),
        }
    }

    /// Whether `id` is one of the special tokens.
    pub fn contains(&self, id: u32) -> bool {
        [
            self.pad, self.unk, self.cls, self.sep, self.mask, self.bos, self.eos,
        ]
        .contains(&Some(id))
    }
}

/// Which special tokens wrap an encoded sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// `[CLS] tokens [SEP]` (encoders).
    #[default]
    Bert,
    /// `<bos> tokens <eos>` (decoders).
    Causal,
    /// `[CLS] tokens`, no end token (Nucleotide Transformer's `EsmTokenizer` with
    /// `eos_token: null`).
    Cls,
    /// `tokens [SEP]`, no start token (HyenaDNA's character tokenizer).
    Sep,
    /// No special tokens.
    None,
}

/// A token <-> id mapping; ids are positions in the token list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vocab {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Vocab {
    /// Builds a vocabulary from tokens in id order; duplicates are an error naming the token.
    pub fn new(tokens: Vec<String>) -> Result<Self, TokenizeError> {
        let mut ids = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            if ids.insert(t.clone(), i as u32).is_some() {
                return Err(TokenizeError::DuplicateToken { token: t.clone() });
            }
        }
        Ok(Vocab { tokens, ids })
    }

    /// Builds a vocabulary from a token -> id map whose ids are exactly `0..len`.
    pub fn from_map(map: &HashMap<String, u32>) -> Result<Self, TokenizeError> {
        let mut tokens = vec![None; map.len()];
        for (t, &id) in map {
            let slot =
                tokens
                    .get_mut(id as usize)
                    .ok_or_else(|| TokenizeError::TokenIdOutOfRange {
                        token: t.clone(),
                        id,
                        size: map.len(),
                    })?;
            *slot = Some(t.clone());
        }
        let tokens = tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| t.ok_or(TokenizeError::MissingTokenId { id: i as u32 }))
            .collect::<Result<Vec<_>, _>>()?;
        Vocab::new(tokens)
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of a token.
    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// The token with an id.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// All tokens in id order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The token -> id map.
    pub fn to_map(&self) -> HashMap<String, u32> {
        self.ids.clone()
    }
}
