//! `dnalm embed / probe / finetune / relevance / bench` end to end on a tiny pretrained model and
//! a small slice of the bundled `pub_coding` task, plus the bad inputs the issue names.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_one_line_error, dnalm, ok, root, stderr, tiny};
use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

/// Runs a command that must fail with one `error:` line; returns that line.
fn fails(args: &[&str]) -> String {
    let out = dnalm(args);
    assert_one_line_error(&out, &[]);
    stderr(&out)
}

struct Fixture {
    _dir: tempfile::TempDir,
    model: PathBuf,
    task: PathBuf,
    root: PathBuf,
}

/// A 2-step pretrained tiny encoder (context 64, so 150-bp windows are tiled) and a task of
/// 60/20/30 rows taken from data/tasks/pub_coding.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let fasta = root().join("data/lambda_phage.fa");
        let mut args: Vec<String> = [
            "pretrain",
            "-c",
            root().join("configs/mlm.toml").to_str().unwrap(),
            "-o",
            run.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        args.extend(tiny(&fasta.display().to_string()));
        for s in ["model.n_layers=2", "train.steps=2"] {
            args.push("--set".into());
            args.push(s.into());
        }
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let model = run.join("checkpoint-000002");
        assert!(model.join("config.json").is_file());
        let task = dir.path().join("coding");
        make_task(&task, 60, 20, 30);
        Fixture {
            model,
            task,
            root: dir.path().to_path_buf(),
            _dir: dir,
        }
    })
}

/// Takes the first rows of each split of pub_coding, alternating labels so both classes occur.
fn make_task(dir: &Path, train: usize, valid: usize, test: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let src = root().join("data/tasks/pub_coding");
    for (name, n) in [("train", train), ("valid", valid), ("test", test)] {
        let text = std::fs::read_to_string(src.join(format!("{name}.csv"))).unwrap();
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        let rows: Vec<&str> = lines.collect();
        let zeros = rows.iter().filter(|l| l.ends_with(",0")).take(n / 2);
        let ones = rows.iter().filter(|l| l.ends_with(",1")).take(n - n / 2);
        let mut out = format!("{header}\n");
        for l in zeros.chain(ones) {
            out.push_str(l);
            out.push('\n');
        }
        std::fs::write(dir.join(format!("{name}.csv")), out).unwrap();
    }
    std::fs::write(
        dir.join("task.json"),
        r#"{"name": "coding_slice", "num_classes": 2, "label_names": ["intergenic", "coding"]}"#,
    )
    .unwrap();
}

#[test]
fn embed_a_task_then_probe_the_files() {
    let f = fixture();
    let emb = f.root.join("emb");
    ok(&[
        "embed",
        "-m",
        f.model.to_str().unwrap(),
        "--task",
        f.task.to_str().unwrap(),
        "-o",
        emb.to_str().unwrap(),
        "--layers",
        "1,-1",
        "--rc",
    ]);
    // numpy's .npy layout: magic, then a header naming the shape (30 test rows x 2 layers x 16).
    let bytes = std::fs::read(emb.join("test.npy")).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header = String::from_utf8_lossy(&bytes[10..128]);
    assert!(header.contains("'shape': (30, 32)"), "{header}");
    let tsv = std::fs::read_to_string(emb.join("test.tsv")).unwrap();
    assert_eq!(tsv.lines().count(), 31);
    let out = ok(&[
        "probe",
        "--embeddings",
        emb.to_str().unwrap(),
        "-t",
        f.task.to_str().unwrap(),
        "--probes",
        "linear,knn",
        "--folds",
        "2",
    ]);
    assert!(out.contains("linear") && out.contains("mcc"), "{out}");

    // Bad input: embeddings of another task (count mismatch) and NaN.
    let other = f.root.join("other_task");
    make_task(&other, 40, 20, 30);
    let err = fails(&[
        "probe",
        "--embeddings",
        emb.to_str().unwrap(),
        "-t",
        other.to_str().unwrap(),
    ]);
    assert!(
        err.contains("60 embedded sequences") && err.contains("40 labelled rows"),
        "{err}"
    );
    let mut bytes = std::fs::read(emb.join("valid.npy")).unwrap();
    bytes[128..132].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(emb.join("valid.npy"), bytes).unwrap();
    let err = fails(&[
        "probe",
        "--embeddings",
        emb.to_str().unwrap(),
        "-t",
        f.task.to_str().unwrap(),
    ]);
    assert!(err.contains("row 0, column 0 is NaN"), "{err}");
}

