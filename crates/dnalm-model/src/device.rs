//! Compute devices by name: what `--device` takes on every command.
//!
//! | name | backend | build |
//! |---|---|---|
//! | `cpu` | burn Flex, with dnalm's fused encoder layer ([`crate::fused`]) | always |
//! | `vulkan`, `vulkan:N` | CubeCL SPIR-V kernels through wgpu on Vulkan | `--features vulkan` |
//! | `cuda`, `cuda:N` | CubeCL CUDA | `--features cuda` |
//!
//! `vulkan` is the GPU path that builds from registry crates alone: burn 0.23's CUDA runtime
//! depends on `cubecl-llvm`, whose build script downloads an LLVM bundle, so `cuda` builds only
//! where that download is reachable. Vulkan runs on NVIDIA, AMD and Intel drivers, and on Mesa's
//! lavapipe (a Vulkan driver on the CPU) where there is no GPU. `vulkan` takes the driver's
//! preferred adapter (a discrete GPU first); `vulkan:N` the N-th discrete GPU.
//!
//! [`DeviceName::open`] acquires the device, so a device that is absent is one error before any
//! work, not a panic in the middle of a run.

use std::{fmt, str::FromStr, sync::Mutex};

use burn::tensor::Device;

use crate::ModelError;

/// A compute device, as named on the command line: `cpu`, `vulkan[:N]` or `cuda[:N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceName {
    /// The CPU (burn Flex).
    #[default]
    Cpu,
    /// A Vulkan adapter: the preferred one, or the N-th discrete GPU.
    Vulkan(Option<usize>),
    /// A CUDA device by index.
    Cuda(usize),
}

impl DeviceName {
    /// The device names this build accepts, for error messages and `--help`.
    pub fn available() -> &'static str {
        match (cfg!(feature = "vulkan"), cfg!(feature = "cuda")) {
            (true, true) => "cpu, vulkan[:N], cuda[:N]",
            (true, false) => "cpu, vulkan[:N]",
            (false, true) => "cpu, cuda[:N]",
            (false, false) => "cpu",
        }
    }

    /// Whether this is the CPU, where dnalm's fused layers and the f32-only paths run.
    pub fn is_cpu(&self) -> bool {
        matches!(self, DeviceName::Cpu)
    }

    /// Acquires the device.
    ///
    /// # Errors
    ///
    /// [`ModelError::Device`] when this build lacks the backend or the machine lacks the device.
    pub fn open(&self) -> Result<Device, ModelError> {
        // A GPU runtime is acquired once per process; later opens reuse it (acquiring an adapter
        // takes a driver round trip, and a runtime cannot be registered twice).
        static OPENED: Mutex<Vec<(DeviceName, Device)>> = Mutex::new(Vec::new());
        let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, device)) = opened.iter().find(|(name, _)| name == self) {
            return Ok(device.clone());
        }
        let device = match *self {
            DeviceName::Cpu => Ok(crate::cpu()),
            DeviceName::Vulkan(index) => self.open_vulkan(index),
            DeviceName::Cuda(index) => self.open_cuda(index),
        }?;
        opened.push((*self, device.clone()));
        Ok(device)
    }

    fn unavailable(&self, feature: &str) -> ModelError {
        ModelError::Device {
            name: self.to_string(),
            message: format!(
                "this build has no {feature} backend (available: {}); rebuild with --features {feature}",
                Self::available()
            ),
        }
    }

    #[cfg(feature = "vulkan")]
    fn open_vulkan(&self, index: Option<usize>) -> Result<Device, ModelError> {
        use burn::tensor::{
            wgpu::{WgpuBackend, WgpuInitError},
            DeviceKind,
        };
        let kind = index.map_or(DeviceKind::DefaultDevice, DeviceKind::DiscreteGpu);
        match Device::wgpu_options()
            .device_kind(kind.clone())
            .graphics_api(WgpuBackend::Vulkan)
            .init()
        {
            Ok(device) => Ok(device),
            // The runtime for this adapter is up already (opened earlier in this process).
            Err(WgpuInitError::Registration { .. }) => Ok(Device::vulkan(kind)),
            Err(e) => Err(ModelError::Device {
                name: self.to_string(),
                message: e.to_string(),
            }),
        }
    }

    #[cfg(not(feature = "vulkan"))]
    fn open_vulkan(&self, _index: Option<usize>) -> Result<Device, ModelError> {
        Err(self.unavailable("vulkan"))
    }

    #[cfg(feature = "cuda")]
    fn open_cuda(&self, index: usize) -> Result<Device, ModelError> {
        Ok(Device::cuda(index))
    }

    #[cfg(not(feature = "cuda"))]
    fn open_cuda(&self, _index: usize) -> Result<Device, ModelError> {
        Err(self.unavailable("cuda"))
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceName::Cpu => f.write_str("cpu"),
            DeviceName::Vulkan(None) => f.write_str("vulkan"),
            DeviceName::Vulkan(Some(i)) => write!(f, "vulkan:{i}"),
            DeviceName::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for DeviceName {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |message: String| ModelError::Device {
            name: s.to_string(),
            message,
        };
        let (kind, index) = match s.split_once(':') {
            Some((kind, index)) => {
                let index = index.parse::<usize>().map_err(|_| {
                    bad(format!("'{index}' is not a device index (a number from 0)"))
                })?;
                (kind, Some(index))
            }
            None => (s, None),
        };
        match (kind, index) {
            ("cpu", None) => Ok(DeviceName::Cpu),
            ("cpu", Some(_)) => Err(bad("the CPU takes no index".into())),
            ("vulkan", index) => Ok(DeviceName::Vulkan(index)),
            ("cuda", index) => Ok(DeviceName::Cuda(index.unwrap_or(0))),
            _ => Err(bad(format!(
                "unknown device (this build has: {})",
                Self::available()
            ))),
        }
    }
}

impl serde::Serialize for DeviceName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in ["cpu", "vulkan", "vulkan:1", "cuda:0"] {
            assert_eq!(name.parse::<DeviceName>().unwrap().to_string(), name);
        }
        assert_eq!("cuda".parse::<DeviceName>().unwrap(), DeviceName::Cuda(0));
    }

    #[test]
    fn bad_names_say_what_is_wrong() {
        let e = "tpu".parse::<DeviceName>().unwrap_err().to_string();
        assert!(e.contains("tpu") && e.contains("unknown device"), "{e}");
        let e = "vulkan:x".parse::<DeviceName>().unwrap_err().to_string();
        assert!(e.contains("'x' is not a device index"), "{e}");
        let e = "cpu:0".parse::<DeviceName>().unwrap_err().to_string();
        assert!(e.contains("no index"), "{e}");
    }

    #[cfg(not(feature = "vulkan"))]
    #[test]
    fn a_backend_not_built_is_one_error() {
        let e = DeviceName::Vulkan(None).open().unwrap_err().to_string();
        assert!(e.contains("--features vulkan"), "{e}");
    }
}
