"""``resnas probe``: the gradient at initialization, each variant against its reference."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from ..data import DATASETS, load_data
from ..probe import against_reference, labelled_specs, plot, pyplot, rank_probes
from ..space import load_space
from ..study import sample_specs
from .common import UserError
from .display import SpecText, console, say
from .options import SEED
from .stored import USER_ERRORS

__all__ = ["probe"]


@click.command()
@click.argument("specs", nargs=-1)
@click.option("--space", "space_name", help="Also probe every point of this space (a built-in name or a YAML file).")
@click.option("--samples", type=click.IntRange(min=1), default=20, show_default=True,
              help="Random draws from a space that is not a grid.")
@click.option("--dataset", type=click.Choice(list(DATASETS)), default="digits", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the data set is.")
@click.option("--batch-size", type=click.IntRange(min=2), default=32, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Initialization seed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--plot", "plot_to", type=click.Path(dir_okay=False),
              help='Write log10 |dE/dx_l| per unit to this PNG (needs pip install -e ".[plot]" in the checkout).')
def probe(specs: tuple[str, ...], space_name: str | None, samples: int, dataset: str, data_dir: str | None,
          batch_size: int, seed: int, as_json: bool, plot_to: str | None) -> None:
    """Measure how the gradient crosses the units at initialization (the paper's Eq. 5).

    On one batch of real data, in training mode: the norm of dE/dx_l at every unit l, summed up as
    the gain log10(|dE/dx_1| / |dE/dx_L|) and its slope per unit, beside the shortcut-only term of
    Eq. 5 over the same span (units 1 .. L-1). The headline is "vs ref": the gain minus the gain of
    the reference, the identity-shortcut, full pre-activation net of the same depth and widths (the
    paper's design, which itself gains about 2 at 110 layers; 0 for the reference itself); variants
    are ranked by its size, closest first. With BN the failing shortcuts make the gradient explode
    toward the input (gain >> 0) rather than vanish.

    \b
    Examples:
      resnas probe original_resnet110 "depth=110,act=original,shortcut=scaling,scale=0.5" --plot probe.png
      resnas probe --space paper_table1 --json
    """
    if plot_to and not Path(plot_to).parent.is_dir():
        raise UserError(f"plot: folder {Path(plot_to).parent} does not exist")
    if plot_to:
        try:
            pyplot()  # matplotlib is an extra: say so before computing anything
        except ImportError as e:
            raise UserError(str(e)) from None
    try:
        data = load_data(dataset, data_dir)
        x, y = next(iter(data.loader("val", batch_size)))
        fixed = dict(in_chans=data.input_size[0], num_classes=data.num_classes)
        todo = _specs(specs, space_name, samples, fixed)
        pairs = against_reference([spec for spec, _ in todo.values()], x, y, seed=seed)
    except USER_ERRORS as e:
        raise UserError(str(e)) from None
    rows = rank_probes(pairs)
    label = {key: name for key, (_, name) in todo.items()}
    if plot_to:
        plot([r for r, _ in pairs], plot_to, title=f"gradient at initialization, {dataset} batch {len(x)}",
             labels=[label[r.spec] for r, _ in pairs], references=[ref for _, ref in pairs])
    if as_json:
        click.echo(json.dumps(dict(dataset=dataset, batch_size=len(x), seed=seed, variants=rows), indent=2))
        return
    _print_probes(rows, label, dataset)
    if plot_to:
        say(f"plot: {plot_to}")


def _specs(names: tuple[str, ...], space_name: str | None, samples: int, fixed: dict) -> dict:
    """The names as typed and the points of the space (a sample of it), labelled; a bad one: one line."""
    try:
        drawn = sample_specs(load_space(space_name), samples, **fixed) if space_name is not None else []
        return labelled_specs(names, drawn, **fixed)
    except ValueError as e:
        raise UserError(str(e)) from None


def _print_probes(rows: list[dict], label: dict[str, str], dataset: str) -> None:
    refs = list({d["reference"]: d["reference_gain"] for d in rows}.items())
    ref_no = {spec: i for i, (spec, _) in enumerate(refs, start=1)}
    # "vs ref": gain - gain of the row's ref; "Eq.5": the shortcut-only term over units 1 .. L-1
    columns = ["#", "variant", "vs ref", "gain", "ratio", "slope", "Eq.5"] + (["ref"] if len(refs) > 1 else [])
    table = Table(*columns, title=f"resnas probe on {dataset}: gain vs ref, closest first")
    table.columns[1].min_width = 20
    for rank, d in enumerate(rows, start=1):
        term = "-" if d["shortcut_term"] is None else f"{d['shortcut_term']:.3g}"
        own = "(ref)" if d["spec"] == d["reference"] else ""  # the name as typed, wrapped after its commas
        table.add_row(str(rank), SpecText(label[d["spec"]], own), f"{d['gain_vs_reference']:+.2f}", f"{d['gain']:.2f}",
                      f"{d['ratio']:.3g}", f"{d['slope']:.3f}", term,
                      *([str(ref_no[d["reference"]])] if len(refs) > 1 else []))
    console.print(table)
    console.print("ref: the identity-shortcut, full pre-activation net of the same depth and widths (the "
                  "paper's design); vs ref = gain - the ref's gain, 0 for the ref itself", highlight=False)
    for i, (spec, gain) in enumerate(refs, start=1):
        console.print(SpecText(f"ref{f' {i}' if len(refs) > 1 else ''}: {spec}, gain {gain:.2f}"), highlight=False)
