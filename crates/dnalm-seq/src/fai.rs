//! Indexed random access to FASTA regions through a `.fai` index.
//!
//! Built on `noodles-fasta` (index format, indexer, region queries) and `noodles-bgzf` (random
//! access into bgzip files through a `.gzi` index). Missing indexes are built on first use and
//! written atomically beside the FASTA; an existing index is checked against the file before use,
//! so a stale `.fai` gives a clear error instead of wrong bases.

use std::{
    fs::File,
    io::{self, BufRead, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    str::FromStr,
};

use noodles::{bgzf, core::Region as NoodlesRegion, fasta, fasta::fai};

use crate::{
    alphabet,
    error::{Location, Result, SeqError},
    fastx::SequenceRecord,
    write_atomic,
};

/// A region of a named sequence: 0-based, half-open `[start, end)`.
///
/// Parsed from the samtools form `name:start-end` (1-based, inclusive; commas allowed in
/// numbers), `name:start` (to the end) or `name` (the whole sequence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenomicRegion {
    /// Sequence name.
    pub name: String,
    /// 0-based start.
    pub start: u64,
    /// 0-based exclusive end; `None` means "to the end of the sequence".
    pub end: Option<u64>,
}

impl FromStr for GenomicRegion {
    type Err = SeqError;

    /// ```
    /// use dnalm_seq::GenomicRegion;
    /// let r: GenomicRegion = "chr1:1,001-2,000".parse().unwrap();
    /// assert_eq!((r.name.as_str(), r.start, r.end), ("chr1", 1000, Some(2000)));
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        let bad = |message: &str| SeqError::Region {
            region: s.to_string(),
            message: message.to_string(),
        };
        let cleaned = s.trim().replace(',', "");
        let region = NoodlesRegion::from_str(&cleaned).map_err(|e| bad(&e.to_string()))?;
        let name = String::from_utf8_lossy(region.name()).into_owned();
        if name.is_empty() {
            return Err(bad("missing sequence name"));
        }
        let interval = region.interval();
        let start = interval.start().map_or(0, |p| p.get() as u64 - 1);
        let end = interval.end().map(|p| p.get() as u64);
        if let Some(end) = end {
            if end <= start {
                return Err(bad(
                    "end is before start (coordinates are 1-based, inclusive)",
                ));
            }
        }
        Ok(GenomicRegion { name, start, end })
    }
}

impl std::fmt::Display for GenomicRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.end {
            Some(end) => write!(f, "{}:{}-{}", self.name, self.start + 1, end),
            None => write!(f, "{}:{}", self.name, self.start + 1),
        }
    }
}

/// Name and length of one indexed sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedSequence {
    /// Sequence name.
    pub name: String,
    /// Length in bases.
    pub length: u64,
}

/// A FASTA file (plain or bgzip) opened for random access.
///
/// ```no_run
/// use dnalm_seq::{IndexedFasta, GenomicRegion};
/// let mut fasta = IndexedFasta::open("genome.fa")?; // builds genome.fa.fai if missing
/// let region: GenomicRegion = "chr1:101-200".parse()?;
/// let record = fasta.fetch(&region)?;
/// assert_eq!(record.len(), 100);
/// # Ok::<_, dnalm_seq::SeqError>(())
/// ```
pub struct IndexedFasta {
    path: PathBuf,
    index_path: PathBuf,
    reader: fasta::io::IndexedReader<fasta::io::BufReader<File>>,
    sequences: Vec<fai::Record>,
}

/// How a FASTA file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storage {
    Plain,
    Bgzf,
    Gzip,
}

