"""Shared by the baselines: the ResNet-18 baselines' arguments, model and fixed input (the same as
Strata's benchmark), and the timing and device name of every baseline."""

import argparse
import os
import time

import torch


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    # Options meant for `strata bench` only (--backend, --device-index, ...) are ignored.
    args, _ = p.parse_known_args()
    torch.set_num_threads(args.threads)
    return args


def fixed_input(batch_size, device):
    """strata_tensor::parity::fixed_data: ((i * 7919 % 1000) / 500) - 1, in [-1, 1)."""
    n = batch_size * 3 * 224 * 224
    i = torch.arange(n, dtype=torch.int64)
    return ((i * 7919 % 1000).float() / 500.0 - 1.0).reshape(batch_size, 3, 224, 224).to(device)


def time_steps(step, warmup, steps, device):
    """Seconds of `steps` calls of `step` after `warmup` untimed ones (the last result is read back,
    so that queued GPU work is counted)."""
    for _ in range(warmup):
        step().item()
    t0 = time.perf_counter()
    for _ in range(steps):
        out = step()
    out.item()
    return time.perf_counter() - t0


def device_name(device):
    return str(device) if device.type == "cpu" else torch.cuda.get_device_name(device)


def resnet18():
    """torchvision's ResNet-18 (random weights); where torchvision is not installed, the same
    network written out (torchvision's layout and initialisation)."""
    try:
        import torchvision

        return torchvision.models.resnet18(weights=None)
    except ImportError:
        return _ResNet18()


class _BasicBlock(torch.nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + identity)


class _ResNet18(torch.nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], 64
        for i, width in enumerate([64, 128, 256, 512]):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(_BasicBlock(cin, width, stride), _BasicBlock(width, width, 1)))
            cin = width
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
