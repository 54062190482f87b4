"""What the commands share: the APP argument, the event-loop choice, consoles, one-line errors."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import anyio
import typer

from masa_jobs import MasaJobsError

if TYPE_CHECKING:
    # rich is imported when something is printed: a worker that logs prints nothing.
    from rich.console import Console

__all__ = [
    "USAGE_ERROR_EXIT_CODE",
    "AppArgument",
    "AppDirOption",
    "Backend",
    "BackendOption",
    "CliError",
    "fail",
    "first_line",
    "masa_error_in",
    "run_async",
    "stderr_console",
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


# The APP argument and --app-dir of every command that works on the user's container.
AppArgument = Annotated[
    str,
    typer.Argument(
        metavar="APP",
        help="module:attribute naming your container instance (or a zero-argument "
        "function returning one), e.g. myapp.jobs:container.",
        show_default=False,
    ),
]
AppDirOption = Annotated[
    Path,
    typer.Option(help="Directory put first on the import path to find APP's module."),
]


class CliError(Exception):
    """A problem the user can fix: printed as one line, exit code 2."""


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with the usage-error code."""
    stderr_console().print(f"error: {message}", markup=False)
    raise typer.Exit(USAGE_ERROR_EXIT_CODE)


def stderr_console() -> Console:
    """A console on stderr for one-line messages: no wrapping, no highlighting."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False, emoji=False)


def masa_error_in(exc: BaseException) -> MasaJobsError | None:
    """The MasaJobsError behind ``exc``, also inside exception groups, if any."""
    if isinstance(exc, MasaJobsError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = masa_error_in(inner)
            if found is not None:
                return found
    return None


def first_line(text: str) -> str:
    """The first non-blank line of ``text``, for one-line messages."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn a problem the user can fix (``CliError``) or a ``MasaJobsError`` (a
    store that cannot be reached, a bad recurring job) into one line on stderr
    and exit code 2, instead of a traceback."""
    try:
        yield
    except CliError as exc:
        fail(str(exc))
    except Exception as exc:
        problem = masa_error_in(exc)
        if problem is None:
            raise
        fail(str(problem))


def run_async(func: Callable[[], Awaitable[T]], backend: Backend) -> T:
    """Run ``func`` on the chosen event loop, refusing a backend that is not installed."""
    if backend is Backend.TRIO and importlib.util.find_spec("trio") is None:
        raise CliError("trio is not installed: `pip install trio`, or use --backend asyncio")
    return anyio.run(func, backend=backend.value)


def stdout_console() -> Console:
    """A console on stdout, wide enough for tables when output goes to a file or pipe."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=PIPE_WIDTH)
    return console
