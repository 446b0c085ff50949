#!/usr/bin/env python3
"""compare_checkpoints.py A B: whether two safetensors checkpoints hold the same tensors,
byte for byte (names, dtypes, shapes and data; the metadata, which records times and
paths, is left out). Prints one line; exit 0 when identical, 1 when not. Standard
library only."""
import json
import struct
import sys


def tensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    return {k: (v["dtype"], tuple(v["shape"]), data[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in header.items() if k != "__metadata__"}


def main():
    a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    if differ:
        print(f"{len(differ)} of {len(a)} tensors differ: {' '.join(differ[:6])}")
        return 1
    print(f"{len(a)} tensors, identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
