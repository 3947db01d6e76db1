//! `Recurrent` against PyTorch's `nn.RNN` / `nn.LSTM` / `nn.GRU` on the same weights and inputs:
//! every cell, 1–3 layers, one and two directions, both layouts, with and without an initial
//! state, and batches of sequences of different lengths (`pack_padded_sequence`). Fixtures by
//! `datasets/fixtures/make_rnn_fixtures.py`.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::Deserialize;
use strata_sequence::recurrent::{Cell, Recurrent, RecurrentConfig, RecurrentState, TORCH_KEYS};
use strata_tensor::weights::load_pytorch_weights_mapped;

#[derive(Deserialize)]
struct Manifest {
    cases: Vec<Case>,
    lengths: Vec<usize>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    cell: String,
    num_layers: usize,
    bidirectional: bool,
    batch_first: bool,
    input_size: usize,
    hidden_size: usize,
}

const TOLERANCE: f32 = 1e-5;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rnn")
}

fn manifest() -> Manifest {
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("a valid manifest")
}

fn cell(name: &str) -> Cell {
    match name {
        "rnn_tanh" => Cell::Rnn,
        "rnn_relu" => Cell::RnnRelu,
        "lstm" => Cell::Lstm,
        "gru" => Cell::Gru,
        other => panic!("unknown cell {other}"),
    }
}

struct Tensors(Vec<u8>);

