//! Models as datasets: a fine-tuned classifier slid across a genome (both strands) yields
//! predicted elements (BED) and (sequence, predicted label, score) pairs, which are a task
//! directory (with leak-free genome-block splits) or annotations for annotation-aware masking.

use burn::tensor::activation::{sigmoid, softmax};
use dnalm_model::heads::Pooling;
use dnalm_seq::{
    alphabet::reverse_complement,
    window::{split_genome, SplitConfig, SplitUnit},
    Genome, Shard, Split,
};
use dnalm_tokenize::{AnyTokenizer, Tokenizer};
use serde::Serialize;

use crate::{
    finetune::{
        per_base::{tag_input, BaseTagger},
        token_rows, HeadInfo, PooledSpan, SequenceClassifier,
    },
    probes::per_base::BaseMap,
    EvalError,
};

/// How to slide the classifier.
#[derive(Debug, Clone, Serialize)]
pub struct LabelOptions {
    /// Window length in bases.
    pub window: usize,
    /// Step between window starts.
    pub stride: usize,
    /// Also classify the reverse complement of every window.
    pub both_strands: bool,
    /// Windows with more than this fraction of `N` are skipped.
    pub max_n_fraction: f64,
    /// Windows per forward batch.
    pub batch_rows: usize,
    /// The part of the genome's windows to classify (`--shard I/N`): a contiguous range of whole
    /// batches of windows in genome order, so the shards' calls concatenated are, bit for bit,
    /// the whole genome's.
    pub shard: Shard,
}

/// One classified window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowCall {
    /// Record index in the genome.
    pub record: usize,
    /// Start (0-based).
    pub start: usize,
    /// End (exclusive).
    pub end: usize,
    /// `+` or `-` (the reverse complement was classified).
    pub strand: char,
    /// Predicted class (argmax), or the label scored (multi-label).
    pub label: usize,
    /// Its probability.
    pub score: f64,
}

/// A predicted element: overlapping windows of one class and strand, merged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Element {
    /// Record index.
    pub record: usize,
    /// Start (0-based).
    pub start: usize,
    /// End (exclusive).
    pub end: usize,
    /// Strand.
    pub strand: char,
    /// Class.
    pub label: usize,
    /// Highest window probability inside.
    pub score: f64,
    /// Windows merged.
    pub windows: usize,
}

/// Classifies every window of `genome`: one call per window (its arg-max class), or, for a
/// multi-label head, one per window and label (that label's probability), in label order.
pub fn classify_genome(
    net: &SequenceClassifier,
    info: &HeadInfo,
    tokenizer: &AnyTokenizer,
    genome: &Genome,
    options: &LabelOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<WindowCall>, EvalError> {
    if info.regression {
        return Err(EvalError::Unsupported {
            model: format!("the model of task '{}'", info.task),
            message: "it regresses a value; labelling needs a classifier".into(),
        });
    }
    if options.window == 0 || options.stride == 0 {
        return Err(EvalError::BadOption {
            option: "window",
            message: "window and stride must be positive".into(),
        });
    }
    let mut jobs: Vec<(usize, usize, char)> = Vec::new();
    for (r, len) in genome.lengths().into_iter().enumerate() {
        if len < options.window {
            continue;
        }
        let mut starts: Vec<usize> = (0..=len - options.window).step_by(options.stride).collect();
        if starts.last() != Some(&(len - options.window)) {
            starts.push(len - options.window);
        }
        for s in starts {
            let bases = genome.bases(r, s, s + options.window);
            let n = bases.iter().filter(|&&b| b == b'N').count();
            if n as f64 > options.max_n_fraction * options.window as f64 {
                continue;
            }
            jobs.push((r, s, '+'));
            if options.both_strands {
                jobs.push((r, s, '-'));
            }
        }
    }
    if jobs.is_empty() {
        return Err(EvalError::BadOption {
            option: "window",
            message: format!(
                "no record is {} bases long (the window); use --window",
                options.window
            ),
        });
    }
    // Shards split whole batches, so each window meets the same batch-mates (hence the same
    // padding and arithmetic) as in the whole run, and the shards' calls are the whole run's.
    let per_batch = options.batch_rows.max(1);
    let batches = options.shard.range(jobs.len().div_ceil(per_batch));
    let jobs = &jobs
        [(batches.start * per_batch).min(jobs.len())..(batches.end * per_batch).min(jobs.len())];
    let max = net.encoder.config.max_positions;
    let mut calls = Vec::with_capacity(jobs.len());
    for (done, chunk) in jobs.chunks(options.batch_rows.max(1)).enumerate() {
        progress(done * options.batch_rows.max(1), jobs.len());
        let seqs: Vec<Vec<u8>> = chunk
            .iter()
            .map(|&(r, s, strand)| {
                let bases = genome.bases(r, s, s + options.window);
                if strand == '-' {
                    reverse_complement(bases)
                } else {
                    bases.to_vec()
                }
            })
            .collect();
        // Longer than the context: the middle is kept, as in fine-tuning.
        let refs: Vec<&[u8]> = seqs.iter().map(Vec::as_slice).collect();
        let rows = token_rows(tokenizer, max, &refs);
        let pooling: Pooling = info.pooling;
        let span = PooledSpan::of_head(info, tokenizer);
        let logits = net.forward(&rows, pooling, span, None)?;
        let probs = if info.multi_label {
            sigmoid(logits)
        } else {
            softmax(logits, 1)
        };
        let [n, k] = probs.dims();
        let values = probs
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| crate::tensor_error("labelling", e))?;
        for (i, &(record, start, strand)) in chunk.iter().enumerate().take(n) {
            let p = values[i * k..(i + 1) * k].iter().map(|&v| v as f64);
            // Multi-label: one call per label, in label order, with its own probability.
            let scored: Vec<(usize, f64)> = if info.multi_label {
                p.enumerate().collect()
            } else {
                let best = p.enumerate().max_by(|a, b| a.1.total_cmp(&b.1));
                vec![best.unwrap_or((0, f64::NAN))]
            };
            for (label, score) in scored {
                calls.push(WindowCall {
                    record,
                    start,
                    end: start + options.window,
                    strand,
                    label,
                    score,
                });
            }
        }
    }
    Ok(calls)
}

