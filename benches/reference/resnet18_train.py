"""PyTorch baseline of `cargo xtask bench resnet18-train`: torchvision's ResNet-18 (random
weights, 1000 classes) in train mode, batches of 8 fixed 224x224 images, cross-entropy,
backward, SGD(lr=0.01, momentum=0.9, weight_decay=1e-4).

    ~/.cache/strata/venv/bin/python benches/reference/resnet18_train.py [--steps 10] [--device cuda]

The last stdout line is {"bench": "resnet18-train", "backend": "pytorch", "value": img/s, ...}.
"""

import json

import torch
from torch import nn

from resnet_common import device_name, fixed_input, parse_args, resnet18, time_steps


def main():
    args = parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = resnet18().to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    x = fixed_input(args.batch_size, device)
    y = (torch.arange(args.batch_size) * 37 % 1000).to(device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    secs = time_steps(step, args.warmup, args.steps, device)
    print(json.dumps({
        "bench": "resnet18-train",
        "backend": "pytorch",
        "value": round(args.steps * args.batch_size / secs, 1),
        "unit": "img/s",
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
