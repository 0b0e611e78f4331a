"""Replay resnas search strategies against a ground-truth table, without training anything.

A ground-truth table is ``NAME.csv`` (``spec,seed,epoch,val_error,train_loss,seconds,params,macs,probe_gain``:
one row per design x ground-truth seed index k x epoch, epochs 1..N) with its space file ``NAME.yaml``
beside it. For every (strategy, replay seed) an in-memory Optuna study runs resnas's strategy: the
objective suggests a design with the space's own ``Space.suggest`` (as ``resnas.objective.Objective``
does), looks up the recorded curve of (design, k) and reports it epoch by epoch through
``trial.report`` / ``trial.should_prune()`` exactly as resnas's objective does; a completed trial's
value is its final-epoch error. Sampler and pruner come from resnas's own ``make_sampler`` /
``make_pruner`` (TPE, random; Hyperband, successive halving, median, none), and resnas's fidelity
check (``resnas.fidelity.FidelityCheck``) runs as the study's callback unless ``fidelity=0``: once 6
designs reached the two lowest rungs it measures their Spearman correlation and, below 0.5, replaces
the pruner with one from the higher rung, as a product search does.

- Seeds are paired, as resnas trains them (``resnas.recipe.design_seed``: repeat r of every design has
  the same training seed): each replay seed draws one permutation of the table's seed indices,
  ``numpy.random.default_rng([replay_seed, crc32(space name)])``, shared by all designs; repeat r of a
  design replays the table's run perm[r] of it. The search's trials are repeat 0, the race's runs
  repeats 1, 2, ...; every strategy sees the same draws for the same replay seed (common random numbers).
- Cost: every reported epoch is one candidate-epoch. A design drawn again after a trial of it
  completed costs 0 and takes no trial of the budget (resnas records it as a duplicate of that trial
  with its value; the search ends at its trials or once every design is trained); a design drawn
  again after it was pruned is trained again (and replays the same curve). A probe-filtered trial is
  pruned before training: 0 epochs.
- A curve shorter than N epochs (a diverged run) completes at chance error 1 - 1/num_classes, as
  resnas's objective scores a diverged candidate; a non-finite recorded error is read as chance too.
- Studies are named SPACE-REPLAYSEED: Optuna's Hyperband assigns a trial to a bracket by a crc32 of
  the study name and trial number, so the replay averages over assignments (a product search under
  its default study name, the space's name, always gets one of them).
- The answer of a study is its best completed trial (lowest value, then lowest trial number). A
  study with no completed trial has no answer: it counts as a miss with the worst design's regret.
- The race (``confirm=K``), as the product races after its search budget (``resnas.racing``): the
  best K distinct completed designs by value (then trial number) and the baseline, the paper's unit
  with the leader's other choices (``resnas.probe.reference``) when the table has it (``baseline=0``:
  none), race with ``resnas.race.race`` on their repeats, up to ``seeds`` per design (default 10, at
  most the table's seeds). A design's completed search trial is its repeat 0; every other run the race
  uses costs its curve's length. The answer is the race's leader (its winner, or the leader of a tie).
  Judged per race: "significantly worse" claims (designs that left the race), those on a top-set design,
  and the baseline statement, which agrees with the top set when it says "beats" of a baseline outside
  it, or "no design beats it" / "baseline wins" of one inside it, and with the pair when it says "beats"
  exactly where the ground truth's test finds the baseline worse than the design it is compared with
  (the winner; the runner-up when the baseline wins): a winner outside the top set may rightly not beat
  a baseline that is outside it too. A race that reaches
  the table's seed count sees the ground truth's own data, so on tables of few seeds it is optimistic.
- The full grid trains every design once to N epochs (repeat 0): epochs = the sum of the curves'
  lengths (designs x N), answer = the best recorded final error (first in the table's order on a tie),
  then the race when ``confirm`` is set.

Ground truth: a design's true mean final error is the mean of its final-epoch errors over its seeds
in the table. The top set is every design whose final errors are NOT significantly worse than the
best design's (the lowest true mean) by a one-sided Welch t-test (``resnas.ranking.significantly_worse``:
``scipy.stats.ttest_ind(design, best, equal_var=False, alternative="greater")``), in the top set when
p >= 0.05. A design (or best
design) with fewer than 2 seeds is in the top set only if its mean equals the best mean; when both
samples have zero variance the test is undefined and a design is in the top set only if its mean
equals the best mean. Reported per strategy over the replay seeds: median epochs spent (and as a
fraction of the grid's), P(answer in the top set) and median regret (true mean final error of the
answer minus the best true mean); for a strategy with the race, a second table: the race's median
epochs, its "significantly worse" claims and those on the top set, wrong-way claims, how often the
baseline statement agrees (top set; pair), and how the races ended.

    python benchmarks/replay.py TABLE.csv --seeds 50
    python benchmarks/replay.py TABLE.csv --seeds 50 --strategies random+none tpe+hyperband "tpe+sh,startup=5,min=2"
    python benchmarks/replay.py TABLE.csv --strategies "tpe+hyperband,probe=2" --reference-gain 1.4
    python benchmarks/replay.py TABLE.csv --seeds 300 --jobs 2   # the three strategies with the race

A strategy is a preset name (``--list``) or ``SAMPLER+PRUNER[,key=value...]`` with sampler
``tpe|random``, pruner ``hyperband|sh|median|none`` (or the preset ``grid``) and keys ``min`` (min
epochs), ``startup`` (TPE n_startup_trials; default resnas's own choice), ``probe`` (prune before
training when |probe gain| > probe x the reference gain), ``probe_dev`` (prune before training when
|probe gain - reference gain| > probe_dev decades, both sides), ``fidelity`` (0|1, default 1),
``confirm`` (K, default 0: no race), ``seeds`` (the race's max seeds, default 10), ``baseline`` (0|1,
default 1) and ``trials`` (default: the space's
``trials``, else the number of designs). The reference gain is that of the identity, full
pre-activation net of the space's deepest design, read from the table, or ``--reference-gain``
(``benchmarks/proxies.py --compute-reference`` probes it). Reported besides: how often the fidelity
check fired and the median Spearman it measured; for a probe filter, the epochs it saves against the
same strategy without it (replayed as well) and the replay seeds in which it pruned a top-set design.
"""

