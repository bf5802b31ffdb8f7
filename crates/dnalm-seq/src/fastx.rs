//! Streaming FASTA/FASTQ input.
//!
//! Parsing is done by [`needletail`]: it is the fastest well-kept FASTA/FASTQ parser in Rust
//! (buffer-reusing, no per-line allocation, measured well above 1 GB/s on plain FASTA), reads
//! FASTA and FASTQ through one API, and detects gzip (bgzip included: it is multi-member gzip) by
//! its magic bytes rather than by file name. Memory stays constant: one record is held at a time.
//! `noodles` is used beside it where it is the better tool (the `.fai` index and BGZF random
//! access, see [`crate::fai`]).
//!
//! Every sequence goes through the [alphabet policy](crate::alphabet) as it is read.

use std::{
    fs::File,
    io::{self, Read},
    path::{Path, PathBuf},
};

use needletail::errors::{ParseError, ParseErrorKind};

use crate::{
    alphabet::{self, SoftMask},
    error::{Location, Result, SeqError},
};

/// One FASTA/FASTQ record after the alphabet policy.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SequenceRecord {
    /// The name: the header up to the first whitespace.
    pub name: String,
    /// The rest of the header after the name, if any.
    pub description: Option<String>,
    /// Normalised bases (`ACGTN` only).
    pub sequence: Vec<u8>,
    /// Which bases were lowercase (soft-masked) in the input.
    pub soft_mask: SoftMask,
    /// FASTQ quality string (Phred+33 as in the file); `None` for FASTA.
    pub quality: Option<Vec<u8>>,
}

impl SequenceRecord {
    /// Creates a record from already normalised bases with no mask.
    pub fn new(name: impl Into<String>, sequence: Vec<u8>) -> Self {
        SequenceRecord {
            name: name.into(),
            sequence,
            ..Default::default()
        }
    }

    /// Number of bases.
    pub fn len(&self) -> usize {
        self.sequence.len()
    }

    /// Whether the record has no bases.
    pub fn is_empty(&self) -> bool {
        self.sequence.is_empty()
    }

    fn clear(&mut self) {
        self.name.clear();
        self.description = None;
        self.sequence.clear();
        self.soft_mask.clear();
        self.quality = None;
    }
}

/// A streaming FASTA/FASTQ reader over a file (plain, gzip or bgzip) or standard input (`-`).
///
/// ```no_run
/// use dnalm_seq::{FastxReader, SequenceRecord};
/// let mut reader = FastxReader::from_path("genome.fa.gz")?;
/// let mut record = SequenceRecord::default();
/// while reader.read_record(&mut record)? {
///     println!("{} {}", record.name, record.len());
/// }
/// # Ok::<_, dnalm_seq::SeqError>(())
/// ```
pub struct FastxReader {
    path: PathBuf,
    inner: Box<dyn needletail::FastxReader>,
    records_read: u64,
}

impl FastxReader {
    /// Opens `path` (`-` is standard input), detecting gzip/bgzip by content.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let input: Box<dyn Read + Send> = if path.as_os_str() == "-" {
            Box::new(io::stdin())
        } else {
            Box::new(crate::open_file(&path)?)
        };
        match Self::from_reader(input, &path) {
            // A gzip stream cut before its first byte of output looks empty to the parser.
            Err(SeqError::EmptyFile { .. }) if path.as_os_str() != "-" => {
                Err(check_gzip(&path).unwrap_or(SeqError::EmptyFile { path }))
            }
            other => other,
        }
    }

    /// Reads from any byte stream; `path` is only used in error messages.
    pub fn from_reader(input: Box<dyn Read + Send>, path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let inner = needletail::parse_fastx_reader(input).map_err(|e| map_error(&path, 0, e))?;
        Ok(FastxReader {
            path,
            inner,
            records_read: 0,
        })
    }

    /// The path this reader reads (as given).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the next record into `record`, reusing its buffers. Returns `false` at end of input.
    pub fn read_record(&mut self, record: &mut SequenceRecord) -> Result<bool> {
        let Some(next) = self.inner.next() else {
            return Ok(false);
        };
        self.records_read += 1;
        let index = self.records_read;
        let raw = next.map_err(|e| map_error(&self.path, index, e))?;
        record.clear();
        let header = raw.id();
        let (name, description) = split_header(header);
        if name.is_empty() {
            return Err(SeqError::Format {
                path: self.path.clone(),
                at: Location::Record { index, name: None },
                message: format!("empty record name (line {})", raw.start_line_number()),
            });
        }
        record.name = String::from_utf8_lossy(name).into_owned();
        record.description = description.map(|d| String::from_utf8_lossy(d).into_owned());
        alphabet::normalize_into(raw.raw_seq(), &mut record.sequence, &mut record.soft_mask)
            .map_err(|bad| SeqError::InvalidBase {
                path: self.path.clone(),
                at: Location::Record {
                    index,
                    name: Some(record.name.clone()),
                },
                position: crate::Position::at_offset(bad.offset as usize),
                byte: bad.byte,
            })?;
        record.quality = raw.qual().map(<[u8]>::to_vec);
        Ok(true)
    }

    /// An iterator over owned records.
    pub fn records(self) -> Records {
        Records { reader: self }
    }
}

/// Iterator over the records of a [`FastxReader`].
pub struct Records {
    reader: FastxReader,
}

