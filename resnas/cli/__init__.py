"""The ``resnas`` command line: parses, calls, prints.

A click group whose commands load lazily: a command's module is imported when that command runs (or shows
its own ``--help``), so ``resnas --help`` and ``resnas --version`` import neither torch nor Optuna.
"""

from __future__ import annotations

import importlib
import sys

import click

from ..ranks import end_process
from .common import Interrupted, UserError
from .hints import command

__all__ = ["COMMANDS", "cli", "main"]

# name -> (module of resnas.cli, function, the one line `resnas --help` lists it with: its docstring's first)
COMMANDS = {
    "best": ("best", "best", "The best designs of a study, ranked."),
    "dashboard": ("serve", "dashboard", "Serve the Optuna dashboard for a storage and its artifacts."),
    "export": ("best", "export", "Write a trial's network as a timm local-dir folder (config.json + "
                                 "model.safetensors)."),
    "models": ("models", "models", "List the registered networks."),
    "probe": ("probe", "probe", "Measure how the gradient crosses the units at initialization (the paper's Eq. 5)."),
    "reproduce": ("reproduce", "reproduce", "Train the paper's Table 1 or Table 2 as grid studies and set the "
                                            "result beside the paper's."),
    "search": ("search", "search", "Search the space's residual-unit designs on a data set with Optuna."),
    "spaces": ("spaces", "spaces", "List the built-in search spaces."),
    "storage-proxy": ("serve", "storage_proxy", "Serve a storage to many workers (Optuna's gRPC storage proxy); "
                                                "they pass --storage grpc://HOST:PORT."),
    "summary": ("models", "summary", "Parameters, MACs and stage shapes of MODEL (a registered name or a spec "
                                     "string)."),
    "train": ("train", "train_cmd", "Train one network, print its val/test error, export it for timm."),
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when the command is looked up to run (or to show its own
    help); the group's help lists every command from ``COMMANDS`` alone."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, function, _ = COMMANDS[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), function)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(map(len, COMMANDS))
        rows = [(name, click.utils.make_default_short_help(line, limit)) for name, (_, _, line) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


@click.group(cls=LazyGroup, context_settings=dict(help_option_names=["-h", "--help"]))
@click.version_option(package_name="resnas")
def cli() -> None:
    """Search the residual-unit designs of He et al. 2016 on your data.

    \b
    Example:
      resnas summary preact_resnet164
    """


def main(argv: list[str] | None = None) -> int:
    """The ``resnas`` console script: returns 0, 2 for bad input (one line on stderr), 130 on Ctrl-C. A
    process of ``accelerate launch`` ends here, without finalization (``resnas.ranks``)."""
    return end_process(_main(argv))


def _main(argv: list[str] | None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        cli.main(args=args, prog_name="resnas", standalone_mode=False, obj={"argv": args})
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:  # ours and click's (usage): one line, exit code 2
        UserError(e.format_message()).show()
        return UserError.exit_code
    except Interrupted as e:  # a search or a training: what it kept, and the command that continues
        click.echo(f"interrupted: {e}", err=True)
        return 130
    except (click.Abort, KeyboardInterrupt):
        click.echo(f"interrupted: {command(args)} did not finish", err=True)
        return 130
    return 0

