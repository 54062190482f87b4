"""The machine line of ``masa-jobs bench``: read where the system tells it, never a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from masa_jobs.cli import _bench_machine
from masa_jobs.cli._bench_machine import UNKNOWN_CPU, describe_machine, machine_report


def test_the_cpu_model_comes_from_cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Example CPU @ 2.00GHz\n\n"
        "processor\t: 1\nmodel name\t: Example CPU @ 2.00GHz\n"
    )
    monkeypatch.setattr(_bench_machine, "CPUINFO", cpuinfo)

    assert machine_report()["cpu"] == "Example CPU @ 2.00GHz"


@pytest.mark.parametrize("processor", ["arm", ""])
def test_without_cpuinfo_the_platform_names_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processor: str
) -> None:
    monkeypatch.setattr(_bench_machine, "CPUINFO", tmp_path / "absent")
    monkeypatch.setattr(_bench_machine.platform, "processor", lambda: processor)

    assert machine_report()["cpu"] == (processor or UNKNOWN_CPU)


def test_the_line_names_cores_system_and_python() -> None:
    machine: dict[str, str | int | None] = {
        "cpu": "Example CPU",
        "cores": 1,
        "system": "Linux x86_64",
        "python": "CPython 3.11.7",
    }

    assert describe_machine(machine) == "Example CPU, 1 core, Linux x86_64, CPython 3.11.7"
    assert "cores unknown" in describe_machine({**machine, "cores": None})
    assert "2 cores" in describe_machine({**machine, "cores": 2})
