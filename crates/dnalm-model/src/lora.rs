//! LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") on dnalm models:
//! chosen projection weights `W` become `W + (alpha / r) · A B` with trainable `A` (`d_in × r`)
//! and `B` (`r × d_out`); everything else is frozen.
//!
//! The adapters are burn's own ([`burn::module::LoraAdapter`], attached with
//! [`Module::apply_reparameterization`]): a weight's value is composed when a forward pass reads
//! it, so every layer, the fused CPU kernels included, runs unchanged and gradients reach `A` and
//! `B` through the composed weight. dnalm adds what burn leaves to its users: which weights a
//! target name means in each architecture, PEFT's initialisation (`A` uniform in
//! `±1/√d_in`, `B = 0`), drawn from a seed rather than the backend's global generator, the
//! adapter files, and merging.
//!
//! An adapter directory holds [`ADAPTER_CONFIG`] (rank, alpha, targets and the base model's
//! directory) and [`ADAPTER_FILE`] (the factors under their parameter names, e.g.
//! `blocks.0.query.weight.lora.a`); [`crate::Checkpoint::load`] opens it as the base model with
//! the adapters attached.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use burn::{
    module::{LoraAdapter, Module, Param, Reparameterizer},
    tensor::{Tensor, TensorData},
};
use serde::{Deserialize, Serialize};

use crate::{
    hf::peft::{export_peft, import_peft, read_peft_config, PEFT_CONFIG, PEFT_WEIGHTS},
    tensors::{named_parameters, parameter_shapes, read_safetensors, HostTensor},
    Architecture, DnaLm, ModelConfig, ModelError,
};

/// The adapter's settings file in an adapter directory.
pub const ADAPTER_CONFIG: &str = "adapter.json";
/// The adapter's factors in an adapter directory.
pub const ADAPTER_FILE: &str = "adapter.safetensors";

/// The path component burn gives an adapter's factors (`<weight>.lora.a`, `<weight>.lora.b`).
const LORA_PATH: &str = ".lora.";

/// What `--lora r=8,alpha=16,targets=q,v` asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraSpec {
    /// Rank `r` of the factors.
    pub rank: usize,
    /// Scale numerator: the update is `alpha / r · A B`.
    pub alpha: f64,
    /// Target names ([`lora_targets`]); empty: the architecture's default
    /// ([`default_lora_targets`]).
    pub targets: Vec<String>,
}

impl Default for LoraSpec {
    /// Rank 8, alpha 16, the architecture's default targets.
    fn default() -> Self {
        LoraSpec {
            rank: 8,
            alpha: 16.0,
            targets: Vec::new(),
        }
    }
}

impl std::str::FromStr for LoraSpec {
    type Err = String;

    /// Parses `r=8,alpha=16,targets=q,v,ffn` (any subset, in any order; `rank` for `r`).
    /// A comma-separated item without `=` continues the previous key's list, so only
    /// `targets` can take several.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut spec = LoraSpec::default();
        let mut key = String::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let value = match item.split_once('=') {
                Some((k, v)) => {
                    key = k.trim().to_string();
                    v.trim()
                }
                None if key == "targets" => item,
                None => {
                    return Err(format!(
                        "`{item}` in `{s}`: expected key=value (keys: r, alpha, targets)"
                    ))
                }
            };
            match key.as_str() {
                "r" | "rank" => {
                    spec.rank = match value.parse::<usize>() {
                        Ok(r) if r > 0 => r,
                        _ => return Err(format!("r={value}: the rank is a positive integer")),
                    }
                }
                "alpha" => {
                    spec.alpha = match value.parse::<f64>() {
                        Ok(a) if a > 0.0 && a.is_finite() => a,
                        _ => return Err(format!("alpha={value}: alpha is a positive number")),
                    }
                }
                "targets" => {
                    if !value.is_empty() && !spec.targets.iter().any(|t| t == value) {
                        spec.targets.push(value.to_string());
                    }
                }
                "dropout" => {
                    return Err(
                        "dropout: LoRA dropout is not supported: the adapters compose \
                         into the weights they adapt (burn's LoRA), so there is no adapter-only \
                         input to drop; the model's own dropout still applies"
                            .into(),
                    )
                }
                other => {
                    return Err(format!(
                        "`{other}` is not a LoRA setting (keys: r, alpha, targets)"
                    ))
                }
            }
        }
        Ok(spec)
    }
}

