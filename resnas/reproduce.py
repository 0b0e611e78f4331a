"""``resnas reproduce table1|table2``: the paper's Tables 1 and 2 as grid studies, measured beside its numbers.

Each row of the table is one grid point of the built-in space (``paper_table1`` / ``paper_table2``);
one study trains every row once, then ``repeats - 1`` more times through the search's fixed repeats
(``Search.repeats``, not the race; repeat k trains with the seed of k for every row), and the row's
measured error is the median over them (the paper reports the median of 5 runs). "fail" follows the
paper: an error above 20%. Every row
is also probed at initialization (``resnas.probe``), so the rows that fail stand beside their
gradient ratio |dE/dx_1| / |dE/dx_L|. The table so far is written after every finished run (and on
Ctrl-C), the rows not run yet marked "not run"; the study lives under ``output`` unless ``storage``
names one. Two rows of Table 1 at a third of the depth (minutes; not a doctest)::

    job = Reproduction("table1", dataset="digits", depth_scale=1 / 3, epochs=15, rows=(1, 3), output="out")
    table = TableRun(job)
    print(table.estimate().line())
    rows = table.run()  # out/table1.md and out/table1.csv
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from .config import Search
from .data import Data, load_data
from .network import build, count_macs
from .probe import probe
from .recipe import Recipe, search_recipe
from .record import TrialRecord
from .runners import Progress, run_search
from .space import Space, load_space
from .spec import CONVS_PER_UNIT, SHORTCUTS, ArchSpec
from .study import open_study
from .threads import set_threads
from .train import train

__all__ = ["FAIL", "PAPER_EPOCHS", "QUICK_DEPTH_SCALE", "QUICK_EPOCHS", "QUICK_WIDTH_SCALE", "TABLES", "Cost",
           "Estimate", "ReproduceError", "Reproduction", "Row", "TableRun", "agreement", "measure_cost", "ranks",
           "recorded_cost", "row_key", "scaled_space", "table_rows", "write"]

FAIL = 0.20  # the paper's "fail": test error above 20%
NOT_RUN = "not run"  # a run the table does not hold yet
STORAGE_FILE = "reproduce.db"  # the studies' own database under --output (unless --storage)
PAPER_EPOCHS = 164
# --quick, for digits on a CPU, each table under 10 min on 2 cores (REPRODUCING.md, measured): ResNet-38 /
# ResNet-56 for 110 / 164 keep the depth the failing rows need; half widths cost half; 10 epochs left the
# identity row at 18%
QUICK_DEPTH_SCALE, QUICK_WIDTH_SCALE, QUICK_EPOCHS = 1 / 3, 0.5, 15
# Table 1 as the paper prints it: each variant by the label its shortcut row gives it, and its CIFAR-10
# test error in % (None = fail).
_TABLE1 = [
    ("original (identity)", 6.61),
    ("constant scaling 0 / 1 (plain net)", None),
    ("constant scaling 0.5 / 1", None),
    ("constant scaling 0.5 / 0.5", 12.35),
    ("exclusive gating, b_g 0", None),
    ("exclusive gating, b_g -6", 8.70),
    ("exclusive gating, b_g -7", 9.81),
    ("shortcut-only gating, b_g 0", 12.86),
    ("shortcut-only gating, b_g -6", 6.91),
    ("1x1 conv shortcut", 12.22),
    ("dropout shortcut 0.5", None),
]
# Each table's rows: (label, key of the row's spec (``row_key``), the paper's error in %, None = fail).
TABLES: dict[str, list[tuple[str, Any, float | None]]] = {
    "table1": [(label, label, err) for label, err in _TABLE1],
    "table2": [
        *[(f"({letter}) {act}, ResNet-110", ("basic", act), err) for letter, act, err in (
            ("a", "original", 6.61), ("b", "bn_after_add", 8.17), ("c", "relu_before_add", 7.84),
            ("d", "relu_preact", 6.71), ("e", "preact", 6.37))],
        *[(f"({letter}) {act}, ResNet-164", ("bottleneck", act), err) for letter, act, err in (
            ("a", "original", 5.93), ("b", "bn_after_add", 6.50), ("c", "relu_before_add", 6.14),
            ("d", "relu_preact", 5.91), ("e", "preact", 5.46))],
    ],
}


class ReproduceError(ValueError):
    """A reproduction that cannot run as asked (one line, exit code 2 in the CLI)."""


@dataclass
class Reproduction:
    """One ``resnas reproduce``: which table, on what data, at what scale, how many times."""

    table: str
    repeats: int = 1
    dataset: str = "cifar10"
    data_dir: str | None = None
    depth_scale: float = 1.0  # units per stage x this (at least 1)
    width_scale: float = 1.0  # every stage's width x this (ArchSpec.width)
    epochs: int = PAPER_EPOCHS
    rows: tuple[int, ...] = ()  # 1-based row numbers; () = all
    storage: str | None = None
    study_prefix: str | None = None
    seed: int = 0
    probe_batch: int = 32
    output: str | None = None  # where TABLE.md / TABLE.csv go (after every finished run too), and the study
    threads: int | None = None  # torch threads of the training [chosen from the free cores: resnas.threads]

    def __post_init__(self) -> None:
        if self.table not in TABLES:
            raise ReproduceError(f"table: {self.table!r} is unknown; allowed: {', '.join(TABLES)}")
        n = len(TABLES[self.table])
        bad = [r for r in self.rows if not 1 <= r <= n]
        if bad:
            raise ReproduceError(f"rows: {bad[0]} is not a row of {self.table}; allowed: 1 .. {n}")
        if not 0 < self.depth_scale <= 1:
            raise ReproduceError(f"depth_scale: {self.depth_scale!r} is out of range; allowed: (0, 1]")
        if not 0 < self.width_scale <= 1:
            raise ReproduceError(f"width_scale: {self.width_scale!r} is out of range; allowed: (0, 1]")

    @property
    def space(self) -> Space:
        return scaled_space(load_space(f"paper_{self.table}"), self.depth_scale, self.width_scale)

    @property
    def reduced(self) -> list[str]:
        """How this run departs from the paper's protocol, for every output to say."""
        notes = []
        if self.dataset != "cifar10":
            notes.append(f"data set {self.dataset}, not CIFAR-10")
        if self.depth_scale != 1:
            notes.append(f"depths reduced x{self.depth_scale:.3g} ({', '.join(self.depth_names)})")
        if self.width_scale != 1:
            notes.append(f"widths x{self.width_scale:.3g} ({self.width_names})")
        if self.epochs != PAPER_EPOCHS:
            notes.append(f"{self.epochs} epochs, not {PAPER_EPOCHS}")
        if self.repeats != 5:
            notes.append(f"median of {self.repeats} run(s), not 5")
        return notes

    @property
    def depth_names(self) -> list[str]:
        full = {spec.unit: spec.depth for spec in load_space(f"paper_{self.table}").specs()}
        run = {spec.unit: spec.depth for spec in self.space.specs()}
        return [f"ResNet-{run[u]} for ResNet-{full[u]}" for u in full]

    @property
    def width_names(self) -> str:
        full, run = load_space(f"paper_{self.table}").specs()[0], self.space.specs()[0]
        return f"{'-'.join(map(str, run.stage_widths))} for {'-'.join(map(str, full.stage_widths))}"

    def study_name(self) -> str:
        return f"{self.study_prefix or self.space.name}-{self.epochs}ep"

    @property
    def storage_url(self) -> str:
        """``storage``, else a database of its own under ``output``: the user's resnas.db stays untouched."""
        return self.storage or f"sqlite:///{Path(self.output or '.') / STORAGE_FILE}"