/// A per-base model's calls over a genome: per record, each base's class (`u8::MAX` where no
/// window was classified, e.g. runs of `N`) and its probability in 255ths.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseCalls {
    /// Per record, per base, the predicted class.
    pub classes: Vec<Vec<u8>>,
    /// Per record, per base, the predicted class's probability × 255, rounded.
    pub confidence: Vec<Vec<u8>>,
}

/// Classifies every base of `genome` (forward strand: a per-base model's classes carry their
/// own strand) with a per-base model: windows of `options.window` bases every `options.stride`
/// (the last aligned to the record's end), each base's class the arg-max of its probabilities
/// averaged over the windows holding it. Memory beyond the calls (2 bytes per base) is bounded
/// by the windows in flight: a base is final once no later window holds it.
pub fn segment_genome(
    net: &BaseTagger,
    info: &HeadInfo,
    tokenizer: &AnyTokenizer,
    genome: &Genome,
    options: &LabelOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<BaseCalls, EvalError> {
    if !info.per_base {
        return Err(EvalError::Unsupported {
            model: format!("the model of task '{}'", info.task),
            message: "it labels whole sequences, not bases".into(),
        });
    }
    if options.window == 0 || options.stride == 0 || options.stride > options.window {
        return Err(EvalError::BadOption {
            option: "window",
            message: "window and stride must be positive, the stride at most the window (every base needs a window)".into(),
        });
    }
    if !options.shard.is_whole() {
        return Err(EvalError::BadOption {
            option: "shard",
            message: "a per-base model labels the genome in one process (its windows average across shard boundaries)".into(),
        });
    }
    let k = info.label_names.len().max(1);
    let max = net.encoder.config.max_positions;
    let first = tokenizer.template_tokens().0.is_some() as usize;
    let lengths = genome.lengths();
    let mut jobs: Vec<Vec<usize>> = Vec::with_capacity(lengths.len());
    for (r, &len) in lengths.iter().enumerate() {
        let mut starts = Vec::new();
        if len >= options.window {
            let mut all: Vec<usize> = (0..=len - options.window).step_by(options.stride).collect();
            if all.last() != Some(&(len - options.window)) {
                all.push(len - options.window);
            }
            for s in all {
                let bases = genome.bases(r, s, s + options.window);
                let n = bases.iter().filter(|&&b| b == b'N').count();
                if n as f64 <= options.max_n_fraction * options.window as f64 {
                    starts.push(s);
                }
            }
        }
        jobs.push(starts);
    }
    let total: usize = jobs.iter().map(Vec::len).sum();
    if total == 0 {
        return Err(EvalError::BadOption {
            option: "window",
            message: format!(
                "no record is {} bases long (the window); use --window",
                options.window
            ),
        });
    }
    let mut calls = BaseCalls {
        classes: lengths.iter().map(|&l| vec![u8::MAX; l]).collect(),
        confidence: lengths.iter().map(|&l| vec![0; l]).collect(),
    };
    let mut done = 0;
    let names = genome.names();
    for (r, starts) in jobs.iter().enumerate() {
        let mut votes = BaseVotes::new(k);
        let batch = options.batch_rows.max(1);
        for (b, chunk) in starts.chunks(batch).enumerate() {
            progress(done, total);
            let mut rows = Vec::with_capacity(chunk.len());
            let mut maps: Vec<BaseMap> = Vec::with_capacity(chunk.len());
            for &s in chunk {
                let id = format!("{}:{}-{}", names[r], s + 1, s + options.window);
                let (row, map) =
                    tag_input(tokenizer, max, &id, genome.bases(r, s, s + options.window))?;
                rows.push(row);
                maps.push(map);
            }
            let refs: Vec<&BaseMap> = maps.iter().collect();
            let probs = softmax(net.forward(&rows, &refs, first, None)?, 1);
            let values = probs
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| crate::tensor_error("labelling", e))?;
            for (&s, window) in chunk.iter().zip(values.chunks(options.window * k)) {
                votes.add(s, window);
            }
            done += chunk.len();
            // Bases before the next window's start are final.
            let next = starts.get((b + 1) * batch).copied();
            votes.settle(next, &mut calls.classes[r], &mut calls.confidence[r]);
        }
    }
    progress(total, total);
    Ok(calls)
}

