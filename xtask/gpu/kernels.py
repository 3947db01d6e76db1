"""Sums CubeCL's kernel profile by kernel: the time each kernel took, over a run.

CubeCL, with `[profiling.logger] level = "basic"` in a `cubecl.toml` of the working directory,
writes one line per kernel launch, `| 1.23ms     | KernelName`. This prints one JSON line: the
total time measured, the kinds of kernel that took the most of it (the name's first part without
its hash: `MatmulEntry`, `SliceKernel`, ...; one kind covers every shape and variant), and the
kernels themselves (name, launches, seconds, share).

    python3 xtask/gpu/kernels.py KERNELS.log [TOP]
"""

import json
import re
import sys

UNITS = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
LINE = re.compile(r"^\|\s*([0-9.]+)(ns|µs|us|ms|s)\s*\|\s*(.+?)\s*$")
HASH = re.compile(r"_[0-9a-f]{8}$")


def kind(name):
    """`SliceKernel_9cd18ef9` → `SliceKernel`; `MatmulEntry | TensorArgs | ..._388e2b50` → `MatmulEntry`."""
    return HASH.sub("", name.split(" | ")[0].strip())


def ranked(table, total, top):
    return [
        {"name": name, "launches": n, "seconds": round(s, 6),
         "share": round(s / total, 4) if total else 0.0}
        for name, (n, s) in sorted(table.items(), key=lambda kv: -kv[1][1])[:top]
    ]


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    kernels = {}
    for line in open(path, errors="replace"):
        m = LINE.match(line)
        if not m:
            continue
        seconds = float(m.group(1)) * UNITS[m.group(2)]
        entry = kernels.setdefault(m.group(3), [0, 0.0])
        entry[0] += 1
        entry[1] += seconds
    kinds = {}
    for name, (n, s) in kernels.items():
        entry = kinds.setdefault(kind(name), [0, 0.0])
        entry[0] += n
        entry[1] += s
    total = sum(s for _, s in kernels.values())
    print(json.dumps({
        "seconds": round(total, 6),
        "launches": sum(n for n, _ in kernels.values()),
        "kinds": ranked(kinds, total, top),
        "kernels": ranked(kernels, total, top),
    }))


if __name__ == "__main__":
    main()
