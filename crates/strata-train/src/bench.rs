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

/// The machine's memory read bandwidth in GB/s (10⁹ bytes), as a decoding step uses it: every
/// available thread sums its share of a 512 MiB buffer (far larger than any cache); the best of
/// three passes. Inference that reads every weight from memory once per token cannot beat this
/// figure divided by the bytes of the weights; where the last-level cache holds most of the
/// weights (a 480 MiB L3 holds GPT-2 small's 495 MB nearly whole), decoding can.
pub fn read_bandwidth_gb_s() -> f64 {
    const LANES: usize = 16;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let buffer: Vec<f32> = (0..128 << 20).map(|i| (i % 7) as f32).collect();
    let chunk = buffer.len().div_ceil(threads);
    let mut best = f64::INFINITY;
    let mut check = 0.0;
    for _ in 0..3 {
        let started = Instant::now();
        let total: f32 = std::thread::scope(|s| {
            let parts: Vec<_> = buffer
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        let mut acc = [0f32; LANES];
                        let lanes = part.chunks_exact(LANES);
                        let tail: f32 = lanes.remainder().iter().sum();
                        for block in lanes {
                            for (a, x) in acc.iter_mut().zip(block) {
                                *a += x;
                            }
                        }
                        acc.iter().sum::<f32>() + tail
                    })
                })
                .collect();
            parts.into_iter().map(|p| p.join().unwrap_or(0.0)).sum()
        });
        best = best.min(started.elapsed().as_secs_f64());
        check += total as f64;
    }
    // Keep the sums alive so that the passes are not optimised away.
    std::hint::black_box(check);
    (buffer.len() * 4) as f64 / best / 1e9
}
