//! Labelled task tables: the layout every dnalm task uses.
//!
//! A task is a directory holding `task.json` and its sequences:
//!
//! ```text
//! my_task/
//!   task.json        {"name": "...", "num_classes": 2, "label_names": [...], "description": "..."}
//!                    or {"name": "...", "regression": true}
//!                    or {"name": "...", "multi_label": true, "label_names": [...]}
//!                    or {"name": "...", "per_base": true, "label_names": [...]}
//!   train.csv        sequence,label[,id][,split]   (.tsv: tab-separated; .csv.gz/.tsv.gz too)
//!   valid.csv
//!   test.csv
//! ```
//!
//! or one table (`data.csv`, any name) with a `split` column (`train`, `valid`/`validation`/`val`,
//! `test`). Sequences may also come as FASTA whose headers carry `label=...` (and optionally
//! `split=...`): `>seq1 label=1 split=train`. Other keys of `task.json` (counts, sources...) are kept
//! but not interpreted. Every sequence passes the [alphabet policy](crate::alphabet); labels are
//! checked against `task.json`.
//!
//! A multi-label task (several binary labels per sequence, e.g. chromatin profiles) writes each
//! row's labels as a `;`-separated list of names (or indices) from `label_names`, an empty cell
//! meaning none: `ACGT...,CTCF;DNase`.
//!
//! A per-base task (segmentation: gene structure, element annotation) labels every base with one
//! of `label_names`, written as one character per base, the class index in base 36 (`0`–`9`,
//! then `a`–`z`; at most 36 classes): `ACGTAC,001122`. The label must be exactly as long as the
//! sequence.

use std::{
    fs,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    alphabet,
    error::{Location, Result, SeqError},
    fastx::FastxReader,
    open_text,
};

/// What kind of label a task has.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskKind {
    /// Classes `0..num_classes`, optionally named.
    Classification {
        /// Number of classes (at least 2).
        num_classes: u32,
        /// Names of the classes, by index; labels may be written as these names.
        label_names: Option<Vec<String>>,
    },
    /// A real-valued target.
    Regression,
    /// Any subset of named binary labels per sequence.
    MultiLabel {
        /// Names of the labels, by index (at least one).
        label_names: Vec<String>,
    },
    /// One class per base (segmentation).
    PerBase {
        /// Names of the classes, by index (2 to [`MAX_BASE_CLASSES`]).
        label_names: Vec<String>,
    },
}

/// The contents of `task.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskSpec {
    /// Task name.
    pub name: String,
    /// Free-text description.
    pub description: Option<String>,
    /// Classification or regression.
    pub kind: TaskKind,
    /// The tokenizer the task's sequences are meant for (`"tokenizer": "kmer:6"`), when it says.
    pub tokenizer: Option<String>,
}

#[derive(Deserialize)]
struct TaskJson {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    num_classes: Option<u32>,
    #[serde(default)]
    regression: Option<bool>,
    #[serde(default)]
    multi_label: Option<bool>,
    #[serde(default)]
    per_base: Option<bool>,
    #[serde(default)]
    label_names: Option<Vec<String>>,
    #[serde(default)]
    tokenizer: Option<String>,
}

