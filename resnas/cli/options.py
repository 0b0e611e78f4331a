"""The options several commands take."""

from __future__ import annotations

import click

from ..recipe import SEED_MAX

__all__ = ["SEED", "storage_option", "study_option", "threads_option"]

SEED = click.IntRange(0, SEED_MAX)


def storage_option(f):
    return click.option("--storage",
                        help="Optuna storage: sqlite:///FILE.db, journal:///FILE.log, postgresql://..., "
                             "grpc://HOST:PORT (a resnas storage-proxy) [default: sqlite:///resnas.db].  "
                             "[env var: RESNAS_STORAGE]")(f)


def study_option(f):
    return click.option("--study", "study_name", help="Study name [default: the space's name].")(f)


def threads_option(f):
    return click.option("--threads", type=click.IntRange(min=1),
                        help="Torch threads per training process [default: the free cores (CPU affinity, "
                             "SLURM_CPUS_PER_TASK, less those the load average shows busy) divided among the "
                             "--workers or launched ranks; OMP_NUM_THREADS when set]. A result is reproducible "
                             "for a fixed thread count.")(f)