impl Iterator for Records {
    type Item = Result<SequenceRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut record = SequenceRecord::default();
        match self.reader.read_record(&mut record) {
            Ok(true) => Some(Ok(record)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// Reads every record of a FASTA/FASTQ file into memory (for genomes that fit in memory).
pub fn read_all(path: impl AsRef<Path>) -> Result<Vec<SequenceRecord>> {
    FastxReader::from_path(path)?.records().collect()
}

/// If `path` is gzip that does not decompress cleanly, the error saying so.
fn check_gzip(path: &Path) -> Option<SeqError> {
    let mut file = File::open(path).ok()?;
    let mut magic = [0u8; 2];
    file.read_exact(&mut magic).ok()?;
    if crate::Compression::of_head(&magic) == crate::Compression::Plain {
        return None;
    }
    let file = File::open(path).ok()?;
    io::copy(
        &mut flate2::read::MultiGzDecoder::new(file),
        &mut io::sink(),
    )
    .err()
    .map(|e| SeqError::CorruptCompression {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Splits a FASTA/FASTQ header into name and description at the first whitespace.
pub fn split_header(header: &[u8]) -> (&[u8], Option<&[u8]>) {
    match header.iter().position(u8::is_ascii_whitespace) {
        Some(i) => {
            let rest = header[i..].trim_ascii();
            (&header[..i], (!rest.is_empty()).then_some(rest))
        }
        None => (header, None),
    }
}

fn map_error(path: &Path, record: u64, e: ParseError) -> SeqError {
    let path = path.to_path_buf();
    let at = if e.position.line > 0 {
        Location::Line(e.position.line)
    } else if record > 0 {
        Location::Record {
            index: record,
            name: e.position.id.clone(),
        }
    } else {
        Location::File
    };
    match e.kind {
        ParseErrorKind::EmptyFile => SeqError::EmptyFile { path },
        ParseErrorKind::Io => {
            let lower = e.msg.to_ascii_lowercase();
            if ["deflate", "gzip", "unexpected end of file", "corrupt"]
                .iter()
                .any(|w| lower.contains(w))
            {
                SeqError::CorruptCompression {
                    path,
                    message: e.msg,
                }
            } else {
                SeqError::io(path, io::Error::other(e.msg))
            }
        }
        ParseErrorKind::UnknownFormat => SeqError::Format {
            path,
            at: Location::Line(1),
            message: format!(
                "not FASTA or FASTQ: {} (a FASTA file starts with a '>' header line)",
                e.msg.trim_end_matches('.')
            ),
        },
        ParseErrorKind::UnexpectedEnd => SeqError::Format {
            path,
            at,
            message: "record is truncated (unexpected end of input)".into(),
        },
        _ => SeqError::Format {
            path,
            at,
            message: e.msg,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_str(data: &'static [u8]) -> Result<Vec<SequenceRecord>> {
        FastxReader::from_reader(Box::new(data), "test.fa")?
            .records()
            .collect()
    }

    #[test]
    fn reads_fasta_records_with_policy() {
        let recs = read_str(b">chr1 first one\nACGT\nacgn\n>chr2\nUUrY\n").unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].name, "chr1");
        assert_eq!(recs[0].description.as_deref(), Some("first one"));
        assert_eq!(recs[0].sequence, b"ACGTACGN");
        assert_eq!(recs[0].soft_mask.runs(), &[(4, 8)]);
        assert_eq!(recs[1].sequence, b"TTNN");
        assert_eq!(recs[1].quality, None);
    }

    #[test]
    fn reads_fastq() {
        let recs = read_str(b"@r1\nACGT\n+\nIIII\n@r2\nNN\n+\n##\n").unwrap();
        assert_eq!(recs[1].name, "r2");
        assert_eq!(recs[0].quality.as_deref(), Some(&b"IIII"[..]));
    }

    #[test]
    fn reads_gzip_and_multi_member_gzip() {
        let mut data = Vec::new();
        for part in [&b">a\nAC"[..], b"GT\n>b\nTT\n"] {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part).unwrap();
            data.extend(enc.finish().unwrap());
        }
        let recs: Vec<_> = FastxReader::from_reader(Box::new(io::Cursor::new(data)), "x.fa.gz")
            .unwrap()
            .records()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(recs[0].sequence, b"ACGT");
        assert_eq!(recs[1].sequence, b"TT");
    }

    #[test]
    fn invalid_base_names_record_and_position() {
        let err = read_str(b">a\nAC\n>b\nAC\nG-T\n").unwrap_err().to_string();
        assert_eq!(
            err,
            "test.fa:record 2 ('b'): invalid base '-' at position 4 (allowed: ACGTN, IUPAC codes, U; lowercase = soft-masked)"
        );
    }

    #[test]
    fn missing_header_and_empty_input() {
        let err = read_str(b"ACGT\n").unwrap_err().to_string();
        assert!(
            err.starts_with("test.fa:line 1: not FASTA or FASTQ"),
            "{err}"
        );
        assert!(matches!(read_str(b""), Err(SeqError::EmptyFile { .. })));
    }

    #[test]
    fn truncated_gzip_is_reported() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&b">a\nACGTACGTACGTACGTACGT\n".repeat(200))
            .unwrap();
        let mut data = enc.finish().unwrap();
        data.truncate(data.len() / 2);
        let result: Result<Vec<_>> =
            FastxReader::from_reader(Box::new(io::Cursor::new(data)), "t.fa.gz")
                .and_then(|r| r.records().collect());
        assert!(
            matches!(result, Err(SeqError::CorruptCompression { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn header_split() {
        assert_eq!(split_header(b"a b  c "), (&b"a"[..], Some(&b"b  c"[..])));
        assert_eq!(split_header(b"a"), (&b"a"[..], None));
        assert_eq!(split_header(b"a\t"), (&b"a"[..], None));
    }
}
