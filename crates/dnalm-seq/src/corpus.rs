//! Multi-genome corpora: many FASTA files read as one genome whose records remember their
//! genome, with per-genome sampling weights and split overrides, stored 2-bit packed and
//! memory-mapped so that a corpus of gigabases is sampled in bounded memory.
//!
//! A corpus is named by files, directories (every FASTA file in them) and TSV manifests
//! (`path<TAB>weight<TAB>split`, the last two optional; `#` comments). [`pack`] converts it once
//! into a `.dnapack` file: 4 bases per byte, `N` kept as runs (the alphabet policy has already
//! made every other IUPAC code `N`; soft-masking is not kept, as pretraining reads bases only).
//! [`PackedCorpus`] memory-maps it; the kernel pages in what windows touch, so resident memory
//! is bounded by the packed size (a quarter of the bases) and usually far less.
//!
//! Layout of a `.dnapack` file: `DNAPACK1`, the packed bases of every record (each starting on a
//! byte), the header (JSON: genomes, records with their genome, length, byte offset and `N` runs),
//! then the header's offset and length (u64 little-endian) and `DNAPACK1` again.

use std::{
    borrow::Cow,
    collections::HashMap,
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    window::{GenomeSplit, Segment},
    FastxReader, Genome, SeqError, SequenceRecord, Split,
};

const MAGIC: &[u8; 8] = b"DNAPACK1";
const FASTA_SUFFIXES: [&str; 8] = [
    ".fa",
    ".fasta",
    ".fna",
    ".fa.gz",
    ".fasta.gz",
    ".fna.gz",
    ".fa.bgz",
    ".fasta.bgz",
];

/// One genome of a corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusGenome {
    /// Its name: the file name without the FASTA suffixes.
    pub name: String,
    /// The FASTA file.
    pub path: PathBuf,
    /// Sampling weight from a manifest (relative; `None`: the corpus-wide rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// The split every record of this genome goes to, from a manifest (`None`: blocks are split
    /// like any genome's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
}

/// Whether `path` names a FASTA file by its suffix.
fn is_fasta_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    FASTA_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// The genome name of a FASTA path: its file name without the FASTA suffixes.
fn stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lower = name.to_lowercase();
    for s in FASTA_SUFFIXES.iter().rev() {
        if lower.ends_with(s) {
            return name[..name.len() - s.len()].to_string();
        }
    }
    name
}

/// Whether `path` is a manifest (a `.tsv` or `.txt` file) rather than a FASTA file.
fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("tsv" | "txt")
    )
}

/// Whether `inputs` name a corpus (several files, a directory, a manifest or a `.dnapack`)
/// rather than one FASTA file.
pub fn is_corpus(inputs: &[PathBuf]) -> bool {
    match inputs {
        [one] => one.is_dir() || is_manifest(one) || is_pack(one),
        _ => true,
    }
}

/// Whether `path` is a packed corpus (by its suffix).
pub fn is_pack(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "dnapack")
}

