"""Search efficiency: the epochs Hyperband spends to find the design that a full grid ranks first.

For each seed, every design of a reduced Table-2 space (the five activation placements of Fig. 4 x
{basic, bottleneck} units, identity shortcuts, on digits) is trained to the maximum budget as a grid
study (`sampler: grid, pruner: none`); its winner is the design with the lowest validation error.
Then the same space runs as `sampler: tpe, pruner: hyperband` with the same seed and a trial budget,
once plain and once with `probe_max_gain`. A completed Hyperband trial is trained to the full budget
with the seed of its design and the lr schedule of the full budget, so it reproduces the grid's run
of that design exactly (checked here, epoch by epoch, for every Hyperband trial). Reported per seed:

- to-winner: epochs trained (all trials, pruned ones included) until the study's best completed
  trial is the grid's winner, as a fraction of the grid's epochs (goal <= 1/3); "never" if it is not;
- same: whether the Hyperband study's final best design is the grid's winner;
- total: all epochs of the Hyperband run (its trial budget) over the grid's.

A design tied with the grid's winner (same validation error) counts as the winner. For scale: the
grid itself, run in a random order, reaches a unique winner after (n + 1) / 2n of its epochs on
average (0.55 for 10 designs). Studies are named per seed, since Optuna's Hyperband assigns trials
to brackets by a hash of the study name and the trial number.

The probe threshold defaults to twice the gain of the reference net (identity shortcuts, full
pre-activation, the deepest design of the space): about 4 at ResNet-110, the README's regime. At
ResNet-8/11 every Table-2 design has a gain below 1, so the probe has nothing real to separate there;
a Table-1 space (the shortcut kinds of Fig. 2 at the original unit, ResNet-56), where the failing
shortcuts stand out (gains near 3 against 1.4), is run as well. The full run takes 40-50 minutes on
the 2-core development machine (one thread), most of it the 3 seeds of ResNet-56.

    python benchmarks/bench_search.py                           # table2 (5 seeds), table1 (3), epochs 1..9
    python benchmarks/bench_search.py --quick                   # one seed, tiny nets, epochs 1..2: < 1 min
    python benchmarks/bench_search.py --spaces table2 --epochs 27 --trials 30
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from resnas.config import Search
from resnas.data import load_data
from resnas.designs import ranked_trials
from resnas.objective import PROBE_BATCH
from resnas.probe import probe, reference
from resnas.record import TrialRecord
from resnas.runners import run_search
from resnas.space import Space, load_space
from resnas.spec import ArchSpec

TABLE1_ROWS = """\
    identity: {}
    scaling:
      - {scale: 0.0, f_scale: 1.0}
      - {scale: 0.5, f_scale: 1.0}
      - {scale: 0.5, f_scale: 0.5}
    exclusive_gate: {gate_bias: [0.0, -6.0, -7.0]}
    shortcut_gate: {gate_bias: [0.0, -6.0]}
    conv1x1: {}
    dropout: {drop: [0.5]}"""


def space_yaml(kind: str, depth: int, widths: str, epochs: tuple[int, int], trials: int, grid: bool,
               recipe: str = "") -> str:
    """The benchmark's space as resnas YAML: `table2` (placements x units) or `table1` (shortcut kinds)."""
    n = (depth - 2) // 6  # units per stage; the bottleneck net gets as many (ResNet-110 and -164: n = 18)
    if kind == "table2":
        body = (f"  unit: [basic, bottleneck]\n  depth: {{basic: [{depth}], bottleneck: [{9 * n + 2}]}}\n"
                "  act: [original, bn_after_add, relu_before_add, relu_preact, preact]\n  shortcut: [identity]")
    else:
        body = f"  unit: [basic]\n  depth: [{depth}]\n  act: [original]\n  shortcut:\n{TABLE1_ROWS}"
    sampler, pruner = ("grid", "none") if grid else ("tpe", "hyperband")
    return (f"name: bench_{kind}\ndescription: bench_search.py, {kind} on digits\ndataset: digits\n"
            f"sampler: {sampler}\npruner: {pruner}\nobjectives: [val_error]\n"
            f"epochs: {{min: {epochs[0]}, max: {epochs[1]}}}\ntrials: {trials}\n"
            f"recipe: {{batch_size: 64, warmup_iters: 0{', ' + recipe if recipe else ''}}}\n"
            f"space:\n  layout: cifar\n  widths: [[{widths.replace('-', ', ')}]]\n{body}\n")


