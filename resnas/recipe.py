"""How a candidate is trained: the paper's recipes, a search's recipe, and the seed of each run.

Below both the trainer and the search space, so that reading a YAML space needs no trainer.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Any

from .data import DATASETS

__all__ = ["RECIPES", "SCHEDULES", "SEED_MAX", "Recipe", "dataset_recipe", "design_seed", "search_recipe"]

SEED_MAX = 2**32 - 1  # a seed's largest value: what numpy's and Optuna's samplers accept

SCHEDULES = ("step", "cosine")


@dataclass(frozen=True)
class Recipe:
    """How to train: the paper's CIFAR recipe by default (Sec. 4.1), every knob overridable.

    The schedule is defined on ``schedule_epochs`` (default: the epochs run), so that epoch k of
    candidates trained for different budgets under one maximum budget saw the same learning rates.
    ``milestones`` are fractions of that budget (the paper's 32k and 48k of 64k iterations).

    >>> Recipe().lr, Recipe.imagenet().milestones
    (0.1, (0.3333333333333333, 0.6666666666666666))
    """

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    batch_size: int = 128
    warmup_lr: float = 0.01  # constant for the first warmup_iters iterations, then lr
    warmup_iters: int = 400
    schedule: str = "step"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    schedule_epochs: int | None = None
    max_loss: float = 100.0  # a train loss above this (or NaN / inf) means diverged

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule: {self.schedule!r} is unknown; allowed: {', '.join(SCHEDULES)}")
        for name in ("lr", "warmup_lr", "max_loss"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: {getattr(self, name)!r} must be > 0")
        for name in ("momentum", "weight_decay", "warmup_iters"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: {getattr(self, name)!r} must be >= 0")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: {self.batch_size!r} must be >= 1")
        if self.schedule_epochs is not None and self.schedule_epochs < 1:
            raise ValueError(f"schedule_epochs: {self.schedule_epochs!r} must be >= 1")
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        if any(not 0 < m <= 1 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones: {self.milestones!r} must be increasing fractions of the budget in (0, 1]")

    @classmethod
    def cifar(cls, **changes: Any) -> Recipe:
        return cls(**changes)

    @classmethod
    def imagenet(cls, **changes: Any) -> Recipe:
        """Batch 256, no warm-up, lr /10 at epochs 30 and 60 of 90 (Sec. 5)."""
        return cls(**{"batch_size": 256, "warmup_iters": 0, "milestones": (1 / 3, 2 / 3), **changes})

    @classmethod
    def digits(cls, **changes: Any) -> Recipe:
        """The CIFAR recipe without the warm-up: 400 iterations would be 44 epochs of digits."""
        return cls(**{"warmup_iters": 0, **changes})

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)


RECIPES = {"cifar": Recipe.cifar, "imagenet": Recipe.imagenet, "digits": Recipe.digits}


def dataset_recipe(dataset: str, **changes: Any) -> Recipe:
    """The paper's recipe for a data set (its row of ``resnas.data.DATASETS``), with ``changes``.

    >>> dataset_recipe("imagenet").batch_size, dataset_recipe("digits", lr=0.05).warmup_iters
    (256, 0)
    """
    return RECIPES[DATASETS[dataset].recipe](**changes)


def search_recipe(dataset: str, overrides: dict[str, Any], max_epochs: int) -> Recipe:
    """The data set's recipe with the space's overrides, its schedule defined on the maximum budget so
    that epoch k means the same learning rate for every candidate (Hyperband compares them there)."""
    changes = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return dataset_recipe(dataset, **{**changes, "schedule_epochs": max_epochs})


def design_seed(seed: int, repeat: int = 0) -> int:
    """The training seed of repeat ``repeat`` (0: the search's trial, 1, 2, ...: the race's runs) in a search
    seeded ``seed``. Every place that trains a candidate (the objective, every rank of a distributed run,
    ``export`` retraining one) trains it with this seed, so a retried trial resumes the same run and a
    retraining reproduces the trial's weights. The design does not enter: repeat r of every design trains
    with the same seed, hence the same data order, so the race (resnas.race) compares designs paired by repeat."""
    return (seed + zlib.crc32(f"repeat={repeat}".encode())) % 2**31
