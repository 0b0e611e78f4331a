"""The trial record: what every resnas trial keeps as Optuna user attributes, and how it is read back.

One trial's record is a :class:`TrialRecord`; its field names are the stored user-attribute keys
(kept weights are Optuna artifacts of the trial: resnas.kept). A study keeps a :class:`StudyRecord`.
Every writer (the objective) and reader (CLI, export, reproduce, benchmarks) goes through them, so
the keys are written in one place. Stored names and values never change: studies written by any
earlier resnas open, resume and export. Trials that predate a key read it as its default.

    >>> record = TrialRecord(spec="depth=8", status=Status.OK, epochs=3)
    >>> record.to_user_attrs()["status"]
    'ok'
    >>> TrialRecord.from_user_attrs({"spec": "depth=8", "epochs": 3}).status is None
    True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import first_line
from .files import CONFIG, WEIGHTS
from .space import SpaceError, load_space
from .status import Status

__all__ = ["ARTIFACT_FILES", "INTERRUPTED", "StudyRecord", "TrialRecord", "drawn", "duplicate_reason",
           "epochs_spent", "error_reason", "lost_reason", "probe_deviation_reason", "probe_reason", "pruned_reason",
           "status_of", "study_space", "trained"]


ARTIFACT_FILES = (WEIGHTS, CONFIG)  # the files a top-k trial keeps: a timm local-dir folder
INTERRUPTED = "interrupted"  # the reason of a trial Ctrl-C stopped (status failed); the next run retries it


def probe_reason(gain: float, limit: float) -> str:
    return f"probe: |gain| {abs(gain):.2f} > {limit:g}"


def probe_deviation_reason(vs_reference: float, limit: float) -> str:
    return f"probe: gain {vs_reference:+.2f} vs the reference net, beyond ±{limit:g}"


def lost_reason(worker: dict[str, Any] | None, why: str) -> str:
    who = f"pid {worker.get('pid')} on {worker.get('host')}" if worker else "a worker"
    return f"worker died ({who}: {why}); retried"


def pruned_reason(pruner: str, epoch: int) -> str:
    return f"pruned by {pruner} at epoch {epoch}"


def duplicate_reason(twin: int) -> str:
    return f"same design as trial {twin}: its result, not retrained"


def error_reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {first_line(e) if str(e).strip() else ''}"[:300]


def _status(value: Any) -> Status | str | None:
    return Status(value) if value in Status._value2member_map_ else value


@dataclass
class TrialRecord:
    """A trial's user attributes; every field is optional, as in trials that predate it."""

    spec: str | None = None  # the ArchSpec string of the candidate
    timm: str | None = None  # the timm.create_model call that rebuilds it
    device: str | None = None
    status: Status | str | None = None
    reason: str | None = None
    seed: int | None = None  # the training seed (design_seed), so that export retrains this very run
    params: int | None = None
    macs: int | None = None
    epochs: int | None = None  # completed epochs (0 for a duplicate)
    seconds: float | None = None
    val_error: list[float] = field(default_factory=list)  # per epoch
    train_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    probe_gain: float | None = None  # resnas.probe at initialization
    probe_slope: float | None = None
    probe_shortcut_term: float | None = None
    probe_grad_norms: list[float] | None = None
    probe_vs_reference: float | None = None  # gain minus the reference net's (with --probe-max-deviation)
    checkpoint_of: int | None = None  # the first trial of a retry chain: whose epoch checkpoints it resumes
    retry_of: int | None = None  # the Ctrl-C-interrupted trial this one retries
    resumed_from_epoch: int | None = None
    duplicate_of: int | None = None  # the completed twin whose result this trial took
    repeat: int | None = None  # a confirmation run of the design: 1, 2, ... (None: the search's own, repeat 0)
    confirms: int | None = None  # the trial whose design this confirmation repeats
    job: str | None = None  # grid point, confirmation run, or trial:N (a drawn trial and its retries): run once
    worker: dict[str, Any] | None = None  # the process that runs it: host, machine, pid, start (resnas.workers)
    heartbeat: float | None = None  # unix time of its worker's last heartbeat

    def to_user_attrs(self, *names: str) -> dict[str, Any]:
        """The stored attributes: the fields ``names`` (default: all that are set), by their keys."""
        attrs = {}
        for name in names or [f.name for f in dataclasses.fields(self)]:
            value = getattr(self, name)
            if value is not None and (names or value != []):
                attrs[name] = value.value if isinstance(value, Status) else value
        return attrs

    def save(self, trial, *names: str) -> None:
        """Write the fields ``names`` (default: all that are set) to a live trial's user attributes."""
        for key, value in self.to_user_attrs(*names).items():
            trial.set_user_attr(key, value)

    @classmethod
    def from_user_attrs(cls, attrs: dict[str, Any]) -> TrialRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        record = cls(**{k: v for k, v in attrs.items() if k in known})
        record.status = _status(record.status)
        return record

    @classmethod
    def from_trial(cls, trial) -> TrialRecord:
        """The record of an Optuna trial (live, frozen or distributed); missing keys read as defaults."""
        return cls.from_user_attrs(trial.user_attrs)


def epochs_spent(trial) -> int:
    """The candidate-epochs a finished trial trained itself (0 for a duplicate or a probe-pruned candidate;
    a retry's history starts with the epochs it resumed, which the trial it retries spent)."""
    return len(trial.user_attrs.get("val_error") or ()) - (trial.user_attrs.get("resumed_from_epoch") or 0)


def trained(trial) -> bool:
    """False for a trial that took the result of a completed twin instead of training its design."""
    return "duplicate_of" not in trial.user_attrs


def drawn(trial) -> bool:
    """A trial the search drew: not a run of the race or a fixed repeat of a design (those carry ``repeat``)."""
    return "repeat" not in trial.user_attrs and "confirms" not in trial.user_attrs


def status_of(trial) -> Status | str:
    """A finished or waiting trial's status: its record's, ``lost`` for a worker that died mid-trial,
    else the Optuna state in lower case (trials resnas did not write)."""
    status = _status(trial.user_attrs.get("status"))
    if trial.state.name == "FAIL" and status in (None, Status.RUNNING):
        return Status.LOST  # failed by the heartbeat check, then retried
    return status or trial.state.name.lower()


@dataclass
class StudyRecord:
    """A study's user attributes: what it was made from, so that a resumed run can check it."""

    space: str | None = None
    space_file: str | None = None
    dataset: str | None = None
    objectives: list[str] | None = None
    max_epochs: int | None = None
    recipe: dict[str, Any] = field(default_factory=dict)  # the space's overrides of the data set's recipe
    seed: int | None = None  # the search's seed (absent in studies that predate it)

    def to_user_attrs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_study(cls, study) -> StudyRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in study.user_attrs.items() if k in known})


def study_space(study):
    """The space a study was made from (its file, else the built-in of its name), or None when gone."""
    made = StudyRecord.from_study(study)
    for source in filter(None, (made.space_file, made.space)):
        try:
            return load_space(source)
        except SpaceError:  # moved or broken since: the next source, else the specs in full
            continue
    return None
