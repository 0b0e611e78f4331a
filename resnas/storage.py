"""Where studies live: opening storages (SQLite in WAL mode, journal files, PostgreSQL / MySQL, gRPC
proxies), listing and loading their studies, and the artifact store that keeps the top-k trials' weights.

    >>> from resnas.storage import mask_url
    >>> mask_url("postgresql://me:secret@db-host/resnas")
    'postgresql://me:***@db-host/resnas'
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.storages.journal import JournalFileBackend, JournalStorage
from sqlalchemy.engine import make_url

from .record import ARTIFACT_FILES, TrialRecord

__all__ = ["DASHBOARD", "DEFAULT_STORAGE", "JOURNAL", "StudyError", "artifact_root", "artifact_store",
           "dashboard_server", "existing_storage", "load_study", "local_file", "mask_url", "open_storage", "quiet",
           "remove_artifacts", "weights_kept"]

DEFAULT_STORAGE = "sqlite:///resnas.db"
DASHBOARD = "optuna-dashboard"  # the web UI that serves a storage and its artifacts (resnas dashboard)
JOURNAL = "journal:///"  # journal:///study.log: Optuna's JournalStorage on a file, like sqlite:/// paths


class StudyError(ValueError):
    """A storage or study that cannot be used (one line, exit code 2 in the CLI)."""


def mask_url(url: str) -> str:
    """The storage URL with its password replaced by ***, for every line a user sees."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage that several workers (and a dashboard) can share.

    ``journal:///study.log`` is Optuna's JournalStorage on a file (file locks, no server). SQLite runs in
    WAL mode with a 60 s busy timeout, so readers never block the writer and writers queue instead of
    failing with "database is locked". A worker killed mid-trial is found by resnas.workers on every
    storage; its trial is failed and retried (it resumes from the candidate's epoch checkpoint).
    """
    db = local_file(url)
    if db is not None and (not db.parent.exists() or not os.access(db.parent, os.W_OK)):
        raise StudyError(f"storage: cannot write {db} (folder missing or not writable)")
    try:
        if url.startswith(JOURNAL):
            return JournalStorage(JournalFileBackend(str(db)))
        if not url.startswith(("sqlite", "postgresql", "mysql")):
            return optuna.storages.get_storage(url)
        if url.startswith("sqlite"):
            engine_kwargs = {"connect_args": {"timeout": 60}}
        else:  # fail within 10 s on an unreachable server
            engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
        if url.startswith("postgresql"):  # as SQLite below: a commit does not wait for the disk (~10 -> 3 ms);
            # a server crash may lose the last commits (under a second), never consistency
            engine_kwargs["connect_args"]["options"] = "-c synchronous_commit=off"
        # no Optuna heartbeat: resnas.workers' covers every storage (and knows a dead process at once)
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        if url.startswith("sqlite"):
            with storage.engine.connect() as connection:  # WAL is a property of the file: set once, kept
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")
            sqlalchemy.event.listen(storage.engine, "connect", _sqlite_connect)
            # Optuna pops an enqueued trial by reading it WAITING, then writing RUNNING; SQLite has no
            # SELECT ... FOR UPDATE, so the write lock is taken when the transaction begins, or two workers
            # pop (and train) the same trial
            sqlalchemy.event.listen(storage.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
            storage.engine.dispose()  # pooled connections opened before the listeners
        return storage
    except Exception as e:
        raise StudyError(f"storage: cannot open {mask_url(url)}: {first_line(e)}") from None


@contextlib.contextmanager
def quiet():
    """Optuna marks its heartbeat, retry and TPE ``group`` features experimental; resnas relies on them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def _sqlite_connect(dbapi, _) -> None:
    dbapi.isolation_level = None  # no implicit BEGIN from the driver (it would start after the read): ours
    # in WAL mode a commit then skips its fsync (about 8 -> 3 ms per trial attribute); the file stays
    # consistent, a power cut may lose the last commits
    dbapi.execute("PRAGMA synchronous=NORMAL")


def local_file(url: str) -> Path | None:
    """The file of an SQLite or journal storage URL (``sqlite:///a.db``, ``journal:////abs/b.log``)."""
    for prefix in ("sqlite:///", JOURNAL):
        if url.startswith(prefix):
            return Path(url[len(prefix):])
    return None


def artifact_root(url: str) -> Path:
    """Where weights and checkpoints live: ``resnas-artifacts/`` beside a storage file, else in the working dir."""
    db = local_file(url)
    return (db.parent if db is not None else Path(".")) / "resnas-artifacts"


def artifact_store(url: str):
    """A file-system artifact store beside an SQLite database or journal file (or in ./resnas-artifacts)."""
    root = artifact_root(url)
    root.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(root))


def weights_kept(url: str, record: TrialRecord) -> bool:
    """Whether a trial's weights are in the artifact store: recorded, and not removed since (top-k)."""
    return record.kept_weights and all((artifact_root(url) / record.artifacts[n]).is_file() for n in ARTIFACT_FILES)


def remove_artifacts(store, record: TrialRecord) -> None:
    """Delete a trial's kept files from the artifact store (those already gone are passed over)."""
    for artifact_id in record.artifacts.values():
        with contextlib.suppress(ArtifactNotFound):
            store.remove(artifact_id)


def existing_storage(storage: str | None) -> str:
    """The storage URL to read; an SQLite or journal file must already exist (reading never creates one)."""
    url = storage or DEFAULT_STORAGE
    db = local_file(url)
    if db is not None and not db.exists():
        raise StudyError(f"storage: {db} does not exist; run resnas search first or pass --storage")
    return url


def load_study(storage: str | None, study_name: str | None) -> tuple[optuna.Study, str]:
    """A study of an existing storage (the only one when ``study_name`` is None) and the storage's URL."""
    url = existing_storage(storage)
    store = open_storage(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
    if study_name is None:
        if len(names) != 1:
            raise StudyError(f"study: {len(names)} studies in {mask_url(url)}; pick one with --study: "
                             f"{', '.join(names)}")
        study_name = names[0]
    if study_name not in names:
        raise StudyError(f"study: {study_name!r} not in {mask_url(url)}; allowed: {', '.join(names) or '(none)'}")
    return optuna.load_study(study_name=study_name, storage=store), url


def dashboard_server(url: str):
    """``serve(host=, port=)`` running optuna-dashboard on the storage ``url`` and its artifacts."""
    try:
        from optuna_dashboard import run_server  # deferred: optional, and a web server's imports are slow
    except ImportError:
        raise StudyError(f"dashboard: {DASHBOARD} is not installed; pip install 'resnas[dashboard]'") from None
    store = artifact_store(url)
    served = open_storage(url) if url.startswith(JOURNAL) else url  # it opens RDB URLs itself; a journal opened
    serve = functools.partial(run_server, served, artifact_store=store)
    serve.url = url
    return serve
