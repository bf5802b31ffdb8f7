//! Standard benchmark suites, read as their authors distribute them.
//!
//! | format | layout | validation split |
//! |---|---|---|
//! | `dnalm` | `<task>/task.json` + tables ([`crate::task`]) | as given |
//! | `gue` (DNABERT-2) | `<task>/{train,dev,test}.csv` (`sequence,label`), nested as `GUE/<group>/<task>/` | `dev.csv` |
//! | `nt` (Nucleotide Transformer downstream tasks, original and revised) | `<task>/{train,test}.{parquet,csv,fna}` (`sequence`, `label`, `name`; FASTA headers `>name\|label`) | carved from train |
//! | `genomic-benchmarks` | `<dataset>/{train,test}/<class name>/*.txt`, one sequence per file | carved from train |
//! | `bend` | `<task>/<task>.bed` (`chromosome start end [strand] split [label]`) + the reference FASTA the user gives | `valid` rows |
//!
//! Classes are inferred from the labels (GUE, NT: class indices `0..k`; Genomic Benchmarks: the
//! class folder names, sorted) and must agree between splits. Where a suite has no validation
//! split, [`CARVED_VALID_FRACTION`] of train, stratified by class, becomes one, drawn with a
//! fixed seed so that every run carves the same rows; the task's [`Task::notes`] say so.
//!
//! BEND's per-base tasks (labels in an HDF5 file beside the BED), its multi-label tasks (a list of
//! label indices per row) and its variant-effect task (`ref`/`alt` columns) are recognised and
//! refused with a message that says which they are: dnalm's heads are one label per sequence.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use rand::{seq::SliceRandom, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{
    alphabet,
    error::{Location, Result, SeqError},
    fai::{GenomicRegion, IndexedFasta},
    fastx::FastxReader,
    task::{
        check_unique_ids, read_table, Label, LabelledSequence, Split, Task, TaskKind, TaskSpec,
    },
    Position,
};

/// The share of train that becomes the validation split of a suite that has none.
pub const CARVED_VALID_FRACTION: f64 = 0.1;

/// The seed of that carving (fixed: every run, CLI or Python, carves the same rows).
pub const CARVED_VALID_SEED: u64 = 0;

/// The layouts a task or suite can come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SuiteFormat {
    /// dnalm's own layout: `task.json` and tables.
    Dnalm,
    /// GUE, the DNABERT-2 benchmark.
    Gue,
    /// The Nucleotide Transformer downstream tasks (InstaDeep's Hugging Face datasets).
    Nt,
    /// Genomic Benchmarks (Grešová et al. 2023).
    GenomicBenchmarks,
    /// BEND (Marin et al. 2024): BED files over a reference genome.
    Bend,
}

impl SuiteFormat {
    /// Every format.
    pub const ALL: [SuiteFormat; 5] = [
        SuiteFormat::Dnalm,
        SuiteFormat::Gue,
        SuiteFormat::Nt,
        SuiteFormat::GenomicBenchmarks,
        SuiteFormat::Bend,
    ];

    /// The name used on the command line (`gue:DIR`).
    pub fn name(self) -> &'static str {
        match self {
            SuiteFormat::Dnalm => "dnalm",
            SuiteFormat::Gue => "gue",
            SuiteFormat::Nt => "nt",
            SuiteFormat::GenomicBenchmarks => "genomic-benchmarks",
            SuiteFormat::Bend => "bend",
        }
    }

    /// Parses a format name (`gb` is short for `genomic-benchmarks`), case-insensitively.
    pub fn parse(name: &str) -> Option<SuiteFormat> {
        let name = name.trim().to_ascii_lowercase();
        if name == "gb" {
            return Some(SuiteFormat::GenomicBenchmarks);
        }
        SuiteFormat::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The layout one task of this format has, for error messages.
    pub fn task_layout(self) -> &'static str {
        match self {
            SuiteFormat::Dnalm => "<task>/task.json with train/valid/test tables",
            SuiteFormat::Gue => "<task>/{train,dev,test}.csv with columns sequence,label",
            SuiteFormat::Nt => {
                "<task>/{train,test}.parquet (or .csv, or .fna with >name|label headers)"
            }
            SuiteFormat::GenomicBenchmarks => {
                "<dataset>/{train,test}/<class name>/*.txt, one sequence per file"
            }
            SuiteFormat::Bend => "<task>/<task>.bed with columns chromosome,start,end,split,label",
        }
    }
}

