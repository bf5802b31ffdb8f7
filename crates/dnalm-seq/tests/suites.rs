//! The standard suites read from fixtures laid out as each suite is distributed
//! (`scripts/make_suite_fixtures.py` wrote them from the bundled pub_coding task).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    fs,
    path::{Path, PathBuf},
};

use dnalm_seq::{
    alphabet::reverse_complement,
    suite::{discover, SuiteFormat, TaskSource},
    task::TaskKind,
    IndexedFasta, Label, Split, Task,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/suites")
}

fn sequences(task: &Task, split: Split) -> Vec<Vec<u8>> {
    task.split(split).map(|e| e.sequence.clone()).collect()
}

fn counts(task: &Task) -> [usize; 3] {
    Split::ALL.map(|s| task.split(s).count())
}

fn binary(task: &Task) -> bool {
    matches!(
        task.spec.kind,
        TaskKind::Classification { num_classes: 2, .. }
    )
}

/// A copy of a fixture directory to break, in a temporary directory.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

/// A copy of the bundled lambda genome (its `.fai` is written beside it on first use).
fn lambda_genome(dir: &Path) -> PathBuf {
    let genome = dir.join("lambda.fa");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/lambda_phage.fa"),
        &genome,
    )
    .unwrap();
    genome
}

fn error_of(source: &TaskSource) -> String {
    source.load().unwrap_err().to_string()
}

#[test]
fn gue_tasks_are_found_in_the_nested_layout_and_dev_is_valid() {
    let sources = discover(SuiteFormat::Gue, &fixtures().join("gue/GUE"), None).unwrap();
    let names: Vec<String> = sources.iter().map(TaskSource::display_name).collect();
    assert_eq!(names, ["prom/prom_300_all", "tf/0"]);
    let task = sources[0].load().unwrap();
    assert_eq!(task.spec.name, "prom/prom_300_all");
    assert_eq!(counts(&task), [48, 16, 16]);
    assert!(binary(&task));
    assert!(task.notes.iter().any(|n| n.contains("dev.csv")));
    // The same suite from the group folder, and one task named directly.
    assert_eq!(
        discover(SuiteFormat::Gue, &fixtures().join("gue/GUE/tf"), None)
            .unwrap()
            .len(),
        1
    );
    let direct = TaskSource::parse(
        &format!("gue:{}", fixtures().join("gue/GUE/tf/0").display()),
        None,
    );
    assert_eq!(direct.load().unwrap().spec.name, "tf/0");
}

