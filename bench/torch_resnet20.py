#!/usr/bin/env python3
"""torch_resnet20.py: the PyTorch float32 peer of `wageubn train` for bench/train_vs_torch.sh.

The network of models/resnet.c in PyTorch: pre-activation ResNet-20 (v2) for 28x28x1
inputs, a 3x3 stem to 16 channels, three stages of three basic blocks of widths 16,
32, 64 (BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3 plus the shortcut; a 1x1 projection of
the first normalized activation where the stride or width changes), then BN-ReLU,
global average pooling and a fully connected layer without bias; 271,984 parameters,
as wageubn prints. One training step: forward, cross-entropy, backward, SGD with
momentum 0.9 and weight decay 1e-4, batch 128, on batches of the Fashion-MNIST
training images (normalized as wageubn does; the first --images of them, in order).

Prints one line: "torch float32 resnet20: N img/s (batch 128, T threads, S steps)",
the images/s of the timed steps (after --warmup untimed ones), which is what
wageubn's summary.json calls train_img_per_s (data loading included: here the batch
is sliced from a tensor in memory, wageubn assembles it from raw pixels).

Needs Debian's python3-torch and python3-numpy (for /usr/bin/python3)."""
import argparse
import gzip
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.proj = nn.Conv2d(cin, cout, 1, stride, 0, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        a1 = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(a1))))
        return out + (self.proj(a1) if self.proj is not None else x)


class ResNet20(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        blocks, cin = [], 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(Block(cin, width, stride if i == 0 else 1))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, classes, bias=False)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        x = F.adaptive_avg_pool2d(F.relu(self.bn(x)), 1).flatten(1)
        return self.fc(x)


def read_idx(path, magic):
    with gzip.open(path, "rb") as f:
        data = f.read()
    if struct.unpack(">I", data[:4])[0] != magic:
        sys.exit(f"{path}: not an IDX file (magic)")
    dims = struct.unpack(">" + "I" * (magic & 0xFF), data[4:4 + 4 * (magic & 0xFF)])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--images", type=int, default=12800, help="training images used (as train_speed.sh)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    x = read_idx(f"{a.root}/train-images-idx3-ubyte.gz", 0x803)[: a.images]
    y = read_idx(f"{a.root}/train-labels-idx1-ubyte.gz", 0x801)[: a.images]
    # wageubn's fashion-mnist normalization: (v / 255 - 0.2860) / 0.3530
    xs = torch.from_numpy(((x.astype(np.float32) / 255 - 0.2860) / 0.3530)[:, None, :, :].copy())
    ys = torch.from_numpy(y.astype(np.int64))
    model = ResNet20()
    nparams = sum(t.numel() for t in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    steps = a.images // a.batch
    model.train()

    def step(i):
        xb, yb = xs[i * a.batch:(i + 1) * a.batch], ys[i * a.batch:(i + 1) * a.batch]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()

    for i in range(min(a.warmup, steps)):
        step(i)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    dt = time.perf_counter() - t0
    print(f"torch float32 resnet20: {steps * a.batch / dt:.1f} img/s (batch {a.batch}, {a.threads} threads, "
          f"{steps} steps, {nparams} parameters, torch {torch.__version__})")


if __name__ == "__main__":
    main()
