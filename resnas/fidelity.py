"""The fidelity check: do the lower rungs rank designs as the higher ones do?

Once FIDELITY_DESIGNS designs reached the two lowest rungs, their errors there are compared by Spearman
correlation; below FIDELITY_LOW the early epochs do not rank designs on this data, and the remaining
trials are pruned from the higher rung on. Made once per study, by whichever process gets there first.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import optuna
from scipy import stats

from .config import Search
from .study import make_pruner, rungs

__all__ = ["FIDELITY_DESIGNS", "FIDELITY_LOW", "Fidelity", "FidelityCheck", "check_fidelity", "fidelity_min_epochs",
           "measure_fidelity", "recorded_fidelity", "unchecked_line"]

FIDELITY_DESIGNS = 6  # designs that must have reached both rungs before the check is made
FIDELITY_LOW = 0.5  # below this Spearman correlation the lower rung does not rank designs


@dataclass
class Fidelity:
    """The rank agreement of two rungs over the designs that reached both, and what the search did."""

    low: int  # epoch of the lower rung
    high: int  # epoch of the higher rung
    spearman: float
    designs: int
    min_epochs: int  # the minimum epochs of the trials from now on (raised to ``high`` when low)

    @property
    def raised(self) -> bool:
        return self.min_epochs > self.low

    def line(self) -> str:
        head = (f"fidelity: epoch-{self.low} and epoch-{self.high} errors rank {self.designs} designs with "
                f"Spearman {self.spearman:+.2f}")
        if not self.raised:
            return f"{head}: early epochs rank designs here; pruning from epoch {self.low} kept"
        return (f"{head} (< {FIDELITY_LOW}): early epochs do not rank designs on this data; the remaining "
                f"trials are pruned from epoch {self.min_epochs} on, not {self.low}")


def measure_fidelity(trials: list[optuna.trial.FrozenTrial], low: int, high: int) -> tuple[float, int]:
    """Spearman correlation of the errors at epochs ``low`` and ``high``, one trial per design (its
    first that reached both), and the number of designs; nan when fewer than 3 or one rung is constant."""
    pairs = {}
    for t in sorted(trials, key=lambda t: t.number):
        values = t.intermediate_values
        key = tuple(sorted(t.params.items()))
        if low in values and high in values and key not in pairs:
            pairs[key] = (values[low], values[high])
    if len(pairs) < 3:
        return math.nan, len(pairs)
    lows, highs = zip(*pairs.values())
    if len(set(lows)) == 1 or len(set(highs)) == 1:
        return math.nan, len(pairs)
    return float(stats.spearmanr(lows, highs).statistic), len(pairs)


def _unchecked_rungs(study: optuna.Study, search: Search) -> tuple[int, int] | None:
    """The two lowest rungs when the study prunes one objective and has no check recorded yet, else None."""
    if search.space.pruner == "none" or len(search.space.objectives) > 1 or "fidelity" in study.user_attrs:
        return None
    epochs = rungs(search.min_epochs, search.max_epochs)
    return (epochs[0], epochs[1]) if len(epochs) >= 2 else None


def check_fidelity(study: optuna.Study, search: Search) -> Fidelity | None:
    """Once ``FIDELITY_DESIGNS`` designs reached the two lowest rungs: measure their rank correlation,
    record it on the study (``fidelity``) and, when it is below FIDELITY_LOW, raise the minimum epochs of
    the remaining trials to the higher rung. Made once per study; returns the new result, else None."""
    if (pair := _unchecked_rungs(study, search)) is None:
        return None
    low, high = pair
    rho, n = measure_fidelity(study.get_trials(deepcopy=False), low, high)
    if n < FIDELITY_DESIGNS or not math.isfinite(rho):
        return None
    result = Fidelity(low=low, high=high, spearman=round(rho, 4), designs=n,
                      min_epochs=high if rho < FIDELITY_LOW else low)
    study.set_user_attr("fidelity", dataclasses.asdict(result))
    return result


def unchecked_line(study: optuna.Study, search: Search) -> str | None:
    """One line when the search pruned but its fidelity check was never made (too few designs reached both
    rungs: a small budget); None when it was made, or there is nothing to check."""
    if (pair := _unchecked_rungs(study, search)) is None:
        return None
    low, high = pair
    _, n = measure_fidelity(study.get_trials(deepcopy=False), low, high)
    why = (f"{n} designs reached epochs {low} and {high}, it needs {FIDELITY_DESIGNS}" if n < FIDELITY_DESIGNS
           else f"the errors of epoch {low} or {high} are all alike")
    return f"fidelity: not checked ({why}): pruning from epoch {low} on is unchecked on this data"


def recorded_fidelity(study: optuna.Study) -> Fidelity | None:
    """The fidelity check a study recorded, by whichever process made it."""
    recorded = study.user_attrs.get("fidelity")
    return Fidelity(**recorded) if recorded else None


def fidelity_min_epochs(study: optuna.Study) -> int | None:
    """The minimum epochs a study's fidelity check set (None before the check)."""
    return (study.user_attrs.get("fidelity") or {}).get("min_epochs")


class FidelityCheck:
    """A study callback: after every trial, the fidelity check (made once per study), and this process's
    pruner from the minimum epochs the check set, whichever process made it (workers, resumed runs)."""

    def __init__(self, search: Search, on_result=None):
        self.search, self.on_result, self.applied = search, on_result, search.min_epochs

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        result = check_fidelity(study, self.search)
        if result is not None and self.on_result is not None:
            self.on_result(result)
        self.apply(study)

    def apply(self, study: optuna.Study) -> None:
        wanted = fidelity_min_epochs(study) or self.search.min_epochs
        if wanted != self.applied:
            study.pruner, self.applied = make_pruner(self.search, wanted), wanted