impl TaskSpec {
    /// Reads and checks a `task.json` file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(|e| SeqError::io(path, e))?;
        let bad = |message: String| SeqError::Format {
            path: path.to_path_buf(),
            at: Location::File,
            message,
        };
        let raw: TaskJson = serde_json::from_str(&text).map_err(|e| {
            SeqError::at_line(path, e.line() as u64, format!("invalid task.json: {e}"))
        })?;
        if raw.per_base.unwrap_or(false) {
            if raw.regression.unwrap_or(false) || raw.multi_label.unwrap_or(false) {
                return Err(bad(
                    "gives \"per_base\": true with \"regression\" or \"multi_label\"; a per-base task has one class per base".into(),
                ));
            }
            let names = raw.label_names.unwrap_or_default();
            if names.len() < 2 || names.len() > MAX_BASE_CLASSES {
                return Err(bad(format!(
                    "\"per_base\": true needs \"label_names\" with 2 to {MAX_BASE_CLASSES} class names (has {})",
                    names.len()
                )));
            }
            if let Some(n) = raw.num_classes.filter(|&n| n as usize != names.len()) {
                return Err(bad(format!(
                    "\"label_names\" has {} names but \"num_classes\" is {n}",
                    names.len()
                )));
            }
            check_label_names(&names).map_err(bad)?;
            return Ok(TaskSpec {
                name: raw.name,
                description: raw.description,
                kind: TaskKind::PerBase { label_names: names },
                tokenizer: raw.tokenizer,
            });
        }
        if raw.multi_label.unwrap_or(false) {
            if raw.regression.unwrap_or(false) {
                return Err(bad(
                    "gives both \"multi_label\": true and \"regression\": true".into(),
                ));
            }
            let names = raw.label_names.unwrap_or_default();
            if names.is_empty() {
                return Err(bad(
                    "\"multi_label\": true needs \"label_names\" (one name per label)".into(),
                ));
            }
            if let Some(n) = raw.num_classes.filter(|&n| n as usize != names.len()) {
                return Err(bad(format!(
                    "\"label_names\" has {} names but \"num_classes\" is {n}",
                    names.len()
                )));
            }
            check_label_names(&names).map_err(bad)?;
            return Ok(TaskSpec {
                name: raw.name,
                description: raw.description,
                kind: TaskKind::MultiLabel { label_names: names },
                tokenizer: raw.tokenizer,
            });
        }
        let kind = match (raw.regression.unwrap_or(false), raw.num_classes) {
            (true, Some(_)) => {
                return Err(bad(
                    "gives both \"regression\": true and \"num_classes\"".into()
                ))
            }
            (true, None) => TaskKind::Regression,
            (false, Some(n)) if n >= 2 => {
                if let Some(names) = &raw.label_names {
                    if names.len() != n as usize {
                        return Err(bad(format!(
                            "\"label_names\" has {} names but \"num_classes\" is {n}",
                            names.len()
                        )));
                    }
                }
                TaskKind::Classification {
                    num_classes: n,
                    label_names: raw.label_names,
                }
            }
            (false, Some(n)) => {
                return Err(bad(format!(
                    "\"num_classes\" is {n}; a task needs at least 2"
                )))
            }
            (false, None) => {
                return Err(bad(
                    "needs \"num_classes\" (classification) or \"regression\": true".into(),
                ))
            }
        };
        Ok(TaskSpec {
            name: raw.name,
            description: raw.description,
            kind,
            tokenizer: raw.tokenizer,
        })
    }

    /// Parses a label as written in a table.
    pub(crate) fn parse_label(&self, text: &str) -> std::result::Result<Label, String> {
        let text = text.trim();
        match &self.kind {
            TaskKind::Regression => text
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Label::Value)
                .ok_or_else(|| format!("label '{text}' is not a finite number")),
            TaskKind::Classification {
                num_classes,
                label_names,
            } => {
                if let Ok(k) = text.parse::<u32>() {
                    if k < *num_classes {
                        return Ok(Label::Class(k));
                    }
                }
                if let Some(i) = label_names
                    .as_ref()
                    .and_then(|names| names.iter().position(|n| n == text))
                {
                    return Ok(Label::Class(i as u32));
                }
                let names = label_names
                    .as_ref()
                    .map(|n| format!(" or one of {}", n.join(", ")))
                    .unwrap_or_default();
                Err(format!(
                    "label '{text}' is not in task.json (expected 0..{}{names})",
                    num_classes - 1
                ))
            }
            TaskKind::MultiLabel { label_names } => {
                let mut set = Vec::new();
                for part in text.split(LABEL_SEPARATOR).map(str::trim) {
                    if part.is_empty() {
                        continue;
                    }
                    let index = label_names.iter().position(|n| n == part).or_else(|| {
                        part.parse::<usize>()
                            .ok()
                            .filter(|&k| k < label_names.len())
                    });
                    match index {
                        Some(k) => set.push(k as u32),
                        None => {
                            return Err(format!(
                                "label '{part}' is not one of task.json's label_names ({}) \
                                 or an index below {}",
                                label_names.join(", "),
                                label_names.len()
                            ))
                        }
                    }
                }
                set.sort_unstable();
                set.dedup();
                Ok(Label::Labels(set))
            }
            TaskKind::PerBase { label_names } => {
                let n = label_names.len();
                let mut classes = Vec::with_capacity(text.len());
                for (i, c) in text.chars().enumerate() {
                    match c.to_digit(36).filter(|&k| (k as usize) < n) {
                        Some(k) => classes.push(k as u8),
                        None => {
                            return Err(format!(
                                "per-base label character {} ('{c}') is not a class index \
                                 (one character per base, 0-9 then a-z, below {n}: {})",
                                i + 1,
                                label_names.join(", ")
                            ))
                        }
                    }
                }
                Ok(Label::Bases(classes))
            }
        }
    }

    /// The number of outputs a model of this task has: classes, labels, or 1 (a value).
    pub fn outputs(&self) -> usize {
        match &self.kind {
            TaskKind::Classification { num_classes, .. } => *num_classes as usize,
            TaskKind::Regression => 1,
            TaskKind::MultiLabel { label_names } | TaskKind::PerBase { label_names } => {
                label_names.len()
            }
        }
    }
}

