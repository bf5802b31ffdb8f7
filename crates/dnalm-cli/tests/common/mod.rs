//! Helpers shared by the CLI integration tests (each test file uses a subset).
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the `dnalm` binary.
pub fn dnalm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dnalm"))
        .args(args)
        .output()
        .expect("the dnalm binary runs")
}

/// Runs `dnalm` and asserts success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = dnalm(args);
    assert!(
        out.status.success(),
        "dnalm {}: {}",
        args.join(" "),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A run's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failed run with exactly one stderr line that contains every needle.
pub fn assert_one_line_error(out: &Output, needles: &[&str]) {
    let stderr = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "'{stderr}' lacks '{n}'");
    }
}

/// `--set` overrides that shrink a shipped pretraining config to a seconds-long run on `fasta`.
pub fn tiny(fasta: &str) -> Vec<String> {
    [
        format!("data.fasta=\"{fasta}\""),
        "data.context=64".into(),
        "data.split_block=2000".into(),
        "data.valid_fraction=0.1".into(),
        "model.n_layers=1".into(),
        "model.d_model=16".into(),
        "model.n_heads=2".into(),
        "model.d_ffn=32".into(),
        "train.batch_size=4".into(),
        "train.eval_batches=1".into(),
        "train.eval_every=2".into(),
        "train.save_every=2".into(),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect()
}
