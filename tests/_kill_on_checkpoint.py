"""Run the resnas CLI and SIGKILL this process while it writes its Nth epoch checkpoint: after the
temporary file is written and before the atomic rename (the crash tests/test_faults.py survives)."""

import os
import signal
import sys

from resnas.train import CHECKPOINT

KILL_AT = int(os.environ["RESNAS_KILL_AT_CHECKPOINT"])
_replace, _count = os.replace, [0]


def replace(src, dst, *args, **kwargs):
    if str(dst).endswith(CHECKPOINT):
        _count[0] += 1
        if _count[0] == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)
    return _replace(src, dst, *args, **kwargs)


os.replace = replace

from resnas.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
