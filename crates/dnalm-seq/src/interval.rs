//! Genomic intervals from BED and GFF3, and an index for overlap queries.
//!
//! All intervals are stored 0-based, half-open (`[start, end)`), whatever the source format:
//! BED is already so; GFF3's 1-based closed coordinates are converted on read.
//! The overlap index is `rust-lapper` (a well-kept, fast interval index for sorted, mostly
//! non-nested genomic intervals) with one index per sequence name.

use std::{collections::HashMap, io::BufRead, path::Path};

use noodles::{bed, gff};
use rust_lapper::{Interval as LapperInterval, Lapper};

use crate::{
    error::{Result, SeqError},
    open_text,
};

/// Strand of a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Strand {
    /// `+`
    Forward,
    /// `-`
    Reverse,
    /// `.` or absent.
    #[default]
    Unknown,
}

/// One annotated feature.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Interval {
    /// Sequence (chromosome) name.
    pub chrom: String,
    /// 0-based start.
    pub start: u64,
    /// 0-based exclusive end.
    pub end: u64,
    /// BED name, or GFF `ID`/`Name` attribute.
    pub name: Option<String>,
    /// Feature type: the GFF type column (`CDS`, `exon`, ...); `None` for BED.
    pub kind: Option<String>,
    /// Strand.
    pub strand: Strand,
    /// Score, if the file gives one.
    pub score: Option<f64>,
    /// BED12 blocks (exons) as absolute 0-based half-open ranges; empty otherwise.
    pub blocks: Vec<(u64, u64)>,
}

impl Interval {
    /// Length in bases.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the interval is empty.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// The format of an interval file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalFormat {
    /// BED3 to BED12.
    Bed,
    /// GFF3.
    Gff3,
}

impl IntervalFormat {
    /// Guesses the format from the file name (`.bed`, `.gff`, `.gff3`, optionally `.gz`).
    pub fn from_path(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        if name.ends_with(".bed") {
            Some(IntervalFormat::Bed)
        } else if name.ends_with(".gff") || name.ends_with(".gff3") {
            Some(IntervalFormat::Gff3)
        } else {
            None
        }
    }
}

/// Reads every interval of a BED or GFF3 file (plain or gzip), choosing the format by name.
pub fn read_intervals(path: impl AsRef<Path>) -> Result<Vec<Interval>> {
    let path = path.as_ref();
    match IntervalFormat::from_path(path) {
        Some(IntervalFormat::Bed) => read_bed(path),
        Some(IntervalFormat::Gff3) => read_gff3(path),
        None => Err(SeqError::invalid(
            path.display().to_string(),
            "unknown annotation format (expected .bed, .gff or .gff3, optionally .gz)",
        )),
    }
}

/// Reads a BED3..BED12 file. Header lines (`#`, `track`, `browser`) and blank lines are skipped.
///
/// The three required columns are parsed by `noodles-bed`; the optional ones (name, score,
/// strand, thick, rgb, blocks) are checked here with line numbers.
pub fn read_bed(path: impl AsRef<Path>) -> Result<Vec<Interval>> {
    let path = path.as_ref();
    read_bed_from(open_text(path)?, path)
}

