//! Saving and loading tokenizers in the Hugging Face layout.
//!
//! A tokenizer directory holds:
//!
//! - `tokenizer.json`: the Hugging Face `tokenizers` file. Python's
//!   `tokenizers.Tokenizer.from_file(...)` (and `transformers`' `PreTrainedTokenizerFast`) load
//!   it and give the same ids as dnalm. Its normalizer applies the alphabet policy (lowercase ->
//!   uppercase, `U` -> `T`, IUPAC -> `N`). Nucleotide and non-overlapping k-mer tokenizers encode
//!   raw sequence with a `Split` pre-tokenizer (regex `.` or `[ACGT]{k}|.`). Overlapping k-mers
//!   cannot be expressed as a split of the input, so their `tokenizer.json` takes DNABERT's input
//!   convention: the sequence written as space-separated k-mers (`ACGTAC CGTACG ...`).
//! - `vocab.txt`: one token per line, id = line number (k-mer and nucleotide vocabularies; what
//!   DNABERT's `BertTokenizer` reads).
//! - `tokenizer_config.json`: `transformers`' config (special tokens, tokenizer class) plus a
//!   `dnalm` section saying which dnalm tokenizer this is, so that dnalm rebuilds its fast kernel.
//!
//! [`AnyTokenizer::load`] also reads directories that dnalm did not write: a DNABERT checkpoint
//! (`vocab.txt` of k-mers: overlapping k-mers, k from the vocabulary) or any `tokenizer.json`.

use std::{
    fs,
    path::{Path, PathBuf},
    str::FromStr,
};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokenizers::{
    normalizers::{replace::Replace, NormalizerWrapper, Sequence},
    pre_tokenizers::split::{Split, SplitPattern},
    processors::{template::TemplateProcessing, PostProcessorWrapper},
    SplitDelimiterBehavior,
};

use crate::{
    vocab::{SpecialTokenIds, Template, Vocab},
    BpeTokenizer, KmerTokenizer, NucleotideTokenizer, Result, TokenizeError, Tokenizer,
};

/// The version of the `dnalm` section of `tokenizer_config.json`.
const CONFIG_VERSION: u32 = 1;

/// Which tokenizer a directory holds (the `dnalm.tokenizer` entry of `tokenizer_config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TokenizerKind {
    /// One token per base.
    Nucleotide,
    /// k-mers.
    Kmer {
        /// k.
        k: usize,
        /// Stride 1 (true) or k (false).
        overlapping: bool,
    },
    /// A Hugging Face `tokenizer.json` model (BPE when trained by dnalm).
    Bpe,
}

impl std::fmt::Display for TokenizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenizerKind::Nucleotide => write!(f, "nucleotide"),
            TokenizerKind::Kmer {
                k,
                overlapping: true,
            } => write!(f, "{k}-mer overlapping"),
            TokenizerKind::Kmer {
                k,
                overlapping: false,
            } => write!(f, "{k}-mer non-overlapping"),
            TokenizerKind::Bpe => write!(f, "bpe"),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct DnalmSection {
    version: u32,
    tokenizer: TokenizerKind,
    template: Template,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokenizer_json_input: Option<String>,
}

/// Which tokenizer to use: a built-in kind or a saved tokenizer directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenizerSpec {
    /// A fresh built-in tokenizer.
    Builtin(TokenizerKind),
    /// A directory (or tokenizer.json / vocab.txt) to load.
    Path(PathBuf),
}

