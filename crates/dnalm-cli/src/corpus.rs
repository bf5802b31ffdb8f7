//! `dnalm corpus`: multi-genome pretraining corpora.

use std::{path::PathBuf, time::Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use dnalm_seq::corpus::{corpus_genomes, pack, PackedCorpus};

/// `dnalm corpus` subcommands.
#[derive(Subcommand)]
pub enum CorpusCommand {
    /// Pack genomes (FASTA files, directories of them, TSV manifests `path<TAB>weight<TAB>split`)
    /// into one 2-bit `.dnapack` file that `data.fasta` takes and pretraining memory-maps.
    Pack(PackArgs),
}

/// Arguments of `dnalm corpus pack`.
#[derive(Args)]
pub struct PackArgs {
    /// FASTA files (plain, gzip, bgzip), directories and manifests.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The `.dnapack` file to write.
    #[arg(short, long)]
    output: PathBuf,
}

/// Runs `dnalm corpus`.
pub fn run(cmd: CorpusCommand) -> anyhow::Result<()> {
    match cmd {
        CorpusCommand::Pack(args) => pack_cmd(args),
    }
}

fn pack_cmd(args: PackArgs) -> anyhow::Result<()> {
    if !dnalm_seq::corpus::is_pack(&args.output) {
        anyhow::bail!(
            "-o {}: a corpus pack's name ends in .dnapack",
            args.output.display()
        );
    }
    let genomes = corpus_genomes(&args.inputs)?;
    let t0 = Instant::now();
    let mut last = Instant::now();
    let summary = pack(&genomes, &args.output, |genome, record, bases| {
        if last.elapsed().as_secs() >= 10 {
            last = Instant::now();
            eprintln!(
                "  {:.2} Gb packed ({genome}: {record}; {:.0} s)",
                bases as f64 / 1e9,
                t0.elapsed().as_secs_f64()
            );
        }
    })?;
    let corpus = PackedCorpus::open(&args.output)
        .with_context(|| format!("reading back {}", args.output.display()))?;
    let size = std::fs::metadata(&args.output).map_or(0, |m| m.len());
    eprintln!(
        "packed {} genome(s), {} records, {:.3} Gb into {} ({:.1} MB) in {:.1} s{}",
        summary.genomes,
        summary.records,
        summary.bases as f64 / 1e9,
        args.output.display(),
        size as f64 / 1e6,
        t0.elapsed().as_secs_f64(),
        if corpus.renamed() > 0 {
            format!(
                "; {} record names shared by several genomes are named genome:record",
                corpus.renamed()
            )
        } else {
            String::new()
        }
    );
    Ok(())
}
