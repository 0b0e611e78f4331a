"""Model speed and memory, side by side with references in one process (medians of interleaved runs).

1. train-step throughput of resnas `preact_resnet50` against timm's `resnetv2_50` (same topology);
2. the same for `preact_resnet164` against a plain PyTorch pre-activation ResNet-164 written below;
3. peak memory of a ResNet-1001 forward+backward with and without gradient checkpointing.

    python benchmarks/bench_models.py                 # CPU: small images and batches
    python benchmarks/bench_models.py --device cuda   # GPU: bf16 autocast + channels_last by default
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

import resnas  # noqa: F401  (registers the models)


# ---- a plain reference: pre-activation bottleneck ResNet-164 in straightforward PyTorch ----------
class PlainBottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, stride: int, first: bool):
        super().__init__()
        cout = 4 * mid
        self.first = first
        self.bn1 = nn.BatchNorm2d(cin) if not first else None
        self.conv1 = nn.Conv2d(cin, mid, 1, stride, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.proj = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = x if self.first else F.relu(self.bn1(x))
        shortcut = self.proj(out) if self.proj is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + shortcut


class PlainPreActResNet164(nn.Module):
    def __init__(self, num_classes: int = 10, n: int = 18):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        units, cin = [], 16
        for i, mid in enumerate((16, 32, 64)):
            for j in range(n):
                units.append(PlainBottleneck(cin, mid, 2 if i and not j else 1, first=not i and not j))
                cin = 4 * mid
        self.units = nn.Sequential(*units)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.units(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.bn(x)), 1).flatten(1))


# ---- timing ---------------------------------------------------------------------------------------
def make_step(model: nn.Module, args, size: int):
    device = torch.device(args.device)
    model = model.to(device).train()
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(args.batch, 3, size, size, device=device).to(memory_format=fmt)
    y = torch.randint(0, model_num_classes(model), (args.batch,), device=device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def step():
        with amp:
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def model_num_classes(model: nn.Module) -> int:
    return getattr(model, "num_classes", None) or model.fc.out_features


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def compare(name_a, model_a, name_b, model_b, args, size):
    """Images/s of two models, timed in alternation so both see the same machine state."""
    steps = {name_a: make_step(model_a, args, size), name_b: make_step(model_b, args, size)}
    for step in steps.values():  # warm-up (cudnn autotune, allocator)
        for _ in range(args.warmup):
            step()
    rates = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            sync(args.device)
            t = time.perf_counter()
            for _ in range(args.steps):
                step()
            sync(args.device)
            rates[name].append(args.batch * args.steps / (time.perf_counter() - t))
    med = {name: statistics.median(r) for name, r in rates.items()}
    print(f"{name_a:>28}: {med[name_a]:9.1f} img/s   {name_b:>28}: {med[name_b]:9.1f} img/s   "
          f"ratio {med[name_a] / med[name_b]:.3f}  (median of {args.repeats}, batch {args.batch}, {size}px)")
    return med[name_a] / med[name_b]


# ---- memory ---------------------------------------------------------------------------------------
MEMORY_CHILD = r"""
import json, os, sys, threading, time, torch, timm, resnas
ckpt, batch, device = sys.argv[1] == "1", int(sys.argv[2]), sys.argv[3]
model = timm.create_model("preact_resnet1001").to(device).train()
model.set_grad_checkpointing(ckpt)
x = torch.randn(batch, 3, 32, 32, device=device)
y = torch.zeros(batch, dtype=torch.long, device=device)

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

peak, done = [0], threading.Event()
def sample():  # torch ops release the GIL, so a thread sees the RSS high-water mark of the step
    while not done.is_set():
        peak[0] = max(peak[0], rss()); time.sleep(0.0005)

if device == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
else:
    base = rss(); threading.Thread(target=sample, daemon=True).start()
torch.nn.functional.cross_entropy(model(x), y).backward()
if device == "cuda":
    torch.cuda.synchronize(); top = torch.cuda.max_memory_allocated()
else:
    done.set(); time.sleep(0.01); top = max(peak[0], rss())
print(json.dumps(dict(peak_mib=(top - base) / 2**20)))
"""


def step_memory(ckpt: bool, args) -> float:
    """Peak memory a ResNet-1001 step adds over the built model, in a fresh process each (MiB):
    CUDA's allocator peak on a GPU, the sampled resident set on a CPU."""
    device = "cuda" if args.device.startswith("cuda") else "cpu"
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(int(ckpt)), str(args.mem_batch), device],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def main() -> None:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if cuda else "cpu")
    p.add_argument("--batch", type=int, default=128 if cuda else 32)
    p.add_argument("--imagenet-size", type=int, default=224 if cuda else 64)
    p.add_argument("--steps", type=int, default=10 if cuda else 1)
    p.add_argument("--repeats", type=int, default=7 if cuda else 5)
    p.add_argument("--warmup", type=int, default=5 if cuda else 1)
    p.add_argument("--mem-batch", type=int, default=64 if cuda else 16)
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=cuda)
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=cuda)
    args = p.parse_args()
    torch.backends.cudnn.benchmark = True
    print(f"device {args.device} ({torch.cuda.get_device_name() if cuda else 'CPU'}), torch {torch.__version__}, "
          f"timm {timm.__version__}, bf16 {args.bf16}, channels_last {args.channels_last}, "
          f"threads {torch.get_num_threads()}")
    compare("resnas preact_resnet50", timm.create_model("preact_resnet50"),
            "timm resnetv2_50", timm.create_model("resnetv2_50"), args, args.imagenet_size)
    compare("resnas preact_resnet164", timm.create_model("preact_resnet164"),
            "plain PyTorch ResNet-164", PlainPreActResNet164(), args, 32)
    plain, ckpt = step_memory(False, args), step_memory(True, args)
    print(f"ResNet-1001 step peak memory (batch {args.mem_batch}): plain {plain:.0f} MiB, "
          f"checkpointed {ckpt:.0f} MiB, ratio {ckpt / plain:.3f}")


if __name__ == "__main__":
    main()