/// The most classes a per-base task may have: one base-36 character per base.
pub const MAX_BASE_CLASSES: usize = 36;

/// Writes per-base classes as a task table's label: one base-36 character per base.
pub fn base_classes_text(classes: &[u8]) -> String {
    classes
        .iter()
        .map(|&k| char::from_digit(k as u32, 36).unwrap_or('?'))
        .collect()
}

/// Fails unless a per-base label covers its sequence exactly.
fn check_label_length(label: &Label, bases: usize) -> std::result::Result<(), String> {
    match label {
        Label::Bases(classes) if classes.len() != bases => Err(format!(
            "the per-base label has {} characters but the sequence has {bases} bases (one class per base)",
            classes.len()
        )),
        _ => Ok(()),
    }
}

/// What separates the labels of one multi-label row.
pub const LABEL_SEPARATOR: char = ';';

/// Label names must be usable in a `;`-separated list and tell apart from indices.
fn check_label_names(names: &[String]) -> std::result::Result<(), String> {
    for (i, name) in names.iter().enumerate() {
        if name.trim().is_empty() || name.trim() != name || name.contains(LABEL_SEPARATOR) {
            return Err(format!(
                "label name {i} ('{name}') must be non-empty, without surrounding spaces and without '{LABEL_SEPARATOR}'"
            ));
        }
        if names[..i].contains(name) {
            return Err(format!("label name '{name}' appears twice"));
        }
    }
    Ok(())
}

/// A label.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Label {
    /// A class index.
    Class(u32),
    /// A regression target.
    Value(f64),
    /// The labels that apply (multi-label), as sorted indices into `label_names`.
    Labels(Vec<u32>),
    /// One class index per base (per-base tasks).
    Bases(Vec<u8>),
}

impl std::fmt::Display for Label {
    /// As written in a task table: the class index, the value, or the `;`-separated indices.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Label::Class(c) => write!(f, "{c}"),
            Label::Value(v) => write!(f, "{v}"),
            Label::Labels(set) => {
                for (i, k) in set.iter().enumerate() {
                    if i > 0 {
                        write!(f, "{LABEL_SEPARATOR}")?;
                    }
                    write!(f, "{k}")?;
                }
                Ok(())
            }
            Label::Bases(classes) => f.write_str(&base_classes_text(classes)),
        }
    }
}

/// A data split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training data.
    Train,
    /// Validation data (model selection, early stopping).
    Valid,
    /// Held-out test data.
    Test,
}

impl Split {
    /// All splits in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    /// Parses `train`, `valid`/`validation`/`val`/`dev`, `test` (case-insensitive).
    pub fn parse(s: &str) -> Option<Split> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" | "training" => Some(Split::Train),
            "valid" | "validation" | "val" | "dev" => Some(Split::Valid),
            "test" | "testing" => Some(Split::Test),
            _ => None,
        }
    }

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }
}

