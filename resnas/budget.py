"""The budget of a run: what it adds to its study, and counting finished trials toward the target.

``--trials N`` is a target for the study (the same command resumes an interrupted search), ``--more N``
adds to what it holds, ``--budget-epochs N`` counts candidate-epochs; a grid's budget is its points. A
trial counts a design trained: a redraw of a completed design takes its twin's result and counts for
nothing, and a space with fewer designs than the target ends once every one has been trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from .config import Search
from .record import INTERRUPTED, drawn, epochs_spent, status_of, trained
from .space import DEFAULT_TRIALS, Space, SpaceError
from .status import Status
from .study import FINISHED

__all__ = ["Budget", "Target", "budget", "counted", "exhausted_line", "search_trials", "split_line"]


def _search_own(trial) -> bool:
    """A trial of the search proper: not a race run or repeat, not a surplus copy of another's job."""
    return drawn(trial) and trial.user_attrs.get("status") != Status.SURPLUS


def counted(trial) -> bool:
    """Whether a trial counts toward ``--trials``: a finished trial of the search proper (complete, pruned, or
    failed with its reason); not a race run, a surplus copy, a redraw of a completed design (it trained
    nothing), nor a trial that a retry redoes (interrupted by Ctrl-C, lost with its worker): the retry
    counts instead."""
    return trial.state in FINISHED and _search_own(trial) and trained(trial) \
        and status_of(trial) != Status.LOST and trial.user_attrs.get("reason") != INTERRUPTED


def search_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials the study holds toward its target (``counted``)."""
    return [t for t in study.get_trials(deepcopy=False) if counted(t)]


def _designs(space: Space) -> int | None:
    """How many designs the space holds; None when a range makes them countless (or past MAX_POINTS)."""
    try:
        return len(space.grid_points())
    except SpaceError:
        return None


def _tried(trials) -> int:
    """The designs that ``trials`` (counted ones) trained, each once."""
    return len({t.user_attrs.get("spec") for t in trials})


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
    epochs_target: int | None = None  # --budget-epochs less the race's first look
    queue: bool = False  # enqueued trials only, until none waits (the workers' race)
    designs: int | None = None  # the designs of a sampled space (None: countless, or a grid)
    tried: int = 0  # the designs the study's search trials trained

    @property
    def done(self) -> bool:
        return self.trials == 0 or self.epochs == 0 or self.every_design

    @property
    def every_design(self) -> bool:
        """Every design of the space is trained: a sampler could only redraw them."""
        return self.designs is not None and self.tried >= self.designs

    def line(self) -> str:
        """One line: what the study holds of its target; when done, how to add to it."""
        if self.every_design:
            return f"study holds every design of the space ({self.tried}): nothing is left to draw"
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
                  None if goal is None else max(0, goal - spent), target, len(held), spent, goal,
                  designs=_designs(search.space), tried=_tried(held))


def split_line(search: Search, plan: Budget) -> str:
    """One line before the search starts: its share of the budget, then the race's (resnas.racing): up to
    its designs x first-look-to-max seeds x the full epochs; with --budget-epochs the first look is reserved,
    later rounds run while the epochs last."""
    race, epochs, total, n = search.race_rules, search.max_epochs, search.budget_epochs, search.race_designs
    by_epochs = total is not None and search.space.sampler != "grid"
    head = f"{plan.trials} grid points" if search.space.sampler == "grid" else \
        f"{total} epochs" if by_epochs else f"{plan.target} trials"
    if not search.confirm or len(search.space.objectives) > 1:
        why = "--confirm 0" if not search.confirm else "two objectives: no single best"
        return f"budget: {head} for the search; no race ({why})"
    if search.repeats:
        return f"budget: {head} for the search, then the best {search.confirm} x {search.repeats} more seeds"
    baseline = {"paper": " + the paper's unit", "none": ""}.get(search.baseline, " + the baseline")
    who = f"up to {n} designs (the best {search.confirm}{baseline})"
    if by_epochs:
        more = f", then up to {race.max_seeds} seeds" if race.max_seeds > race.first_look else ""
        return (f"budget: {head}: about {search.search_epochs} for the search, {search.confirm_epochs} for the race "
                f"of {who} x {race.first_look} seeds x {epochs} epochs{more} while the {total} last")
    seeds = f"{race.first_look}" if race.first_look == race.max_seeds else f"{race.first_look}-{race.max_seeds}"
    return (f"budget: {head} for the search, then a race of {who}, {seeds} seeds x {epochs} epochs each: "
            f"at most {n * race.max_seeds * epochs} epochs")


def exhausted_line(study: optuna.Study, search: Search) -> str | None:
    """One line when a sampled space's designs ran out before its target: every one is trained."""
    designs, held = _designs(search.space), search_trials(study)
    if search.space.sampler == "grid" or designs is None or _tried(held) < designs:
        return None
    return (f"space {search.space.name}: all {designs} designs are trained, in {len(held)} trials (a redraw "
            "trains nothing and counts for nothing): the search ends there")


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
        if (self.plan.target is not None or self.plan.designs is not None) and not self.reached:
            held = search_trials(study)
            self.full = (self.plan.target is not None and len(held) + _in_flight(study) >= self.plan.target) or \
                (self.plan.designs is not None and _tried(held) >= self.plan.designs)
        return self.reached

    @property
    def reached(self) -> bool:
        plan = self.plan
        return self.full or (plan.trials is not None and self.ran >= plan.trials) or \
            (plan.epochs is not None and self.spent >= plan.epochs)
