//! The operations of `strata_vision::nn` against Burn's on every compiled backend:
//! - `conv2d` against Burn's `conv2d` (and Burn's ReLU): the output and the gradients of the
//!   input, the weight and the bias, for kernels 1/3/5/7, strides 1/2, padding none/1/"same"
//!   (asymmetric for an even kernel), dilation 1/2, groups 1/2/depthwise, with and without bias;
//!   the same for `im2col::conv2d` (the convolution on CubeCL's GPUs), on every backend, whole,
//!   with the batch in runs of images, and past its room (Burn's convolution);
//! - the same for `conv2d` on the cases that take Winograd, in thread pools of 1, 3 and 7 threads;
//! - `max_pool` against Burn's `MaxPool2d`: output and input gradient;
//! - `dropout`: the share kept, the scaling, the same mask forward and backward, seeded.

use burn::nn::pool::MaxPool2dConfig;
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;
use strata_tensor::BackendKind;
use strata_vision::nn::{Geometry, conv2d, im2col};

/// One convolution to check.
#[derive(Debug, Clone, Copy)]
struct Case {
    batch: usize,
    c_in: usize,
    c_out: usize,
    size: [usize; 2],
    kernel: [usize; 2],
    stride: usize,
    padding: [(usize, usize); 2],
    dilation: usize,
    groups: usize,
    bias: bool,
    relu: bool,
    input_grad: bool,
}

fn case(c_in: usize, c_out: usize, k: usize, stride: usize, pad: usize, dilation: usize) -> Case {
    Case {
        batch: 3,
        c_in,
        c_out,
        size: [11, 9],
        kernel: [k, k],
        stride,
        padding: [(pad, pad); 2],
        dilation,
        groups: 1,
        bias: true,
        relu: false,
        input_grad: true,
    }
}

fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    for k in [1, 3, 5, 7] {
        for stride in [1, 2] {
            for pad in [0, 1, k / 2] {
                for dilation in [1, 2] {
                    let c = case(4, 6, k, stride, pad, dilation);
                    if c.size[1] + 2 * pad > dilation * (k - 1) {
                        all.push(c);
                    }
                }
            }
        }
    }
    let grouped = Case {
        groups: 2,
        ..case(4, 6, 3, 1, 1, 1)
    };
    // Fewer output positions than kernel rows: the weight gradient as one product over the
    // batch, per group.
    let small_output_grouped = Case {
        groups: 2,
        size: [5, 5],
        ..case(8, 6, 3, 1, 0, 1)
    };
    // The same with a ReLU (its mask applied over the whole batch), and without the input's
    // gradient.
    let small_output_relu = Case {
        relu: true,
        size: [4, 5],
        ..case(16, 8, 3, 1, 1, 1)
    };
    let small_output_first_layer = Case {
        relu: true,
        input_grad: false,
        size: [3, 4],
        ..case(8, 4, 3, 1, 0, 1)
    };
    let depthwise = Case {
        groups: 5,
        ..case(5, 10, 3, 2, 1, 1)
    };
    let even_same = Case {
        // "Same" padding of a 4×4 kernel: one more row and column after than before.
        padding: [(1, 2), (1, 2)],
        kernel: [4, 4],
        ..case(3, 5, 4, 1, 0, 1)
    };
    let rect = Case {
        kernel: [3, 5],
        padding: [(1, 1), (2, 2)],
        size: [7, 12],
        ..case(2, 3, 3, 2, 0, 1)
    };
    // The same at stride 1: its input gradient is a convolution with the kernel turned.
    let rect_stride_1 = Case {
        kernel: [3, 5],
        padding: [(1, 1), (2, 2)],
        size: [7, 12],
        ..case(2, 3, 3, 1, 0, 1)
    };
    // An image whose im2col matrix (2 MiB) is built in blocks of output rows, the last one
    // shorter; with a ReLU and without.
    let blocked = Case {
        batch: 2,
        size: [62, 62],
        ..case(16, 8, 3, 1, 1, 1)
    };
    let blocked_relu = Case {
        relu: true,
        ..blocked
    };
    let simple_cnn_conv2 = Case {
        batch: 4,
        size: [26, 26],
        relu: true,
        ..case(32, 64, 3, 1, 0, 1)
    };
    // Stride, padding, dilation and groups at once, on a wider layer.
    let wide_strided_dilated_grouped = Case {
        groups: 2,
        size: [37, 30],
        ..case(64, 32, 3, 2, 1, 2)
    };
    // Stride 2 on rows of 35 output columns: the im2col rows copied 16 at a time, then the
    // rest; a 7×7 kernel as a ResNet's stem.
    let strided_wide = Case {
        batch: 2,
        size: [20, 70],
        ..case(3, 8, 7, 2, 3, 1)
    };
    // A batch that `im2col::conv2d` cuts into three runs of two images, with groups.
    let im2col_pieces = Case {
        batch: 6,
        groups: 2,
        size: [34, 32],
        ..case(4, 6, 3, 1, 1, 1)
    };
    let first_layer = Case {
        input_grad: false,
        relu: true,
        ..case(1, 8, 3, 1, 0, 1)
    };
    let no_bias = Case {
        bias: false,
        ..case(4, 6, 3, 2, 1, 1)
    };
    // Winograd's F(2×2, 3×3) (3×3 kernels, stride 1, at least 16 channels in and out, output
    // planes below 14 on a side): odd
    // sizes whose last tiles are cut, no padding, uneven padding, channels beyond a multiple of
    // 16, a ReLU, and an image in several blocks of tile rows, the last one shorter. Their input gradients, but the
    // one after a ReLU, are convolutions through the same transforms, and so are their weight
    // gradients, but the one after a ReLU.
    let winograd = Case {
        size: [11, 9],
        ..case(16, 24, 3, 1, 1, 1)
    };
    let winograd_unpadded_relu = Case {
        relu: true,
        size: [10, 7],
        ..case(24, 16, 3, 1, 0, 1)
    };
    let winograd_uneven = Case {
        padding: [(2, 0), (0, 2)],
        bias: false,
        ..case(16, 17, 3, 1, 0, 1)
    };
    // 13 rows, so 2×2 tiles: 280 tiles an image, in blocks of 3 tile rows.
    let winograd_blocks = Case {
        batch: 2,
        size: [13, 80],
        ..case(64, 32, 3, 1, 1, 1)
    };
    // Channels beyond a multiple of 16 in and out without a ReLU: the remaining lanes of the
    // kernels' transforms, turned or not, and of the weight gradient's.
    let winograd_odd_channels = Case {
        size: [9, 10],
        ..case(24, 17, 3, 1, 1, 1)
    };
    // Small images (16 tiles), whose tiles go into the products several images at a time: 16
    // images, then the last 2.
    let winograd_image_groups = Case {
        batch: 18,
        size: [7, 7],
        ..case(16, 16, 3, 1, 1, 1)
    };
    // The same through F(4×4, 3×3), on output planes of at least 14 on a side: tiles cut at
    // both edges, no padding with a ReLU, uneven padding, odd channels, and an image of 306
    // tiles that goes alone, in two blocks of tile rows (the others go several to a block).
    let winograd4 = Case {
        size: [30, 29],
        ..case(16, 24, 3, 1, 1, 1)
    };
    let winograd4_unpadded_relu = Case {
        relu: true,
        size: [33, 31],
        ..case(24, 16, 3, 1, 0, 1)
    };
    let winograd4_uneven = Case {
        padding: [(2, 0), (0, 2)],
        bias: false,
        size: [20, 17],
        ..case(16, 17, 3, 1, 0, 1)
    };
    let winograd4_odd_channels = Case {
        size: [15, 14],
        ..case(24, 17, 3, 1, 1, 1)
    };
    let winograd4_blocks = Case {
        batch: 2,
        size: [70, 66],
        ..case(16, 16, 3, 1, 1, 1)
    };
    all.extend([
        winograd4,
        winograd4_unpadded_relu,
        winograd4_uneven,
        winograd4_odd_channels,
        winograd4_blocks,
        winograd,
        winograd_unpadded_relu,
        winograd_uneven,
        winograd_blocks,
        winograd_image_groups,
        winograd_odd_channels,
        grouped,
        small_output_grouped,
        small_output_relu,
        small_output_first_layer,
        depthwise,
        even_same,
        rect,
        rect_stride_1,
        blocked,
        blocked_relu,
        simple_cnn_conv2,
        wide_strided_dilated_grouped,
        strided_wide,
        im2col_pieces,
        first_layer,
        no_bias,
    ]);
    all
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn tensor<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    let n = shape.iter().product();
    Tensor::from_data(TensorData::new(values(n, seed), shape), device)
}