/// Reads BED from any buffered stream; `path` is only used in error messages.
pub fn read_bed_from(mut reader: impl BufRead, path: &Path) -> Result<Vec<Interval>> {
    let mut line = String::new();
    let mut out = Vec::new();
    let mut line_no = 0u64;
    let mut record = bed::Record::<3>::default();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| read_error(path, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let text = line.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty()
            || text.starts_with('#')
            || text.starts_with("track")
            || text.starts_with("browser")
        {
            continue;
        }
        let err = |message: String| SeqError::at_line(path, line_no, message);
        let columns: Vec<&str> = text.split('\t').collect();
        if columns.len() < 3 {
            return Err(err(format!(
                "expected at least 3 tab-separated columns (chrom, start, end), found {}",
                columns.len()
            )));
        }
        let mut one = bed::io::Reader::<3, _>::new(text.as_bytes());
        one.read_record(&mut record)
            .map_err(|e| err(format!("invalid BED record: {e}")))?;
        let start = record
            .feature_start()
            .map_err(|e| err(format!("invalid start '{}': {e}", columns[1])))?
            .get() as u64
            - 1;
        let end = match record.feature_end() {
            Some(end) => end
                .map_err(|e| err(format!("invalid end '{}': {e}", columns[2])))?
                .get() as u64,
            None => 0,
        };
        if end < start {
            return Err(err(format!("end {end} is before start {start}")));
        }
        let name = columns
            .get(3)
            .filter(|s| !s.is_empty() && **s != ".")
            .map(|s| s.to_string());
        let score = match columns.get(4) {
            Some(&s) if s != "." && !s.is_empty() => Some(
                s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| err(format!("invalid score '{s}'")))?,
            ),
            _ => None,
        };
        let strand = match columns.get(5) {
            None => Strand::Unknown,
            Some(&s) => parse_strand(s).ok_or_else(|| err(format!("invalid strand '{s}'")))?,
        };
        let mut blocks = Vec::new();
        if columns.len() >= 12 {
            blocks = parse_blocks(&columns, start, end).map_err(err)?;
        } else if columns.len() > 9 {
            return Err(err(format!(
                "{} columns: BED10 and BED11 are not valid (blocks need blockCount, blockSizes and blockStarts)",
                columns.len()
            )));
        }
        out.push(Interval {
            chrom: String::from_utf8_lossy(record.reference_sequence_name()).into_owned(),
            start,
            end,
            name,
            kind: None,
            strand,
            score,
            blocks,
        });
    }
    Ok(out)
}

fn parse_strand(s: &str) -> Option<Strand> {
    match s {
        "+" => Some(Strand::Forward),
        "-" => Some(Strand::Reverse),
        "." | "?" => Some(Strand::Unknown),
        _ => None,
    }
}

fn parse_blocks(columns: &[&str], start: u64, end: u64) -> Result<Vec<(u64, u64)>, String> {
    let count: usize = columns[9]
        .parse()
        .map_err(|_| format!("invalid blockCount '{}'", columns[9]))?;
    let list = |s: &str, what: &str| -> Result<Vec<u64>, String> {
        s.trim_end_matches(',')
            .split(',')
            .filter(|x| !x.is_empty())
            .map(|x| {
                x.parse::<u64>()
                    .map_err(|_| format!("invalid {what} '{s}'"))
            })
            .collect()
    };
    let sizes = list(columns[10], "blockSizes")?;
    let starts = list(columns[11], "blockStarts")?;
    if sizes.len() != count || starts.len() != count {
        return Err(format!(
            "blockCount is {count} but there are {} sizes and {} starts",
            sizes.len(),
            starts.len()
        ));
    }
    let mut blocks = Vec::with_capacity(count);
    for (s, size) in starts.iter().zip(&sizes) {
        let (bs, be) = (start + s, start + s + size);
        if be > end {
            return Err(format!(
                "block {bs}-{be} extends past the feature end {end}"
            ));
        }
        blocks.push((bs, be));
    }
    Ok(blocks)
}

/// Reads a GFF3 file. Comments and directives are skipped; reading stops at `##FASTA`.
/// Coordinates are converted to 0-based half-open; `name` is the `ID` (else `Name`) attribute.
pub fn read_gff3(path: impl AsRef<Path>) -> Result<Vec<Interval>> {
    let path = path.as_ref();
    read_gff3_from(open_text(path)?, path)
}

