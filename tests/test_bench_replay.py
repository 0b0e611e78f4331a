"""benchmarks/replay.py on a synthetic ground-truth table: its top set, baselines, pruning and ranges."""

import csv
import importlib.util
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
    # the worse designs "fail" the probe: two far above the reference's gain (1.0), one far below it
    # (as exclusive gates with a negative bias do); the ties sit 0.2 decades above it
    gains = {best: 1.0, **{s: 1.2 for s in others[:2]}, **dict(zip(others[2:], (5.0, 5.0, 0.2)))}
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


def test_a_redraw_takes_no_trial_and_the_search_ends_once_every_design_is_trained(table):
    # as resnas.budget counts: 3 trials train 3 distinct designs; 24 trials stop at the space's 6
    assert replay.replay(replay.parse_strategy("random+none,trials=3"), table, 20).epochs == [3 * EPOCHS] * 20
    assert replay.replay(replay.parse_strategy("random+none,trials=24"), table, 20).epochs == [6 * EPOCHS] * 20


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


def test_main_prints_the_markdown_table(table_path, capsys):
    # in process (a subprocess would spend most of the test importing torch again)
    assert replay.main([str(table_path[0]), "--seeds", "5"]) == 0
    out = capsys.readouterr().out
    assert "| strategy | trials | median epochs | fraction of grid | P(answer in top set) | median regret" in out
    assert "top set 3 of 6 designs" in out and "Wall time:" in out
    for name in replay.DEFAULT_STRATEGIES:
        assert f"| {name} |" in out
    assert replay.main([str(table_path[0]), "--seeds", "3", "--jobs", "2", "--strategies",
                        "tpe+sh,probe_dev=0.5", "tpe+sh+race"]) == 0
    out = capsys.readouterr().out
    assert "| tpe+sh,probe_dev=0.5 |" in out and "| tpe+sh+race |" in out and "(no probe)" not in out


# ---- issue 13: the product's pruner, the fidelity check, the race (issue 23), the two-sided probe filter ------
def _write_table(folder: Path, name: str, space_text: str, finals_of, curve_of, gain_of=lambda s, k: 1.0):
    """NAME.csv + NAME.yaml: per design (the space's own strings, in order) i its finals_of(i) per seed
    and curve_of(i, k, final) per epoch."""
    (folder / f"{name}.yaml").write_text(space_text.replace("name: synth", f"name: {name}"))
    space = load_space(folder / f"{name}.yaml")
    specs = [str(s) for s in space.specs(in_chans=1, num_classes=10)]
    with (folder / f"{name}.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["spec", "seed", "epoch", "val_error", "train_loss", "seconds", "params", "macs",
                         "probe_gain"])
        for i, s in enumerate(specs):
            for k, final in enumerate(finals_of(i)):
                for epoch, error in enumerate(curve_of(i, k, final), start=1):
                    writer.writerow([s, k, epoch, f"{error:.4f}", 1.0, 0.1, 1000, 10000, gain_of(s, k)])
    return replay.load_table(folder / f"{name}.csv"), specs


SPACE12 = SPACE.replace("act: [preact, original, bn_after_add]",
                        "act: [preact, original, bn_after_add, relu_before_add]").replace(
    "    conv1x1: {}\n", "    conv1x1: {}\n    dropout: {drop: [0.5]}\n")


@pytest.fixture(scope="module")
def fidelity_tables(tmp_path_factory):
    """Two 12-design tables with the same finals: in one the epoch-1 errors rank designs as the finals do,
    in the other in reverse."""
    folder = tmp_path_factory.mktemp("fidelity")
    finals = lambda i: [0.10 + 0.05 * i + 0.001 * k for k in range(3)]  # noqa: E731
    agree, specs = _write_table(folder, "agree", SPACE12, finals,
                                lambda i, k, final: [final + 0.2, final + 0.1, final])
    disagree, _ = _write_table(folder, "disagree", SPACE12, finals,
                               lambda i, k, final: [0.95 - 0.05 * i, final + 0.1, final])
    assert len(specs) == 12
    return agree, disagree


