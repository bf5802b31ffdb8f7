//! Resolving a run config: one check per section, then the tokenizer and the model config it
//! decides.

use dnalm_model::{Architecture, ModelConfig};
use dnalm_tokenize::{AnyTokenizer, Template, Tokenizer, TokenizerKind};

use super::{invalid, ConfigError, ResolvedRun, RunConfig, SamplerKind};
use crate::ObjectiveConfig;

impl RunConfig {
    /// Range checks of the numeric fields that nothing else bounds: a negative `min_lr_ratio`
    /// made the learning rate negative (gradient ascent), `eval_batches = 0` logged a
    /// perplexity of 1.0 from no data, and out-of-range rates and fractions were only caught
    /// (if at all) after the genome was read.
    fn check_ranges(&self) -> Result<(), ConfigError> {
        let finite_non_negative = |v: f64| v.is_finite() && v >= 0.0;
        let o = &self.optim;
        let checks: [(&str, bool, String); 9] = [
            (
                "optim.min_lr_ratio",
                (0.0..=1.0).contains(&o.min_lr_ratio),
                format!(
                    "{} is not in [0, 1] (the final learning rate as a fraction of the peak)",
                    o.min_lr_ratio
                ),
            ),
            (
                "optim.weight_decay",
                finite_non_negative(o.weight_decay),
                format!("{} must be zero or positive", o.weight_decay),
            ),
            (
                "optim.grad_clip",
                finite_non_negative(o.grad_clip),
                format!("{} must be zero (no clipping) or positive", o.grad_clip),
            ),
            (
                "optim.eps",
                o.eps.is_finite(),
                format!("{} must be finite", o.eps),
            ),
            (
                "train.eval_batches",
                self.train.eval_batches > 0,
                "must be positive: validation averages over this many fixed batches".into(),
            ),
            (
                "data.reverse_complement",
                (0.0..=1.0).contains(&self.data.reverse_complement),
                format!(
                    "{} is not a probability in [0, 1]",
                    self.data.reverse_complement
                ),
            ),
            (
                "data.split_block",
                self.data.split_block > 0,
                "must be positive (the size, in bases, of the blocks assigned to splits)".into(),
            ),
            (
                "data.valid_fraction",
                (0.0..1.0).contains(&self.data.valid_fraction)
                    && (0.0..1.0).contains(&self.data.test_fraction),
                format!(
                    "valid_fraction {} and test_fraction {} must each be in [0, 1)",
                    self.data.valid_fraction, self.data.test_fraction
                ),
            ),
            (
                "data.test_fraction",
                self.data.valid_fraction + self.data.test_fraction < 1.0,
                format!(
                    "valid_fraction + test_fraction = {} leaves no training data",
                    self.data.valid_fraction + self.data.test_fraction
                ),
            ),
        ];
        match checks.into_iter().find(|(_, ok, _)| !ok) {
            Some((key, _, message)) => Err(invalid(key, message)),
            None => Ok(()),
        }
    }

    /// Checks the config and builds the tokenizer and the model config.
    pub fn resolve(&self) -> Result<ResolvedRun, ConfigError> {
        self.check_data()?;
        self.check_train()?;
        self.check_ranges()?;
        let architecture = self.check_objectives()?;
        let tokenizer = self.build_tokenizer(architecture)?;
        let (table, model) = self.resolve_model(architecture, &tokenizer)?;
        let mut config = self.clone();
        config.model = table;
        Ok(ResolvedRun {
            config,
            model,
            tokenizer,
        })
    }

    /// `[data]`: the files exist, the sampler and class key parse, context and stride are
    /// usable.
    fn check_data(&self) -> Result<(), ConfigError> {
        let d = &self.data;
        let inputs = d.fasta.paths();
        if inputs.is_empty() {
            return Err(invalid("data.fasta", "the list of FASTA files is empty"));
        }
        if let Some(missing) = inputs.iter().find(|p| !p.exists()) {
            return Err(invalid(
                "data.fasta",
                format!("{} does not exist", missing.display()),
            ));
        }
        if dnalm_seq::corpus::is_corpus(&inputs) {
            if d.annotations.is_some() {
                return Err(invalid(
                    "data.annotations",
                    "annotations are read for a single FASTA file, not a multi-genome corpus",
                ));
            }
            if !dnalm_seq::corpus::is_pack(&inputs[0]) || inputs.len() > 1 {
                dnalm_seq::corpus::corpus_genomes(&inputs)
                    .map_err(|e| invalid("data.fasta", e.to_string()))?;
            }
        }
        if let Some(a) = &d.annotations {
            if !a.exists() {
                return Err(invalid(
                    "data.annotations",
                    format!("{} does not exist", a.display()),
                ));
            }
        }
        if d.sampler == SamplerKind::Balanced && d.annotations.is_none() {
            return Err(invalid(
                "data.sampler",
                "balanced sampling needs data.annotations (a BED/GFF file)",
            ));
        }
        if d.context == 0 {
            return Err(invalid("data.context", "must be positive"));
        }
        match d.stride {
            Some(0) => return Err(invalid("data.stride", "must be positive")),
            Some(_) if d.sampler == SamplerKind::Balanced => {
                return Err(invalid(
                    "data.stride",
                    "the balanced sampler places windows itself; drop stride or use sampler = \"uniform\"",
                ))
            }
            _ => {}
        }
        Ok(())
    }