impl Tensors {
    fn read(path: &Path) -> Self {
        Self(std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    }

    fn get<const D: usize>(&self, name: &str, device: &Device) -> Option<Tensor<D>> {
        let st = safetensors::SafeTensors::deserialize(&self.0).expect("safetensors");
        let shape = st.tensor(name).ok()?.shape().to_vec();
        self.get_shaped(name, shape, device)
    }

    /// A tensor of any rank, flattened.
    fn flat(&self, name: &str, device: &Device) -> Option<Tensor<1>> {
        let st = safetensors::SafeTensors::deserialize(&self.0).expect("safetensors");
        let n: usize = st.tensor(name).ok()?.shape().iter().product();
        self.get_shaped(name, vec![n], device)
    }

    fn get_shaped<const D: usize>(
        &self,
        name: &str,
        shape: Vec<usize>,
        device: &Device,
    ) -> Option<Tensor<D>> {
        let st = safetensors::SafeTensors::deserialize(&self.0).expect("safetensors");
        let view = st.tensor(name).ok()?;
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Some(Tensor::from_data(TensorData::new(values, shape), device))
    }

    fn tensor<const D: usize>(&self, name: &str, device: &Device) -> Tensor<D> {
        self.get(name, device)
            .unwrap_or_else(|| panic!("no tensor {name}"))
    }
}

fn model(case: &Case, device: &Device) -> Recurrent {
    let config = RecurrentConfig::new(cell(&case.cell), case.input_size, case.hidden_size)
        .with_num_layers(case.num_layers)
        .with_bidirectional(case.bidirectional)
        .with_batch_first(case.batch_first);
    let path = dir().join(format!("{}.safetensors", case.name));
    load_pytorch_weights_mapped(config.init(device), &path, &TORCH_KEYS)
        .unwrap_or_else(|e| panic!("{}: {e}", case.name))
}

fn check<const D: usize>(case: &str, what: &str, ours: Tensor<D>, torch: Tensor<D>) {
    let gap = (ours.clone() - torch.clone())
        .abs()
        .max()
        .into_scalar::<f32>();
    let scale = torch.abs().max().into_scalar::<f32>().max(1.0);
    assert!(
        gap <= TOLERANCE * scale,
        "{case}: {what} differs from PyTorch's by {gap} (scale {scale})"
    );
}

fn state(io: &Tensors, prefix: &str, suffix: &str, device: &Device) -> RecurrentState {
    RecurrentState {
        h: io.tensor(&format!("{prefix}h{suffix}"), device),
        c: io.get(&format!("{prefix}c{suffix}"), device),
    }
}

#[test]
fn outputs_and_states_equal_pytorch() {
    let device = strata_tensor::first_compiled_device();
    let manifest = manifest();
    assert_eq!(
        manifest.cases.len(),
        24,
        "4 cells × 3 depths × 2 directions"
    );
    for case in &manifest.cases {
        let rnn = model(case, &device);
        let io = Tensors::read(&dir().join(format!("{}.io.safetensors", case.name)));
        let input: Tensor<3> = io.tensor("input", &device);
        let name = &case.name;

        // From the given initial state.
        let (out, last) = rnn.forward(input.clone(), Some(state(&io, "", "0", &device)), None);
        check(name, "output", out, io.tensor("output", &device));
        let expected = state(&io, "", "_n", &device);
        check(name, "h_n", last.h, expected.h);
        if let (Some(c), Some(e)) = (last.c, expected.c) {
            check(name, "c_n", c, e);
        }

        // From zeros.
        let (out, last) = rnn.forward(input.clone(), None, None);
        check(
            name,
            "output from zeros",
            out,
            io.tensor("output_zero_state", &device),
        );
        let expected = state(&io, "", "_n_zero_state", &device);
        check(name, "h_n from zeros", last.h, expected.h);
        if let (Some(c), Some(e)) = (last.c, expected.c) {
            check(name, "c_n from zeros", c, e);
        }

        // Sequences of different lengths, unsorted.
        let (out, last) = rnn.forward(
            input,
            Some(state(&io, "", "0", &device)),
            Some(&manifest.lengths),
        );
        check(
            name,
            "packed output",
            out,
            io.tensor("packed_output", &device),
        );
        let expected = state(&io, "packed_", "_n", &device);
        check(name, "packed h_n", last.h, expected.h);
        if let (Some(c), Some(e)) = (last.c, expected.c) {
            check(name, "packed c_n", c, e);
        }
    }
}

#[test]
fn gradients_equal_pytorch() {
    let device = strata_tensor::first_compiled_device().autodiff();
    let manifest = manifest();
    for name in ["lstm_l2_bi", "gru_l1"] {
        let case = manifest
            .cases
            .iter()
            .find(|c| c.name == name)
            .expect("case");
        let rnn = model(case, &device);
        let io = Tensors::read(&dir().join(format!("{name}.io.safetensors")));
        let (out, last) = rnn.forward(
            io.tensor("input", &device),
            Some(state(&io, "", "0", &device)),
            None,
        );
        let mut loss = out.powf_scalar(2.0).sum() / 2.0 + last.h.powf_scalar(2.0).sum() / 2.0;
        if let Some(c) = last.c {
            loss = loss + c.powf_scalar(2.0).sum() / 2.0;
        }
        let grads = loss.backward();
        let expected = Tensors::read(&dir().join(format!("{name}.grads.safetensors")));
        let mut seen = 0;
        for (path, grad) in strata_train::parameter_grads(&rnn, &grads) {
            let key = TORCH_KEYS.to_file_name(&path);
            let values = grad.try_to_vec::<f32>().expect("f32");
            let n = values.len();
            let ours = Tensor::<1>::from_data(
                TensorData::new(values, [n]),
                &strata_tensor::first_compiled_device(),
            );
            let torch_flat = expected
                .flat(&key, &strata_tensor::first_compiled_device())
                .unwrap_or_else(|| panic!("{name}: no gradient {key} in the fixture"));
            check(name, &format!("gradient of {key}"), ours, torch_flat);
            seen += 1;
        }
        let per_direction = 4;
        let expected_count =
            case.num_layers * if case.bidirectional { 2 } else { 1 } * per_direction;
        assert_eq!(
            seen, expected_count,
            "{name}: every parameter has a gradient"
        );
    }
}

#[test]
fn pth_files_load_like_safetensors() {
    let device = strata_tensor::first_compiled_device();
    let manifest = manifest();
    let case = manifest
        .cases
        .iter()
        .find(|c| c.name == "lstm_l2_bi")
        .expect("case");
    let config = RecurrentConfig::new(Cell::Lstm, case.input_size, case.hidden_size)
        .with_num_layers(2)
        .with_bidirectional(true)
        .with_batch_first(case.batch_first);
    let from_pth = load_pytorch_weights_mapped(
        config.init(&device),
        &dir().join("lstm_l2_bi.pth"),
        &TORCH_KEYS,
    )
    .expect("the .pth loads");
    let io = Tensors::read(&dir().join("lstm_l2_bi.io.safetensors"));
    let (out, _) = from_pth.forward(io.tensor("input", &device), None, None);
    check(
        "lstm_l2_bi.pth",
        "output",
        out,
        io.tensor("output_zero_state", &device),
    );
}

#[test]
fn weights_of_another_cell_or_size_name_the_key() {
    let device = strata_tensor::first_compiled_device();
    let lstm_file = dir().join("lstm_l1.safetensors");
    // A GRU has 3 gates, the file's LSTM 4: the shapes differ.
    let gru = RecurrentConfig::new(Cell::Gru, 5, 7).init(&device);
    let err = load_pytorch_weights_mapped(gru, &lstm_file, &TORCH_KEYS)
        .expect_err("an LSTM's weights do not fit a GRU")
        .to_string();
    assert!(
        err.contains("weight_ih_l0") || err.contains("weight_hh_l0"),
        "{err}"
    );
    assert!(
        !err.contains("layers.0"),
        "keys are named as the file names them: {err}"
    );
    // Two layers expected, one in the file.
    let deeper = RecurrentConfig::new(Cell::Lstm, 5, 7)
        .with_num_layers(2)
        .init(&device);
    let err = load_pytorch_weights_mapped(deeper, &lstm_file, &TORCH_KEYS)
        .expect_err("a one-layer file does not fill two layers")
        .to_string();
    assert!(
        err.contains("'weight_ih_l1'") || err.contains("_l1'"),
        "{err}"
    );
    // A bidirectional file into a one-direction model.
    let one_way = RecurrentConfig::new(Cell::Lstm, 5, 7).init(&device);
    let err =
        load_pytorch_weights_mapped(one_way, &dir().join("lstm_l1_bi.safetensors"), &TORCH_KEYS)
            .expect_err("reverse weights have nowhere to go")
            .to_string();
    assert!(err.contains("_reverse"), "{err}");
}
