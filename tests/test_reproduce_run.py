"""`resnas reproduce` as a new user runs it: an estimate first, the table so far after every run and on Ctrl-C,
its own storage under --output, and the same command again finishing the table."""

import csv
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import optuna
import pytest
from _procs import stopped

from resnas.reproduce import (
    QUICK_DEPTH_SCALE,
    QUICK_WIDTH_SCALE,
    Estimate,
    Reproduction,
    Row,
    TableRun,
    agreement,
    table_rows,
)

ENV = dict(os.environ, OMP_NUM_THREADS="1")
ESTIMATE = re.compile(r"table1: 3 rows x 1 repeat x 5 epochs(, 1 of 3 runs done)?, about \d+ (s|min)( left)? "
                      r"on this machine \(from (one epoch of row 1|1 finished run)\)")


def _prose(lines: list[str]) -> str:
    """Lines of prose as one: a line wrapped at its spaces reads whole again."""
    return " ".join(line.strip() for line in lines)


def test_rows_not_run_are_marked_and_left_out_of_ranks_and_agreement():
    rows = [Row(1, "original (identity)", "depth=8", 6.61, (0.0556,), 1.4), Row(2, "plain", "depth=8", None, (), 2.4)]
    done, waiting = table_rows(rows)
    assert (done["measured_error"], done["measured_rank"], done["runs"]) == ("5.56", 1, "5.56")
    assert (waiting["measured_error"], waiting["measured_rank"], waiting["runs"]) == ("not run", "-", "not run")
    assert waiting["measured_fail"] == "" and done["measured_fail"] is False  # issue 24: a CSV said False
    assert agreement(rows).endswith("1 of 1 rows agree with the paper on fail / not fail (error above 20%); "
                                    "1 rows not run yet")


@pytest.mark.parametrize("estimate, line", [
    (Estimate("table2", 10, 1, 15, 10, 10, 725, "one epoch of row 1"),
     "table2: 10 rows x 1 repeat x 15 epochs, about 12 min on this machine (from one epoch of row 1)"),
    (Estimate("table1", 11, 5, 164, 55, 50, 9 * 3600, "5 finished runs"),
     "table1: 11 rows x 5 repeats x 164 epochs, 5 of 55 runs done, about 9.0 h left on this machine "
     "(from 5 finished runs)"),
    (Estimate("table1", 2, 1, 3, 2, 0, 0, "2 finished runs"),
     "table1: 2 rows x 1 repeat x 3 epochs: every run is done, nothing to train"),
])
def test_estimate_line(estimate, line):
    assert estimate.line() == line


def _after_the_first_run(out) -> bool:
    """Row 1's run is finished and in the table, and row 2's has at least two of its 5 epochs still to train."""
    if not (out / "table1.csv").exists():  # written once the first run has finished (and the study exists)
        return False
    try:
        trials = optuna.load_study(study_name="paper_table1-x0.05-5ep", storage=f"sqlite:///{out / 'reproduce.db'}").trials
    except (KeyError, optuna.exceptions.StorageInternalError):
        return False
    running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 1 and \
        all(len(t.user_attrs.get("val_error", [])) <= 3 for t in running)


