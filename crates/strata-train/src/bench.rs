//! Timing of training steps, as every family's benchmark measures them.

use std::time::Instant;

use burn::tensor::Tensor;

/// Runs `step(i)` for `warmup` untimed steps, then `steps` timed ones, and returns the seconds
/// of the timed ones. Each step returns its loss; the last one is read back before the clock
/// stops, so that work queued on a device is counted.
pub fn time_steps(warmup: usize, steps: usize, mut step: impl FnMut(usize) -> Tensor<1>) -> f64 {
    for i in 0..warmup {
        let _ = step(i).into_scalar::<f32>();
    }
    let started = Instant::now();
    let mut last = None;
    for i in 0..steps {
        last = Some(step(warmup + i));
    }
    if let Some(loss) = last {
        let _ = loss.into_scalar::<f32>(); // wait for the device
    }
    started.elapsed().as_secs_f64()
}
