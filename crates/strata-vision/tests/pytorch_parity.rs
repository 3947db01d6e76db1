//! The CNNs against PyTorch on the same weights: forward logits, loss, and two Adam steps.
//! Fixtures: datasets/fixtures/make_cnn_fixtures.py.

use std::path::{Path, PathBuf};

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::prelude::*;
use safetensors::SafeTensors;
use strata_tensor::weights::load_pytorch_safetensors;
use strata_vision::models::{LeNet5Config, PoolKind, SimpleCnnConfig};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/fixtures")
}

struct Expected {
    input: Vec<f32>,
    labels: Vec<i64>,
    logits: Vec<f32>,
    loss: f32,
    logits_after: Vec<f32>,
}

fn expected(name: &str) -> Expected {
    let bytes = std::fs::read(fixtures().join(format!("cnn_{name}_expected.safetensors"))).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |k: &str| -> Vec<f32> {
        st.tensor(k)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let labels = st
        .tensor("labels")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    Expected {
        input: f32s("input"),
        labels,
        logits: f32s("logits"),
        loss: f32s("loss")[0],
        logits_after: f32s("logits_after"),
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Checks forward, loss and two Adam steps of a model against the PyTorch figures.
fn check<M>(name: &str, model: M, forward: impl Fn(&M, Tensor<4>) -> Tensor<2>)
where
    M: burn::module::Module,
{
    let device = strata_tensor::first_compiled_device().autodiff();
    let e = expected(name);
    let model =
        load_pytorch_safetensors(model, &fixtures().join(format!("cnn_{name}.safetensors")))
            .unwrap();
    let x = Tensor::<4>::from_data(TensorData::new(e.input.clone(), [8, 1, 28, 28]), &device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(e.labels.clone(), [8]), &device);

    let logits = forward(&model, x.clone());
    let got: Vec<f32> = logits.clone().try_into_vec_as().unwrap();
    assert!(
        max_diff(&got, &e.logits) < 1e-4,
        "{name}: logits differ by {}",
        max_diff(&got, &e.logits)
    );
    let loss = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits, y.clone());
    let loss: f32 = loss.into_scalar();
    assert!(
        (loss - e.loss).abs() < 1e-5,
        "{name}: loss {loss} vs {}",
        e.loss
    );

    let mut optim = strata_train::OptimizerConfig::adam(1e-3).init();
    let mut model = model;
    for _ in 0..2 {
        let loss = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(forward(&model, x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
    }
    let after: Vec<f32> = forward(&model, x).try_into_vec_as().unwrap();
    let diff = max_diff(&after, &e.logits_after);
    assert!(
        diff < 1e-4,
        "{name}: logits after two Adam steps differ by {diff}"
    );
}

#[test]
fn simple_cnn_matches_pytorch() {
    let device = strata_tensor::first_compiled_device().autodiff();
    let model = SimpleCnnConfig::new()
        .with_conv_channels([4, 8])
        .with_hidden(16)
        .with_dropout_conv(0.0)
        .with_dropout_fc(0.0)
        .init(&device)
        .unwrap();
    check("simple_cnn", model, |m, x| m.forward(x));
}

#[test]
fn lenet5_matches_pytorch() {
    let device = strata_tensor::first_compiled_device().autodiff();
    let model = LeNet5Config::new()
        .with_hidden([32, 16])
        .with_pool(PoolKind::Avg)
        .init(&device)
        .unwrap();
    check("lenet5", model, |m, x| m.forward(x));
}

#[test]
fn wrong_weights_file_is_a_clear_error() {
    let device = strata_tensor::first_compiled_device();
    let model = SimpleCnnConfig::new().init(&device).unwrap();
    // The shrunken LeNet's weights do not fit the default simple CNN.
    let err = load_pytorch_safetensors(model, &fixtures().join("cnn_lenet5.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cnn_lenet5.safetensors"), "{err}");
}

/// Loads PyTorch's `cnn_<name>.safetensors` into `model` and exports it again, to `out`.
fn round_trip<M: burn::module::Module>(name: &str, model: M, out: &Path) {
    let model =
        load_pytorch_safetensors(model, &fixtures().join(format!("cnn_{name}.safetensors")))
            .unwrap();
    strata_tensor::weights::save_pytorch_safetensors(&model, out).unwrap();
}

/// What Strata exports is a PyTorch `state_dict`: the same keys, shapes and values as the one
/// PyTorch saved for these weights (`cnn_*.safetensors`), so `load_state_dict` takes it and the
/// logits are the ones checked above.
#[test]
fn exported_weights_are_pytorchs_state_dict() {
    let device = strata_tensor::first_compiled_device();
    let tmp = tempfile::tempdir().unwrap();
    let simple = SimpleCnnConfig::new()
        .with_conv_channels([4, 8])
        .with_hidden(16)
        .init(&device)
        .unwrap();
    round_trip(
        "simple_cnn",
        simple,
        &tmp.path().join("simple_cnn.safetensors"),
    );
    let lenet = LeNet5Config::new()
        .with_hidden([32, 16])
        .with_pool(PoolKind::Avg)
        .init(&device)
        .unwrap();
    round_trip("lenet5", lenet, &tmp.path().join("lenet5.safetensors"));
    for name in ["simple_cnn", "lenet5"] {
        let ours = std::fs::read(tmp.path().join(format!("{name}.safetensors"))).unwrap();
        let theirs = std::fs::read(fixtures().join(format!("cnn_{name}.safetensors"))).unwrap();
        let (ours, theirs) = (
            SafeTensors::deserialize(&ours).unwrap(),
            SafeTensors::deserialize(&theirs).unwrap(),
        );
        let sorted = |st: &SafeTensors| {
            let mut keys: Vec<String> = st.names().into_iter().map(str::to_string).collect();
            keys.sort();
            keys
        };
        let keys = sorted(&ours);
        assert_eq!(keys, sorted(&theirs), "{name}: keys");
        for k in &keys {
            let (a, b) = (ours.tensor(k).unwrap(), theirs.tensor(k).unwrap());
            assert_eq!(a.shape(), b.shape(), "{name}: shape of {k}");
            assert_eq!(a.dtype(), b.dtype(), "{name}: dtype of {k}");
            assert_eq!(a.data(), b.data(), "{name}: values of {k}");
        }
    }
}
