//! The im2col matrix of [`im2col::conv2d`](crate::nn::im2col::conv2d) and its adjoint as CubeCL
//! kernels, one launch each.
//!
//! Written with Burn's tensor operations, the matrix is a pad, one strided slice per kernel tap
//! and a stack, and its adjoint in the backward pass a zero tensor, one slice assignment and
//! one addition per tap: about 3 · kh · kw launches per convolution and direction (nearly half
//! of the 2,321 launches of a ResNet-18 training step). Here each is a single gather:
//!
//! - [`ColumnOps::im2col`]: one thread per element of the matrix, reading the input through
//!   its strides (a permuted or sliced input is not copied first), zero where the tap falls in
//!   the padding;
//! - [`ColumnOps::col2im`]: one thread per element of the input, summing every entry of the
//!   matrix that read it, so taps that overlap never race and no atomics are needed.
//!
//! Each is the other's backward pass (the two are adjoint linear maps).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, backend_extension};
use burn::prelude::*;
use burn::tensor::Shape;
use burn_cubecl::CubeBackend;

use kernels::launch_gather;

use crate::nn::Geometry;

/// The im2col matrix and its adjoint, each one kernel (see the module's documentation).
///
/// The matrix of `x` `[batch, in, h, w]` cut into `pieces` runs of `batch / pieces` images is
/// `[pieces, in · kh · kw, images · oh · ow]`: row `c · kh · kw + i · kw + j` (channel, then
/// tap), column `image · oh · ow + oy · ow + ox`, holding
/// `x[piece · images + image, c, oy · sh + i · dh − ph, ox · sw + j · dw − pw]`, or zero where
/// that falls in the padding.
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"), Autodiff)]
pub trait ColumnOps: Backend {
    /// The im2col matrix of `x` for the convolution `g` (`g.batch` images, a multiple of
    /// `pieces`).
    #[fusion(id = "strata_im2col", dtype = x, shape = columns_shape(g, pieces))]
    fn im2col(x: FloatTensor<Self>, g: Geometry, pieces: usize) -> FloatTensor<Self>;

    /// The adjoint of [`ColumnOps::im2col`]: `[batch, in, h, w]`, each element the sum of the
    /// entries of `columns` that `im2col` would have copied it to.
    #[fusion(id = "strata_col2im", dtype = columns, shape = input_shape(g, pieces))]
    fn col2im(columns: FloatTensor<Self>, g: Geometry, pieces: usize) -> FloatTensor<Self>;
}

/// The shape of the im2col matrix of the convolution `g` in `pieces` runs of images.
pub fn columns_shape(g: &Geometry, pieces: &usize) -> Shape {
    let images = g.batch / pieces;
    Shape::new([
        *pieces,
        g.c_in * g.kernel[0] * g.kernel[1],
        images * g.spatial(),
    ])
}

/// The shape of the input of the convolution `g`, `[batch, in, h, w]` (the `pieces` only for
/// the signature [`ColumnOps::col2im`]'s fusion metadata calls).
pub fn input_shape(g: &Geometry, _pieces: &usize) -> Shape {
    Shape::new([g.batch, g.c_in, g.h, g.w])
}

/// [`ColumnOps::im2col`] on Burn tensors, `x` on a CubeCL device.
pub fn im2col(x: Tensor<4>, g: &Geometry, pieces: usize) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as ColumnOps>::im2col(
        x.into_dispatch(),
        *g,
        pieces,
    ))
}

/// [`ColumnOps::col2im`] on Burn tensors, `columns` on a CubeCL device.
pub fn col2im(columns: Tensor<3>, g: &Geometry, pieces: usize) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as ColumnOps>::col2im(
        columns.into_dispatch(),
        *g,
        pieces,
    ))
}

/// The two kernels, in CubeCL.
mod kernels {
    use burn::backend::cubecl::dtype_to_storage_type;
    use burn_cubecl::kernel::untile;
    use burn_cubecl::tensor::CubeTensor;
    use cubecl::prelude::*;

    use super::super::{empty, grid};
    use super::{Gather, Geometry};

    /// The sizes the kernels index with: the convolution's window and the matrix's blocks.
    #[derive(CubeLaunch, CubeType)]
    struct Window {
        kh: usize,
        kw: usize,
        stride_h: usize,
        stride_w: usize,
        dil_h: usize,
        dil_w: usize,
        pad_h: usize,
        pad_w: usize,
        h: usize,
        w: usize,
        oh: usize,
        ow: usize,
        /// Images per piece.
        images: usize,
        channels: usize,
    }

    impl WindowLaunch {
        fn of(g: &Geometry, pieces: usize) -> Self {
            Self::new(
                g.kernel[0],
                g.kernel[1],
                g.stride[0],
                g.stride[1],
                g.dilation[0],
                g.dilation[1],
                g.pad[0],
                g.pad[1],
                g.h,
                g.w,
                g.oh,
                g.ow,
                g.batch / pieces,
                g.c_in,
            )
        }
    }

