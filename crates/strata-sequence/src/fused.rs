//! One LSTM layer (one direction) over a whole sequence as a single operation with its own
//! backward pass, the way cuDNN and PyTorch's fused kernels do it:
//!
//! - forward: the input projection of every step is **one** product, `X · W_ihᵀ` over all
//!   `time × batch` rows; each step adds one recurrent product `h · W_hhᵀ` and the gate
//!   arithmetic;
//! - backward (back-propagation through time): only `dh_{t-1} = dG_t · W_hh` is sequential;
//!   the weight gradients `dW_ih = dGᵀ · X`, `dW_hh = dGᵀ · H_prev` and the input gradient
//!   `dX = dG · W_ih` are **one** product each over the whole sequence, instead of one small
//!   product per step in autodiff's per-step graph.
//!
//! The sequential parts run in lanes: the batch split into one run of rows per thread (see
//! `lanes`), each lane stepping through time on its own thread, with no synchronisation
//! between steps. A step's products are small (`[32, 256] × [256, 1024]` for the character
//! model); spread over the threads one step at a time, they spent a fifth of the time waiting.
//!
//! It is a Burn backend extension (`#[backend_extension]`): the forward body is written once
//! over the backend's tensor operations, and the `Autodiff` implementation records one node
//! whose [`Backward`] runs the pass above. It is compiled in with the `flex` backend, and with
//! `cube` (which `cuda` and `wgpu` turn on) on CubeCL's GPU runtimes, where a step's whole batch
//! is one lane and the gate arithmetic one kernel each way (`LstmCell`); with `fusion` it is an
//! opaque operation of Burn's fusion graph. [`Recurrent`](crate::recurrent::Recurrent) falls
//! back to its per-step graph on other backends, for sequences with lengths, and for cells other
//! than the LSTM.

#[cfg(feature = "flex")]
use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Slice};
use rayon::prelude::*;
#[cfg(feature = "flex")]
use strata_tensor::flex::{contiguous, tensor, values};
#[cfg(feature = "flex")]
use strata_tensor::simd;

