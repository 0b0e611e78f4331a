"""How a command ends when it cannot finish: bad input as one line (exit code 2), or Ctrl-C with the command
that continues (exit code 130). Light: ``main`` shows click's own errors with it, before any command loads."""

from __future__ import annotations

import click

from ..errors import one_line

__all__ = ["MAX_LINE", "Interrupted", "UserError"]

MAX_LINE = 400  # characters of an error line at most: a message that quotes a huge value stays readable


class UserError(click.ClickException):
    """Bad input from the user: one line on stderr, exit code 2 (never a traceback, nor usage lines)."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {one_line(self.format_message(), MAX_LINE)}", err=True)


class Interrupted(Exception):
    """Ctrl-C in a long command: what it kept and the exact command that continues (``main`` prints it, exit
    130). Not a KeyboardInterrupt, which click would turn into a bare Abort."""
