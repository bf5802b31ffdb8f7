//! `dnalm score`, `dnalm label` and `dnalm study` end to end on tiny models, with the bad inputs.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_one_line_error, dnalm, ok, root, stderr, tiny};
use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    encoder: PathBuf,
    decoder: PathBuf,
    task: PathBuf,
}

fn pretrain(config: &str, out: &Path, extra: &[&str]) {
    let fasta = root().join("data/lambda_phage.fa");
    let mut args: Vec<String> = [
        "pretrain",
        "-c",
        root().join(config).to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    args.extend(tiny(&fasta.display().to_string()));
    for s in extra {
        args.push("--set".into());
        args.push(s.to_string());
    }
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// A tiny MLM encoder and a tiny next-token decoder (2 steps each), and a 60/20/30-row slice of
/// pub_coding.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        pretrain(
            "configs/mlm.toml",
            &dir.path().join("mlm"),
            &["train.steps=2"],
        );
        pretrain(
            "configs/next_token.toml",
            &dir.path().join("next"),
            &["train.steps=2"],
        );
        let task = dir.path().join("coding");
        slice_task("pub_coding", &task, [60, 20, 30]);
        Fixture {
            root: dir.path().to_path_buf(),
            encoder: dir.path().join("mlm/checkpoint-000002"),
            decoder: dir.path().join("next/checkpoint-000002"),
            task,
            _dir: dir,
        }
    })
}

/// A tiny classifier fine-tuned (once per test run) on a GC-content task (E. coli vs S. aureus
/// windows): even a tiny model learns it, and lambda's windows vary in GC, so `label` predicts
/// both classes on lambda.
fn gc_classifier() -> &'static Path {
    static FT: OnceLock<PathBuf> = OnceLock::new();
    FT.get_or_init(|| {
        let f = fixture();
        let gc = f.root.join("gc");
        slice_task("pub_gc_species2", &gc, [200, 40, 40]);
        let ft = f.root.join("ft");
        ok(&[
            "finetune",
            "-m",
            f.encoder.to_str().unwrap(),
            "-t",
            gc.to_str().unwrap(),
            "-o",
            ft.to_str().unwrap(),
            "--epochs",
            "4",
            "--lr",
            "3e-3",
        ]);
        ft
    })
}

/// The first rows of each split of a bundled task, half of each class.
fn slice_task(name: &str, task: &Path, rows: [usize; 3]) {
    std::fs::create_dir_all(task).unwrap();
    let src = root().join("data/tasks").join(name);
    for (split, n) in ["train", "valid", "test"].into_iter().zip(rows) {
        let text = std::fs::read_to_string(src.join(format!("{split}.csv"))).unwrap();
        let mut lines = text.lines();
        let mut out = format!("{}\n", lines.next().unwrap());
        let rows: Vec<&str> = lines.collect();
        for class in [",0", ",1"] {
            for l in rows.iter().filter(|l| l.ends_with(class)).take(n / 2) {
                out.push_str(&format!("{l}\n"));
            }
        }
        std::fs::write(task.join(format!("{split}.csv")), out).unwrap();
    }
    std::fs::copy(src.join("task.json"), task.join("task.json")).unwrap();
}

fn lambda() -> Vec<u8> {
    let text = std::fs::read_to_string(root().join("data/lambda_phage.fa")).unwrap();
    text.lines()
        .skip(1)
        .flat_map(|l| l.trim().bytes())
        .collect()
}

