//! Rarity-balanced window sampling.
//!
//! In a genome, the elements that matter (promoters, enhancers, TF sites, even intergenic DNA in a
//! bacterium) are rare; windows drawn uniformly mostly show the common classes, and a model learns
//! what it sees most. This sampler draws windows so that the *mixture of element classes* meets
//! target weights:
//!
//! 1. Each annotation is given a class ([`ClassKey`]: GFF type, BED name, or name prefix). Bases
//!    covered by no annotation form the `background` class.
//! 2. For each window, a class is drawn by its target weight, then a base of that class uniformly
//!    (so long elements are not favoured per element but per base), then a window that contains
//!    that base, uniformly among those that fit inside the allowed segment.
//! 3. [`MixtureReport`] says what was achieved: windows drawn per class, and the share of bases in
//!    the sampled windows that belong to each class, beside the genome's natural share (what
//!    uniform sampling gives).

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{
    error::{Result, SeqError},
    interval::Interval,
    window::Segment,
};

/// The name of the class of bases not covered by any annotation.
pub const BACKGROUND: &str = "background";

/// Which field of an annotation names its class. Written in configs as `type`, `name` or
/// `name-prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ClassKey {
    /// The GFF feature type (column 3); BED records, which have none, use their name.
    FeatureType,
    /// The BED name / GFF `ID`.
    Name,
    /// The name up to its first `_`, `.`, `:` or `|` (`cds_1_2` -> `cds`).
    NamePrefix,
}

impl ClassKey {
    /// The class of one annotation, if it has one.
    pub fn class_of(self, iv: &Interval) -> Option<String> {
        match self {
            ClassKey::FeatureType => iv.kind.clone().or_else(|| iv.name.clone()),
            ClassKey::Name => iv.name.clone(),
            ClassKey::NamePrefix => iv.name.as_deref().map(|n| {
                n.split(['_', '.', ':', '|'])
                    .next()
                    .unwrap_or(n)
                    .to_string()
            }),
        }
    }
}

impl std::str::FromStr for ClassKey {
    type Err = SeqError;

    /// Parses `type`, `name` or `name-prefix` (as run configs write them).
    ///
    /// ```
    /// use dnalm_seq::sampler::ClassKey;
    /// assert_eq!("name-prefix".parse::<ClassKey>().unwrap(), ClassKey::NamePrefix);
    /// assert!("kind".parse::<ClassKey>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "type" => Ok(ClassKey::FeatureType),
            "name" => Ok(ClassKey::Name),
            "name-prefix" => Ok(ClassKey::NamePrefix),
            other => Err(SeqError::invalid(
                "class key",
                format!("'{other}' is not type, name or name-prefix"),
            )),
        }
    }
}

/// Target weights per class. Written in configs as `uniform` or `class:weight,...`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ClassWeights {
    /// Every class present (background included) equally.
    Uniform,
    /// Explicit weights (normalised to sum to 1); classes not named are not sampled.
    Explicit(Vec<(String, f64)>),
}

impl std::str::FromStr for ClassWeights {
    type Err = SeqError;

    /// Parses `uniform` or `class:weight,class:weight,...`.
    ///
    /// ```
    /// use dnalm_seq::sampler::ClassWeights;
    /// let w: ClassWeights = "CDS:0.5,background:0.5".parse().unwrap();
    /// assert!(matches!(w, ClassWeights::Explicit(ref v) if v.len() == 2));
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        if s.trim().eq_ignore_ascii_case("uniform") {
            return Ok(ClassWeights::Uniform);
        }
        let bad = |m: String| SeqError::invalid(format!("weights '{s}'"), m);
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = part
                .rsplit_once(':')
                .ok_or_else(|| bad(format!("'{part}' is not class:weight")))?;
            let w: f64 = w
                .trim()
                .parse()
                .map_err(|_| bad(format!("weight '{w}' is not a number")))?;
            if !w.is_finite() || w < 0.0 {
                return Err(bad(format!("weight {w} must be a non-negative number")));
            }
            out.push((name.trim().to_string(), w));
        }
        if out.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
            return Err(bad("weights must not all be zero".into()));
        }
        Ok(ClassWeights::Explicit(out))
    }
}

