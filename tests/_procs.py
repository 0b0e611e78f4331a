"""A process and its descendants, as the fault tests kill them: found through /proc, frozen (SIGSTOP) while the
test reads what they have written, so that a kill lands in exactly the state the test checks."""

import contextlib
import os
import signal
from pathlib import Path


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (accelerate's ranks run in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found.append(p := todo.pop())
        todo += children.get(p, [])
    return found


def signal_tree(pid: int, sig: int) -> None:
    for p in tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, sig)


@contextlib.contextmanager
def stopped(pid: int):
    """``pid``'s tree stopped (SIGSTOP) inside the block and continued after it: nothing it writes changes
    while the test reads the study, and a SIGKILL sent inside the block finds it in the state read."""
    signal_tree(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        signal_tree(pid, signal.SIGCONT)
