//! Model directories in and out of Hugging Face's layout (`dnalm convert`).
//!
//! Reading is [`Checkpoint::load`] (which imports BERT, ESM and Llama checkpoints) and
//! [`dnalm_tokenize::AnyTokenizer::load`] (DNABERT's and Nucleotide Transformer's vocabularies); writing is
//! [`Checkpoint::save`], whose layout `transformers` loads with its stock classes. A
//! conversion is therefore "load anything dnalm reads, save as dnalm writes": a foreign
//! checkpoint becomes a dnalm checkpoint (which is still a Hugging Face directory), and an older
//! dnalm checkpoint is brought to the current layout.

use std::path::{Path, PathBuf};

use dnalm_tokenize::Tokenizer;

use crate::{hf::HfFamily, Checkpoint, ModelError};

/// What a conversion read and wrote.
#[derive(Debug, Clone)]
pub struct ConversionReport {
    /// The converted model's config.
    pub config: crate::ModelConfig,
    /// The Hugging Face family the output loads as ([`HfFamily::class`]), or why there is none.
    pub exported_as: Result<HfFamily, crate::hf::NoHfLayout>,
    /// The tokenizer, in words.
    pub tokenizer: String,
    /// Parameters left freshly initialised and checkpoint tensors skipped.
    pub import: crate::hf::ImportReport,
    /// Whether the source was a LoRA adapter directory, merged into its base.
    pub merged_adapters: bool,
}

/// Files of a fine-tuned checkpoint beside the model that a conversion carries over unchanged
/// (the sequence head and its description).
pub const CARRIED_FILES: [&str; 2] = ["head.json", "head.safetensors"];

/// Converts the model directory `src` into `dst` (which must not exist; written to a temporary
/// directory beside it and renamed when complete). A LoRA adapter directory is written as its
/// base model with the adapters merged into the weights ([`crate::DnaLm::merge_lora`]); a
/// fine-tuned checkpoint's head ([`CARRIED_FILES`]) comes along.
///
/// Fails, naming the file, when `src` has no `config.json`, an unsupported `model_type` or
/// option, missing or mis-shaped tensors, or a tokenizer that emits ids beyond the model's
/// embedding.
pub fn convert(src: &Path, dst: &Path) -> Result<ConversionReport, ModelError> {
    if dst.exists() {
        return Err(ModelError::OutputExists {
            path: dst.to_path_buf(),
        });
    }
    let (mut checkpoint, import) = Checkpoint::load_with_report(src, &crate::cpu())?;
    let merged = crate::lora::has_adapters(&checkpoint.model);
    if merged {
        checkpoint.model = checkpoint.model.merge_lora();
    }
    // The special ids travel in config.json (transformers reads them); fill in what is missing.
    let s = *checkpoint.tokenizer.special_ids();
    let c = &mut checkpoint.model.config;
    c.pad_token_id = c.pad_token_id.or(s.pad);
    c.mask_token_id = c.mask_token_id.or(s.mask);
    let exported_as = HfFamily::of(&checkpoint.model.config);
    let parent = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| ModelError::io(&parent, e))?;
    let tmp = dnalm_seq::temp_dir_in(&parent, ".dnalm-convert-")
        .map_err(|e| ModelError::io(&parent, e))?;
    checkpoint.save(tmp.path())?;
    for name in CARRIED_FILES {
        let from = src.join(name);
        if from.is_file() {
            std::fs::copy(&from, tmp.path().join(name)).map_err(|e| ModelError::io(&from, e))?;
        }
    }
    let kept = tmp.keep();
    if let Err(e) = std::fs::rename(&kept, dst) {
        // Not left behind as a hidden full copy of the model.
        let _ = std::fs::remove_dir_all(&kept);
        return Err(ModelError::io(dst, e));
    }
    Ok(ConversionReport {
        config: checkpoint.model.config.clone(),
        exported_as,
        tokenizer: format!(
            "{} ({} tokens, template {:?})",
            checkpoint.tokenizer.kind(),
            checkpoint.tokenizer.vocab().len(),
            checkpoint.tokenizer.template()
        ),
        import,
        merged_adapters: merged,
    })
}
