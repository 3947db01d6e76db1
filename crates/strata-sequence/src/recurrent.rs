//! Recurrent layers with PyTorch's semantics: `nn.RNN` (tanh or ReLU), `nn.LSTM` and `nn.GRU`
//! in one module, [`Recurrent`], stacked (`num_layers`), bidirectional, with dropout between
//! layers, `batch_first`, an initial state in and the final state out, and sequences of
//! different lengths in one batch (what `pack_padded_sequence` does).
//!
//! The equations are PyTorch's (gate order included, so its weights load as they are):
//!
//! - RNN: `h' = act(W_ih x + b_ih + W_hh h + b_hh)`, `act` = tanh or ReLU;
//! - LSTM: `[i, f, g, o] = W_ih x + b_ih + W_hh h + b_hh`; `c' = σ(f) c + σ(i) tanh(g)`,
//!   `h' = σ(o) tanh(c')`;
//! - GRU: `[r, z, n]`: `r = σ(W_ir x + b_ir + W_hr h + b_hr)`, `z` likewise,
//!   `n = tanh(W_in x + b_in + r (W_hn h + b_hn))`, `h' = (1 - z) n + z h`.
//!
//! The same weights serve every time step: that sharing across time is what lets a recurrent
//! network read sequences of any length.
//!
//! **Why not Burn's `Lstm`/`Gru`.** Burn 0.22.1's layers have one layer and no dropout between
//! layers, its `Gru` returns no final state, and its `Lstm` does eight small products per step.
//! Here an RNN or LSTM step is one product, `[x, h] · [W_ih, W_hh]ᵀ` with all gates side by
//! side (a GRU's needs two, because `r` multiplies the recurrent part of `n` alone), and the
//! sequence is kept as a list of per-step tensors rather than one tensor sliced per step:
//! slicing a tracked tensor costs a full-size zero tensor per slice in the backward pass (the
//! cost grows with the square of the length), while a list costs nothing to take apart.
//! [`Recurrent::forward_steps`] takes and returns such lists; [`Recurrent::forward`] wraps it for
//! `[batch, time, features]` tensors.
//!
//! Parameters live at `layers.{k}.forward.weight_ih` (and `.reverse.` for the backward
//! direction); [`TORCH_KEYS`] maps them to and from PyTorch's `weight_ih_l{k}[_reverse]`.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Initializer};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};
use serde::{Deserialize, Serialize};
use strata_tensor::weights::KeyMap;

/// The recurrent cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cell {
    /// Elman RNN with tanh (`nn.RNN`).
    Rnn,
    /// Elman RNN with ReLU (`nn.RNN(nonlinearity="relu")`).
    RnnRelu,
    /// Long short-term memory (`nn.LSTM`).
    Lstm,
    /// Gated recurrent unit (`nn.GRU`).
    Gru,
}

strata_tensor::named_enum!(Cell, "cell", {
    Rnn => "rnn",
    RnnRelu => "rnn-relu",
    Lstm => "lstm",
    Gru => "gru",
});

impl Cell {
    /// Blocks of `hidden_size` rows in `weight_ih`: 1, 4 (i, f, g, o) or 3 (r, z, n).
    pub fn gates(self) -> usize {
        match self {
            Self::Rnn | Self::RnnRelu => 1,
            Self::Lstm => 4,
            Self::Gru => 3,
        }
    }
}

/// PyTorch's parameter names for [`Recurrent`]'s: `weight_ih_l0` ↔ `layers.0.forward.weight_ih`,
/// `bias_hh_l1_reverse` ↔ `layers.1.reverse.bias_hh`, under any prefix (`rnn.weight_ih_l0` ↔
/// `rnn.layers.0.forward.weight_ih`).
pub const TORCH_KEYS: KeyMap = KeyMap {
    to_module: &[
        (
            r"(^|\.)(weight|bias)_(ih|hh)_l(\d+)_reverse$",
            "${1}layers.${4}.reverse.${2}_${3}",
        ),
        (
            r"(^|\.)(weight|bias)_(ih|hh)_l(\d+)$",
            "${1}layers.${4}.forward.${2}_${3}",
        ),
    ],
    to_file: &[
        (
            r"(^|\.)layers\.(\d+)\.reverse\.(weight|bias)_(ih|hh)$",
            "${1}${3}_${4}_l${2}_reverse",
        ),
        (
            r"(^|\.)layers\.(\d+)\.forward\.(weight|bias)_(ih|hh)$",
            "${1}${3}_${4}_l${2}",
        ),
    ],
    ignored: &[],
};