/// The genomes that `inputs` name: FASTA files as they are, directories as every FASTA file in
/// them (by name order), manifests line by line. Fails on a missing file (naming the manifest
/// line), a bad weight or split, a directory without FASTA files, or two genomes of one name.
pub fn corpus_genomes(inputs: &[PathBuf]) -> Result<Vec<CorpusGenome>, SeqError> {
    let mut genomes = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|e| SeqError::io(input, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_fasta_name(p))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(SeqError::invalid(
                    input.display().to_string(),
                    format!(
                        "no FASTA files ({}) in this directory",
                        FASTA_SUFFIXES.join(", ")
                    ),
                ));
            }
            genomes.extend(files.into_iter().map(|path| CorpusGenome {
                name: stem(&path),
                path,
                weight: None,
                split: None,
            }));
        } else if is_manifest(input) {
            genomes.extend(read_manifest(input)?);
        } else {
            if !input.is_file() {
                return Err(SeqError::io(
                    input,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                ));
            }
            genomes.push(CorpusGenome {
                name: stem(input),
                path: input.clone(),
                weight: None,
                split: None,
            });
        }
    }
    let mut seen: HashMap<&str, &Path> = HashMap::new();
    for g in &genomes {
        if let Some(first) = seen.insert(&g.name, &g.path) {
            return Err(SeqError::invalid(
                "corpus",
                format!(
                    "two genomes are named '{}' ({} and {}): genomes are named by file, so rename one",
                    g.name,
                    first.display(),
                    g.path.display()
                ),
            ));
        }
    }
    let weighted = genomes.iter().filter(|g| g.weight.is_some()).count();
    if weighted > 0 && weighted < genomes.len() {
        let missing = genomes.iter().find(|g| g.weight.is_none()).map(|g| &g.name);
        return Err(SeqError::invalid(
            "corpus",
            format!(
                "{weighted} of {} genomes have a manifest weight but '{}' has none: give every genome a weight or none",
                genomes.len(),
                missing.map(String::as_str).unwrap_or_default()
            ),
        ));
    }
    Ok(genomes)
}

/// Reads a manifest: `path<TAB>weight<TAB>split` per line (weight and split optional, `.` or
/// empty for none), paths relative to the manifest.
fn read_manifest(path: &Path) -> Result<Vec<CorpusGenome>, SeqError> {
    let text = std::fs::read_to_string(path).map_err(|e| SeqError::io(path, e))?;
    let base = path.parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |message: String| SeqError::at_line(path, i as u64 + 1, message);
        let cols: Vec<&str> = line.split('\t').map(str::trim).collect();
        if cols.len() > 3 {
            return Err(at(format!(
                "expected path<TAB>weight<TAB>split, found {} columns",
                cols.len()
            )));
        }
        let file = base.join(cols[0]);
        if !file.is_file() {
            return Err(at(format!(
                "'{}' is not a file (looked for {})",
                cols[0],
                file.display()
            )));
        }
        let weight = match cols.get(1).copied() {
            None | Some("" | ".") => None,
            Some(w) => match w.parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Some(v),
                _ => return Err(at(format!("weight '{w}' must be a positive number"))),
            },
        };
        let split = match cols.get(2).copied() {
            None | Some("" | ".") => None,
            Some(s) => Some(
                Split::parse(s)
                    .ok_or_else(|| at(format!("split '{s}' must be train, valid or test")))?,
            ),
        };
        out.push(CorpusGenome {
            name: stem(&file),
            path: file,
            weight,
            split,
        });
    }
    if out.is_empty() {
        return Err(SeqError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

/// One record of a packed corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackedRecord {
    /// Its name in the corpus (the FASTA name, or `genome:name` where several genomes share it).
    pub name: String,
    /// Its genome (index into the corpus's genomes).
    pub genome: usize,
    /// Bases.
    pub length: usize,
    /// Byte offset of its first base in the file.
    offset: u64,
    /// `[start, end)` runs of `N`, sorted.
    n_runs: Vec<(usize, usize)>,
}

impl PackedRecord {
    /// Its `N` bases.
    pub fn n_bases(&self) -> usize {
        self.n_runs.iter().map(|(s, e)| e - s).sum()
    }
}

/// What a pack's header holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PackHeader {
    genomes: Vec<CorpusGenome>,
    records: Vec<PackedRecord>,
    /// Names that were prefixed with their genome because several genomes use them.
    renamed: usize,
    /// Size and modification time (seconds) of each genome's file when packed.
    sources: Vec<(u64, u64)>,
}

/// What [`pack`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct PackSummary {
    /// Genomes.
    pub genomes: usize,
    /// Records.
    pub records: usize,
    /// Bases.
    pub bases: u64,
    /// Record names prefixed with their genome because several genomes use them.
    pub renamed: usize,
}

fn source_stamp(path: &Path) -> (u64, u64) {
    let meta = std::fs::metadata(path).ok();
    let size = meta.as_ref().map_or(0, std::fs::Metadata::len);
    let mtime = meta
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    (size, mtime)
}