def test_sh_is_the_products_successive_halving_pruner(table, monkeypatch):
    strategy = replay.parse_strategy("tpe+sh,min=2")
    assert replay.build_search(strategy, table).space.pruner == "successive_halving"
    calls = []
    real = replay.make_pruner
    monkeypatch.setattr(replay, "make_pruner", lambda search, *a: calls.append(search) or real(search, *a))
    pruner = replay.build_pruner(strategy, table)
    assert calls and calls[0].space.pruner == "successive_halving" and calls[0].min_epochs == 2
    assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)
    assert pruner._min_resource == 2 and pruner._reduction_factor == 3
    assert isinstance(replay.build_pruner(replay.parse_strategy("tpe+hyperband"), table),
                      optuna.pruners.HyperbandPruner)
    with pytest.raises(ValueError):
        replay.build_pruner(replay.parse_strategy("tpe+sh,min=4"), table)


def test_ground_truth_uses_the_products_tie_test(table, monkeypatch):
    calls = []
    real = replay.significantly_worse
    monkeypatch.setattr(replay, "significantly_worse", lambda *a: calls.append(a) or real(*a))
    replay.ground_truth(table)
    assert len(calls) == 5  # every design but the best


def test_fidelity_check_fires_where_rungs_disagree_and_is_silent_where_they_agree(fidelity_tables):
    agree, disagree = fidelity_tables
    name = "random+hyperband,trials=40"
    quiet = replay.replay(replay.parse_strategy(name), agree, 8)
    fired = replay.replay(replay.parse_strategy(name), disagree, 8)
    off = replay.replay(replay.parse_strategy(name + ",fidelity=0"), disagree, 8)
    assert quiet.checked == 8 and quiet.fired == 0 and quiet.median_fidelity > 0.9
    assert fired.checked == 8 and fired.fired == 1.0 and fired.median_fidelity < 0
    assert off.checked == 0 and off.fired == 0 and not any(off.raised)
    # raised to epoch 3 = the full budget: the pruner was replaced (nothing is pruned any more after it)
    assert fired.epochs != off.epochs
    assert replay.parse_strategy("tpe+sh").fidelity  # on by default, as the product runs it
    text = replay.report(disagree, replay.ground_truth(disagree), [fired, off], 8)
    assert "| fidelity fired | median fidelity Spearman |" in text and "| 1.00 (8 checked) | -1.00 |" in text


@pytest.fixture(scope="module")
def lucky_table(tmp_path_factory):
    """6 designs x 5 seeds: the first design is lucky on seed 0 (0.05) and bad on the others; the second is
    the true best (0.10-0.14); the rest are bad."""
    folder = tmp_path_factory.mktemp("lucky")
    finals = {0: [0.05, 0.60, 0.62, 0.61, 0.63], 1: [0.10, 0.11, 0.12, 0.13, 0.14]}
    table, specs = _write_table(folder, "lucky", SPACE, lambda i: finals.get(i, [0.5 + 0.02 * i] * 5),
                                lambda i, k, final: [final + 0.1, final + 0.05, final])
    return table, specs


def test_the_race_after_the_search_gives_the_answer_and_its_runs_are_counted(lucky_table):
    table, specs = lucky_table
    truth = replay.ground_truth(table)
    assert truth.top == [specs[1]]
    plain, raced = replay.parse_strategy("random+none,trials=60"), replay.parse_strategy("random+none,trials=60,confirm=3")
    outcomes = [(replay.replay_study(plain, table, s), replay.replay_study(raced, table, s)) for s in range(30)]
    assert any(p.answer == specs[0] for p, _ in outcomes)  # the lucky seed fools a single-seed answer
    for p, o in outcomes:
        assert o.answer == o.verdict.leader == specs[1]
        # the same study, then the race: every entrant's repeat 0 is its search trial, each other run N epochs
        assert o.epochs == p.epochs + o.race_epochs == p.epochs + EPOCHS * sum(n - 1 for n in o.verdict.seeds.values())
    summary = replay.replay(raced, table, 30, truth)
    assert summary.p_top == 1.0 and summary.claims_made > 0 and summary.claim_error == 0
    # the paper's unit (the lucky design) is beaten, rightly
    assert summary.baseline_statements == summary.baseline_pairs == [True] * 30
    text = replay.report(table, truth, [summary], 30)
    assert f"| {raced.name} | 30 |" in text and f"| 0/{summary.claims_made} (0.000) | 0 | 1.00; 1.00 (of 30) |" in text


