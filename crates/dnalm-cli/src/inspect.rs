//! `dnalm inspect`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use dnalm_seq::{
    interval::{read_intervals, IntervalFormat},
    stats::{IntervalStats, LengthStats, SequenceStats, TaskStats},
    task::{read_table, table_format, TableFormat},
    Task, TaskSpec,
};
use serde::Serialize;

/// Arguments of `dnalm inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// Files to summarise: FASTA/FASTQ (plain, .gz, bgzip; `-` for standard input), BED, GFF3,
    /// task tables (.csv/.tsv), task directories (with task.json) or corpus packs (.dnapack).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Report {
    Sequences {
        file: String,
        stats: SequenceStats,
    },
    Intervals {
        file: String,
        format: String,
        stats: IntervalStats,
    },
    Task {
        file: String,
        task: Option<TaskSpec>,
        stats: TaskStats,
    },
    Corpus {
        file: String,
        records: usize,
        bases: u64,
        n_fraction: f64,
        renamed_records: usize,
        genomes: Vec<CorpusGenomeSummary>,
    },
}

/// One genome of a corpus pack, as `inspect` reports it.
#[derive(Serialize)]
struct CorpusGenomeSummary {
    name: String,
    path: String,
    records: usize,
    bases: u64,
    weight: Option<f64>,
    split: Option<String>,
}

fn corpus_report(path: &Path, file: String) -> anyhow::Result<Report> {
    let corpus = dnalm_seq::PackedCorpus::open(path)?;
    let mut genomes: Vec<CorpusGenomeSummary> = corpus
        .genomes()
        .iter()
        .map(|g| CorpusGenomeSummary {
            name: g.name.clone(),
            path: g.path.display().to_string(),
            records: 0,
            bases: 0,
            weight: g.weight,
            split: g.split.map(|s| s.as_str().to_string()),
        })
        .collect();
    let mut n = 0u64;
    for r in corpus.records() {
        genomes[r.genome].records += 1;
        genomes[r.genome].bases += r.length as u64;
        n += r.n_bases() as u64;
    }
    let bases: u64 = genomes.iter().map(|g| g.bases).sum();
    Ok(Report::Corpus {
        file,
        records: corpus.records().len(),
        bases,
        n_fraction: n as f64 / bases.max(1) as f64,
        renamed_records: corpus.renamed(),
        genomes,
    })
}

/// What kind of file a path is, by name.
enum FileKind {
    Corpus,
    Sequences,
    Intervals,
    Table,
    TaskDir,
}

fn kind_of(path: &Path) -> anyhow::Result<FileKind> {
    if path.as_os_str() == "-" {
        return Ok(FileKind::Sequences); // standard input: FASTA/FASTQ
    }
    if path.is_dir() {
        return Ok(FileKind::TaskDir);
    }
    if dnalm_seq::corpus::is_pack(path) {
        return Ok(FileKind::Corpus);
    }
    if IntervalFormat::from_path(path).is_some() {
        return Ok(FileKind::Intervals);
    }
    match table_format(path) {
        Some(TableFormat::Csv | TableFormat::Tsv) => return Ok(FileKind::Table),
        Some(TableFormat::Fasta) => return Ok(FileKind::Sequences),
        None => {}
    }
    let name = path.to_string_lossy().to_ascii_lowercase();
    let name = name.trim_end_matches(".gz").trim_end_matches(".bgz");
    if [".fq", ".fastq", ".fa", ".fasta", ".fna", ".ffn", ".faa"]
        .iter()
        .any(|e| name.ends_with(e))
    {
        return Ok(FileKind::Sequences);
    }
    bail!(
        "{}: unknown file type (expected FASTA/FASTQ, BED, GFF3, .csv/.tsv task table, a task directory or a .dnapack corpus)",
        path.display()
    )
}

/// Runs `dnalm inspect`.
pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    for path in &args.files {
        let file = path.display().to_string();
        let report = match kind_of(path)? {
            FileKind::Corpus => corpus_report(path, file)?,
            FileKind::Sequences => Report::Sequences {
                stats: SequenceStats::from_path(path)?,
                file,
            },
            FileKind::Intervals => {
                let format = match IntervalFormat::from_path(path) {
                    Some(IntervalFormat::Gff3) => "GFF3",
                    _ => "BED",
                };
                let intervals = read_intervals(path)?;
                Report::Intervals {
                    stats: IntervalStats::of(&intervals),
                    format: format.into(),
                    file,
                }
            }
            FileKind::Table => {
                let spec_path = path.parent().unwrap_or(Path::new(".")).join("task.json");
                let spec = if spec_path.is_file() {
                    Some(TaskSpec::from_path(&spec_path)?)
                } else {
                    None
                };
                // A table named train/valid/test belongs to that split.
                let split = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.split('.').next())
                    .and_then(dnalm_seq::Split::parse);
                let examples = read_table(path, spec.as_ref(), split)?;
                Report::Task {
                    stats: TaskStats::of(&examples),
                    task: spec,
                    file,
                }
            }
            FileKind::TaskDir => {
                let task =
                    Task::load(path).with_context(|| format!("loading task {}", path.display()))?;
                Report::Task {
                    stats: TaskStats::of(&task.examples),
                    task: Some(task.spec),
                    file,
                }
            }
        };
        reports.push(report);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            print_report(r);
        }
    }
    Ok(())
}

