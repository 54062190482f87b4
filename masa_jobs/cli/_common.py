"""What the commands share: the event-loop choice, consoles and one-line errors."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Annotated, NoReturn, TypeVar

import anyio
import typer
from rich.console import Console

__all__ = [
    "USAGE_ERROR_EXIT_CODE",
    "Backend",
    "BackendOption",
    "CliError",
    "fail",
    "first_line",
    "run_async",
    "stdout_console",
]

T = TypeVar("T")

# click's code for bad usage: scripts can tell "fix your input" from a crash (1).
USAGE_ERROR_EXIT_CODE = 2
# Width for output that is not a terminal: CI logs and pagers are wider than
# rich's 80-column fallback, and wrapped table cells read badly.
PIPE_WIDTH = 120


class Backend(StrEnum):
    """The event loop anyio runs on."""

    ASYNCIO = "asyncio"
    TRIO = "trio"


BackendOption = Annotated[
    Backend,
    typer.Option("--backend", help="Event loop to run on (trio needs `pip install trio`)."),
]


class CliError(Exception):
    """A problem the user can fix: printed as one line, exit code 2."""


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with the usage-error code."""
    Console(stderr=True, soft_wrap=True, highlight=False, emoji=False).print(
        f"error: {message}", markup=False
    )
    raise typer.Exit(USAGE_ERROR_EXIT_CODE)


def first_line(text: str) -> str:
    """The first non-blank line of ``text``, for one-line messages."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def run_async(func: Callable[[], Awaitable[T]], backend: Backend) -> T:
    """Run ``func`` on the chosen event loop, refusing a backend that is not installed."""
    if backend is Backend.TRIO and importlib.util.find_spec("trio") is None:
        raise CliError("trio is not installed: `pip install trio`, or use --backend asyncio")
    return anyio.run(func, backend=backend.value)


def stdout_console() -> Console:
    """A console on stdout, wide enough for tables when output goes to a file or pipe."""
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=PIPE_WIDTH)
    return console
