//! BatchNorm with batch statistics, and the ReLU after it, on flex (see
//! [`crate::nn::batch_norm`](mod@crate::nn::batch_norm)).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Flex, backend_extension};
use rayon::prelude::*;

use strata_tensor::simd::{SUM_LANES, add_lanes};

use super::{Vectorized, contiguous, dims4, tensor, values, vectorized};

/// BatchNorm in training as one operation.
#[backend_extension(Flex, Autodiff)]
pub trait BatchNormOps: Backend {
    /// `x` `[batch, channels, h, w]` normalised per channel with the batch's mean and (biased)
    /// variance, scaled by `gamma` and shifted by `beta`, then `max(·, 0)` with `relu`; also
    /// the mean and the variance, `[channels]` each (constants: no gradient flows through them).
    fn batch_norm_relu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl BatchNormOps for Flex {
    fn batch_norm_relu(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f32,
        relu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let f = forward(&x, &gamma, &beta, epsilon, relu);
        (f.y, f.mean, f.var)
    }
}

/// The forward pass's results.
struct Forward {
    y: FlexTensor,
    mean: FlexTensor,
    var: FlexTensor,
    /// `1/√(var + ε)` per channel.
    rstd: Vec<f32>,
}

/// The `h × w` planes of `t` (`[batch, channels, h × w]`), channel by channel: `c`'s planes
/// at `[c]`, in batch order.
fn planes_by_channel(t: &[f32], channels: usize, plane: usize) -> Vec<Vec<&[f32]>> {
    let mut by = vec![Vec::new(); channels];
    for (i, p) in t.chunks_exact(plane.max(1)).enumerate() {
        by[i % channels].push(p);
    }
    by
}

/// The same for a buffer to write.
fn planes_by_channel_mut(t: &mut [f32], channels: usize, plane: usize) -> Vec<Vec<&mut [f32]>> {
    let mut by: Vec<Vec<&mut [f32]>> = (0..channels).map(|_| Vec::new()).collect();
    for (i, p) in t.chunks_exact_mut(plane.max(1)).enumerate() {
        by[i % channels].push(p);
    }
    by
}

fn forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f32,
    relu: bool,
) -> Forward {
    let [b, c, h, w] = dims4(x);
    let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
    let (gamma, beta) = (values(&gamma), values(&beta));
    let n = (b * h * w) as f32;
    let mut y = vec![0f32; b * c * h * w];
    let x_planes = planes_by_channel(values(&x), c, h * w);
    let stats: Vec<[f32; 3]> = planes_by_channel_mut(&mut y, c, h * w)
        .into_par_iter()
        .zip(x_planes)
        .enumerate()
        .map(|(ch, (y, x))| {
            vectorized(Normalize {
                x,
                y,
                gamma: gamma[ch],
                beta: beta[ch],
                n,
                epsilon,
                relu,
            })
        })
        .collect();
    Forward {
        y: tensor(y, [b, c, h, w]),
        mean: tensor(stats.iter().map(|s| s[0]).collect(), [c]),
        var: tensor(stats.iter().map(|s| s[1]).collect(), [c]),
        rstd: stats.iter().map(|s| s[2]).collect(),
    }
}

/// One channel: its mean and variance over the planes `x` (two passes, so that the variance
/// does not lose digits to a large mean), then the normalised planes into `y`. Returns the mean,
/// the variance and `1/√(var + ε)`.
struct Normalize<'a> {
    x: Vec<&'a [f32]>,
    y: Vec<&'a mut [f32]>,
    gamma: f32,
    beta: f32,
    n: f32,
    epsilon: f32,
    relu: bool,
}

impl Vectorized for Normalize<'_> {
    type Output = [f32; 3];

    #[inline(always)]
    fn run(self) -> [f32; 3] {
        let mut sums = [0f32; LANES];
        for p in &self.x {
            add_lanes(&mut sums, p);
        }
        let mean = sums.iter().sum::<f32>() / self.n;
        let mut squares = [0f32; LANES];
        for p in &self.x {
            add_squares(&mut squares, p, mean);
        }
        let var = squares.iter().sum::<f32>() / self.n;
        let rstd = 1.0 / (var + self.epsilon).sqrt();
        let (scale, shift) = (self.gamma * rstd, self.beta - mean * self.gamma * rstd);
        for (y, x) in self.y.into_iter().zip(self.x) {
            ScaleShift {
                x,
                y,
                scale,
                shift,
                relu: self.relu,
            }
            .run();
        }
        [mean, var, rstd]
    }
}

