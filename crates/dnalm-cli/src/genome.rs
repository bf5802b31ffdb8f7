//! `dnalm fetch`, `dnalm windows` and `dnalm sample`: genome-level data preparation.

use std::{fmt::Write as _, path::PathBuf, str::FromStr};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use dnalm_seq::{
    read_intervals,
    sampler::{ClassKey, ClassWeights, RarityBalancedSampler},
    window::{
        split_genome, whole_records, GenomeSplit, RandomWindows, Segment, SplitConfig, SplitUnit,
        WindowSpec,
    },
    FastxReader, GenomicRegion, IndexedFasta, SequenceRecord, Split,
};

use crate::write_output;

/// Arguments of `dnalm fetch`.
#[derive(Args)]
pub struct FetchArgs {
    /// FASTA file (plain or bgzip); `FILE.fai` (and `.gzi`) are built if missing.
    fasta: PathBuf,
    /// Regions as `name`, `name:start` or `name:start-end` (1-based, inclusive).
    #[arg(required = true)]
    regions: Vec<String>,
    /// Bases per output line.
    #[arg(long, default_value_t = 60)]
    line_width: usize,
    /// Print the reverse complement of each region.
    #[arg(long)]
    reverse_complement: bool,
}

/// Runs `dnalm fetch`: prints each region as FASTA, soft-masked bases in lowercase.
pub fn fetch(args: FetchArgs) -> anyhow::Result<()> {
    if args.line_width == 0 {
        bail!("--line-width must be positive");
    }
    let mut fasta = IndexedFasta::open(&args.fasta)?;
    let mut out = String::new();
    for region in &args.regions {
        let region: GenomicRegion = region.parse()?;
        let record = fasta.fetch(&region)?;
        let mut bases = record.sequence.clone();
        for &(s, e) in record.soft_mask.runs() {
            bases[s..e].make_ascii_lowercase();
        }
        let mut name = record.name.clone();
        if args.reverse_complement {
            // Complement keeps case, so soft-masking survives the reversal.
            bases = bases
                .iter()
                .rev()
                .map(|&b| {
                    let c = dnalm_seq::alphabet::complement(b.to_ascii_uppercase());
                    if b.is_ascii_lowercase() {
                        c.to_ascii_lowercase()
                    } else {
                        c
                    }
                })
                .collect();
            name.push_str(" reverse-complement");
        }
        writeln!(out, ">{name}")?;
        for line in bases.chunks(args.line_width) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
    }
    write_output(std::path::Path::new("-"), &out)
}

/// How to split a genome, as written on the command line.
#[derive(Clone, Copy, Debug)]
pub enum SplitArg {
    /// No split: every window is in `all`.
    None,
    /// Whole records.
    Record,
    /// Blocks of N bases.
    Block(usize),
}

impl ClassKeyArg {
    /// The library's class key.
    fn key(self) -> ClassKey {
        match self {
            ClassKeyArg::Type => ClassKey::FeatureType,
            ClassKeyArg::Name => ClassKey::Name,
            ClassKeyArg::NamePrefix => ClassKey::NamePrefix,
        }
    }
}

impl SplitArg {
    /// The unit a split assigns, or `None` for no split.
    fn unit(self) -> Option<SplitUnit> {
        match self {
            SplitArg::None => None,
            SplitArg::Record => Some(SplitUnit::Record),
            SplitArg::Block(n) => Some(SplitUnit::Block(n)),
        }
    }
}

impl FromStr for SplitArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(SplitArg::None),
            "record" | "chromosome" => Ok(SplitArg::Record),
            _ => match s.strip_prefix("block:") {
                Some(n) => n
                    .replace('_', "")
                    .parse()
                    .map(SplitArg::Block)
                    .map_err(|_| format!("block length '{n}' is not a number")),
                None => Err(format!("'{s}': expected none, record or block:N")),
            },
        }
    }
}

fn parse_fractions(s: &str) -> Result<[f64; 3], String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<f64>()
                .map_err(|_| format!("'{x}' is not a number"))
        })
        .collect::<Result<_, _>>()?;
    <[f64; 3]>::try_from(v).map_err(|_| format!("'{s}': expected three fractions train,valid,test"))
}