/// Class probabilities summed over the windows holding each base of one record, for the bases
/// `lo..` that a later window may still reach; the rest are settled into calls.
struct BaseVotes {
    classes: usize,
    lo: usize,
    sum: Vec<f32>,
    count: Vec<u16>,
}

impl BaseVotes {
    fn new(classes: usize) -> BaseVotes {
        BaseVotes {
            classes,
            lo: 0,
            sum: Vec::new(),
            count: Vec::new(),
        }
    }

    /// Adds a window starting at `start` (at or after every settled base): `probs` holds
    /// `classes` probabilities per base.
    fn add(&mut self, start: usize, probs: &[f32]) {
        let k = self.classes;
        let first = start - self.lo;
        let end = first + probs.len() / k;
        if self.count.len() < end {
            self.count.resize(end, 0);
            self.sum.resize(end * k, 0.0);
        }
        for (i, p) in probs.chunks(k).enumerate() {
            for (s, v) in self.sum[(first + i) * k..(first + i + 1) * k]
                .iter_mut()
                .zip(p)
            {
                *s += v;
            }
            self.count[first + i] += 1;
        }
    }

    /// Settles the bases before `next` (the next window's start; `None`: every base held) into
    /// `classes` (arg-max of the mean probabilities) and `confidence` (that mean × 255).
    fn settle(&mut self, next: Option<usize>, classes: &mut [u8], confidence: &mut [u8]) {
        let k = self.classes;
        let held = self.lo + self.count.len();
        let upto = next.map_or(held, |n| n.min(held));
        for p in 0..upto - self.lo {
            if self.count[p] == 0 {
                continue;
            }
            let (best, &total) = self.sum[p * k..(p + 1) * k]
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap_or((0, &0.0));
            classes[self.lo + p] = best as u8;
            confidence[self.lo + p] = (total / self.count[p] as f32 * 255.0)
                .round()
                .clamp(0.0, 255.0) as u8;
        }
        self.sum.drain(..(upto - self.lo) * k);
        self.count.drain(..upto - self.lo);
        self.lo = upto;
    }
}