/// Which convolution [`run`] runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Conv {
    /// `strata_vision::nn::conv2d`.
    Ours,
    /// `strata_vision::nn::im2col::conv2d`, then Burn's ReLU.
    Im2col,
    /// The same with room for two images' im2col matrices: the batch in runs of two images.
    Im2colInRuns,
    /// The same with less room than one image's matrix: Burn's convolution.
    Im2colNoRoom,
    /// Burn's `conv2d`, then Burn's ReLU.
    Burn,
}

/// Output, then the gradients of input, weight and bias (`None` where none is taken), of
/// `sum(conv(x) · r)`, by one of the convolutions.
fn run(c: &Case, device: &Device, conv: Conv) -> Vec<Option<Vec<f32>>> {
    let x = tensor([c.batch, c.c_in, c.size[0], c.size[1]], 1, device);
    let x = if c.input_grad { x.require_grad() } else { x };
    let w = tensor(
        [c.c_out, c.c_in / c.groups, c.kernel[0], c.kernel[1]],
        2,
        device,
    )
    .require_grad();
    let b = c.bias.then(|| tensor([c.c_out], 3, device).require_grad());
    let options =
        ConvOptions::new_with_padding([c.stride; 2], c.padding, [c.dilation; 2], c.groups);
    let y = match conv {
        Conv::Ours => conv2d(x.clone(), w.clone(), b.clone(), options, c.relu),
        _ => {
            let g = Geometry::new(x.dims(), w.dims(), &options).unwrap();
            let per_image = im2col::image_columns_bytes(&g, size_of::<f32>());
            let (x, w, b) = (x.clone(), w.clone(), b.clone());
            let y = match conv {
                Conv::Im2col => im2col::conv2d(x, w, b, &options),
                Conv::Im2colInRuns => im2col::conv2d_within(x, w, b, &options, 2 * per_image),
                Conv::Im2colNoRoom => im2col::conv2d_within(x, w, b, &options, per_image - 1),
                _ => burn::tensor::module::conv2d(x, w, b, options),
            };
            if c.relu {
                burn::tensor::activation::relu(y)
            } else {
                y
            }
        }
    };
    let r = tensor(y.dims(), 4, device);
    let grads = (y.clone() * r).sum().backward();
    let flat = |t: Option<Tensor<4>>| t.map(|t| t.into_data().try_to_vec::<f32>().unwrap());
    vec![
        flat(Some(y.inner())),
        flat(x.grad(&grads).filter(|_| c.input_grad)),
        flat(w.grad(&grads)),
        b.and_then(|b| b.grad(&grads))
            .map(|g| g.into_data().try_to_vec::<f32>().unwrap()),
    ]
}

#[test]
fn conv2d_and_its_gradients_equal_burns_on_every_backend() {
    compare_with_burns(Conv::Ours);
}

#[test]
fn the_im2col_convolution_and_its_gradients_equal_burns_on_every_backend() {
    compare_with_burns(Conv::Im2col);
}

#[test]
fn the_im2col_convolution_in_runs_of_images_and_past_its_room_equals_burns() {
    compare_with_burns(Conv::Im2colInRuns);
    compare_with_burns(Conv::Im2colNoRoom);
}

#[test]
fn winograds_gradients_are_right_on_any_number_of_threads() {
    // Winograd's weight gradient cuts its tiles into blocks and pieces by the number of threads;
    // the input gradient and the output are cut by threads too.
    let winograd: Vec<Case> = cases()
        .into_iter()
        .filter(|c| {
            c.kernel == [3, 3] && c.stride == 1 && c.dilation == 1 && c.groups == 1 && c.c_in >= 16
        })
        .collect();
    for threads in [1, 3, 7] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let checked = pool.install(|| compare_cases_with_burns(Conv::Ours, &winograd));
        assert!(checked >= 20, "only {checked} comparisons ran");
    }
}

/// Every case of [`cases`] by `conv` and by Burn's `conv2d`, on every compiled backend.
fn compare_with_burns(conv: Conv) {
    let checked = compare_cases_with_burns(conv, &cases());
    assert!(checked > 100, "only {checked} comparisons ran");
}

