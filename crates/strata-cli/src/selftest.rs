//! `strata selftest`: the same forward and backward pass on a backend and on a reference
//! backend (flex), with the same weights and inputs; every gap within tolerance or a non-zero
//! exit. The check to run first on a new machine or GPU.

use anyhow::{Result, bail};
use clap::Args;
use strata_tensor::burn::tensor::Device;
use strata_tensor::parity::{ATOL, Gap, RTOL};
use strata_tensor::select_device;

use crate::args::{BackendArgs, Format, FormatArgs};

/// A model's forward and backward pass on a reference device and another, compared.
type Comparison = fn(&Device, &Device) -> Vec<Gap>;

#[derive(Args, Debug)]
pub struct SelftestArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// Backend the results are compared with (compiled in too).
    #[arg(long, default_value = "flex")]
    reference: String,
    #[command(flatten)]
    report: FormatArgs,
}

pub fn run(args: SelftestArgs) -> Result<()> {
    let (backend, device) = args.backend.device()?;
    let (reference, reference_device) = select_device(Some(&args.reference), None)?;
    let models: [(&str, Comparison); 1] = [("simple-cnn", strata_vision::selftest::simple_cnn)];
    let mut checks = Vec::new();
    for (model, compare) in models {
        for gap in compare(&reference_device, &device) {
            checks.push((model, gap));
        }
    }
    let failed = checks.iter().filter(|(_, g)| !g.passes()).count();
    match args.report.format {
        Format::Json => {
            let list: Vec<_> = checks
                .iter()
                .map(|(model, g)| {
                    serde_json::json!({
                        "model": model, "what": g.what, "max_abs": g.max_abs,
                        "scale": g.scale, "passed": g.passes(),
                    })
                })
                .collect();
            let json = serde_json::json!({
                "selftest": backend.name(), "reference": reference.name(),
                "atol": ATOL, "rtol": RTOL, "passed": failed == 0, "checks": list,
            });
            println!("{json}");
        }
        Format::Text => {
            for (model, g) in &checks {
                let verdict = if g.passes() { "ok" } else { "FAILED" };
                println!(
                    "{model} {}: max |{backend} - {reference}| = {:.2e} (scale {:.2e}) {verdict}",
                    g.what, g.max_abs, g.scale
                );
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} checks on {backend} differ from {reference} by more than {ATOL} + {RTOL} x scale",
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
