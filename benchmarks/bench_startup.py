"""Start-up time of the ``resnas`` command: ``--help``, ``--version`` and a one-line argument error.

``import resnas`` imports torch and timm to register its networks with timm; the ``resnas`` command loads a
command's module only when that command runs, so ``--help`` and ``--version`` need neither. Rows, each a
fresh interpreter, interleaved within each round (median of ``--rounds``):

- ``import torch, timm``: what every command that builds a network pays;
- ``import resnas``: that plus the zoo;
- ``resnas --help``, ``resnas --version`` and ``resnas search --trials x`` (a typo: one line, exit 2, after
  loading the search command);
- the reference: what the CLI imported up front before issue 15 (``resnas.cli`` plus the search layer,
  Optuna, scipy and the reproduction), i.e. the old cost of ``--help``.

    python benchmarks/bench_startup.py               # 7 rounds
    python benchmarks/bench_startup.py --rounds 1    # smoke test
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

ROWS = {
    "import torch, timm": [sys.executable, "-c", "import torch, timm"],
    "import resnas": [sys.executable, "-c", "import resnas"],
    "resnas --help": [sys.executable, "-m", "resnas", "--help"],
    "resnas --version": [sys.executable, "-m", "resnas", "--version"],
    "resnas search --trials x (error)": [sys.executable, "-m", "resnas", "search", "--trials", "x"],
    "reference: CLI + search layer imported up front": [
        sys.executable, "-c", "import resnas.cli, resnas.runners, resnas.storage, resnas.reproduce"],
}


def seconds(command: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + sys) of one run: on a shared machine the CPU time is the steadier."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in ROWS}
    for command in ROWS.values():  # untimed warm-up: the page cache, .pyc files
        seconds(command)
    for _ in range(args.rounds):
        for name, command in ROWS.items():
            times[name].append(seconds(command))
    def median(name: str, i: int) -> float:
        return statistics.median(t[i] for t in times[name])

    floor = "import torch, timm"
    print(f"| command | wall s | CPU s | CPU vs torch, timm |  (medians of {args.rounds} rounds)")
    print("|---|---|---|---|")
    for name in times:
        print(f"| {name} | {median(name, 0):.2f} | {median(name, 1):.2f} | {median(name, 1) / median(floor, 1):.2f} |")


if __name__ == "__main__":
    main()
