//! The checkpoints of a run directory: found by the step in their name (`checkpoint-<step>`,
//! parsed as a number, never sorted as text), checked complete before use, and pruned through a
//! tombstone so that a kill mid-deletion never leaves a normally named, half-deleted checkpoint.

use std::{
    fs,
    path::{Path, PathBuf},
};

/// Files every complete checkpoint holds (written into a temporary directory that is renamed
/// when all are there).
pub const REQUIRED_FILES: [&str; 5] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    crate::trainer::STATE_FILE,
    crate::trainer::OPTIMIZER_FILE,
];

const PREFIX: &str = "checkpoint-";
/// A checkpoint being deleted is first renamed to `.<name>.deleting`.
const TOMBSTONE_SUFFIX: &str = ".deleting";

/// The directory name of the checkpoint at `step`.
pub fn checkpoint_name(step: u64) -> String {
    format!("{PREFIX}{step:06}")
}

/// The step a checkpoint directory name stands for (`checkpoint-000250` -> 250); `None` for
/// any other name (`checkpoint-best`, `checkpoint-1e3`...).
pub fn parse_step(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What a run directory holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckpointScan {
    /// Complete checkpoints, by increasing step.
    pub complete: Vec<(u64, PathBuf)>,
    /// Numbered checkpoints that lack a required file (a kill while one was being deleted by an
    /// older dnalm, or files removed by hand); never resumed from, never pruned.
    pub incomplete: Vec<PathBuf>,
    /// Directories named `checkpoint-*` whose suffix is not a step (user-made, e.g.
    /// `checkpoint-best`); left alone.
    pub foreign: Vec<PathBuf>,
}

impl CheckpointScan {
    /// Reads `dir` (an unreadable or missing directory holds nothing).
    pub fn of(dir: &Path) -> Self {
        let mut scan = CheckpointScan::default();
        let Ok(entries) = fs::read_dir(dir) else {
            return scan;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !name.starts_with(PREFIX) || !path.is_dir() {
                continue;
            }
            match parse_step(name) {
                Some(step) if is_complete(&path) => scan.complete.push((step, path)),
                Some(_) => scan.incomplete.push(path),
                None => scan.foreign.push(path),
            }
        }
        scan.complete.sort();
        scan.incomplete.sort();
        scan.foreign.sort();
        scan
    }

    /// The complete checkpoint with the highest step.
    pub fn latest(&self) -> Option<&Path> {
        self.complete.last().map(|(_, p)| p.as_path())
    }

    /// One line per directory that is not a usable checkpoint, for the user to know.
    pub fn warnings(&self) -> Vec<String> {
        let incomplete = self.incomplete.iter().map(|p| {
            format!(
                "{}: incomplete checkpoint (missing one of {}), skipped",
                p.display(),
                REQUIRED_FILES.join(", ")
            )
        });
        let foreign = self.foreign.iter().map(|p| {
            format!(
                "{}: not a numbered checkpoint (checkpoint-<step>), ignored",
                p.display()
            )
        });
        incomplete.chain(foreign).collect()
    }
}

fn is_complete(dir: &Path) -> bool {
    REQUIRED_FILES.iter().all(|f| dir.join(f).is_file())
}

/// The complete checkpoint with the highest step in a run directory.
pub fn latest_checkpoint(dir: &Path) -> Option<PathBuf> {
    CheckpointScan::of(dir).latest().map(Path::to_path_buf)
}

/// Deletes all but the `keep` newest complete checkpoints of `dir`, never `protect` (the one
/// just written), and finishes deletions a kill interrupted. Each victim is renamed to a
/// tombstone first, so a kill leaves either the whole checkpoint under its name or a
/// tombstone that the next prune removes. Returns the checkpoints deleted.
pub fn prune(dir: &Path, keep: usize, protect: &Path) -> std::io::Result<Vec<PathBuf>> {
    for entry in fs::read_dir(dir)?.filter_map(Result::ok) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(TOMBSTONE_SUFFIX) {
            fs::remove_dir_all(entry.path())?;
        }
    }
    let scan = CheckpointScan::of(dir);
    let excess = scan.complete.len().saturating_sub(keep.max(1));
    let mut deleted = Vec::new();
    for (_, path) in scan.complete.iter().take(excess) {
        if path == protect {
            continue;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let tombstone = dir.join(format!(".{}{TOMBSTONE_SUFFIX}", name.unwrap_or_default()));
        fs::rename(path, &tombstone)?;
        fs::remove_dir_all(&tombstone)?;
        deleted.push(path.clone());
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(dir: &Path, name: &str, complete: bool) -> PathBuf {
        let path = dir.join(name);
        fs::create_dir_all(&path).unwrap();
        let files = if complete {
            &REQUIRED_FILES[..]
        } else {
            &REQUIRED_FILES[..2]
        };
        for f in files {
            fs::write(path.join(f), b"x").unwrap();
        }
        path
    }

    #[test]
    fn steps_are_numbers_not_text() {
        assert_eq!(parse_step("checkpoint-000250"), Some(250));
        assert_eq!(parse_step("checkpoint-1000000"), Some(1_000_000));
        for bad in [
            "checkpoint-best",
            "checkpoint-",
            "checkpoint-1e3",
            "checkpoint--1",
        ] {
            assert_eq!(parse_step(bad), None, "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        make(dir.path(), "checkpoint-999999", true);
        let newest = make(dir.path(), "checkpoint-1000000", true);
        make(dir.path(), "checkpoint-best", true);
        // As text, "checkpoint-best" > "checkpoint-999999" > "checkpoint-1000000".
        assert_eq!(latest_checkpoint(dir.path()), Some(newest));
    }

    #[test]
    fn pruning_keeps_the_newest_and_leaves_foreign_and_incomplete_alone() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for step in [999_998u64, 999_999] {
            make(d, &checkpoint_name(step), true);
        }
        let newest = make(d, &checkpoint_name(1_000_000), true);
        let best = make(d, "checkpoint-best", true);
        let broken = make(d, &checkpoint_name(5), false);
        let deleted = prune(d, 2, &newest).unwrap();
        assert_eq!(deleted, [d.join(checkpoint_name(999_998))]);
        let scan = CheckpointScan::of(d);
        let kept: Vec<u64> = scan.complete.iter().map(|(s, _)| *s).collect();
        assert_eq!(kept, [999_999, 1_000_000]);
        assert!(best.is_dir() && broken.is_dir());
        assert_eq!(scan.warnings().len(), 2, "{:?}", scan.warnings());
    }

    #[test]
    fn a_tombstone_left_by_a_kill_is_finished_and_never_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let good = make(d, &checkpoint_name(100), true);
        // A kill between rename and delete leaves this behind.
        make(
            d,
            &format!(".{}{TOMBSTONE_SUFFIX}", checkpoint_name(200)),
            true,
        );
        // An older dnalm's half-deleted checkpoint: numbered, files missing.
        make(d, &checkpoint_name(300), false);
        assert_eq!(latest_checkpoint(d), Some(good.clone()));
        prune(d, 2, &good).unwrap();
        let names: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.ends_with(TOMBSTONE_SUFFIX)),
            "{names:?}"
        );
    }
}