from __future__ import annotations

import argparse
import collections
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

from resnas.config import Search
from resnas.fidelity import FidelityCheck
from resnas.probe import reference
from resnas.race import RaceRules, Verdict, race
from resnas.ranking import TIE_TEST, significantly_worse
from resnas.space import Space, load_space
from resnas.spec import ArchSpec
from resnas.study import make_pruner, make_sampler

ALPHA = 0.05
REDRAWS = 50  # a study stops after this many times its budget of trials, redraws included (a sampler stuck on them)
TEST = (f"{TIE_TEST} (resnas.ranking.significantly_worse); fewer than 2 seeds: in the top set only if its "
        "mean equals the best")
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
    finals: dict[str, list[float]] = dataclasses.field(default_factory=dict)  # every design's final errors

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
        if s == best or means[s] <= means[best]:
            top.append(s)
        # None (fewer than 2 seeds of either): mean above the best's and no test possible: not in the top set
        elif significantly_worse(finals[s], finals[best], alpha) is False:
            top.append(s)
    return Truth(means=means, best=best, top=top, finals=finals)


# ---- strategies ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Strategy:
    """One resnas search strategy: sampler x pruner x min epochs x TPE start-up x probe filter x fidelity
    check x race x trials."""

    name: str
    sampler: str = "tpe"  # tpe | random | grid (the full grid: every design once at N epochs)
    pruner: str = "hyperband"  # hyperband | sh (successive halving) | median | none | grid
    min_epochs: int = 1
    n_startup_trials: int | None = None  # None: resnas's make_sampler choice
    probe: float | None = None  # prune before training when |gain| > probe x reference gain
    probe_dev: float | None = None  # prune before training when |gain - reference gain| > probe_dev decades
    fidelity: bool = True  # resnas's fidelity check (resnas.fidelity.FidelityCheck) as a study callback
    confirm: int = 0  # K: the best K designs (and the baseline) race after the search; 0: no race
    max_seeds: int = 10  # the race's maximum seeds per design (at most the table's)
    baseline: bool = True  # the paper's unit joins the race when the table has it
    trials: int | None = None  # None: the space's trials, else the number of designs

    @property
    def grid(self) -> bool:
        return self.sampler == "grid"

    @property
    def probes(self) -> bool:
        return self.probe is not None or self.probe_dev is not None

    def describe(self) -> str:
        return (f"sampler {self.sampler}, pruner {self.pruner}, min epochs {self.min_epochs}, "
                f"start-up {self.n_startup_trials or 'resnas'}, probe {self.probe}, probe_dev {self.probe_dev}, "
                f"fidelity {int(self.fidelity)}, race of {self.confirm} (+ baseline {int(self.baseline)}) to "
                f"{self.max_seeds} seeds, "
                f"trials {self.trials}")


