"""The search: a space's Optuna study, its sampler and pruner, and the runners that fill it.

    >>> from resnas.space import load_space
    >>> from resnas.search import Search, run_search
    >>> search = Search(load_space("default"), storage="sqlite:///resnas.db", trials=4)   # doctest: +SKIP
    >>> study = run_search(search)                                                         # doctest: +SKIP

Three runners: :func:`run_search` (trials in this process), :func:`run_workers` (one process per
device on one study) and :func:`run_distributed` (under ``accelerate launch``, every rank trains each
trial); :func:`run` picks one. ``export_trial`` writes a trial as a timm local-dir folder from its
kept weights, or retrains it with its recorded seed, which gives the same weights on the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
import torch.distributed as dist
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env
from optuna.artifacts import download_artifact
from optuna.trial import TrialState
from optuna_integration import TorchDistributedTrial
from scipy import stats

from .data import load_data
from .errors import first_line
from .export import export, verify_weights
from .export import load as load_export
from .files import WEIGHTS, follow_umask
from .objective import (
    Objective,
    Surplus,
    end_if_surplus,
    keep_top_weights,
    ranked_designs,
    ranked_trials,
)
from .ranking import TIE_TEST
from .recipe import design_seed, search_recipe
from .record import ARTIFACT_FILES, INTERRUPTED, Status, StudyRecord, TrialRecord, epochs_spent, status_of
from .space import DEFAULT_TRIALS, Space, load_space
from .storage import (
    DEFAULT_STORAGE,
    StudyError,
    artifact_store,
    disk_note,
    local_file,
    mask_url,
    open_storage,
    quiet,
    weights_kept,
)
from .train import train
from .workers import enqueue_retry, grid_job, interrupted, reap

__all__ = ["Budget", "DEFAULT_TRIALS", "Fidelity", "FidelityCheck", "Search", "Target", "budget", "check_fidelity",
           "counted", "design_row", "distributed", "search_trials",
           "QueueDrained", "TrialSeeded", "enqueued_only",
           "enqueue_confirmation", "enqueue_grid", "enqueue_retries", "export_trial", "finished_trials",
           "kept_run", "kept_test_errors", "retraining_line",
           "make_pruner", "make_sampler", "mean_sd", "measure_fidelity", "open_study", "prepare", "quiet_logs",
           "ranked_designs", "ranked_trials", "recorded_fidelity", "rungs", "run", "run_distributed", "run_search",
           "run_workers", "sample_specs", "tie_label", "write_note"]

@dataclass
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
    callbacks: list = field(default_factory=list)  # optuna study callbacks (the CLI's display)
    on_epoch: Any = None  # on_epoch(trial_number, EpochReport), for a live display
    heartbeat: int | None = 60  # seconds between a trial's heartbeats; silent twice as long: lost (resnas.workers)
    probe_max_gain: float | None = None  # prune before training when the probe's |gain| exceeds this
    probe_max_deviation: float | None = None  # ... when |gain - the reference net's gain| exceeds this
    grid: list[dict[str, Any]] | None = None  # the grid points this run covers [default: the space's whole grid]
    confirm: int = 3  # after the budget, the best designs trained again with more seeds (0: none)
    repeats: int = 2  # extra seeds per confirmed design
    budget_epochs: int | None = None  # a target too: the study's candidate-epochs, confirmation included
    on_fidelity: Any = None  # on_fidelity(Fidelity), when the fidelity check is made (the CLI prints it)
    on_budget: Any = None  # on_budget(Budget), once the run knows what it adds to the study (the CLI prints it)

    @property
    def name(self) -> str:
        return self.study_name or self.space.name

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
    def confirm_epochs(self) -> int:
        """The confirmation's cost at most: confirm designs x repeats x the full budget."""
        return self.confirm * self.repeats * self.max_epochs

    @property
    def search_epochs(self) -> int | None:
        """The part of --budget-epochs left for the search once the confirmation is reserved."""
        return None if self.budget_epochs is None else self.budget_epochs - self.confirm_epochs

    @property
    def storage_url(self) -> str:
        return self.storage or os.environ.get("RESNAS_STORAGE") or DEFAULT_STORAGE


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
    maximum: Hyperband or successive halving (reduction factor 3), median, or none. Successive halving is
    one bracket, so the sampler learns from every trial (Hyperband gives it only the current bracket's)."""
    kind, low = search.space.pruner, min_epochs or search.min_epochs
    if kind != "none" and low >= search.max_epochs:  # nothing is left to compare below the full budget
        return optuna.pruners.NopPruner()
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=low, max_resource=search.max_epochs, reduction_factor=3)
    if kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=low, reduction_factor=3)
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=low)
    return optuna.pruners.NopPruner()


