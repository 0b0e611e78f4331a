"""resnas.objective: what one trial records, duplicates of a design and diverged candidates."""

import json

import pytest
from _tiny import TINY, _search, _study
from optuna.trial import TrialState

from resnas.cli import main


def test_a_design_drawn_again_is_not_retrained(tmp_path, capsys):
    space = tmp_path / "two.yaml"  # two designs, five trials: the sampler must repeat itself
    space.write_text(TINY.replace("shortcut: {identity: {}, scaling: {scale: [0.5, 1.0]}}", "shortcut: [identity]")
                     .replace("pruner: hyperband", "pruner: none"))
    db = tmp_path / "d.db"
    assert _search(space, db, "--trials", "5", "--epochs", "1") == 0
    trials = _study(db).trials
    assert all(t.state == TrialState.COMPLETE for t in trials)
    trained = {t.user_attrs["spec"]: t for t in trials if "duplicate_of" not in t.user_attrs}
    repeats = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert len(trained) == 2 and len(repeats) == 3
    for t in repeats:
        twin = trials[t.user_attrs["duplicate_of"]]
        assert t.user_attrs["spec"] == twin.user_attrs["spec"] and t.value == twin.value
        assert t.user_attrs["status"] == "duplicate" and t.user_attrs["epochs"] == 0 and "val_error" not in t.user_attrs
    capsys.readouterr()
    assert main(["best", "--storage", f"sqlite:///{db}", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["trials"]) == 2  # each design once


def test_diverged_candidates_are_recorded_and_the_search_goes_on(tmp_path, capsys):
    space = tmp_path / "unstable.yaml"
    space.write_text(TINY.replace("recipe: {batch_size: 128, warmup_iters: 0}",
                                  "recipe: {batch_size: 128, warmup_iters: 0, lr: 1000.0, max_loss: 20.0}"))
    db = tmp_path / "x.db"
    assert _search(space, db, "--trials", "3") == 0
    trials = _study(db).trials
    assert len(trials) == 3
    diverged = [t for t in trials if t.user_attrs["status"] == "diverged"]
    assert diverged and all(t.state == TrialState.COMPLETE and t.value == pytest.approx(0.9) for t in diverged)
    assert all(t.user_attrs["reason"] for t in diverged)
