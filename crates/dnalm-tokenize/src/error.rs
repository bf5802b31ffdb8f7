//! The one error type of `dnalm-tokenize`.

use std::path::PathBuf;

/// Everything that can go wrong while building, training, saving or loading a tokenizer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizeError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A tokenizer file is not what it should be.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A parameter is invalid (k, vocabulary size, lengths...).
    #[error("{what}: {message}")]
    Invalid {
        /// The parameter.
        what: String,
        /// What was wrong.
        message: String,
    },
    /// A tokenizer spec is neither built in nor an existing tokenizer path.
    #[error("'{}' is neither nucleotide, kmer:K[:non-overlapping] nor an existing tokenizer directory", path.display())]
    NoSuchTokenizer {
        /// The path given.
        path: std::path::PathBuf,
    },
    /// A vocabulary lists a token twice.
    #[error("token '{token}' appears twice in the vocabulary")]
    DuplicateToken {
        /// The token.
        token: String,
    },
    /// A vocabulary gives a token an id beyond its size.
    #[error("token '{token}' has id {id}, beyond the vocabulary size {size}")]
    TokenIdOutOfRange {
        /// The token.
        token: String,
        /// Its id.
        id: u32,
        /// Tokens in the vocabulary.
        size: usize,
    },
    /// A vocabulary has no token for an id below its size.
    #[error("no token has id {id}")]
    MissingTokenId {
        /// The id.
        id: u32,
    },
    /// The Hugging Face `tokenizers` library reported an error.
    #[error("tokenizers: {0}")]
    Hf(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Reading sequences failed.
    #[error(transparent)]
    Seq(#[from] dnalm_seq::SeqError),
}

impl TokenizeError {
    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        TokenizeError::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }

    pub(crate) fn hf(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        TokenizeError::Hf(e.into())
    }
}

/// `Result` with [`TokenizeError`].
pub type Result<T, E = TokenizeError> = std::result::Result<T, E>;
