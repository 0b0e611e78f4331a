"""A study's trials ranked into designs: the order ``resnas best``, the confirmation and kept weights share.

A design is a spec; its runs are its search trial (repeat 0) and its race repeats, each seeded by
(design, repeat). Where a race ran (resnas.racing), its verdict ranks and labels the designs it raced:
those still in the race first, tied with the leader, then those it found worse; the designs outside it
follow. Without a race the statistics are resnas.ranking's. This module reads them off an Optuna study.
"""

from __future__ import annotations

import math

import optuna
from optuna.trial import TrialState

from .race import Verdict
from .ranking import Design, rank_designs
from .record import TrialRecord, trained

__all__ = ["RACE", "VERDICT", "as_completed", "completed_trials", "ranked_designs", "ranked_trials", "stored_verdict"]

VERDICT, RACE = "verdict", "race"  # the study attributes: the verdict, the contenders and the baseline's note


def as_completed(trial: optuna.Trial, values: list[float]) -> optuna.trial.FrozenTrial:
    """A finishing trial as it will read once told ``values``, so that it ranks among the completed ones."""
    frozen = optuna.trial.create_trial(values=values, params=trial.params, distributions=trial.distributions,
                                       user_attrs=trial.user_attrs)
    frozen.number = trial.number
    return frozen


def completed_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Completed trials that trained their design to a finite error: the ones rankings compare."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values and math.isfinite(t.values[0]) and trained(t)]


def ranked_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Completed trials, best first (single objective), or the Pareto front (two objectives); a design
    counts once (trials that repeated a completed design are left out)."""
    if len(study.directions) > 1:
        return sorted((t for t in study.best_trials if trained(t)), key=lambda t: t.values[0])
    return sorted(completed_trials(study), key=lambda t: (t.values[0], t.number))


def ranked_designs(study: optuna.Study, finishing: optuna.trial.FrozenTrial | None = None) -> list[Design]:
    """The study's designs ranked by mean final error over their seeds (resnas.ranking.rank_designs):
    every completed run of a design, its search trial (repeat 0) and its confirmation repeats, counts once
    per repeat; ``finishing``, a trial not yet told (``as_completed``), counts as completed. Two objectives:
    the Pareto front, one design per trial (n = 1)."""
    if len(study.directions) > 1:
        return [Design(TrialRecord.from_trial(t).spec or "", [t.values[0]], [t.number]) for t in ranked_trials(study)]
    runs: dict[str, dict[int, optuna.trial.FrozenTrial]] = {}
    for t in sorted([*completed_trials(study), *([finishing] if finishing else [])], key=lambda t: t.number):
        record = TrialRecord.from_trial(t)
        runs.setdefault(record.spec or "", {}).setdefault(record.repeat or 0, t)
    designs = [Design(spec, [by[r].values[0] for r in sorted(by)], [by[r].number for r in sorted(by)])
               for spec, by in runs.items()]
    verdict = stored_verdict(study)[0]
    return rank_designs(designs) if verdict is None else _as_raced(designs, verdict)


def _as_raced(designs: list[Design], verdict: Verdict) -> list[Design]:
    """The race's order and its tests (never a test of a few seeds' own variances): the designs left in it
    (the leader first) tied, then the ones it found worse, then the designs it did not race, untested."""
    order = {spec: i for i, spec in enumerate(verdict.ranking)}
    raced = sorted((d for d in designs if d.spec in order), key=lambda d: order[d.spec])
    for d in raced:
        d.tied = d.spec not in verdict.departed
    others = rank_designs([d for d in designs if d.spec not in order])
    for d in others:
        d.tied = None
    return raced + others


def stored_verdict(study: optuna.Study) -> tuple[Verdict | None, dict]:
    """The race's last verdict stored on the study (None: no race ran) and its contenders' attribute."""
    d = study.user_attrs.get(VERDICT)
    return (None if d is None else Verdict.from_dict(d)), study.user_attrs.get(RACE, {})
