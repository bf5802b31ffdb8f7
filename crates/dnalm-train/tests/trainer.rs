//! End-to-end pretraining on the bundled lambda phage genome with a tiny model: the loss falls,
//! runs are deterministic, and a resumed run continues exactly where it stopped.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use dnalm_model::cpu;
use dnalm_train::{
    trainer::{read_metrics, Silent},
    RunConfig, RunOptions, Trainer,
};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(name)
}

fn config(objectives: &str, extra: &str) -> RunConfig {
    let text = format!(
        r#"
seed = 7
[data]
fasta = "{}"
context = 64
split_block = 2000
valid_fraction = 0.1
test_fraction = 0.05
[tokenizer]
spec = "nucleotide"
[model]
n_layers = 2
d_model = 32
n_heads = 2
d_ffn = 64
{extra}
{objectives}
[optim]
lr = 3e-3
warmup_steps = 3
[train]
steps = 24
batch_size = 8
eval_every = 12
eval_batches = 2
save_every = 8
keep_last = 2
"#,
        data("lambda_phage.fa").display()
    );
    RunConfig::parse(&text, std::path::Path::new("run.toml")).unwrap()
}

const MLM: &str = "[[objectives]]\ntype = \"mlm\"\nmask_rate = 0.15\n";

fn train(cfg: &RunConfig, dir: &Path, options: &RunOptions) -> dnalm_train::RunSummary {
    let run = cfg.resolve().unwrap();
    let trainer = Trainer::new(run, dir, cpu().autodiff()).unwrap();
    trainer.run(options, &mut Silent).unwrap()
}

fn losses(dir: &Path) -> Vec<f64> {
    read_metrics(dir)
        .unwrap()
        .0
        .iter()
        .map(|r| r.loss)
        .collect()
}

#[test]
fn mlm_loss_falls_and_checkpoints_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let summary = train(&config(MLM, ""), dir.path(), &RunOptions::default());
    assert_eq!(summary.step, 24);
    let l = losses(dir.path());
    assert_eq!(l.len(), 24);
    let first: f64 = l[..4].iter().sum::<f64>() / 4.0;
    let last: f64 = l[20..].iter().sum::<f64>() / 4.0;
    // ln(vocab of 12) = 2.48 at start; 4 equiprobable bases = 1.39.
    assert!(first > 2.0, "{first}");
    assert!(last < 1.6 && last < first - 0.6, "loss {first} -> {last}");
    // Keep-last-2 and the HF layout.
    let mut kept: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checkpoint-"))
        .collect();
    kept.sort();
    assert_eq!(kept, ["checkpoint-000016", "checkpoint-000024"]);
    let ck = dir.path().join("checkpoint-000024");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "trainer_state.json",
        "optimizer.safetensors",
    ] {
        assert!(ck.join(f).exists(), "{f}");
    }
    let (_, valid) = read_metrics(dir.path()).unwrap();
    assert_eq!(valid.iter().map(|v| v.step).collect::<Vec<_>>(), [12, 24]);
    // Uniform guessing over the 12-token vocabulary is 12; over the 4 bases, 4.
    assert!(valid[1].perplexity < 5.0, "{:?}", valid[1]);
}

#[test]
fn same_seed_same_losses_and_resume_is_exact() {
    let cfg = config(MLM, "dropout = 0.1");
    let a = tempfile::tempdir().unwrap();
    train(&cfg, a.path(), &RunOptions::default());
    // Stop at 10 (as Ctrl-C would), then resume to 24.
    let b = tempfile::tempdir().unwrap();
    let stopped = train(
        &cfg,
        b.path(),
        &RunOptions {
            stop_at: Some(10),
            ..Default::default()
        },
    );
    assert!(stopped.interrupted);
    assert!(b.path().join("checkpoint-000010").exists());
    let resumed = train(
        &cfg,
        b.path(),
        &RunOptions {
            resume: true,
            ..Default::default()
        },
    );
    assert_eq!(resumed.start_step, 10);
    assert_eq!(losses(a.path()), losses(b.path()));
    assert_eq!(
        read_metrics(a.path()).unwrap().1,
        read_metrics(b.path()).unwrap().1
    );
}

