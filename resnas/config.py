"""The configuration of one search: a frozen, picklable dataclass, checked when it is built.

    >>> from resnas.space import load_space
    >>> search = Search(load_space("default"), trials=4, epochs=2)
    >>> search.name, search.max_epochs
    ('default', 2)

What reports progress is no setting: it is handed to the runner (:class:`resnas.runners.Progress`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import first_line
from .race import MARGIN, RaceRules
from .space import Space
from .spec import ArchSpec
from .storage import storage_url

__all__ = ["Search", "SearchError"]

class SearchError(ValueError):
    """A search that cannot run as configured (one line, exit code 2 in the CLI)."""


@dataclass(frozen=True)
class Search:
    """One ``resnas search``: a space, where its study lives, and the budget of this run."""

    space: Space
    storage: str | None = None
    study_name: str | None = None
    dataset: str | None = None
    data_dir: str | None = None
    trials: int | None = None  # the target: search trials the study should hold (``counted``) [the space's]
    more: int | None = None  # instead of ``trials``: this many more than the study holds
    timeout: float | None = None  # per run: no new trial starts after it
    epochs: int | None = None  # overrides the space's epochs.max
    seed: int | None = None
    device: str | None = None
    threads: int | None = None  # torch threads per training process [chosen from the free cores: resnas.threads]
    heartbeat: int | None = 60  # seconds between a trial's heartbeats; silent twice as long: lost (resnas.workers)
    probe_max_gain: float | None = None  # prune before training when the probe's |gain| exceeds this
    probe_max_deviation: float | None = None  # ... when |gain - the reference net's gain| exceeds this
    grid: list[dict[str, Any]] | None = None  # the grid points this run covers [default: the space's whole grid]
    confirm: int = 3  # after the budget, the best designs race to a verdict (resnas.race; 0: no race)
    margin: float = MARGIN  # the race's equivalence margin (error, a fraction: 0.005 = 0.5 points)
    max_seeds: int = RaceRules.max_seeds  # the race's maximum seeds per design
    baseline: str = "paper"  # in the race besides: the paper's unit, "none", or a spec string
    repeats: int = 0  # instead of a race: this many extra seeds of each of the best ``confirm`` designs (reproduce)
    budget_epochs: int | None = None  # a target too: the study's candidate-epochs, the race's first look included

    def __post_init__(self) -> None:
        given = [f"--{name}" for name, v in (("trials", self.trials), ("more", self.more),
                                             ("budget-epochs", self.budget_epochs)) if v is not None]
        if len(given) > 1:
            raise SearchError(f"{given[0][2:]}: {' and '.join(given)} both set the run's budget; give one, not both")
        if self.more is not None and self.space.sampler == "grid":
            raise SearchError(f"more: space {self.space.name} is a grid, whose points are its budget; "
                              "--trials N runs the first N")
        if self.margin < 0:
            raise SearchError(f"margin: {self.margin * 100:g} points must be >= 0")
        if self.max_seeds < 2:
            raise SearchError(f"max-seeds: {self.max_seeds} must be >= 2 (a race compares seeds)")
        if self.baseline not in ("paper", "none"):
            try:
                ArchSpec.parse(self.baseline)
            except ValueError as e:
                raise SearchError(f"baseline: not paper, none or a spec: {first_line(e)}") from None
        if self.search_epochs is not None and self.search_epochs <= 0:
            raise SearchError(f"budget-epochs: {self.budget_epochs} leaves nothing for the search after the "
                              f"{self.confirm_epochs} reserved for the race's first look ({self._reserve_line()}); "
                              "raise it, or lower --confirm")

    @property
    def name(self) -> str:
        return self.study_name or self.space.name

    @property
    def dataset_name(self) -> str:
        return self.dataset or self.space.dataset

    @property
    def max_epochs(self) -> int:
        return self.epochs or self.space.max_epochs

    @property
    def min_epochs(self) -> int:
        return min(self.space.min_epochs, self.max_epochs)

    @property
    def run_seed(self) -> int:
        """The run's seed: ``--seed``, else the space's."""
        return self.seed if self.seed is not None else self.space.seed

    @property
    def heartbeat_seconds(self) -> int:
        """Seconds between heartbeats (60 when none is set); silent twice as long, a worker is lost."""
        return self.heartbeat or 60

    @property
    def race_rules(self) -> RaceRules:
        """The race's rules: its first look at 3 seeds per design (at max_seeds when that is fewer)."""
        return RaceRules(margin=self.margin, first_look=min(3, self.max_seeds), max_seeds=self.max_seeds)

    @property
    def race_designs(self) -> int:
        """The designs the race runs at most: the best ``confirm`` and the baseline."""
        return self.confirm + (self.baseline != "none") if self.confirm and not self.repeats else 0

    @property
    def confirm_epochs(self) -> int:
        """The epochs --budget-epochs reserves after the search: the race's first look (its designs x first-look
        seeds x the full budget; the race goes on to max_seeds only within --budget-epochs), or the repeats."""
        if self.repeats:
            return self.confirm * self.repeats * self.max_epochs
        return self.race_designs * self.race_rules.first_look * self.max_epochs

    def _reserve_line(self) -> str:
        if self.repeats:
            return f"{self.confirm} designs x {self.repeats} seeds x {self.max_epochs} epochs"
        return f"{self.race_designs} designs x {self.race_rules.first_look} seeds x {self.max_epochs} epochs"

    @property
    def search_epochs(self) -> int | None:
        """The part of --budget-epochs left for the search once the confirmation is reserved."""
        return None if self.budget_epochs is None else self.budget_epochs - self.confirm_epochs

    @property
    def storage_url(self) -> str:
        return storage_url(self.storage)
