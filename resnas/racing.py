"""The race after a search's budget, on its study: the contenders, their table of runs, a round's runs enqueued,
the verdict stored. The statistics are resnas.race's; this module reads and writes the Optuna study.

The contenders are the best ``search.confirm`` designs by their search trial's error and the baseline (by
default the paper's unit, :func:`resnas.probe.reference`, of the leader's depth, unit and widths, when the
space holds it). Repeat r of every design trains with the seed of (run seed, r) (resnas.recipe.design_seed),
so a design's search trial, completed at the full budget, is its repeat 0. After each round
:func:`race_round` stores the verdict as the study attribute ``verdict`` (``Verdict.to_dict``) and enqueues
the next round's runs, each with its ``job`` (``race:SPEC:r``): a retry or a second worker never trains it
twice, and a resumed search (a larger ``--max-seeds``) trains only what is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from .config import Search
from .designs import RACE, VERDICT, ranked_trials
from .probe import reference
from .race import race
from .record import TrialRecord, drawn, epochs_spent
from .spec import ArchSpec
from .study import FINISHED

__all__ = ["Contenders", "contenders", "race_round", "race_table"]

_TRIES = 2  # a race run that failed this often is not enqueued again


@dataclass(frozen=True)
class Contenders:
    """The designs of the race (spec strings, the leader first), the Optuna params that build each, the
    baseline among them (None: none), and a one-line note on the baseline (why it is missing)."""

    designs: list[str]
    params: dict[str, dict]
    baseline: str | None
    note: str


def contenders(study: optuna.Study, search: Search) -> Contenders:
    """The best ``search.confirm`` designs by their search trial (repeat 0), then the baseline."""
    params: dict[str, dict] = {}
    for t in ranked_trials(study):
        spec = TrialRecord.from_trial(t).spec
        if drawn(t) and spec and spec not in params and len(params) < search.confirm:
            params[spec] = t.params
    if not params or search.baseline == "none":
        return Contenders(list(params), params, None, "")
    leader = ArchSpec.parse(next(iter(params)))
    wanted = reference(leader) if search.baseline == "paper" else ArchSpec.parse(search.baseline)
    label = "the paper's unit" if search.baseline == "paper" else "the baseline"
    found = params.get(str(wanted)) or search.space.params_of(
        wanted, in_chans=leader.in_chans, num_classes=leader.num_classes)
    if found is None:
        return Contenders(list(params), params, None,
                          f"no baseline: the space lacks {label} ({wanted}) with the leader's other choices")
    params.setdefault(str(wanted), found)
    return Contenders(list(params), params, str(wanted), f"baseline: {label}, {wanted}")


def race_table(study: optuna.Study, designs: list[str], max_epochs: int) -> dict[str, list[float]]:
    """Each design's errors by repeat (0, 1, ...): its completed runs trained to the full budget, up to its
    first repeat without one."""
    runs: dict[str, dict[int, float]] = {d: {} for d in designs}
    for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number):
        record = TrialRecord.from_trial(t)
        if record.spec in runs and "duplicate_of" not in t.user_attrs and t.values and \
                math.isfinite(t.values[0]) and len(record.val_error) >= max_epochs:
            runs[record.spec].setdefault(record.repeat or 0, t.values[0])
    table = {}
    for design, by in runs.items():
        table[design] = []
        while len(table[design]) in by:
            table[design].append(by[len(table[design])])
    return table


def race_round(study: optuna.Study, search: Search) -> int:
    """Judge the race on the runs done, store the verdict, and enqueue the next round's runs; the race runs
    waiting to be trained (0: the race has ended, or cannot go on). Nothing without ``search.confirm``,
    with ``search.repeats`` (fixed repeats instead) or with two objectives (a Pareto front has no single best)."""
    if not search.race_designs or len(study.directions) > 1:
        return 0
    field = contenders(study, search)
    if not field.designs:
        return 0
    trials = study.get_trials(deepcopy=False)
    spent = sum(epochs_spent(t) for t in trials if t.state in FINISHED)
    left = None if search.budget_epochs is None else search.budget_epochs - spent
    table = race_table(study, field.designs, search.max_epochs)
    verdict = race(table, search.race_rules, baseline=field.baseline, epochs_left=left, seed_epochs=search.max_epochs)
    study.set_user_attr(VERDICT, verdict.to_dict())
    study.set_user_attr(RACE, dict(designs=field.designs, baseline=field.baseline, note=field.note))
    if verdict.ended:
        return 0
    jobs = {}
    for t in trials:
        jobs.setdefault(TrialRecord.from_trial(t).job, []).append(t.state)
    waiting = 0
    for design, repeat in verdict.to_train.items():
        states, job = jobs.get(_job(design, repeat), []), _job(design, repeat)
        if any(s == TrialState.WAITING for s in states):
            waiting += 1
        elif not any(s != TrialState.FAIL for s in states) and len(states) < _TRIES:
            _enqueue(study, field.params[design], design, repeat, job, trials)
            waiting += 1
    return waiting


def _job(design: str, repeat: int) -> str:
    return f"race:{design}:{repeat}"


def _enqueue(study: optuna.Study, params: dict, design: str, repeat: int, job: str, trials) -> None:
    first = next((t.number for t in trials if drawn(t) and t.user_attrs.get("spec") == design), None)
    record = TrialRecord(repeat=repeat, confirms=first, job=job)
    study.enqueue_trial(params, user_attrs=record.to_user_attrs("repeat", "confirms", "job"), skip_if_exists=False)

