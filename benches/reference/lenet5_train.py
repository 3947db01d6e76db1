"""PyTorch baseline of `cargo xtask bench lenet5-train`: cnn_train.py with --model lenet5.

    ~/.cache/strata/venv/bin/python benches/reference/lenet5_train.py [--steps 50] [--device cuda]
"""

import sys

from cnn_train import main

if __name__ == "__main__":
    main(sys.argv[1:] + ["--model", "lenet5"])
