"""`transformers` baseline of `cargo xtask bench gpt2-decode`.

GPT2LMHeadModel with GPT-2 small's configuration (GPT2Config(): 124M parameters, 50,257-token
head tied to the embedding), random weights (torch.manual_seed(0)), fp32, eval mode, batch 1: a
prompt of 16 tokens (ids (i * 7919 + 13) % 50257, as Strata's side), then 64 new tokens by
`generate(do_sample=False, min_new_tokens=64, max_new_tokens=64)` with its KV cache. The prompt
time is a forward pass over the prompt plus the choice of the first token; decode tokens/s
counts the 63 tokens after it: (generate time - prompt time) / 63, averaged over --steps runs
after --warmup. Runs on the CPU with as many threads as the machine has cores (or --device cuda).
`--dtype` is accepted and ignored: this baseline is always transformers' fp32.

    ~/.cache/strata/venv/bin/python benches/reference/gpt2_decode.py [--steps 3] [--warmup 1]

The last stdout line is {"bench": "gpt2-decode", "backend": "pytorch", "value": tokens/s, ...}.
"""

import argparse
import json
import os
import time

import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

from resnet_common import device_name

PROMPT, NEW = 16, 64


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    # Options meant for `strata bench` only (--backend, --dtype, ...) are ignored.
    args, _ = p.parse_known_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    config = GPT2Config()
    model = GPT2LMHeadModel(config).to(device).eval()
    ids = torch.tensor([[(i * 7919 + 13) % config.vocab_size for i in range(PROMPT)]], device=device)
    mask = torch.ones_like(ids)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def prefill_seconds():
        # The prompt's forward pass and the choice of the first token, with a fresh cache.
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model(ids, attention_mask=mask, use_cache=True)
            out.logits[:, -1].argmax(-1).item()
        return time.perf_counter() - t0

    def generate_seconds():
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(
                ids,
                attention_mask=mask,
                do_sample=False,
                max_new_tokens=NEW,
                min_new_tokens=NEW,
                pad_token_id=config.eos_token_id,
            )
        sync()
        assert out.shape[1] == PROMPT + NEW
        return time.perf_counter() - t0

    for _ in range(args.warmup):
        generate_seconds()
        prefill_seconds()
    prompt_s, total_s = 0.0, 0.0
    for _ in range(args.steps):
        total_s += generate_seconds()
        prompt_s += prefill_seconds()
    decode_s = total_s - prompt_s
    print(json.dumps({
        "bench": "gpt2-decode",
        "backend": "pytorch",
        "value": round(args.steps * (NEW - 1) / decode_s, 1),
        "unit": "tokens/s",
        "dtype": "f32",
        "prompt_tokens_per_s": round(args.steps * PROMPT / prompt_s, 1),
        "device": device_name(device),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "runs": args.steps,
        "warmup": args.warmup,
    }))


if __name__ == "__main__":
    main()
