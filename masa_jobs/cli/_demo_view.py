"""How the demo looks: the live per-state counts and the closing summary table."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from masa_jobs import JobInfo, JobState

from ._common import first_line

__all__ = ["error_summary", "intro", "progress_view", "summary_table"]

# The states a demo job passes through, in the order of its life.
SHOWN_STATES = (
    JobState.SCHEDULED,
    JobState.ENQUEUED,
    JobState.PROCESSING,
    JobState.SUCCEEDED,
    JobState.DEAD,
)
STATE_STYLES = {
    JobState.SCHEDULED: "cyan",
    JobState.ENQUEUED: "blue",
    JobState.PROCESSING: "yellow",
    JobState.SUCCEEDED: "green",
    JobState.DEAD: "red",
    JobState.CANCELLED: "magenta",
}
_HANDLER_FAILED_SUFFIX = " failed:"


def progress_view(counts: dict[JobState, int], elapsed: float) -> RenderableType:
    """One row of per-state counts, as ``job_manager.count()`` reports them."""
    table = Table(title=f"Jobs by state after {elapsed:.1f} s", title_justify="left")
    for state in SHOWN_STATES:
        table.add_column(state.value, justify="right", style=STATE_STYLES[state])
    table.add_row(*(str(counts.get(state, 0)) for state in SHOWN_STATES))
    return table


def summary_table(rows: list[tuple[str, JobInfo | None, str]]) -> Table:
    """Per job (``(user, info, handler runs)``): name, state, attempts, runs, last error."""
    table = Table(title="Summary", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("user", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("attempts", justify="right", no_wrap=True)
    table.add_column("handler runs")
    table.add_column("last error")
    for user, info, runs in rows:
        if info is None:
            table.add_row("?", user, Text("missing", style="red"), "", runs, "")
            continue
        table.add_row(
            info.name,
            user,
            Text(info.state.value, style=STATE_STYLES[info.state]),
            str(info.attempts),
            runs,
            error_summary(info.last_error),
        )
    return table


def error_summary(error: str | None) -> str:
    """``Handler: ExceptionType: message`` from a stored error, or "-".

    A stored error starts with ``<handler> failed:`` and ends with the
    exception line of its traceback; together they say who failed and why.
    """
    if not error:
        return "-"
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    head = lines[0]
    if not head.endswith(_HANDLER_FAILED_SUFFIX) or len(lines) < 2:
        return first_line(error)
    handler = head.removesuffix(_HANDLER_FAILED_SUFFIX).rsplit(".", 1)[-1]
    exception_type, _, message = lines[-1].partition(": ")
    return f"{handler}: {exception_type.rsplit('.', 1)[-1]}: {message}"


def intro(title: str, lines: list[str]) -> RenderableType:
    """What the demo is about to do, before anything runs."""
    return Group(Text(title, style="bold"), *(Text(f"  - {line}") for line in lines))