/// Settings of a [`Recurrent`] layer stack (the arguments of `nn.RNN`/`nn.LSTM`/`nn.GRU`).
#[derive(Config, Debug)]
pub struct RecurrentConfig {
    /// The cell: RNN (tanh or ReLU), LSTM or GRU.
    pub cell: Cell,
    /// Features of each input step.
    pub input_size: usize,
    /// Features of the hidden state (per direction).
    pub hidden_size: usize,
    /// Stacked layers; layer `k > 0` reads the outputs of layer `k - 1`.
    #[config(default = 1)]
    pub num_layers: usize,
    /// A second pass reads each sequence from its end; outputs are the two side by side.
    #[config(default = false)]
    pub bidirectional: bool,
    /// Dropout on the outputs of every layer but the last (in training).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Inputs and outputs are `[batch, time, features]` (else `[time, batch, features]`).
    #[config(default = false)]
    pub batch_first: bool,
    /// Layers have the biases `b_ih` and `b_hh`.
    #[config(default = true)]
    pub bias: bool,
}

impl RecurrentConfig {
    /// Builds the layers, every weight and bias drawn from U(-1/√hidden, 1/√hidden) as PyTorch
    /// does.
    ///
    /// # Panics
    /// If a size is 0 or dropout is outside [0, 1) (a job checks its options first).
    pub fn init(&self, device: &Device) -> Recurrent {
        assert!(
            self.input_size > 0 && self.hidden_size > 0 && self.num_layers > 0,
            "a recurrent layer needs input_size, hidden_size and num_layers of at least 1"
        );
        assert!(
            (0.0..1.0).contains(&self.dropout),
            "dropout must be in [0, 1), not {}",
            self.dropout
        );
        let directions = if self.bidirectional { 2 } else { 1 };
        let layers = (0..self.num_layers)
            .map(|k| {
                let input = if k == 0 {
                    self.input_size
                } else {
                    self.hidden_size * directions
                };
                let direction =
                    || Direction::new(self.cell, input, self.hidden_size, self.bias, device);
                RecurrentLayer {
                    forward: direction(),
                    reverse: self.bidirectional.then(direction),
                }
            })
            .collect();
        Recurrent {
            layers,
            dropout: DropoutConfig::new(self.dropout).init(),
            cell: self.cell,
            hidden_size: self.hidden_size,
            batch_first: self.batch_first,
        }
    }
}

/// The weights of one layer in one direction, PyTorch's shapes: `weight_ih` is
/// `[gates × hidden, input]`, `weight_hh` `[gates × hidden, hidden]`.
#[derive(Module, Debug)]
pub struct Direction {
    /// Input-to-hidden weights of all gates, stacked.
    pub weight_ih: Param<Tensor<2>>,
    /// Hidden-to-hidden weights of all gates, stacked.
    pub weight_hh: Param<Tensor<2>>,
    /// Input-to-hidden biases.
    pub bias_ih: Option<Param<Tensor<1>>>,
    /// Hidden-to-hidden biases.
    pub bias_hh: Option<Param<Tensor<1>>>,
}

impl Direction {
    fn new(cell: Cell, input: usize, hidden: usize, bias: bool, device: &Device) -> Self {
        let k = 1.0 / (hidden as f64).sqrt();
        let init = Initializer::Uniform { min: -k, max: k };
        let rows = cell.gates() * hidden;
        let bias_param = || bias.then(|| init.init_with([rows], None, None, device));
        Self {
            weight_ih: init.init_with([rows, input], None, None, device),
            weight_hh: init.init_with([rows, hidden], None, None, device),
            bias_ih: bias_param(),
            bias_hh: bias_param(),
        }
    }
}

/// One stacked layer: the forward direction, and the reverse one if bidirectional.
#[derive(Module, Debug)]
pub struct RecurrentLayer {
    /// Reads each sequence from its first step.
    pub forward: Direction,
    /// Reads each sequence from its last step (bidirectional only).
    pub reverse: Option<Direction>,
}

/// The state carried between steps, PyTorch's layout: `[num_layers × directions, batch, hidden]`,
/// layer by layer, the forward direction before the reverse one.
#[derive(Debug, Clone)]
pub struct RecurrentState {
    /// Hidden state `h`.
    pub h: Tensor<3>,
    /// Cell state `c` (LSTM only).
    pub c: Option<Tensor<3>>,
}

