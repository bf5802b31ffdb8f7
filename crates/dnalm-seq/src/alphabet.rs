//! The alphabet policy, applied to every sequence that enters dnalm.
//!
//! | input | becomes |
//! |---|---|
//! | `A C G T N` | itself |
//! | `a c g t n` | uppercase, and the base is marked soft-masked |
//! | `U` / `u` (RNA) | `T` (soft-masked if lowercase) |
//! | IUPAC ambiguity codes `R Y S W K M B D H V` (either case) | `N` (soft-masked if lowercase) |
//! | `\n`, `\r` inside FASTA sequence lines | dropped |
//! | anything else (`-`, `*`, `.`, digits, spaces, ...) | an error naming file, record, position and character |
//!
//! The normalised alphabet is therefore exactly `ACGTN`, and [`SoftMask`](crate::SoftMask) keeps
//! which bases were lowercase. The policy is one 256-entry lookup table ([`normalize_into`]), so
//! applying it costs about one table load per base.

/// Table value meaning "not allowed".
const INVALID: u8 = 0;
/// Table value meaning "skip silently" (line breaks inside FASTA sequence lines).
const SKIP: u8 = 1;
/// Bit set in a table value when the input was lowercase (soft-masked).
const LOWER: u8 = 0x80;

const fn build_table() -> [u8; 256] {
    let mut t = [INVALID; 256];
    t[b'\n' as usize] = SKIP;
    t[b'\r' as usize] = SKIP;
    let upper = b"ACGTN";
    let mut i = 0;
    while i < upper.len() {
        t[upper[i] as usize] = upper[i];
        t[upper[i].to_ascii_lowercase() as usize] = upper[i] | LOWER;
        i += 1;
    }
    t[b'U' as usize] = b'T';
    t[b'u' as usize] = b'T' | LOWER;
    let iupac = b"RYSWKMBDHV";
    let mut j = 0;
    while j < iupac.len() {
        t[iupac[j] as usize] = b'N';
        t[iupac[j].to_ascii_lowercase() as usize] = b'N' | LOWER;
        j += 1;
    }
    t
}

static TABLE: [u8; 256] = build_table();

/// 2-bit codes: `A=0, C=1, G=2, T=3`; every other byte maps to 4.
pub static CODE2: [u8; 256] = {
    let mut t = [4u8; 256];
    t[b'A' as usize] = 0;
    t[b'C' as usize] = 1;
    t[b'G' as usize] = 2;
    t[b'T' as usize] = 3;
    t
};

/// The bases in 2-bit code order.
pub const BASES: [u8; 4] = *b"ACGT";

/// A byte that the alphabet policy rejects, with its 0-based offset in the normalised output
/// (that is, counting bases, not line breaks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidBase {
    /// 0-based position among the bases read so far.
    pub offset: u64,
    /// The rejected byte.
    pub byte: u8,
}

/// Normalises raw sequence bytes and appends them to `seq`, recording lowercase runs in `mask`.
///
/// `raw` may contain line breaks (they are skipped). Positions in `mask` count from the start of
/// `seq` (so several calls can append to one record).
///
/// ```
/// use dnalm_seq::{alphabet::normalize_into, SoftMask};
/// let (mut seq, mut mask) = (Vec::new(), SoftMask::default());
/// normalize_into(b"ACgu\nRyN", &mut seq, &mut mask).unwrap();
/// assert_eq!(seq, b"ACGTNNN");
/// assert_eq!(mask.runs(), &[(2, 4), (5, 6)]);
/// ```
pub fn normalize_into(
    raw: &[u8],
    seq: &mut Vec<u8>,
    mask: &mut SoftMask,
) -> Result<(), InvalidBase> {
    seq.reserve(raw.len());
    let mut run_start: Option<usize> = mask.open_run_at(seq.len());
    // Line by line: a line of plain `ACGTN` (nearly every line of a real genome) is checked with
    // a branch-free loop the compiler vectorises and copied whole; only lines with lowercase,
    // IUPAC codes, `\r` or invalid bytes take the per-byte table path. This is what makes
    // parsing several hundred MB/s instead of one table lookup and branch per byte.
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', raw).chain(std::iter::once(raw.len())) {
        let line = &raw[start..end];
        if run_start.is_none() && is_plain_acgtn(line) {
            seq.extend_from_slice(line);
        } else {
            normalize_slow(line, seq, mask, &mut run_start)?;
        }
        start = end + 1;
    }
    if let Some(start) = run_start {
        mask.push_run(start, seq.len());
    }
    Ok(())
}

