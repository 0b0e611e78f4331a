"""resnas.designs: trials read as designs, the race's runs adding seeds to the best ones."""

import json
import statistics

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from resnas.cli import main
from resnas.designs import VERDICT, ranked_designs, ranked_trials
from resnas.race import Departure, Verdict
from resnas.recipe import design_seed

from _tinygrid import _search, _study


def test_the_race_adds_seeds_to_the_best_designs_and_the_paper_unit(tmp_path, capsys):
    db = tmp_path / "c.db"
    assert _search(tmp_path, db, "--confirm", "2", "--max-seeds", "3") == 0
    out = capsys.readouterr().out
    study = _study(db)
    raced = study.user_attrs["race"]["designs"]
    k = len(raced)  # the best two and the paper's unit, unless it is one of them
    trials = study.get_trials(deepcopy=False)
    assert k in (2, 3) and len(trials) == 4 + 2 * k  # the grid, then 2 more seeds of each design in the race
    repeats = [t for t in trials if t.user_attrs.get("repeat")]
    assert sorted(t.user_attrs["repeat"] for t in repeats) == sorted([1, 2] * k)
    assert all(t.state == TrialState.COMPLETE and len(t.user_attrs["val_error"]) == 2 for t in repeats)
    firsts = {t.number: t for t in trials if not t.user_attrs.get("repeat")}
    for t in repeats:
        first = firsts[t.user_attrs["confirms"]]
        assert t.user_attrs["spec"] == first.user_attrs["spec"]
        assert t.user_attrs["seed"] == design_seed(5, t.user_attrs["repeat"])
    confirmed = {t.user_attrs["confirms"] for t in repeats}
    best_two = sorted(firsts.values(), key=lambda t: (t.value, t.number))[:2]
    assert {t.number for t in best_two} <= confirmed  # the two best single-seed designs raced
    assert {firsts[n].user_attrs["spec"] for n in confirmed} == set(raced)
    assert "confirms trial" in out and " ± " in out and "still in the race" in out

    assert main(["best", "--storage", f"sqlite:///{db}", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["trials"]
    assert [r["n"] for r in rows] == [3] * k + [1] * (4 - k)
    assert rows[0]["tied_with_best"] is True and rows[k]["tied_with_best"] is None
    for r in rows[:k]:
        errors = [study.trials[n].value for n in r["trials"]]
        assert r["errors"] == errors and r["mean"] == pytest.approx(statistics.fmean(errors), abs=1e-6)
        assert r["sd"] == pytest.approx(statistics.stdev(errors), abs=1e-6)
    assert rows[0]["mean"] <= rows[1]["mean"]
    assert study.user_attrs["ranking"][0]["n"] == 3  # shown by the dashboard with the note
    from optuna_dashboard._note import get_note_from_system_attrs  # the note the dashboard renders
    note = get_note_from_system_attrs(study._storage.get_study_system_attrs(study._study_id), None)["body"]
    assert "| 3 | best |" in note and "±" in note

    # a rerun has nothing left to race: no trial is added
    assert _search(tmp_path, db, "--confirm", "2", "--max-seeds", "3") == 0
    assert len(_study(db).trials) == 4 + 2 * k


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


def test_a_designs_runs_over_its_repeats_make_one_design_and_a_duplicate_none(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'd.db'}", study_name="d")
    for value, spec, attrs in [(0.30, "a", {}), (0.10, "b", {}), (0.12, "b", {"repeat": 1, "confirms": 1}),
                               (0.10, "b", {"duplicate_of": 1}), (0.11, "b", {"repeat": 2, "confirms": 1})]:
        study.add_trial(create_trial(value=value, user_attrs=dict(attrs, spec=spec, status="ok")))
    study.add_trial(create_trial(state=TrialState.PRUNED, user_attrs=dict(spec="c", status="pruned")))
    assert [t.number for t in ranked_trials(study)] == [1, 4, 2, 0]
    designs = ranked_designs(study)
    assert [(d.spec, d.errors, d.trials) for d in designs] == [("b", [0.10, 0.12, 0.11], [1, 2, 4]), ("a", [0.30], [0])]
    assert designs[0].n == 3 and designs[0].tied is True and designs[1].tied is None


def test_a_race_verdict_ranks_and_labels_the_designs_it_raced_not_a_t_test_of_their_own_seeds(tmp_path, capsys):
    """a and b have a tiny spread over their three seeds, so a Welch test on them alone calls b worse; the race's
    pooled test kept it in: best shows it tied. c left the race (worse); d was never raced (untested)."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'v.db'}", study_name="v")
    runs = {"a": [0.0260, 0.0261, 0.0262], "b": [0.0300, 0.0301, 0.0302], "c": [0.12, 0.05], "d": [0.01]}
    for spec, errors in runs.items():
        for repeat, error in enumerate(errors):
            study.add_trial(create_trial(value=error, user_attrs=dict(spec=spec, status="ok", repeat=repeat)))
    assert [(d.spec, d.tied) for d in ranked_designs(study)][:2] == [("a", True), ("b", False)]  # Welch, no race
    verdict = Verdict(status="max seeds", leader="a", ranking=["a", "b", "c"], means={"a": 0.026, "b": 0.0301,
                      "c": 0.085}, seeds={"a": 3, "b": 3, "c": 2}, remaining=["a", "b"],
                      departed={"c": Departure(look=2, leader="a", gap=0.06, q=9.0, m=3, df=2)}, look=3)
    study.set_user_attr(VERDICT, verdict.to_dict())
    assert [(d.spec, d.tied) for d in ranked_designs(study)] == [("a", True), ("b", True), ("c", False), ("d", None)]
    assert main(["best", "--storage", f"sqlite:///{tmp_path / 'v.db'}"]) == 0
    out = capsys.readouterr().out
    assert "1 design(s) still in the race; worse: 1 it found worse" in " ".join(out.split())
    assert "Welch" not in out
