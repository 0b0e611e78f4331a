"""Shared test settings and fixtures."""

import contextlib
import io
import os
import shutil
import subprocess

# One intra-op thread per test process and per process a test starts (they inherit it; resnas.threads
# honours it): the tests' tiny nets gain little from more, and on a busy machine (or under pytest -n 2)
# threads waiting for each other made a 6 s training take 170 s.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

# rich fixes a console's width to COLUMNS when the console is made (pytest-xdist's workers set it to 80):
# made without it, resnas's consoles read COLUMNS when they print, as each test sets it
_columns = os.environ.pop("COLUMNS", None)
import resnas.cli.display  # noqa: E402,F401

if _columns is not None:
    os.environ["COLUMNS"] = _columns

from _tiny import TINY  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def image_folder(tmp_path):
    """train/ (10 images per class) and val/ (2 per class) of two classes, 40x48 RGB PNGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("val", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{i}.png")
    return tmp_path


@pytest.fixture
def pg_url():
    """The throw-away PostgreSQL of .ci/postgres (RESNAS_TEST_POSTGRES); in CI a missing server fails, never skips."""
    url = os.environ.get("RESNAS_TEST_POSTGRES")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must start PostgreSQL first: eval \"$(.ci/postgres)\"")
        pytest.skip("no PostgreSQL: eval \"$(.ci/postgres)\" starts one on 127.0.0.1")
    return url


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def run_cli(*argv, cwd=None, env=None) -> subprocess.CompletedProcess:
    """``resnas ARGV`` run in this process, as a subprocess would be seen: exit code, stdout, stderr (rich's
    consoles write to sys.stdout and sys.stderr as they are at call time, and read COLUMNS then)."""
    from resnas.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    here = os.getcwd()
    try:
        os.environ.update(env or {})
        os.chdir(cwd or here)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
    finally:
        os.chdir(here)
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return subprocess.CompletedProcess(["resnas", *argv], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def resnas_cli():
    """:func:`run_cli`: a test of what a command prints and returns, without starting an interpreter."""
    return run_cli


@pytest.fixture(scope="session")
def searched(tmp_path_factory):
    """One real search per test process, built once and only read: ``resnas search`` of the default space,
    3 trials of 2 epochs, into sqlite:///s.db in its folder (its artifacts beside it); returns (folder, what
    it printed at an 80-column width into a pipe)."""
    cwd = tmp_path_factory.mktemp("searched")
    run = run_cli("search", "--trials", "3", "--epochs", "2", "--confirm", "0", "--storage", "sqlite:///s.db",
                  cwd=cwd, env={"COLUMNS": "80", "TERM": "dumb"})
    assert run.returncode == 0, run.stdout + run.stderr
    return cwd, run.stdout


@pytest.fixture
def searched_copy(searched, tmp_path):
    """A copy of :func:`searched`'s folder (its db and artifacts) for a test that writes to it."""
    folder = tmp_path / "searched"
    shutil.copytree(searched[0], folder)
    return folder
