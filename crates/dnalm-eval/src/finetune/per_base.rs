//! Per-base fine-tuning: the encoder with the per-base head ([`BaseHead`]) reading its token
//! states, every base's class predicted through the tokenizer's offsets ([`BaseMap`]).
//!
//! The options are fine-tuning's ([`FinetuneOptions`]): the budget, the learning rate (scaled,
//! fixed or searched), LoRA, `train_last`, frozen embeddings, layer-wise decay, class weights
//! (by base frequency) and seeds. LP-FT starts the head from the per-base probe fitted on the
//! frozen states (its standardiser folded into the projection); the kept network is the best
//! on validation, the starting one included, so fine-tuning never ends below its probe on valid.
//! A sequence must fit in the model's context: a base's class needs its own token's state, so
//! nothing is cut.

use std::path::Path;

use burn::{module::Module, tensor::Tensor};
use dnalm_model::{
    io::load_parameters,
    lora::lora_paths,
    tensors::{named_parameters, read_safetensors},
    Checkpoint, DnaLm, ModelInput,
};
use dnalm_seq::task::{LabelledSequence, Task};
use dnalm_tokenize::{AnyTokenizer, Tokenizer};
use ndarray::Array2;

use super::{
    adapter_info, attention_pattern, save_checkpoint, sequence_head_info, train_seeds,
    trainable_encoder, FinetuneOptions, FinetuneReport, HeadInfo, HeadInit, ProbeStart,
};
use crate::{
    features::embed::ModelSpec,
    features::tasks::{check_tokenizer, split_rows, targets},
    probes::concat_targets,
    probes::per_base::{fit_folded_head, BaseBatch, BaseHead, BaseMap},
    EvalError,
};

/// An encoder with a per-base head.
#[derive(Module, Debug)]
pub struct BaseTagger {
    /// The encoder.
    pub encoder: DnaLm,
    /// The head on its token states.
    pub head: BaseHead,
}

impl BaseTagger {
    /// `[bases, classes]` logits for token `rows` (template tokens included, the first sequence
    /// token at `first`), the bases of each row in order, one row after another.
    pub fn forward(
        &self,
        rows: &[Vec<u32>],
        maps: &[&BaseMap],
        first: usize,
        dropout_seed: Option<u64>,
    ) -> Result<Tensor<2>, EvalError> {
        let mut input = ModelInput::from_rows(rows, attention_pattern(&self.encoder.config));
        input.dropout_seed = dropout_seed;
        let hidden = self.encoder.forward(&input)?;
        let batch = BaseBatch::new(maps, input.len, first, &self.encoder.device());
        Ok(self.head.forward(hidden, &batch))
    }
}

/// A sequence as the tagger reads it: its token row (template included) and its bases' tokens.
/// Fails, naming the sequence, when it does not fit in `max` positions.
pub fn tag_input(
    tokenizer: &AnyTokenizer,
    max: usize,
    id: &str,
    sequence: &[u8],
) -> Result<(Vec<u32>, BaseMap), EvalError> {
    let (prefix, suffix) = tokenizer.template_tokens();
    let (mut ids, mut offsets) = (Vec::with_capacity(sequence.len()), Vec::new());
    tokenizer.tokenize_into(sequence, &mut ids, Some(&mut offsets));
    let room = tokenizer.room(max);
    if ids.len() > room {
        return Err(EvalError::Mismatch {
            what: format!("sequence {id}"),
            message: format!(
                "{} bases make {} tokens but the model holds {room}; a per-base head needs every \
                 base's own token (cut the sequences into windows of at most {} bases)",
                sequence.len(),
                ids.len(),
                sequence.len() * room / ids.len().max(1)
            ),
        });
    }
    let mut row = Vec::with_capacity(ids.len() + 2);
    row.extend(prefix);
    row.extend(ids);
    row.extend(suffix);
    Ok((row, BaseMap::from_offsets(&offsets, sequence.len())))
}

