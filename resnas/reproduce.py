"""``resnas reproduce table1|table2``: the paper's Tables 1 and 2 as grid studies, measured beside its numbers.

Each row of the table is one grid point of the built-in space (``paper_table1`` / ``paper_table2``);
one study trains every row once, then ``repeats - 1`` more times through the search's confirmation
(repeat k trains with the seed of (design, k)), and the row's measured error is the median over them
(the paper reports the median of 5 runs). "fail" follows the paper: an error above 20%. Every row
is also probed at initialization (``resnas.probe``), so the rows that fail stand beside their
gradient ratio |dE/dx_1| / |dE/dx_L|.

    >>> job = Reproduction("table1", dataset="digits", depth_scale=1 / 3, epochs=15, rows=(1, 3))  # doctest: +SKIP
    >>> rows = run(job)                                                                          # doctest: +SKIP
    >>> print(to_markdown(job, rows))                                                            # doctest: +SKIP
"""

from __future__ import annotations

import csv
import dataclasses
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from .data import load_data
from .probe import probe
from .record import TrialRecord
from .search import Search, run_search
from .space import Space, load_space
from .spec import CONVS_PER_UNIT, SHORTCUTS, ArchSpec

FAIL = 0.20  # the paper's "fail": test error above 20%
PAPER_EPOCHS = 164
# --quick, for digits on a CPU: ResNet-38 / ResNet-56 for 110 / 164; 10 epochs left the identity row at 18%
QUICK_DEPTH_SCALE, QUICK_EPOCHS = 1 / 3, 15
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
    epochs: int = PAPER_EPOCHS
    rows: tuple[int, ...] = ()  # 1-based row numbers; () = all
    storage: str | None = None
    study_prefix: str | None = None
    seed: int = 0
    probe_batch: int = 32
    callbacks: list = field(default_factory=list)  # optuna study callbacks (the CLI's display)

    def __post_init__(self) -> None:
        if self.table not in TABLES:
            raise ReproduceError(f"table: {self.table!r} is unknown; allowed: {', '.join(TABLES)}")
        n = len(TABLES[self.table])
        bad = [r for r in self.rows if not 1 <= r <= n]
        if bad:
            raise ReproduceError(f"rows: {bad[0]} is not a row of {self.table}; allowed: 1 .. {n}")
        if not 0 < self.depth_scale <= 1:
            raise ReproduceError(f"depth_scale: {self.depth_scale!r} is out of range; allowed: (0, 1]")

    @property
    def space(self) -> Space:
        return scaled_space(load_space(f"paper_{self.table}"), self.depth_scale)

    @property
    def reduced(self) -> list[str]:
        """How this run departs from the paper's protocol, for every output to say."""
        notes = []
        if self.dataset != "cifar10":
            notes.append(f"data set {self.dataset}, not CIFAR-10")
        if self.depth_scale != 1:
            notes.append(f"depths reduced x{self.depth_scale:.3g} ({', '.join(self.depth_names)})")
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

    def study_name(self) -> str:
        return f"{self.study_prefix or self.space.name}-{self.epochs}ep"


@dataclass(frozen=True)
class Row:
    """One row of the reproduced table."""

    number: int
    label: str
    spec: str  # the network that was trained (reduced depth when asked)
    paper: float | None  # % test error, None = fail
    errors: tuple[float | None, ...]  # per repeat, as fractions; None = no result (pruned, failed: ranked as fail)
    probe_gain: float

    @property
    def measured(self) -> float | None:
        done = [e for e in self.errors if e is not None]
        return statistics.median(done) if done else None

    @property
    def fail(self) -> bool:
        return self.measured is None or self.measured > FAIL

    @property
    def probe_ratio(self) -> float:
        return 10.0 ** self.probe_gain


def scaled_space(space: Space, depth_scale: float) -> Space:
    """``space`` with every CIFAR depth's units per stage scaled by ``depth_scale`` (at least 1 unit).

        >>> scaled_space(load_space("paper_table2"), 1 / 3).choices["depth"]
        {'basic': (38,), 'bottleneck': (56,)}
    """
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


def run(job: Reproduction) -> list[Row]:
    """Train every selected row ``job.repeats`` times in one study (resumed when it exists); the rows."""
    space, data = job.space, load_data(job.dataset, job.data_dir)
    fixed = dict(in_chans=data.input_size[0], num_classes=data.num_classes)
    points = dict(zip([row_key(job.table, s) for s in space.specs(**fixed)], space.grid_points()))
    chosen = [(i, *row) for i, row in enumerate(TABLES[job.table], start=1) if not job.rows or i in job.rows]
    # one study: the search's own grid path trains every row once (interrupted rows are retried from
    # their checkpoints, a point a trial holds is never enqueued again), then its confirmation trains
    # every row repeats - 1 more times with the seed of (design, repeat)
    search = Search(space, storage=job.storage, study_name=job.study_name(), dataset=job.dataset,
                    data_dir=job.data_dir, epochs=job.epochs, seed=job.seed, callbacks=job.callbacks,
                    grid=[points[key] for _, _, key, _ in chosen], confirm=len(chosen), repeats=job.repeats - 1)
    study = run_search(search)
    done = {(_freeze(t.params), TrialRecord.from_trial(t).repeat or 0): t.values[0]
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    errors = {i: [done.get((_freeze(points[key]), r)) for r in range(job.repeats)] for i, _, key, _ in chosen}
    x, y = next(iter(data.loader("val", job.probe_batch)))
    specs = {row_key(job.table, s): s for s in space.specs(**fixed)}
    return [Row(i, label, str(specs[key]), paper, tuple(errors[i]), probe(specs[key], x, y, seed=job.seed).gain)
            for i, label, key, paper in chosen]


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
    measured_ranks = ranks([None if r.fail else r.measured for r in rows])
    return [dict(row=r.number, variant=r.label, paper_error=_pct(r.paper), paper_rank=pr,
                 measured_error=_pct(r.measured, 100, "-"), measured_rank=mr, measured_fail=r.fail,
                 runs=";".join(_pct(e, 100, "-") for e in r.errors),
                 probe_ratio=f"{r.probe_ratio:.3g}", spec=r.spec)
            for r, pr, mr in zip(rows, paper_ranks, measured_ranks)]


def _pct(value: float | None, scale: float = 1, missing: str = "fail") -> str:
    """A % cell; ``missing`` for no value ("fail" in the paper's column, "-" for a run without a result)."""
    return missing if value is None else f"{value * scale:.2f}"


def agreement(rows: list[Row]) -> str:
    """How many rows the measurement and the paper agree on, fail or not."""
    same = sum((r.paper is None) == r.fail for r in rows)
    return f"{same} of {len(rows)} rows agree with the paper on fail / not fail (error above {FAIL:.0%})"


def to_markdown(job: Reproduction, rows: list[Row], seconds: float | None = None) -> str:
    """The reproduced table in Markdown: measured beside the paper, with ranks, fails and probe ratios."""
    records = table_rows(rows)
    title = {"table1": "Table 1 (shortcut variants, Fig. 2)", "table2": "Table 2 (activation placements, Fig. 4)"}
    lines = [f"# He et al. 2016, {title[job.table]}, reproduced by resnas", ""]
    if job.reduced:
        lines += ["**Not the paper's setting:** " + "; ".join(job.reduced) + ".", ""]
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
    md.write_text(to_markdown(job, rows, seconds))
    records = table_rows(rows)
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return md, csv_path
