"""The machine a ``masa-jobs bench`` run measured: figures mean little without it.

Timings change several-fold from one CPU to another (a wake-up from idle, a
commit's flush), so the report names the processor, the cores, the system
and the Python that ran it, and a table copied into a document carries them.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["describe_machine", "machine_report"]

# Where Linux names the processor; other systems answer through platform.
CPUINFO = Path("/proc/cpuinfo")
UNKNOWN_CPU = "unknown CPU"


def machine_report() -> dict[str, str | int | None]:
    """The processor's model, the cores this process may use, the system and Python."""
    return {
        "cpu": _cpu_model(),
        "cores": _usable_cores(),
        "system": f"{platform.system()} {platform.machine()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }


def describe_machine(machine: dict[str, str | int | None]) -> str:
    """One line of ``machine_report``, for the table's caption."""
    cores = machine["cores"]
    counted = "cores unknown" if cores is None else f"{cores} core{'s' if cores != 1 else ''}"
    return f"{machine['cpu']}, {counted}, {machine['system']}, {machine['python']}"


def _cpu_model() -> str:
    try:
        text = CPUINFO.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or UNKNOWN_CPU


def _usable_cores() -> int | None:
    # The cores the scheduler lets this process use (a container's limit), not
    # those the host has.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()