impl LoraSpec {
    /// The factor on `A B`: `alpha / r`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// The targets this spec adapts in a model of `config`: its own, or the default.
    pub fn targets_for(&self, config: &ModelConfig) -> Vec<String> {
        if self.targets.is_empty() {
            default_lora_targets(config)
                .iter()
                .map(|t| t.to_string())
                .collect()
        } else {
            self.targets.clone()
        }
    }
}

/// The target names a model of `config` has, e.g. `q, k, v, o, ffn` for attention models
/// (the four attention projections and every feed-forward weight).
pub fn lora_targets(config: &ModelConfig) -> &'static [&'static str] {
    match config.architecture {
        Architecture::Encoder | Architecture::Decoder => &["q", "k", "v", "o", "ffn"],
        Architecture::Hyena => &["in_proj", "out_proj", "ffn"],
        Architecture::Caduceus => &["in_proj", "out_proj", "x_proj", "dt_proj"],
    }
}

/// The targets adapted when none are named: the query and value projections of attention
/// models (PEFT's default for BERT and ESM), the mixers' input and output projections
/// otherwise.
pub fn default_lora_targets(config: &ModelConfig) -> &'static [&'static str] {
    match config.architecture {
        Architecture::Encoder | Architecture::Decoder => &["q", "v"],
        Architecture::Hyena | Architecture::Caduceus => &["in_proj", "out_proj"],
    }
}

/// Whether the parameter at `path` is a weight that `target` names.
fn is_target(target: &str, path: &str) -> bool {
    let Some(rest) = path
        .strip_prefix("blocks.")
        .and_then(|p| p.split_once('.'))
        .map(|(_, rest)| rest)
    else {
        return false;
    };
    match target {
        "q" => rest == "query.weight",
        "k" => rest == "key.weight",
        "v" => rest == "value.weight",
        "o" => rest == "output.weight",
        "ffn" => rest.starts_with("ffn.") && rest.ends_with(".weight"),
        "in_proj" | "out_proj" => {
            rest == format!("hyena.{target}.weight") || rest == format!("mamba.{target}.weight")
        }
        "x_proj" | "dt_proj" => {
            rest.starts_with("mamba.") && rest.ends_with(&format!("_ssm.{target}.weight"))
        }
        _ => false,
    }
}

/// The parameter paths `spec` adapts in `model`, or a one-line error naming the valid targets.
pub fn lora_paths(model: &DnaLm, spec: &LoraSpec) -> Result<BTreeSet<String>, ModelError> {
    let config = &model.config;
    let valid = lora_targets(config);
    let targets = spec.targets_for(config);
    if let Some(bad) = targets.iter().find(|t| !valid.contains(&t.as_str())) {
        return Err(ModelError::Config {
            field: "lora.targets",
            message: format!(
                "`{bad}` is not a LoRA target of a {} model; valid targets: {}",
                format!("{:?}", config.architecture).to_lowercase(),
                valid.join(", ")
            ),
        });
    }
    let shapes = parameter_shapes(model);
    let paths: BTreeSet<String> = shapes
        .iter()
        .filter(|(path, shape)| shape.len() == 2 && targets.iter().any(|t| is_target(t, path)))
        .map(|(path, _)| path.clone())
        .collect();
    if paths.is_empty() {
        return Err(ModelError::Config {
            field: "lora.targets",
            message: format!("{} match no weight of this model", targets.join(", ")),
        });
    }
    Ok(paths)
}

/// Attaches adapters to the weights at `paths` and freezes every other parameter.
struct AttachLora<'a> {
    paths: &'a BTreeSet<String>,
    rank: usize,
    scale: f64,
    seed: u64,
}

