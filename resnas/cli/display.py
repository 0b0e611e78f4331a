"""What the commands print: tables, specs that wrap at their commas, and the progress of a training, a search
and a reproduction (the layers below report through callbacks; this module draws)."""

from __future__ import annotations

import time

from rich import box
from rich.console import Console, Group
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..record import TrialRecord, epochs_spent, status_of, trained
from ..space import compact_spec, fixed_fields
from ..status import Status

__all__ = ["ReproduceDisplay", "SearchDisplay", "SpecText", "TrainDisplay", "console", "err_console", "percent",
           "print_best", "print_reproduced", "print_train", "say", "tell"]

console = Console()
err_console = Console(stderr=True)
FINISHED = ("COMPLETE", "PRUNED", "FAIL")  # the trial states a display reports


def say(line: str) -> None:
    """One line as it is: no highlighting, never broken (a command in it is copied as it is)."""
    console.print(line, highlight=False, soft_wrap=True)


def tell(line: str) -> None:
    """A line of prose, wrapped at its spaces to the terminal's width (a terminal breaks a long one mid-word)."""
    console.print(line, highlight=False, markup=False)


class SpecText:
    """A spec that wraps after its commas, never inside a field (rich wraps text only at spaces)."""

    def __init__(self, spec: str, note: str = ""):
        fields = spec.split(",")
        self.fields = [f + "," for f in fields[:-1]] + fields[-1:] + ([f" {note}"] if note else [])

    def __rich_measure__(self, console, options):
        return Measurement(max(map(len, self.fields)), sum(map(len, self.fields)))

    def __rich_console__(self, console, options):
        lines = [""]
        for f in self.fields:
            if lines[-1] and len(lines[-1]) + len(f) > options.max_width:
                lines.append("")
            lines[-1] += f if lines[-1] else f.lstrip()
        yield Text("\n".join(lines), no_wrap=True, overflow="ellipsis")  # a field wider than the column: cut


def percent(error: float | None) -> str:
    """An error as the paper's tables give it: 3.12%."""
    return "-" if error is None else f"{error:.2%}"


# ---- train ------------------------------------------------------------------------------------------------
class TrainDisplay:
    """``resnas train``'s progress: a bar of the iterations on a terminal, one line per epoch (above the bar,
    or plain lines in a log); nothing on the processes other than the main one."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar, self.task = enabled, None, None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def on_step(self, done: int, total: int) -> None:
        if not self.enabled or not console.is_terminal:
            return
        if self.bar is None:
            self.bar = Progress(*Progress.get_default_columns(), console=console)
            self.task = self.bar.add_task("training", total=total)
            self.bar.start()
        self.bar.update(self.task, completed=done)

    def on_epoch(self, r) -> None:
        if self.enabled:
            say(f"epoch {r.epoch}/{r.epochs}  train loss {r.train_loss:.4f}  val error {r.val_error:.2%}  "
                f"lr {r.lr:.4g}  {r.seconds:.1f}s")


def print_train(result, data) -> None:
    """A training's result: its spec, status, size, errors and time."""
    table = Table("", "value", title=f"resnas train: {data.name}", show_header=False)
    table.add_row("spec", SpecText(str(result.spec)))  # the whole spec, wrapped at its commas
    table.add_row("status", f"{result.status} ({result.reason})")
    table.add_row("params", f"{result.params:,}")
    table.add_row("MACs / image", f"{result.macs / 1e6:,.2f}M")
    if result.val_error:
        table.add_row("val error", f"{result.val_error[-1]:.2%} (epoch {result.epochs})")
    if result.test_error is not None:
        table.add_row("test error", f"{result.test_error:.2%}")
    table.add_row("time", f"{result.seconds:.1f}s")
    console.print(table)


# ---- search -----------------------------------------------------------------------------------------------
class RunClock(ProgressColumn):
    """The time since the display started, on every bar: a task's own clock stops when it is complete (the
    trials bar at its target while the race still runs)."""

    def __init__(self):
        super().__init__()
        self.start = time.monotonic()

    def render(self, task) -> Text:
        seconds = int(time.monotonic() - self.start)
        return Text(f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}", style="progress.elapsed")


