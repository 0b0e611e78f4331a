"""`resnas search / best / export / dashboard / spaces` end to end on digits with tiny nets."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest
import timm
import torch
from optuna.trial import TrialState

from resnas.cli import main
from resnas.data import load_data
from resnas.space import load_space

TINY = """
name: tiny
dataset: digits
sampler: tpe
pruner: hyperband
epochs: {min: 1, max: 3}
trials: 4
seed: 3
recipe: {batch_size: 128, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  act: [original, preact]
  shortcut: {identity: {}, scaling: {scale: [0.5, 1.0]}}
"""

GRID = TINY.replace("sampler: tpe", "sampler: grid").replace("pruner: hyperband", "pruner: none")
# every candidate has a float parameter: two draws alike would mean a sampler repeated itself
SCALED = TINY.replace("shortcut: {identity: {}, scaling: {scale: [0.5, 1.0]}}",
                      "shortcut: {scaling: {scale: {low: 0.1, high: 1.0}}}")


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def _study(db, name="tiny"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def _ran(trials):
    """The trials that ran: two workers that ask as the grid's queue runs empty leave one trial that ends
    unrun (status surplus, FAIL, no params; resnas.workers)."""
    surplus = [t for t in trials if t.user_attrs.get("status") == "surplus"]
    assert all(t.state == TrialState.FAIL and not t.params for t in surplus)
    return [t for t in trials if t not in surplus]


def _search(space, db, *extra):
    return main(["search", "--space", str(space), "--storage", f"sqlite:///{db}", "--confirm", "0", *extra])


def test_search_records_trials_and_resumes(space_file, tmp_path, capsys):
    db = tmp_path / "s.db"
    assert _search(space_file, db) == 0
    out = capsys.readouterr().out
    assert "best of tiny" in out and "resnas dashboard --storage" in out
    study = _study(db)
    assert len(study.trials) == 4
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert done and study.best_value < 0.9
    attrs = done[0].user_attrs
    assert attrs["spec"].startswith("layout=cifar,depth=8") and "in_chans=1" in attrs["spec"]
    assert attrs["timm"] == f"timm.create_model('resnas_spec', spec='{attrs['spec']}')"
    assert attrs["status"] == "ok" and attrs["device"] == "cpu" and attrs["params"] > 1000 and attrs["macs"] > 0
    assert len(attrs["epoch_seconds"]) == len(attrs["val_error"]) == attrs["epochs"]
    assert study.user_attrs["space"] == "tiny" and study.user_attrs["dataset"] == "digits"
    assert study.metric_names == ["val_error"]
    # the space's target (4) is reached: the same command adds nothing; --more 2 adds two
    assert _search(space_file, db) == 0
    assert "study holds 4 of 4 trials; --more N to add" in capsys.readouterr().out
    assert len(_study(db).trials) == 4
    assert _search(space_file, db, "--more", "2") == 0
    numbers = [t.number for t in _study(db).trials]
    assert numbers == list(range(6))


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


def test_best_json_and_export_reload_through_timm(space_file, tmp_path, capsys):
    db = tmp_path / "e.db"
    assert _search(space_file, db) == 0
    capsys.readouterr()
    assert main(["best", "--storage", f"sqlite:///{db}", "--json", "--top", "2"]) == 0
    ranked = json.loads(capsys.readouterr().out)["trials"]
    assert ranked[0]["rank"] == 1 and ranked[0]["values"][0] <= ranked[-1]["values"][0]
    out = tmp_path / "best-net"
    assert main(["export", "--storage", f"sqlite:///{db}", "--output", str(out)]) == 0
    assert "own weights" in capsys.readouterr().out
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    assert str(model.spec) == ranked[0]["spec"] and model.pretrained_cfg["input_size"] == [1, 8, 8]
    # the exported weights give exactly the validation error the trial recorded
    data = load_data("digits")
    x, y = data.val.__getitems__(list(range(len(data.val))))
    with torch.no_grad():
        error = (model(x).argmax(1) != y).float().mean().item()
    assert error == pytest.approx(ranked[0]["values"][0], abs=1e-6)
    assert main(["export", "--storage", f"sqlite:///{db}", "--output", str(out)]) == 2  # never overwrites


@pytest.mark.parametrize("argv, message", [
    (["--trials", "-1"], "error: Invalid value for '--trials'"),
    (["--space", "nope"], "error: space: unknown space 'nope'; allowed: default"),
    (["--dataset", "mnist"], "error: dataset: 'mnist' is unknown; allowed: digits"),
    (["--dataset", "cifar10"], "error: cifar10: needs a data directory"),
    (["--storage", "postgresql://resnas:secret@127.0.0.1:1/resnas"], "error: storage: cannot open postgresql://resnas:***@127.0.0.1:1/resnas"),
    (["--storage", "sqlite:////nonexistent-dir/x.db"], "error: storage: cannot write /nonexistent-dir/x.db"),
])
def test_search_user_errors_exit_2_and_leave_study_untouched(space_file, tmp_path, capsys, argv, message):
    db = tmp_path / "u.db"
    args = ["search", "--space", str(space_file), "--storage", f"sqlite:///{db}", "--confirm", "0", *argv]
    if argv[0] == "--space":
        args = ["search", "--storage", f"sqlite:///{db}", "--confirm", "0", *argv]
    start = time.monotonic()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "secret" not in err
    assert time.monotonic() - start < 10
    assert not db.exists()


def _hand_made_studies(db: str) -> None:
    """Study 'hand': trial 0 trained (ok, kept no weights), 1 pruned, 2 diverged, 3 failed; study 'empty'."""
    from optuna.distributions import FloatDistribution

    study = optuna.create_study(study_name="hand", storage=db)
    study.set_user_attr("dataset", "digits")
    study.set_user_attr("max_epochs", 1)
    spec = "depth=8,widths=4-8-16,in_chans=1"
    dist = {"x": FloatDistribution(0, 1)}
    for state, status, value in [(TrialState.COMPLETE, "ok", 0.5), (TrialState.PRUNED, "pruned", None),
                                 (TrialState.COMPLETE, "diverged", 0.9), (TrialState.FAIL, "oom", None)]:
        study.add_trial(optuna.trial.create_trial(state=state, value=value, params={"x": 0.5}, distributions=dist,
                                                  user_attrs={"spec": spec, "status": status, "epochs": 1}))
    optuna.create_study(study_name="empty", storage=db)


@pytest.mark.parametrize("argv, message", [
    (["best", "--storage", "sqlite:///{tmp}/none.db"], "error: storage: {tmp}/none.db does not exist"),
    (["export", "--storage", "sqlite:///{tmp}/none.db"], "error: storage: {tmp}/none.db does not exist"),
    (["export", "--storage", "postgresql://resnas:secret@127.0.0.1:1/resnas"],
     "error: storage: cannot open postgresql://resnas:***@127.0.0.1:1/resnas"),
    (["export", "--storage", "nosuch://x"], "error: storage: cannot open nosuch://x"),
    (["export"], "error: study: 2 studies in sqlite:///{tmp}/h.db; pick one with --study: hand, empty"),
    (["export", "--study", "nope"], "error: study: 'nope' not in sqlite:///{tmp}/h.db; allowed: hand, empty"),
    (["export", "--study", "empty"], "error: study empty: no completed trial to export"),
    (["export", "--study", "hand", "--trial", "7"], "error: trial: 7 is not in study hand (0 .. 3)"),
    (["export", "--study", "hand", "--trial", "1"], "error: trial: 1 did not complete (pruned)"),
    (["export", "--study", "hand", "--trial", "2"], "error: trial: 2 did not complete (diverged)"),
    (["export", "--study", "hand", "--trial", "3"], "error: trial: 3 did not complete (oom)"),
    (["export", "--study", "hand", "--trial", "0", "--output", "{tmp}/out/taken"],
     "error: output: {tmp}/out/taken exists and is not empty; choose a new folder"),
], ids=["best-missing-file", "missing-file", "unreachable-server", "unknown-dialect", "two-studies", "unknown-study",
        "nothing-completed", "unknown-trial", "pruned-trial", "diverged-trial", "failed-trial", "output-not-empty"])
def test_best_and_export_errors(tmp_path, capsys, argv, message):
    db = f"sqlite:///{tmp_path}/h.db"
    _hand_made_studies(db)
    out = tmp_path / "out"
    (out / "taken").mkdir(parents=True)
    (out / "taken" / "keep.txt").write_text("mine")
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "--storage" not in argv:
        argv += ["--storage", db]
    if argv[0] == "export" and "--output" not in argv:
        argv += ["--output", str(out / "net")]

    def listing():  # SQLite's own -wal/-shm files of h.db come and go
        return sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("h.db-"))

    before = listing()
    start = time.monotonic()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message.format(tmp=tmp_path)), err
    assert err.count("\n") == 1 and "Traceback" not in err and "secret" not in err
    assert time.monotonic() - start < 10  # refused before any retraining
    # nothing written: no export folder, no half-written temporary one, the taken folder as it was
    assert sorted(p.name for p in out.iterdir()) == ["taken"]
    assert [p.name for p in (out / "taken").iterdir()] == ["keep.txt"]
    assert (out / "taken" / "keep.txt").read_text() == "mine"
    assert listing() == before == ["h.db", "out"]  # no storage file or artifact folder created either


def test_spaces_lists_builtins(capsys):
    assert main(["spaces"]) == 0
    out = capsys.readouterr().out
    for name in ("default", "paper_table1", "paper_table2", "depth", "full"):
        assert name in out
    assert "11 points" in out and "10 points" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dashboard_studies(port: int) -> list[dict]:
    """The study summaries a dashboard on loopback serves, once it answers (within 60 s)."""
    for _ in range(120):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                return json.load(r)["study_summaries"]
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no dashboard answered on port {port}")


def test_dashboard_serves_study_and_trial_attributes(tmp_path):
    space = tmp_path / "grid.yaml"  # no pruner: the one trial trains to the end and keeps its weights
    space.write_text(GRID)
    db = tmp_path / "d.db"
    assert _search(space, db, "--trials", "1", "--epochs", "1") == 0
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "resnas", "dashboard", "--storage", f"sqlite:///{db}",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        studies = _dashboard_studies(port)
        assert studies[0]["study_name"] == "tiny"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}") as r:
            detail = json.load(r)
        attrs = {a["key"]: a["value"] for a in detail["trials"][0]["user_attrs"]}
        assert attrs["spec"].startswith("layout=cifar") and "timm.create_model" in attrs["timm"]
        assert detail["note"]["body"].startswith("# tiny") and "Rebuild the best design" in detail["note"]["body"]
        assert attrs["status"] == "ok"
        names = {a["filename"] for a in detail["trials"][0]["artifacts"]}  # the weights the dashboard serves
        assert names == {"model.safetensors", "config.json"}
    finally:
        proc.terminate()
        proc.wait(10)


def test_wheel_ships_the_search_spaces(tmp_path):
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(root)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("resnas-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for space in ("default", "paper_table1", "paper_table2", "depth", "full"):
        assert f"resnas/search_spaces/{space}.yaml" in names
    assert "resnas/py.typed" in names


def test_two_cpu_worker_processes_share_one_grid(tmp_path, capsys):
    space = tmp_path / "grid.yaml"
    space.write_text(GRID)
    db = tmp_path / "w.db"
    assert _search(space, db, "--epochs", "1", "--workers", "2") == 0
    trials = _ran(_study(db).trials)
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(map(str, (t.params for t in trials))) == sorted(map(str, load_space(space).grid_points()))


def test_sqlite_storage_is_wal_without_fsync_per_commit(tmp_path):
    from resnas.storage import open_storage

    with open_storage(f"sqlite:///{tmp_path / 'p.db'}").engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_journal_storage_shared_by_two_workers_then_read_and_served(tmp_path, capsys):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    space = tmp_path / "grid.yaml"
    space.write_text(GRID)
    log = tmp_path / "j.log"
    url = f"journal:///{log}"
    assert main(["search", "--space", str(space), "--storage", url, "--epochs", "1", "--workers", "2", "--confirm", "0"]) == 0
    trials = _ran(optuna.load_study(study_name="tiny", storage=JournalStorage(JournalFileBackend(str(log)))).trials)
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    assert (tmp_path / "resnas-artifacts").is_dir()  # weights kept beside the journal file
    capsys.readouterr()
    assert main(["best", "--storage", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trials"][0]["trial"] in range(6)
    assert main(["best", "--storage", f"journal:///{tmp_path / 'none.log'}"]) == 2
    assert "none.log does not exist" in capsys.readouterr().err
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "resnas", "dashboard", "--storage", url, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert _dashboard_studies(port)[0]["study_name"] == "tiny"
    finally:
        proc.terminate()
        proc.wait(10)


def test_workers_and_resumed_runs_draw_new_candidates(tmp_path, capsys):
    space = tmp_path / "scaled.yaml"
    space.write_text(SCALED)
    db = tmp_path / "w.db"
    assert _search(space, db, "--epochs", "1", "--workers", "2", "--trials", "2") == 0
    assert _search(space, db, "--epochs", "1", "--more", "1") == 0  # resumes: must not redraw trial 0
    scales = [t.params["scaling.scale"] for t in _study(db, "tiny").trials]
    assert len(scales) == 3 and len(set(scales)) == 3


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


def test_accelerate_launch_trains_each_trial_on_two_processes(tmp_path):
    import os
    import shutil

    from resnas.spec import ArchSpec

    space_file = tmp_path / "scaled.yaml"
    space_file.write_text(SCALED)
    db = tmp_path / "a.db"
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    launcher = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    run = subprocess.run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0", "-m", "resnas", "search",
                          "--space", str(space_file), "--storage", f"sqlite:///{db}", "--trials", "2", "--confirm", "0"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    trials = _study(db).trials
    assert len(trials) == 2 and all(t.user_attrs["status"] in ("ok", "pruned") for t in trials)
    assert run.stdout.count("best of tiny") == 1  # only the main process prints
    for t in trials:  # the trained design is the recorded one, to the last bit (not a float32 copy)
        assert ArchSpec.parse(t.user_attrs["spec"]).scale == t.params["scaling.scale"]
    assert "ExperimentalWarning" not in run.stderr


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


@pytest.mark.parametrize("command", ["search", "best", "export", "dashboard", "spaces", "summary", "models", "train"])
def test_every_command_help_shows_an_example(command, capsys):
    assert main([command, "--help"]) == 0
    assert "Example" in capsys.readouterr().out


def test_export_retrains_a_trial_that_kept_no_weights(tmp_path):
    from resnas.results import export_trial
    db = f"sqlite:///{tmp_path}/r.db"
    study = optuna.create_study(study_name="hand", storage=db)
    study.set_user_attr("dataset", "digits")
    study.set_user_attr("max_epochs", 1)
    study.add_trial(optuna.trial.create_trial(
        value=0.5, params={}, distributions={},
        user_attrs={"spec": "depth=8,widths=4-8-16,in_chans=1", "status": "ok", "epochs": 1}))
    folder, how = export_trial(study, db, 0, tmp_path / "net")
    assert how == "retrained for 1 epochs: trial 0 kept no weights"
    model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    assert model.pretrained_cfg["input_size"] == [1, 8, 8] and model.num_classes == 10
    with pytest.raises(ValueError, match="^trial: 7 is not in study hand"):
        export_trial(study, db, 7, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_devices_come_from_devices_or_workers_with_one_line_errors():
    from resnas.config import SearchError
    from resnas.runners import devices

    gpus = torch.cuda.device_count()
    assert devices(None, None) == [] and devices("cpu, cpu", None) == ["cpu", "cpu"]
    assert devices(None, 3) == ([f"cuda:{i % gpus}" for i in range(3)] if gpus else ["cpu"] * 3)
    with pytest.raises(SearchError, match=rf"^devices: 'cuda:{gpus}' is not a device here; allowed: cpu"):
        devices(f"cpu,cuda:{gpus}", None)
    with pytest.raises(SearchError, match=r"^workers: 3 does not match the 2 devices given$"):
        devices("cpu,cpu", 3)