impl Reparameterizer for AttachLora<'_> {
    type Reparam = LoraAdapter;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<LoraAdapter>) {
        let base = param.set_require_grad(false);
        if D != 2 || !self.paths.contains(path) {
            return (base, None);
        }
        let value = base.val();
        let device = value.device();
        let [d_in, d_out] = [value.dims()[0], value.dims()[1]];
        // PEFT's default: A from kaiming_uniform(a = √5), i.e. U(±1/√fan_in); B = 0, so the
        // adapted model starts as the base. Drawn per parameter name from the seed, so a run
        // does not depend on the backend's global generator or on which weights come first.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(crate::io::name_stream(path));
        let bound = 1.0 / (d_in as f32).sqrt();
        let a: Vec<f32> = (0..d_in * self.rank)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let a = Tensor::<2>::from_data(TensorData::new(a, [d_in, self.rank]), &device);
        let b = Tensor::<2>::zeros([self.rank, d_out], &device);
        let adapter = LoraAdapter {
            a: Param::from_tensor(a),
            b: Param::from_tensor(b),
            scale: self.scale,
        };
        (base, Some(adapter))
    }
}

impl DnaLm {
    /// This model with LoRA adapters on the weights `spec` names (initialised from `seed`), and
    /// every other parameter frozen. Refuses a model that has adapters already.
    pub fn with_lora(self, spec: &LoraSpec, seed: u64) -> Result<DnaLm, ModelError> {
        let paths = lora_paths(&self, spec)?;
        self.with_lora_on(&paths, spec.rank, spec.scale(), seed)
    }

    /// [`DnaLm::with_lora`] on the weights at `paths`, with rank `rank` and factor `scale`.
    pub(crate) fn with_lora_on(
        self,
        paths: &BTreeSet<String>,
        rank: usize,
        scale: f64,
        seed: u64,
    ) -> Result<DnaLm, ModelError> {
        if has_adapters(&self) {
            return Err(ModelError::Config {
                field: "lora",
                message: "the model has LoRA adapters already; merge them first \
                          (`dnalm merge-adapter`)"
                    .into(),
            });
        }
        Ok(self.apply_reparameterization(AttachLora {
            paths,
            rank,
            scale,
            seed,
        }))
    }
}

impl DnaLm {
    /// This model with its adapters folded into the weights they adapt (burn's
    /// [`Module::materialize`]), in inference mode: a plain model of the base's shape.
    pub fn merge_lora(self) -> DnaLm {
        self.valid().materialize()
    }
}

/// Whether any parameter of `module` carries LoRA factors.
pub fn has_adapters<M: Module>(module: &M) -> bool {
    parameter_shapes(module)
        .keys()
        .any(|name| name.contains(LORA_PATH))
}

/// The LoRA factors of `module` by parameter name (`<weight>.lora.a`, `<weight>.lora.b`).
pub fn adapter_tensors<M: Module>(module: &M) -> BTreeMap<String, HostTensor> {
    let mut all = named_parameters(module);
    all.retain(|name, _| name.contains(LORA_PATH));
    all
}

/// Parameters with a gradient and their element count: what an optimizer updates.
pub fn trainable_parameters<M: Module>(module: &M) -> usize {
    struct Count(usize);
    impl burn::module::ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val();
            if value.is_require_grad() {
                self.0 += value.shape().num_elements();
            }
        }
    }
    let mut count = Count(0);
    module.visit(&mut count);
    count.0
}

/// What [`ADAPTER_CONFIG`] records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterInfo {
    /// The base model's directory (absolute when written by dnalm; a relative path is taken
    /// from the adapter directory).
    pub base_model: PathBuf,
    /// Rank, alpha and the targets as resolved (never empty).
    pub lora: LoraSpec,
    /// Adapted parameters.
    pub parameters: Vec<String>,
}