    /// One element of the matrix per thread: `columns` is contiguous
    /// `[pieces, channels · kh · kw, images · oh · ow]`; `x` `[batch, channels, h, w]` is read
    /// through its strides.
    #[cube(launch, address_type = "dynamic")]
    fn im2col_kernel<E: Numeric>(
        x: &Tensor<E>,
        columns: &mut Tensor<E>,
        win: Window,
        #[define(E)] _dtype: ElemType,
    ) {
        if ABSOLUTE_POS >= columns.len() {
            terminate!();
        }
        let taps = win.kh * win.kw;
        let spatial = win.oh * win.ow;
        let width = win.images * spatial;
        let height = win.channels * taps;

        let col = ABSOLUTE_POS % width;
        let row = (ABSOLUTE_POS / width) % height;
        let piece = ABSOLUTE_POS / (width * height);

        let image = col / spatial;
        let oy = (col % spatial) / win.ow;
        let ox = col % win.ow;
        let c = row / taps;
        let i = (row % taps) / win.kw;
        let j = row % win.kw;

        // Positions in the padded input, so that nothing goes below zero.
        let py = oy * win.stride_h + i * win.dil_h;
        let px = ox * win.stride_w + j * win.dil_w;
        let mut value = E::from_int(0);
        if py >= win.pad_h && px >= win.pad_w {
            let y = py - win.pad_h;
            let xx = px - win.pad_w;
            if y < win.h && xx < win.w {
                let n = piece * win.images + image;
                value = x[n * x.stride(0) + c * x.stride(1) + y * x.stride(2) + xx * x.stride(3)];
            }
        }
        columns[ABSOLUTE_POS] = value;
    }

    /// One element of the input per thread: `dx` is contiguous `[batch, channels, h, w]`; `columns`
    /// `[pieces, channels · kh · kw, images · oh · ow]` is read through its strides.
    #[cube(launch, address_type = "dynamic")]
    fn col2im_kernel<E: Numeric>(
        columns: &Tensor<E>,
        dx: &mut Tensor<E>,
        win: Window,
        #[define(E)] _dtype: ElemType,
    ) {
        if ABSOLUTE_POS >= dx.len() {
            terminate!();
        }
        let xx = ABSOLUTE_POS % win.w;
        let y = (ABSOLUTE_POS / win.w) % win.h;
        let c = (ABSOLUTE_POS / (win.w * win.h)) % win.channels;
        let n = ABSOLUTE_POS / (win.w * win.h * win.channels);
        let piece = n / win.images;
        let image = n % win.images;
        let taps = win.kh * win.kw;
        let spatial = win.oh * win.ow;

        let base = piece * columns.stride(0) + image * spatial * columns.stride(2);
        let mut sum = E::from_int(0);
        for i in 0..win.kh {
            // Output row oy with oy · sh + i · dh = y + ph, if there is one.
            let ty = y + win.pad_h;
            let shift_y = i * win.dil_h;
            if ty >= shift_y && (ty - shift_y).is_multiple_of(win.stride_h) {
                let oy = (ty - shift_y) / win.stride_h;
                if oy < win.oh {
                    for j in 0..win.kw {
                        let tx = xx + win.pad_w;
                        let shift_x = j * win.dil_w;
                        if tx >= shift_x && (tx - shift_x).is_multiple_of(win.stride_w) {
                            let ox = (tx - shift_x) / win.stride_w;
                            if ox < win.ow {
                                let row = c * taps + i * win.kw + j;
                                let col = oy * win.ow + ox;
                                sum += columns
                                    [base + row * columns.stride(1) + col * columns.stride(2)];
                            }
                        }
                    }
                }
            }
        }
        dx[ABSOLUTE_POS] = sum;
    }

    /// Launches `kernel` with one thread per element of its output, a new contiguous tensor (the
    /// matrix or the input), reading `input`; returns that tensor.
    pub(super) fn launch_gather(
        input: CubeTensor,
        g: &Geometry,
        pieces: usize,
        kernel: Gather,
    ) -> CubeTensor {
        let shape = kernel.output_shape(g, pieces);
        let input = untile(input);
        let (client, dtype) = (input.client.clone(), input.dtype);
        let out = empty(&input, shape, dtype);
        let (cube_count, cube_dim) = grid(&out, out.meta.num_elements());
        let address = input
            .required_address_type()
            .max(out.required_address_type());
        let storage = dtype_to_storage_type(dtype);
        let (input, output) = (input.into_tensor_arg(), out.clone().into_tensor_arg());
        let win = WindowLaunch::of(g, pieces);
        match kernel {
            Gather::Im2col => im2col_kernel::launch(
                &client, cube_count, cube_dim, address, input, output, win, storage,
            ),
            Gather::Col2im => col2im_kernel::launch(
                &client, cube_count, cube_dim, address, input, output, win, storage,
            ),
        }
        out
    }
}

