"""How far PyTorch's own CUDA results are from its CPU float32 results, measured as `strata selftest`
measures Strata's (max |a - b| against the reference's largest |a|), with the same inputs and loss.

Tensor cores round float32 operands to TF32 (10-bit mantissa). PyTorch does so by default in cuDNN
convolutions (`torch.backends.cudnn.allow_tf32 = True`) and not in matrix products
(`torch.backends.cuda.matmul.allow_tf32 = False`). This prints the gaps of the simple CNN and its two
convolutions alone in three settings: "strict" (no TF32), "default", and "tf32" (TF32 everywhere),
so that Strata's cuda gaps can be read beside those of PyTorch's own defaults.

    python xtask/gpu/tf32_gaps.py        (on a machine with a CUDA GPU)

The last stdout line is {"tf32_gaps": {setting: {model: {check: [max_abs, scale]}}}}.
"""

import json
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "benches", "reference"))
from cnn_train import SimpleCnn  # noqa: E402


def fixed_data(shape):
    """strata_tensor::parity::fixed_data: ((i * 7919) % 1000) / 500 - 1, row-major."""
    n = 1
    for s in shape:
        n *= s
    i = torch.arange(n, dtype=torch.int64)
    return ((i * 7919 % 1000).float() / 500.0 - 1.0).reshape(shape)


def models():
    torch.manual_seed(0)
    cnn = SimpleCnn()
    cnn.dropout_conv.p = 0.0
    cnn.dropout_fc.p = 0.0
    return {
        "simple-cnn": (cnn, fixed_data([8, 1, 28, 28])),
        "conv1": (nn.Conv2d(1, 32, 3), fixed_data([8, 1, 28, 28])),
        "conv2": (nn.Conv2d(32, 64, 3), fixed_data([8, 32, 26, 26])),
    }


def run(model, x, device):
    model = model.to(device)
    model.zero_grad()
    out = model(x.to(device))
    loss = out.pow(2).sum() / 2
    loss.backward()
    results = {"output": out.detach().cpu(), "loss": loss.detach().cpu()}
    for name, p in model.named_parameters():
        results["grad " + name] = p.grad.detach().cpu()
    return results


def gaps(reference, other):
    out = {}
    for what, a in reference.items():
        b = other[what]
        out[what] = [float((a - b).abs().max()), float(a.abs().max())]
    return out


def main():
    settings = {"strict": (False, False), "default": (False, True), "tf32": (True, True)}
    result = {}
    for setting, (matmul_tf32, cudnn_tf32) in settings.items():
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
        result[setting] = {}
        for name, (model, x) in models().items():
            reference = run(model, x, "cpu")
            result[setting][name] = gaps(reference, run(model, x, "cuda"))
    print(json.dumps({"tf32_gaps": result, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
