"""Many workers on one study, on every storage resnas opens (SQLite, journal, PostgreSQL, gRPC proxy).

- **Who runs a trial.** Every trial records its worker (host, machine, pid, process start) and a
  heartbeat (a user attribute written every ``--heartbeat`` seconds by a thread, for ``study.optimize``
  and ``ask``/``tell`` alike). Optuna's own heartbeat covers RDB storages only; this one covers all.
- **Dead workers.** :func:`reap` fails the RUNNING trials whose worker is gone and enqueues each once
  more (it resumes from its epoch checkpoint). On the worker's own machine a dead process is known at
  once (its pid is gone, or belongs to another process); elsewhere, by a heartbeat older than twice
  the interval. Every heartbeat thread reaps the study, so a dead worker's trial is retried while the
  others run, not only when a new search starts.
- **Jobs enqueued twice.** Workers that start together may enqueue the same grid point, retry or
  confirmation run twice (no storage offers a compare-and-set). Each enqueued trial names its ``job``;
  the lowest-numbered trial of a job that has not failed runs it, a later copy ends at once as
  ``surplus`` (:func:`surplus_reason`), so every job is trained exactly once.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from .record import INTERRUPTED, TrialRecord, lost_reason
from .status import Status

__all__ = ["Heartbeat", "enqueue_retry", "grid_job", "identity", "is_alive", "reap", "surplus_reason"]


def _proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), None when it does not run (or is a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state is field 3, starttime field 22
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _machine() -> str | None:
    """This kernel and pid namespace: two processes that share it can see each other's pids (Linux)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def identity() -> dict[str, Any]:
    """This process as a trial records it."""
    return dict(host=socket.gethostname(), machine=_machine(), pid=os.getpid(), start=_proc_start(os.getpid()))


def is_alive(worker: dict[str, Any] | None) -> bool | None:
    """Whether a recorded worker process still runs; None when that cannot be known here (another machine)."""
    if not worker or worker.get("machine") is None or worker.get("machine") != _machine():
        return None
    return _proc_start(int(worker["pid"])) == worker.get("start")


def _stale(trial: optuna.trial.FrozenTrial, grace: float, now: float) -> bool:
    """No heartbeat (nor start, for a trial killed before its first beat) within ``grace`` seconds."""
    beat = trial.user_attrs.get("heartbeat")
    if beat is None and trial.datetime_start is not None:
        beat = trial.datetime_start.timestamp()
    return beat is not None and now - beat > grace


def reap(study: optuna.Study, grace: float) -> list[int]:
    """Fail the RUNNING trials whose worker died and enqueue each again; the numbers reaped here.

    Two processes may reap at once: the FAIL is written once (the storage refuses to finish a
    finished trial), and only the process that wrote it enqueues the retry.
    """
    reaped, now = [], time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        alive = is_alive(worker)
        if alive is False or (alive is None and _stale(t, grace, now)):
            why = "its process is gone" if alive is False else f"no heartbeat for {grace:g} s"
            if _fail(study, t, lost_reason(worker, why)):
                enqueue_retry(study, t)
                reaped.append(t.number)
    return reaped


def _fail(study: optuna.Study, trial: optuna.trial.FrozenTrial, reason: str) -> bool:
    """Mark another process's trial lost, then FAIL; False when it finished meanwhile (or another reaper won)."""
    storage = study._storage  # a trial that is not this process's own has no public writer
    try:
        for key, value in TrialRecord(status=Status.LOST, reason=reason).to_user_attrs("status", "reason").items():
            storage.set_trial_user_attr(trial._trial_id, key, value)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        return True
    except UpdateFinishedTrialError:
        return False


def enqueue_retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
    """Enqueue a lost or interrupted trial again, with what its run needs: its job, the first trial of its
    retry chain (whose epoch checkpoints it resumes), its confirmation repeat. A trial that died before
    drawing its candidate had nothing to lose: not retried."""
    if not trial.params and "fixed_params" not in trial.system_attrs:
        return False
    record = TrialRecord.from_trial(trial)
    retry = TrialRecord(retry_of=trial.number, job=record.job or f"trial:{trial.number}",
                        checkpoint_of=trial.number if record.checkpoint_of is None else record.checkpoint_of,
                        repeat=record.repeat, confirms=record.confirms)
    study.enqueue_trial(trial.params or trial.system_attrs["fixed_params"], skip_if_exists=False,
                        user_attrs=retry.to_user_attrs("retry_of", "job", "checkpoint_of", "repeat", "confirms"))
    return True


def interrupted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials a Ctrl-C stopped that no trial retries yet."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    return [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("reason") == INTERRUPTED
            and t.number not in retried]


def grid_job(params: dict[str, Any]) -> str:
    """The job of a grid point: the same point gives the same string in every process."""
    return "grid:" + json.dumps(params, sort_keys=True)


def surplus_reason(study: optuna.Study, trial: optuna.Trial) -> str | None:
    """Why this trial must not train (a later copy of a job another trial holds), else None."""
    job = trial.user_attrs.get("job")
    if job is None:
        return None
    for t in study.get_trials(deepcopy=False):
        if t.number < trial.number and t.state != TrialState.FAIL and t.user_attrs.get("job") == job:
            return f"same job as trial {t.number} ({job[:60]}), enqueued twice by workers started together"
    return None


class Heartbeat:
    """A thread that writes the trial's heartbeat every ``interval`` seconds and reaps the study's dead
    workers every ``min(interval, 5)`` seconds, while the trial runs (``with Heartbeat(trial, 60): ...``)."""

    def __init__(self, trial: optuna.Trial, interval: float):
        self.trial, self.interval = trial, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"resnas-heartbeat-{trial.number}", daemon=True)

    def __enter__(self) -> Heartbeat:
        TrialRecord(worker=identity(), heartbeat=round(time.time(), 3)).save(self.trial, "worker", "heartbeat")
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def _run(self) -> None:
        tick, last = min(self.interval, 5.0), time.monotonic()
        while not self.stop.wait(tick):
            try:
                if time.monotonic() - last >= self.interval:
                    self.trial.set_user_attr("heartbeat", round(time.time(), 3))
                    last = time.monotonic()
                reap(self.trial.study, 2 * self.interval)
            except UpdateFinishedTrialError:  # the trial finished (or was reaped) between two ticks
                return
            except Exception:  # a storage hiccup: the next tick tries again; training is not disturbed
                continue
