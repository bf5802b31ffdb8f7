//! Scoring sequences and variants with a language model.
//!
//! - **Sequence log-likelihood**: exact for causal (decoder) models, the sum over tokens of
//!   `log p(token | tokens before it)`; for masked (encoder) models the pseudo-log-likelihood,
//!   the sum over tokens of `log p(token | the rest)` with that token masked. With overlapping
//!   k-mers every token sharing a base with the scored one is masked too, or the answer would
//!   leak through its neighbours (as in span-masking pretraining).
//! - **Site effects** (variants, in-silico mutagenesis): the log-likelihood ratio of the alternative
//!   against the reference sequence. Encoders use the *masked marginal*: mask the tokens covering
//!   the site once and compare `log p(alt token) - log p(ref token)` at those positions. When the
//!   alternative changes the token boundaries (indels, BPE), the ratio of pseudo-log-likelihoods
//!   is used instead; causal models always compare exact log-likelihoods.
//!
//! Sequences longer than the model's context are scored in windows: the tokens are cut into
//! blocks of half a window, and each block is scored in a window that holds it with as much
//! context as fits (centred for encoders, ending at the block for decoders).

use dnalm_model::{
    burn::tensor::{activation::log_softmax, Int, Tensor, TensorData},
    AttentionPattern, ModelInput,
};
use dnalm_seq::{
    vcf::{Vcf, VcfRecord},
    Genome, SeqError,
};
use dnalm_tokenize::Tokenizer;
use serde::Serialize;

use dnalm_model::Checkpoint;

use crate::EvalError;

/// One scored token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TokenScore {
    /// First base of the token (0-based).
    pub start: usize,
    /// One past its last base.
    pub end: usize,
    /// Natural-log probability of the token.
    pub log_prob: f64,
}

/// A sequence's (pseudo-)log-likelihood.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SequenceScore {
    /// Sum of the token log-probabilities (nats).
    pub log_likelihood: f64,
    /// Per scored token.
    pub tokens: Vec<TokenScore>,
    /// `exact` (causal) or `pseudo` (masked).
    pub kind: &'static str,
}

impl SequenceScore {
    /// Per base: each token's log-probability shared equally among its bases, averaged where
    /// tokens overlap (overlapping k-mers); NaN for bases no scored token covers.
    pub fn per_base(&self, len: usize) -> Vec<f64> {
        let mut sum = vec![0.0; len];
        let mut count = vec![0u32; len];
        for t in &self.tokens {
            let n = (t.end - t.start).max(1) as f64;
            for b in t.start..t.end.min(len) {
                sum[b] += t.log_prob / n;
                count[b] += 1;
            }
        }
        sum.iter()
            .zip(&count)
            .map(|(s, &c)| if c == 0 { f64::NAN } else { s / c as f64 })
            .collect()
    }
}

/// How a site effect was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectMethod {
    /// Masked marginal at the site's tokens (encoders).
    MaskedMarginal,
    /// Difference of pseudo-log-likelihoods (encoders, when the tokens change boundaries).
    PseudoLikelihoodRatio,
    /// Difference of exact log-likelihoods (decoders).
    LikelihoodRatio,
}

impl EffectMethod {
    /// Name as written in outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            EffectMethod::MaskedMarginal => "masked_marginal",
            EffectMethod::PseudoLikelihoodRatio => "pll_ratio",
            EffectMethod::LikelihoodRatio => "ll_ratio",
        }
    }
}

/// The scored ALT alleles of one VCF record.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantEffects {
    /// Per ALT, in order: the log-likelihood ratio ALT vs REF and how it was computed; `None`
    /// for a symbolic allele.
    pub alts: Vec<Option<(f64, EffectMethod)>>,
}

/// Scores sequences with one model.
pub struct Scorer<'a> {
    encoder: &'a Checkpoint,
    /// Rows × tokens per forward batch.
    batch_tokens: usize,
}

/// A sequence tokenised without specials: ids and base spans.
struct Tokens {
    ids: Vec<u32>,
    offsets: Vec<(usize, usize)>,
}

impl<'a> Scorer<'a> {
    /// A scorer; `batch_tokens` bounds memory (rows × padded length per forward pass).
    pub fn new(encoder: &'a Checkpoint, batch_tokens: usize) -> Result<Self, EvalError> {
        let s = encoder.tokenizer.special_ids();
        if !encoder.model.config.architecture.is_causal() && s.mask.is_none() {
            return Err(EvalError::Unsupported {
                model: encoder.source.clone(),
                message: "the tokenizer has no mask token, so a masked model cannot be scored"
                    .into(),
            });
        }
        Ok(Scorer {
            encoder,
            batch_tokens: batch_tokens.max(1),
        })
    }

