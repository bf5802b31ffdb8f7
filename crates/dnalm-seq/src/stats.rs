//! Summary statistics behind `dnalm inspect`.

use std::{collections::BTreeMap, path::Path};

use serde::Serialize;

use crate::{
    alphabet::BaseCounts,
    error::Result,
    fastx::{FastxReader, SequenceRecord},
    interval::{Interval, Strand},
    task::{Label, LabelledSequence},
};

/// Length distribution of a set of sequences or intervals.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LengthStats {
    /// Number of items.
    pub count: u64,
    /// Sum of lengths.
    pub total: u64,
    /// Shortest.
    pub min: u64,
    /// Longest.
    pub max: u64,
    /// Mean length.
    pub mean: f64,
    /// Median length.
    pub median: u64,
    /// N50: the length L such that items of length >= L hold half of all bases.
    pub n50: u64,
}

/// Counts of lengths, for length statistics in memory proportional to the number of *distinct*
/// lengths (a 100-million-read FASTQ of 150 bp reads holds one entry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LengthHistogram {
    counts: BTreeMap<u64, u64>,
}

impl LengthHistogram {
    /// Records one length.
    pub fn add(&mut self, length: u64) {
        *self.counts.entry(length).or_insert(0) += 1;
    }

    /// The statistics of the recorded lengths.
    ///
    /// ```
    /// let mut h = dnalm_seq::stats::LengthHistogram::default();
    /// for l in [2, 8, 10] { h.add(l); }
    /// let s = h.stats();
    /// assert_eq!((s.count, s.total, s.min, s.max, s.median, s.n50), (3, 20, 2, 10, 8, 10));
    /// ```
    pub fn stats(&self) -> LengthStats {
        let count: u64 = self.counts.values().sum();
        if count == 0 {
            return LengthStats::default();
        }
        let total: u64 = self.counts.iter().map(|(l, c)| l * c).sum();
        let median_rank = (count - 1) / 2;
        let mut seen = 0;
        let mut median = 0;
        for (&l, &c) in &self.counts {
            if seen + c > median_rank {
                median = l;
                break;
            }
            seen += c;
        }
        let mut acc = 0;
        let mut n50 = 0;
        for (&l, &c) in self.counts.iter().rev() {
            acc += l * c;
            if 2 * acc >= total {
                n50 = l;
                break;
            }
        }
        LengthStats {
            count,
            total,
            min: *self.counts.keys().next().unwrap_or(&0),
            max: *self.counts.keys().next_back().unwrap_or(&0),
            mean: total as f64 / count as f64,
            median,
            n50,
        }
    }
}

impl LengthStats {
    /// Computes the statistics of `lengths`.
    pub fn of(lengths: impl IntoIterator<Item = u64>) -> Self {
        let mut h = LengthHistogram::default();
        lengths.into_iter().for_each(|l| h.add(l));
        h.stats()
    }
}

/// Statistics of a FASTA/FASTQ file.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SequenceStats {
    /// Record count and lengths.
    pub lengths: LengthStats,
    /// GC fraction among A/C/G/T bases.
    pub gc_fraction: f64,
    /// Fraction of bases that are `N` (after the alphabet policy).
    pub n_fraction: f64,
    /// Fraction of bases that were lowercase (soft-masked).
    pub soft_masked_fraction: f64,
    /// Whether the file had quality strings (FASTQ).
    pub fastq: bool,
}

impl SequenceStats {
    /// Streams a FASTA/FASTQ file once: one record in memory at a time, plus one counter per
    /// distinct record length.
    pub fn from_path(path: &Path) -> Result<Self> {
        let mut reader = FastxReader::from_path(path)?;
        let mut record = SequenceRecord::default();
        let mut acc = SequenceStatsBuilder::default();
        while reader.read_record(&mut record)? {
            acc.add(&record);
        }
        Ok(acc.finish())
    }
}

/// Accumulates [`SequenceStats`] record by record.
#[derive(Debug, Default)]
pub struct SequenceStatsBuilder {
    lengths: LengthHistogram,
    bases: BaseCounts,
    masked: u64,
    fastq: bool,
}

impl SequenceStatsBuilder {
    /// Adds one record.
    pub fn add(&mut self, record: &SequenceRecord) {
        self.lengths.add(record.len() as u64);
        self.bases.add(BaseCounts::of(&record.sequence));
        self.masked += record.soft_mask.masked_bases();
        self.fastq |= record.quality.is_some();
    }