fn sniff(path: &Path) -> Result<Storage> {
    let mut head = [0u8; 16];
    let mut file = crate::open_file(path)?;
    let n = read_up_to(&mut file, &mut head).map_err(|e| SeqError::io(path, e))?;
    if n == 0 {
        return Err(SeqError::EmptyFile { path: path.into() });
    }
    Ok(match crate::Compression::of_head(&head[..n]) {
        crate::Compression::Bgzf => Storage::Bgzf,
        crate::Compression::Gzip => Storage::Gzip,
        crate::Compression::Plain => Storage::Plain,
    })
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl IndexedFasta {
    /// Opens `path` for random access, building `path.fai` (and `path.gzi` for bgzip) if missing.
    ///
    /// Plain gzip cannot be read at random: such a file gives an error that says to use bgzip.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let storage = sniff(&path)?;
        if storage == Storage::Gzip {
            return Err(SeqError::Format {
                path,
                at: Location::File,
                message:
                    "gzip (not bgzip) files cannot be read at random; recompress with `bgzip` \
                          or decompress it"
                        .into(),
            });
        }
        let index_path = with_suffix(&path, ".fai");
        if storage == Storage::Bgzf {
            let gzi_path = with_suffix(&path, ".gzi");
            if gzi_path.exists() {
                check_gzi(&path, &gzi_path)?;
            } else {
                let gzi = build_gzi(&path)?;
                write_atomic(&gzi_path, |w| {
                    bgzf::gzi::io::Writer::new(w).write_index(&gzi)
                })?;
            }
        }
        let index = if index_path.exists() {
            fai::fs::read(&index_path).map_err(|e| SeqError::Format {
                path: index_path.clone(),
                at: Location::File,
                message: format!("not a valid .fai index: {e}"),
            })?
        } else {
            let index = build_fai(&path, storage)?;
            write_atomic(&index_path, |w| fai::io::Writer::new(w).write_index(&index))?;
            index
        };
        let sequences: Vec<fai::Record> = index.clone().into();
        let reader = match storage {
            Storage::Bgzf => {
                let inner = bgzf::io::indexed_reader::Builder::default()
                    .build_from_path(&path)
                    .map_err(|e| SeqError::io(&path, e))?;
                fasta::io::IndexedReader::new(fasta::io::BufReader::Bgzf(inner), index)
            }
            _ => {
                let file = File::open(&path).map_err(|e| SeqError::io(&path, e))?;
                fasta::io::IndexedReader::new(
                    fasta::io::BufReader::Uncompressed(io::BufReader::new(file)),
                    index,
                )
            }
        };
        let mut fasta = IndexedFasta {
            path,
            index_path,
            reader,
            sequences,
        };
        fasta.validate()?;
        Ok(fasta)
    }

    /// The FASTA path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names and lengths of the indexed sequences, in file order.
    pub fn sequences(&self) -> Vec<IndexedSequence> {
        self.sequences
            .iter()
            .map(|r| IndexedSequence {
                name: String::from_utf8_lossy(r.name()).into_owned(),
                length: r.length(),
            })
            .collect()
    }

    /// Fetches the bases of `region` (with the alphabet policy applied).
    ///
    /// The returned record is named `name:start-end` (1-based, inclusive).
    pub fn fetch(&mut self, region: &GenomicRegion) -> Result<SequenceRecord> {
        let region_error = |message: String| SeqError::Region {
            region: region.to_string(),
            message,
        };
        let entry = self
            .sequences
            .iter()
            .find(|r| r.name() == region.name.as_bytes())
            .ok_or_else(|| {
                let names: Vec<String> = self
                    .sequences()
                    .into_iter()
                    .map(|s| s.name)
                    .take(5)
                    .collect();
                region_error(format!(
                    "no sequence named '{}' in {} (sequences: {}{})",
                    region.name,
                    self.path.display(),
                    names.join(", "),
                    if self.sequences.len() > 5 {
                        ", ..."
                    } else {
                        ""
                    }
                ))
            })?;
        let length = entry.length();
        let end = region.end.unwrap_or(length);
        if end > length || region.start >= end {
            return Err(region_error(format!(
                "outside the sequence (length {length})"
            )));
        }
        let full = GenomicRegion {
            name: region.name.clone(),
            start: region.start,
            end: Some(end),
        };
        let query: NoodlesRegion = full
            .to_string()
            .parse()
            .map_err(|e: noodles::core::region::ParseError| region_error(e.to_string()))?;
        let raw = self
            .reader
            .query(&query)
            .map_err(|e| SeqError::io(&self.path, e))?;
        let bases = raw.sequence().as_ref();
        let (sequence, soft_mask) =
            alphabet::normalize(bases).map_err(|bad| SeqError::InvalidBase {
                path: self.path.clone(),
                at: Location::Record {
                    index: 0,
                    name: Some(full.to_string()),
                },
                position: crate::Position::at_offset(bad.offset as usize),
                byte: bad.byte,
            })?;
        if sequence.len() as u64 != end - region.start {
            return Err(self.mismatch(
                &region.name,
                format!(
                    "read {} bases for a {}-base region",
                    sequence.len(),
                    end - region.start
                ),
            ));
        }
        Ok(SequenceRecord {
            name: full.to_string(),
            description: None,
            sequence,
            soft_mask,
            quality: None,
        })
    }

    fn mismatch(&self, name: &str, message: String) -> SeqError {
        SeqError::IndexMismatch {
            index: self.index_path.clone(),
            fasta: self.path.clone(),
            name: name.to_string(),
            message,
        }
    }

    /// Checks every index entry against the file: the byte before each sequence ends a header
    /// line, the first line has the declared number of bases, and the sequence ends where the
    /// index says (followed by a line break, a header or the end of the file).
    fn validate(&mut self) -> Result<()> {
        let entries = self.sequences.clone();
        for entry in &entries {
            let name = String::from_utf8_lossy(entry.name()).into_owned();
            let offset = entry.position();
            let (line_bases, line_width) =
                (entry.line_base_count().get(), entry.line_width().get());
            if offset == 0 || line_bases == 0 || line_width < line_bases {
                return Err(self.mismatch(&name, "offset or line lengths are invalid".into()));
            }
            let before = self.bytes_at(offset - 1, 1)?;
            if before != b"\n" {
                return Err(self.mismatch(
                    &name,
                    format!("byte before offset {offset} is not the end of a header line"),
                ));
            }
            let length = entry.length();
            let first_line = length.min(line_bases);
            let first = self.bytes_at(offset, (first_line + 2) as usize)?;
            let bases_in_line = first
                .iter()
                .take_while(|&&b| b != b'\n' && b != b'\r' && b != b'>')
                .count() as u64;
            let expected_break = length > line_bases;
            if bases_in_line < first_line || (expected_break && bases_in_line != line_bases) {
                return Err(self.mismatch(
                    &name,
                    format!(
                        "first sequence line has {bases_in_line} bases, index says {}",
                        if expected_break {
                            line_bases
                        } else {
                            first_line
                        }
                    ),
                ));
            }
            if length > 0 {
                let full_lines = (length - 1) / line_bases;
                let last = offset + full_lines * line_width + (length - 1) % line_bases;
                let tail = self.bytes_at(last, 2)?;
                let ok = match tail.as_slice() {
                    [b, rest @ ..] => {
                        b.is_ascii_alphabetic()
                            && matches!(rest.first(), None | Some(b'\n' | b'\r' | b'>'))
                    }
                    [] => false,
                };
                if !ok {
                    return Err(self.mismatch(
                        &name,
                        format!("sequence does not end at base {length} where the index says"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Reads up to `n` bytes at uncompressed offset `pos` (fewer at the end of the file).
    fn bytes_at(&mut self, pos: u64, n: usize) -> Result<Vec<u8>> {
        let inner = self.reader.get_mut();
        let path = self.path.clone();
        let io_err = |e| SeqError::io(&path, e);
        inner.seek(SeekFrom::Start(pos)).map_err(io_err)?;
        let mut buf = vec![0u8; n];
        let mut got = 0;
        while got < n {
            let chunk = inner.fill_buf().map_err(|e| SeqError::io(&self.path, e))?;
            if chunk.is_empty() {
                break;
            }
            let k = chunk.len().min(n - got);
            buf[got..got + k].copy_from_slice(&chunk[..k]);
            inner.consume(k);
            got += k;
        }
        buf.truncate(got);
        Ok(buf)
    }
}

/// A reader that passes its input through except for blank lines at the very end of it.
///
/// noodles' FASTA indexer takes an empty last line for a sequence line of the wrong length
/// ("invalid line bases: expected 70, got 62"), so a FASTA ending in a blank line (the bundled
/// phage genome, many editors' output) could be read but not indexed. Blank lines elsewhere
/// pass through (and are refused by the indexer, as samtools refuses them); dropping bytes only
/// at the end leaves every offset in the index unchanged.
struct WithoutTrailingBlankLines<R> {
    inner: R,
    /// Newline bytes that may turn out to be trailing blank lines.
    pending: Vec<u8>,
    /// Bytes ready to hand out, from `ready_at`.
    ready: Vec<u8>,
    ready_at: usize,
    /// Whether the last byte handed out was a `\n` (a following newline starts a blank line).
    after_newline: bool,
}

impl<R: io::Read> WithoutTrailingBlankLines<R> {
    fn new(inner: R) -> Self {
        WithoutTrailingBlankLines {
            inner,
            pending: Vec::new(),
            ready: Vec::new(),
            ready_at: 0,
            after_newline: false,
        }
    }
}

impl<R: io::Read> io::Read for WithoutTrailingBlankLines<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.ready_at == self.ready.len() {
            let mut chunk = vec![0u8; 1 << 16];
            let n = self.inner.read(&mut chunk)?;
            if n == 0 {
                // End of input: what is pending is trailing blank lines (or line ends of
                // them), dropped.
                return Ok(0);
            }
            let mut data = std::mem::take(&mut self.pending);
            data.extend_from_slice(&chunk[..n]);
            let newline = |b: &u8| matches!(b, b'\n' | b'\r');
            let run = data.iter().rposition(|b| !newline(b)).map_or(0, |p| p + 1);
            // The trailing run of line-end bytes: the first `\n` ends the last line (unless
            // the output already ended with one); the rest would be blank lines.
            let keep = if run == 0 && self.after_newline {
                0
            } else {
                data[run..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(run, |p| run + p + 1)
            };
            self.pending = data.split_off(keep);
            if let Some(&last) = data.last() {
                self.after_newline = last == b'\n';
            }
            self.ready = data;
            self.ready_at = 0;
        }
        let n = out.len().min(self.ready.len() - self.ready_at);
        out[..n].copy_from_slice(&self.ready[self.ready_at..self.ready_at + n]);
        self.ready_at += n;
        Ok(n)
    }
}

fn build_fai(path: &Path, storage: Storage) -> Result<fai::Index> {
    let index_error = |e: io::Error| SeqError::Format {
        path: path.to_path_buf(),
        at: Location::File,
        message: format!("cannot index: {e}"),
    };
    let file = File::open(path).map_err(|e| SeqError::io(path, e))?;
    let mut records = Vec::new();
    let mut push_all = |mut indexer: fasta::io::Indexer<Box<dyn BufRead>>| -> Result<()> {
        while let Some(record) = indexer
            .index_record()
            .map_err(|e| index_error(io::Error::other(e)))?
        {
            records.push(record);
        }
        Ok(())
    };
    let reader: Box<dyn BufRead> = match storage {
        Storage::Bgzf => Box::new(io::BufReader::new(WithoutTrailingBlankLines::new(
            bgzf::io::Reader::new(file),
        ))),
        _ => Box::new(io::BufReader::new(WithoutTrailingBlankLines::new(file))),
    };
    push_all(fasta::io::Indexer::new(reader))?;
    if records.is_empty() {
        return Err(SeqError::Format {
            path: path.to_path_buf(),
            at: Location::File,
            message: "no FASTA records to index".into(),
        });
    }
    Ok(fai::Index::from(records))
}

/// Checks an existing `.gzi` against its bgzip file before any read goes through it: both
/// offsets strictly increasing, each uncompressed step at most one BGZF block (64 KiB), and each
/// compressed offset inside the file and at the start of a BGZF block. A corrupt index (say, two
/// entries' offsets swapped) used to return bases from another position with exit 0.
fn check_gzi(fasta: &Path, gzi_path: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    const BGZF_MAGIC: [u8; 4] = [0x1f, 0x8b, 0x08, 0x04];
    const MAX_BLOCK: u64 = 1 << 16;
    let bad = |message: String| SeqError::Format {
        path: gzi_path.to_path_buf(),
        at: Location::File,
        message: format!(
            "{message}; the index does not describe {} (delete it to rebuild it)",
            fasta.display()
        ),
    };
    let index =
        bgzf::gzi::fs::read(gzi_path).map_err(|e| bad(format!("not a valid .gzi index ({e})")))?;
    let entries: &[(u64, u64)] = index.as_ref();
    let mut file = File::open(fasta).map_err(|e| SeqError::io(fasta, e))?;
    let size = file.metadata().map_err(|e| SeqError::io(fasta, e))?.len();
    let mut previous = (0u64, 0u64);
    for (i, &(compressed, uncompressed)) in entries.iter().enumerate() {
        let entry = i + 1;
        if compressed <= previous.0 || uncompressed <= previous.1 {
            return Err(bad(format!(
                "entry {entry} ({compressed}, {uncompressed}) does not follow ({}, {})",
                previous.0, previous.1
            )));
        }
        if uncompressed - previous.1 > MAX_BLOCK {
            return Err(bad(format!(
                "entry {entry} is {} bases after the previous one, more than a BGZF block holds",
                uncompressed - previous.1
            )));
        }
        if compressed >= size {
            return Err(bad(format!(
                "entry {entry} points at byte {compressed}, beyond the file's {size} bytes"
            )));
        }
        let mut magic = [0u8; 4];
        file.seek(SeekFrom::Start(compressed))
            .and_then(|_| file.read_exact(&mut magic))
            .map_err(|e| SeqError::io(fasta, e))?;
        if magic != BGZF_MAGIC {
            return Err(bad(format!(
                "entry {entry} points at byte {compressed}, which is not the start of a BGZF block"
            )));
        }
        previous = (compressed, uncompressed);
    }
    Ok(())
}

/// Builds a `.gzi` index of a bgzip file: (compressed, uncompressed) offsets of every block
/// after the first.
fn build_gzi(path: &Path) -> Result<bgzf::gzi::Index> {
    let file = File::open(path).map_err(|e| SeqError::io(path, e))?;
    let mut reader = bgzf::io::Reader::new(file);
    let mut entries = Vec::new();
    let mut uncompressed = 0u64;
    loop {
        let len = {
            let buf = reader
                .fill_buf()
                .map_err(|e| SeqError::CorruptCompression {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
            buf.len()
        };
        if len == 0 {
            break;
        }
        let compressed = reader.virtual_position().compressed();
        if compressed > 0 {
            entries.push((compressed, uncompressed));
        }
        uncompressed += len as u64;
        reader.consume(len);
    }
    Ok(bgzf::gzi::Index::from(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_parsing() {
        let r: GenomicRegion = "chr2:5-10".parse().unwrap();
        assert_eq!(
            r,
            GenomicRegion {
                name: "chr2".into(),
                start: 4,
                end: Some(10)
            }
        );
        let r: GenomicRegion = "chrM".parse().unwrap();
        assert_eq!((r.start, r.end), (0, None));
        let r: GenomicRegion = "chrM:7".parse().unwrap();
        assert_eq!((r.start, r.end), (6, None));
        assert!("chr1:10-5".parse::<GenomicRegion>().is_err());
        assert!("chr1:x-5".parse::<GenomicRegion>().is_err());
        assert_eq!(r.to_string(), "chrM:7");
    }
}