    fn causal(&self) -> bool {
        self.encoder.model.config.architecture.is_causal()
    }

    /// How the model attends: causally for decoders, both ways for encoders.
    fn pattern(&self) -> AttentionPattern {
        if self.causal() {
            AttentionPattern::Causal
        } else {
            AttentionPattern::Bidirectional
        }
    }

    fn tokens(&self, seq: &[u8]) -> Tokens {
        let mut ids = Vec::new();
        let mut offsets = Vec::new();
        self.encoder
            .tokenizer
            .tokenize_into(seq, &mut ids, Some(&mut offsets));
        Tokens { ids, offsets }
    }

    fn template(&self) -> (Option<u32>, Option<u32>) {
        self.encoder.tokenizer.template_tokens()
    }

    /// Sequence tokens that fit one window beside the template's special tokens.
    fn window(&self) -> usize {
        let tokenizer = &self.encoder.tokenizer;
        tokenizer
            .room(self.encoder.model.config.max_positions)
            .max(2)
    }

    /// The LM logits of every token of `seq` in one window, special tokens included
    /// (`tokens x vocab`): what the model predicts at each position, unmasked. A sequence longer
    /// than one window is refused (logits of stitched windows would depend on the cut).
    pub fn logits(&self, seq: &[u8]) -> Result<ndarray::Array2<f32>, EvalError> {
        let toks = self.tokens(seq);
        let (prefix, suffix) = self.template();
        if toks.ids.len() > self.window() {
            return Err(EvalError::BadOption {
                option: "sequence",
                message: format!(
                    "{} tokens do not fit the model's window of {} (logits are per window; cut \
                     the sequence)",
                    toks.ids.len(),
                    self.window()
                ),
            });
        }
        let row: Vec<u32> = prefix
            .into_iter()
            .chain(toks.ids.iter().copied())
            .chain(suffix)
            .collect();
        let model = &self.encoder.model;
        let input = ModelInput::from_rows(std::slice::from_ref(&row), self.pattern());
        let hidden = model.forward(&input)?;
        let [_, len, d] = hidden.dims();
        let logits = model.lm_logits(hidden.reshape([len, d]));
        let [_, vocab] = logits.dims();
        let values = logits
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| crate::tensor_error("logits", e))?;
        ndarray::Array2::from_shape_vec((len, vocab), values)
            .map_err(|e| crate::tensor_error("logits", e))
    }

    /// Log-softmax rows at `picks` (row, token index within the row *including* the prefix).
    fn log_probs(
        &self,
        rows: &[Vec<u32>],
        picks: &[(usize, usize)],
    ) -> Result<Vec<Vec<f32>>, EvalError> {
        let model = &self.encoder.model;
        let input = ModelInput::from_rows(rows, self.pattern());
        let hidden = model.forward(&input)?;
        let [r, len, d] = hidden.dims();
        let index: Vec<i64> = picks
            .iter()
            .map(|&(row, i)| (row * len + i) as i64)
            .collect();
        let n = index.len();
        let device = model.device();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [n]), &device);
        let selected = hidden.reshape([r * len, d]).select(0, index);
        let logp = log_softmax(model.lm_logits(selected), 1);
        let [_, vocab] = logp.dims();
        let values = logp
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| crate::tensor_error("scoring", e))?;
        Ok(values.chunks(vocab).map(<[f32]>::to_vec).collect())
    }

    /// Window `[lo, hi)` of token indices used to score the block `[b0, b1)`.
    fn window_for(&self, n: usize, b0: usize, b1: usize) -> (usize, usize) {
        let w = self.window();
        if n <= w {
            return (0, n);
        }
        let lo = if self.causal() {
            b1.saturating_sub(w)
        } else {
            (b0 + b1).saturating_sub(w) / 2
        };
        let lo = lo.min(n - w);
        (lo, lo + w)
    }

    /// The (pseudo-)log-likelihood of one sequence.
    pub fn sequence(&self, seq: &[u8]) -> Result<SequenceScore, EvalError> {
        let toks = self.tokens(seq);
        let n = toks.ids.len();
        let (prefix, suffix) = self.template();
        let half = (self.window() / 2).max(1);
        let mut scores = vec![f64::NAN; n];
        let with_template = |lo: usize, hi: usize| -> Vec<u32> {
            let mut row = Vec::with_capacity(hi - lo + 2);
            row.extend(prefix);
            row.extend_from_slice(&toks.ids[lo..hi]);
            row.extend(suffix);
            row
        };
        let p = prefix.is_some() as usize;
        let mut b0 = 0;
        while b0 < n {
            let b1 = (b0 + half).min(n);
            let (lo, hi) = self.window_for(n, b0, b1);
            if self.causal() {
                // One forward pass; token i is predicted from the output before it.
                let row = with_template(lo, hi);
                let picks: Vec<(usize, usize)> = (b0..b1)
                    .filter(|&i| i + p > lo)
                    .map(|i| (0, i - lo + p - 1))
                    .collect();
                let scored: Vec<usize> = (b0..b1).filter(|&i| i + p > lo).collect();
                if !picks.is_empty() {
                    let lp = self.log_probs(&[row], &picks)?;
                    for (i, v) in scored.iter().zip(lp) {
                        scores[*i] = v[toks.ids[*i] as usize] as f64;
                    }
                }
            } else {
                let mask = self.encoder.tokenizer.special_ids().mask.unwrap_or(0);
                let base_row = with_template(lo, hi);
                let per_batch = (self.batch_tokens / base_row.len().max(1)).max(1);
                let targets: Vec<usize> = (b0..b1).collect();
                for chunk in targets.chunks(per_batch) {
                    let mut rows = Vec::with_capacity(chunk.len());
                    let mut picks = Vec::with_capacity(chunk.len());
                    for (r, &i) in chunk.iter().enumerate() {
                        let mut row = base_row.clone();
                        let (s, e) = toks.offsets[i];
                        for j in lo..hi {
                            let (sj, ej) = toks.offsets[j];
                            if j == i || (sj < e && s < ej) {
                                row[j - lo + p] = mask;
                            }
                        }
                        rows.push(row);
                        picks.push((r, i - lo + p));
                    }
                    let lp = self.log_probs(&rows, &picks)?;
                    for (&i, v) in chunk.iter().zip(lp) {
                        scores[i] = v[toks.ids[i] as usize] as f64;
                    }
                }
            }
            b0 = b1;
        }
        let tokens: Vec<TokenScore> = scores
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, &v)| TokenScore {
                start: toks.offsets[i].0,
                end: toks.offsets[i].1,
                log_prob: v,
            })
            .collect();
        Ok(SequenceScore {
            log_likelihood: tokens.iter().map(|t| t.log_prob).sum(),
            tokens,
            kind: if self.causal() { "exact" } else { "pseudo" },
        })
    }

    /// Scores every record of `vcf` against `genome`: for each record, the effect of each ALT
    /// in order ([`Scorer::site_effects`] in a window of `flank` bases each side), `None` for a
    /// symbolic allele (`<DEL>`, `*`). Fails on the first record whose chromosome is not in the
    /// genome, whose REF runs past its end or differs from the genome, naming its line.
    pub fn variants(
        &self,
        vcf: &Vcf,
        genome: &Genome,
        flank: usize,
    ) -> Result<Vec<VariantEffects>, EvalError> {
        let names = genome.names();
        let mut out = Vec::with_capacity(vcf.records.len());
        for r in &vcf.records {
            let at = |m: String| EvalError::Seq(SeqError::at_line(&vcf.path, r.line, m));
            let Some(chrom) = names.iter().position(|n| n == &r.chrom) else {
                return Err(at(format!(
                    "chromosome '{}' is not in the reference (it has {})",
                    r.chrom,
                    names.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                )));
            };
            let len = genome.lengths()[chrom];
            let start = r.pos.offset();
            let end = start + r.reference.len();
            if end > len {
                return Err(at(format!(
                    "{}:{} with REF of {} bases runs past the end of '{}' ({len} bases)",
                    r.chrom,
                    r.pos,
                    r.reference.len(),
                    r.chrom
                )));
            }
            let found = genome.bases(chrom, start, end);
            if found != r.reference.as_slice() {
                return Err(at(format!(
                    "REF '{}' does not match the reference '{}' at {}:{} (is this the VCF's genome build?)",
                    String::from_utf8_lossy(&r.reference),
                    String::from_utf8_lossy(found),
                    r.chrom,
                    r.pos
                )));
            }
            if r.alts.is_empty() {
                out.push(VariantEffects { alts: Vec::new() });
                continue;
            }
            let w0 = start.saturating_sub(flank);
            let w1 = (end + flank).min(len);
            let scoreable: Vec<Vec<u8>> = r
                .alts
                .iter()
                .filter(|a| VcfRecord::is_sequence(a))
                .cloned()
                .collect();
            let mut effects = self
                .site_effects(
                    genome.bases(chrom, w0, w1),
                    start - w0,
                    end - w0,
                    &scoreable,
                )
                .map_err(|e| at(e.to_string()))?
                .into_iter();
            let alts = r
                .alts
                .iter()
                .map(|a| VcfRecord::is_sequence(a).then(|| effects.next()).flatten())
                .collect();
            out.push(VariantEffects { alts });
        }
        Ok(out)
    }

    /// Effects of replacing bases `[start, end)` of `seq` by each of `alts`: the log-likelihood
    /// ratio alt vs ref (positive = the model prefers the alternative).
    pub fn site_effects(
        &self,
        seq: &[u8],
        start: usize,
        end: usize,
        alts: &[Vec<u8>],
    ) -> Result<Vec<(f64, EffectMethod)>, EvalError> {
        let variant = |alt: &[u8]| -> Vec<u8> {
            let mut s = Vec::with_capacity(seq.len() + alt.len());
            s.extend_from_slice(&seq[..start]);
            s.extend_from_slice(alt);
            s.extend_from_slice(&seq[end..]);
            s
        };
        if self.causal() {
            let reference = self.sequence(seq)?.log_likelihood;
            return alts
                .iter()
                .map(|a| {
                    Ok((
                        self.sequence(&variant(a))?.log_likelihood - reference,
                        EffectMethod::LikelihoodRatio,
                    ))
                })
                .collect();
        }
        let toks = self.tokens(seq);
        let n = toks.ids.len();
        // Tokens covering the site (an insertion site covers the token at its position).
        let covering: Vec<usize> = (0..n)
            .filter(|&i| {
                let (s, e) = toks.offsets[i];
                s < end.max(start + 1) && start < e
            })
            .collect();
        let mut out = vec![(f64::NAN, EffectMethod::MaskedMarginal); alts.len()];
        let mut need_pll = Vec::new();
        let mut marginal: Vec<(usize, Vec<u32>)> = Vec::new();
        for (k, a) in alts.iter().enumerate() {
            let alt = self.tokens(&variant(a));
            let same_shape = alt.offsets == toks.offsets;
            let changed_inside =
                same_shape && (0..n).all(|i| alt.ids[i] == toks.ids[i] || covering.contains(&i));
            if same_shape && changed_inside && !covering.is_empty() {
                marginal.push((k, alt.ids));
            } else {
                need_pll.push(k);
            }
        }
        if !marginal.is_empty() {
            let first = covering[0];
            let last = *covering.last().unwrap_or(&first);
            let (lo, hi) = self.window_for(n, first, last + 1);
            let (prefix, suffix) = self.template();
            let p = prefix.is_some() as usize;
            let mask = self.encoder.tokenizer.special_ids().mask.unwrap_or(0);
            let mut row = Vec::with_capacity(hi - lo + 2);
            row.extend(prefix);
            row.extend_from_slice(&toks.ids[lo..hi]);
            row.extend(suffix);
            let inside: Vec<usize> = covering
                .iter()
                .copied()
                .filter(|&i| i >= lo && i < hi)
                .collect();
            for &i in &inside {
                row[i - lo + p] = mask;
            }
            let picks: Vec<(usize, usize)> = inside.iter().map(|&i| (0, i - lo + p)).collect();
            let lp = self.log_probs(&[row], &picks)?;
            for (k, alt_ids) in marginal {
                let llr: f64 = inside
                    .iter()
                    .zip(&lp)
                    .map(|(&i, v)| (v[alt_ids[i] as usize] - v[toks.ids[i] as usize]) as f64)
                    .sum();
                out[k] = (llr, EffectMethod::MaskedMarginal);
            }
        }
        if !need_pll.is_empty() {
            let reference = self.sequence(seq)?.log_likelihood;
            for k in need_pll {
                let v = self.sequence(&variant(&alts[k]))?.log_likelihood - reference;
                out[k] = (v, EffectMethod::PseudoLikelihoodRatio);
            }
        }
        Ok(out)
    }

    /// In-silico mutagenesis: for every position, the effect of each base (A, C, G, T) against
    /// the reference (0 for the reference base itself; NaN at `N`).
    pub fn mutagenesis(
        &self,
        seq: &[u8],
        progress: impl FnMut(usize, usize),
    ) -> Result<Vec<[f64; 4]>, EvalError> {
        self.mutagenesis_range(seq, 0, seq.len(), progress)
    }

    /// [`Scorer::mutagenesis`] of positions `[start, end)` only, the rest of `seq` serving as
    /// context.
    pub fn mutagenesis_range(
        &self,
        seq: &[u8],
        start: usize,
        end: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Vec<[f64; 4]>, EvalError> {
        let mut out = Vec::with_capacity(end.saturating_sub(start));
        for i in start..end.min(seq.len()) {
            let b = seq[i];
            progress(i - start, end - start);
            let mut row = [f64::NAN; 4];
            if let Some(r) = b"ACGT".iter().position(|&x| x == b) {
                let alts: Vec<Vec<u8>> = b"ACGT"
                    .iter()
                    .filter(|&&x| x != b)
                    .map(|&x| vec![x])
                    .collect();
                let effects = self.site_effects(seq, i, i + 1, &alts)?;
                let mut e = effects.into_iter();
                for (j, slot) in row.iter_mut().enumerate() {
                    *slot = if j == r {
                        0.0
                    } else {
                        e.next().map(|x| x.0).unwrap_or(f64::NAN)
                    };
                }
            }
            out.push(row);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dnalm_model::Architecture;
    use dnalm_model::{DnaLm, ModelConfig};
    use dnalm_tokenize::{AnyTokenizer, TokenizerSpec};

    fn encoder(arch: Architecture, spec: &str, max_positions: usize) -> Checkpoint {
        let spec: TokenizerSpec = spec.parse().unwrap();
        let template = if arch == Architecture::Decoder {
            dnalm_tokenize::Template::Causal
        } else {
            dnalm_tokenize::Template::Bert
        };
        let tokenizer: AnyTokenizer = spec.build(template).unwrap();
        let mut config = ModelConfig::new(arch, tokenizer.vocab().len());
        config.n_layers = 1;
        config.d_model = 16;
        config.n_heads = 2;
        config.d_ffn = 32;
        config.max_positions = max_positions;
        let model = DnaLm::seeded(&config, &dnalm_model::cpu(), 3).unwrap();
        Checkpoint {
            model,
            tokenizer,
            source: "test".into(),
        }
    }

    const SEQ: &[u8] = b"ACGTTGCAAGGCTTACGATCGATCGGATCCA";

    #[test]
    fn causal_likelihood_is_exact_and_windowing_only_matters_past_the_context() {
        let big = encoder(Architecture::Decoder, "nucleotide", 64);
        let s = Scorer::new(&big, 4096).unwrap().sequence(SEQ).unwrap();
        assert_eq!(s.kind, "exact");
        assert_eq!(s.tokens.len(), SEQ.len());
        // The same model through manual forward passes: sum of log p(x_i | x_<i).
        let scorer = Scorer::new(&big, 4096).unwrap();
        let (bos, eos) = scorer.template();
        let mut row: Vec<u32> = bos.into_iter().collect();
        row.extend(scorer.tokens(SEQ).ids);
        row.extend(eos);
        let picks: Vec<(usize, usize)> = (0..SEQ.len()).map(|i| (0, i)).collect();
        let lp = scorer.log_probs(&[row.clone()], &picks).unwrap();
        let manual: f64 = (0..SEQ.len())
            .map(|i| lp[i][row[i + 1] as usize] as f64)
            .sum();
        assert!((s.log_likelihood - manual).abs() < 1e-4);
        // Per-base values of single-nucleotide tokens are the token scores.
        let pb = s.per_base(SEQ.len());
        assert!((pb.iter().sum::<f64>() - s.log_likelihood).abs() < 1e-6);
    }

    #[test]
    fn logits_give_the_exact_likelihood_of_a_decoder_and_refuse_long_sequences() {
        let dec = encoder(Architecture::Decoder, "nucleotide", 64);
        let scorer = Scorer::new(&dec, 4096).unwrap();
        let logits = scorer.logits(SEQ).unwrap();
        // <bos> + bases + <eos>, every vocabulary entry.
        assert_eq!(logits.dim(), (SEQ.len() + 2, dec.tokenizer.vocab().len()));
        let (bos, _) = scorer.template();
        let mut row: Vec<u32> = bos.into_iter().collect();
        row.extend(scorer.tokens(SEQ).ids);
        let from_logits: f64 = (0..SEQ.len())
            .map(|i| {
                let r = logits.row(i);
                let max = r.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let lse = max + r.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
                f64::from(r[row[i + 1] as usize] - lse)
            })
            .sum();
        let exact = scorer.sequence(SEQ).unwrap().log_likelihood;
        assert!(
            (from_logits - exact).abs() < 1e-3,
            "{from_logits} vs {exact}"
        );
        let long = vec![b'A'; 100];
        let err = scorer.logits(&long).unwrap_err().to_string();
        assert!(
            err.contains("100 tokens do not fit the model's window of 62"),
            "{err}"
        );
    }

    #[test]
    fn pseudo_likelihood_masks_the_scored_token_and_its_kmer_neighbours() {
        let enc = encoder(Architecture::Encoder, "kmer:3", 64);
        let scorer = Scorer::new(&enc, 4096).unwrap();
        let s = scorer.sequence(SEQ).unwrap();
        assert_eq!(s.kind, "pseudo");
        assert_eq!(s.tokens.len(), SEQ.len() - 2);
        // Token 5 by hand: mask tokens 3..=7 (all share a base with 5), read log p at 5.
        let toks = scorer.tokens(SEQ);
        let (cls, sep) = scorer.template();
        let mask = enc.tokenizer.special_ids().mask.unwrap();
        let mut row: Vec<u32> = cls.into_iter().collect();
        row.extend(&toks.ids);
        row.extend(sep);
        for j in 3..=7 {
            row[j + 1] = mask;
        }
        let lp = scorer.log_probs(&[row], &[(0, 6)]).unwrap();
        let manual = lp[0][toks.ids[5] as usize] as f64;
        assert!((s.tokens[5].log_prob - manual).abs() < 1e-5);
        // Per base: averaged over the covering tokens, one value per base.
        assert_eq!(s.per_base(SEQ.len()).len(), SEQ.len());
        assert!(s.per_base(SEQ.len()).iter().all(|v| v.is_finite()));
    }

    #[test]
    fn long_sequences_are_scored_in_windows() {
        let small = encoder(Architecture::Encoder, "nucleotide", 12);
        let s = Scorer::new(&small, 64).unwrap().sequence(SEQ).unwrap();
        assert_eq!(s.tokens.len(), SEQ.len());
        assert!(s.log_likelihood.is_finite());
        let dec = encoder(Architecture::Decoder, "nucleotide", 12);
        let s = Scorer::new(&dec, 64).unwrap().sequence(SEQ).unwrap();
        assert_eq!(s.tokens.len(), SEQ.len());
    }

    #[test]
    fn site_effects_are_antisymmetric_and_use_the_masked_marginal() {
        for spec in ["nucleotide", "kmer:3", "kmer:3:non-overlapping"] {
            let enc = encoder(Architecture::Encoder, spec, 64);
            let scorer = Scorer::new(&enc, 4096).unwrap();
            let at = 10;
            let (r, a) = (SEQ[at], b'T');
            assert_ne!(r, a);
            let fwd = scorer.site_effects(SEQ, at, at + 1, &[vec![a]]).unwrap()[0];
            assert_eq!(fwd.1, EffectMethod::MaskedMarginal, "{spec}");
            let mut alt = SEQ.to_vec();
            alt[at] = a;
            let back = scorer.site_effects(&alt, at, at + 1, &[vec![r]]).unwrap()[0];
            // Masking the site hides which base is there, so the two directions mirror.
            assert!(
                (fwd.0 + back.0).abs() < 1e-4,
                "{spec}: {} vs {}",
                fwd.0,
                back.0
            );
            let same = scorer.site_effects(SEQ, at, at + 1, &[vec![r]]).unwrap()[0];
            assert!(same.0.abs() < 1e-9);
        }
        // An insertion changes the token boundaries: pseudo-likelihood ratio.
        let enc = encoder(Architecture::Encoder, "nucleotide", 64);
        let scorer = Scorer::new(&enc, 4096).unwrap();
        let ins = scorer.site_effects(SEQ, 5, 6, &[b"AG".to_vec()]).unwrap()[0];
        assert_eq!(ins.1, EffectMethod::PseudoLikelihoodRatio);
        // Mutagenesis: one row per base, zero at the reference.
        let ism = scorer.mutagenesis(&SEQ[..8], |_, _| {}).unwrap();
        assert_eq!(ism.len(), 8);
        for (row, b) in ism.iter().zip(&SEQ[..8]) {
            let r = b"ACGT".iter().position(|x| x == b).unwrap();
            assert_eq!(row[r], 0.0);
            assert!(row.iter().all(|v| v.is_finite()));
        }
    }
}
