//! Writing a classification, multi-label or per-base task directory (the layout [`crate::task`] reads):
//! the rows as CSV and `task.json` with the label names, a description, provenance and per-split
//! counts.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{write_atomic, Result, SeqError, Split};

/// One row of a new task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    /// The bases.
    pub sequence: Vec<u8>,
    /// Class index into the task's label names.
    pub label: usize,
    /// Identifier (e.g. `chr1:101-300:+`).
    pub id: String,
    /// A score written beside the label (e.g. a predicted probability), when there is one.
    pub score: Option<f64>,
    /// The row's split.
    pub split: Split,
}

/// One row of a new multi-label task.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSetRow {
    /// The bases.
    pub sequence: Vec<u8>,
    /// The labels that apply, as indices into the task's label names (any number, none too).
    pub labels: Vec<usize>,
    /// Identifier (e.g. `chr1:101-300`).
    pub id: String,
    /// The row's split.
    pub split: Split,
}

/// One row of a new per-base task.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseClassRow {
    /// The bases.
    pub sequence: Vec<u8>,
    /// The class of each base, as an index into the task's label names.
    pub classes: Vec<u8>,
    /// Identifier (e.g. `chr1:101-600`).
    pub id: String,
    /// The row's split.
    pub split: Split,
}

/// What the writer needs of a row of any kind.
trait WrittenRow {
    /// The bases, the id and the split.
    fn row(&self) -> (&[u8], &str, Split);
    fn score(&self) -> Option<f64> {
        None
    }
    /// The labels the row counts towards, once per count: its class, each label it has, or
    /// each base's class.
    fn labels(&self) -> Vec<usize>;
    /// The label cell as written.
    fn label_text(&self) -> String;
}

impl WrittenRow for TaskRow {
    fn row(&self) -> (&[u8], &str, Split) {
        (&self.sequence, &self.id, self.split)
    }
    fn score(&self) -> Option<f64> {
        self.score
    }
    fn labels(&self) -> Vec<usize> {
        vec![self.label]
    }
    fn label_text(&self) -> String {
        self.label.to_string()
    }
}

impl WrittenRow for LabelSetRow {
    fn row(&self) -> (&[u8], &str, Split) {
        (&self.sequence, &self.id, self.split)
    }
    fn labels(&self) -> Vec<usize> {
        let mut sorted = self.labels.clone();
        sorted.sort_unstable();
        sorted.dedup();
        sorted
    }
    fn label_text(&self) -> String {
        self.labels()
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(&crate::task::LABEL_SEPARATOR.to_string())
    }
}

impl WrittenRow for BaseClassRow {
    fn row(&self) -> (&[u8], &str, Split) {
        (&self.sequence, &self.id, self.split)
    }
    fn labels(&self) -> Vec<usize> {
        self.classes.iter().map(|&c| c as usize).collect()
    }
    fn label_text(&self) -> String {
        crate::task::base_classes_text(&self.classes)
    }
}

/// Which kind of task is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WrittenKind {
    Classes,
    MultiLabel,
    PerBase,
}

/// Where the rows go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskFiles {
    /// `train.csv`, `valid.csv` and `test.csv`.
    PerSplit,
    /// One CSV of that name with a `split` column.
    One(String),
}

/// A classification task to write.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// Task name.
    pub name: String,
    /// What the task asks and how it was made.
    pub description: String,
    /// One name per class.
    pub label_names: Vec<String>,
    /// Length of every sequence, when fixed.
    pub seq_len: Option<usize>,
    /// The command that made it, when known.
    pub source: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct SplitCounts {
    rows: usize,
    per_label: BTreeMap<String, usize>,
}

#[derive(Serialize, Deserialize)]
struct TaskJson {
    name: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    multi_label: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    per_base: bool,
    #[serde(default)]
    num_classes: usize,
    label_names: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq_len: Option<usize>,
    description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    counts: BTreeMap<String, SplitCounts>,
}

impl TaskJson {
    fn write(&self, dir: &Path) -> Result<()> {
        let path: PathBuf = dir.join("task.json");
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| SeqError::invalid("task.json", e.to_string()))?;
        write_text(&path, &(text + "\n"))
    }
}

