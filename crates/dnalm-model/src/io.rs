//! Weights and configs on disk: named f32 tensors in safetensors files, and the model directory
//! (`config.json` + `model.safetensors`, the Hugging Face layout).
//!
//! Tensors themselves (host copies, safetensors files, parameter names) are in [`crate::tensors`].

use std::{collections::BTreeMap, fs, path::Path};

use burn::{
    module::{Module, ModuleMapper, Param},
    tensor::{Device, Tensor, TensorData},
};

use crate::{
    hf::HfFamily,
    tensors::{
        named_parameters, parameter_shapes, read_safetensors, summarise, write_safetensors,
        HostTensor, ModulePath,
    },
    DnaLm, ModelConfig, ModelError,
};

struct Replace<'a> {
    path: ModulePath,
    values: &'a BTreeMap<String, HostTensor>,
    problems: Vec<String>,
    used: usize,
    /// Parameters absent from `values` keep their value and are listed here, instead of being
    /// reported missing.
    kept: Option<Vec<String>>,
}

impl ModuleMapper for Replace<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.name();
        let Some(host) = self.values.get(&name) else {
            match &mut self.kept {
                Some(kept) => kept.push(name),
                None => self.problems.push(format!("missing tensor {name}")),
            }
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        let expected = tensor.dims().to_vec();
        if host.shape != expected {
            self.problems.push(format!(
                "tensor {name} has shape {:?}, the model expects {expected:?}",
                host.shape
            ));
            return Param::from_mapped_value(id, tensor, mapper);
        }
        self.used += 1;
        let device = tensor.device();
        let require_grad = tensor.is_require_grad();
        let mut value = host.to_tensor::<D>(&device);
        if require_grad {
            value = value.require_grad();
        }
        Param::from_mapped_value(id, value, mapper)
    }
}

struct Reinitialize<'a> {
    path: ModulePath,
    seed: u64,
    /// Only these parameters (all when `None`).
    only: Option<&'a std::collections::BTreeSet<String>>,
    scheme: InitScheme,
}

/// How [`Reinitialize`] draws a weight (norm scales and biases are always 1 and 0, batch-norm
/// running statistics mean 0 and variance 1).
#[derive(Debug, Clone, Copy)]
enum InitScheme {
    /// N(0, 0.02²): BERT's and GPT's transformer initialisation.
    Normal,
    /// U(−1/√fan_in, 1/√fan_in): PyTorch's default for `Linear` and `Conv1d` weights
    /// (`kaiming_uniform_(a=√5)`), with burn's layouts: `[d_in, d_out]` for a linear weight,
    /// `[out, in, kernel]` for a convolution.
    FanInUniform,
}

impl InitScheme {
    fn bound<const D: usize>(dims: [usize; D]) -> f64 {
        let fan_in = match D {
            2 => dims[0],
            _ => dims.iter().skip(1).product(),
        };
        1.0 / (fan_in.max(1) as f64).sqrt()
    }
}

impl ModuleMapper for Reinitialize<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        use rand::{Rng, SeedableRng};
        let name = self.path.name();
        if self.only.is_some_and(|only| !only.contains(&name)) {
            return param;
        }
        let (id, tensor, mapper) = param.consume();
        let dims = tensor.dims();
        let n: usize = dims.iter().product();
        let leaf = name.rsplit('.').next().unwrap_or("");
        if matches!(leaf, "positions" | "freq" | "dt_bias" | "a_log" | "d_skip") {
            // Hyena's positional features and sine frequencies, and Mamba's step sizes, state
            // matrix and skip weights, start where HyenaDNA and Mamba start them (computed by
            // the constructor), not at random.
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let values: Vec<f32> = match leaf {
            "gamma" | "running_var" => vec![1.0; n],
            "beta" | "bias" | "running_mean" => vec![0.0; n],
            _ => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
                rng.set_stream(name_stream(&name));
                match self.scheme {
                    InitScheme::Normal => (0..n)
                        .map(|_| {
                            // Box-Muller.
                            let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                            let u2: f64 = rng.random();
                            (0.02 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos())
                                as f32
                        })
                        .collect(),
                    InitScheme::FanInUniform => {
                        let bound = InitScheme::bound(dims);
                        (0..n)
                            .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
                            .collect()
                    }
                }
            }
        };
        let device = tensor.device();
        let require_grad = tensor.is_require_grad();
        let mut value = Tensor::<D>::from_data(TensorData::new(values, dims.to_vec()), &device);
        if require_grad {
            value = value.require_grad();
        }
        Param::from_mapped_value(id, value, mapper)
    }
}

