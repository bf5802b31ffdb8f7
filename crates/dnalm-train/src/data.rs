//! The pretraining batch pipeline: genome windows -> (reverse-complement augmentation) -> tokens
//! -> objective -> padded batch.
//!
//! Every batch is a pure function of `(seed, step)`: the windows, the augmentation, the objective
//! drawn from a mixture and its masking all use random streams derived from those two numbers
//! alone. Hence the same config and seed give the same batches, a run resumed at step N sees
//! exactly the batches it would have seen, and batches can be prepared in parallel, ahead of the
//! model ([`BatchPipeline::prefetch`]), without changing them.

use std::sync::{mpsc, Arc};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use dnalm_seq::{
    alphabet::reverse_complement,
    sampler::{RarityBalancedSampler, BACKGROUND},
    window::{RandomWindows, Segment},
    SequenceStore,
};
use dnalm_tokenize::{AnyTokenizer, Tokenizer};

use crate::objectives::{
    Annotated, Attention, Objective, ObjectiveError, ObjectiveExample, ObjectiveKind,
    ObjectiveMixture, TargetKind, TokenWindow, VocabInfo,
};

/// Where windows come from.
pub enum WindowSource {
    /// Uniformly over the allowed segments (any start).
    Uniform(RandomWindows),
    /// Uniformly over a fixed tiling (starts on a stride grid, as `dnalm windows` lists them).
    Tiled(Vec<Segment>),
    /// Rarity-balanced over annotation classes; its classes also feed annotation-aware masking.
    Balanced(RarityBalancedSampler),
}

/// Batch settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    /// Windows per batch.
    pub batch_size: usize,
    /// Probability that a window is reverse-complemented.
    pub reverse_complement: f64,
    /// Seed of every random stream.
    pub seed: u64,
}

/// How positions of a batch may attend to each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchAttention {
    /// Bidirectional (padding excluded through `padding_mask`).
    Bidirectional,
    /// Causal (padding excluded through `padding_mask`).
    Causal,
    /// Two-stream masks, `rows x len x len`, row-major.
    TwoStream {
        /// Content stream.
        content: Vec<bool>,
        /// Query stream.
        query: Vec<bool>,
    },
}

/// Where a batch row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowOrigin {
    /// The genome window.
    pub window: Segment,
    /// Whether it was reverse-complemented.
    pub reverse: bool,
    /// The sampler class it was drawn for (balanced sampling only).
    pub class: Option<usize>,
}

/// A padded batch, row-major `rows x seq_len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Training step this batch belongs to.
    pub step: u64,
    /// The objective that made it.
    pub objective: ObjectiveKind,
    /// Number of rows.
    pub rows: usize,
    /// Padded length.
    pub seq_len: usize,
    /// Model inputs.
    pub input_ids: Vec<u32>,
    /// Position ids.
    pub position_ids: Vec<u32>,
    /// Targets.
    pub targets: Vec<u32>,
    /// Where the loss counts.
    pub loss_mask: Vec<bool>,
    /// True for real tokens, false for padding.
    pub padding_mask: Vec<bool>,
    /// Attention pattern.
    pub attention: BatchAttention,
    /// Kind of targets.
    pub target_kind: TargetKind,
    /// Origin of each row.
    pub origins: Vec<RowOrigin>,
}

/// Makes batches; see the [module docs](self).
pub struct BatchPipeline {
    genome: Arc<SequenceStore>,
    /// Where annotations come from when windows are drawn uniformly (annotation masking).
    annotations: Option<RarityBalancedSampler>,
    tokenizer: Arc<AnyTokenizer>,
    vocab: VocabInfo,
    objectives: ObjectiveMixture,
    source: WindowSource,
    config: BatchConfig,
}

/// Stream id reserved for per-batch draws (the objective); rows use their index.
const BATCH_STREAM: u64 = (1 << 20) - 1;

impl BatchPipeline {
    /// Assembles a pipeline. The objectives are checked against the tokenizer's vocabulary.
    pub fn new(
        genome: Arc<SequenceStore>,
        tokenizer: Arc<AnyTokenizer>,
        objectives: Vec<(crate::ObjectiveConfig, f64)>,
        source: WindowSource,
        config: BatchConfig,
    ) -> Result<Self, ObjectiveError> {
        Self::with_annotations(genome, tokenizer, objectives, source, None, config)
    }

