"""resnas.workers: worker processes share one study's queue and draw their own candidates; a dead worker's trial
(its pid gone here, its heartbeat stale elsewhere) is reaped once and retried."""

import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState

from resnas.space import load_space
from resnas.workers import grid_job, identity, is_alive, reap, surplus_reason

from _tiny import GRID, SCALED, _ran, _search, _study


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


def _running_trial(study: optuna.Study, worker: dict, beat_age: float) -> int:
    trial = study.ask()
    trial.suggest_int("x", 0, 9)
    trial.set_user_attr("worker", worker)
    trial.set_user_attr("heartbeat", time.time() - beat_age)
    return trial.number


def test_dead_pid_here_at_once_stale_heartbeat_elsewhere_after_the_grace(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'w.db'}", study_name="w")
    me = identity()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = dict(me, pid=int(dead.stdout), start=1)  # that pid has exited
    reused = dict(me, start=(me["start"] or 0) + 1)  # this pid, but another process's start time
    elsewhere = dict(me, machine="another-machine/pid:[1]")
    numbers = {"me": _running_trial(study, me, beat_age=100), "gone": _running_trial(study, gone, beat_age=0),
               "reused": _running_trial(study, reused, beat_age=0),
               "far fresh": _running_trial(study, elsewhere, beat_age=0.5),
               "far stale": _running_trial(study, elsewhere, beat_age=600)}
    assert is_alive(me) is True and is_alive(gone) is False and is_alive(elsewhere) is None
    # a grace far above any pause of a loaded machine, so "far fresh" stays fresh
    assert sorted(reap(study, grace=60)) == sorted(numbers[k] for k in ("gone", "reused", "far stale"))
    assert reap(study, grace=60) == []  # reaped once; a second reaper finds nothing
    trials = study.get_trials(deepcopy=False)
    assert [trials[numbers[k]].state for k in ("me", "far fresh")] == [TrialState.RUNNING] * 2
    assert "its process is gone" in trials[numbers["gone"]].user_attrs["reason"]
    assert "no heartbeat for 60 s" in trials[numbers["far stale"]].user_attrs["reason"]
    retries = [t for t in trials if t.state == TrialState.WAITING]
    assert sorted(t.user_attrs["retry_of"] for t in retries) == sorted(numbers[k] for k in ("gone", "reused", "far stale"))
    # a trial whose worker died between ask() and its first heartbeat: stale from its start
    bare = study.ask().number
    time.sleep(0.3)
    assert sorted(reap(study, grace=0.2)) == sorted([bare, numbers["far fresh"]])


def test_a_grid_point_is_one_job_whatever_the_order_of_its_parameters():
    job = grid_job({"act": "preact", "depth": 8})
    assert job == grid_job({"depth": 8, "act": "preact"}) == 'grid:{"act": "preact", "depth": 8}'
    assert job != grid_job({"act": "original", "depth": 8})


def test_a_second_copy_of_a_job_is_surplus_and_the_first_is_not(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    first, second, other = study.ask(), study.ask(), study.ask()
    for trial, point in ((first, {"x": 1}), (second, {"x": 1}), (other, {"x": 2})):
        trial.set_user_attr("job", grid_job(point))
    assert surplus_reason(study, first) is None and surplus_reason(study, other) is None
    assert surplus_reason(study, second).startswith('same job as trial 0 (grid:{"x": 1})')
