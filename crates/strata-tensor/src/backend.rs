//! Which backends are compiled in, and picking one at run time.
//!
//! Every Strata crate has one cargo feature per backend (`flex`, `ndarray`, `tch`, `cuda`,
//! `wgpu`, `cpu`), forwarded down to burn's. A model is written once, with no backend type parameter:
//! the [`Device`] chosen here decides where its tensors live. [`BackendKind::parse`] reads the
//! `--backend` / `STRATA_BACKEND` name and [`BackendKind::device`] refuses, with a one-line
//! error naming the feature to enable, a backend that was not compiled in.

use std::fmt;

use burn::tensor::Device;

/// Environment variable read when no `--backend` is given.
pub const BACKEND_ENV: &str = "STRATA_BACKEND";

/// A Burn backend Strata knows about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// burn-flex: pure Rust CPU backend, no native dependencies (the default).
    Flex,
    /// burn-ndarray: pure Rust CPU backend over `ndarray` (deprecated in Burn 0.22).
    Ndarray,
    /// burn-tch: LibTorch, on the CPU or, with `--device-index N`, CUDA GPU N (deprecated in Burn 0.22).
    Tch,
    /// CubeCL CUDA: NVIDIA GPUs, kernels compiled at run time with NVRTC.
    Cuda,
    /// CubeCL wgpu: Vulkan / Metal / WebGPU, the best adapter found.
    Wgpu,
    /// CubeCL's CPU runtime: Burn's kernels compiled for the host with LLVM at run time.
    Cpu,
}

/// The backend asked for cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The name is not a backend.
    #[error("unknown backend '{0}': choose {names}", names = BackendKind::NAMES.join(", "))]
    Unknown(String),
    /// The backend exists but this binary was built without it.
    #[error(
        "backend '{name}' is not compiled into this binary (compiled: {compiled}); rebuild with the cargo feature `{name}` (e.g. `cargo xtask <task> --backend {name}`)"
    )]
    NotCompiled {
        /// The backend's name, which is also its feature.
        name: &'static str,
        /// The backends that are compiled in.
        compiled: String,
    },
    /// A CUDA device was asked for on a machine without an NVIDIA driver.
    #[error(
        "backend '{0}' on a GPU needs an NVIDIA GPU and its driver, and this machine has none (no /proc/driver/nvidia/version); use --backend flex"
    )]
    NoGpu(&'static str),
}

impl BackendKind {
    /// Every backend, in order of preference for a CPU-only default.
    pub const ALL: [BackendKind; 6] = [
        Self::Flex,
        Self::Ndarray,
        Self::Tch,
        Self::Cuda,
        Self::Wgpu,
        Self::Cpu,
    ];

    /// The names `--backend` accepts, in the order of [`ALL`](Self::ALL).
    pub const NAMES: &[&str] = &["flex", "ndarray", "tch", "cuda", "wgpu", "cpu"];

