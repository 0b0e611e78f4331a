"""An error as one bounded line: what every message that quotes another library's error is made of."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean", "first_line", "install_hint", "one_line"]


def one_line(text: str, limit: int = 200) -> str:
    """``text`` on one line, cut to ``limit`` characters (a message may quote a user's value whole).

    >>> one_line("a\\n  b", limit=80), one_line("x" * 10, limit=6)
    ('a b', 'xxx...')
    """
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an error's message (its type's name when it has none), at most ``limit`` characters.

    >>> first_line(ValueError("bad value\\ntraceback..."), limit=80), first_line(KeyError())
    ('bad value', 'KeyError')
    """
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:limit]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean NAME?"`` for the choice closest to a mistyped ``word`` (difflib's ratio, as click
    suggests options), else ``""``: the tail of an "unknown" message.

    >>> did_you_mean("defualt", ["default", "depth", "full"]), did_you_mean("zzz", ["default"])
    ('; did you mean default?', '')
    """
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def install_hint(extra: str) -> str:
    """How to install one of pyproject's optional extras: from the checkout, as resnas is not on PyPI.

    >>> install_hint("plot")
    'pip install -e ".[plot]" in the resnas checkout'
    """
    return f'pip install -e ".[{extra}]" in the resnas checkout'