#[test]
fn a_finished_run_is_not_overwritten_and_resume_checks_the_config() {
    let cfg = config(MLM, "");
    let dir = tempfile::tempdir().unwrap();
    let mut short = cfg.clone();
    short.train.steps = 8;
    train(&short, dir.path(), &RunOptions::default());
    let run = cfg.resolve().unwrap();
    let trainer = Trainer::new(run, dir.path(), cpu().autodiff()).unwrap();
    let err = trainer
        .run(&RunOptions::default(), &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--resume"), "{err}");
    // Resuming where nothing was trained says so.
    let empty = tempfile::tempdir().unwrap();
    let trainer = Trainer::new(cfg.resolve().unwrap(), empty.path(), cpu().autodiff()).unwrap();
    let err = trainer
        .run(
            &RunOptions {
                resume: true,
                ..Default::default()
            },
            &mut Silent,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no checkpoint to resume from"), "{err}");
    let changed = cfg.with_overrides(&["optim.lr=0.1".into()]).unwrap();
    let trainer = Trainer::new(changed.resolve().unwrap(), dir.path(), cpu().autodiff()).unwrap();
    let err = trainer
        .run(
            &RunOptions {
                resume: true,
                ..Default::default()
            },
            &mut Silent,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("optim.lr"), "{err}");
}

#[test]
fn every_objective_trains_a_step() {
    let objectives = [
        ("[[objectives]]\ntype = \"span\"\n", ""),
        ("[[objectives]]\ntype = \"deletion\"\n", ""),
        ("[[objectives]]\ntype = \"permutation\"\n", ""),
        ("[[objectives]]\ntype = \"denoise\"\n", ""),
        ("[[objectives]]\ntype = \"next_token\"\n", "architecture = \"decoder\""),
        (
            "[[objectives]]\ntype = \"mlm\"\nweight = 0.5\n[[objectives]]\ntype = \"span\"\nweight = 0.5\n",
            "position = \"alibi\"",
        ),
        (MLM, "position = \"learned\""),
    ];
    for (objective, extra) in objectives {
        let mut cfg = config(objective, extra);
        if extra.contains("learned") {
            // Windows on a stride grid instead of any start.
            cfg.data.stride = Some(32);
        }
        cfg.train.steps = 3;
        cfg.train.eval_every = 3;
        let dir = tempfile::tempdir().unwrap();
        let summary = train(&cfg, dir.path(), &RunOptions::default());
        assert_eq!(summary.step, 3, "{objective}");
        let eval = summary.last_eval.unwrap();
        assert!(
            eval.loss.is_finite() && eval.targets > 0,
            "{objective}: {eval:?}"
        );
    }
}

#[test]
fn annotation_masking_trains_on_gene_annotations() {
    let mut cfg = config(
        "[[objectives]]\ntype = \"annotation\"\nelement_types = [\"CDS\"]\nelement_rate = 0.5\n",
        "",
    );
    cfg.data.fasta = data("ecoli_MG1655.fa.gz").into();
    cfg.data.annotations = Some(data("ecoli_MG1655.prodigal.gff3.gz"));
    cfg.data.split_block = 20_000;
    cfg.data.sampler = dnalm_train::run_config::SamplerKind::Balanced;
    cfg.train.steps = 2;
    let dir = tempfile::tempdir().unwrap();
    let summary = train(&cfg, dir.path(), &RunOptions::default());
    assert!(summary.last_eval.unwrap().targets > 0);
    // An element type the annotations lack is refused before training.
    let bad = cfg
        .with_overrides(&[
            "objectives=[{type = \"annotation\", element_types = [\"exon\"]}]".into(),
        ])
        .unwrap();
    let err = Trainer::new(bad.resolve().unwrap(), dir.path(), cpu().autodiff())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("exon"), "{err}");
}

#[test]
fn a_diverging_run_stops_with_the_step_and_keeps_the_last_good_checkpoint() {
    let mut cfg = config(MLM, "");
    cfg.optim.lr = 1e30;
    cfg.optim.grad_clip = 0.0;
    cfg.optim.warmup_steps = 0;
    cfg.optim.schedule = dnalm_train::run_config::Schedule::Constant;
    cfg.train.save_every = 1;
    cfg.train.accumulation = 2;
    let dir = tempfile::tempdir().unwrap();
    let trainer = Trainer::new(cfg.resolve().unwrap(), dir.path(), cpu().autodiff()).unwrap();
    let err = trainer
        .run(&RunOptions::default(), &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("at step 2") && err.contains("checkpoint-000001"),
        "{err}"
    );
    assert!(dir
        .path()
        .join("checkpoint-000001/model.safetensors")
        .exists());
    assert!(!dir.path().join("checkpoint-000002").exists());
}

/// Binary objectives (token deletion) log no perplexity: `null` in metrics.jsonl must read back
/// (as NaN), or reports and resumed runs lose their validation records.
#[test]
fn validation_records_without_perplexity_read_back() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("metrics.jsonl"),
        concat!(
            r#"{"kind":"train","step":1,"loss":0.6,"accuracy":0.8,"lr":0.001,"grad_norm":1.0,"tokens":10,"tokens_per_s":5.0,"elapsed_s":2.0}"#,
            "\n",
            r#"{"kind":"valid","step":1,"loss":0.42,"perplexity":null,"accuracy":0.85,"targets":14}"#,
            "\n"
        ),
    )
    .unwrap();
    let (train, valid) = dnalm_train::trainer::read_metrics(dir.path()).unwrap();
    assert_eq!(train.len(), 1);
    assert_eq!(valid.len(), 1);
    assert!((valid[0].loss - 0.42).abs() < 1e-12);
    assert!(valid[0].perplexity.is_nan());
}

