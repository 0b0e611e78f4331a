"""Time per trial outside training (storage, sampler, probe, build, logging, artifacts) per Optuna storage.

Each run is a real ``resnas.runners.run_search``, the code path of ``resnas search``: TPE sampler,
Hyperband pruner, the probe of every candidate, per-epoch reports and user attributes, epoch
checkpoints, the top-3 weights as artifacts and the study's note, on digits with a tiny candidate
(ResNet-8, widths 4-8-16). Storages: SQLite, journal file, and PostgreSQL (``--postgres URL`` or
``RESNAS_TEST_POSTGRES``; the row says "not run" without one). Storages are interleaved within each
round (the same seed and trials on each), a fresh study per round, after an untimed warm-up run each.

Per trial, from one optimize callback to the next: wall time, the epochs proper (``train_epoch`` +
``evaluate``) and the trainer's ``seconds`` user attribute (TrainResult.seconds, which also holds
the per-epoch reports, pruning checks and checkpoints). Overhead = wall - epochs; the goal is a
median below 0.5 s. A second table splits the mean trial into exclusive parts (timers wrapped around
resnas and Optuna functions in this process; nothing else changes), and the per-run fixed costs.

    python benchmarks/bench_overhead.py                        # SQLite + journal (+ PostgreSQL from env)
    eval "$(.ci/postgres)" && python benchmarks/bench_overhead.py --trials 20 --rounds 3
    python benchmarks/bench_overhead.py --postgres postgresql://postgres@127.0.0.1:5432/resnas
    python benchmarks/bench_overhead.py --quick                # smoke test: 2 trials per storage
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import inspect
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import optuna
import torch

import resnas.objective as ro
import resnas.runners as rr
import resnas.study as rs
import resnas.train as rt
from resnas.config import Search
from resnas.record import TrialRecord
from resnas.space import parse_space

GOAL = 0.5  # seconds of overhead per trial
SPACE = """
name: overhead
description: A tiny ResNet-8 on digits, to time what a trial costs besides training.
dataset: digits
sampler: tpe
pruner: hyperband
objectives: [val_error]
epochs: {{min: 1, max: {epochs}}}
recipe: {{batch_size: 64, warmup_iters: 0}}
space:
  layout: cifar
  widths: [[4, 8, 16]]
  unit: [basic]
  depth: [8]
  act: [original, preact]
  shortcut:
    identity: {{}}
    scaling: {{scale: {{low: 0.5, high: 1.0}}, f_scale: [0.5, 1.0]}}
    exclusive_gate: {{gate_bias: {{low: -8.0, high: 0.0, step: 1.0}}}}
"""
# exclusive parts of a trial, in the order printed; "rest" is the wall time none of them claims
PARTS = {
    "epochs": "epochs proper (train_epoch + evaluate)",
    "sampler": "sampler (TPE)",
    "storage": "storage calls",
    "probe": "probe (build + gradient at init)",
    "trainer setup": "trainer setup (Accelerator, build, MACs, loaders)",
    "checkpoints": "epoch checkpoints",
    "pruner": "pruner (Hyperband)",
    "weights": "top-3 check + weights (export, upload)",
    "objective": "objective rest (suggest, attrs)",
    "gc": "garbage collection",
}
FIXED = {"load data": "load data", "open study": "open study (storage, create, attrs)", "prepare": "prepare",
         "note": "note (optuna-dashboard)"}


class Meter:
    """Exclusive timers: time inside a nested timer counts for the inner one only."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.spans: dict[str, float] = defaultdict(float)  # inclusive, for the per-run steps
        self.detail: dict[str, float] = defaultdict(float)  # inclusive, per storage method (outermost calls)
        self.local = threading.local()

    def _stack(self) -> list:
        if not hasattr(self.local, "stack"):
            self.local.stack = []
        return self.local.stack

    def enter(self, part: str) -> None:
        self._stack().append([part, time.perf_counter(), 0.0])

    def exit(self, detail: str | None = None) -> None:
        stack = self._stack()
        part, start, inner = stack.pop()
        elapsed = time.perf_counter() - start
        key = part if threading.current_thread() is threading.main_thread() else f"{part} (other threads)"
        self.totals[key] += elapsed - inner
        if stack:
            stack[-1][2] += elapsed
        if all(p != part for p, *_ in stack):
            self.calls[key] += 1
            if detail is not None and key == part:
                self.detail[f"{part}: {detail}"] += elapsed

    def wrap(self, fn, part: str, detail: str | None = None):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self.enter(part)
            try:
                return fn(*args, **kwargs)
            finally:
                self.exit(detail)

        return timed

    def span(self, fn, key: str):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spans[key] += time.perf_counter() - start

        return timed

    def on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.enter("gc")
        else:
            self.exit()

    def snapshot(self) -> dict[str, dict]:
        return dict(totals=dict(self.totals), calls=dict(self.calls), detail=dict(self.detail))


