//! One token per base.

use crate::{
    io::TokenizerKind,
    vocab::{SpecialTokenIds, Template, Vocab, DEFAULT_SPECIALS},
    Result, TokenizeError, Tokenizer,
};

/// Single-nucleotide tokenizer: vocabulary = the special tokens, then `A C G T N`.
#[derive(Debug, Clone)]
pub struct NucleotideTokenizer {
    vocab: Vocab,
    specials: SpecialTokenIds,
    template: Template,
    /// Byte -> id.
    table: Box<[u32; 256]>,
}

impl NucleotideTokenizer {
    /// The default vocabulary.
    pub fn new(template: Template) -> Self {
        let tokens = DEFAULT_SPECIALS
            .iter()
            .map(|s| s.to_string())
            .chain(["A", "C", "G", "T", "N"].map(String::from))
            .collect();
        // The default tokens are distinct, so this cannot fail.
        let vocab = Vocab::new(tokens).unwrap_or_default();
        Self::with_vocab(vocab, template)
            .unwrap_or_else(|_| unreachable!("default vocabulary is valid"))
    }

    /// A given vocabulary; it must hold `[UNK]`/`<unk>` and the single-base tokens `A C G T`
    /// (`N` falls back to unknown when absent).
    pub fn with_vocab(vocab: Vocab, template: Template) -> Result<Self> {
        let specials = SpecialTokenIds::find(&vocab);
        let unk = specials
            .unk
            .ok_or_else(|| TokenizeError::invalid("vocabulary", "has no [UNK] token"))?;
        let mut table = Box::new([unk; 256]);
        for b in *b"ACGTN" {
            match vocab.id(&(b as char).to_string()) {
                Some(id) => table[b as usize] = id,
                None if b == b'N' => {}
                None => {
                    return Err(TokenizeError::invalid(
                        "vocabulary",
                        format!("has no token for base '{}'", b as char),
                    ))
                }
            }
        }
        Ok(NucleotideTokenizer {
            vocab,
            specials,
            template,
            table,
        })
    }
}

impl Tokenizer for NucleotideTokenizer {
    fn tokenize_into(
        &self,
        seq: &[u8],
        ids: &mut Vec<u32>,
        offsets: Option<&mut Vec<(usize, usize)>>,
    ) {
        ids.extend(seq.iter().map(|&b| self.table[b as usize]));
        if let Some(offsets) = offsets {
            offsets.extend((0..seq.len()).map(|i| (i, i + 1)));
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
        TokenizerKind::Nucleotide
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_token_per_base() {
        let t = NucleotideTokenizer::new(Template::Causal);
        let e = t.encode(b"ACGTNX");
        let tokens: Vec<_> = e.ids.iter().map(|&i| t.vocab().token(i).unwrap()).collect();
        assert_eq!(tokens, ["<bos>", "A", "C", "G", "T", "N", "[UNK]", "<eos>"]);
        assert_eq!(e.offsets[3], (2, 3));
        assert_eq!(e.special_tokens_mask, [1, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(t.decode(&e.ids), "ACGTNN");
    }
}
