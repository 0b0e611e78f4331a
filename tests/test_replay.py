"""benchmarks/replay.py on a synthetic ground-truth table: its top set, baselines, pruning and ranges."""

import csv
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from resnas.space import load_space

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 3
SPACE = """\
name: synth
description: a synthetic replay table (6 designs)
dataset: digits
sampler: grid
pruner: none
objectives: [val_error]
epochs: {min: 1, max: 3}
space:
  layout: cifar
  widths: [[4, 8, 16]]
  unit: [basic]
  depth: [8]
  act: [preact, original, bn_after_add]
  shortcut:
    identity: {}
    conv1x1: {}
"""
# final errors per ground-truth seed k = 0, 1, 2. The best is below every other design on every seed
# (so the grid always answers it); the two ties are above it but not significantly (Welch, n = 3);
# the rest are far worse on every seed and every epoch.
BEST = [0.10, 0.11, 0.12]
TIES = [[0.121, 0.15, 0.30], [0.13, 0.16, 0.40]]
WORSE = [[0.50, 0.51, 0.52], [0.60, 0.61, 0.62], [0.70, 0.71, 0.72]]


def _load_replay():
    spec = importlib.util.spec_from_file_location("replay", ROOT / "benchmarks" / "replay.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["replay"] = module
    spec.loader.exec_module(module)
    return module


replay = _load_replay()


@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    """synth.csv + synth.yaml: 6 designs (the space's own spec strings) x 3 seeds x 3 epochs."""
    folder = tmp_path_factory.mktemp("table")
    (folder / "synth.yaml").write_text(SPACE)
    space = load_space(folder / "synth.yaml")
    specs = [str(s) for s in space.specs(in_chans=1, num_classes=10)]
    # the strings an Optuna trial gets from the space's suggest, as resnas's objective calls it
    assert specs == [str(space.suggest(optuna.trial.FixedTrial(p), in_chans=1, num_classes=10))
                     for p in space.grid_points()]
    assert len(specs) == 6
    best = next(s for s in specs if "act=preact" in s and "shortcut=identity" in s)  # the reference net
    others = [s for s in specs if s != best]
    finals = {best: BEST, **dict(zip(others, TIES + WORSE)), }
    gains = {s: (5.0 if s in others[2:] else 1.0) for s in specs}  # the worse designs "fail" the probe
    with (folder / "synth.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["spec", "seed", "epoch", "val_error", "train_loss", "seconds", "params", "macs",
                         "probe_gain"])
        for s in specs:
            for k, final in enumerate(finals[s]):
                for epoch in range(1, EPOCHS + 1):
                    error = final + 0.1 * (EPOCHS - epoch)  # learning curves that keep the ranking
                    writer.writerow([s, k, epoch, f"{error:.4f}", 1.0, 0.1, 1000, 10000, gains[s]])
    return folder / "synth.csv", best, others[:2]


@pytest.fixture(scope="module")
def table(table_path):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return replay.load_table(table_path[0])


def test_top_set_is_the_best_and_its_ties(table, table_path):
    _, best, ties = table_path
    truth = replay.ground_truth(table)
    assert truth.best == best
    assert set(truth.top) == {best, *ties}
    assert truth.regret(best) == 0
    text = replay.report(table, truth, [], 5, "synth")
    assert "top set 3 of 6 designs" in text and "Welch" in text
    for s in (best, *ties):
        assert f"`{s}`" in text


def test_grid_spends_every_epoch_and_is_always_right(table):
    truth = replay.ground_truth(table)
    summary = replay.replay(replay.PRESETS["grid"], table, 50, truth)
    assert summary.epochs == [6 * EPOCHS] * 50
    assert summary.p_top == 1.0 and all(r == 0 for r in summary.regrets)


def test_random_without_pruning_covering_the_space_finds_the_top_set(table):
    # a random sampler redraws designs, so covering all 6 needs more trials than designs: with 24,
    # the chance of missing all 3 top-set designs in one seed is 2**-24. Duplicates cost 0 epochs.
    strategy = replay.parse_strategy("random+none,trials=24")
    summary = replay.replay(strategy, table, 50)
    assert summary.p_top == 1.0
    assert max(summary.epochs) <= 6 * EPOCHS
    assert all(e % EPOCHS == 0 for e in summary.epochs)  # no pruning: whole curves only


@pytest.mark.parametrize("name", ["tpe+hyperband", "tpe+sh"])
def test_pruned_strategy_spends_less_than_the_grid(table, name):
    summary = replay.replay(replay.parse_strategy(name), table, 20)
    assert summary.median_epochs < 6 * EPOCHS
    assert summary.trials == 6  # the space has no trials: one per design


def test_probe_filter_costs_nothing_for_filtered_designs(table):
    plain = replay.replay(replay.parse_strategy("random+none,trials=12"), table, 20)
    probed = replay.replay(replay.parse_strategy("random+none,trials=12,probe=2"), table, 20)
    assert replay.reference_gain(table) == 1.0
    assert sum(probed.epochs) < sum(plain.epochs)
    assert probed.p_top >= plain.p_top  # only the failing (worse) designs are filtered


def test_numbers_in_range_and_fifty_seeds_are_fast(table):
    truth = replay.ground_truth(table)
    start = time.perf_counter()
    summary = replay.replay(replay.PRESETS["tpe+hyperband"], table, 50, truth)
    seconds = time.perf_counter() - start
    print(f"50 replay seeds of tpe+hyperband: {seconds:.2f} s")  # ~seconds; not asserted
    for s in [summary] + [replay.replay(replay.parse_strategy(n), table, 10, truth)
                          for n in ("random+none", "tpe+sh,startup=2,min=2", "grid")]:
        assert 0.0 <= s.p_top <= 1.0
        assert all(r >= 0 for r in s.regrets) and s.median_regret >= 0
        assert all(0 <= e <= s.trials * EPOCHS if s.trials else e == 6 * EPOCHS for e in s.epochs)
        assert 0 <= s.no_answer <= len(s.epochs)


def test_same_seed_same_outcome(table):
    a = replay.replay_study(replay.PRESETS["tpe+sh"], table, 7)
    b = replay.replay_study(replay.PRESETS["tpe+sh"], table, 7)
    assert a == b
    assert replay.draw_k(table, 3, table.specs[0]) in table.seeds[table.specs[0]]


def test_bad_strategy_is_refused():
    with pytest.raises(ValueError):
        replay.parse_strategy("tpe+asha")
    with pytest.raises(ValueError):
        replay.parse_strategy("tpe+sh,warmup=3")


def test_script_prints_the_markdown_table(table_path):
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "replay.py"), str(table_path[0]), "--seeds", "5"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "| strategy | trials | median epochs | fraction of grid | P(answer in top set) | median regret" \
        in run.stdout
    assert "top set 3 of 6 designs" in run.stdout
    for name in replay.DEFAULT_STRATEGIES:
        assert f"| {name} |" in run.stdout