def instrument_methods(meter: Meter, obj, part: str, names=None) -> None:
    """Time the methods of one object (instance attributes shadow its class's; isinstance is unchanged)."""
    if getattr(obj, "_bench_timed", False):
        return
    for name in names or dir(type(obj)):
        if name.startswith("__") or isinstance(inspect.getattr_static(obj, name, None), property):
            continue
        method = getattr(obj, name, None)
        if inspect.ismethod(method):
            setattr(obj, name, meter.wrap(method, part, name))
    obj._bench_timed = True


@contextlib.contextmanager
def instrumented(meter: Meter):
    """Timers around the pieces of a search; every original is put back afterwards."""
    patches = []

    def patch(owner, name, replacement) -> None:
        patches.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    def timed(owner, name, part):
        patch(owner, name, meter.wrap(getattr(owner, name), part))

    def open_storage(*args, **kwargs):
        storage = original_open_storage(*args, **kwargs)
        instrument_methods(meter, storage, "storage")
        return storage

    def open_study(search):
        study = original_open_study(search)
        instrument_methods(meter, study._storage, "storage")  # Optuna's cache in front of an RDB storage
        return study

    def make_sampler(*args, **kwargs):
        sampler = original_make_sampler(*args, **kwargs)
        instrument_methods(meter, sampler, "sampler", ("infer_relative_search_space", "sample_relative",
                                                       "sample_independent", "before_trial", "after_trial"))
        return sampler

    def make_pruner(*args, **kwargs):
        pruner = original_make_pruner(*args, **kwargs)
        instrument_methods(meter, pruner, "pruner", ("prune",))
        return pruner

    original_open_storage, original_open_study = rs.open_storage, rr.open_study
    original_make_sampler, original_make_pruner = rs.make_sampler, rs.make_pruner
    patch(rs, "open_storage", open_storage)
    patch(rr, "open_study", meter.span(open_study, "open study"))
    patch(rs, "make_sampler", make_sampler)
    patch(rs, "make_pruner", make_pruner)
    for name, key in (("load_data", "load data"), ("prepare", "prepare"), ("write_note", "note")):
        patch(rr, name, meter.span(getattr(rr, name), key))
    timed(ro, "train", "trainer setup")
    for name, part in (("train_epoch", "epochs"), ("evaluate", "epochs"), ("save_checkpoint", "checkpoints")):
        timed(rt, name, part)
    for name, part in (("_run", "objective"), ("probe", "probe")):
        timed(ro.Objective, name, part)
    for name in ("ranks_top", "keep_weights"):
        timed(ro, name, "weights")
    gc.callbacks.append(meter.on_gc)
    try:
        yield
    finally:
        gc.callbacks.remove(meter.on_gc)
        for owner, name, original in reversed(patches):
            setattr(owner, name, original)


