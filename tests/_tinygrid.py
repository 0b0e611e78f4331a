"""The tiny digits grid of several test files (study 'tinygrid', seed 5), its TPE form, and how to run and read it."""

import optuna

from resnas.cli import main

GRID = """
name: tinygrid
dataset: digits
sampler: grid
pruner: none
epochs: {min: 1, max: 2}
seed: 5
recipe: {batch_size: 128, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  act: [original, preact]
  shortcut: {identity: {}, scaling: {scale: [0.5]}}
"""


def _study(db, name="tinygrid"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def _search(tmp_path, db, *extra, text=GRID):
    space = tmp_path / "space.yaml"
    space.write_text(text)
    return main(["search", "--space", str(space), "--storage", f"sqlite:///{db}", *extra])


TPE = GRID.replace("sampler: grid", "sampler: tpe").replace("scale: [0.5]", "scale: {low: 0.1, high: 1.0}") \
    .replace("epochs: {min: 1, max: 2}", "epochs: {min: 1, max: 3}")