    /// The name on the command line, which is also the cargo feature.
    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
            Self::Tch => "tch",
            Self::Cuda => "cuda",
            Self::Wgpu => "wgpu",
            Self::Cpu => "cpu",
        }
    }

    /// Parses a backend name (case-insensitive; `libtorch` and `torch` mean `tch`).
    pub fn parse(name: &str) -> Result<Self, BackendError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "flex" => Ok(Self::Flex),
            "ndarray" => Ok(Self::Ndarray),
            "tch" | "libtorch" | "torch" => Ok(Self::Tch),
            "cuda" => Ok(Self::Cuda),
            "wgpu" => Ok(Self::Wgpu),
            "cpu" => Ok(Self::Cpu),
            _ => Err(BackendError::Unknown(name.to_string())),
        }
    }

    /// Whether this binary was built with the backend's feature.
    pub fn is_compiled(self) -> bool {
        match self {
            Self::Flex => cfg!(feature = "flex"),
            Self::Ndarray => cfg!(feature = "ndarray"),
            Self::Tch => cfg!(feature = "tch"),
            Self::Cuda => cfg!(feature = "cuda"),
            Self::Wgpu => cfg!(feature = "wgpu"),
            Self::Cpu => cfg!(feature = "cpu"),
        }
    }

    /// The backends compiled into this binary.
    pub fn compiled() -> Vec<BackendKind> {
        Self::ALL.into_iter().filter(|b| b.is_compiled()).collect()
    }

    /// The backend used when none is named: `STRATA_BACKEND` if set, else the first compiled one.
    pub fn from_env_or_default() -> Result<Self, BackendError> {
        match std::env::var(BACKEND_ENV) {
            Ok(name) if !name.trim().is_empty() => Self::parse(&name),
            _ => Ok(Self::compiled().first().copied().unwrap_or(Self::Flex)),
        }
    }

    /// The device (without autodiff) of this backend. `index` picks the GPU for `cuda`, and
    /// for `tch` selects LibTorch's CUDA device `index` (`None` is LibTorch on the CPU).
    pub fn device(self, index: Option<usize>) -> Result<Device, BackendError> {
        if !self.is_compiled() {
            return Err(BackendError::NotCompiled {
                name: self.name(),
                compiled: Self::compiled()
                    .iter()
                    .map(|b| b.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let _ = index;
        let on_gpu = self == Self::Cuda || (self == Self::Tch && index.is_some());
        if on_gpu && !nvidia_driver_present() {
            return Err(BackendError::NoGpu(self.name()));
        }
        Ok(match self {
            #[cfg(feature = "flex")]
            Self::Flex => Device::flex(),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            // burn-ndarray is deprecated in 0.22 but still a supported backend here
            Self::Ndarray => Device::ndarray(),
            #[cfg(feature = "tch")]
            #[allow(deprecated)]
            // burn-tch is deprecated in 0.22 but still a supported backend here
            Self::Tch => match index {
                Some(i) => Device::libtorch_cuda(i),
                None => Device::libtorch(),
            },
            #[cfg(feature = "cuda")]
            Self::Cuda => Device::cuda(index.unwrap_or(0)),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
            #[cfg(feature = "cpu")]
            Self::Cpu => Device::cpu(),
            #[allow(unreachable_patterns)] // reached only for backends not compiled in
            _ => unreachable!("is_compiled() checked above"),
        })
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether the NVIDIA kernel driver is loaded (Linux), checked before a CUDA device is made so
/// that a machine without one gets a clear error instead of a failure deep in a kernel launch.
/// `STRATA_ASSUME_GPU=1` skips the check (containers that hide `/proc/driver`).
fn nvidia_driver_present() -> bool {
    if !cfg!(target_os = "linux") || std::env::var_os("STRATA_ASSUME_GPU").is_some() {
        return true;
    }
    std::path::Path::new("/proc/driver/nvidia/version").exists()
        || std::path::Path::new("/dev/nvidiactl").exists()
}

/// Resolves `--backend` (or `STRATA_BACKEND`, or the default) and `--device-index` to a device.
pub fn select_device(
    backend: Option<&str>,
    index: Option<usize>,
) -> Result<(BackendKind, Device), BackendError> {
    let kind = match backend {
        Some(name) => BackendKind::parse(name)?,
        None => BackendKind::from_env_or_default()?,
    };
    Ok((kind, kind.device(index)?))
}

/// The device of the first backend compiled in (tests and examples: with `cargo xtask test
/// --backend B`, B is the only one).
pub fn first_compiled_device() -> Device {
    let kind = BackendKind::compiled()
        .first()
        .copied()
        .expect("at least one backend feature is enabled");
    kind.device(None)
        .unwrap_or_else(|e| panic!("cannot open the {} device: {e}", kind.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (b, name) in BackendKind::ALL.into_iter().zip(BackendKind::NAMES) {
            assert_eq!(BackendKind::parse(b.name()), Ok(b));
            assert_eq!(b.name(), *name);
        }
        assert_eq!(BackendKind::parse("LibTorch"), Ok(BackendKind::Tch));
    }

    #[test]
    fn unknown_backend_lists_the_choices() {
        let err = BackendKind::parse("cpu-fast").unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown backend 'cpu-fast': choose flex, ndarray, tch, cuda, wgpu, cpu"
        );
    }

    #[test]
    fn missing_backend_names_its_feature() {
        let missing = BackendKind::ALL
            .into_iter()
            .find(|b| !b.is_compiled())
            .expect("the test build never compiles every backend");
        let err = missing.device(None).unwrap_err().to_string();
        assert!(
            err.contains(&format!("cargo feature `{}`", missing.name())),
            "{err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn cuda_without_a_driver_is_a_clear_error() {
        if nvidia_driver_present() {
            return; // a GPU machine: nothing to refuse
        }
        for (kind, index) in [(BackendKind::Cuda, None), (BackendKind::Tch, Some(0))] {
            if kind.is_compiled() {
                let err = kind.device(index).unwrap_err().to_string();
                assert!(err.contains("needs an NVIDIA GPU"), "{err}");
            }
        }
    }

    #[test]
    fn compiled_backend_gives_a_device() {
        let first = BackendKind::compiled()[0];
        assert!(first.device(None).is_ok());
    }
}