/// A stack of recurrent layers: `nn.RNN`, `nn.LSTM` or `nn.GRU` (see the [module](self) docs).
#[derive(Module, Debug)]
pub struct Recurrent {
    /// The layers, first to last.
    pub layers: Vec<RecurrentLayer>,
    /// Dropout between layers.
    pub dropout: Dropout,
    /// The cell type.
    #[module(skip)]
    pub cell: Cell,
    /// Hidden features per direction.
    #[module(skip)]
    pub hidden_size: usize,
    /// Layout of [`forward`](Self::forward)'s input and output.
    #[module(skip)]
    pub batch_first: bool,
}

/// The per-step state of one direction of one layer.
#[derive(Clone)]
struct StepState {
    h: Tensor<2>,
    c: Option<Tensor<2>>,
}

impl Recurrent {
    /// Directions per layer: 1, or 2 if bidirectional.
    pub fn directions(&self) -> usize {
        if self.layers.first().is_some_and(|l| l.reverse.is_some()) {
            2
        } else {
            1
        }
    }

    /// Features of each output step: `hidden_size × directions`.
    pub fn output_size(&self) -> usize {
        self.hidden_size * self.directions()
    }

    /// Runs the sequence `input` (`[batch, time, features]` if `batch_first`, else
    /// `[time, batch, features]`) from `state` (zeros if `None`), and returns every step's
    /// output of the last layer (same layout, `hidden × directions` features) and the final
    /// state of every layer.
    ///
    /// With `lengths` (one per sequence, each in `1..=time`), sequence `b` ends at step
    /// `lengths[b]`: later steps are padding, their outputs are zeros, and the final state is
    /// the one at the sequence's own end (the reverse direction starts there), exactly as
    /// PyTorch's packed sequences.
    ///
    /// # Panics
    /// On an empty sequence, a length of 0 or past the sequence, or a state of the wrong shape.
    pub fn forward(
        &self,
        input: Tensor<3>,
        state: Option<RecurrentState>,
        lengths: Option<&[usize]>,
    ) -> (Tensor<3>, RecurrentState) {
        let input = if self.batch_first {
            input.swap_dims(0, 1)
        } else {
            input
        };
        let (out, state) = self.run_layers(Seq::Whole(input), state, lengths);
        let out = out.whole();
        let out = if self.batch_first {
            out.swap_dims(0, 1)
        } else {
            out
        };
        (out, state)
    }

    /// [`forward`](Self::forward) over a list of steps, each `[batch, features]`.
    pub fn forward_steps(
        &self,
        steps: Vec<Tensor<2>>,
        state: Option<RecurrentState>,
        lengths: Option<&[usize]>,
    ) -> (Vec<Tensor<2>>, RecurrentState) {
        let (out, state) = self.run_layers(Seq::Steps(steps), state, lengths);
        (out.steps(), state)
    }

    fn run_layers(
        &self,
        mut seq: Seq,
        state: Option<RecurrentState>,
        lengths: Option<&[usize]>,
    ) -> (Seq, RecurrentState) {
        let (time, batch) = seq.time_batch();
        assert!(time > 0, "a recurrent layer needs at least one time step");
        let device = seq.device();
        let masks = lengths.map(|l| self.masks(l, batch, time, &device));
        let directions = self.directions();
        let is_lstm = self.cell == Cell::Lstm;
        let initial = |index: usize| -> StepState {
            match &state {
                Some(s) => StepState {
                    h: s.h.clone().narrow(0, index, 1).squeeze_dim(0),
                    c: s.c.clone().map(|c| c.narrow(0, index, 1).squeeze_dim(0)),
                },
                None => {
                    let zeros = Tensor::zeros([batch, self.hidden_size], &device);
                    StepState {
                        h: zeros.clone(),
                        c: is_lstm.then_some(zeros),
                    }
                }
            }
        };
        if let Some(s) = &state {
            let expected = [self.layers.len() * directions, batch, self.hidden_size];
            assert_eq!(
                s.h.dims(),
                expected,
                "initial hidden state has the wrong shape"
            );
            assert_eq!(
                s.c.is_some(),
                is_lstm,
                "an LSTM needs h and c, other cells h only"
            );
        }
        let mut finals = Vec::with_capacity(self.layers.len() * directions);
        for (k, layer) in self.layers.iter().enumerate() {
            if k > 0 {
                seq = seq.map(|x| self.dropout.forward(x), |x| self.dropout.forward(x));
            }
            let (forward, last) = self.run(
                &layer.forward,
                &mut seq,
                initial(k * directions),
                masks.as_deref(),
                false,
            );
            finals.push(last);
            seq = match &layer.reverse {
                Some(reverse) => {
                    let (backward, last) = self.run(
                        reverse,
                        &mut seq,
                        initial(k * directions + 1),
                        masks.as_deref(),
                        true,
                    );
                    finals.push(last);
                    Seq::concat(forward, backward)
                }
                None => forward,
            };
        }
        let c =
            is_lstm.then(|| Tensor::stack(finals.iter().filter_map(|s| s.c.clone()).collect(), 0));
        let h = Tensor::stack(finals.into_iter().map(|s| s.h).collect(), 0);
        (seq, RecurrentState { h, c })
    }