fn lambda_name() -> String {
    let text = std::fs::read_to_string(root().join("data/lambda_phage.fa")).unwrap();
    text.lines().next().unwrap()[1..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn likelihoods_exact_for_decoders_pseudo_for_encoders_per_base_too() {
    let f = fixture();
    let seqs = f.root.join("seqs.fa");
    let g = lambda();
    std::fs::write(
        &seqs,
        format!(
            ">a\n{}\n>b\n{}\n",
            String::from_utf8_lossy(&g[1000..1100]),
            String::from_utf8_lossy(&g[5000..5150])
        ),
    )
    .unwrap();
    for (model, kind) in [(&f.encoder, "pseudo"), (&f.decoder, "exact")] {
        let per_base = f.root.join(format!("{kind}_bases.tsv"));
        let table = ok(&[
            "score",
            "likelihood",
            "-m",
            model.to_str().unwrap(),
            "-i",
            seqs.to_str().unwrap(),
            "--per-base",
            per_base.to_str().unwrap(),
        ]);
        let rows: Vec<Vec<&str>> = table
            .lines()
            .skip(1)
            .map(|l| l.split('\t').collect())
            .collect();
        assert_eq!(rows.len(), 2, "{table}");
        assert_eq!((rows[0][0], rows[0][1], rows[0][5]), ("a", "100", kind));
        let ll: f64 = rows[1][3].parse().unwrap();
        // Two training steps leave the model near uniform over its vocabulary (bases and
        // special tokens): between -ln(vocab) and 0 per base.
        assert!(ll < 0.0 && ll / 150.0 > -(16f64.ln()), "{ll}");
        let bases = std::fs::read_to_string(&per_base).unwrap();
        assert_eq!(bases.lines().count(), 1 + 100 + 150);
        let sum_b: f64 = bases
            .lines()
            .skip(1)
            .filter(|l| l.starts_with("b\t"))
            .map(|l| l.split('\t').nth(3).unwrap().parse::<f64>().unwrap())
            .sum();
        assert!((sum_b - ll).abs() < 1e-2, "{sum_b} vs {ll}");
    }
}

#[test]
fn variants_get_an_info_field_a_tsv_and_bad_records_name_their_line() {
    let f = fixture();
    let g = lambda();
    let chrom = lambda_name();
    let (p1, p2) = (2001usize, 30001usize);
    let r1 = g[p1 - 1] as char;
    let alt1 = if r1 == 'A' { 'C' } else { 'A' };
    let vcf = f.root.join("v.vcf");
    let text = format!(
        "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n{chrom}\t{p1}\tsnv\t{r1}\t{alt1},<DEL>\t.\tPASS\tDP=5\n{chrom}\t{p2}\tins\t{}\t{}TT\t.\tPASS\t.\n",
        g[p2 - 1] as char,
        g[p2 - 1] as char
    );
    std::fs::write(&vcf, &text).unwrap();
    for model in [&f.encoder, &f.decoder] {
        let out = f.root.join("scored.vcf");
        let tsv = f.root.join("scored.tsv");
        ok(&[
            "score",
            "variants",
            "-m",
            model.to_str().unwrap(),
            "--vcf",
            vcf.to_str().unwrap(),
            "--reference",
            root().join("data/lambda_phage.fa").to_str().unwrap(),
            "--flank",
            "40",
            "-o",
            out.to_str().unwrap(),
            "--tsv",
            tsv.to_str().unwrap(),
        ]);
        let scored = std::fs::read_to_string(&out).unwrap();
        assert!(
            scored.contains("##INFO=<ID=DNALM_LLR,Number=A,Type=Float"),
            "{scored}"
        );
        let records: Vec<&str> = scored.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(
            records[0].ends_with(",.") && records[0].contains("DP=5;DNALM_LLR="),
            "{}",
            records[0]
        );
        assert!(records[1].contains("\tDNALM_LLR="), "{}", records[1]);
        let rows = std::fs::read_to_string(&tsv).unwrap();
        let methods: Vec<&str> = rows
            .lines()
            .skip(1)
            .map(|l| l.rsplit('\t').next().unwrap())
            .collect();
        if model == &f.encoder {
            assert_eq!(methods, ["masked_marginal", "pll_ratio"]);
        } else {
            assert_eq!(methods, ["ll_ratio", "ll_ratio"]);
        }
    }
    // A REF that does not match the genome, and an unknown chromosome.
    let wrong = if g[p2 - 1] == b'G' { 'C' } else { 'G' };
    for (bad, needles) in [
        (
            text.replace(
                &format!("\t{p2}\tins\t{}", g[p2 - 1] as char),
                &format!("\t{p2}\tins\t{wrong}"),
            ),
            vec!["v_bad.vcf:line 4", "does not match the reference"],
        ),
        (
            text.replacen(&chrom, "chrZ", 1),
            vec!["v_bad.vcf:line 3", "chromosome 'chrZ'"],
        ),
    ] {
        let p = f.root.join("v_bad.vcf");
        std::fs::write(&p, bad).unwrap();
        let out = dnalm(&[
            "score",
            "variants",
            "-m",
            f.encoder.to_str().unwrap(),
            "--vcf",
            p.to_str().unwrap(),
            "--reference",
            root().join("data/lambda_phage.fa").to_str().unwrap(),
            "-o",
            f.root.join("never.vcf").to_str().unwrap(),
        ]);
        assert_one_line_error(&out, &needles);
        assert!(!f.root.join("never.vcf").exists());
    }
}

#[test]
fn mutagenesis_writes_a_matrix_and_a_heatmap() {
    let f = fixture();
    let out = f.root.join("ism");
    ok(&[
        "score",
        "ism",
        "-m",
        f.encoder.to_str().unwrap(),
        "-i",
        root().join("data/lambda_phage.fa").to_str().unwrap(),
        "--region",
        "1,001-1,030",
        "--flank",
        "10",
        "-o",
        out.to_str().unwrap(),
    ]);
    let tsv = std::fs::read_to_string(out.join("ism.tsv")).unwrap();
    let g = lambda();
    let rows: Vec<Vec<&str>> = tsv
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 30);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0], (1001 + i).to_string());
        let base = g[1000 + i] as char;
        assert_eq!(r[1], base.to_string());
        let col = 2 + "ACGT".find(base).unwrap();
        assert_eq!(r[col].parse::<f64>().unwrap(), 0.0);
        assert!((2..6)
            .filter(|&c| c != col)
            .all(|c| r[c].parse::<f64>().unwrap() != 0.0));
    }
    assert_eq!(&std::fs::read(out.join("ism.png")).unwrap()[1..4], b"PNG");
    let bad = dnalm(&[
        "score",
        "ism",
        "-m",
        f.encoder.to_str().unwrap(),
        "-i",
        root().join("data/lambda_phage.fa").to_str().unwrap(),
        "--region",
        "10-99999999",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(&bad, &["--region '10-99999999'", "1-48502"]);
}

#[test]
fn labels_become_a_task_and_annotations_for_element_masking() {
    let f = fixture();
    let ft = gc_classifier();
    let out = f.root.join("lambda_labels");
    let bad = dnalm(&[
        "label",
        "-m",
        ft.to_str().unwrap(),
        root().join("data/lambda_phage.fa").to_str().unwrap(),
        "--element",
        "promoter",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(
        &bad,
        &["--element 'promoter'", "E.coli_MG1655, S.aureus_RF122"],
    );
    let not_classifier = dnalm(&[
        "label",
        "-m",
        f.encoder.to_str().unwrap(),
        root().join("data/lambda_phage.fa").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(
        &not_classifier,
        &["not a fine-tuned classifier", "head.json"],
    );
    assert!(!out.exists());
    ok(&[
        "label",
        "-m",
        ft.to_str().unwrap(),
        root().join("data/lambda_phage.fa").to_str().unwrap(),
        "--stride",
        "300",
        "--min-score",
        "0",
        "--element",
        "0",
        "--element",
        "1",
        "-o",
        out.to_str().unwrap(),
    ]);
    // BED: merged elements on both strands with scores and class names.
    let bed = std::fs::read_to_string(out.join("predicted.bed")).unwrap();
    let chrom = lambda_name();
    let mut types = std::collections::BTreeSet::new();
    for l in bed.lines() {
        let c: Vec<&str> = l.split('\t').collect();
        assert_eq!(c.len(), 6, "{l}");
        assert_eq!(c[0], chrom);
        assert!(c[1].parse::<usize>().unwrap() < c[2].parse::<usize>().unwrap());
        assert!(c[4].parse::<u32>().unwrap() <= 1000);
        assert!(c[5] == "+" || c[5] == "-");
        types.insert(c[3].to_string());
    }
    assert!(!types.is_empty());
    // Pairs: 200-bp windows (the training length), both strands, leak-free splits.
    let pairs = std::fs::read_to_string(out.join("pairs.csv")).unwrap();
    let rows: Vec<Vec<&str>> = pairs
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert!(rows.len() > 200, "{}", rows.len());
    assert!(rows.iter().all(|r| r[0].len() == 200));
    assert!(rows.iter().any(|r| r[3].ends_with(":-")));
    let labels: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[1]).collect();
    assert_eq!(labels.len(), 2, "both classes predicted: {labels:?}");
    // The pairs are a task: inspect and probe read them.
    let text = ok(&["inspect", out.to_str().unwrap()]);
    assert!(text.contains("lambda_labels"), "{text}");
    ok(&[
        "probe",
        "-m",
        f.encoder.to_str().unwrap(),
        "-t",
        out.to_str().unwrap(),
    ]);
    // The BED is annotation for annotation-aware masking of whole predicted elements.
    let types: Vec<String> = types.iter().map(|t| format!("\"{t}\"")).collect();
    pretrain(
        "configs/annotation.toml",
        &f.root.join("annot"),
        &[
            &format!("data.annotations=\"{}\"", out.join("predicted.bed").display()),
            "data.class_key=\"name\"",
            &format!(
                "objectives=[{{type=\"annotation\", element_types=[{}], element_rate=0.5, background_rate=0.1}}]",
                types.join(",")
            ),
            "train.steps=2",
        ],
    );
    assert!(f.root.join("annot/checkpoint-000002/config.json").is_file());
}

fn study_file(dir: &Path, seeds: &str, task: &Path) -> PathBuf {
    let fasta = root().join("data/lambda_phage.fa");
    let text = format!(
        r#"name = "tiny"
base = "{base}"
tasks = ["{task}"]
seeds = {seeds}
set = ["data.fasta=\"{fasta}\"", "data.split_block=2000", "data.valid_fraction=0.1",
       "model.n_layers=1", "model.d_model=16", "model.n_heads=2", "model.d_ffn=32",
       "train.batch_size=4", "train.eval_batches=1"]
[budget]
bases = 768
[[knobs]]
name = "context"
key = "data.context"
values = [32, 64]
[eval]
random_control = true
folds = 2
"#,
        base = root().join("configs/mlm.toml").display(),
        task = task.display(),
        fasta = fasta.display(),
    );
    let p = dir.join("study.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A one-seed [`study_file`] in a fresh `name` directory under the fixture, with each
/// `(from, to)` replacement applied; returns the study file.
fn edited_study(f: &Fixture, name: &str, edits: &[(&str, &str)]) -> PathBuf {
    let dir = f.root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let grid = study_file(&dir, "[1]", &f.task);
    let text = edits
        .iter()
        .fold(std::fs::read_to_string(&grid).unwrap(), |t, (from, to)| {
            t.replace(from, to)
        });
    std::fs::write(&grid, text).unwrap();
    grid
}

/// `dnalm study --grid GRID -o OUT` plus `extra`.
fn study(grid: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "study",
        "--grid",
        grid.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    dnalm(&args)
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_study_runs_every_cell_resumes_and_reports() {
    let f = fixture();
    let dir = f.root.join("study");
    std::fs::create_dir_all(&dir).unwrap();
    let grid = study_file(&dir, "[1, 2]", &f.task);
    let out = dir.join("out");
    let run = |extra: &[&str]| {
        let o = study(&grid, &out, extra);
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    // Nothing run yet: --report-only writes an empty, incomplete report and trains nothing.
    run(&["--report-only"]);
    let md = std::fs::read_to_string(out.join("study.md")).unwrap();
    assert!(
        md.contains("Incomplete") && md.contains("(not run yet)"),
        "{md}"
    );
    assert!(!out.join("cells").exists());
    let log = run(&[]);
    assert_eq!(log.matches(": pretraining").count(), 4, "{log}");
    for file in [
        "study.md",
        "study.json",
        "baselines.json",
        "plots/heatmap.png",
        "plots/effect_context.png",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let json = read_json(&out.join("study.json"));
    assert_eq!(json["complete"], true);
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    // The same budget in bases: 768 / (4 × 32) = 6 steps, 768 / (4 × 64) = 3 steps.
    let steps: Vec<u64> = results
        .iter()
        .map(|r| r["steps"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [6, 6, 3, 3]);
    let differs = results[0]["differs"].as_array().unwrap();
    assert_eq!(
        differs.len(),
        1,
        "only the knob differs from the study's base: {differs:?}"
    );
    assert!(
        differs[0].as_str().unwrap().starts_with("data.context"),
        "{differs:?}"
    );
    assert!(!results[0]["random"].as_array().unwrap().is_empty());
    assert!(results[1]["random"].as_array().unwrap().is_empty());
    let md = std::fs::read_to_string(out.join("study.md")).unwrap();
    for needle in [
        "## Easy, hard or knob-sensitive",
        "| coding_",
        "k-mer spectrum",
        "effect_context.png",
    ] {
        assert!(
            md.contains(needle) || md.contains(&needle.replace("coding_", "pub_coding")),
            "{needle}: {md}"
        );
    }
    // Resume: a finished study does nothing new; a lost cell result is redone alone (its
    // pretraining resumes from its last checkpoint rather than starting over).
    let again = run(&[]);
    assert_eq!(again.matches(": pretraining").count(), 0, "{again}");
    std::fs::remove_file(out.join("cells/context-64/seed-2/result.json")).unwrap();
    let again = run(&[]);
    assert_eq!(again.matches(": pretraining").count(), 1, "{again}");
    assert!(again.contains("[context=64] seed 2"), "{again}");
    // A different study into the same directory is refused, leaving it intact.
    let other = study_file(&dir, "[1, 2, 3]", &f.task);
    let o = study(&other, &out, &[]);
    assert_one_line_error(&o, &["holds a different study"]);
    assert!(out.join("study.md").is_file());
}

#[test]
fn bad_study_files_fail_before_training() {
    let f = fixture();
    let dir = f.root.join("bad_study");
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read_to_string(study_file(&dir, "[1]", &f.task)).unwrap();
    for (text, needles) in [
        (
            good.replace("bases = 768", "bases = 768\nseconds = 3.0"),
            vec!["study.toml", "exactly one of"],
        ),
        (
            good.replace("key = \"data.context\"", "key = \"data.contxt\""),
            vec!["cell [context=32]", "contxt"],
        ),
        (
            good.replace("values = [32, 64]", "values = [32, -1]"),
            vec!["cell [context=-1]"],
        ),
        (
            good.replace("folds = 2", "folds = 2\nprobes = [\"svm\"]"),
            vec!["study.toml", "eval.probes", "svm"],
        ),
    ] {
        std::fs::write(dir.join("study.toml"), text).unwrap();
        let o = study(&dir.join("study.toml"), &dir.join("out"), &[]);
        assert_one_line_error(&o, &needles);
        assert!(!dir.join("out/cells").exists());
    }
}

#[test]
fn the_long_range_task_is_built_from_a_genome_and_jaspar_motifs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("orient");
    let fasta = root().join("data/lambda_phage.fa");
    let motifs = root().join("data/jaspar_pfms.jaspar");
    let args = |motif: &str, length: &str| {
        vec![
            "make-task".to_string(),
            "orientation".into(),
            fasta.display().to_string(),
            "--motifs".into(),
            motifs.display().to_string(),
            "--motif".into(),
            motif.into(),
            "--length".into(),
            length.into(),
            "--rows".into(),
            "40,10,10".into(),
            "--split".into(),
            "block:5000".into(),
            "-o".into(),
            out.display().to_string(),
        ]
    };
    let run = |a: Vec<String>| dnalm(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let o = run(args("MA0139.1", "400"));
    assert!(o.status.success(), "{}", stderr(&o));
    let spec = read_json(&out.join("task.json"));
    assert_eq!(spec["label_names"][1], "convergent");
    for (split, n) in [("train", 40), ("valid", 10), ("test", 10)] {
        let text = std::fs::read_to_string(out.join(format!("{split}.csv"))).unwrap();
        let rows: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(rows.len(), n);
        assert_eq!(rows.iter().filter(|r| r.contains(",1,")).count(), n / 2);
        assert!(rows
            .iter()
            .all(|r| r.split(',').next().unwrap().len() == 400));
    }
    // The task loads like any other.
    ok(&["inspect", out.to_str().unwrap()]);
    let bad = run(args("NOPE", "400"));
    assert_one_line_error(
        &bad,
        &[
            "jaspar_pfms.jaspar",
            "no motif with id or name 'NOPE'",
            "MA0139.1 CTCF",
        ],
    );
    let short = run(args("CTCF", "60"));
    assert_one_line_error(&short, &["60 bases cannot hold two 19-base sites"]);
}

#[test]
fn a_study_can_fine_tune_every_cell() {
    let f = fixture();
    let grid = edited_study(
        f,
        "study_finetune",
        &[
            ("values = [32, 64]", "values = [64]"),
            (
                "random_control = true",
                "random_control = false\nbaselines = false\nfinetune = true\nfinetune_epochs = 1",
            ),
        ],
    );
    let out = grid.with_file_name("out");
    let o = study(&grid, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = read_json(&out.join("cells/context-64/seed-1/result.json"));
    let ft = &r["scores"][0]["finetuned"];
    assert!(ft["mean"].is_number(), "{r}");
    assert!(!out.join("baselines.json").exists());
    let md = std::fs::read_to_string(out.join("study.md")).unwrap();
    assert!(md.contains("### Fine-tuned"), "{md}");
}

#[test]
fn a_wall_clock_budget_stops_each_cell_at_its_deadline() {
    let f = fixture();
    let grid = edited_study(
        f,
        "study_seconds",
        &[
            ("bases = 768", "seconds = 1.5"),
            (
                "\"train.batch_size=4\"",
                "\"train.batch_size=4\", \"train.steps=1000000\"",
            ),
            ("values = [32, 64]", "values = [32]"),
            (
                "random_control = true",
                "random_control = false\nbaselines = false",
            ),
        ],
    );
    let out = grid.with_file_name("out");
    let o = study(&grid, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = read_json(&out.join("cells/context-32/seed-1/result.json"));
    let steps = r["steps"].as_u64().unwrap();
    assert!(steps > 0 && steps < 1_000_000, "{steps}");
    // Training stopped at the deadline (plus the step in flight).
    let seconds = r["train_seconds"].as_f64().unwrap();
    assert!((1.0..30.0).contains(&seconds), "{seconds}");
    assert!(r["scores"][0]["linear"]["mean"].is_number(), "{r}");
}

/// Runs `command` whole into `dir/whole` and as `n` shards into `dir/sI` (`{out}` in the
/// command is that directory), merges each of the shards' `outputs` (listed last shard first:
/// `merge` orders them by their manifests) into `dir/merged`, and asserts that every file in
/// `compare` equals the whole run's, byte for byte.
fn assert_shards_merge(dir: &Path, n: usize, outputs: &[&str], compare: &[&str], command: &[&str]) {
    let run = |out: &Path, shard: Option<String>| {
        let mut args: Vec<String> = command
            .iter()
            .map(|a| a.replace("{out}", out.to_str().unwrap()))
            .collect();
        if let Some(s) = shard {
            args.extend(["--shard".to_string(), s]);
        }
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    };
    run(&dir.join("whole"), None);
    for i in 1..=n {
        run(&dir.join(format!("s{i}")), Some(format!("{i}/{n}")));
    }
    let merged = dir.join("merged");
    std::fs::create_dir_all(&merged).unwrap();
    for o in outputs {
        let mut args = vec!["merge".to_string()];
        for i in (1..=n).rev() {
            args.push(dir.join(format!("s{i}")).join(o).to_str().unwrap().into());
        }
        args.extend(["-o".into(), merged.join(o).to_str().unwrap().into()]);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    for f in compare {
        let (w, m) = (dir.join("whole").join(f), merged.join(f));
        assert_eq!(
            std::fs::read(&m).unwrap_or_else(|e| panic!("{}: {e}", m.display())),
            std::fs::read(&w).unwrap(),
            "{f}: {n} merged shards differ from the whole run"
        );
    }
}

#[test]
fn sharded_runs_merge_into_the_whole_run_byte_for_byte() {
    let f = fixture();
    let dir = f.root.join("sharding");
    std::fs::create_dir_all(&dir).unwrap();
    // Seven records of lambda, of unequal lengths.
    let g = lambda();
    let fasta = dir.join("pieces.fa");
    let mut text = String::new();
    let mut at = 0;
    for (i, len) in [3000usize, 500, 8000, 120, 2500, 6000, 900]
        .into_iter()
        .enumerate()
    {
        text.push_str(&format!(
            ">piece{i}\n{}\n",
            String::from_utf8_lossy(&g[at..at + len])
        ));
        at += len;
    }
    std::fs::write(&fasta, text).unwrap();
    let (encoder, decoder) = (f.encoder.to_str().unwrap(), f.decoder.to_str().unwrap());
    let fasta = fasta.to_str().unwrap();
    assert_shards_merge(
        &dir.join("likelihood"),
        3,
        &["ll.tsv", "bases.tsv"],
        &["ll.tsv", "bases.tsv"],
        &[
            "score",
            "likelihood",
            "-m",
            decoder,
            "-i",
            fasta,
            "-o",
            "{out}/ll.tsv",
            "--per-base",
            "{out}/bases.tsv",
        ],
    );
    assert_shards_merge(
        &dir.join("embed"),
        2,
        &["e.npy"],
        &["e.npy", "e.tsv"],
        &[
            "embed",
            "-m",
            encoder,
            "-i",
            fasta,
            "-o",
            "{out}/e.npy",
            "--per",
            "token",
        ],
    );
    // A task's splits: 300 training rows are two chunks of 256, one per shard.
    let task300 = dir.join("gc300");
    slice_task("pub_gc_species2", &task300, [300, 20, 20]);
    assert_shards_merge(
        &dir.join("embed_task"),
        2,
        &["emb"],
        &[
            "emb/train.npy",
            "emb/train.tsv",
            "emb/valid.npy",
            "emb/test.tsv",
        ],
        &[
            "embed",
            "-m",
            encoder,
            "--task",
            task300.to_str().unwrap(),
            "-o",
            "{out}/emb",
        ],
    );
    // A VCF of 12 SNVs on lambda.
    let chrom = lambda_name();
    let mut vcf =
        String::from("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n");
    for k in 0..12 {
        let pos = 1000 + 3500 * k;
        let r = g[pos - 1] as char;
        let alt = if r == 'A' { 'G' } else { 'A' };
        vcf.push_str(&format!("{chrom}\t{pos}\tv{k}\t{r}\t{alt}\t.\tPASS\t.\n"));
    }
    let vcf_path = dir.join("v.vcf");
    std::fs::write(&vcf_path, vcf).unwrap();
    assert_shards_merge(
        &dir.join("variants"),
        4,
        &["v.vcf", "v.tsv"],
        &["v.vcf", "v.tsv"],
        &[
            "score",
            "variants",
            "-m",
            encoder,
            "--vcf",
            vcf_path.to_str().unwrap(),
            "--reference",
            root().join("data/lambda_phage.fa").to_str().unwrap(),
            "--flank",
            "32",
            "-o",
            "{out}/v.vcf",
            "--tsv",
            "{out}/v.tsv",
        ],
    );
    // Labelling: elements that cross a shard boundary are joined again.
    let ft = gc_classifier();
    assert_shards_merge(
        &dir.join("label"),
        3,
        &["labels"],
        &[
            "labels/predicted.bed",
            "labels/pairs.csv",
            "labels/task.json",
        ],
        &[
            "label",
            "-m",
            ft.to_str().unwrap(),
            root().join("data/lambda_phage.fa").to_str().unwrap(),
            "--stride",
            "200",
            "--min-score",
            "0",
            "--element",
            "0",
            "--element",
            "1",
            "--batch",
            "16",
            "-o",
            "{out}/labels",
        ],
    );
}

#[test]
fn merge_refuses_a_missing_repeated_or_foreign_shard_and_bad_shard_names() {
    let f = fixture();
    let dir = f.root.join("bad_shards");
    std::fs::create_dir_all(&dir).unwrap();
    let fasta = dir.join("three.fa");
    let g = lambda();
    let records: Vec<String> = (0..3)
        .map(|i| {
            format!(
                ">r{i}\n{}\n",
                String::from_utf8_lossy(&g[i * 200..i * 200 + 150])
            )
        })
        .collect();
    std::fs::write(&fasta, records.concat()).unwrap();
    let score = |out: &str, shard: &str, flank_model: &Path| {
        let out = dir.join(out);
        let run = dnalm(&[
            "score",
            "likelihood",
            "-m",
            flank_model.to_str().unwrap(),
            "-i",
            fasta.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--shard",
            shard,
        ]);
        (run, out.to_str().unwrap().to_string())
    };
    for bad in ["0/2", "3/2", "two"] {
        let (run, out) = score("never.tsv", bad, &f.decoder);
        assert_one_line_error(&run, &[&format!("shard '{bad}'"), "I/N"]);
        assert!(!Path::new(&out).exists());
    }
    let stdout = dnalm(&[
        "score",
        "likelihood",
        "-m",
        f.decoder.to_str().unwrap(),
        "-i",
        fasta.to_str().unwrap(),
        "--shard",
        "1/2",
    ]);
    assert_one_line_error(&stdout, &["--shard 1/2", "-o FILE"]);
    let (run, a) = score("a.tsv", "1/3", &f.decoder);
    assert!(run.status.success(), "{}", stderr(&run));
    let (_, b) = score("b.tsv", "3/3", &f.decoder);
    let (_, c) = score("c.tsv", "3/3", &f.decoder);
    let (_, other) = score("other.tsv", "2/3", &f.encoder);
    let merged = dir.join("m.tsv");
    let merge = |parts: &[&str]| {
        let mut args = vec!["merge"];
        args.extend(parts);
        args.extend(["-o", merged.to_str().unwrap()]);
        dnalm(&args)
    };
    assert_one_line_error(&merge(&[&a, &b]), &["shard(s) 2/3", "missing"]);
    assert_one_line_error(&merge(&[&a, &b, &c]), &["b.tsv", "c.tsv", "both shard 3/3"]);
    assert_one_line_error(&merge(&[&a, &other, &b]), &["other.tsv", "another job"]);
    // A shard whose header was changed after the run is not joined under another's header.
    let (_, d) = score("d.tsv", "2/3", &f.decoder);
    let text = std::fs::read_to_string(&d).unwrap();
    std::fs::write(&d, text.replacen("log_likelihood", "ll", 1)).unwrap();
    assert_one_line_error(&merge(&[&a, &d, &b]), &["d.tsv", "header differs", "a.tsv"]);
    let plain = root().join("data/lambda_phage.fa");
    assert_one_line_error(
        &merge(&[plain.to_str().unwrap()]),
        &["no manifest", "--shard"],
    );
    assert!(!merged.exists());
}

#[test]
fn a_sharded_bench_merges_into_the_whole_suites_report() {
    let f = fixture();
    let dir = f.root.join("bench_shards");
    let suite = dir.join("suite");
    for (name, rows) in [
        ("pub_coding", [60, 20, 30]),
        ("pub_gc_species2", [60, 20, 30]),
        ("pub_coding", [80, 20, 20]),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (n, r))| ((n, i), r))
    {
        slice_task(name.0, &suite.join(format!("t{}_{}", name.1, name.0)), rows);
    }
    let suite = suite.to_str().unwrap().to_string();
    assert_shards_merge(
        &dir,
        2,
        &["b"],
        &[],
        &[
            "bench",
            "--suite",
            &suite,
            "--baselines",
            "kmer",
            "--folds",
            "1",
            "-o",
            "{out}/b",
        ],
    );
    // The same results as the whole run: every number but the wall-clock seconds, to 1e-9 (two
    // runs of the same bench differ in the last bits of a metric: parallel sums).
    fn same(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
        use serde_json::Value;
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys = |m: &serde_json::Map<String, Value>| {
                    m.keys()
                        .filter(|k| *k != "seconds")
                        .cloned()
                        .collect::<Vec<_>>()
                };
                assert_eq!(keys(x), keys(y), "{at}");
                for k in keys(x) {
                    same(&x[&k], &y[&k], &format!("{at}.{k}"));
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                assert_eq!(x.len(), y.len(), "{at}");
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    same(p, q, &format!("{at}[{i}]"));
                }
            }
            (Value::Number(x), Value::Number(y)) => {
                let (p, q) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!((p - q).abs() <= 1e-9 * p.abs().max(1.0), "{at}: {p} vs {q}");
            }
            _ => assert_eq!(a, b, "{at}"),
        }
    }
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p.join("b/results.json")).unwrap()).unwrap()
    };
    let (whole, merged) = (read(dir.join("whole")), read(dir.join("merged")));
    assert_eq!(merged["tasks"].as_array().unwrap().len(), 3);
    same(&whole, &merged, "results");
    // With a model, the merged report says why it has no task affinity.
    let encoder = f.encoder.to_str().unwrap();
    let with_model = dir.join("with_model");
    for i in 1..=2 {
        ok(&[
            "bench",
            "--suite",
            &suite,
            "-m",
            encoder,
            "--no-baselines",
            "--probes",
            "linear",
            "--folds",
            "1",
            "--shard",
            &format!("{i}/2"),
            "-o",
            with_model.join(format!("s{i}")).to_str().unwrap(),
        ]);
    }
    let merged = with_model.join("merged");
    ok(&[
        "merge",
        with_model.join("s1").to_str().unwrap(),
        with_model.join("s2").to_str().unwrap(),
        "-o",
        merged.to_str().unwrap(),
    ]);
    let md = std::fs::read_to_string(merged.join("report.md")).unwrap();
    assert!(
        md.contains("Merged from 2 shards") && md.contains("affinity"),
        "{md}"
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("results.json")).unwrap())
            .unwrap();
    assert_eq!(results["tasks"].as_array().unwrap().len(), 3);
    assert_eq!(results["relevance"].as_array().unwrap().len(), 3);
}
