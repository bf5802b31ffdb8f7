//! `dnalm pretrain` from the command line: every shipped config resolves, a tiny run trains and
//! resumes, Ctrl-C saves a checkpoint, and config errors are one clear line before training.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_one_line_error, dnalm, ok, root, stderr, tiny};
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

#[test]
fn every_shipped_config_resolves() {
    let dir = root().join("configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = dnalm(&["pretrain", "-c", path.to_str().unwrap(), "--dry-run"]);
            assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
            assert!(stderr(&out).contains("parameters"), "{}", stderr(&out));
            n += 1;
        }
    }
    assert!(n >= 7, "{n} configs");
}

/// `dnalm pretrain` of `configs/mlm.toml` shrunk by [`tiny`] to seconds on lambda, into `run`,
/// with further `--set KEY=VALUE`s (after the tiny ones, so they win).
fn tiny_mlm_run(run: &std::path::Path, sets: &[&str]) -> Vec<String> {
    tiny_run("configs/mlm.toml", run, sets)
}

/// [`tiny_mlm_run`] of another shipped config (`configs/NAME.toml`, relative to the root).
fn tiny_run(config: &str, run: &std::path::Path, sets: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "pretrain".into(),
        "-c".into(),
        root().join(config).display().to_string(),
        "-o".into(),
        run.display().to_string(),
    ];
    args.extend(tiny(
        &root().join("data/lambda_phage.fa").display().to_string(),
    ));
    for set in sets {
        args.extend(["--set".to_string(), set.to_string()]);
    }
    args
}

/// The training losses of `run`, step by step, from its `metrics.jsonl`.
fn train_losses(run: &std::path::Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["kind"] == "train")
        .filter_map(|m| m["loss"].as_f64())
        .collect()
}

/// The first five training losses of `run` sum to more than the last five.
fn assert_training_loss_fell(run: &std::path::Path) {
    let losses = train_losses(run);
    let (first, last) = (
        losses[..5].iter().sum::<f64>(),
        losses[losses.len() - 5..].iter().sum::<f64>(),
    );
    assert!(last < first, "loss did not fall: {losses:?}");
}

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_tiny_run_trains_and_resumes_from_the_cli() {
    let out_dir = tempfile::tempdir().unwrap();
    let run = out_dir.path().join("run");
    let fasta = root().join("data/lambda_phage.fa");
    let config = root().join("configs/mlm.toml");
    let mut args: Vec<String> = vec![
        "pretrain".into(),
        "-c".into(),
        config.display().to_string(),
        "-o".into(),
        run.display().to_string(),
        "--set".into(),
        "train.steps=6".into(),
    ];
    args.extend(tiny(&fasta.display().to_string()));
    let run_args = |extra: &[&str]| {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.extend_from_slice(extra);
        dnalm(&a)
    };
    let first = run_args(&["--stop-at", "2"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stderr(&first).contains("--resume"), "{}", stderr(&first));
    // Without --resume the run directory is protected.
    let again = run_args(&[]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--resume"));
    let resumed = run_args(&[
        "--resume",
        "--markov-baseline",
        "2",
        "--baseline-batches",
        "4",
    ]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let summary: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(summary["start_step"], 2);
    assert_eq!(summary["step"], 6);
    assert!(run.join("checkpoint-000006/model.safetensors").exists());
    assert!(run.join("run.toml").exists());
    let baseline: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("markov_baseline.json")).unwrap())
            .unwrap();
    assert_eq!(baseline.as_array().unwrap().len(), 3);
}

#[test]
fn ctrl_c_saves_a_checkpoint() {
    interrupt_saves_a_checkpoint("-INT");
}

/// Issue 14, defect 4: a scheduler's SIGTERM stops the run with a checkpoint, as Ctrl-C does
/// (it used to kill the process before any checkpoint).
#[test]
fn sigterm_saves_a_checkpoint() {
    interrupt_saves_a_checkpoint("-TERM");
}

fn interrupt_saves_a_checkpoint(signal: &str) {
    let out_dir = tempfile::tempdir().unwrap();
    let run = out_dir.path().join("run");
    let fasta = root().join("data/lambda_phage.fa");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dnalm"));
    cmd.args([
        "pretrain",
        "-c",
        root().join("configs/mlm.toml").to_str().unwrap(),
        "-o",
        run.to_str().unwrap(),
        "--set",
        "train.steps=100000",
        "--set",
        "train.save_every=100000",
    ])
    .args(tiny(&fasta.display().to_string()))
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let metrics = run.join("metrics.jsonl");
    let start = Instant::now();
    while std::fs::read_to_string(&metrics).map_or(true, |t| t.lines().count() < 3) {
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["interrupted"], true);
    let step = summary["step"].as_u64().unwrap();
    assert!(run
        .join(format!("checkpoint-{step:06}/optimizer.safetensors"))
        .exists());
}

#[test]
fn data_parallel_peers_train_from_the_cli_and_resume_on_one_device() {
    let out_dir = tempfile::tempdir().unwrap();
    let run = out_dir.path().join("run");
    let args = tiny_mlm_run(&run, &["train.steps=3", "train.accumulation=2"]);
    let mut first: Vec<&str> = args.iter().map(String::as_str).collect();
    first.extend(["--devices", "cpu,cpu", "--stop-at", "2"]);
    let out = dnalm(&first);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("data parallel on 2 devices (cpu, cpu): 2 micro-batches of 4 windows per step, 1 per device"),
        "{}",
        stderr(&out)
    );
    let toml = std::fs::read_to_string(run.join("run.toml")).unwrap();
    assert!(
        toml.contains("devices = [\n    \"cpu\",\n    \"cpu\",\n]"),
        "{toml}"
    );
    let mut resume: Vec<&str> = args.iter().map(String::as_str).collect();
    resume.push("--resume");
    let out = dnalm(&resume);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["start_step"].as_u64(), summary["step"].as_u64()),
        (Some(2), Some(3))
    );
}