/// Whether every byte is one of `A C G T N` (no early exit, so it vectorises).
#[inline]
fn is_plain_acgtn(line: &[u8]) -> bool {
    line.iter().fold(0u8, |bad, &b| {
        bad | ((b != b'A') & (b != b'C') & (b != b'G') & (b != b'T') & (b != b'N')) as u8
    }) == 0
}

/// The per-byte path of [`normalize_into`]: table lookup, soft-mask runs, errors.
fn normalize_slow(
    raw: &[u8],
    seq: &mut Vec<u8>,
    mask: &mut SoftMask,
    run_start: &mut Option<usize>,
) -> Result<(), InvalidBase> {
    for &byte in raw {
        let v = TABLE[byte as usize];
        if v > SKIP {
            let lower = v & LOWER != 0;
            match (lower, *run_start) {
                (true, None) => *run_start = Some(seq.len()),
                (false, Some(start)) => {
                    mask.push_run(start, seq.len());
                    *run_start = None;
                }
                _ => {}
            }
            seq.push(v & !LOWER);
        } else if v == INVALID {
            if let Some(start) = run_start.take() {
                mask.push_run(start, seq.len());
            }
            return Err(InvalidBase {
                offset: seq.len() as u64,
                byte,
            });
        }
    }
    Ok(())
}

/// Normalises a whole sequence in place-free style: returns the normalised bases and their mask.
///
/// ```
/// let (seq, mask) = dnalm_seq::alphabet::normalize(b"acgT").unwrap();
/// assert_eq!(seq, b"ACGT");
/// assert_eq!(mask.masked_bases(), 3);
/// ```
pub fn normalize(raw: &[u8]) -> Result<(Vec<u8>, SoftMask), InvalidBase> {
    let mut seq = Vec::with_capacity(raw.len());
    let mut mask = SoftMask::default();
    normalize_into(raw, &mut seq, &mut mask)?;
    Ok((seq, mask))
}

/// Complement of one normalised base (`N` stays `N`).
#[inline]
pub fn complement(base: u8) -> u8 {
    match base {
        b'A' => b'T',
        b'C' => b'G',
        b'G' => b'C',
        b'T' => b'A',
        other => other,
    }
}

/// Reverse complement of a normalised sequence.
///
/// ```
/// assert_eq!(dnalm_seq::alphabet::reverse_complement(b"AACGN"), b"NCGTT");
/// ```
pub fn reverse_complement(seq: &[u8]) -> Vec<u8> {
    seq.iter().rev().map(|&b| complement(b)).collect()
}

/// GC, AT and N counts of a normalised sequence.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BaseCounts {
    /// Number of `A`/`T` bases.
    pub at: u64,
    /// Number of `G`/`C` bases.
    pub gc: u64,
    /// Number of `N` bases.
    pub n: u64,
}

impl BaseCounts {
    /// Counts the bases of a normalised sequence.
    pub fn of(seq: &[u8]) -> Self {
        let mut counts = [0u64; 256];
        for &b in seq {
            counts[b as usize] += 1;
        }
        BaseCounts {
            at: counts[b'A' as usize] + counts[b'T' as usize],
            gc: counts[b'G' as usize] + counts[b'C' as usize],
            n: counts[b'N' as usize],
        }
    }

    /// Adds another count.
    pub fn add(&mut self, other: BaseCounts) {
        self.at += other.at;
        self.gc += other.gc;
        self.n += other.n;
    }

    /// GC fraction among unambiguous bases (0 when there are none).
    pub fn gc_fraction(&self) -> f64 {
        let acgt = self.at + self.gc;
        if acgt == 0 {
            0.0
        } else {
            self.gc as f64 / acgt as f64
        }
    }
}

/// The soft-masked (lowercase in the input) bases of a sequence, as sorted, disjoint,
/// half-open `(start, end)` runs of 0-based positions.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SoftMask {
    runs: Vec<(usize, usize)>,
}

impl SoftMask {
    /// The masked runs, sorted and disjoint.
    pub fn runs(&self) -> &[(usize, usize)] {
        &self.runs
    }

    /// Removes every run.
    pub fn clear(&mut self) {
        self.runs.clear();
    }

    /// Number of masked bases.
    pub fn masked_bases(&self) -> u64 {
        self.runs.iter().map(|(s, e)| (e - s) as u64).sum()
    }

