//! `--shard I/N` on the genome-scale commands and `dnalm merge`, which joins the shards' outputs
//! into what the whole job writes, byte for byte.
//!
//! A sharded run writes, beside each output, a small manifest (`OUTPUT.shard.json`, or
//! `OUTPUT/shard.json` for a directory) saying which shard of which job it is and how its
//! output merges. `dnalm merge` reads the manifests, so it takes the shards in any order, and
//! refuses a set with a shard missing or repeated, or shards of different jobs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use dnalm_seq::Shard;
use serde::{Deserialize, Serialize};

use crate::write_output;

/// `--shard`, shared by the commands that can split their work across processes.
#[derive(Args, Clone)]
pub(crate) struct ShardFlag {
    /// Run only shard I of N (1-based, e.g. `--shard 2/8`): a contiguous part of the input in
    /// input order. Each output gets a manifest (`OUTPUT.shard.json`, or `shard.json` inside an
    /// output directory); `dnalm merge` joins the N outputs into the whole job's output.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
}

impl ShardFlag {
    /// The shard named (the whole job when the flag is absent).
    pub(crate) fn get(&self) -> anyhow::Result<Shard> {
        match &self.shard {
            None => Ok(Shard::WHOLE),
            Some(text) => Ok(text.parse::<Shard>().context("--shard")?),
        }
    }
}

/// How a shard's output joins the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum OutputKind {
    /// A table with one header line (TSV/CSV): the header once, then every shard's rows.
    Table,
    /// A VCF: the `#` header of the first shard (all must be equal), then every shard's records.
    Vcf,
    /// An embedding file (`.npy`/`.safetensors`) and its `.tsv` index: rows concatenated.
    Embeddings,
    /// A directory of `dnalm embed --task`: each split's embedding file concatenated.
    EmbeddingsDir,
    /// A directory of `dnalm label`: BED elements cut at a shard boundary joined again, the
    /// pairs concatenated, task.json counts summed.
    Label,
    /// A directory of `dnalm bench`: the per-task results joined and the report rewritten.
    Bench,
}

/// What a sharded run writes beside an output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ShardManifest {
    /// The shard, `I/N`.
    shard: Shard,
    /// The command line without the shard, outputs and device: equal for every shard of a job.
    job: String,
    /// How the output merges.
    kind: OutputKind,
}

/// Where the manifest of `output` lives.
fn manifest_path(output: &Path, kind: OutputKind) -> PathBuf {
    match kind {
        OutputKind::EmbeddingsDir | OutputKind::Label | OutputKind::Bench => {
            output.join("shard.json")
        }
        _ => {
            let mut name = output.as_os_str().to_owned();
            name.push(".shard.json");
            PathBuf::from(name)
        }
    }
}

/// The job a run belongs to: its command line without `--shard`, the output paths
/// (`output_flags`, each followed by its value) and `--device`, which do not change results.
pub(crate) fn job_of_this_run(output_flags: &[&str]) -> String {
    let mut args = std::env::args().skip(1);
    let mut kept = Vec::new();
    while let Some(a) = args.next() {
        let flag = a.split_once('=').map_or(a.as_str(), |(f, _)| f);
        let dropped = flag == "--shard" || flag == "--device" || output_flags.contains(&flag);
        if dropped {
            if !a.contains('=') {
                args.next();
            }
            continue;
        }
        kept.push(a);
    }
    kept.join(" ")
}

/// After a run writes `output`: a sharded run writes its manifest; a whole run removes one left
/// by an earlier sharded run into the same place (it would make `merge` take this output for
/// a shard).
pub(crate) fn record(
    output: &Path,
    kind: OutputKind,
    shard: Shard,
    output_flags: &[&str],
) -> anyhow::Result<()> {
    if output.as_os_str() == "-" {
        return Ok(());
    }
    let path = manifest_path(output, kind);
    if shard.is_whole() {
        if path.is_file() {
            std::fs::remove_file(&path)
                .with_context(|| format!("removing stale {}", path.display()))?;
        }
        return Ok(());
    }
    let manifest = ShardManifest {
        shard,
        job: job_of_this_run(output_flags),
        kind,
    };
    write_output(&path, &(serde_json::to_string_pretty(&manifest)? + "\n"))
}

/// A sharded run needs a named output (stdout has no place for the manifest).
pub(crate) fn needs_file(output: &Path, shard: Shard, flag: &str) -> anyhow::Result<()> {
    if !shard.is_whole() && output.as_os_str() == "-" {
        bail!("--shard {shard} writes a manifest beside its output: give {flag} FILE, not stdout");
    }
    Ok(())
}

/// Arguments of `dnalm merge`.
#[derive(Args)]
pub struct MergeArgs {
    /// The outputs of every shard of one job (files or directories, any order).
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// The merged output (a file or directory, like the shards').
    #[arg(short, long)]
    output: PathBuf,
}