def run_once(meter: Meter, space, url: str, study: str, trials: int, seed: int) -> dict:
    """One run_search of ``trials`` trials; per-trial records and the run's fixed costs."""
    records, last = [], {}

    def on_trial(study_, frozen) -> None:  # after tell and gc: the trial's interval ends here
        now, snap = time.perf_counter(), meter.snapshot()
        diff = {kind: {k: v - last["snap"][kind].get(k, 0) for k, v in values.items()} for kind, values in snap.items()}
        records.append(dict(wall=now - last["time"], parts=diff["totals"], calls=diff["calls"], detail=diff["detail"],
                            state=frozen.state.name, seconds=TrialRecord.from_trial(frozen).seconds))
        last.update(time=now, snap=snap)

    original_optimize = optuna.Study.optimize

    def optimize(self, *args, **kwargs):
        last.update(snap=meter.snapshot(), time=time.perf_counter(), start=time.perf_counter())
        try:
            return original_optimize(self, *args, **kwargs)
        finally:
            last["end"] = time.perf_counter()

    search = Search(space, storage=url, study_name=study, trials=trials, seed=seed, confirm=0)
    before = dict(meter.spans)
    optuna.Study.optimize = optimize
    try:
        t0 = time.perf_counter()
        rr.run_search(search, rr.Progress(callbacks=(on_trial,)))
        wall = time.perf_counter() - t0
    finally:
        optuna.Study.optimize = original_optimize
    after = dict(meter.spans)
    fixed = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in FIXED}
    return dict(records=records, wall=wall, optimize=last["end"] - last["start"], fixed=fixed)


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(seconds: float | None, width: int = 9) -> str:
    return f"{'-':>{width}}" if seconds is None else f"{seconds:{width - 2}.3f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per run (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per storage, interleaved (default 3)")
    parser.add_argument("--epochs", type=int, default=2, help="maximum epochs per candidate (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--postgres", help="postgresql://... URL (default: $RESNAS_TEST_POSTGRES)")
    parser.add_argument("--quick", action="store_true", help="2 trials, 1 round, one warm-up: a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.rounds = 2, 1
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # as `resnas search` does
    space = parse_space(SPACE.format(epochs=args.epochs), source="bench_overhead.py")
    postgres = args.postgres or os.environ.get("RESNAS_TEST_POSTGRES")
    tag = uuid.uuid4().hex[:8]
    meter = Meter()
    home = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="resnas-overhead-") as tmp, instrumented(meter):
        storages = {"sqlite": f"sqlite:///{Path(tmp) / 'bench.db'}", "journal": f"journal:///{Path(tmp) / 'bench.log'}"}
        skipped = {}
        if postgres:
            storages["postgresql"] = postgres
        else:
            skipped["postgresql"] = "not run: no --postgres URL and RESNAS_TEST_POSTGRES is not set"
        studies = {name: [] for name in storages}
        os.chdir(tmp)  # a PostgreSQL study keeps its artifacts in ./resnas-artifacts
        try:
            for i, (name, url) in enumerate(list(storages.items())):  # untimed: imports, schema, caches
                try:
                    if args.quick and i > 0:  # a smoke test: opening checks the storage, imports its driver
                        rs.open_storage(url)
                        continue
                    studies[name].append(f"overhead-{tag}-warmup")
                    run_once(meter, space, url, studies[name][-1], trials=1 if args.quick else 2, seed=99)
                except rs.StudyError as e:
                    skipped[name] = f"not run: {e}"
                    del storages[name]
            names = list(storages)
            runs = {name: [] for name in names}
            for r in range(args.rounds):
                for name in names[r % len(names):] + names[:r % len(names)]:  # rotated
                    studies[name].append(f"overhead-{tag}-r{r}")
                    runs[name].append(run_once(meter, space, storages[name], studies[name][-1], args.trials, seed=r))
        finally:
            os.chdir(home)
            if "postgresql" in storages:  # leave the shared database as it was
                for study in studies["postgresql"]:
                    with contextlib.suppress(KeyError):
                        optuna.delete_study(study_name=study, storage=postgres)
    report(args, runs, skipped)


