"""A live search against its replay: does the replay harness predict what resnas really does?

Runs the real ``resnas.runners.run_search`` (training every candidate) with a strategy on a ground-truth
table's space, for seeds 0..S-1, and reports per seed the epochs spent, the answer and whether it lies
in the table's top set; then the replay of the same strategy (``benchmarks/replay.py``) over many
seeds, side by side. A live search seeded k trains each design with the seed of ground-truth run k, so
its search trials' curves are the table's (seed k) exactly; the sampler's draws are its own. With a race
(``confirm=K`` in the strategy, as the `default` space's ``tpe+none+race``) the live search races as ``resnas search``
does, to the strategy's max seeds capped at the table's (as the replay): its race repeats are fresh runs,
not the table's, so live and replay agree only within the noise of the seeds.

    python benchmarks/live_check.py benchmarks/tables/shortcut14_digits.csv --seeds 5 --strategy tpe+none+race
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).parent))
from replay import ground_truth, load_table, parse_strategy, replay, trial_budget  # noqa: E402

from resnas.config import Search  # noqa: E402
from resnas.designs import ranked_designs  # noqa: E402
from resnas.record import epochs_spent  # noqa: E402
from resnas.runners import run_search  # noqa: E402

PRUNERS = {"sh": "successive_halving", "hyperband": "hyperband", "none": "none", "median": "median"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table")
    parser.add_argument("--seeds", type=int, default=5, help="live searches, seeds 0..S-1 [5]")
    parser.add_argument("--replay-seeds", type=int, default=100)
    parser.add_argument("--strategy", default="tpe+none+race", help="a preset or SAMPLER+PRUNER[,key=value...] "
                        "as replay.py takes them [tpe+none+race]")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    table, strategy = load_table(args.table), parse_strategy(args.strategy)
    truth = ground_truth(table)
    space = dataclasses.replace(table.space, sampler=strategy.sampler, pruner=PRUNERS[strategy.pruner],
                                min_epochs=strategy.min_epochs, trials=trial_budget(strategy, table))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.seeds):
            start = time.perf_counter()
            search = Search(space, storage=f"sqlite:///{tmp}/live.db", study_name=f"live-{k}", seed=k,
                            heartbeat=None, confirm=strategy.confirm, baseline="paper" if strategy.baseline else "none",
                            max_seeds=min(strategy.max_seeds, min(len(v) for v in table.seeds.values())))
            study = run_search(search)
            answer = ranked_designs(study)[0].spec
            epochs = sum(epochs_spent(t) for t in study.get_trials(deepcopy=False))
            rows.append((k, epochs, answer in truth.top, truth.regret(answer), time.perf_counter() - start))
            print(f"live seed {k}: {epochs} epochs, answer in top set: {answer in truth.top}, "
                  f"regret {truth.regret(answer):.4f}, {rows[-1][4]:.0f} s ({answer})", flush=True)
    summary = replay(strategy, table, args.replay_seeds, truth)
    print(f"\n| {Path(args.table).stem}, {strategy.name}, {space.trials} trials | seeds | median epochs | "
          "P(answer in top set) | median regret |\n|---|---|---|---|---|")
    print(f"| live | {args.seeds} | {statistics.median(r[1] for r in rows):g} | "
          f"{sum(r[2] for r in rows) / len(rows):.2f} | {statistics.median(r[3] for r in rows):.4f} |")
    print(f"| replay | {args.replay_seeds} | {summary.median_epochs:g} | {summary.p_top:.2f} | "
          f"{summary.median_regret:.4f} |")
    print(f"\nlive wall time {sum(r[4] for r in rows):.0f} s; top set {len(truth.top)} of {len(table.specs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
