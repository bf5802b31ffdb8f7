//! `dnalm embed`, `probe`, `finetune`, `relevance`, `bench`: wiring dnalm-eval to the command
//! line.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context};
use clap::Args;
use dnalm_eval::{
    bench::{run_bench, BenchConfig},
    features::baseline::BaselineKind,
    features::embed::{parse_pooling, EmbedOptions, Embedder, Granularity, ModelSpec},
    features::store::{read_embeddings, EmbeddingWriter},
    features::tasks::{check_tokenizer, split_rows, targets},
    features::Labelled,
    finetune::{finetune_to, FinetuneOptions, HeadInit, LearningRate, FINETUNE_BUDGET},
    probes::fit::{ClassBalance, FitOptions},
    probes::per_base::PER_BASE_PROBE_BUDGET,
    probes::token::TOKEN_PROBE_BUDGET,
    probes::{run_probe, ProbeKind, ProbeOptions, SplitFeatures},
    report::write_report,
};
use dnalm_model::{heads::Pooling, lora::LoraSpec};

use crate::{
    shard::{self, OutputKind, ShardFlag},
    DeviceFlag,
};
use dnalm_seq::{
    suite::{self, TaskSource},
    task::{read_table, Split, Task},
    FastxReader, Shard,
};

/// How to embed (shared by embed, probe, relevance, bench).
#[derive(Args, Clone)]
pub struct EmbedFlags {
    /// Layers, comma-separated: 0 = token embeddings, i = block i, -1 = final (normalised)
    /// output; several are concatenated.
    #[arg(
        long,
        default_value = "-1",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    layers: Vec<i64>,
    /// Pooling: mean, cls, max or last (the last sequence token: for causal
    /// models, the one state that has seen the whole sequence).
    #[arg(long, default_value = "mean", value_parser = parse_pooling)]
    pooling: Pooling,
    /// Average each sequence with its reverse complement.
    #[arg(long)]
    rc: bool,
    /// Tokens shared by neighbouring windows when a sequence exceeds the context.
    #[arg(long)]
    overlap: Option<usize>,
    /// Token budget per forward batch.
    #[arg(long, default_value_t = 16_384)]
    batch_tokens: usize,
}

impl EmbedFlags {
    fn options(&self, granularity: Granularity) -> EmbedOptions {
        EmbedOptions {
            layers: self.layers.clone(),
            pooling: self.pooling,
            granularity,
            reverse_complement: self.rc,
            overlap: self.overlap,
            batch_tokens: self.batch_tokens,
        }
    }
}

/// Arguments of `dnalm embed`.
#[derive(Args)]
pub struct EmbedArgs {
    /// Model directory (`DIR`, or `random:DIR` for random weights of the same shape).
    #[arg(short, long)]
    model: String,
    /// A task (a dnalm task directory, or `FORMAT:DIR` of a standard suite: `gue`, `nt`,
    /// `genomic-benchmarks`, `bend`): writes OUTPUT/{train,valid,test}.npy (+ .tsv).
    #[arg(long, conflicts_with = "input")]
    task: Option<String>,
    /// The reference genome FASTA a BEND task's coordinates refer to.
    #[arg(long)]
    genome: Option<PathBuf>,

    /// Sequences: FASTA/FASTQ (optionally gzipped) or a table with a `sequence` column.
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Output `.npy` or `.safetensors` file (a directory with --task).
    #[arg(short, long)]
    output: PathBuf,
    /// One vector per sequence, token or base.
    #[arg(long = "per", default_value = "sequence")]
    granularity: Granularity,
    /// File format with --task: npy or safetensors.
    #[arg(long, default_value = "npy")]
    format: String,
    #[command(flatten)]
    flags: EmbedFlags,
    #[command(flatten)]
    device: DeviceFlag,
    /// Shards split the sequences (each split's rows with --task), balanced by bases.
    #[command(flatten)]
    shard: ShardFlag,
}

/// Sequences embedded per call; shards split whole chunks, so each sequence is batched with the
/// same neighbours (same padding, same arithmetic) as in the whole run.
const CHUNK: usize = 256;

