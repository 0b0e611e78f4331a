"""Replay resnas search strategies against a ground-truth table, without training anything.

A ground-truth table is ``NAME.csv`` (``spec,seed,epoch,val_error,train_loss,seconds,params,macs,probe_gain``:
one row per design x ground-truth seed index k x epoch, epochs 1..N) with its space file ``NAME.yaml``
beside it. For every (strategy, replay seed) an in-memory Optuna study runs resnas's strategy: the
objective suggests a design with the space's own ``Space.suggest`` (as ``resnas.objective.Objective``
does), looks up the recorded curve of (design, k) and reports it epoch by epoch through
``trial.report`` / ``trial.should_prune()`` exactly as resnas's objective does; a completed trial's
value is its final-epoch error. Sampler and pruner come from resnas's own ``make_sampler`` /
``make_pruner`` where resnas has them (TPE, random, Hyperband, none); Optuna's
``SuccessiveHalvingPruner`` (reduction factor 3, min resource = min epochs) is the one addition.

- k, the ground-truth seed a design's curve is taken from, is drawn once per (replay seed, design)
  by ``numpy.random.default_rng([replay_seed, crc32(spec)])`` from that design's seeds in the table:
  within one replay a design always replays the same run (resnas seeds training by the design), and
  every strategy sees the same draws for the same replay seed (common random numbers).
- Cost: every reported epoch is one candidate-epoch. A design drawn again after a trial of it
  completed costs 0 (resnas records it as a duplicate of that trial with its value); a design drawn
  again after it was pruned is trained again (and replays the same curve). A probe-filtered trial is
  pruned before training: 0 epochs.
- A curve shorter than N epochs (a diverged run) completes at chance error 1 - 1/num_classes, as
  resnas's objective scores a diverged candidate; a non-finite recorded error is read as chance too.
- Studies are named SPACE-REPLAYSEED: Optuna's Hyperband assigns a trial to a bracket by a crc32 of
  the study name and trial number, so the replay averages over assignments (a product search under
  its default study name, the space's name, always gets one of them).
- The answer of a study is its best completed trial (lowest value, then lowest trial number). A
  study with no completed trial has no answer: it counts as a miss with the worst design's regret.
- The full grid trains every design once to N epochs with the replay seed's draws: epochs = the
  sum of the curves' lengths (designs x N), answer = the best recorded final error.

Ground truth: a design's true mean final error is the mean of its final-epoch errors over its seeds
in the table. The top set is every design whose final errors are NOT significantly worse than the
best design's (the lowest true mean) by a one-sided Welch t-test: ``scipy.stats.ttest_ind(design,
best, equal_var=False, alternative="greater")``, in the top set when p >= 0.05. A design (or best
design) with fewer than 2 seeds is in the top set only if its mean equals the best mean; when both
samples have zero variance the test is undefined and a design is in the top set only if its mean
equals the best mean. Reported per strategy over the replay seeds: median epochs spent (and as a
fraction of the grid's), P(answer in the top set) and median regret (true mean final error of the
answer minus the best true mean).

    python benchmarks/replay.py TABLE.csv --seeds 50
    python benchmarks/replay.py TABLE.csv --seeds 50 --strategies random+none tpe+hyperband "tpe+sh,startup=5,min=2"
    python benchmarks/replay.py TABLE.csv --strategies "tpe+hyperband,probe=2" --reference-gain 1.4

A strategy is a preset name (``--list``) or ``SAMPLER+PRUNER[,key=value...]`` with sampler
``tpe|random``, pruner ``hyperband|sh|median|none`` (or the preset ``grid``) and keys ``min`` (min epochs), ``startup``
(TPE n_startup_trials; default resnas's own choice), ``probe`` (prune before training when |probe
gain| > probe x the reference gain: the gain of the identity, full pre-activation net of the space's
deepest design, read from the table, or ``--reference-gain``) and ``trials`` (default: the space's
``trials``, else the number of designs).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import statistics
import sys
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState
from scipy import stats

from resnas.probe import reference
from resnas.search import Search, make_pruner, make_sampler
from resnas.space import Space, load_space
from resnas.spec import ArchSpec

ALPHA = 0.05
TEST = ("one-sided Welch t-test (scipy.stats.ttest_ind, equal_var=False, alternative='greater') of each "
        f"design's final errors against the best design's, alpha {ALPHA}; fewer than 2 seeds: in the top set "
        "only if its mean equals the best")
SAMPLER_KINDS = ("tpe", "random")
PRUNER_KINDS = ("hyperband", "sh", "median", "none")


# ---- the table -----------------------------------------------------------------------------------
@dataclass
class Table:
    """A ground-truth table: per (spec, k) its curve of validation errors (epochs 1..n) and probe gain."""

    space: Space
    max_epochs: int  # N: the largest epoch in the table
    curves: dict[tuple[str, int], list[float]]
    gains: dict[tuple[str, int], float]
    specs: list[str]  # designs, in the table's order
    seeds: dict[str, list[int]]  # the seed indices k each design has
    num_classes: int = 10

    @property
    def chance(self) -> float:
        return 1.0 - 1.0 / self.num_classes

    def final(self, spec: str, k: int) -> float:
        """The final error of run (spec, k): chance for a diverged (short or non-finite) curve."""
        curve = self.curves[(spec, k)]
        value = curve[-1]
        return value if len(curve) == self.max_epochs and math.isfinite(value) else self.chance

    def finals(self, spec: str) -> list[float]:
        return [self.final(spec, k) for k in self.seeds[spec]]


def load_table(path: str | Path, num_classes: int = 10) -> Table:
    """``NAME.csv`` and its space ``NAME.yaml`` beside it (a path with either suffix, or none, is accepted)."""
    path = Path(path)
    csv_path, yaml_path = path.with_suffix(".csv"), path.with_suffix(".yaml")
    if not csv_path.is_file():
        raise SystemExit(f"replay: no table {csv_path}")
    if not yaml_path.is_file():
        raise SystemExit(f"replay: no space file {yaml_path} beside the table")
    space = load_space(yaml_path)
    rows: dict[tuple[str, int], dict[int, float]] = {}
    gains: dict[tuple[str, int], float] = {}
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"spec", "seed", "epoch", "val_error", "probe_gain"} - set(reader.fieldnames or ())
        if missing:
            raise SystemExit(f"replay: {csv_path}: missing columns {', '.join(sorted(missing))}")
        for row in reader:
            key = (row["spec"], int(row["seed"]))
            rows.setdefault(key, {})[int(row["epoch"])] = float(row["val_error"])
            if row.get("probe_gain") not in (None, ""):
                gains[key] = float(row["probe_gain"])
    if not rows:
        raise SystemExit(f"replay: {csv_path}: no rows")
    curves = {}
    for key, by_epoch in rows.items():
        epochs = sorted(by_epoch)
        if epochs != list(range(1, len(epochs) + 1)):
            raise SystemExit(f"replay: {csv_path}: {key[0]} seed {key[1]}: epochs {epochs} are not 1..n")
        curves[key] = [by_epoch[e] for e in epochs]
    specs = list(dict.fromkeys(spec for spec, _ in curves))
    seeds = {s: sorted(k for spec, k in curves if spec == s) for s in specs}
    return Table(space=space, max_epochs=max(len(c) for c in curves.values()), curves=curves, gains=gains,
                 specs=specs, seeds=seeds, num_classes=num_classes)


# ---- ground truth --------------------------------------------------------------------------------
@dataclass
class Truth:
    means: dict[str, float]
    best: str
    top: list[str]  # the top set, in the table's order

    @property
    def best_mean(self) -> float:
        return self.means[self.best]

    def regret(self, spec: str | None) -> float:
        return (max(self.means.values()) if spec is None else self.means[spec]) - self.best_mean


def ground_truth(table: Table, alpha: float = ALPHA) -> Truth:
    """True mean final errors and the top set (see the module docstring for the test)."""
    finals = {s: table.finals(s) for s in table.specs}
    means = {s: float(np.mean(v)) for s, v in finals.items()}
    best = min(table.specs, key=lambda s: means[s])  # ties: the first in the table
    top = []
    for s in table.specs:
        a, b = finals[s], finals[best]
        if s == best or means[s] <= means[best]:
            top.append(s)
            continue
        if len(a) < 2 or len(b) < 2 or (np.var(a) == 0 and np.var(b) == 0):
            continue  # mean above the best's and no test possible: not in the top set
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
        if not p < alpha:
            top.append(s)
    return Truth(means=means, best=best, top=top)


# ---- strategies ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Strategy:
    """One resnas search strategy: sampler x pruner x min epochs x TPE start-up x probe filter x trials."""

    name: str
    sampler: str = "tpe"  # tpe | random | grid (the full grid: every design once at N epochs)
    pruner: str = "hyperband"  # hyperband | sh (SuccessiveHalvingPruner) | none | grid
    min_epochs: int = 1
    n_startup_trials: int | None = None  # None: resnas's make_sampler choice
    probe: float | None = None  # prune before training when |gain| > probe x reference gain
    trials: int | None = None  # None: the space's trials, else the number of designs

    @property
    def grid(self) -> bool:
        return self.sampler == "grid"

    def describe(self) -> str:
        return (f"sampler {self.sampler}, pruner {self.pruner}, min epochs {self.min_epochs}, "
                f"start-up {self.n_startup_trials or 'resnas'}, probe {self.probe}, trials {self.trials}")


PRESETS = {
    "random+none": Strategy("random+none", sampler="random", pruner="none"),
    "tpe+hyperband": Strategy("tpe+hyperband", sampler="tpe", pruner="hyperband"),  # resnas's default today
    "tpe+sh": Strategy("tpe+sh", sampler="tpe", pruner="sh"),
    "grid": Strategy("grid", sampler="grid", pruner="grid"),
}
DEFAULT_STRATEGIES = ("random+none", "tpe+hyperband", "tpe+sh", "grid")
KEYS = {"min": ("min_epochs", int), "startup": ("n_startup_trials", int), "probe": ("probe", float),
        "trials": ("trials", int)}


def parse_strategy(text: str) -> Strategy:
    """A preset name or ``SAMPLER+PRUNER[,key=value...]`` (keys: min, startup, probe, trials)."""
    head, *options = [t.strip() for t in text.split(",")]
    if head in PRESETS:
        strategy = PRESETS[head]
    else:
        sampler, sep, pruner = head.partition("+")
        if head == "grid":
            sampler, pruner = "grid", "grid"
        elif not sep or sampler not in SAMPLER_KINDS or pruner not in PRUNER_KINDS:
            raise ValueError(f"strategy {text!r}: expected a preset ({', '.join(PRESETS)}) or "
                             f"SAMPLER+PRUNER with sampler {'|'.join(SAMPLER_KINDS)}, pruner "
                             f"{'|'.join(PRUNER_KINDS)}")
        strategy = Strategy(head, sampler=sampler, pruner=pruner)
    changes = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in KEYS:
            raise ValueError(f"strategy {text!r}: {option!r}: expected key=value with key in {', '.join(KEYS)}")
        field, kind = KEYS[key]
        changes[field] = kind(value)
    return dataclasses.replace(strategy, name=text, **changes)


def trial_budget(strategy: Strategy, table: Table) -> int:
    if strategy.trials is not None:
        return strategy.trials
    return table.space.trials if table.space.trials is not None else len(table.specs)


def build_sampler(strategy: Strategy, table: Table, seed: int) -> optuna.samplers.BaseSampler:
    """resnas's own sampler for the strategy's kind and trial budget (n_startup_trials overridden if given)."""
    space = dataclasses.replace(table.space, sampler=strategy.sampler, trials=trial_budget(strategy, table))
    sampler = make_sampler(space, seed)
    if strategy.n_startup_trials is not None:
        if not isinstance(sampler, optuna.samplers.TPESampler):
            raise ValueError(f"strategy {strategy.name}: startup applies to the tpe sampler only")
        # every other argument stays resnas's: only the start-up count is the ablation's
        assert hasattr(sampler, "_n_startup_trials"), "optuna's TPESampler no longer has _n_startup_trials"
        sampler._n_startup_trials = strategy.n_startup_trials
    return sampler


def build_pruner(strategy: Strategy, table: Table) -> optuna.pruners.BasePruner:
    """resnas's own pruner (make_pruner) for hyperband / none; Optuna's SuccessiveHalvingPruner for sh."""
    n = table.max_epochs
    if strategy.min_epochs > n:
        raise ValueError(f"strategy {strategy.name}: min epochs {strategy.min_epochs} above the table's {n}")
    if strategy.pruner == "sh":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=strategy.min_epochs, reduction_factor=3)
    space = dataclasses.replace(table.space, pruner=strategy.pruner, min_epochs=strategy.min_epochs, max_epochs=n)
    return make_pruner(Search(space=space, epochs=n))


def reference_gain(table: Table) -> float | None:
    """The probe gain of the identity, full pre-activation net of the space's deepest design (mean over
    its seeds in the table), or None when the table lacks it."""
    deepest = max(table.specs, key=lambda s: ArchSpec.parse(s).depth)
    ref = str(reference(ArchSpec.parse(deepest)))
    values = [table.gains[(ref, k)] for k in table.seeds.get(ref, []) if (ref, k) in table.gains]
    return float(np.mean(values)) if values else None


# ---- one replay ----------------------------------------------------------------------------------
@dataclass
class Outcome:
    answer: str | None
    epochs: int


def draw_k(table: Table, replay_seed: int, spec: str) -> int:
    """The ground-truth seed index whose curve design ``spec`` replays under ``replay_seed``."""
    rng = np.random.default_rng([replay_seed, zlib.crc32(spec.encode())])
    seeds = table.seeds[spec]
    return seeds[int(rng.integers(len(seeds)))]


def replay_grid(table: Table, replay_seed: int) -> Outcome:
    """Every design once at the full budget; the answer is the best recorded final error."""
    epochs, best = 0, None
    for spec in table.specs:
        k = draw_k(table, replay_seed, spec)
        epochs += len(table.curves[(spec, k)])
        error = table.final(spec, k)
        if best is None or error < best[0]:
            best = (error, spec)
    return Outcome(answer=best[1], epochs=epochs)


def replay_study(strategy: Strategy, table: Table, replay_seed: int, in_chans: int = 1,
                 ref_gain: float | None = None) -> Outcome:
    """One in-memory study of ``strategy`` against the table, ``trial_budget`` trials."""
    if strategy.grid:
        return replay_grid(table, replay_seed)
    space, n = table.space, table.max_epochs
    limit = None if strategy.probe is None else strategy.probe * ref_gain
    spent = [0]
    completed: dict[str, float] = {}  # design -> value of its first completed trial
    designs: dict[int, str] = {}  # trial number -> its design

    def objective(trial: optuna.Trial) -> float:
        spec = str(space.suggest(trial, in_chans=in_chans, num_classes=table.num_classes))
        if spec not in table.seeds:
            raise KeyError(f"the space suggested {spec}, which the table does not have")
        designs[trial.number] = spec
        if spec in completed:  # resnas records a duplicate of the completed trial: no training
            return completed[spec]
        k = draw_k(table, replay_seed, spec)
        if limit is not None:
            gain = table.gains.get((spec, k))
            if gain is not None and not abs(gain) <= limit:
                raise optuna.TrialPruned("probe")
        curve = table.curves[(spec, k)]
        for epoch, error in enumerate(curve, start=1):
            error = error if math.isfinite(error) else table.chance
            trial.report(error, epoch)
            spent[0] += 1
            if epoch != n and trial.should_prune():  # a fully trained candidate completes
                raise optuna.TrialPruned()
        value = table.final(spec, k)
        completed[spec] = value
        return value

    study = optuna.create_study(study_name=f"{space.name}-{replay_seed}", direction="minimize",
                                sampler=build_sampler(strategy, table, replay_seed),
                                pruner=build_pruner(strategy, table))
    study.optimize(objective, n_trials=trial_budget(strategy, table))
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not done:
        return Outcome(answer=None, epochs=spent[0])
    best = min(done, key=lambda t: (t.value, t.number))
    return Outcome(answer=designs[best.number], epochs=spent[0])


# ---- a strategy over many seeds ------------------------------------------------------------------
@dataclass
class Summary:
    strategy: Strategy
    trials: int | None
    epochs: list[int]
    in_top: list[bool]
    regrets: list[float]
    no_answer: int
    seconds: float

    @property
    def median_epochs(self) -> float:
        return float(statistics.median(self.epochs))

    @property
    def p_top(self) -> float:
        return sum(self.in_top) / len(self.in_top)

    @property
    def median_regret(self) -> float:
        return float(statistics.median(self.regrets))


def replay(strategy: Strategy, table: Table, seeds: int, truth: Truth | None = None, in_chans: int = 1,
           ref_gain: float | None = None, first_seed: int = 0) -> Summary:
    truth = truth or ground_truth(table)
    if strategy.probe is not None and ref_gain is None:
        ref_gain = reference_gain(table)
        if ref_gain is None:
            raise ValueError(f"strategy {strategy.name}: the table has no reference net; give --reference-gain")
    start = time.perf_counter()
    outcomes = [replay_study(strategy, table, s, in_chans, ref_gain) for s in range(first_seed, first_seed + seeds)]
    top = set(truth.top)
    return Summary(strategy=strategy, trials=None if strategy.grid else trial_budget(strategy, table),
                   epochs=[o.epochs for o in outcomes], in_top=[o.answer in top for o in outcomes],
                   regrets=[truth.regret(o.answer) for o in outcomes],
                   no_answer=sum(o.answer is None for o in outcomes), seconds=time.perf_counter() - start)


def grid_epochs(table: Table, seeds: int, first_seed: int = 0) -> float:
    return float(statistics.median(replay_grid(table, s).epochs for s in range(first_seed, first_seed + seeds)))


def report(table: Table, truth: Truth, summaries: list[Summary], seeds: int, name: str = "") -> str:
    """The Markdown report: ground truth, then one row per strategy."""
    grid = grid_epochs(table, seeds)
    top = sorted(truth.top, key=truth.means.get)
    lines = [f"## Replay of {name or table.space.name}: {len(table.specs)} designs, {table.max_epochs} epochs, "
             f"{seeds} replay seeds", "",
             f"Ground truth: top set {len(truth.top)} of {len(table.specs)} designs "
             f"(best true mean final error {truth.best_mean:.4f}: {truth.best}). Top set: the designs not "
             f"significantly worse than the best by a {TEST}.", "",
             "Top set, best first: " + "; ".join(f"`{s}` ({truth.means[s]:.4f})" for s in top), "",
             "| strategy | trials | median epochs | fraction of grid | P(answer in top set) | median regret "
             "| no answer | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        lines.append(f"| {s.strategy.name} | {s.trials if s.trials is not None else len(table.specs)} "
                     f"| {s.median_epochs:g} | {s.median_epochs / grid:.2f} | {s.p_top:.2f} "
                     f"| {s.median_regret:.4f} | {s.no_answer} | {s.seconds:.1f} |")
    lines += ["", "Epochs: candidate-epochs reported (a duplicate of a completed design costs 0, a "
              "probe-filtered trial 0). Regret: true mean final error of the answer minus the best true mean; "
              "a study with no completed trial counts as a miss with the worst design's regret."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", nargs="?", help="NAME.csv (with NAME.yaml beside it)")
    parser.add_argument("--seeds", type=int, default=50, help="replay seeds per strategy [50]")
    parser.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES),
                        help=f"presets or SAMPLER+PRUNER[,key=value...] [{' '.join(DEFAULT_STRATEGIES)}]")
    parser.add_argument("--in-chans", type=int, default=1, help="input channels of the table's data [1: digits]")
    parser.add_argument("--num-classes", type=int, default=10, help="classes of the table's data [10: digits]")
    parser.add_argument("--reference-gain", type=float, default=None,
                        help="the probe filter's reference gain [the table's reference net]")
    parser.add_argument("--list", action="store_true", help="list the preset strategies and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, s in PRESETS.items():
            print(f"{name}: {s.describe()}")
        return 0
    if args.table is None:
        parser.error("a TABLE is required")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    try:
        strategies = [parse_strategy(s) for s in args.strategies]
    except ValueError as e:
        parser.error(str(e))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    table = load_table(args.table, num_classes=args.num_classes)
    truth = ground_truth(table)
    try:
        summaries = [replay(s, table, args.seeds, truth, args.in_chans, args.reference_gain) for s in strategies]
    except (KeyError, ValueError) as e:
        print(f"replay: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    print(report(table, truth, summaries, args.seeds, Path(args.table).stem), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