/// Issue 14, defect 4: a run killed (or stopped by a NaN) before its first checkpoint left
/// `run.toml` and `metrics.jsonl` behind; it could be neither restarted ("already holds a run")
/// nor resumed ("no checkpoint"). `--resume` now restarts it from step 0 and says so.
#[test]
fn a_run_stopped_before_its_first_checkpoint_restarts_on_resume() {
    let cfg = config(MLM, "");
    let dir = tempfile::tempdir().unwrap();
    let mut short = cfg.clone();
    short.train.steps = 4;
    train(&short, dir.path(), &RunOptions::default());
    // What a kill before the first save leaves: no checkpoint, a partial metrics log.
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        }
    }
    let trainer = Trainer::new(cfg.resolve().unwrap(), dir.path(), cpu().autodiff()).unwrap();
    let err = trainer
        .run(&RunOptions::default(), &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("before its first checkpoint") && err.contains("--resume"),
        "{err}"
    );
    let mut restart = cfg.clone();
    restart.train.steps = 8;
    let summary = train(&restart, dir.path(), &resume());
    assert_eq!((summary.start_step, summary.step), (0, 8));
    assert!(
        summary
            .notes
            .iter()
            .any(|n| n.contains("restarting from step 0")),
        "{:?}",
        summary.notes
    );
    // The log holds the restarted run only, once.
    assert_eq!(losses(dir.path()).len(), 8);
}

/// Issue 14, defect 1: checkpoints are found by the step in their name. A user-made
/// `checkpoint-best` used to sort after the numbered ones: `--resume` started from it and
/// keep_last deleted the checkpoints just written.
#[test]
fn a_user_checkpoint_is_neither_resumed_from_nor_pruned_in_place_of_new_ones() {
    let cfg = config(MLM, "");
    let dir = tempfile::tempdir().unwrap();
    let mut short = cfg.clone();
    short.train.steps = 8;
    train(&short, dir.path(), &RunOptions::default());
    let best = dir.path().join("checkpoint-best");
    copy_dir(&dir.path().join("checkpoint-000008"), &best);
    let summary = train(&cfg, dir.path(), &resume());
    assert_eq!(summary.start_step, 8);
    assert!(best.is_dir(), "the user's checkpoint is left alone");
    assert!(
        summary.notes.iter().any(|n| n.contains("checkpoint-best")),
        "{:?}",
        summary.notes
    );
    for step in [16, 24] {
        assert!(dir.path().join(format!("checkpoint-{step:06}")).is_dir());
    }
    assert!(!dir.path().join("checkpoint-000008").exists());
}

