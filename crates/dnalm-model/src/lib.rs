//! dnalm models on burn (fourth stage of the data flow: batches -> model -> outputs).
//!
//! One block implementation serves two layouts, chosen by [`ModelConfig::architecture`]:
//!
//! | | encoder | decoder |
//! |---|---|---|
//! | follows | ESM-2 | Llama |
//! | norm | pre-LayerNorm | pre-RMSNorm |
//! | feed-forward | GELU, biases | SwiGLU, no biases |
//! | attention | bidirectional (or any mask) | causal |
//!
//! Positions are rotary (default), learned absolute or ALiBi. Attention runs a chunk of queries
//! at a time, so long contexts do not hold a `length x length` score matrix per head at once.
//! [`DnaLm`] carries the pretraining heads (tied LM head, token-deletion head, the permutation
//! LM query stream); [`heads`] has the task heads. Weights are named f32 safetensors, and a model
//! directory is a Hugging Face one ([`io`]): `transformers` loads dnalm's encoder as ESM and its
//! decoder as Llama, and dnalm loads DNABERT (BERT) and Nucleotide Transformer (ESM) checkpoints
//! ([`hf`]).
//!
//! Two architectures mix tokens without attention: Hyena ([`hyena`], HyenaDNA's operator) and
//! Caduceus ([`caduceus`]: bidirectional Mamba, optionally reverse-complement equivariant).
//!
//! The CPU backend is burn's Flex; the `vulkan` and `cuda` features add GPUs ([`device`]). On Flex, every
//! pre-LayerNorm encoder layer with padding-only attention runs as one fused operation with a
//! hand-written backward pass ([`fused`]), and so do Mamba's convolution and selective scan
//! ([`fused::scan`]): the speed of training and inference on the CPU.
//!
//! A trained model is opened with its tokenizer as a [`Checkpoint`]; a fresh one is built from a
//! config:
//!
//! ```
//! use dnalm_model::{Architecture, AttentionPattern, DnaLm, ModelConfig, ModelInput};
//!
//! let mut config = ModelConfig::new(Architecture::Encoder, 8);
//! (config.d_model, config.n_layers, config.n_heads, config.d_ffn) = (16, 1, 2, 32);
//! config.max_positions = 16;
//! let model = DnaLm::seeded(&config, &dnalm_model::cpu(), 1)?;
//! let input = ModelInput::from_rows(&[vec![1, 2, 3, 4]], AttentionPattern::Bidirectional);
//! let hidden = model.forward(&input)?; // rows x tokens x d_model
//! assert_eq!(hidden.dims(), [1, 4, 16]);
//! # Ok::<(), dnalm_model::ModelError>(())
//! ```

pub mod allocator;
pub mod attention;
pub mod block;
pub mod caduceus;
mod checkpoint;
mod config;
pub mod convert;
pub mod device;
pub mod float_mode;
pub mod fused;
pub mod heads;
pub mod hf;
pub mod hyena;
pub mod io;
pub mod lora;
mod model;
mod recompute;
pub mod tensors;

pub use checkpoint::Checkpoint;
pub use device::DeviceName;

use std::path::{Path, PathBuf};

pub use attention::{AttentionMask, AttentionPattern};
pub use config::{
    Architecture, CaduceusOptions, FeedForwardKind, HyenaOptions, ModelConfig, PositionEncoding,
    MAX_PARAMETERS,
};
pub use model::{DnaLm, LmHead, ModelInput};
pub use recompute::BlockRecompute;

/// Re-export of burn, so that dependants use the same version.
pub use burn;

/// Errors of model construction, input and weight files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A config field is invalid.
    #[error("model config: {field}: {message}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The input's ids and positions do not fill its rows × tokens.
    #[error("model input: {ids} ids and {positions} position ids for {rows} rows x {len} tokens")]
    InputShape {
        /// Token ids given.
        ids: usize,
        /// Position ids given.
        positions: usize,
        /// Rows.
        rows: usize,
        /// Tokens per row.
        len: usize,
    },
    /// A token id has no row in the model's embedding.
    #[error("model input: token id {id} is outside the model's vocabulary of {vocab_size}")]
    TokenOutOfVocabulary {
        /// The id.
        id: u32,
        /// Rows of the embedding.
        vocab_size: usize,
    },
    /// A sequence is longer than the model's positions (and its positions do not extrapolate).
    #[error("model input: sequence of {len} tokens (largest position {largest_position}) exceeds max_positions = {max_positions}")]
    TooLong {
        /// Tokens per row.
        len: usize,
        /// The largest position id.
        largest_position: usize,
        /// The model's limit.
        max_positions: usize,
    },
    /// A weight file does not fit the model.
    #[error("{}: {message}", path.display())]
    Weights {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An output directory exists already (nothing is overwritten).
    #[error("{} already exists; choose a new output directory", path.display())]
    OutputExists {
        /// The directory.
        path: PathBuf,
    },
    /// A directory given as a model has no `config.json`.
    #[error("{}: is not a model directory (no config.json)", path.display())]
    NotAModelDir {
        /// The directory.
        path: PathBuf,
    },
    /// A tokenizer emits ids the model's embedding has no row for.
    #[error("{source_name}: the tokenizer has {tokens} tokens and emits ids up to {highest}, but the model's embedding has {rows} rows")]
    TokenizerMismatch {
        /// The checkpoint (directory or description).
        source_name: String,
        /// Tokens in the tokenizer's vocabulary.
        tokens: usize,
        /// The highest id it emits.
        highest: usize,
        /// Rows of the model's embedding.
        rows: usize,
    },
    /// A compute device is unknown, not in this build, or absent from this machine.
    #[error("device '{name}': {message}")]
    Device {
        /// The name given.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A tokenizer could not be read or written.
    #[error(transparent)]
    Tokenizer(#[from] dnalm_tokenize::TokenizeError),
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl ModelError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The default CPU device (burn Flex).
pub fn cpu() -> burn::tensor::Device {
    burn::tensor::Device::flex()
}