/// The sequences of `shard` among sequences of `lengths`: whole chunks, balanced by bases.
fn shard_sequences(shard: Shard, lengths: &[u64]) -> std::ops::Range<usize> {
    let per_chunk: Vec<u64> = lengths.chunks(CHUNK).map(|c| c.iter().sum()).collect();
    let chunks = shard.range_weighted(&per_chunk);
    (chunks.start * CHUNK).min(lengths.len())..(chunks.end * CHUNK).min(lengths.len())
}

pub fn embed(args: EmbedArgs) -> anyhow::Result<()> {
    let shard = args.shard.get()?;
    let spec = ModelSpec::parse(&args.model);
    let encoder = spec
        .load(&args.device.open()?)
        .with_context(|| format!("loading model {}", args.model))?;
    let embedder = Embedder::new(&encoder, args.flags.options(args.granularity))?;
    let t0 = Instant::now();
    let mut total = 0usize;
    if let Some(task_spec) = &args.task {
        let task = load_task(task_spec, args.genome.as_deref())?;
        check_tokenizer(&task, &encoder)?;
        if !matches!(args.format.as_str(), "npy" | "safetensors") {
            bail!("--format must be npy or safetensors, not '{}'", args.format);
        }
        std::fs::create_dir_all(&args.output)
            .with_context(|| format!("creating {}", args.output.display()))?;
        let mut written = Vec::new();
        for split in Split::ALL {
            let rows: Vec<_> = task.split(split).collect();
            let lengths: Vec<u64> = rows.iter().map(|r| r.sequence.len() as u64).collect();
            let rows = &rows[shard_sequences(shard, &lengths)];
            if rows.is_empty() {
                continue;
            }
            let path = args
                .output
                .join(format!("{}.{}", split.as_str(), args.format));
            let mut writer = EmbeddingWriter::create(&path, embedder.width())?;
            for chunk in rows.chunks(CHUNK) {
                let seqs: Vec<&[u8]> = chunk.iter().map(|r| r.sequence.as_slice()).collect();
                for (r, v) in chunk.iter().zip(embedder.embed(&seqs)?) {
                    writer.push(&r.id, &r.label.to_string(), &v)?;
                }
            }
            total += writer.len();
            let (n, d) = writer.finish()?;
            eprintln!("{}: {n} x {d}", path.display());
            written.push(path);
        }
        // Files of an earlier `embed --task` into this directory (another task's split, the
        // other format) would be read as this task's: they are removed, and said so.
        for split in Split::ALL {
            for ext in ["npy", "safetensors", "tsv"] {
                let stale = args.output.join(format!("{}.{ext}", split.as_str()));
                let current = written
                    .iter()
                    .any(|w| *w == stale || w.with_extension("tsv") == stale);
                if !current && stale.is_file() {
                    std::fs::remove_file(&stale)
                        .with_context(|| format!("removing stale {}", stale.display()))?;
                    eprintln!(
                        "removed {} (left by an earlier run; not part of this task)",
                        stale.display()
                    );
                }
            }
        }
        shard::record(
            &args.output,
            OutputKind::EmbeddingsDir,
            shard,
            &["-o", "--output"],
        )?;
    } else if let Some(input) = &args.input {
        let mut writer = EmbeddingWriter::create(&args.output, embedder.width())?;
        let mut batch: Vec<(String, String, Vec<u8>)> = Vec::new();
        let flush = |batch: &mut Vec<(String, String, Vec<u8>)>,
                     writer: &mut EmbeddingWriter|
         -> anyhow::Result<()> {
            let seqs: Vec<&[u8]> = batch.iter().map(|b| b.2.as_slice()).collect();
            for (b, v) in batch.iter().zip(embedder.embed(&seqs)?) {
                writer.push(&b.0, &b.1, &v)?;
            }
            batch.clear();
            Ok(())
        };
        if dnalm_seq::task::table_format(input)
            .is_some_and(|f| !matches!(f, dnalm_seq::task::TableFormat::Fasta))
        {
            let rows = read_table(input, None, None)?;
            let lengths: Vec<u64> = rows.iter().map(|r| r.sequence.len() as u64).collect();
            let mine = shard_sequences(shard, &lengths);
            for r in rows.into_iter().skip(mine.start).take(mine.len()) {
                batch.push((r.id.clone(), r.label.to_string(), r.sequence));
                if batch.len() == CHUNK {
                    flush(&mut batch, &mut writer)?;
                }
            }
        } else {
            // A shard's sequences: a first pass reads the lengths, to balance shards by bases.
            let mine = if shard.is_whole() {
                0..usize::MAX
            } else {
                let mut reader = FastxReader::from_path(input)?;
                let mut record = dnalm_seq::SequenceRecord::new("", Vec::new());
                let mut lengths = Vec::new();
                while reader.read_record(&mut record)? {
                    lengths.push(record.len() as u64);
                }
                shard_sequences(shard, &lengths)
            };
            let mut reader = FastxReader::from_path(input)?;
            let mut record = dnalm_seq::SequenceRecord::new("", Vec::new());
            let mut index = 0;
            while reader.read_record(&mut record)? {
                index += 1;
                if !mine.contains(&(index - 1)) {
                    continue;
                }
                batch.push((record.name.clone(), String::new(), record.sequence.clone()));
                if batch.len() == CHUNK {
                    flush(&mut batch, &mut writer)?;
                }
            }
        }
        flush(&mut batch, &mut writer)?;
        total = writer.len();
        let (n, d) = writer.finish()?;
        shard::record(
            &args.output,
            OutputKind::Embeddings,
            shard,
            &["-o", "--output"],
        )?;
        eprintln!("{}: {n} x {d}", args.output.display());
    } else {
        bail!("give --task DIR or --input FILE");
    }
    eprintln!(
        "embedded {total} sequences in {:.1} s ({:.0} seq/s)",
        t0.elapsed().as_secs_f64(),
        total as f64 / t0.elapsed().as_secs_f64().max(1e-9)
    );
    Ok(())
}