impl std::fmt::Display for SuiteFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where one task is and how it is laid out: what `--task [FORMAT:]DIR` names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSource {
    /// The layout.
    pub format: SuiteFormat,
    /// The task's directory (or its file, for a dnalm task).
    pub path: PathBuf,
    /// The task's name in reports; by default the directory's name (GUE: `group/task`).
    #[serde(default)]
    pub name: Option<String>,
    /// The reference genome a BEND task's coordinates refer to.
    #[serde(default)]
    pub genome: Option<PathBuf>,
}

impl From<PathBuf> for TaskSource {
    fn from(path: PathBuf) -> Self {
        TaskSource::new(SuiteFormat::Dnalm, path)
    }
}

impl TaskSource {
    /// A task of `format` at `path`.
    pub fn new(format: SuiteFormat, path: impl Into<PathBuf>) -> TaskSource {
        TaskSource {
            format,
            path: path.into(),
            name: None,
            genome: None,
        }
    }

    /// Splits `FORMAT:PATH` into its format and path; a plain path (or one whose prefix is not
    /// a format name) is a dnalm task or suite.
    ///
    /// ```
    /// use dnalm_seq::suite::{SuiteFormat, TaskSource};
    /// assert_eq!(TaskSource::split_spec("gue:GUE/prom"), (SuiteFormat::Gue, "GUE/prom".into()));
    /// assert_eq!(TaskSource::split_spec("data/tasks/x"), (SuiteFormat::Dnalm, "data/tasks/x".into()));
    /// ```
    pub fn split_spec(spec: &str) -> (SuiteFormat, PathBuf) {
        match spec.split_once(':') {
            Some((format, path)) if !path.is_empty() => match SuiteFormat::parse(format) {
                Some(format) => (format, PathBuf::from(path)),
                None => (SuiteFormat::Dnalm, PathBuf::from(spec)),
            },
            _ => (SuiteFormat::Dnalm, PathBuf::from(spec)),
        }
    }

    /// The task named by `FORMAT:PATH` (see [`TaskSource::split_spec`]), with the reference
    /// genome for BEND.
    pub fn parse(spec: &str, genome: Option<&Path>) -> TaskSource {
        let (format, path) = TaskSource::split_spec(spec);
        TaskSource {
            genome: genome.map(Path::to_path_buf),
            ..TaskSource::new(format, path)
        }
    }

    /// The task's name in reports.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| match self.format {
            SuiteFormat::Gue => gue_name(&self.path),
            _ => leaf_name(&self.path),
        })
    }

    /// Reads the task.
    pub fn load(&self) -> Result<Task> {
        let mut task = match self.format {
            SuiteFormat::Dnalm => return Task::load(&self.path),
            SuiteFormat::Gue => load_gue(&self.path)?,
            SuiteFormat::Nt => load_nt(&self.path)?,
            SuiteFormat::GenomicBenchmarks => load_genomic_benchmark(&self.path)?,
            SuiteFormat::Bend => load_bend(&self.path, self.genome.as_deref())?,
        };
        task.spec.name = self.display_name();
        Ok(task)
    }
}

/// The tasks of a suite directory in `format` (sorted by path), or the directory itself when it
/// is one task.
pub fn discover(format: SuiteFormat, dir: &Path, genome: Option<&Path>) -> Result<Vec<TaskSource>> {
    if !dir.is_dir() {
        return Err(SeqError::io(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no such {format} suite directory"),
            ),
        ));
    }
    let is_task = |d: &Path| match format {
        SuiteFormat::Dnalm => d.join("task.json").is_file(),
        SuiteFormat::Gue => d.join("train.csv").is_file(),
        SuiteFormat::Nt => find_split_file(d, "train").is_some(),
        SuiteFormat::GenomicBenchmarks => d.join("train").is_dir() && d.join("test").is_dir(),
        SuiteFormat::Bend => bed_file(d).is_some(),
    };
    let mut found = Vec::new();
    // GUE nests tasks two levels down (GUE/<group>/<task>); the others one level.
    let depth = if format == SuiteFormat::Gue { 3 } else { 1 };
    collect_tasks(dir, depth, &is_task, &mut found)?;
    found.sort();
    if found.is_empty() {
        return Err(SeqError::Format {
            path: dir.to_path_buf(),
            at: Location::File,
            message: format!(
                "no {format} tasks here (each task is {})",
                format.task_layout()
            ),
        });
    }
    Ok(found
        .into_iter()
        .map(|path| TaskSource {
            genome: genome.map(Path::to_path_buf),
            ..TaskSource::new(format, path)
        })
        .collect())
}

