//! The backend-agnostic layer of Strata.
//!
//! - [`backend`]: which Burn backends are compiled in (cargo features `flex`, `ndarray`, `tch`,
//!   `cuda`, `wgpu`) and picking one at run time by name;
//! - [`seed`]: one call that makes a run reproducible on a backend;
//! - [`ops`]: accuracy, arg-max and top-k;
//! - [`parity`]: how far the same computation on two backends is apart;
//! - `flex` (with the `flex` feature): where our CPU kernels run, and the slices behind flex
//!   tensors that they read and write; `products` (the same feature): matrix products into
//!   those slices;
//! - [`simd`]: running a CPU kernel compiled for the machine's best instruction set;
//! - [`weights`]: `.safetensors` export and import over burn-store;
//! - [`names`]: [`named_enum!`], one table per command-line choice (parser, error, `--help`);
//! - [`generate`]: text generation for every text model (HF `generate` semantics: repetition
//!   penalty, greedy, temperature, top-k, top-p, seeded sampling) over a [`generate::Decoder`].
//!
//! `burn` itself is re-exported so that crates deriving `Module`/`Config` through Strata see
//! the same version.

pub use burn;

pub mod backend;
#[cfg(feature = "flex")]
pub mod flex;
pub mod generate;
pub mod names;
pub mod ops;
pub mod parity;
#[cfg(feature = "flex")]
pub mod products;
pub mod simd;
pub mod weights;

pub use backend::{BackendError, BackendKind, first_compiled_device, is_cubecl_gpu, select_device};

/// Seeds the backend's random number generator (parameter initialisation, dropout, random
/// tensors). Data order is seeded separately, by the data loader.
pub fn seed(device: &burn::tensor::Device, seed: u64) {
    device.seed(seed);
}
