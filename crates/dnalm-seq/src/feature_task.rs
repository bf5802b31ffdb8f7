//! Tasks from annotations: genome windows labelled with every annotated feature class they hold
//! (multi-label, `dnalm make-task multi-label`), or with the class of each base (per-base,
//! `dnalm make-task segmentation`).
//!
//! Each split's segments (a [`GenomeSplit`], so splits never share bases) are tiled with
//! non-overlapping windows; windows holding an `N` are dropped; the rows of each split are a
//! seeded draw from its windows. A window has label `T` when a feature of class `T` covers at
//! least `min_overlap` of its bases (or all of the feature, when it is shorter); with `stranded`,
//! `T(+)` and `T(-)` instead (a feature without a strand counts on both); with `ends`, also
//! `T_5p` / `T_3p` when the window holds the feature's first / last base on its strand (start
//! and stop codons, for CDS).
//!
//! Per-base ([`segmentation_task`]): every base gets the class of the feature covering it, or the
//! background class (index 0) when none does. **Precedence**: where features of different classes
//! overlap, the class listed first wins (`--classes exon,gene`: exon bases are `exon`, the rest of
//! the gene `gene`, i.e. intron and UTR); with `stranded`, `T(+)` wins over `T(-)` and both over
//! the next class (a feature without a strand counts as `T(+)`). A BED12 feature covers its
//! blocks only.

use std::collections::BTreeSet;

use rand::{seq::SliceRandom, Rng};

use crate::{
    sampler::ClassKey, window::GenomeSplit, Genome, Interval, IntervalIndex, Result, SeqError,
    Split, Strand,
};

/// What labels a window gets.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTaskSpec {
    /// Window length in bases.
    pub length: usize,
    /// Windows per split (train, valid, test).
    pub rows: [usize; 3],
    /// The feature classes to label, in label order; empty: every class in the annotations
    /// (sorted).
    pub classes: Vec<String>,
    /// Which annotation field is a feature's class.
    pub key: ClassKey,
    /// One label per strand.
    pub stranded: bool,
    /// Also label the windows that hold a feature's 5' or 3' end.
    pub ends: bool,
    /// Bases of the window a feature must cover (capped at the feature's length).
    pub min_overlap: usize,
}

/// One window of a multi-label task.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureWindow {
    /// Record (chromosome) index.
    pub record: usize,
    /// 0-based start.
    pub start: usize,
    /// The bases.
    pub sequence: Vec<u8>,
    /// Indices into the task's label names.
    pub labels: Vec<usize>,
}

/// A multi-label task drawn from a genome.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTask {
    /// The label names.
    pub label_names: Vec<String>,
    /// The windows of each split (train, valid, test).
    pub rows: [Vec<FeatureWindow>; 3],
}

/// Draws the task (see the module notes). Fails when a class asked for is not in the
/// annotations (listing those that are), or a split has fewer windows than asked for.
pub fn feature_task(
    genome: &Genome,
    split: &GenomeSplit,
    annotations: Vec<Interval>,
    spec: &FeatureTaskSpec,
    rng: &mut impl Rng,
) -> Result<FeatureTask> {
    let classes = resolve_classes(&annotations, &spec.classes, spec.key)?;
    let mut label_names = Vec::new();
    for class in &classes {
        if spec.stranded {
            label_names.push(format!("{class}(+)"));
            label_names.push(format!("{class}(-)"));
        } else {
            label_names.push(class.clone());
        }
        if spec.ends {
            label_names.push(format!("{class}_5p"));
            label_names.push(format!("{class}_3p"));
        }
    }
    let per_class = label_names.len() / classes.len();
    if spec.length == 0 {
        return Err(SeqError::invalid("window length", "must be positive"));
    }
    let names = genome.names();
    let index = IntervalIndex::new(annotations);
    let mut rows: [Vec<FeatureWindow>; 3] = Default::default();
    for (s, which) in Split::ALL.iter().enumerate() {
        let windows = draw_windows(genome, split, *which, spec.length, spec.rows[s], rng)?;
        for (record, start) in windows {
            let end = start + spec.length;
            let mut labels = BTreeSet::new();
            for iv in index.overlapping(&names[record], start as u64, end as u64) {
                let Some(c) = spec
                    .key
                    .class_of(iv)
                    .and_then(|class| classes.iter().position(|k| *k == class))
                else {
                    continue;
                };
                let base = c * per_class;
                let covered = iv.end.min(end as u64) - iv.start.max(start as u64);
                if covered >= (spec.min_overlap as u64).min(iv.len()).max(1) {
                    match (spec.stranded, iv.strand) {
                        (false, _) => {
                            labels.insert(base);
                        }
                        (true, Strand::Forward) => {
                            labels.insert(base);
                        }
                        (true, Strand::Reverse) => {
                            labels.insert(base + 1);
                        }
                        (true, Strand::Unknown) => {
                            labels.extend([base, base + 1]);
                        }
                    }
                }
                if spec.ends {
                    let first = base + if spec.stranded { 2 } else { 1 };
                    let (five, three) = match iv.strand {
                        Strand::Reverse => (iv.end - 1, iv.start),
                        _ => (iv.start, iv.end - 1),
                    };
                    let inside = |p: u64| (start as u64..end as u64).contains(&p);
                    if !iv.is_empty() && inside(five) {
                        labels.insert(first);
                    }
                    if !iv.is_empty() && inside(three) {
                        labels.insert(first + 1);
                    }
                }
            }
            rows[s].push(FeatureWindow {
                record,
                start,
                sequence: genome.bases(record, start, end).to_vec(),
                labels: labels.into_iter().collect(),
            });
        }
    }
    Ok(FeatureTask { label_names, rows })
}