def test_the_paper_unit_joins_the_race_when_the_search_never_trained_it(lucky_table):
    table, specs = lucky_table  # specs[0] is the paper's unit (preact, identity); specs[1] preact with a 1x1 conv
    ranked = [specs[1], specs[2]]
    verdict, epochs = replay.replay_race(table, 0, ranked, set(ranked), replay.parse_strategy("grid,confirm=2"))
    assert set(verdict.seeds) == set(specs[:3]) and verdict.baseline.baseline == specs[0]
    assert epochs == EPOCHS * (sum(verdict.seeds.values()) - 2)  # the baseline's repeat 0 is trained too
    verdict, _ = replay.replay_race(table, 0, ranked, set(ranked), replay.parse_strategy("grid,confirm=2,baseline=0"))
    assert set(verdict.seeds) == set(ranked) and verdict.baseline is None
    assert replay.PRESETS["tpe+sh+race"].confirm == 3


def test_seeds_are_paired_across_designs(lucky_table):
    table, specs = lucky_table
    order = replay.seed_order(table, 4)
    assert sorted(order) == list(range(5))
    assert {replay.draw_k(table, 4, s, r) for s in specs for r in (1,)} == {order[1]}


def test_probe_dev_filters_on_both_sides_of_the_reference(table, table_path):
    _, best, ties = table_path
    truth = replay.ground_truth(table)
    ref = replay.reference_gain(table)
    one_sided, two_sided = replay.parse_strategy("random+none,probe=2"), replay.parse_strategy("random+none,probe_dev=0.5")
    assert replay.probe_fails(one_sided, 5.0, ref) and not replay.probe_fails(one_sided, 0.2, ref)
    assert replay.probe_fails(two_sided, 5.0, ref) and replay.probe_fails(two_sided, 0.2, ref)
    assert not replay.probe_fails(two_sided, 1.2, ref) and not replay.probe_fails(two_sided, None, ref)
    names = ["random+none,trials=24", "random+none,trials=24,probe=2", "random+none,trials=24,probe_dev=0.5",
             "random+none,trials=24,probe_dev=0.1"]
    plain, one, two, tight = replay.replay_all([replay.parse_strategy(n) for n in names], table, 20, truth)
    assert plain.probe_saved is None
    assert 0 < one.probe_saved < two.probe_saved  # the gain-0.2 design is filtered only two-sided
    assert two.probe_saved == pytest.approx(1 - sum(two.epochs) / sum(plain.epochs))
    assert not any(one.top_probe_pruned) and not any(two.top_probe_pruned) and two.p_top == 1.0
    assert all(tight.top_probe_pruned)  # 0.1 decades removes the ties (gain 1.2)
    # without the unfiltered strategy among them, it is replayed for the comparison (and not returned)
    [alone] = replay.replay_all([replay.parse_strategy(names[2])], table, 20, truth)
    assert alone.probe_saved == two.probe_saved
    text = replay.report(table, truth, [plain, two, tight], 20)
    assert f"| {two.probe_saved:.0%} | 0 |" in text and "| 20 |" in text


def test_the_shipped_default_strategy_is_the_one_its_replay_chose():
    """The `default` space's sampler, pruner and trials, raced as `resnas search` races (--confirm),
    replayed on its committed ground truth: the issue-23 goal of >= 90% in the top set at <= 0.6 of
    the grid's epochs. Successive halving failed it (0.87 at 0.25 over 300 seeds: epochs 1-3 do not
    rank these designs); the same search without pruning meets it (0.94 at 0.35)."""
    from resnas.config import Search

    space = load_space("default")
    pruner = {"successive_halving": "sh"}.get(space.pruner, space.pruner)
    confirm = Search(space=space).confirm  # what `resnas search` races by default
    strategy = replay.parse_strategy(f"{space.sampler}+{pruner},confirm={confirm},trials={space.trials}")
    table = replay.load_table(ROOT / "benchmarks" / "tables" / "default_digits.csv")
    seeds = 100
    summary = replay.replay(strategy, table, seeds)
    assert summary.p_top >= 0.9, summary.p_top
    assert summary.median_epochs <= 0.6 * replay.grid_epochs(table, seeds)
