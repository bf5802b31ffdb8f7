//! An exact byte-pair encoder for DNA: the ids and offsets of Hugging Face `tokenizers`' BPE
//! model, faster on genomic input.
//!
//! Why hand-written: through `tokenizers`, dnalm encoded DNA at 5.1 MB/s on one thread, because a
//! genome window is one pre-tokenizer "word" of a thousand characters that goes through its
//! generic string pipeline (normalised-string alignment, a heap of merges). This module runs the
//! same merge procedure on bytes: 13-14 MB/s measured (`scripts/bench.sh`; the README has the
//! table). Where the rest goes (perf, 1 kb windows of E. coli): 0.8 merges, 1.6 queue entries
//! and about four pair lookups per base, with unpredictable branches, spread evenly; a compact
//! open-addressing pair table, entries that carry their pair, and a dense table for each
//! window's first merges were each measured and gave nothing, so they are not here.
//!
//! # Exactness
//! `tokenizers` merges, within a word, the adjacent pair with the lowest merge rank first, and
//! among equal ranks the leftmost; an entry whose pair has since changed is skipped. A merge of
//! rank `r` only creates pairs whose merges have ranks above `r` when every merge ranks after the
//! merges that created its two parts (true of every trained vocabulary: a part must exist
//! before a merge can use it). Checked when the encoder is built; then the ranks can be visited
//! in increasing order with a bucket per rank (and a bitmap to find the next non-empty one),
//! each bucket's positions left to right, which is exactly the heap's order without the heap.
//!
//! The encoder is only used for what it replicates: a BPE model without dropout, byte fallback,
//! subword prefix or word suffix; no pre-tokenizer, or one that keeps a run of ASCII letters in
//! one word (`Whitespace`, `WhitespaceSplit`); added tokens that cannot occur inside letters;
//! and input of ASCII letters only. Anything else goes through `tokenizers` itself.

use rustc_hash::FxHashMap;
use serde_json::Value;

const NONE: u32 = u32::MAX;

/// The merge tables of one BPE tokenizer.
#[derive(Debug, Clone)]
pub(crate) struct MergeEncoder {
    /// Byte -> id of the one-character token (`NONE` when the vocabulary lacks it).
    chars: Box<[u32; 256]>,
    unk: Option<u32>,
    fuse_unk: bool,
    /// With `ignore_merges`, a word that is itself a token is that token.
    whole_words: Option<FxHashMap<Box<[u8]>, u32>>,
    /// `(left << 32) | right` -> (rank, merged id).
    pairs: FxHashMap<u64, (u32, u32)>,
    ranks: usize,
}

#[derive(Debug, Clone, Copy)]
struct Symbol {
    id: u32,
    prev: u32,
    next: u32,
    start: u32,
    /// Bytes covered; 0 once merged into its left neighbour.
    len: u32,
}

