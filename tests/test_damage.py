"""Damaged files and full disks (issue 14, items 3 and 7): each is one line with exit code 2 (or a
repair said in one line), the damaged file left as it was, nothing half-written left behind."""

import json
import multiprocessing as mp
import os
import resource
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import sqlalchemy.orm
import timm
from optuna.trial import TrialState
from safetensors import safe_open

from resnas.cli import main
from resnas.data import load_data
from resnas.export import WEIGHTS, ExportError, load
from resnas.kept import kept_files
from resnas.recipe import Recipe
from resnas.storage import artifact_root, open_storage
from resnas.train import CHECKPOINT, CheckpointError, checkpoint_epoch, train

HERE = Path(__file__).parent
TINY = "depth=8,widths=4-8-16"
ENV = dict(os.environ, OMP_NUM_THREADS="1")
GRID = """
name: g1
dataset: digits
sampler: grid
pruner: none
epochs: {min: 2, max: 2}
recipe: {batch_size: 128, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  act: [original]
"""
RANDOM = """
name: r1
dataset: digits
sampler: random
pruner: none
trials: 1
epochs: {min: 1, max: 1}
recipe: {batch_size: 128, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  act: [original, preact, bn_after_add]
  shortcut: {scaling: {scale: {low: 0.5, high: 1.0}}}
"""


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


@pytest.fixture
def grid(tmp_path):
    path = tmp_path / "g1.yaml"
    path.write_text(GRID)
    return path


def _data_offset(path: Path) -> int:
    """Where a safetensors file's tensor bytes begin: after the 8-byte header length and the header."""
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def _flip(path: Path, offset: int) -> bytes:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return bytes(data)


