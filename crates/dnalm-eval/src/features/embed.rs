//! Frozen embeddings from a model: pooled per sequence, or per token / per base, from one or
//! several layers, optionally averaged with the reverse complement, for sequences of any length.
//!
//! # How a sequence becomes vectors
//! 1. It is tokenised once, whole, with base offsets (no special tokens).
//! 2. If its tokens do not fit the model's context, it is cut into token windows that overlap by
//!    `overlap` tokens; each window gets the tokenizer's special tokens and runs separately.
//! 3. Windows are stitched: each token's state comes from the window in which it lies furthest
//!    from an edge (the overlap is split at its middle), so every token has exactly one state.
//! 4. Per-token output is those states; per-base output gives each base the mean state of the
//!    tokens that cover it (overlapping k-mers: up to k of them); pooled output is the mean or max
//!    over the sequence tokens, or the mean over windows of the `[CLS]` state.
//! 5. With reverse-complement averaging, the reverse complement goes through the same steps and
//!    its pooled (or, per base, re-reversed) vectors are averaged with the forward ones.
//!
//! Batches are formed from sequences of similar length (sorted within bounded chunks), so memory
//! is bounded by the chunk and the token budget, not by the input.

use std::path::PathBuf;

use dnalm_model::{
    burn::tensor::{Device, Tensor},
    heads::Pooling,
    Checkpoint, ModelInput,
};
use dnalm_seq::alphabet::reverse_complement;
use dnalm_tokenize::Tokenizer;
use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::EvalError;

/// What to extract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedOptions {
    /// Layers: `0` is the token embedding output, `i` the output of block `i`, and `n_layers`
    /// (or any negative index counted from the end, `-1` = `n_layers`) the final, normalised
    /// output. Several layers are concatenated in this order.
    pub layers: Vec<i64>,
    /// Pooling for per-sequence output.
    pub pooling: Pooling,
    /// Per-sequence, per-token or per-base vectors.
    pub granularity: Granularity,
    /// Average with the reverse complement.
    pub reverse_complement: bool,
    /// Tokens shared by neighbouring windows of a long sequence (default: a quarter of the
    /// window, at most 64).
    pub overlap: Option<usize>,
    /// Token budget of one forward batch (rows × padded length).
    pub batch_tokens: usize,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            layers: vec![-1],
            pooling: Pooling::Mean,
            granularity: Granularity::Sequence,
            reverse_complement: false,
            overlap: None,
            batch_tokens: 16_384,
        }
    }
}

/// One vector per what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// One pooled vector per sequence.
    Sequence,
    /// One vector per sequence token (special tokens excluded).
    Token,
    /// One vector per base.
    Base,
}

impl std::str::FromStr for Granularity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sequence" | "seq" | "pooled" => Ok(Granularity::Sequence),
            "token" => Ok(Granularity::Token),
            "base" => Ok(Granularity::Base),
            _ => Err(format!("'{s}' is not sequence, token or base")),
        }
    }
}

/// Parses `mean`, `cls`, `max` or `last`.
pub fn parse_pooling(s: &str) -> Result<Pooling, EvalError> {
    match s {
        "mean" => Ok(Pooling::Mean),
        "cls" => Ok(Pooling::Cls),
        "max" => Ok(Pooling::Max),
        "last" => Ok(Pooling::Last),
        _ => Err(EvalError::BadOption {
            option: "pooling",
            message: format!("'{s}' is not mean, cls, max or last"),
        }),
    }
}

/// The vectors of one sequence: `rows x width` (1 row when pooled).
pub type SequenceVectors = Array2<f32>;

/// One window of one sequence: its tokens are `ids[first..last]` of the whole sequence, with the
/// tokenizer's special tokens around them when run (built then, so windows hold no copies).
struct Window {
    seq: usize,
    /// Index of the first sequence token in the whole-sequence token list.
    first: usize,
    /// One past the last.
    last: usize,
    /// Sequence tokens `[keep_from, keep_to)` (whole-sequence indices) taken from this window.
    keep: (usize, usize),
}