    /// The statistics so far.
    pub fn finish(self) -> SequenceStats {
        let lengths = self.lengths.stats();
        let total = lengths.total.max(1) as f64;
        SequenceStats {
            gc_fraction: self.bases.gc_fraction(),
            n_fraction: self.bases.n as f64 / total,
            soft_masked_fraction: self.masked as f64 / total,
            lengths,
            fastq: self.fastq,
        }
    }
}

/// Statistics of a BED/GFF file.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IntervalStats {
    /// Interval count and lengths.
    pub lengths: LengthStats,
    /// Intervals per sequence name.
    pub per_sequence: BTreeMap<String, u64>,
    /// Intervals per feature type (GFF) or `(none)` (BED).
    pub per_type: BTreeMap<String, u64>,
    /// Intervals on `+`, `-`, and unknown strand.
    pub strands: [u64; 3],
}

impl IntervalStats {
    /// Computes the statistics of `intervals`.
    pub fn of(intervals: &[Interval]) -> Self {
        let lengths = intervals.iter().map(Interval::len);
        let mut per_sequence = BTreeMap::new();
        let mut per_type = BTreeMap::new();
        let mut strands = [0; 3];
        for iv in intervals {
            *per_sequence.entry(iv.chrom.clone()).or_insert(0) += 1;
            *per_type
                .entry(iv.kind.clone().unwrap_or_else(|| "(none)".into()))
                .or_insert(0) += 1;
            strands[match iv.strand {
                Strand::Forward => 0,
                Strand::Reverse => 1,
                Strand::Unknown => 2,
            }] += 1;
        }
        IntervalStats {
            lengths: LengthStats::of(lengths),
            per_sequence,
            per_type,
            strands,
        }
    }
}

/// Statistics of a task table or task.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TaskStats {
    /// Sequence count and lengths.
    pub lengths: LengthStats,
    /// GC fraction.
    pub gc_fraction: f64,
    /// Fraction of `N`.
    pub n_fraction: f64,
    /// Rows per split (`none` when no split is given).
    pub per_split: BTreeMap<String, u64>,
    /// Rows per class label (classification; multi-label: rows having each label; per-base:
    /// bases of each class).
    pub per_label: BTreeMap<String, u64>,
    /// Mean of the target (regression only).
    pub target_mean: Option<f64>,
}

impl TaskStats {
    /// Computes the statistics of `examples`.
    pub fn of(examples: &[LabelledSequence]) -> Self {
        let lengths = examples.iter().map(|e| e.sequence.len() as u64);
        let mut bases = BaseCounts::default();
        let mut per_split = BTreeMap::new();
        let mut per_label = BTreeMap::new();
        let mut values = Vec::new();
        for e in examples {
            bases.add(BaseCounts::of(&e.sequence));
            *per_split
                .entry(e.split.map_or("none", |s| s.as_str()).to_string())
                .or_insert(0) += 1;
            match &e.label {
                Label::Class(c) => *per_label.entry(c.to_string()).or_insert(0) += 1,
                Label::Value(v) => values.push(*v),
                // Each label counts once per row that has it.
                Label::Labels(set) => {
                    for k in set {
                        *per_label.entry(k.to_string()).or_insert(0) += 1;
                    }
                }
                Label::Bases(classes) => {
                    for k in classes {
                        *per_label.entry(k.to_string()).or_insert(0) += 1;
                    }
                }
            }
        }
        let lengths = LengthStats::of(lengths);
        TaskStats {
            gc_fraction: bases.gc_fraction(),
            n_fraction: bases.n as f64 / lengths.total.max(1) as f64,
            lengths,
            per_split,
            per_label,
            target_mean: (!values.is_empty())
                .then(|| values.iter().sum::<f64>() / values.len() as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_matches_sorting() {
        let lengths = [5u64, 1, 9, 9, 3, 100, 2, 2, 2, 50];
        let s = LengthStats::of(lengths);
        let mut sorted = lengths.to_vec();
        sorted.sort();
        assert_eq!(s.median, sorted[(sorted.len() - 1) / 2]);
        assert_eq!((s.min, s.max, s.total, s.count), (1, 100, 183, 10));
        // N50: 100 alone holds 100 of 183 bases (>= half).
        assert_eq!(s.n50, 100);
        assert_eq!(LengthStats::of([]), LengthStats::default());
    }
}
