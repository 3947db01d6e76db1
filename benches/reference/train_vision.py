"""PyTorch counterpart of `cargo xtask train-vision` (the simple CNN on MNIST), for the time to a
given test accuracy on the same machine.

The same recipe as Strata's job: the first 55,000 training images to train on (shuffled each
epoch), the last 5,000 for validation after each epoch, the 10,000 test images at the end;
normalised pixels; Adam (PyTorch's defaults) at --lr with --warmup-steps of linear warm-up, then
cosine annealing per step down to lr/100; batch --batch-size; the network of cnn_train.py
(dropout 0.25 and 0.5 included). The wall time counts from reading the data to the test
accuracy, as Strata's does (Strata's also writes weights, metrics and pictures).

    ~/.cache/strata/venv/bin/python benches/reference/train_vision.py [--epochs 1] [--lr 3e-3] [--warmup-steps 100]

The last stdout line is {"job": "train-vision", "backend": "pytorch", "test_accuracy": ..., "wall_seconds": ...}.
"""

import argparse
import json
import math
import os
import time

import numpy as np
import torch
from torch import nn

from cnn_train import SimpleCnn, find_mnist, read_idx

MEAN, STD = 0.1307, 0.3081


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--valid-size", type=int, default=5000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args(argv)

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    d = find_mnist(args.data_dir)

    def load(prefix):
        x = read_idx(os.path.join(d, f"{prefix}-images-idx3-ubyte.gz"))
        y = read_idx(os.path.join(d, f"{prefix}-labels-idx1-ubyte.gz"))
        x = (torch.from_numpy(x.astype(np.float32)).unsqueeze(1) / 255.0 - MEAN) / STD
        return x, torch.from_numpy(y.astype(np.int64))

    x_all, y_all = load("train")
    cut = len(x_all) - args.valid_size
    train, valid = (x_all[:cut], y_all[:cut]), (x_all[cut:], y_all[cut:])
    test = load("t10k")

    model = SimpleCnn()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    bs = args.batch_size
    per_epoch = math.ceil(cut / bs)
    total = args.epochs * per_epoch
    warmup = min(args.warmup_steps, total)

    def lr_at(t):
        if t < warmup:
            return args.lr * (t + 1) / warmup
        span = max(total - warmup, 1)
        low = args.lr * 0.01
        return low + 0.5 * (args.lr - low) * (1 + math.cos(math.pi * min(t - warmup, span) / span))

    @torch.no_grad()
    def accuracy(x, y):
        model.eval()
        correct = sum((model(x[s : s + 1000]).argmax(1) == y[s : s + 1000]).sum().item()
                      for s in range(0, len(x), 1000))
        model.train()
        return correct / len(x)

    step = 0
    history = []
    for epoch in range(args.epochs):
        order = torch.from_numpy(rng.permutation(cut))
        for s in range(0, cut, bs):
            idx = order[s : s + bs]
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            opt.zero_grad(set_to_none=True)
            loss_fn(model(train[0][idx]), train[1][idx]).backward()
            opt.step()
            step += 1
        history.append({"epoch": epoch + 1, "valid_accuracy": accuracy(*valid),
                        "seconds": round(time.perf_counter() - started, 1)})
        print(json.dumps(history[-1]), flush=True)
    test_accuracy = accuracy(*test)
    print(json.dumps({
        "job": "train-vision",
        "backend": "pytorch",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "epochs": args.epochs,
        "batch_size": bs,
        "lr": args.lr,
        "warmup_steps": args.warmup_steps,
        "seed": args.seed,
        "test_accuracy": test_accuracy,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }))


if __name__ == "__main__":
    main()