/// Probe settings on the command line.
#[derive(Args, Clone)]
pub struct ProbeFlags {
    /// Refits for mean ± sd (each leaves out one fold of the training rows).
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl ProbeFlags {
    fn options(&self) -> ProbeOptions {
        let mut o = ProbeOptions {
            folds: self.folds,
            seed: self.seed,
            ..Default::default()
        };
        o.mlp_fit.seed = self.seed;
        o
    }
}

/// Arguments of `dnalm probe`.
#[derive(Args)]
pub struct ProbeArgs {
    /// A task: a dnalm task directory, or `FORMAT:DIR` for a task of a standard suite in its own
    /// layout (`gue`, `nt`, `genomic-benchmarks`, `bend`).
    #[arg(short, long)]
    task: String,
    /// The reference genome FASTA a BEND task's coordinates refer to.
    #[arg(long)]
    genome: Option<PathBuf>,

    /// Model directory (`DIR` or `random:DIR`); embeddings are computed in memory.
    #[arg(short, long, conflicts_with = "embeddings")]
    model: Option<String>,
    /// Or: a directory written by `dnalm embed --task` ({train,valid,test}.npy + .tsv).
    #[arg(long)]
    embeddings: Option<PathBuf>,
    /// Probes, comma-separated: linear, knn, mlp.
    #[arg(long, default_value = "linear,knn,mlp", value_delimiter = ',')]
    probes: Vec<ProbeKind>,
    /// Also write the results as JSON here.
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    probe: ProbeFlags,
    #[command(flatten)]
    flags: EmbedFlags,
    #[command(flatten)]
    device: DeviceFlag,
}

pub fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    let task = load_task(&args.task, args.genome.as_deref())?;
    let features = match (&args.model, &args.embeddings) {
        (Some(m), _) => {
            let spec = ModelSpec::parse(m);
            let encoder = spec
                .load(&args.device.open()?)
                .with_context(|| format!("loading model {m}"))?;
            let embedder = Embedder::new(&encoder, args.flags.options(Granularity::Sequence))?;
            dnalm_eval::features::tasks::embed_task(&embedder, &task)?
        }
        (None, Some(dir)) => features_from_files(&task, dir)?,
        (None, None) => bail!("give --model DIR or --embeddings DIR"),
    };
    let mut options = args.probe.options();
    options.mlp_fit.device = args.device.name()?;
    let mut out = serde_json::Map::new();
    println!("probe    chosen             test metrics (mean ± sd)");
    for kind in &args.probes {
        let t0 = Instant::now();
        let report = run_probe(*kind, &features, &options)?;
        let metrics: Vec<String> = report
            .summary
            .iter()
            .map(|(k, s)| format!("{k} {s}"))
            .collect();
        println!(
            "{:<8} {:<18} {}  ({:.1} s)",
            kind.to_string(),
            report.chosen,
            metrics.join(", "),
            t0.elapsed().as_secs_f64()
        );
        out.insert(kind.to_string(), serde_json::to_value(&report)?);
    }
    if let Some(path) = &args.output {
        crate::write_output(path, &serde_json::to_string_pretty(&out)?)?;
    }
    Ok(())
}

