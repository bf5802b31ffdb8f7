//! One shard of a job split across processes (`--shard I/N`): a deterministic, contiguous
//! partition of the job's items (sequences, variants, windows), so that the shards' outputs
//! concatenated in shard order are the output of the whole job.
//!
//! Contiguous ranges (rather than every N-th item) keep each shard's output in input order and
//! make merging a concatenation; [`Shard::range_weighted`] balances shards by work (e.g. bases)
//! when items differ in size, as a genome's records do.

use std::{fmt, ops::Range, str::FromStr};

use crate::SeqError;

/// Shard `index` (0-based) of `count`; written and parsed 1-based as `I/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard::WHOLE
    }
}

impl Shard {
    /// The whole job (`1/1`).
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Shard `number` (1-based) of `count`.
    pub fn new(number: usize, count: usize) -> Result<Shard, SeqError> {
        if count == 0 || number == 0 || number > count {
            return Err(SeqError::invalid(
                format!("shard '{number}/{count}'"),
                "expected I/N with 1 <= I <= N (e.g. 1/4)",
            ));
        }
        Ok(Shard {
            index: number - 1,
            count,
        })
    }

    /// The shard's number, 1-based.
    pub fn number(&self) -> usize {
        self.index + 1
    }

    /// How many shards the job has.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether this is the whole job.
    pub fn is_whole(&self) -> bool {
        self.count == 1
    }

    /// This shard's items out of `items`, in equal-count contiguous ranges.
    pub fn range(&self, items: usize) -> Range<usize> {
        let at = |i: usize| (items as u128 * i as u128 / self.count as u128) as usize;
        at(self.index)..at(self.index + 1)
    }

    /// This shard's items when item `i` costs `weights[i]`: item `i` goes to the shard its
    /// weighted midpoint falls in, so shards get contiguous ranges of about equal total weight
    /// (an item is never split). All-zero weights fall back to [`Shard::range`].
    pub fn range_weighted(&self, weights: &[u64]) -> Range<usize> {
        let total: u128 = weights.iter().map(|&w| w as u128).sum();
        if total == 0 {
            return self.range(weights.len());
        }
        let mut start = weights.len();
        let mut end = weights.len();
        let mut before: u128 = 0;
        for (i, &w) in weights.iter().enumerate() {
            // Twice the midpoint, to stay in integers.
            let mid2 = 2 * before + w as u128;
            let owner = (mid2 * self.count as u128 / (2 * total)).min(self.count as u128 - 1);
            if owner as usize >= self.index && start == weights.len() {
                start = i;
            }
            if owner as usize > self.index {
                end = i;
                break;
            }
            before += w as u128;
        }
        start.min(end)..end
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.number(), self.count)
    }
}

impl serde::Serialize for Shard {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Shard {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Shard, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Shard {
    type Err = SeqError;

    fn from_str(s: &str) -> Result<Shard, SeqError> {
        let bad = || {
            SeqError::invalid(
                format!("shard '{s}'"),
                "expected I/N with 1 <= I <= N (e.g. 1/4)",
            )
        };
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let i: usize = i.trim().parse().map_err(|_| bad())?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        Shard::new(i, n).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(n: usize) -> Vec<Shard> {
        (1..=n).map(|i| Shard::new(i, n).unwrap()).collect()
    }

    #[test]
    fn names_parse_one_based_and_print_back() {
        let s: Shard = "2/5".parse().unwrap();
        assert_eq!((s.number(), s.count(), s.to_string()), (2, 5, "2/5".into()));
        assert!(Shard::WHOLE.is_whole());
        for bad in ["0/2", "3/2", "1/0", "1", "a/b", "-1/2", ""] {
            let e = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(e.contains("I/N"), "{bad}: {e}");
        }
    }

    #[test]
    fn shards_cover_every_item_once_in_order() {
        for items in [0, 1, 2, 7, 100] {
            for n in 1..=9 {
                let ranges: Vec<_> = all(n).iter().map(|s| s.range(items)).collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[n - 1].end, items);
                for w in ranges.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
            }
        }
    }

    #[test]
    fn weighted_shards_cover_every_item_once_and_balance_work() {
        let cases: [&[u64]; 5] = [
            &[],
            &[5],
            &[0, 0, 0],
            &[100, 1, 1, 1, 1, 1, 1, 100],
            &[4_600_000, 48_502, 10, 10, 3_000_000],
        ];
        for weights in cases {
            for n in 1..=6 {
                let ranges: Vec<_> = all(n).iter().map(|s| s.range_weighted(weights)).collect();
                assert_eq!(ranges[0].start, 0, "{weights:?} / {n}");
                assert_eq!(ranges[n - 1].end, weights.len(), "{weights:?} / {n}");
                for w in ranges.windows(2) {
                    assert_eq!(w[0].end, w[1].start, "{weights:?} / {n}: {ranges:?}");
                }
            }
        }
        // Two large records and small ones between: each large one leads its own shard.
        let w = [100u64, 1, 1, 1, 1, 1, 1, 100];
        let halves: Vec<_> = all(2).iter().map(|s| s.range_weighted(&w)).collect();
        assert_eq!(halves, vec![0..4, 4..8]);
    }
}
