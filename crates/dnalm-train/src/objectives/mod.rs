//! Pretraining objectives: one module each, one trait ([`Objective`]).

pub mod annotation;
pub mod causal;
pub mod deletion;
pub mod denoise;
pub mod mlm;
pub mod permutation;
pub mod span;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use dnalm_tokenize::{SpecialTokenIds, Tokenizer};

/// A window of tokens as the objectives see it.
#[derive(Debug, Clone, Copy)]
pub struct TokenWindow<'a> {
    /// Token ids (special tokens included, if the window has them).
    pub ids: &'a [u32],
    /// Base span `[start, end)` of each token; `(0, 0)` for special tokens.
    pub offsets: &'a [(usize, usize)],
    /// Annotated elements in the window: base span and class index (for annotation masking).
    pub annotations: &'a [Annotated],
}

/// One annotated element inside a window, in window base coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Annotated {
    /// Base span `[start, end)`.
    pub span: (usize, usize),
    /// Class index (as the sampler numbers classes).
    pub class: u32,
}

/// What the objectives need to know of the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VocabInfo {
    /// Vocabulary size.
    pub size: u32,
    /// Special token ids.
    pub specials: SpecialTokenIds,
    /// Ids that random replacement may draw (every non-special token).
    pub ordinary: Vec<u32>,
    /// The id standing for an unknown base: the `N` token if the vocabulary has one, else `[UNK]`.
    pub n_token: Option<u32>,
}

impl VocabInfo {
    /// Reads the vocabulary of a tokenizer.
    pub fn of(tokenizer: &dyn Tokenizer) -> Self {
        let specials = *tokenizer.special_ids();
        let size = tokenizer.vocab().len() as u32;
        let ordinary = (0..size).filter(|&i| !specials.contains(i)).collect();
        let n_token = tokenizer.vocab().id("N").or(specials.unk);
        VocabInfo {
            size,
            specials,
            ordinary,
            n_token,
        }
    }

    /// Whether `id` is special (never masked, never a target).
    pub fn is_special(&self, id: u32) -> bool {
        self.specials.contains(id)
    }

    fn mask_id(&self) -> Result<u32, ObjectiveError> {
        self.specials
            .mask
            .ok_or(ObjectiveError::MissingToken("[MASK]"))
    }

    fn random_ordinary(&self, rng: &mut ChaCha8Rng) -> u32 {
        self.ordinary[rng.random_range(0..self.ordinary.len())]
    }
}

/// How positions may attend to each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attention {
    /// Every position sees every (non-padding) position.
    Bidirectional,
    /// Position i sees positions `<= i`.
    Causal,
    /// XLNet-style two-stream attention, row-major `len x len` (`[i * len + j]`: may i see j).
    /// The content stream of i sees its own content; the query stream of i, which predicts i,
    /// never does.
    TwoStream {
        /// Content stream mask.
        content: Vec<bool>,
        /// Query stream mask.
        query: Vec<bool>,
    },
}

/// What the targets are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetKind {
    /// Token ids (vocabulary-sized output).
    Token,
    /// 0/1 per position (token deletion).
    Binary,
}

/// The output of an objective for one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectiveExample {
    /// What the model reads.
    pub input_ids: Vec<u32>,
    /// Position ids (usually `0..len`; kept explicit for objectives that reorder).
    pub position_ids: Vec<u32>,
    /// What the model must predict at each position (meaningful where `loss_mask` is true).
    pub targets: Vec<u32>,
    /// Where the loss counts.
    pub loss_mask: Vec<bool>,
    /// Attention pattern.
    pub attention: Attention,
    /// Kind of target.
    pub target_kind: TargetKind,
}

impl ObjectiveExample {
    fn unchanged(ids: &[u32], attention: Attention, target_kind: TargetKind) -> Self {
        ObjectiveExample {
            input_ids: ids.to_vec(),
            position_ids: (0..ids.len() as u32).collect(),
            targets: ids.to_vec(),
            loss_mask: vec![false; ids.len()],
            attention,
            target_kind,
        }
    }

    /// Number of positions with a loss.
    pub fn n_targets(&self) -> usize {
        self.loss_mask.iter().filter(|&&m| m).count()
    }
}

/// Errors of objective configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectiveError {
    /// The vocabulary lacks a token the objective needs.
    #[error("the vocabulary has no {0} token, which this objective needs")]
    MissingToken(&'static str),
    /// Annotation masking lacks annotations, or names an element type they do not have.
    #[error("{0}")]
    MissingAnnotations(String),
    /// A rate or length is out of range.
    #[error("{what} = {value}: {message}")]
    Invalid {
        /// The parameter.
        what: &'static str,
        /// Its value.
        value: f64,
        /// The allowed range.
        message: &'static str,
    },
}