/// One labelled sequence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelledSequence {
    /// Identifier (from an `id` column or FASTA name; else `file:line`).
    pub id: String,
    /// Normalised bases.
    #[serde(skip)]
    pub sequence: Vec<u8>,
    /// The label.
    pub label: Label,
    /// The split, when the file or a column says.
    pub split: Option<Split>,
}

/// A loaded task: its spec and all its examples.
#[derive(Debug, Clone)]
pub struct Task {
    /// The `task.json` contents.
    pub spec: TaskSpec,
    /// The directory the task was loaded from.
    pub dir: PathBuf,
    /// Every example, in file order (train, valid, test files in that order).
    pub examples: Vec<LabelledSequence>,
    /// How the task was read, where that is not the plain dnalm layout (a suite format, a
    /// validation split carved from train, classes inferred from the labels), for reports.
    pub notes: Vec<String>,
}

const TABLE_EXTENSIONS: [&str; 10] = [
    "csv", "tsv", "csv.gz", "tsv.gz", "fa", "fasta", "fna", "fa.gz", "fasta.gz", "fna.gz",
];

impl Task {
    /// Loads a task from its directory (or from its `task.json`).
    ///
    /// Uses `train/valid/test.<ext>` when present, else the single other table in the directory
    /// (which must then have a `split` column or `split=` headers).
    pub fn load(path: impl AsRef<Path>) -> Result<Task> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(SeqError::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such task directory (expected a directory holding task.json)",
                ),
            ));
        }
        let dir = if path.is_dir() {
            path.to_path_buf()
        } else {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        };
        let spec_path = dir.join("task.json");
        if !spec_path.exists() {
            return Err(SeqError::io(
                &dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a task directory (no task.json)",
                ),
            ));
        }
        let spec = TaskSpec::from_path(&spec_path)?;
        let mut examples = Vec::new();
        let mut found_split_file = false;
        for split in Split::ALL {
            if let Some(file) = find_table(&dir, split.as_str()) {
                found_split_file = true;
                examples.extend(read_table(&file, Some(&spec), Some(split))?);
            }
        }
        if !found_split_file {
            let tables: Vec<PathBuf> = fs::read_dir(&dir)
                .map_err(|e| SeqError::io(&dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| table_format(p).is_some())
                .collect();
            match tables.as_slice() {
                [one] => examples = read_table(one, Some(&spec), None)?,
                [] => {
                    return Err(SeqError::Format {
                        path: dir,
                        at: Location::File,
                        message: "no train/valid/test table (.csv, .tsv or .fa) in the task directory"
                            .into(),
                    })
                }
                _ => {
                    return Err(SeqError::Format {
                        path: dir,
                        at: Location::File,
                        message: format!(
                            "{} tables but none named train/valid/test; keep one table with a split column",
                            tables.len()
                        ),
                    })
                }
            }
        }
        check_unique_ids(&dir, &examples)?;
        Ok(Task {
            spec,
            dir,
            examples,
            notes: Vec::new(),
        })
    }

    /// The examples of one split.
    pub fn split(&self, split: Split) -> impl Iterator<Item = &LabelledSequence> {
        self.examples.iter().filter(move |e| e.split == Some(split))
    }
}

/// Ids are unique across the split tables too (a row in two splits is a leak).
pub(crate) fn check_unique_ids(dir: &Path, examples: &[LabelledSequence]) -> Result<()> {
    let mut seen = std::collections::HashMap::new();
    for e in examples {
        if let Some(first) = seen.insert(e.id.as_str(), e.split) {
            return Err(SeqError::Format {
                path: dir.to_path_buf(),
                at: Location::File,
                message: format!(
                    "id '{}' appears in the {} and the {} split (ids must be unique)",
                    e.id,
                    first.map_or("unsplit", Split::as_str),
                    e.split.map_or("unsplit", Split::as_str)
                ),
            });
        }
    }
    Ok(())
}

fn find_table(dir: &Path, stem: &str) -> Option<PathBuf> {
    TABLE_EXTENSIONS
        .iter()
        .map(|ext| dir.join(format!("{stem}.{ext}")))
        .find(|p| p.is_file())
}

