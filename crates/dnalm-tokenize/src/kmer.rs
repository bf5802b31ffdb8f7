//! k-mer tokenizers: overlapping (DNABERT) and non-overlapping (Nucleotide Transformer).
//!
//! Hand-written because this is the hot path of data preparation: bases become 2-bit codes
//! through a 256-entry table, a rolling code holds the last k bases, and one lookup in a
//! 4^k-entry table gives the id. No k-mer string is ever built.

use dnalm_seq::alphabet::BASES;

use crate::{
    io::TokenizerKind,
    vocab::{SpecialTokenIds, Template, Vocab, DEFAULT_SPECIALS},
    Result, TokenizeError, Tokenizer,
};

/// Largest supported k (the lookup table has 4^8 entries).
pub const MAX_K: usize = 8;
const TABLE_LEN: usize = 1 << (2 * MAX_K);
const TABLE_MASK: u64 = (TABLE_LEN - 1) as u64;

/// A k-mer tokenizer. See the [crate docs](crate) for the two modes.
#[derive(Debug, Clone)]
pub struct KmerTokenizer {
    k: usize,
    overlapping: bool,
    vocab: Vocab,
    specials: SpecialTokenIds,
    template: Template,
    unk: u32,
    /// 2-bit code of a k-mer -> id (`unk` when the vocabulary lacks it).
    table: Box<[u32; TABLE_LEN]>,
    /// Byte -> id of the single-base token (non-overlapping fallback).
    single: Box<[u32; 256]>,
}

/// 2-bit code of a base straight from its ASCII bits: `A=0, C=1, T=2, G=3` (`(b >> 1) & 3`).
/// Meaningful for `A C G T` only; validity is tracked separately. Deriving the code arithmetically
/// instead of through a table takes a dependent load out of the per-base loop.
#[inline(always)]
fn bits(b: u8) -> u64 {
    ((b >> 1) & 3) as u64
}

#[inline(always)]
fn is_acgt(b: u8) -> bool {
    (b == b'A') | (b == b'C') | (b == b'G') | (b == b'T')
}

/// Whether every byte is `A C G T` (no early exit, so it vectorises).
#[inline]
fn all_acgt(seq: &[u8]) -> bool {
    seq.iter().fold(0u8, |bad, &b| bad | !is_acgt(b) as u8) == 0
}

/// The table index of a k-mer string.
fn table_index(kmer: &[u8]) -> usize {
    kmer.iter().fold(0u64, |code, &b| (code << 2) | bits(b)) as usize
}

/// The k-mer whose lexicographic (`A<C<G<T`) rank is `code`.
fn kmer_string(code: usize, k: usize) -> String {
    (0..k)
        .map(|i| BASES[(code >> (2 * (k - 1 - i))) & 3] as char)
        .collect()
}

impl KmerTokenizer {
    /// A tokenizer with the default vocabulary: the special tokens, then (non-overlapping only)
    /// the single bases `A C G T N`, then all 4^k k-mers in lexicographic order.
    pub fn new(k: usize, overlapping: bool, template: Template) -> Result<Self> {
        check_k(k)?;
        let mut tokens: Vec<String> = DEFAULT_SPECIALS.iter().map(|s| s.to_string()).collect();
        if !overlapping {
            tokens.extend(["A", "C", "G", "T", "N"].map(String::from));
        }
        if overlapping || k > 1 {
            // (for k = 1 the single bases already are the 1-mers)
            tokens.extend((0..1usize << (2 * k)).map(|c| kmer_string(c, k)));
        }
        let vocab = Vocab::new(tokens)?;
        Self::with_vocab(k, overlapping, vocab, template)
    }