/// Reads GFF3 from any buffered stream; `path` is only used in error messages.
pub fn read_gff3_from(input: impl BufRead, path: &Path) -> Result<Vec<Interval>> {
    let mut reader = gff::io::Reader::new(input);
    let mut line = gff::Line::default();
    let mut out = Vec::new();
    let mut line_no = 0u64;
    loop {
        let n = reader
            .read_line(&mut line)
            .map_err(|e| SeqError::at_line(path, line_no + 1, format!("invalid GFF3 line: {e}")))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if let Some(directive) = line.as_directive() {
            if directive.key().as_ref() as &[u8] == b"FASTA" {
                break;
            }
            continue;
        }
        let Some(record) = line.as_record() else {
            continue;
        };
        let err = |message: String| SeqError::at_line(path, line_no, message);
        let text: &[u8] = line.as_ref();
        if text.trim_ascii().is_empty() {
            continue;
        }
        let record = record.map_err(|e| err(format!("invalid GFF3 record: {e}")))?;
        let start = record
            .start()
            .map_err(|e| err(format!("invalid start: {e}")))?
            .get() as u64;
        let end = record
            .end()
            .map_err(|e| err(format!("invalid end: {e}")))?
            .get() as u64;
        if end < start {
            return Err(err(format!("end {end} is before start {start}")));
        }
        let score = match record.score() {
            None => None,
            Some(s) => Some(s.map_err(|e| err(format!("invalid score: {e}")))? as f64),
        };
        let strand = match record
            .strand()
            .map_err(|e| err(format!("invalid strand: {e}")))?
        {
            gff::feature::record::Strand::Forward => Strand::Forward,
            gff::feature::record::Strand::Reverse => Strand::Reverse,
            _ => Strand::Unknown,
        };
        let attrs = record.attributes();
        let attr = |tag: &[u8]| -> Option<String> {
            match attrs.get(tag)? {
                Ok(gff::record::attributes::field::Value::String(s)) => Some(s.to_string()),
                Ok(gff::record::attributes::field::Value::Array(a)) => {
                    a.iter().next().map(|v| v.to_string())
                }
                Err(_) => None,
            }
        };
        let name = attr(b"ID").or_else(|| attr(b"Name"));
        out.push(Interval {
            chrom: record.reference_sequence_name().to_string(),
            start: start - 1,
            end,
            name,
            kind: Some(record.ty().to_string()),
            strand,
            score,
            blocks: Vec::new(),
        });
    }
    Ok(out)
}

fn read_error(path: &Path, e: std::io::Error) -> SeqError {
    if e.kind() == std::io::ErrorKind::InvalidData && e.to_string().contains("UTF-8") {
        SeqError::Format {
            path: path.to_path_buf(),
            at: crate::Location::File,
            message: "not a text file (invalid UTF-8)".into(),
        }
    } else {
        SeqError::io(path, e)
    }
}

/// An overlap index over intervals, one `rust-lapper` index per sequence name.
///
/// ```
/// use dnalm_seq::{Interval, IntervalIndex, Strand};
/// let iv = |s, e| Interval { chrom: "c".into(), start: s, end: e, name: None, kind: None,
///     strand: Strand::Unknown, score: None, blocks: vec![] };
/// let index = IntervalIndex::new(vec![iv(0, 10), iv(20, 30)]);
/// assert_eq!(index.overlapping("c", 5, 25).count(), 2);
/// assert_eq!(index.overlapping("c", 10, 20).count(), 0);
/// ```
pub struct IntervalIndex {
    intervals: Vec<Interval>,
    by_chrom: HashMap<String, Lapper<u64, usize>>,
}

impl IntervalIndex {
    /// Indexes `intervals` (empty intervals are kept but never overlap anything).
    pub fn new(intervals: Vec<Interval>) -> Self {
        let mut grouped: HashMap<String, Vec<LapperInterval<u64, usize>>> = HashMap::new();
        for (i, iv) in intervals.iter().enumerate() {
            grouped
                .entry(iv.chrom.clone())
                .or_default()
                .push(LapperInterval {
                    start: iv.start,
                    stop: iv.end,
                    val: i,
                });
        }
        let by_chrom = grouped
            .into_iter()
            .map(|(k, v)| (k, Lapper::new(v)))
            .collect();
        IntervalIndex {
            intervals,
            by_chrom,
        }
    }

    /// All indexed intervals, in input order.
    pub fn intervals(&self) -> &[Interval] {
        &self.intervals
    }

    /// Intervals on `chrom` overlapping `[start, end)`.
    pub fn overlapping<'a>(
        &'a self,
        chrom: &str,
        start: u64,
        end: u64,
    ) -> impl Iterator<Item = &'a Interval> + 'a {
        self.by_chrom
            .get(chrom)
            .into_iter()
            .flat_map(move |l| l.find(start, end))
            .map(move |iv| &self.intervals[iv.val])
    }

    /// Number of bases of `[start, end)` on `chrom` covered by at least one interval.
    pub fn covered_bases(&self, chrom: &str, start: u64, end: u64) -> u64 {
        let mut spans: Vec<(u64, u64)> = self
            .overlapping(chrom, start, end)
            .map(|iv| (iv.start.max(start), iv.end.min(end)))
            .collect();
        merged_length(&mut spans)
    }
}

