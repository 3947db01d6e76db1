//! `train-vision --summary`: each layer's output shape and parameter count, as `model.summary()`
//! in Keras or torchinfo print them, so the 28 → 26 → 24 → 12 of a CNN can be read off.

use burn::module::Module;
use burn::prelude::*;

use crate::models::{ModelError, VisionConfig};

/// The table for `config` on one input image, as text.
pub fn summary(config: &VisionConfig, device: &Device) -> Result<String, ModelError> {
    let net = config.init(device)?.valid();
    let (channels, side) = config.input();
    let mut rows: Vec<(String, String, usize)> =
        vec![("input".into(), shape(&[1, channels, side, side]), 0)];
    net.forward_traced(
        Tensor::zeros([1, channels, side, side], device),
        &mut |name, dims, params| rows.push((name.to_string(), shape(dims), params)),
    );
    let total: usize = rows.iter().map(|r| r.2).sum();
    let mut out = format!("{} ({})\n", config.model_type(), config.describe());
    out += &format!(
        "{:<24} {:<20} {:>12}\n",
        "layer", "output shape", "parameters"
    );
    for (name, dims, params) in &rows {
        out += &format!("{name:<24} {dims:<20} {params:>12}\n");
    }
    out += &format!("{:<24} {:<20} {total:>12}\n", "total", "");
    Ok(out)
}

fn shape(dims: &[usize]) -> String {
    let inner: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_cnn_summary_shows_the_shapes_and_parameters() {
        let device = crate::models::test_device();
        let config = VisionConfig::named("simple-cnn", 1, 28, 10).unwrap();
        let table = summary(&config, &device).unwrap();
        assert!(table.contains("[1, 32, 26, 26]"), "{table}");
        assert!(table.contains("[1, 64, 24, 24]"), "{table}");
        assert!(table.contains("[1, 64, 12, 12]"), "{table}");
        assert!(table.contains("1199882"), "{table}");
    }
}