    /// One mask per step, `[batch, hidden]`, true where the step is padding.
    fn masks(
        &self,
        lengths: &[usize],
        batch: usize,
        time: usize,
        device: &Device,
    ) -> Vec<Tensor<2, Bool>> {
        assert_eq!(lengths.len(), batch, "one length per sequence of the batch");
        assert!(
            lengths.iter().all(|&l| (1..=time).contains(&l)),
            "every length must be in 1..={time}, got {lengths:?}"
        );
        (0..time)
            .map(|t| {
                let padding: Vec<bool> = lengths.iter().map(|&l| t >= l).collect();
                Tensor::<1, Bool>::from_data(TensorData::new(padding, [batch]), device)
                    .unsqueeze_dim::<2>(1)
                    .expand([batch, self.hidden_size])
            })
            .collect()
    }

    /// Runs one direction of one layer over the sequence; returns each step's output (in time
    /// order) and the final state. An LSTM without lengths runs as one fused operation where
    /// the backend has it ([`crate::fused`]); everything else steps through time here.
    fn run(
        &self,
        weights: &Direction,
        seq: &mut Seq,
        mut state: StepState,
        masks: Option<&[Tensor<2, Bool>]>,
        reverse: bool,
    ) -> (Seq, StepState) {
        #[cfg(any(feature = "flex", feature = "cube"))]
        if self.cell == Cell::Lstm
            && masks.is_none()
            && let (Some(b_ih), Some(b_hh), Some(c0)) =
                (&weights.bias_ih, &weights.bias_hh, &state.c)
            && crate::fused::available(&seq.device())
        {
            let x = seq.make_whole();
            let x = if reverse { x.flip([0]) } else { x };
            let (hs, c) = crate::fused::lstm_sequence(
                x,
                weights.weight_ih.val(),
                weights.weight_hh.val(),
                b_ih.val() + b_hh.val(),
                state.h.clone(),
                c0.clone(),
            );
            let [time, batch, hidden] = hs.dims();
            let last = hs.clone().narrow(0, time - 1, 1).reshape([batch, hidden]);
            let hs = if reverse { hs.flip([0]) } else { hs };
            return (
                Seq::Whole(hs),
                StepState {
                    h: last,
                    c: Some(c),
                },
            );
        }
        let steps = seq.make_steps();
        let cell = CellWeights::new(self.cell, weights);
        let mut outputs: Vec<Option<Tensor<2>>> = vec![None; steps.len()];
        let order: Box<dyn Iterator<Item = usize>> = if reverse {
            Box::new((0..steps.len()).rev())
        } else {
            Box::new(0..steps.len())
        };
        for t in order {
            let next = cell.step(steps[t].clone(), &state);
            let (next, output) = match masks {
                Some(masks) => {
                    let pad = &masks[t];
                    let output = next.h.clone().mask_fill(pad.clone(), 0.0);
                    let kept = StepState {
                        h: next.h.mask_where(pad.clone(), state.h.clone()),
                        c: next
                            .c
                            .zip(state.c.clone())
                            .map(|(new, old)| new.mask_where(pad.clone(), old)),
                    };
                    (kept, output)
                }
                None => (next.clone(), next.h),
            };
            outputs[t] = Some(output);
            state = next;
        }
        (Seq::Steps(outputs.into_iter().flatten().collect()), state)
    }
}

/// A sequence between layers, `[time, batch, features]` as one tensor or as a list of steps:
/// it stays in the form the last layer made, and changes form only when the next layer needs
/// the other (a list is stacked for free, but taking a tracked tensor apart costs a full-size
/// zero tensor per step in the backward pass).
// A tensor handle is large next to a `Vec`; there is one `Seq` per layer, so boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Seq {
    Whole(Tensor<3>),
    Steps(Vec<Tensor<2>>),
}