    /// Like [`BatchPipeline::new`], with an annotation index for uniformly drawn windows (a
    /// balanced source is its own index). Annotation masking needs one or the other; its
    /// `element_types` are resolved here against the index's class names.
    pub fn with_annotations(
        genome: Arc<SequenceStore>,
        tokenizer: Arc<AnyTokenizer>,
        mut objectives: Vec<(crate::ObjectiveConfig, f64)>,
        source: WindowSource,
        annotations: Option<RarityBalancedSampler>,
        config: BatchConfig,
    ) -> Result<Self, ObjectiveError> {
        let vocab = VocabInfo::of(tokenizer.as_ref());
        let index = match &source {
            WindowSource::Balanced(s) => Some(s),
            WindowSource::Uniform(_) | WindowSource::Tiled(_) => annotations.as_ref(),
        };
        if matches!(&source, WindowSource::Tiled(t) if t.is_empty()) {
            return Err(ObjectiveError::Invalid {
                what: "window tiling",
                value: 0.0,
                message: "no window fits in the allowed segments",
            });
        }
        for (objective, _) in &mut objectives {
            if let crate::ObjectiveConfig::Annotation(masking) = objective {
                let Some(index) = index else {
                    return Err(ObjectiveError::MissingAnnotations(
                        "annotation masking needs annotations (a BED/GFF file)".into(),
                    ));
                };
                let classes = index.classes();
                for name in &masking.element_types {
                    match classes.iter().position(|c| c == name) {
                        Some(i) => masking.classes.push(i as u32),
                        None => {
                            return Err(ObjectiveError::MissingAnnotations(format!(
                                "element type '{name}' is not among the annotation classes ({})",
                                classes.join(", ")
                            )))
                        }
                    }
                }
            }
        }
        let objectives = ObjectiveMixture::new(objectives, &vocab)?;
        if config.batch_size == 0 || config.batch_size >= BATCH_STREAM as usize {
            return Err(ObjectiveError::Invalid {
                what: "batch size",
                value: config.batch_size as f64,
                message: "must be between 1 and 2^20 - 2",
            });
        }
        crate::objectives::check_rate("reverse complement", config.reverse_complement)?;
        Ok(BatchPipeline {
            genome,
            annotations,
            tokenizer,
            vocab,
            objectives,
            source,
            config,
        })
    }

    /// A random stream that depends only on the seed, the step and the stream index.
    fn stream(&self, step: u64, index: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
        rng.set_stream((step << 20) | index);
        rng
    }

    /// The batch of training step `step`.
    pub fn batch(&self, step: u64) -> Batch {
        let objective = self.objectives.pick(&mut self.stream(step, BATCH_STREAM));
        let rows: Vec<(RowOrigin, ObjectiveExample)> = (0..self.config.batch_size)
            .into_par_iter()
            .map(|row| self.row(objective, &mut self.stream(step, row as u64)))
            .collect();
        collate(
            step,
            objective.kind(),
            rows,
            self.vocab.specials.pad.unwrap_or(0),
        )
    }

    fn row(
        &self,
        objective: &crate::ObjectiveConfig,
        rng: &mut ChaCha8Rng,
    ) -> (RowOrigin, ObjectiveExample) {
        let (window, class) = match &self.source {
            WindowSource::Uniform(w) => (w.draw(rng), None),
            WindowSource::Tiled(tiles) => (tiles[rng.random_range(0..tiles.len())], None),
            WindowSource::Balanced(s) => {
                let w = s.sample_with(rng);
                (w.window, Some(w.class))
            }
        };
        let reverse = rng.random::<f64>() < self.config.reverse_complement;
        let forward = self.genome.bases(window.record, window.start, window.end);
        let bases = if reverse {
            reverse_complement(&forward)
        } else {
            forward.into_owned()
        };
        let annotations = self.annotations_in(window, reverse);
        let encoding = self.tokenizer.encode(&bases);
        let token_window = TokenWindow {
            ids: &encoding.ids,
            offsets: &encoding.offsets,
            annotations: &annotations,
        };
        let example = objective.apply(&token_window, &self.vocab, rng);
        (
            RowOrigin {
                window,
                reverse,
                class,
            },
            example,
        )
    }

    /// The annotated elements overlapping a window, in window coordinates (after reversal).
    fn annotations_in(&self, window: Segment, reverse: bool) -> Vec<Annotated> {
        let sampler = match (&self.source, &self.annotations) {
            (WindowSource::Balanced(s), _)
            | (WindowSource::Uniform(_) | WindowSource::Tiled(_), Some(s)) => s,
            (WindowSource::Uniform(_) | WindowSource::Tiled(_), None) => return Vec::new(),
        };
        let len = window.len();
        let mut out = Vec::new();
        for (class, name) in sampler.classes().iter().enumerate() {
            if *name == BACKGROUND {
                continue;
            }
            for (s, e) in sampler.class_spans_in(class, window) {
                let (s, e) = (s - window.start, e - window.start);
                let span = if reverse { (len - e, len - s) } else { (s, e) };
                out.push(Annotated {
                    span,
                    class: class as u32,
                });
            }
        }
        out
    }