/// Features from `dnalm embed --task` output, checked against the task row by row.
fn features_from_files(task: &Task, dir: &Path) -> anyhow::Result<SplitFeatures> {
    let rows = split_rows(task)?;
    let mut parts = Vec::new();
    for (split, rows) in Split::ALL.iter().zip(&rows) {
        let path = ["npy", "safetensors"]
            .iter()
            .map(|ext| dir.join(format!("{}.{ext}", split.as_str())))
            .find(|p| p.is_file());
        let Some(path) = path else {
            if rows.is_empty() {
                parts.push(Labelled::new(
                    ndarray::Array2::zeros((0, 0)),
                    targets(task, rows),
                    split.as_str(),
                )?);
                continue;
            }
            bail!(
                "{}: no {}.npy or {}.safetensors",
                dir.display(),
                split.as_str(),
                split.as_str()
            );
        };
        let (matrix, index) = read_embeddings(&path)?;
        if index.len() != rows.len() {
            bail!(
                "{}: {} embedded sequences but the task's {} split has {} labelled rows",
                path.display(),
                index.len(),
                split.as_str(),
                rows.len()
            );
        }
        if let Some((i, (e, r))) = index
            .iter()
            .zip(rows)
            .enumerate()
            .find(|(_, (e, r))| e.id != r.id || e.row_end != e.row_start + 1)
        {
            bail!(
                "{}: row {} is '{}' ({} vectors) but the task has '{}' there; embed the task \
                 again with --per sequence",
                path.display(),
                i + 1,
                e.id,
                e.row_end - e.row_start,
                r.id
            );
        }
        parts.push(Labelled::new(
            matrix,
            targets(task, rows),
            &path.display().to_string(),
        )?);
    }
    let test = parts.pop().context("no test split")?;
    let valid = parts.pop().context("no valid split")?;
    let train = parts.pop().context("no train split")?;
    Ok(SplitFeatures { train, valid, test })
}

/// Fine-tuning settings on the command line.
#[derive(Args, Clone)]
pub(crate) struct FinetuneFlags {
    /// Most epochs (early stopping on the valid headline metric).
    #[arg(long, default_value_t = FINETUNE_BUDGET.epochs)]
    epochs: usize,
    /// Most optimiser steps (whichever of --epochs and --max-steps ends first).
    #[arg(long, default_value_t = FINETUNE_BUDGET.max_steps.unwrap_or(1000))]
    max_steps: usize,
    /// Peak learning rate: a number, `scaled` (by model size: 5e-4 at 3 M parameters, 2e-5 at
    /// 500 M) or `auto` (short runs at 1/3, 1 and 3 times the scaled rate, the best on valid
    /// trained in full).
    #[arg(long, default_value = "scaled")]
    lr: LearningRate,
    /// Batch size.
    #[arg(long, default_value_t = FINETUNE_BUDGET.batch_size)]
    batch_size: usize,
    /// Validations without improvement before stopping.
    #[arg(long, default_value_t = FINETUNE_BUDGET.patience)]
    patience: usize,
    /// Steps between validations (default: every epoch, at most 100 steps).
    #[arg(long)]
    eval_every: Option<usize>,
    /// How the head starts: `linear-probe` (LP-FT: the linear probe on frozen embeddings, then
    /// fine-tune everything) or `random`.
    #[arg(long, default_value = "linear-probe")]
    head: HeadInit,
    /// Train only the last N blocks (and the head); default: all. The frozen blocks' output is
    /// computed once and cached.
    #[arg(long)]
    train_last: Option<usize>,
    /// Freeze the token and position embeddings.
    #[arg(long)]
    freeze_embeddings: bool,
    /// Layer-wise learning-rate decay in (0, 1]: block i of L trains at decay^(L - i) times
    /// the rate.
    #[arg(long)]
    layer_decay: Option<f64>,
    /// Train LoRA adapters instead of the weights: `r=8,alpha=16,targets=q,v` (targets: q, k,
    /// v, o, ffn for attention models; in_proj, out_proj, ffn for Hyena; in_proj, out_proj,
    /// x_proj, dt_proj for Caduceus). Only the adapters and the head are trained and saved;
    /// the default rate is 10x the full fine-tuning one.
    #[arg(long, value_name = "SPEC")]
    lora: Option<LoraSpec>,
    /// Loss weights: `none`, or `balanced` (each class weighs rows / (classes x its rows);
    /// multi-label: each label's positives weigh its negatives / positives, for rare labels).
    #[arg(long, default_value = "none", value_name = "none|balanced")]
    class_weights: ClassBalance,
}

