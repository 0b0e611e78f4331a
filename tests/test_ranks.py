"""resnas.ranks: a process of a launch ends at once (no interpreter finalization, where gloo's worker threads
aborted a rank), its output flushed and its exit code kept; outside a launch nothing changes."""

import os
import subprocess
import sys

from resnas.ranks import end_process

RANK = """
import sys, threading, torch.distributed
from resnas.ranks import end_process
print("written before the end")  # a pipe: block-buffered, lost by os._exit unless flushed
threading.Thread(target=lambda: threading.Event().wait(), daemon=False).start()  # finalization would wait forever
end_process(int(sys.argv[1]))
print("after the end")
"""


def _rank(code: int, world_size: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, WORLD_SIZE=world_size)
    return subprocess.run([sys.executable, "-c", RANK, str(code)], env=env, capture_output=True, text=True, timeout=120)


def test_a_process_of_a_launch_ends_at_once_with_its_code_and_its_output():
    done = _rank(3, world_size="2")
    assert (done.returncode, done.stdout) == (3, "written before the end\n"), done.stderr


def test_outside_a_launch_the_code_is_returned():
    assert end_process(0) == 0 and end_process(2) == 2  # this pytest process goes on