/// An LSTM layer over a whole sequence as one operation.
#[backend_extension(
    Flex: cfg(feature = "flex"),
    Cube: cfg(feature = "cube"),
    Fusion: cfg(feature = "fusion"),
    Autodiff
)]
pub trait LstmOps: Backend {
    /// Runs an LSTM layer over `x` (`[time, batch, input]`) from `h0`, `c0` (`[batch, hidden]`)
    /// with PyTorch's gate order (`w_ih` `[4 hidden, input]`, `w_hh` `[4 hidden, hidden]`,
    /// `bias` = `b_ih + b_hh`, `[4 hidden]`). Returns `[time + 1, batch, hidden]`: every step's
    /// `h`, then the final `c`.
    #[fusion(id = "strata_lstm_sequence", dtype = x, shape = output_shape(x, h0))]
    fn lstm_sequence(
        x: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

#[cfg(feature = "flex")]
impl LstmOps for Flex {
    fn lstm_sequence(
        x: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        lstm_forward::<Self>(x, w_ih, w_hh, bias, h0, c0).0
    }
}

/// The gate arithmetic of one LSTM step and its derivative: written with the backend's tensor
/// operations by default, and as one pass over the numbers on flex.
pub trait LstmCell: Backend {
    /// Whether the batch runs in lanes, one per thread (see `lanes`): on the CPU. A GPU takes
    /// each step's whole batch in one product.
    const LANES: bool = false;

    /// From the pre-activations `z` (`[batch, 4 hidden]`, gates i, f, g, o) and `c_prev`
    /// (`[batch, hidden]`) to the activated gates `[σ(i), σ(f), tanh(g), σ(o)]`, `c` and `h`.
    fn lstm_cell(
        z: FloatTensor<Self>,
        c_prev: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let hidden = dims::<Self>(&c_prev)[1];
        let i = Self::sigmoid(gate::<Self>(&z, 0, hidden));
        let f = Self::sigmoid(gate::<Self>(&z, 1, hidden));
        let g = Self::float_tanh(gate::<Self>(&z, 2, hidden));
        let o = Self::sigmoid(gate::<Self>(&z, 3, hidden));
        let c = Self::float_add(
            Self::float_mul(f.clone(), c_prev),
            Self::float_mul(i.clone(), g.clone()),
        );
        let h = Self::float_mul(o.clone(), Self::float_tanh(c.clone()));
        (Self::float_cat(vec![i, f, g, o], 1), c, h)
    }

    /// The backward pass of [`lstm_cell`](Self::lstm_cell): from the step's gates, `c`,
    /// `c_prev`, and the gradients reaching its `h` and `c`, to the gradients of `z` and
    /// `c_prev`.
    fn lstm_cell_backward(
        gates: FloatTensor<Self>,
        c: FloatTensor<Self>,
        c_prev: FloatTensor<Self>,
        dh: FloatTensor<Self>,
        dc: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let hidden = dims::<Self>(&c)[1];
        let (i, f, g, o) = (
            gate::<Self>(&gates, 0, hidden),
            gate::<Self>(&gates, 1, hidden),
            gate::<Self>(&gates, 2, hidden),
            gate::<Self>(&gates, 3, hidden),
        );
        let tanh_c = Self::float_tanh(c);
        // h = o tanh(c): the output gate's share, and the cell's.
        let d_o = Self::float_mul(dh.clone(), tanh_c.clone());
        let dtanh = one_minus::<Self>(Self::float_mul(tanh_c.clone(), tanh_c));
        let dc = Self::float_add(dc, Self::float_mul(Self::float_mul(dh, o.clone()), dtanh));
        // c = f c_prev + i g.
        let d_i = Self::float_mul(dc.clone(), g.clone());
        let d_f = Self::float_mul(dc.clone(), c_prev);
        let d_g = Self::float_mul(dc.clone(), i.clone());
        let dc_prev = Self::float_mul(dc, f.clone());
        // Through the activations: σ' = σ(1 - σ), tanh' = 1 - tanh².
        let sig = |d: FloatTensor<Self>, s: FloatTensor<Self>| {
            Self::float_mul(d, Self::float_mul(s.clone(), one_minus::<Self>(s)))
        };
        let dz = Self::float_cat(
            vec![
                sig(d_i, i),
                sig(d_f, f),
                Self::float_mul(d_g, one_minus::<Self>(Self::float_mul(g.clone(), g))),
                sig(d_o, o),
            ],
            1,
        );
        (dz, dc_prev)
    }
}

#[cfg(feature = "flex")]
impl LstmCell for Flex {
    const LANES: bool = true;

    fn lstm_cell(
        z: FloatTensor<Self>,
        c_prev: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [batch, hidden] = dims::<Self>(&c_prev)[..] else {
            unreachable!("c is [batch, hidden]")
        };
        let (z, c_prev) = (contiguous(&z), contiguous(&c_prev));
        let mut gates = vec![0.0f32; batch * 4 * hidden];
        let mut c = vec![0.0f32; batch * hidden];
        let mut h = vec![0.0f32; batch * hidden];
        simd::vectorized(CellForward {
            hidden,
            z: values(&z),
            c_prev: values(&c_prev),
            gates: &mut gates,
            c: &mut c,
            h: &mut h,
        });
        (
            tensor(gates, [batch, 4 * hidden]),
            tensor(c, [batch, hidden]),
            tensor(h, [batch, hidden]),
        )
    }

    fn lstm_cell_backward(
        gates: FloatTensor<Self>,
        c: FloatTensor<Self>,
        c_prev: FloatTensor<Self>,
        dh: FloatTensor<Self>,
        dc: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [batch, hidden] = dims::<Self>(&c)[..] else {
            unreachable!("c is [batch, hidden]")
        };
        let (gates, c, c_prev) = (contiguous(&gates), contiguous(&c), contiguous(&c_prev));
        let (dh, dc) = (contiguous(&dh), contiguous(&dc));
        let mut dz = vec![0.0f32; batch * 4 * hidden];
        let mut dc_prev = vec![0.0f32; batch * hidden];
        simd::vectorized(CellBackward {
            hidden,
            gates: values(&gates),
            c: values(&c),
            c_prev: values(&c_prev),
            dh: values(&dh),
            dc: values(&dc),
            dz: &mut dz,
            dc_prev: &mut dc_prev,
        });
        (
            tensor(dz, [batch, 4 * hidden]),
            tensor(dc_prev, [batch, hidden]),
        )
    }
}

#[cfg(feature = "flex")]
/// The forward pass of an LSTM step, `[batch, 4 hidden]` pre-activations to the gates, `c` and
/// `h`, compiled for the CPU's instruction set.
struct CellForward<'a> {
    hidden: usize,
    z: &'a [f32],
    c_prev: &'a [f32],
    gates: &'a mut [f32],
    c: &'a mut [f32],
    h: &'a mut [f32],
}

#[cfg(feature = "flex")]
impl simd::Vectorized for CellForward<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let (hidden, z, c_prev) = (self.hidden, self.z, self.c_prev);
        let rows = z
            .chunks_exact(4 * hidden)
            .zip(self.gates.chunks_exact_mut(4 * hidden))
            .zip(
                self.c
                    .chunks_exact_mut(hidden)
                    .zip(self.h.chunks_exact_mut(hidden)),
            )
            .zip(c_prev.chunks_exact(hidden));
        for (((z, gates), (c, h)), c_prev) in rows {
            let (zi, rest) = z.split_at(hidden);
            let (zf, rest) = rest.split_at(hidden);
            let (zg, zo) = rest.split_at(hidden);
            let (gi, rest) = gates.split_at_mut(hidden);
            let (gf, rest) = rest.split_at_mut(hidden);
            let (gg, go) = rest.split_at_mut(hidden);
            // One simple loop per quantity: each vectorises.
            for (out, z) in [(&mut *gi, zi), (&mut *gf, zf), (&mut *go, zo)] {
                for (y, &x) in out.iter_mut().zip(z) {
                    *y = simd::sigmoid(x);
                }
            }
            for (y, &x) in gg.iter_mut().zip(zg) {
                *y = simd::tanh(x);
            }
            for ((((c, &c_prev), &f), &i), &g) in
                c.iter_mut().zip(c_prev).zip(&*gf).zip(&*gi).zip(&*gg)
            {
                *c = f * c_prev + i * g;
            }
            for ((h, &c), &o) in h.iter_mut().zip(&*c).zip(&*go) {
                *h = o * simd::tanh(c);
            }
        }
    }
}

