"""How long ``--workers`` processes take to start: ``spawn`` (what the runner used before) against
``forkserver`` with resnas.runners preloaded (what it uses now, where the platform has it).

Each measurement runs in a fresh parent interpreter that has imported resnas.runners, as the CLI has; it
starts N worker processes through ``ctx.Process(target=..., daemon=True)`` as the runner does, twice (the
search's launch, then the confirmation's), and times from ``start()`` to each worker's first line of
work. Medians over ``--repeats`` parents, with the load (/proc/loadavg).

    python benchmarks/bench_worker_start.py --workers 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import time
from pathlib import Path

import resnas.runners  # noqa: F401  # what a worker's target needs imported, as in the runner


def first_line(queue) -> None:
    queue.put(time.time())  # the worker's first line of work


def launch(ctx, workers: int) -> list[float]:
    """Seconds from each worker's start() to its first line of work."""
    queue = ctx.Queue()
    procs = [ctx.Process(target=first_line, args=(queue,), daemon=True) for _ in range(workers)]
    started = []
    for p in procs:
        started.append(time.time())
        p.start()
    arrived = sorted(queue.get(timeout=300) for _ in procs)
    for p in procs:
        p.join()
    return [round(a - s, 3) for a, s in zip(arrived, started)]


def parent(method: str, workers: int) -> dict:
    if method == "forkserver":
        mp.set_forkserver_preload(["resnas.runners"])
    ctx = mp.get_context(method)
    return dict(search=launch(ctx, workers), confirmation=launch(ctx, workers))


def _load() -> str:
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parent", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.parent:
        print(json.dumps(parent(args.parent, args.workers)))
        return
    results: dict[tuple[str, str], list[float]] = {}
    methods = [m for m in ("spawn", "forkserver") if m in mp.get_all_start_methods()]
    print(f"load before: {_load()}; {args.workers} workers, {args.repeats} fresh parents per method")
    for _ in range(args.repeats):  # methods alternate: a drifting load hits both alike
        for method in methods:
            out = subprocess.run([sys.executable, __file__, "--parent", method, "--workers", str(args.workers)],
                                 capture_output=True, text=True, check=True)
            runs = json.loads(out.stdout)
            for launch_name, seconds in runs.items():
                results.setdefault((method, launch_name), []).append(max(seconds))
    for (method, launch_name), lasts in results.items():
        print(f"{method:10s} {launch_name:12s}: last worker at work after {statistics.median(lasts):.2f} s "
              f"(median; each: {', '.join(f'{s:.2f}' for s in lasts)})")
    print(f"load after: {_load()}")


if __name__ == "__main__":
    main()