/// Fine-tunes `model` on the per-base `task` (see the module notes); returns the report, the
/// first seed's network, its head description and the tokenizer, as [`super::finetune`] does.
pub fn finetune_per_base(
    model: &ModelSpec,
    task: &Task,
    options: &FinetuneOptions,
) -> Result<(FinetuneReport, BaseTagger, HeadInfo, AnyTokenizer), EvalError> {
    let [train, valid, test] = split_rows(task)?;
    let encoder = model.load(&dnalm_model::cpu())?;
    check_tokenizer(task, &encoder)?;
    let tokenizer = encoder.tokenizer.clone();
    let config = encoder.model.config.clone();
    let parameters = encoder.model.num_params();
    if let Some(lora) = &options.lora {
        if model.random.is_some() {
            return Err(EvalError::BadOption {
                option: "lora",
                message: format!("LoRA adapts trained weights; {} is random", model.name),
            });
        }
        lora_paths(&encoder.model, lora)?;
    }
    let all: Vec<&LabelledSequence> = train.iter().chain(&valid).chain(&test).copied().collect();
    let mut rows = Vec::with_capacity(all.len());
    let mut maps = Vec::with_capacity(all.len());
    for r in &all {
        let (row, map) = tag_input(&tokenizer, config.max_positions, &r.id, &r.sequence)?;
        rows.push(row);
        maps.push(map);
    }
    let first = tokenizer.template_tokens().0.is_some() as usize;
    let (n_train, n_valid) = (train.len(), valid.len());
    let y = concat_targets(
        &concat_targets(&targets(task, &train), &targets(task, &valid)),
        &targets(task, &test),
    );
    let train_idx: Vec<usize> = (0..n_train).collect();
    let valid_idx: Vec<usize> = (n_train..n_train + n_valid).collect();
    let test_idx: Vec<usize> = (n_train + n_valid..rows.len()).collect();
    let cut = options
        .train_last
        .map_or(0, |n| config.n_layers.saturating_sub(n));

    // LP-FT: the per-base probe on the frozen token states.
    let mut linear_probe = None;
    let probe_head = if options.head == HeadInit::LinearProbe {
        let template = (first, tokenizer.template_tokens().1.is_some() as usize);
        let states = frozen_token_states(&encoder.model, &rows, template)?;
        let x: Vec<&Array2<f32>> = states.iter().collect();
        let m: Vec<&BaseMap> = maps.iter().collect();
        let budget = crate::probes::per_base::PER_BASE_PROBE_BUDGET;
        let probe_options = crate::probes::fit::FitOptions {
            seed: options.fit.seed,
            device: options.fit.device,
            balance: options.fit.balance,
            ..budget
        };
        let (head, valid_mcc) =
            fit_folded_head(&x, &m, &y, &train_idx, &valid_idx, &probe_options)?;
        linear_probe = Some(ProbeStart {
            chosen: format!("per-base head, {} epochs at most", budget.epochs),
            valid: valid_mcc,
        });
        Some(head)
    } else {
        None
    };

    let tokens = std::cell::Cell::new(0usize);
    let forward = |net: &BaseTagger, idx: &[usize], seed: Option<u64>| {
        if seed.is_some() {
            tokens.set(tokens.get() + idx.iter().map(|&i| rows[i].len()).sum::<usize>());
        }
        let batch_rows: Vec<Vec<u32>> = idx.iter().map(|&i| rows[i].clone()).collect();
        let batch_maps: Vec<&BaseMap> = idx.iter().map(|&i| &maps[i]).collect();
        net.forward(&batch_rows, &batch_maps, first, seed)
    };
    let device = crate::train_device(&options.fit.device.open()?);
    let weights = named_parameters(&encoder.model);
    let classes = y.outputs();
    let build = |seed: u64| -> Result<BaseTagger, EvalError> {
        let enc = trainable_encoder(&config, &weights, &model.dir, &device, options, cut, seed)?;
        let shape = BaseHead::new(config.hidden_size(), classes, &device);
        let head = match &probe_head {
            Some(values) => load_parameters(shape, values, &model.dir)?,
            None => dnalm_model::io::reinitialize_fan_in(shape, seed),
        };
        Ok(BaseTagger { encoder: enc, head })
    };
    let trained = train_seeds(
        options,
        &config,
        parameters,
        &build,
        &forward,
        &tokens,
        &y,
        [&train_idx, &valid_idx, &test_idx],
    )?;
    let net = trained.net.valid();
    let info = HeadInfo {
        per_base: true,
        ..sequence_head_info(task, options.pooling, None, false)
    };
    let adapter = adapter_info(model, options, &net.encoder)?;
    let report = trained.report(options.head, linear_probe, 0, parameters, adapter);
    Ok((report, net, info, tokenizer))
}