@dataclass
class Run:
    """One study, reduced to what the benchmark compares: its trials in order and its best design."""

    trials: list[tuple[str, TrialState, float | None, list[float], str]]  # spec, state, value, val errors, status
    best: str | None
    seconds: float

    @property
    def epochs(self) -> int:
        return sum(len(h) for _, _, _, h, _ in self.trials)


def run_study(space: Space, seed: int, folder: Path, name: str, trials: int | None = None,
              probe_max_gain: float | None = None) -> Run:
    start = time.perf_counter()
    search = Search(space, storage=f"sqlite:///{folder / (name + '.db')}", study_name=name, trials=trials,
                    seed=seed, heartbeat=None, probe_max_gain=probe_max_gain, confirm=0)
    study = run_search(search)
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    rows = [(r.spec or "", t.state, t.value if t.state == TrialState.COMPLETE else None, list(r.val_error),
             str(r.status or t.state.name.lower())) for t, r in ((t, TrialRecord.from_trial(t)) for t in trials)]
    best = ranked_trials(study)
    return Run(rows, TrialRecord.from_trial(best[0]).spec if best else None, time.perf_counter() - start)


@dataclass
class Outcome:
    to_winner: float  # fraction of the grid's epochs; inf when the winner was never the best
    same: bool
    total: float
    probe_pruned: int
    designs: int  # distinct designs tried
    checked: int  # trials whose per-epoch val errors were compared with the grid's
    reproduced: int  # ... and equal, exactly
    repeats: float  # fraction of the run's epochs spent training again a design it had already completed


def compare(grid: Run, hb: Run) -> Outcome:
    values = {spec: v for spec, _, v, _, _ in grid.trials}
    histories = {spec: h for spec, _, _, h, _ in grid.trials}
    winners = {spec for spec, v in values.items() if v == min(values.values())}
    spent, best, found, done, repeats = 0, None, math.inf, set(), 0
    for spec, state, value, history, _ in hb.trials:
        spent += len(history)
        repeats += len(history) if spec in done else 0
        if state == TrialState.COMPLETE:
            done.add(spec)
        if state == TrialState.COMPLETE and (best is None or value < best):
            best = value
            if spec in winners and found == math.inf:
                found = spent
    checked = [(spec, h) for spec, _, _, h, _ in hb.trials if h]
    same_runs = sum(histories.get(spec, [])[:len(h)] == h for spec, h in checked)
    same_values = all(values[spec] == v for spec, state, v, _, _ in hb.trials if state == TrialState.COMPLETE)
    return Outcome(found / grid.epochs, hb.best in winners, hb.epochs / grid.epochs,
                   sum(s == "pruned" and not h for _, _, _, h, s in hb.trials), len({t[0] for t in hb.trials}),
                   len(checked), same_runs if same_values else -1, repeats / max(hb.epochs, 1))


def rung_correlations(grid: Run, rungs: list[int]) -> dict[int, float]:
    """Spearman correlation over the grid's designs of the val error at each rung with the final value."""
    from scipy.stats import spearmanr  # deferred: scikit-learn's dependency, needed by this report only

    final = [v for _, _, v, _, _ in grid.trials]
    return {k: float(spearmanr([h[k - 1] for _, _, _, h, _ in grid.trials], final).statistic) for k in rungs}


def probe_threshold(space: Space, seed: int) -> tuple[float, dict[str, tuple[float, str]], float, str]:
    """Twice the reference net's gain (deepest design), and every grid point's gain, probed as a trial is."""
    data = load_data("digits")
    x, y = next(iter(data.loader("val", PROBE_BATCH)))
    specs = space.specs(in_chans=data.input_size[0], num_classes=data.num_classes)

    def gain(spec) -> float:
        return probe(spec, x, y, seed=seed).gain

    ref = max((reference(s) for s in specs), key=lambda s: s.depth)
    ref_gain = gain(ref)
    nets = ", ".join(sorted({f"{s.unit} ResNet-{s.depth}" for s in specs}))
    return 2 * ref_gain, {str(s): (gain(s), label(s)) for s in specs}, ref_gain, nets


def label(spec: ArchSpec) -> str:
    """`bottleneck-11 relu_preact` (table2) or `basic-56 original scaling s=0.5 f=0.5` (table1), for the tables."""
    short = {"scale": "s", "f_scale": "f", "gate_bias": "b", "drop": "p"}
    kind = spec.shortcut + "".join(f" {short[k]}={v:g}" for k, v in spec.shortcut_params)
    return f"{spec.unit}-{spec.depth} {spec.act}" + ("" if spec.shortcut == "identity" else f" {kind}")


