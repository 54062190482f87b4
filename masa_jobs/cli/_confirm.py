"""Asking before a command removes or cancels jobs: ``--yes``, ``--dry-run``.

On a terminal the command shows what it is about to do and waits for "y".
Without a terminal there is nobody to answer, and guessing "yes" would let a
typo in a script delete jobs: the command refuses unless given ``--yes``.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from ._common import fail

__all__ = ["DryRunOption", "YesOption", "confirmed", "must_ask", "stdin_is_terminal"]

YesOption = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        help="Do it without asking for confirmation (needed when stdin is not a terminal).",
    ),
]
DryRunOption = Annotated[
    bool,
    typer.Option("--dry-run", help="Print what would be done, and change nothing."),
]
_YES = frozenset({"y", "yes"})


def stdin_is_terminal() -> bool:
    stream = sys.stdin
    try:
        return stream is not None and stream.isatty()
    except ValueError:  # closed
        return False


def must_ask(command: str, *, yes: bool, dry_run: bool) -> bool:
    """Whether to ask before acting; exit 2 if asking is needed but stdin is no terminal.

    Called before APP is loaded, so that a script missing ``--yes`` fails at once.
    """
    if yes or dry_run:
        return False
    if not stdin_is_terminal():
        fail(
            f"`masa-jobs {command}` asks for confirmation and stdin is not a terminal: "
            f"pass --yes to {command} without asking (or --dry-run to see what it would do)"
        )
    return True


def confirmed(question: str) -> bool:
    """Whether the operator answers "y" or "yes" to ``question``; anything else is no.

    The question goes to stderr and the answer is read from stdin, so that
    stdout holds only what was done (a script can read it, a pipe keeps it).
    """
    typer.echo(f"{question} [y/N] ", nl=False, err=True)
    with _interruptible():
        try:
            answer = sys.stdin.readline()
        except KeyboardInterrupt:
            answer = ""
    if not answer.endswith("\n"):  # end of input or Ctrl-C: end the question's line
        typer.echo(err=True)
    return answer.strip().lower() in _YES


@contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C interrupts the read at once.

    The question is asked inside the event loop, whose runner only cancels
    the (blocked) main task on a first Ctrl-C: the read would go on.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
