"""Replay resnas's race (``resnas.race``) on ground-truth tables, without training anything.

For each table in benchmarks/tables/ (or those named) whose designs all have at least ``--min-seeds``
seeds, every replay seed r draws one permutation of the table's seed indices, shared by all designs
(repeat j of every design is the table's seed perm[j]: the race pairs by repeat, as the table's seed k
is the same search seed for every design), then:

- the entrants are the ``--confirm`` designs with the lowest error at repeat 0 (the grid at one seed, as
  a search's best designs would enter) and the paper's unit with the first one's other choices when the
  table has it (the baseline);
- the race runs on their repeats (``resnas.race.race``; max seeds = the table's seeds, at most 10).

This is ``benchmarks/replay.py``'s ``grid+race`` strategy on every table at once (its seed order, entrants,
race rules and judging are replay.py's), plus ``--parametric``. Ground truth is replay.py's
(``ground_truth``: true means over all the table's seeds, the top set by its Welch test). Reported per
table: P(winner in the top set), the error rate of "significantly worse" claims (claims on top-set designs
over all claims) and the share of races with such a claim, seeds used (design-seeds per race, against racing
every entrant to the maximum), how races ended, and wrong-way claims (a design called worse than a leader
whose true mean is not lower), how often the baseline statement agrees with the ground truth ("beats" when
the baseline is outside the top set, otherwise "no design beats it" or "baseline wins"). With the table's
seeds drawn without replacement, a race that reaches the table's seed count sees the ground truth's own
data: on tables of few seeds the figures are optimistic. ``--parametric`` instead draws each design's
repeats from a normal with its table mean and its own seed-to-seed sd (unequal sds, no shared repeat
effect), up to 10 seeds, on any table with 2 seeds or more: the race's claims where its pooled variance is
only an approximation. There the table's means are the truth, so a claim on a top-set design that is truly
(if slightly) worse is right: read the wrong-way claims; the top set, made by a Welch test on the table's
few seeds, is wide.

    python benchmarks/race_replay.py                       # every table with >= 6 seeds
    python benchmarks/race_replay.py --min-seeds 3 --seeds 300 benchmarks/tables/table2_digits.csv
    python benchmarks/race_replay.py --parametric --seeds 1000
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from replay import (
    Claims,
    Table,
    Truth,
    entrants,
    ground_truth,
    judge,
    load_table,
    race_rules,
    repeat_errors,
    seed_order,
)

from resnas.race import RaceRules, race, race_test

TABLES = Path(__file__).resolve().parent / "tables"


@dataclass
class Tally:
    winner_top: list[bool] = field(default_factory=list)
    claims: list[Claims] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    full: int = 0  # design-seeds of racing every entrant to the maximum
    statuses: collections.Counter = field(default_factory=collections.Counter)


def repeats(table: Table, seed: int, max_seeds: int, parametric: bool) -> dict[str, list[float]]:
    """Every design's errors by repeat: the table's seeds in replay.py's shared order, or (parametric) normal
    draws around each design's mean with its own seed-to-seed sd."""
    if parametric:
        rng = np.random.default_rng([seed, zlib.crc32(table.space.name.encode())])
        return {s: (np.mean(v) + np.std(v, ddof=1) * rng.standard_normal(max_seeds)).tolist()
                for s, v in ((s, table.finals(s)) for s in table.specs)}
    order = seed_order(table, seed)
    return {s: repeat_errors(table, order, s, max_seeds) for s in table.specs}


def replay_race(table: Table, truth: Truth, seed: int, confirm: int, rules: RaceRules, tally: Tally,
                parametric: bool = False) -> None:
    errors = repeats(table, seed, rules.max_seeds, parametric)
    field_, baseline = entrants(table, sorted(table.specs, key=lambda s: errors[s][0]), confirm)
    verdict = race({s: errors[s] for s in field_}, rules, baseline=baseline, what_it_would_take=False)
    tally.winner_top.append(verdict.leader in truth.top)
    tally.claims.append(judge(verdict, truth))
    tally.seeds.append(sum(verdict.seeds.values()))
    tally.full += len(field_) * rules.max_seeds
    tally.statuses[verdict.status] += 1


def report(name: str, table: Table, truth: Truth, tally: Tally, confirm: int, rules: RaceRules, seconds: float) -> str:
    n, claims = len(tally.winner_top), tally.claims
    made, on_top = sum(c.made for c in claims), sum(c.on_top for c in claims)
    rate = f"{on_top / made:.3f}" if made else "-"
    agree = [c.baseline_agrees for c in claims if c.baseline_agrees is not None]
    baseline = f"{sum(agree) / len(agree):.2f} of {len(agree)}" if agree else "no paper's unit in the table"
    ended = ", ".join(f"{status} {count / n:.2f}" for status, count in tally.statuses.most_common())
    return "\n".join([
        f"## Race replay of {name}: {len(table.specs)} designs, {rules.max_seeds} seeds at most, {n} replays",
        "",
        f"Top set {len(truth.top)} of {len(table.specs)} (best true mean {truth.best_mean:.4f}). Entrants: the "
        f"{confirm} best at one seed, plus the paper's unit when the table has it.",
        "",
        "| P(winner in top set) | claims on top set / claims | races with a claim on the top set | wrong-way claims "
        "| median design-seeds (all races: of racing every entrant to the max) | ended "
        "| baseline statement agrees | seconds |",
        "|---|---|---|---|---|---|---|---|",
        f"| {sum(tally.winner_top) / n:.3f} | {on_top}/{made} ({rate}) "
        f"| {sum(c.on_top > 0 for c in claims) / n:.3f} | {sum(c.wrong_way for c in claims)} "
        f"| {statistics.median(tally.seeds):g} ({sum(tally.seeds) / tally.full:.2f}) | {ended} | {baseline} "
        f"| {seconds:.1f} |",
        ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="*", help="NAME.csv files [every table in benchmarks/tables/]")
    parser.add_argument("--seeds", type=int, default=300, help="replay seeds per table [300]")
    parser.add_argument("--min-seeds", type=int, default=6, help="skip tables with fewer seeds per design [6]")
    parser.add_argument("--confirm", type=int, default=3, help="entrants from the one-seed grid [3]")
    parser.add_argument("--parametric", action="store_true",
                        help="draw each design's repeats from a normal with its table mean and sd (10 seeds at "
                             "most, whatever the table's count) instead of the table's own seeds")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.confirm < 1 or args.min_seeds < 3:
        parser.error("--seeds and --confirm must be >= 1, --min-seeds >= 3 (the race's first look)")
    paths = [Path(p) for p in args.tables] or sorted(TABLES.glob("*.csv"))
    print(race_test(), "\n")
    for path in paths:
        table = load_table(path)
        seeds = min(len(v) for v in table.seeds.values())
        if seeds < args.min_seeds and not (args.parametric and seeds >= 2):
            print(f"{path.stem}: {seeds} seeds per design, fewer than {args.min_seeds}: skipped\n")
            continue
        rules = RaceRules(max_seeds=10) if args.parametric else race_rules(table, 10)
        truth, tally, start = ground_truth(table), Tally(), time.perf_counter()
        for seed in range(args.seeds):
            replay_race(table, truth, seed, args.confirm, rules, tally, args.parametric)
        name = f"{path.stem} (parametric: normal draws)" if args.parametric else path.stem
        print(report(name, table, truth, tally, args.confirm, rules, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