/// Genome split options shared by `windows` and `sample`.
#[derive(Args)]
pub struct SplitOptions {
    /// Split unit: `none`, `record` (chromosomes) or `block:N` (contiguous blocks of N bases).
    #[arg(long, default_value = "none")]
    split: SplitArg,
    /// Fractions of bases for train,valid,test.
    #[arg(long, default_value = "0.8,0.1,0.1", value_parser = parse_fractions)]
    fractions: [f64; 3],
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// The genome split a `make-task` command draws its windows from.
#[derive(Args)]
pub struct TaskSplitOptions {
    /// Genome split unit (`record` or `block:N`); splits never share bases.
    #[arg(long, default_value = "block:100000")]
    split: SplitArg,
    /// Fractions of bases for train,valid,test.
    #[arg(long, default_value = "0.7,0.1,0.2", value_parser = parse_fractions)]
    fractions: [f64; 3],
    /// Random seed (the genome split and every draw).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl TaskSplitOptions {
    /// The split of a genome of `lengths`, and its unit (`none` is refused: windows of
    /// different splits could overlap).
    fn split(&self, lengths: &[usize]) -> anyhow::Result<(GenomeSplit, SplitUnit)> {
        let Some(unit) = self.split.unit() else {
            bail!(
                "--split none would let windows of different splits overlap; use record or block:N"
            )
        };
        let config = SplitConfig {
            unit,
            fractions: self.fractions,
            seed: self.seed,
        };
        Ok((split_genome(lengths, &config)?, unit))
    }
}

impl SplitOptions {
    fn split(&self, lengths: &[usize]) -> anyhow::Result<Option<GenomeSplit>> {
        let Some(unit) = self.split.unit() else {
            return Ok(None);
        };
        Ok(Some(split_genome(
            lengths,
            &SplitConfig {
                unit,
                fractions: self.fractions,
                seed: self.seed,
            },
        )?))
    }
}

/// Names and lengths of a FASTA's records, streamed.
fn genome_index(path: &std::path::Path) -> anyhow::Result<(Vec<String>, Vec<usize>)> {
    let mut reader = FastxReader::from_path(path)?;
    let mut record = SequenceRecord::default();
    let (mut names, mut lengths) = (Vec::new(), Vec::new());
    while reader.read_record(&mut record)? {
        names.push(record.name.clone());
        lengths.push(record.len());
    }
    Ok((names, lengths))
}

/// Arguments of `dnalm windows`.
#[derive(Args)]
pub struct WindowsArgs {
    /// Genome FASTA.
    fasta: PathBuf,
    /// Window length in bases.
    #[arg(long)]
    length: usize,
    /// Distance between window starts (default: the length).
    #[arg(long, conflicts_with = "random")]
    stride: Option<usize>,
    /// Draw this many windows uniformly at random (per split) instead of tiling.
    #[arg(long)]
    random: Option<usize>,
    #[command(flatten)]
    split: SplitOptions,
    /// Output BED (name column = split); `-` for standard output.
    #[arg(short, long, default_value = "-")]
    out: PathBuf,
}

/// Runs `dnalm windows`.
pub fn windows(args: WindowsArgs) -> anyhow::Result<()> {
    let (names, lengths) = genome_index(&args.fasta)?;
    let spec = WindowSpec::new(args.length, args.stride.unwrap_or(args.length))?;
    let groups: Vec<(&str, Vec<Segment>)> = match args.split.split(&lengths)? {
        None => vec![("all", whole_records(&lengths))],
        Some(split) => Split::ALL
            .iter()
            .map(|s| (s.as_str(), split.get(*s).to_vec()))
            .collect(),
    };
    let mut bed = String::new();
    for (name, segments) in &groups {
        let windows: Vec<Segment> = match args.random {
            None => spec.tile(segments).collect(),
            Some(n) => RandomWindows::new(segments, args.length, args.split.seed)?
                .take(n)
                .collect(),
        };
        let count = windows.len();
        for w in windows {
            writeln!(bed, "{}\t{}\t{}\t{name}", names[w.record], w.start, w.end)?;
        }
        let bases: usize = segments.iter().map(Segment::len).sum();
        eprintln!(
            "{name}: {count} windows from {bases} bases in {} segment(s)",
            segments.len()
        );
    }
    write_output(&args.out, &bed)
}

/// Which annotation field names an element's class.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ClassKeyArg {
    /// GFF type column (BED: the name).
    Type,
    /// BED name / GFF ID.
    Name,
    /// Name up to the first `_`, `.`, `:` or `|`.
    NamePrefix,
}

