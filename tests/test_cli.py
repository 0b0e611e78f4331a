"""`resnas` commands of the model layer: output a user reads, one-line errors with exit code 2."""

import subprocess
import sys

import pytest

from resnas.cli import main


def test_summary_prints_paper_numbers(capsys):
    assert main(["summary", "preact_resnet164"]) == 0
    out = capsys.readouterr().out
    assert "1,703,258" in out and "244.5M" in out and "(256, 8, 8)" in out


def test_summary_of_spec_string_with_overrides(capsys):
    assert main(["summary", "depth=8,widths=4-8-16,act=c", "--in-chans", "1", "--num-classes", "3",
                 "--input-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "act=relu_before_add" in out and "in_chans=1" in out and "(16, 2, 2)" in out


def test_models_lists_the_zoo(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "preact_resnet1001" in out and "original_resnet110" in out and "10,327,706" in out


@pytest.mark.parametrize("argv, message", [
    (["summary", "preact_resnet9"], "error: model: unknown name 'preact_resnet9'; allowed: preact_resnet110"),
    (["summary", "depth=21"], "error: depth: 21 is not 6n+2 for basic CIFAR units"),
    (["summary", "depth=20,shortcut=scaling,scale=3"], "error: scale: 3.0 is out of range; allowed: [0, 2]"),
    (["summary", "preact_resnet110", "--num-classes", "-1"], "error: Invalid value for '--num-classes'"),
    (["nosuchcommand"], "error: No such command 'nosuchcommand'"),
])
def test_bad_input_is_one_line_and_exit_code_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err


def test_console_script_exit_code_and_help_example(resnas_cli):
    run = subprocess.run([sys.executable, "-m", "resnas", "summary", "depth=21"], capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and run.stdout == ""
    run = resnas_cli("summary", "--help")
    assert run.returncode == 0 and "resnas summary preact_resnet164" in run.stdout


def test_export_error_is_one_line_and_writes_nothing(tmp_path, resnas_cli):
    run = resnas_cli("export", "--storage", f"sqlite:///{tmp_path}/none.db", "--output", str(tmp_path / "net"))
    assert run.returncode == 2 and run.stdout == "" and "Traceback" not in run.stderr
    assert run.stderr == (f"error: storage: {tmp_path}/none.db does not exist; "
                          "run resnas search first or pass --storage\n")
    assert list(tmp_path.iterdir()) == []


def test_the_storage_layer_reads_resnas_storage(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "from-env.db"
    monkeypatch.setenv("RESNAS_STORAGE", f"sqlite:///{missing}")
    assert main(["best"]) == 2
    assert f"storage: {missing} does not exist" in capsys.readouterr().err
