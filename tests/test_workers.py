"""resnas.workers: worker processes share one study's queue and draw their own candidates."""

from _tiny import GRID, SCALED, _ran, _search, _study
from optuna.trial import TrialState

from resnas.space import load_space


def test_two_cpu_worker_processes_share_one_grid(tmp_path, capsys):
    space = tmp_path / "grid.yaml"
    space.write_text(GRID)
    db = tmp_path / "w.db"
    assert _search(space, db, "--epochs", "1", "--workers", "2") == 0
    trials = _ran(_study(db).trials)
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(map(str, (t.params for t in trials))) == sorted(map(str, load_space(space).grid_points()))


def test_workers_and_resumed_runs_draw_new_candidates(tmp_path, capsys):
    space = tmp_path / "scaled.yaml"
    space.write_text(SCALED)
    db = tmp_path / "w.db"
    assert _search(space, db, "--epochs", "1", "--workers", "2", "--trials", "2") == 0
    assert _search(space, db, "--epochs", "1", "--more", "1") == 0  # resumes: must not redraw trial 0
    scales = [t.params["scaling.scale"] for t in _study(db, "tiny").trials]
    assert len(scales) == 3 and len(set(scales)) == 3