/// The runs of bases called `classes` (indices) with probability ≥ `min_score`, as elements:
/// score = the run's mean probability, strand from a class name ending in `(+)` / `(-)` (else
/// `.`), `windows` = 1. Sorted by position.
pub fn base_elements(
    calls: &BaseCalls,
    classes: &[usize],
    min_score: f64,
    label_names: &[String],
) -> Vec<Element> {
    let strand = |label: usize| match label_names.get(label) {
        Some(n) if n.ends_with("(+)") => '+',
        Some(n) if n.ends_with("(-)") => '-',
        _ => '.',
    };
    let mut out: Vec<Element> = Vec::new();
    for (r, (cls, conf)) in calls.classes.iter().zip(&calls.confidence).enumerate() {
        let mut run: Option<(usize, usize, u64)> = None; // (start, class, confidence sum)
        for p in 0..=cls.len() {
            let here = (p < cls.len())
                .then(|| (cls[p] as usize, conf[p]))
                .filter(|&(c, q)| classes.contains(&c) && q as f64 >= min_score * 255.0);
            match (run, here) {
                (Some((start, c, total)), Some((c2, q))) if c == c2 => {
                    run = Some((start, c, total + q as u64));
                }
                (previous, next) => {
                    if let Some((start, c, total)) = previous {
                        out.push(Element {
                            record: r,
                            start,
                            end: p,
                            strand: strand(c),
                            label: c,
                            score: total as f64 / (p - start) as f64 / 255.0,
                            windows: 1,
                        });
                    }
                    run = next.map(|(c, q)| (p, c, q as u64));
                }
            }
        }
    }
    out
}

/// Merges overlapping (or touching) windows of the same record, strand and class into elements,
/// keeping only classes in `classes` with probability ≥ `min_score`. Sorted by position.
pub fn merge_elements(calls: &[WindowCall], classes: &[usize], min_score: f64) -> Vec<Element> {
    join_elements(
        calls
            .iter()
            .filter(|c| classes.contains(&c.label) && c.score >= min_score)
            .map(|c| Element {
                record: c.record,
                start: c.start,
                end: c.end,
                strand: c.strand,
                label: c.label,
                score: c.score,
                windows: 1,
            })
            .collect(),
    )
}

/// The one rule that makes elements, for windows and for pieces of elements alike: items of the
/// same record, strand and class that touch or overlap (in start order) are joined, keeping the
/// higher score. Sorted by position.
fn join_elements(mut items: Vec<Element>) -> Vec<Element> {
    items.sort_by_key(|e| (e.record, e.strand, e.label, e.start));
    let mut out: Vec<Element> = Vec::new();
    for c in items {
        match out.last_mut() {
            Some(e)
                if e.record == c.record
                    && e.strand == c.strand
                    && e.label == c.label
                    && c.start <= e.end =>
            {
                e.end = e.end.max(c.end);
                e.score = e.score.max(c.score);
                e.windows += c.windows;
            }
            _ => out.push(c),
        }
    }
    out.sort_by_key(|e| (e.record, e.start, e.end, e.strand));
    out
}

/// The BED of `elements` (BED6: record name, start, end, class name, score as probability ×
/// 1000, strand), as `dnalm label` writes it.
pub fn elements_bed(elements: &[Element], records: &[String], label_names: &[String]) -> String {
    let mut bed = String::new();
    for e in elements {
        bed.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            records[e.record],
            e.start,
            e.end,
            label_names[e.label],
            (e.score * 1000.0).round() as u32,
            e.strand
        ));
    }
    bed
}

/// Merges the BED files (`predicted.bed`) that the shards of one `dnalm label` job wrote, given
/// as `(name, text)` in shard order, into the BED of the whole job: an element that crosses a
/// shard boundary was written in two pieces, one per shard, and is joined again with the rule
/// of [`merge_elements`] (same record, strand and class, touching or overlapping; the score is
/// the higher one). Records keep their order of first appearance, which is genome order.
pub fn merge_bed_shards(shards: &[(std::path::PathBuf, String)]) -> Result<String, EvalError> {
    // Names as indices, in order of first appearance (records: genome order).
    fn index_of(names: &mut Vec<String>, name: &str) -> usize {
        names.iter().position(|n| n == name).unwrap_or_else(|| {
            names.push(name.to_string());
            names.len() - 1
        })
    }
    let (mut records, mut classes) = (Vec::new(), Vec::new());
    let mut pieces = Vec::new();
    for (source, text) in shards {
        for (i, line) in text.lines().enumerate() {
            let bad = |message: String| EvalError::Format {
                path: source.clone(),
                message: format!("line {}: {message}", i + 1),
            };
            let cols: Vec<&str> = line.split('\t').collect();
            let [chrom, start, end, name, score, strand] = cols[..] else {
                return Err(bad(format!(
                    "expected the 6 columns dnalm label writes, found {}",
                    cols.len()
                )));
            };
            let number = |what: &str, text: &str| {
                text.parse::<usize>()
                    .map_err(|_| bad(format!("{what} '{text}' is not a whole number")))
            };
            let strand = match strand {
                "+" => '+',
                "-" => '-',
                "." => '.',
                other => return Err(bad(format!("strand '{other}' is not +, - or ."))),
            };
            pieces.push(Element {
                record: index_of(&mut records, chrom),
                start: number("start", start)?,
                end: number("end", end)?,
                strand,
                label: index_of(&mut classes, name),
                // Back to the probability `elements_bed` rounds to thousandths, exactly.
                score: number("score", score)? as f64 / 1000.0,
                windows: 1,
            });
        }
    }
    Ok(elements_bed(&join_elements(pieces), &records, &classes))
}

