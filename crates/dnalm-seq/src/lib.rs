//! Genomic input for dnalm: everything between files on disk and normalised sequences.
//!
//! Data flows one way through dnalm; this crate is its first stage and knows nothing of tokens or
//! tensors. It provides:
//!
//! - [`alphabet`]: the one alphabet policy (uppercase `ACGTN`, soft-mask kept, IUPAC -> `N`,
//!   `U` -> `T`, anything else an error with file, record, position and character);
//! - [`FastxReader`]: streaming FASTA/FASTQ (plain, gzip, bgzip) through `needletail`;
//! - [`Genome`]: a whole FASTA in memory, for window sampling;
//! - [`corpus`]: many genomes (files, directories, manifests) packed 2-bit and memory-mapped;
//! - [`IndexedFasta`]: `.fai` random access to `chr:start-end` regions through `noodles`;
//! - [`interval`]: BED3..BED12 and GFF3 (through `noodles`) into [`Interval`]s, and an overlap index;
//! - [`task`]: labelled task tables (CSV/TSV/FASTA + `task.json`, split files or a split column);
//! - [`suite`]: the standard suites as distributed (GUE, NT downstream tasks, Genomic Benchmarks,
//!   BEND);
//! - [`window`]: fixed-stride tiling, random windows, leak-free genome splits;
//! - [`sampler`]: rarity-balanced sampling of windows by annotation class;
//! - [`shard`]: the contiguous partition of a job's items behind `--shard I/N`;
//! - [`stats`]: the summaries printed by `dnalm inspect`.
//!
//! ```no_run
//! use dnalm_seq::{FastxReader, SequenceRecord};
//! let mut reader = FastxReader::from_path("data/ecoli_MG1655.fa.gz")?;
//! let mut record = SequenceRecord::default();
//! while reader.read_record(&mut record)? {
//!     println!("{}: {} bp, {} soft-masked", record.name, record.len(), record.soft_mask.masked_bases());
//! }
//! # Ok::<_, dnalm_seq::SeqError>(())
//! ```

pub mod alphabet;
pub mod corpus;
mod error;
pub mod fai;
pub mod fastx;
pub mod feature_task;
mod genome;
pub mod interval;
pub mod motif;
mod position;
pub mod sampler;
pub mod shard;
pub mod stats;
pub mod suite;
pub mod task;
pub mod task_writer;
pub mod vcf;
pub mod window;

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read, Write},
    path::Path,
};

pub use alphabet::SoftMask;
pub use corpus::{PackedCorpus, SequenceStore};
pub use error::{Location, Result, SeqError};
pub use fai::{GenomicRegion, IndexedFasta};
pub use fastx::{FastxReader, SequenceRecord};
pub use genome::Genome;
pub use interval::{read_intervals, Interval, IntervalIndex, Strand};
pub use position::Position;
pub use shard::Shard;
pub use task::{Label, LabelledSequence, Split, Task, TaskSpec};

/// Opens a file for reading; a directory is refused as such (on Linux opening one succeeds, and
/// the first read then failed with a message about an empty file or a bare os error).
pub fn open_file(path: &Path) -> Result<File> {
    let file = File::open(path).map_err(|e| SeqError::io(path, e))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(SeqError::io(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "is a directory, not a file"),
        ));
    }
    Ok(file)
}

/// How a file's bytes are compressed, from its first bytes (the one place dnalm tells gzip from
/// bgzip from plain text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not gzip.
    Plain,
    /// gzip that is not BGZF (no random access).
    Gzip,
    /// Blocked gzip (bgzip): gzip with the `BC` extra field, indexable.
    Bgzf,
}

impl Compression {
    /// Reads the compression from up to the first 16 bytes of a file.
    ///
    /// ```
    /// use dnalm_seq::Compression;
    /// assert_eq!(Compression::of_head(b">chr1\nACGT"), Compression::Plain);
    /// assert_eq!(Compression::of_head(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
    /// let bgzf = [0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 6, 0, b'B', b'C', 2, 0];
    /// assert_eq!(Compression::of_head(&bgzf), Compression::Bgzf);
    /// ```
    pub fn of_head(head: &[u8]) -> Self {
        if head.len() < 2 || head[..2] != [0x1f, 0x8b] {
            Compression::Plain
        } else if head.len() >= 14 && head[3] & 4 != 0 && &head[12..14] == b"BC" {
            Compression::Bgzf
        } else {
            Compression::Gzip
        }
    }
}

/// Opens a text file for buffered reading, decompressing gzip/bgzip (detected by content).
pub fn open_text(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    let mut file = open_file(path)?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(|e| SeqError::io(path, e))?;
    let head = io::Cursor::new(magic[..n].to_vec()).chain(file);
    if Compression::of_head(&magic[..n]) != Compression::Plain {
        Ok(Box::new(BufReader::new(GzipText {
            inner: flate2::read::MultiGzDecoder::new(head),
            path: path.to_path_buf(),
        })))
    } else {
        Ok(Box::new(BufReader::new(head)))
    }
}

/// A gzip stream whose errors say the file is truncated or corrupt.
struct GzipText<R> {
    inner: flate2::read::MultiGzDecoder<R>,
    path: std::path::PathBuf,
}

impl<R: Read> Read for GzipText<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{}: truncated or corrupt gzip stream ({e})",
                    self.path.display()
                ),
            )
        })
    }
}

/// A temporary file in `dir` (`.dnalm-*.tmp`) for output that is renamed into place when
/// complete. Unlike `tempfile`'s default (0600), it is created with mode 0666 less the umask,
/// like any file the user's tools write, so the outputs it becomes are readable as the umask
/// says.
pub fn temp_file_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".dnalm-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

/// A temporary directory in `dir` (`<prefix>*`) for output that is renamed into place when
/// complete, created with mode 0777 less the umask (not `tempfile`'s 0700).
pub fn temp_dir_in(dir: &Path, prefix: &str) -> io::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o777));
    }
    builder.tempdir_in(dir)
}

/// Writes a file atomically: `write` fills a temporary file in the same directory, which is
/// then renamed over `path`. If anything fails, `path` is left as it was.
pub fn write_atomic<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut io::BufWriter<&mut File>) -> io::Result<()>,
{
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = temp_file_in(dir).map_err(|e| SeqError::io(path, e))?;
    {
        let mut w = io::BufWriter::new(tmp.as_file_mut());
        write(&mut w).map_err(|e| SeqError::io(path, e))?;
        w.flush().map_err(|e| SeqError::io(path, e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| SeqError::io(path, e))?;
    tmp.persist(path).map_err(|e| SeqError::io(path, e.error))?;
    Ok(())
}
