"""``resnas probe`` (resnas/cli/probe.py) at 80 columns: the reference lines wrap, between a spec's fields."""

from resnas.cli import main


def test_probe_output_fits_80_columns_and_the_reference_spec_wraps_between_fields(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")  # issue 24: the ref: line was 151 characters
    assert main(["probe", "original_resnet110"]) == 0
    out = capsys.readouterr().out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    refs = out[out.index("ref: layout="):]
    assert "shortcut=identity," in refs.replace("\n", "") and "gain " in refs
    assert all(not line.rstrip().endswith(("=", "identit")) for line in refs.splitlines())