#[cfg(feature = "flex")]
/// The backward pass of an LSTM step: the pre-activations' and `c_prev`'s gradients.
struct CellBackward<'a> {
    hidden: usize,
    gates: &'a [f32],
    c: &'a [f32],
    c_prev: &'a [f32],
    dh: &'a [f32],
    dc: &'a [f32],
    dz: &'a mut [f32],
    dc_prev: &'a mut [f32],
}

#[cfg(feature = "flex")]
impl simd::Vectorized for CellBackward<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let (hidden, gates, c, c_prev) = (self.hidden, self.gates, self.c, self.c_prev);
        let (dh, dc) = (self.dh, self.dc);
        let rows = gates
            .chunks_exact(4 * hidden)
            .zip(self.dz.chunks_exact_mut(4 * hidden))
            .zip(c.chunks_exact(hidden).zip(c_prev.chunks_exact(hidden)))
            .zip(dh.chunks_exact(hidden).zip(dc.chunks_exact(hidden)))
            .zip(self.dc_prev.chunks_exact_mut(hidden));
        for ((((g4, dz), (c, c_prev)), (dh, dc_in)), dc_prev) in rows {
            let (gi, rest) = g4.split_at(hidden);
            let (gf, rest) = rest.split_at(hidden);
            let (gg, go) = rest.split_at(hidden);
            let (di, rest) = dz.split_at_mut(hidden);
            let (df, rest) = rest.split_at_mut(hidden);
            let (dg, d_o) = rest.split_at_mut(hidden);
            // tanh(c) first, in a loop of its own (it vectorises); then plain arithmetic.
            let mut tanh_c = vec![0.0f32; hidden];
            for (t, &c) in tanh_c.iter_mut().zip(c) {
                *t = simd::tanh(c);
            }
            let (gi, gf, gg, go) = (&gi[..hidden], &gf[..hidden], &gg[..hidden], &go[..hidden]);
            let (di, df, dg, d_o) = (
                &mut di[..hidden],
                &mut df[..hidden],
                &mut dg[..hidden],
                &mut d_o[..hidden],
            );
            let (c_prev, dh, dc_in) = (&c_prev[..hidden], &dh[..hidden], &dc_in[..hidden]);
            let dc_prev = &mut dc_prev[..hidden];
            for j in 0..hidden {
                let (i, f, g, o, t) = (gi[j], gf[j], gg[j], go[j], tanh_c[j]);
                let dcj = dc_in[j] + dh[j] * o * (1.0 - t * t);
                di[j] = dcj * g * i * (1.0 - i);
                df[j] = dcj * c_prev[j] * f * (1.0 - f);
                dg[j] = dcj * i * (1.0 - g * g);
                d_o[j] = dh[j] * t * o * (1.0 - o);
                dc_prev[j] = dcj * f;
            }
        }
    }
}

/// What the backward pass needs from the forward one.
#[derive(Debug, Clone)]
struct Cache<B: Backend> {
    /// The input, `[time × batch, input]`.
    x: FloatTensor<B>,
    w_ih: FloatTensor<B>,
    w_hh: FloatTensor<B>,
    h0: FloatTensor<B>,
    c0: FloatTensor<B>,
    /// The forward pass's lanes, in batch order.
    lanes: Vec<Lane<B>>,
}

/// One lane's run of batch rows through time: its rows, and each step's `h`, `c` and
/// activated gates `[σ(i), σ(f), tanh(g), σ(o)]` for those rows (`[rows, hidden]`, `[rows, 4
/// hidden]`).
#[derive(Debug, Clone)]
struct Lane<B: Backend> {
    rows: std::ops::Range<usize>,
    hs: Vec<FloatTensor<B>>,
    cs: Vec<FloatTensor<B>>,
    gates: Vec<FloatTensor<B>>,
}

