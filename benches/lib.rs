//! Shared set-up of Strata's criterion benchmarks: the device of the compiled backend.

use burn::tensor::Device;

/// The first compiled backend's device (flex by default), or `STRATA_BACKEND`'s.
pub fn bench_device() -> (strata_tensor::BackendKind, Device) {
    strata_tensor::select_device(None, None).expect("a compiled backend")
}