# ---- the fidelity check ---------------------------------------------------------------------------
FIDELITY_DESIGNS = 6  # designs that must have reached both rungs before the check is made
FIDELITY_LOW = 0.5  # below this Spearman correlation the lower rung does not rank designs
REDUCTION = 3  # the pruners' reduction factor: rungs lie at min_epochs x 3^i


def rungs(min_epochs: int, max_epochs: int) -> list[int]:
    """The epochs at which Hyperband / successive halving compare candidates, then the full budget."""
    epochs, e = [], min_epochs
    while e < max_epochs:
        epochs.append(e)
        e *= REDUCTION
    return [*epochs, max_epochs]


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


def check_fidelity(study: optuna.Study, search: Search) -> Fidelity | None:
    """Once ``FIDELITY_DESIGNS`` designs reached the two lowest rungs: measure their rank correlation,
    record it on the study (``fidelity``) and, when it is below FIDELITY_LOW, raise the minimum epochs of
    the remaining trials to the higher rung. Made once per study; returns the new result, else None."""
    if search.space.pruner == "none" or len(search.space.objectives) > 1 or "fidelity" in study.user_attrs:
        return None
    epochs = rungs(search.min_epochs, search.max_epochs)
    if len(epochs) < 2:
        return None
    low, high = epochs[:2]
    rho, n = measure_fidelity(study.get_trials(deepcopy=False), low, high)
    if n < FIDELITY_DESIGNS or not math.isfinite(rho):
        return None
    result = Fidelity(low=low, high=high, spearman=round(rho, 4), designs=n,
                      min_epochs=high if rho < FIDELITY_LOW else low)
    study.set_user_attr("fidelity", dataclasses.asdict(result))
    return result


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
    elif made.space != space.name or made.dataset != dataset_of(search):
        raise StudyError(f"study {search.name}: made from space {made.space} on {made.dataset}; "
                         f"give --study NEW_NAME to search {space.name} on {dataset_of(search)}")
    return study


def dataset_of(search: Search) -> str:
    return search.dataset or search.space.dataset


def study_record(search: Search) -> StudyRecord:
    return StudyRecord(space=search.space.name, space_file=search.space.source, dataset=dataset_of(search),
                       objectives=list(search.space.objectives), max_epochs=search.max_epochs,
                       recipe=dict(search.space.recipe), seed=search.run_seed)


def prepare(study: optuna.Study, space: Space, points: list[dict[str, Any]] | None = None,
            heartbeat: int | None = 60) -> None:
    """Before a run: fail the trials of dead workers and retry them (resnas.workers.reap), retry
    interrupted ones, fill the grid (``points`` of it when given: ``resnas reproduce --rows``)."""
    reap(study, 2 * (heartbeat or 60))
    enqueue_retries(study)
    if space.sampler == "grid":
        enqueue_grid(study, space, points)


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


# ---- running ------------------------------------------------------------------------------------
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _search_own(trial) -> bool:
    """A trial of the search proper: not a confirmation run, not a surplus copy of another's job."""
    return "confirms" not in trial.user_attrs and trial.user_attrs.get("status") != Status.SURPLUS