/// The batch's rows split into lanes, one per thread, each of at least 8 rows (a step's product
/// with fewer rows than that wastes most of the matrix kernel): `[0..16, 16..32]` for a batch
/// of 32 on two threads, a single lane for a batch under 16.
fn lanes(batch: usize) -> Vec<std::ops::Range<usize>> {
    let count = rayon::current_num_threads().min(batch / 8).max(1);
    let per = batch.div_ceil(count).max(1);
    // An empty batch is one empty lane.
    (0..batch.max(1))
        .step_by(per)
        .map(|start| start..(start + per).min(batch))
        .collect()
}

/// Rows `rows` of a `[batch, features]` tensor.
fn batch_rows<B: Backend>(t: &FloatTensor<B>, rows: &std::ops::Range<usize>) -> FloatTensor<B> {
    B::float_slice(
        t.clone(),
        &[
            Slice::new(rows.start as isize, Some(rows.end as isize), 1),
            Slice::from(..),
        ],
    )
}

/// `pieces` stacked along their first dimension (the piece itself when there is one).
fn stack_rows<B: Backend>(mut pieces: Vec<FloatTensor<B>>) -> FloatTensor<B> {
    if pieces.len() == 1 {
        pieces.remove(0)
    } else {
        B::float_cat(pieces, 0)
    }
}

fn dims<B: Backend>(t: &FloatTensor<B>) -> Vec<usize> {
    t.shape().to_vec()
}

/// Columns `[k × hidden, (k + 1) × hidden)` of a `[batch, 4 hidden]` tensor.
fn gate<B: Backend>(t: &FloatTensor<B>, k: usize, hidden: usize) -> FloatTensor<B> {
    let start = (k * hidden) as isize;
    B::float_slice(
        t.clone(),
        &[
            Slice::from(..),
            Slice::new(start, Some(start + hidden as isize), 1),
        ],
    )
}

/// Step `t`'s rows `rows` (of `batch`) of a `[time × batch, features]` tensor.
fn step_rows<B: Backend>(
    t_all: &FloatTensor<B>,
    t: usize,
    batch: usize,
    rows: &std::ops::Range<usize>,
) -> FloatTensor<B> {
    batch_rows::<B>(t_all, &(t * batch + rows.start..t * batch + rows.end))
}

/// The 2-D `t` copied into row-major order (a transposed view made one-dimensional is copied on
/// every backend). The recurrent product `h · W_hhᵀ` takes the transposed weights every step: as
/// a view, flex's product (the `gemm` crate) repacks all of them each time (a quarter of
/// `lstm-train`'s time); laid out row-major they are read where they lie.
fn row_major<B: Backend>(t: FloatTensor<B>) -> FloatTensor<B> {
    let shape = t.shape();
    B::float_reshape(
        B::float_reshape(t, Shape::new([shape.num_elements()])),
        shape,
    )
}

/// `1 - t`.
fn one_minus<B: Backend>(t: FloatTensor<B>) -> FloatTensor<B> {
    B::float_add_scalar(B::float_neg(t), 1.0f32.into())
}

fn lstm_forward<B: LstmCell>(
    x: FloatTensor<B>,
    w_ih: FloatTensor<B>,
    w_hh: FloatTensor<B>,
    bias: FloatTensor<B>,
    h0: FloatTensor<B>,
    c0: FloatTensor<B>,
) -> (FloatTensor<B>, Cache<B>) {
    let [time, batch, input] = dims::<B>(&x)[..] else {
        panic!("lstm_sequence takes x as [time, batch, input]")
    };
    let hidden = dims::<B>(&h0)[1];
    let x = B::float_reshape(x, Shape::new([time * batch, input]));
    // Every step's input projection in one product, with both biases.
    let projected = B::float_add(
        B::float_matmul(x.clone(), B::float_transpose(w_ih.clone())),
        B::float_reshape(bias, Shape::new([1, 4 * hidden])),
    );
    let w_hh_t = row_major::<B>(B::float_transpose(w_hh.clone()));
    let lanes = if B::LANES {
        lanes(batch)
    } else {
        std::iter::once(0..batch).collect()
    };
    let lanes: Vec<Lane<B>> = lanes
        .into_par_iter()
        .map(|rows| {
            let (mut h, mut c) = (batch_rows::<B>(&h0, &rows), batch_rows::<B>(&c0, &rows));
            let mut lane = Lane {
                hs: Vec::with_capacity(time),
                cs: Vec::with_capacity(time),
                gates: Vec::with_capacity(time),
                rows,
            };
            for t in 0..time {
                let z = B::float_add(
                    step_rows::<B>(&projected, t, batch, &lane.rows),
                    B::float_matmul(h, w_hh_t.clone()),
                );
                let (step_gates, c_next, h_next) = B::lstm_cell(z, c);
                (c, h) = (c_next, h_next);
                lane.hs.push(h.clone());
                lane.cs.push(c.clone());
                lane.gates.push(step_gates);
            }
            lane
        })
        .collect();
    // The steps' h, then the final c, each step's lanes in batch order.
    let mut rows: Vec<FloatTensor<B>> = (0..time)
        .flat_map(|t| lanes.iter().map(move |l| l.hs[t].clone()))
        .collect();
    rows.extend(lanes.iter().map(|l| {
        l.cs.last()
            .cloned()
            .unwrap_or_else(|| batch_rows::<B>(&c0, &l.rows))
    }));
    let out = B::float_reshape(stack_rows::<B>(rows), Shape::new([time + 1, batch, hidden]));
    let cache = Cache {
        x,
        w_ih,
        w_hh,
        h0,
        c0,
        lanes,
    };
    (out, cache)
}