/// Lanes of the channel sums ([`add_lanes`]).
const LANES: usize = SUM_LANES;

/// Numbers of a plane whose gated gradient the backward pass holds at a time.
const BLOCK: usize = 256;

/// Adds `g · (x − center)` into `sums`, lane by lane.
#[inline(always)]
fn add_products(sums: &mut [f32; LANES], g: &[f32], x: &[f32], center: f32) {
    let ((g, g_tail), (x, x_tail)) = (g.as_chunks::<LANES>(), x.as_chunks::<LANES>());
    for (g, x) in g.iter().zip(x) {
        for l in 0..LANES {
            sums[l] += g[l] * (x[l] - center);
        }
    }
    for ((s, &g), &x) in sums.iter_mut().zip(g_tail).zip(x_tail) {
        *s += g * (x - center);
    }
}

/// Adds the squares of `x − center` into `sums`, lane by lane.
#[inline(always)]
fn add_squares(sums: &mut [f32; LANES], x: &[f32], center: f32) {
    let (runs, tail) = x.as_chunks::<LANES>();
    for run in runs {
        for l in 0..LANES {
            sums[l] += (run[l] - center) * (run[l] - center);
        }
    }
    for (s, &v) in sums.iter_mut().zip(tail) {
        *s += (v - center) * (v - center);
    }
}

/// The gradients of `x`, `gamma` and `beta` from the output's gradient `dy`; `y` is the output
/// when a ReLU followed (it passes the gradient where `y > 0`).
fn backward(s: &State, dy: &FlexTensor) -> [FlexTensor; 3] {
    let [b, c, h, w] = dims4(&s.x);
    let (x, dy) = (contiguous(&s.x), contiguous(dy));
    let gamma = contiguous(&s.gamma);
    let (gamma, mean) = (values(&gamma), values(&s.mean));
    let y = s.relu.as_ref().map(contiguous);
    let plane = h * w;
    let x_planes = planes_by_channel(values(&x), c, plane);
    let dy_planes = planes_by_channel(values(&dy), c, plane);
    // Without a ReLU nothing is gated; the input's planes stand in for the output's.
    let y_planes = match &y {
        Some(y) => planes_by_channel(values(y), c, plane),
        None => x_planes.clone(),
    };
    let mut dx = vec![0f32; b * c * plane];
    let sums: Vec<[f32; 2]> = planes_by_channel_mut(&mut dx, c, plane)
        .into_par_iter()
        .zip(x_planes)
        .zip(dy_planes)
        .zip(y_planes)
        .enumerate()
        .map(|(ch, (((dx, x), dy), y))| {
            vectorized(Gradient {
                x,
                dy,
                y,
                relu: s.relu.is_some(),
                dx,
                mean: mean[ch],
                rstd: s.rstd[ch],
                gamma: gamma[ch],
                n: (b * plane) as f32,
            })
        })
        .collect();
    [
        tensor(dx, [b, c, h, w]),
        tensor(sums.iter().map(|s| s[0]).collect(), [c]),
        tensor(sums.iter().map(|s| s[1]).collect(), [c]),
    ]
}

/// One channel of the backward pass, with `x̂ = (x - mean) · rstd` and `g` the output's gradient
/// (zero where a ReLU cut, `y ≤ 0`): `dγ = Σ g x̂`, `dβ = Σ g`, and
/// `dx = γ · rstd · (g - dβ/n - x̂ · dγ/n)` into `dx`. Returns `[dγ, dβ]`.
struct Gradient<'a> {
    x: Vec<&'a [f32]>,
    dy: Vec<&'a [f32]>,
    y: Vec<&'a [f32]>,
    relu: bool,
    dx: Vec<&'a mut [f32]>,
    mean: f32,
    rstd: f32,
    gamma: f32,
    n: f32,
}

impl Vectorized for Gradient<'_> {
    type Output = [f32; 2];

    #[inline(always)]
    fn run(self) -> [f32; 2] {
        if self.relu {
            self.channel::<true>()
        } else {
            self.channel::<false>()
        }
    }
}