impl TokenizerSpec {
    /// Parses a spec without checking that a tokenizer path exists: anything that is not a
    /// built-in name is a path (run configs resolve relative paths before they load it).
    pub fn parse_unchecked(s: &str) -> Result<Self> {
        let bad =
            |message: String| TokenizeError::invalid(format!("tokenizer spec '{s}'"), message);
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            ["nucleotide" | "nt" | "1nt"] => Ok(TokenizerSpec::Builtin(TokenizerKind::Nucleotide)),
            ["kmer", k, rest @ ..] => {
                let k: usize = k
                    .parse()
                    .map_err(|_| bad(format!("k '{k}' is not a number")))?;
                let overlapping = match rest {
                    [] | ["overlapping"] => true,
                    ["non-overlapping"] => false,
                    _ => return Err(bad("expected kmer:K[:overlapping|:non-overlapping]".into())),
                };
                Ok(TokenizerSpec::Builtin(TokenizerKind::Kmer {
                    k,
                    overlapping,
                }))
            }
            _ => Ok(TokenizerSpec::Path(PathBuf::from(s))),
        }
    }

    /// Fails unless the spec is built in or names an existing path.
    pub fn check_exists(&self) -> Result<()> {
        match self {
            TokenizerSpec::Path(p) if !p.exists() => {
                Err(TokenizeError::NoSuchTokenizer { path: p.clone() })
            }
            _ => Ok(()),
        }
    }
}

impl FromStr for TokenizerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let spec = TokenizerSpec::parse_unchecked(s).map_err(|e| e.to_string())?;
        spec.check_exists().map_err(|e| e.to_string())?;
        Ok(spec)
    }
}

impl serde::Serialize for TokenizerSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for TokenizerSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        TokenizerSpec::parse_unchecked(&text).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for TokenizerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenizerSpec::Builtin(TokenizerKind::Nucleotide) => write!(f, "nucleotide"),
            TokenizerSpec::Builtin(TokenizerKind::Kmer {
                k,
                overlapping: true,
            }) => {
                write!(f, "kmer:{k}")
            }
            TokenizerSpec::Builtin(TokenizerKind::Kmer {
                k,
                overlapping: false,
            }) => {
                write!(f, "kmer:{k}:non-overlapping")
            }
            TokenizerSpec::Builtin(TokenizerKind::Bpe) => write!(f, "bpe"),
            TokenizerSpec::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

impl TokenizerSpec {
    /// Builds the tokenizer: a fresh built-in one with `template`, or the saved one (whose own
    /// template wins).
    pub fn build(&self, template: Template) -> Result<AnyTokenizer> {
        match self {
            TokenizerSpec::Builtin(kind) => AnyTokenizer::new(*kind, template),
            TokenizerSpec::Path(p) => AnyTokenizer::load(p),
        }
    }
}

/// Any dnalm tokenizer, as a closed enum (so it can be saved and matched without trait objects).
#[derive(Debug, Clone)]
pub enum AnyTokenizer {
    /// Single nucleotides.
    Nucleotide(NucleotideTokenizer),
    /// k-mers.
    Kmer(KmerTokenizer),
    /// BPE / any Hugging Face tokenizer (boxed: it holds two `tokenizers` pipelines).
    Bpe(Box<BpeTokenizer>),
}

impl AnyTokenizer {
    fn inner(&self) -> &dyn Tokenizer {
        match self {
            AnyTokenizer::Nucleotide(t) => t,
            AnyTokenizer::Kmer(t) => t,
            AnyTokenizer::Bpe(t) => t.as_ref(),
        }
    }

    /// Builds a fresh tokenizer of a kind (BPE must be trained instead: see [`BpeTokenizer::train`]).
    pub fn new(kind: TokenizerKind, template: Template) -> Result<Self> {
        match kind {
            TokenizerKind::Nucleotide => {
                Ok(AnyTokenizer::Nucleotide(NucleotideTokenizer::new(template)))
            }
            TokenizerKind::Kmer { k, overlapping } => Ok(AnyTokenizer::Kmer(KmerTokenizer::new(
                k,
                overlapping,
                template,
            )?)),
            TokenizerKind::Bpe => Err(TokenizeError::invalid(
                "tokenizer",
                "a BPE tokenizer must be trained (dnalm tokenizer train-bpe) or loaded",
            )),
        }
    }