impl Seq {
    fn time_batch(&self) -> (usize, usize) {
        match self {
            Self::Whole(x) => {
                let [t, b, _] = x.dims();
                (t, b)
            }
            Self::Steps(s) => (s.len(), s.first().map_or(0, |x| x.dims()[0])),
        }
    }

    fn device(&self) -> Device {
        match self {
            Self::Whole(x) => x.device(),
            Self::Steps(s) => s.first().map(|x| x.device()).unwrap_or_default(),
        }
    }

    fn whole(self) -> Tensor<3> {
        match self {
            Self::Whole(x) => x,
            Self::Steps(s) => Tensor::stack(s, 0),
        }
    }

    fn steps(self) -> Vec<Tensor<2>> {
        match self {
            Self::Whole(x) => x.iter_dim(0).map(|x| x.squeeze_dim(0)).collect(),
            Self::Steps(s) => s,
        }
    }

    /// The tensor form (converting in place, so that a second direction reuses it).
    #[cfg_attr(not(feature = "flex"), allow(dead_code))]
    fn make_whole(&mut self) -> Tensor<3> {
        if let Self::Steps(_) = self {
            *self = Self::Whole(self.clone().whole());
        }
        match self {
            Self::Whole(x) => x.clone(),
            Self::Steps(_) => unreachable!("converted above"),
        }
    }

    /// The list form (converting in place).
    fn make_steps(&mut self) -> Vec<Tensor<2>> {
        if let Self::Whole(_) = self {
            *self = Self::Steps(self.clone().steps());
        }
        match self {
            Self::Steps(s) => s.clone(),
            Self::Whole(_) => unreachable!("converted above"),
        }
    }

    fn map(
        self,
        whole: impl Fn(Tensor<3>) -> Tensor<3>,
        step: impl Fn(Tensor<2>) -> Tensor<2>,
    ) -> Self {
        match self {
            Self::Whole(x) => Self::Whole(whole(x)),
            Self::Steps(s) => Self::Steps(s.into_iter().map(step).collect()),
        }
    }

    /// Both directions' outputs side by side.
    fn concat(forward: Seq, backward: Seq) -> Seq {
        match (forward, backward) {
            (Self::Whole(f), Self::Whole(b)) => Self::Whole(Tensor::cat(vec![f, b], 2)),
            (f, b) => Self::Steps(
                f.steps()
                    .into_iter()
                    .zip(b.steps())
                    .map(|(f, b)| Tensor::cat(vec![f, b], 1))
                    .collect(),
            ),
        }
    }
}

/// A direction's weights, arranged once per forward pass for the step function.
#[allow(clippy::large_enum_variant)]
enum CellWeights {
    /// RNN and LSTM: one product `[x, h] · w` plus `b` gives every gate.
    Fused {
        cell: Cell,
        /// `[input + hidden, gates × hidden]`.
        w: Tensor<2>,
        /// `b_ih + b_hh`, `[1, gates × hidden]`.
        b: Option<Tensor<2>>,
    },
    /// GRU: the input and recurrent products stay apart (`r` scales the latter's `n` block).
    Gru {
        w_ih: Tensor<2>,
        w_hh: Tensor<2>,
        b_ih: Option<Tensor<2>>,
        b_hh: Option<Tensor<2>>,
    },
}

impl CellWeights {
    fn new(cell: Cell, d: &Direction) -> Self {
        let row = |b: &Option<Param<Tensor<1>>>| b.as_ref().map(|b| b.val().unsqueeze_dim::<2>(0));
        match cell {
            Cell::Gru => Self::Gru {
                w_ih: d.weight_ih.val().transpose(),
                w_hh: d.weight_hh.val().transpose(),
                b_ih: row(&d.bias_ih),
                b_hh: row(&d.bias_hh),
            },
            _ => Self::Fused {
                cell,
                w: Tensor::cat(vec![d.weight_ih.val(), d.weight_hh.val()], 1).transpose(),
                b: match (row(&d.bias_ih), row(&d.bias_hh)) {
                    (Some(a), Some(b)) => Some(a + b),
                    _ => None,
                },
            },
        }
    }

