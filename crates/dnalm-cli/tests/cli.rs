//! End-to-end runs of the `dnalm` binary on real and deliberately broken files.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{assert_one_line_error, dnalm, root, stderr};
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
    p
}

#[test]
fn help_for_every_subcommand_and_version() {
    let out = dnalm(&["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("dnalm "));
    for cmd in [
        vec!["inspect"],
        vec!["tokenize"],
        vec!["tokenizer"],
        vec!["tokenizer", "train-bpe"],
        vec!["tokenizer", "export"],
        vec!["fetch"],
        vec!["windows"],
        vec!["sample"],
        vec!["make-task", "orientation"],
        vec!["pretrain"],
        vec!["embed"],
        vec!["probe"],
        vec!["finetune"],
        vec!["relevance"],
        vec!["bench"],
        vec!["convert"],
        vec!["study"],
        vec!["score", "likelihood"],
        vec!["score", "variants"],
        vec!["score", "ism"],
        vec!["label"],
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let out = dnalm(&args);
        assert!(out.status.success(), "{cmd:?} --help");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage: dnalm"),
            "{cmd:?}"
        );
    }
}

#[test]
fn bad_input_gives_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Truncated gzip.
    // Truncated gzip: cut before the first output byte (repetitive data) and mid-stream.
    let mut x = 1u64;
    let random: Vec<u8> = (0..200_000)
        .map(|i| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            if i % 61 == 60 {
                b'\n'
            } else {
                b"ACGT"[(x >> 62) as usize]
            }
        })
        .collect();
    for body in [b"ACGTACGTAC\n".repeat(500), random] {
        let mut text = b">chr1\n".to_vec();
        text.extend(body);
        let mut enc = flate2_gzip(&text);
        enc.truncate(enc.len() / 2);
        let p = write(d, "trunc.fa.gz", &enc);
        assert_one_line_error(
            &dnalm(&["inspect", p.to_str().unwrap()]),
            &["trunc.fa.gz", "truncated or corrupt gzip"],
        );
    }
    // Empty file.
    let p = write(d, "empty.fa", b"");
    assert_one_line_error(
        &dnalm(&["inspect", p.to_str().unwrap()]),
        &["empty.fa: file is empty"],
    );
    // FASTA without a header.
    let p = write(d, "nohead.fa", b"ACGT\nACGT\n");
    assert_one_line_error(
        &dnalm(&["tokenize", p.to_str().unwrap()]),
        &["nohead.fa:line 1: not FASTA or FASTQ"],
    );
    // Invalid character.
    let p = write(d, "bad.fa", b">a\nACGT\n>b\nAC\nGT-A\n");
    assert_one_line_error(
        &dnalm(&["inspect", p.to_str().unwrap()]),
        &["bad.fa:record 2 ('b'): invalid base '-' at position 5"],
    );
    // BED with end < start.
    let p = write(d, "bad.bed", b"chr1\t0\t10\nchr1\t50\t20\n");
    assert_one_line_error(
        &dnalm(&["inspect", p.to_str().unwrap()]),
        &["bad.bed:line 2: end 20 is before start 50"],
    );
    // A .fai that disagrees with its FASTA.
    let p = write(d, "g.fa", b">g\nACGTACGTAC\nACGTAC\n");
    write(d, "g.fa.fai", b"g\t16\t3\t8\t9\n");
    assert_one_line_error(
        &dnalm(&["fetch", p.to_str().unwrap(), "g:1-4"]),
        &["g.fa.fai: index does not match", "'g'"],
    );
    // Task tables.
    let task = d.join("task");
    std::fs::create_dir(&task).unwrap();
    write(&task, "task.json", br#"{"name":"t","num_classes":2}"#);
    write(&task, "train.csv", b"seq,label\nACGT,1\n");
    assert_one_line_error(
        &dnalm(&["inspect", task.to_str().unwrap()]),
        &["train.csv:line 1: missing column 'sequence' (found: seq, label)"],
    );
    write(&task, "train.csv", b"sequence,label\nACGT,1\nACGT,7\n");
    assert_one_line_error(
        &dnalm(&["inspect", task.to_str().unwrap()]),
        &["train.csv:line 3: label '7' is not in task.json"],
    );
    // A region outside the sequence, and a weight for a class that does not exist.
    let p = write(d, "h.fa", b">h\nACGT\n");
    assert_one_line_error(
        &dnalm(&["fetch", p.to_str().unwrap(), "h:3-9"]),
        &["region 'h:3-9': outside the sequence (length 4)"],
    );
    let ann = write(d, "h.bed", b"h\t0\t2\tcds_1\n");
    assert_one_line_error(
        &dnalm(&[
            "sample",
            p.to_str().unwrap(),
            "-a",
            ann.to_str().unwrap(),
            "--length",
            "2",
            "--weights",
            "enhancer:1",
        ]),
        &["class 'enhancer' is not in the annotations"],
    );
}