    /// The Hugging Face `tokenizer.json` equivalent of this tokenizer.
    pub fn to_hf(&self) -> Result<tokenizers::Tokenizer> {
        match self {
            AnyTokenizer::Bpe(t) => Ok(t.hf().clone()),
            AnyTokenizer::Nucleotide(_) => {
                wordlevel_hf(self.inner(), PreTokenizer::Regex(".".into()))
            }
            AnyTokenizer::Kmer(t) if t.overlapping() => {
                wordlevel_hf(self.inner(), PreTokenizer::Whitespace)
            }
            AnyTokenizer::Kmer(t) => wordlevel_hf(
                self.inner(),
                PreTokenizer::Regex(format!("[ACGT]{{{}}}|.", t.k())),
            ),
        }
    }

    /// Writes `tokenizer.json`, `tokenizer_config.json` and (k-mer, nucleotide) `vocab.txt`
    /// into `dir` (created if missing); each file is written atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let hf = self.to_hf()?;
        let json = hf.to_string(true).map_err(TokenizeError::hf)?;
        write_file(&dir.join("tokenizer.json"), json.as_bytes())?;
        if !matches!(self, AnyTokenizer::Bpe(_)) {
            let mut text = self.vocab().tokens().join("\n");
            text.push('\n');
            write_file(&dir.join("vocab.txt"), text.as_bytes())?;
        }
        let s = self.special_ids();
        let name = |id: Option<u32>| id.and_then(|i| self.vocab().token(i)).map(str::to_string);
        let input = matches!(self, AnyTokenizer::Kmer(t) if t.overlapping())
            .then(|| "space-separated overlapping k-mers (DNABERT convention)".to_string());
        let config = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": 1_000_000_000u64,
            "pad_token": name(s.pad),
            "unk_token": name(s.unk),
            "cls_token": name(s.cls),
            "sep_token": name(s.sep),
            "mask_token": name(s.mask),
            "bos_token": name(s.bos),
            "eos_token": name(s.eos),
            "dnalm": DnalmSection {
                version: CONFIG_VERSION,
                tokenizer: self.kind(),
                template: self.template(),
                tokenizer_json_input: input,
            },
        });
        let text = serde_json::to_string_pretty(&config).map_err(TokenizeError::hf)?;
        write_file(&dir.join("tokenizer_config.json"), text.as_bytes())
    }

    /// Loads a tokenizer from a directory (or a `tokenizer.json` / `vocab.txt` path).
    pub fn load(path: &Path) -> Result<Self> {
        let dir = if path.is_dir() {
            path.to_path_buf()
        } else {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        };
        let config_path = dir.join("tokenizer_config.json");
        let config: Option<Value> = if config_path.is_file() {
            let text = fs::read_to_string(&config_path).map_err(|e| io_err(&config_path, e))?;
            Some(
                serde_json::from_str(&text)
                    .map_err(|e| format_err(&config_path, format!("invalid JSON: {e}")))?,
            )
        } else {
            None
        };
        let section = match config.as_ref().and_then(|c| c.get("dnalm")) {
            Some(section) => {
                let version = section.get("version").and_then(Value::as_u64);
                if version != Some(CONFIG_VERSION as u64) {
                    return Err(format_err(
                        &config_path,
                        format!("unknown dnalm tokenizer version {version:?} (this dnalm reads version {CONFIG_VERSION})"),
                    ));
                }
                Some(
                    serde_json::from_value::<DnalmSection>(section.clone()).map_err(|e| {
                        format_err(&config_path, format!("invalid dnalm section: {e}"))
                    })?,
                )
            }
            None => None,
        };
        let json_path = dir.join("tokenizer.json");
        let vocab_path = dir.join("vocab.txt");
        let load_hf = || -> Result<tokenizers::Tokenizer> {
            tokenizers::Tokenizer::from_file(&json_path)
                .map_err(|e| format_err(&json_path, format!("cannot load: {e}")))
        };
        match section {
            Some(DnalmSection {
                tokenizer: TokenizerKind::Bpe,
                template,
                ..
            }) => Ok(AnyTokenizer::Bpe(Box::new(BpeTokenizer::from_hf(
                load_hf()?,
                template,
            )?))),
            Some(DnalmSection {
                tokenizer,
                template,
                ..
            }) => {
                let vocab = if vocab_path.is_file() {
                    read_vocab_txt(&vocab_path)?
                } else {
                    let hf = load_hf()?;
                    Vocab::from_map(&hf.get_vocab(true))
                        .map_err(|e| format_err(&json_path, e.to_string()))?
                };
                Self::with_vocab(tokenizer, vocab, template)
            }
            None if vocab_path.is_file() || json_path.is_file() => {
                // A foreign checkpoint. A k-mer vocabulary, from vocab.txt or tokenizer.json, is
                // DNABERT's (`BertTokenizer`: k-mers only, overlapping tokenization) or Nucleotide
                // Transformer's (`EsmTokenizer`: k-mers and single bases, greedy non-overlapping
                // k-mers with single-base fallback); dnalm's k-mer kernel runs either. Anything
                // else is run through its own tokenizer.json (BPE: DNABERT-2 and the like).
                let (vocab, source) = if vocab_path.is_file() {
                    (read_vocab_txt(&vocab_path)?, &vocab_path)
                } else {
                    let hf = load_hf()?;
                    (
                        Vocab::from_map(&hf.get_vocab(true))
                            .map_err(|e| format_err(&json_path, e.to_string()))?,
                        &json_path,
                    )
                };
                let specials = SpecialTokenIds::find(&vocab);
                match infer_kmers(&vocab) {
                    Some((k, overlapping)) => {
                        // `EsmTokenizer` adds `<eos>` unless its config sets `eos_token` to
                        // null, which Nucleotide Transformer does: `<cls> tokens`.
                        let no_eos = config
                            .as_ref()
                            .and_then(|c| c.as_object())
                            .is_some_and(|c| c.get("eos_token").is_some_and(Value::is_null));
                        let template = if no_eos && specials.cls.is_some() {
                            Template::Cls
                        } else if config.is_none()
                            && specials.cls.is_some()
                            && specials.sep.is_none()
                        {
                            // No tokenizer config and a start token without an end token: an
                            // ESM vocabulary without `<eos>` (`EsmTokenizer` always prepends
                            // `<cls>`; it would append `<unk>` for the missing `<eos>`, dnalm
                            // appends nothing). With `<eos>`, `infer_template` gives
                            // `<cls> ... <eos>`, as `EsmTokenizer` does.
                            Template::Cls
                        } else {
                            infer_template(&specials)
                        };
                        Self::with_vocab(TokenizerKind::Kmer { k, overlapping }, vocab, template)
                    }
                    None if json_path.is_file() => Ok(AnyTokenizer::Bpe(Box::new(
                        BpeTokenizer::from_hf(load_hf()?, infer_template(&specials))?,
                    ))),
                    None => Err(format_err(
                        source,
                        "not a k-mer vocabulary (expected k-mers of one length, with or without \
                         the single bases A, C, G, T), and there is no tokenizer.json"
                            .into(),
                    )),
                }
            }
            None => match config
                .as_ref()
                .and_then(|c| c.get("tokenizer_class"))
                .and_then(Value::as_str)
            {
                Some(class) if CHARACTER_TOKENIZER_CLASSES.contains(&class) => {
                    character_tokenizer()
                }
                Some(class) => Err(format_err(
                    &config_path,
                    format!(
                        "tokenizer_class \"{class}\" has no vocabulary file here (tokenizer.json \
                         or vocab.txt) and is not a character tokenizer dnalm knows ({})",
                        CHARACTER_TOKENIZER_CLASSES.join(", ")
                    ),
                )),
                None => Err(format_err(
                    &dir,
                    "no tokenizer here (expected tokenizer.json, vocab.txt or \
                     tokenizer_config.json)"
                        .into(),
                )),
            },
        }
    }

    fn with_vocab(kind: TokenizerKind, vocab: Vocab, template: Template) -> Result<Self> {
        match kind {
            TokenizerKind::Nucleotide => Ok(AnyTokenizer::Nucleotide(
                NucleotideTokenizer::with_vocab(vocab, template)?,
            )),
            TokenizerKind::Kmer { k, overlapping } => Ok(AnyTokenizer::Kmer(
                KmerTokenizer::with_vocab(k, overlapping, vocab, template)?,
            )),
            TokenizerKind::Bpe => unreachable!("handled by the caller"),
        }
    }
}

