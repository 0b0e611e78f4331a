"""Every shell command in README.md runs as written: the quick ones here, the others named with a reason.

Commands are taken from the README's ``bash`` blocks and its indented command lines; each block runs in
order in a fresh folder, through bash, with this interpreter's ``resnas`` and ``python`` first on PATH.
A command that matches no rule below fails the test, so a new README command is either run or excused.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

# (pattern matched at the start of the command, None to run it or the reason it is not run here)
RULES = [
    (r"python3 -m venv ", "the install line: what .ci/run itself runs on a clean clone"),
    (r"pip install ", "an install: no index here beyond what .ci/run installs"),
    (r"resnas train .*--dataset cifar10", "CIFAR-10: a download and 164 epochs (tests/test_data.py reads "
                                          "CIFAR's format from small files)"),
    (r"resnas search .*--dataset cifar10", "CIFAR-10 on two GPUs"),
    (r"resnas dashboard", "serves until Ctrl-C (tests/test_storage.py serves it on loopback)"),
    (r"resnas reproduce ", "minutes on 2 cores (tests/test_reproduce_run.py runs it at tiny sizes)"),
    (r"resnas |python -c ", None),
]


def readme_blocks() -> list[list[str]]:
    """The README's shell commands, grouped by block, in order."""
    text = README.read_text()
    blocks = [m.group(1).splitlines() for m in re.finditer(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S)]
    blocks += [[line[4:] for line in m.group(1).splitlines()]
               for m in re.finditer(r"(?:^|\n\n)((?: {4}\S.*\n)+)", text)]
    commands = [[c for c in (line.strip() for line in block) if c and not c.startswith("#")] for block in blocks]
    return [b for b in commands if b and not b[0].startswith("search_spaces/")]  # the data-flow diagram


def rule(command: str) -> str | None:
    for pattern, reason in RULES:
        if re.match(pattern, command):
            return reason
    raise AssertionError(f"README command matches no rule of tests/test_readme.py: {command}")


BLOCKS = readme_blocks()


def test_the_readme_has_its_commands():
    commands = [c for b in BLOCKS for c in b]
    assert any(c == "resnas search" or c.startswith("resnas search ") for c in commands)
    assert sum(rule(c) is None for c in commands) >= 8, commands


@pytest.mark.parametrize("block", BLOCKS, ids=[b[0][:40] for b in BLOCKS])
def test_readme_block_runs_as_written(block, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESNAS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "80"
    for command in block:
        if rule(command) is not None:
            continue
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=1200)
        assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stderr[-3000:]}"


def python_blocks() -> list[str]:
    return [m.group(1) for m in re.finditer(r"```python\n(.*?)```", README.read_text(), re.S)]


def _as_checked(block: str) -> tuple[str, list[str]]:
    """The block with each ``EXPR   # LITERAL`` line made an assertion, and the lines its ``print(...)  # OUT``
    lines promise."""
    lines, printed = [], []
    for line in block.splitlines():
        code, _, comment = line.partition("   # ")
        if comment and code.startswith("print("):
            printed.append(comment.strip())
        elif comment and code and not code.startswith((" ", "def ")) and "=" not in code.replace("==", ""):
            try:
                expected = ast.literal_eval(comment.strip())
            except (ValueError, SyntaxError):  # prose, not a value
                pass
            else:
                line = f"assert ({code.strip()}) == {expected!r}, {code.strip()!r}"
        lines.append(line)
    return "\n".join(lines), printed


def _agree(got: str, promised: str) -> bool:
    """A printed line agrees with the README's: the same words and integers, floats within 0.02."""
    a, b = got.split(), promised.split()
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x != y and not ("." in y and re.fullmatch(r"[-\d.]+", x) and abs(float(x) - float(y)) <= 0.02):
            return False
    return True


@pytest.mark.parametrize("block", python_blocks(), ids=[b.splitlines()[0][:40] for b in python_blocks()])
def test_readme_python_runs_as_written_and_prints_what_it_says(block, tmp_path):
    source, printed = _as_checked(block)
    done = subprocess.run([sys.executable, "-c", source], cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"{source}\n{done.stderr[-3000:]}"
    out = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(out) == len(printed) and all(map(_agree, out, printed)), (out, printed)
