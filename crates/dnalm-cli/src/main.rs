//! `dnalm`: build, train and evaluate DNA language models from the command line.
//!
//! Each subcommand wires a library crate to files; the logic lives in the libraries.

mod corpus;
mod eval;
mod genome;
mod inspect;
mod label;
mod multitask;
mod pretrain;
mod score;
mod shard;
mod study;
mod tokenize;

use std::{io::Write, process::ExitCode};

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: reading a genome allocates a parse buffer as large
/// as its longest record, and glibc returns such blocks to the kernel, so every file pays for
/// faulting them in again. Measured with `crates/dnalm-tokenize/benches/foundation.rs` on the
/// bundled E. coli genome (one 4.6 Mb record): FASTA parsing 453-459 MB/s before that bench (like
/// this binary) used mimalloc, 814-832 MB/s after; a profile put ~35% of the glibc time in page
/// faults.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Build, train and evaluate DNA language models.
#[derive(Parser)]
#[command(name = "dnalm", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Summarise sequence, annotation and task files: counts, lengths, GC, N and soft-masking.
    Inspect(inspect::InspectArgs),
    /// Tokenize a FASTA/FASTQ file or a task table and report token statistics.
    Tokenize(tokenize::TokenizeArgs),
    /// Build, train or export tokenizers.
    #[command(subcommand)]
    Tokenizer(tokenize::TokenizerCommand),
    /// Print regions of an indexed FASTA (builds the .fai index if missing).
    Fetch(genome::FetchArgs),
    /// Tile a genome into windows, optionally split into leak-free train/valid/test.
    Windows(genome::WindowsArgs),
    /// Draw windows whose mix of annotated element classes meets target weights.
    Sample(genome::SampleArgs),
    /// Build a task directory from a genome and motifs or annotations (a long-range,
    /// multi-label or per-base task).
    #[command(subcommand)]
    MakeTask(genome::MakeTaskCommand),
    /// Multi-genome pretraining corpora: `dnalm corpus pack` (2-bit, memory-mapped).
    #[command(subcommand)]
    Corpus(corpus::CorpusCommand),
    /// Pretrain a model from a run config (TOML): data, tokenizer, model, objectives, optimiser.
    Pretrain(pretrain::PretrainArgs),
    /// Embeddings from a model: pooled, per token or per base, any layer(s), to .npy/.safetensors.
    Embed(eval::EmbedArgs),
    /// Probe frozen embeddings on a task (linear, kNN, MLP): the fit on all training rows, ± the
    /// sd over fold refits.
    Probe(eval::ProbeArgs),
    /// Fine-tune a model on a task (all layers or the last N) and save the checkpoint.
    Finetune(eval::FinetuneArgs),
    /// Fine-tune one model on several tasks at once (one head each), compared per task with its
    /// single-task model; `--plan` / `--groups auto` group the tasks by their inter-task
    /// gradient affinity.
    Multitask(multitask::MultitaskArgs),
    /// Relevance of models to tasks from frozen embeddings: LogME, H-score, kNN, linear MCC.
    Relevance(eval::RelevanceArgs),
    /// Run a task suite against models and the baselines; write report.md, results.json, plots.
    Bench(eval::BenchArgs),
    /// Run a study: a grid over pretraining knobs, each cell pretrained with the same budget and
    /// evaluated on a task suite beside the baselines; writes study.md, study.json, plots.
    Study(study::StudyArgs),
    /// Score with a language model: sequence log-likelihoods, variant effects (VCF), in-silico
    /// mutagenesis.
    #[command(subcommand)]
    Score(score::ScoreCommand),
    /// Apply a fine-tuned classifier across a genome (sliding windows, both strands): BED of
    /// predicted elements and a task of (sequence, predicted label, score) pairs; or a per-base
    /// model: every base's class, BED runs per class and a per-base task.
    Label(label::LabelArgs),
    /// Convert a model directory (DNABERT, DNABERT-2, Nucleotide Transformer v1/v2, ESM-2, Llama
    /// or dnalm) into a dnalm checkpoint that `transformers` loads (stock classes, or the hub
    /// family's own code for DNABERT-2 and NT-v2).
    Convert(eval::ConvertArgs),
    /// Merge a LoRA adapter directory (`finetune --lora`) into its base model: a fine-tuned
    /// checkpoint with the adapters folded into the weights.
    MergeAdapter(eval::MergeAdapterArgs),
    /// Join the outputs of the shards of one `--shard I/N` job (embed, score, label, bench) into
    /// the output of the whole job.
    Merge(shard::MergeArgs),
}

fn main() -> ExitCode {
    dnalm_model::allocator::retain_freed_memory();
    dnalm_model::float_mode::flush_subnormals();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(std::io::stderr(), "error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Tokenizer(cmd) => tokenize::run_tokenizer(cmd),
        Command::Fetch(args) => genome::fetch(args),
        Command::Windows(args) => genome::windows(args),
        Command::Sample(args) => genome::sample(args),
        Command::MakeTask(cmd) => genome::make_task(cmd),
        Command::Corpus(cmd) => corpus::run(cmd),
        Command::Pretrain(args) => pretrain::run(args),
        Command::Embed(args) => eval::embed(args),
        Command::Probe(args) => eval::probe(args),
        Command::Finetune(args) => eval::finetune_cmd(args),
        Command::Multitask(args) => multitask::run(args),
        Command::Relevance(args) => eval::relevance(args),
        Command::Bench(args) => eval::bench(args),
        Command::Convert(args) => eval::convert(args),
        Command::MergeAdapter(args) => eval::merge_adapter(args),
        Command::Study(args) => study::run(args),
        Command::Score(cmd) => score::run(cmd),
        Command::Label(args) => label::run(args),
        Command::Merge(args) => shard::merge(args),
    }
}

/// The error and its causes on one line, `: `-separated, skipping a cause whose text the line
/// already holds (library errors print their source in their own message, so the plain chain
/// said "No such file or directory (os error 2)" twice).
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes `text` to `path` atomically (temp file + rename), creating its directory, or to
/// stdout when `path` is `-`.
pub(crate) fn write_output(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        std::io::stdout().write_all(text.as_bytes())?;
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    dnalm_seq::write_atomic(path, |w| w.write_all(text.as_bytes()))?;
    Ok(())
}

/// `--device`, shared by every command that runs a model.
#[derive(clap::Args, Clone)]
pub(crate) struct DeviceFlag {
    /// Compute device: `cpu`, `vulkan[:N]` (build with `--features vulkan`) or `cuda[:N]`
    /// (`--features cuda`). A device this build or machine lacks is one error before any work.
    #[arg(long, default_value = "cpu")]
    device: String,
}

impl DeviceFlag {
    /// The device named (parsed here rather than by clap, so a bad name is one line like every
    /// other error).
    pub(crate) fn name(&self) -> anyhow::Result<dnalm_model::DeviceName> {
        Ok(self.device.parse()?)
    }

    /// Whether the flag was left at its default (`cpu`).
    pub(crate) fn is_default(&self) -> bool {
        self.device == "cpu"
    }

    /// Acquires the device.
    pub(crate) fn open(&self) -> anyhow::Result<dnalm_model::burn::tensor::Device> {
        Ok(self.name()?.open()?)
    }
}
