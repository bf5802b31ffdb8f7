//! `dnalm label`: a fine-tuned classifier across a genome → BED of predicted elements and a
//! task directory of (sequence, predicted label, score) pairs; a per-base model → BED runs of
//! each class and a per-base task of the genome's windows.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context};
use clap::Args;
use dnalm_eval::{
    finetune::{load_finetuned, per_base::load_base_tagger, read_head_info, HeadInfo},
    label::{
        base_elements, classify_genome, elements_bed, merge_elements, segment_genome,
        window_splits, LabelOptions, WindowCall,
    },
};
use dnalm_seq::{
    alphabet::reverse_complement,
    task_writer::{BaseClassRow, LabelSetRow, NewTask, TaskFiles, TaskRow},
    Genome, Split,
};

use crate::{
    shard::{self, OutputKind, ShardFlag},
    write_output,
};

/// Arguments of `dnalm label`.
#[derive(Args)]
pub struct LabelArgs {
    /// A fine-tuned classifier or per-base model (`dnalm finetune -o DIR`).
    #[arg(short, long)]
    model: PathBuf,
    /// Genome to label (FASTA, plain or gzip).
    genome: PathBuf,
    /// Window length in bases (default: the median training-sequence length in head.json).
    #[arg(long)]
    window: Option<usize>,
    /// Step between windows (default: half the window).
    #[arg(long)]
    stride: Option<usize>,
    /// Forward strand only (default: both strands; a per-base model reads the forward strand,
    /// its classes carrying their own strand).
    #[arg(long)]
    forward_only: bool,
    /// Classes written as BED elements, by name or index (repeatable; default: every class but
    /// the first, which is taken as background; every label of a multi-label model).
    #[arg(long = "element")]
    elements: Vec<String>,
    /// Smallest class probability for a window to join an element (multi-label: for a label
    /// to apply to a window, in the BED and in pairs.csv).
    #[arg(long, default_value_t = 0.5)]
    min_score: f64,
    /// Genome block (bases) for the train/valid/test split of the pairs.
    #[arg(long, default_value_t = 10_000)]
    split_block: usize,
    /// Windows per forward batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Output directory: predicted.bed, pairs.csv, task.json.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    device: crate::DeviceFlag,
    #[command(flatten)]
    shard: ShardFlag,
}

/// The name of the task written into `output` (a labelling's, or `make-task`'s): the
/// directory's name.
pub(crate) fn task_name(output: &Path) -> String {
    output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "labelled".into())
}

impl LabelArgs {
    /// How to slide `info`'s model: `--window` (default: its training length), `--stride`
    /// (default: half the window), the batch and the shard.
    fn options(
        &self,
        info: &HeadInfo,
        shard: dnalm_seq::Shard,
        both_strands: bool,
    ) -> anyhow::Result<LabelOptions> {
        let Some(window) = self.window.or(info.seq_len) else {
            bail!(
                "{}: head.json records no training length; pass --window",
                self.model.display()
            );
        };
        Ok(LabelOptions {
            window,
            stride: self.stride.unwrap_or((window / 2).max(1)),
            both_strands,
            max_n_fraction: 0.1,
            batch_rows: self.batch,
            shard,
        })
    }
}

/// Progress every 50 batches of windows, with the seconds since `t0`.
fn progress(batch: usize, t0: Instant) -> impl FnMut(usize, usize) {
    move |done, total| {
        if done > 0 && done % (batch * 50) == 0 {
            eprintln!(
                "  {done}/{total} windows ({:.0} s)",
                t0.elapsed().as_secs_f64()
            );
        }
    }
}