impl MergeEncoder {
    /// The encoder for a `tokenizers` tokenizer, or `None` when it uses something this encoder
    /// does not replicate (see the module docs).
    pub(crate) fn from_hf(hf: &tokenizers::Tokenizer) -> Option<Self> {
        let pre = serde_json::to_value(hf.get_pre_tokenizer()).ok()?;
        let keeps_letters_together = match pre.get("type").and_then(Value::as_str) {
            None => pre.is_null(),
            Some(t) => matches!(t, "Whitespace" | "WhitespaceSplit"),
        };
        if !keeps_letters_together {
            return None;
        }
        let added = hf.get_added_tokens_decoder();
        if added
            .values()
            .any(|t| !t.content.is_empty() && t.content.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            return None;
        }
        let model = serde_json::to_value(hf.get_model()).ok()?;
        if model.get("type").and_then(Value::as_str) != Some("BPE") {
            return None;
        }
        let unset = |key: &str| model.get(key).is_none_or(Value::is_null);
        let off = |key: &str| model.get(key).and_then(Value::as_bool) != Some(true);
        let no_dropout =
            unset("dropout") || model.get("dropout").and_then(Value::as_f64) == Some(0.0);
        if !(no_dropout
            && unset("continuing_subword_prefix")
            && unset("end_of_word_suffix")
            && off("byte_fallback"))
        {
            return None;
        }
        let vocab: FxHashMap<String, u32> = model
            .get("vocab")?
            .as_object()?
            .iter()
            .map(|(k, v)| Some((k.clone(), u32::try_from(v.as_u64()?).ok()?)))
            .collect::<Option<_>>()?;
        let unk = match model.get("unk_token").and_then(Value::as_str) {
            // `tokenizers` fails on an unknown character when its unk token is not in the
            // vocabulary; leave that to it.
            Some(t) => Some(*vocab.get(t)?),
            None => None,
        };
        let mut chars = Box::new([NONE; 256]);
        for b in 0..=255u8 {
            if b.is_ascii_alphabetic() {
                if let Some(&id) = vocab.get((b as char).to_string().as_str()) {
                    chars[b as usize] = id;
                }
            }
        }
        let merges = model.get("merges")?.as_array()?;
        let mut pairs = FxHashMap::default();
        for (rank, merge) in merges.iter().enumerate() {
            let (a, b) = match merge {
                Value::String(s) => s.split_once(' ')?,
                Value::Array(parts) => (parts.first()?.as_str()?, parts.get(1)?.as_str()?),
                _ => return None,
            };
            let (left, right) = (*vocab.get(a)?, *vocab.get(b)?);
            let merged = *vocab.get(format!("{a}{b}").as_str())?;
            let rank = u32::try_from(rank).ok()?;
            // `tokenizers` keeps the last rank given for a pair.
            pairs.insert((u64::from(left) << 32) | u64::from(right), (rank, merged));
        }
        // Exactness condition: every merge ranks after every merge that makes one of its parts
        // (so the highest rank at which each token can be made counts: a merge at rank r then
        // only ever creates pairs ranked above r).
        let mut made_at: FxHashMap<u32, u32> = FxHashMap::default();
        for &(rank, merged) in pairs.values() {
            made_at
                .entry(merged)
                .and_modify(|r| *r = (*r).max(rank))
                .or_insert(rank);
        }
        for (&key, &(rank, _)) in &pairs {
            let parts = [(key >> 32) as u32, key as u32];
            if parts
                .iter()
                .any(|part| made_at.get(part).is_some_and(|&r| r >= rank))
            {
                return None;
            }
        }
        let whole_words =
            (model.get("ignore_merges").and_then(Value::as_bool) == Some(true)).then(|| {
                vocab
                    .iter()
                    .map(|(k, &v)| (k.as_bytes().to_vec().into_boxed_slice(), v))
                    .collect()
            });
        Some(MergeEncoder {
            chars,
            unk,
            fuse_unk: model.get("fuse_unk").and_then(Value::as_bool) == Some(true),
            whole_words,
            pairs,
            ranks: merges.len(),
        })
    }

    /// Appends the ids (and base spans) of `seq`, or returns `false` (appending nothing) when
    /// the input is not for this encoder (a byte other than an ASCII letter).
    pub(crate) fn encode(
        &self,
        seq: &[u8],
        ids: &mut Vec<u32>,
        offsets: Option<&mut Vec<(usize, usize)>>,
    ) -> bool {
        if !seq.iter().all(u8::is_ascii_alphabetic) || u32::try_from(seq.len()).is_err() {
            return false;
        }
        if seq.is_empty() {
            return true;
        }
        if let Some(id) = self.whole_words.as_ref().and_then(|w| w.get(seq)) {
            ids.push(*id);
            if let Some(o) = offsets {
                o.push((0, seq.len()));
            }
            return true;
        }
        let mut symbols = self.initial_symbols(seq);
        self.merge_all(&mut symbols);
        let mut i = if symbols.is_empty() { NONE } else { 0 };
        let mut out_offsets = offsets;
        while i != NONE {
            let s = symbols[i as usize];
            ids.push(s.id);
            if let Some(o) = out_offsets.as_deref_mut() {
                o.push((s.start as usize, (s.start + s.len) as usize));
            }
            i = s.next;
        }
        true
    }

    /// One symbol per character; unknown characters become the unk token (runs of them one
    /// token with `fuse_unk`), or vanish without one, as in `tokenizers`.
    fn initial_symbols(&self, seq: &[u8]) -> Vec<Symbol> {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(seq.len());
        let push = |symbols: &mut Vec<Symbol>, id: u32, start: usize, len: u32| {
            let index = symbols.len() as u32;
            symbols.push(Symbol {
                id,
                prev: index.wrapping_sub(1),
                next: index + 1,
                start: start as u32,
                len,
            });
        };
        let mut pending_unk: Option<(usize, u32)> = None;
        for (i, &b) in seq.iter().enumerate() {
            let id = self.chars[b as usize];
            if id != NONE {
                if let Some((start, len)) = pending_unk.take() {
                    push(&mut symbols, self.unk.unwrap_or(NONE), start, len);
                }
                push(&mut symbols, id, i, 1);
            } else if self.unk.is_some() {
                pending_unk = match pending_unk {
                    Some((start, len)) if self.fuse_unk => Some((start, len + 1)),
                    Some((start, len)) => {
                        push(&mut symbols, self.unk.unwrap_or(NONE), start, len);
                        Some((i, 1))
                    }
                    None => Some((i, 1)),
                };
            }
        }
        if let Some((start, len)) = pending_unk {
            push(&mut symbols, self.unk.unwrap_or(NONE), start, len);
        }
        if let Some(first) = symbols.first_mut() {
            first.prev = NONE;
        }
        if let Some(last) = symbols.last_mut() {
            last.next = NONE;
        }
        symbols
    }