/// `cases` by `conv` and by Burn's `conv2d`, on every compiled backend: the comparisons made.
fn compare_cases_with_burns(conv: Conv, cases: &[Case]) -> usize {
    let names = [
        "output",
        "input gradient",
        "weight gradient",
        "bias gradient",
    ];
    let mut checked = 0;
    for kind in BackendKind::compiled() {
        let Ok(device) = kind.device(None) else {
            continue; // a GPU backend on a machine without one
        };
        let device = device.autodiff();
        for c in cases {
            let ours = run(c, &device, conv);
            let burn = run(c, &device, Conv::Burn);
            for ((name, a), b) in names.iter().zip(&ours).zip(&burn) {
                assert_eq!(a.is_some(), b.is_some(), "{kind} {c:?}: {name} presence");
                let (Some(a), Some(b)) = (a, b) else { continue };
                assert_eq!(a.len(), b.len(), "{kind} {c:?}: {name} size");
                let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
                let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(
                    diff <= 1e-4 * scale,
                    "{conv:?} on {kind}, {c:?}: {name} differs by {diff} (scale {scale})"
                );
                checked += 1;
            }
        }
    }
    checked
}

#[test]
fn the_im2col_matrix_and_its_adjoint_equal_the_sliced_ones_on_every_backend() {
    // On CubeCL's runtimes `columns` is our kernel and its gradient our col2im kernel; elsewhere
    // both sides are Burn's operations. The input is permuted, so not contiguous, and the
    // batch in one piece or several.
    let mut checked = 0;
    for kind in BackendKind::compiled() {
        let Ok(device) = kind.device(None) else {
            continue;
        };
        let device = device.autodiff();
        for c in cases() {
            let options =
                ConvOptions::new_with_padding([c.stride; 2], c.padding, [c.dilation; 2], c.groups);
            let [b, ci, h, w] = [c.batch, c.c_in, c.size[0], c.size[1]];
            let weight = [c.c_out, c.c_in / c.groups, c.kernel[0], c.kernel[1]];
            let g = Geometry::new([b, ci, h, w], weight, &options).unwrap();
            for pieces in [1, im2col::pieces(b, g.spatial())] {
                let run = |sliced: bool| {
                    let x = tensor([b, h, w, ci], 5, &device)
                        .permute([0, 3, 1, 2])
                        .require_grad();
                    let columns = if sliced {
                        im2col::sliced_columns(x.clone(), &g, &options, pieces)
                    } else {
                        im2col::columns(x.clone(), &g, &options, pieces)
                    };
                    let r = tensor(columns.dims(), 6, &device);
                    let grads = (columns.clone() * r).sum().backward();
                    (numbers(columns.inner()), numbers(x.grad(&grads).unwrap()))
                };
                let (ours, reference) = (run(false), run(true));
                let what = format!("{kind} {c:?} in {pieces} pieces");
                assert_close(&ours.0, &reference.0, &format!("{what}: columns"));
                assert_close(&ours.1, &reference.1, &format!("{what}: input gradient"));
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "only {checked} comparisons ran");
}

#[test]
fn a_kernel_that_does_not_fit_is_burns_kind_of_error() {
    let device = strata_tensor::first_compiled_device();
    let result = std::panic::catch_unwind(|| {
        conv2d(
            Tensor::zeros([1, 1, 4, 4], &device),
            Tensor::zeros([1, 1, 7, 7], &device),
            None,
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
            false,
        )
    });
    let err = result.unwrap_err();
    let msg = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or_default();
    assert!(msg.starts_with("conv2d: a 7×7 kernel"), "{msg}");
}

/// Compares two lists of numbers within `1e-4` of the reference's scale.
fn assert_close(ours: &[f32], reference: &[f32], what: &str) {
    assert_eq!(ours.len(), reference.len(), "{what}: size");
    let scale = reference.iter().fold(1f32, |m, v| m.max(v.abs()));
    let diff = ours
        .iter()
        .zip(reference)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff <= 1e-4 * scale, "{what}: differs by {diff}");
}

fn numbers<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn max_pool_and_its_gradient_equal_burns_on_every_backend() {
    for kind in BackendKind::compiled() {
        let Ok(plain) = kind.device(None) else {
            continue;
        };
        let device = plain.clone().autodiff();
        // Even and odd sizes (a last row and column no window covers), 2×2 and 3×3 windows that
        // do not overlap; then strided, padded windows that do (a ResNet's 3×3/2 with padding
        // 1, a 2×2 stride 1, a 5×3 with strides 2 and 1), whose maxima can share an input.
        let cases = [
            ([2, 3, 8, 8], [2, 2], [2, 2], 0),
            ([3, 2, 7, 9], [2, 2], [2, 2], 0),
            ([1, 4, 10, 11], [3, 3], [3, 3], 0),
            ([2, 3, 12, 11], [3, 3], [2, 2], 1),
            // Rows of 35 outputs: two runs of 16 windows searched at once, then the rest.
            ([2, 3, 9, 70], [3, 3], [2, 2], 1),
            ([1, 2, 6, 7], [2, 2], [1, 1], 1),
            ([2, 2, 9, 8], [5, 3], [2, 1], 2),
        ];
        for (shape, k, stride, pad) in cases {
            let pool = MaxPool2dConfig::new(k)
                .with_strides(stride)
                .with_padding(burn::nn::PaddingConfig2d::Explicit(
                    pad,
                    pad.min(1),
                    pad,
                    pad.min(1),
                ))
                .init();
            let run = |ours: bool| {
                let x = tensor(shape, 5, &device).require_grad();
                let y = if ours {
                    strata_vision::nn::max_pool(&pool, x.clone())
                } else {
                    pool.forward(x.clone())
                };
                let r = tensor(y.dims(), 6, &device);
                let grads = (y.clone() * r).sum().backward();
                (numbers(y.inner()), numbers(x.grad(&grads).unwrap()))
            };
            let (ours, burn) = (run(true), run(false));
            assert_close(
                &ours.0,
                &burn.0,
                &format!("{kind} max-pool {shape:?} k{k:?} s{stride:?} p{pad} output"),
            );
            // Without autodiff (evaluation), where no taps are kept.
            let x = tensor(shape, 5, &plain);
            assert_close(
                &numbers(strata_vision::nn::max_pool(&pool, x.clone())),
                &numbers(pool.forward(x)),
                &format!("{kind} max-pool {shape:?} k{k:?} s{stride:?} p{pad} evaluation"),
            );
            assert_close(
                &ours.1,
                &burn.1,
                &format!("{kind} max-pool {shape:?} k{k:?} s{stride:?} p{pad} gradient"),
            );
        }
    }
}

#[test]
fn dropout_keeps_its_share_scales_and_uses_one_mask_both_ways() {
    let device = strata_tensor::first_compiled_device().autodiff();
    let dropout = burn::nn::DropoutConfig::new(0.25).init();
    let run = |seed: u64| {
        strata_tensor::seed(&device, seed);
        let x = tensor([4, 8, 32, 32], 7, &device).require_grad();
        let y = strata_vision::nn::dropout(&dropout, x.clone());
        let r = tensor(y.dims(), 8, &device);
        let grads = (y.clone() * r.clone()).sum().backward();
        (
            numbers(x.clone().inner()),
            numbers(y.inner()),
            numbers(r.inner()),
            numbers(x.grad(&grads).unwrap()),
        )
    };
    let (x, y, r, dx) = run(1);
    let kept = y.iter().filter(|v| **v != 0.0).count() as f64 / y.len() as f64;
    assert!((kept - 0.75).abs() < 0.01, "kept {kept}");
    for i in 0..y.len() {
        if y[i] == 0.0 {
            assert_eq!(dx[i], 0.0, "a dropped element passes no gradient");
        } else {
            assert!(
                (y[i] - x[i] / 0.75).abs() < 1e-5,
                "kept elements scale by 1/keep"
            );
            assert!(
                (dx[i] - r[i] / 0.75).abs() < 1e-5,
                "the gradient uses the same mask"
            );
        }
    }
    assert_eq!(run(1).1, y, "the same seed gives the same mask");
    assert_ne!(run(2).1, y, "another seed, another mask");
    // Without autodiff (evaluation), dropout is the identity.
    let plain = strata_tensor::first_compiled_device();
    let x = tensor([2, 3], 9, &plain);
    assert_eq!(
        numbers(strata_vision::nn::dropout(&dropout, x.clone())),
        numbers(x)
    );
}

#[test]
fn convolution_relu_and_pooling_in_one_operation_equal_burns_three() {
    for kind in BackendKind::compiled() {
        let Ok(device) = kind.device(None) else {
            continue;
        };
        let device = device.autodiff();
        // The simple CNN's conv2 (even output), LeNet's conv1 (padding), an odd output, 3×3
        // windows; then wider layers with odd outputs (the last row left out of the windows).
        for (c_in, c_out, k, pad, size, window) in [
            (8, 16, 3, 0, 14, 2),
            (1, 6, 5, 2, 12, 2),
            (3, 4, 3, 0, 12, 2),
            (2, 5, 3, 1, 10, 3),
            (32, 16, 3, 0, 29, 2),
            (32, 8, 3, 1, 31, 3),
        ] {
            let mut conv: strata_vision::nn::Conv2d =
                burn::nn::conv::Conv2dConfig::new([c_in, c_out], [k, k])
                    .with_padding(burn::nn::PaddingConfig2d::Explicit(pad, pad, pad, pad))
                    .with_initializer(burn::nn::Initializer::Zeros)
                    .init(&device)
                    .into();
            // Fixed weights, not Burn's generator. The dropout test seeds that generator, and a
            // draw here between its seeding and its mask would change its mask. And with some
            // draws two outputs of a pooling window come within rounding of each other: Burn's
            // convolution and ours, rounding differently, then send the window's gradient to
            // different inputs (both right for their own forward pass). These weights have no
            // such near-tie in any case below.
            let fan_in = (c_in * k * k) as f32;
            conv.weight = burn::module::Param::from_tensor(
                tensor([c_out, c_in, k, k], 13, &device) / fan_in.sqrt(),
            );
            conv.bias = Some(burn::module::Param::from_tensor(
                tensor([c_out], 14, &device) * 0.1,
            ));
            let pool = MaxPool2dConfig::new([window, window])
                .with_strides([window, window])
                .init();
            let what =
                format!("{kind} conv {c_in}->{c_out} k{k} p{pad} {size}x{size} pool {window}");
            let run = |ours: bool| {
                let x = tensor([2, c_in, size, size], 11, &device).require_grad();
                let y = if ours {
                    conv.forward_relu_pool(x.clone(), &pool)
                } else {
                    let [_, _, h, w] = x.dims();
                    let y = burn::tensor::module::conv2d(
                        x.clone(),
                        conv.weight.val(),
                        conv.bias.as_ref().map(|b| b.val()),
                        conv.options(h, w),
                    );
                    pool.forward(burn::tensor::activation::relu(y))
                };
                let r = tensor(y.dims(), 12, &device);
                let grads = (y.clone() * r).sum().backward();
                let bias = conv.bias.as_ref().unwrap().grad(&grads).unwrap();
                (
                    numbers(y.inner()),
                    numbers(x.grad(&grads).unwrap()),
                    numbers(conv.weight.grad(&grads).unwrap()),
                    bias.into_data().try_to_vec::<f32>().unwrap(),
                )
            };
            let (ours, burn) = (run(true), run(false));
            assert_close(&ours.0, &burn.0, &format!("{what}: output"));
            assert_close(&ours.1, &burn.1, &format!("{what}: input gradient"));
            assert_close(&ours.2, &burn.2, &format!("{what}: weight gradient"));
            assert_close(&ours.3, &burn.3, &format!("{what}: bias gradient"));
        }
    }
}

/// `batch_norm` (with and without the ReLU after it) against Burn's `BatchNorm` followed by
/// Burn's ReLU, on every compiled backend: in training, the output, the gradients of the input,
/// γ and β, and the running statistics after two steps; in evaluation (no autodiff); and
/// frozen on an autodiff device (running statistics, the input's gradient through them).
/// Planes of 7×5, of 1×1 (a ResNet's last stage at small inputs, another `epsilon` and
/// `momentum`), of 40×40 (many runs per channel across the plane), a batch of 64 small planes
/// (runs across the batch), and planes of 96×96 (more runs per channel than the GPU kernels
/// merge with one thread each); the inputs' mean is far from zero.
#[test]
fn batch_norm_and_relu_equal_burns_on_every_backend() {
    use burn::module::{Module, Param, RunningState};
    use burn::nn::{BatchNorm, BatchNormConfig};
    use burn::tensor::activation::relu;
    for kind in BackendKind::compiled() {
        let Ok(plain) = kind.device(None) else {
            continue;
        };
        let device = plain.clone().autodiff();
        for dims in [
            [3, 4, 7, 5],
            [5, 6, 1, 1],
            [2, 3, 40, 40],
            [64, 2, 3, 3],
            [2, 2, 96, 96],
        ] {
            let c = dims[1];
            let make = |device: &Device| {
                let config = match dims[2] {
                    1 => BatchNormConfig::new(c)
                        .with_epsilon(1e-2)
                        .with_momentum(0.3),
                    _ => strata_vision::nn::batch_norm_config(c),
                };
                let mut n: BatchNorm = config.init(device);
                n.gamma = Param::from_tensor(tensor([c], 21, device) * 0.5 + 1.0);
                n.beta = Param::from_tensor(tensor([c], 22, device) * 0.5);
                n
            };
            let burns = |n: &BatchNorm, x: Tensor<4>, with_relu: bool| {
                let y = n.forward(x);
                if with_relu { relu(y) } else { y }
            };
            let input = |seed, device: &Device| tensor(dims, seed, device) * 2.0 + 3.0;
            for with_relu in [false, true] {
                let what = format!("{kind} batch norm {dims:?} relu {with_relu}");
                // Two layers with the same parameters and their own running statistics.
                let (ours_norm, burn_norm) = (make(&device), make(&device));
                for step in 0..2 {
                    let x = input(31 + step, &device).require_grad();
                    let ours = strata_vision::nn::batch_norm(&ours_norm, x.clone(), with_relu);
                    let reference = burns(&burn_norm, x.clone(), with_relu);
                    assert_close(
                        &numbers(ours.clone().inner()),
                        &numbers(reference.clone().inner()),
                        &format!("{what}: output"),
                    );
                    let r = tensor(dims, 33 + step, &device);
                    let g_ours = (ours * r.clone()).sum().backward();
                    let g_ref = (reference * r).sum().backward();
                    let pairs = [
                        (
                            "input",
                            numbers(x.grad(&g_ours).unwrap()),
                            numbers(x.grad(&g_ref).unwrap()),
                        ),
                        (
                            "γ",
                            numbers(ours_norm.gamma.grad(&g_ours).unwrap()),
                            numbers(burn_norm.gamma.grad(&g_ref).unwrap()),
                        ),
                        (
                            "β",
                            numbers(ours_norm.beta.grad(&g_ours).unwrap()),
                            numbers(burn_norm.beta.grad(&g_ref).unwrap()),
                        ),
                    ];
                    for (name, a, b) in pairs {
                        assert_close(&a, &b, &format!("{what}: {name} gradient, step {step}"));
                    }
                }
                let running = |n: &BatchNorm| {
                    let mean = numbers(n.running_mean.value().inner());
                    [mean, numbers(n.running_var.value().inner())].concat()
                };
                assert_close(
                    &running(&ours_norm),
                    &running(&burn_norm),
                    &format!("{what}: running statistics"),
                );

                // Evaluation: the running statistics of the trained layer, no autodiff.
                let mut eval = make(&plain);
                eval.running_mean = RunningState::new(burn_norm.running_mean.value().inner());
                eval.running_var = RunningState::new(burn_norm.running_var.value().inner());
                let x = input(35, &plain);
                assert_close(
                    &numbers(strata_vision::nn::batch_norm(&eval, x.clone(), with_relu)),
                    &numbers(burns(&eval, x, with_relu)),
                    &format!("{what}: evaluation"),
                );

                // Frozen on the training device: the running statistics, which stay as they are.
                let frozen = burn_norm.clone().freeze();
                let before = running(&frozen);
                let x = input(36, &device).require_grad();
                let ours = strata_vision::nn::batch_norm(&frozen, x.clone(), with_relu);
                let reference = burns(&frozen, x.clone(), with_relu);
                assert_close(
                    &numbers(ours.clone().inner()),
                    &numbers(reference.clone().inner()),
                    &format!("{what}: frozen output"),
                );
                assert_eq!(
                    running(&frozen),
                    before,
                    "{what}: frozen running statistics"
                );
                let r = tensor(dims, 37, &device);
                let (g_ours, g_ref) = (
                    (ours * r.clone()).sum().backward(),
                    (reference * r).sum().backward(),
                );
                assert_close(
                    &numbers(x.grad(&g_ours).unwrap()),
                    &numbers(x.grad(&g_ref).unwrap()),
                    &format!("{what}: frozen input gradient"),
                );
            }
        }
    }
}