def test_ctrl_c_after_a_row_writes_the_table_so_far_and_the_same_command_finishes_it(tmp_path, resnas_cli):
    args = ["reproduce", "table1", "--rows", "1,2,3", "--depth-scale", "0.05", "--epochs", "5", "--output", "out"]
    cmd, out = [sys.executable, "-m", "resnas", *args], tmp_path / "out"
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            if _after_the_first_run(out):
                with stopped(proc.pid):  # frozen: the signal lands in the state read
                    if _after_the_first_run(out):
                        proc.send_signal(signal.SIGINT)
                        break
            time.sleep(0.01)
        printed, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err
    lines = printed.splitlines()
    first_run = next(i for i, line in enumerate(lines) if line.startswith("run 1/3: row 1 "))
    assert ESTIMATE.search(_prose(lines[:first_run])), printed
    assert err.count("\n") == 1 and "1 of 3 runs done" in err and str(os.path.join("out", "table1.md")) in err
    assert err.rstrip().endswith("resumes from its last epoch with: resnas " + " ".join(args))
    table = list(csv.DictReader((out / "table1.csv").open()))
    assert [r["row"] for r in table] == ["1", "2", "3"]
    assert 0 <= float(table[0]["measured_error"]) <= 100
    assert [(r["measured_error"], r["runs"]) for r in table[1:]] == [("not run", "not run")] * 2
    assert "**Partial:** 2 of 3 runs not finished yet" in (out / "table1.md").read_text()
    # its own storage: nothing in the working directory but the output folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (out / "reproduce.db").is_file()

    again = resnas_cli(*args, cwd=tmp_path)  # the same command, run in this process
    assert again.returncode == 0, again.stderr
    estimated = ESTIMATE.search(_prose(again.stdout.splitlines()))
    assert estimated and "1 of 3 runs done" in estimated[0], again.stdout
    table = list(csv.DictReader((out / "table1.csv").open()))
    assert all(r["runs"] != "not run" and float(r["measured_error"]) >= 0 for r in table)
    assert "not run" not in (out / "table1.md").read_text()
    trials = optuna.load_study(study_name="paper_table1-x0.05-5ep", storage=f"sqlite:///{out / 'reproduce.db'}").trials
    per_row = Counter(str(sorted(t.params.items())) for t in trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert sorted(per_row.values()) == [1, 1, 1]  # the finished row was not trained again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_ctrl_c_while_a_resumed_run_probes_its_rows_names_the_runs_the_study_holds(tmp_path, monkeypatch, capsys):
    from resnas import reproduce
    from resnas.cli import main

    args = ["reproduce", "table1", "--rows", "1,2", "--depth-scale", "0.05", "--epochs", "1", "--output",
            str(tmp_path / "out")]
    assert main([*args[:3], "1", *args[4:]]) == 0  # row 1 trained and in the study

    def interrupted(*_, **__):
        raise KeyboardInterrupt  # Ctrl-C while the resumed run probes its rows, before it estimates

    monkeypatch.setattr(reproduce, "probe", interrupted)
    capsys.readouterr()
    assert main(args) == 130
    err = capsys.readouterr().err  # issue 24: "nothing trained yet" although row 1 was in reproduce.db
    assert "nothing trained yet" not in err and "1 of 2 runs done" in err, err
    assert (tmp_path / "out" / "table1.md").is_file()


def _quick(rows, output) -> "Reproduction":
    return Reproduction("table1", dataset="digits", depth_scale=QUICK_DEPTH_SCALE, width_scale=QUICK_WIDTH_SCALE,
                        epochs=3, rows=rows, output=str(output), threads=1)  # as ENV: one torch thread


def test_the_estimate_times_one_real_epoch_and_a_resume_reads_the_finished_runs_instead(tmp_path, monkeypatch):
    """Issue 24: 3 timed steps a row said a seventh of the time, and a resume timed every row again (40-71 s).
    How close the estimate comes is measured (issue 24's closing note: 135 s for 173 s), not asserted: a timed test
    flakes on a shared machine."""
    from resnas import reproduce
    from resnas.network import build, count_macs
    timed = []
    measure = reproduce.measure_cost
    monkeypatch.setattr(reproduce, "measure_cost", lambda *a, **k: timed.append(a[0]) or measure(*a, **k))
    first = TableRun(_quick((1, 2, 3), tmp_path / "out"))
    estimate = first.estimate()
    assert estimate.source == "one epoch of row 1" and timed == [first.planned[0].spec] and estimate.seconds > 0
    first.run()

    again = TableRun(_quick((1, 2, 3, 4, 5), tmp_path / "out"))  # resumed: rows 1-3 are done
    estimate = again.estimate()
    assert len(timed) == 1 and estimate.source == "3 finished runs" and estimate.runs_left == 2
    cost = reproduce.recorded_cost(again.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    left = again.planned[3:]  # rows 4 and 5, each its MACs times the finished runs' cost per MAC
    expected = sum(cost.epoch(count_macs(build(p.spec), again.data.input_size), 3) * 3 for p in left)
    assert estimate.seconds == pytest.approx(expected) and cost.per_mac > 0


def test_reproduce_prints_lines_that_fit_80_columns_broken_at_spaces(tmp_path, resnas_cli):
    run = resnas_cli("reproduce", "table1", "--rows", "1,4", "--quick", "--epochs", "1", "--output", "out",
                     cwd=tmp_path, env={"COLUMNS": "80", "TERM": "dumb"})
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), run.stdout
    prose = _prose(lines)
    assert re.search(r"table1: 2 rows x 1 repeat x 1 epochs, about \d+ s on this machine \(from one epoch of "
                     r"row 1\)", prose), run.stdout
    assert re.search(r"run 2/2: row 4 constant scaling 0.5 / 0.5: \d+\.\d\d% val error after 1 epochs, \d+ s; "
                     r"about \d+ s left", prose), run.stdout
