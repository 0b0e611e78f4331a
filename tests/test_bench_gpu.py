"""benchmarks/bench_gpu.py, the one script for the GPU rows, in its tiny CPU form (behaviour, not timing)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"
ROWS = ["precision", "timm", "mfu", "loader", "compile"]
# The GPU machine has torch, timm and accelerate but not these: the script must run without them.
ABSENT = ["optuna", "optuna_integration", "optuna_dashboard", "sklearn"]
RUN = (f"import runpy, sys; sys.modules.update(dict.fromkeys({ABSENT!r})); sys.argv = sys.argv[1:]; "
       "runpy.run_path(sys.argv[0], run_name='__main__')")


def bench_gpu():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def table(report: str) -> dict[str, dict[str, str]]:
    """The report's Markdown table as {row: {column: cell}}."""
    lines = [line for line in report.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split(" | ")]
    return {cells[0]: dict(zip(header, cells)) for cells in
            ([c.strip() for c in line.strip("|").split(" | ")] for line in lines[1:])}


@pytest.mark.slow
def test_quick_cpu_run_reports_every_row_with_numbers(tmp_path):
    report = tmp_path / "report.md"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", RUN, str(SCRIPT), "--device", "cpu", "--quick", "--threads", "1",
                           "--peak-tflops", "0.05", "--report", str(report)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    text = report.read_text()
    rows = table(text)
    assert list(rows) == ROWS
    for key, row in rows.items():
        for column in ("A", "B", "ratio A/B"):
            assert float(row[column].replace(",", "")) > 0, (key, column, row)
    assert rows["mfu"]["unit"] == "TFLOP/s" and "preact_resnet200" in rows["mfu"]["what"]
    assert "GMACs per image" in rows["mfu"]["details"] and "--peak-tflops" in rows["mfu"]["details"]
    assert "compile + first step" in rows["compile"]["details"]
    assert "- device: CPU" in text and "- versions: torch" in text and "- date: " in text
    assert "- command: `python benchmarks/bench_gpu.py --device cpu --quick" in text
    assert "finished in" in text
    assert "| mfu |" in proc.stdout and "report written to" in proc.stdout  # the table and progress, printed


def test_peaks_by_device_name():
    lookup = bench_gpu().lookup_peak
    assert lookup("NVIDIA H100 80GB HBM3")[0] == 989  # SXM
    assert lookup("NVIDIA H100 PCIe")[0] == 756
    assert lookup("NVIDIA H100 NVL")[0] == 835
    assert lookup("NVIDIA H200")[0] == 989
    assert lookup("NVIDIA A100-SXM4-80GB")[0] == lookup("NVIDIA A100 80GB PCIe")[0] == 312
    assert lookup("NVIDIA L40S")[0] == 362 and lookup("NVIDIA L4")[0] == 121 and lookup("NVIDIA L40")[0] is None
    assert lookup("NVIDIA H100 80GB HBM3 MIG 1g.10gb")[0] is None  # a slice: the user gives --peak-tflops


def test_bad_rows_are_refused(capsys):
    with pytest.raises(SystemExit) as e:
        bench_gpu().main(["--device", "cpu", "--rows", "mfu,nope"])
    assert e.value.code == 2 and "nope" in capsys.readouterr().err
