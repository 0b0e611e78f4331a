"""Does the on-GPU CIFAR loader keep the GPU busy? preact_resnet164 fed by it vs synthetic GPU tensors.

Both sides run the trainer's own step (resnas.train.train_epoch: bf16 autocast through Accelerate,
channels_last, SGD, the per-iteration schedule, divergence checks) for the same number of steps. One
side draws batches from the in-memory CIFAR-shaped split on the GPU (index, 4-pixel pad + random
crop + flip, normalise, all batched there); the other reuses one batch that is already on the GPU.
The goal is a ratio of at least 0.95.

    python benchmarks/gpu_loader.py                        # random CIFAR-shaped data, 50,000 images
    python benchmarks/gpu_loader.py --data-dir ~/data      # the real CIFAR-10, if it is there
    python benchmarks/gpu_loader.py --model "depth=20" --steps 20 --images 4096   # a quick CPU check
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from resnas.data import CIFAR_STATS, Augment, Data, TensorSplit, load_data
from resnas.network import build
from resnas.recipe import Recipe
from resnas.train import default_precision, make_scheduler, train_epoch
from resnas.zoo import ZOO


def cifar_shaped(n: int) -> Data:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    mean, std = CIFAR_STATS["cifar10"]
    split = TensorSplit(images, labels, mean, std, Augment())
    return Data("cifar-shaped", 10, (3, 32, 32), mean, std, split, split, None)


def first(loader, steps: int):
    """``steps`` batches of ``loader``, starting new epochs as needed."""
    while steps:
        for batch in loader:
            yield batch
            steps -= 1
            if not steps:
                return


def timed(fn, *, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="preact_resnet164", help="a registered name or a spec string")
    parser.add_argument("--data-dir", help="a folder with cifar-10-batches-py/ (default: random CIFAR-shaped data)")
    parser.add_argument("--images", type=int, default=50_000, help="size of the random data set")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()

    from accelerate import Accelerator

    accelerator = Accelerator(mixed_precision=default_precision())
    device = accelerator.device
    data = load_data("cifar10", args.data_dir, download=False) if args.data_dir else cifar_shaped(args.images)
    spec = ZOO[args.model] if args.model in ZOO else args.model
    model = build(spec).to(memory_format=torch.channels_last)
    recipe = Recipe(batch_size=args.batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    loader = data.loader("train", args.batch_size, device=device, generator=torch.Generator().manual_seed(0))
    if args.compile:
        model = torch.compile(model)
    model, prepared_opt, loader = accelerator.prepare(model, optimizer, loader)
    scheduler = make_scheduler(optimizer, recipe, len(loader), epochs=1000)
    x, y = next(iter(loader))
    synthetic = [(x.clone(), y.clone())] * args.steps

    def real() -> None:
        train_epoch(accelerator, model, first(loader, args.steps), prepared_opt, scheduler, 1e9)

    def fake() -> None:
        train_epoch(accelerator, model, synthetic, prepared_opt, scheduler, 1e9)

    real(), fake()  # warm-up: kernels, autotuning, compile
    times = {"on-GPU loader": [], "synthetic tensors": []}
    for _ in range(args.repeats):
        times["on-GPU loader"].append(timed(real, device=device))
        times["synthetic tensors"].append(timed(fake, device=device))
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{args.model} on {name}, {data.name}, batch {args.batch_size}, mixed precision "
          f"{accelerator.mixed_precision}, {args.repeats} x {args.steps} steps")
    rate = {}
    for key, secs in times.items():
        rate[key] = args.steps * args.batch_size / statistics.median(secs)
        print(f"  {key:18s} {rate[key]:9.0f} images/s")
    print(f"  ratio loader / synthetic: {rate['on-GPU loader'] / rate['synthetic tensors']:.3f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