struct Tokenised {
    ids: Vec<u32>,
    /// Base spans of the tokens (per-base output only).
    offsets: Vec<(usize, usize)>,
    bases: usize,
}

/// Where a sequence's states go: every token's row (per-token and per-base output), or a
/// pooled vector accumulated window by window (per-sequence output), so that memory does not
/// grow with the sequence when one vector is asked for.
enum Sink {
    States(Array2<f32>),
    Pooled {
        /// Sum (mean pooling, in f64) or running maximum of the owned tokens' states.
        sum: Vec<f64>,
        max: Vec<f32>,
        tokens: usize,
        /// Sum of the windows' `[CLS]` states and their count.
        cls: Vec<f64>,
        windows: usize,
        /// The state of the sequence's last token (from the window that ends the sequence).
        last: Vec<f32>,
    },
}

impl Sink {
    fn new(granularity: Granularity, tokens: usize, width: usize) -> Self {
        match granularity {
            Granularity::Sequence => Sink::Pooled {
                sum: vec![0.0; width],
                max: vec![f32::MIN; width],
                tokens: 0,
                cls: vec![0.0; width],
                windows: 0,
                last: vec![0.0; width],
            },
            _ => Sink::States(Array2::zeros((tokens, width))),
        }
    }

    /// Takes token `t`'s state.
    fn token(&mut self, t: usize, state: ndarray::ArrayView1<f32>) {
        match self {
            Sink::States(states) => states.row_mut(t).assign(&state),
            Sink::Pooled {
                sum, max, tokens, ..
            } => {
                for ((s, m), &v) in sum.iter_mut().zip(max.iter_mut()).zip(state) {
                    *s += f64::from(v);
                    *m = m.max(v);
                }
                *tokens += 1;
            }
        }
    }

    /// Takes the state of the sequence's last token.
    fn last(&mut self, state: ndarray::ArrayView1<f32>) {
        if let Sink::Pooled { last, .. } = self {
            last.iter_mut().zip(state).for_each(|(l, &v)| *l = v);
        }
    }

    /// Takes a window's `[CLS]` state.
    fn cls(&mut self, state: ndarray::ArrayView1<f32>) {
        if let Sink::Pooled { cls, windows, .. } = self {
            for (c, &v) in cls.iter_mut().zip(state) {
                *c += f64::from(v);
            }
            *windows += 1;
        }
    }
}

/// Embeds sequences with one [`Checkpoint`] and one set of [`EmbedOptions`].
pub struct Embedder<'a> {
    encoder: &'a Checkpoint,
    options: EmbedOptions,
    layers: Vec<usize>,
    prefix: Option<u32>,
    suffix: Option<u32>,
    /// Sequence tokens per window.
    window: usize,
    /// Tokens shared by neighbouring windows.
    overlap: usize,
}

