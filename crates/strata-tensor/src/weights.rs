//! Weight files: `.safetensors` export/import through burn-store, written atomically.
//!
//! Keys are the module's field paths (`conv1.weight`, `fc1.bias`, ...). burn-store writes to a
//! scratch file and renames it into place, so a failed save never leaves a partial file.

use std::path::Path;

use burn::module::Module;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};

/// Errors while saving or loading weights.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file could not be written.
    #[error("cannot save weights to {path}: {why}")]
    Save {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// The file could not be read, or does not fit the model.
    #[error("cannot load weights from {path}: {why}")]
    Load {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
}

/// Saves `module`'s parameters to a `.safetensors` file in burn's layout (replacing it
/// atomically).
pub fn save_safetensors<M: Module>(module: &M, path: &Path) -> Result<(), WeightsError> {
    save_to(module, path, SafetensorsStore::from_file(path))
}

/// Saves `module`'s parameters to a `.safetensors` file in the layout of a PyTorch
/// `state_dict` (`Linear` weights `[out, in]`, norm parameters `weight`/`bias`, no enum variant
/// names in the keys: `conv1.weight`, not `SimpleCnn.conv1.weight`), which
/// `model.load_state_dict(safetensors.torch.load_file(path))` takes for a PyTorch module with the
/// same names. [`load_pytorch_safetensors`] reads it back.
pub fn save_pytorch_safetensors<M: Module>(module: &M, path: &Path) -> Result<(), WeightsError> {
    save_to(
        module,
        path,
        SafetensorsStore::from_file(path)
            .with_to_adapter(BurnToPyTorchAdapter)
            .skip_enum_variants(true),
    )
}

fn save_to<M: Module>(
    module: &M,
    path: &Path,
    store: SafetensorsStore,
) -> Result<(), WeightsError> {
    let mut store = store.overwrite(true);
    module
        .save_into(&mut store)
        .map_err(|e| WeightsError::Save {
            path: path.display().to_string(),
            why: e.to_string(),
        })
}

/// Loads a `.safetensors` file written by Strata (burn key names and layouts) into `module`;
/// every parameter must be present.
pub fn load_safetensors<M: Module>(module: M, path: &Path) -> Result<M, WeightsError> {
    load_from(module, path, SafetensorsStore::from_file(path))
}

/// Loads a `.safetensors` file holding a PyTorch `state_dict` (as `safetensors.torch.save_file`
/// or Hugging Face write it) into `module`, whose field paths must match the PyTorch module
/// names. burn-store's PyTorch adapter transposes `Linear` weights and renames norm parameters.
pub fn load_pytorch_safetensors<M: Module>(module: M, path: &Path) -> Result<M, WeightsError> {
    load_from(
        module,
        path,
        SafetensorsStore::from_file(path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .skip_enum_variants(true),
    )
}

fn load_from<M: Module>(
    mut module: M,
    path: &Path,
    mut store: SafetensorsStore,
) -> Result<M, WeightsError> {
    let err = |why: String| WeightsError::Load {
        path: path.display().to_string(),
        why,
    };
    if !path.is_file() {
        return Err(err("no such file".into()));
    }
    let result = module
        .load_from(&mut store)
        .map_err(|e| err(e.to_string()))?;
    if !result.missing.is_empty() {
        return Err(err(format!("missing tensors {:?}", result.missing)));
    }
    if !result.errors.is_empty() {
        return Err(err(format!("{:?}", result.errors)));
    }
    Ok(module)
}