    /// `[train]` and `[optim]`: counts positive, learning rate and betas in range.
    fn check_train(&self) -> Result<(), ConfigError> {
        if self.objectives.is_empty() {
            return Err(invalid(
                "objectives",
                "at least one [[objectives]] is needed",
            ));
        }
        let t = &self.train;
        if t.steps == 0 || t.batch_size == 0 || t.accumulation == 0 {
            return Err(invalid(
                "train",
                "steps, batch_size and accumulation must be positive",
            ));
        }
        for name in &t.devices {
            if let Err(e) = name.parse::<dnalm_model::DeviceName>() {
                return Err(invalid("train.devices", e.to_string()));
            }
        }
        if !t.devices.is_empty() {
            t.check_shared_by(t.devices.len())?;
        }
        if t.eval_every == 0 || t.save_every == 0 || t.keep_last == 0 {
            return Err(invalid(
                "train",
                "eval_every, save_every and keep_last must be positive",
            ));
        }
        let o = &self.optim;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return Err(invalid("optim.lr", format!("{} must be positive", o.lr)));
        }
        if o.betas.iter().any(|b| !(0.0..1.0).contains(b)) || o.eps <= 0.0 {
            return Err(invalid(
                "optim.betas",
                "betas must be in [0, 1) and eps positive",
            ));
        }
        Ok(())
    }

    /// The architecture (it picks the tokenizer template) and objectives that fit it and the
    /// data.
    fn check_objectives(&self) -> Result<Architecture, ConfigError> {
        let d = &self.data;
        let architecture: Architecture = match self.model.get("architecture") {
            None => Architecture::Encoder,
            Some(v) => v
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| invalid("model.architecture", e.to_string()))?,
        };
        for w in &self.objectives {
            let needs_causal = matches!(w.objective, ObjectiveConfig::NextToken(_));
            let name = crate::Objective::name(&w.objective);
            match (needs_causal, architecture.is_causal()) {
                (true, false) => {
                    return Err(invalid(
                        "objectives",
                        format!(
                            "{name} needs a causal model.architecture (\"decoder\" or \"hyena\")"
                        ),
                    ))
                }
                (false, true) => {
                    return Err(invalid(
                        "objectives",
                        format!("{name} needs model.architecture = \"encoder\" or \"caduceus\" (a causal model, decoder or hyena, trains with next_token)"),
                    ))
                }
                _ => {}
            }
            if matches!(w.objective, ObjectiveConfig::Permutation(_))
                && self.train.activation_checkpointing
            {
                return Err(invalid(
                    "train.activation_checkpointing",
                    format!(
                        "{name} runs two streams through the blocks, which activation \
                         checkpointing does not recompute; set it to false"
                    ),
                ));
            }
            if matches!(w.objective, ObjectiveConfig::Permutation(_)) && !architecture.attends() {
                return Err(invalid(
                    "objectives",
                    format!(
                        "{name} runs two-stream attention, which {architecture:?} blocks do not \
                         have (use mlm)"
                    ),
                ));
            }
            if matches!(w.objective, ObjectiveConfig::Annotation(_)) && d.annotations.is_none() {
                return Err(invalid(
                    "data.annotations",
                    "annotation masking needs an annotation file (BED/GFF); none is given",
                ));
            }
        }
        Ok(architecture)
    }

    /// The tokenizer with the architecture's template; the objectives must fit its vocabulary
    /// and the context its k-mer framing.
    fn build_tokenizer(&self, architecture: Architecture) -> Result<AnyTokenizer, ConfigError> {
        let d = &self.data;
        let spec = &self.tokenizer.spec;
        spec.check_exists()
            .map_err(|e| invalid("tokenizer.spec", e.to_string()))?;
        let template = match architecture {
            Architecture::Encoder => Template::Bert,
            Architecture::Decoder | Architecture::Hyena => Template::Causal,
            // Caduceus' own tokenizer appends [SEP] and adds no start token.
            Architecture::Caduceus => Template::Sep,
        };
        let tokenizer = spec
            .build(template)
            .map_err(|e| invalid("tokenizer.spec", e.to_string()))?;
        let vocab_info = crate::VocabInfo::of(&tokenizer);
        for w in &self.objectives {
            w.objective
                .validate(&vocab_info)
                .map_err(|e| invalid("objectives", e.to_string()))?;
        }
        if let TokenizerKind::Kmer { k, overlapping } = tokenizer.kind() {
            if d.context < k {
                return Err(invalid(
                    "data.context",
                    format!("{} bases is shorter than k = {k}", d.context),
                ));
            }
            if !overlapping && !d.context.is_multiple_of(k) {
                return Err(invalid(
                    "data.context",
                    format!(
                        "{} is not divisible by k = {k}: non-overlapping {k}-mers need a context that is a multiple of {k} (e.g. {})",
                        d.context,
                        d.context / k * k
                    ),
                ));
            }
        }
        Ok(tokenizer)
    }

    /// The model config: the `[model]` table with vocabulary size, positions and special ids
    /// filled in from the tokenizer and the context, then validated.
    fn resolve_model(
        &self,
        architecture: Architecture,
        tokenizer: &AnyTokenizer,
    ) -> Result<(toml::Table, ModelConfig), ConfigError> {
        let d = &self.data;
        let mut table = self.model.clone();
        let tokens = tokenizer.window_tokens(d.context);
        let vocab = tokenizer.vocab().len();
        match table.get("vocab_size").and_then(toml::Value::as_integer) {
            Some(v) if v as usize != vocab => {
                return Err(invalid(
                    "model.vocab_size",
                    format!(
                        "{v} does not match the tokenizer's vocabulary of {vocab} tokens ({})",
                        self.tokenizer.spec
                    ),
                ))
            }
            _ => {
                table.insert("vocab_size".into(), toml::Value::Integer(vocab as i64));
            }
        }
        match table.get("max_positions").and_then(toml::Value::as_integer) {
            Some(m) if (m as usize) < tokens => {
                return Err(invalid(
                    "model.max_positions",
                    format!(
                        "{m} is less than the {tokens} tokens of a {}-base window",
                        d.context
                    ),
                ))
            }
            Some(_) => {}
            None => {
                table.insert("max_positions".into(), toml::Value::Integer(tokens as i64));
            }
        }
        // The tokenizer's special ids travel in the model config, as in Hugging Face configs
        // (an exported checkpoint tells transformers its padding, mask, bos and eos tokens).
        let s = tokenizer.special_ids();
        for (key, id) in [
            ("pad_token_id", s.pad),
            ("mask_token_id", s.mask),
            ("bos_token_id", s.bos),
            ("eos_token_id", s.eos),
        ] {
            if let Some(id) = id {
                table
                    .entry(key)
                    .or_insert(toml::Value::Integer(i64::from(id)));
            }
        }
        table.insert(
            "architecture".into(),
            toml::Value::try_from(architecture).map_err(|e| invalid("model", e.to_string()))?,
        );
        if !architecture.attends() {
            // Hyena's filters and Mamba's scans carry positions; no encoding to choose.
            table
                .entry("position")
                .or_insert_with(|| toml::Value::String("none".into()));
        }
        if architecture == Architecture::Caduceus {
            fill_complement_map(&mut table, tokenizer)?;
        }
        let model: ModelConfig = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| invalid("model", e.to_string().trim().to_string()))?;
        model
            .validate()
            .map_err(|e| invalid("model", e.to_string()))?;
        Ok((table, model))
    }
}

