"""A search whose answer can be trusted: confirmation with more seeds, ties with the best, the fidelity
check, the epoch budget (issue 13), on real SQLite studies of tiny nets on digits."""

import dataclasses
import json
import pickle
import statistics

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from scipy import stats

from resnas.cli import main
from resnas.config import Search, SearchError
from resnas.fidelity import FIDELITY_LOW, FidelityCheck, check_fidelity
from resnas.ranking import Design, rank_designs, significantly_worse
from resnas.recipe import design_seed
from resnas.space import parse_space
from resnas.study import rungs

GRID = """
name: tinygrid
dataset: digits
sampler: grid
pruner: none
epochs: {min: 1, max: 2}
seed: 5
recipe: {batch_size: 128, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  act: [original, preact]
  shortcut: {identity: {}, scaling: {scale: [0.5]}}
"""


def _study(db, name="tinygrid"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def _search(tmp_path, db, *extra, text=GRID):
    space = tmp_path / "space.yaml"
    space.write_text(text)
    return main(["search", "--space", str(space), "--storage", f"sqlite:///{db}", *extra])


# ---- ranking and ties on hand-made errors ---------------------------------------------------------
def test_ties_are_a_one_sided_welch_test_against_the_best():
    a, b, c = [0.10, 0.11, 0.12], [0.105, 0.125, 0.115], [0.20, 0.21, 0.22]
    ranked = rank_designs([Design("c", c, [2]), Design("b", b, [1]), Design("a", a, [0]), Design("lucky", [0.01], [3])])
    # confirmed designs first by mean: a single lucky seed does not outrank a confirmed mean
    assert [d.spec for d in ranked] == ["a", "b", "c", "lucky"]
    assert [d.tied for d in ranked] == [True, True, False, None]
    p_b = stats.ttest_ind(b, a, equal_var=False, alternative="greater").pvalue
    p_c = stats.ttest_ind(c, a, equal_var=False, alternative="greater").pvalue
    assert p_b >= 0.05 > p_c
    assert ranked[0].mean == pytest.approx(0.11) and ranked[0].sd == pytest.approx(statistics.stdev(a))
    assert ranked[3].n == 1 and ranked[3].sd is None


def test_ties_without_spread_and_single_seeds():
    assert significantly_worse([0.2, 0.2], [0.1, 0.1]) is True
    assert significantly_worse([0.1, 0.1], [0.1, 0.1]) is False
    assert significantly_worse([0.3], [0.1, 0.1]) is None
    ranked = rank_designs([Design("x", [0.3], [1]), Design("y", [0.2], [0])])  # an old single-seed study
    assert [d.spec for d in ranked] == ["y", "x"] and [d.tied for d in ranked] == [True, None]


def test_repeat_seeds_differ_and_repeat_zero_keeps_the_design_seed():
    spec = "layout=cifar,depth=8"
    seeds = {design_seed(5, spec, r) for r in range(4)}
    assert len(seeds) == 4
    assert design_seed(5, spec) == design_seed(5, spec, 0)


# ---- confirmation end to end ----------------------------------------------------------------------
def test_search_confirms_the_best_designs_with_more_seeds(tmp_path, capsys):
    db = tmp_path / "c.db"
    assert _search(tmp_path, db, "--confirm", "2", "--confirm-seeds", "2") == 0
    out = capsys.readouterr().out
    study = _study(db)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 4 + 2 * 2  # the grid, then 2 designs x 2 more seeds
    repeats = [t for t in trials if t.user_attrs.get("repeat")]
    assert sorted(t.user_attrs["repeat"] for t in repeats) == [1, 1, 2, 2]
    assert all(t.state == TrialState.COMPLETE and len(t.user_attrs["val_error"]) == 2 for t in repeats)
    firsts = {t.number: t for t in trials if not t.user_attrs.get("repeat")}
    for t in repeats:
        first = firsts[t.user_attrs["confirms"]]
        assert t.user_attrs["spec"] == first.user_attrs["spec"]
        assert t.user_attrs["seed"] == design_seed(5, t.user_attrs["spec"], t.user_attrs["repeat"])
    confirmed = {t.user_attrs["confirms"] for t in repeats}
    best_two = sorted(firsts.values(), key=lambda t: (t.value, t.number))[:2]
    assert confirmed == {t.number for t in best_two}  # the two best single-seed designs were confirmed
    assert "confirms trial" in out and " ± " in out and "tied with the best" in out

    assert main(["best", "--storage", f"sqlite:///{db}", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["trials"]
    assert [r["n"] for r in rows] == [3, 3, 1, 1]
    assert rows[0]["tied_with_best"] is True and rows[2]["tied_with_best"] is None
    for r in rows[:2]:
        errors = [study.trials[n].value for n in r["trials"]]
        assert r["errors"] == errors and r["mean"] == pytest.approx(statistics.fmean(errors), abs=1e-6)
        assert r["sd"] == pytest.approx(statistics.stdev(errors), abs=1e-6)
    assert rows[0]["mean"] <= rows[1]["mean"]
    assert study.user_attrs["ranking"][0]["n"] == 3  # shown by the dashboard with the note
    from optuna_dashboard._note import get_note_from_system_attrs  # the note the dashboard renders
    note = get_note_from_system_attrs(study._storage.get_study_system_attrs(study._study_id), None)["body"]
    assert "| 3 | best |" in note and "±" in note

    # a rerun has nothing left to confirm: no trial is added
    assert _search(tmp_path, db, "--confirm", "2", "--confirm-seeds", "2") == 0
    assert len(_study(db).trials) == 8


def test_a_single_seed_study_reads_n_1(tmp_path, capsys):
    db = tmp_path / "s.db"
    assert _search(tmp_path, db, "--confirm", "0") == 0
    assert len(_study(db).trials) == 4
    capsys.readouterr()
    assert main(["best", "--storage", f"sqlite:///{db}", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["trials"]
    assert [r["n"] for r in rows] == [1] * 4 and [r["sd"] for r in rows] == [None] * 4
    assert [r["tied_with_best"] for r in rows] == [True, None, None, None]
    assert main(["best", "--storage", f"sqlite:///{db}"]) == 0
    out = capsys.readouterr().out
    assert "best" in out and " ± " not in out


# ---- the epoch budget -----------------------------------------------------------------------------
TPE = GRID.replace("sampler: grid", "sampler: tpe").replace("scale: [0.5]", "scale: {low: 0.1, high: 1.0}") \
    .replace("epochs: {min: 1, max: 2}", "epochs: {min: 1, max: 3}")


def test_budget_epochs_stops_within_one_trial_confirmation_included(tmp_path, capsys):
    db = tmp_path / "b.db"
    assert _search(tmp_path, db, "--budget-epochs", "14", "--confirm", "1", "--confirm-seeds", "1", text=TPE) == 0
    out = capsys.readouterr().out
    trials = _study(db).get_trials(deepcopy=False)
    spent = [len(t.user_attrs.get("val_error", [])) for t in trials]
    confirm = [s for t, s in zip(trials, spent) if t.user_attrs.get("repeat")]
    assert confirm == [3]  # one design, one more seed, the full 3 epochs
    search_spent = sum(spent) - sum(confirm)
    assert 14 - 3 <= search_spent < 14 - 3 + 3  # stopped within one trial (3 epochs) of its 11
    assert f"[{search_spent}/14 epochs]" in out


def test_budget_too_small_for_the_confirmation_is_refused(tmp_path, capsys):
    db = tmp_path / "b.db"
    assert _search(tmp_path, db, "--budget-epochs", "5", text=TPE) == 2
    err = capsys.readouterr().err
    assert "confirmation's 18 (3 designs x 2 seeds x 3 epochs)" in err and len(err.splitlines()) == 1
    assert not db.exists() or not optuna.get_all_study_summaries(f"sqlite:///{db}")
    assert _search(tmp_path, db, "--budget-epochs", "50", "--trials", "3", text=TPE) == 2
    assert "not both" in capsys.readouterr().err


def test_the_python_api_refuses_what_the_cli_refuses_and_a_search_is_frozen_and_picklable():
    tpe, grid = parse_space(TPE, source="tpe.yaml"), parse_space(GRID, source="grid.yaml")
    refused = [(dict(space=tpe, budget_epochs=5), "budget-epochs: 5 leaves nothing for the search after the "
                "confirmation's 18 (3 designs x 2 seeds x 3 epochs); raise it, or lower --confirm"),
               (dict(space=tpe, trials=3, more=2), "trials: --trials and --more both set the run's budget; give one, "
                "not both"),
               (dict(space=grid, more=1), f"more: space {grid.name} is a grid, whose points are its budget; "
                "--trials N runs the first N")]
    for kwargs, line in refused:
        with pytest.raises(SearchError) as e:
            Search(**kwargs)
        assert str(e.value) == line
    search = Search(tpe, trials=3, storage="sqlite:///x.db")
    assert pickle.loads(pickle.dumps(search)) == search  # what a worker process is handed
    with pytest.raises(dataclasses.FrozenInstanceError):
        search.trials = 4


# ---- the fidelity check ---------------------------------------------------------------------------
SH = GRID.replace("pruner: none", "pruner: successive_halving").replace("epochs: {min: 1, max: 2}",
                                                                          "epochs: {min: 1, max: 9}")


def _synthetic(pairs):
    """A study whose designs reached epochs 1 and 3 with the given errors."""
    study = optuna.create_study()
    dist = {"d": CategoricalDistribution(list(range(len(pairs))))}
    for i, (e1, e3) in enumerate(pairs):
        study.add_trial(create_trial(params={"d": i}, distributions=dist, value=e3, state=TrialState.COMPLETE,
                                     intermediate_values={1: e1, 3: e3}))
    return study


def test_fidelity_fires_where_rungs_disagree_and_raises_min_epochs():
    search = Search(parse_space(SH), trials=10)
    assert rungs(1, 9) == [1, 3, 9]
    disagree = _synthetic([(0.1, 0.6), (0.2, 0.5), (0.3, 0.4), (0.4, 0.3), (0.5, 0.2), (0.6, 0.1)])
    check = FidelityCheck(search)
    check(disagree, disagree.trials[-1])
    recorded = disagree.user_attrs["fidelity"]
    assert recorded["spearman"] == pytest.approx(-1.0) and recorded["designs"] == 6
    assert recorded["min_epochs"] == 3 < search.min_epochs + 3
    assert isinstance(disagree.pruner, optuna.pruners.SuccessiveHalvingPruner)
    assert disagree.pruner._min_resource == 3  # the remaining trials are compared from epoch 3 on
    assert check_fidelity(disagree, search) is None  # made once per study


def test_fidelity_stays_silent_where_rungs_agree_and_waits_for_enough_designs():
    search = Search(parse_space(SH), trials=10)
    agree = _synthetic([(0.1 * i, 0.05 * i + 0.01) for i in range(1, 7)])
    result = check_fidelity(agree, search)
    assert result is not None and result.spearman == pytest.approx(1.0) and not result.raised
    assert "kept" in result.line() and agree.user_attrs["fidelity"]["min_epochs"] == 1
    few = _synthetic([(0.1, 0.6), (0.2, 0.5), (0.3, 0.4), (0.4, 0.3), (0.5, 0.2)])
    assert check_fidelity(few, search) is None and "fidelity" not in few.user_attrs
    assert FIDELITY_LOW == 0.5


def test_a_worker_takes_the_raised_min_epochs_from_the_study():
    search = Search(parse_space(SH), trials=10)
    study = _synthetic([(0.1, 0.6), (0.2, 0.5), (0.3, 0.4), (0.4, 0.3), (0.5, 0.2), (0.6, 0.1)])
    check_fidelity(study, search)  # made by another process
    other = optuna.load_study(study_name=study.study_name, storage=study._storage)
    FidelityCheck(search).apply(other)
    assert other.pruner._min_resource == 3


# ---- the probe filter around the reference net ----------------------------------------------------
TABLE1 = """
name: tinytable1
dataset: digits
sampler: grid
pruner: none
epochs: {min: 1, max: 1}
seed: 0
recipe: {batch_size: 128, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  act: [original]
  shortcut: {identity: {}, exclusive_gate: {gate_bias: [-7.0]}}
"""


def test_probe_max_deviation_prunes_far_from_the_reference_net_on_both_sides(tmp_path):
    db = tmp_path / "p.db"
    assert _search(tmp_path, db, "--confirm", "0", "--probe-max-deviation", "0.3", text=TABLE1) == 0
    trials = {t.user_attrs["spec"]: t for t in _study(db, "tinytable1").get_trials(deepcopy=False)}
    gate = next(t for s, t in trials.items() if "exclusive_gate" in s)
    identity = next(t for s, t in trials.items() if "identity" in s)
    # the exclusive gate at b_g -7 passes almost no gradient through its shortcut: far below the reference
    assert gate.user_attrs["probe_vs_reference"] < -0.3
    assert gate.state == TrialState.PRUNED and "vs the reference net, beyond ±0.3" in gate.user_attrs["reason"]
    assert "val_error" not in gate.user_attrs  # pruned before training: no epoch spent
    assert abs(identity.user_attrs["probe_vs_reference"]) <= 0.3 and identity.state == TrialState.COMPLETE


# ---- seeds and units a user can mistype (issue 14, item 6) ---------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--seed", "-1"], "-1 is not in the range 0<=x<=4294967295"),
    (["--seed", "4294967296"], "4294967296 is not in the range 0<=x<=4294967295"),
])
def test_out_of_range_seeds_are_one_line_before_any_study(argv, message, tmp_path, capsys):
    db = tmp_path / "seed.db"
    assert _search(tmp_path, db, *argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not db.exists()


def test_an_unknown_unit_with_a_depth_is_one_line(capsys):
    assert main(["summary", "unit=zzz,depth=20"]) == 2
    err = capsys.readouterr().err
    assert "unit: 'zzz'" in err and "basic" in err and len(err.splitlines()) == 1
