"""PyTorch baseline of `cargo xtask bench lstm-train`.

A character-level language model as in strata-sequence (embedding 65 -> 128 -> LSTM 128 -> 256,
2 layers, batch_first, no dropout between layers -> linear 256 -> 65), batches of 32 windows of
64 characters of tiny Shakespeare (targets shifted by one), cross-entropy over all 32x64
positions, Adam(lr=2e-3). Each timed step draws a batch, copies it to the device, zeroes the
gradients, runs forward from a zero initial state, the loss, backward and a full Adam step.
The vocabulary is the sorted set of characters of input.txt; if tiny-shakespeare/input.txt is
not found (--data-dir, $STRATA_DATA_DIR, datasets/ or ../shared/datasets next to the repo),
random token ids are used and the JSON says "data": "random". Runs on the CPU with as many
threads as the machine has cores, or on a GPU with --device cuda.

    ~/.cache/strata/venv/bin/python benches/reference/lstm_train.py [--steps 30] [--warmup 5] [--device cuda]

The last stdout line is {"bench": "lstm-train", "backend": "pytorch", "value": tokens/s, ...}.
"""

import argparse
import json
import os

import torch
from torch import nn

from resnet_common import device_name, time_steps

VOCAB = 65


def find_shakespeare(data_dir):
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.join(here, "..", "..")
    candidates = [d for d in (data_dir, os.environ.get("STRATA_DATA_DIR")) if d]
    candidates.append(os.path.join(root, "datasets"))
    candidates.append(os.path.join(root, "..", "shared", "datasets"))
    for c in candidates:
        path = os.path.join(c, "tiny-shakespeare", "input.txt")
        if os.path.isfile(path):
            return os.path.normpath(path)
    return None


class CharLstm(nn.Module):
    def __init__(self, vocab, embed=128, hidden=256, layers=2):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True, dropout=0.0)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x):
        out, _ = self.lstm(self.embedding(x))  # zero initial state
        return self.head(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    # Options meant for `strata bench` only (--backend, --device-index, ...) are ignored.
    args, _ = p.parse_known_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    path = find_shakespeare(args.data_dir)
    if path is not None:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        vocab = sorted(set(text))
        index = {ch: i for i, ch in enumerate(vocab)}
        tokens = torch.tensor([index[ch] for ch in text], dtype=torch.int64)
        vocab_size = len(vocab)
        data = "tiny-shakespeare"
    else:
        vocab_size = VOCAB
        tokens = torch.randint(0, vocab_size, (1_000_000,), dtype=torch.int64)
        data = "random"

    device = torch.device(args.device)
    model = CharLstm(vocab_size).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    bs, seq = args.batch_size, args.seq_len
    window = torch.arange(seq + 1)
    gen = torch.Generator().manual_seed(0)

    losses = []

    def step():
        starts = torch.randint(0, len(tokens) - seq - 1, (bs,), generator=gen)
        chunk = tokens[starts[:, None] + window]
        x = chunk[:, :-1].to(device)
        y = chunk[:, 1:].to(device)
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss = loss_fn(logits.reshape(-1, vocab_size), y.reshape(-1))
        loss.backward()
        opt.step()
        losses[:] = [loss]
        return loss

    secs = time_steps(step, args.warmup, args.steps, device)
    print(json.dumps({
        "bench": "lstm-train",
        "backend": "pytorch",
        "value": round(args.steps * bs * seq / secs, 1),
        "unit": "tokens/s",
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "warmup": args.warmup,
        "batch_size": bs,
        "seq_len": seq,
        "vocab": vocab_size,
        "data": data,
        "loss": round(losses[-1].item(), 4),
    }))


if __name__ == "__main__":
    main()
