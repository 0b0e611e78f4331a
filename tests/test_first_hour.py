"""Issue 15, the small items a new user met first: --plot without matplotlib, YAML errors, empty folders
left by a bad --data-dir, export modes under the umask, a PostgreSQL URL without its driver, the stage
labels of `resnas summary`, the names `resnas probe` shows, the trials `resnas spaces` shows, and the
README's line for CPU-only machines."""

import importlib.metadata
import os
import stat
import subprocess
import sys
import urllib.error
from pathlib import Path

import optuna
import pytest
import torchvision.datasets.cifar

import resnas
import resnas.cli.display
from resnas.data import DataError, load_data
from resnas.export import export
from resnas.results import export_trial
from resnas.space import DEFAULT_TRIALS, SpaceError, builtin_spaces, load_space, parse_space
from resnas.storage import StudyError, open_storage

ROOT = Path(__file__).resolve().parent.parent
WIDE = {"COLUMNS": "200"}  # tables unfolded: the assertions read whole cells


def _without(monkeypatch, *modules: str) -> None:
    """``import module`` fails here as it does when the package is not installed (ModuleNotFoundError, its name)."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def _one_error_line(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and run.stderr.count("\n") == 1, run.stderr[-2000:]
    assert run.stderr.startswith("error: ")
    return run.stderr


# ---- 1. probe --plot without matplotlib: one line naming the extra, before computing ----------------
def test_probe_plot_without_matplotlib_names_the_extra_before_computing(tmp_path, monkeypatch, resnas_cli):
    _without(monkeypatch, "matplotlib")
    run = resnas_cli("probe", "original_resnet110", "--plot", str(tmp_path / "p.png"), cwd=tmp_path)
    line = _one_error_line(run)
    assert 'pip install -e ".[plot]"' in line and "matplotlib" in line
    assert run.stdout == "" and not (tmp_path / "p.png").exists()


def test_the_extra_the_message_names_exists_and_the_readme_installs_it():
    # the installed metadata (any Python; tomllib is 3.11+): the plot extra brings matplotlib
    assert any(r.startswith("matplotlib") and "extra == 'plot'" in r for r in importlib.metadata.requires("resnas"))
    readme = (ROOT / "README.md").read_text()
    probe_example = readme.index("--plot probe.png")
    assert 'pip install -e ".[plot]"' in readme[probe_example - 400:probe_example]


# ---- 2. a YAML syntax error: the line it is on, and PyYAML's reason ----------------------------------
@pytest.mark.parametrize("text, line, reason", [
    ("name: x\nspace: {depth: [8]\n", 2, "expected ',' or '}'"),  # unclosed at the end of the file
    ("name: x\nspace:\n  unit: [basic\n\n\n", 3, "expected ',' or ']'"),  # blank lines after it
    ("name: x\nspace:\n  depth: \"8\n", 3, "unexpected end of stream"),
    ("name: x\n space: 1\n", 2, "mapping values are not allowed here"),
    ("name: [a, b\nepochs: 1\n", 2, "expected ',' or ']'"),
])
def test_a_yaml_syntax_error_names_a_line_of_the_file_and_the_reason(text, line, reason):
    with pytest.raises(SpaceError) as e:
        parse_space(text)
    message = str(e.value)
    assert f" line {line}" in message and reason in message and "\n" not in message
    assert len(text.splitlines()) >= line


def test_a_yaml_syntax_error_in_a_space_file_is_one_line_exit_2(tmp_path, resnas_cli):
    (tmp_path / "bad.yaml").write_text("name: bad\nspace:\n  depth: [8, 14\n")
    run = resnas_cli("search", "--space", "bad.yaml", cwd=tmp_path)
    line = _one_error_line(run)
    assert "bad.yaml: not valid YAML at line 3" in line and "expected ',' or ']'" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


# ---- 3. a mistyped --data-dir creates nothing ----------------------------------------------------------
def test_train_with_a_mistyped_data_dir_creates_nothing(tmp_path, resnas_cli):
    run = resnas_cli("train", "--model", "depth=8", "--dataset", "cifar10", "--data-dir", "x/typo", "--no-download",
                  cwd=tmp_path)
    assert "cifar10: not found in x/typo" in _one_error_line(run)
    with pytest.raises(DataError, match="y/typo is not a directory"):
        load_data("folder", tmp_path / "y" / "typo")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_download_removes_the_folders_it_created(tmp_path, monkeypatch):
    def fail(url, download_root, **kwargs):  # as a download cut off after its first bytes
        Path(download_root).mkdir(parents=True, exist_ok=True)
        (Path(download_root) / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b")
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", fail)
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match="download failed"):
        load_data("cifar10", tmp_path / "data" / "x" / "typo")
    assert list((tmp_path / "data").iterdir()) == []  # the user's own folder stays, empty as it was


def test_a_failed_download_leaves_an_existing_folders_files(tmp_path, monkeypatch):
    def fail(url, download_root, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", fail)
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(DataError):
        load_data("cifar10", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


# ---- 4. exports follow the user's umask ------------------------------------------------------------------
@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.iterdir()]}


def test_export_follows_the_umask(tmp_path, umask_022):
    out = export(resnas.build("depth=8,widths=4-8-16,in_chans=1"), tmp_path / "out")
    assert _modes(out) == {"out": 0o755, "config.json": 0o644, "model.safetensors": 0o644}


def test_train_output_follows_the_umask(tmp_path, umask_022, resnas_cli):
    run = resnas_cli("train", "--model", "depth=8,widths=4-8-16", "--epochs", "1", "--batch-size", "256",
                     "--output", "out", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert _modes(tmp_path / "out") == {"out": 0o755, "config.json": 0o644, "model.safetensors": 0o644,
                                        "checkpoint.safetensors": 0o644}


def test_export_of_a_trial_follows_the_umask(searched_copy, tmp_path, umask_022):
    url = f"sqlite:///{searched_copy / 's.db'}"
    study = optuna.load_study(study_name="default", storage=open_storage(url))
    folder, _ = export_trial(study, url, None, tmp_path / "net")
    modes = _modes(folder)
    assert modes.pop("net") == 0o755 and set(modes.values()) == {0o644}


# ---- 5. a PostgreSQL URL without its driver names the extra --------------------------------------------
def test_a_postgresql_url_naming_a_missing_driver_names_the_extra():
    with pytest.raises(StudyError) as e:
        open_storage("postgresql+pg8000://me:secret@127.0.0.1:9/resnas")
    message = str(e.value)
    assert 'pip install -e ".[postgres]" in the resnas checkout' in message and "pg8000" in message and "secret" not in message


def test_a_postgresql_url_without_psycopg_is_one_line_exit_2(tmp_path, monkeypatch, resnas_cli):
    _without(monkeypatch, "psycopg", "psycopg2")  # SQLAlchemy 2.1's default driver, 2.0's
    run = resnas_cli("best", "--storage", "postgresql://me@127.0.0.1:9/resnas", cwd=tmp_path)
    assert 'pip install -e ".[postgres]"' in _one_error_line(run)


# ---- 6. summary labels every stage -------------------------------------------------------------------
def _rows(out: str) -> dict[str, str]:
    cells = (line.strip("│ ").split("│") for line in out.splitlines() if line.count("│") == 3)
    return {label.strip(): value.strip() for label, value in cells}


@pytest.mark.parametrize("model, last", [
    ("preact_resnet110", "stage 3 + final BN-ReLU"),
    ("original_resnet110", "stage 3"),  # no final activation: Fig. 4(a) ends each unit with its ReLU
])
def test_summary_labels_the_stem_and_every_stage(model, last, resnas_cli):
    run = resnas_cli("summary", model, env=WIDE)  # at a terminal's width (COLUMNS, read when it prints)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    rows = _rows(out)
    assert rows["stem"].startswith("(16, 32, 32)")
    assert rows["stage 1"].startswith("(16, 32, 32)") and rows["stage 2"].startswith("(32, 16, 16)")
    assert rows[last].startswith("(64, 8, 8)")
    assert not any(label in rows for label in ("stages.0", "stages.1", "norm", "stem.norm"))


# ---- 7. probe shows the names as typed ----------------------------------------------------------------
def test_probe_shows_the_names_as_typed(tmp_path, resnas_cli):
    typed = ["original_resnet110", "depth=14,act=original,down=zeropad"]
    run = resnas_cli("probe", *typed, "--batch-size", "8", env=WIDE)
    assert run.returncode == 0, run.stderr
    variants = [line.split("│")[2].strip() for line in run.stdout.splitlines() if line.count("│") > 3]
    assert sorted(variants) == sorted(typed)


# ---- 8. spaces shows the trials a search would run --------------------------------------------------------
def test_spaces_shows_the_trials_a_search_would_run(resnas_cli):
    run = resnas_cli("spaces", env=WIDE)
    assert run.returncode == 0, run.stderr
    assert "- trials" not in run.stdout
    for name in builtin_spaces():
        space = load_space(name)
        if space.sampler != "grid" and space.trials is None:
            row = next(line for line in run.stdout.splitlines() if f" {name} " in line)
            assert f"{DEFAULT_TRIALS} trials (default)" in row


# ---- 9. (item 10) the README says how a CPU-only machine installs the CPU build --------------------------
def test_the_readme_says_how_to_install_the_cpu_build_and_keeps_the_pinned_lines():
    readme = (ROOT / "README.md").read_text()
    two_commands = readme[readme.index("## Two commands"):readme.index("## The CLI at a glance")]
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in two_commands
    pinned = "pip install torch==2.14.1 torchvision==0.29.1"
    assert f"{pinned} -e . && resnas search" in two_commands
    assert f'{pinned} -e ".[test]" && python -m pytest -q -n 2' in two_commands
