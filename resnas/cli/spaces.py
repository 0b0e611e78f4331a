"""``resnas spaces``: the built-in search spaces."""

from __future__ import annotations

import click
from rich.table import Table

from ..space import DEFAULT_TRIALS, builtin_spaces, load_space
from .display import console

__all__ = ["spaces"]


@click.command()
def spaces() -> None:
    """List the built-in search spaces.

    \b
    Example:
      resnas spaces
    """
    table = Table("space", "sampler", "points / trials", "description", title="resnas search spaces")
    table.columns[3].overflow = "fold"
    for name in builtin_spaces():
        space = load_space(name)
        if space.sampler == "grid":
            size = f"{len(space.grid_points())} points"
        else:  # what `resnas search --space NAME` runs without --trials
            size = f"{space.trials} trials" if space.trials else f"{DEFAULT_TRIALS} trials (default)"
        table.add_row(name, space.sampler, size, space.description)
    console.print(table)