PRESETS = {
    "random+none": Strategy("random+none", sampler="random", pruner="none"),
    "tpe+hyperband": Strategy("tpe+hyperband", sampler="tpe", pruner="hyperband"),
    "tpe+sh": Strategy("tpe+sh", sampler="tpe", pruner="sh"),
    "grid": Strategy("grid", sampler="grid", pruner="grid"),
    "tpe+none+race": Strategy("tpe+none+race", sampler="tpe", pruner="none", confirm=3),  # the `default` space's
    "tpe+sh+race": Strategy("tpe+sh+race", sampler="tpe", pruner="sh", confirm=3),  # `depth` and `full`'s
    "random+none+race": Strategy("random+none+race", sampler="random", pruner="none", confirm=3),
    "grid+race": Strategy("grid+race", sampler="grid", pruner="grid", confirm=3),
}
DEFAULT_STRATEGIES = ("tpe+none+race", "tpe+sh+race", "random+none+race", "grid+race")


def _flag(value: str) -> bool:
    if value not in ("0", "1"):
        raise ValueError(f"expected 0 or 1, not {value!r}")
    return value == "1"


def _count(value: str) -> int:
    n = int(value)
    if n < 0:
        raise ValueError(f"expected a count >= 0, not {value!r}")
    return n


KEYS = {"min": ("min_epochs", int), "startup": ("n_startup_trials", int), "probe": ("probe", float),
        "probe_dev": ("probe_dev", float), "fidelity": ("fidelity", _flag), "confirm": ("confirm", _count),
        "seeds": ("max_seeds", int), "baseline": ("baseline", _flag), "trials": ("trials", int)}


def parse_strategy(text: str) -> Strategy:
    """A preset name or ``SAMPLER+PRUNER[,key=value...]`` (keys: see KEYS)."""
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
        try:
            changes[field] = kind(value)
        except ValueError as e:
            raise ValueError(f"strategy {text!r}: {option!r}: {e}") from None
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


def build_search(strategy: Strategy, table: Table) -> Search:
    """The resnas Search the strategy runs: the table's space with the strategy's pruner and min epochs."""
    n = table.max_epochs
    if strategy.min_epochs > n:
        raise ValueError(f"strategy {strategy.name}: min epochs {strategy.min_epochs} above the table's {n}")
    kind = "successive_halving" if strategy.pruner == "sh" else strategy.pruner
    space = dataclasses.replace(table.space, pruner=kind, min_epochs=strategy.min_epochs, max_epochs=n,
                                trials=trial_budget(strategy, table))
    return Search(space=space, epochs=n)


def build_pruner(strategy: Strategy, table: Table) -> optuna.pruners.BasePruner:
    """resnas's own pruner (make_pruner) for hyperband / sh (successive_halving) / median / none."""
    return make_pruner(build_search(strategy, table))