/// The frozen encoder's final states of every row's sequence tokens (the `first` leading and
/// `last` trailing template tokens left out): `tokens x hidden` per row.
fn frozen_token_states(
    encoder: &DnaLm,
    rows: &[Vec<u32>],
    (first, last): (usize, usize),
) -> Result<Vec<Array2<f32>>, EvalError> {
    let d = encoder.config.hidden_size();
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(32) {
        let input = ModelInput::from_rows(chunk, attention_pattern(&encoder.config));
        let values = encoder
            .forward(&input)?
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| crate::tensor_error("frozen states", e))?;
        for (r, row) in chunk.iter().enumerate() {
            let tokens = row.len().saturating_sub(first + last);
            let start = (r * input.len + first) * d;
            let x = Array2::from_shape_vec((tokens, d), values[start..start + tokens * d].to_vec())
                .map_err(|e| crate::shape_error("frozen states", e))?;
            out.push(x);
        }
    }
    Ok(out)
}

/// Writes a per-base fine-tuned checkpoint (as [`super::save_finetuned`] does).
pub fn save_base_tagger(
    dir: &Path,
    net: &BaseTagger,
    info: &HeadInfo,
    tokenizer: &AnyTokenizer,
    adapter: Option<&dnalm_model::lora::AdapterInfo>,
) -> Result<Option<String>, EvalError> {
    save_checkpoint(
        dir,
        &net.encoder,
        &named_parameters(&net.head),
        info,
        tokenizer,
        adapter,
    )
}