fn collect_tasks(
    dir: &Path,
    depth: usize,
    is_task: &dyn Fn(&Path) -> bool,
    found: &mut Vec<PathBuf>,
) -> Result<()> {
    if is_task(dir) {
        found.push(dir.to_path_buf());
        return Ok(());
    }
    if depth == 0 {
        return Ok(());
    }
    for entry in fs::read_dir(dir).map_err(|e| SeqError::io(dir, e))? {
        let path = entry.map_err(|e| SeqError::io(dir, e))?.path();
        if path.is_dir() {
            collect_tasks(&path, depth - 1, is_task, found)?;
        }
    }
    Ok(())
}

fn leaf_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// GUE tasks are known by group and name (`tf/0`, `prom/prom_300_all`): leaf names repeat
/// across groups.
fn gue_name(path: &Path) -> String {
    match path.parent().and_then(Path::file_name) {
        Some(group) => format!("{}/{}", group.to_string_lossy(), leaf_name(path)),
        None => leaf_name(path),
    }
}

fn not_found(dir: &Path, format: SuiteFormat, missing: &str) -> SeqError {
    SeqError::Format {
        path: dir.to_path_buf(),
        at: Location::File,
        message: format!(
            "not a {format} task: {missing} is missing (expected {})",
            format.task_layout()
        ),
    }
}

/// Turns examples with class-index labels into a task: classes `0..=max`, with the same class
/// set in every split (a class of valid or test that train never shows cannot be learned).
fn classification_task(
    dir: &Path,
    examples: Vec<LabelledSequence>,
    label_names: Option<Vec<String>>,
    mut notes: Vec<String>,
) -> Result<Task> {
    let mut classes: BTreeMap<Split, BTreeSet<u32>> = BTreeMap::new();
    for e in &examples {
        let Label::Class(k) = e.label else {
            return Err(SeqError::Format {
                path: dir.to_path_buf(),
                at: Location::File,
                message: format!(
                    "example '{}' has label {:?}; a suite task's labels are class indices",
                    e.id, e.label
                ),
            });
        };
        if let Some(split) = e.split {
            classes.entry(split).or_default().insert(k);
        }
    }
    for split in Split::ALL {
        if classes.get(&split).is_none_or(BTreeSet::is_empty) {
            return Err(SeqError::Format {
                path: dir.to_path_buf(),
                at: Location::File,
                message: format!("the {} split is empty", split.as_str()),
            });
        }
    }
    let train = &classes[&Split::Train];
    for split in [Split::Valid, Split::Test] {
        if let Some(k) = classes[&split].difference(train).next() {
            return Err(SeqError::Format {
                path: dir.to_path_buf(),
                at: Location::File,
                message: format!(
                    "class {k} appears in the {} split but never in train (the splits' class \
                     sets must match)",
                    split.as_str()
                ),
            });
        }
    }
    let num_classes = label_names
        .as_ref()
        .map_or_else(|| train.last().map_or(0, |k| k + 1), |n| n.len() as u32);
    if train.len() < 2 {
        return Err(SeqError::Format {
            path: dir.to_path_buf(),
            at: Location::File,
            message: format!(
                "train has a single class ({}); a task needs at least 2",
                train.first().copied().unwrap_or(0)
            ),
        });
    }
    check_unique_ids(dir, &examples)?;
    notes.push(format!(
        "{num_classes} classes, inferred from the labels{}",
        label_names
            .as_ref()
            .map(|n| format!(" ({})", n.join(", ")))
            .unwrap_or_default()
    ));
    Ok(Task {
        spec: TaskSpec {
            name: leaf_name(dir),
            description: None,
            kind: TaskKind::Classification {
                num_classes,
                label_names,
            },
            tokenizer: None,
        },
        dir: dir.to_path_buf(),
        examples,
        notes,
    })
}