/// 2-bit codes of `ACGT` (anything else, i.e. `N`, is 0 and kept as a run).
fn code(base: u8) -> u8 {
    match base {
        b'C' => 1,
        b'G' => 2,
        b'T' => 3,
        _ => 0,
    }
}

/// Packs `genomes` into `out` (a `.dnapack` file, written atomically), one record in memory at
/// a time; `progress` is called after each record with (genome, record name, bases so far).
pub fn pack(
    genomes: &[CorpusGenome],
    out: &Path,
    mut progress: impl FnMut(&str, &str, u64),
) -> Result<PackSummary, SeqError> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| SeqError::io(dir, e))?;
    let mut tmp = crate::temp_file_in(dir).map_err(|e| SeqError::io(out, e))?;
    let io = |e: std::io::Error| SeqError::io(out, e);
    let mut records: Vec<PackedRecord> = Vec::new();
    let mut total = 0u64;
    let (record_count, renamed) = {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        w.write_all(MAGIC).map_err(io)?;
        let mut offset = MAGIC.len() as u64;
        let mut packed = Vec::new();
        // Genomes that use a record name, by name (for the renaming below).
        let mut owners: HashMap<String, Vec<usize>> = HashMap::new();
        for (g, genome) in genomes.iter().enumerate() {
            let mut reader = FastxReader::from_path(&genome.path)?;
            let mut record = SequenceRecord::default();
            let first = records.len();
            while reader.read_record(&mut record)? {
                let owner = owners.entry(record.name.clone()).or_default();
                if owner.last() == Some(&g) {
                    return Err(SeqError::Format {
                        path: genome.path.clone(),
                        at: crate::Location::File,
                        message: format!("two records are named '{}'", record.name),
                    });
                }
                owner.push(g);
                let name = record.name.clone();
                let seq = &record.sequence;
                packed.clear();
                packed.extend(seq.chunks(4).map(|c| {
                    c.iter()
                        .enumerate()
                        .fold(0u8, |byte, (i, &b)| byte | (code(b) << (2 * i)))
                }));
                let mut n_runs = Vec::new();
                let mut i = 0;
                while let Some(p) = memchr::memchr(b'N', &seq[i..]) {
                    let start = i + p;
                    let end = seq[start..]
                        .iter()
                        .position(|&b| b != b'N')
                        .map_or(seq.len(), |q| start + q);
                    n_runs.push((start, end));
                    i = end;
                }
                w.write_all(&packed).map_err(io)?;
                records.push(PackedRecord {
                    name,
                    genome: g,
                    length: seq.len(),
                    offset,
                    n_runs,
                });
                offset += packed.len() as u64;
                total += seq.len() as u64;
                progress(&genome.name, &record.name, total);
            }
            if records.len() == first {
                return Err(SeqError::EmptyFile {
                    path: genome.path.clone(),
                });
            }
        }
        // Names used by more than one genome are prefixed with the genome. Names live only in
        // the header, written last, so one pass over the FASTA files is enough.
        let mut renamed = 0usize;
        for r in &mut records {
            if owners.get(&r.name).is_some_and(|o| o.len() > 1) {
                r.name = format!("{}:{}", genomes[r.genome].name, r.name);
                renamed += 1;
            }
        }
        let header = PackHeader {
            genomes: genomes.to_vec(),
            records,
            renamed,
            sources: genomes.iter().map(|g| source_stamp(&g.path)).collect(),
        };
        let json = serde_json::to_vec(&header)
            .map_err(|e| SeqError::invalid(out.display().to_string(), e.to_string()))?;
        w.write_all(&json).map_err(io)?;
        w.write_all(&offset.to_le_bytes()).map_err(io)?;
        w.write_all(&(json.len() as u64).to_le_bytes())
            .map_err(io)?;
        w.write_all(MAGIC).map_err(io)?;
        w.flush().map_err(io)?;
        (header.records.len(), header.renamed)
    };
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(out).map_err(|e| io(e.error))?;
    Ok(PackSummary {
        genomes: genomes.len(),
        records: record_count,
        bases: total,
        renamed,
    })
}