    /// The merge of a pair: (rank, merged id).
    fn pair(&self, left: u32, right: u32) -> Option<(u32, u32)> {
        self.pairs
            .get(&((u64::from(left) << 32) | u64::from(right)))
            .copied()
    }

    /// Applies merges in `tokenizers`' order: lowest rank first, leftmost first.
    fn merge_all(&self, symbols: &mut [Symbol]) {
        let mut queue = RankQueue::new(self.ranks);
        for (pos, w) in symbols.windows(2).enumerate() {
            let found = self.pair(w[0].id, w[1].id);
            if let Some((rank, _)) = found {
                queue.push(rank, pos as u32);
            }
        }
        let mut positions = Vec::new();
        while let Some(rank) = queue.pop_lowest(&mut positions) {
            positions.sort_unstable();
            for &pos in &positions {
                let p = pos as usize;
                let current = symbols[p];
                if current.len == 0 || current.next == NONE {
                    continue;
                }
                let right = symbols[current.next as usize];
                // An expired entry: the pair at `pos` changed since it was queued.
                let Some((r, merged)) = self.pair(current.id, right.id) else {
                    continue;
                };
                if r != rank {
                    continue;
                }
                symbols[p].id = merged;
                symbols[p].len += right.len;
                symbols[p].next = right.next;
                symbols[current.next as usize].len = 0;
                if right.next != NONE {
                    symbols[right.next as usize].prev = pos;
                }
                if current.prev != NONE {
                    let left = symbols[current.prev as usize].id;
                    if let Some((r, _)) = self.pair(left, merged) {
                        queue.push(r, current.prev);
                    }
                }
                if right.next != NONE {
                    let next = symbols[right.next as usize].id;
                    if let Some((r, _)) = self.pair(merged, next) {
                        queue.push(r, pos);
                    }
                }
            }
        }
    }
}

/// Positions waiting to be merged, by merge rank: one list per rank (linked through arrays, so
/// a call allocates three vectors, not one per rank) and a two-level bitmap of the non-empty
/// ranks. Ranks only grow while merging (see the module docs), so popping the lowest rank
/// visits them in order.
struct RankQueue {
    head: Vec<u32>,
    /// (position, next entry of the same rank).
    entries: Vec<(u32, u32)>,
    words: Vec<u64>,
    summary: Vec<u64>,
}

impl RankQueue {
    fn new(ranks: usize) -> Self {
        let words = ranks.div_ceil(64).max(1);
        RankQueue {
            head: vec![NONE; ranks.max(1)],
            entries: Vec::new(),
            words: vec![0; words],
            summary: vec![0; words.div_ceil(64)],
        }
    }

    fn push(&mut self, rank: u32, pos: u32) {
        let r = rank as usize;
        let index = self.entries.len() as u32;
        self.entries.push((pos, self.head[r]));
        self.head[r] = index;
        self.words[r / 64] |= 1 << (r % 64);
        self.summary[r / 4096] |= 1 << ((r / 64) % 64);
    }

    /// The lowest non-empty rank, its positions moved into `out`.
    fn pop_lowest(&mut self, out: &mut Vec<u32>) -> Option<u32> {
        let s = self.summary.iter().position(|&w| w != 0)?;
        let w = s * 64 + self.summary[s].trailing_zeros() as usize;
        let r = w * 64 + self.words[w].trailing_zeros() as usize;
        self.words[w] &= !(1 << (r % 64));
        if self.words[w] == 0 {
            self.summary[s] &= !(1 << (w % 64));
        }
        out.clear();
        let mut e = std::mem::replace(&mut self.head[r], NONE);
        while e != NONE {
            let (pos, next) = self.entries[e as usize];
            out.push(pos);
            e = next;
        }
        Some(r as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer(merges: &[(&str, &str)], extra: &str) -> tokenizers::Tokenizer {
        let mut vocab = serde_json::Map::new();
        for (i, t) in ["[UNK]", "A", "C", "G", "T"].iter().enumerate() {
            vocab.insert((*t).into(), i.into());
        }
        for (a, b) in merges {
            let n = vocab.len();
            vocab.entry(format!("{a}{b}")).or_insert(n.into());
        }
        let merges: Vec<String> = merges.iter().map(|(a, b)| format!("{a} {b}")).collect();
        let json = format!(
            r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
               "normalizer": null, "pre_tokenizer": {{"type": "Whitespace"}},
               "post_processor": null, "decoder": null,
               "model": {{"type": "BPE", "dropout": null, "unk_token": "[UNK]",
                          "continuing_subword_prefix": null, "end_of_word_suffix": null,
                          "byte_fallback": false, {extra}
                          "vocab": {}, "merges": {}}}}}"#,
            serde_json::Value::Object(vocab),
            serde_json::to_string(&merges).unwrap()
        );
        json.parse().unwrap()
    }