impl<'a> Embedder<'a> {
    /// Checks the options against the model.
    pub fn new(encoder: &'a Checkpoint, options: EmbedOptions) -> Result<Self, EvalError> {
        let n = encoder.n_layers() as i64;
        let mut layers = Vec::new();
        for &l in &options.layers {
            let index = if l < 0 { n + 1 + l } else { l };
            if !(0..=n).contains(&index) {
                return Err(EvalError::BadOption {
                    option: "layers",
                    message: format!(
                        "layer {l} does not exist: the model has layers 0..={n} (or -1 for the last)"
                    ),
                });
            }
            layers.push(index as usize);
        }
        if layers.is_empty() {
            return Err(EvalError::BadOption {
                option: "layers",
                message: "no layer chosen".into(),
            });
        }
        let tk = &encoder.tokenizer;
        let (prefix, suffix) = tk.template_tokens();
        if options.pooling == Pooling::Cls
            && options.granularity == Granularity::Sequence
            && prefix.is_none()
        {
            return Err(EvalError::Unsupported {
                model: encoder.source.clone(),
                message: "its tokenizer adds no leading special token, so there is no [CLS] \
                          state; use mean or max pooling"
                    .into(),
            });
        }
        if options.reverse_complement && options.granularity == Granularity::Token {
            return Err(EvalError::BadOption {
                option: "reverse_complement",
                message: "reverse-complement averaging needs per-sequence or per-base output \
                          (tokens of the two strands do not pair up)"
                    .into(),
            });
        }
        let window = tk.room(encoder.model.config.max_positions);
        if window == 0 {
            return Err(EvalError::Unsupported {
                model: encoder.source.clone(),
                message: "the model's context holds no tokens".into(),
            });
        }
        let overlap = options.overlap.unwrap_or((window / 4).min(64));
        if overlap * 2 >= window {
            return Err(EvalError::BadOption {
                option: "overlap",
                message: format!("{overlap} must be under half the window ({window} tokens)"),
            });
        }
        Ok(Embedder {
            encoder,
            options,
            layers,
            prefix,
            suffix,
            window,
            overlap,
        })
    }

    /// The encoder.
    pub fn encoder(&self) -> &Checkpoint {
        self.encoder
    }

    /// The options it embeds with.
    pub fn options(&self) -> &EmbedOptions {
        &self.options
    }

    /// Width of each output vector (model width × number of layers).
    pub fn width(&self) -> usize {
        self.encoder.width() * self.layers.len()
    }

    /// Embeds a batch of sequences (normalised `ACGTN`), in input order.
    pub fn embed(&self, sequences: &[&[u8]]) -> Result<Vec<SequenceVectors>, EvalError> {
        let forward = self.embed_strand(sequences)?;
        if !self.options.reverse_complement {
            return Ok(forward);
        }
        let rc: Vec<Vec<u8>> = sequences
            .par_iter()
            .map(|s| reverse_complement(s))
            .collect();
        let rc_refs: Vec<&[u8]> = rc.iter().map(Vec::as_slice).collect();
        let backward = self.embed_strand(&rc_refs)?;
        Ok(forward
            .into_iter()
            .zip(backward)
            .map(|(f, b)| match self.options.granularity {
                Granularity::Base => {
                    let mut b = b;
                    b.invert_axis(ndarray::Axis(0));
                    (f + b) * 0.5
                }
                _ => (f + b) * 0.5,
            })
            .collect())
    }

    fn embed_strand(&self, sequences: &[&[u8]]) -> Result<Vec<SequenceVectors>, EvalError> {
        let tk = &self.encoder.tokenizer;
        let per_base = self.options.granularity == Granularity::Base;
        // Tokenise in parallel (offsets only where per-base output needs them), then cut into
        // windows.
        let tokenised: Vec<Tokenised> = sequences
            .par_iter()
            .map(|s| {
                let mut ids = Vec::with_capacity(s.len());
                let mut offsets = Vec::new();
                tk.tokenize_into(s, &mut ids, per_base.then_some(&mut offsets));
                Tokenised {
                    ids,
                    offsets,
                    bases: s.len(),
                }
            })
            .collect();
        let mut windows = Vec::new();
        for (seq, tok) in tokenised.iter().enumerate() {
            windows.extend(self.windows(seq, tok.ids.len()));
        }
        let width = self.width();
        let mut sinks: Vec<Sink> = tokenised
            .iter()
            .map(|t| Sink::new(self.options.granularity, t.ids.len(), width))
            .collect();
        // Similar lengths together; the token budget bounds each batch.
        let mut order: Vec<usize> = (0..windows.len()).collect();
        order.sort_by_key(|&w| std::cmp::Reverse(windows[w].last - windows[w].first));
        let specials = self.prefix.is_some() as usize + self.suffix.is_some() as usize;
        let has_prefix = self.prefix.is_some() as usize;
        let mut start = 0;
        while start < order.len() {
            let longest =
                (windows[order[start]].last - windows[order[start]].first + specials).max(1);
            let rows = (self.options.batch_tokens / longest).max(1);
            let batch: Vec<&Window> = order[start..(start + rows).min(order.len())]
                .iter()
                .map(|&w| &windows[w])
                .collect();
            start += batch.len();
            let out = self.run(&batch, &tokenised)?;
            for (b, win) in batch.iter().enumerate() {
                let sink = &mut sinks[win.seq];
                for t in win.keep.0..win.keep.1 {
                    let row = t - win.first + has_prefix;
                    sink.token(t, out.slice(ndarray::s![b, row, ..]));
                }
                // The window that ends the sequence holds its last token.
                if win.keep.1 > win.keep.0 && win.keep.1 == tokenised[win.seq].ids.len() {
                    let row = win.keep.1 - 1 - win.first + has_prefix;
                    sink.last(out.slice(ndarray::s![b, row, ..]));
                }
                if has_prefix == 1 {
                    sink.cls(out.slice(ndarray::s![b, 0, ..]));
                }
            }
        }
        Ok(sinks
            .into_iter()
            .zip(tokenised)
            .map(|(sink, tok)| self.finish(sink, &tok))
            .collect())
    }