pub(crate) fn check_rate(what: &'static str, value: f64) -> Result<(), ObjectiveError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(ObjectiveError::Invalid {
            what,
            value,
            message: "must be between 0 and 1",
        })
    }
}

/// A pretraining objective.
pub trait Objective: Send + Sync {
    /// The objective's name, as in configs.
    fn name(&self) -> &'static str;

    /// Turns one window into an example. Deterministic given the RNG state.
    fn apply(
        &self,
        window: &TokenWindow,
        vocab: &VocabInfo,
        rng: &mut ChaCha8Rng,
    ) -> ObjectiveExample;
}

/// Objective settings as written in a run config (`type = "mlm"` etc.).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ObjectiveConfig {
    /// Masked LM.
    Mlm(mlm::MaskedLm),
    /// Span masking.
    Span(span::SpanMasking),
    /// Next-token prediction.
    NextToken(causal::NextToken),
    /// Token deletion.
    Deletion(deletion::TokenDeletion),
    /// Permutation LM.
    Permutation(permutation::PermutationLm),
    /// Denoising.
    Denoise(denoise::Denoising),
    /// Annotation-aware masking.
    Annotation(annotation::AnnotationMasking),
}

/// Which objective (the `type` of an `[[objectives]]` entry), without its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectiveKind {
    /// Masked LM.
    Mlm,
    /// Span masking.
    Span,
    /// Next-token prediction.
    NextToken,
    /// Token deletion.
    Deletion,
    /// Permutation LM.
    Permutation,
    /// Denoising.
    Denoise,
    /// Annotation-aware masking.
    Annotation,
}

impl ObjectiveConfig {
    /// Which objective this is.
    pub fn kind(&self) -> ObjectiveKind {
        match self {
            ObjectiveConfig::Mlm(_) => ObjectiveKind::Mlm,
            ObjectiveConfig::Span(_) => ObjectiveKind::Span,
            ObjectiveConfig::NextToken(_) => ObjectiveKind::NextToken,
            ObjectiveConfig::Deletion(_) => ObjectiveKind::Deletion,
            ObjectiveConfig::Permutation(_) => ObjectiveKind::Permutation,
            ObjectiveConfig::Denoise(_) => ObjectiveKind::Denoise,
            ObjectiveConfig::Annotation(_) => ObjectiveKind::Annotation,
        }
    }

    /// Checks rates and lengths, and that the vocabulary has the tokens the objective needs.
    pub fn validate(&self, vocab: &VocabInfo) -> Result<(), ObjectiveError> {
        match self {
            ObjectiveConfig::Mlm(o) => o.validate(vocab),
            ObjectiveConfig::Span(o) => o.validate(vocab),
            ObjectiveConfig::NextToken(_) => Ok(()),
            ObjectiveConfig::Deletion(o) => check_rate("deletion rate", o.rate),
            ObjectiveConfig::Permutation(o) => check_rate("predict fraction", o.predict_fraction),
            ObjectiveConfig::Denoise(o) => o.validate(),
            ObjectiveConfig::Annotation(o) => o.validate(vocab),
        }
    }

    fn inner(&self) -> &dyn Objective {
        match self {
            ObjectiveConfig::Mlm(o) => o,
            ObjectiveConfig::Span(o) => o,
            ObjectiveConfig::NextToken(o) => o,
            ObjectiveConfig::Deletion(o) => o,
            ObjectiveConfig::Permutation(o) => o,
            ObjectiveConfig::Denoise(o) => o,
            ObjectiveConfig::Annotation(o) => o,
        }
    }
}

impl Objective for ObjectiveConfig {
    fn name(&self) -> &'static str {
        self.inner().name()
    }

    fn apply(
        &self,
        window: &TokenWindow,
        vocab: &VocabInfo,
        rng: &mut ChaCha8Rng,
    ) -> ObjectiveExample {
        self.inner().apply(window, vocab, rng)
    }
}

/// Several objectives in one run: each window gets one, drawn by weight
/// (e.g. 70% masked LM + 30% annotation masking).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectiveMixture {
    parts: Vec<(ObjectiveConfig, f64)>,
}