/// How a task table is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// Comma-separated.
    Csv,
    /// Tab-separated.
    Tsv,
    /// FASTA with `label=` in headers.
    Fasta,
}

/// The table format implied by a file name, if any.
pub fn table_format(path: &Path) -> Option<TableFormat> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    let ext = name.rsplit_once('.')?.1;
    match ext {
        "csv" => Some(TableFormat::Csv),
        "tsv" => Some(TableFormat::Tsv),
        "fa" | "fasta" | "fna" => Some(TableFormat::Fasta),
        _ => None,
    }
}

/// Reads one task table. With `spec`, labels are checked against it; without, integer labels
/// become classes and other numbers values. `split` overrides any split column.
pub fn read_table(
    path: &Path,
    spec: Option<&TaskSpec>,
    split: Option<Split>,
) -> Result<Vec<LabelledSequence>> {
    match table_format(path) {
        Some(TableFormat::Fasta) => {
            read_fasta_table(FastxReader::from_path(path)?, path, spec, split)
        }
        Some(format) => read_delimited(open_text(path)?, path, format, spec, split),
        None => Err(SeqError::invalid(
            path.display().to_string(),
            "unknown table format (expected .csv, .tsv or .fa, optionally .gz)",
        )),
    }
}

/// Reads a task table from a byte stream in the given format; `path` is only used in messages.
pub fn read_table_from(
    input: Box<dyn std::io::Read + Send>,
    path: &Path,
    format: TableFormat,
    spec: Option<&TaskSpec>,
    split: Option<Split>,
) -> Result<Vec<LabelledSequence>> {
    match format {
        TableFormat::Fasta => {
            read_fasta_table(FastxReader::from_reader(input, path)?, path, spec, split)
        }
        _ => read_delimited(
            Box::new(std::io::BufReader::new(input)),
            path,
            format,
            spec,
            split,
        ),
    }
}

fn parse_label_with(spec: Option<&TaskSpec>, text: &str) -> std::result::Result<Label, String> {
    match spec {
        Some(spec) => spec.parse_label(text),
        None => {
            let t = text.trim();
            t.parse::<u32>()
                .map(Label::Class)
                .or_else(|_| t.parse::<f64>().map(Label::Value))
                .map_err(|_| {
                    format!("label '{t}' is not a number (a task.json with label_names is needed)")
                })
        }
    }
}