/// Issue 14, defect 8: run-directory files are replaced, never written through a symbolic link.
#[cfg(unix)]
#[test]
fn symlinked_run_files_do_not_have_their_targets_overwritten() {
    let cfg = config(MLM, "");
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let mut short = cfg.clone();
    short.train.steps = 8;
    train(&short, dir.path(), &RunOptions::default());
    for name in ["run.toml", "metrics.jsonl"] {
        let target = outside.path().join(name);
        std::fs::write(&target, "precious\n").unwrap();
        let link = dir.path().join(name);
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
    }
    train(
        &cfg,
        dir.path(),
        &RunOptions {
            resume: true,
            stop_at: Some(9),
            ..Default::default()
        },
    );
    for name in ["run.toml", "metrics.jsonl"] {
        let target = std::fs::read_to_string(outside.path().join(name)).unwrap();
        assert_eq!(target, "precious\n", "{name}");
        assert!(!dir.path().join(name).is_symlink(), "{name}");
    }
}

fn resume() -> RunOptions {
    RunOptions {
        resume: true,
        ..Default::default()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Trains `cfg` with `peers` CPU replicas (data parallel; `train.devices` = that many `cpu`).
fn train_on_peers(
    cfg: &RunConfig,
    peers: usize,
    dir: &Path,
    options: &RunOptions,
) -> dnalm_train::RunSummary {
    let mut cfg = cfg.clone();
    cfg.train.devices = vec!["cpu".into(); peers];
    let devices = vec![cpu().autodiff(); peers];
    let trainer = Trainer::on_devices(cfg.resolve().unwrap(), dir, devices).unwrap();
    trainer.run(options, &mut Silent).unwrap()
}

#[test]
fn two_data_parallel_peers_train_like_one_device_and_resume_across_peer_counts() {
    // Dropout on, 2 micro-batches per step: 1 peer accumulates both, 2 peers take one each and
    // sum their gradients with burn's all_reduce.
    let mut cfg = config(MLM, "dropout = 0.1");
    cfg.train.steps = 5;
    cfg.train.accumulation = 2;
    cfg.train.save_every = 2;
    cfg.train.eval_every = 5;
    let one = tempfile::tempdir().unwrap();
    train(&cfg, one.path(), &RunOptions::default());
    let two = tempfile::tempdir().unwrap();
    train_on_peers(&cfg, 2, two.path(), &RunOptions::default());
    let (a, b) = (losses(one.path()), losses(two.path()));
    assert_eq!(a.len(), 5);
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| ((x - y) / x).abs())
        .fold(0.0, f64::max);
    eprintln!("1 peer vs 2 peers: largest relative loss difference over 5 steps {worst:.2e}");
    for (step, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            ((x - y) / x).abs() < 1e-5,
            "step {}: 1 peer {x}, 2 peers {y}",
            step + 1
        );
    }
    // The losses moved (a run that learned nothing would match trivially).
    assert!(a[0] != a[4], "{a:?}");
    // A run stopped on 2 peers resumes on 1 (devices are not part of the maths).
    let mixed = tempfile::tempdir().unwrap();
    train_on_peers(
        &cfg,
        2,
        mixed.path(),
        &RunOptions {
            stop_at: Some(2),
            ..Default::default()
        },
    );
    train(
        &cfg,
        mixed.path(),
        &RunOptions {
            resume: true,
            ..Default::default()
        },
    );
    for (x, y) in a.iter().zip(&losses(mixed.path())) {
        assert!(
            ((x - y) / x).abs() < 1e-5,
            "{a:?} vs resumed {:?}",
            losses(mixed.path())
        );
    }
    // Micro-batches must share evenly.
    let mut odd = cfg.clone();
    odd.train.accumulation = 3;
    odd.train.devices = vec!["cpu".into(); 2];
    let err = odd.resolve().unwrap_err().to_string();
    assert!(
        err.contains("train.accumulation") && err.contains("multiple of 2"),
        "{err}"
    );
    let mut unknown = cfg.clone();
    unknown.train.devices = vec!["cpu".into(), "tpu:0".into()];
    let err = unknown.resolve().unwrap_err().to_string();
    assert!(
        err.contains("train.devices") && err.contains("tpu"),
        "{err}"
    );
}

