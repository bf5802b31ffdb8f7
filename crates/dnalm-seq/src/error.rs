//! The one error type of `dnalm-seq`.

use std::{io, path::PathBuf};

/// Everything that can go wrong while reading or sampling sequences and intervals.
///
/// Every variant names the file it came from (where there is one) and the place inside it
/// (line, record, position), so that the CLI can print one line that a user can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeqError {
    /// The file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file is empty (or decompresses to nothing).
    #[error("{}: file is empty", path.display())]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// The gzip/bgzip stream ends early or is corrupt.
    #[error("{}: truncated or corrupt gzip stream ({message})", path.display())]
    CorruptCompression {
        /// The file.
        path: PathBuf,
        /// What the decompressor said.
        message: String,
    },
    /// The content is not in the expected format.
    #[error("{}{}: {message}", path.display(), at.suffix())]
    Format {
        /// The file.
        path: PathBuf,
        /// Where in the file: `line 12`, `record 3 ('chr1')`, ...
        at: Location,
        /// What was wrong.
        message: String,
    },
    /// A sequence holds a character that the alphabet policy rejects.
    #[error(
        "{}{}: invalid base {} at position {position} (allowed: ACGTN, IUPAC codes, U; lowercase = soft-masked)",
        path.display(),
        at.suffix(),
        show_byte(*byte)
    )]
    InvalidBase {
        /// The file.
        path: PathBuf,
        /// The record or line holding the sequence.
        at: Location,
        /// Position of the base inside the sequence.
        position: crate::Position,
        /// The offending byte.
        byte: u8,
    },
    /// A `.fai` index does not describe its FASTA file.
    #[error("{}: index does not match {} for sequence '{name}': {message} (delete the index to rebuild it)", index.display(), fasta.display())]
    IndexMismatch {
        /// The index file.
        index: PathBuf,
        /// The FASTA file.
        fasta: PathBuf,
        /// The sequence whose entry is wrong.
        name: String,
        /// What does not match.
        message: String,
    },
    /// A region string or region request is invalid.
    #[error("region '{region}': {message}")]
    Region {
        /// The region as the user wrote it.
        region: String,
        /// What was wrong.
        message: String,
    },
    /// A parameter (weights, fractions, lengths...) is invalid.
    #[error("{what}: {message}")]
    Invalid {
        /// The parameter.
        what: String,
        /// What was wrong.
        message: String,
    },
}

/// A place inside a file, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// Nowhere in particular (the whole file).
    File,
    /// A 1-based line number.
    Line(u64),
    /// A 1-based record number, with the record's name when known.
    Record {
        /// 1-based record number.
        index: u64,
        /// The record's name, if it has one.
        name: Option<String>,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File => write!(f, ""),
            Location::Line(line) => write!(f, "line {line}"),
            Location::Record {
                index,
                name: Some(name),
            } => write!(f, "record {index} ('{name}')"),
            Location::Record { index, name: None } => write!(f, "record {index}"),
        }
    }
}

impl Location {
    /// `:line 3` style suffix for a path, empty for [`Location::File`].
    pub fn suffix(&self) -> String {
        match self {
            Location::File => String::new(),
            other => format!(":{other}"),
        }
    }
}

fn show_byte(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("'{}'", byte as char)
    } else {
        format!("byte 0x{byte:02x}")
    }
}

impl SeqError {
    /// Wraps an I/O error with the file it concerns.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        SeqError::Io {
            path: path.into(),
            source,
        }
    }

    /// A format error at a line of a file.
    pub fn at_line(path: impl Into<PathBuf>, line: u64, message: impl Into<String>) -> Self {
        SeqError::Format {
            path: path.into(),
            at: Location::Line(line),
            message: message.into(),
        }
    }

    /// A parameter error.
    pub fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        SeqError::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }
}

/// `Result` with [`SeqError`].
pub type Result<T, E = SeqError> = std::result::Result<T, E>;