def reference_gain(table: Table) -> float | None:
    """The probe gain of the identity, full pre-activation net of the space's deepest design (mean over
    its seeds in the table), or None when the table lacks it."""
    deepest = max(table.specs, key=lambda s: ArchSpec.parse(s).depth)
    ref = str(reference(ArchSpec.parse(deepest)))
    values = [table.gains[(ref, k)] for k in table.seeds.get(ref, []) if (ref, k) in table.gains]
    return float(np.mean(values)) if values else None


def probe_fails(strategy: Strategy, gain: float | None, ref_gain: float | None) -> bool:
    """Whether the probe filter prunes a design of this gain before training (no gain: never)."""
    if gain is None or not strategy.probes:
        return False
    if strategy.probe is not None and not abs(gain) <= strategy.probe * ref_gain:
        return True
    return strategy.probe_dev is not None and not abs(gain - ref_gain) <= strategy.probe_dev


# ---- the race ------------------------------------------------------------------------------------
def seed_order(table: Table, replay_seed: int) -> list[int]:
    """The replay seed's permutation of the table's seed positions: repeat r of every design is run perm[r]."""
    rng = np.random.default_rng([replay_seed, zlib.crc32(table.space.name.encode())])
    return rng.permutation(min(len(v) for v in table.seeds.values())).tolist()


def draw_k(table: Table, replay_seed: int, spec: str, repeat: int = 0) -> int:
    """The ground-truth seed index whose curve repeat ``repeat`` of design ``spec`` replays under ``replay_seed``."""
    return table.seeds[spec][seed_order(table, replay_seed)[repeat]]


def repeat_errors(table: Table, order: list[int], spec: str, n: int) -> list[float]:
    """A design's final errors by repeat 0..n-1 under one seed order (``seed_order``)."""
    return [table.final(spec, table.seeds[spec][i]) for i in order[:n]]


def paper_unit(table: Table, leader: str) -> str | None:
    """The paper's unit with the leader's other choices (resnas.probe.reference, as resnas.racing picks the
    baseline), when the table has it."""
    spec = str(reference(ArchSpec.parse(leader)))
    return spec if spec in table.seeds else None


def race_rules(table: Table, max_seeds: int) -> RaceRules:
    """The product's race rules (``resnas.config.Search.race_rules``) with at most the table's seeds."""
    n = min(max_seeds, min(len(v) for v in table.seeds.values()))
    return RaceRules(first_look=min(3, n), max_seeds=n)


def entrants(table: Table, ranked: list[str], confirm: int, baseline: bool = True) -> tuple[list[str], str | None]:
    """The race's designs: the best ``confirm`` distinct of ``ranked`` (best first), then the paper's unit."""
    field = list(dict.fromkeys(ranked))[:confirm]
    paper = paper_unit(table, field[0]) if field and baseline else None
    return field + ([paper] if paper is not None and paper not in field else []), paper


@dataclass(frozen=True)
class Claims:
    """What one race said, judged against the ground truth: its "significantly worse" claims, those on a
    top-set design, those against a leader whose true mean is not lower, and whether the baseline
    statement agrees (None: no statement) with the top set and with the pair it compares."""

    made: int = 0
    on_top: int = 0
    wrong_way: int = 0
    baseline_agrees: bool | None = None
    baseline_pair_agrees: bool | None = None


def judge(verdict: Verdict, truth: Truth) -> Claims:
    top, b = set(truth.top), verdict.baseline
    agrees = pair = None
    if b is not None:  # "beats" is right when the baseline is outside the top set, or (pair) worse than the other
        agrees = (b.outcome == "beats") == (b.baseline not in top)
        pair = (b.outcome == "beats") == bool(significantly_worse(truth.finals[b.baseline], truth.finals[b.other]))
    return Claims(made=len(verdict.departed), on_top=sum(d in top for d in verdict.departed),
                  wrong_way=sum(truth.means[d] <= truth.means[dep.leader] for d, dep in verdict.departed.items()),
                  baseline_agrees=agrees, baseline_pair_agrees=pair)