/// Total length of the union of `spans` (sorted in place).
pub(crate) fn merged_length(spans: &mut [(u64, u64)]) -> u64 {
    spans.sort_unstable();
    let mut total = 0;
    let mut current: Option<(u64, u64)> = None;
    for &(s, e) in spans.iter() {
        match current {
            Some((cs, ce)) if s <= ce => current = Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                current = Some((s, e));
            }
            None => current = Some((s, e)),
        }
    }
    if let Some((cs, ce)) = current {
        total += ce - cs;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        (dir, path)
    }

    #[test]
    fn bed3_to_bed12() {
        let (_d, p) = write(
            "a.bed",
            "track name=x\n# c\nchr1\t0\t10\nchr1\t5\t20\tg1\t3.5\t-\nchr2\t100\t200\ttx\t0\t+\t110\t190\t0\t2\t10,20,\t0,80,\n",
        );
        let ivs = read_bed(&p).unwrap();
        assert_eq!(ivs.len(), 3);
        assert_eq!(
            (ivs[0].start, ivs[0].end, ivs[0].strand),
            (0, 10, Strand::Unknown)
        );
        assert_eq!(ivs[1].name.as_deref(), Some("g1"));
        assert_eq!(ivs[1].score, Some(3.5));
        assert_eq!(ivs[1].strand, Strand::Reverse);
        assert_eq!(ivs[2].blocks, vec![(100, 110), (180, 200)]);
    }

    #[test]
    fn bed_errors_name_the_line() {
        for (text, needle) in [
            ("chr1\t10\t5\n", "a.bed:line 1: end 5 is before start 10"),
            ("chr1\t0\t5\nchr1\t0\n", "a.bed:line 2: expected at least 3"),
            ("chr1\tx\t5\n", "a.bed:line 1: invalid"),
            ("chr1\t0\t5\tn\t1\t*\n", "a.bed:line 1: invalid strand '*'"),
            (
                "chr1\t0\t50\tn\t0\t+\t0\t0\t0\t2\t10,\t0,10,\n",
                "blockCount is 2",
            ),
        ] {
            let (_d, p) = write("a.bed", text);
            let err = read_bed(&p).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} does not contain {needle}");
        }
    }

    #[test]
    fn gff3_is_converted_to_half_open() {
        let (_d, p) = write(
            "a.gff3",
            "##gff-version 3\nchr1\tsrc\tgene\t1\t100\t.\t+\t.\tID=g1;Name=abc\nchr1\tsrc\tCDS\t10\t90\t2.5\t-\t0\tParent=g1\n##FASTA\n>chr1\nACGT\n",
        );
        let ivs = read_gff3(&p).unwrap();
        assert_eq!(ivs.len(), 2);
        assert_eq!((ivs[0].start, ivs[0].end), (0, 100));
        assert_eq!(ivs[0].name.as_deref(), Some("g1"));
        assert_eq!(ivs[1].kind.as_deref(), Some("CDS"));
        assert_eq!(ivs[1].score, Some(2.5));
        assert_eq!(ivs[1].strand, Strand::Reverse);
    }

    #[test]
    fn gff3_errors_name_the_line() {
        let (_d, p) = write(
            "a.gff3",
            "##gff-version 3\nchr1\tsrc\tgene\t100\t10\t.\t+\t.\t.\n",
        );
        let err = read_gff3(&p).unwrap_err().to_string();
        assert!(err.contains("a.gff3:line 2:"), "{err}");
    }

    #[test]
    fn overlap_and_coverage() {
        let iv = |s, e| Interval {
            chrom: "c".into(),
            start: s,
            end: e,
            name: None,
            kind: None,
            strand: Strand::Unknown,
            score: None,
            blocks: vec![],
        };
        let idx = IntervalIndex::new(vec![iv(0, 10), iv(5, 15), iv(30, 40)]);
        assert_eq!(idx.covered_bases("c", 0, 100), 25);
        assert_eq!(idx.covered_bases("c", 12, 35), 8);
        assert_eq!(idx.covered_bases("other", 0, 100), 0);
    }
}
