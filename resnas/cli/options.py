"""The options several commands take."""

from __future__ import annotations

import click

from ..recipe import SEED_MAX

__all__ = ["SEED", "storage_option", "study_option"]

SEED = click.IntRange(0, SEED_MAX)


def storage_option(f):
    return click.option("--storage",
                        help="Optuna storage: sqlite:///FILE.db, journal:///FILE.log, postgresql://..., "
                             "grpc://HOST:PORT (a resnas storage-proxy) [default: sqlite:///resnas.db].  "
                             "[env var: RESNAS_STORAGE]")(f)


def study_option(f):
    return click.option("--study", "study_name", help="Study name [default: the space's name].")(f)