def replay_race(table: Table, replay_seed: int, ranked: list[str], trained: set[str], strategy: Strategy):
    """The race after a search whose completed designs rank ``ranked`` (best first), ``trained``
    holding those whose repeat 0 the search completed: (verdict, epochs the race trained)."""
    field, paper = entrants(table, ranked, strategy.confirm, strategy.baseline)
    if len(field) < 2:  # nothing to race
        return None, 0
    rules, order = race_rules(table, strategy.max_seeds), seed_order(table, replay_seed)
    verdict = race({d: repeat_errors(table, order, d, rules.max_seeds) for d in field}, rules, baseline=paper,
                   what_it_would_take=False)
    epochs = sum(len(table.curves[(d, table.seeds[d][order[r]])])
                 for d in field for r in range(verdict.seeds[d]) if r or d not in trained)
    return verdict, epochs


# ---- one replay ----------------------------------------------------------------------------------
@dataclass
class Outcome:
    answer: str | None
    epochs: int
    fidelity: float | None = None  # the Spearman the fidelity check measured (None: no check made)
    raised: bool = False  # the fidelity check raised the min epochs
    probe_pruned: frozenset = frozenset()  # designs the probe filter pruned
    verdict: Verdict | None = None  # the race's (None: no race)
    race_epochs: int = 0


def finish(strategy: Strategy, table: Table, replay_seed: int, ranked: list[str], trained: set[str],
           epochs: int, **extra) -> Outcome:
    """The outcome of a search whose completed designs rank ``ranked``: its best, or the race's leader."""
    if not ranked:
        return Outcome(answer=None, epochs=epochs, **extra)
    verdict, race_epochs = (replay_race(table, replay_seed, ranked, trained, strategy) if strategy.confirm
                            else (None, 0))
    answer = ranked[0] if verdict is None else verdict.leader
    return Outcome(answer=answer, epochs=epochs + race_epochs, verdict=verdict, race_epochs=race_epochs, **extra)


def replay_grid(strategy: Strategy, table: Table, replay_seed: int) -> Outcome:
    """Every design once at the full budget (repeat 0), ranked by its final error; then the race."""
    epochs = sum(len(table.curves[(s, draw_k(table, replay_seed, s))]) for s in table.specs)
    errors = {s: table.final(s, draw_k(table, replay_seed, s)) for s in table.specs}
    ranked = sorted(table.specs, key=errors.get)  # stable: a tie goes to the first in the table
    return finish(strategy, table, replay_seed, ranked, set(table.specs), epochs)


