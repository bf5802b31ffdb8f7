//! A genome held in memory: names and normalised sequences of every record.

use std::path::Path;

use crate::{error::Result, fastx::read_all, SeqError, SequenceRecord};

/// Every record of a FASTA file, in memory (a bacterial genome, or the chromosomes a pretraining
/// run samples windows from).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Genome {
    records: Vec<SequenceRecord>,
}

impl Genome {
    /// Reads a FASTA/FASTQ file (plain, gzip, bgzip); duplicate record names are an error.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let genome = Genome::from_records(read_all(path)?);
        let mut names: Vec<&str> = genome.records.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(SeqError::Format {
                path: path.to_path_buf(),
                at: crate::Location::File,
                message: format!("two records are named '{}'", w[0]),
            });
        }
        if genome.records.is_empty() {
            return Err(SeqError::EmptyFile {
                path: path.to_path_buf(),
            });
        }
        Ok(genome)
    }

    /// A genome from records already read.
    pub fn from_records(records: Vec<SequenceRecord>) -> Self {
        Genome { records }
    }

    /// The records.
    pub fn records(&self) -> &[SequenceRecord] {
        &self.records
    }

    /// Record names, in file order.
    pub fn names(&self) -> Vec<String> {
        self.records.iter().map(|r| r.name.clone()).collect()
    }

    /// Record lengths, in file order.
    pub fn lengths(&self) -> Vec<usize> {
        self.records.iter().map(SequenceRecord::len).collect()
    }

    /// Bases `[start, end)` of record `record`.
    ///
    /// # Panics
    /// If the record or range does not exist (windows come from this genome's own lengths).
    pub fn bases(&self, record: usize, start: usize, end: usize) -> &[u8] {
        &self.records[record].sequence[start..end]
    }
}
