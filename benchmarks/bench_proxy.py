"""The load a ``resnas storage-proxy`` (Optuna's gRPC storage proxy) holds, on loopback.

N worker processes (1, 2, 4, 8) run trials with a trivial objective as fast as they can for a few
seconds: ask, suggest one float, 10 user attributes, 5 intermediate values, tell -- the storage calls
of a trial without its training. Setups: SQLite directly, SQLite through the proxy, and PostgreSQL
directly and through the proxy when there is one (``--postgres URL`` or ``RESNAS_TEST_POSTGRES``).
Every storage is opened as resnas opens it (``resnas.storage.open_storage``); the proxies are real
``resnas storage-proxy`` processes. Setups alternate within each worker count (the same machine state),
each cell on a fresh study. Printed per cell: trials per minute (the sum of the workers' rates), per
worker, and the database connections while it ran (the most seen in samples every 0.2 s: PostgreSQL's
``pg_stat_activity`` for the database, SQLite's open handles of the .db file in every process).

    python benchmarks/bench_proxy.py                                  # SQLite (+ PostgreSQL from env)
    eval "$(.ci/postgres)" && python benchmarks/bench_proxy.py
    python benchmarks/bench_proxy.py --workers 1,4 --seconds 10 --postgres postgresql://postgres@127.0.0.1/resnas
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import optuna
import sqlalchemy

try:
    from resnas.storage import open_storage
except ImportError:  # a checkout that is not pip-installed: use it from its root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from resnas.storage import open_storage


def one_trial(study: optuna.Study) -> None:
    trial = study.ask()
    x = trial.suggest_float("x", 0.0, 1.0)
    for i in range(10):
        trial.set_user_attr(f"attr{i}", i * x)
    for step in range(5):
        trial.report(x / (step + 1), step)
    study.tell(trial, x)


def worker(url: str, study_name: str, ready, stop, results, index: int) -> None:
    """Trials until ``stop``, after a warm-up trial and the start line; puts (trials, seconds)."""
    study = optuna.load_study(study_name=study_name, storage=open_storage(url),
                              sampler=optuna.samplers.RandomSampler(seed=index))
    one_trial(study)  # first calls, caches
    ready.wait()
    start, n = time.perf_counter(), 0
    while not stop.is_set():
        one_trial(study)
        n += 1
    results.put((n, time.perf_counter() - start))


PROXY = "resnas-storage-proxy"  # the proxy's PostgreSQL application_name (libpq reads PGAPPNAME)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def proxy(url: str):
    """A ``resnas storage-proxy`` process for ``url`` on a free loopback port; yields its grpc:// URL."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "resnas", "storage-proxy", "--storage", url, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PGAPPNAME=PROXY),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a shell
    try:
        line = proc.stdout.readline()
        if not line.startswith("storage-proxy on"):
            raise SystemExit(f"storage-proxy did not start: {line}{proc.stderr.read()}")
        yield f"grpc://127.0.0.1:{port}"
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        proc.kill()
        proc.wait(30)


class Connections:
    """The most database connections seen while it runs (samples every 0.2 s in a thread)."""

    def __init__(self, url: str, proxied: bool):
        self.url, self.proxied, self.most, self._stop = url, proxied, 0, threading.Event()
        if url.startswith("postgresql"):
            self.engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
            self.database = sqlalchemy.engine.make_url(url).database

    def count(self) -> int:
        if self.url.startswith("sqlite:///"):  # handles of the file itself (not -wal, -shm), in every process
            db, n = os.path.realpath(self.url[len("sqlite:///"):]), 0
            for fd_dir in Path("/proc").glob("[0-9]*/fd"):
                try:
                    n += sum(os.readlink(fd) == db for fd in fd_dir.iterdir())
                except OSError:  # a process that ended, or is not ours to read
                    pass
            return n
        # not this one; nor the proxy's, idle in a direct setup's cell
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"
        if not self.proxied:
            query += " AND application_name <> :proxy"
        with self.engine.connect() as c:
            return c.execute(sqlalchemy.text(query), {"d": self.database, "proxy": PROXY}).scalar()

    def __enter__(self):
        def sample():
            while not self._stop.wait(0.2):
                self.most = max(self.most, self.count())
        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def cell(served: str, backing: str, workers: int, seconds: float) -> tuple[float, int]:
    """Trials per minute of ``workers`` processes on a fresh study of ``served``, and the connections to ``backing``."""
    name = f"bench-proxy-{uuid.uuid4().hex[:8]}"
    storage = open_storage(backing)
    optuna.create_study(study_name=name, storage=storage)
    if hasattr(storage, "engine"):
        storage.engine.dispose()  # no pooled connection crosses the fork
    ctx = mp.get_context("fork")  # the workers skip the imports (seconds each on a busy machine)
    ready, stop, results = ctx.Barrier(workers + 1), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(served, name, ready, stop, results, i)) for i in range(workers)]
    for p in procs:
        p.start()
    ready.wait(timeout=300)  # every worker has its storage and a first trial
    with Connections(backing, served != backing) as connections:
        time.sleep(seconds)
        stop.set()
        rates = [n / s for n, s in (results.get(timeout=120) for _ in procs)]
    for p in procs:
        p.join(60)
    return 60 * sum(rates), connections.most


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4,8", help="Worker process counts [default: 1,2,4,8].")
    parser.add_argument("--seconds", type=float, default=3.0, help="Seconds of trials per cell [default: 3].")
    parser.add_argument("--postgres", default=os.environ.get("RESNAS_TEST_POSTGRES"),
                        help="A PostgreSQL URL [default: $RESNAS_TEST_POSTGRES]; without one, SQLite only.")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    counts = [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        sqlite, proxied_sqlite = f"sqlite:///{tmp}/direct.db", f"sqlite:///{tmp}/proxied.db"  # a file each: its handles
        started = time.perf_counter()
        with proxy(proxied_sqlite) as sqlite_proxy, (proxy(args.postgres) if args.postgres else _none()) as pg_proxy:
            setups = [("sqlite", sqlite, sqlite), ("sqlite via proxy", sqlite_proxy, proxied_sqlite)]
            if args.postgres:
                pg = args.postgres
                setups += [("postgresql", pg, pg), ("postgresql via proxy", pg_proxy, pg)]
            rows = []
            for n in counts:
                for label, served, backing in setups:
                    per_minute, connections = cell(served, backing, n, args.seconds)
                    rows.append((label, n, per_minute, connections))
                    print(f"  {label}, {n} workers: {per_minute:.0f} trials/min", file=sys.stderr, flush=True)
    print(f"Storage proxy load on loopback: {args.seconds:g} s of trials per cell, each trial ask + suggest + "
          f"10 user attrs + 5 reports + tell")
    print(f"machine: {os.cpu_count()} CPU cores, {platform.system()} {platform.machine()}, Python "
          f"{platform.python_version()}, optuna {optuna.__version__}, grpcio {_version('grpcio')}, "
          f"SQLAlchemy {sqlalchemy.__version__}; total {time.perf_counter() - started:.0f} s")
    if not args.postgres:
        print("postgresql: not run (pass --postgres URL or set RESNAS_TEST_POSTGRES)")
    print(f"\n{'setup':<22}{'workers':>8}{'trials/min':>12}{'per worker':>12}{'db connections':>16}")
    for label, n, per_minute, connections in sorted(rows, key=lambda r: ([s[0] for s in setups].index(r[0]), r[1])):
        print(f"{label:<22}{n:>8}{per_minute:>12.0f}{per_minute / n:>12.0f}{connections:>16}")


@contextmanager
def _none():
    yield None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
