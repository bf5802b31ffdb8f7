//! Batch encoding: padding, truncation and attention masks, in parallel.

use rayon::prelude::*;

use crate::{encode_between, Encoding, Result, TokenizeError, Tokenizer};

/// How to pad a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// No padding: encodings keep their own lengths.
    #[default]
    None,
    /// Pad to the longest encoding in the batch.
    Longest,
    /// Pad to this many tokens.
    Fixed(usize),
}

/// Options for [`encode_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Add the template's special tokens.
    pub add_special_tokens: bool,
    /// Maximum encoding length in tokens, special tokens included.
    pub max_length: Option<usize>,
    /// Cut encodings longer than `max_length` (keeping the special tokens). Without it, a longer
    /// encoding is an error.
    pub truncation: bool,
    /// Padding.
    pub padding: Padding,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            add_special_tokens: true,
            max_length: None,
            truncation: false,
            padding: Padding::None,
        }
    }
}

/// A padded batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchEncoding {
    /// One encoding per input, in input order.
    pub encodings: Vec<Encoding>,
}

impl BatchEncoding {
    /// Ids as one row-major matrix (`rows x len`) when every row has the same length.
    pub fn ids_matrix(&self) -> Option<(usize, usize, Vec<u32>)> {
        let len = self.encodings.first()?.len();
        if self.encodings.iter().any(|e| e.len() != len) {
            return None;
        }
        let flat = self
            .encodings
            .iter()
            .flat_map(|e| e.ids.iter().copied())
            .collect();
        Some((self.encodings.len(), len, flat))
    }
}

/// Encodes many sequences in parallel, then truncates and pads them as asked.
///
/// ```
/// use dnalm_tokenize::{encode_batch, BatchOptions, NucleotideTokenizer, Padding, Template};
/// let tok = NucleotideTokenizer::new(Template::Bert);
/// let opts = BatchOptions { max_length: Some(5), truncation: true, padding: Padding::Longest, ..Default::default() };
/// let batch = encode_batch(&tok, &[&b"ACGTACGT"[..], b"A"], &opts).unwrap();
/// assert_eq!(batch.encodings[0].len(), 5); // [CLS] A C G [SEP]
/// assert_eq!(batch.encodings[1].attention_mask, [1, 1, 1, 0, 0]);
/// ```
pub fn encode_batch<T: Tokenizer + ?Sized>(
    tokenizer: &T,
    sequences: &[&[u8]],
    options: &BatchOptions,
) -> Result<BatchEncoding> {
    let (prefix, suffix) = if options.add_special_tokens {
        tokenizer.template_tokens()
    } else {
        (None, None)
    };
    let n_special = prefix.is_some() as usize + suffix.is_some() as usize;
    if let Some(max) = options.max_length {
        if max <= n_special {
            return Err(TokenizeError::invalid(
                "max length",
                format!("{max} leaves no room beside {n_special} special tokens"),
            ));
        }
    }
    let mut encodings: Vec<Encoding> = sequences
        .par_iter()
        .enumerate()
        .map(|(i, seq)| {
            let (encoding, full) =
                encode_between(tokenizer, seq, prefix, suffix, options.max_length);
            match options.max_length {
                Some(max) if full > max && !options.truncation => Err(TokenizeError::invalid(
                    format!("sequence {}", i + 1),
                    format!("{full} tokens exceed max length {max} (enable truncation)"),
                )),
                _ => Ok(encoding),
            }
        })
        .collect::<Result<_>>()?;
    let target = match options.padding {
        Padding::None => None,
        Padding::Longest => encodings.iter().map(Encoding::len).max(),
        Padding::Fixed(n) => Some(n),
    };
    if let Some(target) = target {
        let pad = tokenizer.special_ids().pad.ok_or_else(|| {
            TokenizeError::invalid("padding", "the vocabulary has no [PAD] token")
        })?;
        for (i, e) in encodings.iter_mut().enumerate() {
            if e.len() > target {
                return Err(TokenizeError::invalid(
                    format!("sequence {}", i + 1),
                    format!(
                        "{} tokens exceed the padding length {target} (enable truncation)",
                        e.len()
                    ),
                ));
            }
            let extra = target - e.len();
            e.ids.extend(std::iter::repeat_n(pad, extra));
            e.offsets.extend(std::iter::repeat_n((0, 0), extra));
            e.special_tokens_mask.extend(std::iter::repeat_n(1, extra));
            e.attention_mask.extend(std::iter::repeat_n(0, extra));
        }
    }
    Ok(BatchEncoding { encodings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KmerTokenizer, Template};

    #[test]
    fn pads_truncates_and_masks() {
        let tok = KmerTokenizer::new(3, true, Template::Bert).unwrap();
        let seqs: [&[u8]; 3] = [b"ACGTACGT", b"ACGT", b"AC"];
        let opts = BatchOptions {
            max_length: Some(6),
            truncation: true,
            padding: Padding::Fixed(6),
            ..Default::default()
        };
        let b = encode_batch(&tok, &seqs, &opts).unwrap();
        let (rows, len, ids) = b.ids_matrix().unwrap();
        assert_eq!((rows, len, ids.len()), (3, 6, 18));
        assert_eq!(b.encodings[0].attention_mask, [1; 6]);
        assert_eq!(b.encodings[0].offsets[4], (3, 6));
        assert_eq!(b.encodings[1].attention_mask, [1, 1, 1, 1, 0, 0]);
        assert_eq!(b.encodings[2].ids[..3], [2, 3, 0]); // [CLS] [SEP] [PAD]
        assert_eq!(b.encodings[2].special_tokens_mask, [1; 6]);
    }

    #[test]
    fn overlong_without_truncation_is_an_error() {
        let tok = KmerTokenizer::new(3, true, Template::Bert).unwrap();
        let opts = BatchOptions {
            max_length: Some(4),
            ..Default::default()
        };
        let err = encode_batch(&tok, &[&b"ACGTACGT"[..]], &opts)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sequence 1: 8 tokens exceed max length 4"),
            "{err}"
        );
    }
}
