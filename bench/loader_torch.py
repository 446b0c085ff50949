#!/usr/bin/env python3
"""loader_torch.py DIR [RUNS]: torchvision's peer of bench_loader on the same files.

For every JPEG under DIR/train (the files bench_loader wrote): read the bytes,
torchvision.io.decode_jpeg, RandomResizedCrop(224, scale=(0.05, 1), ratio=(3/4, 4/3))
and RandomHorizontalFlip, as uint8 tensors, one torch thread per process: in this
process (beside bench_loader's 1 worker), and through a DataLoader of 2 worker processes
(beside its 2 workers); the median images/s of RUNS epochs each. Prints "result
torch_loader_Nw_img_per_s X" lines.

Needs Debian's python3-torchvision (for /usr/bin/python3)."""
import os
import statistics
import sys
import time

import torch
import torchvision
from torchvision import transforms
from torchvision.io import decode_jpeg, read_file


class Files(torch.utils.data.Dataset):
    def __init__(self, files, aug):
        self.files, self.aug = files, aug

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return self.aug(decode_jpeg(read_file(self.files[i])))


def main():
    root = os.path.join(sys.argv[1], "train")
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.lower().endswith((".jpeg", ".jpg")))
    aug = transforms.Compose([transforms.RandomResizedCrop(224, scale=(0.05, 1.0), ratio=(3 / 4, 4 / 3)),
                              transforms.RandomHorizontalFlip()])
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}: {len(files)} JPEGs")
    data = Files(files, aug)
    for workers in (1, 2):
        # 1: this process alone; 2: a DataLoader with 2 worker processes (kept across
        # epochs, so that their start is not timed), batches of 32 as bench_loader's
        loader = None if workers == 1 else torch.utils.data.DataLoader(
            data, batch_size=32, num_workers=workers, persistent_workers=True, collate_fn=lambda b: b)
        times = []
        for r in range(runs + (1 if loader else 0)):
            t0 = time.perf_counter()
            if loader is None:
                for i in range(len(data)):
                    data[i]
            else:
                for _ in loader:
                    pass
            if loader is None or r > 0:  # the DataLoader's first epoch starts its workers
                times.append(time.perf_counter() - t0)
        ips = len(files) / statistics.median(times)
        print(f"{workers} worker{'s' if workers > 1 else ''}: {ips:.0f} images/s, median of {runs}")
        print(f"result torch_loader_{workers}w_img_per_s {ips:.1f}")


if __name__ == "__main__":
    main()