impl NewTask {
    /// Writes `rows` and `task.json` into `dir` (created if needed), each file atomically.
    /// Fails, naming the row, on a label outside the label names.
    pub fn write(&self, dir: &Path, rows: &[TaskRow], files: &TaskFiles) -> Result<()> {
        self.write_rows(dir, rows, files, WrittenKind::Classes)
    }

    /// Writes a multi-label task (`"multi_label": true`; each row's labels `;`-separated; the
    /// counts per label are the rows that have it) as [`NewTask::write`] does.
    pub fn write_multi_label(
        &self,
        dir: &Path,
        rows: &[LabelSetRow],
        files: &TaskFiles,
    ) -> Result<()> {
        self.write_rows(dir, rows, files, WrittenKind::MultiLabel)
    }

    /// Writes a per-base task (`"per_base": true`; each row's label one base-36 class character
    /// per base; the counts per label are bases) as [`NewTask::write`] does. Fails, naming the
    /// row, when its classes do not cover its sequence.
    pub fn write_per_base(
        &self,
        dir: &Path,
        rows: &[BaseClassRow],
        files: &TaskFiles,
    ) -> Result<()> {
        if let Some(r) = rows.iter().find(|r| r.classes.len() != r.sequence.len()) {
            return Err(SeqError::invalid(
                format!("row '{}'", r.id),
                format!(
                    "{} base classes for {} bases",
                    r.classes.len(),
                    r.sequence.len()
                ),
            ));
        }
        self.write_rows(dir, rows, files, WrittenKind::PerBase)
    }