    fn both(tok: &tokenizers::Tokenizer, seq: &str) -> (Vec<u32>, Vec<(usize, usize)>) {
        let enc = MergeEncoder::from_hf(tok).expect("eligible");
        let (mut ids, mut offsets) = (Vec::new(), Vec::new());
        assert!(enc.encode(seq.as_bytes(), &mut ids, Some(&mut offsets)));
        let want = tok.encode(seq, false).unwrap();
        assert_eq!(ids, want.get_ids(), "{seq}");
        assert_eq!(offsets, want.get_offsets(), "{seq}");
        (ids, offsets)
    }

    #[test]
    fn equal_ranks_merge_leftmost_first_and_overlaps_resolve_as_tokenizers_does() {
        let tok = tokenizer(
            &[
                ("A", "A"),
                ("AA", "A"),
                ("C", "G"),
                ("AA", "CG"),
                ("T", "T"),
            ],
            r#""fuse_unk": false,"#,
        );
        for seq in [
            "AAA",
            "AAAA",
            "AAAAA",
            "AACG",
            "AAACG",
            "CGAA",
            "NNAANN",
            "TTTTT",
            "A",
            "",
            "N",
            "ACGTNACGT",
            "AANAA",
        ] {
            both(&tok, seq);
        }
    }

    #[test]
    fn fused_unknowns_and_ignore_merges_follow_the_options() {
        let tok = tokenizer(
            &[("A", "C"), ("AC", "G")],
            r#""fuse_unk": true, "ignore_merges": true,"#,
        );
        for seq in ["NNNACGNN", "ACG", "XYZ", "ACGACG"] {
            both(&tok, seq);
        }
    }

    #[test]
    fn random_dna_matches_tokenizers() {
        // A vocabulary with merges of merges, learnt by tokenizers' own trainer.
        let mut x = 11u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as usize
        };
        let genome: String = (0..20_000)
            .map(|_| ['A', 'C', 'G', 'T', 'A', 'T'][next() % 6])
            .collect();
        let opts = crate::BpeTrainOptions {
            vocab_size: 300,
            chunk_length: 200,
            ..Default::default()
        };
        let trained =
            crate::BpeTokenizer::train([genome.into_bytes()], &opts, crate::Template::None)
                .unwrap();
        let hf = trained.hf().clone();
        let mut fast = hf.clone();
        fast.with_normalizer(None::<tokenizers::NormalizerWrapper>);
        for len in [1, 2, 7, 64, 999, 3000] {
            let seq: String = (0..len)
                .map(|_| ['A', 'C', 'G', 'T', 'N'][next() % 5])
                .collect();
            both(&fast, &seq);
        }
    }

    #[test]
    fn what_is_not_replicated_is_left_to_tokenizers() {
        let tok = tokenizer(&[("A", "C")], r#""fuse_unk": false, "dropout": 0.5,"#);
        assert!(MergeEncoder::from_hf(&tok).is_none());
        let tok = tokenizer(&[("A", "C")], r#""fuse_unk": false,"#);
        let enc = MergeEncoder::from_hf(&tok).unwrap();
        assert!(!enc.encode(b"AC GT", &mut Vec::new(), None));
        // A merge that uses a part made later is out of the bucket order's reach.
        let tok = tokenizer(&[("AC", "G"), ("A", "C")], r#""fuse_unk": false,"#);
        assert!(MergeEncoder::from_hf(&tok).is_none());
        // So is one whose part can also be made later by another pair (ACG from AC+G at rank 1
        // and from A+CG at rank 4; ACG+T is rank 2): a merge at rank 4 would create a pair of
        // rank 2 while rank 4 is being processed.
        let tok = tokenizer(
            &[
                ("A", "C"),
                ("AC", "G"),
                ("ACG", "T"),
                ("C", "G"),
                ("A", "CG"),
            ],
            r#""fuse_unk": false,"#,
        );
        assert!(MergeEncoder::from_hf(&tok).is_none());
    }
}