/// The feature classes asked for (in that order), or every class in the annotations (sorted);
/// fails on a class the annotations lack, listing those they have.
fn resolve_classes(
    annotations: &[Interval],
    asked: &[String],
    key: ClassKey,
) -> Result<Vec<String>> {
    let present: BTreeSet<String> = annotations
        .iter()
        .filter_map(|iv| key.class_of(iv))
        .collect();
    if let Some(missing) = asked.iter().find(|c| !present.contains(*c)) {
        return Err(SeqError::invalid(
            "feature classes",
            format!(
                "no annotation of class '{missing}' (the annotations have: {})",
                present.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let classes: Vec<String> = if asked.is_empty() {
        present.into_iter().collect()
    } else {
        asked.to_vec()
    };
    if classes.is_empty() {
        return Err(SeqError::invalid("annotations", "no feature has a class"));
    }
    Ok(classes)
}

/// A seeded draw of `rows` non-overlapping `length`-base windows without `N` from one split's
/// segments, sorted by position; fails when the split has fewer.
fn draw_windows(
    genome: &Genome,
    split: &GenomeSplit,
    which: Split,
    length: usize,
    rows: usize,
    rng: &mut impl Rng,
) -> Result<Vec<(usize, usize)>> {
    let mut windows: Vec<(usize, usize)> = split
        .get(which)
        .iter()
        .flat_map(|g| {
            (g.start..=g.end.saturating_sub(length))
                .step_by(length)
                .filter(move |&w| w + length <= g.end)
                .map(move |w| (g.record, w))
        })
        .filter(|&(r, w)| !genome.bases(r, w, w + length).contains(&b'N'))
        .collect();
    if windows.len() < rows {
        return Err(SeqError::invalid(
            "task rows",
            format!(
                "the {} split has {} windows of {length} bases without N; {rows} were asked for",
                which.as_str(),
                windows.len(),
            ),
        ));
    }
    windows.shuffle(rng);
    windows.truncate(rows);
    windows.sort_unstable();
    Ok(windows)
}

/// What classes the bases of a per-base task get.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentationSpec {
    /// Window length in bases.
    pub length: usize,
    /// Windows per split (train, valid, test).
    pub rows: [usize; 3],
    /// The feature classes, in precedence order (the first listed wins where features overlap);
    /// empty: every class in the annotations (sorted).
    pub classes: Vec<String>,
    /// Which annotation field is a feature's class.
    pub key: ClassKey,
    /// One class per strand (`T(+)`, `T(-)`).
    pub stranded: bool,
    /// The name of the class of bases no feature covers (index 0).
    pub background: String,
}

/// One window of a per-base task.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentedWindow {
    /// Record (chromosome) index.
    pub record: usize,
    /// 0-based start.
    pub start: usize,
    /// The bases.
    pub sequence: Vec<u8>,
    /// The class index of each base.
    pub classes: Vec<u8>,
}

/// A per-base task drawn from a genome.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentationTask {
    /// The class names, background first.
    pub class_names: Vec<String>,
    /// The windows of each split (train, valid, test).
    pub rows: [Vec<SegmentedWindow>; 3],
}

/// Draws a per-base task (see the module notes for the precedence rule). Fails as
/// [`feature_task`] does, and when the classes (with the background) exceed
/// [`MAX_BASE_CLASSES`](crate::task::MAX_BASE_CLASSES) or the background shares a class's name.
pub fn segmentation_task(
    genome: &Genome,
    split: &GenomeSplit,
    annotations: Vec<Interval>,
    spec: &SegmentationSpec,
    rng: &mut impl Rng,
) -> Result<SegmentationTask> {
    if spec.length == 0 {
        return Err(SeqError::invalid("window length", "must be positive"));
    }
    let classes = resolve_classes(&annotations, &spec.classes, spec.key)?;
    let mut class_names = vec![spec.background.clone()];
    for class in &classes {
        if spec.stranded {
            class_names.push(format!("{class}(+)"));
            class_names.push(format!("{class}(-)"));
        } else {
            class_names.push(class.clone());
        }
    }
    if class_names[1..].contains(&spec.background) {
        return Err(SeqError::invalid(
            "background class",
            format!(
                "'{}' is also a feature class; name the background otherwise",
                spec.background
            ),
        ));
    }
    if class_names.len() > crate::task::MAX_BASE_CLASSES {
        return Err(SeqError::invalid(
            "feature classes",
            format!(
                "{} classes with the background; a per-base task holds at most {}",
                class_names.len(),
                crate::task::MAX_BASE_CLASSES
            ),
        ));
    }
    let names = genome.names();
    let index = IntervalIndex::new(annotations);
    let mut rows: [Vec<SegmentedWindow>; 3] = Default::default();
    for (s, which) in Split::ALL.iter().enumerate() {
        for (record, start) in draw_windows(genome, split, *which, spec.length, spec.rows[s], rng)?
        {
            let end = start + spec.length;
            // Each base keeps the lowest (highest-precedence) class index painted on it.
            let mut painted = vec![u8::MAX; spec.length];
            for iv in index.overlapping(&names[record], start as u64, end as u64) {
                let Some(c) = spec
                    .key
                    .class_of(iv)
                    .and_then(|class| classes.iter().position(|k| *k == class))
                else {
                    continue;
                };
                let class = if spec.stranded {
                    1 + 2 * c + usize::from(iv.strand == Strand::Reverse)
                } else {
                    1 + c
                } as u8;
                let whole = [(iv.start, iv.end)];
                let parts: &[(u64, u64)] = if iv.blocks.is_empty() {
                    &whole
                } else {
                    &iv.blocks
                };
                for &(a, b) in parts {
                    let (a, b) = (a.max(start as u64) as usize, b.min(end as u64) as usize);
                    for p in painted
                        .iter_mut()
                        .take(b.saturating_sub(start))
                        .skip(a.saturating_sub(start))
                    {
                        *p = (*p).min(class);
                    }
                }
            }
            rows[s].push(SegmentedWindow {
                record,
                start,
                sequence: genome.bases(record, start, end).to_vec(),
                classes: painted
                    .into_iter()
                    .map(|c| if c == u8::MAX { 0 } else { c })
                    .collect(),
            });
        }
    }
    Ok(SegmentationTask { class_names, rows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{window::Segment, SequenceRecord};
    use rand::SeedableRng;

    fn gene(start: u64, end: u64, strand: Strand) -> Interval {
        Interval {
            chrom: "c".into(),
            start,
            end,
            name: None,
            kind: Some("CDS".into()),
            strand,
            score: None,
            blocks: vec![],
        }
    }

    /// Windows get the classes they overlap, per strand, and the ends they hold; nothing else.
    #[test]
    fn windows_are_labelled_with_the_features_and_ends_they_hold() {
        let bases: Vec<u8> = (0..400).map(|i| b"ACGT"[i % 4]).collect();
        let genome = Genome::from_records(vec![SequenceRecord {
            name: "c".into(),
            description: None,
            sequence: bases,
            soft_mask: Default::default(),
            quality: None,
        }]);
        let all = |start, end| {
            vec![Segment {
                record: 0,
                start,
                end,
            }]
        };
        let split = GenomeSplit {
            train: all(0, 400),
            valid: Vec::new(),
            test: Vec::new(),
        };
        // + gene over windows 0-1 (5' end in window 0, 3' in 1); - gene inside window 3.
        let genes = vec![
            gene(50, 150, Strand::Forward),
            gene(310, 390, Strand::Reverse),
        ];
        let spec = FeatureTaskSpec {
            length: 100,
            rows: [4, 0, 0],
            classes: Vec::new(),
            key: ClassKey::FeatureType,
            stranded: true,
            ends: true,
            min_overlap: 50,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let task = feature_task(&genome, &split, genes.clone(), &spec, &mut rng).unwrap();
        assert_eq!(task.label_names, ["CDS(+)", "CDS(-)", "CDS_5p", "CDS_3p"]);
        let labels: Vec<(usize, Vec<usize>)> = task.rows[0]
            .iter()
            .map(|w| (w.start, w.labels.clone()))
            .collect();
        // Window 3 holds the - gene's 3' end (310) and 5' end (389).
        assert_eq!(
            labels,
            [
                (0, vec![0, 2]),
                (100, vec![0, 3]),
                (200, vec![]),
                (300, vec![1, 2, 3])
            ]
        );
        let wrong = FeatureTaskSpec {
            classes: vec!["exon".into()],
            ..spec.clone()
        };
        let err = feature_task(&genome, &split, genes.clone(), &wrong, &mut rng).unwrap_err();
        assert!(
            err.to_string().contains("no annotation of class 'exon'")
                && err.to_string().contains("CDS"),
            "{err}"
        );
        let many = FeatureTaskSpec {
            rows: [5, 0, 0],
            ..spec
        };
        let err = feature_task(&genome, &split, genes, &many, &mut rng).unwrap_err();
        assert!(err.to_string().contains("has 4 windows"), "{err}");
    }

    /// Bases take the class of the feature over them, the first listed class winning where
    /// features overlap; uncovered bases are background; BED12 features cover their blocks only.
    #[test]
    fn bases_take_the_class_listed_first() {
        let bases: Vec<u8> = (0..200).map(|i| b"ACGT"[i % 4]).collect();
        let genome = Genome::from_records(vec![SequenceRecord {
            name: "c".into(),
            description: None,
            sequence: bases,
            soft_mask: Default::default(),
            quality: None,
        }]);
        let split = GenomeSplit {
            train: vec![Segment {
                record: 0,
                start: 0,
                end: 200,
            }],
            valid: Vec::new(),
            test: Vec::new(),
        };
        let mut exons = gene(10, 60, Strand::Forward);
        exons.kind = Some("exon".into());
        exons.blocks = vec![(10, 20), (50, 60)];
        let mut span = gene(5, 70, Strand::Forward);
        span.kind = Some("gene".into());
        let minus = gene(150, 160, Strand::Reverse);
        let spec = SegmentationSpec {
            length: 100,
            rows: [2, 0, 0],
            classes: vec!["exon".into(), "gene".into(), "CDS".into()],
            key: ClassKey::FeatureType,
            stranded: false,
            background: "other".into(),
        };
        let annotations = vec![span, exons, minus];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let task =
            segmentation_task(&genome, &split, annotations.clone(), &spec, &mut rng).unwrap();
        assert_eq!(task.class_names, ["other", "exon", "gene", "CDS"]);
        let first = &task.rows[0][0].classes;
        let runs = |c: &[u8]| {
            let mut out: Vec<(u8, usize)> = Vec::new();
            for &k in c {
                match out.last_mut() {
                    Some((last, n)) if *last == k => *n += 1,
                    _ => out.push((k, 1)),
                }
            }
            out
        };
        // 0-4 other, 5-9 gene, 10-19 exon, 20-49 gene (intron), 50-59 exon, 60-69 gene.
        assert_eq!(
            runs(first),
            [(0, 5), (2, 5), (1, 10), (2, 30), (1, 10), (2, 10), (0, 30)]
        );
        assert_eq!(runs(&task.rows[0][1].classes), [(0, 50), (3, 10), (0, 40)]);
        // Stranded: the minus-strand CDS is CDS(-).
        let stranded = SegmentationSpec {
            stranded: true,
            ..spec.clone()
        };
        let task =
            segmentation_task(&genome, &split, annotations.clone(), &stranded, &mut rng).unwrap();
        assert_eq!(
            task.class_names[5..],
            ["CDS(+)".to_string(), "CDS(-)".to_string()]
        );
        assert_eq!(task.rows[0][1].classes[55], 6);
        let clash = SegmentationSpec {
            background: "gene".into(),
            ..spec
        };
        let err = segmentation_task(&genome, &split, annotations, &clash, &mut rng).unwrap_err();
        assert!(
            err.to_string().contains("'gene' is also a feature class"),
            "{err}"
        );
    }
}