/// Gradients of the inputs of [`LstmOps::lstm_sequence`] (in its argument order) from the
/// gradient of its output.
fn lstm_backward<B: LstmCell>(cache: Cache<B>, grad: FloatTensor<B>) -> [FloatTensor<B>; 6] {
    let Cache {
        x,
        w_ih,
        w_hh,
        h0,
        c0,
        lanes,
    } = cache;
    let time = lanes[0].hs.len();
    let [batch, hidden] = dims::<B>(&h0)[..] else {
        unreachable!("h0 is [batch, hidden]")
    };
    let input = dims::<B>(&x)[1];
    let grad = B::float_reshape(grad, Shape::new([(time + 1) * batch, hidden]));
    // Each lane back through time: its steps' dz, and the gradients of its rows of h0 and c0.
    let backward: Vec<_> = lanes
        .par_iter()
        .map(|lane| {
            let rows = |t: usize| step_rows::<B>(&grad, t, batch, &lane.rows);
            let mut dc = rows(time);
            let mut dh: Option<FloatTensor<B>> = None;
            let mut dz = vec![None; time];
            for t in (0..time).rev() {
                let dh_t = match dh.take() {
                    Some(dh) => B::float_add(dh, rows(t)),
                    None => rows(t),
                };
                let c_prev = match t {
                    0 => batch_rows::<B>(&c0, &lane.rows),
                    _ => lane.cs[t - 1].clone(),
                };
                let (dz_t, dc_prev) = B::lstm_cell_backward(
                    lane.gates[t].clone(),
                    lane.cs[t].clone(),
                    c_prev,
                    dh_t,
                    dc,
                );
                dc = dc_prev;
                dh = Some(B::float_matmul(dz_t.clone(), w_hh.clone()));
                dz[t] = Some(dz_t);
            }
            let dh = dh.unwrap_or_else(|| unreachable!("the sequence has at least one step"));
            (dz, dh, dc)
        })
        .collect();
    // `[time × batch, ·]` in step-major order, as x: each step's lanes in batch order.
    let dz_all = stack_rows::<B>(
        (0..time)
            .flat_map(|t| backward.iter().map(move |(dz, _, _)| dz[t].clone()))
            .map(|dz| dz.unwrap_or_else(|| unreachable!("every step has its dz")))
            .collect(),
    );
    let dz_t = B::float_transpose(dz_all.clone());
    let h_prev = stack_rows::<B>(
        std::iter::once(h0)
            .chain((0..time - 1).flat_map(|t| lanes.iter().map(move |l| l.hs[t].clone())))
            .collect(),
    );
    let d_h0 = stack_rows::<B>(backward.iter().map(|(_, dh, _)| dh.clone()).collect());
    let dc = stack_rows::<B>(backward.into_iter().map(|(_, _, dc)| dc).collect());
    let d_w_hh = B::float_matmul(dz_t.clone(), h_prev);
    let d_w_ih = B::float_matmul(dz_t, x);
    let d_bias = B::float_reshape(
        B::float_sum_dim(dz_all.clone(), 0),
        Shape::new([4 * hidden]),
    );
    let d_x = B::float_reshape(
        B::float_matmul(dz_all, w_ih),
        Shape::new([time, batch, input]),
    );
    [d_x, d_w_ih, d_w_hh, d_bias, d_h0, dc]
}

#[derive(Debug)]
struct LstmBackward;

