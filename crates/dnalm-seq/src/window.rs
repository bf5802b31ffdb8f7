//! Windows over genomes: fixed-length tiling, random sampling, and leak-free genome splits.
//!
//! Everything here works on [`Segment`]s: stretches `[start, end)` of one record (by index).
//! A whole genome is one segment per record; a split is a set of disjoint segments. Windows are
//! always drawn *inside* one segment, so no window of one split can share a base with a window
//! of another split.

use rand::{seq::SliceRandom, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::{
    error::{Result, SeqError},
    task::Split,
};

/// A stretch `[start, end)` (0-based) of record number `record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Segment {
    /// Index of the record (chromosome) in the genome.
    pub record: usize,
    /// 0-based start.
    pub start: usize,
    /// 0-based exclusive end.
    pub end: usize,
}

impl Segment {
    /// Length in bases.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the segment is empty.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether two segments share at least one base.
    pub fn overlaps(&self, other: &Segment) -> bool {
        self.record == other.record && self.start < other.end && other.start < self.end
    }
}

/// One segment per record, covering each whole record.
pub fn whole_records(lengths: &[usize]) -> Vec<Segment> {
    lengths
        .iter()
        .enumerate()
        .map(|(record, &len)| Segment {
            record,
            start: 0,
            end: len,
        })
        .collect()
}

/// Fixed-length windows taken every `stride` bases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WindowSpec {
    /// Window length in bases (> 0).
    pub length: usize,
    /// Distance between window starts (> 0).
    pub stride: usize,
}

impl WindowSpec {
    /// Checks the spec.
    pub fn new(length: usize, stride: usize) -> Result<Self> {
        if length == 0 || stride == 0 {
            return Err(SeqError::invalid(
                "window",
                format!("length ({length}) and stride ({stride}) must be positive"),
            ));
        }
        Ok(WindowSpec { length, stride })
    }

    /// Tiles every segment with windows that fit entirely inside it, in segment order.
    ///
    /// ```
    /// use dnalm_seq::window::{whole_records, WindowSpec};
    /// let spec = WindowSpec::new(4, 3).unwrap();
    /// let starts: Vec<usize> = spec.tile(&whole_records(&[10])).map(|w| w.start).collect();
    /// assert_eq!(starts, vec![0, 3, 6]);
    /// ```
    pub fn tile<'a>(&self, segments: &'a [Segment]) -> impl Iterator<Item = Segment> + 'a {
        let WindowSpec { length, stride } = *self;
        segments.iter().flat_map(move |seg| {
            let count = if seg.len() >= length {
                (seg.len() - length) / stride + 1
            } else {
                0
            };
            (0..count).map(move |i| Segment {
                record: seg.record,
                start: seg.start + i * stride,
                end: seg.start + i * stride + length,
            })
        })
    }
}

/// Draws windows of a fixed length uniformly at random from all positions where they fit
/// inside a segment (every valid start equally likely), reproducibly from a seed.
pub struct RandomWindows {
    segments: Vec<Segment>,
    cumulative: Vec<u64>,
    /// With [`RandomWindows::weighted`]: cumulative segment weights.
    weighted: Option<Vec<f64>>,
    length: usize,
    rng: ChaCha8Rng,
}