/// Runs `dnalm merge`.
pub fn merge(args: MergeArgs) -> anyhow::Result<()> {
    let mut parts: Vec<(ShardManifest, PathBuf)> = Vec::new();
    for part in &args.shards {
        let kind_guess = if part.is_dir() {
            OutputKind::Label
        } else {
            OutputKind::Table
        };
        let path = manifest_path(part, kind_guess);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{}: no manifest {} (is it the output of a run with --shard?)",
                part.display(),
                path.display()
            )
        })?;
        let manifest: ShardManifest = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a dnalm shard manifest", path.display()))?;
        parts.push((manifest, part.clone()));
    }
    let (first, first_path) = parts[0].clone();
    let count = first.shard.count();
    for (m, p) in &parts[1..] {
        if m.job != first.job || m.shard.count() != count || m.kind != first.kind {
            bail!(
                "{} is shard {} of another job than {} (shard {}): job '{}' vs '{}'",
                p.display(),
                m.shard,
                first_path.display(),
                first.shard,
                m.job,
                first.job
            );
        }
    }
    parts.sort_by_key(|(m, _)| m.shard.number());
    for w in parts.windows(2) {
        if w[0].0.shard == w[1].0.shard {
            bail!(
                "{} and {} are both shard {}",
                w[0].1.display(),
                w[1].1.display(),
                w[0].0.shard
            );
        }
    }
    let missing: Vec<String> = (1..=count)
        .filter(|n| !parts.iter().any(|(m, _)| m.shard.number() == *n))
        .map(|n| format!("{n}/{count}"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "shard(s) {} of this job are missing (job '{}')",
            missing.join(", "),
            first.job
        );
    }
    let kind = first.kind;
    let paths: Vec<PathBuf> = parts.into_iter().map(|(_, p)| p).collect();
    match kind {
        OutputKind::Table => {
            write_output(&args.output, &concat_text(&paths, |i, _| i == 0)?)?;
        }
        OutputKind::Vcf => {
            write_output(
                &args.output,
                &concat_text(&paths, |_, line| line.starts_with('#'))?,
            )?;
        }
        OutputKind::Embeddings => {
            dnalm_eval::features::store::concat_embeddings(&paths, &args.output)?;
        }
        OutputKind::EmbeddingsDir => merge_embedding_dirs(&paths, &args.output)?,
        OutputKind::Label => merge_label_dirs(&paths, &args.output)?,
        OutputKind::Bench => merge_bench_dirs(&paths, &args.output)?,
    }
    eprintln!(
        "merged {count} shard(s) into {} ({})",
        args.output.display(),
        serde_json::to_value(kind)?.as_str().unwrap_or_default()
    );
    Ok(())
}

/// The shards' text files joined: the header lines (`is_header(line_index, line)`, a prefix of
/// each file) of the first, which every other shard must repeat, then every shard's other lines.
fn concat_text(
    paths: &[PathBuf],
    is_header: impl Fn(usize, &str) -> bool,
) -> anyhow::Result<String> {
    let mut header: Option<(String, &Path)> = None;
    let mut body = String::new();
    for path in paths {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut this_header = String::new();
        let mut lines = text.split_inclusive('\n').enumerate().peekable();
        while let Some((_, line)) = lines.next_if(|(i, l)| is_header(*i, l)) {
            this_header.push_str(line);
        }
        match &header {
            None => header = Some((this_header, path)),
            Some((h, from)) if *h != this_header => bail!(
                "{}: its header differs from {}'s: not a shard of the same job",
                path.display(),
                from.display()
            ),
            Some(_) => {}
        }
        for (_, line) in lines {
            body.push_str(line);
        }
    }
    let mut text = header.map(|(h, _)| h).unwrap_or_default();
    text.push_str(&body);
    Ok(text)
}

fn merge_embedding_dirs(paths: &[PathBuf], output: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    for split in dnalm_seq::Split::ALL {
        for ext in ["npy", "safetensors"] {
            let name = format!("{}.{ext}", split.as_str());
            // A shard with no rows of a split has no file for it.
            let parts: Vec<PathBuf> = paths
                .iter()
                .map(|p| p.join(&name))
                .filter(|p| p.is_file())
                .collect();
            if !parts.is_empty() {
                dnalm_eval::features::store::concat_embeddings(&parts, &output.join(&name))?;
            }
        }
    }
    Ok(())
}

fn merge_bench_dirs(paths: &[PathBuf], output: &Path) -> anyhow::Result<()> {
    let parts = paths
        .iter()
        .map(|p| {
            let file = p.join("results.json");
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            serde_json::from_str::<dnalm_eval::bench::BenchResults>(&text)
                .with_context(|| format!("{}: not the results of dnalm bench", file.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let merged = dnalm_eval::bench::BenchResults::merge_shards(parts)?;
    dnalm_eval::report::write_report(output, &merged)?;
    Ok(())
}

fn merge_label_dirs(paths: &[PathBuf], output: &Path) -> anyhow::Result<()> {
    let beds: Vec<(PathBuf, String)> = paths
        .iter()
        .map(|p| {
            let bed = p.join("predicted.bed");
            let text = std::fs::read_to_string(&bed)
                .with_context(|| format!("reading {}", bed.display()))?;
            Ok((bed, text))
        })
        .collect::<anyhow::Result<_>>()?;
    let bed = dnalm_eval::label::merge_bed_shards(&beds)?;
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    write_output(&output.join("predicted.bed"), &bed)?;
    let name = crate::label::task_name(output);
    dnalm_seq::task_writer::merge_shards(paths, "pairs.csv", output, &name)?;
    Ok(())
}