/// A packed corpus, memory-mapped.
#[derive(Debug)]
pub struct PackedCorpus {
    path: PathBuf,
    map: memmap2::Mmap,
    header: PackHeader,
}

/// Four bases per byte, decoded.
const DECODE: [[u8; 4]; 256] = {
    let mut table = [[0u8; 4]; 256];
    let bases = *b"ACGT";
    let mut byte = 0;
    while byte < 256 {
        let mut i = 0;
        while i < 4 {
            table[byte][i] = bases[(byte >> (2 * i)) & 3];
            i += 1;
        }
        byte += 1;
    }
    table
};

impl PackedCorpus {
    /// Opens (memory-maps) a `.dnapack` file.
    pub fn open(path: &Path) -> Result<PackedCorpus, SeqError> {
        let file = File::open(path).map_err(|e| SeqError::io(path, e))?;
        // Safety: the map is read-only and dnalm writes packs atomically (a new file renamed
        // into place), so a pack is not modified while mapped unless someone overwrites it in
        // place, which the format does not support. Mapping (rather than reading) is the point:
        // a multi-gigabase corpus is sampled in bounded memory.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| SeqError::io(path, e))?;
        let bad = |message: &str| SeqError::Format {
            path: path.to_path_buf(),
            at: crate::Location::File,
            message: format!(
                "not a dnalm corpus pack ({message}); make one with `dnalm corpus pack`"
            ),
        };
        let n = map.len();
        if n < 32 || &map[..8] != MAGIC || &map[n - 8..] != MAGIC {
            return Err(bad("no DNAPACK1 marks"));
        }
        let word = |at: usize| u64::from_le_bytes(map[at..at + 8].try_into().unwrap_or([0; 8]));
        let (offset, len) = (word(n - 24) as usize, word(n - 16) as usize);
        if offset.checked_add(len) != Some(n - 24) {
            return Err(bad("the header is not where the footer says"));
        }
        let header: PackHeader = serde_json::from_slice(&map[offset..offset + len])
            .map_err(|e| bad(&format!("header: {e}")))?;
        if header.records.iter().any(|r| {
            r.offset as usize + r.length.div_ceil(4) > offset || r.genome >= header.genomes.len()
        }) {
            return Err(bad("a record lies outside the packed bases"));
        }
        Ok(PackedCorpus {
            path: path.to_path_buf(),
            map,
            header,
        })
    }

    /// The pack's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The genomes.
    pub fn genomes(&self) -> &[CorpusGenome] {
        &self.header.genomes
    }

    /// The records, in corpus order (genome by genome, file order within each).
    pub fn records(&self) -> &[PackedRecord] {
        &self.header.records
    }

    /// Record names that were prefixed with their genome (shared by several genomes).
    pub fn renamed(&self) -> usize {
        self.header.renamed
    }

    /// Whether the pack was made from these genomes, with the files unchanged since (size and
    /// modification time).
    pub fn is_current(&self, genomes: &[CorpusGenome]) -> bool {
        self.header.genomes == genomes
            && genomes
                .iter()
                .map(|g| source_stamp(&g.path))
                .eq(self.header.sources.iter().copied())
    }

    /// Bases `[start, end)` of record `record`, uppercase `ACGTN`.
    ///
    /// # Panics
    /// If the record or range does not exist (windows come from the corpus's own lengths).
    pub fn bases(&self, record: usize, start: usize, end: usize) -> Vec<u8> {
        let r = &self.header.records[record];
        assert!(start <= end && end <= r.length, "range outside record");
        let data = &self.map[r.offset as usize..r.offset as usize + r.length.div_ceil(4)];
        let mut out = Vec::with_capacity(end - start + 4);
        let (first, last) = (start / 4, end.div_ceil(4));
        for &byte in &data[first..last] {
            out.extend_from_slice(&DECODE[byte as usize]);
        }
        let skip = start - first * 4;
        out.drain(..skip);
        out.truncate(end - start);
        // `N` runs overlapping the range (sorted, disjoint: binary search for the first).
        let from = r.n_runs.partition_point(|&(_, e)| e <= start);
        for &(s, e) in r.n_runs[from..].iter().take_while(|&&(s, _)| s < end) {
            out[s.max(start) - start..e.min(end) - start].fill(b'N');
        }
        out
    }
}

