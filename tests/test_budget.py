"""resnas.budget: the epoch budget of a search, the race included."""

import optuna
from optuna.trial import TrialState, create_trial

from resnas.budget import search_trials

from _tinygrid import GRID, TPE, _search, _study


def test_budget_epochs_stops_within_one_trial_the_race_included(tmp_path, capsys):
    db = tmp_path / "b.db"
    args = ["--budget-epochs", "30", "--confirm", "2", "--max-seeds", "2", "--baseline", "none"]
    assert _search(tmp_path, db, *args, text=TPE) == 0
    out = capsys.readouterr().out
    trials = _study(db).get_trials(deepcopy=False)
    spent = [len(t.user_attrs.get("val_error", [])) for t in trials]
    race = [s for t, s in zip(trials, spent) if "repeat" in t.user_attrs]
    assert race == [3, 3]  # two designs, one more seed each, the full 3 epochs
    search_spent = sum(spent) - sum(race)
    assert 30 - 12 <= search_spent < 30 - 12 + 3  # stopped within one trial (3 epochs) of its 18
    assert f"[{search_spent}/30 epochs]" in out


def test_budget_too_small_for_the_race_is_refused(tmp_path, capsys):
    db = tmp_path / "b.db"
    assert _search(tmp_path, db, "--budget-epochs", "5", text=TPE) == 2
    err = capsys.readouterr().err
    assert "the 36 reserved for the race's first look (4 designs x 3 seeds x 3 epochs)" in err and len(err.splitlines()) == 1
    assert not db.exists() or not optuna.get_all_study_summaries(f"sqlite:///{db}")
    assert _search(tmp_path, db, "--budget-epochs", "50", "--trials", "3", text=TPE) == 2
    assert "not both" in capsys.readouterr().err


def test_the_target_counts_the_search_own_finished_trials_only(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'b.db'}", study_name="b")
    for state, value, attrs in [
        (TrialState.COMPLETE, 0.1, {"status": "ok"}),
        (TrialState.PRUNED, None, {"status": "pruned"}),
        (TrialState.FAIL, None, {"status": "oom", "reason": "out of memory"}),
        (TrialState.COMPLETE, 0.2, {"status": "ok", "confirms": 0, "repeat": 1}),  # a confirmation run
        (TrialState.COMPLETE, 0.1, {"status": "duplicate", "duplicate_of": 0}),  # a redraw: trained nothing
        (TrialState.FAIL, None, {"status": "surplus"}),  # a second copy of a job
        (TrialState.FAIL, None, {"status": "failed", "reason": "interrupted"}),  # the next run retries it
        (TrialState.FAIL, None, {"status": "lost"}),  # its worker died: retried
    ]:
        study.add_trial(create_trial(state=state, value=value, user_attrs=attrs))
    study.ask()  # running: it counts once it finishes
    assert [t.number for t in search_trials(study)] == [0, 1, 2]


THREE = GRID.replace("sampler: grid", "sampler: tpe").replace("epochs: {min: 1, max: 2}", "epochs: {min: 1, max: 1}") \
    .replace("act: [original, preact]", "act: [original, relu_before_add, preact]") \
    .replace("shortcut: {identity: {}, scaling: {scale: [0.5]}}", "shortcut: {identity: {}}")


def test_a_budget_buys_designs_and_a_small_space_ends_once_each_is_trained(tmp_path, capsys):
    db = tmp_path / "b.db"
    assert _search(tmp_path, db, "--trials", "6", "--confirm", "0", text=THREE) == 0
    out = capsys.readouterr().out
    trials = _study(db).get_trials(deepcopy=False)
    trained = [t for t in trials if "duplicate_of" not in t.user_attrs]
    assert len(trained) == 3 and len({t.user_attrs["spec"] for t in trained}) == 3, out  # each design once
    assert len(search_trials(_study(db))) == 3  # redraws (status duplicate, if any) counted for nothing
    assert len(trials) > 3 and all(t.user_attrs["status"] == "duplicate" for t in trials if t not in trained)
    assert "space tinygrid: all 3 designs are trained, in 3 trials" in " ".join(out.split()), out
    # run again: nothing is left to draw, and it says so instead of redrawing
    assert _search(tmp_path, db, "--trials", "6", "--confirm", "0", text=THREE) == 0
    assert len(_study(db).get_trials(deepcopy=False)) == len(trials)
    out = capsys.readouterr().out
    assert "study holds every design of the space (3): nothing is left to draw" in out and "all 3" not in out


def test_the_split_is_stated_first_and_a_fidelity_check_the_budget_cannot_make_is_named(tmp_path, capsys):
    db = tmp_path / "b.db"
    space = TPE.replace("pruner: none", "pruner: hyperband")  # rungs at epochs 1 and 3
    args = ["--budget-epochs", "21", "--confirm", "2", "--max-seeds", "2", "--baseline", "none"]
    assert _search(tmp_path, db, *args, text=space) == 0
    out = capsys.readouterr().out
    lines = " ".join(out.split())  # rich wraps a long line at the terminal's width
    split = ("budget: 21 epochs: about 9 for the search, 12 for the race of up to 2 designs (the best 2) x 2 "
             "seeds x 3 epochs while the 21 last")
    assert split in lines and lines.index(split) < lines.index("trial status epoch"), out  # before the first row
    assert "fidelity: not checked (" in lines and "it needs 6): pruning from epoch 1 on is unchecked" in lines, out
    race = [t for t in _study(db).get_trials(deepcopy=False) if "repeat" in t.user_attrs]
    assert race and all(len(t.user_attrs["val_error"]) == 3 for t in race)  # the race ran, as stated


def test_the_split_of_a_trials_budget_and_of_no_race():
    from resnas.budget import Budget, split_line
    from resnas.config import Search
    from resnas.space import load_space

    space = load_space("default")
    search = Search(space, trials=24, epochs=5)
    assert split_line(search, Budget(24, target=24)) == (
        "budget: 24 trials for the search, then a race of up to 4 designs (the best 3 + the paper's unit), "
        "3-10 seeds x 5 epochs each: at most 200 epochs")
    assert split_line(Search(space, trials=3, confirm=0), Budget(3, target=3)) == \
        "budget: 3 trials for the search; no race (--confirm 0)"
