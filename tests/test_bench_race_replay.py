"""benchmarks/race_replay.py on a synthetic 6-seed table: the race finds the best and claims nothing false."""

import csv
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import race_replay  # noqa: E402

SPACE = """\
name: synth6
description: a synthetic race table (4 designs x 6 seeds)
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
  act: [preact, original]
  shortcut:
    identity: {}
    conv1x1: {}
"""
SEEDS = 6


@pytest.fixture
def table_path(tmp_path):
    from resnas.space import load_space

    (tmp_path / "synth6.yaml").write_text(SPACE)
    specs = [str(s) for s in load_space(tmp_path / "synth6.yaml").specs(in_chans=1, num_classes=10)]
    paper = next(s for s in specs if "act=preact," in s and "shortcut=identity," in s)
    others = [s for s in specs if s != paper]
    # the paper's unit is clearly the best; the others differ by seed noise around 0.2-0.4
    finals = {paper: [0.05, 0.06, 0.055, 0.052, 0.058, 0.054],
              **{s: [0.2 * (i + 1) + 0.01 * (k % 3) for k in range(SEEDS)] for i, s in enumerate(others)}}
    with (tmp_path / "synth6.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["spec", "seed", "epoch", "val_error", "train_loss", "seconds", "params", "macs",
                         "probe_gain"])
        for s, errors in finals.items():
            for k, final in enumerate(errors):
                for epoch in (1, 2):
                    writer.writerow([s, k, epoch, final + 0.1 * (2 - epoch), 1.0, 0.1, 1000, 10000, 1.0])
    return tmp_path / "synth6.csv"


def test_race_replay_reports_a_right_winner_and_no_false_claim(table_path, capsys):
    assert race_replay.main([str(table_path), "--seeds", "20"]) == 0
    out = capsys.readouterr().out
    assert "Race replay of synth6: 4 designs, 6 seeds at most, 20 replays" in out
    row = next(line for line in out.splitlines() if line.startswith("| 1.000 |"))
    # 3 entrants (the paper's unit among them) x 3 seeds: the first look ends every race
    assert "| 0/40 (0.000) | 0.000 | 0 | 9 (0.50) | one remains 1.00 | 1.00 of 20 |" in row


def test_race_replay_skips_a_table_with_too_few_seeds(table_path, capsys):
    assert race_replay.main([str(table_path), "--min-seeds", "7"]) == 0
    assert "synth6: 6 seeds per design, fewer than 7: skipped" in capsys.readouterr().out