/// Runs `dnalm label`.
pub fn run(args: LabelArgs) -> anyhow::Result<()> {
    let shard = args.shard.get()?;
    // An absent device is refused before the model is read.
    let device = args.device.open()?;
    if read_head_info(&args.model)
        .with_context(|| {
            format!(
                "{}: not a fine-tuned classifier or per-base model",
                args.model.display()
            )
        })?
        .per_base
    {
        return run_per_base(args, shard, &device);
    }
    let (net, info, tokenizer) = load_finetuned(&args.model, &device)
        .with_context(|| format!("{}: not a fine-tuned classifier", args.model.display()))?;
    let first = if info.multi_label { 0 } else { 1 };
    let classes = element_classes(&args.elements, &info.label_names, first)?;
    let genome = Genome::read(&args.genome)?;
    let options = args.options(&info, shard, !args.forward_only)?;
    let (window, stride) = (options.window, options.stride);
    let t0 = Instant::now();
    let calls = classify_genome(
        &net,
        &info,
        &tokenizer,
        &genome,
        &options,
        progress(args.batch, t0),
    )?;
    let names = genome.names();
    let elements = merge_elements(&calls, &classes, args.min_score);
    let bed = elements_bed(&elements, &names, &info.label_names);
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    write_output(&args.output.join("predicted.bed"), &bed)?;
    let splits = window_splits(&genome, &calls, args.split_block, 0)?;
    let description = format!(
        "Labels predicted by the fine-tuned model {} (task '{}') on {}: {} bp windows every {} bp, {}; {}. Splits: {} bp genome blocks, 70/10/20; windows crossing into another split's block are left out.",
        args.model.display(), info.task, args.genome.display(), window, stride,
        if args.forward_only { "forward strand" } else { "both strands" },
        if info.multi_label {
            format!("labels = those with probability >= {}", args.min_score)
        } else {
            "label = argmax class, score = its probability".into()
        },
        args.split_block
    );
    let task = NewTask {
        name: task_name(&args.output),
        label_names: info.label_names.clone(),
        seq_len: Some(window),
        description,
        source: None,
    };
    let window_bases = |c: &WindowCall| {
        let bases = genome.bases(c.record, c.start, c.end);
        if c.strand == '-' {
            reverse_complement(bases)
        } else {
            bases.to_vec()
        }
    };
    let id = |c: &WindowCall| format!("{}:{}-{}:{}", names[c.record], c.start + 1, c.end, c.strand);
    let pairs = if info.multi_label {
        // One call per label and window, in label order: a window's calls are consecutive.
        let per_window = info.label_names.len().max(1);
        let rows: Vec<LabelSetRow> = calls
            .chunks(per_window)
            .zip(splits.chunks(per_window))
            .filter_map(|(window, split)| {
                let first = window.first()?;
                Some(LabelSetRow {
                    sequence: window_bases(first),
                    labels: window
                        .iter()
                        .filter(|c| c.score >= args.min_score)
                        .map(|c| c.label)
                        .collect(),
                    id: id(first),
                    split: (*split.first()?)?,
                })
            })
            .collect();
        task.write_multi_label(&args.output, &rows, &TaskFiles::One("pairs.csv".into()))?;
        rows.len()
    } else {
        let rows = label_pairs(&calls, &splits, window_bases, id);
        task.write(&args.output, &rows, &TaskFiles::One("pairs.csv".into()))?;
        rows.len()
    };
    shard::record(&args.output, OutputKind::Label, shard, &["-o", "--output"])?;
    let part = if shard.is_whole() {
        String::new()
    } else {
        format!(" (shard {shard})")
    };
    eprintln!(
        "{} windows{part} classified in {:.1} s; {} element(s) in {}/predicted.bed; {pairs} pairs in pairs.csv",
        calls.len() / if info.multi_label { info.label_names.len().max(1) } else { 1 },
        t0.elapsed().as_secs_f64(),
        elements.len(),
        args.output.display(),
    );
    Ok(())
}

/// The classes written as elements: those named by `--element` (names or indices), else every
/// class but the first (the background) — or, multi-label, every label.
fn element_classes(
    elements: &[String],
    label_names: &[String],
    first: usize,
) -> anyhow::Result<Vec<usize>> {
    if elements.is_empty() {
        return Ok((first..label_names.len()).collect());
    }
    elements
        .iter()
        .map(|e| {
            label_names
                .iter()
                .position(|n| n == e)
                .or_else(|| e.parse::<usize>().ok().filter(|i| *i < label_names.len()))
                .with_context(|| {
                    format!(
                        "--element '{e}' is not a class of this model ({})",
                        label_names.join(", ")
                    )
                })
        })
        .collect()
}

