"""``resnas models`` and ``resnas summary``: the registered networks, and one network's shape."""

from __future__ import annotations

import click
import torch
from rich.table import Table

from ..network import count_macs, count_params
from ..spec import PLACEMENTS
from ..zoo import ZOO, ResNet, resolve_model
from .common import UserError
from .display import SpecText, console, say

__all__ = ["models", "summary"]

FINAL_NORMS = {"bn_relu": "BN-ReLU", "bn": "BN", "relu": "ReLU"}  # after the last unit of pre-activation nets


@click.command()
def models() -> None:
    """List the registered networks.

    \b
    Example:
      resnas models
    """
    table = Table("name", "spec", "params", title="resnas models (timm.create_model(name))")
    for name, spec in ZOO.items():
        table.add_row(name, SpecText(str(spec)), f"{count_params(ResNet(spec)):,}")
    table.add_row("resnas_spec", SpecText("any spec: spec='depth=56,act=preact,...'"), "-")
    console.print(table)


@click.command()
@click.argument("model")
@click.option("--num-classes", type=click.IntRange(min=0), help="Override the number of classes.")
@click.option("--in-chans", type=click.IntRange(min=1), help="Override the input channels.")
@click.option("--input-size", type=click.IntRange(min=1), help="Input height = width (default: the layout's).")
def summary(model: str, num_classes: int | None, in_chans: int | None, input_size: int | None) -> None:
    """Parameters, MACs and stage shapes of MODEL (a registered name or a spec string).

    \b
    Examples:
      resnas summary preact_resnet164
      resnas summary "depth=20,unit=basic,act=original,shortcut=exclusive_gate,gate_bias=-6"
    """
    try:
        net = resolve_model(model, num_classes=num_classes, in_chans=in_chans)
    except ValueError as e:
        raise UserError(str(e)) from None
    c, h, w = net.pretrained_cfg["input_size"]
    size = (c, input_size or h, input_size or w)
    table = Table("", "value", title=f"resnas summary: {model}", show_header=False)
    table.add_row("spec", SpecText(str(net.spec)))
    table.add_row("depth", str(net.spec.depth))
    table.add_row("params", f"{count_params(net):,}")
    table.add_row("MACs / image", f"{count_macs(net, size) / 1e6:,.1f}M at {size[1]}x{size[2]}")
    with torch.no_grad():
        feats = net.eval().forward_intermediates(torch.zeros(1, *size), intermediates_only=True)
    for i, (info, f) in enumerate(zip(net.feature_info, feats)):
        table.add_row(_stage_label(net.spec, i, len(feats)),
                      f"{tuple(f.shape[1:])}, reduction {info['reduction']}, timm {info['module']}")
    console.print(table)
    say(f"timm: timm.create_model('resnas_spec', spec='{net.spec}')")  # one line: copied whole


def _stage_label(spec, i: int, n: int) -> str:
    """Feature ``i`` of ``n`` as the paper names it: the stem, then stage 1, 2, ... (the last one after the
    pre-activation nets' final BN-ReLU, which timm calls ``norm``)."""
    if i == 0:
        return "stem"
    final = FINAL_NORMS.get(PLACEMENTS[spec.act].final)
    return f"stage {i}" + (f" + final {final}" if i == n - 1 and final else "")