@dataclass(frozen=True)
class Row:
    """One row of the reproduced table."""

    number: int
    label: str
    spec: str  # the network that was trained (reduced depth when asked)
    paper: float | None  # % test error, None = fail
    errors: tuple[float | None, ...]  # the finished runs, as fractions; None = no result (pruned: ranked as fail)
    probe_gain: float
    repeats: int = 1  # runs asked for; those not finished yet are "not run"

    @property
    def ran(self) -> bool:
        return bool(self.errors)

    @property
    def measured(self) -> float | None:
        done = [e for e in self.errors if e is not None]
        return statistics.median(done) if done else None

    @property
    def fail(self) -> bool:
        return self.ran and (self.measured is None or self.measured > FAIL)

    @property
    def probe_ratio(self) -> float:
        return 10.0 ** self.probe_gain


def scaled_space(space: Space, depth_scale: float, width_scale: float = 1.0) -> Space:
    """``space`` with every CIFAR depth's units per stage scaled by ``depth_scale`` (at least 1 unit), and its
    widths by ``width_scale``.

        >>> scaled_space(load_space("paper_table2"), 1 / 3).choices["depth"]
        {'basic': (38,), 'bottleneck': (56,)}
        >>> scaled_space(load_space("paper_table1"), 1, 0.5).specs()[0].stage_widths
        (8, 16, 32)
    """
    if width_scale != 1:
        space = dataclasses.replace(space, name=f"{space.name}-w{width_scale:.3g}",
                                    choices={**space.choices, "width": (width_scale,)})
    if depth_scale == 1:
        return space
    depth = space.choices["depth"]
    scaled = ({unit: _scale_depths(d, unit, depth_scale) for unit, d in depth.items()} if isinstance(depth, dict)
              else _scale_depths(depth, space.choices["unit"][0], depth_scale))
    return dataclasses.replace(space, name=f"{space.name}-x{depth_scale:.3g}",
                               choices={**space.choices, "depth": scaled})


