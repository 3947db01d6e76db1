//! The kernels of [`crate::nn`] on flex, each a Burn backend extension (`#[backend_extension]`)
//! whose `Autodiff` implementation records one node with its own backward pass.

pub mod batch_norm;
pub mod conv;
pub mod dropout;
pub mod pool;
pub mod pool_window;
mod winograd;

use burn::backend::flex::FlexTensor;
pub use strata_tensor::flex::available;
use strata_tensor::flex::{contiguous, tensor, values};
use strata_tensor::simd::{Vectorized, vectorized};

/// A thread's buffer, reused from call to call (`thread_local!` of a `RefCell<Vec<f32>>`).
type Scratch = std::thread::LocalKey<std::cell::RefCell<Vec<f32>>>;

/// This thread's buffer `key`, `len` long (its old contents, or zeros where it grew).
fn take(key: &'static Scratch, len: usize) -> Vec<f32> {
    let mut buf = key.with(|c| std::mem::take(&mut *c.borrow_mut()));
    buf.resize(len, 0.0);
    buf
}

/// `buf`, made by [`take`], back into this thread's buffer `key`.
fn put_back(key: &'static Scratch, buf: Vec<f32>) {
    key.with(|c| *c.borrow_mut() = buf);
}

/// The 4 dimensions of `t`.
fn dims4(t: &FlexTensor) -> [usize; 4] {
    use burn::backend::TensorMetadata;
    t.shape()
        .to_vec()
        .try_into()
        .unwrap_or_else(|_| panic!("expected a 4-D tensor, got {:?}", t.shape()))
}
