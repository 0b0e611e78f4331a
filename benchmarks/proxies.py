"""How well do cheap proxies rank designs? Spearman of probe gain, params and MACs against final error.

For a ground-truth table (``NAME.csv`` + ``NAME.yaml``, see benchmarks/replay.py) every design's true
mean final error (mean over its seeds of the final-epoch error; a diverged run counts as chance, as
in the replay) is set beside three predictors known before training:

- ``probe gain``: the mean over the design's seeds of its recorded probe gain (log10 of the gradient
  norm ratio between the first and the last unit at initialization), and ``abs(gain - ref)``, its
  distance in decades from the reference net's gain (the identity, full pre-activation net of the
  space's deepest design: read from the table when it holds that net, else ``--reference-gain``, else
  computed with ``--compute-reference``);
- ``params`` and ``MACs``: the table's columns (constant over seeds).

Each row reports n (designs), Spearman rho (``scipy.stats.spearmanr``) and its two-sided p value.

    python benchmarks/proxies.py benchmarks/tables/default_digits.csv
    python benchmarks/proxies.py benchmarks/tables/table1_digits.csv --compute-reference

``--compute-reference`` probes the reference net as the search (and benchmarks/ground_truth.py)
does: ``torch.manual_seed(k); probe(build(spec), *batch, seed=k).gain`` on the first validation
batch of 32 of the space's data set, averaged over k = 0 .. ``--reference-seeds`` - 1.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import replay  # noqa: E402  (benchmarks/replay.py: the table and its ground truth)

from resnas.probe import reference  # noqa: E402
from resnas.spec import ArchSpec  # noqa: E402


@dataclass
class Row:
    predictor: str
    n: int
    rho: float
    p: float


def reference_spec(table: replay.Table) -> str:
    """The identity, full pre-activation net of the table's deepest design (its spec string)."""
    deepest = max(table.specs, key=lambda s: ArchSpec.parse(s).depth)
    return str(reference(ArchSpec.parse(deepest)))


def compute_reference_gain(table: replay.Table, seeds: int = 5) -> tuple[float, list[float]]:
    """The reference net's probe gain, probed as the search probes (mean over k = 0..seeds-1, and each)."""
    import torch

    from resnas.data import load_data
    from resnas.network import build
    from resnas.objective import PROBE_BATCH
    from resnas.probe import probe

    data = load_data(table.space.dataset)
    batch = next(iter(data.loader("val", PROBE_BATCH)))
    spec = ArchSpec.parse(reference_spec(table)).replace(in_chans=data.input_size[0],
                                                         num_classes=data.num_classes)
    gains = []
    for k in range(seeds):
        torch.manual_seed(k)
        gains.append(probe(build(spec), *batch, seed=k).gain)
    return float(statistics.fmean(gains)), gains


def read_sizes(path: Path) -> dict[str, tuple[float, float]]:
    """params and MACs per design (from the table's first row of it)."""
    sizes: dict[str, tuple[float, float]] = {}
    with path.with_suffix(".csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if row["spec"] not in sizes and row.get("params") not in (None, ""):
                sizes[row["spec"]] = (float(row["params"]), float(row["macs"]))
    return sizes


def spearman(xs: list[float], ys: list[float]) -> tuple[float, float]:
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return math.nan, math.nan
    r = stats.spearmanr(xs, ys)
    return float(r.statistic), float(r.pvalue)


def measure(table: replay.Table, sizes: dict[str, tuple[float, float]], ref_gain: float | None) -> list[Row]:
    truth = replay.ground_truth(table)
    specs = list(table.specs)
    gains = {}
    for s in specs:
        values = [table.gains[(s, k)] for k in table.seeds[s] if (s, k) in table.gains]
        values = [v for v in values if math.isfinite(v)]
        if values:
            gains[s] = statistics.fmean(values)
    rows = []
    with_gain = [s for s in specs if s in gains]
    predictors = [("probe gain", with_gain, [gains[s] for s in with_gain])]
    if ref_gain is not None:
        predictors.append((f"abs(gain - ref) (ref {ref_gain:.4f})", with_gain,
                           [abs(gains[s] - ref_gain) for s in with_gain]))
    with_size = [s for s in specs if s in sizes]
    predictors += [("params", with_size, [sizes[s][0] for s in with_size]),
                   ("MACs", with_size, [sizes[s][1] for s in with_size])]
    for name, subset, xs in predictors:
        ys = [truth.means[s] for s in subset]
        rho, p = spearman(xs, ys)
        rows.append(Row(name, len(subset), rho, p))
    return rows


def report(name: str, table: replay.Table, rows: list[Row], ref_note: str) -> str:
    lines = [f"## Proxies on {name}: {len(table.specs)} designs, {table.max_epochs} epochs", "",
             f"Spearman correlation of each predictor with the design's true mean final error (over its "
             f"seeds; a diverged run counts as chance). {ref_note}", "",
             "| predictor | n | Spearman rho | p |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.predictor} | {r.n} | {r.rho:+.3f} | {r.p:.2g} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", help="NAME.csv (with NAME.yaml beside it)")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--reference-gain", type=float, default=None,
                        help="the reference net's gain [the table's reference net]")
    parser.add_argument("--compute-reference", action="store_true",
                        help="probe the reference net when the table lacks it")
    parser.add_argument("--reference-seeds", type=int, default=5, help="seeds k for --compute-reference [5]")
    args = parser.parse_args(argv)
    table = replay.load_table(args.table, num_classes=args.num_classes)
    ref_gain, note = args.reference_gain, ""
    if ref_gain is not None:
        note = f"Reference gain {ref_gain:.4f} (given)."
    else:
        ref_gain = replay.reference_gain(table)
        if ref_gain is not None:
            note = f"Reference gain {ref_gain:.4f}: `{reference_spec(table)}` in the table."
        elif args.compute_reference:
            ref_gain, each = compute_reference_gain(table, args.reference_seeds)
            note = (f"Reference gain {ref_gain:.4f}: `{reference_spec(table)}` probed with seeds "
                    f"0..{args.reference_seeds - 1} ({', '.join(f'{g:.4f}' for g in each)}).")
        else:
            note = "No reference net in the table (give --reference-gain or --compute-reference)."
    print(report(Path(args.table).stem, table, measure(table, read_sizes(Path(args.table)), ref_gain), note), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
