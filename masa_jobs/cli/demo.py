"""``masa-jobs demo``: jobs, retries, a delay and a dead job, in a couple of seconds."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import typer
from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler

from ._common import Backend, BackendOption, CliError, fail, run_async, stdout_console
from ._demo_view import intro, progress_view, summary_table

__all__ = ["demo"]

# The demo's own handlers and the worker log under this name; the demo shows
# their INFO lines, which tell the story of each job as it happens.
LIBRARY_LOGGER = "masa_jobs"
# Exit code when a job did not end as the scenario expects (a bug, not bad usage).
UNEXPECTED_OUTCOME_EXIT_CODE = 1


def demo(backend: BackendOption = Backend.ASYNCIO) -> None:
    """Run a user sign-up scenario on the in-memory store: no set-up, no code of yours.

    Users sign up (two handlers per job, one flaky so that only it retries), a
    follow-up mail waits for its delay, and one card charge fails until its job
    is dead. Shows live per-state counts, then a summary table; exits 0 when
    every job ended as expected.
    """
    console = stdout_console()
    # Imported only now: importing it registers the demo's job handlers, which
    # must never appear in an application that merely imports masa_jobs.
    from . import _demo_scenario as scenario

    concurrency = scenario.DEMO_OPTIONS["concurrency"]
    console.print(
        intro(f"masa-jobs demo (in-memory store, concurrency {concurrency})", scenario.describe())
    )
    try:
        with (
            _log_to(console),
            Live(progress_view({}, 0.0), console=console, auto_refresh=False) as live,
        ):
            report = run_async(partial(scenario.run_demo, live, progress_view), backend)
    except CliError as exc:
        fail(str(exc))
    console.print()
    console.print(
        summary_table(
            [(job.user, info, scenario.handler_runs(job, info)) for job, info in report.jobs]
        )
    )
    problems = report.problems()
    if problems:
        for problem in problems:
            console.print(f"unexpected: {problem}", style="red", markup=False)
        raise typer.Exit(UNEXPECTED_OUTCOME_EXIT_CODE)
    states = Counter(info.state.value for _, info in report.jobs if info is not None)
    tally = ", ".join(f"{n} {state}" for state, n in sorted(states.items(), reverse=True))
    console.print(
        f"All {len(report.jobs)} jobs finished as expected in {report.elapsed:.2f} s ({tally}).",
        markup=False,
    )


@contextmanager
def _log_to(console: Console) -> Iterator[None]:
    """Show the library's log lines above the live view, then restore logging."""
    library = logging.getLogger(LIBRARY_LOGGER)
    handler = RichHandler(console=console, show_path=False, markup=False, log_time_format="%X")
    saved = (library.level, library.propagate)
    library.addHandler(handler)
    library.setLevel(logging.INFO)
    library.propagate = False
    try:
        yield
    finally:
        library.removeHandler(handler)
        library.level, library.propagate = saved