    /// A tokenizer over an existing vocabulary (DNABERT's `vocab.txt`, NT's vocabulary...).
    ///
    /// The vocabulary must hold an unknown token; k-mers it lacks are tokenised as unknown.
    /// Non-overlapping mode falls back to the single-base tokens, which it must hold for `ACGT`.
    pub fn with_vocab(
        k: usize,
        overlapping: bool,
        vocab: Vocab,
        template: Template,
    ) -> Result<Self> {
        check_k(k)?;
        let specials = SpecialTokenIds::find(&vocab);
        let unk = specials
            .unk
            .ok_or_else(|| TokenizeError::invalid("vocabulary", "has no [UNK]/<unk> token"))?;
        let mut table: Box<[u32; TABLE_LEN]> =
            vec![unk; TABLE_LEN]
                .into_boxed_slice()
                .try_into()
                .map_err(|_| TokenizeError::invalid("k", "table allocation"))?;
        let table_ref: &mut [u32; TABLE_LEN] = &mut table;
        let mut found = 0usize;
        for code in 0..1usize << (2 * k) {
            let kmer = kmer_string(code, k);
            if let Some(id) = vocab.id(&kmer) {
                table_ref[table_index(kmer.as_bytes())] = id;
                found += 1;
            }
        }
        if found == 0 {
            return Err(TokenizeError::invalid(
                "vocabulary",
                format!("holds no {k}-mer of A/C/G/T"),
            ));
        }
        let mut single = Box::new([unk; 256]);
        for b in *b"ACGTN" {
            if let Some(id) = vocab.id(&(b as char).to_string()) {
                single[b as usize] = id;
            } else if !overlapping && b != b'N' {
                return Err(TokenizeError::invalid(
                    "vocabulary",
                    format!(
                        "non-overlapping k-mers need the single-base token '{}'",
                        b as char
                    ),
                ));
            }
        }
        Ok(KmerTokenizer {
            k,
            overlapping,
            vocab,
            specials,
            template,
            unk,
            table,
            single,
        })
    }

    /// k.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Whether k-mers overlap (stride 1) or not (stride k).
    pub fn overlapping(&self) -> bool {
        self.overlapping
    }

    /// Overlapping k-mers: one token per start position `0..=L-k`.
    ///
    /// The rolling code is `code * 4 + bits(b)` (one `lea`, a 1-cycle dependency chain) masked
    /// only at lookup. Windows of pure `ACGT` (nearly all of a genome) skip validity tracking.
    fn overlapping_into(&self, seq: &[u8], ids: &mut Vec<u32>) {
        let k = self.k;
        if seq.len() < k {
            return;
        }
        let kmask = (1u64 << (2 * k)) - 1;
        let table: &[u32; TABLE_LEN] = &self.table;
        let prime = seq[..k - 1]
            .iter()
            .fold(0u64, |c, &b| c.wrapping_mul(4).wrapping_add(bits(b)));
        let tail = &seq[k - 1..];
        ids.reserve(tail.len());
        if all_acgt(seq) {
            let mut code = prime;
            ids.extend(tail.iter().map(|&b| {
                code = code.wrapping_mul(4).wrapping_add(bits(b));
                table[(code & kmask & TABLE_MASK) as usize]
            }));
        } else {
            // Position (1-based, in `seq`) of the last non-ACGT base seen; a k-mer ending at
            // position i is valid when i - last_bad >= k.
            let mut last_bad = seq[..k - 1]
                .iter()
                .rposition(|&b| !is_acgt(b))
                .map_or(0, |p| p + 1);
            let mut code = prime;
            let unk = self.unk;
            ids.extend(tail.iter().enumerate().map(|(j, &b)| {
                let i = j + k; // 1-based position of b
                code = code.wrapping_mul(4).wrapping_add(bits(b));
                last_bad = if is_acgt(b) { last_bad } else { i };
                let id = table[(code & kmask & TABLE_MASK) as usize];
                if i - last_bad >= k {
                    id
                } else {
                    unk
                }
            }));
        }
    }