impl AdapterInfo {
    /// Reads an adapter directory's settings: dnalm's [`ADAPTER_CONFIG`], or else PEFT's
    /// `adapter_config.json` ([`crate::hf::peft`]; the factors then say which weights).
    pub fn read(dir: &Path) -> Result<AdapterInfo, ModelError> {
        let path = dir.join(ADAPTER_CONFIG);
        if !path.is_file() && dir.join(PEFT_CONFIG).is_file() {
            let peft = read_peft_config(dir)?;
            return Ok(AdapterInfo {
                base_model: peft.base_model,
                lora: peft.lora,
                parameters: Vec::new(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| ModelError::Weights {
            path: path.clone(),
            message: format!("not a dnalm adapter.json: {e}"),
        })
    }

    /// Whether `dir` holds an adapter (dnalm's or PEFT's settings file).
    pub fn is_adapter_dir(dir: &Path) -> bool {
        dir.join(ADAPTER_CONFIG).is_file() || dir.join(PEFT_CONFIG).is_file()
    }

    /// The base model's directory, a relative path taken from `dir`.
    pub fn base_dir(&self, dir: &Path) -> PathBuf {
        if self.base_model.is_absolute() {
            self.base_model.clone()
        } else {
            dir.join(&self.base_model)
        }
    }

    /// Writes [`ADAPTER_CONFIG`] and [`ADAPTER_FILE`] of `model` (a model with adapters) into
    /// `dir`, which must exist, and PEFT's layout of the same factors beside them
    /// ([`crate::hf::peft::export_peft`]); returns why there is no PEFT layout when there is
    /// none.
    pub fn save(&self, dir: &Path, model: &DnaLm) -> Result<Option<String>, ModelError> {
        let factors = adapter_tensors(model);
        crate::tensors::write_safetensors(&dir.join(ADAPTER_FILE), &factors, None)?;
        let path = dir.join(ADAPTER_CONFIG);
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| ModelError::io(&path, std::io::Error::other(e)))?;
        std::fs::write(&path, json + "\n").map_err(|e| ModelError::io(&path, e))?;
        let (tensors, config) =
            match export_peft(&model.config, &factors, &self.lora, &self.base_model) {
                Ok(peft) => peft,
                Err(why) => return Ok(Some(why)),
            };
        let metadata = Some([("format".to_string(), "pt".to_string())].into());
        crate::tensors::write_safetensors(&dir.join(PEFT_WEIGHTS), &tensors, metadata)?;
        let path = dir.join(PEFT_CONFIG);
        let json = serde_json::to_string_pretty(&config)
            .map_err(|e| ModelError::io(&path, std::io::Error::other(e)))?;
        std::fs::write(&path, json + "\n").map_err(|e| ModelError::io(&path, e))?;
        Ok(None)
    }

    /// Attaches this adapter, its factors read from `dir` (dnalm's [`ADAPTER_FILE`], or else
    /// PEFT's weights), to `base` (the base model).
    pub fn attach(&self, dir: &Path, base: DnaLm) -> Result<DnaLm, ModelError> {
        let (file, saved, lora) = if dir.join(ADAPTER_FILE).is_file() {
            let file = dir.join(ADAPTER_FILE);
            let saved = read_safetensors(&file)?;
            (file, saved, self.lora.clone())
        } else {
            let file = dir.join(PEFT_WEIGHTS);
            let saved = read_safetensors(&file)?;
            let shapes = parameter_shapes(&base);
            let peft = read_peft_config(dir)?;
            let (saved, lora) = import_peft(&base.config, &shapes, saved, &peft, &file)?;
            (file, saved, lora)
        };
        let bad = |message: String| ModelError::Weights {
            path: file.clone(),
            message,
        };
        let paths: BTreeSet<String> = saved
            .keys()
            .filter_map(|k| k.strip_suffix(".lora.a").map(str::to_string))
            .collect();
        if paths.is_empty() {
            return Err(bad("no LoRA factors".into()));
        }
        if let Some(a) = saved
            .iter()
            .find(|(k, t)| k.ends_with(".lora.a") && t.shape.get(1) != Some(&lora.rank))
        {
            return Err(bad(format!(
                "{}: rank {:?}, the adapter's settings say r = {}",
                a.0,
                a.1.shape.get(1),
                lora.rank
            )));
        }
        let model = base.with_lora_on(&paths, lora.rank, lora.scale(), 0)?;
        let mut values = named_parameters(&model);
        let mut problems: Vec<String> = paths
            .iter()
            .filter(|p| !saved.contains_key(&format!("{p}.lora.b")))
            .map(|p| format!("{p}: lora.a without lora.b"))
            .collect();
        for (name, tensor) in saved {
            match values.get_mut(&name) {
                Some(slot) if slot.shape == tensor.shape => *slot = tensor,
                Some(slot) => problems.push(format!(
                    "{name}: shape {:?}, the model's adapter has {:?}",
                    tensor.shape, slot.shape
                )),
                None => problems.push(format!(
                    "{name}: not a weight of the base model {}",
                    self.base_model.display()
                )),
            }
        }
        if !problems.is_empty() {
            return Err(bad(crate::tensors::summarise(&problems)));
        }
        crate::io::load_parameters(model, &values, &file)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 2-block, d = 16 encoder (ESM layout).
    pub(crate) fn encoder() -> DnaLm {
        let config = ModelConfig {
            vocab_size: 12,
            n_layers: 2,
            d_model: 16,
            n_heads: 2,
            d_ffn: 32,
            max_positions: 32,
            ..ModelConfig::new(Architecture::Encoder, 0)
        };
        DnaLm::seeded(&config, &crate::cpu(), 3).unwrap()
    }

    #[test]
    fn specs_parse_with_lists_of_targets_and_refuse_what_they_cannot_do() {
        let spec: LoraSpec = "r=4,alpha=8,targets=q,v,ffn".parse().unwrap();
        assert_eq!(spec.rank, 4);
        assert_eq!(spec.alpha, 8.0);
        assert_eq!(spec.targets, ["q", "v", "ffn"]);
        assert_eq!(spec.scale(), 2.0);
        let spec: LoraSpec = "targets=k,alpha=2".parse().unwrap();
        assert_eq!(
            (spec.rank, spec.alpha, spec.targets),
            (8, 2.0, vec!["k".into()])
        );
        for (bad, says) in [
            ("r=0", "positive integer"),
            ("alpha=-1", "positive number"),
            ("rank=8,q", "key=value"),
            ("dropout=0.1", "not supported"),
            ("bias=all", "not a LoRA setting"),
        ] {
            let e = bad.parse::<LoraSpec>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn an_unknown_target_is_refused_in_one_line_listing_the_valid_ones() {
        let spec: LoraSpec = "targets=q,in_proj".parse().unwrap();
        let e = encoder().with_lora(&spec, 0).unwrap_err().to_string();
        assert!(
            e.contains("`in_proj` is not a LoRA target") && e.contains("q, k, v, o, ffn"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn targets_name_the_weights_of_every_architecture() {
        let model = encoder();
        let paths = |t: &str| {
            let spec: LoraSpec = format!("targets={t}").parse().unwrap();
            lora_paths(&model, &spec).unwrap()
        };
        assert_eq!(
            paths("q").into_iter().collect::<Vec<_>>(),
            ["blocks.0.query.weight", "blocks.1.query.weight"]
        );
        // The feed-forward network's up and down projections, no biases.
        assert_eq!(paths("ffn").len(), 4);
        assert!(paths("ffn").iter().all(|p| p.ends_with(".weight")));
        assert_eq!(paths("q,k,v,o").len(), 8);
        let hyena = ModelConfig {
            vocab_size: 12,
            n_layers: 2,
            d_model: 16,
            max_positions: 32,
            ..ModelConfig::new(Architecture::Hyena, 0)
        };
        for config in [hyena, crate::caduceus::tests::tiny(true)] {
            let architecture = config.architecture;
            let model = DnaLm::seeded(&config, &crate::cpu(), 1).unwrap();
            for target in lora_targets(&config) {
                let spec: LoraSpec = format!("targets={target}").parse().unwrap();
                let found = lora_paths(&model, &spec).unwrap();
                assert!(found.len() >= 2, "{architecture:?} {target}: {found:?}");
            }
        }
    }

    #[test]
    fn an_adapted_model_starts_as_its_base_and_merging_gives_its_outputs() {
        let base = encoder();
        let input = crate::ModelInput::from_rows(
            &[vec![2, 5, 6, 7, 8, 3], vec![2, 8, 7, 3]],
            crate::AttentionPattern::Bidirectional,
        );
        let values = |m: &DnaLm| {
            m.forward(&input)
                .unwrap()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let before = values(&base);
        let spec: LoraSpec = "r=2,alpha=4,targets=q,v,ffn".parse().unwrap();
        let adapted = base.with_lora(&spec, 5).unwrap();
        assert_eq!(
            values(&adapted),
            before,
            "B = 0: the adapters change nothing yet"
        );
        // Give B values, as training would.
        let mut tensors = named_parameters(&adapted);
        for (name, t) in tensors.iter_mut() {
            if name.ends_with(".lora.b") {
                for (i, v) in t.values.iter_mut().enumerate() {
                    *v = ((i % 7) as f32 - 3.0) * 0.05;
                }
            }
        }
        let adapted = crate::io::load_parameters(adapted, &tensors, Path::new("test")).unwrap();
        let after = values(&adapted);
        assert!(after.iter().zip(&before).any(|(a, b)| (a - b).abs() > 1e-3));
        let merged = adapted.merge_lora();
        assert!(!has_adapters(&merged));
        let merged = values(&merged);
        let worst = merged
            .iter()
            .zip(&after)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst < 1e-5, "merged vs adapted: {worst}");
    }

    #[test]
    fn only_the_factors_train() {
        let model = encoder();
        let all = trainable_parameters(&model.clone().train());
        let spec: LoraSpec = "r=2,targets=q,v".parse().unwrap();
        let adapted = model.with_lora(&spec, 0).unwrap().train();
        // Two blocks, two 16 x 16 weights each: (16 + 16) x 2 per weight.
        assert_eq!(trainable_parameters(&adapted), 2 * 2 * (16 + 16) * 2);
        assert!(all > 1000);
        assert!(has_adapters(&adapted));
        assert_eq!(adapter_tensors(&adapted).len(), 8);
    }

    /// The factors' gradients are the adapted weight's, through `W + s·A B`: `s·Gᵀ`-products
    /// `dL/dB = s·Aᵀ·dL/dW` (and `dL/dA = 0` while `B = 0`), through the fused encoder layer
    /// (which reads the composed weight as a tracked, non-leaf tensor) and the reference path.
    #[test]
    fn the_factors_get_the_adapted_weights_gradient() {
        use burn::optim::GradientsParams;
        let input = crate::ModelInput::from_rows(
            &[vec![2, 5, 6, 7, 8, 3], vec![2, 8, 7, 3]],
            crate::AttentionPattern::Bidirectional,
        );
        for fused in [true, false] {
            let model = encoder().with_fused_layers(fused).train();
            let loss = |m: &DnaLm| {
                let h = m.forward(&input).unwrap();
                (h.clone() * h.detach().sin()).sum()
            };
            let full = crate::tensors::named_gradients(
                &model,
                &GradientsParams::from_grads(loss(&model).backward(), &model),
            );
            let spec: LoraSpec = "r=3,alpha=6,targets=v".parse().unwrap();
            let adapted = model.with_lora(&spec, 9).unwrap().train();
            let grads = crate::tensors::named_gradients(
                &adapted,
                &GradientsParams::from_grads(loss(&adapted).backward(), &adapted),
            );
            let names: Vec<&String> = grads.keys().collect();
            assert_eq!(names.len(), 4, "{names:?}");
            let factors = named_parameters(&adapted);
            for block in 0..2 {
                let weight = format!("blocks.{block}.value.weight");
                let g = &full[&weight];
                let a = &factors[&format!("{weight}.lora.a")].values;
                let got = &grads[&format!("{weight}.lora.b")];
                let (d_in, d_out, r) = (16, 16, 3);
                let mut worst = 0f32;
                for k in 0..r {
                    for o in 0..d_out {
                        let want: f32 = (0..d_in)
                            .map(|i| a[i * r + k] * g[i * d_out + o])
                            .sum::<f32>()
                            * spec.scale() as f32;
                        worst = worst.max((want - got[k * d_out + o]).abs());
                    }
                }
                let scale = g.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                assert!(worst < 1e-4 * scale, "fused {fused}, {weight}: {worst}");
                let da = &grads[&format!("{weight}.lora.a")];
                assert!(da.iter().all(|v| *v == 0.0), "B = 0: no gradient for A yet");
            }
        }
    }
}
