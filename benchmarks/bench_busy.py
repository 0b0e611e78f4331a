"""A command's wall and CPU time on this machine, quiet or with a second job busy on every core.

Runs the command (default: the README's main job, ``resnas search``) in a fresh temporary folder with
``--code DIR`` on PYTHONPATH (a checkout of another commit: before / after), optionally beside ``--busy N``
processes that spin on a core each, and prints one Markdown row: the code, the busy processes, the load
average (1 min) at the start and end, wall seconds, the command's CPU seconds, and its exit code. A run past
``--timeout`` is stopped and reported as ">= TIMEOUT s", with the lines it printed last.

    python benchmarks/bench_busy.py                               # quiet, this checkout
    python benchmarks/bench_busy.py --busy 2                      # a second job busy on both cores
    python benchmarks/bench_busy.py --code /work/before --busy 2 --timeout 900
    python benchmarks/bench_busy.py -- reproduce table1 --quick --rows 1,2
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _spin() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def run(command: list[str], code: str | None, busy: int, timeout: float) -> dict:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RESNAS_STORAGE"):
        env.pop(name, None)  # what a new user's shell has
    if code:
        env["PYTHONPATH"] = str(Path(code).resolve())
    spinners = [_spin() for _ in range(busy)]
    try:
        if busy:
            time.sleep(5)  # let the load average see them
        load_start, start = _load(), time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with tempfile.TemporaryDirectory() as cwd:
            proc = subprocess.Popen([sys.executable, "-m", "resnas", *command], cwd=cwd, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                out, _ = proc.communicate(timeout=timeout)
                rc: int | str = proc.returncode
            except subprocess.TimeoutExpired:
                proc.kill()
                out, rc = proc.communicate()[0], "timeout"
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        for s in spinners:
            s.kill()
            s.wait()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dict(wall=wall, cpu=cpu, rc=rc, load=(load_start, _load()), tail=out.strip().splitlines()[-3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", help="a checkout whose resnas runs (PYTHONPATH) [default: the installed one]")
    parser.add_argument("--busy", type=int, default=0, help="processes spinning beside it (2: both cores)")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("command", nargs="*", default=["search"], help="resnas arguments [default: search]")
    args = parser.parse_args()
    r = run(args.command, args.code, args.busy, args.timeout)
    wall = f">= {args.timeout:.0f} s" if r["rc"] == "timeout" else f"{r['wall']:.1f} s"
    print(f"| {args.code or 'installed'} | resnas {' '.join(args.command)} | {args.busy} | "
          f"{r['load'][0]:.1f} -> {r['load'][1]:.1f} | {wall} | {r['cpu']:.1f} s | {r['rc']} |")
    for line in r["tail"]:
        print("    " + line)


if __name__ == "__main__":
    main()
