"""Where studies live: opening storages (SQLite in WAL mode, journal files, PostgreSQL / MySQL, gRPC
proxies), listing and loading their studies, and the artifact store that keeps the top-k trials' weights.

    >>> from resnas.storage import mask_url
    >>> mask_url("postgresql://me:secret@db-host/resnas")
    'postgresql://me:***@db-host/resnas'
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import optuna
import sqlalchemy
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock, JournalStorage
from sqlalchemy.engine import make_url

from .errors import first_line, install_hint

__all__ = ["DASHBOARD", "DEFAULT_STORAGE", "StudyError", "artifact_root", "artifact_store", "dashboard_server",
           "disk_note", "existing_storage", "load_study", "local_file", "mask_url", "open_storage", "proxy_server",
           "quiet", "remove_artifacts", "shares_storage", "storage_url"]

DEFAULT_STORAGE = "sqlite:///resnas.db"
DASHBOARD = "optuna-dashboard"  # the web UI that serves a storage and its artifacts (resnas dashboard)
JOURNAL = "journal:///"  # journal:///study.log: Optuna's JournalStorage on a file, like sqlite:/// paths
GRPC = "grpc://"  # grpc://HOST:PORT: a resnas storage-proxy (Optuna's gRPC storage proxy) before a database
PROXY_PORT = 13000  # resnas storage-proxy's default port (Optuna's)


class StudyError(ValueError):
    """A storage or study that cannot be used (one line, exit code 2 in the CLI)."""


def mask_url(url: str) -> str:
    """The storage URL with its password replaced by ***, for every line a user sees.

    The password runs from the first ':' after ``//`` to the last '@' that a host follows, so one with an
    unescaped '@', ':' or '/' is hidden whole; the rest is shown as written. Not SQLAlchemy's
    ``make_url(url).render_as_string(hide_password=True)``: it shows what follows a password's first '@',
    reorders and escapes the query, cuts an SQLite path at '#' and refuses libpq's multi-host URLs.
    """
    scheme, sep, rest = url.partition("://")
    ends = [i for i, c in enumerate(rest) if c == "@" and _host_follows(rest[i + 1:])]
    if not sep or not ends:
        return url
    user, colon, _ = rest[:ends[-1]].partition(":")
    return f"{scheme}://{user}:***{rest[ends[-1]:]}" if colon else url


_HOST_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_%[]:,"


def _host_follows(text: str) -> bool:
    """Whether ``text`` is a host (``db-host:5432``, ``[::1]``, libpq's ``h1,h2``; none before ``/db`` for a
    local socket), then nothing or ``/db``, ``?query``."""
    after = text.lstrip(_HOST_CHARS)
    return after[:1] in ("/", "?", "#") or (after == "" and text != "")


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
    if url.startswith(GRPC):  # no database here: a resnas storage-proxy holds it
        return grpc_storage(url)
    existed = db is not None and db.exists()
    try:
        if url.startswith(JOURNAL):
            return _open_journal(db)
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
        storage = _rdb_storage(url, engine_kwargs)
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
    except StudyError:
        raise
    except ImportError as e:  # Optuna's "Failed to import DB access module": the URL's driver is not installed
        raise StudyError(_missing_driver(url, e)) from None
    except Exception as e:
        if db is not None and not existed and db.is_file() and db.stat().st_size == 0:
            db.unlink()  # not even created (a full disk): leave no empty database behind
        raise StudyError(f"storage: cannot open {mask_url(url)}: {first_line(e)}{disk_note(db, e)}") from None


def _missing_driver(url: str, e: ImportError) -> str:
    """What to install for a database URL whose driver SQLAlchemy could not import (one line)."""
    module = getattr(e.__cause__, "name", None) or getattr(e, "name", None) or "its driver"
    line = f"storage: {mask_url(url)} needs the database driver {module}, which is not installed"
    if not url.startswith("postgresql"):  # MySQL: no extra; its drivers' packages are named apart from modules
        return line
    if module == "psycopg":  # what resnas[postgres] installs, and SQLAlchemy 2.1's default for postgresql://
        return f"{line}: {install_hint('postgres')}"
    rest = mask_url(url).split("://", 1)[-1]
    return f"{line}: {install_hint('postgres')}, and use postgresql+psycopg://{rest}"


# another worker created the same fresh database first: its tables, types and version rows now exist
_CREATION_RACES = ("already exists", "unique constraint", "duplicate key", "duplicate entry")


def _rdb_storage(url: str, engine_kwargs: dict, attempts: int = 8) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage; workers creating one fresh database at once race for its tables, and the
    losers try again after a short random pause (by then the winner's tables are there)."""
    for attempt in range(1, attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except Exception as e:
            if not _lost_creation_race(e):
                raise
        time.sleep(random.uniform(0.05, 0.2) * attempt)
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)  # the last try: its error is reported


def _lost_creation_race(e: BaseException | None) -> bool:
    while e is not None:  # Optuna wraps the driver's error (StorageInternalError from IntegrityError)
        if any(race in str(e).lower() for race in _CREATION_RACES):
            return True
        e = e.__cause__ or e.__context__
    return False