def fmt(f: float) -> str:
    return "never" if math.isinf(f) else f"{f:.2f}"


def bench_space(kind: str, args, depth: int, seeds: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        folder = Path(tmp)
        spaces = {}
        for grid in (True, False):
            path = folder / f"{kind}-{'grid' if grid else 'hb'}.yaml"
            path.write_text(space_yaml(kind, depth, args.widths, (args.min_epochs, args.epochs), args.trials, grid,
                                       args.recipe))
            spaces[grid] = load_space(path)
        threshold, gains, ref_gain, nets = probe_threshold(spaces[True], seeds[0])
        if args.probe_max_gain is not None:
            threshold = args.probe_max_gain
        specs = list(gains)
        labels = {s: lab for s, (_, lab) in gains.items()}
        gains = {s: g for s, (g, _) in gains.items()}
        n_grid = len(specs)
        print(f"\n== {kind}: {n_grid} designs ({nets}), widths {args.widths}, digits, "
              f"epochs {args.min_epochs}..{args.epochs}, {args.trials} TPE+Hyperband trials, "
              f"{torch.get_num_threads()} thread(s)")
        pruned_at_seed0 = [labels[s] for s, g in gains.items() if not abs(g) <= threshold]
        print(f"probe gains at seed {seeds[0]}: {min(gains.values()):.2f} .. {max(gains.values()):.2f}; "
              f"reference (pre-act identity) {ref_gain:.2f}; --probe-max-gain {threshold:.2f} "
              f"({'given' if args.probe_max_gain is not None else '2 x reference'}) would prune "
              f"{len(pruned_at_seed0)}/{n_grid}" + (f": {'; '.join(pruned_at_seed0)}" if pruned_at_seed0 else ""))
        print(f"{'seed':>4}  {'grid winner':<38} {'val err':>7} | {'hyperband: to-winner':>20} {'same':>4} "
              f"{'total':>5} | {'+ probe: to-winner':>18} {'same':>4} {'total':>5} {'probed out':>10}")
        results, grids, correlations, seconds = [], {}, [], {"grid": 0.0, "hb": 0.0, "probe": 0.0}
        # where Optuna's Hyperband (reduction factor 3) compares candidates: min_epochs * 3^i below the maximum
        rungs = [args.min_epochs * 3 ** i for i in range(8) if args.min_epochs * 3 ** i < args.epochs]
        for seed in seeds:
            name = f"{kind}-s{seed}"  # Hyperband's brackets hash the study name: one per seed
            grid = run_study(spaces[True], seed, folder, f"grid-{name}")
            plain = run_study(spaces[False], seed, folder, name, trials=args.trials)
            folder_p = folder / "probe"
            folder_p.mkdir(exist_ok=True)
            probed = run_study(spaces[False], seed, folder_p, name, trials=args.trials, probe_max_gain=threshold)
            for key, run in (("grid", grid), ("hb", plain), ("probe", probed)):
                seconds[key] += run.seconds
            grids[seed] = {spec: v for spec, _, v, _, _ in grid.trials}
            correlations.append(rung_correlations(grid, rungs))
            a, b = compare(grid, plain), compare(grid, probed)
            results.append((seed, a, b, plain.trials == probed.trials))
            winner = min(grids[seed], key=lambda s: (grids[seed][s], specs.index(s)))
            ties = sum(v == grids[seed][winner] for v in grids[seed].values()) - 1
            label = labels[winner] + (f" (+{ties} tied)" if ties else "")
            print(f"{seed:>4}  {label:<38} {grids[seed][winner]:>7.4f} | {fmt(a.to_winner):>20} "
                  f"{'yes' if a.same else 'no':>4} {a.total:>5.2f} | {fmt(b.to_winner):>18} "
                  f"{'yes' if b.same else 'no':>4} {b.total:>5.2f} {b.probe_pruned:>10}", flush=True)
        k = len(results)
        med = [{key: statistics.median(getattr(r[i], key) for r in results) for key in ("to_winner", "total")}
               for i in (1, 2)]
        same = [sum(r[i].same for r in results) for i in (1, 2)]
        print(f"{'median':<6}{'':<38} {'':>7} | {fmt(med[0]['to_winner']):>20} {f'{same[0]}/{k}':>4} "
              f"{med[0]['total']:>5.2f} | {fmt(med[1]['to_winner']):>18} {f'{same[1]}/{k}':>4} "
              f"{med[1]['total']:>5.2f} {statistics.median(r[2].probe_pruned for r in results):>10g}")
        print(f"fractions of the grid's {n_grid * args.epochs} epochs per seed; wall: grid {seconds['grid']:.0f} s, "
              f"hyperband {seconds['hb']:.0f} s, + probe {seconds['probe']:.0f} s over {k} seed(s)")
        for tag, m, n_same in zip(("hyperband", "+ probe"), med, same):
            met = m["to_winner"] <= 1 / 3 and n_same == k
            print(f"goal (median to-winner <= 1/3, same winner every seed), {tag}: {'met' if met else 'not met'}")
        checked = sum(r[i].checked for r in results for i in (1, 2))
        exact = sum(r[i].reproduced for r in results for i in (1, 2)) if all(
            r[i].reproduced >= 0 for r in results for i in (1, 2)) else -1
        print(f"reproduced: {exact if exact >= 0 else 'NOT all'} of {checked} Hyperband trials' per-epoch val errors "
              "equal the first epochs of the grid's run of the same design, exactly"
              + ("" if exact >= 0 else " (a completed trial's value differs from the grid's)"))
        corr = {k: statistics.median(c[k] for c in correlations) for k in rungs}
        print("rank correlation over the designs (Spearman) of the grid's val error at Hyperband's rungs with the "
              "final one, median over seeds: " + ", ".join(f"epoch {k}: {c:+.2f}" for k, c in corr.items()))
        print(f"epochs re-training a design the study had already completed: median "
              f"{statistics.median(r[1].repeats for r in results):.0%} of a Hyperband run's epochs")
        identical = sum(r[3] for r in results)
        designs = statistics.median(r[1].designs for r in results)
        print(f"probe: pruned {sum(r[2].probe_pruned for r in results)} trial(s) before training; the + probe run "
              f"was identical to the plain one in {identical}/{k} seed(s); median distinct designs tried by "
              f"Hyperband: {designs:g} of {n_grid} in {args.trials} trials")
        print(f"grid ranking (val error per seed, * = that seed's winner; sorted by median; "
              f"probe gain at seed {seeds[0]}):")
        print(f"  {'design':<38} {'gain':>5} " + " ".join(f"{'s' + str(s):>7}" for s in seeds) + f" {'median':>7}")
        order = sorted(specs, key=lambda s: (statistics.median(grids[x][s] for x in seeds), specs.index(s)))
        for spec in order:
            cells = " ".join(f"{grids[s][spec]:>6.4f}{'*' if grids[s][spec] == min(grids[s].values()) else ' '}"
                             for s in seeds)
            print(f"  {labels[spec]:<38} {gains[spec]:>5.2f} {cells} "
                  f"{statistics.median(grids[s][spec] for s in seeds):>7.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1 (default 5)")
    parser.add_argument("--epochs", type=int, default=9, help="maximum epochs per design (default 9)")
    parser.add_argument("--min-epochs", type=int, default=1, help="Hyperband's minimum resource (default 1)")
    parser.add_argument("--trials", type=int, default=20, help="TPE+Hyperband trials per seed (default 20)")
    parser.add_argument("--depth", type=int, default=8,
                        help="table2: basic depth 6n+2; the bottleneck net has the same n, 9n+2 (default 8 and 11)")
    parser.add_argument("--table1-depth", type=int, default=56, help="table1: basic depth (default 56)")
    parser.add_argument("--table1-seeds", type=int, default=3, help="seeds of table1, 5x slower per epoch (default 3)")
    parser.add_argument("--widths", default="8-16-32", help="stage widths (default 8-16-32)")
    parser.add_argument("--spaces", default="table2,table1", help="comma-separated: table2, table1")
    parser.add_argument("--recipe", default="", help='more recipe entries of the space, e.g. "schedule: cosine"')
    parser.add_argument("--probe-max-gain", type=float, help="default: twice the reference net's probe gain")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: table2, 1 seed, widths 4-8-16, epochs 1..2, 5 trials")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.trials, args.widths, args.spaces = 1, 2, 5, "4-8-16", "table2"
    if (args.depth - 2) % 6 or args.depth < 8 or (args.table1_depth - 2) % 6 or args.table1_depth < 8:
        parser.error("--depth and --table1-depth must be 6n+2 with n >= 1 (8, 14, 20, 26, ..., 56, 110)")
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    for kind in args.spaces.split(","):
        if kind not in ("table2", "table1"):
            parser.error(f"--spaces: unknown {kind!r}; allowed: table2, table1")
        seeds = list(range(args.seeds if kind == "table2" else min(args.seeds, args.table1_seeds)))
        bench_space(kind, args, args.depth if kind == "table2" else args.table1_depth, seeds)
    print(f"\nwall {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
