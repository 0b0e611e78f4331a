"""Training throughput of the resnas trainer against a minimal hand-written PyTorch loop.

Both train the same network on the same data with the same augmentation, batch, optimizer and
per-epoch validation, in one process and in lockstep: after each epoch of ``resnas.train`` (in its
``on_epoch`` callback) the bare loop trains one epoch, so a drifting machine load hits both alike.
The goal is a ratio of at least 0.97.

    python benchmarks/bench_train.py                     # pre-act ResNet-20 on digits, CPU
    python benchmarks/bench_train.py --model "depth=8,widths=8-16-32" --epochs 10 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from resnas.data import augment_batch, load_data
from resnas.network import build
from resnas.recipe import Recipe
from resnas.train import train

WARMUP_EPOCHS = 2  # first epochs of each side, not timed: allocator and caches warming up


class HandWritten:
    """The same training as a bare loop: index the tensors, augment, step; then validate."""

    def __init__(self, spec: str, data, batch: int):
        self.model = build(spec)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        self.train, self.val, self.batch = data.train, data.val, batch

    def epoch(self) -> float:
        tr, va, b, model = self.train, self.val, self.batch, self.model
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(tr))
        for i in range(len(tr) // b):
            idx = perm[i * b:(i + 1) * b]
            x = (augment_batch(tr.images[idx], tr.augment).float() - tr.mean) / tr.std
            loss = F.cross_entropy(model(x), tr.labels[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        model.eval()
        with torch.no_grad():
            for i in range(0, len(va), 2 * b):
                x = (va.images[i:i + 2 * b].float() - va.mean) / va.std
                (model(x).argmax(1) != va.labels[i:i + 2 * b]).sum().item()
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="depth=20,in_chans=1")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_data("digits")
    hand = HandWritten(args.model, data, args.batch_size)
    times = {"resnas trainer": [], "hand-written loop": []}

    def on_epoch(report) -> None:
        times["resnas trainer"].append(report.seconds)
        times["hand-written loop"].append(hand.epoch())

    train(args.model, data, args.epochs, Recipe.digits(batch_size=args.batch_size), on_epoch=on_epoch)
    images = (len(data.train) // args.batch_size) * args.batch_size
    print(f"{args.model} on digits, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"{args.epochs - WARMUP_EPOCHS} timed epochs each (train {images} images + val {len(data.val)})")
    rate = {}
    for name, secs in times.items():
        median = statistics.median(secs[WARMUP_EPOCHS:])
        rate[name] = images / median
        print(f"  {name:18s} median {median * 1e3:8.1f} ms/epoch  {rate[name]:9.0f} train images/s")
    # each trainer epoch and the bare epoch right after it share the machine's load of the moment
    paired = [h / t for t, h in zip(times["resnas trainer"], times["hand-written loop"])][WARMUP_EPOCHS:]
    print(f"  ratio trainer / hand-written: {rate['resnas trainer'] / rate['hand-written loop']:.3f} of the medians, "
          f"{statistics.median(paired):.3f} median of per-epoch pairs (goal >= 0.97)")


if __name__ == "__main__":
    main()