/// Genomes with a manifest split go to that split whole: their records' blocks are taken out of
/// every split and the whole records put into theirs.
pub fn apply_split_overrides(split: &mut GenomeSplit, corpus: &PackedCorpus) {
    let genomes = corpus.genomes();
    if genomes.iter().all(|g| g.split.is_none()) {
        return;
    }
    let forced = |record: usize| genomes[corpus.records()[record].genome].split;
    for segments in [&mut split.train, &mut split.valid, &mut split.test] {
        segments.retain(|s| forced(s.record).is_none());
    }
    for (r, record) in corpus.records().iter().enumerate() {
        if let Some(to) = forced(r) {
            let segment = Segment {
                record: r,
                start: 0,
                end: record.length,
            };
            match to {
                Split::Train => split.train.push(segment),
                Split::Valid => split.valid.push(segment),
                Split::Test => split.test.push(segment),
            }
        }
    }
    for segments in [&mut split.train, &mut split.valid, &mut split.test] {
        segments.sort_by_key(|s| (s.record, s.start));
    }
}

/// Per-record weights of window starts (for [`crate::window::RandomWindows::weighted`]) that
/// draw each genome of `corpus` by its weight (manifest weights, else 1 each when `uniform`) and
/// starts uniformly within it, over the `train` segments; `None` when windows are drawn by
/// length (every start equally likely), which needs no weights.
pub fn window_weights(
    corpus: &PackedCorpus,
    train: &[Segment],
    context: usize,
    uniform: bool,
) -> Option<Vec<f64>> {
    let genomes = corpus.genomes();
    let weight: Vec<f64> = if genomes.iter().all(|g| g.weight.is_some()) {
        genomes.iter().map(|g| g.weight.unwrap_or(1.0)).collect()
    } else if uniform {
        vec![1.0; genomes.len()]
    } else {
        return None;
    };
    let mut starts = vec![0f64; genomes.len()];
    for s in train.iter().filter(|s| s.len() >= context) {
        starts[corpus.records()[s.record].genome] += (s.len() - context + 1) as f64;
    }
    Some(
        corpus
            .records()
            .iter()
            .map(|r| {
                if starts[r.genome] > 0.0 {
                    weight[r.genome] / starts[r.genome]
                } else {
                    0.0
                }
            })
            .collect(),
    )
}

/// Where windows are cut from: one genome in memory, or a packed corpus.
#[derive(Debug)]
pub enum SequenceStore {
    /// One FASTA file, read whole.
    Genome(Genome),
    /// A multi-genome corpus, memory-mapped.
    Packed(PackedCorpus),
}

impl SequenceStore {
    /// Record names, in order.
    pub fn names(&self) -> Vec<String> {
        match self {
            SequenceStore::Genome(g) => g.names(),
            SequenceStore::Packed(p) => p.records().iter().map(|r| r.name.clone()).collect(),
        }
    }

    /// Record lengths, in order.
    pub fn lengths(&self) -> Vec<usize> {
        match self {
            SequenceStore::Genome(g) => g.lengths(),
            SequenceStore::Packed(p) => p.records().iter().map(|r| r.length).collect(),
        }
    }

