//! The same forward and backward pass on two backends, compared: what `strata selftest` runs
//! on a GPU against flex, and what the cross-backend tests check.

use burn::module::Module;
use burn::prelude::*;
use strata_tensor::parity::Gap;

use crate::fit::parameter_grads;

/// Runs `forward` with `model` on its own (reference) device and with a copy of `model` moved
/// to `other`, then the backward pass of `loss = sum(output²) / 2` on both, and compares the
/// outputs, the losses and the gradient of every parameter.
///
/// `model` must live on an autodiff device; `forward(model, device)` builds its input on
/// `device` from fixed data, so both sides see the same numbers.
pub fn compare_backends<M, const D: usize>(
    model: &M,
    other: &Device,
    forward: impl Fn(&M, &Device) -> Tensor<D>,
) -> Vec<Gap>
where
    M: Module + Clone,
{
    let run = |m: &M, device: &Device| {
        let out = forward(m, device);
        let loss = out.clone().powi_scalar(2).sum().div_scalar(2.0);
        let grads = loss.backward();
        let grads = parameter_grads(m, &grads);
        (out.into_data(), loss.into_data(), grads)
    };
    let reference_device = model
        .devices()
        .into_iter()
        .next()
        .expect("the model has parameters");
    let (out_a, loss_a, grads_a) = run(model, &reference_device);
    let moved = model.clone().fork(&other.clone().autodiff());
    let (out_b, loss_b, grads_b) = run(&moved, &other.clone().autodiff());
    let mut gaps = vec![
        Gap::between("output", &out_a, &out_b),
        Gap::between("loss", &loss_a, &loss_b),
    ];
    for (path, grad) in &grads_a {
        let what = format!("grad {path}");
        match grads_b.iter().find(|(p, _)| p == path) {
            Some((_, other)) => gaps.push(Gap::between(what, grad, other)),
            None => gaps.push(Gap {
                what: format!("{what} (missing on the other backend)"),
                max_abs: f32::INFINITY,
                scale: 0.0,
                same_shape: false,
            }),
        }
    }
    gaps
}
