//! Each distinct convolution of ResNet-18 at batch 8 (224×224 images), forward and then forward
//! and backward, and each BatchNorm with its ReLU, timed alone through `strata_vision::nn` on the
//! compiled backend: the medians of `--reps` runs (default 9) after 2 untimed ones. Beside
//! `benches/reference/resnet18_layers.py`, which prints the same lines for PyTorch, it says
//! which layers a ResNet-18 step loses or gains on (docs/perf.md).
//!
//!     cargo run --profile dev -p strata-benches --example resnet18_layers [-- --only N] [--reps N] [--forward]
//!
//! `--only N` times the N-th convolution alone (from 0, in the order printed), `--forward` its
//! forward pass alone (for a profiler).

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::ops::ConvOptions;

// The allocator the `strata` binary uses, so timings match the jobs'.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 8;

/// ResNet-18's convolutions: channels in and out, kernel, stride, padding, input side, and
/// whether the input takes a gradient (all but the stem's).
const CONVOLUTIONS: [(usize, usize, usize, usize, usize, usize, bool); 11] = [
    (3, 64, 7, 2, 3, 224, false),
    (64, 64, 3, 1, 1, 56, true),
    (64, 128, 3, 2, 1, 56, true),
    (64, 128, 1, 2, 0, 56, true),
    (128, 128, 3, 1, 1, 28, true),
    (128, 256, 3, 2, 1, 28, true),
    (128, 256, 1, 2, 0, 28, true),
    (256, 256, 3, 1, 1, 14, true),
    (256, 512, 3, 2, 1, 14, true),
    (256, 512, 1, 2, 0, 14, true),
    (512, 512, 3, 1, 1, 7, true),
];

/// ResNet-18's BatchNorms: channels and side.
const NORMS: [(usize, usize); 5] = [(64, 112), (64, 56), (128, 28), (256, 14), (512, 7)];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse::<usize>()
                    .unwrap_or_else(|_| panic!("{name} takes a number"))
            })
    };
    let (only, reps, forward_only) = (
        value("--only"),
        value("--reps").unwrap_or(9),
        args.iter().any(|a| a == "--forward"),
    );
    let (_, device) = strata_benches::bench_device();
    let device = device.autodiff();
    for (i, (c_in, c_out, k, stride, pad, side, input_grad)) in CONVOLUTIONS.into_iter().enumerate()
    {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let x = Tensor::<4>::random([BATCH, c_in, side, side], Distribution::Default, &device);
        let x = if input_grad { x.require_grad() } else { x };
        let w =
            Tensor::<4>::random([c_out, c_in, k, k], Distribution::Default, &device).require_grad();
        let options = ConvOptions::new([stride; 2], [pad; 2], [1, 1], 1);
        let out = (side + 2 * pad - k) / stride + 1;
        let r = Tensor::<4>::random([BATCH, c_out, out, out], Distribution::Default, &device);
        let (forward, both) = time(
            reps,
            forward_only,
            || {
                let y =
                    strata_vision::nn::conv2d(x.clone(), w.clone(), None, options.clone(), false);
                sync(y.clone());
                y
            },
            |y| {
                let grads = (y * r.clone()).sum().backward();
                sync(w.grad(&grads).expect("a weight gradient"));
                if input_grad {
                    sync(x.grad(&grads).expect("an input gradient"));
                }
            },
        );
        println!(
            "conv {c_in}->{c_out} k{k} s{stride} @{side}: fwd {forward:.2} ms, fwd+bwd {both:.2} ms"
        );
    }
    if only.is_some() {
        return;
    }
    for (channels, side) in NORMS {
        let norm = strata_vision::nn::batch_norm_config(channels).init(&device);
        let x = Tensor::<4>::random(
            [BATCH, channels, side, side],
            Distribution::Default,
            &device,
        )
        .require_grad();
        let r = Tensor::<4>::random(
            [BATCH, channels, side, side],
            Distribution::Default,
            &device,
        );
        let (forward, both) = time(
            reps,
            forward_only,
            || {
                let y = strata_vision::nn::batch_norm(&norm, x.clone(), true);
                sync(y.clone());
                y
            },
            |y| {
                let grads = (y * r.clone()).sum().backward();
                sync(x.grad(&grads).expect("an input gradient"));
            },
        );
        println!("bn+relu {channels} @{side}: fwd {forward:.2} ms, fwd+bwd {both:.2} ms");
    }
}

/// Waits for `t` (its sum read back).
fn sync(t: Tensor<4>) {
    t.sum().into_scalar::<f32>();
}

/// The medians in milliseconds of `forward`, and of `forward` then `backward` on its output.
fn time<T: Clone>(
    reps: usize,
    forward_only: bool,
    forward: impl Fn() -> T,
    backward: impl Fn(T),
) -> (f64, f64) {
    let (mut f, mut fb) = (Vec::new(), Vec::new());
    for _ in 0..reps + 2 {
        let start = Instant::now();
        let y = forward();
        f.push(start.elapsed().as_secs_f64());
        if !forward_only {
            backward(y);
        }
        fb.push(start.elapsed().as_secs_f64());
    }
    (median(f[2..].to_vec()), median(fb[2..].to_vec()))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2] * 1e3
}