fn read_delimited(
    input: Box<dyn std::io::BufRead + Send>,
    path: &Path,
    format: TableFormat,
    spec: Option<&TaskSpec>,
    split: Option<Split>,
) -> Result<Vec<LabelledSequence>> {
    let delimiter = if format == TableFormat::Tsv {
        b'\t'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .trim(csv::Trim::All)
        .from_reader(input);
    let csv_error = |e: csv::Error| {
        let line = e.position().map_or(0, |p| p.line());
        match e.kind() {
            csv::ErrorKind::Io(_) => SeqError::io(path, std::io::Error::other(e.to_string())),
            _ => SeqError::at_line(path, line.max(1), e.to_string()),
        }
    };
    let mut headers = reader.headers().map_err(csv_error)?.clone();
    if headers.is_empty() || headers.iter().all(str::is_empty) {
        return Err(SeqError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    // A UTF-8 byte-order mark (spreadsheet exports) is not part of the first column's name.
    if headers.get(0).is_some_and(|h| h.starts_with('\u{feff}')) {
        headers = headers
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}'))
            .collect();
    }
    for (i, name) in headers.iter().enumerate() {
        let earlier = headers.iter().take(i).any(|h| h.eq_ignore_ascii_case(name));
        if earlier
            && ["sequence", "label", "id", "name", "split"]
                .contains(&name.to_ascii_lowercase().as_str())
        {
            return Err(SeqError::at_line(
                path,
                1,
                format!("column '{name}' appears twice (which one is meant is ambiguous)"),
            ));
        }
    }
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let found = || headers.iter().collect::<Vec<_>>().join(", ");
    let seq_col = col("sequence").ok_or_else(|| {
        SeqError::at_line(
            path,
            1,
            format!("missing column 'sequence' (found: {})", found()),
        )
    })?;
    let label_col = col("label").ok_or_else(|| {
        SeqError::at_line(
            path,
            1,
            format!("missing column 'label' (found: {})", found()),
        )
    })?;
    // `name` is the id column of the Nucleotide Transformer downstream tables.
    let id_col = col("id").or_else(|| col("name"));
    let split_col = col("split");
    let mut out = Vec::new();
    let mut seen_ids: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(csv_error)? {
        let line = record.position().map_or(0, |p| p.line());
        let err = |message: String| SeqError::at_line(path, line, message);
        let raw_seq = record.get(seq_col).unwrap_or("");
        if raw_seq.is_empty() {
            return Err(err("empty sequence".into()));
        }
        let (sequence, _) =
            alphabet::normalize(raw_seq.as_bytes()).map_err(|bad| SeqError::InvalidBase {
                path: path.to_path_buf(),
                at: Location::Line(line),
                position: crate::Position::at_offset(bad.offset as usize),
                byte: bad.byte,
            })?;
        let label = parse_label_with(spec, record.get(label_col).unwrap_or("")).map_err(err)?;
        check_label_length(&label, sequence.len()).map_err(err)?;
        let row_split =
            match (split, split_col) {
                (Some(s), _) => Some(s),
                (None, Some(c)) => {
                    let text = record.get(c).unwrap_or("");
                    Some(Split::parse(text).ok_or_else(|| {
                        err(format!("split '{text}' is not train, valid or test"))
                    })?)
                }
                (None, None) => None,
            };
        let id = id_col
            .and_then(|c| record.get(c))
            .filter(|s| !s.is_empty())
            .map_or_else(|| format!("{}:{line}", file_stem(path)), str::to_string);
        if let Some(first) = seen_ids.insert(id.clone(), line) {
            return Err(err(format!(
                "id '{id}' was already used on line {first} (ids must be unique)"
            )));
        }
        out.push(LabelledSequence {
            id,
            sequence,
            label,
            split: row_split,
        });
    }
    if out.is_empty() {
        return Err(SeqError::Format {
            path: path.to_path_buf(),
            at: Location::File,
            message: "table has a header but no rows".into(),
        });
    }
    Ok(out)
}

fn file_stem(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_fasta_table(
    mut reader: FastxReader,
    path: &Path,
    spec: Option<&TaskSpec>,
    split: Option<Split>,
) -> Result<Vec<LabelledSequence>> {
    let mut record = Default::default();
    let mut out = Vec::new();
    let mut index = 0u64;
    while reader.read_record(&mut record)? {
        index += 1;
        let at = Location::Record {
            index,
            name: Some(record.name.clone()),
        };
        let err = |message: String| SeqError::Format {
            path: path.to_path_buf(),
            at: at.clone(),
            message,
        };
        let fields = |key: &str| -> Option<String> {
            record
                .description
                .as_deref()?
                .split_ascii_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
        };
        let label_text = fields("label").ok_or_else(|| err("header has no label=...".into()))?;
        let label = parse_label_with(spec, &label_text).map_err(err)?;
        let row_split = match (split, fields("split")) {
            (Some(s), _) => Some(s),
            (None, Some(text)) => Some(
                Split::parse(&text)
                    .ok_or_else(|| err(format!("split '{text}' is not train, valid or test")))?,
            ),
            (None, None) => None,
        };
        if record.sequence.is_empty() {
            return Err(err("empty sequence".into()));
        }
        check_label_length(&label, record.sequence.len()).map_err(err)?;
        out.push(LabelledSequence {
            id: record.name.clone(),
            sequence: std::mem::take(&mut record.sequence),
            label,
            split: row_split,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_dir(spec: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("task.json"), spec).unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    const BINARY: &str = r#"{"name":"t","num_classes":2,"label_names":["neg","pos"]}"#;
    const MULTI: &str = r#"{"name":"m","multi_label":true,"label_names":["CTCF","DNase"]}"#;
    const PER_BASE: &str = r#"{"name":"s","per_base":true,"label_names":["other","CDS","rRNA"]}"#;

    /// Per-base rows: one base-36 class character per base, in CSV or FASTA, written back the
    /// same way.
    #[test]
    fn per_base_rows_hold_one_class_per_base() {
        let d = task_dir(
            PER_BASE,
            &[
                ("train.csv", "sequence,label\nACGTAC,001122\n"),
                ("test.fa", ">s1 label=2100\nACGT\n"),
            ],
        );
        let task = Task::load(d.path()).unwrap();
        assert_eq!(task.examples[0].label, Label::Bases(vec![0, 0, 1, 1, 2, 2]));
        assert_eq!(task.examples[1].label, Label::Bases(vec![2, 1, 0, 0]));
        assert_eq!(task.spec.outputs(), 3);
        assert_eq!(task.examples[1].label.to_string(), "2100");
        assert_eq!(base_classes_text(&[0, 10, 35]), "0az");
    }

    /// Multi-label rows: names or indices, `;`-separated, any order, repeats folded, an empty
    /// cell (or a FASTA `label=`) meaning none.
    #[test]
    fn multi_label_rows_hold_any_subset_of_the_labels() {
        let d = task_dir(
            MULTI,
            &[
                (
                    "train.csv",
                    "sequence,label\nACGT,DNase;CTCF\nACGT,\nAC,1; 1\n",
                ),
                ("test.fa", ">s1 label=0\nACGT\n>s2 label=\nAA\n"),
            ],
        );
        let task = Task::load(d.path()).unwrap();
        let labels: Vec<&Label> = task.examples.iter().map(|e| &e.label).collect();
        assert_eq!(
            labels,
            [
                &Label::Labels(vec![0, 1]),
                &Label::Labels(vec![]),
                &Label::Labels(vec![1]),
                &Label::Labels(vec![0]),
                &Label::Labels(vec![]),
            ]
        );
        assert_eq!(task.spec.outputs(), 2);
        assert_eq!(Label::Labels(vec![0, 1]).to_string(), "0;1");
    }

    #[test]
    fn split_files_and_label_names() {
        let d = task_dir(
            BINARY,
            &[
                ("train.csv", "sequence,label\nACGT,1\nacgu,neg\n"),
                ("valid.tsv", "id\tsequence\tlabel\nx\tAAAA\tpos\n"),
                ("test.fa", ">s1 label=0\nACGT\n>s2 label=pos\nRR\n"),
            ],
        );
        let task = Task::load(d.path()).unwrap();
        assert_eq!(task.examples.len(), 5);
        assert_eq!(task.examples[1].sequence, b"ACGT");
        assert_eq!(task.examples[1].label, Label::Class(0));
        assert_eq!(task.examples[2].id, "x");
        assert_eq!(task.split(Split::Test).count(), 2);
        assert_eq!(task.examples[4].sequence, b"NN");
        assert_eq!(task.examples[4].label, Label::Class(1));
    }

    /// Issue 14, defect 12: a UTF-8 byte-order mark before the header (spreadsheet exports) is
    /// not part of the first column's name ("missing column 'sequence' (found: sequence, ...)").
    #[test]
    fn a_byte_order_mark_before_the_header_is_ignored() {
        let d = task_dir(BINARY, &[("train.csv", "\u{feff}sequence,label\nACGT,1\n")]);
        let task = Task::load(d.path()).unwrap();
        assert_eq!(task.examples[0].sequence, b"ACGT");
    }

    #[test]
    fn split_column_and_regression() {
        let d = task_dir(
            r#"{"name":"r","regression":true}"#,
            &[(
                "data.csv",
                "sequence,label,split\nACGT,0.5,train\nAC,-1e3,validation\nGG,2,test\n",
            )],
        );
        let task = Task::load(d.path()).unwrap();
        assert_eq!(task.examples[1].split, Some(Split::Valid));
        assert_eq!(task.examples[1].label, Label::Value(-1000.0));
    }

    #[test]
    fn errors_name_file_and_line() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (BINARY, &[("train.csv", "seq,label\nACGT,1\n")], "train.csv:line 1: missing column 'sequence' (found: seq, label)"),
            (BINARY, &[("train.csv", "sequence,label\nACGT,1\nACGT,2\n")], "train.csv:line 3: label '2' is not in task.json (expected 0..1 or one of neg, pos)"),
            (BINARY, &[("train.csv", "sequence,label\nAC-T,1\n")], "train.csv:line 2: invalid base '-' at position 3"),
            (BINARY, &[("data.csv", "sequence,label,split\nACGT,1,holdout\n")], "data.csv:line 2: split 'holdout' is not train, valid or test"),
            (r#"{"name":"t","num_classes":1}"#, &[("train.csv", "sequence,label\nA,0\n")], "task.json: \"num_classes\" is 1"),
            (BINARY, &[("train.csv", "")], "train.csv: file is empty"),
            (BINARY, &[("train.fa", ">a\nACGT\n")], "train.fa:record 1 ('a'): header has no label=..."),
            // Issue 14, defect 12: duplicate columns and ids were accepted silently.
            (BINARY, &[("train.csv", "sequence,label,label\nACGT,1,0\n")], "train.csv:line 1: column 'label' appears twice"),
            (BINARY, &[("train.csv", "id,sequence,label\nx,ACGT,1\nx,AC,0\n")], "train.csv:line 3: id 'x' was already used on line 2"),
            (BINARY, &[("train.csv", "id,sequence,label\nx,ACGT,1\n"), ("test.csv", "id,sequence,label\nx,AC,0\n")], "id 'x' appears in the train and the test split"),
            // Multi-label: a label outside the declared set, and specs that cannot be read.
            (MULTI, &[("train.csv", "sequence,label\nACGT,CTCF\nACGT,CTCF;H3K9me3\n")], "train.csv:line 3: label 'H3K9me3' is not one of task.json's label_names (CTCF, DNase) or an index below 2"),
            (MULTI, &[("train.csv", "sequence,label\nACGT,2\n")], "train.csv:line 2: label '2' is not one of"),
            (r#"{"name":"m","multi_label":true}"#, &[("train.csv", "sequence,label\nA,0\n")], "\"multi_label\": true needs \"label_names\""),
            (r#"{"name":"m","multi_label":true,"label_names":["a","a"]}"#, &[("train.csv", "sequence,label\nA,0\n")], "label name 'a' appears twice"),
            (r#"{"name":"m","multi_label":true,"label_names":["a;b"]}"#, &[("train.csv", "sequence,label\nA,0\n")], "without ';'"),
            (r#"{"name":"m","multi_label":true,"num_classes":3,"label_names":["a","b"]}"#, &[("train.csv", "sequence,label\nA,0\n")], "\"label_names\" has 2 names but \"num_classes\" is 3"),
            // Per-base: a label that disagrees in length with its sequence, a class outside the
            // declared set, and specs that cannot be read.
            (PER_BASE, &[("train.csv", "sequence,label\nACGT,0120\nACGT,012\n")], "train.csv:line 3: the per-base label has 3 characters but the sequence has 4 bases"),
            (PER_BASE, &[("train.fa", ">a label=01\nACG\n")], "train.fa:record 1 ('a'): the per-base label has 2 characters but the sequence has 3 bases"),
            (PER_BASE, &[("train.csv", "sequence,label\nACGT,0130\n")], "train.csv:line 2: per-base label character 3 ('3') is not a class index"),
            (r#"{"name":"s","per_base":true,"label_names":["other"]}"#, &[("train.csv", "sequence,label\nA,0\n")], "\"per_base\": true needs \"label_names\" with 2 to 36 class names (has 1)"),
            (r#"{"name":"s","per_base":true,"multi_label":true,"label_names":["a","b"]}"#, &[("train.csv", "sequence,label\nA,0\n")], "a per-base task has one class per base"),
        ];
        for (spec, files, needle) in cases {
            let d = task_dir(spec, files);
            let err = Task::load(d.path()).unwrap_err().to_string();
            assert!(err.contains(needle), "'{err}' does not contain '{needle}'");
        }
    }
}
