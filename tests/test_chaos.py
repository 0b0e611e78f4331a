"""Chaos: three workers start together on a fresh storage and a 5-point grid of 5 epochs a trial; one is
SIGKILLed mid-trial (after an epoch's checkpoint, before its last) at a random moment and started again. Every worker exits 0 (or is the killed one), every grid point
completes exactly once, nothing is left RUNNING or WAITING, no completed trial changes, and the killed
trial is retried from its epoch checkpoint. On SQLite, journal, PostgreSQL and the gRPC proxy, and for a
trial under ``accelerate launch`` (2 CPU ranks). The dead-worker rules themselves: test_workers.py.
"""

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

import optuna
import pytest
from _procs import signal_tree, stopped, tree
from optuna.trial import TrialState

GRID = """
name: chaos
dataset: digits
sampler: grid
pruner: none
epochs: {min: 5, max: 5}
recipe: {batch_size: 128, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  act: [original, bn_after_add, relu_before_add, relu_preact, preact]
  shortcut: {identity: {}}
"""
POINTS, EPOCHS = 5, 5  # more jobs than workers; epochs enough that a quiet machine still shows a victim mid-trial
DRAWN = """
name: drawn
dataset: digits
sampler: tpe
pruner: none
trials: 2
epochs: {min: 1, max: 1}
recipe: {batch_size: 128, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  act: [preact]
  shortcut: {scaling: {scale: {low: 0.1, high: 1.0}}}
"""
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")  # SIGABRT: every thread's stack to stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fresh_postgres(url: str) -> str:
    """A new, empty database on the server of ``url``."""
    import psycopg

    name = f"chaos_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + "/" + name


def _load(url: str) -> optuna.Study:
    """The study, read as a bystander. SQLite through Optuna's own storage: its reads take no lock in WAL mode,
    whereas resnas's writers begin every transaction IMMEDIATE, and a read that waits for the lock of a worker
    the test has stopped (SIGSTOP) waits out the busy timeout, and the other workers' writes with it."""
    from resnas.storage import open_storage

    storage = optuna.storages.RDBStorage(url) if url.startswith("sqlite") else open_storage(url)
    return optuna.load_study(study_name="chaos", storage=storage)


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return _load(url).get_trials(deepcopy=False)
    except (KeyError, ValueError, optuna.exceptions.StorageInternalError):
        return []  # the study does not exist yet


def _victim_trial(trials: list, pid: int):
    """The trial that the process ``pid`` (or a rank it launched) runs, once it has trained an epoch (so it
    has a checkpoint) and while it has more to go (any epoch but the last: a window of 4 of 5 epochs)."""
    family = tree(pid)
    for t in trials:
        worker = t.user_attrs.get("worker") or {}
        if t.state == TrialState.RUNNING and worker.get("pid") in family and 1 <= len(t.user_attrs.get("val_error") or ()) < EPOCHS:
            return t
    return None


def _start(argv: list[str], cwd, env, name: str) -> subprocess.Popen:
    """``argv`` started with its stderr in ``cwd/name.stderr`` (a file: a pipe nobody reads can fill and block)."""
    with open(Path(cwd) / f"{name}.stderr", "wb") as err:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)