/// The random stream of the parameter `name` (FNV-1a of the name): each parameter draws its
/// initial values from its own stream of the seed, so adding a parameter changes no other.
pub(crate) fn name_stream(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Re-initialises every parameter deterministically from `seed` (see [`DnaLm::seeded`]):
/// weights N(0, 0.02²), the transformer initialisation.
pub fn reinitialize<M: Module>(module: M, seed: u64) -> M {
    module.map(&mut Reinitialize {
        path: ModulePath::default(),
        seed,
        only: None,
        scheme: InitScheme::Normal,
    })
}

/// Re-initialises every parameter deterministically from `seed` with PyTorch's default for
/// linear and convolution layers, U(−1/√fan_in, 1/√fan_in): the scale a network without
/// normalisation after every layer (a CNN, a small head) trains from.
pub fn reinitialize_fan_in<M: Module>(module: M, seed: u64) -> M {
    module.map(&mut Reinitialize {
        path: ModulePath::default(),
        seed,
        only: None,
        scheme: InitScheme::FanInUniform,
    })
}

/// Replaces every float parameter of `module` by the tensor of the same name. Missing names,
/// shape mismatches and unused tensors are all reported, in one error.
pub fn load_parameters<M: Module>(
    module: M,
    values: &BTreeMap<String, HostTensor>,
    source: &Path,
) -> Result<M, ModelError> {
    Ok(replace(module, values, source, false)?.0)
}

/// [`load_parameters`] for a checkpoint that lacks some parameters (dnalm's own heads in a
/// foreign checkpoint, the LM head of a bare `BertModel`): those are drawn from `seed`,
/// parameter by name, as [`DnaLm::seeded`] draws them, so that the result does not depend on
/// the backend's random state. Returns the model and the names it drew.
pub fn load_parameters_or_seed<M: Module>(
    module: M,
    values: &BTreeMap<String, HostTensor>,
    source: &Path,
    seed: u64,
) -> Result<(M, Vec<String>), ModelError> {
    let (module, kept) = replace(module, values, source, true)?;
    let only: std::collections::BTreeSet<String> = kept.iter().cloned().collect();
    let module = module.map(&mut Reinitialize {
        path: ModulePath::default(),
        seed,
        only: Some(&only),
        scheme: InitScheme::Normal,
    });
    Ok((module, kept))
}

fn replace<M: Module>(
    module: M,
    values: &BTreeMap<String, HostTensor>,
    source: &Path,
    keep_missing: bool,
) -> Result<(M, Vec<String>), ModelError> {
    let mut replace = Replace {
        path: ModulePath::default(),
        values,
        problems: Vec::new(),
        used: 0,
        kept: keep_missing.then(Vec::new),
    };
    let module = module.map(&mut replace);
    let mut problems = replace.problems;
    if replace.used != values.len() {
        let known = parameter_shapes(&module);
        for name in values.keys().filter(|n| !known.contains_key(*n)) {
            problems.push(format!("unexpected tensor {name}"));
        }
    }
    if problems.is_empty() {
        Ok((module, replace.kept.unwrap_or_default()))
    } else {
        Err(ModelError::Weights {
            path: source.to_path_buf(),
            message: summarise(&problems),
        })
    }
}

/// File names of a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// Weights file of a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// dnalm's own pretraining heads (token deletion, permutation query stream), which
/// `transformers` has no place for, beside `model.safetensors`.
pub const HEADS_FILE: &str = "dnalm_heads.safetensors";

fn read_json(path: &Path) -> Result<serde_json::Value, ModelError> {
    let text = fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::Config {
        field: "config.json",
        message: format!("{}: not valid JSON: {e}", path.display()),
    })
}

