//! Task tables (CSV, TSV, FASTA with label= headers), with and without a task.json: never panic;
//! accepted rows have normalised, non-empty sequences and labels inside the task's classes.
#![no_main]

use std::path::Path;

use dnalm_seq::{
    task::{read_table_from, TableFormat, TaskKind},
    Label, TaskSpec,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let format = match selector % 3 {
        0 => TableFormat::Csv,
        1 => TableFormat::Tsv,
        _ => TableFormat::Fasta,
    };
    let spec = match (selector / 3) % 3 {
        0 => None,
        1 => Some(TaskSpec {
            name: "fuzz".into(),
            description: None,
            kind: TaskKind::Classification { num_classes: 3, label_names: Some(vec!["a".into(), "b".into(), "c".into()]) },
        }),
        _ => Some(TaskSpec { name: "fuzz".into(), description: None, kind: TaskKind::Regression }),
    };
    let input = Box::new(std::io::Cursor::new(body.to_vec()));
    if let Ok(rows) = read_table_from(input, Path::new("fuzz.table"), format, spec.as_ref(), None) {
        for row in rows {
            assert!(!row.sequence.is_empty());
            assert!(row.sequence.iter().all(|b| b"ACGTN".contains(b)));
            match (&spec, row.label) {
                (Some(TaskSpec { kind: TaskKind::Classification { num_classes, .. }, .. }), Label::Class(c)) => {
                    assert!(c < *num_classes)
                }
                (Some(TaskSpec { kind: TaskKind::Regression, .. }), Label::Value(v)) => assert!(v.is_finite()),
                (None, _) => {}
                (s, l) => panic!("label {l:?} does not fit {s:?}"),
            }
        }
    }
});