impl RandomWindows {
    /// Prepares sampling; fails when no segment is at least `length` long.
    pub fn new(segments: &[Segment], length: usize, seed: u64) -> Result<Self> {
        let usable: Vec<Segment> = segments
            .iter()
            .copied()
            .filter(|s| length > 0 && s.len() >= length)
            .collect();
        if usable.is_empty() {
            return Err(SeqError::invalid(
                "window",
                format!("no sequence is at least {length} bases long"),
            ));
        }
        let mut total = 0u64;
        let cumulative = usable
            .iter()
            .map(|s| {
                total += (s.len() - length + 1) as u64;
                total
            })
            .collect();
        Ok(RandomWindows {
            segments: usable,
            cumulative,
            weighted: None,
            length,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    /// [`RandomWindows::new`] with each record's window starts weighted by `record_weight`
    /// (e.g. a genome's share of a corpus divided by its number of starts, so that genomes are
    /// drawn by weight and starts uniformly within each). A record of weight 0 is never drawn.
    pub fn weighted(
        segments: &[Segment],
        length: usize,
        seed: u64,
        record_weight: &dyn Fn(usize) -> f64,
    ) -> Result<Self> {
        let mut windows = RandomWindows::new(segments, length, seed)?;
        let mut total = 0.0;
        let cumulative: Vec<f64> = windows
            .segments
            .iter()
            .map(|s| {
                total += (s.len() - length + 1) as f64 * record_weight(s.record).max(0.0);
                total
            })
            .collect();
        if !(total > 0.0 && total.is_finite()) {
            return Err(SeqError::invalid(
                "window weights",
                "every window has weight 0 (or the weights are not finite)",
            ));
        }
        windows.weighted = Some(cumulative);
        Ok(windows)
    }
}

impl RandomWindows {
    /// Draws one window with the caller's random generator (the sampler's own is untouched), so
    /// that a window can be a pure function of, say, a training step's seed.
    pub fn draw(&self, rng: &mut impl Rng) -> Segment {
        self.draw_inner(rng)
    }

    fn draw_inner(&self, rng: &mut impl Rng) -> Segment {
        if let Some(cumulative) = &self.weighted {
            let total = cumulative.last().copied().unwrap_or(1.0);
            let u = rng.random::<f64>() * total;
            let i = cumulative
                .partition_point(|&c| c <= u)
                .min(self.segments.len() - 1);
            let seg = self.segments[i];
            let start = seg.start + rng.random_range(0..seg.len() - self.length + 1);
            return Segment {
                record: seg.record,
                start,
                end: start + self.length,
            };
        }
        // `new` guarantees at least one usable segment, so the total is positive.
        let total = self.cumulative.last().copied().unwrap_or(1);
        let k = rng.random_range(0..total);
        let i = self.cumulative.partition_point(|&c| c <= k);
        let before = if i == 0 { 0 } else { self.cumulative[i - 1] };
        let seg = self.segments[i];
        let start = seg.start + (k - before) as usize;
        Segment {
            record: seg.record,
            start,
            end: start + self.length,
        }
    }
}

impl Iterator for RandomWindows {
    type Item = Segment;

    fn next(&mut self) -> Option<Segment> {
        let mut rng = self.rng.clone();
        let w = self.draw_inner(&mut rng);
        self.rng = rng;
        Some(w)
    }
}

/// What a genome split assigns to train/valid/test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SplitUnit {
    /// Whole records (chromosomes): for genomes with many records.
    Record,
    /// Contiguous blocks of this many bases: for genomes with few records (bacteria).
    Block(usize),
}

/// How to split a genome.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SplitConfig {
    /// The unit assigned to a split.
    pub unit: SplitUnit,
    /// Target fractions of bases for train, valid and test (non-negative, summing to 1).
    pub fractions: [f64; 3],
    /// Seed for the shuffle of units.
    pub seed: u64,
}

/// The disjoint segments of each split.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GenomeSplit {
    /// Training segments.
    pub train: Vec<Segment>,
    /// Validation segments.
    pub valid: Vec<Segment>,
    /// Test segments.
    pub test: Vec<Segment>,
}

impl GenomeSplit {
    /// The segments of one split.
    pub fn get(&self, split: Split) -> &[Segment] {
        match split {
            Split::Train => &self.train,
            Split::Valid => &self.valid,
            Split::Test => &self.test,
        }
    }

    /// Total bases of one split.
    pub fn bases(&self, split: Split) -> usize {
        self.get(split).iter().map(Segment::len).sum()
    }
}

/// Splits a genome (given record lengths) into disjoint train/valid/test segments.
///
/// Units (records or blocks) are shuffled with the seed and each is given to the split that is
/// furthest below its target share of bases. Adjacent blocks of the same split are merged, so
/// windows can span block boundaries inside a split but never cross into another split.
///
/// ```
/// use dnalm_seq::window::{split_genome, SplitConfig, SplitUnit};
/// let cfg = SplitConfig { unit: SplitUnit::Block(100), fractions: [0.8, 0.1, 0.1], seed: 1 };
/// let split = split_genome(&[1000], &cfg).unwrap();
/// let total: usize = [&split.train, &split.valid, &split.test].iter()
///     .flat_map(|s| s.iter()).map(|s| s.len()).sum();
/// assert_eq!(total, 1000);
/// ```
pub fn split_genome(lengths: &[usize], cfg: &SplitConfig) -> Result<GenomeSplit> {
    let sum: f64 = cfg.fractions.iter().sum();
    if cfg.fractions.iter().any(|f| !f.is_finite() || *f < 0.0) || (sum - 1.0).abs() > 1e-6 {
        return Err(SeqError::invalid(
            "split fractions",
            format!("{:?} must be non-negative and sum to 1", cfg.fractions),
        ));
    }
    let mut units: Vec<Segment> = match cfg.unit {
        SplitUnit::Record => whole_records(lengths),
        SplitUnit::Block(0) => {
            return Err(SeqError::invalid("split block length", "must be positive"))
        }
        SplitUnit::Block(block) => lengths
            .iter()
            .enumerate()
            .flat_map(|(record, &len)| {
                (0..len.div_ceil(block)).map(move |i| Segment {
                    record,
                    start: i * block,
                    end: ((i + 1) * block).min(len),
                })
            })
            .collect(),
    };
    units.retain(|u| !u.is_empty());
    let wanted = cfg.fractions.iter().filter(|f| **f > 0.0).count();
    if units.len() < wanted {
        return Err(SeqError::invalid(
            "split",
            format!(
                "{} unit(s) cannot fill {wanted} splits; use block splits (a smaller block length)",
                units.len()
            ),
        ));
    }
    units.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed));
    let mut assigned = [0usize; 3];
    let mut out: [Vec<Segment>; 3] = Default::default();
    let mut total = 0usize;
    // First give each split with a positive share one unit, so none is left empty.
    let mut rest = units.into_iter();
    for (i, f) in cfg.fractions.iter().enumerate() {
        if *f > 0.0 {
            if let Some(u) = rest.next() {
                assigned[i] += u.len();
                total += u.len();
                out[i].push(u);
            }
        }
    }
    for unit in rest {
        total += unit.len();
        let i = (0..3)
            .filter(|&i| cfg.fractions[i] > 0.0)
            .max_by(|&a, &b| {
                let da = cfg.fractions[a] * total as f64 - assigned[a] as f64;
                let db = cfg.fractions[b] * total as f64 - assigned[b] as f64;
                da.total_cmp(&db).then(b.cmp(&a))
            })
            .unwrap_or(0);
        assigned[i] += unit.len();
        out[i].push(unit);
    }
    let [train, valid, test] = out.map(merge_adjacent);
    Ok(GenomeSplit { train, valid, test })
}

