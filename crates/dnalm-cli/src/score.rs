//! `dnalm score`: sequence log-likelihoods, variant effects and in-silico mutagenesis.

use std::{fmt::Write as _, path::PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use dnalm_eval::{report::plot::mutagenesis_map, score::Scorer};
use dnalm_model::Checkpoint;
use dnalm_seq::{FastxReader, Genome, SequenceRecord};

use crate::{
    shard::{self, OutputKind, ShardFlag},
    write_output,
};

/// `dnalm score` subcommands.
#[derive(Subcommand)]
pub enum ScoreCommand {
    /// Log-likelihood of each FASTA sequence (exact for causal models, pseudo-log-likelihood for
    /// masked ones), per sequence and optionally per base.
    Likelihood(LikelihoodArgs),
    /// Effect of each VCF variant: log-likelihood ratio alt vs ref in a window around it,
    /// written as a VCF (INFO DNALM_LLR) and a TSV.
    Variants(VariantArgs),
    /// In-silico mutagenesis: every single-base substitution of a sequence scored; a matrix
    /// (TSV) and a PNG heatmap.
    Ism(IsmArgs),
}

/// Options every scoring command shares.
#[derive(Args)]
pub struct ModelFlags {
    /// Model directory (a dnalm checkpoint or a Hugging Face directory).
    #[arg(short, long)]
    model: PathBuf,
    /// Token budget of one forward batch (rows × tokens).
    #[arg(long, default_value_t = 16_384)]
    batch_tokens: usize,
    #[command(flatten)]
    device: crate::DeviceFlag,
}

impl ModelFlags {
    fn load(&self) -> anyhow::Result<Checkpoint> {
        Ok(Checkpoint::load(&self.model, &self.device.open()?)?)
    }
}

/// Arguments of `dnalm score likelihood`.
#[derive(Args)]
pub struct LikelihoodArgs {
    #[command(flatten)]
    model: ModelFlags,
    /// FASTA/FASTQ input (plain or gzip).
    #[arg(short, long)]
    input: PathBuf,
    /// Per-sequence TSV (`-` = stdout): id, length, tokens, log_likelihood, per_base, kind.
    #[arg(short, long, default_value = "-")]
    output: PathBuf,
    /// Also write per-base log-likelihoods (TSV: id, position, base, log_likelihood).
    #[arg(long)]
    per_base: Option<PathBuf>,
    /// Shards split the records, balanced by bases.
    #[command(flatten)]
    shard: ShardFlag,
}

/// Arguments of `dnalm score variants`.
#[derive(Args)]
pub struct VariantArgs {
    #[command(flatten)]
    model: ModelFlags,
    /// Variants (VCF, plain or gzip).
    #[arg(long)]
    vcf: PathBuf,
    /// Reference genome (FASTA, plain or gzip) with the VCF's chromosome names.
    #[arg(long)]
    reference: PathBuf,
    /// Bases of reference context on each side of the variant.
    #[arg(long, default_value_t = 128)]
    flank: usize,
    /// Output VCF: the input with INFO DNALM_LLR (one value per ALT) added.
    #[arg(short, long)]
    output: PathBuf,
    /// Also write a TSV (chrom, pos, id, ref, alt, llr, method).
    #[arg(long)]
    tsv: Option<PathBuf>,
    /// Shards split the VCF records.
    #[command(flatten)]
    shard: ShardFlag,
}

/// Arguments of `dnalm score ism`.
#[derive(Args)]
pub struct IsmArgs {
    #[command(flatten)]
    model: ModelFlags,
    /// FASTA with the sequence.
    #[arg(short, long)]
    input: PathBuf,
    /// Record name (default: the first record).
    #[arg(long)]
    record: Option<String>,
    /// Bases to mutate, 1-based inclusive `START-END` (default: the whole record, at most
    /// 2,000 bases).
    #[arg(long)]
    region: Option<String>,
    /// Reference context on each side of the region that is scored but not mutated.
    #[arg(long, default_value_t = 0)]
    flank: usize,
    /// Output directory: ism.tsv and ism.png.
    #[arg(short, long)]
    output: PathBuf,
}

/// Runs `dnalm score`.
pub fn run(cmd: ScoreCommand) -> anyhow::Result<()> {
    match cmd {
        ScoreCommand::Likelihood(a) => likelihood(a),
        ScoreCommand::Variants(a) => variants(a),
        ScoreCommand::Ism(a) => ism(a),
    }
}

/// Output flags of `score likelihood`/`score variants` (dropped from a shard's job).
const SCORE_OUTPUTS: [&str; 4] = ["-o", "--output", "--tsv", "--per-base"];

fn likelihood(args: LikelihoodArgs) -> anyhow::Result<()> {
    let shard = args.shard.get()?;
    shard::needs_file(&args.output, shard, "-o")?;
    let encoder = args.model.load()?;
    let scorer = Scorer::new(&encoder, args.model.batch_tokens)?;
    // A shard's records: a first pass reads the lengths, to balance shards by bases.
    let mine = if shard.is_whole() {
        0..usize::MAX
    } else {
        let mut reader = FastxReader::from_path(&args.input)?;
        let mut record = SequenceRecord::default();
        let mut lengths = Vec::new();
        while reader.read_record(&mut record)? {
            lengths.push(record.len() as u64);
        }
        shard.range_weighted(&lengths)
    };
    let mut reader = FastxReader::from_path(&args.input)?;
    let mut record = SequenceRecord::default();
    let mut table = String::from("id\tlength\ttokens\tlog_likelihood\tper_base\tkind\n");
    let mut bases = args
        .per_base
        .as_ref()
        .map(|_| String::from("id\tposition\tbase\tlog_likelihood\n"));
    let (mut n, mut scored) = (0, 0);
    while reader.read_record(&mut record)? {
        n += 1;
        if !mine.contains(&(n - 1)) {
            continue;
        }
        scored += 1;
        let s = scorer
            .sequence(&record.sequence)
            .with_context(|| format!("{}: record {n} ('{}')", args.input.display(), record.name))?;
        let _ = writeln!(
            table,
            "{}\t{}\t{}\t{:.6}\t{:.6}\t{}",
            record.name,
            record.len(),
            s.tokens.len(),
            s.log_likelihood,
            s.log_likelihood / record.len().max(1) as f64,
            s.kind
        );
        if let Some(out) = &mut bases {
            for (i, v) in s.per_base(record.len()).iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}\t{v:.6}",
                    record.name,
                    i + 1,
                    record.sequence[i] as char
                );
            }
        }
    }
    if n == 0 {
        bail!("{}: no sequences", args.input.display());
    }
    write_output(&args.output, &table)?;
    shard::record(&args.output, OutputKind::Table, shard, &SCORE_OUTPUTS)?;
    if let (Some(path), Some(text)) = (&args.per_base, bases) {
        write_output(path, &text)?;
        shard::record(path, OutputKind::Table, shard, &SCORE_OUTPUTS)?;
    }
    eprintln!(
        "scored {scored} sequence(s){} with {}",
        if shard.is_whole() {
            String::new()
        } else {
            format!(" of {n} (shard {shard})")
        },
        args.model.model.display()
    );
    Ok(())
}

