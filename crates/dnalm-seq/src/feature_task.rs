//! Multi-label tasks from annotations: genome windows labelled with every annotated feature class
//! they hold (`dnalm make-task multi-label`).
//!
//! Each split's segments (a [`GenomeSplit`], so splits never share bases) are tiled with
//! non-overlapping windows; windows holding an `N` are dropped; the rows of each split are a
//! seeded draw from its windows. A window has label `T` when a feature of class `T` covers at
//! least `min_overlap` of its bases (or all of the feature, when it is shorter); with `stranded`,
//! `T(+)` and `T(-)` instead (a feature without a strand counts on both); with `ends`, also
//! `T_5p` / `T_3p` when the window holds the feature's first / last base on its strand (start
//! and stop codons, for CDS).

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
    if spec.length == 0 {
        return Err(SeqError::invalid("window length", "must be positive"));
    }
    let present: BTreeSet<String> = annotations
        .iter()
        .filter_map(|iv| spec.key.class_of(iv))
        .collect();
    let classes: Vec<String> = if spec.classes.is_empty() {
        present.iter().cloned().collect()
    } else {
        if let Some(missing) = spec.classes.iter().find(|c| !present.contains(*c)) {
            return Err(SeqError::invalid(
                "feature classes",
                format!(
                    "no annotation of class '{missing}' (the annotations have: {})",
                    present.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        spec.classes.clone()
    };
    if classes.is_empty() {
        return Err(SeqError::invalid("annotations", "no feature has a class"));
    }
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
    let names = genome.names();
    let index = IntervalIndex::new(annotations);
    let mut rows: [Vec<FeatureWindow>; 3] = Default::default();
    for (s, which) in Split::ALL.iter().enumerate() {
        let mut windows: Vec<(usize, usize)> = split
            .get(*which)
            .iter()
            .flat_map(|g| {
                (g.start..=g.end.saturating_sub(spec.length))
                    .step_by(spec.length)
                    .filter(move |&w| w + spec.length <= g.end)
                    .map(move |w| (g.record, w))
            })
            .filter(|&(r, w)| !genome.bases(r, w, w + spec.length).contains(&b'N'))
            .collect();
        if windows.len() < spec.rows[s] {
            return Err(SeqError::invalid(
                "task rows",
                format!(
                    "the {} split has {} windows of {} bases without N; {} were asked for",
                    which.as_str(),
                    windows.len(),
                    spec.length,
                    spec.rows[s]
                ),
            ));
        }
        windows.shuffle(rng);
        windows.truncate(spec.rows[s]);
        windows.sort_unstable();
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
}
