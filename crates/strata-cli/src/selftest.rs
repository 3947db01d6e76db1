//! `strata selftest`: the same forward and backward pass on a backend and on a reference
//! backend (flex), with the same weights and inputs; every gap within tolerance or a non-zero
//! exit. The check to run first on a new machine or GPU.

use anyhow::{Result, bail};
use clap::Args;
use strata_tensor::burn::tensor::Device;
use strata_tensor::parity::{ATOL, Gap, RTOL, RTOL_TF32};
use strata_tensor::{BackendKind, select_device};

use crate::args::{BackendArgs, Format, FormatArgs};

/// A model's forward and backward pass on a reference device and another, compared.
type Comparison = fn(&Device, &Device) -> Vec<Gap>;

/// What the self-test checks, by name: whole models, and the CNN's two convolutions alone
/// (where a wrong convolution kernel shows without the rest of the network around it).
const MODELS: [(&str, Comparison); 7] = [
    ("simple-cnn", strata_vision::selftest::simple_cnn),
    ("conv1", strata_vision::selftest::conv_1_to_32),
    ("conv2", strata_vision::selftest::conv_32_to_64),
    ("resnet18", strata_vision::selftest::resnet18),
    ("lstm", strata_sequence::selftest::lstm),
    ("gru", strata_sequence::selftest::gru),
    ("gpt2", strata_transformer::selftest::gpt2),
];

/// `--only`'s parser: one of [`MODELS`]' names.
fn model_name(name: &str) -> Result<String, String> {
    if MODELS.iter().any(|(m, _)| *m == name) {
        Ok(name.to_string())
    } else {
        let names: Vec<_> = MODELS.iter().map(|(m, _)| *m).collect();
        Err(format!("no such model; choose from {}", names.join(", ")))
    }
}

#[derive(Args, Debug)]
pub struct SelftestArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// Backend the results are compared with (compiled in too).
    #[arg(long, default_value = "flex")]
    reference: String,
    /// Check only these models (repeat the option; default: all of them).
    #[arg(long, value_name = "MODEL", value_parser = model_name)]
    only: Vec<String>,
    #[command(flatten)]
    report: FormatArgs,
}

pub fn run(args: SelftestArgs) -> Result<()> {
    let (backend, device) = args.backend.device()?;
    // GPU matrix units round float32 products to TF32 (see RTOL_TF32).
    let on_gpu = matches!(backend, BackendKind::Cuda | BackendKind::Wgpu)
        || (backend == BackendKind::Tch && args.backend.device_index.is_some());
    let rtol = if on_gpu { RTOL_TF32 } else { RTOL };
    let (reference, reference_device) = select_device(Some(&args.reference), None)?;
    let mut checks = Vec::new();
    for (model, compare) in MODELS {
        if !args.only.is_empty() && !args.only.iter().any(|m| m == model) {
            continue;
        }
        for gap in compare(&reference_device, &device) {
            checks.push((model, gap));
        }
    }
    let failed = checks
        .iter()
        .filter(|(_, g)| !g.passes_within(rtol))
        .count();
    match args.report.format {
        Format::Json => {
            let list: Vec<_> = checks
                .iter()
                .map(|(model, g)| {
                    serde_json::json!({
                        "model": model, "what": g.what, "max_abs": g.max_abs,
                        "scale": g.scale, "passed": g.passes_within(rtol),
                    })
                })
                .collect();
            let json = serde_json::json!({
                "selftest": backend.name(), "reference": reference.name(),
                "atol": ATOL, "rtol": rtol, "passed": failed == 0, "checks": list,
            });
            println!("{json}");
        }
        Format::Text => {
            for (model, g) in &checks {
                let verdict = if g.passes_within(rtol) {
                    "ok"
                } else {
                    "FAILED"
                };
                println!(
                    "{model} {}: max |{backend} - {reference}| = {:.2e} (scale {:.2e}) {verdict}",
                    g.what, g.max_abs, g.scale
                );
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} checks on {backend} differ from {reference} by more than {ATOL} + {rtol} x scale",
            checks.len()
        );
    }
    if args.report.format == Format::Text {
        println!(
            "selftest passed: {backend} agrees with {reference} on {} checks",
            checks.len()
        );
    }
    Ok(())
}