fn print_lengths(what: &str, l: &LengthStats) {
    println!("  {:<22} {}", what, l.count);
    println!("  {:<22} {}", "total length", l.total);
    println!(
        "  {:<22} min {} / median {} / mean {:.1} / max {} / N50 {}",
        "lengths", l.min, l.median, l.mean, l.max, l.n50
    );
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn print_report(report: &Report) {
    match report {
        Report::Corpus {
            file,
            records,
            bases,
            n_fraction,
            renamed_records,
            genomes,
        } => {
            println!("{file}  (corpus pack: {} genomes)", genomes.len());
            println!("  {:<22} {records}", "records");
            println!("  {:<22} {bases}", "total length");
            println!("  {:<22} {}", "N", pct(*n_fraction));
            println!("  {:<22} {renamed_records}", "renamed genome:record");
            println!(
                "  {:<22} {:>8} {:>14} {:>8} {:>6}  file",
                "genome", "records", "bases", "weight", "split"
            );
            for g in genomes {
                println!(
                    "  {:<22} {:>8} {:>14} {:>8} {:>6}  {}",
                    g.name,
                    g.records,
                    g.bases,
                    g.weight.map_or("-".into(), |w| format!("{w}")),
                    g.split.as_deref().unwrap_or("-"),
                    g.path
                );
            }
        }
        Report::Sequences { file, stats } => {
            println!("{file}  ({})", if stats.fastq { "FASTQ" } else { "FASTA" });
            print_lengths("records", &stats.lengths);
            println!("  {:<22} {}", "GC", pct(stats.gc_fraction));
            println!("  {:<22} {}", "N", pct(stats.n_fraction));
            println!(
                "  {:<22} {}",
                "soft-masked",
                pct(stats.soft_masked_fraction)
            );
        }
        Report::Intervals {
            file,
            format,
            stats,
        } => {
            println!("{file}  ({format})");
            print_lengths("intervals", &stats.lengths);
            println!(
                "  {:<22} + {} / - {} / . {}",
                "strands", stats.strands[0], stats.strands[1], stats.strands[2]
            );
            let types: Vec<String> = stats
                .per_type
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            println!("  {:<22} {}", "types", types.join(", "));
            let seqs: Vec<String> = stats
                .per_sequence
                .iter()
                .take(10)
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            println!(
                "  {:<22} {}{}",
                "sequences",
                seqs.join(", "),
                if stats.per_sequence.len() > 10 {
                    ", ..."
                } else {
                    ""
                }
            );
        }
        Report::Task { file, task, stats } => {
            match task {
                Some(t) => println!("{file}  (task '{}')", t.name),
                None => println!("{file}  (task table, no task.json)"),
            }
            print_lengths("sequences", &stats.lengths);
            println!("  {:<22} {}", "GC", pct(stats.gc_fraction));
            println!("  {:<22} {}", "N", pct(stats.n_fraction));
            let splits: Vec<String> = stats
                .per_split
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            println!("  {:<22} {}", "splits", splits.join(", "));
            if !stats.per_label.is_empty() {
                let names = task.as_ref().and_then(|t| match &t.kind {
                    dnalm_seq::task::TaskKind::Classification { label_names, .. } => {
                        label_names.clone()
                    }
                    dnalm_seq::task::TaskKind::MultiLabel { label_names }
                    | dnalm_seq::task::TaskKind::PerBase { label_names } => {
                        Some(label_names.clone())
                    }
                    dnalm_seq::task::TaskKind::Regression => None,
                });
                let labels: Vec<String> = stats
                    .per_label
                    .iter()
                    .map(|(k, v)| {
                        let name = names
                            .as_ref()
                            .and_then(|n| k.parse::<usize>().ok().and_then(|i| n.get(i)))
                            .map(|n| format!(" ({n})"))
                            .unwrap_or_default();
                        format!("{k}{name} {v}")
                    })
                    .collect();
                let heading = match task.as_ref().map(|t| &t.kind) {
                    Some(dnalm_seq::task::TaskKind::MultiLabel { .. }) => "rows per label",
                    Some(dnalm_seq::task::TaskKind::PerBase { .. }) => "bases per class",
                    _ => "labels",
                };
                println!("  {heading:<22} {}", labels.join(", "));
            }
            if let Some(mean) = stats.target_mean {
                println!("  {:<22} {mean:.4}", "target mean");
            }
        }
    }
}