fn variants(args: VariantArgs) -> anyhow::Result<()> {
    let shard = args.shard.get()?;
    shard::needs_file(&args.output, shard, "-o")?;
    let encoder = args.model.load()?;
    let scorer = Scorer::new(&encoder, args.model.batch_tokens)?;
    let mut vcf = dnalm_seq::vcf::read_vcf(&args.vcf)?;
    let all = vcf.records.len();
    if !shard.is_whole() {
        vcf.records = vcf.records[shard.range(all)].to_vec();
    }
    let genome = Genome::read(&args.reference)?;
    let effects = scorer
        .variants(&vcf, &genome, args.flank)
        .with_context(|| format!("against {}", args.reference.display()))?;
    let mut info = Vec::with_capacity(vcf.records.len());
    let mut tsv = String::from("chrom\tpos\tid\tref\talt\tllr\tmethod\n");
    let (mut scored, mut skipped) = (0usize, 0usize);
    for (r, effects) in vcf.records.iter().zip(&effects) {
        if r.alts.is_empty() {
            info.push(None);
            continue;
        }
        let mut values = Vec::new();
        for (alt, effect) in r.alts.iter().zip(&effects.alts) {
            let Some((llr, method)) = effect else {
                values.push(".".to_string());
                skipped += 1;
                continue;
            };
            values.push(format!("{llr:.4}"));
            let _ = writeln!(
                tsv,
                "{}\t{}\t{}\t{}\t{}\t{llr:.6}\t{}",
                r.chrom,
                r.pos,
                r.id,
                String::from_utf8_lossy(&r.reference),
                String::from_utf8_lossy(alt),
                method.as_str()
            );
            scored += 1;
        }
        info.push(Some(values.join(",")));
    }
    let text = vcf.annotated(
        "DNALM_LLR",
        "A",
        "Float",
        &format!(
            "dnalm log-likelihood ratio ALT vs REF ({} model {}; {} bp flanks; masked marginal for encoders, exact LL ratio for decoders)",
            if encoder.model.config.architecture.is_causal() { "causal" } else { "masked" },
            args.model.model.display(),
            args.flank
        ),
        &info,
    );
    write_output(&args.output, &text)?;
    shard::record(&args.output, OutputKind::Vcf, shard, &SCORE_OUTPUTS)?;
    if let Some(p) = &args.tsv {
        write_output(p, &tsv)?;
        shard::record(p, OutputKind::Table, shard, &SCORE_OUTPUTS)?;
    }
    eprintln!(
        "scored {scored} allele(s) of {} record(s){}; {skipped} symbolic allele(s) left as '.'",
        vcf.records.len(),
        if shard.is_whole() {
            String::new()
        } else {
            format!(" (shard {shard} of {all})")
        }
    );
    Ok(())
}

