"""`resnas storage-proxy` (Optuna's gRPC storage proxy) and `--storage grpc://HOST:PORT`, on loopback."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from resnas.cli import main
from resnas.space import parse_space
from resnas.storage import StudyError, mask_url, open_storage, proxy_server

ROOT = Path(__file__).resolve().parents[1]

GRID = """
name: px
dataset: digits
sampler: grid
pruner: none
epochs: {min: 1, max: 1}
recipe: {batch_size: 128, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  act: [original, bn_after_add, preact]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200", PATH=f"{Path(sys.executable).parent}{os.pathsep}"
               f"{os.environ.get('PATH', '')}", **extra)  # resnas of this environment, as an activated venv has
    env.pop("RESNAS_STORAGE", None)
    return env


@contextmanager
def _proxy(url: str, script: bool = False):
    """A `resnas storage-proxy` process for ``url`` on a free loopback port (started by proxy_search.sh with
    ``script``): yields its grpc:// URL and a dict that has its exit code and output once it stopped."""
    port = _free_port()
    argv = ["bash", ROOT / "examples/cluster/proxy_search.sh", "proxy"] if script else \
        [sys.executable, "-m", "resnas", "storage-proxy", "--storage", url, "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(RESNAS_DB=url, PORT=str(port)),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # not ignored, as in a shell
    stopped = {}
    try:
        line = proc.stdout.readline()
        assert line == f"storage-proxy on grpc://127.0.0.1:{port} for {mask_url(url)} (Ctrl-C stops it)\n", \
            line + proc.stderr.read()
        yield f"grpc://127.0.0.1:{port}", stopped
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, stopped["err"] = proc.communicate(timeout=60)
        stopped["rc"], stopped["out"] = proc.returncode, out
    finally:
        proc.kill()
        proc.wait(30)


def _backing(name: str, tmp_path, request) -> str:
    return f"sqlite:///{tmp_path / 'px.db'}" if name == "sqlite" else request.getfixturevalue("pg_url")


@pytest.mark.slow
@pytest.mark.parametrize("backing", ["sqlite", "postgresql"])
def test_two_workers_search_through_the_proxy_into_its_database(backing, tmp_path, capsys, monkeypatch, request):
    monkeypatch.chdir(tmp_path)  # artifacts of a grpc:// storage go to ./resnas-artifacts
    url = _backing(backing, tmp_path, request)
    space = tmp_path / "px.yaml"
    space.write_text(GRID)
    study = f"px-{uuid.uuid4().hex[:8]}"
    with _proxy(url) as (grpc_url, stopped):
        assert main(["search", "--space", str(space), "--storage", grpc_url, "--study", study, "--epochs", "1",
                     "--confirm", "0", "--workers", "2"]) == 0
        capsys.readouterr()
        assert main(["best", "--storage", grpc_url, "--study", study, "--json"]) == 0
        best = json.loads(capsys.readouterr().out)["trials"]
    trials = optuna.load_study(study_name=study, storage=url).trials  # read the database itself
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(str(t.params) for t in done) == sorted(map(str, parse_space(GRID).grid_points()))  # each once
    # the rest: second copies of a grid point both workers enqueued, ended untrained (resnas.workers)
    assert all(t.user_attrs.get("status") == "surplus" for t in trials if t not in done)
    assert best[0]["trial"] == min(done, key=lambda t: (t.value, t.number)).number
    assert (tmp_path / "resnas-artifacts").is_dir()  # weights kept in the working dir, not through the proxy
    assert stopped["rc"] in (0, 130) and "Traceback" not in stopped["err"], stopped["err"]
    assert "storage-proxy stopped" in stopped["out"]


def test_an_unreachable_proxy_is_one_line_exit_2_within_seconds(capsys):
    start = time.monotonic()
    assert main(["best", "--storage", f"grpc://127.0.0.1:{_free_port()}"]) == 2
    assert time.monotonic() - start < 15  # 5 s of waiting for the proxy, on a busy machine
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no storage proxy answers at grpc://127.0.0.1:" in err


@pytest.mark.parametrize("url, message", [
    ("grpc://127.0.0.1:http", "is not grpc://HOST:PORT"),
    ("grpc:///a/b", "is not grpc://HOST:PORT"),
])
def test_malformed_grpc_urls_are_refused(url, message):
    with pytest.raises(StudyError, match=message):
        open_storage(url)


def test_missing_grpcio_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "grpc", None)  # import grpc fails
    with pytest.raises(StudyError, match=r'needs grpcio .*pip install -e "\.\[grpc\]" in the resnas checkout'):
        open_storage("grpc://127.0.0.1:13000")


def test_proxy_refuses_a_journal_and_a_port_in_use(tmp_path, capsys):
    assert main(["storage-proxy", "--storage", f"journal:///{tmp_path / 'j.log'}"]) == 2
    assert "serves sqlite:///, postgresql:// or mysql:// storages" in capsys.readouterr().err
    with socket.socket() as held:  # another server on the port: gRPC (SO_REUSEPORT) would share it silently
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(StudyError, match="cannot listen on 127.0.0.1"):
            proxy_server(f"sqlite:///{tmp_path / 'p.db'}", "127.0.0.1", port)
    assert main(["storage-proxy", "--help"]) == 0
    assert "Example" in capsys.readouterr().out


@pytest.mark.slow
def test_proxy_search_sh_serves_and_searches(tmp_path):
    db = tmp_path / "sh.db"
    space = tmp_path / "px.yaml"
    space.write_text(GRID)
    with _proxy(f"sqlite:///{db}", script=True) as (grpc_url, stopped):
        run = subprocess.run(["bash", ROOT / "examples/cluster/proxy_search.sh", "worker", "--space", space, "--trials",
                              "1", "--epochs", "1", "--confirm", "0"], cwd=tmp_path, env=_env(PROXY=grpc_url[7:]),
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
    trials = optuna.load_study(study_name="px", storage=f"sqlite:///{db}").trials
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "WAITING", "WAITING"]  # the grid enqueued, one run
    assert stopped["rc"] in (0, 130) and "Traceback" not in stopped["err"], stopped["err"]


@pytest.mark.slow
def test_bench_proxy_prints_a_row_per_setup(tmp_path):
    postgres = os.environ.get("RESNAS_TEST_POSTGRES")
    run = subprocess.run([sys.executable, ROOT / "benchmarks/bench_proxy.py", "--workers", "1,2", "--seconds", "1"],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = re.findall(r"^(\S+(?: via proxy)?)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", run.stdout, re.M)
    setups = ["sqlite", "sqlite via proxy"] + (["postgresql", "postgresql via proxy"] if postgres else [])
    assert [(r[0], r[1]) for r in rows] == [(s, n) for s in setups for n in "12"], run.stdout
    assert all(int(r[2]) > 0 and int(r[4]) >= 1 for r in rows)  # trials ran; a connection was seen
    assert list(tmp_path.iterdir()) == []  # databases in a temporary folder
