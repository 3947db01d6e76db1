"""PyTorch reference of `cargo xtask train-text`: the same small GPT, recipe and data, trained with
`transformers`' GPT2LMHeadModel, to compare validation loss and wall time on the same machine.

GPT2Config(vocab_size=65 characters of tiny Shakespeare, n_positions=64, n_embd=128, n_layer=4,
n_head=4, no dropout); 90/10 split of the characters; batches of 12 windows of 64+1 characters at
random offsets; AdamW (lr 1e-3 or --lr, betas 0.9/0.99, weight decay 0.1 on every parameter, as Strata's
harness does; --decay-2d-only decays only matrices and embeddings, as nanoGPT does), 100 warm-up
steps then cosine decay to lr / 10, gradient norm clipped at 1, 2000 steps; the validation loss is the
mean over every consecutive window of the validation text (as Strata reports it).

    ~/.cache/strata/venv/bin/python benches/reference/small_gpt_train.py [--steps 2000] [--seed 42] [--decay-2d-only]

The last stdout line is {"valid_loss": ..., "wall_seconds": ..., ...}.
"""

import argparse
import json
import math
import os
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from lstm_train import find_shakespeare


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--decay-2d-only", action="store_true")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args, _ = p.parse_known_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    started = time.perf_counter()
    with open(find_shakespeare(args.data_dir), encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.int64)
    cut = len(ids) * 9 // 10
    train, valid = ids[:cut], ids[cut:]
    block, batch = args.block_size, args.batch_size

    config = GPT2Config(
        vocab_size=len(chars), n_positions=block, n_embd=128, n_layer=4, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    model = GPT2LMHeadModel(config).train()
    if args.decay_2d_only:
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
    else:
        groups = [{"params": list(model.parameters()), "weight_decay": 0.1}]
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.99), eps=1e-8)
    warmup, lr, min_lr = 100, args.lr, args.lr / 10

    def lr_at(t):
        if t < warmup:
            return lr * (t + 1) / warmup
        span = max(args.steps - warmup, 1)
        return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(t - warmup, span) / span))

    window = torch.arange(block + 1)
    gen = torch.Generator().manual_seed(args.seed)
    for t in range(args.steps):
        starts = torch.randint(0, len(train) - block, (batch,), generator=gen)
        chunk = train[starts[:, None] + window]
        for g in opt.param_groups:
            g["lr"] = lr_at(t)
        logits = model(chunk[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(chars)), chunk[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    train_seconds = time.perf_counter() - started

    model.eval()
    n = (len(valid) - 1) // block
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, n, 64):
            rows = torch.stack([valid[j * block:j * block + block + 1] for j in range(i, min(i + 64, n))])
            logits = model(rows[:, :-1]).logits
            total += torch.nn.functional.cross_entropy(
                logits.reshape(-1, len(chars)), rows[:, 1:].reshape(-1), reduction="sum").item()
            count += rows[:, 1:].numel()
    print(json.dumps({
        "valid_loss": round(total / count, 4),
        "last_train_loss": round(loss.item(), 4),
        "steps": args.steps,
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "lr": args.lr,
        "batch_size": batch,
        "decay_2d_only": args.decay_2d_only,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