impl Tokenizer for AnyTokenizer {
    fn tokenize_into(
        &self,
        seq: &[u8],
        ids: &mut Vec<u32>,
        offsets: Option<&mut Vec<(usize, usize)>>,
    ) {
        self.inner().tokenize_into(seq, ids, offsets)
    }
    fn vocab(&self) -> &Vocab {
        self.inner().vocab()
    }
    fn special_ids(&self) -> &SpecialTokenIds {
        self.inner().special_ids()
    }
    fn template(&self) -> Template {
        self.inner().template()
    }
    fn kind(&self) -> TokenizerKind {
        self.inner().kind()
    }
    fn decode(&self, ids: &[u32]) -> String {
        self.inner().decode(ids)
    }
}

/// The `tokenizer_class` of the hub character tokenizers that keep their vocabulary in code, not
/// in a file: HyenaDNA's (`tokenization_hyena.py`) and Caduceus' (`tokenization_caduceus.py`).
const CHARACTER_TOKENIZER_CLASSES: [&str; 2] = ["HyenaDNATokenizer", "CaduceusTokenizer"];

/// The character tokenizer of HyenaDNA and Caduceus: `[CLS] [SEP] [BOS] [MASK] [PAD]
/// [RESERVED] [UNK]`, then `A C G T N` (ids 7 to 11), `[SEP]` appended and no start token (the
/// hub ports, unlike the original repositories' tokenizers, add no `[CLS]`). dnalm's sequence
/// reading upper-cases bases, as Caduceus' tokenizer does; HyenaDNA's would map a lower-case
/// base to `[UNK]`, and so does this tokenizer given raw lower case.
fn character_tokenizer() -> Result<AnyTokenizer> {
    let tokens = [
        "[CLS]",
        "[SEP]",
        "[BOS]",
        "[MASK]",
        "[PAD]",
        "[RESERVED]",
        "[UNK]",
        "A",
        "C",
        "G",
        "T",
        "N",
    ];
    let vocab = Vocab::new(tokens.iter().map(|t| t.to_string()).collect())?;
    Ok(AnyTokenizer::Nucleotide(NucleotideTokenizer::with_vocab(
        vocab,
        Template::Sep,
    )?))
}

