//! Running a CPU kernel compiled for the machine's best instruction set.
//!
//! A kernel written as plain loops over slices is compiled once per instruction set (SSE2,
//! AVX2 + FMA, AVX-512) and [`vectorized`] runs the best one the CPU has, chosen at run time
//! by `pulp`. The kernel is a struct implementing [`Vectorized`], with `run` marked
//! `#[inline(always)]`: `pulp`'s per-instruction-set entry points inline it, so its loops are
//! vectorised for each. A closure given to `pulp::Arch::dispatch` is not inlined there and
//! stays at the build's baseline (SSE2): on GPT-2's bf16 matrix-vector product that cost 14 %
//! of the decoding speed.
//!
//! [`exp`], [`sigmoid`] and [`tanh`] are written in plain arithmetic for such loops: libm's are
//! one number at a time, and its `expf` is a call the compiler cannot vectorise.

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

/// Independent partial sums of [`add_lanes`]: a 512-bit register of f32 (two 256-bit ones), so
/// that a sum vectorises and no addition waits on the one before (one running sum is one number
/// per addition's latency, about 4 cycles).
pub const SUM_LANES: usize = 16;

/// Adds `x` into `sums`, lane by lane: runs of [`SUM_LANES`] taken as arrays, each added with
/// one vector instruction (written as a zip over slices, the compiler kept 16 scalar sums).
/// For a [`Vectorized`] kernel's loops.
#[inline(always)]
pub fn add_lanes(sums: &mut [f32; SUM_LANES], x: &[f32]) {
    let (runs, tail) = x.as_chunks::<SUM_LANES>();
    for run in runs {
        for l in 0..SUM_LANES {
            sums[l] += run[l];
        }
    }
    for (s, &v) in sums.iter_mut().zip(tail) {
        *s += v;
    }
}

/// The sum of `x` through [`add_lanes`].
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut sums = [0f32; SUM_LANES];
    add_lanes(&mut sums, x);
    sums.iter().sum()
}

/// `eˣ`, as Cephes' `expf` (relative error below 3e-7 over its range; inputs are clamped to
/// `[-87.3, 88.3]`), in arithmetic that vectorises.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.3, 88.3);
    // Round to nearest by adding 1.5 × 2²³ (|x log2 e| < 128 here): the sum's low bits
    // are then n itself, so 2ⁿ is built with integer operations. Neither `floor` nor a
    // float-to-int cast (which saturates) is needed, and the loop vectorises on any x86-64.
    const ROUND: f32 = 12_582_912.0;
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let pow2n = f32::from_bits((t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127)) << 23);
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * pow2n
}

/// `σ(x) = 1 / (1 + e⁻ˣ)` (absolute error below 2e-7).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh(x) = 2 σ(2x) - 1` (absolute error below 4e-7).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_in_lanes_take_every_number_once() {
        for n in [0, 1, 15, 16, 17, 100] {
            let x: Vec<f32> = (0..n).map(|i| (i + 1) as f32).collect();
            assert_eq!(sum(&x), (n * (n + 1) / 2) as f32, "{n} numbers");
        }
    }

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

    #[test]
    fn exp_sigmoid_and_tanh_are_close_to_libm() {
        let mut worst = [0.0f32; 3];
        for k in -4000..=4000 {
            let x = k as f32 * 0.01;
            let s = 1.0 / (1.0 + (-x).exp());
            worst[0] = worst[0].max(((exp(x) - x.exp()) / x.exp()).abs());
            worst[1] = worst[1].max((sigmoid(x) - s).abs());
            worst[2] = worst[2].max((tanh(x) - x.tanh()).abs());
        }
        assert!(worst[0] < 3e-7, "exp: {}", worst[0]);
        assert!(worst[1] < 2e-7, "sigmoid: {}", worst[1]);
        assert!(worst[2] < 4e-7, "tanh: {}", worst[2]);
        // Far outside the range the input is clamped: finite, no NaN.
        assert_eq!(exp(-1000.0), exp(-87.3));
        assert!(sigmoid(-1000.0) < 1e-37);
        assert_eq!(tanh(1000.0), 1.0);
    }
}