def disk_note(db: Path | None, e: Exception) -> str:
    """For a file storage that hit a full disk (or a file size limit): how much room its folder has."""
    text = f"{e} {e.__cause__}".lower()
    if db is None or not any(s in text for s in ("disk", "no space", "too large", "quota")):
        return ""
    return f" (disk full? {shutil.disk_usage(db.parent).free / 2**20:,.1f} MiB free in {db.parent})"


class _JournalFile(JournalFileBackend):
    """Optuna's journal file, whose appends are undone when they fail (a full disk): a partial line left
    behind would run into the next append, making a line that is not JSON and the journal unreadable."""

    def __init__(self, path: Path):
        self.path, self.lock = path, JournalFileSymlinkLock(str(path))  # Optuna's default lock, shared
        super().__init__(str(path), self.lock)

    def append_logs(self, logs: list[dict]) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
        with self.locked():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                end = os.fstat(fd).st_size
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, end)
                    raise
            finally:
                os.close(fd)

    @contextlib.contextmanager
    def locked(self):
        self.lock.acquire()
        try:
            yield
        finally:
            self.lock.release()


def _open_journal(path: Path) -> JournalStorage:
    """The journal at ``path``. A last line cut short (power loss, a full disk) is moved to PATH.damaged,
    said in one warning line; a line that is not JSON is refused, the file left as it is."""
    backend = _JournalFile(path)
    with backend.locked():  # no worker appends while the end of the file is judged
        _drop_torn_line(path)
    try:
        return JournalStorage(backend)
    except ValueError:  # json.JSONDecodeError, or Optuna's "Invalid log format."
        if (line := _bad_journal_line(path)) is None:
            raise
        raise StudyError(_damaged(path, line)) from None


def _drop_torn_line(path: Path) -> None:
    size, last, torn = _journal_end(path)
    if last and not _is_json(last):  # Optuna skips a bad last line, and fails once a line follows it
        raise StudyError(_damaged(path, _bad_journal_line(path)))
    if torn:
        with open(f"{path}.damaged", "ab") as aside:
            aside.write(torn + b"\n")
            aside.flush()
            os.fsync(aside.fileno())
        os.truncate(path, size - len(torn))
        print(f"warning: storage: {path} ended in a line cut short ({len(torn)} bytes: a write that did not "
              f"finish); moved to {path}.damaged, the journal goes on without it", file=sys.stderr)


def _journal_end(path: Path) -> tuple[int, bytes, bytes]:
    """The journal's size, its last complete line, and what follows that line's newline (a line cut short)."""
    with open(path, "rb") as f:
        size, block = os.fstat(f.fileno()).st_size, 2**16
        while True:  # read back from the end until the last complete line is whole
            f.seek(max(0, size - block))
            end = f.read()
            if end.count(b"\n") >= 2 or block >= size:
                break
            block *= 4
    body, _, torn = end.rpartition(b"\n")
    return size, body.rsplit(b"\n", 1)[-1], torn


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


def _bad_journal_line(path: Path) -> int | None:
    """The number of the first complete line of the journal that is not JSON."""
    with open(path, "rb") as f:
        return next((n for n, line in enumerate(f, 1) if line.endswith(b"\n") and not _is_json(line)), None)


def _damaged(path: Path, line: int | None) -> str:
    return (f"storage: {path} is damaged: line {line} is not a journal entry (not JSON); left as it is: "
            "restore it from a backup")


