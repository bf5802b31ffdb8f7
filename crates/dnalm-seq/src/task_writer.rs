//! Writing a classification task directory (the layout [`crate::task`] reads): the rows as CSV
//! and `task.json` with the label names, a description, provenance and per-split counts.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::Serialize;

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

#[derive(Serialize)]
struct SplitCounts {
    rows: usize,
    per_label: BTreeMap<String, usize>,
}

#[derive(Serialize)]
struct TaskJson<'a> {
    name: &'a str,
    num_classes: usize,
    label_names: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seq_len: Option<usize>,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    counts: BTreeMap<&'static str, SplitCounts>,
}

impl NewTask {
    /// Writes `rows` and `task.json` into `dir` (created if needed), each file atomically.
    /// Fails, naming the row, on a label outside the label names.
    pub fn write(&self, dir: &Path, rows: &[TaskRow], files: &TaskFiles) -> Result<()> {
        if let Some(bad) = rows.iter().find(|r| r.label >= self.label_names.len()) {
            return Err(SeqError::invalid(
                format!("row '{}'", bad.id),
                format!(
                    "label {} is not one of the {} classes",
                    bad.label,
                    self.label_names.len()
                ),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| SeqError::io(dir, e))?;
        match files {
            TaskFiles::PerSplit => {
                for split in Split::ALL {
                    let of_split = rows.iter().filter(|r| r.split == split);
                    let path = dir.join(format!("{}.csv", split.as_str()));
                    write_text(&path, &table(of_split, false))?;
                }
            }
            TaskFiles::One(name) => write_text(&dir.join(name), &table(rows.iter(), true))?,
        }
        let counts = Split::ALL
            .iter()
            .map(|&split| {
                let of_split: Vec<&TaskRow> = rows.iter().filter(|r| r.split == split).collect();
                let per_label = (0..self.label_names.len())
                    .map(|l| {
                        let n = of_split.iter().filter(|r| r.label == l).count();
                        (l.to_string(), n)
                    })
                    .collect();
                let counts = SplitCounts {
                    rows: of_split.len(),
                    per_label,
                };
                (split.as_str(), counts)
            })
            .collect();
        let json = TaskJson {
            name: &self.name,
            num_classes: self.label_names.len(),
            label_names: &self.label_names,
            seq_len: self.seq_len,
            description: &self.description,
            source: self.source.as_deref(),
            counts,
        };
        let path: PathBuf = dir.join("task.json");
        let text = serde_json::to_string_pretty(&json)
            .map_err(|e| SeqError::invalid("task.json", e.to_string()))?;
        write_text(&path, &(text + "\n"))
    }
}

fn table<'a>(rows: impl Iterator<Item = &'a TaskRow>, with_split: bool) -> String {
    let mut rows = rows.peekable();
    let scored = rows.peek().is_some_and(|r| r.score.is_some());
    let mut text = String::from("sequence,label");
    text.push_str(if scored { ",score,id" } else { ",id" });
    text.push_str(if with_split { ",split\n" } else { "\n" });
    for r in rows {
        let _ = write!(text, "{},{}", String::from_utf8_lossy(&r.sequence), r.label);
        if scored {
            let _ = write!(text, ",{:.4}", r.score.unwrap_or(f64::NAN));
        }
        let _ = write!(text, ",{}", r.id);
        if with_split {
            let _ = write!(text, ",{}", r.split.as_str());
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
}
