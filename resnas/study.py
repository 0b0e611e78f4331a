"""A search's Optuna study: opening and recording it, its sampler and pruner, and its queue.

The queue holds what must run before anything is drawn: a grid's points, the retries of interrupted
trials, the race's runs (resnas.racing) and fixed repeats (``Search.repeats``: the best designs trained
again with more seeds, as ``resnas reproduce`` does); a run of enqueued trials only (:func:`enqueued_only`)
never draws a new one.
"""

from __future__ import annotations

import contextlib
from typing import Any

import optuna
from optuna.trial import TrialState

from .config import Search
from .designs import ranked_trials
from .errors import first_line
from .record import StudyRecord, TrialRecord
from .space import Space
from .storage import StudyError, open_storage, quiet
from .workers import enqueue_retry, grid_job, interrupted, reap

__all__ = ["FINISHED", "REDUCTION", "QueueDrained", "TrialSeeded", "confirmation_targets", "enqueue_repeats",
           "enqueue_grid", "enqueue_retries", "enqueued_only", "finished_trials", "make_pruner", "make_sampler",
           "open_study", "prepare", "quiet_logs", "rungs", "sample_specs", "study_record"]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)  # the states a trial ends in
REDUCTION = 3  # the pruners' reduction factor: rungs lie at min_epochs x 3^i


def make_sampler(space: Space, seed: int) -> optuna.samplers.BaseSampler:
    """The space's Optuna sampler: multivariate TPE, NSGA-II (two objectives) or random (grids, enqueued)."""
    if space.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if space.sampler in ("random", "grid"):  # a grid's points are enqueued; the sampler only fills gaps
        return optuna.samplers.RandomSampler(seed=seed)
    # multivariate + group: TPE models the conditional parameters of each shortcut kind jointly
    with quiet():
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=min(10, max(3, (space.trials or 30) // 3)))


class TrialSeeded(optuna.samplers.BaseSampler):
    """A sampler made anew for every trial, seeded by (run seed, trial number): processes that ask at the
    same moment get different trial numbers, so they draw different candidates without knowing of each
    other (or being given an index), and one process's run stays reproducible."""

    def __init__(self, make, seed: int):
        self.make, self.seed = make, seed
        self.inner = make(seed % 2**32)

    def before_trial(self, study, trial) -> None:
        self.inner = self.make((self.seed + trial.number) % 2**32)  # numpy's seed range
        self.inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self.inner.after_trial(study, trial, state, values)


def make_pruner(search: Search, min_epochs: int | None = None) -> optuna.pruners.BasePruner:
    """The space's pruner, with epochs as the resource from ``min_epochs`` (default: the search's) to the
    maximum: Hyperband or successive halving (reduction factor ``REDUCTION``), median, or none. Successive halving is
    one bracket, so the sampler learns from every trial (Hyperband gives it only the current bracket's)."""
    kind, low = search.space.pruner, min_epochs or search.min_epochs
    if kind != "none" and low >= search.max_epochs:  # nothing is left to compare below the full budget
        return optuna.pruners.NopPruner()
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=low, max_resource=search.max_epochs,
                                              reduction_factor=REDUCTION)
    if kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=low, reduction_factor=REDUCTION)
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=low)
    return optuna.pruners.NopPruner()


def rungs(min_epochs: int, max_epochs: int) -> list[int]:
    """The epochs at which Hyperband / successive halving compare candidates, then the full budget."""
    epochs, e = [], min_epochs
    while e < max_epochs:
        epochs.append(e)
        e *= REDUCTION
    return [*epochs, max_epochs]


def open_study(search: Search) -> optuna.Study:
    """Create the study, or resume it; a study made from another space is refused, never overwritten."""
    space, seed = search.space, search.run_seed
    storage = open_storage(search.storage_url)
    try:
        study = optuna.create_study(storage=storage, study_name=search.name, load_if_exists=True,
                                    directions=space.directions, pruner=make_pruner(search))
    except Exception as e:
        raise StudyError(f"study {search.name}: {first_line(e)}") from None
    # a process that resumes the study, or searches it beside others, must not redraw their candidates
    study.sampler = TrialSeeded(lambda s: make_sampler(space, s), seed)
    made = StudyRecord.from_study(study)
    if made.space is None:
        attrs = study_record(search).to_user_attrs()
        # "space" last: a worker that opens the study meanwhile sees no record yet, never half of one
        for key in sorted(attrs, key=lambda k: k == "space"):
            study.set_user_attr(key, attrs[key])
        with quiet():  # the dashboard's axes say val_error, not "Objective 0"
            study.set_metric_names(list(space.objectives))
    elif made.space != space.name or made.dataset != search.dataset_name:
        raise StudyError(f"study {search.name}: made from space {made.space} on {made.dataset}; "
                         f"give --study NEW_NAME to search {space.name} on {search.dataset_name}")
    return study