/// Moves [`CARVED_VALID_FRACTION`] of each class's train rows (at least one where a class has
/// two or more) to a new validation split, chosen by a seeded shuffle.
fn carve_valid(examples: &mut [LabelledSequence]) -> String {
    let mut by_class: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, e) in examples.iter().enumerate() {
        if let (Some(Split::Train), &Label::Class(k)) = (e.split, &e.label) {
            by_class.entry(k).or_default().push(i);
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(CARVED_VALID_SEED);
    let mut moved = 0;
    for rows in by_class.values_mut() {
        rows.shuffle(&mut rng);
        let take = if rows.len() < 2 {
            0
        } else {
            ((rows.len() as f64 * CARVED_VALID_FRACTION).round() as usize).max(1)
        };
        for &i in &rows[..take] {
            examples[i].split = Some(Split::Valid);
        }
        moved += take;
    }
    format!(
        "the suite has no validation split: {moved} train rows ({:.0}%, stratified by class, \
         seed {CARVED_VALID_SEED}) were carved out as one",
        CARVED_VALID_FRACTION * 100.0
    )
}

fn load_gue(dir: &Path) -> Result<Task> {
    let mut examples = Vec::new();
    for (stem, split) in [
        ("train", Split::Train),
        ("dev", Split::Valid),
        ("test", Split::Test),
    ] {
        let file = dir.join(format!("{stem}.csv"));
        if !file.is_file() {
            return Err(not_found(dir, SuiteFormat::Gue, &format!("{stem}.csv")));
        }
        examples.extend(read_table(&file, None, Some(split))?);
    }
    classification_task(
        dir,
        examples,
        None,
        vec!["GUE layout: dev.csv is the validation split".into()],
    )
}

/// The NT table of one split: Parquet (the datasets' current form), CSV, or the original FASTA.
fn find_split_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    ["parquet", "csv", "fna", "fasta", "fa"]
        .iter()
        .map(|ext| dir.join(format!("{stem}.{ext}")))
        .find(|p| p.is_file())
}

fn load_nt(dir: &Path) -> Result<Task> {
    let mut examples = Vec::new();
    for (stem, split) in [("train", Split::Train), ("test", Split::Test)] {
        let file = find_split_file(dir, stem)
            .ok_or_else(|| not_found(dir, SuiteFormat::Nt, &format!("{stem}.parquet")))?;
        let ext = file
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        examples.extend(match ext.as_deref() {
            Some("parquet") => read_parquet(&file, split)?,
            Some("csv") => read_table(&file, None, Some(split))?,
            _ => read_nt_fasta(&file, split)?,
        });
    }
    let carved = carve_valid(&mut examples);
    classification_task(dir, examples, None, vec![carved])
}

/// An NT FASTA table: `>name|label` headers.
fn read_nt_fasta(path: &Path, split: Split) -> Result<Vec<LabelledSequence>> {
    let mut reader = FastxReader::from_path(path)?;
    let mut record = Default::default();
    let mut out = Vec::new();
    let mut index = 0u64;
    while reader.read_record(&mut record)? {
        index += 1;
        let err = |message: String| SeqError::Format {
            path: path.to_path_buf(),
            at: Location::Record {
                index,
                name: Some(record.name.clone()),
            },
            message,
        };
        let (name, label) = record
            .name
            .rsplit_once('|')
            .ok_or_else(|| err("header has no '|label' suffix (expected >name|label)".into()))?;
        let label = label
            .trim()
            .parse::<u32>()
            .map_err(|_| err(format!("label '{label}' is not a class index")))?;
        if record.sequence.is_empty() {
            return Err(err("empty sequence".into()));
        }
        out.push(LabelledSequence {
            id: name.to_string(),
            sequence: std::mem::take(&mut record.sequence),
            label: Label::Class(label),
            split: Some(split),
        });
    }
    Ok(out)
}