/// The config of a model directory: the `"dnalm"` section of its `config.json`, or, for a
/// Hugging Face checkpoint without one (DNABERT, Nucleotide Transformer...), the config
/// imported from the `transformers` fields ([`crate::hf::import_config`]).
pub fn read_config(dir: &Path) -> Result<ModelConfig, ModelError> {
    Ok(read_model_config(dir)?.1)
}

/// Where a model directory comes from: dnalm wrote it, or it is a foreign checkpoint of a
/// `transformers` family.
fn read_model_config(dir: &Path) -> Result<(Option<HfFamily>, ModelConfig), ModelError> {
    let path = dir.join(CONFIG_FILE);
    if !path.is_file() {
        return Err(ModelError::Config {
            field: "config.json",
            message: format!(
                "{}: is not a model directory (no config.json)",
                dir.display()
            ),
        });
    }
    let value = read_json(&path)?;
    match value.get("dnalm") {
        Some(section) => {
            let config: ModelConfig =
                serde_json::from_value(section.clone()).map_err(|e| ModelError::Config {
                    field: "dnalm",
                    message: format!("{}: {e}", path.display()),
                })?;
            config.validate()?;
            Ok((None, config))
        }
        None => {
            let (family, config) = crate::hf::import_config(&value, &path)?;
            Ok((Some(family), config))
        }
    }
}

/// Every tensor of a Hugging Face checkpoint directory: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` lists. A PyTorch pickle (`pytorch_model.bin`) is not read (no
/// well-kept Rust crate reads pickles safely); the error says how to convert it.
pub fn read_checkpoint_tensors(dir: &Path) -> Result<BTreeMap<String, HostTensor>, ModelError> {
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return read_safetensors(&single);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let value = read_json(&index)?;
        let shards: std::collections::BTreeSet<&str> = value
            .get("weight_map")
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| ModelError::Weights {
                path: index.clone(),
                message: "no weight_map".into(),
            })?
            .values()
            .filter_map(serde_json::Value::as_str)
            .collect();
        let mut out = BTreeMap::new();
        for shard in shards {
            out.extend(read_safetensors(&shard_path(dir, &index, shard)?)?);
        }
        return Ok(out);
    }
    let pickle = dir.join("pytorch_model.bin");
    if pickle.is_file() {
        return Err(ModelError::Weights {
            path: pickle,
            message: "PyTorch pickle weights are not read; convert them once to model.safetensors \
                      (pip install torch safetensors; python -c \"import torch; from safetensors.torch \
                      import save_file; sd = torch.load('pytorch_model.bin', map_location='cpu'); \
                      save_file({k: v.clone().contiguous() for k, v in sd.items()}, 'model.safetensors')\" \
                      in that directory)"
                .into(),
        });
    }
    Err(ModelError::Weights {
        path: single,
        message: "missing (a model directory holds model.safetensors)".into(),
    })
}

/// The file a sharded checkpoint's `weight_map` names: a plain file name inside the model
/// directory (no path separators, no `..`, not absolute) that is a regular file, so that an
/// index cannot make dnalm read `../../x`, `/etc/...` or `/dev/zero` (read until memory runs out).
fn shard_path(dir: &Path, index: &Path, shard: &str) -> Result<std::path::PathBuf, ModelError> {
    let plain = !shard.is_empty()
        && shard != "."
        && shard != ".."
        && !shard.contains(['/', '\\'])
        && Path::new(shard).is_relative();
    let bad = |why: &str| ModelError::Weights {
        path: index.to_path_buf(),
        message: format!("weight_map names shard \"{shard}\", {why}"),
    };
    if !plain {
        return Err(bad(
            "which is not a plain file name inside the model directory",
        ));
    }
    let path = dir.join(shard);
    match fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(_) => Err(bad("which is not a regular file")),
        Err(e) => Err(ModelError::io(&path, e)),
    }
}