def study_record(search: Search) -> StudyRecord:
    return StudyRecord(space=search.space.name, space_file=search.space.source, dataset=search.dataset_name,
                       objectives=list(search.space.objectives), max_epochs=search.max_epochs,
                       recipe=dict(search.space.recipe), seed=search.run_seed)


def prepare(study: optuna.Study, search: Search) -> None:
    """Before a run: fail the trials of dead workers and retry them (resnas.workers.reap), retry
    interrupted ones, fill the grid (``search.grid`` of it when given: ``resnas reproduce --rows``)."""
    reap(study, 2 * search.heartbeat_seconds)
    enqueue_retries(study)
    if search.space.sampler == "grid":
        enqueue_grid(study, search.space, search.grid)


def enqueue_grid(study: optuna.Study, space: Space, points: list[dict[str, Any]] | None = None) -> int:
    """Enqueue the grid points (all, or ``points``) no trial has taken yet; a point whose trial failed is
    tried again. A waiting trial has no params yet: its point is the one it was enqueued with."""
    taken = [t.system_attrs.get("fixed_params", t.params) for t in study.get_trials(deepcopy=False)
             if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)]
    missing = [p for p in (space.grid_points() if points is None else points) if p not in taken]
    for params in missing:  # the job names the point: a copy enqueued by a worker started alongside ends unrun
        study.enqueue_trial(params, skip_if_exists=False, user_attrs={"job": grid_job(params)})
    return len(missing)


def enqueue_retries(study: optuna.Study) -> int:
    """Enqueue again, once, the candidates a Ctrl-C interrupted (the trials of dead workers are retried
    by resnas.workers.reap); each resumes from its epoch checkpoint."""
    return sum(enqueue_retry(study, t) for t in interrupted(study))


class QueueDrained(Exception):
    """ask() found no enqueued trial in a run of enqueued trials only: the run is over."""


@contextlib.contextmanager
def enqueued_only(study: optuna.Study, active: bool = True):
    """A run of enqueued trials only (a grid, the race): ``ask()`` pops a waiting trial, or ends
    the run, and never draws a new one; two workers asking for the last waiting trial would, one of them."""
    if not active:
        yield
        return
    storage = study._storage  # ask() creates a trial without a template only when no trial waits
    create = storage.create_new_trial

    def create_enqueued(study_id, template_trial=None):
        if template_trial is None:
            raise QueueDrained
        return create(study_id, template_trial)

    storage.create_new_trial = create_enqueued
    try:
        yield
    except QueueDrained:
        pass
    finally:
        del storage.create_new_trial


def confirmation_targets(study: optuna.Study, k: int) -> list[optuna.trial.FrozenTrial]:
    """The search trials (repeat 0) of the best ``k`` designs by their single-seed error."""
    targets: dict[str, optuna.trial.FrozenTrial] = {}
    for t in ranked_trials(study):
        record = TrialRecord.from_trial(t)
        if not record.repeat and record.spec not in targets:
            targets[record.spec] = t
    return list(targets.values())[:k]


def enqueue_repeats(study: optuna.Study, search: Search) -> int:
    """Enqueue the fixed repeats still missing: repeats 1..``search.repeats`` of each of the best
    ``search.confirm`` designs, each trained at the full budget with the seed of its repeat. A run
    that is waiting, running or finished is not enqueued again (an interrupted one is retried)."""
    if not search.confirm or not search.repeats or len(study.directions) > 1:  # a Pareto front has no single best
        return 0
    trials = study.get_trials(deepcopy=False)
    have = {(r.confirms, r.repeat) for r in (TrialRecord.from_trial(t) for t in trials
                                             if t.state != TrialState.FAIL) if r.confirms is not None}
    n = 0
    for target in confirmation_targets(study, search.confirm):
        for repeat in range(1, search.repeats + 1):
            if (target.number, repeat) not in have:
                record = TrialRecord(repeat=repeat, confirms=target.number, job=f"confirm:{target.number}:{repeat}")
                study.enqueue_trial(target.params, user_attrs=record.to_user_attrs("repeat", "confirms", "job"),
                                    skip_if_exists=False)
                n += 1
    return n


def sample_specs(space: Space, samples: int, **fixed) -> list:
    """A grid space's points, or up to ``samples`` distinct specs drawn at random from another space
    (through an in-memory study, seeded by the space's seed)."""
    if space.sampler == "grid":
        return space.specs(**fixed)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=space.seed))
    return list({str(s): s for s in (space.suggest(study.ask(), **fixed) for _ in range(samples))}.values())


def quiet_logs() -> None:
    """Optuna logs only errors: resnas's display reports each trial and its reason."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that completed, were pruned or failed (a display follows workers through them)."""
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in FINISHED]