impl<B: LstmCell> Backward<B, 6> for LstmBackward {
    type State = Cache<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 6>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let input_grads = lstm_backward::<B>(ops.state, grad);
        for (parent, g) in ops.parents.into_iter().zip(input_grads) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

impl<B: LstmCell, C: CheckpointStrategy> LstmOps for Autodiff<B, C> {
    fn lstm_sequence(
        x: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [
            x.node(),
            w_ih.node(),
            w_hh.node(),
            bias.node(),
            h0.node(),
            c0.node(),
        ];
        let (out, cache) = lstm_forward::<B>(
            x.into_primitive(),
            w_ih.into_primitive(),
            w_hh.into_primitive(),
            bias.into_primitive(),
            h0.into_primitive(),
            c0.into_primitive(),
        );
        match LstmBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(cache, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

/// Whether the fused layer runs on `device` (the backends the extension is compiled for).
pub fn available(device: &burn::tensor::Device) -> bool {
    #[cfg(feature = "flex")]
    if device.clone().inner() == burn::tensor::Device::flex() {
        return true;
    }
    #[cfg(feature = "cube")]
    if strata_tensor::is_cubecl_gpu(device) {
        return true;
    }
    let _ = device;
    false
}

/// The shape of [`LstmOps::lstm_sequence`]'s output, `[time + 1, batch, hidden]`, from those of
/// `x` and `h0`.
pub fn output_shape(x: &Shape, h0: &Shape) -> Shape {
    Shape::new([x[0] + 1, x[1], h0[1]])
}

/// [`LstmOps::lstm_sequence`] on Burn tensors: `x` `[time, batch, input]`; returns every step's
/// `h` (`[time, batch, hidden]`) and the final `c` (`[batch, hidden]`).
pub fn lstm_sequence(
    x: burn::tensor::Tensor<3>,
    w_ih: burn::tensor::Tensor<2>,
    w_hh: burn::tensor::Tensor<2>,
    bias: burn::tensor::Tensor<1>,
    h0: burn::tensor::Tensor<2>,
    c0: burn::tensor::Tensor<2>,
) -> (burn::tensor::Tensor<3>, burn::tensor::Tensor<2>) {
    let [time, batch, _] = x.dims();
    let hidden = h0.dims()[1];
    let out = <burn::backend::Dispatch as LstmOps>::lstm_sequence(
        x.into_dispatch(),
        w_ih.into_dispatch(),
        w_hh.into_dispatch(),
        bias.into_dispatch(),
        h0.into_dispatch(),
        c0.into_dispatch(),
    );
    let out = burn::tensor::Tensor::<3>::from_dispatch(out);
    let hs = out.clone().narrow(0, 0, time);
    let c = out.narrow(0, time, 1).reshape([batch, hidden]);
    (hs, c)
}

/// The layer on CubeCL's GPU runtimes: the sequence as above, one lane, and each step's gate
/// arithmetic one kernel each way, where Burn's operations take a dozen launches forward (four
/// slices, the activations, the products and sums, a concatenation) and two dozen backward.
#[cfg(feature = "cube")]
mod cube {
    use burn::backend::tensor::FloatTensor;
    use burn_cubecl::CubeBackend;

    use super::{LstmCell, LstmOps, lstm_forward};

    impl LstmOps for CubeBackend {
        fn lstm_sequence(
            x: FloatTensor<Self>,
            w_ih: FloatTensor<Self>,
            w_hh: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            h0: FloatTensor<Self>,
            c0: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            lstm_forward::<Self>(x, w_ih, w_hh, bias, h0, c0).0
        }
    }

    impl LstmCell for CubeBackend {
        fn lstm_cell(
            z: FloatTensor<Self>,
            c_prev: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            kernels::cell(z, c_prev)
        }

        fn lstm_cell_backward(
            gates: FloatTensor<Self>,
            c: FloatTensor<Self>,
            c_prev: FloatTensor<Self>,
            dh: FloatTensor<Self>,
            dc: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            kernels::cell_backward([gates, c, c_prev, dh, dc])
        }
    }

    /// With Burn's fusion, the cell is its operations, which fusion joins into few kernels.
    #[cfg(feature = "fusion")]
    impl LstmCell for burn::backend::fusion::Fusion<CubeBackend> {}

    /// The two kernels, in CubeCL.
    mod kernels {
        use burn::backend::cubecl::dtype_to_storage_type;
        use burn::tensor::Shape;
        use burn_cubecl::kernel::into_contiguous;
        use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
        use burn_cubecl::tensor::CubeTensor;
        use cubecl::prelude::*;
        use cubecl::{CubeDim, calculate_cube_count_elemwise};

        /// `1 / (1 + e^(−x))`.
        #[cube]
        fn sigmoid<F: Float>(x: F) -> F {
            F::from_int(1) / (F::from_int(1) + F::exp(-x))
        }

        /// One thread per `(row, j)` of `c` `[batch, hidden]`: the gates of `z` `[batch, 4
        /// hidden]` (i, f, g, o) activated into `gates`, `c = f c_prev + i g`, `h = o tanh(c)`.
        #[cube(launch, address_type = "dynamic")]
        fn cell_kernel<F: Float>(
            z: &Tensor<F>,
            c_prev: &Tensor<F>,
            gates: &mut Tensor<F>,
            c: &mut Tensor<F>,
            h: &mut Tensor<F>,
            hidden: usize,
            #[define(F)] _dtype: ElemType,
        ) {
            let n = ABSOLUTE_POS;
            if n >= c.len() {
                terminate!();
            }
            let base = (n / hidden) * 4 * hidden + n % hidden;
            let i = sigmoid::<F>(z[base]);
            let f = sigmoid::<F>(z[base + hidden]);
            let g = F::tanh(z[base + 2 * hidden]);
            let o = sigmoid::<F>(z[base + 3 * hidden]);
            gates[base] = i;
            gates[base + hidden] = f;
            gates[base + 2 * hidden] = g;
            gates[base + 3 * hidden] = o;
            let cell = f * c_prev[n] + i * g;
            c[n] = cell;
            h[n] = o * F::tanh(cell);
        }

        /// One thread per `(row, j)`: from the activated gates, `c`, `c_prev` and the gradients
        /// `dh`, `dc` reaching the step, the pre-activations' gradient `dz` and `dc_prev`.
        #[allow(clippy::too_many_arguments)]
        #[cube(launch, address_type = "dynamic")]
        fn cell_backward_kernel<F: Float>(
            gates: &Tensor<F>,
            c: &Tensor<F>,
            c_prev: &Tensor<F>,
            dh: &Tensor<F>,
            dc: &Tensor<F>,
            dz: &mut Tensor<F>,
            dc_prev: &mut Tensor<F>,
            hidden: usize,
            #[define(F)] _dtype: ElemType,
        ) {
            let n = ABSOLUTE_POS;
            if n >= c.len() {
                terminate!();
            }
            let base = (n / hidden) * 4 * hidden + n % hidden;
            let one = F::from_int(1);
            let i = gates[base];
            let f = gates[base + hidden];
            let g = gates[base + 2 * hidden];
            let o = gates[base + 3 * hidden];
            let t = F::tanh(c[n]);
            let d = dc[n] + dh[n] * o * (one - t * t);
            dz[base] = d * g * i * (one - i);
            dz[base + hidden] = d * c_prev[n] * f * (one - f);
            dz[base + 2 * hidden] = d * i * (one - g * g);
            dz[base + 3 * hidden] = dh[n] * t * o * (one - o);
            dc_prev[n] = d * f;
        }

        fn empty(t: &CubeTensor, shape: Shape) -> CubeTensor {
            empty_device_contiguous_dtype(t.client.clone(), t.device.clone(), shape, t.dtype)
        }

        /// One thread for each of `c`'s numbers.
        fn grid(c: &CubeTensor) -> (CubeCount, CubeDim) {
            let n = c.meta.num_elements();
            let dim = CubeDim::new(&c.client, n);
            (calculate_cube_count_elemwise(&c.client, n, dim), dim)
        }

        pub(super) fn cell(
            z: CubeTensor,
            c_prev: CubeTensor,
        ) -> (CubeTensor, CubeTensor, CubeTensor) {
            let [z, c_prev] = [z, c_prev].map(into_contiguous);
            let hidden = c_prev.meta.shape()[1];
            let gates = empty(&z, z.meta.shape().clone());
            let [c, h] = [(); 2].map(|_| empty(&c_prev, c_prev.meta.shape().clone()));
            let (count, dim) = grid(&c);
            cell_kernel::launch(
                &z.client,
                count,
                dim,
                z.required_address_type(),
                z.clone().into_tensor_arg(),
                c_prev.into_tensor_arg(),
                gates.clone().into_tensor_arg(),
                c.clone().into_tensor_arg(),
                h.clone().into_tensor_arg(),
                hidden,
                dtype_to_storage_type(z.dtype),
            );
            (gates, c, h)
        }

        pub(super) fn cell_backward(tensors: [CubeTensor; 5]) -> (CubeTensor, CubeTensor) {
            let [gates, c, c_prev, dh, dc] = tensors.map(into_contiguous);
            let hidden = c.meta.shape()[1];
            let dz = empty(&gates, gates.meta.shape().clone());
            let dc_prev = empty(&c, c.meta.shape().clone());
            let (count, dim) = grid(&c);
            cell_backward_kernel::launch(
                &c.client,
                count,
                dim,
                gates.required_address_type(),
                gates.clone().into_tensor_arg(),
                c.clone().into_tensor_arg(),
                c_prev.into_tensor_arg(),
                dh.into_tensor_arg(),
                dc.into_tensor_arg(),
                dz.clone().into_tensor_arg(),
                dc_prev.clone().into_tensor_arg(),
                hidden,
                dtype_to_storage_type(c.dtype),
            );
            (dz, dc_prev)
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Tensor};

    /// Lanes change no number: a batch of 26 in three lanes (9, 9 and 8 rows) gives the
    /// outputs and gradients of the same rows run one at a time (one lane each).
    #[test]
    fn lanes_give_the_numbers_of_one_row_at_a_time() {
        let device = Device::flex().autodiff();
        strata_tensor::seed(&device, 3);
        let (time, batch, input, hidden) = (5, 26, 6, 8);
        let normal = Distribution::Normal(0.0, 0.5);
        let x = Tensor::<3>::random([time, batch, input], normal, &device);
        let w_ih = Tensor::<2>::random([4 * hidden, input], normal, &device);
        let w_hh = Tensor::<2>::random([4 * hidden, hidden], normal, &device);
        let bias = Tensor::<1>::random([4 * hidden], normal, &device);
        let h0 = Tensor::<2>::random([batch, hidden], normal, &device);
        let c0 = Tensor::<2>::random([batch, hidden], normal, &device);
        let (r_hs, r_c) = (
            Tensor::<3>::random([time, batch, hidden], normal, &device),
            Tensor::<2>::random([batch, hidden], normal, &device),
        );
        let flat = |t: Tensor<3>| t.into_data().try_to_vec::<f32>().unwrap();
        // hs, c, then the gradients of x, w_ih, w_hh, bias, h0, c0 for batch rows `rows`.
        let run = |rows: std::ops::Range<usize>| {
            let n = rows.len();
            let pick2 = |t: &Tensor<2>| t.clone().narrow(0, rows.start, n).require_grad();
            let x = x.clone().narrow(1, rows.start, n).require_grad();
            let (h0, c0) = (pick2(&h0), pick2(&c0));
            let (w_ih, w_hh, bias) = (
                w_ih.clone().require_grad(),
                w_hh.clone().require_grad(),
                bias.clone().require_grad(),
            );
            let (hs, c) = lstm_sequence(
                x.clone(),
                w_ih.clone(),
                w_hh.clone(),
                bias.clone(),
                h0.clone(),
                c0.clone(),
            );
            let loss = (hs.clone() * r_hs.clone().narrow(1, rows.start, n)).sum()
                + (c.clone() * r_c.clone().narrow(0, rows.start, n)).sum();
            let g = loss.backward();
            let d3 = |t: Tensor<2>| t.unsqueeze::<3>();
            [
                flat(hs.inner()),
                flat(d3(c.inner())),
                flat(x.grad(&g).unwrap()),
                flat(d3(w_ih.grad(&g).unwrap())),
                flat(d3(w_hh.grad(&g).unwrap())),
                flat(d3(bias.grad(&g).unwrap().unsqueeze::<2>())),
                flat(d3(h0.grad(&g).unwrap())),
                flat(d3(c0.grad(&g).unwrap())),
            ]
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        assert_eq!(pool.install(|| lanes(batch)), [0..9, 9..18, 18..26]);
        // Under 16 rows one lane; an empty batch one empty lane.
        for (batch, lane) in [(12, 0..12), (0, 0..0)] {
            let one = pool.install(|| lanes(batch));
            assert_eq!((one.len(), &one[0]), (1, &lane), "a batch of {batch}");
        }
        let together = pool.install(|| run(0..batch));
        let alone: Vec<_> = (0..batch).map(|b| run(b..b + 1)).collect();
        let names = ["hs", "c", "dx", "dw_ih", "dw_hh", "dbias", "dh0", "dc0"];
        for (k, name) in names.iter().enumerate() {
            let expected: Vec<f32> = match k {
                // [time, batch, ·]: each step's rows from the runs in batch order.
                0 | 2 => {
                    let per_step = together[k].len() / time / batch;
                    (0..time)
                        .flat_map(|t| {
                            alone
                                .iter()
                                .flat_map(move |a| a[k][t * per_step..(t + 1) * per_step].to_vec())
                        })
                        .collect()
                }
                // Shared parameters: the sum over the runs.
                3..=5 => (0..together[k].len())
                    .map(|i| alone.iter().map(|a| a[k][i]).sum())
                    .collect(),
                // [batch, ·]: the runs' rows in order.
                _ => alone.iter().flat_map(|a| a[k].clone()).collect(),
            };
            assert_eq!(together[k].len(), expected.len(), "{name}");
            for (i, (a, e)) in together[k].iter().zip(&expected).enumerate() {
                assert!(
                    (a - e).abs() < 1e-5 * (1.0 + e.abs()),
                    "{name}[{i}]: {a} against {e}"
                );
            }
        }
    }
}
