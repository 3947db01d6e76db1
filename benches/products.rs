//! The matrix products behind ResNet-18's 3×3 convolutions with stride 1 (one per stage, one
//! 224×224 image, as Strata's convolution runs them image by image), through the compiled
//! backend's matmul (flex: the `gemm` crate), in the three shapes such a convolution can take:
//!
//! - `im2col`: `[out, in · 9] × [in · 9, h · w]`, what the convolution runs today;
//! - `winograd channels-as-rows`: Winograd's F(2×2, 3×3), 16 products `[out, in] × [in, tiles]`
//!   (a tile is 2×2 outputs), 2.25 times fewer multiplications;
//! - `winograd tiles-as-rows`: the same 16 products as `[tiles, in] × [in, out]`, per image and
//!   for a batch of 8.
//!
//! The throughput is in floating-point operations (criterion's "elements"), so each line's rate
//! is its own product's; compare the times for what a layer would spend.
//!
//! `cargo bench --profile dev -p strata-benches --bench products` (docs/perf.md has the figures).

use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata_benches::bench_device;

// The allocator the `strata` binary uses, so timings match the jobs'.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// ResNet-18's stages: channels in and out, and the output's side.
const STAGES: [(usize, usize); 4] = [(64, 56), (128, 28), (256, 14), (512, 7)];

fn products(c: &mut Criterion) {
    let (backend, device) = bench_device();
    let mut group = c.benchmark_group(format!("resnet18-products/{backend}"));
    group.sample_size(20);
    let random2 = |shape: [usize; 2]| Tensor::<2>::random(shape, Distribution::Default, &device);
    let random3 = |shape: [usize; 3]| Tensor::<3>::random(shape, Distribution::Default, &device);
    for (stage, (channels, side)) in STAGES.into_iter().enumerate() {
        let name = format!("stage{} {channels}ch {side}x{side}", stage + 1);
        let tiles = side.div_ceil(2).pow(2);
        let flops = |m: usize, k: usize, n: usize| Throughput::Elements((2 * m * k * n) as u64);

        let (w, cols) = (
            random2([channels, channels * 9]),
            random2([channels * 9, side * side]),
        );
        group.throughput(flops(channels, channels * 9, side * side));
        group.bench_function(format!("{name} im2col"), |b| {
            b.iter(|| w.clone().matmul(cols.clone()).into_data())
        });

        let (u, v) = (
            random3([16, channels, channels]),
            random3([16, channels, tiles]),
        );
        group.throughput(flops(16 * channels, channels, tiles));
        group.bench_function(format!("{name} winograd channels-as-rows"), |b| {
            b.iter(|| u.clone().matmul(v.clone()).into_data())
        });

        for images in [1, 8] {
            let (v, u) = (
                random3([16, images * tiles, channels]),
                random3([16, channels, channels]),
            );
            group.throughput(flops(16 * images * tiles, channels, channels));
            group.bench_function(format!("{name} winograd tiles-as-rows x{images}"), |b| {
                b.iter(|| v.clone().matmul(u.clone()).into_data())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, products);
criterion_main!(benches);
