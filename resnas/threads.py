"""The torch threads of a training process: the cores it may use, divided among the processes that share them.

Torch's default (one thread per core of the machine) in every process slows a shared machine down by an
order of magnitude; so does ignoring the other workers or ranks on the same cores. The choice, first that
applies: ``--threads N``; ``OMP_NUM_THREADS`` (then ``MKL_NUM_THREADS``), which torch itself honours;
else the free cores (this process's CPU affinity, capped by a scheduler's allocation such as
``SLURM_CPUS_PER_TASK``, less the whole cores the load average shows busy) divided among the processes
sharing them (``--workers`` processes, or the ranks ``accelerate launch`` / torchrun started on this
machine, ``LOCAL_WORLD_SIZE``), at least one each.
Results are reproducible for a fixed thread count, not across thread counts.

    >>> choose_threads(workers=2, environ={"LOCAL_WORLD_SIZE": "1"}, load=0).count == max(1, usable_cores() // 2)
    True
    >>> Threads(count=1, cores=2, why="2 workers").line()
    'threads: 1 of 2 cores (2 workers)'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["SCHEDULER_VARIABLES", "THREAD_VARIABLES", "Threads", "busy_cores", "choose_threads", "set_threads",
           "sharing_processes", "usable_cores"]

SCHEDULER_VARIABLES = ("SLURM_CPUS_PER_TASK", "PBS_NP", "NSLOTS", "LSB_DJOB_NUMPROC")  # Slurm, PBS, SGE, LSF
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # those torch's default follows, in its order


@dataclass(frozen=True)
class Threads:
    """A process's torch thread count, the cores it may use and why that count (``"2 workers"``)."""

    count: int
    cores: int
    why: str

    def line(self) -> str:
        return f"threads: {self.count} of {self.cores} core{'s' * (self.cores != 1)} ({self.why})"


def _positive(value: str | None) -> int | None:
    try:
        n = int(value or "")
    except ValueError:
        return None
    return n if n > 0 else None


def _allocation(environ: Mapping[str, str]) -> tuple[str, int] | None:
    """The first scheduler variable that allocates cores to this job, and its count."""
    for name in SCHEDULER_VARIABLES:
        if (n := _positive(environ.get(name))) is not None:
            return name, n
    return None


def usable_cores(environ: Mapping[str, str] | None = None) -> int:
    """The cores this process may run on: its CPU affinity (the machine's cores where the platform has
    none), capped by a scheduler's allocation."""
    environ = os.environ if environ is None else environ
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    allocation = _allocation(environ)
    return min(cores, allocation[1]) if allocation else cores


def busy_cores() -> float:
    """The machine's 1-minute load average: cores other jobs keep busy (0 where the platform has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def sharing_processes(workers: int | None = None, environ: Mapping[str, str] | None = None) -> tuple[int, str]:
    """How many training processes share this machine's cores, and who they are: the ranks of a launch on
    this machine (``LOCAL_WORLD_SIZE``), else ``workers`` worker processes, else this process alone."""
    environ = os.environ if environ is None else environ
    if (ranks := _positive(environ.get("LOCAL_WORLD_SIZE")) or 1) > 1:
        return ranks, f"{ranks} ranks"
    if workers and workers > 1:
        return workers, f"{workers} workers"
    return 1, "1 process"


def choose_threads(threads: int | None = None, workers: int | None = None, most: int | None = None,
                   environ: Mapping[str, str] | None = None, load: float | None = None) -> Threads:
    """One training process's thread count: ``threads`` (``--threads``) when given, else the environment's
    ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, else its share of the usable cores, at least 1 and at most
    ``most`` (the threads the work can use, None: no limit). ``load`` (default: the load average) takes
    its whole cores from the usable ones: threads waiting for a busy core made training 20x slower."""
    environ = os.environ if environ is None else environ
    cores = usable_cores(environ)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        return Threads(threads, cores, f"--threads {threads}")
    for name in THREAD_VARIABLES:
        if (n := _positive(environ.get(name))) is not None:
            return Threads(n, cores, f"{name}={n}")
    processes, who = sharing_processes(workers, environ)
    load = busy_cores() if load is None else load
    free = max(1, cores - int(load))
    count = max(1, min(free // processes, most or cores))
    who += f", load {load:.1f}" if free < cores else ""
    allocation = _allocation(environ)
    capped = f", {allocation[0]}={allocation[1]}" if allocation and allocation[1] == cores else ""
    return Threads(count, cores, who + capped)


def set_threads(threads: int | None = None, workers: int | None = None, most: int | None = None,
                load: float | None = None) -> Threads:
    """Choose this process's thread count (:func:`choose_threads`) and give it to torch; returns the choice
    (its ``line()`` is what the CLI prints)."""
    import torch  # deferred: choosing needs no torch, and this module stays light to import

    choice = choose_threads(threads, workers, most, load=load)
    torch.set_num_threads(choice.count)
    return choice