def _flip_tensor_byte(path: Path) -> bytes:
    start = _data_offset(path)
    return _flip(path, start + (path.stat().st_size - start) // 2)


def _one_error_line(err: str, *words: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


# ---- epoch checkpoints ------------------------------------------------------------------------------
def _change_history_digit(path: Path) -> bytes:
    """A digit of the recorded history changed, the header still valid JSON: only a checksum sees it."""
    data = bytearray(path.read_bytes())
    at = data.index(b'val_error\\": [') + len(b'val_error\\": [')
    assert chr(data[at]).isdigit()
    data[at] = ord("1") if data[at] != ord("1") else ord("0")
    path.write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize("damage", [_flip_tensor_byte, _change_history_digit], ids=["tensor-byte", "history"])
def test_damaged_checkpoint_is_refused_by_the_trainer_and_kept(digits, tmp_path, damage):
    recipe = Recipe.digits(schedule_epochs=3)
    train(TINY, digits, epochs=2, recipe=recipe, checkpoint_dir=tmp_path)
    ckpt = tmp_path / CHECKPOINT
    with safe_open(ckpt, framework="pt") as f:
        assert len(f.metadata()["sha256"]) == 64
    assert checkpoint_epoch(ckpt) == 2
    damaged = damage(ckpt)
    with pytest.raises(CheckpointError) as e:
        train(TINY, digits, epochs=3, recipe=recipe, checkpoint_dir=tmp_path)
    message = str(e.value)
    assert str(ckpt) in message and "checksum" in message and "\n" not in message
    assert ckpt.read_bytes() == damaged
    assert checkpoint_epoch(ckpt) is None  # nothing to resume from


def test_resume_of_a_damaged_checkpoint_is_one_line_and_keeps_it(tmp_path, capsys):
    out = tmp_path / "run"
    common = ["train", "--model", TINY, "--dataset", "digits", "--schedule-epochs", "2", "--output", str(out)]
    assert main([*common, "--epochs", "1"]) == 0
    damaged = _flip_tensor_byte(out / CHECKPOINT)
    capsys.readouterr()
    assert main([*common, "--epochs", "2", "--resume"]) == 2
    _one_error_line(capsys.readouterr().err, "error: checkpoint:", str(out / CHECKPOINT), "checksum")
    assert (out / CHECKPOINT).read_bytes() == damaged


def test_corrupt_or_foreign_checkpoint_is_refused_and_kept(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "depth=8,widths=4-8-16", "--dataset", "digits", "--epochs", "1",
                 "--output", str(out)]) == 0
    ckpt = out / "checkpoint.safetensors"
    good = ckpt.read_bytes()
    capsys.readouterr()
    # a checkpoint of another design
    assert main(["train", "--model", "depth=14,widths=4-8-16", "--dataset", "digits", "--epochs", "1",
                 "--output", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint:") and "another run" in err and err.count("\n") == 1
    assert ckpt.read_bytes() == good
    # a truncated one
    ckpt.write_bytes(good[: len(good) // 2])
    assert main(["train", "--model", "depth=8,widths=4-8-16", "--dataset", "digits", "--epochs", "2",
                 "--output", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint:") and "unreadable" in err and err.count("\n") == 1
    assert ckpt.read_bytes() == good[: len(good) // 2]


def _cmd(space, url, *extra):
    return [sys.executable, "-m", "resnas", "search", "--space", str(space), "--storage", url, "--confirm", "0",
            *extra]


def test_retried_trial_with_a_damaged_checkpoint_fails_with_that_reason(tmp_path, resnas_cli):
    # trial 0 is killed while writing its second checkpoint: the first (epoch 1) stays to resume from
    space = tmp_path / "g2.yaml"
    space.write_text(GRID.replace("name: g1", "name: g2").replace("act: [original]", "act: [original, preact]"))
    url = f"sqlite:///{tmp_path}/k.db"
    killed = subprocess.run([sys.executable, str(HERE / "_kill_on_checkpoint.py"), *_cmd(space, url)[3:]],
                            env=dict(ENV, RESNAS_KILL_AT_CHECKPOINT="2"), capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    [ckpt] = (artifact_root(url) / "checkpoints").rglob(CHECKPOINT)
    damaged = _flip_tensor_byte(ckpt)
    rerun = resnas_cli(*_cmd(space, url)[3:])  # the same command, run in this process
    assert rerun.returncode == 0 and "Traceback" not in rerun.stderr, rerun.stderr
    trials = optuna.load_study(study_name="g2", storage=url).trials
    [retry] = [t for t in trials if t.user_attrs.get("retry_of") == 0]
    assert retry.state == TrialState.FAIL and retry.user_attrs["checkpoint_of"] == 0
    reason = retry.user_attrs["reason"]
    assert reason.startswith("CheckpointError: checkpoint:") and str(ckpt) in reason and "checksum" in reason
    assert ckpt.read_bytes() == damaged  # not overwritten by a run from garbage
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


# ---- kept weights -----------------------------------------------------------------------------------
def test_export_checks_the_kept_weights(grid, tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/e.db"
    assert main(["search", "--space", str(grid), "--storage", url, "--confirm", "0"]) == 0
    good = tmp_path / "good"
    assert main(["export", "--storage", url, "--output", str(good)]) == 0
    assert "own weights" in capsys.readouterr().out
    with safe_open(good / WEIGHTS, framework="pt") as f:
        assert f.metadata()["format"] == "pt" and len(f.metadata()["sha256"]) == 64
    timm.create_model(f"local-dir:{good}", pretrained=True)  # timm reads the folder as before
    load(good)
    # a damaged artifact: one line, exit 2, no output folder, the artifact as it was
    study = optuna.load_study(study_name="g1", storage=url)
    kept = kept_files(study, url, study.trials[0])[WEIGHTS]
    artifact = artifact_root(url) / kept
    damaged = _flip_tensor_byte(artifact)
    bad = tmp_path / "bad"
    assert main(["export", "--storage", url, "--output", str(bad)]) == 2
    _one_error_line(capsys.readouterr().err, "error: export:", kept, "checksum")
    assert not bad.exists() and not list(tmp_path.glob(".resnas-export-*"))
    assert artifact.read_bytes() == damaged
    # an exported folder damaged later: resnas' loader refuses it
    damaged = _flip_tensor_byte(good / WEIGHTS)
    with pytest.raises(ExportError, match="checksum") as e:
        load(good)
    assert str(good / WEIGHTS) in str(e.value) and "\n" not in str(e.value)
    assert (good / WEIGHTS).read_bytes() == damaged


# ---- full disks: RLIMIT_FSIZE makes writes past the limit fail with EFBIG, as a full disk does -----------
def _limited(limit: int, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    def limit_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(args, preexec_fn=limit_files, capture_output=True, text=True, timeout=300, env=ENV,
                          **kwargs)


def test_search_that_cannot_create_its_database_leaves_no_file(grid, tmp_path):
    db = tmp_path / "fresh.db"
    run = _limited(2000, _cmd(grid, f"sqlite:///{db}"))  # not even SQLite's first page fits
    assert run.returncode == 2, run.stderr
    _one_error_line(run.stderr, str(db))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g1.yaml"]


def test_train_on_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path):
    out = tmp_path / "run"  # the 73 KB checkpoint of TINY does not fit in 50 KB
    run = _limited(50_000, [sys.executable, "-m", "resnas", "train", "--model", TINY, "--dataset", "digits",
                            "--epochs", "1", "--output", str(out)])
    assert run.returncode == 2, run.stderr
    _one_error_line(run.stderr, "error: checkpoint:", str(out / CHECKPOINT))
    assert list(out.iterdir()) == []


def test_search_whose_checkpoints_do_not_fit_fails_its_trial_with_one_line(grid, tmp_path):
    # the journal (13 KB) still fits: the storage records the trial's end
    url = f"journal:///{tmp_path}/j.log"
    run = _limited(50_000, _cmd(grid, url))
    assert "Traceback" not in run.stderr, run.stderr
    [trial] = optuna.load_study(study_name="g1", storage=open_storage(url)).trials
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["reason"].startswith("CheckpointWriteError: checkpoint: cannot write")
    assert run.returncode == 2 and "search stopped: disk full?" in run.stderr  # the next trial would fail alike
    assert CHECKPOINT in trial.user_attrs["reason"]
    assert not list((tmp_path / "resnas-artifacts").rglob("*.tmp"))


# A full disk stops the search in one line, exit 2: checkpoints that do not fit (the trial recorded FAIL, as
# every next one would be), or a storage that cannot be written (once Optuna's "AssertionError: Should not reach.")
@pytest.mark.parametrize("storage, limit", [("journal:///{}/j.log", 50_000), ("sqlite:///{}/s.db", 180_000)],
                         ids=["checkpoints-full", "storage-full"])
def test_search_on_a_full_disk_stops_with_one_line(grid, tmp_path, storage, limit):
    url = storage.format(tmp_path)
    run = _limited(limit, _cmd(grid, url))
    assert run.returncode == 2, run.stderr
    _one_error_line(run.stderr)
    assert "disk full" in run.stderr


APPEND = """
import optuna, sys
from resnas.storage import open_storage
study = optuna.load_study(study_name="r1", storage=open_storage(sys.argv[1]))
try:
    study.set_user_attr("big", "x" * 5000)
except OSError as e:
    print("failed:", e.errno)
study.set_user_attr("small", 1)
"""


def test_a_journal_append_that_does_not_fit_is_undone(tmp_path):
    path = tmp_path / "j.log"
    url = f"journal:///{path}"
    optuna.create_study(study_name="r1", storage=open_storage(url))
    before = path.read_bytes()
    run = _limited(len(before) + 300, [sys.executable, "-c", APPEND, url])
    assert run.returncode == 0 and "failed: 27" in run.stdout, run.stderr  # EFBIG
    after = path.read_bytes()
    assert after.startswith(before) and after.count(b"\n") == before.count(b"\n") + 1
    assert all(json.loads(line) for line in after.splitlines())
    assert optuna.load_study(study_name="r1", storage=open_storage(url)).user_attrs == {"small": 1}


# ---- journals ---------------------------------------------------------------------------------------
@pytest.fixture
def journal(tmp_path, capsys):
    """A journal with one trial of RANDOM, and the space file."""
    space = tmp_path / "r1.yaml"
    space.write_text(RANDOM)
    path = tmp_path / "study.log"
    assert main(["search", "--space", str(space), "--storage", f"journal:///{path}", "--confirm", "0"]) == 0
    capsys.readouterr()
    return path, space


def test_journal_with_a_torn_last_line_is_repaired_in_one_line(journal, capsys):
    path, space = journal
    whole = path.read_bytes()
    last = whole[whole.rstrip(b"\n").rindex(b"\n") + 1:]
    torn = whole[:-len(last) // 2]  # power loss halfway through the last line
    path.write_bytes(torn)
    for run in range(2):  # the repaired journal takes the next searches, one more trial each
        assert main(["search", "--space", str(space), "--storage", f"journal:///{path}", "--confirm", "0",
                     "--more", "1"]) == 0
        err = capsys.readouterr().err
        if run == 0:
            assert err.startswith("warning: ") and err.count("\n") == 1 and str(path) in err, err
        else:
            assert err == ""
    damaged = Path(f"{path}.damaged")
    assert damaged.read_bytes() == torn[len(whole) - len(last):] + b"\n"
    lines = path.read_bytes().splitlines(keepends=True)
    assert path.read_bytes().startswith(whole[:-len(last)]) and all(json.loads(line) for line in lines)
    assert len(optuna.load_study(study_name="r1", storage=open_storage(f"journal:///{path}")).trials) == 3


@pytest.mark.parametrize("where", ["middle", "last"])
def test_journal_with_a_damaged_line_is_refused_and_kept(journal, capsys, where):
    path, space = journal
    lines = path.read_bytes().splitlines(keepends=True)
    n = len(lines) // 2 if where == "middle" else len(lines) - 1
    lines[n] = b"#" + lines[n][1:]  # a complete line that is not JSON
    damaged = b"".join(lines)
    path.write_bytes(damaged)
    for args in (["search", "--space", str(space)], ["best"]):
        assert main([*args, "--storage", f"journal:///{path}"]) == 2
        _one_error_line(capsys.readouterr().err, "error: storage:", str(path), f"line {n + 1}")
        assert path.read_bytes() == damaged
    assert not Path(f"{path}.damaged").exists()


# ---- fresh storages opened by several workers at once ---------------------------------------------------
def _open_fresh(urls, barrier, out) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    errors = []
    for url in urls:
        barrier.wait(120)  # every worker creates the same fresh storage at the same moment
        try:
            optuna.create_study(study_name="race", storage=open_storage(url), load_if_exists=True)
        except Exception as e:
            errors.append(f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
    out.put(errors)


def _race(urls, workers=4) -> list[str]:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_open_fresh, args=(urls, barrier, out)) for _ in range(workers)]
    for p in procs:
        p.start()
    errors = [e for _ in procs for e in out.get(timeout=300)]
    for p in procs:
        p.join(30)
    return errors


def _one_study(url) -> None:
    summaries = optuna.get_all_study_summaries(open_storage(url), include_best_trial=False)
    assert [s.study_name for s in summaries] == ["race"]


def test_workers_creating_a_fresh_sqlite_storage_at_once_all_succeed(tmp_path):
    urls = [f"sqlite:///{tmp_path}/fresh{i}.db" for i in range(5)]
    assert _race(urls) == []
    for url in urls:
        _one_study(url)


def test_workers_creating_a_fresh_postgres_storage_at_once_all_succeed(pg_url):
    admin = sqlalchemy.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    names = [f"race_{uuid.uuid4().hex[:12]}" for _ in range(5)]
    with admin.connect() as connection:
        for name in names:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
    urls = [sqlalchemy.engine.make_url(pg_url).set(database=n).render_as_string(hide_password=False) for n in names]
    try:
        assert _race(urls) == []
        for url in urls:
            _one_study(url)
    finally:
        sqlalchemy.orm.close_all_sessions()
        with admin.connect() as connection:
            for name in names:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def test_two_searches_in_a_fresh_folder_at_once_both_finish(tmp_path):
    space = tmp_path / "r1.yaml"
    space.write_text(RANDOM)
    url = f"sqlite:///{tmp_path}/resnas.db"
    procs = [subprocess.Popen(_cmd(space, url, "--trials", "2"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env=ENV) for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    # the shared target of 2; a worker may pass it by the trial it was running when the other reached it
    assert len(optuna.load_study(study_name="r1", storage=url).trials) in (2, 3)