def replay_study(strategy: Strategy, table: Table, replay_seed: int, in_chans: int = 1,
                 ref_gain: float | None = None) -> Outcome:
    """One in-memory study of ``strategy`` against the table, ``trial_budget`` trials, then its race."""
    if strategy.grid:
        return replay_grid(strategy, table, replay_seed)
    if strategy.probes and ref_gain is None:
        raise ValueError(f"strategy {strategy.name}: the probe filter needs a reference gain")
    space, n = table.space, table.max_epochs
    spent = [0]
    completed: dict[str, float] = {}  # design -> value of its first completed trial
    designs: dict[int, str] = {}  # trial number -> its design
    pruned_by_probe: set[str] = set()
    counted: list[str] = []  # the designs of the trials that count toward the budget (resnas.budget.counted)

    def objective(trial: optuna.Trial) -> float:
        spec = str(space.suggest(trial, in_chans=in_chans, num_classes=table.num_classes))
        if spec not in table.seeds:
            raise KeyError(f"the space suggested {spec}, which the table does not have")
        designs[trial.number] = spec
        if spec in completed:  # resnas records a duplicate of the completed trial: no training, no trial counted
            return completed[spec]
        counted.append(spec)
        k = draw_k(table, replay_seed, spec)
        if probe_fails(strategy, table.gains.get((spec, k)), ref_gain):
            pruned_by_probe.add(spec)
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

    search = build_search(strategy, table)
    study = optuna.create_study(study_name=f"{space.name}-{replay_seed}", direction="minimize",
                                sampler=build_sampler(strategy, table, replay_seed), pruner=make_pruner(search))
    budget = trial_budget(strategy, table)

    def target(study: optuna.Study, _trial) -> None:  # resnas.budget.Target: the trials, or every design trained
        if len(counted) >= budget or len(set(counted)) >= len(table.specs):
            study.stop()

    callbacks = ([FidelityCheck(search)] if strategy.fidelity else []) + [target]
    study.optimize(objective, n_trials=REDRAWS * budget, callbacks=callbacks)
    fidelity = study.user_attrs.get("fidelity")
    extra = dict(fidelity=None if fidelity is None else fidelity["spearman"],
                 raised=bool(fidelity and fidelity["min_epochs"] > fidelity["low"]),
                 probe_pruned=frozenset(pruned_by_probe))
    done = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: (t.value, t.number))
    return finish(strategy, table, replay_seed, [designs[t.number] for t in done], set(completed), spent[0], **extra)

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
    fidelity: list[float | None] = dataclasses.field(default_factory=list)  # Spearman per seed (None: no check)
    raised: list[bool] = dataclasses.field(default_factory=list)
    top_probe_pruned: list[bool] = dataclasses.field(default_factory=list)  # a top-set design probe-pruned
    probe_saved: float | None = None  # 1 - epochs / epochs of the same strategy without the probe filter
    claims: list[Claims] = dataclasses.field(default_factory=list)  # per race run
    race_epochs: list[int] = dataclasses.field(default_factory=list)  # per race run
    ended: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # race statuses

    @property
    def claims_made(self) -> int:
        return sum(c.made for c in self.claims)

    @property
    def claims_on_top(self) -> int:
        return sum(c.on_top for c in self.claims)

    @property
    def claim_error(self) -> float | None:
        """Claims on a top-set design over all "significantly worse" claims (None: no claim)."""
        return self.claims_on_top / self.claims_made if self.claims_made else None

    @property
    def baseline_statements(self) -> list[bool]:
        return [c.baseline_agrees for c in self.claims if c.baseline_agrees is not None]

    @property
    def baseline_pairs(self) -> list[bool]:
        return [c.baseline_pair_agrees for c in self.claims if c.baseline_pair_agrees is not None]

    @property
    def median_epochs(self) -> float:
        return float(statistics.median(self.epochs))

    @property
    def p_top(self) -> float:
        return sum(self.in_top) / len(self.in_top)

    @property
    def median_regret(self) -> float:
        return float(statistics.median(self.regrets))

    @property
    def fired(self) -> float:
        """The fraction of replay seeds where the fidelity check raised the min epochs."""
        return sum(self.raised) / len(self.raised) if self.raised else 0.0

    @property
    def checked(self) -> int:
        return sum(r is not None for r in self.fidelity)

    @property
    def median_fidelity(self) -> float | None:
        values = [r for r in self.fidelity if r is not None]
        return float(statistics.median(values)) if values else None


def replay(strategy: Strategy, table: Table, seeds: int, truth: Truth | None = None, in_chans: int = 1,
           ref_gain: float | None = None, first_seed: int = 0) -> Summary:
    truth = truth or ground_truth(table)
    if strategy.probes and ref_gain is None:
        ref_gain = reference_gain(table)
        if ref_gain is None:
            raise ValueError(f"strategy {strategy.name}: the table has no reference net; give --reference-gain")
    start = time.perf_counter()
    outcomes = [replay_study(strategy, table, s, in_chans, ref_gain) for s in range(first_seed, first_seed + seeds)]
    top = set(truth.top)
    raced = [o for o in outcomes if o.verdict is not None]
    return Summary(strategy=strategy, trials=None if strategy.grid else trial_budget(strategy, table),
                   epochs=[o.epochs for o in outcomes], in_top=[o.answer in top for o in outcomes],
                   regrets=[truth.regret(o.answer) for o in outcomes],
                   no_answer=sum(o.answer is None for o in outcomes), seconds=time.perf_counter() - start,
                   fidelity=[o.fidelity for o in outcomes], raised=[o.raised for o in outcomes],
                   top_probe_pruned=[bool(o.probe_pruned & top) for o in outcomes],
                   claims=[judge(o.verdict, truth) for o in raced], race_epochs=[o.race_epochs for o in raced],
                   ended=collections.Counter(o.verdict.status for o in raced))