/// Assigns each window to a split by the genome block its bases lie in (blocks of `block`
/// bases, shuffled with `seed`, 70/10/20 of the bases); windows that cross into another split's
/// block get `None`, so no bases are shared between splits.
pub fn window_splits(
    genome: &Genome,
    calls: &[WindowCall],
    block: usize,
    seed: u64,
) -> Result<Vec<Option<Split>>, EvalError> {
    let split = split_genome(
        &genome.lengths(),
        &SplitConfig {
            unit: SplitUnit::Block(block),
            fractions: [0.7, 0.1, 0.2],
            seed,
        },
    )?;
    Ok(calls
        .iter()
        .map(|c| {
            Split::ALL.into_iter().find(|s| {
                split
                    .get(*s)
                    .iter()
                    .any(|g| g.record == c.record && g.start <= c.start && c.end <= g.end)
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(start: usize, strand: char, label: usize, score: f64) -> WindowCall {
        WindowCall {
            record: 0,
            start,
            end: start + 100,
            strand,
            label,
            score,
        }
    }

    #[test]
    fn sharded_beds_merge_into_the_whole_genome_bed() {
        // Two records, windows of 100 every 50 on both strands, classes from a fixed LCG so
        // that runs of one class cross every possible shard boundary.
        let mut state = 7u64;
        let mut calls = Vec::new();
        for (record, len) in [(0usize, 3000usize), (1, 1200)] {
            for start in (0..=len - 100).step_by(50) {
                for strand in ['+', '-'] {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let r = (state >> 33) % 10;
                    calls.push(WindowCall {
                        record,
                        start,
                        end: start + 100,
                        strand,
                        label: usize::from(r < 4) + 2 * usize::from(r == 9),
                        score: 0.5 + (r as f64) / 20.0,
                    });
                }
            }
        }
        let records = vec!["chrA".to_string(), "chrB".to_string()];
        let labels = vec!["bg".to_string(), "gene".to_string(), "rep".to_string()];
        let bed = |calls: &[WindowCall]| {
            elements_bed(&merge_elements(calls, &[1, 2], 0.5), &records, &labels)
        };
        let whole = bed(&calls);
        assert!(whole.lines().count() > 20, "{whole}");
        for n in 1..=7 {
            let shards: Vec<(std::path::PathBuf, String)> = (1..=n)
                .map(|i| {
                    let range = Shard::new(i, n).unwrap().range(calls.len());
                    (format!("s{i}").into(), bed(&calls[range]))
                })
                .collect();
            assert_eq!(merge_bed_shards(&shards).unwrap(), whole, "{n} shards");
        }
        let bad = [("s1.bed".into(), "chrA\t1\tx\tgene\t900\t+\n".to_string())];
        let err = merge_bed_shards(&bad).unwrap_err().to_string();
        assert!(err.contains("s1.bed: line 1: end 'x'"), "{err}");
    }

    #[test]
    fn overlapping_windows_of_one_class_and_strand_merge() {
        let calls = [
            call(0, '+', 1, 0.9),
            call(50, '+', 1, 0.7),
            call(150, '+', 1, 0.95), // touches the previous window's end
            call(400, '+', 1, 0.8),
            call(50, '-', 1, 0.6),
            call(500, '+', 0, 0.99), // background class
            call(600, '+', 1, 0.4),  // below the threshold
        ];
        let e = merge_elements(&calls, &[1], 0.5);
        assert_eq!(e.len(), 3);
        assert_eq!((e[0].start, e[0].end, e[0].windows), (0, 250, 3));
        assert!((e[0].score - 0.95).abs() < 1e-12);
        assert_eq!((e[1].start, e[1].strand), (50, '-'));
        assert_eq!((e[2].start, e[2].end), (400, 500));
    }

    #[test]
    fn windows_never_share_bases_across_splits() {
        let genome = Genome::from_records(vec![dnalm_seq::SequenceRecord::new(
            "g",
            vec![b'A'; 10_000],
        )]);
        let calls: Vec<WindowCall> = (0..99).map(|i| call(i * 100, '+', 0, 1.0)).collect();
        let splits = window_splits(&genome, &calls, 1000, 1).unwrap();
        assert!(splits.iter().all(Option::is_some)); // windows tile the 1 kb blocks exactly
        let crossing: Vec<WindowCall> = (0..19).map(|i| call(i * 500 + 450, '+', 0, 1.0)).collect();
        let s = window_splits(&genome, &crossing, 1000, 1).unwrap();
        for (c, sp) in crossing.iter().zip(&s) {
            // A window across a block boundary keeps a split only if both blocks share it.
            if let Some(sp) = sp {
                let blocks = [c.start / 1000, (c.end - 1) / 1000];
                let all = splits
                    .iter()
                    .zip(&calls)
                    .filter(|(_, w)| blocks.contains(&(w.start / 1000)));
                for (other, _) in all {
                    assert_eq!(other.as_ref(), Some(sp));
                }
            }
        }
    }

    /// Runs of element classes above the score become elements, with the run's mean
    /// probability and the strand its class name carries; uncalled bases break runs.
    #[test]
    fn runs_of_called_bases_become_elements() {
        let calls = BaseCalls {
            classes: vec![vec![0, 1, 1, 2, 2, 0, u8::MAX, 1, 1, 3]],
            confidence: vec![vec![255, 255, 153, 255, 51, 255, 0, 255, 255, 255]],
        };
        let names: Vec<String> = ["other", "CDS(+)", "CDS(-)", "tRNA"]
            .map(String::from)
            .to_vec();
        let found = base_elements(&calls, &[1, 2, 3], 0.0, &names);
        let spans: Vec<(usize, usize, char, usize)> = found
            .iter()
            .map(|e| (e.start, e.end, e.strand, e.label))
            .collect();
        assert_eq!(
            spans,
            [
                (1, 3, '+', 1),
                (3, 5, '-', 2),
                (7, 9, '+', 1),
                (9, 10, '.', 3)
            ]
        );
        assert!((found[0].score - (255.0 + 153.0) / 2.0 / 255.0).abs() < 1e-9);
        // At 0.5, the base at 0.2 (51/255) leaves its run.
        let strict = base_elements(&calls, &[2], 0.5, &names);
        assert_eq!((strict[0].start, strict[0].end), (3, 4));
        assert_eq!(
            elements_bed(&strict, &["chr".into()], &names),
            "chr\t3\t4\tCDS(-)\t1000\t-\n"
        );
    }

    /// Overlapping windows average their probabilities per base; bases settle once no later
    /// window can reach them; a gap between windows stays uncalled.
    #[test]
    fn base_votes_average_overlapping_windows_and_settle_in_order() {
        let mut classes = vec![u8::MAX; 10];
        let mut confidence = vec![0u8; 10];
        let mut votes = BaseVotes::new(2);
        // Window at 0 (4 bases): class 0 at 0.8; window at 2: class 1 at 0.6 (0.4 for class 0).
        votes.add(0, &[0.8, 0.2, 0.8, 0.2, 0.8, 0.2, 0.8, 0.2]);
        votes.add(2, &[0.4, 0.6, 0.4, 0.6, 0.4, 0.6, 0.4, 0.6]);
        votes.settle(Some(2), &mut classes, &mut confidence);
        assert_eq!(&classes[..4], &[0, 0, u8::MAX, u8::MAX]);
        // A window far ahead: bases 2-5 settle, 6-7 stay uncalled, 8-9 come from it alone.
        votes.add(8, &[0.1, 0.9, 0.3, 0.7]);
        votes.settle(None, &mut classes, &mut confidence);
        // Bases 2-3: (0.8 + 0.4) / 2 = 0.6 for class 0; 4-5: 0.6 for class 1.
        assert_eq!(classes, [0, 0, 0, 0, 1, 1, u8::MAX, u8::MAX, 1, 1]);
        assert_eq!(confidence, [204, 204, 153, 153, 153, 153, 0, 0, 230, 179]);
    }
}
