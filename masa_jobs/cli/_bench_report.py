"""What ``masa-jobs bench`` prints: one JSON object, or one table of every measure.

The table is built from the JSON report, so both always show the same figures.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from ._bench_machine import describe_machine, machine_report
from ._bench_settings import NO_TARGETS, TARGETS, BenchResult, BenchSettings
from ._bench_stats import latency_summary, mib

__all__ = ["phases_report", "print_table", "settings_report"]

# The bars the scenarios are held to.
PROCESSES_TARGET = (4, 1.6)  # 4 processes on one PostgreSQL or Redis: 1.6x one
PROCESSES_TARGET_STORES = frozenset({"postgres", "redis"})
FAULTED_MIN_RATIO = 0.7  # throughput under kills, against fault-free
DEEP_MIN_RATIO = 0.8  # claim rate with the backlog, against an empty store
DEEP_MAX_PICKUP_RATIO = 1.2  # pickup p50 with the backlog, against an empty store
IDLE_RSS_TARGET_MIB = 40.0
IDLE_RSS_TARGET_STORES = frozenset({"memory", "sqlite"})

Row = tuple[str, str, str]


def settings_report(settings: BenchSettings, backend: str) -> dict[str, Any]:
    return {
        "store": settings.store.value,
        "backend": backend,
        "jobs": settings.jobs,
        "concurrency": settings.concurrency,
        "batch_size": settings.batch_size,
        "prefetch": settings.prefetch,
        "machine": machine_report(),
    }


def phases_report(result: BenchResult) -> dict[str, Any]:
    """The keys of the one-process phases (``--scenarios phases``, the default)."""
    targets = TARGETS.get(result.settings.store.value, NO_TARGETS)
    ceiling = result.commit_ceiling_per_s
    return {
        "enqueue_single_jobs_per_s": round(result.enqueue_single_per_s),
        "commit_ceiling_per_s": None if ceiling is None else round(ceiling),
        "enqueue_single_of_ceiling": (
            None if ceiling is None else round(result.enqueue_single_per_s / ceiling, 3)
        ),
        "enqueue_bulk_jobs_per_s": round(result.enqueue_bulk_per_s),
        "end_to_end_jobs_per_s": round(result.end_to_end_per_s),
        "end_to_end_seconds": round(result.end_to_end_seconds, 4),
        "pickup_latency_ms": latency_summary(result.pickup_ms),
        "peak_rss_mib": mib(result.peak_rss_bytes),
        "targets": {
            "end_to_end_jobs_per_s": targets.end_to_end_per_s,
            "pickup_p50_ms": targets.pickup_p50_ms,
            "enqueue_single_jobs_per_s": targets.enqueue_single_per_s,
            "enqueue_bulk_jobs_per_s": targets.enqueue_bulk_per_s,
        },
    }


def print_table(console: Console, report: dict[str, Any]) -> None:
    table = Table(
        title=_title(report),
        title_justify="left",
        caption=f"on {describe_machine(report['machine'])}",
        caption_justify="left",
    )
    table.add_column("measure")
    table.add_column("result", justify="right")
    table.add_column("target")
    groups = [_phase_rows(report)] if "end_to_end_jobs_per_s" in report else []
    for name, section in report.get("scenarios", {}).items():
        rows = _SCENARIO_ROWS[name](section, report["store"])
        groups.append([(f"{name}: {label}", result, target) for label, result, target in rows])
    for index, rows in enumerate(groups):
        if index:
            table.add_section()
        for row in rows:
            table.add_row(*row)
    console.print(table)


def _title(report: dict[str, Any]) -> str:
    return (
        f"masa-jobs bench: {report['store']} store, {report['backend']}, "
        f"{report['jobs']:,} jobs, concurrency {report['concurrency']}, "
        f"batch {report['batch_size']}"
    )


def _phase_rows(report: dict[str, Any]) -> list[Row]:
    targets = report["targets"]
    rows = [
        (label, _rate(report[key]), _at_least(report[key], targets[key]))
        for label, key in (
            ("enqueue, one at a time", "enqueue_single_jobs_per_s"),
            ("enqueue, bulk (enqueue_many)", "enqueue_bulk_jobs_per_s"),
            ("end to end", "end_to_end_jobs_per_s"),
        )
    ]
    rows[1:1] = _ceiling_rows(report)
    pickup, p50_target = report["pickup_latency_ms"], targets["pickup_p50_ms"]
    p50_met = (
        "" if p50_target is None else _target(pickup["p50"] <= p50_target, f"<= {p50_target:g} ms")
    )
    rows.append((f"pickup latency p50 ({pickup['samples']} samples)", _ms(pickup["p50"]), p50_met))
    rows += [(f"pickup latency {key}", _ms(pickup[key]), "") for key in ("p90", "p99", "max")]
    peak = report["peak_rss_mib"]
    rows.append(("peak RSS", "n/a" if peak is None else f"{peak:,.1f} MiB", ""))
    return rows


def _ceiling_rows(report: dict[str, Any]) -> list[Row]:
    """The single enqueue's ceiling, when the store has one: what one driver
    connection commits, one single-row INSERT per transaction, on the same server."""
    ceiling = report.get("commit_ceiling_per_s")
    if ceiling is None:
        return []
    return [
        ("commit ceiling (1-row INSERTs, 1 connection)", f"{ceiling:,.0f} commits/s", ""),
        (
            "enqueue, one at a time, of that ceiling",
            f"{report['enqueue_single_of_ceiling']:.0%}",
            "",
        ),
    ]


def _processes_rows(section: dict[str, Any], store: str) -> list[Row]:
    first = section["curve"][0]["processes"]
    rows = []
    for point in section["curve"]:
        count, speedup = point["processes"], point["speedup"]
        target = ""
        if (count, first) == (PROCESSES_TARGET[0], 1) and store in PROCESSES_TARGET_STORES:
            bar = PROCESSES_TARGET[1]
            target = _target(speedup >= bar, f">= {bar:g}x of 1 process")
        lost = f", {point['lost']} lost" if point["lost"] else ""
        result = f"{_rate(point['jobs_per_s'])} ({speedup:.2f}x{lost})"
        rows.append((f"{count} worker process{'es' if count > 1 else ''}", result, target))
    return rows


def _faults_rows(section: dict[str, Any], store: str) -> list[Row]:
    kills = (
        f"SIGKILL one every {section['kill_every_s']:g} s ({section['kills']} kills, "
        f"lease_timeout {section['lease_timeout_s']:g} s)"
    )
    ratio = section["ratio"]
    processes = section["processes"]
    return [
        (f"{processes} processes, no kills", _rate(section["fault_free_jobs_per_s"]), ""),
        (
            f"{processes} processes, {kills}",
            f"{_rate(section['faulted_jobs_per_s'])} ({ratio:.0%})",
            _target(ratio >= FAULTED_MIN_RATIO, f">= {FAULTED_MIN_RATIO:.0%} of no kills"),
        ),
        (
            f"jobs lost under kills (of {section['jobs']:,})",
            str(section["lost"]),
            _target(section["lost"] == 0, "0"),
        ),
    ]


def _deep_rows(section: dict[str, Any], store: str) -> list[Row]:
    backlog = f"{section['backlog']:,} due jobs"
    ratio, p50_ratio = section["throughput_ratio"], section["pickup_p50_ratio"]
    empty, deep = section["pickup_ms"]["empty"], section["pickup_ms"]["deep"]
    first = f"first {section['jobs']:,} jobs"
    return [
        (f"claim rate, {first}, empty store", _rate(section["empty_jobs_per_s"]), ""),
        (
            f"claim rate, {first}, {backlog}",
            f"{_rate(section['deep_jobs_per_s'])} ({ratio:.0%})",
            _target(ratio >= DEEP_MIN_RATIO, f">= {DEEP_MIN_RATIO:.0%} of empty"),
        ),
        ("pickup p50 / p99 (probe queue), empty store", _p50_p99(empty), ""),
        (
            f"pickup p50 / p99 (probe queue), {backlog}",
            f"{_p50_p99(deep)} ({p50_ratio:.0%})",
            _target(
                p50_ratio <= DEEP_MAX_PICKUP_RATIO, f"p50 <= {DEEP_MAX_PICKUP_RATIO:.0%} of empty"
            ),
        ),
    ]


def _rss_rows(section: dict[str, Any], store: str) -> list[Row]:
    floor = section.get("dependency_floor_mib")
    rows = []
    for name, size in section["idle_worker_mib"].items():
        target = ""
        if size is not None and name in IDLE_RSS_TARGET_STORES:
            target = _target(size <= IDLE_RSS_TARGET_MIB, f"<= {IDLE_RSS_TARGET_MIB:g} MiB")
        result = "n/a" if size is None else f"{size:,.1f} MiB"
        if size is not None and floor is not None:
            result += f" ({size - floor:,.1f} above the floor)"
        rows.append((f"idle worker process RSS, {name} store", result, target))
    if floor is not None:
        rows.append(("RSS floor: pydantic, DI and anyio alone", f"{floor:,.1f} MiB", ""))
    return rows


_SCENARIO_ROWS = {
    "processes": _processes_rows,
    "faults": _faults_rows,
    "deep": _deep_rows,
    "rss": _rss_rows,
}


def _rate(value: float) -> str:
    return f"{value:,.0f} jobs/s"


def _ms(value: float) -> str:
    return f"{value:.3f} ms"


def _p50_p99(summary: dict[str, Any]) -> str:
    return f"{summary['p50']:.3f} / {summary['p99']:.3f} ms"


def _at_least(value: float, target: float | None) -> str:
    if target is None:
        return ""
    return _target(value >= target, f">= {target:,.0f} jobs/s")


def _target(met: bool, text: str) -> str:
    return f"{text} (met)" if met else f"{text} (missed)"
