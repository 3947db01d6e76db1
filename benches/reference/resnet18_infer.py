"""PyTorch baseline of `cargo xtask bench resnet18-infer`: torchvision's ResNet-18 (random
weights, 1000 classes) in eval mode under no_grad, batches of 8 fixed 224x224 images.

    ~/.cache/strata/venv/bin/python benches/reference/resnet18_infer.py [--steps 10] [--device cuda]

The last stdout line is {"bench": "resnet18-infer", "backend": "pytorch", "value": img/s, ...}.
"""

import json

import torch

from resnet_common import device_name, fixed_input, parse_args, resnet18, time_steps


def main():
    args = parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = resnet18().to(device).eval()
    x = fixed_input(args.batch_size, device)

    def step():
        with torch.no_grad():
            return model(x).sum()

    secs = time_steps(step, args.warmup, args.steps, device)
    print(json.dumps({
        "bench": "resnet18-infer",
        "backend": "pytorch",
        "value": round(args.steps * args.batch_size / secs, 1),
        "unit": "img/s",
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