#[test]
fn config_errors_are_one_line_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let config = root().join("configs/mlm.toml");
    let cases: [(&[&str], &str); 7] = [
        (&["--device", "tpu"], "device 'tpu': unknown device"),
        (&["--devices", "cpu,cpu"], "multiple of 2"),
        (
            &["--devices", "cpu,tpu", "--set", "train.accumulation=2"],
            "train.devices: device 'tpu': unknown device",
        ),
        (&["--set", "objectives=[{type = \"electra\"}]"], "electra"),
        (
            &["--set", "tokenizer.spec=\"kmer:6:non-overlapping\""],
            "data.context",
        ),
        (&["--set", "model.vocab_size=4101"], "vocab_size"),
        (
            &["--set", "objectives=[{type = \"annotation\"}]"],
            "annotation",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec![
            "pretrain",
            "-c",
            config.to_str().unwrap(),
            "-o",
            dir.path().to_str().unwrap(),
            "--set",
            "data.context=500",
        ];
        args.extend_from_slice(extra);
        let out = dnalm(&args);
        assert!(!out.status.success(), "{needle}");
        let err = stderr(&out);
        assert!(err.contains(needle), "{needle}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!dir.path().join("metrics.jsonl").exists());
    }
}

/// Issue 14, defects 3 and 11: out-of-range schedule, validation, data and objective fields are
/// refused in one line naming the key, and `--dry-run` makes the same checks as the real run
/// (it used to accept all of these).
#[test]
fn dry_run_refuses_what_the_real_run_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let config = root().join("configs/mlm.toml");
    let fasta = root().join("data/lambda_phage.fa");
    let cases: [(&str, &str); 11] = [
        ("optim.min_lr_ratio=-0.5", "optim.min_lr_ratio"),
        ("optim.weight_decay=-1.0", "optim.weight_decay"),
        ("train.eval_batches=0", "train.eval_batches"),
        ("data.reverse_complement=5.0", "data.reverse_complement"),
        ("data.split_block=0", "data.split_block"),
        ("objectives=[{type = \"mlm\", mask_rate = 1.5}]", "mask"),
        // Longer than the phage genome (48.5 kb): found when the data is read.
        ("data.context=100000", "100000"),
        // Issue 14, defect 6: sizes that used to abort the process in an allocation.
        ("model.d_model=1048576", "parameters"),
        ("model.n_layers=10000000", "parameters"),
        ("model.d_ffn=100000000", "parameters"),
        // Under the parameter limit but far beyond any machine's memory (d = 65,536 in one
        // layer: 1.7e10 parameters, ~256 GiB of training state).
        ("model.d_model=65536", "to train"),
    ];
    for (set, needle) in cases {
        let mut args: Vec<String> = vec![
            "pretrain".into(),
            "-c".into(),
            config.display().to_string(),
            "-o".into(),
            dir.path().join("run").display().to_string(),
            "--dry-run".into(),
        ];
        args.extend(tiny(&fasta.display().to_string()));
        args.extend(["--set".into(), set.into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = dnalm(&args);
        assert_one_line_error(&out, &[needle]);
        assert!(
            !dir.path().join("run").exists(),
            "{set}: nothing is written"
        );
    }
}

#[test]
fn corpora_pack_from_manifests_and_pretrain_from_packs_or_lists() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lambda = root().join("data/lambda_phage.fa");
    let ecoli = root().join("data/ecoli_MG1655.fa.gz");
    let manifest = d.join("corpus.tsv");
    std::fs::write(
        &manifest,
        format!(
            "# genome\tweight\tsplit\n{}\t3\n{}\t1\tvalid\n",
            lambda.display(),
            ecoli.display()
        ),
    )
    .unwrap();
    let pack = d.join("corpus.dnapack");
    let out = dnalm(&[
        "corpus",
        "pack",
        manifest.to_str().unwrap(),
        "-o",
        pack.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("packed 2 genome(s), 2 records, 0.005 Gb"),
        "{}",
        stderr(&out)
    );
    // `inspect` reads a pack: genomes with their records, bases, weights and splits.
    let text = ok(&["inspect", pack.to_str().unwrap()]);
    assert!(text.contains("(corpus pack: 2 genomes)"), "{text}");
    assert!(text.contains("total length           4688177"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", "--json", pack.to_str().unwrap()])).unwrap();
    let genomes = json[0]["genomes"].as_array().unwrap();
    assert_eq!(genomes[0]["name"], "lambda_phage");
    assert_eq!(genomes[0]["weight"], 3.0);
    assert_eq!(genomes[1]["split"], "valid");
    // Bad manifests and outputs: one line each, nothing written.
    let bad = d.join("bad.tsv");
    std::fs::write(&bad, format!("{}\t-2\n", lambda.display())).unwrap();
    let never = d.join("never.dnapack");
    for (args, needles) in [
        (
            vec![bad.to_str().unwrap(), "-o", never.to_str().unwrap()],
            vec!["bad.tsv:line 1", "weight '-2' must be a positive number"],
        ),
        (
            vec![lambda.to_str().unwrap(), "-o", "x.bin"],
            vec!["x.bin", "ends in .dnapack"],
        ),
    ] {
        let mut full = vec!["corpus", "pack"];
        full.extend(args);
        assert_one_line_error(&dnalm(&full), &needles);
    }
    assert!(!never.exists());
    // Pretraining from the pack, and from a list (packed into the run directory).
    for (name, fasta) in [
        ("from_pack", format!("{:?}", pack.display().to_string())),
        (
            "from_list",
            format!(
                "[{:?}, {:?}]",
                lambda.display().to_string(),
                ecoli.display().to_string()
            ),
        ),
    ] {
        let run = d.join(name);
        let fasta = format!("data.fasta={fasta}");
        let args = tiny_mlm_run(
            &run,
            &["train.steps=2", &fasta, "data.genome_weights=\"uniform\""],
        );
        let out = dnalm(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert!(run.join("checkpoint-000002/model.safetensors").exists());
        assert_eq!(run.join("corpus.dnapack").exists(), name == "from_list");
    }
}

/// Issue 16: a Hyena model pretrains with next-token prediction from `configs/hyena.toml`,
/// learns (the loss falls on lambda), and the checkpoint is one every command takes: it embeds,
/// scores likelihoods exactly (left to right) and is written in HyenaDNA's hub layout. A Hyena
/// model with a masked objective, or a Hyena option on an attention model, is one line.
#[test]
fn a_hyena_model_pretrains_and_serves_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let args = tiny_run(
        "configs/hyena.toml",
        &run,
        &[
            "model.hyena.filter_order=8",
            "train.steps=30",
            "train.eval_every=30",
            "train.save_every=30",
            "optim.warmup_steps=2",
            "optim.lr=3e-3",
        ],
    );
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = dnalm(&argv);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Hyena operator"), "{}", stderr(&out));
    assert_training_loss_fell(&run);
    let checkpoint = run.join("checkpoint-000030");
    let config = read_json(&checkpoint.join("config.json"));
    assert_eq!(config["model_type"], "hyenadna");
    assert_eq!(config["architectures"][0], "HyenaDNAForCausalLM");
    let model = checkpoint.display().to_string();
    let seqs = dir.path().join("s.fa");
    std::fs::write(&seqs, ">a\nACGTACGTTTGACCAGGT\n>b\nGGGCCCATATAT\n").unwrap();
    let scores = dir.path().join("ll.tsv");
    ok(&[
        "score",
        "likelihood",
        "-m",
        &model,
        "-i",
        seqs.to_str().unwrap(),
        "-o",
        scores.to_str().unwrap(),
    ]);
    let table = std::fs::read_to_string(&scores).unwrap();
    assert!(table.contains("exact"), "{table}");
    let emb = dir.path().join("e.npy");
    ok(&[
        "embed",
        "-m",
        &model,
        "-i",
        seqs.to_str().unwrap(),
        "-o",
        emb.to_str().unwrap(),
    ]);
    assert!(emb.exists());
    // Masked objectives need an encoder.
    let other = dir.path().join("run2").display().to_string();
    let mut masked: Vec<&str> = argv
        .iter()
        .map(|a| {
            if *a == run.to_str().unwrap() {
                other.as_str()
            } else {
                a
            }
        })
        .collect();
    masked.extend(["--set", "objectives=[{type=\"mlm\"}]", "--dry-run"]);
    let out = dnalm(&masked);
    assert_one_line_error(&out, &["mlm", "encoder"]);
}

/// Caduceus-PS pretrains with masked LM from the CLI (the loss falls), writes the hub layout
/// (`CaduceusForMaskedLM`, `rcps`), embeds at twice `d_model` and scores; k-mer tokens are
/// refused for the equivariant model, and so is next-token prediction.
#[test]
fn a_caduceus_model_pretrains_and_serves_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let args = tiny_run(
        "configs/caduceus.toml",
        &run,
        &[
            "model.caduceus.d_state=4",
            "train.steps=30",
            "train.eval_every=30",
            "train.save_every=30",
            "optim.warmup_steps=2",
            "optim.lr=5e-3",
        ],
    );
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = dnalm(&argv);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("BiMamba"), "{}", stderr(&out));
    assert_training_loss_fell(&run);
    let checkpoint = run.join("checkpoint-000030");
    let config = read_json(&checkpoint.join("config.json"));
    assert_eq!(config["model_type"], "caduceus");
    assert_eq!(config["architectures"][0], "CaduceusForMaskedLM");
    assert_eq!(config["rcps"], true);
    // The nucleotide vocabulary's complements: A <-> T, C <-> G (keys are token ids, written
    // zero-padded so that the hub code reads them in order).
    let map: std::collections::BTreeMap<u64, u64> = config["complement_map"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.as_u64().unwrap()))
        .collect();
    let vocab = read_json(&checkpoint.join("tokenizer.json"));
    let id = |t: &str| vocab["model"]["vocab"][t].as_u64().unwrap();
    assert_eq!(map[&id("A")], id("T"));
    assert_eq!(map[&id("G")], id("C"));
    assert_eq!(map.len() as u64, map.keys().max().unwrap() + 1);
    let model = checkpoint.display().to_string();
    let seqs = dir.path().join("s.fa");
    std::fs::write(&seqs, ">a\nACGTACGTTTGACCAGGT\n>b\nGGGCCCATATAT\n").unwrap();
    let emb = dir.path().join("e.npy");
    let out = ok(&[
        "embed",
        "-m",
        &model,
        "-i",
        seqs.to_str().unwrap(),
        "-o",
        emb.to_str().unwrap(),
    ]);
    assert!(emb.exists(), "{out}");
    let scores = dir.path().join("ll.tsv");
    ok(&[
        "score",
        "likelihood",
        "-m",
        &model,
        "-i",
        seqs.to_str().unwrap(),
        "-o",
        scores.to_str().unwrap(),
    ]);
    assert!(std::fs::read_to_string(&scores).unwrap().lines().count() >= 3);
    let other = dir.path().join("run2").display().to_string();
    let elsewhere = |extra: &[&'static str]| {
        let mut v: Vec<String> = argv
            .iter()
            .map(|a| {
                if *a == run.to_str().unwrap() {
                    other.clone()
                } else {
                    a.to_string()
                }
            })
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let kmers = elsewhere(&["--set", "tokenizer.spec=\"kmer:3\"", "--dry-run"]);
    let out = dnalm(&kmers.iter().map(String::as_str).collect::<Vec<_>>());
    assert_one_line_error(&out, &["rc_equivariant", "one token per base"]);
    let causal = elsewhere(&["--set", "objectives=[{type=\"next_token\"}]", "--dry-run"]);
    let out = dnalm(&causal.iter().map(String::as_str).collect::<Vec<_>>());
    assert_one_line_error(&out, &["next_token", "causal"]);
}

/// With activation checkpointing `dnalm pretrain` returns freed memory to the kernel unless
/// `--keep-freed-memory`; the allocator's policy changes the footprint, never the numbers.
#[test]
fn checkpointed_training_returns_or_keeps_freed_memory_with_the_same_losses() {
    let dir = tempfile::tempdir().unwrap();
    let losses = |name: &str, extra: &[&str]| {
        let run = dir.path().join(name);
        let mut args = tiny_run(
            "configs/caduceus.toml",
            &run,
            &[
                "model.caduceus.d_state=4",
                "train.steps=4",
                "train.activation_checkpointing=true",
            ],
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = dnalm(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}", stderr(&out));
        train_losses(&run)
    };
    let returned = losses("returned", &[]);
    let kept = losses("kept", &["--keep-freed-memory"]);
    assert_eq!(returned.len(), 4);
    assert_eq!(returned, kept);
}
