//! Weight files: `.safetensors` export/import through burn-store, written atomically.
//!
//! Keys are the module's field paths (`conv1.weight`, `fc1.bias`, ...). burn-store writes to a
//! scratch file and renames it into place, so a failed save never leaves a partial file.

use std::path::Path;

use burn::module::Module;
use burn::store::{
    ApplyResult, BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore,
    SafetensorsStore,
};

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
    save_pytorch_safetensors_mapped(module, path, &KeyMap::NONE)
}

/// [`save_pytorch_safetensors`] for a module whose parameter paths differ from PyTorch's names:
/// `map.to_file` renames them on the way out.
pub fn save_pytorch_safetensors_mapped<M: Module>(
    module: &M,
    path: &Path,
    map: &KeyMap,
) -> Result<(), WeightsError> {
    // `format: pt`, as `safetensors.torch.save_file` writes it: Hugging Face's `from_pretrained`
    // refuses a file without it.
    let mut store = SafetensorsStore::from_file(path)
        .with_to_adapter(BurnToPyTorchAdapter)
        .skip_enum_variants(true)
        .metadata("format", "pt");
    for (from, to) in map.to_file {
        store = store.with_key_remapping(*from, *to);
    }
    save_to(module, path, store)
}

/// How a file's keys and a module's parameter paths differ, for modules that cannot be laid
/// out with PyTorch's names (PyTorch's `nn.LSTM` keeps every layer's weights flat, as
/// `weight_ih_l1`; a Burn module nests them, as `layers.1.forward.weight_ih`). Each side is a
/// list of `(regex, replacement)` pairs applied in order; keys no pattern matches are kept.
#[derive(Debug, Clone, Copy)]
pub struct KeyMap {
    /// File key → module path (applied when loading).
    pub to_module: &'static [(&'static str, &'static str)],
    /// Module path → file key (applied when saving, and to name keys in errors).
    pub to_file: &'static [(&'static str, &'static str)],
    /// File keys (after `to_module`) that hold no parameter and are skipped when loading
    /// (regexes; e.g. GPT-2's attention-mask buffers).
    pub ignored: &'static [&'static str],
}

impl KeyMap {
    /// No renaming: the module's paths are the file's keys.
    pub const NONE: KeyMap = KeyMap {
        to_module: &[],
        to_file: &[],
        ignored: &[],
    };

    /// The module path of a file key.
    pub fn to_module_name(&self, key: &str) -> String {
        apply_patterns(self.to_module, key)
    }

    /// The file key of a module path.
    pub fn to_file_name(&self, path: &str) -> String {
        apply_patterns(self.to_file, path)
    }
}