/// An NT Parquet table: columns `sequence` (string), `label` (integer), `name` (string,
/// optional; the id); others (`task`) are ignored.
fn read_parquet(path: &Path, split: Split) -> Result<Vec<LabelledSequence>> {
    use parquet::{
        file::reader::{FileReader, SerializedFileReader},
        record::Field,
    };
    let bad = |at: Location, message: String| SeqError::Format {
        path: path.to_path_buf(),
        at,
        message,
    };
    let file = crate::open_file(path)?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| bad(Location::File, format!("not a readable Parquet file: {e}")))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let columns: Vec<String> = schema
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let col = |name: &str| columns.iter().position(|c| c.eq_ignore_ascii_case(name));
    let (Some(seq_col), Some(label_col)) = (col("sequence"), col("label")) else {
        return Err(bad(
            Location::File,
            format!(
                "needs columns 'sequence' and 'label' (found: {})",
                columns.join(", ")
            ),
        ));
    };
    let name_col = col("name").or_else(|| col("id"));
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| bad(Location::File, format!("cannot read rows: {e}")))?;
    let mut out = Vec::new();
    for (i, row) in rows.enumerate() {
        let index = i as u64 + 1;
        let at = || Location::Record { index, name: None };
        let row = row.map_err(|e| bad(at(), e.to_string()))?;
        let fields: Vec<&Field> = row.get_column_iter().map(|(_, f)| f).collect();
        let text = |c: usize, what: &str| match fields.get(c) {
            Some(Field::Str(s)) => Ok(s.clone()),
            other => Err(bad(at(), format!("{what} is {other:?}, not a string"))),
        };
        let sequence = text(seq_col, "sequence")?;
        let label = match fields.get(label_col) {
            Some(Field::Int(v)) => u32::try_from(*v).ok(),
            Some(Field::Long(v)) => u32::try_from(*v).ok(),
            Some(Field::Short(v)) => u32::try_from(*v).ok(),
            Some(Field::Byte(v)) => u32::try_from(*v).ok(),
            Some(Field::UInt(v)) => Some(*v),
            Some(Field::Str(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            bad(
                at(),
                format!(
                    "label {:?} is not a class index",
                    fields.get(label_col).map(|f| f.to_string())
                ),
            )
        })?;
        let id = match name_col {
            Some(c) => text(c, "name")?,
            None => format!("{}:{index}", leaf_name(path)),
        };
        if sequence.is_empty() {
            return Err(bad(at(), "empty sequence".into()));
        }
        let (sequence, _) =
            alphabet::normalize(sequence.as_bytes()).map_err(|b| SeqError::InvalidBase {
                path: path.to_path_buf(),
                at: at(),
                position: Position::at_offset(b.offset as usize),
                byte: b.byte,
            })?;
        out.push(LabelledSequence {
            id,
            sequence,
            label: Label::Class(label),
            split: Some(split),
        });
    }
    if out.is_empty() {
        return Err(bad(Location::File, "no rows".into()));
    }
    Ok(out)
}