@contextlib.contextmanager
def quiet():
    """Optuna marks its heartbeat, retry and TPE ``group`` features experimental; resnas relies on them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _sqlite_connect(dbapi, _) -> None:
    dbapi.isolation_level = None  # no implicit BEGIN from the driver (it would start after the read): ours
    # in WAL mode a commit then skips its fsync (about 8 -> 3 ms per trial attribute); the file stays
    # consistent, a power cut may lose the last commits
    dbapi.execute("PRAGMA synchronous=NORMAL")


def local_file(url: str) -> Path | None:
    """The file of an SQLite or journal storage URL (``sqlite:///a.db``, ``journal:////abs/b.log``).

    An SQLite path is read as SQLAlchemy reads it (the file it opens: ``sqlite:///a#b?c/x.db`` is ``a#b``,
    ``%20`` a space); a journal's is taken as written, as JournalFileBackend opens it. None: no file
    (in memory, or a server).
    """
    if url.startswith("sqlite:///"):
        database = make_url(url).database
        return Path(database) if database else None
    if url.startswith(JOURNAL):
        return Path(url[len(JOURNAL):])
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


def remove_artifacts(store, artifact_ids) -> None:
    """Delete files from the artifact store (those already gone are passed over)."""
    for artifact_id in artifact_ids:
        with contextlib.suppress(ArtifactNotFound):
            store.remove(artifact_id)


def existing_storage(storage: str | None) -> str:
    """The storage URL to read; an SQLite or journal file must already exist (reading never creates one)."""
    url = storage_url(storage)
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


def dashboard_server(url: str, host: str, port: int):
    """``serve()`` running optuna-dashboard on the storage ``url`` and its artifacts at ``host:port``.

    Checked before it is returned: the dashboard is installed and nothing listens on the port yet.
    """
    try:
        from optuna_dashboard import run_server  # deferred: optional, and a web server's imports are slow
    except ImportError:
        raise StudyError(f"dashboard: {DASHBOARD} is not installed; {install_hint('dashboard')}") from None
    store = artifact_store(url)
    served = open_storage(url) if url.startswith((JOURNAL, GRPC)) else url  # it opens RDB URLs itself; a journal opened
    _check_port_free("dashboard", host, port)

    def serve() -> None:
        try:
            run_server(served, host=host, port=port, artifact_store=store)
        except OSError as e:  # taken after the check
            raise StudyError(f"dashboard: cannot listen on {host}:{port}: {e.strerror or first_line(e)}") from None

    serve.url = url
    return serve


def grpc_address(url: str) -> tuple[str, int]:
    """``grpc://HOST:PORT`` as (host, port); the port defaults to resnas storage-proxy's, 13000."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or PROXY_PORT
    except ValueError:  # a port that is no number, or out of range
        host = None
    if not host or parts.path not in ("", "/"):
        raise StudyError(f"storage: {mask_url(url)} is not grpc://HOST:PORT")
    return host, port


def _require_grpc() -> None:
    """grpcio and protobuf (optional), at the versions Optuna's generated gRPC code checks on import."""
    try:
        import grpc  # noqa: F401
        from optuna.storages._grpc.auto_generated import api_pb2_grpc  # noqa: F401  (it checks the versions)
    except Exception as e:  # missing, too old, or an Optuna before 4.2 (no proxy)
        raise StudyError(f"storage: the gRPC storage proxy needs grpcio ({first_line(e)}); "
                         f"{install_hint('grpc')}") from None


def grpc_storage(url: str, timeout: float = 5) -> optuna.storages.BaseStorage:
    """The storage a ``resnas storage-proxy`` serves at ``grpc://HOST:PORT``, once it answers (within ``timeout`` s).

    Workers share the proxy's database connections and its cache of finished trials. Artifacts (kept
    weights, epoch checkpoints) do not travel through it: they stay in ./resnas-artifacts of each worker's
    working directory (:func:`artifact_root`), a shared folder when workers are on several machines.
    """
    host, port = grpc_address(url)
    _require_grpc()
    with quiet():
        storage = optuna.storages.GrpcStorageProxy(host=host, port=port)
    try:  # else an absent proxy shows as a gRPC error, many lines long, at the first call
        storage.wait_server_ready(timeout=timeout)
    except ConnectionError:
        storage.close()
        raise StudyError(f"storage: no storage proxy answers at {mask_url(url)} within {timeout:g} s; "
                         "start one with resnas storage-proxy") from None
    return storage


def proxy_server(url: str | None, host: str, port: int):
    """``serve()`` runs Optuna's gRPC storage proxy for the storage ``url`` on ``host:port`` until Ctrl-C.

    Checked before it is returned: grpcio is there, the storage opens (as :func:`open_storage`: SQLite in
    WAL mode, PostgreSQL's timeouts) and nothing listens on the port yet.
    """
    url = storage_url(url)
    if not url.startswith(("sqlite", "postgresql", "mysql")):  # Optuna's proxy serves no journal (optuna#6084)
        raise StudyError(f"storage-proxy: serves sqlite:///, postgresql:// or mysql:// storages, not {mask_url(url)}")
    _require_grpc()
    storage = optuna.storages.get_storage(open_storage(url))  # with Optuna's cache of finished trials
    _check_port_free("storage-proxy", host, port)

    def serve() -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the command prints where it listens
        try:
            with quiet():
                optuna.storages.run_grpc_proxy_server(storage, host=host, port=port)
        except RuntimeError as e:  # gRPC could not bind after all
            raise StudyError(f"storage-proxy: cannot listen on {host}:{port}: {first_line(e)}") from None

    serve.url = url
    return serve


def _check_port_free(server: str, host: str, port: int) -> None:
    """Refuse a port a server listens on: gRPC binds with SO_REUSEPORT and would silently share it."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no obstacle
            s.bind(address)
    except OSError as e:
        raise StudyError(f"{server}: cannot listen on {host}:{port}: {e.strerror or first_line(e)}") from None


def storage_url(storage: str | None) -> str:
    """The storage a command or search uses: ``storage``, else ``$RESNAS_STORAGE``, else ``DEFAULT_STORAGE``
    (the one place that reads the variable)."""
    return storage or os.environ.get("RESNAS_STORAGE") or DEFAULT_STORAGE


def shares_storage(study: optuna.Study) -> bool:
    """Whether the storage a study lives in holds other studies too (asked of the storage it was opened
    with, not reopened)."""
    return len(optuna.get_all_study_names(study._storage)) > 1
