"""The end of a process of a distributed run (``accelerate launch`` / ``torchrun``, WORLD_SIZE > 1).

Such a process ends without the interpreter's finalization. ``destroy_process_group()`` does not join
gloo's worker threads, and a worker thread can still hold the last reference to a tensor that Python
handed to a collective (``broadcast_object_list``'s); dropping it takes the GIL. A rank that exits right
after its last collective (as every rank but the main one does, at once) can reach ``Py_FinalizeEx``
first: the worker thread's ``take_gil`` then calls ``pthread_exit`` inside a ``noexcept`` destructor
(``ProcessGroupGloo::AsyncWork::~AsyncWork``), ``std::terminate`` aborts the rank (SIGABRT,
"terminate called without an active exception"), and the launch exits 1. More often on a busy machine,
where the worker thread waits longer to be scheduled.
"""

from __future__ import annotations

import contextlib
import os
import sys

__all__ = ["end_process", "in_launch"]


def in_launch() -> bool:
    """A process of ``accelerate launch`` / ``torchrun`` with more than one process in all."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def end_process(code: int) -> int:
    """``code``, outside a launch (or where torch.distributed was never imported); inside one, leave the
    process group, flush stdout and stderr and end the process now with ``code``, skipping finalization
    (nothing of resnas's is left to it: studies, checkpoints and exports are written and closed)."""
    dist = sys.modules.get("torch.distributed")
    if not in_launch() or dist is None:
        return code
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken pipe: nothing more to say
            stream.flush()
    os._exit(code)