/// The two directions: an input's im2col matrix, or a matrix summed back into an input.
#[derive(Debug, Clone, Copy)]
enum Gather {
    Im2col,
    Col2im,
}

impl Gather {
    /// The other direction: its adjoint, and so its backward pass.
    fn adjoint(self) -> Self {
        match self {
            Self::Im2col => Self::Col2im,
            Self::Col2im => Self::Im2col,
        }
    }

    fn output_shape(self, g: &Geometry, pieces: usize) -> Shape {
        match self {
            Self::Im2col => columns_shape(g, &pieces),
            Self::Col2im => input_shape(g, &pieces),
        }
    }

    /// This direction on backend `B`.
    fn run<B: ColumnOps>(self, t: FloatTensor<B>, g: Geometry, pieces: usize) -> FloatTensor<B> {
        match self {
            Self::Im2col => B::im2col(t, g, pieces),
            Self::Col2im => B::col2im(t, g, pieces),
        }
    }
}

impl ColumnOps for CubeBackend {
    fn im2col(x: FloatTensor<Self>, g: Geometry, pieces: usize) -> FloatTensor<Self> {
        launch_gather(x, &g, pieces, Gather::Im2col)
    }

    fn col2im(columns: FloatTensor<Self>, g: Geometry, pieces: usize) -> FloatTensor<Self> {
        launch_gather(columns, &g, pieces, Gather::Col2im)
    }
}

/// The backward pass of either direction: the other one.
#[derive(Debug)]
struct AdjointBackward(Gather);

impl<B: ColumnOps> Backward<B, 1> for AdjointBackward {
    type State = (Geometry, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<B>(&ops.node);
        let (g, pieces) = ops.state;
        if let [Some(node)] = ops.parents {
            grads.register::<B>(node.id, self.0.adjoint().run::<B>(dy, g, pieces));
        }
    }
}

/// `gather` of `t` on `B`, recorded with its adjoint as backward pass.
fn tracked<B: ColumnOps, C: CheckpointStrategy>(
    t: FloatTensor<Autodiff<B, C>>,
    g: Geometry,
    pieces: usize,
    gather: Gather,
) -> FloatTensor<Autodiff<B, C>> {
    let nodes = [t.node()];
    let y = gather.run::<B>(t.into_primitive(), g, pieces);
    match AdjointBackward(gather)
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((g, pieces), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

impl<B: ColumnOps, C: CheckpointStrategy> ColumnOps for Autodiff<B, C> {
    fn im2col(x: FloatTensor<Self>, g: Geometry, pieces: usize) -> FloatTensor<Self> {
        tracked::<B, C>(x, g, pieces, Gather::Im2col)
    }

    fn col2im(columns: FloatTensor<Self>, g: Geometry, pieces: usize) -> FloatTensor<Self> {
        tracked::<B, C>(columns, g, pieces, Gather::Col2im)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::ops::ConvOptions;

    fn numbers<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col_and_its_gradient_is_im2col() {
        // A strided, padded, dilated 3×2 window over 4 images in 2 pieces.
        let options = ConvOptions::new_with_padding([2, 1], [(1, 1), (2, 0)], [1, 2], 1);
        let g = Geometry::new([4, 3, 9, 8], [5, 3, 3, 2], &options).unwrap();
        let pieces = 2;
        let devices = super::super::devices();
        assert!(!devices.is_empty(), "no CubeCL GPU device could be opened");
        for device in devices {
            let device = device.autodiff();
            let x: Tensor<4> =
                Tensor::random([4, 3, 9, 8], burn::tensor::Distribution::Default, &device);
            let shape: [usize; 3] = columns_shape(&g, &pieces).dims();
            let c: Tensor<3> =
                Tensor::random(shape, burn::tensor::Distribution::Default, &device).require_grad();
            // <im2col(x), c> = <x, col2im(c)>.
            let left = (im2col(x.clone(), &g, pieces) * c.clone()).sum();
            let dx = col2im(c.clone(), &g, pieces);
            let right = (x.clone() * dx.clone()).sum();
            let (left, right) = (numbers(left.inner())[0], numbers(right.inner())[0]);
            assert!(
                (left - right).abs() <= 1e-4 * left.abs().max(1.0),
                "{left} against {right}"
            );
            // The gradient of <x, col2im(c)> with respect to c is im2col(x).
            let grads = (x.clone() * dx).sum().backward();
            let expected = crate::nn::im2col::sliced_columns(x, &g, &options, pieces);
            let (got, expected) = (numbers(c.grad(&grads).unwrap()), numbers(expected.inner()));
            assert_eq!(got, expected);
        }
    }
}