impl std::fmt::Display for ClassKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClassKey::FeatureType => "type",
            ClassKey::Name => "name",
            ClassKey::NamePrefix => "name-prefix",
        })
    }
}

impl TryFrom<String> for ClassKey {
    type Error = SeqError;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<ClassKey> for String {
    fn from(key: ClassKey) -> String {
        key.to_string()
    }
}

impl std::fmt::Display for ClassWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClassWeights::Uniform => f.write_str("uniform"),
            ClassWeights::Explicit(list) => {
                let parts: Vec<String> = list.iter().map(|(c, w)| format!("{c}:{w}")).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

impl TryFrom<String> for ClassWeights {
    type Error = SeqError;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<ClassWeights> for String {
    fn from(weights: ClassWeights) -> String {
        weights.to_string()
    }
}

/// Disjoint, sorted spans `(start, end)` per record index.
type SpansByRecord = BTreeMap<usize, Vec<(usize, usize)>>;

/// The bases of one class inside the allowed segments.
struct ClassPool {
    name: String,
    weight: f64,
    /// Disjoint spans (segment index, start, end) in genome coordinates.
    spans: Vec<(usize, usize, usize)>,
    cumulative: Vec<u64>,
}

/// One sampled window and the class it was drawn for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SampledWindow {
    /// The window.
    pub window: Segment,
    /// Index into [`RarityBalancedSampler::classes`].
    pub class: usize,
}

/// Draws windows whose class mixture follows target weights. See the [module docs](self).
pub struct RarityBalancedSampler {
    segments: Vec<Segment>,
    record_names: Vec<String>,
    pools: Vec<ClassPool>,
    /// Per class: merged spans per record, for measuring composition.
    class_spans: Vec<SpansByRecord>,
    genome_bases: Vec<u64>,
    total_bases: u64,
    length: usize,
    rng: ChaCha8Rng,
}

impl RarityBalancedSampler {
    /// Prepares a sampler.
    ///
    /// `record_names[i]` is the name of record `i` (annotations are matched to records by name);
    /// `segments` are where windows may lie (e.g. the train split); windows are `length` bases.
    pub fn new(
        record_names: &[String],
        segments: &[Segment],
        annotations: &[Interval],
        key: ClassKey,
        weights: &ClassWeights,
        length: usize,
        seed: u64,
    ) -> Result<Self> {
        if length == 0 {
            return Err(SeqError::invalid("window length", "must be positive"));
        }
        let segments: Vec<Segment> = segments
            .iter()
            .copied()
            .filter(|s| s.len() >= length)
            .collect();
        if segments.is_empty() {
            return Err(SeqError::invalid(
                "window length",
                format!("no allowed region is at least {length} bases long"),
            ));
        }
        let class_spans = class_spans(record_names, &segments, annotations, &key)?;
        let resolved = resolve_weights(weights, &class_spans)?;
        let weight_sum: f64 = resolved.iter().sum();
        let mut pools = Vec::new();
        let mut genome_bases = Vec::new();
        for ((name, spans), weight) in class_spans.iter().zip(&resolved) {
            let pool = ClassPool::clipped(name, spans, &segments, weight / weight_sum);
            genome_bases.push(pool.cumulative.last().copied().unwrap_or(0));
            if *weight > 0.0 && pool.spans.is_empty() {
                return Err(SeqError::invalid(
                    "weights",
                    format!(
                        "class '{name}' has weight {weight} but no bases in the allowed regions"
                    ),
                ));
            }
            pools.push(pool);
        }
        let total_bases = segments.iter().map(|s| s.len() as u64).sum();
        Ok(RarityBalancedSampler {
            record_names: record_names.to_vec(),
            segments,
            class_spans: class_spans.into_iter().map(|(_, s)| s).collect(),
            pools,
            genome_bases,
            total_bases,
            length,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    /// Class names, in index order (`background` last).
    pub fn classes(&self) -> Vec<&str> {
        self.pools.iter().map(|p| p.name.as_str()).collect()
    }

    /// The bases of class `class` inside `window`, as disjoint, sorted spans clipped to it
    /// (genome coordinates). A binary search finds the first, so this costs O(log n + found).
    pub fn class_spans_in(
        &self,
        class: usize,
        window: Segment,
    ) -> impl Iterator<Item = (usize, usize)> + '_ {
        let spans = self
            .class_spans
            .get(class)
            .and_then(|m| m.get(&window.record))
            .map_or(&[][..], Vec::as_slice);
        let first = spans.partition_point(|&(_, e)| e <= window.start);
        spans[first..]
            .iter()
            .take_while(move |&&(s, _)| s < window.end)
            .map(move |&(s, e)| (s.max(window.start), e.min(window.end)))
    }

    /// Record names, as given.
    pub fn record_names(&self) -> &[String] {
        &self.record_names
    }

    /// Draws one window.
    pub fn sample(&mut self) -> SampledWindow {
        let mut rng = self.rng.clone();
        let w = self.sample_with(&mut rng);
        self.rng = rng;
        w
    }

    /// Draws one window with the caller's random generator (the sampler's own is untouched).
    pub fn sample_with(&self, rng: &mut impl Rng) -> SampledWindow {
        let mut u: f64 = rng.random();
        let mut class = self.pools.len() - 1;
        for (i, p) in self.pools.iter().enumerate() {
            if p.weight > 0.0 {
                class = i;
                if u < p.weight {
                    break;
                }
                u -= p.weight;
            }
        }
        let pool = &self.pools[class];
        let total = *pool.cumulative.last().unwrap_or(&1);
        let k = rng.random_range(0..total);
        let i = pool.cumulative.partition_point(|&c| c <= k);
        let before = if i == 0 { 0 } else { pool.cumulative[i - 1] };
        let (si, s, _) = pool.spans[i];
        let base = s + (k - before) as usize;
        let seg = self.segments[si];
        let lo = seg.start.max((base + 1).saturating_sub(self.length));
        let hi = base.min(seg.end - self.length);
        let start = rng.random_range(lo..=hi);
        SampledWindow {
            window: Segment {
                record: seg.record,
                start,
                end: start + self.length,
            },
            class,
        }
    }

    /// Draws `n` windows and reports the achieved mixture.
    pub fn sample_n(&mut self, n: usize) -> (Vec<SampledWindow>, MixtureReport) {
        let windows: Vec<SampledWindow> = (0..n).map(|_| self.sample()).collect();
        let report = self.report(&windows);
        (windows, report)
    }

    /// Measures the class mixture of `windows`.
    pub fn report(&self, windows: &[SampledWindow]) -> MixtureReport {
        let n = windows.len().max(1) as f64;
        let window_bases = (windows.len() * self.length).max(1) as f64;
        let classes = self
            .pools
            .iter()
            .enumerate()
            .map(|(c, pool)| {
                let drawn = windows.iter().filter(|w| w.class == c).count();
                // A class's spans are merged (disjoint), so the covered bases are a plain sum.
                let bases: u64 = windows
                    .iter()
                    .flat_map(|w| self.class_spans_in(c, w.window))
                    .map(|(s, e)| (e - s) as u64)
                    .sum();
                ClassMixture {
                    class: pool.name.clone(),
                    target: pool.weight,
                    windows: drawn,
                    window_fraction: drawn as f64 / n,
                    base_fraction: bases as f64 / window_bases,
                    genome_fraction: self.genome_bases[c] as f64 / self.total_bases.max(1) as f64,
                }
            })
            .collect();
        MixtureReport {
            windows: windows.len(),
            window_length: self.length,
            classes,
        }
    }
}

/// The achieved class mixture of a set of sampled windows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MixtureReport {
    /// Number of windows.
    pub windows: usize,
    /// Window length.
    pub window_length: usize,
    /// One row per class.
    pub classes: Vec<ClassMixture>,
}

/// One class's row of a [`MixtureReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMixture {
    /// Class name.
    pub class: String,
    /// Target weight (normalised).
    pub target: f64,
    /// Windows drawn for this class.
    pub windows: usize,
    /// Fraction of windows drawn for this class.
    pub window_fraction: f64,
    /// Fraction of sampled bases that belong to this class.
    pub base_fraction: f64,
    /// Fraction of the allowed genome's bases that belong to this class (uniform sampling).
    pub genome_fraction: f64,
}

/// The merged spans of each annotation class per record, and of the background (every base no
/// annotation covers) last.
fn class_spans(
    record_names: &[String],
    segments: &[Segment],
    annotations: &[Interval],
    key: &ClassKey,
) -> Result<Vec<(String, SpansByRecord)>> {
    let record_of: BTreeMap<&str, usize> = record_names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    // Raw spans per class and record.
    let mut by_class: BTreeMap<String, SpansByRecord> = BTreeMap::new();
    let mut all: SpansByRecord = BTreeMap::new();
    let mut matched = 0usize;
    for iv in annotations {
        let (Some(class), Some(&rec)) = (key.class_of(iv), record_of.get(iv.chrom.as_str())) else {
            continue;
        };
        if iv.is_empty() {
            continue;
        }
        matched += 1;
        let span = (iv.start as usize, iv.end as usize);
        by_class
            .entry(class)
            .or_default()
            .entry(rec)
            .or_default()
            .push(span);
        all.entry(rec).or_default().push(span);
    }
    if matched == 0 {
        return Err(SeqError::invalid(
            "annotations",
            format!(
                "no annotation lies on a sequence of the genome (genome sequences: {})",
                record_names
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let mut class_spans: Vec<(String, SpansByRecord)> = by_class
        .into_iter()
        .map(|(c, m)| (c, m.into_iter().map(|(r, v)| (r, merge(v))).collect()))
        .collect();
    let covered: SpansByRecord = all.into_iter().map(|(r, v)| (r, merge(v))).collect();
    let background: SpansByRecord = (0..record_names.len())
        .map(|r| {
            let end = segments
                .iter()
                .filter(|s| s.record == r)
                .map(|s| s.end)
                .max()
                .unwrap_or(0);
            (
                r,
                complement(covered.get(&r).map_or(&[][..], Vec::as_slice), end),
            )
        })
        .collect();
    class_spans.push((BACKGROUND.to_string(), background));
    Ok(class_spans)
}

/// Each class's sampling weight (not normalised), refusing weights for classes that do not exist.
fn resolve_weights(
    weights: &ClassWeights,
    class_spans: &[(String, SpansByRecord)],
) -> Result<Vec<f64>> {
    Ok(match weights {
        ClassWeights::Uniform => vec![1.0; class_spans.len()],
        ClassWeights::Explicit(list) => {
            for (name, _) in list {
                if !class_spans.iter().any(|(c, _)| c == name) {
                    return Err(SeqError::invalid(
                        "weights",
                        format!(
                            "class '{name}' is not in the annotations (classes: {})",
                            class_spans
                                .iter()
                                .map(|(c, _)| c.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            class_spans
                .iter()
                .map(|(c, _)| list.iter().filter(|(n, _)| n == c).map(|(_, w)| w).sum())
                .collect()
        }
    })
}

impl ClassPool {
    /// A class's spans clipped to the allowed segments, with their cumulative base counts.
    fn clipped(name: &str, spans: &SpansByRecord, segments: &[Segment], weight: f64) -> ClassPool {
        let mut clipped = Vec::new();
        for (si, seg) in segments.iter().enumerate() {
            for &(s, e) in spans.get(&seg.record).map_or(&[][..], Vec::as_slice) {
                let (s, e) = (s.max(seg.start), e.min(seg.end));
                if s < e {
                    clipped.push((si, s, e));
                }
            }
        }
        let mut total = 0u64;
        let cumulative: Vec<u64> = clipped
            .iter()
            .map(|&(_, s, e)| {
                total += (e - s) as u64;
                total
            })
            .collect();
        ClassPool {
            name: name.to_string(),
            weight,
            spans: clipped,
            cumulative,
        }
    }
}

fn merge(mut spans: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    spans.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

fn complement(covered: &[(usize, usize)], end: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    for &(s, e) in covered {
        if s > pos {
            out.push((pos, s.min(end)));
        }
        pos = pos.max(e);
    }
    if pos < end {
        out.push((pos, end));
    }
    out.retain(|(s, e)| s < e);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{interval::Strand, window::whole_records};

    fn iv(start: u64, end: u64, kind: &str) -> Interval {
        Interval {
            chrom: "chr".into(),
            start,
            end,
            name: Some(format!("{kind}_x")),
            kind: Some(kind.into()),
            strand: Strand::Unknown,
            score: None,
            blocks: vec![],
        }
    }

    /// A 100 kb genome with one 200 bp "promoter" every 10 kb (2% of bases) and 60% "gene".
    fn setup(weights: &str) -> RarityBalancedSampler {
        let mut anns = Vec::new();
        for i in 0..10u64 {
            anns.push(iv(i * 10_000, i * 10_000 + 200, "promoter"));
            anns.push(iv(i * 10_000 + 2_000, i * 10_000 + 8_000, "gene"));
        }
        RarityBalancedSampler::new(
            &["chr".to_string()],
            &whole_records(&[100_000]),
            &anns,
            ClassKey::FeatureType,
            &weights.parse().unwrap(),
            100,
            7,
        )
        .unwrap()
    }

    #[test]
    fn uniform_weights_lift_a_rare_class() {
        let mut s = setup("uniform");
        assert_eq!(s.classes(), vec!["gene", "promoter", "background"]);
        let (windows, report) = s.sample_n(3000);
        assert!(windows
            .iter()
            .all(|w| w.window.len() == 100 && w.window.end <= 100_000));
        let promoter = &report.classes[1];
        assert!((promoter.genome_fraction - 0.02).abs() < 1e-9);
        assert!(
            (promoter.window_fraction - 1.0 / 3.0).abs() < 0.05,
            "{promoter:?}"
        );
        // Promoter windows hold promoter bases: the base share rises far above 2%.
        assert!(promoter.base_fraction > 0.15, "{promoter:?}");
        // Every window drawn for a class contains a base of it.
        for w in &windows {
            let c = s.classes()[w.class];
            if c == "promoter" {
                let off = w.window.start % 10_000;
                assert!(off < 200 || off + 100 > 10_000, "{w:?}");
            }
        }
    }

    #[test]
    fn explicit_weights_and_errors() {
        let mut s = setup("promoter:3,background:1");
        let (_, report) = s.sample_n(2000);
        assert_eq!(report.classes[0].windows, 0);
        assert!((report.classes[1].window_fraction - 0.75).abs() < 0.05);
        let err = RarityBalancedSampler::new(
            &["chr".to_string()],
            &whole_records(&[100_000]),
            &[iv(0, 10, "a")],
            ClassKey::FeatureType,
            &"enhancer:1".parse().unwrap(),
            10,
            0,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("class 'enhancer' is not in the annotations (classes: a, background)"),
            "{err}"
        );
        assert!("x:-1".parse::<ClassWeights>().is_err());
        assert!("x".parse::<ClassWeights>().is_err());
    }

    #[test]
    fn class_keys() {
        let a = iv(0, 1, "CDS");
        assert_eq!(ClassKey::FeatureType.class_of(&a).as_deref(), Some("CDS"));
        assert_eq!(ClassKey::NamePrefix.class_of(&a).as_deref(), Some("CDS"));
        assert_eq!(ClassKey::Name.class_of(&a).as_deref(), Some("CDS_x"));
    }
}
