//! `dnalm tokenize` and `dnalm tokenizer ...`.

use std::{
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use dnalm_seq::{
    task::{read_table, table_format, TableFormat},
    window::{whole_records, WindowSpec},
    FastxReader, SequenceRecord, Task,
};
use dnalm_tokenize::{
    encode_batch, AnyTokenizer, BatchOptions, BpeTokenizer, BpeTrainOptions, Padding, Template,
    TokenCounter, Tokenizer, TokenizerSpec,
};

/// Special-token template choice.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TemplateArg {
    /// `[CLS] ... [SEP]`
    Bert,
    /// `<bos> ... <eos>`
    Causal,
    /// none
    None,
}

impl From<TemplateArg> for Template {
    fn from(t: TemplateArg) -> Self {
        match t {
            TemplateArg::Bert => Template::Bert,
            TemplateArg::Causal => Template::Causal,
            TemplateArg::None => Template::None,
        }
    }
}

fn load_tokenizer(spec: &TokenizerSpec, template: TemplateArg) -> anyhow::Result<AnyTokenizer> {
    Ok(spec.build(template.into())?)
}

/// Arguments of `dnalm tokenize`.
#[derive(Args)]
pub struct TokenizeArgs {
    /// FASTA/FASTQ file, task table (.csv/.tsv) or task directory.
    input: PathBuf,
    /// `nucleotide`, `kmer:K` (overlapping), `kmer:K:non-overlapping`, or a tokenizer directory.
    #[arg(short, long, default_value = "kmer:6")]
    tokenizer: TokenizerSpec,
    /// Special tokens around each sequence (built-in tokenizers only).
    #[arg(long, value_enum, default_value = "bert")]
    template: TemplateArg,
    /// Tokenize fixed windows of this many bases instead of whole records (FASTA only).
    #[arg(long)]
    window: Option<usize>,
    /// Distance between window starts (default: the window length).
    #[arg(long, requires = "window")]
    stride: Option<usize>,
    /// Write the token ids as JSON lines (`{"id": ..., "ids": [...], "attention_mask": [...]}`)
    /// to this file, special tokens included.
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// With --out: truncate each encoding to this many tokens (special tokens included).
    #[arg(long, requires = "out")]
    max_length: Option<usize>,
    /// With --out and --max-length: pad every encoding to exactly --max-length tokens.
    #[arg(long, requires = "max_length")]
    pad: bool,
    /// Print the statistics as JSON.
    #[arg(long)]
    json: bool,
}

/// Counts token statistics and, with `--out`, writes each sequence's encoding as a JSON line.
struct Accumulator<'a> {
    tok: &'a AnyTokenizer,
    batch: BatchOptions,
    counter: TokenCounter<'a, AnyTokenizer>,
    out: Option<BufWriter<tempfile::NamedTempFile>>,
}

