"""resnas.errors: an error or a message as the one line a user reads."""

import pytest

from resnas.cli import main
from resnas.errors import first_line, one_line


def test_first_line_is_the_messages_first_line_cut_to_the_limit_else_the_type_name():
    assert first_line(ValueError("bad value\nTraceback (most recent call last):")) == "bad value"
    assert first_line(OSError("  \n")) == "OSError" and first_line(KeyError()) == "KeyError"
    assert first_line(ValueError("x" * 300)) == "x" * 200 and first_line(RuntimeError("abcdef"), limit=3) == "abc"


def test_one_line_joins_whitespace_and_marks_where_it_cut():
    assert one_line("a\n\t b   c\n") == "a b c"
    assert one_line("z" * 200) == "z" * 200
    assert one_line("y" * 201) == "y" * 197 + "..."


@pytest.mark.parametrize("argv, tail", [
    (["search", "--space", "defualt"], "; did you mean default?\n"),
    (["summary", "preact_resnet16"], "; did you mean preact_resnet164?\n"),
    (["search", "--dataset", "cifar1O"], "; did you mean cifar10?\n"),
])
def test_an_unknown_name_suggests_the_nearest_valid_one(argv, tail, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # issue 24: click users expect it; nothing is written for a typo
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.endswith(tail) and err.count("\n") == 1
    assert not list(tmp_path.iterdir())