#[test]
fn nt_parquet_and_fasta_hold_the_same_rows_as_gue_with_a_carved_validation_split() {
    let gue = TaskSource::new(
        SuiteFormat::Gue,
        fixtures().join("gue/GUE/prom/prom_300_all"),
    )
    .load()
    .unwrap();
    let mut gue_train = sequences(&gue, Split::Train);
    gue_train.extend(sequences(&gue, Split::Valid));
    gue_train.sort();
    for task in ["promoter_all", "enhancers"] {
        let source = TaskSource::new(SuiteFormat::Nt, fixtures().join("nt").join(task));
        let nt = source.load().unwrap();
        assert_eq!(nt.spec.name, task);
        // 32 train rows per class: 3 of each (10%) carved out as validation.
        assert_eq!(counts(&nt), [58, 6, 16], "{task}");
        let mut train = sequences(&nt, Split::Train);
        train.extend(sequences(&nt, Split::Valid));
        train.sort();
        assert_eq!(train, gue_train, "{task}");
        assert_eq!(sequences(&nt, Split::Test), sequences(&gue, Split::Test));
        assert!(nt.examples[0].id.starts_with(&format!("{task}_train_")));
        assert!(
            nt.notes.iter().any(|n| n.contains("carved")),
            "{:?}",
            nt.notes
        );
        // The carving is the same every time.
        let again = source.load().unwrap();
        let valid_ids = |t: &Task| {
            t.split(Split::Valid)
                .map(|e| e.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(valid_ids(&nt), valid_ids(&again));
    }
    let both = discover(SuiteFormat::Nt, &fixtures().join("nt"), None).unwrap();
    assert_eq!(both.len(), 2);
}

#[test]
fn genomic_benchmarks_classes_are_the_folder_names() {
    let sources = discover(
        SuiteFormat::GenomicBenchmarks,
        &fixtures().join("genomic_benchmarks"),
        None,
    )
    .unwrap();
    let task = sources[0].load().unwrap();
    assert_eq!(task.spec.name, "demo_coding");
    let TaskKind::Classification { label_names, .. } = &task.spec.kind else {
        panic!("classification expected");
    };
    assert_eq!(
        label_names.as_deref(),
        Some(&["negative".to_string(), "positive".to_string()][..])
    );
    assert_eq!(counts(&task), [58, 6, 16]);
    // The fixture's positive folder holds pub_coding's coding (label 1) windows.
    let gue = TaskSource::new(
        SuiteFormat::Gue,
        fixtures().join("gue/GUE/prom/prom_300_all"),
    )
    .load()
    .unwrap();
    let coding: Vec<&Vec<u8>> = gue
        .split(Split::Test)
        .filter(|e| e.label == Label::Class(1))
        .map(|e| &e.sequence)
        .collect();
    for e in task
        .split(Split::Test)
        .filter(|e| e.label == Label::Class(1))
    {
        assert!(coding.contains(&&e.sequence), "{}", e.id);
    }
}

#[test]
fn bend_cuts_sequences_from_the_genome_with_their_strand() {
    let tmp = tempfile::tempdir().unwrap();
    let genome = lambda_genome(tmp.path());
    let sources = discover(SuiteFormat::Bend, &fixtures().join("bend"), Some(&genome)).unwrap();
    let task = sources[0].load().unwrap();
    assert_eq!(task.spec.name, "gc_windows");
    assert_eq!(counts(&task), [56, 12, 12]);
    assert!(binary(&task));
    let mut fasta = IndexedFasta::open(&genome).unwrap();
    for e in task.examples.iter().take(6) {
        let (region, minus) = match e.id.strip_suffix("(-)") {
            Some(r) => (r, true),
            None => (e.id.as_str(), false),
        };
        let forward = fasta.fetch(&region.parse().unwrap()).unwrap().sequence;
        let expected = if minus {
            reverse_complement(&forward)
        } else {
            forward
        };
        assert_eq!(e.sequence, expected, "{}", e.id);
        assert_eq!(e.sequence.len(), 200);
        // Label 1: GC above the lambda genome's 49.9%.
        let gc = e
            .sequence
            .iter()
            .filter(|b| matches!(b, b'G' | b'C'))
            .count();
        assert_eq!(e.label == Label::Class(1), gc > 99, "{}", e.id);
    }
}

#[test]
fn bend_tasks_dnalm_cannot_train_yet_are_named_and_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let genome = lambda_genome(tmp.path());
    let refused = fixtures().join("bend_refused");
    for (task, needle) in [
        (
            "histone_modification",
            "line 2: label '3,7' is a list of label indices: a BEND multi-label task",
        ),
        (
            "gene_finding",
            "line 1: a BEND per-base task (no label column: the labels are per base, in",
        ),
        (
            "variant_effects",
            "line 1: a BEND variant-effect task (ref/alt columns)",
        ),
    ] {
        let source = TaskSource {
            genome: Some(genome.clone()),
            ..TaskSource::new(SuiteFormat::Bend, refused.join(task))
        };
        let err = error_of(&source);
        assert!(err.contains(needle), "{task}: {err}");
        assert!(err.contains(&format!("{task}.bed")), "{err}");
    }
    let no_genome = TaskSource::new(SuiteFormat::Bend, fixtures().join("bend/gc_windows"));
    assert!(
        error_of(&no_genome).contains("give the reference genome FASTA they refer to (--genome)")
    );
}

#[test]
fn bad_suites_get_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let gue = tmp.path().join("gue");
    copy_dir(&fixtures().join("gue/GUE/prom/prom_300_all"), &gue);
    let source = TaskSource::new(SuiteFormat::Gue, &gue);

    // A class in test that train never shows.
    fs::write(gue.join("test.csv"), "sequence,label\nACGT,2\nACGA,0\n").unwrap();
    assert!(error_of(&source).contains("class 2 appears in the test split but never in train"));
    // Non-DNA characters follow the alphabet policy.
    fs::write(gue.join("test.csv"), "sequence,label\nAC-T,1\n").unwrap();
    assert!(error_of(&source).contains("test.csv:line 2: invalid base '-' at position 3"));
    // An empty split.
    fs::write(gue.join("test.csv"), "sequence,label\n").unwrap();
    assert!(error_of(&source).contains("test.csv: table has a header but no rows"));
    // The wrong layout.
    fs::remove_file(gue.join("dev.csv")).unwrap();
    let err = error_of(&source);
    assert!(
        err.contains("not a gue task: dev.csv is missing (expected <task>/{train,dev,test}.csv"),
        "{err}"
    );
    // A directory with no tasks of the format.
    let err = discover(SuiteFormat::Nt, &fixtures().join("gue"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no nt tasks here (each task is <task>/{train,test}.parquet"),
        "{err}"
    );

    // Duplicate ids (NT names) across splits.
    let nt = tmp.path().join("nt");
    copy_dir(&fixtures().join("nt/enhancers"), &nt);
    fs::write(nt.join("test.fna"), ">enhancers_train_0|1\nACGT\n").unwrap();
    let err = error_of(&TaskSource::new(SuiteFormat::Nt, &nt));
    assert!(
        err.contains("id 'enhancers_train_0' appears in the"),
        "{err}"
    );
    fs::write(nt.join("test.fna"), ">x\nACGT\n").unwrap();
    let err = error_of(&TaskSource::new(SuiteFormat::Nt, &nt));
    assert!(
        err.contains("test.fna:record 1 ('x'): header has no '|label' suffix"),
        "{err}"
    );

    // Genomic Benchmarks with different class folders in train and test.
    let gb = tmp.path().join("gb");
    copy_dir(&fixtures().join("genomic_benchmarks/demo_coding"), &gb);
    fs::rename(gb.join("test/positive"), gb.join("test/coding")).unwrap();
    let err = error_of(&TaskSource::new(SuiteFormat::GenomicBenchmarks, &gb));
    assert!(
        err.contains("train has classes [negative, positive] but test has [coding, negative]"),
        "{err}"
    );
}

#[test]
fn format_prefixes_parse_and_plain_paths_stay_dnalm() {
    assert_eq!(
        TaskSource::split_spec("genomic-benchmarks:/data/gb"),
        (SuiteFormat::GenomicBenchmarks, PathBuf::from("/data/gb"))
    );
    assert_eq!(
        TaskSource::split_spec("gb:x").0,
        SuiteFormat::GenomicBenchmarks
    );
    assert_eq!(TaskSource::split_spec("BEND:x").0, SuiteFormat::Bend);
    // A colon that is not a format prefix is part of the path.
    assert_eq!(
        TaskSource::split_spec("runs/a:b"),
        (SuiteFormat::Dnalm, PathBuf::from("runs/a:b"))
    );
}