def without_probe(strategy: Strategy) -> Strategy:
    return dataclasses.replace(strategy, name=f"{strategy.name} (no probe)", probe=None, probe_dev=None)


def _key(strategy: Strategy) -> Strategy:
    return dataclasses.replace(strategy, name="")


def replay_all(strategies: list[Strategy], table: Table, seeds: int, truth: Truth, in_chans: int = 1,
               ref_gain: float | None = None, jobs: int = 1) -> list[Summary]:
    """Every strategy; a probe-filtered one also gets ``probe_saved`` against the same strategy without the
    filter (replayed too when it is not among the strategies, not reported as a row)."""
    todo = list(strategies)
    keys = {_key(s) for s in strategies}
    for s in strategies:
        if s.probes and _key(without_probe(s)) not in keys:
            todo.append(without_probe(s))
            keys.add(_key(without_probe(s)))
    args = [(s, table, seeds, truth, in_chans, ref_gain) for s in todo]
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(jobs) as pool:
            summaries = list(pool.map(_replay_args, args))
    else:
        summaries = [replay(*a) for a in args]
    by_key = {_key(s.strategy): s for s in summaries}
    for s in summaries:
        if s.strategy.probes:
            base = by_key[_key(without_probe(s.strategy))]
            s.probe_saved = 1.0 - sum(s.epochs) / sum(base.epochs) if sum(base.epochs) else 0.0
    return summaries[:len(strategies)]


def _replay_args(args) -> Summary:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return replay(*args)


def grid_epochs(table: Table, seeds: int, first_seed: int = 0) -> float:
    """The full grid's epochs at one seed per design (no race)."""
    grid = PRESETS["grid"]
    return float(statistics.median(replay_grid(grid, table, s).epochs for s in range(first_seed, first_seed + seeds)))


