"""PyTorch baseline of `cargo run --profile dev -p strata-benches --example resnet18_layers`:
each distinct convolution of ResNet-18 at batch 8 (224x224 images), forward and then forward
and backward, and each BatchNorm with its ReLU, timed alone; the medians of `--reps` runs
(default 9) after 2 untimed ones, in the same lines as ours.

    ~/.cache/strata/venv/bin/python benches/reference/resnet18_layers.py [--reps 9] [--threads 2]
"""

import argparse
import statistics
import time

import torch

BATCH = 8
# Channels in and out, kernel, stride, padding, input side, whether the input takes a gradient.
CONVOLUTIONS = [
    (3, 64, 7, 2, 3, 224, False),
    (64, 64, 3, 1, 1, 56, True),
    (64, 128, 3, 2, 1, 56, True),
    (64, 128, 1, 2, 0, 56, True),
    (128, 128, 3, 1, 1, 28, True),
    (128, 256, 3, 2, 1, 28, True),
    (128, 256, 1, 2, 0, 28, True),
    (256, 256, 3, 1, 1, 14, True),
    (256, 512, 3, 2, 1, 14, True),
    (256, 512, 1, 2, 0, 14, True),
    (512, 512, 3, 1, 1, 7, True),
]
NORMS = [(64, 112), (64, 56), (128, 28), (256, 14), (512, 7)]


def timed(reps, forward, backward):
    f, fb = [], []
    for _ in range(reps + 2):
        start = time.perf_counter()
        y = forward()
        f.append(time.perf_counter() - start)
        backward(y)
        fb.append(time.perf_counter() - start)
    return statistics.median(f[2:]) * 1e3, statistics.median(fb[2:]) * 1e3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for c_in, c_out, k, stride, pad, side, input_grad in CONVOLUTIONS:
        x = torch.rand(BATCH, c_in, side, side, requires_grad=input_grad)
        w = torch.rand(c_out, c_in, k, k, requires_grad=True)
        out = (side + 2 * pad - k) // stride + 1
        r = torch.rand(BATCH, c_out, out, out)

        def forward():
            y = torch.nn.functional.conv2d(x, w, None, stride, pad)
            y.sum().item()
            return y

        def backward(y):
            (y * r).sum().backward()
            w.grad.sum().item()
            if input_grad:
                x.grad.sum().item()
            x.grad, w.grad = None, None

        fwd, both = timed(args.reps, forward, backward)
        print(f"conv {c_in}->{c_out} k{k} s{stride} @{side}: fwd {fwd:.2f} ms, fwd+bwd {both:.2f} ms")
    for channels, side in NORMS:
        norm = torch.nn.BatchNorm2d(channels)
        x = torch.rand(BATCH, channels, side, side, requires_grad=True)
        r = torch.rand(BATCH, channels, side, side)

        def forward():
            y = torch.relu(norm(x))
            y.sum().item()
            return y

        def backward(y):
            (y * r).sum().backward()
            x.grad.sum().item()
            x.grad = None

        fwd, both = timed(args.reps, forward, backward)
        print(f"bn+relu {channels} @{side}: fwd {fwd:.2f} ms, fwd+bwd {both:.2f} ms")


if __name__ == "__main__":
    main()
