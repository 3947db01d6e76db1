//! Running a CPU kernel compiled for the machine's best instruction set.
//!
//! A kernel written as plain loops over slices is compiled once per instruction set (SSE2,
//! AVX2 + FMA, AVX-512) and [`vectorized`] runs the best one the CPU has, chosen at run time
//! by `pulp`. The kernel is a struct implementing [`Vectorized`], with `run` marked
//! `#[inline(always)]`: `pulp`'s per-instruction-set entry points inline it, so its loops are
//! vectorised for each. A closure given to `pulp::Arch::dispatch` is not inlined there and
//! stays at the build's baseline (SSE2): on GPT-2's bf16 matrix-vector product that cost 14 %
//! of the decoding speed.

/// A loop to compile once per instruction set and run in the CPU's best (see the module).
pub trait Vectorized {
    type Output;
    /// The kernel. Mark it `#[inline(always)]`.
    fn run(self) -> Self::Output;
}

struct Simd<K>(K);

impl<K: Vectorized> pulp::WithSimd for Simd<K> {
    type Output = K::Output;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> K::Output {
        self.0.run()
    }
}

/// Runs `kernel` compiled for the CPU's instruction set.
pub fn vectorized<K: Vectorized>(kernel: K) -> K::Output {
    pulp::Arch::new().dispatch(Simd(kernel))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sum<'a>(&'a [f32]);

    impl Vectorized for Sum<'_> {
        type Output = f32;

        #[inline(always)]
        fn run(self) -> f32 {
            self.0.iter().sum()
        }
    }

    #[test]
    fn a_kernel_runs_and_returns_its_output() {
        let xs: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        assert_eq!(vectorized(Sum(&xs)), 5050.0);
    }
}