#[test]
fn a_multi_genome_corpus_is_packed_once_and_trains() {
    let dir = tempfile::tempdir().unwrap();
    // Lambda and a second "genome": lambda's second half, reverse-complemented, as a record
    // whose name collides with lambda's (so it is renamed genome:record).
    let lambda = std::fs::read_to_string(data("lambda_phage.fa")).unwrap();
    let name = lambda.lines().next().unwrap()[1..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let bases: String = lambda.lines().skip(1).collect();
    let other: String = bases[bases.len() / 2..]
        .bytes()
        .rev()
        .map(|b| match b {
            b'A' => 'T',
            b'C' => 'G',
            b'G' => 'C',
            b'T' => 'A',
            _ => 'N',
        })
        .collect();
    let second = dir.path().join("other.fa");
    std::fs::write(&second, format!(">{name}\n{other}\n")).unwrap();
    let mut cfg = config(MLM, "");
    cfg.data.fasta =
        dnalm_train::run_config::FastaInput::Many(vec![data("lambda_phage.fa"), second.clone()]);
    cfg.data.genome_weights = dnalm_train::run_config::GenomeWeights::Uniform;
    cfg.train.steps = 4;
    cfg.train.save_every = 2;
    cfg.train.eval_every = 2;
    let run = dir.path().join("run");
    let first = train(
        &cfg,
        &run,
        &RunOptions {
            stop_at: Some(2),
            ..Default::default()
        },
    );
    let notes = first.notes.join(" | ");
    assert!(notes.contains("packed 2 genomes (2 records"), "{notes}");
    assert!(
        notes.contains("2 record names are used by more than one genome"),
        "{notes}"
    );
    assert!(run.join("corpus.dnapack").is_file());
    let resumed = train(
        &cfg,
        &run,
        &RunOptions {
            resume: true,
            ..Default::default()
        },
    );
    assert_eq!(resumed.step, 4);
    assert!(
        !resumed.notes.join(" ").contains("packed"),
        "{:?}",
        resumed.notes
    );
    assert!(losses(&run).iter().all(|l| l.is_finite()));
    // Annotations are for one FASTA file.
    let mut annotated = cfg.clone();
    annotated.data.annotations = Some(data("ecoli_MG1655.prodigal.bed.gz"));
    let err = annotated.resolve().unwrap_err().to_string();
    assert!(
        err.contains("data.annotations") && err.contains("corpus"),
        "{err}"
    );
}

#[test]
fn activation_checkpointing_trains_like_the_plain_step() {
    // Dropout on (the recomputed blocks must draw the same masks) and 2 micro-batches per step.
    let mut cfg = config(MLM, "dropout = 0.1");
    cfg.train.steps = 5;
    cfg.train.accumulation = 2;
    cfg.train.eval_every = 5;
    let plain = tempfile::tempdir().unwrap();
    train(&cfg, plain.path(), &RunOptions::default());
    cfg.train.activation_checkpointing = true;
    let recomputed = tempfile::tempdir().unwrap();
    train(&cfg, recomputed.path(), &RunOptions::default());
    let (a, b) = (losses(plain.path()), losses(recomputed.path()));
    assert_eq!(a.len(), 5);
    assert!(a[0] != a[4], "the losses moved: {a:?}");
    for (step, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            ((x - y) / x).abs() < 1e-5,
            "step {}: plain {x}, recomputed {y}",
            step + 1
        );
    }
    // Permutation LM's two streams are not recomputed: refused before the run, by key.
    let mut permutation = config("[[objectives]]\ntype = \"permutation\"\n", "");
    permutation.train.activation_checkpointing = true;
    let message = permutation.resolve().unwrap_err().to_string();
    assert!(
        message.contains("train.activation_checkpointing"),
        "{message}"
    );
}