    fn write_rows<R: WrittenRow>(
        &self,
        dir: &Path,
        rows: &[R],
        files: &TaskFiles,
        kind: WrittenKind,
    ) -> Result<()> {
        let n = self.label_names.len();
        for r in rows {
            if let Some(bad) = r.labels().iter().find(|&&l| l >= n) {
                return Err(SeqError::invalid(
                    format!("row '{}'", r.row().1),
                    format!("label {bad} is not one of the {n} classes"),
                ));
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| SeqError::io(dir, e))?;
        match files {
            TaskFiles::PerSplit => {
                for split in Split::ALL {
                    let of_split = rows.iter().filter(|r| r.row().2 == split);
                    let path = dir.join(format!("{}.csv", split.as_str()));
                    write_text(&path, &table(of_split, false))?;
                }
            }
            TaskFiles::One(name) => write_text(&dir.join(name), &table(rows.iter(), true))?,
        }
        let counts = Split::ALL
            .iter()
            .map(|&split| {
                let of_split: Vec<&R> = rows.iter().filter(|r| r.row().2 == split).collect();
                let mut per_label = vec![0usize; n];
                for r in &of_split {
                    for l in r.labels() {
                        per_label[l] += 1;
                    }
                }
                let per_label = per_label
                    .into_iter()
                    .enumerate()
                    .map(|(l, c)| (l.to_string(), c))
                    .collect();
                let counts = SplitCounts {
                    rows: of_split.len(),
                    per_label,
                };
                (split.as_str().to_string(), counts)
            })
            .collect();
        TaskJson {
            name: self.name.clone(),
            multi_label: kind == WrittenKind::MultiLabel,
            per_base: kind == WrittenKind::PerBase,
            num_classes: self.label_names.len(),
            label_names: self.label_names.clone(),
            seq_len: self.seq_len,
            description: self.description.clone(),
            source: self.source.clone(),
            counts,
        }
        .write(dir)
    }
}

/// Merges the task directories that the shards of one job wrote (`shards`, in shard order, each
/// with `task.json` and the one table `table`, e.g. `dnalm label --shard I/N`) into `dir`: the
/// tables concatenated under one header and `task.json` with the counts summed and the name
/// `name`. The result is what the whole job writes. Fails, naming the shard, when the shards
/// disagree on the classes, length or description (shards of different jobs).
pub fn merge_shards(shards: &[PathBuf], table: &str, dir: &Path, name: &str) -> Result<()> {
    let mut merged: Option<TaskJson> = None;
    let mut header: Option<String> = None;
    let mut body = String::new();
    for shard in shards {
        let json_path = shard.join("task.json");
        let text = std::fs::read_to_string(&json_path).map_err(|e| SeqError::io(&json_path, e))?;
        let json: TaskJson = serde_json::from_str(&text).map_err(|e| {
            SeqError::invalid(
                json_path.display().to_string(),
                format!("not a task.json: {e}"),
            )
        })?;
        match &mut merged {
            None => merged = Some(json),
            Some(m) => {
                if (&m.label_names, m.seq_len, &m.description, &m.source)
                    != (
                        &json.label_names,
                        json.seq_len,
                        &json.description,
                        &json.source,
                    )
                {
                    return Err(SeqError::invalid(
                        json_path.display().to_string(),
                        format!(
                            "its classes, length or description differ from {}'s: not a shard of the same job",
                            shards[0].display()
                        ),
                    ));
                }
                for (split, counts) in json.counts {
                    let into = m.counts.entry(split).or_insert(SplitCounts {
                        rows: 0,
                        per_label: BTreeMap::new(),
                    });
                    into.rows += counts.rows;
                    for (label, n) in counts.per_label {
                        *into.per_label.entry(label).or_insert(0) += n;
                    }
                }
            }
        }
        let table_path = shard.join(table);
        let text =
            std::fs::read_to_string(&table_path).map_err(|e| SeqError::io(&table_path, e))?;
        let (first, rows) = text.split_once('\n').unwrap_or((text.as_str(), ""));
        // A shard without rows writes a header without the score column: its header is not
        // compared, and the first shard with rows names the columns.
        if rows.is_empty() {
            header.get_or_insert_with(|| first.to_string());
            continue;
        }
        match &header {
            Some(h) if !body.is_empty() && h != first => {
                return Err(SeqError::invalid(
                    table_path.display().to_string(),
                    format!("its header '{first}' differs from the other shards' '{h}'"),
                ))
            }
            _ => header = Some(first.to_string()),
        }
        body.push_str(rows);
    }
    let Some(mut merged) = merged else {
        return Err(SeqError::invalid("merge", "no shards given"));
    };
    merged.name = name.to_string();
    std::fs::create_dir_all(dir).map_err(|e| SeqError::io(dir, e))?;
    let mut text = header.unwrap_or_default();
    text.push('\n');
    text.push_str(&body);
    write_text(&dir.join(table), &text)?;
    merged.write(dir)
}

fn table<'a, R: WrittenRow + 'a>(rows: impl Iterator<Item = &'a R>, with_split: bool) -> String {
    let mut rows = rows.peekable();
    let scored = rows.peek().is_some_and(|r| r.score().is_some());
    let mut text = String::from("sequence,label");
    text.push_str(if scored { ",score,id" } else { ",id" });
    text.push_str(if with_split { ",split\n" } else { "\n" });
    for r in rows {
        let (sequence, id, split) = r.row();
        let _ = write!(
            text,
            "{},{}",
            String::from_utf8_lossy(sequence),
            r.label_text()
        );
        if scored {
            let _ = write!(text, ",{:.4}", r.score().unwrap_or(f64::NAN));
        }
        let _ = write!(text, ",{id}");
        if with_split {
            let _ = write!(text, ",{}", split.as_str());
        }
        text.push('\n');
    }
    text
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, |w| w.write_all(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Task;

    fn row(seq: &str, label: usize, split: Split) -> TaskRow {
        TaskRow {
            sequence: seq.as_bytes().to_vec(),
            label,
            id: format!("{seq}-{label}"),
            score: None,
            split,
        }
    }

    /// A per-base task loads back with its classes per base; its counts are bases.
    #[test]
    fn a_written_per_base_task_loads_back() {
        let new = NewTask {
            name: "s".into(),
            description: "d".into(),
            label_names: vec!["other".into(), "CDS".into()],
            seq_len: Some(4),
            source: None,
        };
        let base_row = |seq: &str, classes: Vec<u8>, split| BaseClassRow {
            sequence: seq.as_bytes().to_vec(),
            classes,
            id: seq.into(),
            split,
        };
        let rows = [
            base_row("ACGT", vec![0, 1, 1, 0], Split::Train),
            base_row("CCCC", vec![0, 0, 0, 0], Split::Valid),
            base_row("AAAA", vec![1, 1, 1, 1], Split::Test),
        ];
        let dir = tempfile::tempdir().unwrap();
        new.write_per_base(dir.path(), &rows, &TaskFiles::PerSplit)
            .unwrap();
        let task = Task::load(dir.path()).unwrap();
        assert_eq!(
            task.examples[0].label,
            crate::Label::Bases(vec![0, 1, 1, 0])
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("task.json")).unwrap())
                .unwrap();
        assert_eq!(json["per_base"], true);
        assert_eq!(json["counts"]["train"]["per_label"]["1"], 2);
        let short = [base_row("ACGT", vec![0, 1], Split::Train)];
        let err = new
            .write_per_base(dir.path(), &short, &TaskFiles::PerSplit)
            .unwrap_err();
        assert!(
            err.to_string().contains("2 base classes for 4 bases"),
            "{err}"
        );
    }

    #[test]
    fn a_written_task_loads_back_with_its_rows_and_counts() {
        let new = NewTask {
            name: "t".into(),
            description: "d".into(),
            label_names: vec!["no".into(), "yes".into()],
            seq_len: Some(4),
            source: None,
        };
        let rows = [
            row("ACGT", 1, Split::Train),
            row("AAAA", 0, Split::Train),
            row("CCCC", 1, Split::Valid),
            row("GGGG", 0, Split::Test),
        ];
        for files in [TaskFiles::PerSplit, TaskFiles::One("pairs.csv".into())] {
            let dir = tempfile::tempdir().unwrap();
            new.write(dir.path(), &rows, &files).unwrap();
            let task = Task::load(dir.path()).unwrap();
            assert_eq!(task.split(Split::Train).count(), 2, "{files:?}");
            assert_eq!(task.split(Split::Test).count(), 1, "{files:?}");
            let json: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(dir.path().join("task.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(json["counts"]["train"]["per_label"]["1"], 1);
            assert_eq!(json["label_names"][1], "yes");
        }
        let bad = [row("ACGT", 2, Split::Train)];
        let dir = tempfile::tempdir().unwrap();
        let err = new
            .write(dir.path(), &bad, &TaskFiles::PerSplit)
            .unwrap_err();
        assert!(err.to_string().contains("ACGT-2"), "{err}");
    }

    #[test]
    fn shards_merge_into_the_whole_task_byte_for_byte() {
        let new = |name: &str| NewTask {
            name: name.into(),
            description: "d".into(),
            label_names: vec!["no".into(), "yes".into()],
            seq_len: Some(4),
            source: Some("dnalm label".into()),
        };
        let mut rows: Vec<TaskRow> = ["ACGT", "AAAA", "CCCC", "GGGG", "TTTT"]
            .iter()
            .enumerate()
            .map(|(i, s)| row(s, i % 2, Split::ALL[i % 3]))
            .collect();
        for (i, r) in rows.iter_mut().enumerate() {
            r.score = Some(0.5 + i as f64 / 10.0);
        }
        let files = TaskFiles::One("pairs.csv".into());
        let root = tempfile::tempdir().unwrap();
        let whole = root.path().join("whole");
        new("whole").write(&whole, &rows, &files).unwrap();
        // Three shards, the middle one empty (its header lacks the score column).
        let parts = [&rows[..2], &rows[2..2], &rows[2..]];
        let shards: Vec<PathBuf> = (0..3).map(|i| root.path().join(format!("s{i}"))).collect();
        for (dir, part) in shards.iter().zip(parts) {
            new("shard").write(dir, part, &files).unwrap();
        }
        let merged = root.path().join("merged");
        merge_shards(&shards, "pairs.csv", &merged, "whole").unwrap();
        for f in ["pairs.csv", "task.json"] {
            assert_eq!(
                std::fs::read_to_string(merged.join(f)).unwrap(),
                std::fs::read_to_string(whole.join(f)).unwrap(),
                "{f}"
            );
        }
        // A shard of another job is refused, by name.
        let other = root.path().join("other");
        NewTask {
            description: "another job".into(),
            ..new("x")
        }
        .write(&other, &rows[..1], &files)
        .unwrap();
        let err = merge_shards(&[shards[0].clone(), other], "pairs.csv", &merged, "m")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("other/task.json") && err.contains("same job"),
            "{err}"
        );
    }
}