fn infer_template(s: &SpecialTokenIds) -> Template {
    if s.cls.is_some() && s.sep.is_some() {
        Template::Bert
    } else if s.bos.is_some() && s.eos.is_some() {
        Template::Causal
    } else {
        Template::None
    }
}

/// k and the stride of a k-mer vocabulary: its A/C/G/T tokens all have length k (overlapping,
/// DNABERT), or length k and 1 with all four single bases present (non-overlapping with
/// single-base fallback, Nucleotide Transformer).
fn infer_kmers(vocab: &Vocab) -> Option<(usize, bool)> {
    let lengths: std::collections::BTreeSet<usize> = vocab
        .tokens()
        .iter()
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b"ACGT".contains(&b)))
        .map(String::len)
        .collect();
    let singles = ["A", "C", "G", "T"].iter().all(|b| vocab.id(b).is_some());
    match lengths.iter().copied().collect::<Vec<_>>().as_slice() {
        [k] => Some((*k, true)),
        [1, k] if singles => Some((*k, false)),
        _ => None,
    }
}

/// Reads a `vocab.txt` (one token per line, id = line number).
pub fn read_vocab_txt(path: &Path) -> Result<Vocab> {
    let text = fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    let tokens: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    if tokens.is_empty() {
        return Err(format_err(path, "empty vocabulary".into()));
    }
    Vocab::new(tokens).map_err(|e| format_err(path, e.to_string()))
}

enum PreTokenizer {
    Regex(String),
    Whitespace,
}

