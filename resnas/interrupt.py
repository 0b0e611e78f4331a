"""Ctrl-C at a safe point: while a search runs, SIGINT only takes note, and :func:`check` stops the run.

Python raises ``KeyboardInterrupt`` wherever the signal lands: inside Optuna's ``study.ask`` (leaving a
trial RUNNING that a resumed run then waits for) or inside SQLAlchemy's cleanup, which swallows it (the run
goes on and exits 0). Under :func:`deferred` the handler sets a flag; the trainer checks it every step and
the runner after every trial, where stopping leaves the study whole. A second Ctrl-C interrupts at once.

    >>> with deferred():
    ...     check()  # no Ctrl-C: nothing happens
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["check", "deferred"]

_pending = False  # a Ctrl-C arrived and was not taken yet


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """SIGINT inside the block sets a flag that :func:`check` raises as ``KeyboardInterrupt`` (and the block's
    end, when nothing checked it). Off the main thread, or where SIGINT has another handler, it changes nothing."""
    global _pending
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, _note)
    try:
        yield
    except BaseException:
        _pending = False  # the block ends anyway: nothing left over for the next one
        raise
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    check()


def check() -> None:
    """Raise the ``KeyboardInterrupt`` a Ctrl-C left pending (once)."""
    global _pending
    if _pending:
        _pending = False
        raise KeyboardInterrupt


def _note(signum: int, frame) -> None:
    global _pending
    if _pending:  # a second Ctrl-C: the user does not want to wait for the safe point
        _pending = False
        raise KeyboardInterrupt
    _pending = True