    fn windows(&self, seq: usize, n: usize) -> Vec<Window> {
        if n <= self.window {
            return vec![Window {
                seq,
                first: 0,
                last: n,
                keep: (0, n),
            }];
        }
        let step = self.window - self.overlap;
        let mut starts: Vec<usize> = (0..)
            .map(|i| i * step)
            .take_while(|&s| s + self.window < n)
            .collect();
        starts.push(n - self.window);
        starts.dedup();
        let mut out = Vec::with_capacity(starts.len());
        for (i, &s) in starts.iter().enumerate() {
            let e = s + self.window;
            let keep_to = if i + 1 == starts.len() {
                n
            } else {
                let next = starts[i + 1];
                next + (e - next) / 2
            };
            out.push(Window {
                seq,
                first: s,
                last: e,
                keep: (0, keep_to),
            });
        }
        // Make the kept ranges tile exactly (each token once).
        for i in 1..out.len() {
            out[i].keep.0 = out[i - 1].keep.1;
        }
        out
    }

    /// Runs windows through the model; output `[rows, len, width]` as an ndarray.
    fn run(
        &self,
        windows: &[&Window],
        tokenised: &[Tokenised],
    ) -> Result<ndarray::Array3<f32>, EvalError> {
        let model = &self.encoder.model;
        let rows: Vec<Vec<u32>> = windows
            .iter()
            .map(|w| {
                let mut ids = Vec::with_capacity(w.last - w.first + 2);
                ids.extend(self.prefix);
                ids.extend_from_slice(&tokenised[w.seq].ids[w.first..w.last]);
                ids.extend(self.suffix);
                ids
            })
            .collect();
        let input = ModelInput::from_rows(&rows, model.config.architecture.attention_pattern());
        let keep_all = self.layers.iter().any(|&l| l < model.config.n_layers);
        let (last, layers) = model.forward_layers(&input, keep_all)?;
        let pick = |l: usize| -> Tensor<3> {
            if l == model.config.n_layers {
                last.clone()
            } else {
                layers[l].clone()
            }
        };
        let parts: Vec<Tensor<3>> = self.layers.iter().map(|&l| pick(l)).collect();
        let joined = Tensor::cat(parts, 2);
        let [b, len, d] = joined.dims();
        let values = joined
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| crate::tensor_error("embedding", e))?;
        ndarray::Array3::from_shape_vec((b, len, d), values)
            .map_err(|e| crate::shape_error("embedding", e))
    }

    fn finish(&self, sink: Sink, tok: &Tokenised) -> SequenceVectors {
        let states = match sink {
            Sink::States(states) => states,
            Sink::Pooled {
                sum,
                max,
                tokens,
                cls,
                windows,
                last,
            } => {
                let pooled: Vec<f32> = match self.options.pooling {
                    Pooling::Mean => sum
                        .iter()
                        .map(|&s| (s / tokens.max(1) as f64) as f32)
                        .collect(),
                    Pooling::Max => max,
                    Pooling::Cls => cls
                        .iter()
                        .map(|&c| (c / windows.max(1) as f64) as f32)
                        .collect(),
                    Pooling::Last => last,
                };
                let width = pooled.len();
                return Array2::from_shape_vec((1, width), pooled)
                    .unwrap_or_else(|_| Array2::zeros((1, width)));
            }
        };
        let width = states.ncols();
        match self.options.granularity {
            Granularity::Base => {
                let mut out = Array2::<f32>::zeros((tok.bases, width));
                let mut count = vec![0u32; tok.bases];
                for (t, &(a, b)) in tok.offsets.iter().enumerate() {
                    for (base, c) in count.iter_mut().enumerate().take(b.min(tok.bases)).skip(a) {
                        let mut row = out.row_mut(base);
                        row += &states.row(t);
                        *c += 1;
                    }
                }
                for (mut row, &c) in out.rows_mut().into_iter().zip(&count) {
                    if c > 1 {
                        row /= c as f32;
                    }
                }
                out
            }
            _ => states,
        }
    }
}