impl FinetuneFlags {
    pub(crate) fn options(&self, pooling: Pooling, seeds: usize, seed: u64) -> FinetuneOptions {
        FinetuneOptions {
            fit: FitOptions {
                epochs: self.epochs,
                batch_size: self.batch_size,
                patience: self.patience,
                seed,
                max_steps: Some(self.max_steps),
                eval_every: self.eval_every,
                balance: self.class_weights,
                ..FINETUNE_BUDGET
            },
            lr: self.lr,
            head: self.head,
            train_last: self.train_last,
            freeze_embeddings: self.freeze_embeddings,
            layer_decay: self.layer_decay,
            pooling,
            seeds,
            lora: self.lora.clone(),
        }
    }
}

/// Arguments of `dnalm finetune`.
#[derive(Args)]
pub struct FinetuneArgs {
    /// Model directory (`DIR` or `random:DIR` to train from scratch).
    #[arg(short, long)]
    model: String,
    /// A task: a dnalm task directory, or `FORMAT:DIR` for a task of a standard suite in its own
    /// layout (`gue`, `nt`, `genomic-benchmarks`, `bend`).
    #[arg(short, long)]
    task: String,
    /// The reference genome FASTA a BEND task's coordinates refer to.
    #[arg(long)]
    genome: Option<PathBuf>,
    /// Where to write the fine-tuned checkpoint (the first seed's).
    #[arg(short, long)]
    output: PathBuf,
    /// Independent runs for mean ± sd.
    #[arg(long, default_value_t = 1)]
    seeds: usize,
    /// Seed of the first run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Pooling for the head: mean, cls, max or last (the last sequence token: for causal
    /// models, the one state that has seen the whole sequence).
    #[arg(long, default_value = "mean", value_parser = parse_pooling)]
    pooling: Pooling,
    #[command(flatten)]
    finetune: FinetuneFlags,
    #[command(flatten)]
    device: DeviceFlag,
}

