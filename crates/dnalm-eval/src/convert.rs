//! Model directories in and out of Hugging Face's layout (`dnalm convert`).
//!
//! Reading is [`dnalm_model::DnaLm::load`] (which imports BERT, ESM and Llama checkpoints) and
//! [`AnyTokenizer::load`] (DNABERT's and Nucleotide Transformer's vocabularies); writing is
//! [`dnalm_model::DnaLm::save`], whose layout `transformers` loads with its stock classes. A
//! conversion is therefore "load anything dnalm reads, save as dnalm writes": a foreign
//! checkpoint becomes a dnalm checkpoint (which is still a Hugging Face directory), and an older
//! dnalm checkpoint is brought to the current layout.

use std::path::{Path, PathBuf};

use dnalm_model::{hf::HfFamily, DnaLm};
use dnalm_tokenize::{AnyTokenizer, Tokenizer};

use crate::{features::embed::Encoder, EvalError};

/// What a conversion read and wrote.
#[derive(Debug, Clone)]
pub struct ConversionReport {
    /// The converted model's config.
    pub config: dnalm_model::ModelConfig,
    /// The Hugging Face family the output loads as ([`HfFamily::class`]), or why there is none.
    pub exported_as: Result<HfFamily, dnalm_model::hf::NoHfLayout>,
    /// The tokenizer, in words.
    pub tokenizer: String,
    /// Parameters left freshly initialised and checkpoint tensors skipped.
    pub import: dnalm_model::hf::ImportReport,
}

/// Converts the model directory `src` into `dst` (which must not exist; written to a temporary
/// directory beside it and renamed when complete).
///
/// Fails, naming the file, when `src` has no `config.json`, an unsupported `model_type` or
/// option, missing or mis-shaped tensors, or a tokenizer that emits ids beyond the model's
/// embedding.
pub fn convert(src: &Path, dst: &Path) -> Result<ConversionReport, EvalError> {
    if dst.exists() {
        return Err(EvalError::Input(format!(
            "{} already exists; choose a new output directory",
            dst.display()
        )));
    }
    if !src.join("config.json").is_file() {
        return Err(EvalError::Format {
            path: src.to_path_buf(),
            message: "is not a model directory (no config.json)".into(),
        });
    }
    let device = dnalm_model::cpu();
    let (mut model, import) = DnaLm::load_with_report(src, &device)?;
    let tokenizer = AnyTokenizer::load(src)?;
    // The special ids travel in config.json (transformers reads them); fill in what is missing.
    let s = *tokenizer.special_ids();
    let c = &mut model.config;
    c.pad_token_id = c.pad_token_id.or(s.pad);
    c.mask_token_id = c.mask_token_id.or(s.mask);
    let encoder = Encoder::new(model, tokenizer, src.display().to_string())?;
    let exported_as = HfFamily::of(&encoder.model.config);
    let parent = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| EvalError::io(&parent, e))?;
    let tmp = dnalm_seq::temp_dir_in(&parent, ".dnalm-convert-")
        .map_err(|e| EvalError::io(&parent, e))?;
    encoder.model.save(tmp.path())?;
    encoder.tokenizer.save(tmp.path())?;
    let kept = tmp.keep();
    if let Err(e) = std::fs::rename(&kept, dst) {
        // Not left behind as a hidden full copy of the model.
        let _ = std::fs::remove_dir_all(&kept);
        return Err(EvalError::io(dst, e));
    }
    Ok(ConversionReport {
        config: encoder.model.config.clone(),
        exported_as,
        tokenizer: format!(
            "{} ({} tokens, template {:?})",
            encoder.tokenizer.kind(),
            encoder.tokenizer.vocab().len(),
            encoder.tokenizer.template()
        ),
        import,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name)
    }

    #[test]
    fn a_converted_checkpoint_loads_to_the_same_model() {
        let out = tempfile::tempdir().unwrap();
        for name in [
            "hf/dnabert6",
            "hf/nt6",
            "hf/esm_rotary",
            "dnabert2/checkpoint",
            "nt_v2/checkpoint",
        ] {
            let src = golden(name);
            let dst = out.path().join(name);
            let report = convert(&src, &dst).unwrap();
            assert!(report.exported_as.is_ok(), "{name}: {report:?}");
            let a = dnalm_model::tensors::named_parameters(
                &DnaLm::load(&src, &dnalm_model::cpu()).unwrap(),
            );
            let b = dnalm_model::tensors::named_parameters(
                &DnaLm::load(&dst, &dnalm_model::cpu()).unwrap(),
            );
            for (k, v) in &a {
                if k.starts_with("deletion_head") || k == "query_stream" {
                    continue;
                }
                assert_eq!(v, &b[k], "{name}: {k}");
            }
            assert!(convert(&src, &dst)
                .unwrap_err()
                .to_string()
                .contains("already exists"));
        }
    }
}
