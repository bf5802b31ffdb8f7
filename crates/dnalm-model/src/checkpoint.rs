//! A model with its tokenizer and where it came from: what every command that uses a trained
//! model opens, whatever wrote it (dnalm, or a Hugging Face family [`crate::hf`] imports).

use std::path::Path;

use burn::tensor::Device;
use dnalm_tokenize::{AnyTokenizer, Tokenizer};

use crate::{hf::ImportReport, io::read_config, lora::AdapterInfo, DnaLm, ModelError};

/// A model, its tokenizer and its provenance. Built only with a tokenizer whose ids fit the
/// model's embedding.
pub struct Checkpoint {
    /// The model.
    pub model: DnaLm,
    /// Its tokenizer.
    pub tokenizer: AnyTokenizer,
    /// Where it came from (a checkpoint directory), or a description (`random(<dir>)`).
    pub source: String,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("source", &self.source)
            .field("config", &self.model.config)
            .finish()
    }
}

impl Checkpoint {
    /// Opens a model directory (`config.json`, weights, tokenizer files): a dnalm checkpoint or
    /// any Hugging Face family dnalm imports; or a LoRA adapter directory
    /// ([`crate::lora::ADAPTER_CONFIG`]): its base model with the adapters attached.
    ///
    /// ```no_run
    /// use dnalm_model::Checkpoint;
    /// use dnalm_tokenize::Tokenizer;
    ///
    /// let checkpoint = Checkpoint::load("runs/mlm/checkpoint-001000".as_ref(), &dnalm_model::cpu())?;
    /// let tokens = checkpoint.tokenizer.encode(b"ACGTACGT");
    /// println!("{} layers, d = {}", checkpoint.n_layers(), checkpoint.width());
    /// # Ok::<(), dnalm_model::ModelError>(())
    /// ```
    pub fn load(dir: &Path, device: &Device) -> Result<Checkpoint, ModelError> {
        Ok(Checkpoint::load_with_report(dir, device)?.0)
    }

    /// [`Checkpoint::load`], also reporting parameters left initialised and tensors skipped
    /// on import.
    pub fn load_with_report(
        dir: &Path,
        device: &Device,
    ) -> Result<(Checkpoint, ImportReport), ModelError> {
        if let Some(info) = adapter_of(dir)? {
            let base = info.base_dir(dir);
            let (checkpoint, report) = Checkpoint::load_with_report(&base, device)?;
            let model = info.attach(dir, checkpoint.model)?;
            let source = dir.display().to_string();
            return Ok((
                Checkpoint::new(model, checkpoint.tokenizer, source)?,
                report,
            ));
        }
        let tokenizer = load_tokenizer(dir)?;
        let (model, report) = DnaLm::load_with_report(dir, device)?;
        Ok((
            Checkpoint::new(model, tokenizer, dir.display().to_string())?,
            report,
        ))
    }

    /// A randomly initialised model with the same shape and tokenizer as the checkpoint in
    /// `dir` (the "no pretraining" control), parameters drawn from `seed`.
    /// For an adapter directory, that of its base model.
    pub fn random_like(dir: &Path, seed: u64, device: &Device) -> Result<Checkpoint, ModelError> {
        if let Some(info) = adapter_of(dir)? {
            return Checkpoint::random_like(&info.base_dir(dir), seed, device);
        }
        let tokenizer = load_tokenizer(dir)?;
        let config = read_config(dir)?;
        let model = DnaLm::seeded(&config, device, seed)?;
        Checkpoint::new(model, tokenizer, format!("random({})", dir.display()))
    }

    /// Pairs a model with a tokenizer, checking that every id the tokenizer emits has a row in
    /// the model's embedding.
    pub fn new(
        model: DnaLm,
        tokenizer: AnyTokenizer,
        source: String,
    ) -> Result<Checkpoint, ModelError> {
        let rows = model.config.vocab_size;
        let highest = tokenizer.highest_emitted_id() as usize;
        if highest >= rows {
            return Err(ModelError::TokenizerMismatch {
                source_name: source,
                tokens: tokenizer.vocab().len(),
                highest,
                rows,
            });
        }
        Ok(Checkpoint {
            model,
            tokenizer,
            source,
        })
    }

    /// Writes the model and its tokenizer into `dir` (a Hugging Face model directory).
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        self.model.save(dir)?;
        Ok(self.tokenizer.save(dir)?)
    }

    /// Width of one layer's vectors.
    pub fn width(&self) -> usize {
        self.model.config.hidden_size()
    }

    /// Number of blocks; valid layer indices are `0..=n_layers`.
    pub fn n_layers(&self) -> usize {
        self.model.config.n_layers
    }
}

/// The adapter settings of `dir` when it is an adapter directory (dnalm's or PEFT's settings
/// and no `config.json`) whose base is a model directory, not another adapter.
fn adapter_of(dir: &Path) -> Result<Option<AdapterInfo>, ModelError> {
    let is_adapter =
        |d: &Path| AdapterInfo::is_adapter_dir(d) && !d.join(crate::io::CONFIG_FILE).is_file();
    if !is_adapter(dir) {
        return Ok(None);
    }
    let info = AdapterInfo::read(dir)?;
    let base = info.base_dir(dir);
    if is_adapter(&base) {
        return Err(ModelError::Weights {
            path: dir.to_path_buf(),
            message: format!(
                "its base {} is another adapter; merge that one first (`dnalm merge-adapter`)",
                base.display()
            ),
        });
    }
    Ok(Some(info))
}

fn load_tokenizer(dir: &Path) -> Result<AnyTokenizer, ModelError> {
    if !dir.join(crate::io::CONFIG_FILE).is_file() {
        return Err(ModelError::NotAModelDir {
            path: dir.to_path_buf(),
        });
    }
    Ok(AnyTokenizer::load(dir)?)
}
