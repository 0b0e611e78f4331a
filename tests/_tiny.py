"""The tiny digits search of several test files (study 'tiny'): its spaces and how to run and read it."""

import optuna
from optuna.trial import TrialState

from resnas.cli import main

TINY = """
name: tiny
dataset: digits
sampler: tpe
pruner: hyperband
epochs: {min: 1, max: 3}
trials: 4
seed: 3
recipe: {batch_size: 128, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  act: [original, preact]
  shortcut: {identity: {}, scaling: {scale: [0.5, 1.0]}}
"""


GRID = TINY.replace("sampler: tpe", "sampler: grid").replace("pruner: hyperband", "pruner: none")


# every candidate has a float parameter: two draws alike would mean a sampler repeated itself
SCALED = TINY.replace("shortcut: {identity: {}, scaling: {scale: [0.5, 1.0]}}",
                      "shortcut: {scaling: {scale: {low: 0.1, high: 1.0}}}")


def _study(db, name="tiny"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def _ran(trials):
    """The trials that ran: two workers that ask as the grid's queue runs empty leave one trial that ends
    unrun (status surplus, FAIL, no params; resnas.workers)."""
    surplus = [t for t in trials if t.user_attrs.get("status") == "surplus"]
    assert all(t.state == TrialState.FAIL and not t.params for t in surplus)
    return [t for t in trials if t not in surplus]


def _search(space, db, *extra):
    return main(["search", "--space", str(space), "--storage", f"sqlite:///{db}", "--confirm", "0", *extra])