    fn step(&self, x: Tensor<2>, state: &StepState) -> StepState {
        let add = |t: Tensor<2>, b: &Option<Tensor<2>>| match b {
            Some(b) => t + b.clone(),
            None => t,
        };
        match self {
            Self::Fused { cell, w, b } => {
                let z = add(
                    Tensor::cat(vec![x, state.h.clone()], 1).matmul(w.clone()),
                    b,
                );
                match cell {
                    Cell::Rnn => StepState {
                        h: z.tanh(),
                        c: None,
                    },
                    Cell::RnnRelu => StepState {
                        h: relu(z),
                        c: None,
                    },
                    _ => {
                        let [i, f, g, o] = four(z.chunk(4, 1));
                        let c_prev = state.c.clone().expect("an LSTM state has c");
                        let c = sigmoid(f) * c_prev + sigmoid(i) * g.tanh();
                        let h = sigmoid(o) * c.clone().tanh();
                        StepState { h, c: Some(c) }
                    }
                }
            }
            Self::Gru {
                w_ih,
                w_hh,
                b_ih,
                b_hh,
            } => {
                let gi = add(x.matmul(w_ih.clone()), b_ih);
                let gh = add(state.h.clone().matmul(w_hh.clone()), b_hh);
                let [ir, iz, i_n] = three(gi.chunk(3, 1));
                let [hr, hz, h_n] = three(gh.chunk(3, 1));
                let r = sigmoid(ir + hr);
                let z = sigmoid(iz + hz);
                let n = (i_n + r * h_n).tanh();
                // (1 - z) n + z h
                let h = n.clone() + z * (state.h.clone() - n);
                StepState { h, c: None }
            }
        }
    }
}

fn four(v: Vec<Tensor<2>>) -> [Tensor<2>; 4] {
    v.try_into()
        .unwrap_or_else(|_| unreachable!("chunk(4) of 4 × hidden gives 4 parts"))
}

fn three(v: Vec<Tensor<2>>) -> [Tensor<2>; 3] {
    v.try_into()
        .unwrap_or_else(|_| unreachable!("chunk(3) of 3 × hidden gives 3 parts"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        strata_tensor::first_compiled_device()
    }

    #[test]
    fn shapes_follow_pytorch() {
        let device = device();
        for cell in [Cell::Rnn, Cell::Lstm, Cell::Gru] {
            let rnn = RecurrentConfig::new(cell, 5, 7)
                .with_num_layers(2)
                .with_bidirectional(true)
                .with_batch_first(true)
                .init(&device);
            let x = Tensor::<3>::ones([3, 4, 5], &device);
            let (out, state) = rnn.forward(x, None, None);
            assert_eq!(out.dims(), [3, 4, 14]);
            assert_eq!(state.h.dims(), [4, 3, 7]);
            assert_eq!(state.c.is_some(), cell == Cell::Lstm);
            assert_eq!(
                rnn.layers[1].forward.weight_ih.dims(),
                [cell.gates() * 7, 14]
            );
        }
    }

    #[test]
    fn padding_never_reaches_outputs_or_state() {
        let device = device();
        let rnn = RecurrentConfig::new(Cell::Lstm, 2, 3)
            .with_bidirectional(true)
            .with_batch_first(true)
            .init(&device);
        let short = Tensor::<3>::from_floats([[[0.5, -1.0], [1.0, 0.25]]], &device);
        let noise = Tensor::<3>::from_floats([[[9.0, -9.0], [3.0, 7.0]]], &device);
        let padded = Tensor::cat(vec![short.clone(), noise], 1);
        let (out_short, s_short) = rnn.forward(short, None, None);
        let (out_padded, s_padded) = rnn.forward(padded, None, Some(&[2]));
        out_padded
            .clone()
            .narrow(1, 0, 2)
            .into_data()
            .assert_approx_eq::<f32>(
                &out_short.into_data(),
                burn::tensor::Tolerance::absolute(1e-6),
            );
        let tail = out_padded.narrow(1, 2, 2).abs().sum().into_scalar::<f32>();
        assert_eq!(tail, 0.0);
        s_padded.h.into_data().assert_approx_eq::<f32>(
            &s_short.h.into_data(),
            burn::tensor::Tolerance::absolute(1e-6),
        );
    }

    #[test]
    fn torch_names_map_both_ways() {
        let to_module = TORCH_KEYS.to_module_name("rnn.bias_hh_l2_reverse");
        assert_eq!(to_module, "rnn.layers.2.reverse.bias_hh");
        assert_eq!(
            TORCH_KEYS.to_file_name(&to_module),
            "rnn.bias_hh_l2_reverse"
        );
        assert_eq!(
            TORCH_KEYS.to_module_name("weight_ih_l0"),
            "layers.0.forward.weight_ih"
        );
        assert_eq!(
            TORCH_KEYS.to_file_name("layers.0.forward.weight_ih"),
            "weight_ih_l0"
        );
    }
}
