"""Storages: SQLite shared by worker processes, in WAL mode; a journal file shared by workers, read and served."""

import json
import multiprocessing as mp
import subprocess
import sys

import optuna
from optuna.trial import TrialState

from resnas.cli import main
from resnas.storage import open_storage

from _dashboard import _dashboard_studies, _free_port
from _tiny import GRID, _ran

WORKERS, TRIALS = 4, 60


def _pop(url: str, start, out) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name="queue", storage=open_storage(url))
    start.wait(60)  # all workers pop at once
    out.put([study._pop_waiting_trial_id() for _ in range(TRIALS // WORKERS)])


def test_workers_popping_enqueued_trials_at_once_never_take_the_same_one(tmp_path):
    # Optuna pops a trial by reading it WAITING, then writing RUNNING; without a write lock taken at the
    # start of the transaction two SQLite workers could both read it (measured: 37 distinct of 40 popped)
    url = f"sqlite:///{tmp_path}/q.db"
    study = optuna.create_study(study_name="queue", storage=open_storage(url))
    for i in range(TRIALS):
        study.enqueue_trial({"x": i}, skip_if_exists=False)
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_pop, args=(url, start, out)) for _ in range(WORKERS)]
    for w in workers:
        w.start()
    start.set()
    popped = [trial_id for _ in workers for trial_id in out.get(timeout=120)]
    for w in workers:
        w.join(30)
    assert None not in popped and len(popped) == TRIALS
    assert len(set(popped)) == TRIALS, f"{TRIALS - len(set(popped))} trials popped twice"
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    assert len(running) == TRIALS


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