/// Arguments of `dnalm sample`.
#[derive(Args)]
pub struct SampleArgs {
    /// Genome FASTA.
    fasta: PathBuf,
    /// Annotations (BED or GFF3, optionally gzip).
    #[arg(short, long)]
    annotations: PathBuf,
    /// Window length in bases.
    #[arg(long)]
    length: usize,
    /// Number of windows to draw.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Target class weights: `uniform` or `class:w,class:w,...` (`background` = unannotated bases).
    #[arg(long, default_value = "uniform")]
    weights: String,
    /// Which annotation field is the class.
    #[arg(long, value_enum, default_value = "type")]
    class_key: ClassKeyArg,
    #[command(flatten)]
    split: SplitOptions,
    /// With --split: draw windows from this split only.
    #[arg(long, default_value = "train")]
    from: String,
    /// Output BED of the windows (name column = class); `-` for standard output.
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// Print the mixture report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `dnalm sample`.
pub fn sample(args: SampleArgs) -> anyhow::Result<()> {
    let (names, lengths) = genome_index(&args.fasta)?;
    let annotations = read_intervals(&args.annotations)?;
    let segments = match args.split.split(&lengths)? {
        None => whole_records(&lengths),
        Some(split) => {
            let from = Split::parse(&args.from)
                .with_context(|| format!("--from '{}' is not train, valid or test", args.from))?;
            split.get(from).to_vec()
        }
    };
    let weights: ClassWeights = args.weights.parse()?;
    let key = args.class_key.key();
    let mut sampler = RarityBalancedSampler::new(
        &names,
        &segments,
        &annotations,
        key,
        &weights,
        args.length,
        args.split.seed,
    )?;
    let n_classes = sampler.classes().len();
    if n_classes > 50 {
        eprintln!(
            "note: {n_classes} classes (one per distinct {}); --class-key name-prefix groups names like cds_1_2 into 'cds'",
            if matches!(args.class_key, ClassKeyArg::Type) { "type/name" } else { "name" }
        );
    }
    let (windows, report) = sampler.sample_n(args.count);
    if let Some(out) = &args.out {
        let classes = sampler.classes();
        let mut bed = String::new();
        for w in &windows {
            let s = w.window;
            writeln!(
                bed,
                "{}\t{}\t{}\t{}",
                names[s.record], s.start, s.end, classes[w.class]
            )?;
        }
        write_output(out, &bed)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{} windows of {} bp", report.windows, report.window_length);
        println!(
            "{:<24} {:>8} {:>9} {:>10} {:>13} {:>14}",
            "class", "target", "windows", "drawn", "base share", "genome share"
        );
        for c in &report.classes {
            println!(
                "{:<24} {:>7.1}% {:>9} {:>9.1}% {:>12.1}% {:>13.1}%",
                c.class,
                100.0 * c.target,
                c.windows,
                100.0 * c.window_fraction,
                100.0 * c.base_fraction,
                100.0 * c.genome_fraction
            );
        }
        println!("(base share: bases of the class in the sampled windows; genome share: what uniform sampling gives)");
    }
    Ok(())
}

/// Arguments of `dnalm make-task orientation`.
#[derive(Args)]
pub struct OrientationTaskArgs {
    /// Background genome (FASTA, plain or gzip).
    genome: PathBuf,
    /// JASPAR-format motif file.
    #[arg(long)]
    motifs: PathBuf,
    /// Motif id or name to implant (e.g. `MA0139.1` or `CTCF`).
    #[arg(long, default_value = "CTCF")]
    motif: String,
    /// Window length in bases.
    #[arg(long, default_value_t = 1024)]
    length: usize,
    /// Windows per split, as train,valid,test.
    #[arg(long, default_value = "800,200,200", value_parser = parse_counts)]
    rows: [usize; 3],
    /// Each site lands within this many bases of its end of the window (after a 5% margin).
    #[arg(long, default_value_t = 64)]
    jitter: usize,
    #[command(flatten)]
    split: TaskSplitOptions,
    /// Output task directory (train.csv, valid.csv, test.csv, task.json).
    #[arg(short, long)]
    out: PathBuf,
}

fn parse_counts(s: &str) -> Result<[usize; 3], String> {
    let v: Vec<usize> = s
        .split(',')
        .map(|x| {
            x.trim()
                .replace('_', "")
                .parse::<usize>()
                .map_err(|_| format!("'{x}' is not a count"))
        })
        .collect::<Result<_, _>>()?;
    <[usize; 3]>::try_from(v).map_err(|_| format!("'{s}': expected three counts train,valid,test"))
}

/// Runs `dnalm make-task orientation`: the long-range motif-orientation task (see
/// `dnalm_seq::motif::orientation_task`), written as a task directory.
pub fn make_orientation_task(args: OrientationTaskArgs) -> anyhow::Result<()> {
    use dnalm_seq::{
        motif::{orientation_task, read_jaspar, OrientationTaskSpec},
        task_writer::{NewTask, TaskFiles, TaskRow},
    };
    use rand::SeedableRng;

    let motifs = read_jaspar(&args.motifs)?;
    let pfm = motifs
        .iter()
        .find(|m| m.id == args.motif || m.name.eq_ignore_ascii_case(&args.motif))
        .with_context(|| {
            format!(
                "{}: no motif with id or name '{}' ({} motifs, e.g. {})",
                args.motifs.display(),
                args.motif,
                motifs.len(),
                motifs
                    .iter()
                    .take(3)
                    .map(|m| format!("{} {}", m.id, m.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let genome = dnalm_seq::Genome::read(&args.genome)?;
    let (split, unit) = args.split.split(&genome.lengths())?;
    let spec = OrientationTaskSpec {
        length: args.length,
        rows: args.rows,
        jitter: args.jitter,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.split.seed);
    let splits = orientation_task(&genome, &split, pfm, &spec, &mut rng)?;
    let rows: Vec<TaskRow> = Split::ALL
        .iter()
        .zip(&splits)
        .flat_map(|(&split, rows)| {
            rows.iter().map(move |r| TaskRow {
                sequence: r.sequence.clone(),
                label: r.label as usize,
                id: format!(
                    "{}:{}-{}:{:?}",
                    r.origin.0,
                    r.origin.1 + 1,
                    r.origin.1 + args.length,
                    r.arrangement
                ),
                score: None,
                split,
            })
        })
        .collect();
    let name = crate::label::task_name(&args.out);
    let task = NewTask {
        name,
        label_names: vec!["not_convergent".into(), "convergent".into()],
        seq_len: Some(args.length),
        description: format!(
            "Long-range: {} bp windows of real background from {} with two {} ({}) sites, one within {} bp of each end. 1 = convergent (--> <--); 0 = divergent (<-- -->) or tandem. Both classes hold the same motif words, so only a context spanning both sites can tell them apart. Splits are disjoint genome {:?} units ({:?}).",
            args.length, args.genome.display(), pfm.name, pfm.id, args.length / 20 + args.jitter + pfm.len(), unit, args.split.fractions
        ),
        source: Some(format!("dnalm make-task orientation {} --motifs {} --motif {} --length {} --rows {} --jitter {} --seed {}", args.genome.display(), args.motifs.display(), args.motif, args.length, args.rows.map(|r| r.to_string()).join(","), args.jitter, args.split.seed)),
    };
    task.write(&args.out, &rows, &TaskFiles::PerSplit)?;
    eprintln!(
        "{}: {} / {} / {} windows of {} bp with two {} sites ({} bp); half convergent",
        args.out.display(),
        splits[0].len(),
        splits[1].len(),
        splits[2].len(),
        args.length,
        pfm.name,
        pfm.len()
    );
    Ok(())
}

/// `dnalm make-task` subcommands.
#[derive(clap::Subcommand)]
pub enum MakeTaskCommand {
    /// A long-range task: two motif sites near opposite ends of real background; label 1 when
    /// they are convergent. Needs a context spanning both sites.
    Orientation(OrientationTaskArgs),
    /// A multi-label task: genome windows labelled with every annotated feature class they hold
    /// (per strand with --stranded; with --ends, the windows holding a feature's 5'/3' end).
    MultiLabel(MultiLabelTaskArgs),
    /// A per-base task (segmentation): genome windows with every base's feature class, the class
    /// listed first winning where features overlap (`--classes exon,intron=gene`: gene bases
    /// outside exons are `intron`); uncovered bases are the background class.
    Segmentation(SegmentationTaskArgs),
}

/// Runs `dnalm make-task`.
pub fn make_task(cmd: MakeTaskCommand) -> anyhow::Result<()> {
    match cmd {
        MakeTaskCommand::Orientation(args) => make_orientation_task(args),
        MakeTaskCommand::MultiLabel(args) => make_multi_label_task(args),
        MakeTaskCommand::Segmentation(args) => make_segmentation_task(args),
    }
}

/// Arguments of `dnalm make-task multi-label`.
#[derive(Args)]
pub struct MultiLabelTaskArgs {
    /// Genome (FASTA, plain or gzip).
    genome: PathBuf,
    /// Annotations (BED or GFF3, optionally gzip).
    #[arg(short, long)]
    annotations: PathBuf,
    /// Window length in bases.
    #[arg(long, default_value_t = 200)]
    length: usize,
    /// Windows per split, as train,valid,test.
    #[arg(long, default_value = "3000,500,1000", value_parser = parse_counts)]
    rows: [usize; 3],
    /// Feature classes to label, comma-separated (default: every class in the annotations).
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// Which annotation field is a feature's class.
    #[arg(long, value_enum, default_value = "type")]
    class_key: ClassKeyArg,
    /// One label per strand: `CLASS(+)`, `CLASS(-)`.
    #[arg(long)]
    stranded: bool,
    /// Also label windows holding a feature's 5' end (`CLASS_5p`) or 3' end (`CLASS_3p`).
    #[arg(long)]
    ends: bool,
    /// Bases of a window a feature must cover to label it (capped at the feature's length;
    /// default: half the window).
    #[arg(long)]
    min_overlap: Option<usize>,
    #[command(flatten)]
    split: TaskSplitOptions,
    /// Output task directory (train.csv, valid.csv, test.csv, task.json).
    #[arg(short, long)]
    out: PathBuf,
}

/// Runs `dnalm make-task multi-label` (see `dnalm_seq::feature_task`).
pub fn make_multi_label_task(args: MultiLabelTaskArgs) -> anyhow::Result<()> {
    use dnalm_seq::{
        feature_task::{feature_task, FeatureTaskSpec},
        task_writer::{LabelSetRow, NewTask, TaskFiles},
    };
    use rand::SeedableRng;

    let genome = dnalm_seq::Genome::read(&args.genome)?;
    let annotations = read_intervals(&args.annotations)?;
    let (split, unit) = args.split.split(&genome.lengths())?;
    let spec = FeatureTaskSpec {
        length: args.length,
        rows: args.rows,
        classes: args.classes.clone(),
        key: args.class_key.key(),
        stranded: args.stranded,
        ends: args.ends,
        min_overlap: args.min_overlap.unwrap_or(args.length / 2),
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.split.seed);
    let task = feature_task(&genome, &split, annotations, &spec, &mut rng)
        .with_context(|| format!("{}", args.annotations.display()))?;
    let names = genome.names();
    let rows: Vec<LabelSetRow> = Split::ALL
        .iter()
        .zip(&task.rows)
        .flat_map(|(&split, rows)| {
            let names = &names;
            rows.iter().map(move |w| LabelSetRow {
                sequence: w.sequence.clone(),
                labels: w.labels.clone(),
                id: format!(
                    "{}:{}-{}",
                    names[w.record],
                    w.start + 1,
                    w.start + args.length
                ),
                split,
            })
        })
        .collect();
    let name = crate::label::task_name(&args.out);
    let new = NewTask {
        name,
        label_names: task.label_names.clone(),
        seq_len: Some(args.length),
        description: format!(
            "Multi-label: {} bp windows of {} labelled with the {} feature classes of {} they hold (a class when a feature covers at least {} bases of the window{}{}). Splits are disjoint genome {:?} units ({:?}).",
            args.length,
            args.genome.display(),
            task.label_names.len(),
            args.annotations.display(),
            spec.min_overlap,
            if args.stranded { ", per strand" } else { "" },
            if args.ends { "; _5p/_3p: the window holds a feature's first/last base on its strand" } else { "" },
            unit,
            args.split.fractions
        ),
        source: Some(format!(
            "dnalm make-task multi-label {} --annotations {} --length {} --rows {}{}{}{} --min-overlap {} --seed {}",
            args.genome.display(),
            args.annotations.display(),
            args.length,
            args.rows.map(|r| r.to_string()).join(","),
            if args.classes.is_empty() { String::new() } else { format!(" --classes {}", args.classes.join(",")) },
            if args.stranded { " --stranded" } else { "" },
            if args.ends { " --ends" } else { "" },
            spec.min_overlap,
            args.split.seed
        )),
    };
    new.write_multi_label(&args.out, &rows, &TaskFiles::PerSplit)?;
    let rows = task.rows.each_ref().map(Vec::len);
    let counts: Vec<usize> = (0..task.label_names.len())
        .map(|k| {
            task.rows
                .iter()
                .flatten()
                .filter(|w| w.labels.contains(&k))
                .count()
        })
        .collect();
    let windows: usize = rows.iter().sum();
    print_made(
        &args.out,
        rows,
        args.length,
        &task.label_names,
        &counts,
        windows,
        "windows",
    );
    Ok(())
}

/// Arguments of `dnalm make-task segmentation`.
#[derive(Args)]
pub struct SegmentationTaskArgs {
    /// Genome (FASTA, plain or gzip).
    genome: PathBuf,
    /// Annotations (BED or GFF3, optionally gzip); or give them with --annotations.
    annotations: Option<PathBuf>,
    /// Annotations (BED or GFF3, optionally gzip), as `make-task multi-label` takes them.
    #[arg(short = 'a', long = "annotations", conflicts_with = "annotations")]
    annotations_flag: Option<PathBuf>,
    /// Window length in bases.
    #[arg(long, default_value_t = 500)]
    length: usize,
    /// Windows per split, as train,valid,test.
    #[arg(long, default_value = "1000,200,400", value_parser = parse_counts)]
    rows: [usize; 3],
    /// Feature classes in precedence order (the first listed wins where features overlap),
    /// comma-separated; `NAME=TYPE` names the class of features of TYPE (`intron=gene` after
    /// `exon`: gene bases outside exons). Default: every class in the annotations, sorted.
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// Which annotation field is a feature's class.
    #[arg(long, value_enum, default_value = "type")]
    class_key: ClassKeyArg,
    /// One class per strand: `CLASS(+)`, `CLASS(-)` (a feature without a strand is `(+)`).
    #[arg(long)]
    stranded: bool,
    /// The class of bases no feature covers.
    #[arg(long, default_value = "other")]
    background: String,
    #[command(flatten)]
    split: TaskSplitOptions,
    /// Output task directory (train.csv, valid.csv, test.csv, task.json).
    #[arg(short, long)]
    out: PathBuf,
}

/// Runs `dnalm make-task segmentation` (see `dnalm_seq::feature_task::segmentation_task`).
pub fn make_segmentation_task(args: SegmentationTaskArgs) -> anyhow::Result<()> {
    use dnalm_seq::{
        feature_task::{segmentation_task, SegmentationSpec},
        task_writer::{BaseClassRow, NewTask, TaskFiles},
    };
    use rand::SeedableRng;

    let Some(annotations_path) = args.annotations.clone().or(args.annotations_flag.clone()) else {
        bail!("give the annotations (BED or GFF3) after the genome, or with --annotations");
    };
    // `NAME=TYPE`: features of TYPE, reported as NAME.
    let (names, types): (Vec<String>, Vec<String>) = args
        .classes
        .iter()
        .map(|c| match c.split_once('=') {
            Some((name, kind)) => (name.trim().to_string(), kind.trim().to_string()),
            None => (c.trim().to_string(), c.trim().to_string()),
        })
        .unzip();
    if let Some(empty) = args
        .classes
        .iter()
        .zip(names.iter().zip(&types))
        .find(|(_, (n, t))| n.is_empty() || t.is_empty())
    {
        bail!("--classes: '{}' is not CLASS or NAME=TYPE", empty.0);
    }
    let genome = dnalm_seq::Genome::read(&args.genome)?;
    let annotations = read_intervals(&annotations_path)?;
    let (split, unit) = args.split.split(&genome.lengths())?;
    let spec = SegmentationSpec {
        length: args.length,
        rows: args.rows,
        classes: types.clone(),
        key: args.class_key.key(),
        stranded: args.stranded,
        background: args.background.clone(),
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.split.seed);
    let mut task = segmentation_task(&genome, &split, annotations, &spec, &mut rng)
        .with_context(|| format!("{}", annotations_path.display()))?;
    for (name, kind) in names.iter().zip(&types).filter(|(n, t)| n != t) {
        for class in task.class_names.iter_mut().skip(1) {
            if let Some(rest) = class.strip_prefix(kind.as_str()) {
                if rest.is_empty() || rest == "(+)" || rest == "(-)" {
                    *class = format!("{name}{rest}");
                }
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = task.class_names.iter().find(|c| !seen.insert(c.as_str())) {
        bail!("--classes: class name '{twice}' is used twice");
    }
    let genome_names = genome.names();
    let rows: Vec<BaseClassRow> = Split::ALL
        .iter()
        .zip(&task.rows)
        .flat_map(|(&split, rows)| {
            let genome_names = &genome_names;
            rows.iter().map(move |w| BaseClassRow {
                sequence: w.sequence.clone(),
                classes: w.classes.clone(),
                id: format!(
                    "{}:{}-{}",
                    genome_names[w.record],
                    w.start + 1,
                    w.start + args.length
                ),
                split,
            })
        })
        .collect();
    let new = NewTask {
        name: crate::label::task_name(&args.out),
        label_names: task.class_names.clone(),
        seq_len: Some(args.length),
        description: format!(
            "Per-base: {} bp windows of {}, every base labelled with the feature class of {} covering it ({}; where features overlap the class listed first wins; uncovered bases are '{}'). Splits are disjoint genome {:?} units ({:?}).",
            args.length,
            args.genome.display(),
            annotations_path.display(),
            task.class_names[1..].join(", "),
            args.background,
            unit,
            args.split.fractions
        ),
        source: Some(format!(
            "dnalm make-task segmentation {} {} --length {} --rows {}{}{} --background {} --seed {}",
            args.genome.display(),
            annotations_path.display(),
            args.length,
            args.rows.map(|r| r.to_string()).join(","),
            if args.classes.is_empty() { String::new() } else { format!(" --classes {}", args.classes.join(",")) },
            if args.stranded { " --stranded" } else { "" },
            args.background,
            args.split.seed
        )),
    };
    new.write_per_base(&args.out, &rows, &TaskFiles::PerSplit)?;
    let mut counts = vec![0usize; task.class_names.len()];
    for w in task.rows.iter().flatten() {
        for &c in &w.classes {
            counts[c as usize] += 1;
        }
    }
    let bases: usize = counts.iter().sum();
    let rows = task.rows.each_ref().map(Vec::len);
    print_made(
        &args.out,
        rows,
        args.length,
        &task.class_names,
        &counts,
        bases,
        "bases",
    );
    Ok(())
}

/// What a `make-task` command made: the windows per split, then per label or class its count
/// of `unit` (windows having it, or bases of it) and its share of `total`.
fn print_made(
    out: &std::path::Path,
    rows: [usize; 3],
    length: usize,
    names: &[String],
    counts: &[usize],
    total: usize,
    unit: &str,
) {
    eprintln!(
        "{}: {} / {} / {} windows of {length} bp, {} labels:",
        out.display(),
        rows[0],
        rows[1],
        rows[2],
        names.len()
    );
    for (name, &n) in names.iter().zip(counts) {
        eprintln!(
            "  {name:<20} {n:>9} {unit} ({:.1}%)",
            100.0 * n as f64 / total.max(1) as f64
        );
    }
}
