"""Ground truth that a search strategy can be replayed against: every design of a space, K seeds, every epoch.

Trains every design of a grid space (a built-in space name or a YAML file whose choices are all lists,
as `sampler: grid` requires; a space with ranges is refused, exit 2) on its data set at the full budget
N (the space's epochs.max unless --epochs), with K seeds, and writes

- NAME.csv: `spec,seed,epoch,val_error,train_loss,seconds,params,macs,probe_gain`, one row per
  design x seed x epoch. `seed` is the ground-truth seed k = 0..K-1; the run is trained exactly as a
  search seeded k trains that design (resnas.objective): training seed `design_seed(k)`, the
  space's recipe via `search_recipe` on the schedule of N epochs, so a search trial of the same design
  and seed reproduces the row's curve (tables committed before the seed left out the design were
  trained with a seed per design: still samples of each design's error, not paired by seed).
  `seconds` is the epoch's training + validation time. `probe_gain`
  is the objective's probe at initialization on one validation batch of 32 with seed k (so it can differ
  between seeds, as it does between searches). A diverged run (status "diverged": a "fail" row of the
  paper) is padded to N epochs at chance error (what the objective scores it), train_loss nan, 0 seconds.
- NAME.yaml: the space's YAML (epochs.max set to N when --epochs changes it), from which a replay
  rebuilds the space and maps a trial's params to spec strings with the space's own `suggest`.

Rows are appended (and flushed) as each (design, seed) run completes; a rerun skips the pairs already
complete in NAME.csv, so an interrupted build resumes. Runs go seed by seed, so a partial table holds
every design at the first seeds.

    python benchmarks/ground_truth.py SPACE --seeds 3 --output benchmarks/tables/NAME
    python benchmarks/ground_truth.py benchmarks/tables/table1_digits.yaml --seeds 3 \\
        --output benchmarks/tables/table1_digits   # resumes (or rebuilds) a committed table
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import torch
import yaml

from resnas.data import load_data
from resnas.network import build
from resnas.objective import PROBE_BATCH
from resnas.probe import probe
from resnas.recipe import design_seed, search_recipe
from resnas.space import SpaceError, load_space, parse_space
from resnas.train import train

COLUMNS = ["spec", "seed", "epoch", "val_error", "train_loss", "seconds", "params", "macs", "probe_gain"]


def space_text(path: str, epochs: int | None) -> str:
    """The space's YAML, with epochs.max = ``epochs`` (and epochs.min capped to it) when that changes it."""
    space = load_space(path)
    text = Path(space.source).read_text()
    if epochs is None or epochs == space.max_epochs:
        return text
    raw = yaml.safe_load(text)
    raw["epochs"] = {"min": min(space.min_epochs, epochs), "max": epochs}
    return yaml.safe_dump(raw, sort_keys=False)


def complete_pairs(csv_path: Path, epochs: int) -> set[tuple[str, int]]:
    """(spec, seed) pairs with all ``epochs`` rows in the table; a torn pair (a crash mid-write) is dropped."""
    if not csv_path.exists():
        return set()
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != COLUMNS:
            raise SystemExit(f"{csv_path}: not a ground-truth table (header {reader.fieldnames})")
        rows = list(reader)
    counts: dict[tuple[str, int], int] = {}
    for r in rows:
        key = (r["spec"], int(r["seed"]))
        counts[key] = counts.get(key, 0) + 1
    done = {key for key, n in counts.items() if n == epochs}
    if len(done) != len(counts):  # rewrite without the torn pairs
        with csv_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader()
            writer.writerows(r for r in rows if (r["spec"], int(r["seed"])) in done)
    return done


def run_one(spec, data, epochs: int, recipe, k: int, batch) -> list[list]:
    """One (design, seed) run as a search seeded ``k`` would run it: probe, then train; its table rows."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(k)  # as Objective.probe
    gain = round(probe(build(spec).to(device), *batch, seed=k).gain, 4)
    result = train(spec, data, epochs, recipe, seed=design_seed(k))
    if result.status not in ("ok", "diverged"):
        raise RuntimeError(f"{spec} seed {k}: {result.status}: {result.reason}")
    rows = [[str(spec), k, e + 1, result.val_error[e], result.train_loss[e], round(result.epoch_seconds[e], 3),
             result.params, result.macs, gain] for e in range(result.epochs)]
    chance = 1.0 - 1.0 / data.num_classes
    rows += [[str(spec), k, e + 1, chance, math.nan, 0.0, result.params, result.macs, gain]
             for e in range(result.epochs, epochs)]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("space", help="a built-in space name or a YAML file; every choice must be a list")
    parser.add_argument("--seeds", type=int, default=3, help="K: seeds per design [3]")
    parser.add_argument("--epochs", type=int, default=None, help="N: the full budget [the space's epochs.max]")
    parser.add_argument("--output", required=True, help="NAME: writes NAME.csv and NAME.yaml")
    parser.add_argument("--data-dir", default=None, help="for data sets that are not embedded (cifar10, ...)")
    args = parser.parse_args(argv)
    if args.seeds < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--seeds and --epochs must be >= 1")
    try:
        text = space_text(args.space, args.epochs)
        space = parse_space(text, source=args.space)
    except SpaceError as e:
        print(f"ground_truth.py: {e}", file=sys.stderr)
        return 2
    try:
        space.grid_points()  # a range has no grid
    except SpaceError as e:
        print(f"ground_truth.py: {args.space}: {e}; a ground truth trains every design, so list every choice "
              "(as a sampler: grid space does)", file=sys.stderr)
        return 2
    out = Path(args.output)
    out = out.with_suffix("") if out.suffix in (".csv", ".yaml") else out
    csv_path, yaml_path = out.with_name(out.name + ".csv"), out.with_name(out.name + ".yaml")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    if yaml_path.exists() and yaml_path.read_text() != text:
        print(f"ground_truth.py: {yaml_path} holds another space (or budget); choose another --output",
              file=sys.stderr)
        return 2
    yaml_path.write_text(text)

    data = load_data(space.dataset, args.data_dir)
    epochs = space.max_epochs
    recipe = search_recipe(data.name, space.recipe, epochs)
    batch = next(iter(data.loader("val", PROBE_BATCH)))  # as Objective.probe
    specs = space.specs(in_chans=data.input_size[0], num_classes=data.num_classes)
    done = complete_pairs(csv_path, epochs)
    todo = [(k, s) for k in range(args.seeds) for s in specs if (str(s), k) not in done]
    print(f"{space.name}: {len(specs)} designs x {args.seeds} seeds x {epochs} epochs on {data.name}; "
          f"{len(todo)} runs to do ({len(specs) * args.seeds - len(todo)} already in {csv_path})", flush=True)
    start = time.perf_counter()
    new = not csv_path.exists()
    with csv_path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(COLUMNS)
        for i, (k, spec) in enumerate(todo, 1):
            rows = run_one(spec, data, epochs, recipe, k, batch)
            writer.writerows(rows)
            f.flush()
            spent = time.perf_counter() - start
            print(f"[{i}/{len(todo)}] seed {k} {spec}: val error {rows[-1][3]:.4f}, "
                  f"{sum(r[5] for r in rows):.1f} s; ETA {spent / i * (len(todo) - i):.0f} s", flush=True)
    n = csv_path.read_text().count("\n") - 1
    print(f"{csv_path}: {n} rows, {csv_path.stat().st_size / 1024:.1f} KiB; built in "
          f"{time.perf_counter() - start:.1f} s this run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