class SearchDisplay:
    """What a search shows: a row per finished trial (printed above the live bar in a terminal, as plain
    lines in a log), and in a terminal a trials bar with the best design so far, ranked as ``resnas best``
    ranks them (mean +- sd over its seeds), and the current trial's epochs."""

    def __init__(self, total: int | None, epochs: int, live: bool, budget_epochs: int | None = None,
                 space=None):
        self.live, self.epochs, self.space, self.best, self.seen = live, epochs, space, None, set()
        self.budget, self.spent, self.fidelity_shown, self.header_shown = budget_epochs, 0, False, False
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 RunClock(), TextColumn("{task.fields[note]}"), console=console, disable=not live)
        # with --budget-epochs the bar counts candidate-epochs spent of the budget, else trials
        self.trials = self.progress.add_task("epochs" if budget_epochs else "trials",
                                             total=budget_epochs or total, note="")
        self.current = self.progress.add_task("trial -", total=epochs, note="")
        self.race = None  # the race's runs, counted apart: they are not trials of the search's target

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.remove_task(self.current)  # the trials bar stays, not a stale bar of the last trial
        self.progress.__exit__(*exc)

    def on_epoch(self, number: int, report) -> None:
        self.progress.update(self.current, description=f"trial {number}", completed=report.epoch,
                             note=f"val error {percent(report.val_error)}")

    def poll(self, study, fidelity=None) -> None:
        """Worker processes train; the parent follows the study in the storage (and its fidelity check's
        ``fidelity`` result, once there is one)."""
        for t in study.get_trials(deepcopy=False):
            if t.state.name in FINISHED and t.number not in self.seen:
                self.seen.add(t.number)
                self.on_trial(study, t)
        if not self.fidelity_shown and fidelity is not None:
            self.on_fidelity(fidelity)

    def on_trial(self, study, trial) -> None:
        from ..designs import ranked_designs  # deferred: Optuna, which the other commands' displays do without
        from ..results import mean_sd

        if study is not None:  # the design ranked first, never the luckiest single run: the race moves it
            self.best = next(iter(ranked_designs(study)), None)
        d = self.best
        best = f"best {mean_sd(d)} (trial {d.trials[0]}, {d.n} seed{'s' * (d.n > 1)})" if d else ""
        self.spent += epochs_spent(trial)
        if self.budget:
            best = f"{max(0, self.budget - self.spent)} epochs left; {best}"
        if TrialRecord.from_trial(trial).repeat is not None and not self.budget:
            if self.race is None:
                self.race = self.progress.add_task("race", total=None, note="")
            self.progress.update(self.race, advance=1)
            self.progress.update(self.trials, note=best)
        else:  # a redraw of a trained design takes no trial of the budget
            self.progress.update(self.trials, advance=epochs_spent(trial) if self.budget else int(trained(trial)),
                                 note=best)
        self.progress.reset(self.current, total=self.epochs, description="trial -")
        self.progress.console.print(self._row(trial))

    def on_budget(self, plan) -> None:
        """What the run adds to the study: the bar's total, and one line when the study already holds trials."""
        if not self.budget and plan.trials is not None:
            self.progress.update(self.trials, total=plan.trials)
        if plan.held or plan.spent or plan.done:
            say(plan.line())

    def _row(self, trial) -> Table:
        """The trial, its status, the epoch it reached, its error at that epoch, its compact spec, a note."""
        record, status = TrialRecord.from_trial(trial), status_of(trial)
        error = record.val_error[-1] if record.val_error else trial.values[0] if trial.values else None
        note = ""
        if record.repeat is not None:  # a race run: another seed of a design the search ranked high, or the baseline
            of = f"confirms trial {record.confirms}" if record.confirms is not None else "race: the baseline"
            note = f"({of}, seed {record.repeat + 1})"
        elif status == Status.DUPLICATE and record.duplicate_of is not None:  # its error is its twin's
            note = f"(trial {record.duplicate_of}'s design: not retrained)"
        elif status not in (Status.OK, Status.PRUNED) and record.reason:
            note = f"({record.reason if len(record.reason) <= 60 else record.reason[:57] + '...'})"
        if self.budget:
            note += f" [{self.spent}/{self.budget} epochs]"
        row = Table.grid(padding=(0, 1))
        for justify, width in (("right", 5), ("left", 9), ("right", max(5, 2 * len(str(self.epochs)) + 1)),
                               ("right", 9)):
            row.add_column(justify=justify, width=width, no_wrap=True)
        row.add_column()
        if not self.header_shown:  # once, above the first row
            self.header_shown = True
            row.add_row("trial", "status", "epoch", "val error", "spec")
        epoch = "-" if status == Status.DUPLICATE else f"{len(record.val_error)}/{self.epochs}"
        row.add_row(str(trial.number), str(status), epoch, percent(error),
                    SpecText(compact_spec(record.spec, self.space) if record.spec else "-", note.strip()))
        return row

    def on_fidelity(self, result) -> None:
        self.fidelity_shown = True
        self.progress.console.print(result.line(), highlight=False)


