"""The ``resnas`` command line: parses, calls, prints."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


class UserError(Exception):
    """Bad input from the user: one line on stderr, exit code 2."""


def resolve_model(name_or_spec: str, **kwargs):
    """A registered timm name (``preact_resnet164``) or an ArchSpec string (``depth=20,act=preact``)."""
    import timm

    from . import zoo
    from .spec import ArchSpec

    try:
        if "=" in name_or_spec:
            spec = ArchSpec.parse(name_or_spec)
            return timm.create_model("resnas_spec", spec=str(spec), **kwargs)
        if name_or_spec not in zoo.ZOO:
            raise UserError(f"model: unknown name {name_or_spec!r}; allowed: {', '.join(zoo.ZOO)} or a spec string "
                            "such as 'depth=20,act=preact'")
        return timm.create_model(name_or_spec, **kwargs)
    except ValueError as e:
        raise UserError(str(e)) from None


@click.group(context_settings=dict(help_option_names=["-h", "--help"]))
@click.version_option(package_name="resnas")
def cli() -> None:
    """Search the residual-unit designs of He et al. 2016 on your data.

    \b
    Example:
      resnas summary preact_resnet164
    """


@cli.command()
def models() -> None:
    """List the registered networks.

    \b
    Example:
      resnas models
    """
    from . import zoo
    from .network import count_params

    table = Table("name", "spec", "params", title="resnas models (timm.create_model(name))")
    table.columns[1].overflow = "fold"
    for name, spec in zoo.ZOO.items():
        table.add_row(name, str(spec), f"{count_params(zoo.ResNet(spec)):,}")
    console.print(table)


@cli.command()
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
    import torch

    from .network import count_macs, count_params

    net = resolve_model(model, num_classes=num_classes, in_chans=in_chans)
    c, h, w = net.pretrained_cfg["input_size"]
    size = (c, input_size or h, input_size or w)
    table = Table("", "value", title=f"resnas summary: {model}", show_header=False)
    table.columns[1].overflow = "fold"
    table.add_row("spec", str(net.spec))
    table.add_row("timm", f"timm.create_model('resnas_spec', spec='{net.spec}')")
    table.add_row("depth", str(net.spec.depth))
    table.add_row("params", f"{count_params(net):,}")
    table.add_row("MACs / image", f"{count_macs(net, size) / 1e6:,.1f}M at {size[1]}x{size[2]}")
    with torch.no_grad():
        feats = net.eval().forward_intermediates(torch.zeros(1, *size), intermediates_only=True)
    for info, f in zip(net.feature_info, feats):
        table.add_row(info["module"], f"{tuple(f.shape[1:])} (reduction {info['reduction']})")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="resnas", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        err_console.print(f"error: {e.format_message()}", highlight=False, soft_wrap=True)
        return 2
    except click.Abort:
        return 130
    except UserError as e:
        err_console.print(f"error: {e}", highlight=False, soft_wrap=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