def report(args, runs: dict[str, list[dict]], skipped: dict[str, str]) -> None:
    print(f"overhead per trial: resnas.runners.run_search on digits, ResNet-8 widths 4-8-16, TPE + Hyperband, "
          f"1-{args.epochs} epochs; {args.trials} trials x {args.rounds} rounds per storage, interleaved; "
          f"{torch.get_num_threads()} torch thread(s); medians over trials")
    print(f"{'storage':17s} {'trials':>6s} {'wall/trial':>10s} {'epochs/trial':>12s} {'overhead':>10s} "
          f"{'goal <' + str(GOAL) + ' s':>10s} {'seconds attr':>12s} {'wall-seconds':>12s}")
    for name, rows in runs.items():
        trials = [t for run in rows for t in run["records"]]
        wall = [t["wall"] for t in trials]
        epochs = [t["parts"].get("epochs", 0.0) for t in trials]
        over = [w - e for w, e in zip(wall, epochs)]
        attr = [t["seconds"] for t in trials if t["seconds"] is not None]
        brief = [t["wall"] - t["seconds"] for t in trials if t["seconds"] is not None]
        median = statistics.median(over)
        print(f"{name:17s} {len(trials):6d} {fmt(statistics.median(wall), 10)} {fmt(statistics.median(epochs), 12)} "
              f"{fmt(median, 10)} {'yes' if median < GOAL else 'NO':>10s} {fmt(median_or_none(attr), 12)} "
              f"{fmt(median_or_none(brief), 12)}")
    for name, why in skipped.items():
        print(f"{name:17s} {why}")
    print("overhead = wall - epochs proper (all but train_epoch + evaluate); seconds attr = TrainResult.seconds, "
          "which also holds the per-epoch reports, pruning checks and checkpoints")
    if not runs:
        return
    names = list(runs)
    print()
    print("where a trial's time goes: mean ms per trial, exclusive parts (they add up to the wall time)")
    widths = [max(10, len(n) + 2) for n in names]
    print(f"{'':52s}" + "".join(f"{n:>{w}s}" for n, w in zip(names, widths)))

    def row(text: str, values: list[float]) -> None:
        print(f"  {text:50s}" + "".join(f"{v:{w}.1f}" for v, w in zip(values, widths)))

    means = {}
    for name in names:
        trials = [t for run in runs[name] for t in run["records"]]
        parts = defaultdict(float)
        for t in trials:
            for k, v in t["parts"].items():
                parts[k] += v / len(trials)
        parts["wall"] = statistics.fmean(t["wall"] for t in trials)
        parts["calls"] = statistics.fmean(t["calls"].get("storage", 0) for t in trials)
        parts["threads"] = sum(v for k, v in parts.items() if k.endswith("(other threads)"))
        parts["seconds"] = statistics.fmean(t["seconds"] for t in trials if t["seconds"] is not None)
        parts["optimize"] = statistics.fmean(run["optimize"] / len(run["records"]) for run in runs[name])
        parts["run"] = statistics.fmean(run["wall"] / len(run["records"]) for run in runs[name])
        means[name] = parts
    for key, label in PARTS.items():
        row(label, [1e3 * means[n].get(key, 0.0) for n in names])
    row("optuna and the rest (ask, tell, heartbeat, ...)",
        [1e3 * (means[n]["wall"] - sum(means[n].get(k, 0.0) for k in PARTS)) for n in names])
    row("= wall per trial", [1e3 * means[n]["wall"] for n in names])
    row("overhead: wall - epochs proper", [1e3 * (means[n]["wall"] - means[n].get("epochs", 0.0)) for n in names])
    row("optimize wall / N - mean seconds attr", [1e3 * (means[n]["optimize"] - means[n]["seconds"]) for n in names])
    row("storage calls per trial (count)", [means[n]["calls"] for n in names])
    row("storage in the heartbeat thread (overlaps)", [1e3 * means[n]["threads"] for n in names])
    methods = defaultdict(lambda: defaultdict(float))  # the costliest storage methods, inclusive
    for name in names:
        trials = [t for run in runs[name] for t in run["records"]]
        for t in trials:
            for k, v in t["detail"].items():
                if k.startswith("storage: "):
                    methods[k.removeprefix("storage: ")][name] += v / len(trials)
    top = sorted(methods, key=lambda m: -max(methods[m].values()))[:6]
    for method in top:
        row(f"  of which {method}", [1e3 * methods[method][n] for n in names])
    print()
    print("per run, once (mean ms), and the whole run_search wall / N")
    for key, label in FIXED.items():
        row(label, [1e3 * statistics.fmean(run["fixed"][key] for run in runs[n]) for n in names])
    row("all of run_search outside optimize", [1e3 * statistics.fmean(run["wall"] - run["optimize"] for run in runs[n])
                                               for n in names])
    row("run_search wall / N - mean seconds attr", [1e3 * (means[n]["run"] - means[n]["seconds"]) for n in names])


if __name__ == "__main__":
    main()