fn ism(args: IsmArgs) -> anyhow::Result<()> {
    let encoder = args.model.load()?;
    let scorer = Scorer::new(&encoder, args.model.batch_tokens)?;
    let mut reader = FastxReader::from_path(&args.input)?;
    let mut record = SequenceRecord::default();
    let mut found = false;
    while reader.read_record(&mut record)? {
        if args.record.as_ref().is_none_or(|n| n == &record.name) {
            found = true;
            break;
        }
    }
    if !found {
        bail!(
            "{}: {}",
            args.input.display(),
            match &args.record {
                Some(n) => format!("no record named '{n}'"),
                None => "no sequences".into(),
            }
        );
    }
    let len = record.len();
    let (start, end) = match &args.region {
        Some(r) => {
            let (a, b) = r
                .replace(',', "")
                .split_once('-')
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
                .with_context(|| {
                    format!("--region '{r}': expected START-END (1-based, inclusive)")
                })?;
            if a == 0 || a > b || b > len {
                bail!(
                    "--region '{r}' is not within record '{}' (1-{len})",
                    record.name
                );
            }
            (a - 1, b)
        }
        None if len <= 2000 => (0, len),
        None => bail!(
            "record '{}' has {len} bases; choose at most a few thousand with --region START-END",
            record.name
        ),
    };
    let c0 = start.saturating_sub(args.flank);
    let c1 = (end + args.flank).min(len);
    let context = &record.sequence[c0..c1];
    let t0 = std::time::Instant::now();
    let full = scorer.mutagenesis_range(context, start - c0, end - c0, |i, n| {
        if i > 0 && i % 100 == 0 {
            eprintln!("  {i}/{n} positions ({:.0} s)", t0.elapsed().as_secs_f64());
        }
    })?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let mut tsv = String::from("position\tref\tA\tC\tG\tT\n");
    for (i, row) in full.iter().enumerate() {
        let p = start + i;
        let _ = writeln!(
            tsv,
            "{}\t{}\t{:.5}\t{:.5}\t{:.5}\t{:.5}",
            p + 1,
            record.sequence[p] as char,
            row[0],
            row[1],
            row[2],
            row[3]
        );
    }
    write_output(&args.output.join("ism.tsv"), &tsv)?;
    mutagenesis_map(
        &args.output.join("ism.png"),
        &format!(
            "{}:{}-{}  in-silico mutagenesis, log-likelihood ratio alt vs ref ({})",
            record.name,
            start + 1,
            end,
            args.model.model.display()
        ),
        &record.sequence[start..end],
        &full,
        start + 1,
    )?;
    eprintln!(
        "{} positions × 3 substitutions in {:.1} s; wrote {}/ism.tsv and ism.png",
        end - start,
        t0.elapsed().as_secs_f64(),
        args.output.display()
    );
    Ok(())
}
