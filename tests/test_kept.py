"""resnas.kept: exactly the top k designs of `resnas best` keep their weights (after confirmation too, and with
several workers), exactly the top k trials where no design is confirmed; `resnas best --test` reports their test
error; export says before it retrains; a study written before resnas.record resumes and exports."""

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

import optuna
import pytest
import timm
import torch
from optuna.artifacts import upload_artifact
from optuna.trial import TrialState

import resnas.results
from resnas.cli import main
from resnas.config import Search
from resnas.data import Data, load_data
from resnas.designs import ranked_designs, ranked_trials
from resnas.export import export, load
from resnas.kept import WEIGHTS_TOP_K, keep_top_weights, kept_files, weights_kept
from resnas.network import build
from resnas.record import ARTIFACT_FILES, TrialRecord
from resnas.results import export_trial
from resnas.runners import run_search
from resnas.space import parse_space
from resnas.spec import ArchSpec
from resnas.storage import artifact_root, artifact_store, open_storage

from _dashboard import _dashboard_studies, _free_port

# a float parameter: every trial is a new design; one epoch, no pruning: every trial completes
SPACE = """
name: kept
dataset: digits
sampler: random
pruner: none
epochs: {min: 1, max: 1}
trials: 6
seed: 6  # here ranking runs, not designs, kept two runs of the best design and none of the third
recipe: {batch_size: 128, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  act: [preact]
  shortcut: {scaling: {scale: {low: 0.1, high: 1.0}}}
"""


def _kept(study, url) -> set[int]:
    return {t.number for t in study.get_trials(deepcopy=False) if weights_kept(study, url, t)}