    /// Batches `start, start + 1, ...` prepared on a background thread, up to `depth` ahead.
    pub fn prefetch(self: Arc<Self>, start: u64, depth: usize) -> impl Iterator<Item = Batch> {
        let (tx, rx) = mpsc::sync_channel(depth.max(1));
        std::thread::spawn(move || {
            for step in start.. {
                if tx.send(self.batch(step)).is_err() {
                    break; // the consumer is gone
                }
            }
        });
        rx.into_iter()
    }
}

fn collate(
    step: u64,
    objective: ObjectiveKind,
    rows: Vec<(RowOrigin, ObjectiveExample)>,
    pad: u32,
) -> Batch {
    let n = rows.len();
    let len = rows
        .iter()
        .map(|(_, e)| e.input_ids.len())
        .max()
        .unwrap_or(0);
    let mut batch = Batch {
        step,
        objective,
        rows: n,
        seq_len: len,
        input_ids: vec![pad; n * len],
        position_ids: vec![0; n * len],
        targets: vec![0; n * len],
        loss_mask: vec![false; n * len],
        padding_mask: vec![false; n * len],
        attention: BatchAttention::Bidirectional,
        target_kind: rows
            .first()
            .map_or(TargetKind::Token, |(_, e)| e.target_kind),
        origins: rows.iter().map(|(o, _)| *o).collect(),
    };
    let mut two_stream: Option<(Vec<bool>, Vec<bool>)> = None;
    for (r, (_, ex)) in rows.iter().enumerate() {
        let m = ex.input_ids.len();
        let row = r * len..r * len + m;
        batch.input_ids[row.clone()].copy_from_slice(&ex.input_ids);
        batch.position_ids[row.clone()].copy_from_slice(&ex.position_ids);
        batch.targets[row.clone()].copy_from_slice(&ex.targets);
        batch.loss_mask[row.clone()].copy_from_slice(&ex.loss_mask);
        batch.padding_mask[row].fill(true);
        match &ex.attention {
            Attention::Bidirectional => {}
            Attention::Causal => batch.attention = BatchAttention::Causal,
            Attention::TwoStream { content, query } => {
                let (c, q) = two_stream.get_or_insert_with(|| {
                    (vec![false; n * len * len], vec![false; n * len * len])
                });
                for i in 0..m {
                    let dst = r * len * len + i * len;
                    c[dst..dst + m].copy_from_slice(&content[i * m..(i + 1) * m]);
                    q[dst..dst + m].copy_from_slice(&query[i * m..(i + 1) * m]);
                }
            }
        }
    }
    if let Some((content, query)) = two_stream {
        batch.attention = BatchAttention::TwoStream { content, query };
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectives::{
        annotation::AnnotationMasking, causal::NextToken, mlm::MaskedLm, permutation::PermutationLm,
    };
    use crate::ObjectiveConfig;
    use dnalm_seq::{
        sampler::{ClassKey, ClassWeights},
        window::{split_genome, SplitConfig, SplitUnit},
        Genome, Interval, SequenceRecord, Strand,
    };
    use dnalm_tokenize::{Template, TokenizerKind};

    fn genome() -> Arc<SequenceStore> {
        let seq = crate::objectives::testing::bases(50_000, 11);
        Arc::new(SequenceStore::Genome(Genome::from_records(vec![
            SequenceRecord::new("chr", seq),
        ])))
    }

    fn tokenizer(kind: TokenizerKind) -> Arc<AnyTokenizer> {
        Arc::new(AnyTokenizer::new(kind, Template::Bert).unwrap())
    }

    fn uniform(segments: &[Segment]) -> WindowSource {
        WindowSource::Uniform(RandomWindows::new(segments, 256, 0).unwrap())
    }

    fn config(seed: u64) -> BatchConfig {
        BatchConfig {
            batch_size: 8,
            reverse_complement: 0.5,
            seed,
        }
    }

    #[test]
    fn batches_are_a_function_of_seed_and_step() {
        let g = genome();
        let segs = dnalm_seq::window::whole_records(&g.lengths());
        let objectives = vec![
            (ObjectiveConfig::Mlm(MaskedLm::default()), 0.7),
            (ObjectiveConfig::Permutation(PermutationLm::default()), 0.3),
        ];
        let make = || {
            BatchPipeline::new(
                g.clone(),
                tokenizer(TokenizerKind::Kmer {
                    k: 6,
                    overlapping: true,
                }),
                objectives.clone(),
                uniform(&segs),
                config(42),
            )
            .unwrap()
        };
        let (a, b) = (make(), make());
        for step in [0, 1, 7, 1000] {
            assert_eq!(a.batch(step), b.batch(step));
        }
        assert_ne!(a.batch(0).input_ids, a.batch(1).input_ids);
        // Resume: batches from step 5 on are the batches a run from step 0 saw at 5, 6, ...
        let from_zero: Vec<Batch> = Arc::new(make()).prefetch(0, 4).take(8).collect();
        let resumed: Vec<Batch> = Arc::new(make()).prefetch(5, 4).take(3).collect();
        assert_eq!(&from_zero[5..8], resumed.as_slice());
        // Shapes and padding.
        let batch = a.batch(3);
        assert_eq!(batch.input_ids.len(), batch.rows * batch.seq_len);
        assert_eq!(batch.seq_len, 256 - 6 + 1 + 2);
        let mixture_names: std::collections::BTreeSet<ObjectiveKind> =
            (0..40).map(|s| a.batch(s).objective).collect();
        assert_eq!(mixture_names.len(), 2);
    }

    #[test]
    fn windows_stay_in_their_split_and_reverse_complement_is_applied() {
        let g = genome();
        let split = split_genome(
            &g.lengths(),
            &SplitConfig {
                unit: SplitUnit::Block(5_000),
                fractions: [0.8, 0.1, 0.1],
                seed: 1,
            },
        )
        .unwrap();
        let tok = tokenizer(TokenizerKind::Nucleotide);
        let p = BatchPipeline::new(
            g.clone(),
            tok.clone(),
            vec![(ObjectiveConfig::NextToken(NextToken::default()), 1.0)],
            WindowSource::Uniform(RandomWindows::new(&split.valid, 256, 0).unwrap()),
            BatchConfig {
                batch_size: 16,
                reverse_complement: 0.5,
                seed: 3,
            },
        )
        .unwrap();
        let mut reversed = 0;
        for step in 0..10 {
            let b = p.batch(step);
            assert_eq!(b.attention, BatchAttention::Causal);
            for (r, o) in b.origins.iter().enumerate() {
                assert!(split.valid.iter().any(|s| s.record == o.window.record
                    && s.start <= o.window.start
                    && o.window.end <= s.end));
                let fwd = g.bases(o.window.record, o.window.start, o.window.end);
                let bases = if o.reverse {
                    reverse_complement(&fwd)
                } else {
                    fwd.to_vec()
                };
                let want = tok.encode(&bases).ids;
                assert_eq!(
                    &b.input_ids[r * b.seq_len..r * b.seq_len + want.len()],
                    want.as_slice()
                );
                reversed += o.reverse as usize;
            }
        }
        assert!((50..110).contains(&reversed), "{reversed} of 160 reversed");
    }

    #[test]
    fn balanced_windows_feed_annotation_masking() {
        let g = genome();
        // One 300 bp "enhancer" every 5 kb: 6% of the genome.
        let anns: Vec<Interval> = (0..10u64)
            .map(|i| Interval {
                chrom: "chr".into(),
                start: i * 5000 + 1000,
                end: i * 5000 + 1300,
                name: None,
                kind: Some("enhancer".into()),
                strand: Strand::Unknown,
                score: None,
                blocks: vec![],
            })
            .collect();
        let sampler = RarityBalancedSampler::new(
            &g.names(),
            &dnalm_seq::window::whole_records(&g.lengths()),
            &anns,
            ClassKey::FeatureType,
            &ClassWeights::Uniform,
            512,
            0,
        )
        .unwrap();
        let tok = tokenizer(TokenizerKind::Nucleotide);
        let masking = AnnotationMasking {
            element_rate: 1.0,
            element_types: vec![sampler.classes()[0].to_string()],
            background_rate: 0.0,
            ..Default::default()
        };
        let p = BatchPipeline::new(
            g.clone(),
            tok,
            vec![(ObjectiveConfig::Annotation(masking), 1.0)],
            WindowSource::Balanced(sampler),
            config(5),
        )
        .unwrap();
        let mask = p.vocab.specials.mask.unwrap();
        let mut enhancer_rows = 0;
        for step in 0..20 {
            let b = p.batch(step);
            for (r, o) in b.origins.iter().enumerate() {
                let row = &b.input_ids[r * b.seq_len..(r + 1) * b.seq_len];
                let masked: Vec<usize> = (0..b.seq_len).filter(|&i| row[i] == mask).collect();
                if o.class == Some(0) {
                    enhancer_rows += 1;
                    assert!(!masked.is_empty(), "an enhancer window masks its enhancer");
                }
                // Every masked base (token i covers base i - 1) lies in an enhancer.
                for i in masked {
                    let base = i - 1;
                    let pos = if o.reverse {
                        o.window.end - 1 - base
                    } else {
                        o.window.start + base
                    };
                    assert!(
                        anns.iter()
                            .any(|a| a.start as usize <= pos && pos < a.end as usize),
                        "masked base {pos} outside enhancers"
                    );
                }
            }
        }
        assert!(
            (50..110).contains(&enhancer_rows),
            "{enhancer_rows} of 160 rows drawn for the enhancer class"
        );
    }
}
