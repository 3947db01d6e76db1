"""PyTorch baseline of `cargo xtask bench cnn-train` (and, with --model lenet5, of `lenet5-train`,
run by lenet5_train.py).

The same simple CNN as strata-vision (conv 3x3 x32 -> ReLU -> conv 3x3 x64 -> ReLU -> max-pool 2
-> dropout 0.25 -> fc 128 -> ReLU -> dropout 0.5 -> fc 10), batch 64 of normalised MNIST
images, cross-entropy, Adam(lr=1e-3); batches are built from the uint8 images inside the timed
loop and copied to the device, as Strata does. Runs on the CPU with as many threads as the
machine has cores, or on a GPU with --device cuda.

    ~/.cache/strata/venv/bin/python benches/reference/cnn_train.py [--steps 50] [--warmup 10] [--device cuda]

The last stdout line is {"bench": "cnn-train", "backend": "pytorch", "value": img/s, ...}.
"""

import argparse
import gzip
import json
import os
import struct
import time

import numpy as np
import torch
from torch import nn


def read_idx(path):
    opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndims = struct.unpack(">HBB", data[:4])
    assert zero == 0 and dtype == 8, f"{path}: not an IDX file of bytes"
    dims = struct.unpack(">" + "I" * ndims, data[4 : 4 + 4 * ndims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndims).reshape(dims)


def find_mnist(data_dir):
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(d, "mnist") for d in (data_dir, os.environ.get("STRATA_DATA_DIR")) if d]
    candidates.append(os.path.join(here, "..", "..", "datasets", "mnist"))
    for c in candidates:
        if os.path.isfile(os.path.join(c, "train-images-idx3-ubyte.gz")):
            return c
    raise SystemExit(f"error: MNIST not found in {candidates}")


class LeNet5(nn.Module):
    """strata-vision's LeNet-5: conv 5x5 x6 (padding 2) -> ReLU -> max-pool 2 -> conv 5x5 x16 -> ReLU
    -> max-pool 2 -> fc 120 -> ReLU -> fc 84 -> ReLU -> fc 10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x))).flatten(1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class SimpleCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.pool = nn.MaxPool2d(2)
        self.dropout_conv = nn.Dropout(0.25)
        self.fc1 = nn.Linear(64 * 12 * 12, 128)
        self.dropout_fc = nn.Dropout(0.5)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = self.dropout_conv(self.pool(x)).flatten(1)
        x = self.dropout_fc(torch.relu(self.fc1(x)))
        return self.fc2(x)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--model", default="simple-cnn", choices=["simple-cnn", "lenet5"])
    p.add_argument("--tf32", action="store_true",
                   help="TF32 tensor cores in matrix products too (PyTorch's default: only in cuDNN convolutions)")
    # Options meant for `strata bench` only (--backend, --device-index, ...) are ignored.
    args, _ = p.parse_known_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    d = find_mnist(args.data_dir)
    images = read_idx(os.path.join(d, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz"))
    device = torch.device(args.device)
    model = (LeNet5() if args.model == "lenet5" else SimpleCnn()).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    bs = args.batch_size
    n_batches = len(images) // bs

    def step(i):
        s = (i % n_batches) * bs
        x = torch.from_numpy(images[s : s + bs].astype(np.float32)).unsqueeze(1)
        x = (x / 255.0 - 0.1307) / 0.3081
        x = x.to(device)
        y = torch.from_numpy(labels[s : s + bs].astype(np.int64)).to(device)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for i in range(args.warmup):
        step(i).item()
    t0 = time.perf_counter()
    for i in range(args.steps):
        loss = step(args.warmup + i)
    loss.item()
    secs = time.perf_counter() - t0
    print(json.dumps({
        "bench": "cnn-train" if args.model == "simple-cnn" else "lenet5-train",
        "backend": "pytorch",
        "value": round(args.steps * bs / secs, 1),
        "unit": "img/s",
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "tf32_matmul": args.tf32,
    }))


if __name__ == "__main__":
    main()
