"""benchmarks/bench_search.py --quick runs end to end and prints its table (behaviour, not timing)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRACTION = r"(\d+\.\d\d|never)"


def test_bench_search_quick_prints_fractions_and_grid_ranking():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_search.py"), "--quick", "--threads", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    # one row per seed and a median row: to-winner fraction, same winner, total fraction, for both runs
    row = rf"{FRACTION}\s+(yes|no)\s+\d+\.\d\d \|\s+{FRACTION}\s+(yes|no)\s+\d+\.\d\d\s+\d+"
    assert any(re.match(rf"\s*0\s+\S.*\|\s+{row}$", line) for line in lines), run.stdout
    assert any(re.match(rf"median\s.*\|\s+{FRACTION}\s+\d/1\s+\d+\.\d\d \|", line) for line in lines), run.stdout
    assert sum(line.startswith("goal (median to-winner <= 1/3") for line in lines) == 2
    # Hyperband's trials retrace the grid's runs of the same designs, epoch by epoch
    reproduced = next(line for line in lines if line.startswith("reproduced:"))
    done, checked = map(int, re.match(r"reproduced: (\d+) of (\d+)", reproduced).groups())
    assert done == checked > 0
    # the grid ranking: all 10 designs of the table2 space, sorted by validation error
    start = next(i for i, line in enumerate(lines) if line.startswith("grid ranking"))
    ranking = [re.match(r"\s+((?:basic-8|bottleneck-11) \w+)\s+-?\d+\.\d\d\s+(\d\.\d{4})\*?\s+\d\.\d{4}$", line)
               for line in lines[start + 2:start + 12]]
    assert all(ranking), lines[start:]
    assert len({m.group(1) for m in ranking}) == 10
    errors = [float(m.group(2)) for m in ranking]
    assert errors == sorted(errors)
