"""Resume means what it says: --trials is a target for the study, --more adds to it, and after a real Ctrl-C
every message names the exact command that continues (search and train)."""

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from _procs import stopped

from resnas.train import checkpoint_epoch

SPACE = """
name: tiny4
dataset: digits
sampler: tpe
pruner: none
epochs: {min: 4, max: 4}
trials: 4
seed: 1
recipe: {batch_size: 64, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  shortcut: {scaling: {scale: {low: 0.1, high: 1.0}}}
"""
ENV = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="80")
MODEL = "depth=8,widths=8-16-32"


def _resnas(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "resnas", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def _states(db) -> dict[str, int]:
    """Trials per state, read from the SQLite file itself."""
    with sqlite3.connect(db) as c:
        return dict(c.execute("SELECT state, count(*) FROM trials GROUP BY state").fetchall())


def _mid_trial(db, epochs: int) -> int | None:
    """The number of a running trial with an epoch recorded and at least two of its ``epochs`` still to train
    (so a Ctrl-C, acted on at the next step, stops it), or None."""
    try:
        with sqlite3.connect(db, timeout=1) as c:
            rows = c.execute("SELECT t.number, a.value_json FROM trials t JOIN trial_user_attributes a "
                             "ON a.trial_id = t.trial_id AND a.key = 'val_error' WHERE t.state = 'RUNNING'").fetchall()
    except sqlite3.Error:
        return None
    return next((number for number, errors in rows if 1 <= len(json.loads(errors)) <= epochs - 2), None)


def _interrupt(cmd, ready, timeout=300):
    """Start ``cmd``, send it a real SIGINT once ``ready()``, return (exit code, stderr). ``ready`` is checked
    again with the process stopped, so the signal lands in the state it names (an epoch done, more to go)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "never reached the point to interrupt"
            if ready():
                with stopped(proc.pid):
                    if ready():
                        proc.send_signal(signal.SIGINT)
                        break
            time.sleep(0.02)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, err


def test_ctrl_c_then_the_same_command_finishes_the_target_and_more_adds(tmp_path):
    space = tmp_path / "tiny4.yaml"
    space.write_text(SPACE)
    db = tmp_path / "s.db"
    args = ["search", "--space", str(space), "--storage", f"sqlite:///{db}", "--confirm", "0", "--trials", "4"]
    # the first trial caught with an epoch done and two to go (a later one if a busy machine missed it)
    code, err = _interrupt([sys.executable, "-m", "resnas", *args], lambda: _mid_trial(db, 4) is not None)
    assert code == 130 and "Traceback" not in err
    assert f"continue with: {shlex.join(['resnas', *args])}" in err and len(err.strip().splitlines()) == 1
    states = _states(db)
    done = states.pop("COMPLETE", 0)
    assert states == {"FAIL": 1} and done < 4  # the interrupted trial failed; those before it completed

    rerun = _resnas(*args)  # the same command: the interrupted trial's retry plus new ones
    assert rerun.returncode == 0, rerun.stderr
    assert f"study holds {done} of 4 trials" in rerun.stdout
    assert _states(db) == {"COMPLETE": 4, "FAIL": 1}  # 4 search trials; the interrupted one is not counted

    again = _resnas(*args)  # a finished target: nothing new
    assert again.returncode == 0 and "study holds 4 of 4 trials; --more N to add" in again.stdout
    assert _states(db) == {"COMPLETE": 4, "FAIL": 1}

    more = _resnas(*args[:-2], "--more", "2")
    assert more.returncode == 0, more.stderr
    assert _states(db) == {"COMPLETE": 6, "FAIL": 1}


def test_ctrl_c_of_more_names_the_target_it_set(tmp_path):
    space = tmp_path / "tiny4.yaml"
    space.write_text(SPACE)
    db = tmp_path / "m.db"
    args = ["search", "--space", str(space), "--storage", f"sqlite:///{db}", "--confirm", "0"]
    code, err = _interrupt([sys.executable, "-m", "resnas", *args, "--more", "3"], lambda: _mid_trial(db, 4) is not None)
    assert code == 130  # --more 3 on an empty study set the target 3: the same --more would add 3 again
    assert f"continue with: {shlex.join(['resnas', *args, '--trials', '3'])}" in err


def test_trials_zero_is_refused_and_creates_nothing(tmp_path):
    db = tmp_path / "zero.db"
    run = _resnas("search", "--storage", f"sqlite:///{db}", "--trials", "0")
    assert run.returncode == 2 and run.stderr.startswith("error: ") and "'--trials'" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not db.exists()


@pytest.mark.parametrize("args", [["--trials", "3", "--more", "2"], ["--more", "2", "--budget-epochs", "40"]])
def test_two_budgets_are_refused(tmp_path, args):
    db = tmp_path / "two.db"
    run = _resnas("search", "--storage", f"sqlite:///{db}", *args)
    assert run.returncode == 2 and "not both" in run.stderr and not db.exists()


def test_ctrl_c_of_train_names_resume_and_that_command_finishes(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--model", MODEL, "--epochs", "3", "--batch-size", "16", "--output", str(out)]
    code, err = _interrupt([sys.executable, "-m", "resnas", *args],
                           lambda: checkpoint_epoch(out / "checkpoint.safetensors") in (1, 2))  # more to go
    assert code == 130 and "Traceback" not in err and "trial" not in err
    assert "training stopped after epoch" in err and f"the checkpoint in {out} holds it" in err
    assert f"continue with: {shlex.join(['resnas', *args, '--resume'])}" in err
    rerun = _resnas(*args, "--resume")
    assert rerun.returncode == 0, rerun.stderr
    assert checkpoint_epoch(out / "checkpoint.safetensors") == 3 and (out / "model.safetensors").exists()


def test_a_finished_run_is_extended_only_within_its_schedule(tmp_path):
    done = tmp_path / "done"
    base = ["train", "--model", MODEL, "--batch-size", "64"]
    assert _resnas(*base, "--epochs", "3", "--output", str(done)).returncode == 0
    longer = _resnas(*base, "--epochs", "5", "--output", str(done), "--resume")
    assert longer.returncode == 2 and len(longer.stderr.strip().splitlines()) == 1
    err = longer.stderr
    assert "epochs: --epochs 5 goes past the run's 3-epoch schedule" in err
    assert shlex.join(["resnas", *base, "--epochs", "5", "--output", f"{done}-5"]) in err
    assert "--schedule-epochs 5" in err

    # started on a 5-epoch schedule, a 3-epoch run continues to epoch 5 (no need to repeat --schedule-epochs)
    room = tmp_path / "room"
    assert _resnas(*base, "--epochs", "3", "--schedule-epochs", "5", "--output", str(room)).returncode == 0
    extended = _resnas(*base, "--epochs", "5", "--output", str(room), "--resume")
    assert extended.returncode == 0, extended.stderr
    assert "epoch 4/5" in extended.stdout and checkpoint_epoch(room / "checkpoint.safetensors") == 5
