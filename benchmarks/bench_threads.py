"""Training throughput with 1 torch thread against torch's default, side by side in one process.

ResNet-20 (pre-act, 1 input channel) on digits at batch 128: rounds alternate a timed block of steps with
1 thread and one with torch's default thread count, so a drifting machine load hits both alike; the
medians and their ratio are printed with the machine's load (/proc/loadavg) before and after, and what
resnas.threads would choose here.

    python benchmarks/bench_threads.py                 # quiet machine
    python -c 'while True: pass' & python -c 'while True: pass' & python benchmarks/bench_threads.py  # loaded
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from resnas.data import augment_batch, load_data
from resnas.network import build
from resnas.threads import choose_threads


def _load() -> str:
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "n/a"


def images_per_second(model, opt, data, batch: int, steps: int) -> float:
    """``steps`` SGD steps on random batches of the training split; images per second."""
    tr = data.train
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(len(tr), (batch,))
        x = (augment_batch(tr.images[idx], tr.augment).float() - tr.mean) / tr.std
        loss = F.cross_entropy(model(x), tr.labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="depth=20,in_chans=1")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    default = torch.get_num_threads()
    data = load_data("digits")
    model = build(args.model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    print(f"load before: {_load()}; torch default {default} threads; resnas.threads: {choose_threads().line()}")
    images_per_second(model, opt, data, args.batch, 3)  # warm-up: allocator and caches
    seen: dict[int, list[float]] = {1: [], default: []}
    for _ in range(args.rounds):
        for threads in seen:
            torch.set_num_threads(threads)
            seen[threads].append(images_per_second(model, opt, data, args.batch, args.steps))
    one, many = statistics.median(seen[1]), statistics.median(seen[default])
    print(f"{args.model} batch {args.batch}, {args.rounds} rounds x {args.steps} steps, median img/s: "
          f"1 thread {one:,.0f}, {default} threads (default) {many:,.0f}; 1 thread / default = {one / many:.2f}")
    print(f"load after: {_load()}")


if __name__ == "__main__":
    main()