#[test]
fn embed_fasta_per_base_to_safetensors() {
    let f = fixture();
    let fasta = f.root.join("two.fa");
    std::fs::write(&fasta, ">a\nACGTACGTTGCA\n>b desc\nGGGCCCAAATTTNACGT\n").unwrap();
    let out = f.root.join("bases.safetensors");
    ok(&[
        "embed",
        "-m",
        f.model.to_str().unwrap(),
        "-i",
        fasta.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--per",
        "base",
    ]);
    let tsv = std::fs::read_to_string(out.with_extension("tsv")).unwrap();
    assert!(
        tsv.contains("a\t\t0\t12") && tsv.contains("b\t\t12\t29"),
        "{tsv}"
    );
    let err = fails(&[
        "embed",
        "-m",
        f.model.to_str().unwrap(),
        "-i",
        fasta.to_str().unwrap(),
        "-o",
        f.root.join("x.csv").to_str().unwrap(),
    ]);
    assert!(err.contains(".npy or .safetensors"), "{err}");
}

#[test]
fn finetune_saves_a_checkpoint_that_embed_loads() {
    let f = fixture();
    let out = f.root.join("ft");
    let json = ok(&[
        "finetune",
        "-m",
        f.model.to_str().unwrap(),
        "-t",
        f.task.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--epochs",
        "1",
        "--train-last",
        "1",
    ]);
    assert!(json.contains("\"mcc\""), "{json}");
    for file in [
        "config.json",
        "model.safetensors",
        "head.safetensors",
        "head.json",
        "tokenizer.json",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    ok(&[
        "embed",
        "-m",
        out.to_str().unwrap(),
        "--task",
        f.task.to_str().unwrap(),
        "-o",
        f.root.join("ft_emb").to_str().unwrap(),
    ]);
}

#[test]
fn bench_writes_report_results_and_plots_with_baselines() {
    let f = fixture();
    let out = f.root.join("bench");
    let second = f.root.join("coding2");
    make_task(&second, 50, 20, 30);
    let report = ok(&[
        "bench",
        "-t",
        f.task.to_str().unwrap(),
        "-t",
        second.to_str().unwrap(),
        "-m",
        &format!("tiny={}", f.model.display()),
        "-m",
        &format!("random:{}", f.model.display()),
        "-o",
        out.to_str().unwrap(),
        "--probes",
        "linear",
        "--seeds",
        "1",
        "--cnn-epochs",
        "1",
        "--folds",
        "2",
        "--per-layer",
        "--token-probe",
        "--token-probe-epochs",
        "1",
    ]);
    assert!(report.contains("kmer-spectrum (baseline)"), "{report}");
    // The probing curve: every layer of the 2-block model, for each model and task.
    assert!(
        report.contains("Which layer carries the signal"),
        "{report}"
    );
    assert!(
        report.contains("| model | layer 0 | layer 1 | layer 2 | best |"),
        "{report}"
    );
    assert!(report.contains("onehot-cnn (baseline)"));
    assert!(report.contains("| tiny | probe:linear |"));
    assert!(report.contains("| tiny | probe:token |"), "{report}");
    assert!(report.contains("Task affinity"));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["relevance"].as_array().unwrap().len(), 4);
    let curves = results["layer_curves"].as_array().unwrap();
    assert_eq!(curves.len(), 4);
    assert_eq!(curves[0]["scores"].as_array().unwrap().len(), 3);
    // Each model's probe against the best baseline, paired over the test rows.
    assert!(report.contains("Against the best baseline"), "{report}");
    for task in results["tasks"].as_array().unwrap() {
        let comparisons = task["comparisons"].as_array().unwrap();
        // Linear and token probes of both models.
        assert_eq!(comparisons.len(), 4, "{task}");
        let ci = comparisons[0]["difference"]["ci"].as_array().unwrap();
        assert!(ci[0].as_f64().unwrap() <= ci[1].as_f64().unwrap());
    }
    let csv = std::fs::read_to_string(out.join("relevance.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    for png in [
        "relevance.png",
        "coding_slice_bars.png",
        "coding_slice_layers.png",
        "affinity_tiny.png",
    ] {
        let bytes = std::fs::read(out.join("plots").join(png)).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{png}");
    }
}

#[test]
fn bad_tasks_and_mismatched_tokenizers_are_refused() {
    let f = fixture();
    // One class in training.
    let one = f.root.join("one_class");
    make_task(&one, 10, 4, 4);
    let train = std::fs::read_to_string(one.join("train.csv")).unwrap();
    let only_ones: String = train
        .lines()
        .enumerate()
        .filter(|(i, l)| *i == 0 || l.ends_with(",1"))
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    std::fs::write(one.join("train.csv"), only_ones).unwrap();
    let err = fails(&[
        "probe",
        "-m",
        f.model.to_str().unwrap(),
        "-t",
        one.to_str().unwrap(),
    ]);
    assert!(err.contains("single class"), "{err}");
    // A task that expects 6-mer tokens, given a single-nucleotide model.
    let kmer = f.root.join("kmer_task");
    make_task(&kmer, 10, 4, 4);
    std::fs::write(
        kmer.join("task.json"),
        r#"{"name": "k6", "num_classes": 2, "tokenizer": "kmer:6"}"#,
    )
    .unwrap();
    let err = fails(&[
        "probe",
        "-m",
        f.model.to_str().unwrap(),
        "-t",
        kmer.to_str().unwrap(),
    ]);
    assert!(
        err.contains("expects the 6-mer overlapping tokenizer"),
        "{err}"
    );
    // Not a model directory.
    let err = fails(&[
        "probe",
        "-m",
        f.task.to_str().unwrap(),
        "-t",
        f.task.to_str().unwrap(),
    ]);
    assert!(err.contains("no config.json"), "{err}");
}

/// Issue 14, defect 12: `embed --task` into a directory that holds an earlier task's split files
/// removes them (they would be read as this task's), and a probe without a validation split says
/// where it chose its hyperparameter.
#[test]
fn embed_removes_stale_splits_and_probes_say_how_they_chose() {
    let f = fixture();
    let emb = f.root.join("emb_stale");
    let embed = |task: &Path| {
        ok(&[
            "embed",
            "-m",
            f.model.to_str().unwrap(),
            "--task",
            task.to_str().unwrap(),
            "-o",
            emb.to_str().unwrap(),
        ])
    };
    embed(&f.task);
    assert!(emb.join("valid.npy").is_file());
    let no_valid = f.root.join("no_valid_task");
    make_task(&no_valid, 60, 20, 30);
    std::fs::remove_file(no_valid.join("valid.csv")).unwrap();
    embed(&no_valid);
    for stale in ["valid.npy", "valid.tsv"] {
        assert!(!emb.join(stale).exists(), "{stale} left behind");
    }
    let out = ok(&[
        "probe",
        "--embeddings",
        emb.to_str().unwrap(),
        "-t",
        no_valid.to_str().unwrap(),
        "--probes",
        "linear",
        "--folds",
        "2",
    ]);
    assert!(out.contains("no valid split"), "{out}");
}

/// Issue 18: `dnalm bench --suite FORMAT:DIR` reads GUE, the NT downstream tasks, Genomic
/// Benchmarks and BEND as distributed (the fixtures of dnalm-seq), says how it read each, and
/// shows the published numbers where a task has them.
#[test]
fn bench_reads_the_standard_suites_as_distributed() {
    let f = fixture();
    let suites = root().join("crates/dnalm-seq/tests/suites");
    let genome = f.root.join("lambda.fa");
    std::fs::copy(root().join("data/lambda_phage.fa"), &genome).unwrap();
    let out = f.root.join("bench_suites");
    let suite = |format: &str, dir: &str| format!("{format}:{}", suites.join(dir).display());
    let report = ok(&[
        "bench",
        "--suite",
        &suite("gue", "gue/GUE"),
        "--suite",
        &suite("nt", "nt"),
        "--suite",
        &suite("genomic-benchmarks", "genomic_benchmarks"),
        "--task",
        &suite("bend", "bend/gc_windows"),
        "--genome",
        genome.to_str().unwrap(),
        "-m",
        &format!("tiny={}", f.model.display()),
        "-o",
        out.to_str().unwrap(),
        "--probes",
        "linear",
        "--baselines",
        "kmer",
        "--folds",
        "2",
    ]);
    for needle in [
        "## prom/prom_300_all",
        "## tf/0",
        "## promoter_all",
        "## enhancers",
        "## demo_coding",
        "## gc_windows",
        "Read as a **gue** task: GUE layout: dev.csv is the validation split",
        "Read as a **nt** task: the suite has no validation split: 6 train rows (10%",
        "Read as a **genomic-benchmarks** task",
        "Read as a **bend** task: BEND layout: sequences cut from",
        // The published anchors of GUE's prom_300_all, beside this run's best AUROC.
        "| DNABERT-2 (published) | 0.943 |",
        "(this run)** |",
    ] {
        assert!(report.contains(needle), "missing '{needle}' in\n{report}");
    }
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let tasks = results["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 6);
    // Tasks named with --task first, then each suite's in order.
    assert_eq!(tasks[0]["format"], "bend");
    assert_eq!(tasks[0]["rows"], serde_json::json!([56, 12, 12]));
    assert_eq!(tasks[1]["format"], "gue");
    assert_eq!(tasks[1]["rows"], serde_json::json!([48, 16, 16]));

    // A suite in the wrong layout, and a BEND task without its genome: one line each.
    let err = fails(&["bench", "--suite", &suite("gue", "nt"), "-o", "x"]);
    assert!(
        err.contains("no gue tasks here (each task is <task>/{train,dev,test}.csv"),
        "{err}"
    );
    let err = fails(&[
        "probe",
        "-t",
        &suite("bend", "bend/gc_windows"),
        "-m",
        f.model.to_str().unwrap(),
    ]);
    assert!(err.contains("--genome"), "{err}");
}

/// Issue 20 (review): a layer-wise learning-rate decay outside (0, 1] is one clear line, before
/// any training.
#[test]
fn finetune_refuses_a_layer_decay_out_of_range() {
    let f = fixture();
    for bad in ["1.5", "0", "-0.2"] {
        let err = fails(&[
            "finetune",
            "-m",
            f.model.to_str().unwrap(),
            "-t",
            f.task.to_str().unwrap(),
            "-o",
            f.root.join("never").to_str().unwrap(),
            &format!("--layer-decay={bad}"),
        ]);
        assert!(err.contains("layer-decay"), "{err}");
        assert!(err.contains(&format!("{bad} is not in (0, 1]")), "{err}");
        assert!(!f.root.join("never").exists());
    }
}

/// Issue 21: a GPU this build lacks is one line naming the feature, before any work, on every
/// command that runs a model, as is an unknown device name.
#[cfg(not(feature = "vulkan"))]
#[test]
fn every_model_command_refuses_a_device_this_build_lacks() {
    let f = fixture();
    let (model, task) = (f.model.to_str().unwrap(), f.task.to_str().unwrap());
    let out = |name: &str| f.root.join(name).to_str().unwrap().to_string();
    let fasta = root().join("data/lambda_phage.fa");
    let fasta = fasta.to_str().unwrap();
    let commands: Vec<Vec<String>> = vec![
        vec![
            "embed".into(),
            "-m".into(),
            model.into(),
            "-i".into(),
            fasta.into(),
            "-o".into(),
            out("e.npy"),
        ],
        vec![
            "probe".into(),
            "-m".into(),
            model.into(),
            "-t".into(),
            task.into(),
        ],
        vec![
            "finetune".into(),
            "-m".into(),
            model.into(),
            "-t".into(),
            task.into(),
            "-o".into(),
            out("ft"),
        ],
        vec![
            "bench".into(),
            "-m".into(),
            model.into(),
            "-t".into(),
            task.into(),
            "-o".into(),
            out("b"),
        ],
        vec![
            "label".into(),
            "-m".into(),
            model.into(),
            fasta.into(),
            "-o".into(),
            out("l"),
        ],
        vec![
            "score".into(),
            "likelihood".into(),
            "-m".into(),
            model.into(),
            "-i".into(),
            fasta.into(),
            "-o".into(),
            out("s.tsv"),
        ],
    ];
    for command in &commands {
        let mut args: Vec<&str> = command.iter().map(String::as_str).collect();
        args.extend(["--device", "vulkan:0"]);
        let run = dnalm(&args);
        assert_one_line_error(&run, &["device 'vulkan:0'", "--features vulkan"]);
        let run = dnalm(&[&args[..args.len() - 1], &["tpu"]].concat());
        assert_one_line_error(&run, &["device 'tpu': unknown device"]);
    }
    for name in ["e.npy", "ft", "b", "l", "s.tsv"] {
        assert!(!f.root.join(name).exists(), "{name} was written");
    }
}

/// The float32 values of a `.npy` file dnalm wrote (version 1 header, little-endian `<f4`).
fn npy_values(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + header..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn lora_finetune_saves_an_adapter_that_embed_loads_and_merge_adapter_folds_in() {
    let f = fixture();
    let adapter = f.root.join("lora");
    let json = ok(&[
        "finetune",
        "-m",
        f.model.to_str().unwrap(),
        "-t",
        f.task.to_str().unwrap(),
        "-o",
        adapter.to_str().unwrap(),
        "--epochs",
        "2",
        "--head",
        "random",
        "--lr",
        "1e-2",
        "--lora",
        "r=2,alpha=4,targets=q,v,ffn",
    ]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let (trainable, all) = (
        report["trainable_parameters"].as_u64().unwrap(),
        report["parameters"].as_u64().unwrap(),
    );
    assert!(trainable > 0 && trainable * 3 < all, "{trainable} of {all}");
    assert_eq!(report["adapter"]["lora"]["rank"], 2);
    for file in [
        "adapter.json",
        "adapter.safetensors",
        "adapter_config.json",
        "adapter_model.safetensors",
        "head.json",
        "head.safetensors",
    ] {
        assert!(adapter.join(file).is_file(), "{file}");
    }
    let peft: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(peft["peft_type"], "LORA");
    assert_eq!(peft["r"], 2);
    assert!(peft["target_modules"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!(
            "esm.encoder.layer.1.attention.self.value"
        )));
    assert!(!adapter.join("model.safetensors").exists());

    let embed = |model: &Path, out: &str| {
        let out = f.root.join(out);
        ok(&[
            "embed",
            "-m",
            model.to_str().unwrap(),
            "--task",
            f.task.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        npy_values(&out.join("test.npy"))
    };
    let adapted = embed(&adapter, "lora_emb");
    let base = embed(&f.model, "lora_base_emb");
    let merged_dir = f.root.join("lora_merged");
    ok(&[
        "merge-adapter",
        adapter.to_str().unwrap(),
        merged_dir.to_str().unwrap(),
    ]);
    for file in [
        "config.json",
        "model.safetensors",
        "head.json",
        "tokenizer.json",
    ] {
        assert!(merged_dir.join(file).is_file(), "{file}");
    }
    let merged = embed(&merged_dir, "lora_merged_emb");
    // PEFT's files alone (as `PeftModel.save_pretrained` writes them) load the same adapter.
    let peft_only = f.root.join("lora_peft_only");
    std::fs::create_dir_all(&peft_only).unwrap();
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(adapter.join(file), peft_only.join(file)).unwrap();
    }
    assert_eq!(embed(&peft_only, "lora_peft_emb"), adapted);
    let gap = |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert_eq!(adapted.len(), merged.len());
    assert!(gap(&adapted, &merged) < 1e-4, "{}", gap(&adapted, &merged));
    assert!(gap(&adapted, &base) > 1e-3, "the adapters changed nothing");

    // Bad input: a target the architecture does not have; a plain model to merge.
    let err = fails(&[
        "finetune",
        "-m",
        f.model.to_str().unwrap(),
        "-t",
        f.task.to_str().unwrap(),
        "-o",
        f.root.join("lora_bad").to_str().unwrap(),
        "--lora",
        "targets=q,in_proj",
    ]);
    assert!(
        err.contains("`in_proj` is not a LoRA target") && err.contains("q, k, v, o, ffn"),
        "{err}"
    );
    let err = fails(&[
        "merge-adapter",
        f.model.to_str().unwrap(),
        f.root.join("lora_bad2").to_str().unwrap(),
    ]);
    assert!(err.contains("not a LoRA adapter directory"), "{err}");
}

/// Issue 17, item 3: a multi-label task made from the bundled E. coli annotations is probed,
/// benched (k-mer and CNN baselines included) and fine-tuned with balanced label weights, each
/// reporting per-label AUROC/AUPRC and their macro averages, then labels a genome; a label outside
/// the declared set is one clear line naming the file and line.
#[test]
fn a_multi_label_task_is_made_probed_benched_and_fine_tuned() {
    let f = fixture();
    let task = f.root.join("cds_labels");
    let made = dnalm(&[
        "make-task",
        "multi-label",
        root().join("data/ecoli_MG1655.fa.gz").to_str().unwrap(),
        "-a",
        root()
            .join("data/ecoli_MG1655.prodigal.gff3.gz")
            .to_str()
            .unwrap(),
        "--length",
        "120",
        "--rows",
        "80,30,40",
        "--stranded",
        "--ends",
        "-o",
        task.to_str().unwrap(),
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    assert!(stderr(&made).contains("CDS_5p"), "{}", stderr(&made));
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(task.join("task.json")).unwrap()).unwrap();
    assert_eq!(spec["multi_label"], true);
    assert_eq!(spec["label_names"][1], "CDS(-)");

    let probe = f.root.join("ml_probe.json");
    ok(&[
        "probe",
        "-t",
        task.to_str().unwrap(),
        "-m",
        f.model.to_str().unwrap(),
        "--probes",
        "linear,knn",
        "--folds",
        "2",
        "-o",
        probe.to_str().unwrap(),
    ]);
    let probe: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&probe).unwrap()).unwrap();
    let text = probe.to_string();
    for key in [
        "\"auroc\"",
        "\"auprc\"",
        "\"auroc/CDS(+)\"",
        "\"auprc/CDS_3p\"",
    ] {
        assert!(text.contains(key), "no {key} in {text}");
    }

    let bench = f.root.join("ml_bench");
    let report = ok(&[
        "bench",
        "-t",
        task.to_str().unwrap(),
        "-m",
        &format!("tiny={}", f.model.display()),
        "-o",
        bench.to_str().unwrap(),
        "--probes",
        "linear",
        "--seeds",
        "1",
        "--cnn-epochs",
        "1",
        "--folds",
        "2",
    ]);
    assert!(report.contains("kmer-spectrum (baseline)"), "{report}");
    assert!(report.contains("auroc"), "{report}");

    let tuned = f.root.join("ml_tuned");
    let json = ok(&[
        "finetune",
        "-m",
        f.model.to_str().unwrap(),
        "-t",
        task.to_str().unwrap(),
        "-o",
        tuned.to_str().unwrap(),
        "--epochs",
        "1",
        "--class-weights",
        "balanced",
    ]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let text = report.to_string();
    assert!(text.contains("\"auroc/CDS_5p\""), "{text}");
    let head: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tuned.join("head.json")).unwrap()).unwrap();
    assert_eq!(head["multi_label"], true);
    assert_eq!(head["label_names"].as_array().unwrap().len(), 4);
    // Labelling with it: one BED element per label and run of windows, pairs.csv a multi-label
    // task holding every window with the labels called on it.
    let labels = f.root.join("ml_label");
    ok(&[
        "label",
        "-m",
        tuned.to_str().unwrap(),
        root().join("data/lambda_phage.fa").to_str().unwrap(),
        "--forward-only",
        "--stride",
        "240",
        "--min-score",
        "0.3",
        "-o",
        labels.to_str().unwrap(),
    ]);
    let pairs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(labels.join("task.json")).unwrap()).unwrap();
    assert_eq!(pairs["multi_label"], true);
    let loaded = ok(&["inspect", labels.to_str().unwrap()]);
    assert!(loaded.contains("rows per label"), "{loaded}");
    let windows: u64 = ["train", "valid", "test"]
        .iter()
        .map(|s| pairs["counts"][s]["rows"].as_u64().unwrap())
        .sum();
    assert!(windows > 150, "{pairs}");
    let bed = std::fs::read_to_string(labels.join("predicted.bed")).unwrap();
    assert!(!bed.is_empty(), "no element at --min-score 0.3");
    for line in bed.lines() {
        let name = line.split('\t').nth(3).unwrap();
        assert!(
            ["CDS(+)", "CDS(-)", "CDS_5p", "CDS_3p"].contains(&name),
            "{line}"
        );
    }

    // A row with a label outside task.json's label_names.
    let bad = f.root.join("ml_bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(task.join("task.json"), bad.join("task.json")).unwrap();
    let train = std::fs::read_to_string(task.join("train.csv")).unwrap();
    let mut lines: Vec<String> = train.lines().map(String::from).collect();
    lines[2] = lines[2].replacen(",", ",CDS(+);tRNA;", 1);
    std::fs::write(bad.join("train.csv"), lines.join("\n")).unwrap();
    for split in ["valid", "test"] {
        let name = format!("{split}.csv");
        std::fs::copy(task.join(&name), bad.join(&name)).unwrap();
    }
    let err = fails(&["inspect", bad.to_str().unwrap()]);
    assert!(
        err.contains("train.csv:line 3: label 'tRNA' is not one of task.json's label_names"),
        "{err}"
    );
}

/// Issue 17, item 2: a per-base task made from a genome and its annotations, benched (the
/// per-base probe beside the per-base CNN), fine-tuned with a per-base head, and used to label a
/// genome base by base; bad per-base rows fail with one line naming the file and line.
#[test]
fn a_per_base_task_is_made_benched_fine_tuned_and_labels_a_genome() {
    let f = fixture();
    let task = f.root.join("cds_segments");
    let made = dnalm(&[
        "make-task",
        "segmentation",
        root().join("data/ecoli_MG1655.fa.gz").to_str().unwrap(),
        root()
            .join("data/ecoli_MG1655.prodigal.gff3.gz")
            .to_str()
            .unwrap(),
        "--classes",
        "CDS",
        "--stranded",
        "--length",
        "60",
        "--rows",
        "48,16,24",
        "-o",
        task.to_str().unwrap(),
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    assert!(stderr(&made).contains("CDS(-)"), "{}", stderr(&made));
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(task.join("task.json")).unwrap()).unwrap();
    assert_eq!(spec["per_base"], true);
    assert_eq!(spec["label_names"][0], "other");
    let inspected = ok(&["inspect", task.to_str().unwrap()]);
    assert!(inspected.contains("bases per class"), "{inspected}");

    let bench = f.root.join("seg_bench");
    let report = ok(&[
        "bench",
        "-t",
        task.to_str().unwrap(),
        "-m",
        &format!("tiny={}", f.model.display()),
        "-o",
        bench.to_str().unwrap(),
        "--seeds",
        "1",
        "--cnn-epochs",
        "1",
        "--per-base-epochs",
        "2",
    ]);
    for needle in ["probe:per-base", "cnn:per-base", "f1/CDS(+)", "auprc/other"] {
        assert!(report.contains(needle), "no {needle} in {report}");
    }
    // The k-mer spectrum scores whole sequences: said, not run.
    assert!(
        report.contains("per-base one-hot CNN as its baseline"),
        "{report}"
    );
    assert!(!report.contains("kmer-spectrum"), "{report}");

    let tuned = f.root.join("seg_tuned");
    let json = ok(&[
        "finetune",
        "-m",
        f.model.to_str().unwrap(),
        "-t",
        task.to_str().unwrap(),
        "-o",
        tuned.to_str().unwrap(),
        "--epochs",
        "1",
        "--class-weights",
        "balanced",
    ]);
    let ft: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(ft["summary"]["mcc/CDS(-)"]["mean"].is_number(), "{ft}");
    let head: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tuned.join("head.json")).unwrap()).unwrap();
    assert_eq!(head["per_base"], true);

    let labels = f.root.join("seg_label");
    ok(&[
        "label",
        "-m",
        tuned.to_str().unwrap(),
        root().join("data/lambda_phage.fa").to_str().unwrap(),
        "--min-score",
        "0",
        "-o",
        labels.to_str().unwrap(),
    ]);
    let pairs = dnalm_seq::Task::load(&labels).unwrap();
    let tiles = pairs.examples.len();
    assert!(tiles > 500, "{tiles} tiles of 60 bases in 48.5 kb");
    assert!(pairs
        .examples
        .iter()
        .all(|e| matches!(&e.label, dnalm_seq::Label::Bases(c) if c.len() == 60)));
    // Every called base of a class other than the background is in exactly one BED run.
    let bed = std::fs::read_to_string(labels.join("predicted.bed")).unwrap();
    let mut bed_bases = 0;
    for line in bed.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(["CDS(+)", "CDS(-)"].contains(&cols[3]), "{line}");
        assert_eq!(
            cols[5],
            if cols[3] == "CDS(+)" { "+" } else { "-" },
            "{line}"
        );
        bed_bases += cols[2].parse::<usize>().unwrap() - cols[1].parse::<usize>().unwrap();
    }
    // The tiles' coding bases are among the BED's (the BED covers every called base).
    let tile_coding: usize = pairs
        .examples
        .iter()
        .map(|e| match &e.label {
            dnalm_seq::Label::Bases(c) => c.iter().filter(|&&k| k != 0).count(),
            _ => 0,
        })
        .sum();
    assert!(
        bed_bases >= tile_coding && bed_bases <= 48_502,
        "{bed_bases} vs {tile_coding}"
    );

    // Per-base labelling runs in one process; a stride past the window would skip bases.
    let lambda = root().join("data/lambda_phage.fa");
    let out = f.root.join("seg_refused");
    for (extra, needle) in [
        (
            ["--shard", "1/2"],
            "a per-base model labels the genome in one process",
        ),
        (["--stride", "61"], "the stride at most the window"),
    ] {
        let mut args = vec![
            "label",
            "-m",
            tuned.to_str().unwrap(),
            lambda.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        assert_one_line_error(&dnalm(&args), &[needle]);
    }
    // make-task segmentation: a class named twice, and no annotations.
    let genome = root().join("data/ecoli_MG1655.fa.gz");
    let gff = root().join("data/ecoli_MG1655.prodigal.gff3.gz");
    let twice = dnalm(&[
        "make-task",
        "segmentation",
        genome.to_str().unwrap(),
        gff.to_str().unwrap(),
        "--classes",
        "CDS,CDS",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(&twice, &["--classes: class name 'CDS' is used twice"]);
    let none = dnalm(&[
        "make-task",
        "segmentation",
        genome.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(&none, &["give the annotations (BED or GFF3)"]);

    // Pooled probes refuse a per-base task before embedding it.
    let out = dnalm(&[
        "probe",
        "-t",
        task.to_str().unwrap(),
        "-m",
        f.model.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("a per-base task has no single target per sequence"),
        "{}",
        stderr(&out)
    );

    // A per-base label one character short of its sequence.
    let bad = f.root.join("seg_bad");
    std::fs::create_dir_all(&bad).unwrap();
    for name in ["task.json", "valid.csv", "test.csv"] {
        std::fs::copy(task.join(name), bad.join(name)).unwrap();
    }
    let train = std::fs::read_to_string(task.join("train.csv")).unwrap();
    let mut lines: Vec<String> = train.lines().map(String::from).collect();
    let cols: Vec<&str> = lines[3].split(',').collect();
    lines[3] = format!("{},{},{}", cols[0], &cols[1][1..], cols[2]);
    std::fs::write(bad.join("train.csv"), lines.join("\n")).unwrap();
    let out = dnalm(&["inspect", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "train.csv:line 4: the per-base label has 59 characters but the sequence has 60 bases"
        ),
        "{err}"
    );
}

#[test]
fn multitask_plans_groups_trains_them_and_compares_every_task_with_its_single_task_model() {
    let f = fixture();
    // A deliberately irrelevant task: the coding slice's sequences, labels by row parity (the
    // rows are ordered by class, so parity says nothing about them).
    let noise = f.root.join("mt_noise");
    std::fs::create_dir_all(&noise).unwrap();
    for split in ["train", "valid", "test"] {
        let text = std::fs::read_to_string(f.task.join(format!("{split}.csv"))).unwrap();
        let mut out = String::from("sequence,label\n");
        for (i, line) in text.lines().skip(1).enumerate() {
            let seq = line.split(',').next().unwrap();
            out.push_str(&format!("{seq},{}\n", i % 2));
        }
        std::fs::write(noise.join(format!("{split}.csv")), out).unwrap();
    }
    std::fs::write(
        noise.join("task.json"),
        r#"{"name": "noise", "num_classes": 2}"#,
    )
    .unwrap();
    let out = f.root.join("mt");
    let tasks = format!("{},{}", f.task.display(), noise.display());
    let common = [
        "-m",
        f.model.to_str().unwrap(),
        "--tasks",
        &tasks,
        "--max-steps",
        "2",
        "--batch-size",
        "16",
        "--seeds",
        "2",
    ];
    let run = |extra: &[&str]| {
        let mut args = vec!["multitask"];
        args.extend(common);
        args.extend(extra);
        ok(&args)
    };
    // The plan alone: affinities and a proposal, nothing trained.
    let plan_dir = f.root.join("mt_plan");
    let md = run(&[
        "-o",
        plan_dir.to_str().unwrap(),
        "--plan",
        "--plan-steps",
        "4",
    ]);
    assert!(md.contains("Proposed groups:"), "{md}");
    assert!(plan_dir.join("plan.json").is_file());
    assert!(!plan_dir.join("report.json").exists());
    // Groups named on the command line: both tasks together, each compared with itself alone.
    let md = run(&[
        "-o",
        out.to_str().unwrap(),
        "--groups",
        "coding_slice+noise",
    ]);
    assert!(
        md.contains("| coding_slice | mcc | coding_slice+noise |"),
        "{md}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for t in report["tasks"].as_array().unwrap() {
        assert_eq!(t["grouped"]["runs"].as_array().unwrap().len(), 2, "{t}");
        assert_eq!(t["single"]["runs"].as_array().unwrap().len(), 2, "{t}");
        assert!(t["gain"]["mean"].is_number(), "{t}");
        // Per-task budget of 2 steps: the joint run takes at most 4.
        let steps: u64 = t["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_u64().unwrap())
            .sum();
        assert!(steps <= 8, "{t}");
    }
    // Each task's kept network is a fine-tuned checkpoint `embed` loads.
    ok(&[
        "embed",
        "-m",
        out.join("models/noise").to_str().unwrap(),
        "--task",
        noise.to_str().unwrap(),
        "-o",
        f.root.join("mt_emb").to_str().unwrap(),
    ]);
    // `--groups auto`: the plan, then its groups.
    let auto = f.root.join("mt_auto");
    let md = run(&[
        "-o",
        auto.to_str().unwrap(),
        "--groups",
        "auto",
        "--plan-steps",
        "4",
    ]);
    assert!(md.contains("## Plan"), "{md}");
    assert!(auto.join("plan.md").is_file() && auto.join("report.md").is_file());
    // Bad requests: one line each.
    let mut args = vec!["multitask"];
    args.extend(common);
    let bad_group = [
        args.clone(),
        vec!["-o", "/tmp/x", "--groups", "coding_slice+nope"],
    ]
    .concat();
    let e = fails(&bad_group);
    assert!(
        e.contains("'nope' is not one of the tasks (coding_slice, noise)"),
        "{e}"
    );
    let one = fails(&[
        "multitask",
        "-m",
        f.model.to_str().unwrap(),
        "--tasks",
        f.task.to_str().unwrap(),
        "-o",
        "/tmp/x",
    ]);
    assert!(one.contains("at least two tasks"), "{one}");
    let per_base = format!(
        "{},{}",
        f.task.display(),
        root().join("data/tasks/ecoli_cds_segments").display()
    );
    let e = fails(&[
        "multitask",
        "-m",
        f.model.to_str().unwrap(),
        "--tasks",
        &per_base,
        "-o",
        "/tmp/x",
    ]);
    assert!(e.contains("per-base"), "{e}");
}