/// Refuses a config that describes far more parameters than its weight files hold, before the
/// model is allocated (a `config.json` with `num_hidden_layers = 10000000` used to abort the
/// process while allocating). Twice the stored values plus a million leaves room for what
/// import may add (dnalm's own heads, a missing LM head, tied matrices stored once).
fn check_size_against_weights(
    config: &ModelConfig,
    values: &BTreeMap<String, HostTensor>,
    dir: &Path,
) -> Result<(), ModelError> {
    let held: usize = values.values().map(|t| t.values.len()).sum();
    let described = config.parameter_count();
    if described > held.saturating_mul(2).saturating_add(1_000_000) {
        return Err(ModelError::Config {
            field: "config.json",
            message: format!(
                "{}: describes a model of {described} parameters, but its weights hold {held} \
                 values; refusing to build it (check num_hidden_layers, hidden_size, \
                 intermediate_size and vocab_size)",
                dir.join(CONFIG_FILE).display()
            ),
        });
    }
    Ok(())
}

impl DnaLm {
    /// Writes `config.json` and `model.safetensors` into `dir` (created if needed).
    ///
    /// When the config has a `transformers` equivalent ([`HfFamily::of`]: ESM for the encoder,
    /// Llama for the decoder, BERT for the post-norm encoder), the files are laid out so that
    /// `transformers` loads them with its stock classes, and dnalm's own pretraining heads go to
    /// `dnalm_heads.safetensors`. Otherwise (ALiBi, learned positions on the decoder) the
    /// weights keep dnalm's names and `config.json` says why (`model_type` "dnalm").
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let tensors = named_parameters(self);
        let metadata = || Some([("format".to_string(), "pt".to_string())].into());
        let exported = crate::hf::export_config(&self.config).and_then(|config| {
            crate::hf::export_weights(&self.config, &tensors).map(|w| (config, w))
        });
        let config = match exported {
            Ok((config, (hf, extra))) => {
                write_safetensors(&dir.join(WEIGHTS_FILE), &hf, metadata())?;
                write_safetensors(&dir.join(HEADS_FILE), &extra, metadata())?;
                config
            }
            Err(why) => {
                write_safetensors(&dir.join(WEIGHTS_FILE), &tensors, metadata())?;
                serde_json::json!({
                    "model_type": "dnalm",
                    "note": format!("no transformers equivalent: {why}"),
                    "dnalm": &self.config,
                })
            }
        };
        let config_path = dir.join(CONFIG_FILE);
        let json = serde_json::to_string_pretty(&config)
            .map_err(|e| ModelError::io(&config_path, std::io::Error::other(e)))?;
        fs::write(&config_path, json + "\n").map_err(|e| ModelError::io(&config_path, e))
    }

    /// Loads a model directory: one written by [`DnaLm::save`], or a Hugging Face BERT
    /// (DNABERT), ESM (Nucleotide Transformer) or Llama checkpoint.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        Ok(Self::load_with_report(dir, device)?.0)
    }

    /// [`DnaLm::load`], also saying what import left freshly initialised or skipped.
    pub fn load_with_report(
        dir: &Path,
        device: &Device,
    ) -> Result<(Self, crate::hf::ImportReport), ModelError> {
        let (foreign, config) = read_model_config(dir)?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let values = read_checkpoint_tensors(dir)?;
        check_size_against_weights(&config, &values, dir)?;
        let model = DnaLm::new(&config, device)?;
        if foreign.is_none() && values.contains_key("embed.weight") {
            // dnalm's own names (configs with no transformers equivalent, older checkpoints).
            return Ok((
                load_parameters(model, &values, &weights_path)?,
                Default::default(),
            ));
        }
        let family = match foreign {
            Some(family) => family,
            None => HfFamily::of(&config).map_err(|why| ModelError::Config {
                field: "dnalm",
                message: format!("{}: {why}", dir.join(CONFIG_FILE).display()),
            })?,
        };
        let shapes = parameter_shapes(&model);
        let (mut ours, report) =
            crate::hf::import_weights(family, &config, &values, &shapes, &weights_path)?;
        drop(values);
        let heads = dir.join(HEADS_FILE);
        if heads.is_file() {
            for (name, tensor) in read_safetensors(&heads)? {
                if !shapes.contains_key(&name) || ours.contains_key(&name) {
                    return Err(ModelError::Weights {
                        path: heads,
                        message: format!("unexpected tensor {name}"),
                    });
                }
                ours.insert(name, tensor);
            }
        }
        // What the checkpoint lacks (dnalm's own heads, a missing LM head) is drawn from seed 0,
        // so that loading the same directory twice gives the same model.
        let (model, _) = load_parameters_or_seed(model, &ours, &weights_path, 0)?;
        Ok((model, report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_checkpoint(dir: &Path) -> ModelConfig {
        let cfg = ModelConfig {
            n_layers: 1,
            d_model: 8,
            n_heads: 2,
            d_ffn: 16,
            max_positions: 16,
            ..ModelConfig::new(crate::Architecture::Encoder, 10)
        };
        DnaLm::seeded(&cfg, &crate::cpu(), 1)
            .unwrap()
            .save(dir)
            .unwrap();
        cfg
    }

    /// Issue 14, defect 5: a shard index cannot point outside the model directory.
    #[test]
    fn shard_paths_must_be_plain_files_inside_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        tiny_checkpoint(dir.path());
        fs::rename(
            dir.path().join(WEIGHTS_FILE),
            dir.path().join("model-00001-of-00001.safetensors"),
        )
        .unwrap();
        let index = dir.path().join("model.safetensors.index.json");
        let write = |shard: &str| {
            let json = serde_json::json!({"weight_map": {"embed.weight": shard}});
            fs::write(&index, json.to_string()).unwrap();
        };
        write("model-00001-of-00001.safetensors");
        assert!(read_checkpoint_tensors(dir.path()).is_ok());
        for shard in [
            "../../x.safetensors",
            "/dev/zero",
            "..",
            "sub/x.safetensors",
            "",
        ] {
            write(shard);
            let err = read_checkpoint_tensors(dir.path()).unwrap_err().to_string();
            assert!(
                err.contains("not a plain file name") && err.contains("index.json"),
                "{shard}: {err}"
            );
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.safetensors")).unwrap();
            write("zero.safetensors");
            let err = read_checkpoint_tensors(dir.path()).unwrap_err().to_string();
            assert!(err.contains("not a regular file"), "{err}");
        }
    }

    /// Issue 14, defect 6: a config.json describing a huge model beside small weights is
    /// refused before anything is allocated.
    #[test]
    fn a_config_far_larger_than_its_weights_is_refused_before_allocation() {
        let dir = tempfile::tempdir().unwrap();
        tiny_checkpoint(dir.path());
        let path = dir.path().join(CONFIG_FILE);
        let mut config: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        config.as_object_mut().unwrap().remove("dnalm");
        config["num_hidden_layers"] = serde_json::json!(10_000_000);
        config["hidden_size"] = serde_json::json!(4096);
        config["num_attention_heads"] = serde_json::json!(16);
        fs::write(&path, config.to_string()).unwrap();
        let err = DnaLm::load(dir.path(), &crate::cpu())
            .unwrap_err()
            .to_string();
        assert!(err.contains("parameters"), "{err}");
        config["num_hidden_layers"] = serde_json::json!(300);
        fs::write(&path, config.to_string()).unwrap();
        let err = DnaLm::load(dir.path(), &crate::cpu())
            .unwrap_err()
            .to_string();
        assert!(err.contains("weights hold"), "{err}");
    }
}