    /// Non-overlapping k-mers, greedy from the left: a k-mer when the next k bases are all
    /// A/C/G/T, else single-base tokens up to and including the offending base (every k-mer
    /// starting before it would contain it); single bases for a tail shorter than k.
    /// This is the same as the regex `[ACGT]{k}|.` matched leftmost, which is what the saved
    /// `tokenizer.json` uses.
    fn non_overlapping_into(
        &self,
        seq: &[u8],
        ids: &mut Vec<u32>,
        mut offsets: Option<&mut Vec<(usize, usize)>>,
    ) {
        let k = self.k;
        let table: &[u32; TABLE_LEN] = &self.table;
        ids.reserve(seq.len() / k + k);
        if all_acgt(seq) {
            // Pure ACGT: whole k-mers, then single bases for the tail.
            let chunks = seq.chunks_exact(k);
            let tail = chunks.remainder();
            ids.extend(chunks.map(|c| table[(table_index(c) as u64 & TABLE_MASK) as usize]));
            ids.extend(tail.iter().map(|&b| self.single[b as usize]));
            if let Some(o) = offsets {
                let n = seq.len() / k;
                o.extend((0..n).map(|i| (i * k, i * k + k)));
                o.extend((n * k..seq.len()).map(|p| (p, p + 1)));
            }
            return;
        }
        let mut i = 0;
        while i < seq.len() {
            if i + k <= seq.len() {
                let mut code = 0u64;
                let mut bad = None;
                for (j, &b) in seq[i..i + k].iter().enumerate() {
                    if !is_acgt(b) {
                        bad = Some(j);
                        break;
                    }
                    code = (code << 2) | bits(b);
                }
                match bad {
                    None => {
                        ids.push(table[(code & TABLE_MASK) as usize]);
                        if let Some(o) = offsets.as_deref_mut() {
                            o.push((i, i + k));
                        }
                        i += k;
                    }
                    Some(j) => {
                        for (p, &b) in seq.iter().enumerate().take(i + j + 1).skip(i) {
                            ids.push(self.single[b as usize]);
                            if let Some(o) = offsets.as_deref_mut() {
                                o.push((p, p + 1));
                            }
                        }
                        i += j + 1;
                    }
                }
            } else {
                for (p, &b) in seq.iter().enumerate().skip(i) {
                    ids.push(self.single[b as usize]);
                    if let Some(o) = offsets.as_deref_mut() {
                        o.push((p, p + 1));
                    }
                }
                break;
            }
        }
    }
}

fn check_k(k: usize) -> Result<()> {
    if (1..=MAX_K).contains(&k) {
        Ok(())
    } else {
        Err(TokenizeError::invalid(
            "k",
            format!("{k} is not in 1..={MAX_K}"),
        ))
    }
}