def _files(url) -> set[str]:
    return {p.name for p in artifact_root(url).iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """6 designs, then the best 3 confirmed with one more seed each: 9 runs of 1 epoch."""
    tmp = tmp_path_factory.mktemp("kept")
    url = f"sqlite:///{tmp / 'k.db'}"
    study = run_search(Search(parse_space(SPACE, source="kept.yaml"), storage=url, heartbeat=None, confirm=3,
                              repeats=1))
    return study, url, tmp


def test_exactly_the_top_k_designs_of_best_keep_weights_after_confirmation(searched):
    study, url, _ = searched
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 9
    top = ranked_designs(study)[:WEIGHTS_TOP_K]  # the ranking `resnas best` shows
    kept = _kept(study, url)
    assert len(kept) == WEIGHTS_TOP_K
    assert all(len(kept & set(d.trials)) == 1 for d in top)  # one run of each of the top k designs
    assert _files(url) == {i for n in kept for i in kept_files(study, url, study.trials[n]).values()}  # the rest
    # deleted


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_the_dashboard_lists_only_weights_it_can_serve(searched):
    """Every file optuna-dashboard lists downloads (200); trials pushed out of the top k list none."""
    study, url, _ = searched
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "resnas", "dashboard", "--storage", url, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        study_id = _dashboard_studies(port)[0]["study_id"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{study_id}", timeout=30) as r:
            detail = json.load(r)
        listed = {t["number"]: [f"/artifacts/{study_id}/{t['trial_id']}/{a['artifact_id']}" for a in t["artifacts"]]
                  for t in detail["trials"] if t["artifacts"]}
        listed[None] = [f"/artifacts/{study_id}/{a['artifact_id']}" for a in detail["artifacts"]]
        statuses = {path: _status(f"http://127.0.0.1:{port}{path}") for paths in listed.values() for path in paths}
    finally:
        proc.terminate()
        proc.wait(10)
    assert set(statuses.values()) == {200}, statuses
    assert set(listed) - {None} == _kept(study, url) and len(statuses) == len(ARTIFACT_FILES) * WEIGHTS_TOP_K


def test_the_final_sweep_leaves_exactly_the_top_k_that_workers_racing_left(tmp_path):
    """Workers finishing at once each keep their weights (neither sees the other's trial complete): 5 trials
    hold weights; the sweep at the end of the run keeps the top k designs' and deletes the rest."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    study, store = optuna.create_study(storage=url, study_name="race"), artifact_store(url)
    net = build(ArchSpec.parse("depth=8,widths=4-8-16,act=preact"), in_chans=1, num_classes=10)
    folder = export(net, tmp_path / "net")
    for i, error in enumerate([0.5, 0.1, 0.4, 0.2, 0.3, 0.6]):
        trial = study.ask()
        TrialRecord(spec=f"depth=8,seed={i}", status="ok").save(trial)
        if i < 5:
            for name in ARTIFACT_FILES:
                upload_artifact(artifact_store=store, file_path=str(folder / name), study_or_trial=trial)
        study.tell(trial, error)
    assert len(_kept(study, url)) == 5
    keep_top_weights(study, store, url)
    assert _kept(study, url) == {1, 3, 4} and len(_files(url)) == 2 * WEIGHTS_TOP_K


def test_the_search_never_looks_at_the_test_split(tmp_path, monkeypatch):
    splits = []
    loader = Data.loader

    def counted(self, split, *args, **kwargs):
        splits.append(split)
        return loader(self, split, *args, **kwargs)

    monkeypatch.setattr(Data, "loader", counted)
    space = parse_space(SPACE.replace("trials: 6", "trials: 2"), source="kept.yaml")
    run_search(Search(space, storage=f"sqlite:///{tmp_path / 't.db'}", heartbeat=None, confirm=1, repeats=1))
    assert splits.count("train") == 3 and "val" in splits and "test" not in splits


def _test_error(folder) -> float:
    """The error over the whole test split, evaluated here directly (wrong / count)."""
    data = load_data("digits")
    x, y = data.test.__getitems__(list(range(len(data.test))))
    with torch.no_grad():
        return int((load(folder).eval()(x).argmax(1) != y).sum()) / len(y)


def _resnas(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resnas", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})


def test_best_test_prints_the_test_error_of_the_kept_weights(searched):
    study, url, tmp = searched
    shown = _resnas("best", "--storage", url, "--test", "--top", "5")
    assert shown.returncode == 0, shown.stderr
    table = shown.stdout
    lines = [re.sub("[│┃]", " ", line) for line in table.splitlines()]  # with or without the table's box
    header = next(line for line in lines if "test error" in line)
    start, end = header.index("test error"), header.index("test error") + len("test error")
    rows = [line for line in lines if re.match(r"\s*\d+\s+\d+\s", line)]  # a row per design: rank, trial, ...
    cells = [next(m[0] for m in re.finditer(r"\S+", row) if m.end() > start and m.start() < end) for row in rows]
    assert len(cells) == 5 and all(re.fullmatch(r"\d+\.\d\d%", c) for c in cells[:WEIGHTS_TOP_K])
    assert cells[WEIGHTS_TOP_K:] == ["-", "-"]
    assert "kept no weights" in table and "resnas export --trial N retrains it" in table  # why the others show "-"

    as_json = _resnas("best", "--storage", url, "--test", "--top", "5", "--json")
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)["trials"]
    tested = [r for r in rows if r["test_error"] is not None]
    assert len(tested) == WEIGHTS_TOP_K and [r["rank"] for r in tested] == [1, 2, 3]
    for row in tested:
        folder, how = export_trial(study, url, row["test_trial"], tmp / f"t{row['test_trial']}")
        assert how.endswith("own weights") and row["test_trial"] in row["trials"]
        assert row["test_error"] == _test_error(folder)
    assert all(r["test_error"] is None and r["test_trial"] is None for r in rows[WEIGHTS_TOP_K:])


def test_best_without_test_does_not_evaluate(searched):
    _, url, _ = searched
    shown = _resnas("best", "--storage", url, "--json")
    assert "test_error" not in shown.stdout


def test_export_says_it_will_retrain_and_its_cost_before_retraining(searched, monkeypatch, capsys):
    study, url, tmp = searched
    kept = _kept(study, url)
    lost = next(t for t in study.trials if t.state == TrialState.COMPLETE and t.number not in kept)
    record = TrialRecord.from_trial(lost)
    seen = []
    train = resnas.results.train

    def watched(*args, **kwargs):
        seen.append(capsys.readouterr().out)  # what the user read when the retraining began
        return train(*args, **kwargs)

    monkeypatch.setattr(resnas.results, "train", watched)
    assert main(["export", "--storage", url, "--trial", str(lost.number), "--output", str(tmp / "lost")]) == 0
    [line] = seen
    said = re.fullmatch(rf"trial {lost.number} kept no weights: retraining it, 1 epochs, about ([0-9.]+) s "
                        r"from its recorded epoch times\n", line)
    assert said and float(said[1]) == pytest.approx(record.epoch_seconds[0], abs=0.06, rel=0.06)
    assert "wrote" in capsys.readouterr().out


# a float parameter: every trial is a new design; one epoch, no pruning: every trial completes
TOPK = """
name: topk
dataset: digits
sampler: random
pruner: none
epochs: {min: 1, max: 1}
trials: 8
seed: 5
recipe: {batch_size: 128, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  act: [preact]
  shortcut: {scaling: {scale: {low: 0.1, high: 1.0}}}
"""


def test_exactly_the_top_k_completed_trials_keep_weights(tmp_path):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    study = run_search(Search(parse_space(TOPK, source="topk.yaml"), storage=url, heartbeat=None, confirm=0))
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 8 and WEIGHTS_TOP_K == 3
    top = ranked_trials(study)[:WEIGHTS_TOP_K]  # the ranking `resnas best` shows
    assert {t.number for t in study.trials if weights_kept(study, url, t)} == {t.number for t in top}
    root = artifact_root(url)
    files = {p.name for p in root.iterdir() if p.is_file()}
    assert files == {i for t in top for i in kept_files(study, url, t).values()}
    assert len(files) == 2 * WEIGHTS_TOP_K
    # a trial that left the top k (its files listed once, unlisted and removed) exports by retraining; one in it,
    # from its own weights
    unlisted = {k.split(":")[2] for k, v in open_storage(url).get_study_system_attrs(study._study_id).items()
                if k.startswith("dashboard:artifacts:") and v == "null"}
    left = next(t.number for t in done if str(t._trial_id) in unlisted)
    assert export_trial(study, url, left, tmp_path / "left")[1].endswith(f"trial {left} kept no weights")
    assert export_trial(study, url, top[0].number, tmp_path / "best")[1] == f"trial {top[0].number}'s own weights"


def test_a_study_written_with_the_old_record_resumes_and_exports(tmp_path):
    """Trials written as resnas wrote them before resnas.record: raw Optuna calls, the same keys."""
    space = parse_space(TOPK.replace("trials: 8", "trials: 2"), source=str(tmp_path / "topk.yaml"))
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = optuna.create_study(study_name="topk", storage=url)
    for key, value in dict(space="topk", space_file=str(tmp_path / "topk.yaml"), dataset="digits",
                           objectives=["val_error"], max_epochs=1, recipe={"batch_size": 128, "warmup_iters": 0},
                           seed=5).items():
        old.set_user_attr(key, value)
    draws = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    specs = []
    for _ in range(3):
        trial = draws.ask()
        specs.append(str(space.suggest(trial, in_chans=1, num_classes=10)))
        draws.tell(trial, 0.5)
    common = dict(timm=f"timm.create_model('resnas_spec', spec='{specs[0]}')", device="cpu", params=1234, macs=5678)
    old.add_trial(optuna.trial.create_trial(
        value=0.3, params=draws.trials[0].params, distributions=draws.trials[0].distributions,
        user_attrs=dict(common, spec=specs[0], status="ok", reason="trained 1 epochs", epochs=1, seconds=1.0,
                        val_error=[0.3], train_loss=[1.0], epoch_seconds=[1.0], probe_gain=0.1, checkpoint_of=0,
                        seed=123)))
    old.add_trial(optuna.trial.create_trial(
        state=TrialState.PRUNED, params=draws.trials[1].params, distributions=draws.trials[1].distributions,
        user_attrs=dict(common, spec=specs[1], status="pruned", reason="probe: |gain| 9.00 > 4")))
    old.add_trial(optuna.trial.create_trial(
        state=TrialState.FAIL, params=draws.trials[2].params, distributions=draws.trials[2].distributions,
        user_attrs=dict(common, spec=specs[2], status="failed", reason="interrupted", checkpoint_of=2, seed=7)))

    study = run_search(Search(space, storage=url, heartbeat=None, confirm=0, more=2))  # the interrupted trial first
    trials = study.trials
    assert len(trials) == 5 and [t.state for t in trials[3:]] == [TrialState.COMPLETE] * 2
    retry = TrialRecord.from_trial(trials[3])
    assert retry.retry_of == 2 and retry.checkpoint_of == 2 and retry.spec == specs[2] and retry.status == "ok"
    folder, how = export_trial(study, url, 0, tmp_path / "net")  # kept no weights: retrained with its seed
    assert how == "retrained for 1 epochs: trial 0 kept no weights"
    assert str(timm.create_model(f"local-dir:{folder}", pretrained=True).spec) == specs[0]
