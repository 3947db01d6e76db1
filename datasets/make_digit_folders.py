"""Writes MNIST (or Fashion-MNIST) digits as an image folder, the layout `train-vision --arch`
reads: OUT/train/<class>/NNNNN.png and OUT/val/<class>/NNNNN.png. Used by the transfer demo of
docs/vision.md: pretrain on some classes, then fine-tune on others with few labels.

    ~/.cache/strata/venv/bin/python datasets/make_digit_folders.py OUT \\
        --classes 0,1,2,3,4 --train-per-class 1000 --val-per-class 200 [--dataset-dir datasets/mnist]

Training images come from MNIST's training set (the first N of each class), validation images
from its test set. Needs numpy and Pillow.
"""

import argparse
import gzip
import os
import struct

import numpy as np
from PIL import Image


def read_idx(path):
    opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndims = struct.unpack(">HBB", data[:4])
    assert zero == 0 and dtype == 8, f"{path}: not an IDX file of bytes"
    dims = struct.unpack(">" + "I" * ndims, data[4 : 4 + 4 * ndims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndims).reshape(dims)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    p.add_argument("--train-per-class", type=int, default=1000)
    p.add_argument("--val-per-class", type=int, default=200)
    p.add_argument("--dataset-dir", default=os.path.join(here, "mnist"))
    args = p.parse_args()
    classes = [int(c) for c in args.classes.split(",")]
    for split, prefix, per_class in [("train", "train", args.train_per_class), ("val", "t10k", args.val_per_class)]:
        images = read_idx(os.path.join(args.dataset_dir, f"{prefix}-images-idx3-ubyte.gz"))
        labels = read_idx(os.path.join(args.dataset_dir, f"{prefix}-labels-idx1-ubyte.gz"))
        for c in classes:
            folder = os.path.join(args.out, split, str(c))
            os.makedirs(folder, exist_ok=True)
            for n, i in enumerate(np.flatnonzero(labels == c)[:per_class]):
                Image.fromarray(images[i]).save(os.path.join(folder, f"{i:05d}.png"))
    print(f"{args.out}: classes {classes}, {args.train_per_class} train and {args.val_per_class} val images per class")


if __name__ == "__main__":
    main()
