#!/usr/bin/env python3
"""gpu_torch.py: the PyTorch peer of bench_gpu on the same GPU (bench/gpu.sh).

torchvision's ResNet-18 and ResNet-50 at 224x224, batch 128 (--batch), 1000 classes,
in the configuration PyTorch users train fastest with on Hopper: bf16 autocast, the
channels_last memory format, cuDNN autotuning (torch.backends.cudnn.benchmark), SGD
with momentum 0.9 and weight decay 1e-4. Synthetic data already on the GPU, as
bench_gpu's: one training step is forward, cross-entropy, backward and the update.
After --warmup untimed steps, each of --steps steps is timed alone (CUDA synchronized
before the clock stops); prints the median as images/s, one "result" line per model
in the format of bench_gpu ("result torch_resnet18_train_img_per_s N"), and the peak
of the GPU memory its caching allocator reserved over the timed steps.

Needs torch and torchvision with CUDA (the device machine's Python has both)."""
import argparse
import statistics
import sys
import time

import torch

try:
    import torchvision
except ImportError:
    print("gpu_torch.py: torchvision is not installed: no peer to time", file=sys.stderr)
    sys.exit(77)


def time_model(name, batch, warmup, steps):
    model = getattr(torchvision.models, name)(num_classes=1000).cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 224, 224, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device="cuda")
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"torch {name} bf16 autocast channels_last, batch {batch}: {med * 1e3:.1f} ms, "
          f"{batch / med:.0f} images/s (median of {steps})")
    print(f"result torch_{name}_train_img_per_s {batch / med:.1f}")
    gib = torch.cuda.max_memory_reserved() / 2**30
    print(f"torch {name}: {gib:.2f} GiB of GPU memory reserved at the peak of the timed steps")
    print(f"result torch_{name}_gpu_mem_gib {gib:.2f}")
    del model, opt, x, y
    torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--models", default="resnet18,resnet50")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_torch.py: no CUDA device for torch", file=sys.stderr)
        sys.exit(77)
    torch.backends.cudnn.benchmark = True
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {torch.cuda.get_device_name(0)}")
    for name in a.models.split(","):
        time_model(name, a.batch, a.warmup, a.steps)


if __name__ == "__main__":
    main()