impl ObjectiveMixture {
    /// Builds a mixture; weights must be non-negative and not all zero.
    pub fn new(
        parts: Vec<(ObjectiveConfig, f64)>,
        vocab: &VocabInfo,
    ) -> Result<Self, ObjectiveError> {
        let total: f64 = parts.iter().map(|(_, w)| *w).sum();
        if parts.is_empty() || parts.iter().any(|(_, w)| !w.is_finite() || *w < 0.0) || total <= 0.0
        {
            return Err(ObjectiveError::Invalid {
                what: "objective weights",
                value: total,
                message:
                    "need at least one objective and non-negative weights that are not all zero",
            });
        }
        for (o, _) in &parts {
            o.validate(vocab)?;
        }
        let parts = parts.into_iter().map(|(o, w)| (o, w / total)).collect();
        Ok(ObjectiveMixture { parts })
    }

    /// Draws an objective by weight.
    pub fn pick(&self, rng: &mut ChaCha8Rng) -> &ObjectiveConfig {
        let mut u: f64 = rng.random();
        for (o, w) in &self.parts {
            if u < *w {
                return o;
            }
            u -= w;
        }
        &self.parts[self.parts.len() - 1].0
    }

    /// Draws an objective and applies it. Returns the index of the objective used.
    pub fn apply(
        &self,
        window: &TokenWindow,
        vocab: &VocabInfo,
        rng: &mut ChaCha8Rng,
    ) -> (usize, ObjectiveExample) {
        let mut u: f64 = rng.random();
        let mut chosen = self.parts.len() - 1;
        for (i, (_, w)) in self.parts.iter().enumerate() {
            if u < *w {
                chosen = i;
                break;
            }
            u -= w;
        }
        (chosen, self.parts[chosen].0.apply(window, vocab, rng))
    }
}

/// Masks the chosen tokens and every token sharing a base with them (`[MASK]` in the input; special
/// tokens stay), and puts the loss on the hidden tokens whose bases no visible token shows. The
/// common step of span and annotation-aware masking.
pub(crate) fn mask_neighbourhoods(
    ex: &mut ObjectiveExample,
    chosen: &[bool],
    window: &TokenWindow,
    vocab: &VocabInfo,
    mask: u32,
) {
    let hidden = expand_to_neighbourhood(chosen, window.offsets);
    for (i, &h) in hidden.iter().enumerate() {
        if h && !vocab.is_special(window.ids[i]) {
            ex.input_ids[i] = mask;
        }
    }
    ex.loss_mask = unrevealed(&hidden, window.offsets);
}

/// Whether `[s, e)` overlaps one of `spans`, which must be in base order (starts and ends
/// non-decreasing, as the tokens of every dnalm tokenizer are). Then the first span ending after
/// `s` is the only candidate: earlier ones end by `s`, later ones start no earlier than it.
fn overlaps_any(spans: &[(usize, usize)], s: usize, e: usize) -> bool {
    let i = spans.partition_point(|&(_, end)| end <= s);
    spans.get(i).is_some_and(|&(start, _)| start < e)
}

/// The non-empty spans of the flagged tokens, in base order.
fn spans_where(flags: &[bool], offsets: &[(usize, usize)], flag: bool) -> Vec<(usize, usize)> {
    offsets
        .iter()
        .zip(flags)
        .filter(|(o, f)| **f == flag && o.0 < o.1)
        .map(|(o, _)| *o)
        .collect()
}

/// Given the positions whose input is hidden, the positions whose answer no visible token
/// reveals: a hidden token counts only if no visible token shares any of its bases. With
/// non-overlapping tokens that is every hidden token; with overlapping k-mers it drops hidden
/// tokens at the edge of a hidden stretch, whose bases a visible neighbour shows.
pub(crate) fn unrevealed(hidden: &[bool], offsets: &[(usize, usize)]) -> Vec<bool> {
    let visible = spans_where(hidden, offsets, false);
    hidden
        .iter()
        .zip(offsets)
        .map(|(&h, &(s, e))| h && s < e && !overlaps_any(&visible, s, e))
        .collect()
}

