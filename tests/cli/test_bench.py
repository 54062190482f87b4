"""``masa-jobs bench`` runs and reports numbers (a functional test: no timing asserted)."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from tests.services import POSTGRES_DSN, require_service

from ._cli import clean_env, run_cli


def test_bench_json_reports_every_measure() -> None:
    result = run_cli("bench", "--jobs", "500", "--latency-samples", "20", "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["store"] == "memory"
    assert report["jobs"] == 500
    for key in ("enqueue_single_jobs_per_s", "enqueue_bulk_jobs_per_s", "end_to_end_jobs_per_s"):
        assert report[key] > 0, key
    pickup = report["pickup_latency_ms"]
    assert pickup["samples"] == 20
    assert 0 < pickup["p50"] <= pickup["p90"] <= pickup["p99"] <= pickup["max"]
    assert "scenarios" not in report
    assert report["peak_rss_mib"] > 0
    # The in-memory store commits nothing to a server: no ceiling to compare with.
    assert report["commit_ceiling_per_s"] is None
    assert report["enqueue_single_of_ceiling"] is None
    # Figures mean little without the machine that gave them.
    machine = report["machine"]
    assert machine["cpu"]
    assert machine["system"]
    assert machine["python"].endswith(".".join(map(str, sys.version_info[:3])))
    assert machine["cores"] is None or machine["cores"] >= 1


def test_bench_table_on_trio() -> None:
    result = run_cli("bench", "--jobs", "200", "--latency-samples", "5", "--backend", "trio")

    assert result.returncode == 0, result.stderr
    for measure in ("enqueue, one at a time", "end to end", "pickup latency p50", "peak RSS"):
        assert measure in result.stdout
    # The machine, under the table (its caption may wrap between words).
    assert "core" in result.stdout


def test_bench_postgres_reports_the_commit_ceiling_of_single_enqueue() -> None:
    require_service("PostgreSQL", POSTGRES_DSN)
    env = clean_env(MASA_JOBS_STORE__DSN=POSTGRES_DSN)
    args = ("bench", "--store", "postgres", "--jobs", "200", "--latency-samples", "5")

    as_json = run_cli(*args, "--json", env=env)
    table = run_cli(*args, env=env)

    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["commit_ceiling_per_s"] > 0
    ratio = report["enqueue_single_jobs_per_s"] / report["commit_ceiling_per_s"]
    assert report["enqueue_single_of_ceiling"] == pytest.approx(ratio, abs=0.01)
    assert table.returncode == 0, table.stderr
    for measure in ("commit ceiling", "of that ceiling"):
        assert measure in table.stdout


def test_bench_refuses_an_unknown_store() -> None:
    result = run_cli("bench", "--store", "nope")

    assert result.returncode == 2
    assert "nope" in result.stderr


def _scenario(*args: str) -> dict[str, Any]:
    result = run_cli("bench", "--store", "sqlite", "--json", *args)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert "end_to_end_jobs_per_s" not in report, "phases run only when asked for"
    return report["scenarios"]  # type: ignore[no-any-return]


def test_bench_processes_curve_runs_every_job() -> None:
    section = _scenario("--scenarios", "processes", "--processes", "1,2", "--jobs", "200")[
        "processes"
    ]

    assert section["jobs"] == 200
    assert [point["processes"] for point in section["curve"]] == [1, 2]
    for point in section["curve"]:
        assert point["lost"] == 0
        assert point["jobs_per_s"] > 0
    assert section["curve"][0]["speedup"] == 1.0


def test_bench_faults_lose_no_job() -> None:
    section = _scenario("--scenarios", "faults", "--fault-jobs", "2000", "--kill-every", "0.5")[
        "faults"
    ]

    assert section["processes"] == 4
    assert section["jobs"] == 2000
    assert section["lease_timeout_s"] == 2.0
    assert section["fault_free_lost"] == 0
    assert section["lost"] == 0
    assert section["fault_free_jobs_per_s"] > 0
    assert section["faulted_jobs_per_s"] > 0


def test_bench_deep_compares_with_an_empty_store() -> None:
    section = _scenario(
        "--scenarios", "deep", "--deep-jobs", "2000", "--jobs", "200", "--latency-samples", "5"
    )["deep"]

    assert (section["backlog"], section["jobs"]) == (2000, 200)
    for key in ("fill_jobs_per_s", "empty_jobs_per_s", "deep_jobs_per_s"):
        assert section[key] > 0, key
    for pickup in section["pickup_ms"].values():
        assert pickup["samples"] == 5
        assert 0 < pickup["p50"] <= pickup["p90"] <= pickup["p99"] <= pickup["max"]
    assert section["throughput_ratio"] > 0
    assert section["pickup_p50_ratio"] > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RSS is read from /proc")
def test_bench_rss_of_idle_workers_on_memory_and_sqlite() -> None:
    result = run_cli("bench", "--scenarios", "rss")

    assert result.returncode == 0, result.stderr
    for store in ("memory", "sqlite"):
        assert f"idle worker process RSS, {store} store" in result.stdout
    assert "MiB" in result.stdout
    assert "RSS floor: pydantic, DI and anyio alone" in result.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RSS is read from /proc")
def test_bench_rss_sets_each_worker_against_the_floor_of_its_libraries() -> None:
    section = _scenario("--scenarios", "rss")["rss"]

    floor = section["dependency_floor_mib"]
    # A worker runs those libraries and more: masa-jobs, its command line, its store.
    assert 0 < floor < min(section["idle_worker_mib"].values())


def test_bench_refuses_processes_on_the_memory_store() -> None:
    result = run_cli("bench", "--scenarios", "processes")

    assert result.returncode == 2
    assert "--store" in result.stderr


@pytest.mark.parametrize(
    ("option", "value"), [("--scenarios", "phases,nope"), ("--processes", "1,x")]
)
def test_bench_refuses_bad_scenario_options(option: str, value: str) -> None:
    result = run_cli("bench", "--store", "sqlite", option, value)

    assert result.returncode == 2
    assert value in result.stderr