fn apply_patterns(patterns: &[(&str, &str)], name: &str) -> String {
    let mut name = name.to_string();
    for (from, to) in patterns {
        let re = regex::Regex::new(from).expect("the key patterns are valid regexes");
        name = re.replace_all(&name, *to).into_owned();
    }
    name
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
/// names: [`load_pytorch_weights`], which also reads `.pth` files.
pub fn load_pytorch_safetensors<M: Module>(module: M, path: &Path) -> Result<M, WeightsError> {
    load_pytorch_weights(module, path)
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

/// PyTorch buffers that have no counterpart in a Burn module and are skipped when loading
/// (BatchNorm's step counter).
const IGNORED_PYTORCH_KEYS: [&str; 1] = ["num_batches_tracked"];

/// Loads a PyTorch `state_dict` into `module`, from a `.pth`/`.pt` file (`torch.save`, read by
/// burn-store without Python) or a `.safetensors` file, told apart by their first bytes. The
/// module's field paths must be PyTorch's names (enum variants are skipped). Strict like
/// `load_state_dict(strict=True)`: a key the module lacks, a parameter the file lacks, or a shape
/// that differs is an error naming the first such key (BatchNorm's `num_batches_tracked` is
/// skipped).
pub fn load_pytorch_weights<M: Module>(module: M, path: &Path) -> Result<M, WeightsError> {
    load_pytorch_weights_mapped(module, path, &KeyMap::NONE)
}

/// [`load_pytorch_weights`] for a module whose parameter paths differ from the file's keys:
/// `map.to_module` renames the file's keys, and errors name keys as the file does.
pub fn load_pytorch_weights_mapped<M: Module>(
    mut module: M,
    path: &Path,
    map: &KeyMap,
) -> Result<M, WeightsError> {
    let err = |why: String| WeightsError::Load {
        path: path.display().to_string(),
        why,
    };
    let head = read_head(path).map_err(|e| err(e.to_string()))?;
    // safetensors: an 8-byte little-endian header length, then the JSON header.
    let result =
        if head[8] == b'{' && u64::from_le_bytes(head[..8].try_into().unwrap_or([0; 8])) > 1 {
            let mut store = SafetensorsStore::from_file(path)
                .with_from_adapter(PyTorchToBurnAdapter)
                .skip_enum_variants(true)
                .validate(false)
                .allow_partial(true);
            for (from, to) in map.to_module {
                store = store.with_key_remapping(*from, *to);
            }
            module
                .load_from(&mut store)
                .map_err(|e| err(one_line(&e.to_string())))?
        } else if head.starts_with(b"PK") || head[0] == 0x80 {
            // torch.save's zip archive, or a legacy pickle.
            let mut store = PytorchStore::from_file(path)
                .skip_enum_variants(true)
                .validate(false)
                .allow_partial(true);
            for (from, to) in map.to_module {
                store = store.with_key_remapping(*from, *to);
            }
            module
                .load_from(&mut store)
                .map_err(|e| err(one_line(&e.to_string())))?
        } else {
            return Err(err(
                "neither a PyTorch .pth file nor a .safetensors file (empty or truncated?)".into(),
            ));
        };
    check_complete(&result, map).map_err(err)?;
    Ok(module)
}

/// The first 9 bytes of `path` (zeros where the file is shorter).
fn read_head(path: &Path) -> std::io::Result<[u8; 9]> {
    use std::io::Read;
    let mut bytes = Vec::with_capacity(9);
    std::fs::File::open(path)?.take(9).read_to_end(&mut bytes)?;
    let mut head = [0u8; 9];
    head[..bytes.len()].copy_from_slice(&bytes);
    Ok(head)
}

/// Refuses a load that left parameters unset, met a shape it could not take, or had keys the
/// module does not have.
fn check_complete(result: &ApplyResult, map: &KeyMap) -> Result<(), String> {
    let more = |n: usize| {
        if n > 1 {
            format!(" (and {} more)", n - 1)
        } else {
            String::new()
        }
    };
    if let Some(e) = result.errors.first() {
        return Err(format!(
            "{}{}: weights of another architecture or size?",
            rename_paths(&e.to_string(), map),
            more(result.errors.len())
        ));
    }
    if let Some((key, _)) = result.missing.first() {
        return Err(format!(
            "the file has no tensor for '{}'{}: weights of another architecture?",
            map.to_file_name(key),
            more(result.missing.len())
        ));
    }
    let unused: Vec<&String> = result
        .unused
        .iter()
        .filter(|k| !IGNORED_PYTORCH_KEYS.iter().any(|i| k.ends_with(i)))
        .filter(|k| {
            !map.ignored.iter().any(|p| {
                regex::Regex::new(p)
                    .expect("the ignored-key patterns are valid regexes")
                    .is_match(k)
            })
        })
        .collect();
    if let Some(key) = unused.first() {
        return Err(format!(
            "the model has no parameter '{}'{}: weights of another architecture?",
            map.to_file_name(key),
            more(unused.len())
        ));
    }
    Ok(())
}

/// `message` with every word that is a module path renamed to the file's key.
fn rename_paths(message: &str, map: &KeyMap) -> String {
    if map.to_file.is_empty() {
        return message.to_string();
    }
    message
        .split(' ')
        .map(|word| {
            let bare = word.trim_matches(|c: char| "'\"`,:;()[]".contains(c));
            if bare.is_empty() {
                word.to_string()
            } else {
                word.replacen(bare, &map.to_file_name(bare), 1)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first line of a message, for errors that must fit on one line.
fn one_line(msg: &str) -> String {
    msg.lines().next().unwrap_or_default().to_string()
}