/// Hides every token that shares a base with a token in `chosen` (the neighbourhood of a masked
/// overlapping k-mer), so that the chosen tokens' bases are hidden entirely.
pub(crate) fn expand_to_neighbourhood(chosen: &[bool], offsets: &[(usize, usize)]) -> Vec<bool> {
    let spans = spans_where(chosen, offsets, true);
    offsets
        .iter()
        .zip(chosen)
        .map(|(&(s, e), &c)| c || (s < e && overlaps_any(&spans, s, e)))
        .collect()
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use dnalm_tokenize::{KmerTokenizer, NucleotideTokenizer, Template, Tokenizer};
    use rand::SeedableRng;

    /// A pseudo-random genome window.
    pub fn bases(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b"ACGT"[(x >> 62) as usize]
            })
            .collect()
    }

    pub fn kmer6() -> KmerTokenizer {
        KmerTokenizer::new(6, true, Template::Bert).unwrap()
    }

    pub fn nucleotide() -> NucleotideTokenizer {
        NucleotideTokenizer::new(Template::Causal)
    }

    pub fn encode(tok: &dyn Tokenizer, seq: &[u8]) -> (Vec<u32>, Vec<(usize, usize)>) {
        let e = tok.encode(seq);
        (e.ids, e.offsets)
    }

    pub fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    /// No visible token shares a base with any loss position: the answers do not leak.
    pub fn assert_no_leak(ex: &ObjectiveExample, offsets: &[(usize, usize)], mask_id: u32) {
        for (i, &loss) in ex.loss_mask.iter().enumerate() {
            if !loss {
                continue;
            }
            let (s, e) = offsets[i];
            for (j, &(vs, ve)) in offsets.iter().enumerate() {
                let visible = ex.input_ids[j] != mask_id && vs < ve;
                assert!(
                    !(visible && vs < e && ve > s),
                    "target {i} {:?} leaks through visible token {j} {:?}",
                    (s, e),
                    (vs, ve)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_objective_fields_take_the_defaults_and_unknown_ones_are_refused() {
        let c: ObjectiveConfig = toml::from_str("type = \"span\"\nmask_rate = 0.3").unwrap();
        assert_eq!(
            c,
            ObjectiveConfig::Span(span::SpanMasking {
                mask_rate: 0.3,
                ..Default::default()
            })
        );
        let c: ObjectiveConfig = toml::from_str("type = \"mlm\"").unwrap();
        assert_eq!(c, ObjectiveConfig::Mlm(mlm::MaskedLm::default()));
        assert!(toml::from_str::<ObjectiveConfig>("type = \"mlm\"\nrate = 0.3").is_err());
    }

    #[test]
    fn unrevealed_and_neighbourhood() {
        // 3-mers over 8 bases: token i covers [i, i+3).
        let offsets: Vec<(usize, usize)> = (0..6).map(|i| (i, i + 3)).collect();
        let chosen = [false, false, true, false, false, false];
        let hidden = expand_to_neighbourhood(&chosen, &offsets);
        assert_eq!(hidden, [true, true, true, true, true, false]);
        let safe = unrevealed(&hidden, &offsets);
        // Only token 5 [5,8) is visible: it shows bases 5..8, so tokens 3 [3,6) and 4 [4,7) are
        // revealed; tokens 0..=2 (bases 0..5) are not (the window has no left neighbour).
        assert_eq!(safe, [true, true, true, false, false, false]);
        // Non-overlapping tokens: hidden == unrevealed.
        let offsets: Vec<(usize, usize)> = (0..4).map(|i| (3 * i, 3 * i + 3)).collect();
        let hidden = [true, false, true, false];
        assert_eq!(expand_to_neighbourhood(&hidden, &offsets), hidden);
        assert_eq!(unrevealed(&hidden, &offsets), hidden);
    }

    #[test]
    fn config_round_trips_and_mixture_draws_by_weight() {
        let text = r#"[{"type":"mlm","mask_rate":0.15},{"type":"annotation","element_rate":0.5,"classes":[0],"background_rate":0.1}]"#;
        let configs: Vec<ObjectiveConfig> = serde_json::from_str(text).unwrap();
        let back: Vec<ObjectiveConfig> =
            serde_json::from_str(&serde_json::to_string(&configs).unwrap()).unwrap();
        assert_eq!(back, configs);
        assert_eq!(configs[0], ObjectiveConfig::Mlm(mlm::MaskedLm::default()));
        assert!(
            serde_json::from_str::<ObjectiveConfig>(r#"{"type":"mlm","mask_rat":0.1}"#).is_err()
        );
        let tok = testing::kmer6();
        let vocab = VocabInfo::of(&tok);
        let mix = ObjectiveMixture::new(
            vec![(configs[0].clone(), 0.7), (configs[1].clone(), 0.3)],
            &vocab,
        )
        .unwrap();
        let seq = testing::bases(200, 1);
        let (ids, offsets) = testing::encode(&tok, &seq);
        let window = TokenWindow {
            ids: &ids,
            offsets: &offsets,
            annotations: &[],
        };
        let mut rng = testing::rng(3);
        let first = (0..2000)
            .filter(|_| mix.apply(&window, &vocab, &mut rng).0 == 0)
            .count();
        assert!((first as f64 / 2000.0 - 0.7).abs() < 0.04, "{first}");
        assert!(ObjectiveMixture::new(vec![], &vocab).is_err());
    }
}