/// `dnalm label` with a per-base model: every base's class (forward strand; the classes carry
/// their strand), runs of element classes as BED, and the genome tiled into windows of the
/// training length as a per-base task of the predicted classes (pairs.csv).
fn run_per_base(
    args: LabelArgs,
    shard: dnalm_seq::Shard,
    device: &dnalm_model::burn::tensor::Device,
) -> anyhow::Result<()> {
    let (net, info, tokenizer) = load_base_tagger(&args.model, device)
        .with_context(|| format!("{}: not a per-base model", args.model.display()))?;
    let classes = element_classes(&args.elements, &info.label_names, 1)?;
    let genome = Genome::read(&args.genome)?;
    let options = args.options(&info, shard, false)?;
    let (window, stride) = (options.window, options.stride);
    let t0 = Instant::now();
    let calls = segment_genome(
        &net,
        &info,
        &tokenizer,
        &genome,
        &options,
        progress(args.batch, t0),
    )?;
    let names = genome.names();
    let elements = base_elements(&calls, &classes, args.min_score, &info.label_names);
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    write_output(
        &args.output.join("predicted.bed"),
        &elements_bed(&elements, &names, &info.label_names),
    )?;
    // Tiles of the window whose every base was called, split by genome block.
    let tiles: Vec<WindowCall> = calls
        .classes
        .iter()
        .enumerate()
        .flat_map(|(r, c)| {
            (0..c.len() / window)
                .map(move |i| (r, i * window))
                .filter(|&(_, s)| c[s..s + window].iter().all(|&k| k != u8::MAX))
        })
        .map(|(record, start)| WindowCall {
            record,
            start,
            end: start + window,
            strand: '+',
            label: 0,
            score: 0.0,
        })
        .collect();
    let splits = window_splits(&genome, &tiles, args.split_block, 0)?;
    let rows: Vec<BaseClassRow> = tiles
        .iter()
        .zip(&splits)
        .filter_map(|(t, split)| {
            Some(BaseClassRow {
                sequence: genome.bases(t.record, t.start, t.end).to_vec(),
                classes: calls.classes[t.record][t.start..t.end].to_vec(),
                id: format!("{}:{}-{}", names[t.record], t.start + 1, t.end),
                split: (*split)?,
            })
        })
        .collect();
    let task = NewTask {
        name: task_name(&args.output),
        label_names: info.label_names.clone(),
        seq_len: Some(window),
        description: format!(
            "Per-base classes predicted by the fine-tuned model {} (task '{}') on {}: {} bp windows every {} bp, forward strand, each base's class the arg-max of its probabilities averaged over the windows holding it; tiled into {} bp windows. Splits: {} bp genome blocks, 70/10/20; tiles crossing into another split's block are left out.",
            args.model.display(), info.task, args.genome.display(), window, stride, window, args.split_block
        ),
        source: None,
    };
    task.write_per_base(&args.output, &rows, &TaskFiles::One("pairs.csv".into()))?;
    let called: usize = calls
        .classes
        .iter()
        .map(|c| c.iter().filter(|&&k| k != u8::MAX).count())
        .sum();
    eprintln!(
        "{called} bases classified in {:.1} s; {} element(s) in {}/predicted.bed; {} windows in pairs.csv",
        t0.elapsed().as_secs_f64(),
        elements.len(),
        args.output.display(),
        rows.len()
    );
    Ok(())
}

/// The (sequence, predicted class, score) rows of single-label calls that lie in one split.
fn label_pairs(
    calls: &[WindowCall],
    splits: &[Option<Split>],
    bases: impl Fn(&WindowCall) -> Vec<u8>,
    id: impl Fn(&WindowCall) -> String,
) -> Vec<TaskRow> {
    calls
        .iter()
        .zip(splits)
        .filter_map(|(c, split)| {
            Some(TaskRow {
                sequence: bases(c),
                label: c.label,
                id: id(c),
                score: Some(c.score),
                split: (*split)?,
            })
        })
        .collect()
}
