"""benchmarks/ground_truth.py: every design x seed x epoch of a tiny grid space, resumable, reproducing resnas's
own training exactly; a space with a range is refused."""

import csv
import importlib.util
import math
from pathlib import Path

import pytest

from resnas.data import load_data
from resnas.recipe import design_seed, search_recipe
from resnas.space import load_space
from resnas.train import train

ROOT = Path(__file__).resolve().parent.parent
SPEC = importlib.util.spec_from_file_location("ground_truth", ROOT / "benchmarks" / "ground_truth.py")
ground_truth = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(ground_truth)

TINY = """\
name: tiny_grid
dataset: digits
sampler: grid
pruner: none
epochs: {min: 1, max: 2}
recipe: {batch_size: 64, warmup_iters: 0}
space:
  layout: cifar
  widths: [[4, 8, 16]]
  unit: [basic]
  depth: [8]
  act: [original, preact]
  shortcut: [identity]
"""


def read(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_table_of_every_design_seed_and_epoch_resumes_and_reproduces_train(tmp_path, capsys):
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(TINY)
    out = tmp_path / "tables" / "tiny"
    argv = [str(space_file), "--seeds", "2", "--output", str(out)]
    assert ground_truth.main(argv) == 0
    header, rows = read(out.with_suffix(".csv"))
    assert header == ["spec", "seed", "epoch", "val_error", "train_loss", "seconds", "params", "macs", "probe_gain"]
    assert len(rows) == 2 * 2 * 2
    assert len({r["spec"] for r in rows}) == 2 and {r["seed"] for r in rows} == {"0", "1"}
    assert all(math.isfinite(float(r[c])) for r in rows for c in header[3:])
    assert "ETA" in capsys.readouterr().out

    def curve(spec, k):
        return [float(r["val_error"]) for r in rows if r["spec"] == spec and r["seed"] == str(k)]

    spec = rows[0]["spec"]
    assert curve(spec, 0) != curve(spec, 1)  # the seeds' runs differ
    space = load_space(out.with_suffix(".yaml"))  # the copy rebuilds the space
    assert [str(s) for s in space.specs(in_chans=1, num_classes=10)] == list(dict.fromkeys(r["spec"] for r in rows))

    # a row's curve is resnas's own training of that design with the seed a search seeded k gives it
    data = load_data("digits")
    result = train(spec, data, 2, search_recipe("digits", space.recipe, 2), seed=design_seed(1))
    assert result.val_error == curve(spec, 1)

    before = out.with_suffix(".csv").read_text()
    assert ground_truth.main(argv) == 0  # resumes: every pair is complete, nothing is trained again
    assert out.with_suffix(".csv").read_text() == before
    assert "0 runs to do" in capsys.readouterr().out


def test_space_with_a_range_is_refused_in_one_line(tmp_path, capsys):
    space_file = tmp_path / "ranged.yaml"
    space_file.write_text(TINY.replace("sampler: grid", "sampler: tpe").replace(
        "shortcut: [identity]", "shortcut: {scaling: {scale: {low: 0.0, high: 1.0}}}"))
    assert ground_truth.main([str(space_file), "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "scaling.scale" in err
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("seeds", ["0"])
def test_seeds_below_one_are_an_argument_error(tmp_path, seeds):
    with pytest.raises(SystemExit) as e:
        ground_truth.main(["default", "--seeds", seeds, "--output", str(tmp_path / "x")])
    assert e.value.code == 2


def test_a_torn_pair_is_dropped_so_that_a_rerun_trains_it_again(tmp_path):
    table = tmp_path / "t.csv"
    row = "{},{},{},0.5,1.0,0.1,10,20,0.3\n"
    table.write_text(",".join(ground_truth.COLUMNS) + "\n" + row.format("a", 0, 1) + row.format("a", 0, 2)
                     + row.format("b", 0, 1))  # b: the crash came after its first epoch's row
    assert ground_truth.complete_pairs(table, 2) == {("a", 0)}
    assert [r["spec"] for r in read(table)[1]] == ["a", "a"]