/// Sorted subdirectory names.
fn subdirs(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(|e| SeqError::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

fn load_genomic_benchmark(dir: &Path) -> Result<Task> {
    let [train_dir, test_dir] = ["train", "test"].map(|s| dir.join(s));
    for d in [&train_dir, &test_dir] {
        if !d.is_dir() {
            return Err(not_found(
                dir,
                SuiteFormat::GenomicBenchmarks,
                &format!("{}/", leaf_name(d)),
            ));
        }
    }
    let classes = subdirs(&train_dir)?;
    let test_classes = subdirs(&test_dir)?;
    if classes != test_classes {
        return Err(SeqError::Format {
            path: dir.to_path_buf(),
            at: Location::File,
            message: format!(
                "train has classes [{}] but test has [{}] (the class folders must match)",
                classes.join(", "),
                test_classes.join(", ")
            ),
        });
    }
    let mut examples = Vec::new();
    for (split, split_dir) in [(Split::Train, &train_dir), (Split::Test, &test_dir)] {
        for (k, class) in classes.iter().enumerate() {
            let class_dir = split_dir.join(class);
            let mut files: Vec<PathBuf> = fs::read_dir(&class_dir)
                .map_err(|e| SeqError::io(&class_dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            for file in files {
                let text = fs::read(&file).map_err(|e| SeqError::io(&file, e))?;
                let raw: Vec<u8> = text
                    .into_iter()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                if raw.is_empty() {
                    return Err(SeqError::EmptyFile { path: file });
                }
                let (sequence, _) =
                    alphabet::normalize(&raw).map_err(|b| SeqError::InvalidBase {
                        path: file.clone(),
                        at: Location::File,
                        position: Position::at_offset(b.offset as usize),
                        byte: b.byte,
                    })?;
                examples.push(LabelledSequence {
                    id: format!("{}/{class}/{}", split.as_str(), leaf_name(&file)),
                    sequence,
                    label: Label::Class(k as u32),
                    split: Some(split),
                });
            }
        }
    }
    let carved = carve_valid(&mut examples);
    classification_task(dir, examples, Some(classes), vec![carved])
}

/// The BED file of a BEND task directory: `<dir>/<dir name>.bed`, else its only `.bed`.
fn bed_file(dir: &Path) -> Option<PathBuf> {
    let own = dir.join(format!("{}.bed", leaf_name(dir)));
    if own.is_file() {
        return Some(own);
    }
    let beds: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "bed"))
        .collect();
    match beds.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

fn load_bend(path: &Path, genome: Option<&Path>) -> Result<Task> {
    let (dir, bed) = if path.is_file() {
        (
            path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            path.to_path_buf(),
        )
    } else {
        let bed = bed_file(path).ok_or_else(|| not_found(path, SuiteFormat::Bend, "the .bed"))?;
        (path.to_path_buf(), bed)
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(crate::open_text(&bed)?);
    let csv_error = |e: csv::Error| {
        let line = e.position().map_or(1, |p| p.line());
        SeqError::at_line(&bed, line, e.to_string())
    };
    let headers = reader.headers().map_err(csv_error)?.clone();
    let col = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
    };
    let found = || headers.iter().collect::<Vec<_>>().join(", ");
    if col(&["ref"]).is_some() && col(&["alt"]).is_some() {
        return Err(SeqError::at_line(
            &bed,
            1,
            "a BEND variant-effect task (ref/alt columns): it is scored zero-shot, not trained; \
             score the variants with `dnalm score`",
        ));
    }
    let (Some(chrom_col), Some(start_col), Some(end_col), Some(split_col)) = (
        col(&["chromosome", "chrom", "#chrom", "chr"]),
        col(&["start"]),
        col(&["end"]),
        col(&["split"]),
    ) else {
        return Err(SeqError::at_line(
            &bed,
            1,
            format!(
                "a BEND task needs the header columns chromosome, start, end and split (found: {})",
                found()
            ),
        ));
    };
    let Some(label_col) = col(&["label"]) else {
        let hdf5 = bed.with_extension("hdf5");
        return Err(SeqError::at_line(
            &bed,
            1,
            format!(
                "a BEND per-base task (no label column: the labels are per base, in {}); dnalm's \
                 heads label whole sequences and per-base heads have not landed yet",
                hdf5.display()
            ),
        ));
    };
    let strand_col = col(&["strand"]);
    let genome = genome.ok_or_else(|| {
        SeqError::invalid(
            "BEND task",
            format!(
                "{} holds coordinates: give the reference genome FASTA they refer to (--genome)",
                bed.display()
            ),
        )
    })?;
    let mut fasta = IndexedFasta::open(genome)?;
    let mut examples = Vec::new();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(csv_error)? {
        let line = record.position().map_or(0, |p| p.line());
        let err = |message: String| SeqError::at_line(&bed, line, message);
        let field = |c: usize| record.get(c).unwrap_or("");
        let label_text = field(label_col);
        if label_text.contains(',') || label_text.is_empty() {
            return Err(err(format!(
                "label '{label_text}' is a list of label indices: a BEND multi-label task \
                 (histone marks, chromatin accessibility, CpG methylation); dnalm's heads take \
                 one label per sequence and multi-label heads have not landed yet"
            )));
        }
        let label = label_text
            .parse::<u32>()
            .map_err(|_| err(format!("label '{label_text}' is not a class index")))?;
        let coordinate = |c: usize, what: &str| {
            field(c)
                .parse::<u64>()
                .map_err(|_| err(format!("{what} '{}' is not a coordinate", field(c))))
        };
        let (start, end) = (coordinate(start_col, "start")?, coordinate(end_col, "end")?);
        if end <= start {
            return Err(err(format!("end {end} is not after start {start}")));
        }
        let split_text = field(split_col);
        let split = Split::parse(split_text)
            .ok_or_else(|| err(format!("split '{split_text}' is not train, valid or test")))?;
        let region = GenomicRegion {
            name: field(chrom_col).to_string(),
            start,
            end: Some(end),
        };
        let mut sequence = fasta
            .fetch(&region)
            .map_err(|e| err(e.to_string()))?
            .sequence;
        let minus = match strand_col.map(field) {
            Some("-") => true,
            Some("+" | "." | "") | None => false,
            Some(other) => return Err(err(format!("strand '{other}' is not +, - or ."))),
        };
        if minus {
            sequence = alphabet::reverse_complement(&sequence);
        }
        examples.push(LabelledSequence {
            id: format!(
                "{}:{}-{}{}",
                region.name,
                start + 1,
                end,
                if minus { "(-)" } else { "" }
            ),
            sequence,
            label: Label::Class(label),
            split: Some(split),
        });
    }
    if examples.is_empty() {
        return Err(SeqError::Format {
            path: bed,
            at: Location::File,
            message: "has a header but no rows".into(),
        });
    }
    classification_task(
        &dir,
        examples,
        None,
        vec![format!(
            "BEND layout: sequences cut from {} at the BED coordinates",
            genome.display()
        )],
    )
}