impl Gradient<'_> {
    #[inline(always)]
    fn channel<const RELU: bool>(self) -> [f32; 2] {
        let gate = |y: f32, dy: f32| if !RELU || y > 0.0 { dy } else { 0.0 };
        let planes = self.x.iter().zip(&self.dy).zip(&self.y);
        let (mut dg, mut db) = ([0f32; LANES], [0f32; LANES]);
        for ((x, dy), y) in planes.clone() {
            // The gated gradient a block at a time (a loop the compiler vectorises with the
            // gate as a mask), then its sums in lanes.
            let blocks = x.chunks(BLOCK).zip(dy.chunks(BLOCK)).zip(y.chunks(BLOCK));
            for ((x, dy), y) in blocks {
                let mut g = [0f32; BLOCK];
                let g = &mut g[..x.len()];
                for ((g, &dy), &y) in g.iter_mut().zip(dy).zip(y) {
                    *g = gate(y, dy);
                }
                add_lanes(&mut db, g);
                add_products(&mut dg, g, x, self.mean);
            }
        }
        let dgamma = dg.iter().sum::<f32>() * self.rstd;
        let dbeta = db.iter().sum::<f32>();
        let k = self.gamma * self.rstd;
        let (a, b) = (dbeta / self.n, dgamma / self.n);
        for (dx, ((x, dy), y)) in self.dx.into_iter().zip(planes) {
            for (dx, ((&x, &dy), &y)) in dx.iter_mut().zip(x.iter().zip(dy.iter()).zip(y.iter())) {
                *dx = k * (gate(y, dy) - a - (x - self.mean) * self.rstd * b);
            }
        }
        [dgamma, dbeta]
    }
}

/// What the backward pass needs.
#[derive(Debug, Clone)]
struct State {
    x: FlexTensor,
    gamma: FlexTensor,
    mean: FlexTensor,
    rstd: Vec<f32>,
    /// The output, when a ReLU followed.
    relu: Option<FlexTensor>,
}

#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    type State = State;

    fn backward(self, ops: Ops<State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let out = backward(&ops.state, &dy);
        for (parent, grad) in ops.parents.into_iter().zip(out) {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

impl<C: CheckpointStrategy> BatchNormOps for Autodiff<Flex, C> {
    fn batch_norm_relu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let nodes = [x.node(), gamma.node(), beta.node()];
        let (x, gamma) = (x.into_primitive(), gamma.into_primitive());
        let f = forward(&x, &gamma, &beta.into_primitive(), epsilon, relu);
        let stats = (Self::from_inner(f.mean.clone()), Self::from_inner(f.var));
        let y = match BatchNormBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = State {
                    x,
                    gamma,
                    mean: f.mean,
                    rstd: f.rstd,
                    relu: relu.then(|| f.y.clone()),
                };
                prep.finish(state, f.y)
            }
            OpsKind::UnTracked(prep) => prep.finish(f.y),
        };
        (y, stats.0, stats.1)
    }
}

/// BatchNorm with running statistics (evaluation), and the ReLU after it, as one pass.
#[backend_extension(Flex)]
pub trait ScaleShiftOps: Backend {
    /// `x · scale + shift` per channel, then `max(·, 0)` when `relu` is set, for `x` `[batch,
    /// channels, h, w]` and `scale`, `shift` `[channels]`. Without autodiff only (evaluation).
    fn scale_shift_relu(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self>;
}

impl ScaleShiftOps for Flex {
    fn scale_shift_relu(
        x: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
        relu: bool,
    ) -> FlexTensor {
        let [b, c, h, w] = dims4(&x);
        let (x, scale, shift) = (contiguous(&x), contiguous(&scale), contiguous(&shift));
        let (scale, shift) = (values(&scale), values(&shift));
        let plane = (h * w).max(1);
        let mut y = vec![0f32; b * c * h * w];
        y.par_chunks_mut(plane)
            .zip(values(&x).par_chunks(plane))
            .enumerate()
            .for_each(|(i, (y, x))| {
                vectorized(ScaleShift {
                    x,
                    y,
                    scale: scale[i % c],
                    shift: shift[i % c],
                    relu,
                })
            });
        tensor(y, [b, c, h, w])
    }
}

/// One plane: `y = x · scale + shift`, clamped at 0 with `relu` (also the last step of the
/// training kernel's `Normalize`).
struct ScaleShift<'a> {
    x: &'a [f32],
    y: &'a mut [f32],
    scale: f32,
    shift: f32,
    relu: bool,
}

impl Vectorized for ScaleShift<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let floor = if self.relu { 0.0 } else { f32::NEG_INFINITY };
        for (y, &x) in self.y.iter_mut().zip(self.x) {
            *y = (x * self.scale + self.shift).max(floor);
        }
    }
}