/// The alphabet policy as a `tokenizers` normalizer.
pub(crate) fn alphabet_normalizer() -> Result<NormalizerWrapper> {
    let mut steps = Vec::new();
    for (from, to) in [
        ("a", "A"),
        ("c", "C"),
        ("g", "G"),
        ("t", "T"),
        ("n", "N"),
        ("u", "T"),
        ("U", "T"),
    ] {
        steps.push(NormalizerWrapper::Replace(
            Replace::new(from, to).map_err(TokenizeError::hf)?,
        ));
    }
    let iupac =
        tokenizers::normalizers::replace::ReplacePattern::Regex("[RYSWKMBDHVryswkmbdhv]".into());
    steps.push(NormalizerWrapper::Replace(
        Replace::new(iupac, "N").map_err(TokenizeError::hf)?,
    ));
    Ok(NormalizerWrapper::Sequence(Sequence::new(steps)))
}

/// The template as a `tokenizers` post-processor (`None` when it adds nothing).
pub(crate) fn template_processor(
    template: Template,
    vocab: &Vocab,
    specials: &SpecialTokenIds,
) -> Result<Option<PostProcessorWrapper>> {
    let name = |id: u32| vocab.token(id).unwrap_or_default().to_string();
    let builder = match crate::template_ids(template, specials) {
        (Some(first), Some(last)) => {
            let (a, b) = (name(first), name(last));
            TemplateProcessing::builder()
                .try_single(format!("{a} $A {b}"))
                .map_err(TokenizeError::hf)?
                .try_pair(format!("{a} $A {b} $B:1 {b}:1"))
                .map_err(TokenizeError::hf)?
                .special_tokens(vec![(a, first), (b, last)])
                .build()
        }
        (Some(first), None) => {
            let a = name(first);
            TemplateProcessing::builder()
                .try_single(format!("{a} $A"))
                .map_err(TokenizeError::hf)?
                .try_pair(format!("{a} $A $B:1"))
                .map_err(TokenizeError::hf)?
                .special_tokens(vec![(a, first)])
                .build()
        }
        (None, Some(last)) => {
            let b = name(last);
            TemplateProcessing::builder()
                .try_single(format!("$A {b}"))
                .map_err(TokenizeError::hf)?
                .try_pair(format!("$A {b} $B:1 {b}:1"))
                .map_err(TokenizeError::hf)?
                .special_tokens(vec![(b, last)])
                .build()
        }
        (None, None) => return Ok(None),
    };
    let processor = builder.map_err(TokenizeError::hf)?;
    Ok(Some(PostProcessorWrapper::Template(processor)))
}