fn flate2_gzip(bytes: &[u8]) -> Vec<u8> {
    // A minimal gzip writer through the system's gzip, to keep the CLI's dependencies lean.
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip is installed");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    child.wait_with_output().unwrap().stdout
}

#[test]
fn demo_genome_inspect_and_tokenize() {
    let out = dnalm(&[
        "inspect",
        "--json",
        &data("ecoli_MG1655.fa.gz"),
        &data("ecoli_MG1655.prodigal.gff3.gz"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["stats"]["lengths"]["total"], 4_639_675);
    let gc = v[0]["stats"]["gc_fraction"].as_f64().unwrap();
    assert!((gc - 0.5079).abs() < 1e-3, "{gc}");
    assert_eq!(v[1]["stats"]["lengths"]["count"], 4314);

    let dir = tempfile::tempdir().unwrap();
    let ids = dir.path().join("ids.jsonl");
    let out = dnalm(&[
        "tokenize",
        &data("lambda_phage.fa"),
        "-t",
        "kmer:6",
        "--window",
        "1000",
        "--json",
        "-o",
        ids.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["sequences"], 48);
    assert_eq!(stats["tokens"], 48 * 995);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&ids)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 48);
    assert_eq!(lines[0]["ids"].as_array().unwrap().len(), 997); // [CLS] + 995 + [SEP]
    assert_eq!(lines[1]["id"], "gi|9626243|ref|NC_001416.1|:1001-2000");
}

#[test]
fn padding_truncation_reverse_complement_and_random_windows() {
    let dir = tempfile::tempdir().unwrap();
    let ids = dir.path().join("ids.jsonl");
    let out = dnalm(&[
        "tokenize",
        &data("tasks/pub_coding"),
        "-t",
        "nucleotide",
        "-o",
        ids.to_str().unwrap(),
        "--max-length",
        "160",
        "--pad",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&ids)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let mask: Vec<u64> = first["attention_mask"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(mask.len(), 160);
    assert_eq!(mask.iter().sum::<u64>(), 152); // [CLS] + 150 bases + [SEP]

    let fa = write(dir.path(), "r.fa", b">r\nAACcgT\n");
    let out = dnalm(&[
        "fetch",
        fa.to_str().unwrap(),
        "r:2-6",
        "--reverse-complement",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        ">r:2-6 reverse-complement\nAcgGT\n"
    );

    let out = dnalm(&[
        "windows",
        &data("lambda_phage.fa"),
        "--length",
        "500",
        "--random",
        "25",
        "--seed",
        "3",
    ]);
    let bed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(bed.lines().count(), 25);
    let again = dnalm(&[
        "windows",
        &data("lambda_phage.fa"),
        "--length",
        "500",
        "--random",
        "25",
        "--seed",
        "3",
    ]);
    assert_eq!(
        bed,
        String::from_utf8_lossy(&again.stdout),
        "seeded sampling is reproducible"
    );
}

#[test]
fn inspect_reads_standard_input() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dnalm"))
        .args(["inspect", "--json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"@r1\nACGTN\n+\nIIIII\n@r2\nacg\n+\nIII\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["stats"]["fastq"], true);
    assert_eq!(v[0]["stats"]["lengths"]["total"], 8);
    assert_eq!(v[0]["stats"]["soft_masked_fraction"], 3.0 / 8.0);
}

#[test]
fn tokenizer_export_and_bpe_training_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let nt = dir.path().join("nt6");
    let out = dnalm(&[
        "tokenizer",
        "export",
        "kmer:6:non-overlapping",
        "-o",
        nt.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    for f in ["tokenizer.json", "vocab.txt", "tokenizer_config.json"] {
        assert!(nt.join(f).is_file(), "{f}");
    }
    let bpe = dir.path().join("bpe");
    let out = dnalm(&[
        "tokenizer",
        "train-bpe",
        &data("lambda_phage.fa"),
        "--vocab-size",
        "256",
        "-o",
        bpe.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = dnalm(&[
        "tokenize",
        &data("tasks/pub_coding"),
        "-t",
        bpe.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["vocab_size"], 256);
    assert!(stats["tokens_per_base"].as_f64().unwrap() < 0.5);
}

#[test]
fn windows_split_and_balanced_sampling() {
    let out = dnalm(&[
        "windows",
        &data("ecoli_MG1655.fa.gz"),
        "--length",
        "1000",
        "--split",
        "block:100000",
        "--fractions",
        "0.7,0.1,0.2",
    ]);
    assert!(out.status.success());
    let bed = String::from_utf8_lossy(&out.stdout);
    let mut spans: Vec<(u64, u64, String)> = bed
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].to_string(),
            )
        })
        .collect();
    spans.sort();
    assert!(
        spans.windows(2).all(|w| w[0].1 <= w[1].0),
        "stride = length: windows are disjoint"
    );
    let out = dnalm(&[
        "sample",
        &data("ecoli_MG1655.fa.gz"),
        "-a",
        &data("ecoli_MG1655.prodigal.gff3.gz"),
        "--length",
        "256",
        "--count",
        "4000",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bg = &report["classes"][1];
    assert_eq!(bg["class"], "background");
    assert!(bg["base_fraction"].as_f64().unwrap() > 2.0 * bg["genome_fraction"].as_f64().unwrap());
}

/// Issue 14, defect 14: messages say each thing once and name what is wrong: the os error was
/// printed twice, a missing task said "task.json not found" twice under the wrong path, and a
/// directory given as a FASTA file was reported as an empty file.
#[test]
fn error_messages_say_each_thing_once_and_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.fa");
    let missing_task = dir.path().join("no_task");
    let a_dir = dir.path().to_str().unwrap().to_string();
    let config = root().join("configs/mlm.toml");
    let fasta_set = format!("data.fasta=\"{a_dir}\"");
    let model = root().join("crates/dnalm-eval/tests/golden/nt_v2/checkpoint");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["inspect", missing.to_str().unwrap()],
            vec!["nope.fa", "No such file or directory"],
        ),
        (
            vec![
                "probe",
                "-m",
                model.to_str().unwrap(),
                "-t",
                missing_task.to_str().unwrap(),
            ],
            vec!["no_task", "no such task directory"],
        ),
        (
            vec!["probe", "-m", model.to_str().unwrap(), "-t", &a_dir],
            vec!["not a task directory (no task.json)"],
        ),
        (
            vec![
                "pretrain",
                "-c",
                config.to_str().unwrap(),
                "--dry-run",
                "--set",
                &fasta_set,
            ],
            // A directory is a multi-genome corpus (every FASTA file in it); this one has none.
            vec!["data.fasta", "no FASTA files"],
        ),
        (
            vec!["fetch", &a_dir, "x:1-2"],
            vec!["is a directory, not a file"],
        ),
    ];
    for (args, needles) in cases {
        let out = dnalm(&args);
        assert_one_line_error(&out, &needles);
        let line = stderr(&out);
        for needle in &needles {
            assert_eq!(line.matches(needle).count(), 1, "said twice: {line}");
        }
    }
}