/// A checkpoint to evaluate: a directory, or a randomly initialised copy of its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Display name.
    pub name: String,
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// Use random weights (seeded) instead of the checkpoint's.
    pub random: Option<u64>,
}

impl ModelSpec {
    /// Parses `[NAME=]DIR` or `[NAME=]random:DIR` (random weights, seed 0).
    pub fn parse(s: &str) -> ModelSpec {
        let (name, rest) = match s.split_once('=') {
            Some((n, r)) if !n.contains('/') => (Some(n.to_string()), r),
            _ => (None, s),
        };
        let (random, path) = match rest.strip_prefix("random:") {
            Some(p) => (Some(0), p),
            None => (None, rest),
        };
        let dir = PathBuf::from(path);
        let default = {
            let base = dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| path.to_string());
            // checkpoint-000208 says less than its run directory.
            let base = if base.starts_with("checkpoint-") {
                dir.parent()
                    .and_then(|p| p.file_name())
                    .map(|n| format!("{}@{}", n.to_string_lossy(), &base[11..]))
                    .unwrap_or(base)
            } else {
                base
            };
            if random.is_some() {
                format!("random({base})")
            } else {
                base
            }
        };
        ModelSpec {
            name: name.unwrap_or(default),
            dir,
            random,
        }
    }

    /// Loads the encoder onto `device`.
    pub fn load(&self, device: &Device) -> Result<Checkpoint, EvalError> {
        match self.random {
            Some(seed) => Ok(Checkpoint::random_like(&self.dir, seed, device)?),
            None => Ok(Checkpoint::load(&self.dir, device)?),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dnalm_model::{DnaLm, ModelConfig};
    use dnalm_tokenize::{Template, TokenizerSpec};

    /// A 2-block, d = 16 encoder (seed 1) with the `spec` tokenizer (BERT template): the tiny
    /// model the crate's tests share.
    pub(crate) fn encoder(max_positions: usize, spec: &str) -> Checkpoint {
        let tokenizer = spec
            .parse::<TokenizerSpec>()
            .unwrap()
            .build(Template::Bert)
            .unwrap();
        let config = ModelConfig {
            vocab_size: tokenizer.vocab().len(),
            n_layers: 2,
            d_model: 16,
            n_heads: 2,
            d_ffn: 32,
            max_positions,
            ..ModelConfig::new(dnalm_model::Architecture::Encoder, 0)
        };
        let model = DnaLm::seeded(&config, &dnalm_model::cpu(), 1).unwrap();
        Checkpoint::new(model, tokenizer, "test".into()).unwrap()
    }

    fn seq(n: usize) -> Vec<u8> {
        (0..n).map(|i| b"ACGGTCAT"[(i * 7 + i / 3) % 8]).collect()
    }

    #[test]
    fn windows_tile_every_token_exactly_once() {
        let enc = encoder(34, "nucleotide");
        let options = EmbedOptions {
            overlap: Some(8),
            ..Default::default()
        };
        let e = Embedder::new(&enc, options).unwrap();
        for n in [1, 31, 32, 33, 60, 100, 257] {
            let windows = e.windows(0, n);
            let mut covered = vec![0; n];
            for w in &windows {
                assert!(w.last - w.first + 2 <= 34);
                assert!(w.keep.0 >= w.first && w.keep.1 <= w.last);
                for c in &mut covered[w.keep.0..w.keep.1] {
                    *c += 1;
                }
            }
            assert!(covered.iter().all(|&c| c == 1), "n={n}: {covered:?}");
        }
    }

    #[test]
    fn a_long_sequence_tiled_matches_the_untiled_one_away_from_window_edges() {
        // Same weights, one model with context 512 (no tiling) and one with 66 (tiling).
        let long = encoder(512, "nucleotide");
        let short = Checkpoint::new(
            DnaLm::seeded(
                &ModelConfig {
                    max_positions: 66,
                    ..long.model.config.clone()
                },
                &dnalm_model::cpu(),
                1,
            )
            .unwrap(),
            long.tokenizer.clone(),
            "short".into(),
        )
        .unwrap();
        let s = seq(200);
        let per_token = EmbedOptions {
            granularity: Granularity::Token,
            overlap: Some(16),
            ..Default::default()
        };
        let full = Embedder::new(&long, per_token.clone())
            .unwrap()
            .embed(&[&s])
            .unwrap();
        let tiled = Embedder::new(&short, per_token)
            .unwrap()
            .embed(&[&s])
            .unwrap();
        assert_eq!(full[0].dim(), (200, 16));
        assert_eq!(tiled[0].dim(), (200, 16));
        // Both differ in context, so states differ; but every token has a finite state and the
        // tiled states are not all equal (stitching put real outputs everywhere).
        assert!(tiled[0].iter().all(|v| v.is_finite()));
        assert!(tiled[0].row(0) != tiled[0].row(199));
    }

    /// Issue 14, defect 7: per-sequence vectors are pooled window by window, so memory no longer
    /// grows with the sequence (`scripts/embed_memory.sh` measures it); they must equal pooling
    /// the stitched per-token states.
    #[test]
    fn incremental_pooling_equals_pooling_the_token_states() {
        let enc = encoder(34, "nucleotide");
        let seqs = [seq(257), seq(5), seq(100)];
        let refs: Vec<&[u8]> = seqs.iter().map(Vec::as_slice).collect();
        let tokens = Embedder::new(
            &enc,
            EmbedOptions {
                granularity: Granularity::Token,
                overlap: Some(8),
                ..Default::default()
            },
        )
        .unwrap()
        .embed(&refs)
        .unwrap();
        for pooling in [Pooling::Mean, Pooling::Max, Pooling::Last] {
            let pooled = Embedder::new(
                &enc,
                EmbedOptions {
                    pooling,
                    overlap: Some(8),
                    ..Default::default()
                },
            )
            .unwrap()
            .embed(&refs)
            .unwrap();
            for (p, t) in pooled.iter().zip(&tokens) {
                let want = match pooling {
                    Pooling::Mean => t.mean_axis(ndarray::Axis(0)).unwrap(),
                    Pooling::Last => t.row(t.nrows() - 1).to_owned(),
                    _ => t.fold_axis(ndarray::Axis(0), f32::MIN, |a, &b| a.max(b)),
                };
                let diff = (&p.row(0) - &want)
                    .mapv(f32::abs)
                    .fold(0f32, |a, &b| a.max(b));
                assert!(diff < 1e-5, "{pooling:?}: {diff}");
            }
        }
    }

    #[test]
    fn pooling_batching_and_reverse_complement_are_consistent() {
        let enc = encoder(130, "kmer:3");
        let seqs = [seq(40), seq(90), seq(7)];
        let refs: Vec<&[u8]> = seqs.iter().map(Vec::as_slice).collect();
        let options = EmbedOptions {
            layers: vec![1, -1],
            batch_tokens: 64,
            ..Default::default()
        };
        let e = Embedder::new(&enc, options.clone()).unwrap();
        assert_eq!(e.width(), 32);
        let together = e.embed(&refs).unwrap();
        for (i, s) in refs.iter().enumerate() {
            let alone = e.embed(&[s]).unwrap();
            let diff = (&alone[0] - &together[i]).mapv(f32::abs).sum();
            assert!(diff < 1e-3, "sequence {i} depends on its batch: {diff}");
        }
        // Reverse-complement averaging is strand-symmetric.
        let rc_opts = EmbedOptions {
            reverse_complement: true,
            ..options
        };
        let e = Embedder::new(&enc, rc_opts).unwrap();
        let rc = reverse_complement(&seqs[1]);
        let a = e.embed(&[&seqs[1]]).unwrap();
        let b = e.embed(&[&rc]).unwrap();
        assert!((&a[0] - &b[0]).mapv(f32::abs).sum() < 1e-3);
        // Per base: one row per base.
        let e = Embedder::new(
            &enc,
            EmbedOptions {
                granularity: Granularity::Base,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(e.embed(&[&seqs[0]]).unwrap()[0].nrows(), 40);
    }

    #[test]
    fn bad_layers_and_options_are_refused() {
        let enc = encoder(64, "nucleotide");
        let bad = |o: EmbedOptions| Embedder::new(&enc, o).err().unwrap().to_string();
        assert!(bad(EmbedOptions {
            layers: vec![3],
            ..Default::default()
        })
        .contains("layers 0..=2"));
        assert!(bad(EmbedOptions {
            overlap: Some(40),
            ..Default::default()
        })
        .contains("half the window"));
        assert!(bad(EmbedOptions {
            granularity: Granularity::Token,
            reverse_complement: true,
            ..Default::default()
        })
        .contains("reverse-complement"));
    }

    #[test]
    fn a_tokenizer_larger_than_the_embedding_or_without_cls_is_refused() {
        let enc = encoder(64, "kmer:3");
        let small = ModelConfig {
            vocab_size: 10,
            ..enc.model.config.clone()
        };
        let model = DnaLm::seeded(&small, &dnalm_model::cpu(), 1).unwrap();
        let err = Checkpoint::new(model, enc.tokenizer.clone(), "m".into()).unwrap_err();
        assert!(err.to_string().contains("embedding has 10 rows"), "{err}");
        let bare = "nucleotide"
            .parse::<TokenizerSpec>()
            .unwrap()
            .build(Template::None)
            .unwrap();
        let model = DnaLm::seeded(&enc.model.config, &dnalm_model::cpu(), 1).unwrap();
        let plain = Checkpoint::new(model, bare, "bare".into()).unwrap();
        let cls = EmbedOptions {
            pooling: Pooling::Cls,
            ..Default::default()
        };
        let err = Embedder::new(&plain, cls).err().unwrap().to_string();
        assert!(err.contains("no [CLS] state"), "{err}");
    }

    #[test]
    fn model_specs_parse_names_and_random_controls() {
        let s = ModelSpec::parse("runs/mlm/checkpoint-000208");
        assert_eq!(s.name, "mlm@000208");
        assert_eq!(s.random, None);
        let r = ModelSpec::parse("ctrl=random:runs/mlm/checkpoint-000208");
        assert_eq!(r.name, "ctrl");
        assert_eq!(r.random, Some(0));
    }
}
