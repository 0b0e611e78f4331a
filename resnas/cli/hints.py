"""The command lines a message names: the same command again, or changed, so that it continues (or restarts)
what was interrupted or refused."""

from __future__ import annotations

import shlex
import sys

import click

from ..ranks import in_launch

__all__ = ["again", "command", "fresh_train", "replace_option", "reproduce_interrupted", "search_again",
           "train_interrupted"]


def argv() -> list[str]:
    """This command's arguments, as ``main`` was given them."""
    obj = click.get_current_context().find_root().obj
    return list(obj["argv"]) if isinstance(obj, dict) and "argv" in obj else sys.argv[1:]


def command(args: list[str]) -> str:
    """The shell command that runs ``args`` (under ``accelerate launch`` when this runs under it)."""
    launched = in_launch()
    return shlex.join(["accelerate", "launch", "-m", "resnas", *args] if launched else ["resnas", *args])


def again() -> str:
    """This very command."""
    return command(argv())


def replace_option(args: list[str], name: str, new: list[str]) -> list[str]:
    """``args`` with option ``name`` (``--name V`` or ``--name=V``) replaced by ``new`` (appended if absent)."""
    out, i = [], 0
    while i < len(args):
        if args[i] == name:
            i += 2
        elif args[i].startswith(name + "="):
            i += 1
        else:
            out.append(args[i])
            i += 1
    return [*out, *new]


def fresh_train(epochs: int, output: str) -> str:
    """The ``resnas train`` that starts an ``epochs``-epoch run instead of resuming the one in ``output``."""
    fresh = [a for a in replace_option(argv(), "--epochs", ["--epochs", str(epochs)]) if a != "--resume"]
    return command(replace_option(fresh, "--output", ["--output", f"{output.rstrip('/')}-{epochs}"]))


def train_interrupted(held: int | None, epochs: int, output: str) -> str:
    """What Ctrl-C kept of a training (``held`` epochs in its checkpoint), and the command that continues it."""
    args = argv()
    if not held:
        return f"training stopped before its first epoch ended, nothing kept; start it again with: {command(args)}"
    resumed = args if "--resume" in args else [*args, "--resume"]
    return (f"training stopped after epoch {held} of {epochs}; the checkpoint in {output} holds it; "
            f"continue with: {command(resumed)}")


def search_again(plan) -> str:
    """The command that finishes this search (``plan``: its Budget, when known): the same one, with --more N
    made the target it set."""
    args = argv()
    if plan is not None and plan.target is not None and any(a == "--more" or a.startswith("--more=") for a in args):
        args = replace_option(args, "--more", ["--trials", str(plan.target)])
    return command(args)


def reproduce_interrupted(table_run) -> str:
    """What Ctrl-C kept of a reproduction, and the exact command that continues it."""
    rows = [] if table_run is None or table_run.written is None else table_run.rows()
    done, runs = sum(len(r.errors) for r in rows), sum(r.repeats for r in rows)
    if not done:
        return f"nothing trained yet; start it again with: {again()}"
    md, csv_path = table_run.written
    return (f"{done} of {runs} runs done; the table so far is in {md} and {csv_path} (the rest marked "
            f"\"not run\"); the interrupted run resumes from its last epoch with: {again()}")
