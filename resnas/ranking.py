"""Designs ranked by their mean error over seeds, with spread, and the ones statistically tied with the best.

Pure statistics, no Optuna: the search layer (``resnas.designs.ranked_designs``), ``resnas best``,
``resnas reproduce`` and the replay benchmark (``benchmarks/replay.py``) all rank with these functions.

    >>> designs = rank_designs([Design("a", [0.10, 0.12, 0.11]), Design("b", [0.30, 0.31, 0.29]),
    ...                         Design("c", [0.10, 0.14, 0.12])])
    >>> [(d.spec, d.tied) for d in designs]
    [('a', True), ('c', True), ('b', False)]
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass, field

from scipy import stats

__all__ = ["ALPHA", "TIE_TEST", "TIE_TEST_SHORT", "Design", "rank_designs", "significantly_worse"]

ALPHA = 0.05
TIE_TEST = (f"one-sided Welch t-test (scipy.stats.ttest_ind, equal_var=False, alternative='greater') of a "
            f"design's errors against the best design's, alpha {ALPHA}: tied when not significantly worse")
TIE_TEST_SHORT = f"not significantly worse: one-sided Welch t-test, alpha {ALPHA}"  # the same, in a footnote


@dataclass
class Design:
    """One design's final errors over its seeds (repeats), and the trials they came from."""

    spec: str
    errors: list[float]
    trials: list[int] = field(default_factory=list)  # trial numbers, repeat 0 first
    tied: bool | None = None  # statistically tied with the best (the best itself: True); None: not tested (n = 1)

    @property
    def n(self) -> int:
        return len(self.errors)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.errors)

    @property
    def sd(self) -> float | None:
        """Sample standard deviation; None for one seed."""
        return statistics.stdev(self.errors) if self.n > 1 else None

    @property
    def confirmed(self) -> bool:
        return self.n > 1


def significantly_worse(errors: list[float], best: list[float], alpha: float = ALPHA) -> bool | None:
    """Whether ``errors`` are significantly higher than ``best`` (see TIE_TEST); None when it cannot be
    tested (fewer than 2 of either). Two samples without spread differ exactly when their means do."""
    if len(errors) < 2 or len(best) < 2:
        return None
    mean, best_mean = statistics.fmean(errors), statistics.fmean(best)
    if mean <= best_mean:
        return False
    if statistics.pvariance(errors) == 0 and statistics.pvariance(best) == 0:
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = stats.ttest_ind(errors, best, equal_var=False, alternative="greater").pvalue
    return bool(p < alpha) if math.isfinite(p) else None


def rank_designs(designs: list[Design], alpha: float = ALPHA) -> list[Design]:
    """Best first: confirmed designs (n > 1) by mean error, then single-seed ones by their error (a lucky
    single seed must not outrank a confirmed mean). Sets ``tied`` on each: the best is tied with itself;
    a design is tied when it is not significantly worse than the best; None when untestable (n = 1)."""
    ranked = sorted(designs, key=lambda d: (not d.confirmed, d.mean, d.trials[:1]))
    if not ranked:
        return ranked
    best = ranked[0]
    for d in ranked:
        worse = significantly_worse(d.errors, best.errors, alpha)
        d.tied = True if d is best else None if worse is None else not worse
    return ranked