def _wait(proc: subprocess.Popen, cwd, timeout: float = 300) -> int:
    """``proc``'s exit code; a process (or rank) still running after ``timeout`` seconds is stopped with
    SIGABRT, so that faulthandler writes where every thread of it hangs into the stderr the failure shows."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        for p in reversed(tree(proc.pid)):  # the ranks first, then their launcher
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGABRT)
        time.sleep(2)
        raise AssertionError(f"still running after {timeout:g} s; the stacks:\n{_stderr(cwd)}") from None


def _stderr(cwd) -> str:
    """Every process's whole stderr under ``cwd``: each search's, and each rank's that accelerate launch wrote
    (``--log_dir``: <launch>/attempt_0/<rank>/stderr.log)."""
    files = sorted(Path(cwd).glob("*.stderr")) + sorted(Path(cwd).glob("**/stderr.log"))
    return "\n".join(f"==== {f.relative_to(cwd)}\n{f.read_text(errors='replace')}" for f in files)


def _chaos(url: str, space, cwd, command=None, workers: int = 3, seed: int = 0, env=ENV) -> dict:
    """Start ``workers`` searches at once, SIGKILL one mid-trial, restart it, wait; check every promise."""
    command = command or [sys.executable, "-m", "resnas", "search"]
    argv = [*command, "--space", str(space), "--storage", url, "--confirm", "0", "--heartbeat", "1"]
    procs = [_start(argv, cwd, env, f"worker{i}") for i in range(workers)]
    # the victim: the first worker caught mid-trial, looked for in an order drawn from the seed (a worker fixed in
    # advance could start late on a busy machine and find every grid point taken)
    order, started = random.Random(seed).sample(range(workers), workers), time.monotonic()
    try:
        while True:
            assert time.monotonic() - started < 300, "too slow"
            assert any(p.poll() is None for p in procs), f"every worker ended before one was caught mid-trial\n{_stderr(cwd)}"
            trials = _trials(url)
            if (victim := next((i for i in order if _victim_trial(trials, procs[i].pid) is not None), None)) is not None:
                pid = procs[victim].pid
                time.sleep(random.Random(seed).uniform(0, 0.1))  # a random moment inside its epoch
                with stopped(pid):  # frozen: the trial read now is the one the kill leaves (not past its last epoch)
                    if (killed := _victim_trial(trials := _trials(url), pid)) is not None:
                        killed_at = time.time()
                        signal_tree(pid, signal.SIGKILL)  # the launcher and its ranks alike
                        break
            time.sleep(0.05)
        before = {t.number: t.values for t in trials if t.state == TrialState.COMPLETE}
        procs[victim].wait(30)
        restarted = _start(argv, cwd, env, "restarted")
        codes = {i: _wait(p, cwd) for i, p in enumerate(procs)}
        assert _wait(restarted, cwd) == 0, _stderr(cwd)
    finally:
        for p in procs:
            signal_tree(p.pid, signal.SIGKILL)
    assert codes.pop(victim) == -signal.SIGKILL
    assert all(code == 0 for code in codes.values()), _stderr(cwd)

    trials = _trials(url)
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    points = [tuple(sorted(t.params.items())) for t in done]
    assert len(points) == len(set(points)) == POINTS  # every grid point exactly once
    assert all({t.number: t.values for t in done}.get(n) == v for n, v in before.items())  # none changed
    lost = trials[killed.number]
    assert lost.state == TrialState.FAIL and lost.user_attrs["status"] == "lost"
    retry = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert len(retry) == 1 and retry[0].user_attrs["job"] == lost.user_attrs["job"]
    # the job is finished once, resumed from the lost run's checkpoint: by the retry, or by a second copy of
    # the grid point that workers enqueued together (then the retry ends as surplus)
    [finisher] = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs["job"] == lost.user_attrs["job"]]
    assert finisher.params == killed.params and (finisher.number == retry[0].number or retry[0].user_attrs["status"] == "surplus")
    died_after = len(lost.user_attrs["val_error"])  # epochs it had reported when it was killed
    assert died_after < EPOCHS, "killed after its last epoch: nothing left to resume"
    assert finisher.user_attrs["resumed_from_epoch"] >= died_after  # from its epoch checkpoint
    assert finisher.user_attrs["val_error"][:died_after] == lost.user_attrs["val_error"]  # its history whole
    assert len(finisher.user_attrs["val_error"]) == EPOCHS
    surplus = [t for t in trials if t.user_attrs.get("status") == "surplus"]
    assert len(trials) == POINTS + 1 + len(surplus)  # nothing else ran
    detected = lost.datetime_complete.timestamp() - killed_at
    print(f"chaos {url.split(':')[0]}: {workers} workers, 1 kill, {len(trials)} trials ({len(surplus)} surplus), "
          f"0 duplicates, 0 stuck, 0 lost; dead worker detected {detected:+.1f} s after the kill")
    return dict(trials=len(trials), surplus=len(surplus), detected=detected)


@pytest.fixture
def space(tmp_path):
    path = tmp_path / "chaos.yaml"
    path.write_text(GRID)
    return path


@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgresql"])
def test_three_workers_one_killed_on_a_fresh_storage(kind, space, tmp_path, request):
    url = {"sqlite": f"sqlite:///{tmp_path / 'chaos.db'}", "journal": f"journal:///{tmp_path / 'chaos.log'}",
           "postgresql": None}[kind] or _fresh_postgres(request.getfixturevalue("pg_url"))
    _chaos(url, space, tmp_path, seed=zlib.crc32(kind.encode()) % 100)  # the same order and moment every run


def test_three_workers_one_killed_through_the_grpc_proxy(space, tmp_path):
    port = _free_port()
    proxy = subprocess.Popen([sys.executable, "-m", "resnas", "storage-proxy", "--storage",
                              f"sqlite:///{tmp_path / 'behind.db'}", "--port", str(port)], cwd=tmp_path, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert proxy.poll() is None and time.monotonic() < deadline, proxy.stdout.read().decode()[-2000:]
            time.sleep(0.1)
        _chaos(f"grpc://127.0.0.1:{port}", space, tmp_path, seed=3)
    finally:
        proxy.send_signal(signal.SIGINT)
        proxy.wait(30)


def test_a_trial_under_accelerate_launch_killed_and_resumed(space, tmp_path):
    launch = [shutil.which("accelerate", path=os.path.dirname(sys.executable)), "launch", "--multi_gpu",
              "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", "0", "--tee", "3", "--log_dir", str(tmp_path / "ranks"), "-m", "resnas", "search"]
    # one distributed search (2 ranks): the launcher and both ranks are killed, a new launch resumes
    _chaos(f"sqlite:///{tmp_path / 'ddp.db'}", space, tmp_path, command=launch, workers=1,
           env=dict(ENV, ACCELERATE_USE_CPU="1"))


def test_workers_started_together_without_an_index_draw_different_candidates(tmp_path):
    space = tmp_path / "drawn.yaml"
    space.write_text(DRAWN)
    url = f"sqlite:///{tmp_path / 'd.db'}"
    argv = [sys.executable, "-m", "resnas", "search", "--space", str(space), "--storage", url, "--confirm", "0",
            "--trials", "6"]
    procs = [subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(3)]
    assert [p.wait(300) for p in procs] == [0, 0, 0], [p.stderr.read().decode()[-1000:] for p in procs]
    trials = optuna.load_study(study_name="drawn", storage=url).trials
    scales = [t.params["scaling.scale"] for t in trials]
    # the three share the target: 6, and at most one trial more per other process (running when it was reached)
    assert 6 <= len(scales) <= 8 and len(set(scales)) == len(scales)  # the same seed once drew the same ones