fn wordlevel_hf(t: &dyn Tokenizer, pre: PreTokenizer) -> Result<tokenizers::Tokenizer> {
    let vocab = t.vocab();
    let specials = t.special_ids();
    let unk = specials
        .unk
        .and_then(|id| vocab.token(id))
        .ok_or_else(|| TokenizeError::invalid("vocabulary", "has no unknown token"))?;
    let pre_tokenizer = match pre {
        PreTokenizer::Regex(r) => serde_json::to_value(
            Split::new(
                SplitPattern::Regex(r),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(TokenizeError::hf)?,
        ),
        PreTokenizer::Whitespace => Ok(json!({"type": "WhitespaceSplit"})),
    }
    .map_err(TokenizeError::hf)?;
    let added: Vec<Value> = vocab
        .tokens()
        .iter()
        .enumerate()
        .filter(|(i, _)| specials.contains(*i as u32))
        .map(|(i, tok)| {
            json!({"id": i, "content": tok, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let post = template_processor(t.template(), vocab, specials)?;
    let value = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": serde_json::to_value(alphabet_normalizer()?).map_err(TokenizeError::hf)?,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": serde_json::to_value(post).map_err(TokenizeError::hf)?,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab.to_map(), "unk_token": unk},
    });
    tokenizers::Tokenizer::from_str(&value.to_string()).map_err(TokenizeError::hf)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    dnalm_seq::write_atomic(path, |w| std::io::Write::write_all(w, bytes))
        .map_err(TokenizeError::from)
}

fn io_err(path: &Path, e: std::io::Error) -> TokenizeError {
    TokenizeError::Io {
        path: PathBuf::from(path),
        source: e,
    }
}

fn format_err(path: &Path, message: String) -> TokenizeError {
    TokenizeError::Format {
        path: path.to_path_buf(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bad specs name the spec and what is wrong; a path is only checked by `check_exists`.
    #[test]
    fn bad_tokenizer_specs_say_why() {
        let err = |s: &str| s.parse::<TokenizerSpec>().unwrap_err();
        assert_eq!(
            err("kmer:x"),
            "tokenizer spec 'kmer:x': k 'x' is not a number"
        );
        assert!(err("kmer:3:sideways").contains("expected kmer:K"));
        assert!(err("no/such/dir").contains("'no/such/dir' is neither nucleotide"));
        let unchecked = TokenizerSpec::parse_unchecked("no/such/dir").unwrap();
        assert_eq!(unchecked, TokenizerSpec::Path("no/such/dir".into()));
        assert!(matches!(
            unchecked.check_exists(),
            Err(TokenizeError::NoSuchTokenizer { .. })
        ));
    }

    fn all_kinds() -> Vec<AnyTokenizer> {
        let mut v = vec![AnyTokenizer::new(TokenizerKind::Nucleotide, Template::Causal).unwrap()];
        for k in [3, 6] {
            for overlapping in [true, false] {
                v.push(
                    AnyTokenizer::new(TokenizerKind::Kmer { k, overlapping }, Template::Bert)
                        .unwrap(),
                );
            }
        }
        // Nucleotide Transformer's convention: `<cls>`-style start token, no end token.
        let nt = TokenizerKind::Kmer {
            k: 6,
            overlapping: false,
        };
        v.push(AnyTokenizer::new(nt, Template::Cls).unwrap());
        v
    }

    const SEQS: [&[u8]; 4] = [
        b"ACGTACGTTGCA",
        b"ACGNNACGTACGGGT",
        b"A",
        b"TTTTTTTTTTTTTTTTTTTTTACG",
    ];

    /// An ESM checkpoint without `tokenizer_config.json` still starts every sequence with
    /// `<cls>`, as `EsmTokenizer` does; with `<eos>` in the vocabulary it also ends with it.
    #[test]
    fn esm_directory_without_tokenizer_config_keeps_cls() {
        let mut tokens: Vec<String> = ["<unk>", "<pad>", "<mask>", "<cls>"]
            .map(String::from)
            .to_vec();
        tokens.extend(["AAA", "AAC", "ACG", "A", "C", "G", "T", "N"].map(String::from));
        for (with_eos, model_type) in [(false, "esm"), (true, "esm"), (false, "unknown")] {
            let dir = tempfile::tempdir().unwrap();
            let mut vocab = tokens.clone();
            if with_eos {
                vocab.push("<eos>".into());
            }
            fs::write(dir.path().join("vocab.txt"), vocab.join("\n")).unwrap();
            fs::write(
                dir.path().join("config.json"),
                format!("{{\"model_type\": \"{model_type}\"}}"),
            )
            .unwrap();
            let tok = AnyTokenizer::load(dir.path()).unwrap();
            let ids = tok.encode(b"ACGAAA").ids;
            assert_eq!(ids[0], 3, "{with_eos} {model_type}: {ids:?}");
            assert_eq!(*ids.last().unwrap() == 12, with_eos, "{ids:?}");
        }
    }

    /// A directory with only HyenaDNA's (or Caduceus') `tokenizer_config.json` gets its character
    /// tokenizer;
    /// saved, its `tokenizer.json` gives the same ids in `tokenizers` (`tokens [SEP]`). Another
    /// class without a vocabulary file is one error naming it.
    #[test]
    fn character_tokenizers_from_their_class() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tokenizer_config.json");
        fs::write(&config, r#"{"tokenizer_class": "HyenaDNATokenizer"}"#).unwrap();
        let tok = AnyTokenizer::load(dir.path()).unwrap();
        assert_eq!(tok.encode(b"ACGTNa").ids, vec![7, 8, 9, 10, 11, 6, 1]);
        let out = tempfile::tempdir().unwrap();
        tok.save(out.path()).unwrap();
        let hf = tokenizers::Tokenizer::from_file(out.path().join("tokenizer.json")).unwrap();
        let ids = hf.encode("ACGT", true).unwrap().get_ids().to_vec();
        assert_eq!(ids, vec![7, 8, 9, 10, 1]);
        fs::write(&config, r#"{"tokenizer_class": "CaduceusTokenizer"}"#).unwrap();
        let caduceus = AnyTokenizer::load(dir.path()).unwrap();
        assert_eq!(caduceus.encode(b"ACGTN").ids, vec![7, 8, 9, 10, 11, 1]);
        fs::write(&config, r#"{"tokenizer_class": "MysteryTokenizer"}"#).unwrap();
        let err = AnyTokenizer::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("MysteryTokenizer") && err.contains("CaduceusTokenizer"),
            "{err}"
        );
    }

    #[test]
    fn save_load_round_trip() {
        for tok in all_kinds() {
            let dir = tempfile::tempdir().unwrap();
            tok.save(dir.path()).unwrap();
            let back = AnyTokenizer::load(dir.path()).unwrap();
            assert_eq!(back.kind(), tok.kind());
            assert_eq!(back.template(), tok.template());
            assert_eq!(back.vocab(), tok.vocab());
            for s in SEQS {
                assert_eq!(back.encode(s), tok.encode(s));
            }
        }
    }

    /// The saved tokenizer.json, run by the `tokenizers` engine (the one Python uses), gives
    /// exactly the ids of dnalm's hand-written kernels, on raw input with lowercase and IUPAC.
    #[test]
    fn hf_json_matches_fast_kernels() {
        let raw: [&str; 4] = [
            "ACGTacgtTGCA",
            "ACGRYACGTACGGGu",
            "a",
            "TTTTTTTTTTTTTTTTTTTTTACG",
        ];
        for tok in all_kinds() {
            let hf = tok.to_hf().unwrap();
            for r in raw {
                let (norm, _) = dnalm_seq::alphabet::normalize(r.as_bytes()).unwrap();
                let ours = tok.encode(&norm);
                let input = match tok.kind() {
                    TokenizerKind::Kmer {
                        k,
                        overlapping: true,
                    } => r
                        .as_bytes()
                        .windows(k)
                        .map(|w| String::from_utf8_lossy(w).into_owned())
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => r.to_string(),
                };
                let theirs = hf.encode(input.as_str(), true).unwrap();
                assert_eq!(
                    theirs.get_ids(),
                    ours.ids.as_slice(),
                    "{} on {r}",
                    tok.kind()
                );
                if !matches!(
                    tok.kind(),
                    TokenizerKind::Kmer {
                        overlapping: true,
                        ..
                    }
                ) {
                    assert_eq!(
                        theirs.get_offsets(),
                        ours.offsets.as_slice(),
                        "{}",
                        tok.kind()
                    );
                }
            }
        }
    }

    #[test]
    fn dnabert_vocab_txt_is_read_as_overlapping_kmers() {
        let dir = tempfile::tempdir().unwrap();
        let mut tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].join("\n");
        for c in ["AAA", "AAC", "ACG", "CGT"] {
            tokens.push('\n');
            tokens.push_str(c);
        }
        fs::write(dir.path().join("vocab.txt"), tokens).unwrap();
        let tok = AnyTokenizer::load(dir.path()).unwrap();
        assert_eq!(
            tok.kind(),
            TokenizerKind::Kmer {
                k: 3,
                overlapping: true
            }
        );
        assert_eq!(tok.encode(b"ACGT").ids, [2, 7, 8, 3]);
    }

    #[test]
    fn bad_directories_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert!(AnyTokenizer::load(dir.path())
            .unwrap_err()
            .to_string()
            .contains("no tokenizer here"));
        fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"dnalm": {"version": 99}}"#,
        )
        .unwrap();
        let err = AnyTokenizer::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("unknown dnalm tokenizer version Some(99)"),
            "{err}"
        );
        fs::write(dir.path().join("tokenizer_config.json"), "{").unwrap();
        assert!(AnyTokenizer::load(dir.path())
            .unwrap_err()
            .to_string()
            .contains("invalid JSON"));
    }
}
