"""benchmarks/proxies.py on a synthetic table: Spearman of probe gain, params, MACs against final error."""

import csv
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

from resnas.space import load_space

ROOT = Path(__file__).resolve().parent.parent
SPACE = """\
name: proxy
description: a synthetic proxies table (6 designs)
dataset: digits
sampler: grid
pruner: none
objectives: [val_error]
epochs: {min: 1, max: 2}
space:
  layout: cifar
  widths: [[4, 8, 16]]
  unit: [basic]
  depth: [8]
  act: [preact, original, bn_after_add]
  shortcut:
    identity: {}
    conv1x1: {}
"""


def _load(name):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


proxies = _load("proxies")


@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    """Design i: final error 0.1 i (+ seed noise), gain 0.5 i (rank-perfect), params rising with i except
    the last two swapped, MACs constant."""
    folder = tmp_path_factory.mktemp("proxies")
    (folder / "proxy.yaml").write_text(SPACE)
    specs = [str(s) for s in load_space(folder / "proxy.yaml").specs(in_chans=1, num_classes=10)]
    params = [100, 200, 300, 400, 600, 500]
    with (folder / "proxy.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["spec", "seed", "epoch", "val_error", "train_loss", "seconds", "params", "macs", "probe_gain"])
        for i, s in enumerate(specs):
            for k in range(2):
                for epoch in (1, 2):
                    w.writerow([s, k, epoch, 0.1 * i + 0.01 * k + 0.1 * (2 - epoch), 1.0, 0.1, params[i], 5000,
                                0.5 * i + 0.01 * k])
    return folder / "proxy.csv", specs


def test_spearman_of_each_predictor(table_path):
    table = proxies.replay.load_table(table_path[0])
    rows = {r.predictor.split(" (")[0]: r for r in
            proxies.measure(table, proxies.read_sizes(table_path[0]), ref_gain=1.0)}
    assert rows["probe gain"].n == 6 and rows["probe gain"].rho == pytest.approx(1.0)
    assert rows["probe gain"].p < 0.01
    # distance from 1.0: designs 2 (gain 1.0), 1 and 3 (0.5 away), 0 and 4, 5: not monotone in the error
    assert rows["abs(gain - ref)"].rho < 1.0
    assert rows["params"].rho == pytest.approx(1 - 6 * 2 / (6 * 35))  # one swapped pair
    assert math.isnan(rows["MACs"].rho)  # constant: undefined, not 0


def test_reference_gain_is_probed_as_the_search_probes(table_path):
    table = proxies.replay.load_table(table_path[0])
    ref = proxies.reference_spec(table)
    assert "act=preact" in ref and "shortcut=identity" in ref
    mean, each = proxies.compute_reference_gain(table, seeds=2)
    from resnas.data import load_data
    from resnas.network import build
    from resnas.probe import probe
    from resnas.spec import ArchSpec
    batch = next(iter(load_data("digits").loader("val", 32)))
    torch.manual_seed(1)
    assert each[1] == probe(build(ArchSpec.parse(ref)), *batch, seed=1).gain
    assert mean == pytest.approx(sum(each) / 2) and each[0] != each[1]


def test_main_prints_the_table(table_path, capsys):
    assert proxies.main([str(table_path[0]), "--reference-gain", "1.0"]) == 0
    out = capsys.readouterr().out
    assert "| predictor | n | Spearman rho | p |" in out
    assert "| probe gain | 6 | +1.000 |" in out and "Reference gain 1.0000 (given)" in out