/// Loads a per-base fine-tuned checkpoint onto `device`.
pub fn load_base_tagger(
    dir: &Path,
    device: &dnalm_model::burn::tensor::Device,
) -> Result<(BaseTagger, HeadInfo, AnyTokenizer), EvalError> {
    let info = super::read_head_info(dir)?;
    if !info.per_base {
        return Err(EvalError::Format {
            path: dir.join("head.json"),
            message: "a sequence-level head, not a per-base one".into(),
        });
    }
    let Checkpoint {
        model: encoder,
        tokenizer,
        ..
    } = Checkpoint::load(dir, device)?;
    let head_path = dir.join("head.safetensors");
    let shape = BaseHead::new(encoder.config.hidden_size(), info.label_names.len(), device);
    let head = load_parameters(shape, &read_safetensors(&head_path)?, &head_path)?;
    Ok((BaseTagger { encoder, head }, info, tokenizer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::embed::{EmbedOptions, Embedder, Granularity};
    use crate::features::tasks::embed_task_bases;
    use crate::finetune::FINETUNE_BUDGET;
    use crate::probes::fit::FitOptions;

    /// A 2-block encoder with `tokenizer` saved to `dir/model`, and a per-base task in
    /// `dir/task`: 48-base sequences, the bases of a planted `GATTACA` class 1.
    fn fixture(dir: &Path, tokenizer: &str) -> (ModelSpec, Task) {
        crate::features::embed::tests::encoder(64, tokenizer)
            .save(&dir.join("model"))
            .unwrap();
        let task = dir.join("task");
        std::fs::create_dir_all(&task).unwrap();
        std::fs::write(
            task.join("task.json"),
            r#"{"name": "site", "per_base": true, "label_names": ["other", "site"]}"#,
        )
        .unwrap();
        let mut state = 3u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        for (split, n) in [("train", 32), ("valid", 16), ("test", 16)] {
            let mut csv = String::from("sequence,label\n");
            for _ in 0..n {
                let mut seq: Vec<u8> = (0..48).map(|_| b"ACGT"[next() % 4]).collect();
                let mut classes = vec![b'0'; 48];
                let at = next() % 41;
                seq[at..at + 7].copy_from_slice(b"GATTACA");
                classes[at..at + 7].fill(b'1');
                csv.push_str(&format!(
                    "{},{}\n",
                    String::from_utf8(seq).unwrap(),
                    String::from_utf8(classes).unwrap()
                ));
            }
            std::fs::write(task.join(format!("{split}.csv")), csv).unwrap();
        }
        (
            ModelSpec::parse(dir.join("model").to_str().unwrap()),
            Task::load(&task).unwrap(),
        )
    }

    /// With single-nucleotide, overlapping 3-mer and non-overlapping 3-mer tokens alike, the
    /// frozen features map every base to a token; the fine-tuned tagger (3-mer tokens, 16 per
    /// sequence) gives one output per base, keeps a network at least as good on valid as the
    /// probe it started from, and loads back to the same outputs.
    #[test]
    fn every_tokenizer_gives_one_output_per_base_and_fine_tuning_keeps_its_probe() {
        for spec in ["nucleotide", "kmer:3", "kmer:3:non-overlapping"] {
            let dir = tempfile::tempdir().unwrap();
            let (model, task) = fixture(dir.path(), spec);
            let encoder = model.load(&dnalm_model::cpu()).unwrap();
            let options = EmbedOptions {
                granularity: Granularity::Token,
                ..EmbedOptions::default()
            };
            let features =
                embed_task_bases(&Embedder::new(&encoder, options).unwrap(), &task).unwrap();
            assert!(
                features.test.maps.iter().all(|m| m.token.len() == 48),
                "{spec}"
            );
            assert!(
                features
                    .test
                    .x
                    .iter()
                    .zip(&features.test.maps)
                    .all(|(x, m)| m.token.iter().all(|&t| (t as usize) < x.nrows())),
                "{spec}"
            );
            if spec != "kmer:3:non-overlapping" {
                continue;
            }
            let options = FinetuneOptions {
                fit: FitOptions {
                    epochs: 1,
                    batch_size: 16,
                    ..FINETUNE_BUDGET
                },
                ..FinetuneOptions::default()
            };
            let (report, net, info, _) = finetune_per_base(&model, &task, &options).unwrap();
            assert_eq!(report.seeds.test_outputs[0].nrows(), 16 * 48, "{spec}");
            assert!(info.per_base && info.label_names == ["other", "site"]);
            let probe = report.linear_probe.as_ref().unwrap().valid;
            assert!(report.best_valid[0] >= probe - 1e-9, "{spec}: {report:?}");
            // Saved and loaded back, the tagger gives the same outputs.
            let saved = dir.path().join("tagger");
            save_base_tagger(&saved, &net, &info, &encoder.tokenizer, None).unwrap();
            let (loaded, _, tokenizer) = load_base_tagger(&saved, &dnalm_model::cpu()).unwrap();
            let (row, map) = tag_input(&tokenizer, 64, "s", &task.examples[0].sequence).unwrap();
            let first = tokenizer.template_tokens().0.is_some() as usize;
            let a = net
                .forward(std::slice::from_ref(&row), &[&map], first, None)
                .unwrap();
            let b = loaded.forward(&[row], &[&map], first, None).unwrap();
            let (a, b) = (
                a.into_data().convert::<f32>().try_to_vec::<f32>().unwrap(),
                b.into_data().convert::<f32>().try_to_vec::<f32>().unwrap(),
            );
            assert_eq!(a.len(), 48 * 2);
            assert!(
                a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5),
                "{spec}"
            );
        }
        // A sequence longer than the context is one line naming it.
        let dir = tempfile::tempdir().unwrap();
        let (model, _) = fixture(dir.path(), "nucleotide");
        let encoder = model.load(&dnalm_model::cpu()).unwrap();
        let err = tag_input(&encoder.tokenizer, 64, "chr1:1-100", &[b'A'; 100])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sequence chr1:1-100: 100 bases make 100 tokens but the model holds 62"),
            "{err}"
        );
    }
}