/// A reverse-complement-equivariant Caduceus (the default) needs the complement of every token:
/// filled in from a one-base-per-token vocabulary (A<->T, C<->G, every other token itself),
/// refused for k-mer and BPE vocabularies, whose reverse complement is not a per-token map.
fn fill_complement_map(
    table: &mut toml::Table,
    tokenizer: &AnyTokenizer,
) -> Result<(), ConfigError> {
    let options = table
        .entry("caduceus")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(options) = options.as_table_mut() else {
        return Err(invalid("model.caduceus", "must be a table"));
    };
    let equivariant = options
        .get("rc_equivariant")
        .and_then(toml::Value::as_bool)
        .unwrap_or(true);
    if !equivariant || options.contains_key("complement_map") {
        return Ok(());
    }
    if tokenizer.kind() != TokenizerKind::Nucleotide {
        return Err(invalid(
            "model.caduceus.rc_equivariant",
            format!(
                "reverse-complement equivariance needs one token per base (tokenizer.spec = \
                 \"nucleotide\"); the reverse complement of a {} sequence is not a per-token \
                 map. Set model.caduceus.rc_equivariant = false (Caduceus-Ph) for this tokenizer",
                tokenizer.kind()
            ),
        ));
    }
    let vocab = tokenizer.vocab();
    let map: Vec<toml::Value> = (0..vocab.len() as u32)
        .map(|id| {
            let complement = match vocab.token(id) {
                Some("A") => vocab.id("T"),
                Some("T") => vocab.id("A"),
                Some("C") => vocab.id("G"),
                Some("G") => vocab.id("C"),
                _ => None,
            };
            toml::Value::Integer(i64::from(complement.unwrap_or(id)))
        })
        .collect();
    options.insert("complement_map".into(), toml::Value::Array(map));
    Ok(())
}
