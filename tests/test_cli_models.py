"""``resnas models`` and ``resnas summary`` (resnas/cli/models.py) at 80 columns: specs wrap between fields,
and a command a user copies stands on one line."""

import pytest

from resnas.cli import main
from resnas.zoo import ZOO


@pytest.fixture
def columns_80(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")


def test_models_wraps_specs_between_fields_and_lists_resnas_spec(columns_80, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out  # issue 24: `unit=bottle|neck`, `shortcut=identit|y`, no resnas_spec
    assert all(len(line) <= 80 for line in out.splitlines()), out
    cells = [line.split("│")[2].strip() for line in out.splitlines() if line.count("│") == 4]
    shown = {field for cell in cells for field in cell.rstrip(",").split(",")}  # the fields as printed whole
    assert all(set(str(spec).split(",")) <= shown for spec in ZOO.values()), sorted(shown)
    assert "resnas_spec" in out


def test_summary_prints_its_timm_call_whole_on_one_line(columns_80, capsys):
    spec = "depth=20,unit=basic,act=original,shortcut=exclusive_gate,gate_bias=-6"
    assert main(["summary", spec]) == 0
    out = capsys.readouterr().out  # issue 24: the row wrapped inside the quoted spec, copied it was broken
    calls = [line for line in out.splitlines() if "timm.create_model(" in line]
    assert len(calls) == 1 and calls[0].strip().endswith("')")
    assert "spec='layout=cifar,depth=20,unit=basic,act=original" in calls[0]