    /// Whether 0-based position `pos` is masked.
    pub fn contains(&self, pos: usize) -> bool {
        let i = self.runs.partition_point(|&(_, end)| end <= pos);
        self.runs.get(i).is_some_and(|&(start, _)| start <= pos)
    }

    /// The mask as one boolean per base, for `len` bases.
    pub fn to_bools(&self, len: usize) -> Vec<bool> {
        let mut out = vec![false; len];
        for &(s, e) in &self.runs {
            out[s.min(len)..e.min(len)].fill(true);
        }
        out
    }

    /// The mask restricted to `[start, end)` and shifted so that `start` becomes 0.
    pub fn slice(&self, start: usize, end: usize) -> SoftMask {
        let runs = self
            .runs
            .iter()
            .filter(|&&(s, e)| e > start && s < end)
            .map(|&(s, e)| (s.max(start) - start, e.min(end) - start))
            .collect();
        SoftMask { runs }
    }

    /// Appends a run `[start, end)`, merging it with the last run when they touch.
    fn push_run(&mut self, start: usize, end: usize) {
        if start >= end {
            return;
        }
        match self.runs.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => self.runs.push((start, end)),
        }
    }

    /// If the last run ends exactly at `pos`, reopens it (so appending continues it).
    fn open_run_at(&mut self, pos: usize) -> Option<usize> {
        match self.runs.last() {
            Some(&(start, end)) if end == pos && pos > 0 => {
                self.runs.pop();
                Some(start)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_table() {
        type Case<'a> = (&'a [u8], &'a [u8], &'a [(usize, usize)]);
        let cases: &[Case] = &[
            (b"ACGTN", b"ACGTN", &[]),
            (b"acgtn", b"ACGTN", &[(0, 5)]),
            (b"UuT", b"TTT", &[(1, 2)]),
            (b"RYSWKMBDHV", b"NNNNNNNNNN", &[]),
            (b"ryswkmbdhv", b"NNNNNNNNNN", &[(0, 10)]),
            (b"AC\r\nGT\n", b"ACGT", &[]),
            (b"aC\ncA", b"ACCA", &[(0, 1), (2, 3)]),
            (b"ac\ngt", b"ACGT", &[(0, 4)]),
        ];
        for (raw, seq, runs) in cases {
            let (s, m) = normalize(raw).unwrap();
            assert_eq!(&s, seq, "{:?}", String::from_utf8_lossy(raw));
            assert_eq!(m.runs(), *runs, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn rejects_other_characters_with_position() {
        for (raw, offset, byte) in [
            (&b"ACG-T"[..], 3, b'-'),
            (b"AC\nGT*", 4, b'*'),
            (b"A C", 1, b' '),
            (b"AX", 1, b'X'),
            (b"N1", 1, b'1'),
        ] {
            let err = normalize(raw).unwrap_err();
            assert_eq!(err, InvalidBase { offset, byte });
        }
    }

    #[test]
    fn appending_continues_a_mask_run() {
        let (mut seq, mut mask) = (Vec::new(), SoftMask::default());
        normalize_into(b"Aac", &mut seq, &mut mask).unwrap();
        normalize_into(b"gtA", &mut seq, &mut mask).unwrap();
        assert_eq!(mask.runs(), &[(1, 5)]);
    }

    #[test]
    fn mask_queries() {
        let (_, m) = normalize(b"AAccGGtt").unwrap();
        assert!(!m.contains(1));
        assert!(m.contains(2) && m.contains(3) && m.contains(7));
        assert!(!m.contains(4) && !m.contains(8));
        assert_eq!(m.masked_bases(), 4);
        assert_eq!(m.slice(3, 7).runs(), &[(0, 1), (3, 4)]);
        assert_eq!(
            m.to_bools(8),
            vec![false, false, true, true, false, false, true, true]
        );
    }

    #[test]
    fn reverse_complement_is_an_involution() {
        let s = b"ACGTNNACGGT";
        assert_eq!(reverse_complement(&reverse_complement(s)), s);
        assert_eq!(reverse_complement(b"ACGT"), b"ACGT");
    }

    #[test]
    fn gc_counts() {
        let c = BaseCounts::of(b"GGCCAATN");
        assert_eq!((c.gc, c.at, c.n), (4, 3, 1));
        assert!((c.gc_fraction() - 4.0 / 7.0).abs() < 1e-12);
    }
}