impl Tokenizer for KmerTokenizer {
    fn tokenize_into(
        &self,
        seq: &[u8],
        ids: &mut Vec<u32>,
        offsets: Option<&mut Vec<(usize, usize)>>,
    ) {
        if self.overlapping {
            self.overlapping_into(seq, ids);
            if let Some(o) = offsets {
                let k = self.k;
                o.extend((0..(seq.len() + 1).saturating_sub(k)).map(|i| (i, i + k)));
            }
        } else {
            self.non_overlapping_into(seq, ids, offsets);
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
        TokenizerKind::Kmer {
            k: self.k,
            overlapping: self.overlapping,
        }
    }

    /// Overlapping k-mers overlap, so bases are rebuilt from the first k-mer plus the last base
    /// of each following one.
    fn decode(&self, ids: &[u32]) -> String {
        if !self.overlapping {
            return default_decode(self, ids);
        }
        let mut out = String::new();
        let mut first = true;
        for &id in ids {
            if self.specials.contains(id) && id != self.unk {
                continue;
            }
            let token = if id == self.unk {
                None
            } else {
                self.vocab.token(id)
            };
            let token = token.map_or_else(|| "N".repeat(self.k), str::to_string);
            if first {
                out.push_str(&token);
                first = false;
            } else if let Some(c) = token.chars().last() {
                out.push(c);
            }
        }
        out
    }
}

fn default_decode(t: &KmerTokenizer, ids: &[u32]) -> String {
    ids.iter()
        .filter(|&&id| !t.specials.contains(id) || id == t.unk)
        .map(|&id| {
            if id == t.unk {
                "N"
            } else {
                t.vocab.token(id).unwrap_or("N")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(t: &KmerTokenizer, seq: &[u8]) -> Vec<String> {
        let mut ids = Vec::new();
        t.tokenize_into(seq, &mut ids, None);
        ids.iter()
            .map(|&i| t.vocab().token(i).unwrap().to_string())
            .collect()
    }

    /// The obvious string-slicing implementation, as a reference.
    fn naive_overlapping(seq: &[u8], k: usize) -> Vec<String> {
        if seq.len() < k {
            return vec![];
        }
        (0..=seq.len() - k)
            .map(|i| {
                let s = &seq[i..i + k];
                if s.iter().all(|b| b"ACGT".contains(b)) {
                    String::from_utf8(s.to_vec()).unwrap()
                } else {
                    "[UNK]".into()
                }
            })
            .collect()
    }

    fn naive_non_overlapping(seq: &[u8], k: usize) -> (Vec<String>, Vec<(usize, usize)>) {
        let (mut out, mut offs, mut i) = (vec![], vec![], 0);
        while i < seq.len() {
            if i + k <= seq.len() && seq[i..i + k].iter().all(|b| b"ACGT".contains(b)) {
                out.push(String::from_utf8(seq[i..i + k].to_vec()).unwrap());
                offs.push((i, i + k));
                i += k;
            } else {
                out.push((seq[i] as char).to_string());
                offs.push((i, i + 1));
                i += 1;
            }
        }
        (out, offs)
    }

    fn lcg_seq(n: usize, seed: u64, n_rate: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if (x >> 33) % 100 < n_rate {
                    b'N'
                } else {
                    b"ACGT"[((x >> 40) & 3) as usize]
                }
            })
            .collect()
    }

    #[test]
    fn table_cases() {
        let t3 = KmerTokenizer::new(3, true, Template::Bert).unwrap();
        assert_eq!(tokens(&t3, b"ACGTA"), ["ACG", "CGT", "GTA"]);
        assert_eq!(tokens(&t3, b"AC"), Vec::<String>::new());
        assert_eq!(tokens(&t3, b"ACNGTA"), ["[UNK]", "[UNK]", "[UNK]", "GTA"]);
        let t6 = KmerTokenizer::new(6, false, Template::Bert).unwrap();
        assert_eq!(tokens(&t6, b"ACGTACGTAC"), ["ACGTAC", "G", "T", "A", "C"]);
        assert_eq!(
            tokens(&t6, b"ACGNACGTACGG"),
            ["A", "C", "G", "N", "ACGTAC", "G", "G"]
        );
    }

    #[test]
    fn kernels_match_naive_reference() {
        for k in 1..=MAX_K {
            let over = KmerTokenizer::new(k, true, Template::None).unwrap();
            let non = KmerTokenizer::new(k, false, Template::None).unwrap();
            for (seed, rate) in [(1, 0), (2, 3), (3, 30)] {
                let seq = lcg_seq(500, seed, rate);
                assert_eq!(tokens(&over, &seq), naive_overlapping(&seq, k), "k={k}");
                let (want, want_offs) = naive_non_overlapping(&seq, k);
                let enc = non.encode(&seq);
                let got: Vec<_> = enc
                    .ids
                    .iter()
                    .map(|&i| non.vocab().token(i).unwrap().to_string())
                    .collect();
                assert_eq!(got, want, "k={k}");
                assert_eq!(enc.offsets, want_offs);
            }
        }
    }

    #[test]
    fn offsets_and_specials() {
        let t = KmerTokenizer::new(4, true, Template::Bert).unwrap();
        let e = t.encode(b"ACGTAC");
        assert_eq!(e.offsets, [(0, 0), (0, 4), (1, 5), (2, 6), (0, 0)]);
        assert_eq!(e.special_tokens_mask, [1, 0, 0, 0, 1]);
        assert_eq!(t.decode(&e.ids), "ACGTAC");
        assert_eq!(t.vocab().len(), 7 + 256);
    }

    #[test]
    fn bad_k_and_vocab() {
        assert!(KmerTokenizer::new(0, true, Template::Bert).is_err());
        assert!(KmerTokenizer::new(9, true, Template::Bert).is_err());
        let v = Vocab::new(vec!["[UNK]".into(), "AAA".into()]).unwrap();
        assert!(KmerTokenizer::with_vocab(3, true, v.clone(), Template::None).is_ok());
        assert!(KmerTokenizer::with_vocab(3, false, v, Template::None).is_err());
    }
}