def _scale_depths(depths: tuple[int, ...], unit: str, scale: float) -> tuple[int, ...]:
    per = 3 * CONVS_PER_UNIT[unit]  # convs per unit, three stages
    return tuple(per * max(1, round((d - 2) // per * scale)) + 2 for d in depths)


def row_key(table: str, spec: ArchSpec) -> Any:
    """What identifies a spec's row: its shortcut row's label of its parameters (Table 1), or unit and act.

        >>> row_key("table1", ArchSpec(shortcut="scaling", scale=0.5, f_scale=0.5))
        'constant scaling 0.5 / 0.5'
    """
    if table == "table2":
        return (spec.unit, spec.act)
    return SHORTCUTS[spec.shortcut].label(**dict(spec.shortcut_params))


@dataclass(frozen=True)
class Planned:
    """A row to train: its number and label in the paper's table, its network and grid point, the paper's error."""

    number: int
    label: str
    spec: ArchSpec
    point: dict[str, Any]
    paper: float | None


@dataclass(frozen=True)
class Estimate:
    """What a reproduction will cost on this machine: per run, the seconds around its epochs and each epoch's
    seconds (:class:`Cost`), measured on one real epoch (``measure_cost``) or read from the runs finished."""

    table: str
    rows: int
    repeats: int
    epochs: int
    runs: int  # rows x repeats
    runs_left: int  # not finished yet (a resumed study has the others)
    seconds: float  # for the runs left
    source: str  # what was measured: "one epoch of row 1", "2 finished runs"

    def line(self) -> str:
        """``table2: 10 rows x 1 repeat x 15 epochs, about 12 min on this machine (from one epoch of row 1)``."""
        head = (f"{self.table}: {self.rows} rows x {self.repeats} repeat{'s' * (self.repeats > 1)} x "
                f"{self.epochs} epochs")
        if self.runs_left == 0:
            return f"{head}: every run is done, nothing to train"
        done = f", {self.runs - self.runs_left} of {self.runs} runs done" if self.runs_left < self.runs else ""
        left = " left" if done else ""
        return f"{head}{done}, about {duration(self.seconds)}{left} on this machine (from {self.source})"

    def left(self, work: float, elapsed: float) -> str:
        """``about 7 min left``: the estimate's seconds not yet done (``work`` of them are), scaled by how the
        ``elapsed`` seconds compare with that work."""
        rest = max(0.0, self.seconds - work)
        return f"about {duration(rest * elapsed / work if work else rest)} left"


def duration(seconds: float) -> str:
    """``40 s``, ``12 min``, ``9.2 h``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Cost:
    """A run's cost on this machine: ``per_mac`` seconds an epoch per MAC of the network (rows scale by their
    MACs), and ``overhead`` seconds a run besides its epochs (building, loaders, checkpoints, Optuna)."""

    per_mac: float
    overhead: float

    def epoch(self, macs: int, epochs: int) -> float:
        """Seconds per epoch of a ``macs`` network, its run's overhead spread over its ``epochs``."""
        return self.per_mac * macs + self.overhead / epochs


def measure_cost(spec: ArchSpec, data: Data, recipe: Recipe, seed: int = 0) -> Cost:
    """One real epoch of ``spec`` through the search's trainer (``resnas.train.train``: its loaders, validation
    and epoch checkpoint); the time around the epoch is the run's overhead. Not a few steps of one batch:
    those missed the loader, the checkpoints and the time around the epochs (issue 24 saw a seventh)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train(spec, data, 1, recipe, seed=seed, checkpoint_dir=tmp)
        wall = time.perf_counter() - start
    epoch = result.epoch_seconds[0] if result.epoch_seconds else wall  # diverged or out of memory: all of it
    return Cost(epoch / max(result.macs, 1), max(0.0, wall - epoch))


def recorded_cost(trials: list) -> Cost | None:
    """The cost the finished runs ``trials`` took (their recorded epoch seconds, MACs and duration); None
    without one that trained. Resuming reads it instead of timing rows again."""
    rates, overheads = [], []
    for t in trials:
        record = TrialRecord.from_trial(t)
        if record.epoch_seconds and record.macs and t.duration is not None:
            rates.append(statistics.mean(record.epoch_seconds) / record.macs)
            trained = record.epoch_seconds[record.resumed_from_epoch or 0:]  # a retry trained these itself
            overheads.append(max(0.0, t.duration.total_seconds() - sum(trained)))
    return Cost(statistics.median(rates), statistics.median(overheads)) if rates else None


class TableRun:
    """A reproduction under way: its rows, its study, and the table so far, written to ``job.output`` after
    every finished run and on Ctrl-C. ``on_epoch(row, report)`` and ``on_run(row, trial)`` follow it."""

    def __init__(self, job: Reproduction, on_epoch: Callable[[Planned, Any], None] | None = None,
                 on_run: Callable[[Planned, Any], None] | None = None):
        self.job, self.data = job, load_data(job.dataset, job.data_dir)
        self.planned = _plan(job, self.data)
        self.search = Search(job.space, storage=job.storage_url, study_name=job.study_name(), dataset=job.dataset,
                             data_dir=job.data_dir, epochs=job.epochs, seed=job.seed, threads=job.threads,
                             grid=[p.point for p in self.planned], repeats=job.repeats - 1,
                             confirm=len(self.planned) if job.repeats > 1 else 0)  # repeats, never a race
        self.gains: dict[int, float] = {}
        self.seconds: dict[int, float] = {}  # estimated seconds per epoch, by row number
        self.study = None
        self.written: tuple[Path, Path] | None = None
        self.on_epoch, self.on_run = on_epoch, on_run
        self._start, self._numbers = time.perf_counter(), {}  # trial number -> row

    def estimate(self) -> Estimate:
        """Open (or resume) the study, probe every row, and estimate the runs left: from the cost of the runs
        the study finished, else from one real epoch of the first row left (``measure_cost``)."""
        if self.job.storage is None:
            Path(self.job.output or ".").mkdir(parents=True, exist_ok=True)
        self.study = open_study(self.search)  # first: Ctrl-C from here on names the runs it holds
        x, y = next(iter(self.data.loader("val", self.job.probe_batch)))
        self.gains = {p.number: probe(p.spec, x, y, seed=self.job.seed).gain for p in self.planned}
        job, left = self.job, {r.number: r.repeats - len(r.errors) for r in self.rows()}
        todo = [p for p in self.planned if left[p.number]]
        finished = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        cost, source = recorded_cost(finished), f"{len(finished)} finished run{'s' * (len(finished) > 1)}"
        if cost is None and todo:
            set_threads(job.threads)  # as run_search will train the rows
            recipe = search_recipe(job.dataset, job.space.recipe, job.epochs)
            cost, source = measure_cost(todo[0].spec, self.data, recipe, job.seed), f"one epoch of row {todo[0].number}"
        self.seconds = {p.number: cost.epoch(_macs(p.spec, self.data), job.epochs) for p in todo}
        return Estimate(job.table, len(self.planned), job.repeats, job.epochs, len(self.planned) * job.repeats,
                        sum(left.values()), sum(self.seconds[p.number] * job.epochs * left[p.number] for p in todo),
                        source)

    def run(self) -> list[Row]:
        """Train every row left ``job.repeats`` times (the study resumed); the table, written."""
        if self.study is None:
            self.estimate()
        self._start = time.perf_counter()
        try:
            run_search(self.search, Progress(callbacks=(self._finished,), on_epoch=self._epoch))
        finally:  # Ctrl-C too: the table so far
            self.write()
        return self.rows()

    def rows(self) -> list[Row]:
        """The table as the study holds it now: the finished runs of every row (the others not run)."""
        done: dict[tuple, float | None] = {}
        for t in ([] if self.study is None else
                  self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))):
            done[(_freeze(t.params), TrialRecord.from_trial(t).repeat or 0)] = \
                t.values[0] if t.state == TrialState.COMPLETE else None
        keys = {p.number: [(_freeze(p.point), r) for r in range(self.job.repeats)] for p in self.planned}
        return [Row(p.number, p.label, str(p.spec), p.paper, tuple(done[k] for k in keys[p.number] if k in done),
                    self.gains.get(p.number, math.nan), self.job.repeats) for p in self.planned]

    def write(self) -> tuple[Path, Path] | None:
        """The table so far, to ``job.output`` (nothing without one)."""
        if self.job.output is not None:
            self.written = write(self.job, self.rows(), self.job.output, time.perf_counter() - self._start)
        return self.written

    def row_of(self, number: int) -> Planned | None:
        """The row trial ``number`` trains."""
        if number not in self._numbers and self.study is not None:
            points = {_freeze(p.point): p for p in self.planned}
            self._numbers.update({t.number: points.get(_freeze(t.params)) for t in self.study.get_trials(deepcopy=False)
                                  if t.params})
        return self._numbers.get(number)

    def _epoch(self, number: int, report) -> None:
        if self.on_epoch is not None and (row := self.row_of(number)) is not None:
            self.on_epoch(row, report)

    def _finished(self, study, trial) -> None:
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            return  # a failed run is retried: its row is not run yet
        if self.on_run is not None and (row := self.row_of(trial.number)) is not None:
            self.on_run(row, trial)
        self.write()


def _macs(spec: ArchSpec, data: Data) -> int:
    return count_macs(build(spec), data.input_size)


def _plan(job: Reproduction, data: Data) -> list[Planned]:
    space = job.space
    specs = space.specs(in_chans=data.input_size[0], num_classes=data.num_classes)
    by_key = {row_key(job.table, s): (s, p) for s, p in zip(specs, space.grid_points())}
    return [Planned(i, label, *by_key[key], paper) for i, (label, key, paper) in enumerate(TABLES[job.table], start=1)
            if not job.rows or i in job.rows]


def _freeze(params: dict[str, Any]) -> tuple:
    return tuple(sorted(params.items()))


def ranks(values: list[float | None]) -> list[int]:
    """1 = lowest error; fail rows (None or above 20%) share the last rank, as the paper cannot order them.

        >>> ranks([0.0661, None, 0.1235, 0.5])
        [1, 3, 2, 3]
    """
    ok = sorted(v for v in values if v is not None and v <= FAIL)
    last = len(ok) + 1
    return [ok.index(v) + 1 if v is not None and v <= FAIL else last for v in values]


def table_rows(rows: list[Row]) -> list[dict[str, Any]]:
    """The rows as flat records (CSV columns, JSON, Markdown cells); errors in %."""
    paper_ranks = ranks([None if r.paper is None else r.paper / 100 for r in rows])
    ran = [r for r in rows if r.ran]  # the rows not run yet have no rank
    measured_ranks = dict(zip([r.number for r in ran], ranks([None if r.fail else r.measured for r in ran])))
    return [dict(row=r.number, variant=r.label, paper_error=_pct(r.paper), paper_rank=pr,
                 measured_error=_pct(r.measured, 100, "-") if r.ran else NOT_RUN,
                 measured_rank=measured_ranks.get(r.number, "-"), measured_fail=r.fail if r.ran else "",
                 runs=";".join([*(_pct(e, 100, "-") for e in r.errors), *[NOT_RUN] * (r.repeats - len(r.errors))]),
                 probe_ratio=f"{r.probe_ratio:.3g}", spec=r.spec)
            for r, pr in zip(rows, paper_ranks)]


def _pct(value: float | None, scale: float = 1, missing: str = "fail") -> str:
    """A % cell; ``missing`` for no value ("fail" in the paper's column, "-" for a run without a result)."""
    return missing if value is None else f"{value * scale:.2f}"


def agreement(rows: list[Row]) -> str:
    """How many rows the measurement and the paper agree on, fail or not (of the rows run so far)."""
    ran = [r for r in rows if r.ran]
    same = sum((r.paper is None) == r.fail for r in ran)
    line = f"{same} of {len(ran)} rows agree with the paper on fail / not fail (error above {FAIL:.0%})"
    return line if len(ran) == len(rows) else f"{line}; {len(rows) - len(ran)} rows not run yet"


def _markdown(job: Reproduction, rows: list[Row], seconds: float | None = None) -> str:
    """The reproduced table in Markdown: measured beside the paper, with ranks, fails and probe ratios."""
    records = table_rows(rows)
    title = {"table1": "Table 1 (shortcut variants, Fig. 2)", "table2": "Table 2 (activation placements, Fig. 4)"}
    lines = [f"# He et al. 2016, {title[job.table]}, reproduced by resnas", ""]
    if job.reduced:
        lines += ["**Not the paper's setting:** " + "; ".join(job.reduced) + ".", ""]
    left = sum(r.repeats - len(r.errors) for r in rows)
    if left:
        lines += [f"**Partial:** {left} of {sum(r.repeats for r in rows)} runs not finished yet (\"{NOT_RUN}\"); "
                  "the same command again continues the study.", ""]
    lines += [f"Measured: median validation error over {job.repeats} run(s) on {job.dataset}, {job.epochs} epochs "
              "per run. Paper: CIFAR-10 test error, median of 5 runs, 164 epochs. \"fail\": error above 20%. "
              "Probe ratio: |dE/dx_1| / |dE/dx_L| at initialization.", "",
              "| row | variant | paper error % | paper rank | measured error % | measured rank | runs % "
              "| probe ratio |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        measured = r["measured_error"] + (" (fail)" if r["measured_fail"] else "")
        lines.append(f"| {r['row']} | {r['variant']} | {r['paper_error']} | {r['paper_rank']} | {measured} | "
                     f"{r['measured_rank']} | {r['runs']} | {r['probe_ratio']} |")
    lines += ["", agreement(rows) + "."]
    if seconds is not None:
        lines.append(f"Wall time: {seconds / 60:.1f} min.")
    return "\n".join(lines) + "\n"


def write(job: Reproduction, rows: list[Row], output: str | Path, seconds: float | None = None) -> tuple[Path, Path]:
    """``OUTPUT/<table>.md`` and ``OUTPUT/<table>.csv``."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    md, csv_path = output / f"{job.table}.md", output / f"{job.table}.csv"
    _replace(md, lambda f: f.write(_markdown(job, rows, seconds)))
    records = table_rows(rows)

    def write_csv(f) -> None:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    _replace(csv_path, write_csv)
    return md, csv_path


def _replace(path: Path, fill) -> None:
    """Write ``path`` whole or not at all: a Ctrl-C while the table is written leaves the previous one."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        fill(f)
    os.replace(tmp, path)
