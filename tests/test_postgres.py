"""Many workers on one study in PostgreSQL (the storage for many machines).

.ci/run starts a throw-away server on 127.0.0.1 (.ci/postgres) and exports RESNAS_TEST_POSTGRES; in CI
a missing server is a failure, not a skip.
"""

import uuid

import optuna
import pytest
from optuna.trial import TrialState

from resnas.cli import main
from resnas.space import parse_space

GRID = """
name: pg
dataset: digits
sampler: grid
pruner: none
epochs: {min: 1, max: 1}
recipe: {batch_size: 128, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  act: [original, preact]
  shortcut: {identity: {}, scaling: {scale: [0.5, 1.0]}}
"""


def test_three_workers_on_postgres_match_one_worker(pg_url, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # artifacts of a non-SQLite storage go to ./resnas-artifacts
    space = tmp_path / "pg.yaml"
    space.write_text(GRID)
    many, one = f"pg-many-{uuid.uuid4().hex[:8]}", f"pg-one-{uuid.uuid4().hex[:8]}"
    common = ["search", "--space", str(space), "--storage", pg_url, "--confirm", "0"]  # the grid's own trials
    assert main([*common, "--study", many, "--workers", "3"]) == 0
    assert main([*common, "--study", one]) == 0
    capsys.readouterr()
    studies = {name: optuna.load_study(study_name=name, storage=pg_url) for name in (many, one)}
    points = sorted(map(str, parse_space(GRID).grid_points()))
    for study in studies.values():
        # two workers may ask at the moment the queue runs empty: the one left without a point ends unrun
        surplus = [t for t in study.trials if t.user_attrs.get("status") == "surplus"]
        assert all(t.state == TrialState.FAIL and not t.params for t in surplus)
        trials = [t for t in study.trials if t not in surplus]
        assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
        assert sorted(str(t.params) for t in trials) == points  # each grid point once, none repeated
        assert len({t.user_attrs["device"] for t in trials}) == 1
    best_many, best_one = studies[many].best_trial, studies[one].best_trial
    assert best_many.user_attrs["spec"] == best_one.user_attrs["spec"]
    assert best_many.value == pytest.approx(best_one.value, abs=1e-9)
    by_spec = {t.user_attrs["spec"]: t.value for t in studies[one].trials}
    assert all(by_spec[t.user_attrs["spec"]] == pytest.approx(t.value, abs=1e-9) for t in studies[many].trials
               if t.state == TrialState.COMPLETE)


def test_postgres_sessions_commit_without_waiting_for_the_disk(pg_url):
    from resnas.storage import open_storage

    with open_storage(pg_url).engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
