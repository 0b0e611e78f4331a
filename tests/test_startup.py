"""`resnas --help` and argument errors import no more than `import resnas` must (torch, timm, the zoo)."""

import subprocess
import sys

# imported by the commands that need them, never by --help or a typo
HEAVY = ("optuna", "scipy", "sqlalchemy", "resnas.config", "resnas.study", "resnas.runners", "resnas.results",
         "resnas.storage", "resnas.reproduce", "resnas.objective", "optuna_dashboard")


def imported_after(*argvs: list[str]) -> list[tuple[int, list[str]]]:
    """Each command's exit code and the heavy modules imported so far, the commands run in turn in one process."""
    code = (f"import sys\nfrom resnas.cli import main\nfor argv in {list(argvs)!r}:\n"
            f"    rc = main(argv)\n    print('RESULT', rc, *(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    rows = [line.split()[1:] for line in out.splitlines() if line.startswith("RESULT ")]
    return [(int(rc), modules) for rc, *modules in rows]


def test_help_and_typos_import_neither_optuna_nor_the_search_layer():
    assert imported_after(["--help"], ["search", "--help"], ["search", "--trials", "x"], ["reproduce", "table9"],
                          ["best", "--top", "0"]) == [(0, []), (0, []), (2, []), (2, []), (2, [])]


def test_the_command_that_needs_the_storage_still_imports_it():
    [(rc, modules)] = imported_after(["best", "--storage", "sqlite:////nonexistent/dir/x.db"])
    assert rc == 2 and "resnas.storage" in modules  # the check for an existing storage ran
