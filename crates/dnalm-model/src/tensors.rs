//! Named f32 tensors on the host and in safetensors files: the one currency of weights between
//! burn modules, checkpoints, optimiser state and the Hugging Face layouts.
//!
//! Parameters are named by their path in the module tree (`blocks.3.query.weight`); the same
//! names are used for optimiser state, so a checkpoint resumes by name, never by in-memory id.

use std::{collections::BTreeMap, fs, path::Path};

use burn::{
    module::{Module, ModuleVisitor, Param},
    tensor::{Device, Tensor, TensorData},
};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use crate::ModelError;

/// A named f32 tensor on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
}

impl HostTensor {
    /// Copies a tensor to the host.
    pub fn of<const D: usize>(tensor: &Tensor<D>) -> Self {
        let data = tensor.to_data().convert::<f32>();
        HostTensor {
            shape: data.shape().to_vec(),
            values: data.try_to_vec::<f32>().unwrap_or_default(),
        }
    }

    /// Makes a tensor on `device`.
    pub fn to_tensor<const D: usize>(&self, device: &Device) -> Tensor<D> {
        Tensor::from_data(
            TensorData::new(self.values.clone(), self.shape.clone()),
            device,
        )
    }
}

/// The dotted path (`blocks.3.query.weight`) of the parameter a [`ModuleVisitor`] or
/// [`ModuleMapper`] is at: call [`ModulePath::enter`] and [`ModulePath::exit`] from their
/// `enter_module` / `exit_module`, and [`ModulePath::name`] in `visit_float` / `map_float`.
/// Parameters are named this way everywhere (weights, optimiser state, initialisation).
#[derive(Debug, Default)]
pub struct ModulePath(Vec<String>);

impl ModulePath {
    /// Steps into a field or element.
    pub fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    /// Steps back out.
    pub fn exit(&mut self) {
        self.0.pop();
    }
    /// The current dotted name.
    pub fn name(&self) -> String {
        self.0.join(".")
    }
}

struct Collect {
    path: ModulePath,
    out: BTreeMap<String, HostTensor>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.out
            .insert(self.path.name(), HostTensor::of(&param.val()));
    }
}

/// Every float parameter of `module` by dotted path.
pub fn named_parameters<M: Module>(module: &M) -> BTreeMap<String, HostTensor> {
    let mut collect = Collect {
        path: ModulePath::default(),
        out: BTreeMap::new(),
    };
    module.visit(&mut collect);
    collect.out
}

/// Every float parameter's gradient in `grads`, flattened, by dotted name (parameters without
/// one left out): what gradient tests compare.
#[cfg(test)]
pub(crate) fn named_gradients<M: Module>(
    module: &M,
    grads: &burn::optim::GradientsParams,
) -> BTreeMap<String, Vec<f32>> {
    struct Gradients<'a> {
        path: ModulePath,
        grads: &'a burn::optim::GradientsParams,
        out: BTreeMap<String, Vec<f32>>,
    }
    impl ModuleVisitor for Gradients<'_> {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.enter(name);
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let values = g.into_data().convert::<f32>().try_to_vec::<f32>();
                self.out
                    .insert(self.path.name(), values.expect("f32 gradient"));
            }
        }
    }
    let mut collect = Gradients {
        path: ModulePath::default(),
        grads,
        out: BTreeMap::new(),
    };
    module.visit(&mut collect);
    collect.out
}

struct Shapes {
    path: ModulePath,
    out: BTreeMap<String, Vec<usize>>,
}

impl ModuleVisitor for Shapes {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.out
            .insert(self.path.name(), param.val().dims().to_vec());
    }
}

/// The shape of every float parameter of `module` by dotted path, without copying any values
/// to the host (what checks against a checkpoint need).
pub fn parameter_shapes<M: Module>(module: &M) -> BTreeMap<String, Vec<usize>> {
    let mut shapes = Shapes {
        path: ModulePath::default(),
        out: BTreeMap::new(),
    };
    module.visit(&mut shapes);
    shapes.out
}

/// The dotted path of every float parameter, sorted.
pub fn parameter_names<M: Module>(module: &M) -> Vec<String> {
    parameter_shapes(module).into_keys().collect()
}

/// The first few problems joined, with a count of the rest.
pub(crate) fn summarise(problems: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut message = problems[..problems.len().min(SHOWN)].join("; ");
    if problems.len() > SHOWN {
        message.push_str(&format!(" (and {} more)", problems.len() - SHOWN));
    }
    message
}

/// Writes named f32 tensors to a safetensors file (not atomic by itself: checkpoints are written
/// into a temporary directory that is renamed when complete).
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<(), ModelError> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| {
            let raw: Vec<u8> = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), raw, t.shape.clone())
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(name, raw, shape)| {
            TensorView::new(Dtype::F32, shape.clone(), raw)
                .map(|v| (name.clone(), v))
                .map_err(|e| ModelError::Weights {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })
        })
        .collect::<Result<_, _>>()?;
    // `safetensors` writes through its own temporary file, created 0600 whatever the umask; the
    // mode a plain create gives here (0666 less the umask, or an existing file's own mode: the
    // open neither truncates nor rewrites it) is put back after the rename.
    let mode = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|f| f.metadata())
        .map_err(|e| ModelError::io(path, e))?
        .permissions();
    safetensors::serialize_to_file(views, metadata, path).map_err(|e| ModelError::Weights {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    fs::set_permissions(path, mode).map_err(|e| ModelError::io(path, e))
}

/// Reads every tensor of a safetensors file as f32 (F32, F16 and BF16 are accepted, and I64
/// and I32, which checkpoints use for integer buffers such as token maps).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, HostTensor>, ModelError> {
    let bytes = fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| ModelError::Weights {
        path: path.to_path_buf(),
        message: format!("not a safetensors file: {e}"),
    })?;
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
                .collect(),
            // Integer buffers (Caduceus' `complement_map`): token ids, exact in f32.
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            Dtype::I32 => data
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
                .collect(),
            other => {
                return Err(ModelError::Weights {
                    path: path.to_path_buf(),
                    message: format!(
                        "tensor {name} has dtype {other:?}; only F32, F16, BF16 and integer buffers (I64, I32) are read"
                    ),
                })
            }
        };
        out.insert(
            name,
            HostTensor {
                shape: view.shape().to_vec(),
                values,
            },
        );
    }
    Ok(out)
}

/// IEEE half to single precision (no crate needed for one conversion).
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: normalise.
            let shift = f.leading_zeros() - 21;
            sign | ((113 - shift) << 23) | (((f << shift) & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 112) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_conversion() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
    }
}