def counted(trial) -> bool:
    """Whether a trial counts toward ``--trials``: a finished trial of the search proper (complete, pruned, or
    failed with its reason); not a confirmation run, a surplus copy, nor a trial that a retry redoes
    (interrupted by Ctrl-C, lost with its worker): the retry counts instead."""
    return trial.state in FINISHED and _search_own(trial) and status_of(trial) != Status.LOST \
        and trial.user_attrs.get("reason") != INTERRUPTED


def search_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials the study holds toward its target (``counted``)."""
    return [t for t in study.get_trials(deepcopy=False) if counted(t)]


def _in_flight(study: optuna.Study) -> int:
    """Search trials running now (other workers'): they count toward the target once they finish."""
    return sum(_search_own(t) for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


@dataclass(frozen=True)
class Budget:
    """What one run adds to its study: up to ``trials`` counted trials and ``epochs`` candidate-epochs (None:
    no limit), stopping as soon as the study holds ``target`` search trials (others' running ones included,
    so workers started by hand share it). ``held`` / ``spent``: the study's search trials and their epochs."""

    trials: int | None
    epochs: int | None = None
    target: int | None = None  # None: a grid's queue or --budget-epochs decides
    held: int = 0
    spent: int = 0
    epochs_target: int | None = None  # --budget-epochs less the confirmation's share
    queue: bool = False  # enqueued trials only, until none waits (the workers' confirmation)

    @property
    def done(self) -> bool:
        return self.trials == 0 or self.epochs == 0

    def line(self) -> str:
        """One line: what the study holds of its target; when done, how to add to it."""
        if self.epochs_target is not None:
            head = f"study's search trained {self.spent} of {self.epochs_target} candidate-epochs"
            return f"{head}; a larger --budget-epochs adds to it" if self.done else head
        if self.target is None:  # a grid
            return f"study holds {self.held} grid trials" + ("; every point is done" if self.done else
                                                             f"; {self.trials} points to run")
        head = f"study holds {self.held} of {self.target} trials"
        return f"{head}; --more N to add" if self.done else head


def budget(study: optuna.Study, search: Search) -> Budget:
    """The run's budget (call after ``prepare``): for a sampled space, the target is ``--trials``, the study's
    count plus ``--more``, or the space's ``trials:`` (DEFAULT_TRIALS without one); with ``--budget-epochs``
    alone, its epochs. For a grid, the points waiting (``--trials N``: until the study holds N)."""
    held = search_trials(study)
    if search.space.sampler == "grid":  # a failed point is enqueued again, so only the others count
        n = sum(t.state != TrialState.FAIL for t in held)
        waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        return Budget(waiting if search.trials is None else min(waiting, max(0, search.trials - n)), held=n)
    busy = _in_flight(study)
    if search.more is not None:
        target = len(held) + busy + search.more
    elif search.trials is not None or search.budget_epochs is None:
        target = search.trials or search.space.trials or DEFAULT_TRIALS
    else:
        target = None
    spent = sum(epochs_spent(t) for t in study.get_trials(deepcopy=False, states=FINISHED) if _search_own(t))
    goal = search.search_epochs
    return Budget(None if target is None else max(0, target - len(held) - busy),
                  None if goal is None else max(0, goal - spent), target, len(held), spent, goal)


class Target:
    """A study callback that stops the run at its :class:`Budget`: once it ran ``trials`` counted trials or
    trained ``epochs`` candidate-epochs, or the study holds the target; the last trial finishes, so an
    epoch budget ends within one trial of it."""

    def __init__(self, plan: Budget):
        self.plan, self.ran, self.spent, self.full = plan, 0, 0, False

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if self.add(study, trial):
            study.stop()

    def add(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        """Count a finished trial; whether the run is over."""
        self.ran += counted(trial)
        self.spent += epochs_spent(trial)
        if self.plan.target is not None and not self.reached:
            self.full = len(search_trials(study)) + _in_flight(study) >= self.plan.target
        return self.reached

    @property
    def reached(self) -> bool:
        plan = self.plan
        return self.full or (plan.trials is not None and self.ran >= plan.trials) or \
            (plan.epochs is not None and self.spent >= plan.epochs)


def run_search(search: Search, enqueue: bool = True, share: Budget | None = None) -> optuna.Study:
    """Open (or resume) the study, run trials in this process until the study holds its target (``budget``;
    a worker: its ``share`` of the parent's), then confirm the best designs with more seeds (``search.confirm``)."""
    data = load_data(dataset_of(search), search.data_dir)
    with _storage_writable(search.storage_url):
        return _run_search(search, data, enqueue, share)


def _run_search(search: Search, data, enqueue: bool, share: Budget | None) -> optuna.Study:
    study = open_study(search)
    if enqueue:
        prepare(study, search.space, search.grid, search.heartbeat)
    plan = share or _announce(budget(study, search), search)
    objective = Objective(search, data, artifact_store(search.storage_url))
    objective.queue_only = objective.queue_only or plan.queue
    fidelity, target = FidelityCheck(search, search.on_fidelity), Target(plan)
    fidelity.apply(study)
    started = time.monotonic()
    with _frozen_heap():
        if not plan.done:  # no n_trials: trials that do not count (a waiting confirmation run) add none
            with enqueued_only(study, objective.queue_only):
                study.optimize(objective, timeout=search.timeout, catch=(Exception,),
                               callbacks=[fidelity, target, *search.callbacks])
        left = None if search.timeout is None else search.timeout - (time.monotonic() - started)
        if (left is None or left > 0) and (n := enqueue_confirmation(study, search)):
            objective.queue_only = True  # the confirmation runs its enqueued runs, nothing the sampler draws
            with enqueued_only(study):
                study.optimize(objective, n_trials=n, timeout=left, catch=(Exception,), callbacks=search.callbacks)
    keep_top_weights(study, objective.store, search.storage_url)  # exactly the top k, as confirmed
    if objective.disk_full:
        raise StudyError(f"search stopped: disk full? {objective.disk_full}")
    write_note(study, search.space)
    return study


@contextlib.contextmanager
def _storage_writable(url: str):
    """A storage that cannot be written any more (a full disk) ends the run in one line; the trial it could
    not record is left RUNNING, for the next run to find its worker dead and retry it (resnas.workers)."""
    try:
        yield
    except (optuna.exceptions.StorageInternalError, OSError, AssertionError) as e:
        # Optuna's "Should not reach." assertion stands in front of the storage error that tell() raised
        cause = e.__context__ if isinstance(e, AssertionError) else e
        if cause is None:
            raise
        raise StudyError(f"storage: cannot write {mask_url(url)}: {first_line(cause)}"
                         f"{disk_note(local_file(url), cause)}") from None


class QueueDrained(Exception):
    """ask() found no enqueued trial in a run of enqueued trials only: the run is over."""


@contextlib.contextmanager
def enqueued_only(study: optuna.Study, active: bool = True):
    """A run of enqueued trials only (a grid, the confirmation): ``ask()`` pops a waiting trial, or ends
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


def _announce(plan: Budget, search: Search) -> Budget:
    if search.on_budget is not None:
        search.on_budget(plan)
    return plan


# ---- confirmation --------------------------------------------------------------------------------
def confirmation_targets(study: optuna.Study, k: int) -> list[optuna.trial.FrozenTrial]:
    """The search trials (repeat 0) of the best ``k`` designs by their single-seed error."""
    targets: dict[str, optuna.trial.FrozenTrial] = {}
    for t in ranked_trials(study):
        record = TrialRecord.from_trial(t)
        if not record.repeat and record.spec not in targets:
            targets[record.spec] = t
    return list(targets.values())[:k]


def enqueue_confirmation(study: optuna.Study, search: Search) -> int:
    """Enqueue the confirmation runs still missing: repeats 1..``search.repeats`` of each of the best
    ``search.confirm`` designs, each trained at the full budget with the seed of (design, repeat). A run
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


@contextlib.contextmanager
def _frozen_heap():
    """Hide the objects alive now (torch, sympy, the data: ~500k) from the collector while trials run:
    the collection after every trial (resnas.train) then costs milliseconds, not 0.4 s."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_workers(search: Search, devices: list[str], poll=None) -> optuna.Study:
    """One worker process per device (``cuda:0``, ``cuda:1``, ... or ``cpu`` several times) on one study.

    The study is created and a grid enqueued here, once; the run's budget (the trials the study lacks, or
    the epochs) is shared out among the workers, which also share the study's target, then the
    confirmation runs. ``poll(study)`` is called about every second while they run (the CLI's display).
    """
    load_data(dataset_of(search), search.data_dir)  # fail here, once, on missing data
    study = open_study(search)
    prepare(study, search.space, search.grid, search.heartbeat)
    plan = _announce(budget(study, search), search)
    if not plan.done:
        _launch(search, devices, plan, poll, study)
    if enqueue_confirmation(study, search):
        _launch(search, devices, Budget(None, queue=True), poll, study)
    keep_top_weights(study, artifact_store(search.storage_url), search.storage_url)  # workers that finished at once
    write_note(study, search.space)
    return study


def _launch(search: Search, devices: list[str], plan: Budget, poll, study) -> None:
    """Run ``plan`` shared out among one process per device; wait."""
    def share(total: int | None, i: int) -> int | None:
        return None if total is None else total // len(devices) + (i < total % len(devices))

    threads = max(1, (os.cpu_count() or 1) // len(devices))
    ctx = mp.get_context("spawn")  # CUDA and forked processes do not mix
    queue = plan.queue or search.space.sampler == "grid"  # every worker takes waiting trials until none waits
    workers = []
    for i, device in enumerate(devices):
        part = dataclasses.replace(plan, trials=None if queue else share(plan.trials, i),
                                   epochs=share(plan.epochs, i))
        if not part.done:
            workers.append(ctx.Process(target=_worker, args=(_for_worker(search, device), part, device, threads),
                                       daemon=True))
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers):
        for w in workers:
            w.join(timeout=1.0 / len(workers))
        if poll is not None:
            poll(study)


def run_distributed(search: Search) -> optuna.Study | None:
    """Under ``accelerate launch``: every process trains each trial together, the main one drives Optuna.

    Suggestions, reports and pruning decisions go through ``optuna_integration.TorchDistributedTrial``,
    so all ranks build the same candidate and stop it at the same epoch. Returns the study on the main
    process and None on the others.
    """
    # joins the process group accelerate launch set up (on CPUs PartialState needs to be told so)
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    data = load_data(dataset_of(search), search.data_dir)
    store = artifact_store(search.storage_url) if state.is_main_process else None
    study, objective, plan = None, Objective(search, data, store, distributed=True), Budget(0)
    if state.is_main_process:  # the main process decides when to stop; the others follow (_drive)
        study = open_study(search)
        prepare(study, search.space, search.grid, search.heartbeat)
        plan = _announce(budget(study, search), search)
    fidelity = FidelityCheck(search, search.on_fidelity)
    with _frozen_heap():
        if state.is_main_process:
            fidelity.apply(study)
        _drive(study, objective, Target(plan), [fidelity, *search.callbacks])
        n = enqueue_confirmation(study, search) if state.is_main_process else 0
        objective.queue_only = True  # until the confirmation's queue is empty
        _drive(study, objective, Target(Budget(None if n else 0)), search.callbacks)
    if state.is_main_process:
        keep_top_weights(study, store, search.storage_url)
        write_note(study, search.space)
    dist.barrier()
    dist.destroy_process_group()  # left to interpreter teardown, gloo's threads can abort a rank at exit
    return study


def _drive(study: optuna.Study | None, objective: Objective, target: Target, callbacks: list) -> None:
    """Trials together on every rank until the main process (``study`` not None) reaches its ``target``
    (or the queue runs empty); the main process decides, every rank follows."""
    while _broadcast(study is None or not target.reached):
        trial = _ask(study, objective.queue_only) if study is not None else None
        if not _broadcast(study is None or trial is not None):
            break  # the queue ran empty
        try:
            if _broadcast(study is not None and _surplus(trial)):
                raise Surplus("a copy of another trial's job")  # every rank skips it; the main one recorded why
            with quiet():  # its ExperimentalWarning, once per trial and process
                distributed_trial = TorchDistributedTrial(trial)
            values, trial_state = objective(distributed_trial, real_trial=trial), TrialState.COMPLETE
        except optuna.TrialPruned:
            values, trial_state = None, TrialState.PRUNED
        except Exception:  # recorded by the objective; the search goes on
            values, trial_state = None, TrialState.FAIL
        if study is not None:
            frozen = study.tell(trial, values, state=trial_state)
            target.add(study, frozen)
            for callback in callbacks:
                callback(study, frozen)
        dist.barrier()


def _ask(study: optuna.Study, queue_only: bool) -> optuna.Trial | None:
    """A new trial; None when only enqueued ones may run and none waits."""
    with enqueued_only(study, queue_only):
        return study.ask()
    return None


def _surplus(trial: optuna.Trial) -> bool:
    try:
        end_if_surplus(trial)
        return False
    except Surplus:
        return True


def _broadcast(value):
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _for_worker(search: Search, device: str) -> Search:
    """The search one worker process runs: every field but the display's hooks, which stay here; the
    confirmation is the parent's, after every worker has finished."""
    return dataclasses.replace(search, storage=search.storage_url, study_name=search.name, confirm=0, device=device,
                               callbacks=[], on_epoch=None, on_fidelity=None, on_budget=None)


def _worker(search: Search, share: Budget, device: str, threads: int) -> None:
    if device.startswith("cuda"):
        os.environ["CUDA_VISIBLE_DEVICES"] = device.partition(":")[2] or "0"
    else:
        os.environ["ACCELERATE_USE_CPU"] = "1"
        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    run_search(search, enqueue=False, share=share)


def design_row(design) -> dict[str, Any]:
    """A ranked design as plain values: mean +- sd over n seeds and whether it is tied with the best."""
    return dict(spec=design.spec, mean=round(design.mean, 6), sd=None if design.sd is None else round(design.sd, 6),
                n=design.n, tied_with_best=design.tied, errors=design.errors, trials=design.trials)


def mean_sd(design) -> str:
    """A design's error over its seeds in percent, as the paper's tables give it: 2.66 ± 0.80%, or 3.12%."""
    mean = 100 * design.mean
    return f"{mean:.2f}%" if design.sd is None else f"{mean:.2f} ± {100 * design.sd:.2f}%"


def tie_label(design, rank: int) -> str:
    """``best``, ``tied`` (not significantly worse than the best), ``worse``, or ``-`` (one seed: untested)."""
    return "best" if rank == 1 else "-" if design.tied is None else "tied" if design.tied else "worse"


def write_note(study: optuna.Study, space: Space, top: int = 5) -> None:
    """The study's Markdown note in optuna-dashboard (the space, the fidelity check, its best designs with
    mean +- sd over their seeds), and the ranking as the study attribute ``ranking`` (the dashboard shows it)."""
    from optuna_dashboard import save_note  # deferred: a web server's dependencies, needed only here

    trials = study.get_trials(deepcopy=False)
    counts = {}
    for t in trials:
        status = str(status_of(t))
        counts[status] = counts.get(status, 0) + 1
    made = StudyRecord.from_study(study)
    designs = ranked_designs(study)
    lines = [f"# {space.name}", "", space.description, "",
             f"Data set **{made.dataset}**, up to {made.max_epochs} epochs "
             f"per candidate, sampler {space.sampler}, pruner {space.pruner}.", "",
             "Trials: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())), ""]
    if (fidelity := recorded_fidelity(study)) is not None:
        lines += [fidelity.line(), ""]
    lines += ["| rank | trial | val error (mean ± sd) | n | vs best | params | spec |", "|---|---|---|---|---|---|---|"]
    for rank, d in enumerate(designs[:top], start=1):
        record = TrialRecord.from_trial(trials[d.trials[0]])
        lines.append(f"| {rank} | {d.trials[0]} | {mean_sd(d)} | {d.n} | {tie_label(d, rank)} "
                     f"| {record.params or 0:,} | `{d.spec}` |")
    if designs:
        tied = [d.spec for d in designs[1:] if d.tied]
        lines += ["", f"Tied with the best: {len(tied)} design(s) ({TIE_TEST}); n = 1: not confirmed, untested."
                  if designs[0].confirmed else "", "Rebuild the best design:", "",
                  f"    {TrialRecord.from_trial(trials[designs[0].trials[0]]).timm or ''}"]
        study.set_user_attr("ranking", [design_row(d) for d in designs[:top]])
    save_note(study, "\n".join(lines) + "\n")


def export_trial(study: optuna.Study, url: str, number: int | None, output: str | os.PathLike,
                 data_dir: str | None = None, say=None) -> tuple[Path, str]:
    """Write trial ``number`` (default: the best) as a timm local-dir folder; says how it got the weights.
    ``say(line)`` is told before a trial that kept no weights is retrained, with the cost."""
    if number is None:
        designs = ranked_designs(study)
        if not designs:
            raise StudyError(f"study {study.study_name}: no completed trial to export")
        trial = _representative(study, url, designs[0])
    else:
        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        if number not in trials:
            raise StudyError(f"trial: {number} is not in study {study.study_name} (0 .. {len(trials) - 1})")
        trial = trials[number]
        status = TrialRecord.from_trial(trial).status
        if trial.state != TrialState.COMPLETE or status != Status.OK:
            raise StudyError(f"trial: {number} did not complete ({trial.state.name if status is None else status})")
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise StudyError(f"output: {output} exists and is not empty; choose a new folder")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".resnas-export-", dir=output.parent))  # same disk: os.replace is atomic
    follow_umask(tmp)  # mkdtemp's 0700 would become the export's mode
    try:
        how = _fill_export(study, url, trial, tmp, data_dir, say)
        if output.exists():
            output.rmdir()
        os.replace(tmp, output)  # the folder appears whole or not at all
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return output, how


def kept_run(study: optuna.Study, url: str, design) -> optuna.trial.FrozenTrial | None:
    """The run of a design whose kept weights export writes (its lowest-error one); None when none keeps any."""
    trials = study.get_trials(deepcopy=False)
    runs = sorted((trials[n] for n in design.trials), key=lambda t: (t.values[0], t.number))
    return next((t for t in runs if weights_kept(url, TrialRecord.from_trial(t))), None)


def _representative(study: optuna.Study, url: str, design) -> optuna.trial.FrozenTrial:
    """The run of a design that export writes: its run with kept weights, else its search trial."""
    return kept_run(study, url, design) or study.get_trials(deepcopy=False)[design.trials[0]]


def _download_kept(url: str, trial, folder: Path) -> bool:
    """Write the trial's kept files into ``folder``, their sha256 checked; False when it kept none."""
    record = TrialRecord.from_trial(trial)
    if not weights_kept(url, record):
        return False
    store = artifact_store(url)
    try:
        for name in ARTIFACT_FILES:
            download_artifact(artifact_store=store, artifact_id=record.artifacts[name], file_path=str(folder / name))
    except optuna.artifacts.exceptions.ArtifactNotFound:  # removed since (a worker's top k): as if never kept
        for name in ARTIFACT_FILES:
            (folder / name).unlink(missing_ok=True)
        return False
    kept = record.artifacts[WEIGHTS]  # a damaged artifact: one line (ExportError), nothing written
    verify_weights(folder / WEIGHTS, f"trial {trial.number}'s kept weights (artifact {kept})")
    return True


def _fill_export(study: optuna.Study, url: str, trial, folder: Path, data_dir: str | None, say) -> str:
    """The trial's own weights from its artifacts, or a retraining when it kept none (``say`` says so first)."""
    if _download_kept(url, trial, folder):
        return f"trial {trial.number}'s own weights"
    record, made = TrialRecord.from_trial(trial), StudyRecord.from_study(study)
    data = load_data(made.dataset or "digits", data_dir)
    epochs = int(made.max_epochs or record.epochs or 1)
    if say is not None:
        say(retraining_line(trial.number, epochs, record.epoch_seconds))
    recipe = search_recipe(data.name, made.recipe or {}, epochs)
    result = train(record.spec, data, epochs, recipe, seed=_training_seed(study, trial))
    export(result.model, folder, **data.pretrained_cfg())
    return f"retrained for {epochs} epochs: trial {trial.number} kept no weights"


def retraining_line(number: int, epochs: int, epoch_seconds: list[float]) -> str:
    """What export says before it retrains a trial, with the cost its recorded epoch times give."""
    if not epoch_seconds:
        return f"trial {number} kept no weights: retraining it, {epochs} epochs (no recorded epoch times)"
    seconds = epochs * sum(epoch_seconds) / len(epoch_seconds)
    about = f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}"
    return f"trial {number} kept no weights: retraining it, {epochs} epochs, about {about} s from its recorded " \
           "epoch times"


def kept_test_errors(study: optuna.Study, url: str, designs: list, data_dir: str | None = None) -> list:
    """For each design, ``(trial, test error)`` of the run whose kept weights export writes (loaded as export
    loads them, sha256 checked), or None when no run of it kept weights. Only this reads the test split."""
    made, found = StudyRecord.from_study(study), []
    runs = [kept_run(study, url, d) for d in designs]
    if not any(runs):
        return [None] * len(designs)
    data = load_data(made.dataset or "digits", data_dir)
    for trial in runs:
        with tempfile.TemporaryDirectory() as tmp:
            found.append(None if trial is None or not _download_kept(url, trial, Path(tmp)) else
                         (trial.number, _test_error(load_export(tmp), data)))
    return found


@torch.no_grad()
def _test_error(model: torch.nn.Module, data, batch_size: int = 256) -> float:
    """The error over the whole test split (wrong / count, as training counts validation error)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device).eval()
    wrong = count = 0
    for x, y in data.loader("test", batch_size, device=device):
        wrong += int((model(x.to(device)).argmax(1) != y.to(device)).sum())
        count += len(y)
    return wrong / count


def _training_seed(study: optuna.Study, trial) -> int:
    """The seed the search trained ``trial`` with: its record; for trials that predate the record, the
    design seed of the study's seed, else of its space file's seed, else of 0 (``Space.seed``'s default)."""
    record, made = TrialRecord.from_trial(trial), StudyRecord.from_study(study)
    if record.seed is not None:
        return int(record.seed)
    seed = made.seed
    if seed is None:
        try:
            seed = load_space(made.space_file).seed
        except Exception:  # no space file recorded, or it is gone
            seed = 0
    return design_seed(int(seed), record.spec)


def run(search: Search, devices: list[str] | None = None, poll=None) -> optuna.Study | None:
    """The runner the environment asks for: distributed under ``accelerate launch`` / ``torchrun``
    (WORLD_SIZE > 1; None on the processes other than the main one), else one worker process per
    device when ``devices`` are given, else trials in this process."""
    if distributed():
        return run_distributed(search)
    if devices:
        return run_workers(search, devices, poll=poll)
    return run_search(search)


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


def distributed() -> bool:
    """Under ``accelerate launch`` / ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that completed, were pruned or failed (a display follows workers through them)."""
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
