"""`resnas --help` and `--version` import neither torch, timm nor Optuna; a command loads only its own module."""

import subprocess
import sys

import click
import pytest

from resnas.cli import COMMANDS, cli

HEAVY = ("torch", "timm", "optuna", "scipy", "sqlalchemy", "resnas.zoo", "resnas.config", "resnas.study",
         "resnas.runners", "resnas.results", "resnas.storage", "resnas.reproduce", "resnas.objective", "optuna_dashboard")
COMMAND_MODULES = tuple(sorted({f"resnas.cli.{module}" for module, _, _ in COMMANDS.values()}))


def imported_by_the_command(*argv: str) -> set[str]:
    """The modules ``python -m resnas ARGV`` imported (as -X importtime lists them), of HEAVY and the commands'."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "resnas", *argv], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    names = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    return names & {*HEAVY, *COMMAND_MODULES}


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_help_and_version_import_neither_torch_timm_optuna_nor_a_command(argv):
    assert imported_by_the_command(*argv) == set()


def imported_after(*argvs: list[str]) -> list[tuple[int, list[str]]]:
    """Each command's exit code and the modules imported so far, the commands run in turn in one process."""
    watched = (*HEAVY, *COMMAND_MODULES)
    code = (f"import sys\nfrom resnas.cli import main\nfor argv in {list(argvs)!r}:\n"
            f"    rc = main(argv)\n    print('RESULT', rc, *(m for m in {watched!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    rows = [line.split()[1:] for line in out.splitlines() if line.startswith("RESULT ")]
    return [(int(rc), [m for m in modules if m.startswith("resnas.")]) for rc, *modules in rows]


def test_a_command_loads_its_own_module_only():
    [(rc_help, after_help), (rc_typo, after_typo), (rc_models, after_models)] = imported_after(
        ["--help"], ["serch"], ["models", "--help"])
    assert (rc_help, rc_typo, rc_models) == (0, 2, 0)
    assert not any(m.startswith("resnas.cli.") for m in after_help + after_typo)
    assert "resnas.cli.models" in after_models
    assert not {"resnas.cli.search", "resnas.search", "resnas.storage"} & set(after_models)


def test_the_command_that_needs_the_storage_still_imports_it():
    [(rc, modules)] = imported_after(["best", "--storage", "sqlite:////nonexistent/dir/x.db"])
    assert rc == 2 and "resnas.storage" in modules  # the check for an existing storage ran


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_listed_help_line_is_the_commands_own(name):
    command = cli.get_command(click.Context(cli), name)
    assert command.name == name and command.help.splitlines()[0] == COMMANDS[name][2]