impl Accumulator<'_> {
    fn add(&mut self, id: &str, seq: &[u8]) -> anyhow::Result<()> {
        self.counter.add(seq);
        if let Some(out) = &mut self.out {
            // Tokenized a second time on purpose: the statistics cover the whole sequence, the
            // written encoding may be truncated and padded.
            let batch = encode_batch(self.tok, &[seq], &self.batch)?;
            let enc = &batch.encodings[0];
            let row =
                serde_json::json!({"id": id, "ids": enc.ids, "attention_mask": enc.attention_mask});
            serde_json::to_writer(&mut *out, &row)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// Runs `dnalm tokenize`.
pub fn run(args: TokenizeArgs) -> anyhow::Result<()> {
    let tok = load_tokenizer(&args.tokenizer, args.template)?;
    let out = match &args.out {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = dnalm_seq::temp_file_in(dir)
                .with_context(|| format!("creating a temporary file beside {}", path.display()))?;
            Some(BufWriter::new(tmp))
        }
        None => None,
    };
    let mut acc = Accumulator {
        tok: &tok,
        batch: BatchOptions {
            add_special_tokens: true,
            max_length: args.max_length,
            truncation: true,
            padding: if args.pad {
                Padding::Fixed(args.max_length.unwrap_or(0))
            } else {
                Padding::None
            },
        },
        counter: TokenCounter::new(&tok),
        out,
    };
    let started = Instant::now();
    let input = &args.input;
    let is_table = input.is_dir()
        || matches!(
            table_format(input),
            Some(TableFormat::Csv | TableFormat::Tsv)
        );
    if is_table {
        if args.window.is_some() {
            bail!("--window applies to FASTA/FASTQ input, not to task tables");
        }
        let examples = if input.is_dir() {
            Task::load(input)?.examples
        } else {
            let spec_path = input.parent().unwrap_or(Path::new(".")).join("task.json");
            let spec = if spec_path.is_file() {
                Some(dnalm_seq::TaskSpec::from_path(&spec_path)?)
            } else {
                None
            };
            read_table(input, spec.as_ref(), None)?
        };
        for e in &examples {
            acc.add(&e.id, &e.sequence)?;
        }
    } else {
        let mut reader = FastxReader::from_path(input)?;
        let mut record = SequenceRecord::default();
        let spec = match args.window {
            Some(len) => Some(WindowSpec::new(len, args.stride.unwrap_or(len))?),
            None => None,
        };
        while reader.read_record(&mut record)? {
            match spec {
                None => acc.add(&record.name, &record.sequence)?,
                Some(spec) => {
                    for w in spec.tile(&whole_records(&[record.len()])) {
                        let id = format!("{}:{}-{}", record.name, w.start + 1, w.end);
                        acc.add(&id, &record.sequence[w.start..w.end])?;
                    }
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let Accumulator { counter, out, .. } = acc;
    let stats = counter.finish(seconds);
    if let (Some(out), Some(path)) = (out, &args.out) {
        let tmp = out.into_inner().map_err(|e| e.into_error())?;
        tmp.as_file().sync_all()?;
        tmp.persist(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        println!(
            "{}  ({}, vocabulary {})",
            input.display(),
            stats.tokenizer,
            stats.vocab_size
        );
        println!("  {:<18} {}", "sequences", stats.sequences);
        println!("  {:<18} {}", "bases", stats.bases);
        println!("  {:<18} {}", "tokens", stats.tokens);
        println!("  {:<18} {:.4}", "tokens per base", stats.tokens_per_base);
        println!(
            "  {:<18} {} of {} ({:.1}%)",
            "vocabulary used",
            stats.vocab_used,
            stats.vocab_size,
            100.0 * stats.vocab_used_fraction
        );
        println!(
            "  {:<18} {:.4}%",
            "unknown rate",
            100.0 * stats.unknown_rate
        );
        println!(
            "  {:<18} {:.1} Mb/s ({:.3} s, reading included)",
            "throughput",
            stats.bases_per_second / 1e6,
            seconds
        );
        if let Some(p) = &args.out {
            println!("  {:<18} {}", "token ids written", p.display());
        }
    }
    Ok(())
}

/// `dnalm tokenizer ...`
#[derive(Subcommand)]
pub enum TokenizerCommand {
    /// Learn a BPE vocabulary from FASTA files (DNABERT-2 style) and save it.
    TrainBpe(TrainBpeArgs),
    /// Save a built-in tokenizer (nucleotide or k-mer) in the Hugging Face layout.
    Export(ExportArgs),
}

/// Arguments of `dnalm tokenizer train-bpe`.
#[derive(Args)]
pub struct TrainBpeArgs {
    /// FASTA/FASTQ files to learn from.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output directory (tokenizer.json + tokenizer_config.json).
    #[arg(short, long)]
    out: PathBuf,
    /// Vocabulary size, special and base tokens included.
    #[arg(long, default_value_t = 4096)]
    vocab_size: usize,
    /// Minimum pair frequency for a merge.
    #[arg(long, default_value_t = 2)]
    min_frequency: u64,
    /// Training sequences are cut into chunks of this many bases.
    #[arg(long, default_value_t = 1000)]
    chunk_length: usize,
    /// Learn from at most this many bases.
    #[arg(long)]
    max_bases: Option<usize>,
    /// Longest token in bases.
    #[arg(long, default_value_t = 16)]
    max_token_length: usize,
    /// Special tokens around each sequence.
    #[arg(long, value_enum, default_value = "bert")]
    template: TemplateArg,
}

/// Arguments of `dnalm tokenizer export`.
#[derive(Args)]
pub struct ExportArgs {
    /// `nucleotide`, `kmer:K` or `kmer:K:non-overlapping`.
    tokenizer: TokenizerSpec,
    /// Output directory.
    #[arg(short, long)]
    out: PathBuf,
    /// Special tokens around each sequence.
    #[arg(long, value_enum, default_value = "bert")]
    template: TemplateArg,
}

/// Runs `dnalm tokenizer ...`.
pub fn run_tokenizer(cmd: TokenizerCommand) -> anyhow::Result<()> {
    match cmd {
        TokenizerCommand::TrainBpe(args) => {
            let started = Instant::now();
            // Read only as much as training will use (the trainer holds its input in memory).
            let mut sequences = Vec::new();
            let mut read = 0usize;
            'files: for path in &args.inputs {
                for record in FastxReader::from_path(path)?.records() {
                    if args.max_bases.is_some_and(|m| read >= m) {
                        break 'files;
                    }
                    let seq = record?.sequence;
                    read += seq.len();
                    sequences.push(seq);
                }
            }
            let options = BpeTrainOptions {
                vocab_size: args.vocab_size,
                min_frequency: args.min_frequency,
                chunk_length: args.chunk_length,
                max_bases: args.max_bases,
                max_token_length: Some(args.max_token_length),
            };
            let bases: usize = sequences.iter().map(Vec::len).sum();
            let sample: Vec<u8> = sequences
                .iter()
                .flatten()
                .take(1_000_000)
                .copied()
                .collect();
            let tok = BpeTokenizer::train(sequences, &options, args.template.into())?;
            let mut ids = Vec::new();
            tok.tokenize_into(&sample, &mut ids, None);
            let tok = AnyTokenizer::Bpe(Box::new(tok));
            tok.save(&args.out)?;
            println!(
                "trained BPE on {} bases in {:.1} s: vocabulary {}, {:.2} bases per token (first Mb), saved to {}",
                options.max_bases.map_or(bases, |m| m.min(bases)),
                started.elapsed().as_secs_f64(),
                tok.vocab().len(),
                sample.len() as f64 / ids.len().max(1) as f64,
                args.out.display()
            );
            Ok(())
        }
        TokenizerCommand::Export(args) => {
            let TokenizerSpec::Builtin(kind) = args.tokenizer else {
                bail!("export takes a built-in tokenizer (nucleotide or kmer:K); a directory is already saved");
            };
            let tok = AnyTokenizer::new(kind, args.template.into())?;
            tok.save(&args.out)?;
            println!(
                "saved {} tokenizer ({} tokens) to {}",
                tok.kind(),
                tok.vocab().len(),
                args.out.display()
            );
            Ok(())
        }
    }
}
