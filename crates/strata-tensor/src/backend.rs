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
    /// wgpu found no adapter: no Vulkan, Metal, DirectX 12 or OpenGL device.
    #[error(
        "backend 'wgpu' found no GPU: no Vulkan, Metal, DirectX 12 or OpenGL device answered; install the GPU's driver (on Linux without a GPU, Mesa's software Vulkan: apt-get install mesa-vulkan-drivers), or use --backend flex"
    )]
    NoWgpuAdapter,
    /// The LibTorch this process loaded is another release than the one the binary was built
    /// against (LibTorch's C++ ABI changes between releases).
    #[error(
        "this binary was built against LibTorch {built}, but it loaded LibTorch {loaded} from {dir}: put LibTorch {built}'s lib/ first in LD_LIBRARY_PATH (`cargo xtask setup-libtorch` installs 2.9.0, and `cargo xtask <job> --backend tch` runs with it), or rebuild against {loaded}"
    )]
    LibTorchVersion {
        /// The release the binary was built against.
        built: &'static str,
        /// The release it loaded.
        loaded: String,
        /// Where it loaded it from.
        dir: String,
    },
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
        if self == Self::Tch {
            check_libtorch()?;
        }
        #[cfg(feature = "wgpu")]
        if self == Self::Wgpu && !wgpu_adapter_present() {
            return Err(BackendError::NoWgpuAdapter);
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

/// Whether wgpu finds an adapter on any graphics API (llvmpipe's software Vulkan counts), so
/// that a machine without one gets a clear error instead of a panic on CubeCL's device thread.
/// Asked once per process, before any wgpu device exists: the Vulkan loader crashes when
/// instances come and go on several threads at once.
#[cfg(feature = "wgpu")]
fn wgpu_adapter_present() -> bool {
    static PRESENT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PRESENT.get_or_init(|| {
        use burn::backend::wgpu::wgpu;
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        !futures_lite::future::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
            .is_empty()
    })
}

/// The LibTorch release a tch build was made against: `STRATA_LIBTORCH_VERSION` at build time,
/// which the xtask sets (unknown in builds made without it).
const BUILT_LIBTORCH: Option<&str> = option_env!("STRATA_LIBTORCH_VERSION");

/// Checks that the LibTorch this process loaded is the release the binary was built against.
/// Another release links and starts, then fails in its first tensor operation with an unrelated
/// message, since LibTorch's C++ ABI changes between releases.
fn check_libtorch() -> Result<(), BackendError> {
    let (Some(built), Some((loaded, dir))) = (BUILT_LIBTORCH, loaded_libtorch()) else {
        return Ok(());
    };
    if loaded == built {
        return Ok(());
    }
    Err(BackendError::LibTorchVersion {
        built,
        loaded,
        dir: dir.display().to_string(),
    })
}

/// The release (`2.11.0`) and folder of the LibTorch whose `libtorch_cpu.so` this process
/// mapped, read from the PyTorch install around it (`torch/version.py`) or the LibTorch archive's
/// `build-version`. `None` where neither says (or off Linux).
fn loaded_libtorch() -> Option<(String, std::path::PathBuf)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let lib = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libtorch_cpu.so"))?;
    let root = std::path::Path::new(lib).parent()?.parent()?;
    Some((libtorch_release(root)?, root.to_path_buf()))
}

/// The release of the PyTorch install (`version.py`: `__version__ = '2.11.0+cu130'`) or LibTorch
/// archive (`build-version`: `2.9.0+cpu`) at `root`, without its local part (`2.11.0`).
fn libtorch_release(root: &std::path::Path) -> Option<String> {
    let version = match std::fs::read_to_string(root.join("version.py")) {
        Ok(text) => text.lines().find_map(|line| {
            let value = line.strip_prefix("__version__")?.trim_start();
            Some(
                value
                    .strip_prefix('=')?
                    .trim()
                    .trim_matches(['\'', '"'])
                    .to_owned(),
            )
        })?,
        Err(_) => std::fs::read_to_string(root.join("build-version"))
            .ok()?
            .trim()
            .to_owned(),
    };
    Some(version.split('+').next()?.to_owned())
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

/// Whether `device` (with or without autodiff) is one of CubeCL's GPU runtimes, `cuda` or
/// `wgpu` (Burn runs them, and CubeCL's CPU runtime `cpu`, as one backend).
pub fn is_cubecl_gpu(device: &Device) -> bool {
    let device = device.clone().inner();
    #[cfg(feature = "cpu")]
    if device == Device::cpu() {
        return false;
    }
    #[cfg(any(feature = "cuda", feature = "wgpu", feature = "cpu"))]
    if let burn::backend::DispatchDevice::Cube(_) = device.as_dispatch() {
        return true;
    }
    let _ = device;
    false
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
    fn the_libtorch_release_is_read_from_a_pytorch_install_or_a_libtorch_archive() {
        let torch = tempfile::tempdir().unwrap();
        std::fs::write(
            torch.path().join("version.py"),
            "from typing import Optional\n__version__ = '2.11.0+cu130'\ngit_version = 'abc'\n",
        )
        .unwrap();
        assert_eq!(libtorch_release(torch.path()).as_deref(), Some("2.11.0"));
        let archive = tempfile::tempdir().unwrap();
        std::fs::write(archive.path().join("build-version"), "2.9.0+cpu\n").unwrap();
        assert_eq!(libtorch_release(archive.path()).as_deref(), Some("2.9.0"));
        assert_eq!(libtorch_release(tempfile::tempdir().unwrap().path()), None);
    }

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

    #[test]
    fn cubecl_gpus_are_told_apart_with_or_without_autodiff() {
        #[cfg(feature = "flex")]
        assert!(!is_cubecl_gpu(&Device::flex()) && !is_cubecl_gpu(&Device::flex().autodiff()));
        #[cfg(feature = "cpu")]
        assert!(!is_cubecl_gpu(&Device::cpu()) && !is_cubecl_gpu(&Device::cpu().autodiff()));
    }
}
