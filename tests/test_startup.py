"""`resnas --help` and argument errors import no more than `import resnas` must (torch, timm, the zoo)."""

import subprocess
import sys

# imported by the commands that need them, never by --help or a typo
HEAVY = ("optuna", "scipy", "sqlalchemy", "resnas.search", "resnas.storage", "resnas.reproduce",
         "resnas.objective", "optuna_dashboard")


def imported_after(argv: list[str]) -> tuple[int, list[str]]:
    code = (f"import sys\nfrom resnas.cli import main\nrc = main({argv!r})\n"
            f"print(rc, ' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    rc, _, modules = out.strip().splitlines()[-1].partition(" ")
    return int(rc), modules.split()


def test_help_imports_neither_optuna_nor_the_search_layer():
    assert imported_after(["--help"]) == (0, [])
    assert imported_after(["search", "--help"]) == (0, [])


def test_a_typo_is_refused_before_the_search_layer_is_imported():
    assert imported_after(["search", "--trials", "x"]) == (2, [])
    assert imported_after(["reproduce", "table9"]) == (2, [])


def test_the_command_that_needs_optuna_still_imports_it():
    rc, modules = imported_after(["spaces"])
    assert rc == 0 and "resnas.search" not in modules
    rc, modules = imported_after(["best", "--storage", "sqlite:////nonexistent/dir/x.db"])
    assert rc == 2 and "resnas.storage" in modules  # the check for an existing storage ran
