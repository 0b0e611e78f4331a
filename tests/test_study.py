"""resnas.study: the grid's queue, the pruners and the samplers of a study."""

import json

from optuna.trial import TrialState

from resnas.cli import main
from resnas.space import load_space

from _tiny import GRID, TINY, _search, _study


def test_grid_covers_every_point_once(tmp_path, capsys):
    space = tmp_path / "grid.yaml"
    space.write_text(GRID)
    db = tmp_path / "g.db"
    assert _search(space, db, "--epochs", "1") == 0
    trials = _study(db).trials
    points = load_space(space).grid_points()
    assert len(trials) == len(points) == 6
    assert sorted(map(str, (t.params for t in trials))) == sorted(map(str, points))
    assert _search(space, db, "--epochs", "1") == 0  # nothing left to do
    assert len(_study(db).trials) == 6


def test_hyperband_prunes(tmp_path, capsys):
    space = tmp_path / "hb.yaml"
    space.write_text(TINY.replace("trials: 4", "trials: 9").replace("max: 3", "max: 4"))
    db = tmp_path / "hb.db"
    assert _search(space, db) == 0
    trials = _study(db).trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.user_attrs["status"] == "pruned" for t in pruned)
    assert all(t.user_attrs["reason"].startswith("pruned by hyperband at epoch") for t in pruned)
    assert all(t.user_attrs["epochs"] < 4 for t in pruned)


def test_two_objectives_give_a_pareto_front(tmp_path, capsys):
    space = tmp_path / "pareto.yaml"
    space.write_text(TINY.replace("sampler: tpe\npruner: hyperband", "objectives: [val_error, params]\npruner: none")
                     .replace("depth: [8]", "depth: [8, 14]"))
    db = tmp_path / "p.db"
    assert _search(space, db, "--trials", "4", "--epochs", "1") == 0
    study = _study(db)
    assert len(study.directions) == 2 and study.best_trials
    capsys.readouterr()
    assert main(["best", "--storage", f"sqlite:///{db}", "--json"]) == 0
    front = json.loads(capsys.readouterr().out)["trials"]
    assert all(len(t["values"]) == 2 and t["values"][1] == t["params"] for t in front)