pub fn finetune_cmd(args: FinetuneArgs) -> anyhow::Result<()> {
    let task = load_task(&args.task, args.genome.as_deref())?;
    let spec = ModelSpec::parse(&args.model);
    let mut options = args.finetune.options(args.pooling, args.seeds, args.seed);
    options.fit.device = args.device.name()?;
    let t0 = Instant::now();
    let (report, no_peft) = finetune_to(&spec, &task, &options, &args.output)?;
    if let Some(why) = no_peft {
        eprintln!("note: the adapter is in dnalm's layout only, not PEFT's: {why}");
    }
    eprintln!(
        "fine-tuned in {:.1} s ({}); checkpoint: {}",
        t0.elapsed().as_secs_f64(),
        report.describe(),
        args.output.display()
    );
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Arguments of `dnalm bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// A suite: a directory of dnalm tasks, or `FORMAT:DIR` for a standard suite as it is
    /// distributed (`gue`, `nt`, `genomic-benchmarks`, `bend`; repeatable).
    #[arg(long)]
    suite: Vec<String>,
    /// A task: a dnalm task directory, or `FORMAT:DIR` for a task of a standard suite in its own
    /// layout (`gue`, `nt`, `genomic-benchmarks`, `bend`; repeatable).
    #[arg(short, long)]
    task: Vec<String>,
    /// The reference genome FASTA a BEND task's coordinates refer to.
    #[arg(long)]
    genome: Option<PathBuf>,

    /// A model: `[NAME=]DIR` or `[NAME=]random:DIR` (repeatable).
    #[arg(short, long)]
    model: Vec<String>,
    /// Output directory: report.md, results.json, relevance.csv, plots/.
    #[arg(short, long)]
    output: PathBuf,
    /// Probes, comma-separated: linear, knn, mlp.
    #[arg(long, default_value = "linear,knn,mlp", value_delimiter = ',')]
    probes: Vec<ProbeKind>,
    /// Fine-tune every model on every task too.
    #[arg(long)]
    finetune: bool,
    /// Baselines to run, comma-separated: kmer (k-mer spectrum + linear probe), cnn (one-hot
    /// CNN).
    #[arg(long, default_value = "kmer,cnn", value_delimiter = ',')]
    baselines: Vec<BaselineKind>,
    /// Also probe every layer on its own (the probing curve: which layer carries the signal;
    /// one more embedding pass per model and task).
    #[arg(long)]
    per_layer: bool,
    /// Also train the token probe: a conv + attention-pooling head on the frozen per-token
    /// embeddings (keeps where a motif is and whether it is there), `--seeds` times.
    #[arg(long)]
    token_probe: bool,
    /// Most epochs of the token probe (early-stopped on the validation loss).
    #[arg(long, default_value_t = TOKEN_PROBE_BUDGET.epochs)]
    token_probe_epochs: usize,
    /// Most epochs of the per-base probe (per-base tasks: a head on the frozen per-token
    /// embeddings, mapped to bases through the tokenizer's offsets; early-stopped on the
    /// validation loss).
    #[arg(long, default_value_t = PER_BASE_PROBE_BUDGET.epochs)]
    per_base_epochs: usize,
    /// Skip every baseline (not recommended: they are the point of comparison).
    #[arg(long, conflicts_with = "baselines")]
    no_baselines: bool,
    /// Seeds for the CNN and fine-tuning.
    #[arg(long, default_value_t = BenchConfig::default().seeds)]
    seeds: usize,
    /// Most CNN epochs, early-stopped on the validation loss.
    #[arg(long, default_value_t = BenchConfig::default().cnn.epochs)]
    cnn_epochs: usize,
    #[command(flatten)]
    probe: ProbeFlags,
    #[command(flatten)]
    flags: EmbedFlags,
    #[command(flatten)]
    finetune_flags: FinetuneFlags,
    #[command(flatten)]
    device: DeviceFlag,
    /// Shards split the task list (in order; whole tasks). `dnalm merge` joins the shards'
    /// output directories (without the task × task affinity, which needs every task at once).
    #[command(flatten)]
    shard: ShardFlag,
}

/// A task named `[FORMAT:]DIR` (see [`TaskSource::parse`]).
pub(crate) fn load_task(spec: &str, genome: Option<&Path>) -> anyhow::Result<Task> {
    Ok(TaskSource::parse(spec, genome).load()?)
}

/// Tasks named directly or found under suites (each suite's sorted), all `[FORMAT:]DIR`.
fn collect_tasks(
    suites: &[String],
    tasks: &[String],
    genome: Option<&Path>,
) -> anyhow::Result<Vec<TaskSource>> {
    let mut out: Vec<TaskSource> = tasks.iter().map(|t| TaskSource::parse(t, genome)).collect();
    for suite in suites {
        let (format, dir) = TaskSource::split_spec(suite);
        out.extend(suite::discover(format, &dir, genome)?);
    }
    if out.is_empty() {
        bail!("give at least one --task [FORMAT:]DIR or --suite [FORMAT:]DIR");
    }
    Ok(out)
}

fn bench_config(
    args_models: &[String],
    tasks: Vec<TaskSource>,
    flags: &EmbedFlags,
    probe: &ProbeFlags,
) -> BenchConfig {
    BenchConfig {
        models: args_models.iter().map(|m| ModelSpec::parse(m)).collect(),
        tasks,
        embed: flags.options(Granularity::Sequence),
        probe: probe.options(),
        ..BenchConfig::default()
    }
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let shard = args.shard.get()?;
    let mut tasks = collect_tasks(&args.suite, &args.task, args.genome.as_deref())?;
    if !shard.is_whole() {
        let all = tasks.len();
        tasks = tasks.drain(shard.range(all)).collect();
        eprintln!("shard {shard}: {} of the {all} tasks", tasks.len());
    }
    let mut config = bench_config(&args.model, tasks, &args.flags, &args.probe);
    config.probes = args.probes.clone();
    config.per_layer = args.per_layer;
    config.token_probe = args.token_probe.then_some(FitOptions {
        epochs: args.token_probe_epochs,
        seed: args.probe.seed,
        ..TOKEN_PROBE_BUDGET
    });
    config.baselines = if args.no_baselines {
        Vec::new()
    } else {
        args.baselines.clone()
    };
    config.seeds = args.seeds;
    config.cnn.epochs = args.cnn_epochs;
    config.per_base_probe.epochs = args.per_base_epochs;
    config.per_base_probe.seed = args.probe.seed;
    if args.finetune {
        config.finetune = Some(args.finetune_flags.options(
            args.flags.pooling,
            args.seeds,
            args.probe.seed,
        ));
    }
    run_and_report(&config.on_device(args.device.name()?), &args.output)?;
    shard::record(&args.output, OutputKind::Bench, shard, &["-o", "--output"])
}

fn run_and_report(config: &BenchConfig, output: &Path) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut progress = |m: &str| eprintln!("[{:>6.1}s] {m}", t0.elapsed().as_secs_f64());
    let results = run_bench(config, &mut progress)?;
    for r in results.finetune_below_probe() {
        eprintln!(
            "warning: {} on {}: fine-tuned {:.3} ended below the frozen linear probe {:.3}; the \
             fine-tuned model is under-trained (see report.md)",
            r.model,
            r.task,
            r.finetuned.unwrap_or(f64::NAN),
            r.linear
        );
    }
    let report = write_report(output, &results)?;
    eprintln!(
        "[{:>6.1}s] wrote {}",
        t0.elapsed().as_secs_f64(),
        report.display()
    );
    let text = std::fs::read_to_string(&report)?;
    println!("{text}");
    Ok(())
}

/// Arguments of `dnalm relevance`.
#[derive(Args)]
pub struct RelevanceArgs {
    /// A model: `[NAME=]DIR` or `[NAME=]random:DIR` (repeatable).
    #[arg(short, long, required = true)]
    model: Vec<String>,
    /// A task: a dnalm task directory, or `FORMAT:DIR` for a task of a standard suite in its own
    /// layout (`gue`, `nt`, `genomic-benchmarks`, `bend`; repeatable).
    #[arg(short, long)]
    task: Vec<String>,
    /// A suite: a directory of dnalm tasks, or `FORMAT:DIR` for a standard suite as it is
    /// distributed (repeatable).
    #[arg(long)]
    suite: Vec<String>,
    /// The reference genome FASTA a BEND task's coordinates refer to.
    #[arg(long)]
    genome: Option<PathBuf>,

    /// Output directory: relevance.csv, report.md, results.json, plots/.
    #[arg(short, long)]
    output: PathBuf,
    /// Also fine-tune, and correlate each score with the fine-tuned result.
    #[arg(long)]
    finetune: bool,
    #[command(flatten)]
    probe: ProbeFlags,
    #[command(flatten)]
    flags: EmbedFlags,
    #[command(flatten)]
    finetune_flags: FinetuneFlags,
    #[command(flatten)]
    device: DeviceFlag,
}

pub fn relevance(args: RelevanceArgs) -> anyhow::Result<()> {
    let tasks = collect_tasks(&args.suite, &args.task, args.genome.as_deref())?;
    let mut config = bench_config(&args.model, tasks, &args.flags, &args.probe);
    config.probes = Vec::new();
    config.baselines = Vec::new();
    config.seeds = 1;
    if args.finetune {
        config.finetune = Some(
            args.finetune_flags
                .options(args.flags.pooling, 1, args.probe.seed),
        );
    }
    run_and_report(&config.on_device(args.device.name()?), &args.output)
}

/// Arguments of `dnalm convert`.
#[derive(Args)]
pub struct ConvertArgs {
    /// Model directory to read: a dnalm checkpoint or a Hugging Face one (DNABERT `bert`,
    /// Nucleotide Transformer v1 / ESM-2 `esm`, `llama`, DNABERT-2, Nucleotide Transformer v2,
    /// HyenaDNA `hyenadna`)
    /// with `config.json`, `model.safetensors` and its tokenizer files.
    input: PathBuf,
    /// Directory to write (must not exist): a dnalm checkpoint in the layout `transformers`
    /// loads with its stock classes.
    output: PathBuf,
}

/// Arguments of `dnalm merge-adapter`.
#[derive(Args)]
pub struct MergeAdapterArgs {
    /// A LoRA adapter directory (`dnalm finetune --lora` output: `adapter.json`,
    /// `adapter.safetensors`, and the head).
    adapter: PathBuf,
    /// Directory to write (must not exist): the base model with the adapters merged into its
    /// weights, its tokenizer, and the head: a fine-tuned checkpoint every command loads.
    output: PathBuf,
}

/// `dnalm merge-adapter`: an adapter directory -> a merged fine-tuned checkpoint.
pub fn merge_adapter(args: MergeAdapterArgs) -> anyhow::Result<()> {
    if !args
        .adapter
        .join(dnalm_model::lora::ADAPTER_CONFIG)
        .is_file()
    {
        anyhow::bail!(
            "{}: not a LoRA adapter directory (no {})",
            args.adapter.display(),
            dnalm_model::lora::ADAPTER_CONFIG
        );
    }
    convert(ConvertArgs {
        input: args.adapter,
        output: args.output,
    })
}

/// The block layout in words: norm placement, positions, feed-forward network.
fn layout(c: &dnalm_model::ModelConfig) -> String {
    format!(
        "{}, {:?} positions, {:?} feed-forward",
        if c.post_norm { "post-norm" } else { "pre-norm" },
        c.position,
        c.feed_forward()
    )
}

/// `dnalm convert`: any model directory dnalm reads -> a dnalm checkpoint (a Hugging Face one).
pub fn convert(args: ConvertArgs) -> anyhow::Result<()> {
    let report = dnalm_model::convert::convert(&args.input, &args.output)
        .with_context(|| format!("converting {}", args.input.display()))?;
    let c = &report.config;
    println!(
        "read {}: {:?} ({}), {} layers, d = {}, {}, {} positions, vocab {}",
        args.input.display(),
        c.architecture,
        layout(c),
        c.n_layers,
        c.d_model,
        c.mixer_summary(),
        c.max_positions,
        c.vocab_size
    );
    println!("tokenizer: {}", report.tokenizer);
    if report.merged_adapters {
        println!("merged the LoRA adapters into the base model's weights");
    }
    if !report.import.fresh.is_empty() {
        println!(
            "note: the checkpoint has no LM head ({} tensors left freshly initialised): \
             embeddings and probes are fine, likelihood scores are not",
            report.import.fresh.len()
        );
    }
    if !report.import.skipped.is_empty() {
        println!(
            "skipped {} tensors dnalm does not use: {}",
            report.import.skipped.len(),
            report.import.skipped.join(", ")
        );
    }
    match &report.exported_as {
        Ok(family) => match family.hub_code() {
            None => println!(
                "wrote {} (transformers: {}, no trust_remote_code needed)",
                args.output.display(),
                family.class()
            ),
            Some(repo) => println!(
                "wrote {} ({} layout: transformers loads it as {} with the code of {repo}, \
                 trust_remote_code=True; dnalm runs it natively)",
                args.output.display(),
                family.name(),
                family.class()
            ),
        },
        Err(why) => println!("wrote {} (dnalm layout only: {why})", args.output.display()),
    }
    Ok(())
}
