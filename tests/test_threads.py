"""resnas.threads: a training process's torch threads come from the cores it may use (affinity, a scheduler's
allocation), divided among the workers or ranks sharing them; --threads and OMP_NUM_THREADS override."""

import json
import os
import subprocess
import sys

import pytest

from resnas.threads import choose_threads, usable_cores

CORES = len(os.sched_getaffinity(0))
CHILD = """
import json, sys, torch
from resnas.threads import set_threads
chosen = set_threads(load=0)
auto = [chosen.line(), torch.get_num_threads()]
chosen = set_threads(threads=int(sys.argv[1]))
print(json.dumps(dict(auto=auto, override=[chosen.line(), torch.get_num_threads()])))
"""


def _child(threads: int, env: dict, cpus: set[int] | None = None) -> dict:
    """What a fresh interpreter (restricted to ``cpus``) chooses and torch then runs with."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(threads)], capture_output=True, text=True, timeout=120,
                          env=env, preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _env(**variables) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "LOCAL_WORLD_SIZE",
                                                            "SLURM_CPUS_PER_TASK", "PBS_NP", "NSLOTS",
                                                            "LSB_DJOB_NUMPROC")}
    return dict(env, **variables)


def test_a_process_restricted_to_one_core_runs_one_torch_thread_and_threads_overrides():
    one = {min(os.sched_getaffinity(0))}
    seen = _child(3, _env(), cpus=one)
    assert seen["auto"] == ["threads: 1 of 1 core (1 process)", 1]
    assert seen["override"] == ["threads: 3 of 1 core (--threads 3)", 3]  # more than torch's default, applied


def test_a_scheduler_allocation_caps_the_cores_in_a_fresh_process():
    seen = _child(2, _env(SLURM_CPUS_PER_TASK="1"))
    assert seen["auto"] == ["threads: 1 of 1 core (1 process, SLURM_CPUS_PER_TASK=1)", 1]
    assert seen["override"][1] == 2


def test_the_usable_cores_are_the_affinity_capped_by_the_allocation():
    assert usable_cores(_env()) == CORES
    assert usable_cores(_env(SLURM_CPUS_PER_TASK=str(CORES + 8))) == CORES  # an allocation never adds cores
    assert usable_cores(_env(SLURM_CPUS_PER_TASK="1")) == 1
    assert usable_cores(_env(NSLOTS="1")) == usable_cores(_env(LSB_DJOB_NUMPROC="1")) == 1
    assert usable_cores(_env(SLURM_CPUS_PER_TASK="0")) == usable_cores(_env(PBS_NP="many")) == CORES  # ignored


def test_the_cores_are_divided_among_workers_at_least_one_each():
    assert choose_threads(environ=_env(), load=0).count == CORES
    assert choose_threads(workers=CORES, environ=_env(), load=0).line() == f"threads: 1 of {CORES} cores ({CORES} workers)"
    assert choose_threads(workers=4 * CORES, environ=_env(), load=0).count == 1
    assert choose_threads(workers=1, environ=_env(), load=0).line() == f"threads: {CORES} of {CORES} cores (1 process)"
    assert choose_threads(most=1, environ=_env(), load=0).count == 1  # never more than the work can use


def test_the_ranks_of_a_launch_on_this_machine_share_its_cores():
    ranks = _env(LOCAL_WORLD_SIZE=str(CORES))
    assert choose_threads(environ=ranks, load=0).line() == f"threads: 1 of {CORES} cores ({CORES} ranks)"
    assert choose_threads(workers=1, environ=_env(LOCAL_WORLD_SIZE="1"), load=0).count == CORES


def test_threads_beats_omp_num_threads_which_beats_the_share():
    omp = _env(OMP_NUM_THREADS="5", LOCAL_WORLD_SIZE="2")
    assert choose_threads(environ=omp, load=0).line() == f"threads: 5 of {CORES} cores (OMP_NUM_THREADS=5)"
    assert choose_threads(environ=_env(MKL_NUM_THREADS="3"), load=0).count == 3
    assert choose_threads(threads=2, environ=omp, load=0).line() == f"threads: 2 of {CORES} cores (--threads 2)"
    assert choose_threads(environ=_env(OMP_NUM_THREADS=""), load=0).count == CORES  # empty: unset, as torch reads it
    with pytest.raises(ValueError, match="at least 1"):
        choose_threads(threads=0, environ=_env(), load=0)


def test_cores_the_load_average_shows_busy_are_not_used():
    assert choose_threads(environ=_env(), load=CORES - 0.5).count == max(1, CORES - int(CORES - 0.5))
    busy = choose_threads(environ=_env(), load=CORES + 3)  # a second job on every core: one thread, said why
    assert busy.count == 1 and busy.line() == f"threads: 1 of {CORES} cores (1 process, load {CORES + 3:.1f})"
    assert choose_threads(environ=_env(), load=0.9).count == CORES  # a little background load leaves them all
    assert choose_threads(threads=2, environ=_env(), load=50).count == 2  # --threads is what the user asked for
