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

/// This thread's buffer `key`, taken out for one use as `len` values (its old contents, or
/// zeros where it grew), and given back when the [`Taken`] is dropped.
fn take(key: &'static Scratch, len: usize) -> Taken {
    let mut buf = key.with(|c| std::mem::take(&mut *c.borrow_mut()));
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    Taken { key, buf, len }
}

/// A thread's buffer in use, the first `len` of its values ([`take`]). Dropped, it goes back
/// whole, so that a later use longer than this one but not than the buffer zeroes nothing.
struct Taken {
    key: &'static Scratch,
    buf: Vec<f32>,
    len: usize,
}

impl std::ops::Deref for Taken {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.buf[..self.len]
    }
}

impl std::ops::DerefMut for Taken {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.len]
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.key.with(|c| *c.borrow_mut() = buf);
    }
}

/// `src[0], src[2], …, src[30]`: 16 values at stride 2 from the first 31 of `src` (the
/// compiler's shuffles of two registers), for stride-2 windows.
#[inline(always)]
fn every_other(src: &[f32]) -> [f32; 16] {
    let src: &[f32; 31] = src[..31].try_into().expect("31 values");
    std::array::from_fn(|l| src[2 * l])
}

/// The 4 dimensions of `t`.
fn dims4(t: &FlexTensor) -> [usize; 4] {
    use burn::backend::TensorMetadata;
    t.shape()
        .to_vec()
        .try_into()
        .unwrap_or_else(|_| panic!("expected a 4-D tensor, got {:?}", t.shape()))
}
