"""benchmarks/bench_overhead.py --quick runs end to end and prints a row per storage with a numeric overhead.

A behaviour check, not a timing threshold: the machine running the suite is too busy for one. The
PostgreSQL row needs RESNAS_TEST_POSTGRES (.ci/postgres); in CI a missing server is a failure.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_overhead.py"
# storage, trials, wall, epochs, overhead, goal, seconds attr, wall - seconds
ROW = re.compile(r"^(\S+)\s+(\d+)\s+([\d.]+) s\s+([\d.]+) s\s+(-?[\d.]+) s\s+(yes|NO)\s+([\d.]+) s\s+(-?[\d.]+) s$")


def test_quick_prints_a_row_per_storage(tmp_path):
    postgres = os.environ.get("RESNAS_TEST_POSTGRES")
    if not postgres and os.environ.get("CI"):
        pytest.fail("CI must start PostgreSQL first: eval \"$(.ci/postgres)\"")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(BENCH), "--quick", "--threads", "1"], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {m[1]: m for m in map(ROW.match, run.stdout.splitlines()) if m}
    expected = ["sqlite", "journal"] + (["postgresql"] if postgres else [])
    assert sorted(rows) == sorted(expected), run.stdout
    for name in expected:
        row = rows[name]
        assert int(row[2]) == 2  # --quick: 2 trials, 1 round
        wall, epochs, overhead = float(row[3]), float(row[4]), float(row[5])
        assert wall > 0 and epochs > 0
        assert overhead == pytest.approx(wall - epochs, abs=0.01)  # two trials: every median is a mean
        assert row[6] == ("yes" if overhead < 0.5 else "NO")
    if not postgres:
        assert re.search(r"^postgresql\s+not run", run.stdout, re.M), run.stdout
    assert "garbage collection" in run.stdout and "storage calls" in run.stdout  # the breakdown
    assert list(tmp_path.iterdir()) == []  # artifacts and databases went to a temporary folder