def report(table: Table, truth: Truth, summaries: list[Summary], seeds: int, name: str = "",
           ref_gain: float | None = None) -> str:
    """The Markdown report: ground truth, then one row per strategy."""
    grid = grid_epochs(table, seeds)
    top = sorted(truth.top, key=truth.means.get)
    lines = [f"## Replay of {name or table.space.name}: {len(table.specs)} designs, {table.max_epochs} epochs, "
             f"{seeds} replay seeds", "",
             f"Ground truth: top set {len(truth.top)} of {len(table.specs)} designs "
             f"(best true mean final error {truth.best_mean:.4f}: {truth.best}). Top set: the designs not "
             f"significantly worse than the best by a {TEST}.", "",
             "Top set, best first: " + "; ".join(f"`{s}` ({truth.means[s]:.4f})" for s in top), ""]
    if any(s.strategy.probes for s in summaries):
        lines += [f"Probe filter reference gain: {ref_gain if ref_gain is not None else reference_gain(table)}.", ""]
    lines += ["| strategy | trials | median epochs | fraction of grid | P(answer in top set) | median regret "
              "| no answer | fidelity fired | median fidelity Spearman | probe saves | top set probe-pruned "
              "| seconds |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        rho = s.median_fidelity
        fidelity = "-" if s.strategy.grid or not s.strategy.fidelity else f"{s.fired:.2f} ({s.checked} checked)"
        lines.append(f"| {s.strategy.name} | {s.trials if s.trials is not None else len(table.specs)} "
                     f"| {s.median_epochs:g} | {s.median_epochs / grid:.2f} | {s.p_top:.2f} "
                     f"| {s.median_regret:.4f} | {s.no_answer} | {fidelity} "
                     f"| {'-' if rho is None else f'{rho:+.2f}'} "
                     f"| {'-' if s.probe_saved is None else f'{s.probe_saved:.0%}'} "
                     f"| {sum(s.top_probe_pruned) if s.strategy.probes else '-'} | {s.seconds:.1f} |")
    lines += ["", "Epochs: candidate-epochs reported (a duplicate of a completed design costs 0, a "
              "probe-filtered trial 0, a run of the race N). Regret: true mean final error of the answer minus "
              "the best true mean; a study with no completed trial counts as a miss with the worst design's "
              "regret. Fidelity fired: the fraction of replay seeds whose fidelity check raised the min epochs "
              "(checked: seeds where the check was made). Probe saves: 1 - total epochs / total epochs of the "
              "same strategy without the probe filter (same seeds). Top set probe-pruned: replay seeds in which "
              "the probe filter pruned a top-set design at least once."]
    raced = [s for s in summaries if s.claims]
    if raced:
        lines += ["", race_report(raced, grid)]
    return "\n".join(lines) + "\n"


def race_report(summaries: list[Summary], grid: float) -> str:
    """The races' statements, judged against the ground truth: one row per strategy with a race."""
    lines = ["| strategy | races | median race epochs (of grid) | \"significantly worse\" claims on the top set "
             "/ claims | wrong-way claims | baseline statement agrees (top set; pair) | race ended |",
             "|---|---|---|---|---|---|---|"]
    for s in summaries:
        rate = "-" if s.claim_error is None else f"{s.claim_error:.3f}"
        agree = s.baseline_statements
        pairs = s.baseline_pairs
        baseline = (f"{sum(agree) / len(agree):.2f}; {sum(pairs) / len(pairs):.2f} (of {len(agree)})" if agree
                    else "no baseline in the table")
        ended = ", ".join(f"{k} {v / len(s.claims):.2f}" for k, v in s.ended.most_common())
        lines.append(f"| {s.strategy.name} | {len(s.claims)} | {statistics.median(s.race_epochs):g} "
                     f"({statistics.median(s.race_epochs) / grid:.2f}) | {s.claims_on_top}/{s.claims_made} ({rate}) "
                     f"| {sum(c.wrong_way for c in s.claims)} | {baseline} | {ended} |")
    lines += ["", "Race: the best `confirm` designs of the search and the paper's unit with the leader's other "
              "choices (when the table has it) race on paired seeds (resnas.race; at most the table's seeds). "
              "Claims: designs the race called significantly worse; on the top set: claims that fall on a "
              "ground-truth top-set design; wrong-way: against a leader whose true mean is not lower. Baseline "
              "statement agrees with the top set: \"beats\" of a baseline outside the top set, \"no design beats it\" "
              "or \"baseline wins\" of one inside it; with the pair: \"beats\" exactly when the ground truth's test "
              "finds the baseline worse than the design the statement compares it with (the winner, or the runner-up "
              "when the baseline wins)."]
    return "\n".join(lines)


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
    parser.add_argument("--jobs", type=int, default=1, help="processes replaying strategies in parallel [1]")
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
    ref_gain = args.reference_gain
    if ref_gain is None and any(s.probes for s in strategies):
        ref_gain = reference_gain(table)
        if ref_gain is None:
            print("replay: the table has no reference net for the probe filter; give --reference-gain",
                  file=sys.stderr)
            return 2
    start = time.perf_counter()
    try:
        summaries = replay_all(strategies, table, args.seeds, truth, args.in_chans, ref_gain, args.jobs)
    except (KeyError, ValueError) as e:
        print(f"replay: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    print(report(table, truth, summaries, args.seeds, Path(args.table).stem, ref_gain), end="")
    print(f"\nWall time: {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