fn merge_adjacent(mut segments: Vec<Segment>) -> Vec<Segment> {
    segments.sort_unstable();
    let mut merged: Vec<Segment> = Vec::with_capacity(segments.len());
    for s in segments {
        match merged.last_mut() {
            Some(last) if last.record == s.record && last.end == s.start => last.end = s.end,
            _ => merged.push(s),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiling_respects_segments() {
        let spec = WindowSpec::new(5, 5).unwrap();
        let segs = [
            Segment {
                record: 0,
                start: 0,
                end: 12,
            },
            Segment {
                record: 1,
                start: 3,
                end: 7,
            },
        ];
        let w: Vec<_> = spec.tile(&segs).collect();
        assert_eq!(w.len(), 2);
        assert!(w.iter().all(|w| w.end <= 12 && w.record == 0));
        assert!(WindowSpec::new(0, 1).is_err());
    }

    #[test]
    fn random_windows_are_reproducible_and_inside() {
        let segs = whole_records(&[100, 7, 50]);
        let a: Vec<_> = RandomWindows::new(&segs, 10, 3)
            .unwrap()
            .take(200)
            .collect();
        let b: Vec<_> = RandomWindows::new(&segs, 10, 3)
            .unwrap()
            .take(200)
            .collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|w| w.record != 1 && w.len() == 10));
        assert!(a.iter().all(|w| w.end <= [100, 7, 50][w.record]));
        assert!(RandomWindows::new(&segs, 101, 0).is_err());
    }

    #[test]
    fn splits_never_share_bases() {
        let lengths = [10_000, 3_333, 777];
        for unit in [SplitUnit::Block(500), SplitUnit::Record] {
            let cfg = SplitConfig {
                unit,
                fractions: [0.6, 0.2, 0.2],
                seed: 9,
            };
            let split = split_genome(&lengths, &cfg).unwrap();
            let spec = WindowSpec::new(64, 17).unwrap();
            let windows: Vec<Vec<Segment>> = Split::ALL
                .iter()
                .map(|s| spec.tile(split.get(*s)).collect())
                .collect();
            for a in 0..3 {
                for b in (a + 1)..3 {
                    for wa in &windows[a] {
                        assert!(!windows[b].iter().any(|wb| wa.overlaps(wb)), "{unit:?}");
                    }
                }
            }
            let covered: usize = Split::ALL.iter().map(|s| split.bases(*s)).sum();
            assert_eq!(covered, lengths.iter().sum::<usize>());
        }
    }

    #[test]
    fn block_split_hits_fractions() {
        let cfg = SplitConfig {
            unit: SplitUnit::Block(1000),
            fractions: [0.7, 0.1, 0.2],
            seed: 1,
        };
        let split = split_genome(&[1_000_000], &cfg).unwrap();
        let f = split.bases(Split::Train) as f64 / 1e6;
        assert!((f - 0.7).abs() < 0.01, "{f}");
    }

    #[test]
    fn record_split_needs_enough_records() {
        let cfg = SplitConfig {
            unit: SplitUnit::Record,
            fractions: [0.8, 0.1, 0.1],
            seed: 1,
        };
        let err = split_genome(&[1000], &cfg).unwrap_err().to_string();
        assert!(err.contains("use block splits"), "{err}");
    }
}
