//! Hot layers of the simple CNN, forward and backward, at training batch size (64×1×28×28).
//!
//! `cargo bench -p strata-benches --bench cnn` — the whole-network figure, beside PyTorch, is
//! `cargo xtask bench cnn-train`.

use burn::nn::LinearConfig;
use burn::nn::conv::Conv2dConfig;
use burn::prelude::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata_benches::bench_device;

const BATCH: usize = 64;

// The allocator the `strata` binary uses, so layer timings match the jobs'.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn layers(c: &mut Criterion) {
    let (backend, device) = bench_device();
    let ad = device.clone().autodiff();
    let mut group = c.benchmark_group(format!("cnn-layers/{backend}"));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);

    let conv1 = Conv2dConfig::new([1, 32], [3, 3]).init(&ad);
    let conv2 = Conv2dConfig::new([32, 64], [3, 3]).init(&ad);
    let fc1 = LinearConfig::new(9216, 128).init(&ad);
    let x1 = Tensor::<4>::random([BATCH, 1, 28, 28], burn::tensor::Distribution::Default, &ad);
    let x2 = Tensor::<4>::random(
        [BATCH, 32, 26, 26],
        burn::tensor::Distribution::Default,
        &ad,
    );
    let x3 = Tensor::<2>::random([BATCH, 9216], burn::tensor::Distribution::Default, &ad);

    group.bench_function("conv1 3x3 1->32 fwd+bwd", |b| {
        b.iter(|| conv1.forward(x1.clone()).sum().backward())
    });
    group.bench_function("conv2 3x3 32->64 fwd+bwd", |b| {
        b.iter(|| conv2.forward(x2.clone().require_grad()).sum().backward())
    });
    // Input without a gradient: forward plus the weight gradient only.
    let x2_const = x2.clone();
    group.bench_function("conv2 3x3 32->64 fwd+weight-grad", |b| {
        b.iter(|| conv2.forward(x2_const.clone()).sum().backward())
    });
    group.bench_function("fc1 9216->128 fwd+bwd", |b| {
        b.iter(|| fc1.forward(x3.clone().require_grad()).sum().backward())
    });
    let conv2_eval = Conv2dConfig::new([32, 64], [3, 3]).init(&device);
    let x2_eval = Tensor::<4>::random(
        [BATCH, 32, 26, 26],
        burn::tensor::Distribution::Default,
        &device,
    );
    group.bench_function("conv2 3x3 32->64 fwd (inference)", |b| {
        b.iter(|| conv2_eval.forward(x2_eval.clone()).into_data())
    });
    group.finish();
}

criterion_group!(benches, layers);
criterion_main!(benches);