# ---- best -------------------------------------------------------------------------------------------------
def print_best(study, space, designs: list, rows: list[list[str]], header: list[str], kept_top: int,
               tests: list | None = None, footnote: str | None = None) -> None:
    """A study's designs, best first, each on two lines: its numbers (``rows``, under ``header``) and under
    them its spec; then the fields every design shares and the footnotes (``tests``: None = kept no weights,
    only the top ``kept_top`` do; ``footnote``: what "tied" means)."""
    widths = [max(map(len, column)) for column in zip(header, *rows)]
    # at 80 columns the spec has the width
    table = Table(title=f"best of {study.study_name}", box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("rank", justify="right")
    table.add_column(_aligned(header, widths))
    for rank, (d, row) in enumerate(zip(designs, rows), start=1):
        table.add_row(str(rank), Group(_aligned(row, widths), SpecText(compact_spec(d.spec, space))))
    console.print(table)
    if designs and (fixed := fixed_fields(designs[0].spec, space)):
        console.print(SpecText(f"every design: {fixed} (full specs: resnas best --json)"), highlight=False)
    if tests and None in tests:
        console.print(f"test error -: kept no weights (only the top {kept_top} do); resnas export --trial N "
                      "retrains it", highlight=False)
    if footnote:
        console.print(footnote, highlight=False)


def _aligned(cells: list[str], widths: list[int]) -> Table:
    """One line of cells at the given widths: the numbers of a design, aligned with the header's."""
    line = Table.grid(padding=(0, 2, 0, 0))
    for width in widths:
        line.add_column(width=width, no_wrap=True)
    line.add_row(*cells)
    return line


def test_cell(test: tuple[int, float] | None) -> str:
    """The test error of a design's kept weights in percent; "-" when it kept none."""
    return "-" if test is None else percent(test[1])


def si(n: float) -> str:
    """A count in SI units: 272k, 1.7M."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"


# ---- reproduce --------------------------------------------------------------------------------------------
class ReproduceDisplay:
    """``resnas reproduce``'s progress: one line per finished run, and on a terminal a bar of the work done with
    the row and epoch in training and the time left (the measured estimate, scaled by how the runs so far
    compare with it). ``showing(estimate, seconds)`` draws it once the estimate is known."""

    def __init__(self, live: bool):
        self.live, self.progress, self.task = live, None, None
        self.estimate, self.seconds, self.done, self.work, self.start = None, {}, 0, 0.0, time.perf_counter()

    def showing(self, estimate, seconds: dict[int, float]) -> ReproduceDisplay:
        """Follow a run of ``estimate``, whose rows take ``seconds`` per epoch (by row number)."""
        self.estimate, self.seconds = estimate, seconds
        self.done = estimate.runs - estimate.runs_left
        self.work, self.start = 0.0, time.perf_counter()  # estimated seconds of the epochs trained so far
        if self.live:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[runs]}"),
                                     TimeElapsedColumn(), TextColumn("{task.fields[left]}"), console=console,
                                     transient=True)
        return self

    def __enter__(self):
        if self.progress is not None:
            self.progress.start()
            self.task = self.progress.add_task("starting", total=max(self.estimate.seconds, 1e-9),
                                               runs=self._runs(), left=self._left())
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _runs(self) -> str:
        return f"{self.done}/{self.estimate.runs} runs"

    def _left(self) -> str:
        return self.estimate.left(self.work, time.perf_counter() - self.start)

    def on_epoch(self, row, report) -> None:
        self.work += self.seconds.get(row.number, 0.0)
        if self.progress is not None:
            self.progress.update(self.task, completed=self.work, runs=self._runs(), left=self._left(),
                                 description=f"row {row.number}, epoch {report.epoch}/{report.epochs}")

    def on_run(self, row, trial) -> None:
        self.done += 1
        record = TrialRecord.from_trial(trial)
        error = f"{trial.values[0]:.2%} val error" if trial.values else "pruned"
        repeat = f" (repeat {record.repeat + 1})" if record.repeat else ""
        tell(f"run {self.done}/{self.estimate.runs}: row {row.number}{repeat} {row.label}: {error} after "
            f"{record.epochs} epochs, {record.seconds or 0:.0f} s; {self._left()}")
        if self.progress is not None:
            self.progress.update(self.task, runs=self._runs(), left=self._left())


def print_reproduced(job, rows: list[dict], agreement: str, seconds: float) -> None:
    """The table reproduced (``reproduce.table_rows``) beside the paper's, and how far they agree."""
    title = f"{job.table} reproduced: median of {job.repeats} on {job.dataset}, {job.epochs} epochs"
    table = Table("row", "variant", "paper %", "paper rank", "measured %", "measured rank", "probe ratio",
                  title=title)
    table.columns[1].overflow = "fold"
    for r in rows:
        measured = r["measured_error"] + (" fail" if r["measured_fail"] else "")
        table.add_row(str(r["row"]), r["variant"], r["paper_error"], str(r["paper_rank"]), measured,
                      str(r["measured_rank"]), r["probe_ratio"])
    console.print(table)
    tell(f"{agreement}; {seconds / 60:.1f} min")
