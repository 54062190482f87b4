"""Run the scenarios ``masa-jobs bench`` was asked for, in a fixed order, into one report."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ._bench_deep import measure_deep
from ._bench_faults import measure_faults
from ._bench_processes import measure_processes
from ._bench_report import phases_report, settings_report
from ._bench_rss import measure_rss
from ._bench_run import run_bench
from ._bench_settings import BenchSettings, Scenario

__all__ = ["run_scenarios"]

Measure = Callable[[BenchSettings, str], Awaitable[dict[str, Any]]]


async def _deep(settings: BenchSettings, backend: str) -> dict[str, Any]:
    return await measure_deep(settings)


# In the order they run and are reported: the cheap ones first.
_MEASURES: dict[Scenario, Measure] = {
    Scenario.RSS: measure_rss,
    Scenario.PROCESSES: measure_processes,
    Scenario.DEEP: _deep,
    Scenario.FAULTS: measure_faults,
}


async def run_scenarios(settings: BenchSettings, backend: str) -> dict[str, Any]:
    """The report: the settings, the phases' keys when they ran, then ``scenarios``."""
    report = settings_report(settings, backend)
    if Scenario.PHASES in settings.scenarios:
        report |= phases_report(await run_bench(settings, backend))
    sections = {
        scenario.value: await measure(settings, backend)
        for scenario, measure in _MEASURES.items()
        if scenario in settings.scenarios
    }
    if sections:
        report["scenarios"] = sections
    return report
