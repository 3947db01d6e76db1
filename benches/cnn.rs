//! The layers of the simple CNN at training batch size (64 images of 28×28), forward and
//! backward: Strata's convolution (`strata_vision::nn::conv2d`, our kernel on flex) beside
//! Burn's `conv2d`, for the forward pass alone, forward + weight gradient, and forward + weight
//! and input gradients; then the max pooling, the dropout and the first linear layer.
//!
//! `cargo bench --profile dev -p strata-benches --bench cnn` — the whole-network figure,
//! beside PyTorch, is `cargo xtask bench cnn-train`. docs/perf.md turns the times into GFLOP/s.

use burn::nn::LinearConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::ops::ConvOptions;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata_benches::bench_device;

const BATCH: usize = 64;

// The allocator the `strata` binary uses, so layer timings match the jobs'.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One convolution of the network: input `[BATCH, c_in, size, size]`, `c_out` 3×3 filters.
struct ConvLayer {
    name: &'static str,
    c_in: usize,
    c_out: usize,
    size: usize,
}

const CONVS: [ConvLayer; 2] = [
    ConvLayer {
        name: "conv1 3x3 1->32",
        c_in: 1,
        c_out: 32,
        size: 28,
    },
    ConvLayer {
        name: "conv2 3x3 32->64",
        c_in: 32,
        c_out: 64,
        size: 26,
    },
];

fn convolutions(c: &mut Criterion) {
    let (backend, device) = bench_device();
    let ad = device.clone().autodiff();
    let mut group = c.benchmark_group(format!("cnn-conv/{backend}"));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    for layer in CONVS {
        let random = |shape: [usize; 4], device: &Device| {
            Tensor::<4>::random(shape, Distribution::Default, device)
        };
        let x = random([BATCH, layer.c_in, layer.size, layer.size], &ad);
        let w = random([layer.c_out, layer.c_in, 3, 3], &ad).require_grad();
        let b = Tensor::<1>::zeros([layer.c_out], &ad).require_grad();
        let options = || ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        let run = |ours: bool, x: Tensor<4>| {
            if ours {
                strata_vision::nn::conv2d(x, w.clone(), Some(b.clone()), options(), false)
            } else {
                burn::tensor::module::conv2d(x, w.clone(), Some(b.clone()), options())
            }
        };
        for (who, ours) in [("strata", true), ("burn", false)] {
            let name = layer.name;
            let (x_plain, w_plain) = (x.clone().inner(), w.clone().inner());
            group.bench_function(format!("{name} {who} forward"), |bench| {
                bench.iter(|| {
                    let y = if ours {
                        strata_vision::nn::conv2d(
                            x_plain.clone(),
                            w_plain.clone(),
                            None,
                            options(),
                            false,
                        )
                    } else {
                        burn::tensor::module::conv2d(
                            x_plain.clone(),
                            w_plain.clone(),
                            None,
                            options(),
                        )
                    };
                    y.into_data()
                })
            });
            group.bench_function(format!("{name} {who} forward+weight-grad"), |bench| {
                bench.iter(|| run(ours, x.clone()).sum().backward())
            });
            if layer.c_in > 1 {
                group.bench_function(
                    format!("{name} {who} forward+weight-grad+input-grad"),
                    |bench| bench.iter(|| run(ours, x.clone().require_grad()).sum().backward()),
                );
            }
        }
    }
    group.finish();
}

fn other_layers(c: &mut Criterion) {
    let (backend, device) = bench_device();
    let ad = device.clone().autodiff();
    let mut group = c.benchmark_group(format!("cnn-layers/{backend}"));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
    let dropout = burn::nn::DropoutConfig::new(0.25).init();
    let fc1 = LinearConfig::new(9216, 128).init(&ad);
    let x = Tensor::<4>::random([BATCH, 64, 24, 24], Distribution::Default, &ad);
    let pooled = Tensor::<4>::random([BATCH, 64, 12, 12], Distribution::Default, &ad);
    let flat = Tensor::<2>::random([BATCH, 9216], Distribution::Default, &ad);
    group.bench_function("max-pool 2x2 strata fwd+bwd", |b| {
        b.iter(|| {
            strata_vision::nn::max_pool(&pool, x.clone().require_grad())
                .sum()
                .backward()
        })
    });
    group.bench_function("max-pool 2x2 burn fwd+bwd", |b| {
        b.iter(|| pool.forward(x.clone().require_grad()).sum().backward())
    });
    group.bench_function("dropout 0.25 strata fwd+bwd", |b| {
        b.iter(|| {
            strata_vision::nn::dropout(&dropout, pooled.clone().require_grad())
                .sum()
                .backward()
        })
    });
    group.bench_function("dropout 0.25 burn fwd+bwd", |b| {
        b.iter(|| {
            dropout
                .forward(pooled.clone().require_grad())
                .sum()
                .backward()
        })
    });
    group.bench_function("fc1 9216->128 fwd+bwd", |b| {
        b.iter(|| fc1.forward(flat.clone().require_grad()).sum().backward())
    });
    group.finish();
}

criterion_group!(benches, convolutions, other_layers);
criterion_main!(benches);