    /// Bases `[start, end)` of record `record` (borrowed from memory, or decoded).
    ///
    /// # Panics
    /// If the record or range does not exist.
    pub fn bases(&self, record: usize, start: usize, end: usize) -> Cow<'_, [u8]> {
        match self {
            SequenceStore::Genome(g) => Cow::Borrowed(g.bases(record, start, end)),
            SequenceStore::Packed(p) => Cow::Owned(p.bases(record, start, end)),
        }
    }

    /// The genome of each record (all 0 for one FASTA file).
    pub fn record_genomes(&self) -> Vec<usize> {
        match self {
            SequenceStore::Genome(g) => vec![0; g.records().len()],
            SequenceStore::Packed(p) => p.records().iter().map(|r| r.genome).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_pack_gives_back_every_base_and_n_run() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.fa", ">chr1\nACGTNNNacgtAC\n>chr2\nGGNT\n");
        let b = write(dir.path(), "b.fasta", ">chr1\nTTTTTTTTT\n>x\nN\n");
        let genomes = corpus_genomes(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(genomes[1].name, "b");
        let out = dir.path().join("c.dnapack");
        let summary = pack(&genomes, &out, |_, _, _| {}).unwrap();
        assert_eq!(
            (summary.records, summary.bases, summary.renamed),
            (4, 27, 2)
        );
        let p = PackedCorpus::open(&out).unwrap();
        let names: Vec<&str> = p.records().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a:chr1", "chr2", "b:chr1", "x"]);
        let expect = [&b"ACGTNNNACGTAC"[..], b"GGNT", b"TTTTTTTTT", b"N"];
        for (r, e) in expect.iter().enumerate() {
            for s in 0..e.len() {
                for t in s..=e.len() {
                    assert_eq!(p.bases(r, s, t), &e[s..t], "record {r} [{s}, {t})");
                }
            }
        }
        assert!(p.is_current(&genomes));
        std::fs::write(&b, ">chr1\nTTTTTTTTTT\n>x\nN\n").unwrap();
        assert!(!p.is_current(&corpus_genomes(&[a, b]).unwrap()));
        // A genome with two records of one name, or none, is refused by name.
        let twice = write(dir.path(), "twice.fa", ">r\nAC\n>q\nA\n>r\nG\n");
        let empty = write(dir.path(), "empty.fa", "");
        for (file, needle) in [(twice, "two records are named 'r'"), (empty, "empty.fa")] {
            let genomes = corpus_genomes(&[file]).unwrap();
            let err = pack(&genomes, &dir.path().join("x.dnapack"), |_, _, _| {})
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
        assert!(!dir.path().join("x.dnapack").exists());
        let bad = write(dir.path(), "bad.dnapack", "DNAPACK1 but nothing else");
        let err = PackedCorpus::open(&bad).unwrap_err().to_string();
        assert!(
            err.contains("bad.dnapack") && err.contains("dnalm corpus pack"),
            "{err}"
        );
    }

    #[test]
    fn manifests_and_directories_name_genomes_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let g = dir.path().join("genomes");
        std::fs::create_dir(&g).unwrap();
        write(&g, "z.fa.gz", "");
        write(&g, "a.fna", ">r\nA\n");
        write(&g, "notes.txt", "");
        let from_dir = corpus_genomes(std::slice::from_ref(&g)).unwrap();
        let names: Vec<&str> = from_dir.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["a", "z"]);
        let m = write(
            dir.path(),
            "m.tsv",
            "# path weight split\ngenomes/a.fna\t2\ttest\ngenomes/z.fa.gz\t0.5\n",
        );
        let listed = corpus_genomes(&[m]).unwrap();
        assert_eq!(listed[0].weight, Some(2.0));
        assert_eq!(listed[0].split, Some(Split::Test));
        assert_eq!((listed[1].weight, listed[1].split), (Some(0.5), None));
        for (text, needle) in [
            (
                "genomes/missing.fa\n",
                "m2.tsv:line 1: 'genomes/missing.fa' is not a file",
            ),
            (
                "genomes/a.fna\t-1\n",
                "line 1: weight '-1' must be a positive number",
            ),
            (
                "# x\ngenomes/a.fna\t1\tholdout\n",
                "line 2: split 'holdout'",
            ),
            ("genomes/a.fna\t1\ngenomes/z.fa.gz\n", "'z' has none"),
            (
                "genomes/a.fna\ngenomes/a.fna\n",
                "two genomes are named 'a'",
            ),
        ] {
            let m = write(dir.path(), "m2.tsv", text);
            let err = corpus_genomes(&[m]).unwrap_err().to_string();
            let needle = needle.replace("m2.tsv", &dir.path().join("m2.tsv").display().to_string());
            assert!(err.contains(&needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn manifest_weights_draw_genomes_and_split_overrides_hold_whole_genomes_out() {
        use crate::window::{split_genome, RandomWindows, SplitConfig, SplitUnit};
        use rand::SeedableRng;
        let dir = tempfile::tempdir().unwrap();
        let seq = |n: usize, k: usize| -> String {
            (0..n)
                .map(|i| b"ACGT"[(i * 7 + i / 3 + k) % 4] as char)
                .collect()
        };
        write(
            dir.path(),
            "big.fa",
            &format!(">b1\n{}\n>b2\n{}\n", seq(30_000, 0), seq(20_000, 1)),
        );
        write(dir.path(), "small.fa", &format!(">s1\n{}\n", seq(5_000, 2)));
        write(dir.path(), "held.fa", &format!(">h1\n{}\n", seq(8_000, 3)));
        let m = write(
            dir.path(),
            "m.tsv",
            "big.fa\t1\nsmall.fa\t3\nheld.fa\t1\tvalid\n",
        );
        let genomes = corpus_genomes(&[m]).unwrap();
        let out = dir.path().join("c.dnapack");
        pack(&genomes, &out, |_, _, _| {}).unwrap();
        let corpus = PackedCorpus::open(&out).unwrap();
        let lengths: Vec<usize> = corpus.records().iter().map(|r| r.length).collect();
        let mut split = split_genome(
            &lengths,
            &SplitConfig {
                unit: SplitUnit::Block(1000),
                fractions: [0.8, 0.1, 0.1],
                seed: 1,
            },
        )
        .unwrap();
        apply_split_overrides(&mut split, &corpus);
        // The held-out genome (record 3) is in valid, whole, and nowhere else.
        assert!(split.train.iter().chain(&split.test).all(|s| s.record != 3));
        let held: Vec<_> = split.valid.iter().filter(|s| s.record == 3).collect();
        assert_eq!((held.len(), held[0].start, held[0].end), (1, 0, 8000));
        // Weights 1:3 between big and small (held has no training windows): small is drawn
        // three times as often as big, though it is a tenth of its length.
        let w = window_weights(&corpus, &split.train, 100, false).unwrap();
        let windows = RandomWindows::weighted(&split.train, 100, 0, &|r| w[r]).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let n = 40_000;
        let small = (0..n)
            .filter(|_| corpus.records()[windows.draw(&mut rng).record].genome == 1)
            .count();
        let share = small as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.015, "{share}");
        // Without manifest weights, `uniform` weighs genomes equally and `length` needs none.
        let plain =
            corpus_genomes(&[dir.path().join("big.fa"), dir.path().join("small.fa")]).unwrap();
        let out2 = dir.path().join("p.dnapack");
        pack(&plain, &out2, |_, _, _| {}).unwrap();
        let p2 = PackedCorpus::open(&out2).unwrap();
        let all = crate::window::whole_records(
            &p2.records().iter().map(|r| r.length).collect::<Vec<_>>(),
        );
        assert!(window_weights(&p2, &all, 100, false).is_none());
        let u = window_weights(&p2, &all, 100, true).unwrap();
        let big_total: f64 = all[..2]
            .iter()
            .map(|s| (s.len() - 99) as f64 * u[s.record])
            .sum();
        let small_total = (all[2].len() - 99) as f64 * u[2];
        assert!(
            (big_total - small_total).abs() < 1e-9,
            "{big_total} {small_total}"
        );
    }
}
