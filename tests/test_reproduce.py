"""`resnas reproduce table1|table2`, and `resnas search --probe-max-gain` pruning the paper's "fail" designs."""

import csv

import optuna
import pytest
from _procs import stopped
from optuna.trial import TrialState

from resnas.cli import main
from resnas.record import epochs_spent
from resnas.reproduce import TABLES, ranks, row_key, scaled_space
from resnas.space import load_space


@pytest.mark.parametrize("table", list(TABLES))
def test_every_grid_point_is_exactly_one_paper_row(table):
    keys = [row_key(table, s) for s in load_space(f"paper_{table}").specs()]
    assert sorted(map(str, keys)) == sorted(str(key) for _, key, _ in TABLES[table])


def test_depth_scale_keeps_three_stages_and_one_unit_at_least():
    assert [s.depth for s in scaled_space(load_space("paper_table1"), 1 / 3).specs()] == [38] * 11
    assert scaled_space(load_space("paper_table2"), 0.01).choices["depth"] == {"basic": (8,), "bottleneck": (11,)}


def test_fail_rows_share_the_last_rank():
    assert ranks([0.0661, None, 0.1235, 0.21, 0.05]) == [2, 4, 3, 4, 1]


def test_reproduce_writes_markdown_and_csv_beside_the_paper(tmp_path, capsys):
    db, out = tmp_path / "r.db", tmp_path / "out"
    args = ["reproduce", "table1", "--rows", "1,3", "--depth-scale", "0.05", "--epochs", "1", "--repeats", "2",
            "--storage", f"sqlite:///{db}", "--output", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "not the paper's setting" in printed and "depths reduced" in printed and "1 epochs, not 164" in printed
    md = (out / "table1.md").read_text()
    assert "Not the paper's setting" in md and "ResNet-8 for ResNet-110" in md
    assert "| 1 | original (identity) | 6.61 | 1 |" in md and "| 3 | constant scaling 0.5 / 1 | fail | 2 |" in md
    rows = list(csv.DictReader((out / "table1.csv").open()))
    assert [r["row"] for r in rows] == ["1", "3"] and [r["paper_error"] for r in rows] == ["6.61", "fail"]
    for r in rows:
        runs = [float(x) for x in r["runs"].split(";")]
        assert len(runs) == 2 and float(r["measured_error"]) == pytest.approx(sum(runs) / 2, abs=0.01)
        assert r["measured_fail"] == str(float(r["measured_error"]) > 20) and float(r["probe_ratio"]) > 0
        assert "depth=8" in r["spec"]
    # one study: the two rows, then each row's second repeat (its seed of (row, 1)); running again
    # resumes it and trains nothing
    names = [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{db}")]
    assert names == ["paper_table1-x0.05-1ep"]
    trials = optuna.load_study(study_name=names[0], storage=f"sqlite:///{db}").trials
    assert [t.user_attrs.get("repeat") for t in trials] == [None, None, 1, 1]
    assert len({t.user_attrs["seed"] for t in trials}) == 2  # paired: the seed follows the repeat, not the row
    assert main(args) == 0
    assert len(optuna.load_study(study_name=names[0], storage=f"sqlite:///{db}").trials) == 4
    assert not (out / "reproduce.db").exists()  # --storage named the study's home


@pytest.mark.parametrize("args, message", [
    (["table3"], "'table3' is not one of 'table1', 'table2'"),
    (["table1", "--rows", "12"], "rows: 12 is not a row of table1; allowed: 1 .. 11"),
    (["table1", "--rows", "a"], "rows: 'a' is not a list of row numbers"),
    (["table2", "--dataset", "folder", "--data-dir", "/no/such/dir"], "folder: /no/such/dir is not a directory"),
])
def test_reproduce_errors_are_one_line(args, message, tmp_path, capsys):
    assert main(["reproduce", *args, "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()  # nothing written for a reproduction that cannot run


PROBED = """
name: probed
sampler: grid
pruner: none
epochs: {min: 1, max: 1}
seed: 0
recipe: {batch_size: 128}
space:
  widths: [[4, 8, 16]]
  depth: [110]
  act: [original]
  down: [zeropad]
  shortcut: {identity: {}, exclusive_gate: {gate_bias: [0.0]}, conv1x1: {}}
"""


def test_probe_max_gain_prunes_failing_designs_before_training(tmp_path, capsys):
    space, db = tmp_path / "probed.yaml", tmp_path / "p.db"
    space.write_text(PROBED)
    assert main(["search", "--space", str(space), "--storage", f"sqlite:///{db}", "--probe-max-gain", "4"]) == 0
    trials = {t.user_attrs["spec"].split("shortcut=")[1].split(",")[0]: t
              for t in optuna.load_study(study_name="probed", storage=f"sqlite:///{db}").trials}
    assert trials["identity"].state == TrialState.COMPLETE and trials["identity"].user_attrs["epochs"] == 1
    assert abs(trials["identity"].user_attrs["probe_gain"]) <= 4
    for kind in ("exclusive_gate", "conv1x1"):
        t = trials[kind]
        assert t.state == TrialState.PRUNED and t.user_attrs["status"] == "pruned"
        assert t.user_attrs["reason"] == f"probe: |gain| {abs(t.user_attrs['probe_gain']):.2f} > 4"
        assert "epochs" not in t.user_attrs  # never trained
    assert all(len(t.user_attrs["probe_grad_norms"]) == 54 for t in trials.values())


def test_ctrl_c_then_rerun_resumes_the_interrupted_row_and_trains_each_row_once(tmp_path, resnas_cli):
    import os
    import signal
    import subprocess
    import sys
    import time
    from collections import Counter

    db, out, epochs = tmp_path / "c.db", tmp_path / "out", 6
    cmd = [sys.executable, "-m", "resnas", "reproduce", "table1", "--rows", "1,4,10", "--depth-scale", "0.05",
           "--epochs", str(epochs), "--storage", f"sqlite:///{db}", "--output", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    name = f"paper_table1-x0.05-{epochs}ep"

    def second_row_has_a_checkpoint() -> bool:  # row 4 (trial 1) has a checkpoint and 2 more epochs to train
        try:
            trials = optuna.load_study(study_name=name, storage=f"sqlite:///{db}").trials
        except (KeyError, optuna.exceptions.StorageInternalError):
            return False
        return (len(trials) > 1 and trials[1].state == TrialState.RUNNING
                and 1 <= len(trials[1].user_attrs.get("val_error", [])) <= epochs - 2)

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "reproduce never reached row 4's epoch 1"
            if second_row_has_a_checkpoint():
                with stopped(proc.pid):  # frozen: the signal lands in the state read, not after row 4's last epoch
                    if second_row_has_a_checkpoint():
                        proc.send_signal(signal.SIGINT)
                        break
            time.sleep(0.01)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    trials = optuna.load_study(study_name=name, storage=f"sqlite:///{db}").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    interrupted = trials[1]
    rerun = resnas_cli(*cmd[3:], env={"OMP_NUM_THREADS": "1"})  # the same command, run in this process
    assert rerun.returncode == 0, rerun.stderr
    trials = optuna.load_study(study_name=name, storage=f"sqlite:///{db}").trials
    # each row's grid point was taken by one trial, the interrupted one's by it and its one retry
    per_point = Counter(str(sorted(t.params.items())) for t in trials)
    assert sorted(per_point.values()) == [1, 1, 2] and per_point[str(sorted(interrupted.params.items()))] == 2
    assert all(t.state == TrialState.COMPLETE for t in trials if t.number != 1)
    assert not [t for t in trials if "duplicate_of" in t.user_attrs]
    retry = trials[-1]
    assert retry.params == interrupted.params
    assert retry.user_attrs["retry_of"] == retry.user_attrs["checkpoint_of"] == 1
    # it resumed from the interrupted run's checkpoint: only the epochs after it were trained; its history is whole
    k = retry.user_attrs["resumed_from_epoch"]
    assert 1 <= k < epochs and retry.user_attrs["epochs"] == len(retry.user_attrs["val_error"]) == epochs
    assert retry.user_attrs["val_error"][:k] == interrupted.user_attrs["val_error"][:k]
    assert epochs_spent(retry) == epochs - k
    rows = list(csv.DictReader((out / "table1.csv").open()))
    assert [r["row"] for r in rows] == ["1", "4", "10"] and all(r["runs"] != "-" for r in rows)
