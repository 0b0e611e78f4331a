"""The commands `resnas search / best / export / dashboard / spaces`: one-line errors, help, the built-in spaces, the dashboard."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest
from optuna.trial import TrialState

from resnas.cli import main

from _dashboard import _dashboard_studies, _free_port
from _tiny import GRID, _search


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
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}", timeout=30) as r:
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


@pytest.mark.parametrize("command", ["search", "best", "export", "dashboard", "spaces", "summary", "models", "train"])
def test_every_command_help_shows_an_example(command, capsys):
    assert main([command, "--help"]) == 0
    assert "Example" in capsys.readouterr().out




def test_dashboard_on_a_busy_port_is_one_line_exit_2_before_it_says_listening(tmp_path, capsys):
    db = tmp_path / "busy.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="s")
    with socket.socket() as taken:  # a server already listens there
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["dashboard", "--storage", f"sqlite:///{db}", "--port", str(port)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"error: dashboard: cannot listen on 127.0.0.1:{port}: ") and err.count("\n") == 1
    assert "Listening" not in out and "optuna-dashboard on" not in out and "Traceback" not in err
